"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright's Python package,
against ``daik api`` and ``daik worker`` running on PostgreSQL and Redis (the scripted fake trainer keeps
the job to a few seconds; it leaves a ``gallery.json`` as the real trainer does).

Sign in with a token, submit a job through the form (first with a bad value, whose field error the API
names and the form shows next to the field), watch the job go to ``succeeded`` in the jobs list (a row the
list did not have, added and updated from the live feed), open its page: loss curves, mAP, per-class AP,
checkpoints and the gallery. Then a batch (2 configurations x 1 seed, made through the API): the batches
list, its page, pause then resume by the buttons, the ablation table and the bar chart once its jobs have
succeeded, a verb sent with a stale ETag (the API's 412 shown on the page); and the schedules page, whose
toggle disables a schedule (and, sent with a stale ETag, shows the 412). No console errors other than
the expected 422 and two 412s; screenshots go to ``test-artifacts/browser/``.

Skipped, saying why, when ``/usr/bin/chromium`` or the ``playwright`` package is missing (Playwright's own
browser download is not used)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.local import Supervisor, daik_command
from tests.e2e.conftest import logs_of, start_api_on_servers
from tests.e2e.flow import job_body, make_dataset, wait_ready

CHROMIUM = Path("/usr/bin/chromium")
FAKE_TRAINER = Path(__file__).parents[1] / "worker" / "fake_trainer.py"
SHOTS = Path(__file__).parents[2] / "test-artifacts" / "browser"
JOB_TIMEOUT_MS = 180_000  # a worker importing torch on a small shared machine, then ~3 s of fake training
EXPECTED_422 = "the server responded with a status of 422"
EXPECTED_412 = "the server responded with a status of 412"

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.mark.slow
def test_login_submit_watch_and_inspect_a_job(
    tmp_path: Path, pg_e2e: str, redis_e2e: str, supervisor: Supervisor, token: str, log_dir: Path
) -> None:
    base = start_api_on_servers(supervisor, tmp_path, pg_e2e, redis_e2e, token, log_dir)
    supervisor.start(
        "worker",
        daik_command("worker"),
        log_dir / "worker.log",
        env={
            "DAIK_TRAINER_COMMAND": f"{sys.executable} {FAKE_TRAINER}",
            "DAIK_FAKE_TRAINER": "--sleep 1.5",
            "DAIK_TRAINER_ENV": "DAIK_FAKE_TRAINER",  # workers pass trainers only what they are told to
        },
    )
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    try:
        wait_ready(base, supervisor)
        body = make_dataset(tmp_path / "data", "browser-ds")
        r = httpx.post(
            f"{base}/datasets", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert r.status_code == 201, r.text
        _drive(base, token, body)
    except (AssertionError, httpx.HTTPError, sync_api.Error) as err:
        raise AssertionError(f"{err}\n{logs_of(supervisor)}") from None


def _drive(base: str, token: str, dataset: dict[str, Any]) -> None:
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(20_000)

            def watch(page: sync_api.Page, name: str) -> None:
                page.on(
                    "console", lambda m: errors.append(f"{name}: {m.text}") if m.type == "error" else None
                )
                page.on("pageerror", lambda e: errors.append(f"{name}: uncaught {e}"))

            # no session: the dashboard sends the browser to the login page, then back
            page = context.new_page()
            watch(page, "main")
            page.goto(f"{base}/ui/jobs")
            assert "/ui/login" in page.url
            page.fill("#token", "daik_wrong")
            page.click("#login-form button[type=submit]")
            assert "sign-in refused" in page.inner_text("#login-error")
            page.fill("#token", token)
            page.click("#login-form button[type=submit]")
            page.wait_for_url(f"{base}/ui/jobs")
            page.wait_for_selector('#live-state[data-state="open"]')

            # a second tab keeps the list open while the job is submitted and runs
            listing = context.new_page()
            watch(listing, "list")
            listing.goto(f"{base}/ui/jobs")
            listing.wait_for_selector('#live-state[data-state="open"]')

            page.goto(f"{base}/ui/jobs/new")
            page.fill('[name="name"]', "browser-job")
            page.select_option('[name="dataset"]', "browser-ds")
            page.fill('[name="epochs"]', "0")
            page.fill('[name="imgsz"]', "128")
            page.fill('[name="batch"]', "4")
            page.select_option('[name="device"]', "cpu")
            page.click("#submit-job")
            field_error = page.wait_for_selector(
                '.field-error[data-error-for="hparams.epochs"]:not([hidden])'
            )
            assert "greater than 0" in field_error.inner_text()
            assert page.get_attribute('[data-field="hparams.epochs"]', "aria-invalid") == "true"
            page.screenshot(path=str(SHOTS / "1-form-field-error.png"), full_page=True)

            page.fill('[name="epochs"]', "2")
            page.click("#submit-job")
            page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
            job_id = page.url.rsplit("/", 1)[1]

            row = f'tr[data-job-id="{job_id}"]'
            listing.wait_for_selector(row)  # added by the live feed: the list was rendered before the job
            listing.wait_for_selector(f'{row}[data-status="succeeded"]', timeout=JOB_TIMEOUT_MS)
            assert listing.inner_text(f"{row} .epoch") == "2/2"
            assert listing.inner_text(f"{row} .pct").strip() == "100%"
            listing.screenshot(path=str(SHOTS / "2-jobs-list.png"), full_page=True)

            page.wait_for_selector('#job[data-status="succeeded"]', timeout=JOB_TIMEOUT_MS)
            page.reload()  # the page as rendered for a finished job
            for series in ("loss_cls", "loss_box", "loss", "map50", "map50_95"):
                page.wait_for_selector(f'polyline[data-series="{series}"]', state="attached")
            ap_rows = page.locator("#ap-table tbody tr")
            assert ap_rows.count() == 2 and ap_rows.first.inner_text().startswith("a")
            assert page.locator("#checkpoints a[download]").count() >= 2
            shots = page.locator("#gallery figure.shot")
            assert shots.count() == 4  # the 4 validation images of the dataset
            assert page.locator("#gallery polygon.box").count() == 4
            href = page.get_attribute("#gallery figure.shot image", "href")
            assert href is not None
            image = page.request.get(f"{base}{href}")
            assert image.status == 200 and image.headers["content-type"] == "image/png"
            assert page.is_hidden("#cancel-job") and page.is_hidden("#retry-job")
            # the run's plots, loaded by the browser through the API with the session cookie
            for name in (
                "results.png",
                "pr_curve.png",
                "confusion_matrix.png",
                "labels.png",
                "val_pred_0.jpg",
            ):
                img = page.locator(f'#plots figure[data-plot="{name}"] img')
                img.scroll_into_view_if_needed()
                page.wait_for_function("(el) => el.complete && el.naturalWidth > 0", arg=img.element_handle())
            page.screenshot(path=str(SHOTS / "3-job-page.png"), full_page=True)

            _batch_and_schedules(page, base, token, dataset)

            # an unknown job: the 404 page; signing out: back to the login page
            page.goto(f"{base}/ui/jobs/00000000-0000-0000-0000-000000000000")
            assert "Not found" in page.inner_text("h1")
            page.goto(f"{base}/ui/jobs")
            page.click(".logout button")
            page.wait_for_url(f"{base}/ui/login")
            page.goto(f"{base}/ui/jobs/{job_id}")
            assert "/ui/login" in page.url
            page.screenshot(path=str(SHOTS / "7-signed-out.png"), full_page=True)
        finally:
            browser.close()
    expected = (EXPECTED_422, EXPECTED_412, "status of 404", "status of 401")
    unexpected = [e for e in errors if not any(x in e for x in expected)]
    assert not unexpected, unexpected
    assert sum(EXPECTED_422 in e for e in errors) == 1, errors
    assert sum(EXPECTED_412 in e for e in errors) == 2, errors


def _batch_and_schedules(page: sync_api.Page, base: str, token: str, dataset: dict[str, Any]) -> None:
    """A batch of 2 configurations x 1 seed of the fake trainer, and a schedule, made through the API; then
    driven from their pages. (A batch's base names its validation folder: each configuration's spec is
    checked before the registry is read.)"""
    auth = {"Authorization": f"Bearer {token}"}
    job = job_body("browser-batch", "browser-ds")
    job["dataset"] = {"train": dataset["train"], "val": dataset["val"], "classes": dataset["classes"]}
    grid = [{"name": "baseline", "losses": {}}, {"name": "+AAL", "losses": {"aal": {"enabled": True}}}]
    template = {
        "name": "browser-batch",
        "base": job,
        "grid": grid,
        "seeds": 1,
    }
    r = httpx.post(f"{base}/batches", json=template, headers=auth, timeout=30)
    assert r.status_code == 201, r.text
    batch_id = r.json()["id"]
    schedule = {"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin", "template": template}
    r = httpx.post(f"{base}/schedules", json=schedule, headers=auth, timeout=30)
    assert r.status_code == 201, r.text
    schedule_id = r.json()["id"]

    page.click('header nav a[href="/ui/batches"]')
    page.wait_for_url(f"{base}/ui/batches")
    page.click(f'a[href="/ui/batches/{batch_id}"]')
    page.wait_for_url(f"{base}/ui/batches/{batch_id}")
    assert page.locator("#batch-jobs-table tbody tr").count() == 2
    page.click("#verb-pause")
    page.wait_for_selector('#batch[data-status="paused"]')
    assert page.is_hidden("#verb-pause") and page.inner_text("#action-message") == "pause: paused"
    page.screenshot(path=str(SHOTS / "4-batch-paused.png"), full_page=True)
    page.click("#verb-resume")
    page.wait_for_selector('#batch[data-status="active"]')

    # the page polls the batch: its jobs' rows turn succeeded; reloaded, the page has the results
    page.wait_for_selector(  # (wait_for_function would need 'unsafe-eval', which the CSP refuses)
        '#batch-jobs-table tr[data-status="succeeded"] ~ tr[data-status="succeeded"]', timeout=JOB_TIMEOUT_MS
    )
    page.reload()
    assert page.locator("#ablation-table tbody tr").count() == 2
    for config in ("baseline", "+AAL"):  # the fake trainer's mAP50 of 0.5, one seed: no std, no interval
        assert page.inner_text(f'#ablation-table tr[data-config="{config}"] .map50') == "0.5000"
    assert page.inner_text('#ablation-table tr[data-config="+AAL"] .delta-map50') == "+0.0000"
    assert page.locator("#bar-chart rect.bar").count() == 2
    page.screenshot(path=str(SHOTS / "5-batch-results.png"), full_page=True)
    # someone else pauses the batch after the page's one poll (the batch is done: it polls no more); the
    # page's Pause, sent with its now stale ETag, is refused with the API's 412, and the page reads the batch
    page.wait_for_timeout(6_000)
    r = httpx.post(f"{base}/batches/{batch_id}/pause", headers=auth, timeout=30)
    assert r.status_code == 202, r.text
    page.click("#verb-pause")
    page.wait_for_selector("#action-message.error")
    assert "pause refused (412)" in page.inner_text("#action-message")
    page.wait_for_selector('#batch[data-status="paused"]')

    page.click('header nav a[href="/ui/schedules"]')
    page.wait_for_url(f"{base}/ui/schedules")
    row = 'tr[data-schedule-id][data-enabled="true"]'
    page.wait_for_selector(row)
    assert "0 3 * * *" in page.inner_text("#schedules-table")
    page.click(f"{row} button.toggle")
    page.wait_for_selector('tr[data-schedule-id][data-enabled="false"]')
    assert page.inner_text("#schedules-table .next-fire") == "– (disabled)"
    page.screenshot(path=str(SHOTS / "6-schedules.png"), full_page=True)
    # someone else enables it meanwhile: the page's toggle (stale ETag) gets the 412 and re-reads the row
    got = httpx.get(f"{base}/schedules/{schedule_id}", headers=auth, timeout=30)
    r = httpx.patch(
        f"{base}/schedules/{schedule_id}",
        json={"enabled": True},
        headers={**auth, "If-Match": got.headers["ETag"]},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    page.click("#schedules-table button.toggle")
    page.wait_for_selector('tr[data-schedule-id][data-enabled="true"]')
    assert "refused (412)" in page.inner_text("#schedules-table .message")
    page.goto(f"{base}/ui/batches/00000000-0000-0000-0000-000000000000")
    assert "Not found" in page.inner_text("h1")
