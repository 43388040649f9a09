"""The bearer-token check as a dependency: ``Depends(require("jobs:write"))`` gives the token row or
answers 401 (missing, unknown, expired, revoked) / 403 (scope missing) as problem details.

Both are ``async``: a token verified in the last :data:`~service.auth.service.TOKEN_CACHE_TTL_SECONDS`
seconds is answered from the app's :class:`~service.auth.service.TokenCache` on the event loop, without a
thread hop or a database round trip; otherwise the check runs in a worker thread with its own session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth.service import TokenCache, authenticate_cached, has_scope
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
    if credentials is None or not credentials.credentials:
        raise Problem(
            401,
            "missing bearer token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    cache: TokenCache = request.app.state.token_cache
    plain = credentials.credentials
    cached = cache.lookup_plain(plain)
    if cached is not None:
        return cached
    return await anyio.to_thread.run_sync(authenticate_cached, cache, factory, plain, settings)


CurrentToken = Annotated[ApiToken, Depends(current_token)]


def require(scope: str) -> Callable[[ApiToken], Awaitable[ApiToken]]:
    """A dependency that needs ``scope`` (``admin`` grants all)."""

    async def dependency(token: CurrentToken) -> ApiToken:
        if not has_scope(token, scope):
            raise Problem(403, f"this token lacks the scope {scope!r}")
        return token

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
