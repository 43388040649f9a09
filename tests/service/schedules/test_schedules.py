"""``/schedules`` on a real PostgreSQL database: create with ``next_fire_at``, field-named 422s, and
``If-Match`` on PATCH / DELETE (428 without, 412 stale)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient

from tests.service.helpers import assert_problem, job_body


def _body(dota: dict[str, str], **overrides: Any) -> dict[str, Any]:
    template = {"base": job_body(dota, name="nightly"), "grid": [{"name": "baseline"}], "seeds": 1}
    body: dict[str, Any] = {"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}
    body["template"] = template
    body.update(overrides)
    return body


def test_create_read_patch_delete(client: TestClient, admin: dict[str, str], dota: dict[str, str]) -> None:
    r = client.post("/schedules", json=_body(dota), headers=admin)
    assert r.status_code == 201, r.text
    s = r.json()
    nxt = dt.datetime.fromisoformat(s["next_fire_at"])
    local = nxt.astimezone(dt.timezone(dt.timedelta(hours=0)))
    assert nxt > dt.datetime.now(dt.timezone.utc) and local.minute == 30
    assert s["last_fire_at"] is None and s["last_batch_id"] is None
    got = client.get(f"/schedules/{s['id']}", headers=admin)
    assert got.headers["ETag"] == s["etag"]
    assert [x["name"] for x in client.get("/schedules", headers=admin).json()["items"]] == ["nightly"]

    url = f"/schedules/{s['id']}"
    assert_problem(client.patch(url, json={"enabled": False}, headers=admin), 428)
    assert_problem(client.patch(url, json={"enabled": False}, headers={**admin, "If-Match": '"x.1"'}), 412)
    r = client.patch(url, json={"enabled": False}, headers={**admin, "If-Match": s["etag"]})
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["next_fire_at"] is None
    new_etag = r.headers["ETag"]
    assert new_etag != s["etag"]
    assert_problem(
        client.patch(url, json={"cron": "61 * * * *"}, headers={**admin, "If-Match": new_etag}), 422, "cron"
    )

    assert_problem(client.delete(url, headers=admin), 428)
    assert_problem(client.delete(url, headers={**admin, "If-Match": s["etag"]}), 412)
    assert client.delete(url, headers={**admin, "If-Match": new_etag}).status_code == 204
    assert_problem(client.get(url, headers=admin), 404)


def test_invalid_cron_timezone_and_template_name_the_field(
    client: TestClient, admin: dict[str, str], dota: dict[str, str]
) -> None:
    assert_problem(client.post("/schedules", json=_body(dota, cron="every day"), headers=admin), 422, "cron")
    r = client.post("/schedules", json=_body(dota, timezone="Mars/Olympus"), headers=admin)
    assert_problem(r, 422, "timezone")
    bad = {"base": job_body(dota), "grid": [{"name": "x", "losses": {"ad": {"weight": "no"}}}]}
    r = client.post("/schedules", json=_body(dota, template=bad), headers=admin)
    assert_problem(r, 422, "template.grid[0].losses.ad.weight")
    r = client.post("/schedules", json=_body(dota, template={"base": {}, "grid": "daik"}), headers=admin)
    assert_problem(r, 422, "template.base.name")


def test_latest_succeeded_teacher_is_accepted(
    client: TestClient, admin: dict[str, str], dota: dict[str, str]
) -> None:
    base = job_body(dota, kind="distill", teacher={"latest_succeeded": "teacher-run"})
    r = client.post("/schedules", json=_body(dota, template={"base": base, "grid": "daik"}), headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["template"]["base"]["teacher"] == {"latest_succeeded": "teacher-run"}


def test_a_template_whose_grid_distils_needs_a_teacher(
    client: TestClient, admin: dict[str, str], dota: dict[str, str]
) -> None:
    """Checked when the schedule is made, not at 2 a.m. when it fires: the `daik` grid's DAIK row distils."""
    template = {"base": job_body(dota, name="nightly"), "grid": "daik", "seeds": 1}
    body = {"name": "no-teacher", "cron": "0 2 * * *", "timezone": "UTC", "template": template}
    r = client.post("/schedules", json=body, headers=admin)
    assert_problem(r, 422, field="template.grid[2]")
    assert "needs a teacher" in r.json()["detail"]
