"""``/tokens``: create, list and revoke API tokens (scope ``admin``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status
from sqlalchemy import select

from service.auth import service
from service.auth.dependencies import require
from service.auth.schemas import TokenCreate, TokenCreated, TokenList, TokenOut
from service.db.models import ApiToken
from service.dependencies import SessionDep
from service.problems import Problem, problem_responses, reject_nul

router = APIRouter(
    prefix="/tokens",
    tags=["tokens"],
    dependencies=[Depends(require("admin"))],
    responses=problem_responses(401, 403, 422),
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
    responses=problem_responses(400, 413),
)
def create_token(body: TokenCreate, session: SessionDep) -> TokenCreated:
    reject_nul(body.name, "name")
    expires = dt.timedelta(days=body.expires_days) if body.expires_days is not None else None
    row, plain = service.create_token(session, body.name, scopes=body.scopes, expires_in=expires)
    session.commit()
    return TokenCreated(**TokenOut.model_validate(row).model_dump(), token=plain)


@router.get("", response_model=TokenList)
def list_tokens(session: SessionDep) -> TokenList:
    rows = session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
    return TokenList(items=[TokenOut.model_validate(r) for r in rows])


@router.post("/{token_id}/revoke", response_model=TokenOut, responses=problem_responses(404))
def revoke_token(token_id: Annotated[int, Path(ge=1)], session: SessionDep, request: Request) -> TokenOut:
    row = service.revoke_token(session, token_id)
    if row is None:
        raise Problem(404, f"no token with id {token_id}")
    session.commit()
    request.app.state.token_cache.forget(token_id)  # revoked at once in this process (others: within the TTL)
    return TokenOut.model_validate(row)
