"""Bearer tokens: creation, hashing, scopes, expiry, revocation, the bootstrap token and the CLI.

A token is ``daik_`` + ``secrets.token_urlsafe(32)`` (256 random bits), shown once and stored only as its
SHA-256: a fast hash is enough for a secret that long (no dictionary to guess from). Tokens never reach a
log; the first characters (``prefix``) of a generated token tell tokens apart in listings. The bootstrap
token (``DAIK_BOOTSTRAP_TOKEN``, at least 32 characters) is chosen by a person, so no part of it is kept:
its row shows :data:`BOOTSTRAP_PREFIX` instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import BOOTSTRAP_TOKEN_NAME, BOOTSTRAP_TOKEN_PREFIX, ApiToken
from service.problems import Problem
from service.settings import Settings

__all__ = [
    "BOOTSTRAP_NAME",
    "BOOTSTRAP_PREFIX",
    "SCOPES",
    "TOKEN_CACHE_TTL_SECONDS",
    "TOKEN_PREFIX",
    "TokenCache",
    "authenticate",
    "authenticate_cached",
    "authenticate_id_cached",
    "check_token_name",
    "create_token",
    "create_token_cli",
    "ensure_bootstrap_token",
    "generate_token",
    "has_scope",
    "hash_token",
    "owns",
    "require_owner",
    "revoke_token",
    "session_cache_key",
    "validate_scopes",
]

log = logging.getLogger(__name__)

TOKEN_PREFIX = "daik_"
ADMIN = "admin"
SCOPES: tuple[str, ...] = ("jobs:read", "jobs:write", "datasets:read", "datasets:write", ADMIN)
BOOTSTRAP_NAME = BOOTSTRAP_TOKEN_NAME
#: what the bootstrap token's row shows as its prefix: no character of the token itself
BOOTSTRAP_PREFIX = BOOTSTRAP_TOKEN_PREFIX
# last_used_at is written at most once per this interval, so reads do not each cost a write
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)
# a verified token is trusted from the in-process cache for at most this long: a revocation made by another
# process (or directly in the database) takes effect within this many seconds; one made through this
# process's API, and an expiry, take effect at once
TOKEN_CACHE_TTL_SECONDS = 5.0


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes, deduplicated in the canonical order; ``ValueError`` naming an unknown one."""
    given = list(scopes)
    if not given:
        raise ValueError("at least one scope is needed")
    for s in given:
        if s not in SCOPES:
            raise ValueError(f"unknown scope {s!r} (known: {', '.join(SCOPES)})")
    return [s for s in SCOPES if s in given]


def has_scope(token: ApiToken, scope: str) -> bool:
    """``admin`` implies every scope."""
    return ADMIN in token.scopes or scope in token.scopes


def owns(token: ApiToken, owner_id: int | None) -> bool:
    """Whether ``token`` may steer (cancel, retry, pause, edit ...) a job, batch or schedule whose owner is
    the token ``owner_id``: its own, or any with ``admin``. A null owner (rows made before owners were
    recorded) is admin-owned."""
    return ADMIN in token.scopes or (owner_id is not None and owner_id == token.id)


def require_owner(token: ApiToken, *, owner_id: int | None, what: str) -> None:
    """A 403 problem unless ``token`` :func:`owns` ``what`` (e.g. ``job 1f3e...``)."""
    if not owns(token, owner_id):
        owner = "an admin" if owner_id is None else "another token"
        raise Problem(
            403, f"{what} belongs to {owner}: only its owner or a token with the scope 'admin' may change it"
        )


def check_token_name(name: str) -> str:
    """The name of a new token, stripped; ``ValueError`` when empty or the bootstrap token's (reserved:
    the API revokes every other token of that name when it registers ``DAIK_BOOTSTRAP_TOKEN``)."""
    name = name.strip()
    if not name:
        raise ValueError("must not be empty")
    if name == BOOTSTRAP_NAME:
        raise ValueError(f"{BOOTSTRAP_NAME!r} is reserved for DAIK_BOOTSTRAP_TOKEN")
    return name


def create_token(
    session: Session, name: str, *, scopes: Sequence[str], expires_in: dt.timedelta | None = None
) -> tuple[ApiToken, str]:
    """Insert a token row (flushed, not committed) and return it with the plain token, which is not
    stored anywhere. ``ValueError`` for a reserved or empty name or an unknown scope."""
    name = check_token_name(name)
    plain = generate_token()
    row = ApiToken(
        name=name,
        token_hash=hash_token(plain),
        prefix=plain[:12],
        scopes=validate_scopes(scopes),
        expires_at=utcnow() + expires_in if expires_in is not None else None,
    )
    session.add(row)
    session.flush()
    return row, plain


def revoke_token(session: Session, token_id: int) -> ApiToken | None:
    """Mark a token revoked (idempotent: the first revocation time stays); None when there is none."""
    row = session.get(ApiToken, token_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def _unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="daik"'})


def ensure_bootstrap_token(session: Session, settings: Settings) -> ApiToken | None:
    """Register ``DAIK_BOOTSTRAP_TOKEN`` (scope admin) and revoke earlier bootstrap tokens it replaced.
    Commits. A bootstrap token revoked through the API stays revoked."""
    if settings.bootstrap_token is None:
        return None
    plain = settings.bootstrap_token.get_secret_value()
    digest = hash_token(plain)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).one_or_none()
    if row is None:
        row = ApiToken(name=BOOTSTRAP_NAME, token_hash=digest, prefix=BOOTSTRAP_PREFIX, scopes=[ADMIN])
        session.add(row)
        try:
            session.flush()
        except IntegrityError:  # another API process registered it at the same moment
            session.rollback()
            row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).one()
    elif row.revoked_at is not None:
        log.warning("the configured bootstrap token (id %s) was revoked; it stays revoked", row.id)
    session.execute(
        update(ApiToken)
        .where(ApiToken.name == BOOTSTRAP_NAME, ApiToken.token_hash != digest, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    session.commit()
    return row


def authenticate(session: Session, plain: str, settings: Settings) -> ApiToken:
    """The token row of a bearer token, or a 401 problem (unknown, expired, revoked). Updates
    ``last_used_at`` (at most once a minute) and commits that."""
    return _authenticate_digest(session, hash_token(plain), plain=plain, settings=settings)


def _authenticate_digest(session: Session, digest: str, *, plain: str, settings: Settings) -> ApiToken:
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).one_or_none()
    bootstrap = settings.bootstrap_token
    # the API registers the bootstrap token at start; if the database was not ready then, do it now
    if row is None and bootstrap and hmac.compare_digest(digest, hash_token(bootstrap.get_secret_value())):
        row = ensure_bootstrap_token(session, settings)
    if row is None:
        raise _unauthorized("invalid token")
    now = utcnow()
    _check_valid(row, now)
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.commit()
    return row


def _check_valid(row: ApiToken, now: dt.datetime) -> None:
    if row.revoked_at is not None:
        raise _unauthorized("token revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise _unauthorized("token expired")


@dataclass
class _Cached:
    token: ApiToken  # detached from its session: a snapshot of the row
    verified_at: float  # time.monotonic() of the database check
    last_used_at: dt.datetime | None


class TokenCache:
    """Verified tokens of one API process, keyed by the token's SHA-256, each trusted for ``ttl`` seconds
    (:data:`TOKEN_CACHE_TTL_SECONDS`) before the database is asked again. Expiry is checked on every use;
    :meth:`forget` drops a token revoked through this process at once; failures are never cached.
    ``last_used_at`` is still written at most once per :data:`LAST_USED_RESOLUTION`."""

    def __init__(
        self, ttl: float = TOKEN_CACHE_TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def lookup(self, digest: str) -> ApiToken | None:
        """The cached token when its check is fresh and no ``last_used_at`` write is due; 401 when it has
        expired since; None: ask the database (:meth:`store` the result)."""
        entry = self._entries.get(digest)
        if entry is None or self.clock() - entry.verified_at >= self.ttl:
            return None
        now = utcnow()
        if entry.last_used_at is None or now - entry.last_used_at >= LAST_USED_RESOLUTION:
            return None
        _check_valid(entry.token, now)
        return entry.token

    def lookup_plain(self, plain: str) -> ApiToken | None:
        return self.lookup(hash_token(plain))

    def store(self, digest: str, token: ApiToken) -> None:
        with self._lock:
            if len(self._entries) >= 10_000:  # bounded: drop the stale ones, or all
                fresh = self.clock() - self.ttl
                self._entries = {k: v for k, v in self._entries.items() if v.verified_at > fresh}
                if len(self._entries) >= 10_000:
                    self._entries.clear()
            self._entries[digest] = _Cached(token, self.clock(), token.last_used_at)

    def forget(self, token_id: int | None = None) -> None:
        """Drop the token ``token_id`` (every token when None)."""
        with self._lock:
            if token_id is None:
                self._entries.clear()
            else:
                self._entries = {k: v for k, v in self._entries.items() if v.token.id != token_id}


def authenticate_cached(
    cache: TokenCache, session_factory: Callable[[], Session], plain: str, *, settings: Settings
) -> ApiToken:
    """:func:`authenticate` through ``cache``: a token verified less than ``cache.ttl`` seconds ago costs no
    database round trip. The token returned is detached (read its columns, do not lazy-load)."""
    digest = hash_token(plain)
    cached = cache.lookup(digest)
    if cached is not None:
        return cached
    with session_factory() as session:
        row = _authenticate_digest(session, digest, plain=plain, settings=settings)
        session.expunge(row)
    cache.store(digest, row)
    return row


def session_cache_key(token_id: int) -> str:
    """The :class:`TokenCache` key of a token checked by id (a digest is 64 hex digits: no clash)."""
    return f"id:{token_id}"


def authenticate_id_cached(
    cache: TokenCache, session_factory: Callable[[], Session], token_id: int
) -> ApiToken:
    """The token ``token_id`` when it is still valid (not revoked, not expired), or a 401 problem: how a
    dashboard session, which holds the token's id and never the token itself, is checked on every request.
    Cached like :func:`authenticate_cached` (under the key ``id:<id>``, so :meth:`TokenCache.forget` of a
    revoked token drops it too)."""
    key = session_cache_key(token_id)
    cached = cache.lookup(key)
    if cached is not None:
        return cached
    with session_factory() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise _unauthorized("the session's token no longer exists")
        now = utcnow()
        _check_valid(row, now)
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            row.last_used_at = now
            session.commit()
        session.expunge(row)
    cache.store(key, row)
    return row


def create_token_cli(
    settings: Settings, name: str, *, scopes: Sequence[str], expires_days: float | None
) -> int:
    """``daik token create``: print the new token (once) on stdout, what it is on stderr; one-line errors
    and a non-zero exit status on bad input or an unready database."""
    from service.db.session import make_engine, make_sessionmaker

    try:
        scopes = validate_scopes(scopes)
        try:
            name = check_token_name(name)
        except ValueError as err:
            raise ValueError(f"--name: {err}") from None
        if expires_days is not None and expires_days <= 0:
            raise ValueError(f"--expires-days must be positive, got {expires_days:g}")
    except ValueError as err:
        print(f"daik: error: {err}", file=sys.stderr)
        return 2
    if settings.embedded:
        settings.ensure_dirs()
    engine = make_engine(settings.db_url)
    try:
        with make_sessionmaker(engine)() as session:
            expires = dt.timedelta(days=expires_days) if expires_days is not None else None
            row, plain = create_token(session, name, scopes=scopes, expires_in=expires)
            session.commit()
    except SQLAlchemyError as err:
        reason = type(getattr(err, "orig", None) or err).__name__
        print(
            f"daik: error: cannot store the token ({reason}); is the database reachable and migrated "
            "(`daik db upgrade`)?",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
    until = f", expires {row.expires_at.isoformat()}" if row.expires_at else ""
    print(
        f"token {row.name!r} (id {row.id}, scopes {' '.join(row.scopes)}{until}); shown once:",
        file=sys.stderr,
    )
    print(plain)
    return 0
