"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright's Python package,
against ``daik api`` and ``daik worker`` running on PostgreSQL and Redis (the scripted fake trainer keeps
the job to a few seconds; it leaves a ``gallery.json`` as the real trainer does).

Sign in with a token, submit a job through the form (first with a bad value, whose field error the API
names and the form shows next to the field), watch the job go to ``succeeded`` in the jobs list (a row the
list did not have, added and updated from the live feed), open its page: loss curves, mAP, per-class AP,
checkpoints and the gallery. No console errors other than the one expected 422; screenshots go to
``test-artifacts/browser/``.

Skipped, saying why, when ``/usr/bin/chromium`` or the ``playwright`` package is missing (Playwright's own
browser download is not used)."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import httpx
import pytest

from service.local import Supervisor, daik_command
from tests.e2e.conftest import logs_of, start_api_on_servers
from tests.e2e.flow import make_dataset, wait_ready

CHROMIUM = Path("/usr/bin/chromium")
FAKE_TRAINER = Path(__file__).parents[1] / "worker" / "fake_trainer.py"
SHOTS = Path(__file__).parents[2] / "test-artifacts" / "browser"
JOB_TIMEOUT_MS = 180_000  # a worker importing torch on a small shared machine, then ~3 s of fake training
EXPECTED_422 = "the server responded with a status of 422"

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
        env={"DAIK_TRAINER_COMMAND": f"{sys.executable} {FAKE_TRAINER}", "DAIK_FAKE_TRAINER": "--sleep 1.5"},
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
        _drive(base, token)
    except (AssertionError, httpx.HTTPError, sync_api.Error) as err:
        raise AssertionError(f"{err}\n{logs_of(supervisor)}") from None


def _drive(base: str, token: str) -> None:
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
            page.fill('[name="dataset"]', "browser-ds")
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
            page.screenshot(path=str(SHOTS / "3-job-page.png"), full_page=True)

            # an unknown job: the 404 page; signing out: back to the login page
            page.goto(f"{base}/ui/jobs/00000000-0000-0000-0000-000000000000")
            assert "Not found" in page.inner_text("h1")
            page.goto(f"{base}/ui/jobs")
            page.click(".logout button")
            page.wait_for_url(f"{base}/ui/login")
            page.goto(f"{base}/ui/jobs/{job_id}")
            assert "/ui/login" in page.url
            page.screenshot(path=str(SHOTS / "4-signed-out.png"), full_page=True)
        finally:
            browser.close()
    unexpected = [
        e for e in errors if EXPECTED_422 not in e and "status of 404" not in e and "status of 401" not in e
    ]
    assert not unexpected, unexpected
    assert sum(EXPECTED_422 in e for e in errors) == 1, errors
