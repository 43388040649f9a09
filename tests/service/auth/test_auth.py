"""Bearer tokens: 401 without a valid token (missing, unknown, expired, revoked), 403 without the scope,
admin implies every scope, tokens stored hashed and never logged, the bootstrap token, ``daik token
create``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.auth.service import TOKEN_CACHE_TTL_SECONDS, TokenCache, create_token_cli, revoke_token
from service.db.base import utcnow
from service.db.models import ApiToken
from service.main import create_app
from service.settings import Settings
from tests.service.conftest import TokenFactory, make_settings
from tests.service.helpers import assert_problem, bearer


def test_no_token_is_401_with_challenge(client: TestClient) -> None:
    r = client.get("/jobs")
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_unknown_token_is_401(client: TestClient) -> None:
    assert_problem(client.get("/jobs", headers=bearer("daik_not-a-real-token")), 401)
    assert_problem(client.get("/jobs", headers={"Authorization": "Basic dXNlcjpwdw=="}), 401)


def test_scope_is_checked(client: TestClient, make_token: TokenFactory) -> None:
    reader = bearer(make_token("jobs:read"))
    assert client.get("/jobs", headers=reader).status_code == 200
    assert_problem(client.post("/jobs", json={}, headers=reader), 403)
    assert_problem(client.get("/datasets", headers=reader), 403)

    writer = bearer(make_token("jobs:write"))
    assert_problem(client.get("/jobs", headers=writer), 403)  # write does not imply read

    datasets = bearer(make_token("datasets:read"))
    assert client.get("/datasets", headers=datasets).status_code == 200
    assert_problem(client.post("/datasets", json={}, headers=datasets), 403)


def test_admin_implies_every_scope(client: TestClient, admin: dict[str, str]) -> None:
    for path in ("/jobs", "/datasets"):
        assert client.get(path, headers=admin).status_code == 200
    # reaches body validation, so the scope check passed
    assert_problem(client.post("/datasets", json={}, headers=admin), 422, field="name")


def test_expired_token_is_401(client: TestClient, make_token: TokenFactory) -> None:
    expired = make_token("admin", expires_in=dt.timedelta(seconds=-1))
    body = assert_problem(client.get("/jobs", headers=bearer(expired)), 401)
    assert "expired" in body["detail"]
    valid = make_token("admin", expires_in=dt.timedelta(hours=1))
    assert client.get("/jobs", headers=bearer(valid)).status_code == 200


def test_revoked_token_is_401(
    client: TestClient, app: FastAPI, make_token: TokenFactory, db: sessionmaker[Session]
) -> None:
    """Revoked outside this process (here: directly in the database), a token verified in the last
    TOKEN_CACHE_TTL_SECONDS is still accepted from the cache; after the TTL it is rejected."""
    cache: TokenCache = app.state.token_cache
    assert cache.ttl == TOKEN_CACHE_TTL_SECONDS <= 10
    now = [time.monotonic()]
    real_clock = cache.clock
    cache.clock = lambda: now[0]
    try:
        token = make_token("admin")
        assert client.get("/jobs", headers=bearer(token)).status_code == 200
        with db() as session:
            row = session.scalars(select(ApiToken)).one()
            assert revoke_token(session, row.id) is not None
            session.commit()
        now[0] += cache.ttl / 2
        assert client.get("/jobs", headers=bearer(token)).status_code == 200  # within the TTL: cached
        now[0] += cache.ttl
        body = assert_problem(client.get("/jobs", headers=bearer(token)), 401)
        assert "revoked" in body["detail"]
    finally:
        cache.clock = real_clock


def test_cached_token_still_expires_on_time(
    client: TestClient, app: FastAPI, make_token: TokenFactory, db: sessionmaker[Session]
) -> None:
    token = make_token("admin", expires_in=dt.timedelta(hours=1))
    assert client.get("/jobs", headers=bearer(token)).status_code == 200  # now cached
    cache: TokenCache = app.state.token_cache
    digest = hashlib.sha256(token.encode()).hexdigest()
    cached = cache.lookup(digest)
    assert cached is not None
    cached.expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)  # as if an hour went by
    body = assert_problem(client.get("/jobs", headers=bearer(token)), 401)
    assert "expired" in body["detail"]


def test_token_cache_ttl_and_forget() -> None:
    now = [0.0]
    cache = TokenCache(ttl=5.0, clock=lambda: now[0])
    token = ApiToken(id=7, name="t", token_hash="h", prefix="p", scopes=["admin"], last_used_at=utcnow())
    cache.store("h", token)
    assert cache.lookup("h") is token
    now[0] = 4.9
    assert cache.lookup("h") is token
    now[0] = 5.0
    assert cache.lookup("h") is None  # stale: the database is asked again
    now[0] = 0.0
    cache.forget(8)
    assert cache.lookup("h") is token
    cache.forget(7)
    assert cache.lookup("h") is None
    # a last_used_at write due: the database is asked (which writes it)
    cache.store(
        "h", ApiToken(id=7, name="t", token_hash="h", prefix="p", scopes=["admin"], last_used_at=None)
    )
    assert cache.lookup("h") is None


def test_token_is_stored_hashed_and_use_is_recorded(
    client: TestClient, make_token: TokenFactory, db: sessionmaker[Session]
) -> None:
    token = make_token("jobs:read")
    assert token.startswith("daik_") and len(token) >= 5 + 43  # token_urlsafe(32) is 43 characters
    with db() as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in (row.token_hash, row.prefix) and token.startswith(row.prefix)
        assert row.last_used_at is None
    before = dt.datetime.now(dt.timezone.utc)
    assert client.get("/jobs", headers=bearer(token)).status_code == 200
    with db() as session:
        used = session.scalars(select(ApiToken)).one().last_used_at
    assert used is not None and used >= before - dt.timedelta(seconds=1)


def test_tokens_never_reach_the_log(
    client: TestClient, make_token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_token("admin")
    bad = "daik_" + "x" * 43
    with caplog.at_level(logging.DEBUG):
        client.get("/jobs", headers=bearer(good))
        client.get("/jobs", headers=bearer(bad))
        client.post("/jobs", json={"name": good}, headers=bearer(good))  # a 422 that echoes nothing secret
    assert good not in caplog.text and bad not in caplog.text


def test_open_endpoints_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_bootstrap_token_is_registered_as_admin(pg_url: str, roots: Path, db: sessionmaker[Session]) -> None:
    secret = "daik_bootstrap-" + "s" * 40
    settings = make_settings(pg_url, roots, bootstrap_token=secret)
    with TestClient(create_app(settings)) as c:
        assert c.get("/jobs", headers=bearer(secret)).status_code == 200
        assert c.get("/datasets", headers=bearer(secret)).status_code == 200
        assert_problem(c.get("/jobs", headers=bearer(secret + "x")), 401)
    with db() as session:
        rows = session.scalars(select(ApiToken)).all()
    assert [r.scopes for r in rows] == [["admin"]]
    assert rows[0].token_hash == hashlib.sha256(secret.encode()).hexdigest()
    # starting again with the same token registers nothing twice
    with TestClient(create_app(settings)) as c:
        assert c.get("/jobs", headers=bearer(secret)).status_code == 200
    with db() as session:
        assert len(session.scalars(select(ApiToken)).all()) == 1


def _windows(secret: str, width: int = 6) -> set[str]:
    """Every ``width``-character piece of ``secret``: none may appear where the secret must not."""
    return {secret[i : i + width] for i in range(len(secret) - width + 1)}


def test_the_bootstrap_token_is_never_stored_or_listed_in_the_clear(
    pg_url: str, roots: Path, db: sessionmaker[Session], make_token: TokenFactory
) -> None:
    secret = secrets.token_urlsafe(32)
    with TestClient(create_app(make_settings(pg_url, roots, bootstrap_token=secret))) as c:
        assert c.get("/jobs", headers=bearer(secret)).status_code == 200
        listed = c.get("/tokens", headers=bearer(make_token("admin"))).json()["items"]
    bootstrap = [t for t in listed if t["name"] == "bootstrap"]
    assert len(bootstrap) == 1 and bootstrap[0]["prefix"] == "(bootstrap)"
    text = json.dumps(listed)
    assert not any(piece in text for piece in _windows(secret))  # not even its first characters
    with db() as session:
        row = session.scalars(select(ApiToken).where(ApiToken.name == "bootstrap")).one()
        stored = " ".join(str(v) for v in (row.name, row.prefix, row.token_hash, row.scopes))
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(piece in stored for piece in _windows(secret))
    # and the database refuses a bootstrap row that keeps a part of its token
    with db() as session, pytest.raises(IntegrityError, match="ck_api_token_bootstrap_prefix"):
        session.add(ApiToken(name="bootstrap", token_hash="h" * 64, prefix=secret[:12], scopes=["admin"]))
        session.flush()


def test_a_short_bootstrap_token_is_refused_without_echoing_it(pg_url: str, roots: Path) -> None:
    short = "x7-Short-Bootstrap-Secret-31chr"  # 31 characters
    assert len(short) == 31
    with pytest.raises(ValidationError) as err:
        make_settings(pg_url, roots, bootstrap_token=short)
    assert "bootstrap_token" in str(err.value) and "at least 32 characters" in str(err.value)
    assert short not in str(err.value) and short[:8] not in str(err.value)
    assert make_settings(pg_url, roots, bootstrap_token=short + "y").bootstrap_token is not None  # 32: fine


def test_the_bootstrap_name_is_reserved(
    client: TestClient,
    admin: dict[str, str],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    db: sessionmaker[Session],
) -> None:
    # the API revokes every other token of that name when it registers DAIK_BOOTSTRAP_TOKEN
    r = client.post("/tokens", json={"name": "bootstrap", "scopes": ["jobs:read"]}, headers=admin)
    assert_problem(r, 422, "name")
    assert create_token_cli(settings, name="bootstrap", scopes=["jobs:read"], expires_days=None) != 0
    out, err = capsys.readouterr()
    assert out == "" and "reserved" in err
    with db() as session:
        assert session.scalars(select(ApiToken.name)).all() == ["test"]  # the admin fixture's only


def test_token_cli_prints_a_working_token_once(
    settings: Settings, client: TestClient, capsys: pytest.CaptureFixture[str], db: sessionmaker[Session]
) -> None:
    assert create_token_cli(settings, name="ci", scopes=["jobs:read"], expires_days=2.0) == 0
    out, _err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("daik_")
    token = lines[0]
    assert client.get("/jobs", headers=bearer(token)).status_code == 200
    assert_problem(client.get("/datasets", headers=bearer(token)), 403)
    with db() as session:
        row = session.scalars(select(ApiToken)).one()
    assert row.name == "ci" and row.scopes == ["jobs:read"]
    assert row.expires_at is not None
    left = row.expires_at - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(days=1.9) < left <= dt.timedelta(days=2)


def test_token_cli_rejects_an_unknown_scope(
    settings: Settings, capsys: pytest.CaptureFixture[str], db: sessionmaker[Session]
) -> None:
    assert create_token_cli(settings, name="ci", scopes=["jobs:fly"], expires_days=None) != 0
    out, err = capsys.readouterr()
    assert out == "" and "jobs:fly" in err
    with db() as session:
        assert session.scalars(select(ApiToken)).all() == []


def test_tokens_api_creates_lists_and_revokes(
    client: TestClient, admin: dict[str, str], make_token: TokenFactory
) -> None:
    created = client.post("/tokens", json={"name": "dash", "scopes": ["jobs:read"]}, headers=admin)
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("daik_") and created.json()["scopes"] == ["jobs:read"]
    assert client.get("/jobs", headers=bearer(token)).status_code == 200
    listed = client.get("/tokens", headers=admin).json()["items"]
    assert {t["name"] for t in listed} == {"test", "dash"}
    assert all("token" not in t and "token_hash" not in t for t in listed)  # shown once, never again

    revoked = client.post(f"/tokens/{created.json()['id']}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_problem(client.get("/jobs", headers=bearer(token)), 401)

    assert_problem(
        client.post("/tokens", json={"name": "x", "scopes": ["root"]}, headers=admin), 422, "scopes.0"
    )
    assert_problem(client.get("/tokens", headers=bearer(make_token("jobs:read", "jobs:write"))), 403)
