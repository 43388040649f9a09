"""The dashboard's batches and schedules pages (``/ui/batches``, ``/ui/batches/{id}``, ``/ui/schedules``)
through ``TestClient`` on the test PostgreSQL: the ablation table and the bar chart against numbers worked
out by hand, the batch verbs and the schedule toggle as the pages' scripts call them (session cookie, CSRF
header, If-Match from the page), and 404 pages. The scripts themselves run in ``tests/browser``."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from service.dashboard.service import bar_chart
from service.db.models import Batch, Schedule
from tests.service.conftest import TokenFactory
from tests.service.dashboard.test_dashboard import login
from tests.service.helpers import assert_problem, bearer, job_body, set_job

GRID = [{"name": "baseline", "losses": {}}, {"name": "+AAL", "losses": {"aal": {"enabled": True}}}]
# seed -> (mAP50, mAP50:95, AP50 of "plane") of each configuration's job
KNOWN = {
    "baseline": {0: (0.50, 0.25, 0.60), 1: (0.52, 0.27, 0.62), 2: (0.54, 0.29, 0.64)},
    "+AAL": {0: (0.55, 0.30, 0.70), 1: (0.58, 0.31, 0.70), 2: (0.58, 0.32, 0.70)},
}


@pytest.fixture
def ui(client: TestClient) -> Iterator[TestClient]:
    """The shared client without cookies before and after the test (the session lives in its jar)."""
    client.cookies.clear()
    yield client
    client.cookies.clear()


def _batch(client: TestClient, admin: dict[str, str], dota: dict[str, str], seeds: int = 3) -> dict[str, Any]:
    base = job_body(dota, name="abl", hparams={"epochs": 2, "batch": 2, "imgsz": 64, "seed": 0})
    r = client.post("/batches", json={"base": base, "grid": GRID, "seeds": seeds}, headers=admin)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _env(env_id: str) -> dict[str, Any]:
    return {
        "id": env_id,
        "device": "cuda",
        "device_name": f"gpu-{env_id[0]}",
        "torch": "2.13.0",
        "threads": 4,
    }


def _finish_known(db: sessionmaker[Session], batch: dict[str, Any], envs: int = 1) -> None:
    """Every job succeeded with the KNOWN scores; ``envs`` 2: the last job trained on another machine."""
    for k, cell in enumerate(batch["cells"]):
        m50, m5095, plane = KNOWN[cell["config"]][cell["seed"]]
        other = envs == 2 and k == len(batch["cells"]) - 1
        set_job(
            db,
            cell["job_id"],
            status="succeeded",
            progress=1.0,
            final_map50=m50,
            final_map50_95=m5095,
            results={"ap50": {"plane": plane}, "environments": [_env("b" * 12 if other else "a" * 12)]},
        )


def _row(html: str, table: str, config: str) -> list[str]:
    """The cells' texts of ``config``'s row in the table with id ``table``."""
    section = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    row = section.split(f'<tr data-config="{config}">', 1)[1].split("</tr>", 1)[0]
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_batch_page_shows_the_ablation_table_chart_and_jobs(
    ui: TestClient,
    make_token: TokenFactory,
    admin: dict[str, str],
    dota: dict[str, str],
    db: sessionmaker[Session],
) -> None:
    writer = make_token("jobs:read", "jobs:write", name="writer")
    batch = _batch(ui, bearer(writer), dota)  # the writer's own batch: its buttons are shown
    _finish_known(db, batch)
    login(ui, writer)
    page = ui.get(f"/ui/batches/{batch['id']}")
    assert page.status_code == 200, page.text
    html = page.text

    # baseline 0.50/0.52/0.54: 0.5200 ± 0.0200; +AAL 0.55/0.58/0.58: 0.5700 ± sqrt(0.0003) = 0.0173;
    # Δ paired by seed 0.05/0.06/0.04: +0.0500 ± 4.303 * 0.01 / sqrt(3) = 0.0248 -> [+0.0252, +0.0748]
    assert _row(html, "ablation-table", "baseline") == [
        "baseline",
        "3",
        "0.5200 ± 0.0200",
        "0.2700 ± 0.0200",
        "–",
        "–",
    ]
    assert _row(html, "ablation-table", "+AAL") == [
        "+AAL",
        "3",
        "0.5700 ± 0.0173",
        "0.3100 ± 0.0100",
        "+0.0500 [+0.0252, +0.0748]",
        "+0.0400 [+0.0152, +0.0648]",  # 0.05/0.04/0.03: ± the same 0.0248
    ]
    assert _row(html, "class-table", "baseline") == ["baseline", "0.6200 ± 0.0200"]
    assert 'class="warning"' not in html  # one compute environment: nothing to note
    assert _row(html, "class-table", "+AAL") == ["+AAL", "0.7000 ± 0.0000"]
    # the same numbers as the API's results
    api = ui.get(f"/batches/{batch['id']}/results").json()
    rows = {r["config"]: r for r in api["rows"]}
    assert f"{rows['+AAL']['map50']['mean']:.4f} ± {rows['+AAL']['map50']['std']:.4f}" == "0.5700 ± 0.0173"

    # one bar per configuration; each error bar spans 2 std on an axis from 0 to 0.6 (0.57 + 0.017 rounded
    # up to a tenth) over the plot's 178 px
    bars = re.findall(r'<rect class="bar" data-config="([^"]+)"', html)
    assert bars == ["baseline", "+AAL"]
    errs = re.findall(r'<line class="err-bar" x1="[^"]+" x2="[^"]+" y1="([^"]+)" y2="([^"]+)"', html)
    assert len(errs) == 2
    for (top, bottom), std in zip(errs, (0.02, 0.0003**0.5), strict=True):
        assert float(bottom) - float(top) == pytest.approx(2 * std / 0.6 * 178, abs=0.02)

    # the jobs, each linked to its page; the buttons of an active batch
    for cell in batch["cells"]:
        assert f'href="/ui/jobs/{cell["job_id"]}"' in html
    assert re.search(r'id="verb-pause"[^>]*>', html) and "hidden>Pause" not in html
    assert re.search(r'id="verb-resume"[^>]*hidden>', html)
    assert f'data-etag="{batch["etag"].replace(chr(34), "&#34;")}"' in html


def test_bar_chart_geometry() -> None:
    chart = bar_chart("t", [("a", 0.5, 0.1), ("b", None, None), ("c", 0.2, None)], width=208, height=142)
    assert [b.name for b in chart.bars] == ["a", "c"] and chart.y_max == 0.6
    a, c = chart.bars
    assert chart.plot_height == 100 and a.height == pytest.approx(0.5 / 0.6 * 100)
    assert a.err_top is not None and a.err_bottom is not None
    assert a.err_bottom - a.err_top == pytest.approx(0.2 / 0.6 * 100)
    assert c.err_top is None and a.width == c.width == pytest.approx(78 * 0.6)
    assert bar_chart("t", [("a", None, None)]).empty


def test_batch_buttons_act_through_the_cookie_csrf_and_if_match(
    ui: TestClient,
    make_token: TokenFactory,
    admin: dict[str, str],
    dota: dict[str, str],
) -> None:
    writer = make_token("jobs:read", "jobs:write", name="writer")
    batch = _batch(ui, bearer(writer), dota, seeds=1)
    csrf = login(ui, writer)
    html = ui.get(f"/ui/batches/{batch['id']}").text
    match = re.search(r'data-etag="([^"]+)"', html)
    assert match is not None
    etag = match.group(1).replace("&#34;", '"')
    url = f"/batches/{batch['id']}"

    r = ui.post(f"{url}/pause", headers={"If-Match": etag})
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]  # no CSRF header: refused
    r = ui.post(f"{url}/pause", headers={"If-Match": etag, "X-CSRF-Token": csrf})
    assert r.status_code == 202 and r.json()["status"] == "paused"
    html = ui.get(f"/ui/batches/{batch['id']}").text
    assert 'id="batch-status">paused<' in html and re.search(r'id="verb-pause"[^>]*hidden>', html)
    assert not re.search(r'id="verb-resume"[^>]*hidden>', html)
    # the page's old ETag is stale now: 412 with the detail the page shows; an illegal verb: 409
    body = assert_problem(ui.post(f"{url}/resume", headers={"If-Match": etag, "X-CSRF-Token": csrf}), 412)
    assert "read it again" in body["detail"]
    etag = r.json()["etag"]
    r = ui.post(f"{url}/resume", headers={"If-Match": etag, "X-CSRF-Token": csrf})
    assert r.status_code == 202 and r.json()["status"] == "active"
    r = ui.post(f"{url}/cancel", headers={"If-Match": r.json()["etag"], "X-CSRF-Token": csrf})
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    body = assert_problem(ui.post(f"{url}/pause", headers={"X-CSRF-Token": csrf}), 409)
    assert body["detail"] == "a cancelled batch cannot pause"
    html = ui.get(f"/ui/batches/{batch['id']}").text
    assert all(re.search(rf'id="verb-{v}"[^>]*hidden>', html) for v in ("pause", "resume", "cancel"))


def test_batches_list_and_read_only_users(
    ui: TestClient,
    make_token: TokenFactory,
    admin: dict[str, str],
    dota: dict[str, str],
    db: sessionmaker[Session],
) -> None:
    batch = _batch(ui, admin, dota, seeds=2)
    set_job(db, batch["cells"][0]["job_id"], status="succeeded", progress=1.0, final_map50=0.5)
    set_job(db, batch["cells"][1]["job_id"], status="running", progress=0.5)
    login(ui, make_token("jobs:read"))
    html = ui.get("/ui/batches").text
    assert f'href="/ui/batches/{batch["id"]}">abl</a>' in html
    counts = dict(re.findall(r'data-count="(\w+)">\w+ (\d+)<', html))
    assert counts == {"queued": "2", "running": "1", "succeeded": "1"}
    assert 'value="0.3750"' in html and ">37%<" in html  # (1 + 0.5 + 0 + 0) / 4
    assert 'href="/ui/batches"' in html and 'href="/ui/schedules"' in html  # the navigation
    page = ui.get(f"/ui/batches/{batch['id']}").text
    assert "batch-verb" not in page  # no jobs:write, no buttons


def test_unknown_batch_is_a_404_page(ui: TestClient, make_token: TokenFactory) -> None:
    login(ui, make_token("jobs:read"))
    for batch_id in (str(uuid.uuid4()), "not-a-uuid"):
        r = ui.get(f"/ui/batches/{batch_id}")
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
        assert "Not found" in r.text and batch_id in r.text
    assert ui.get(f"/ui/schedules/{uuid.uuid4()}").status_code == 404
    ui.cookies.clear()
    assert ui.get("/ui/batches", follow_redirects=False).status_code == 303


def test_schedules_page_and_its_toggle(
    ui: TestClient,
    make_token: TokenFactory,
    admin: dict[str, str],
    dota: dict[str, str],
    db: sessionmaker[Session],
) -> None:
    writer = make_token("jobs:read", "jobs:write", name="writer")
    template = {"base": job_body(dota, name="nightly"), "grid": GRID, "seeds": 1}
    body = {"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "template": template}
    r = ui.post("/schedules", json=body, headers=bearer(writer))  # the writer's own schedule
    assert r.status_code == 201, r.text
    schedule = r.json()
    batch = _batch(ui, admin, dota, seeds=1)
    fired = dt.datetime(2024, 5, 1, 0, 30, tzinfo=dt.timezone.utc)
    with db() as session:
        row = session.get_one(Batch, uuid.UUID(batch["id"]))
        row.schedule_id, row.fire_time = uuid.UUID(schedule["id"]), fired
        s = session.get_one(Schedule, uuid.UUID(schedule["id"]))
        s.last_fire_at, s.last_fire_status = fired, "created"
        session.commit()
    csrf = login(ui, writer)

    html = ui.get("/ui/schedules").text
    assert "<code>30 2 * * *</code>" in html and "Europe/Berlin" in html
    nxt = dt.datetime.fromisoformat(schedule["next_fire_at"])
    assert nxt.strftime("%Y-%m-%d %H:%M") in html
    assert "2024-05-01 00:30" in html and ">created</span>" in html
    assert f'href="/ui/batches/{batch["id"]}"' in html
    assert ">Disable</button>" in html
    etag = re.search(r'data-etag="([^"]+)"', html)
    assert etag is not None

    url = f"/schedules/{schedule['id']}"
    if_match = {"If-Match": etag.group(1).replace("&#34;", '"')}
    assert ui.patch(url, json={"enabled": False}, headers=if_match).status_code == 403  # no CSRF header
    r = ui.patch(url, json={"enabled": False}, headers={**if_match, "X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["enabled"] is False
    html = ui.get("/ui/schedules").text
    assert 'data-enabled="false"' in html and "– (disabled)" in html and ">Enable</button>" in html
    r = ui.patch(url, json={"enabled": True}, headers={**if_match, "X-CSRF-Token": csrf})
    assert_problem(r, 412)  # the page's ETag before the first toggle


def test_batch_page_notes_jobs_trained_in_different_compute_environments(
    ui: TestClient, make_token: TokenFactory, dota: dict[str, str], db: sessionmaker[Session]
) -> None:
    writer = make_token("jobs:read", "jobs:write", name="writer")
    batch = _batch(ui, bearer(writer), dota)
    _finish_known(db, batch, envs=2)
    login(ui, writer)
    html = ui.get(f"/ui/batches/{batch['id']}").text
    (note,) = re.findall(r'<p class="warning" role="note">(.*?)</p>', html, re.S)
    last = batch["cells"][-1]
    assert "2 compute environments" in note
    assert f"bbbbbbbbbbbb (gpu-b, torch 2.13.0, 4 threads): {last['config']} seed {last['seed']}" in note
