"""Owners and limits through the API on the test PostgreSQL: a job, batch or schedule belongs to the token
that created it; another ``jobs:write`` token gets a 403 problem on its cancel / retry / verbs / edits, an
``admin`` token may act on any, and a row without an owner is admin-owned. A schedule whose owner's token
is revoked stops firing and says why. A batch (or a schedule's template) has at most
``DAIK_MAX_BATCH_CELLS`` configurations x seeds."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import ApiToken, Batch, Job
from service.main import create_app
from service.settings import Settings
from tests.service.conftest import TokenFactory, make_settings
from tests.service.helpers import assert_problem, bearer, job_body, set_job
from worker.schedules import dispatch_schedules

WRITER = ("jobs:read", "jobs:write")
GRID = [{"name": "baseline"}, {"name": "+AAL", "losses": {"aal": {"enabled": True}}}]


def _token_id(db: sessionmaker[Session], name: str) -> int:
    with db() as s:
        return s.scalars(select(ApiToken.id).where(ApiToken.name == name)).one()


def _batch_body(dota: dict[str, str], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"base": job_body(dota, name="own"), "grid": GRID, "seeds": 1}
    body.update(overrides)
    return body


def test_only_the_owner_or_an_admin_cancels_or_retries_a_job(
    client: TestClient,
    make_token: TokenFactory,
    admin: dict[str, str],
    dota: dict[str, str],
    db: sessionmaker[Session],
) -> None:
    alice = bearer(make_token(*WRITER, name="alice"))
    bob = bearer(make_token(*WRITER, name="bob"))
    r = client.post("/jobs", json=job_body(dota), headers=alice)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["owner_token_id"] == _token_id(db, "alice")

    body = assert_problem(client.post(f"/jobs/{job['id']}/cancel", headers=bob), 403)
    assert "belongs to another token" in body["detail"]
    with db() as s:
        assert s.get_one(Job, job["id"]).status == "queued"  # nothing changed
    r = client.post(f"/jobs/{job['id']}/cancel", headers=alice)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"

    assert_problem(client.post(f"/jobs/{job['id']}/retry", headers=bob), 403)
    with db() as s:
        assert s.get_one(Job, job["id"]).status == "cancelled"
    r = client.post(f"/jobs/{job['id']}/retry", headers=admin)  # admin may act on any job
    assert r.status_code == 202 and r.json()["status"] == "queued"
    r = client.post(f"/jobs/{job['id']}/cancel", headers=admin)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    r = client.post(f"/jobs/{job['id']}/retry", headers=alice)
    assert r.status_code == 202 and r.json()["status"] == "queued"

    # no owner (made before owners were recorded): admin-owned
    set_job(db, job["id"], created_by=None)
    assert_problem(client.post(f"/jobs/{job['id']}/cancel", headers=alice), 403)
    assert client.post(f"/jobs/{job['id']}/cancel", headers=admin).status_code == 202


def test_only_the_owner_or_an_admin_steers_a_batch(
    client: TestClient,
    make_token: TokenFactory,
    admin: dict[str, str],
    dota: dict[str, str],
    db: sessionmaker[Session],
) -> None:
    alice = bearer(make_token(*WRITER, name="alice"))
    bob = bearer(make_token(*WRITER, name="bob"))
    r = client.post("/batches", json=_batch_body(dota), headers=alice)
    assert r.status_code == 201, r.text
    batch = r.json()
    alice_id = _token_id(db, "alice")
    assert batch["owner_token_id"] == alice_id
    with db() as s:  # its jobs are alice's too: she may cancel each of them
        assert {j.created_by for j in s.scalars(select(Job))} == {alice_id}

    for verb in ("pause", "cancel", "rerun-failed"):
        assert_problem(client.post(f"/batches/{batch['id']}/{verb}", headers=bob), 403)
    assert client.get(f"/batches/{batch['id']}", headers=bob).json()["status"] == "active"  # reads are open
    r = client.post(f"/batches/{batch['id']}/pause", headers=alice)
    assert r.status_code == 202 and r.json()["status"] == "paused"
    r = client.post(f"/batches/{batch['id']}/cancel", headers=admin)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"


def test_only_the_owner_or_an_admin_edits_a_schedule(
    client: TestClient, make_token: TokenFactory, admin: dict[str, str], dota: dict[str, str]
) -> None:
    alice = bearer(make_token(*WRITER, name="alice"))
    bob = bearer(make_token(*WRITER, name="bob"))
    body = {"name": "nightly", "cron": "0 2 * * *", "template": _batch_body(dota)}
    r = client.post("/schedules", json=body, headers=alice)
    assert r.status_code == 201, r.text
    url, etag = f"/schedules/{r.json()['id']}", r.json()["etag"]
    assert_problem(client.patch(url, json={"enabled": False}, headers={**bob, "If-Match": etag}), 403)
    assert_problem(client.delete(url, headers={**bob, "If-Match": etag}), 403)
    r = client.patch(url, json={"enabled": False}, headers={**alice, "If-Match": etag})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert client.delete(url, headers={**admin, "If-Match": r.headers["ETag"]}).status_code == 204


def test_a_revoked_owner_stops_its_schedule_and_the_api_says_why(
    client: TestClient,
    make_token: TokenFactory,
    admin: dict[str, str],
    dota: dict[str, str],
    db: sessionmaker[Session],
    settings: Settings,
) -> None:
    alice = bearer(make_token(*WRITER, name="alice"))
    body = {"name": "nightly", "cron": "*/5 * * * *", "template": _batch_body(dota)}
    r = client.post("/schedules", json=body, headers=alice)
    assert r.status_code == 201, r.text
    schedule = r.json()
    revoked = client.post(f"/tokens/{_token_id(db, 'alice')}/revoke", headers=admin)
    assert revoked.status_code == 200

    due = dt.datetime.fromisoformat(schedule["next_fire_at"]) + dt.timedelta(seconds=1)
    fired = dispatch_schedules(db, settings, now=due)  # the worker's dispatcher, on the API's database
    assert len(fired) == 1 and fired[0].batch_id is None
    with db() as s:
        assert s.scalar(select(func.count()).select_from(Batch)) == 0
    got = client.get(f"/schedules/{schedule['id']}", headers=admin).json()
    assert got["last_fire_status"] == "failed" and got["enabled"] is False and got["next_fire_at"] is None
    assert "owner token 'alice'" in got["last_fire_error"] and "revoked" in got["last_fire_error"]
    assert got["last_batch_id"] is None and got["etag"] != schedule["etag"]


# ------------------------------------------------------------------------------------------------- limits


def test_the_default_cap_on_cells_x_seeds_is_500(
    client: TestClient, admin: dict[str, str], dota: dict[str, str]
) -> None:
    assert Settings().max_batch_cells == 500
    grid = [{"name": f"c{i}"} for i in range(251)]
    body = assert_problem(
        client.post("/batches", json=_batch_body(dota, grid=grid, seeds=2), headers=admin), 422
    )
    assert {e["field"] for e in body["errors"]} == {"grid", "seeds"}
    assert "251 configurations x 2 seeds = 502 runs" in body["detail"] and "500" in body["detail"]
    # a product of a few long lists is a vast grid: refused before it is built, at once
    product = {"product": {"ad.weight": list(range(1000)), "ld.weight": list(range(1000))}}
    started = time.monotonic()
    r = client.post("/batches", json=_batch_body(dota, grid=product), headers=admin)
    assert_problem(r, 422, "grid")
    assert "1000000 configurations x 1 seeds" in r.json()["detail"]
    assert time.monotonic() - started < 10  # building a million cells would take minutes
    template = _batch_body(dota, grid=grid, seeds=2)
    r = client.post(
        "/schedules", json={"name": "big", "cron": "0 2 * * *", "template": template}, headers=admin
    )
    assert_problem(r, 422, "template.grid")
    assert_problem(r, 422, "template.seeds")
    assert client.get("/batches", headers=admin).json()["items"] == []


def test_the_cap_is_a_setting(
    pg_url: str, roots: Path, make_token: TokenFactory, dota: dict[str, str]
) -> None:
    admin = bearer(make_token("admin"))
    with TestClient(create_app(make_settings(pg_url, roots, max_batch_cells=3))) as c:
        assert_problem(c.post("/batches", json=_batch_body(dota, seeds=2), headers=admin), 422, "seeds")
        r = c.post("/batches", json=_batch_body(dota, grid=[{"name": "baseline"}], seeds=3), headers=admin)
        assert r.status_code == 201 and r.json()["jobs"] == 3  # 1 x 3: at the cap
