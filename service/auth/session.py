"""The dashboard's cookie session: a browser logs in once with an API token and then carries a signed cookie.

Browsers' ``EventSource`` cannot send an ``Authorization`` header, and a token pasted into page script
would be readable by any script on the page; so ``/ui/login`` checks the token once and answers a cookie
that is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it), ``Secure``
when served over https (or always, with ``DAIK_COOKIE_SECURE=true``, behind a TLS proxy), and signed with
the session secret (``DAIK_SESSION_SECRET``, or a random one kept in ``<home>/session_secret`` so every API
process on one home accepts the others' cookies).

The cookie holds the token's *id* (never the token), a per-session CSRF token and an expiry. Every request
re-checks the token by id through the token cache (:func:`~service.auth.service.authenticate_id_cached`),
so revoking or expiring the token ends its sessions too (within the cache's few seconds elsewhere).

CSRF: a cookie rides along with any request the browser makes, so a cookie-authenticated unsafe method
(POST, PUT, PATCH, DELETE) must also carry the session's CSRF token in the ``X-CSRF-Token`` header (the
dashboard's script reads it from a ``<meta>`` tag of the page) or, for the plain HTML forms of ``/ui``, in a
``csrf`` form field. Another site cannot read the page, so it cannot know the token. Bearer-authenticated
requests need no CSRF token: a browser never adds that header by itself.
"""

from __future__ import annotations

import contextlib
import hmac
import math
import os
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from service.settings import Settings

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "UNSAFE_METHODS",
    "SessionData",
    "SessionSigner",
    "clear_session_cookie",
    "csrf_ok",
    "load_session_secret",
    "session_of",
    "set_session_cookie",
    "signer_of",
]

SESSION_COOKIE = "daik_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SECRET_FILE = "session_secret"
_SALT = "daik.dashboard.session"


def load_session_secret(settings: Settings) -> str:
    """``DAIK_SESSION_SECRET``, or the secret kept in ``<home>/session_secret`` (made on first use, mode
    0600). Written to a temporary file and hard-linked into place, so two API processes starting at once
    agree on one secret: the second link fails and that process reads the first one's."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    path = settings.home / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text(encoding="ascii").strip()
        if existing:
            return existing
    settings.home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    secret = path.read_text(encoding="ascii").strip()
    if not secret:
        raise RuntimeError(f"the session secret file {path} is empty; delete it or set DAIK_SESSION_SECRET")
    return secret


@dataclass(frozen=True)
class SessionData:
    """What the cookie says: whose token, the session's CSRF token, and when it ends (Unix time)."""

    token_id: int
    csrf: str
    expires_at: float


class SessionSigner:
    """Signs and checks session cookies with the session secret (itsdangerous: HMAC-SHA1 over the
    payload and a timestamp; a cookie older than ``max_age`` or altered in any byte is refused)."""

    def __init__(self, secret: str, max_age_seconds: float) -> None:
        self.max_age = max_age_seconds
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)

    def issue(self, token_id: int, now: float | None = None) -> tuple[str, SessionData]:
        data = SessionData(
            token_id=token_id,
            csrf=secrets.token_urlsafe(24),
            expires_at=(time.time() if now is None else now) + self.max_age,
        )
        value = self._serializer.dumps({"tid": data.token_id, "csrf": data.csrf, "exp": data.expires_at})
        return value, data

    def read(self, value: str | None, now: float | None = None) -> SessionData | None:
        """The session of a cookie value, or None (absent, forged, malformed or expired)."""
        if not value:
            return None
        try:
            payload = self._serializer.loads(value, max_age=math.ceil(self.max_age))
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(payload, dict):
            return None
        tid, csrf, exp = payload.get("tid"), payload.get("csrf"), payload.get("exp")
        if not isinstance(tid, int) or not isinstance(csrf, str) or not isinstance(exp, int | float):
            return None
        if exp <= (time.time() if now is None else now):
            return None
        return SessionData(token_id=tid, csrf=csrf, expires_at=float(exp))


def signer_of(request: Request) -> SessionSigner:
    signer: SessionSigner = request.app.state.session_signer
    return signer


def csrf_ok(session: SessionData, supplied: str | None) -> bool:
    """The CSRF token a request supplied matches its session's (compared in constant time)."""
    return bool(supplied) and hmac.compare_digest(session.csrf.encode(), str(supplied).encode())


def _secure(request: Request) -> bool:
    """``DAIK_COOKIE_SECURE``: always (behind a TLS proxy that forwards plain http), never, or, by default,
    when this request came over https."""
    setting: bool | str = request.app.state.settings.cookie_secure
    if isinstance(setting, bool):
        return setting
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, value: str, max_age: float) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(max_age),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )


def session_of(request: Request) -> SessionData | None:
    """The request's valid signed session (not yet checked against the token table), or None."""
    return signer_of(request).read(request.cookies.get(SESSION_COOKIE))
