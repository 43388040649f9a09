"""The bearer-token check as a dependency (or, without a bearer token, the dashboard's cookie session with
its CSRF check: :mod:`service.auth.session`): ``Depends(require("jobs:write"))`` gives the token row or
answers 401 (missing, unknown, expired, revoked) / 403 (scope missing) as problem details.

Both are ``async``: a token verified in the last :data:`~service.auth.service.TOKEN_CACHE_TTL_SECONDS`
seconds is answered from the app's :class:`~service.auth.service.TokenCache` on the event loop, without a
thread hop or a database round trip; otherwise the check runs in a worker thread with its own session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth.service import (
    TokenCache,
    authenticate_cached,
    authenticate_id_cached,
    has_scope,
    session_cache_key,
)
from service.auth.session import CSRF_HEADER, UNSAFE_METHODS, csrf_ok, session_of
from service.db.models import ApiToken
from service.dependencies import SessionmakerDep, SettingsDep
from service.problems import Problem

__all__ = ["CurrentToken", "current_token", "require"]

bearer = HTTPBearer(auto_error=False, description="an API token: `daik token create` or DAIK_BOOTSTRAP_TOKEN")


async def current_token(
    request: Request,
    factory: SessionmakerDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiToken:
    cache: TokenCache = request.app.state.token_cache
    if credentials is None or not credentials.credentials:
        session = session_of(request)  # the dashboard's cookie session (service.auth.session)
        if session is None:
            raise Problem(
                401,
                "missing bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if request.method in UNSAFE_METHODS and not csrf_ok(session, request.headers.get(CSRF_HEADER)):
            raise Problem(403, f"a cookie-authenticated {request.method} needs the session's {CSRF_HEADER}")
        known = cache.lookup(session_cache_key(session.token_id))
        if known is not None:
            return known
        return await anyio.to_thread.run_sync(authenticate_id_cached, cache, factory, session.token_id)
    plain = credentials.credentials
    cached = cache.lookup_plain(plain)
    if cached is not None:
        return cached
    return await anyio.to_thread.run_sync(
        partial(authenticate_cached, cache, factory, plain, settings=settings)
    )


CurrentToken = Annotated[ApiToken, Depends(current_token)]


def require(scope: str) -> Callable[[ApiToken], Awaitable[ApiToken]]:
    """A dependency that needs ``scope`` (``admin`` grants all)."""

    async def dependency(token: CurrentToken) -> ApiToken:
        if not has_scope(token, scope):
            raise Problem(403, f"this token lacks the scope {scope!r}")
        return token

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
