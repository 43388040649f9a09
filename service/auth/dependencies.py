"""The bearer-token check as a dependency: ``Depends(require("jobs:write"))`` gives the token row or
answers 401 (missing, unknown, expired, revoked) / 403 (scope missing) as problem details."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth.service import authenticate, has_scope
from service.db.models import ApiToken
from service.dependencies import SessionDep, SettingsDep
from service.problems import Problem

__all__ = ["CurrentToken", "current_token", "require"]

bearer = HTTPBearer(auto_error=False, description="an API token: `daik token create` or DAIK_BOOTSTRAP_TOKEN")


def current_token(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiToken:
    if credentials is None or not credentials.credentials:
        raise Problem(
            401,
            "missing bearer token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return authenticate(session, credentials.credentials, settings)


CurrentToken = Annotated[ApiToken, Depends(current_token)]


def require(scope: str) -> Callable[[ApiToken], ApiToken]:
    """A dependency that needs ``scope`` (``admin`` grants all)."""

    def dependency(token: CurrentToken) -> ApiToken:
        if not has_scope(token, scope):
            raise Problem(403, f"this token lacks the scope {scope!r}")
        return token

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
