"""``GET /jobs``: keyset pagination over (created_at desc, id) without duplicates or gaps, even among jobs
created at the same instant; filters by status, kind and name; bad parameters are 422 problems."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Job
from tests.service.helpers import assert_problem, set_job

Submit = Callable[..., dict[str, Any]]


def _pages(
    client: TestClient, headers: dict[str, str], limit: int, **params: Any
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        r = client.get("/jobs", params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursor never ends"


def test_pages_of_three_over_seven_jobs(client: TestClient, admin: dict[str, str], submit: Submit) -> None:
    created = [submit(name=f"job-{i}")["id"] for i in range(7)]
    pages = _pages(client, admin, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    ids = [j["id"] for p in pages for j in p]
    assert ids == list(reversed(created))  # newest first, no duplicates, no gaps
    # one page holding everything has no next cursor
    r = client.get("/jobs", params={"limit": 7}, headers=admin).json()
    assert len(r["items"]) == 7 and r["next_cursor"] is None


def test_jobs_created_at_the_same_instant_are_paged_by_id(
    client: TestClient, admin: dict[str, str], db: sessionmaker[Session]
) -> None:
    same = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    ids = [uuid.uuid4() for _ in range(5)]
    with db() as session:
        for i, job_id in enumerate(ids):
            session.add(
                Job(id=job_id, name=f"tie-{i}", kind="train", spec={}, resources={"gpus": 0}, created_at=same)
            )
        session.commit()
    pages = _pages(client, admin, limit=2)
    got = [j["id"] for p in pages for j in p]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert got == [str(i) for i in sorted(ids, reverse=True)]


def test_filters(
    client: TestClient, admin: dict[str, str], submit: Submit, db: sessionmaker[Session]
) -> None:
    a = submit(name="abl-a")
    b = submit(name="abl-b")
    c = submit(name="other")
    set_job(db, b["id"], status="running")
    set_job(db, c["id"], kind="distill")

    def ids(**params: Any) -> set[str]:
        r = client.get("/jobs", params=params, headers=admin)
        assert r.status_code == 200, r.text
        return {j["id"] for j in r.json()["items"]}

    assert ids(status="queued") == {a["id"], c["id"]}
    assert ids(status="running") == {b["id"]}
    assert ids(status="cancelled") == set()
    assert ids(kind="distill") == {c["id"]}
    assert ids(kind="train") == {a["id"], b["id"]}
    assert ids(name="abl-a") == {a["id"]}
    assert ids(name="abl") == set()  # name is exact
    assert ids(name_prefix="abl") == {a["id"], b["id"]}
    assert ids(name_prefix="abl", status="running") == {b["id"]}
    assert ids(name_prefix="%") == set()  # LIKE wildcards are literal


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"status": "sleeping"}, "status"),
        ({"kind": "finetune"}, "kind"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJ4IjogMX0"}, "cursor"),  # base64 of valid JSON that is not a cursor
        ({"name_prefix": "a\x00"}, "name_prefix"),  # NUL: PostgreSQL cannot compare it
    ],
)
def test_bad_list_parameters_are_422(
    client: TestClient, admin: dict[str, str], params: dict[str, Any], field: str
) -> None:
    assert_problem(client.get("/jobs", params=params, headers=admin), 422, field=field)
