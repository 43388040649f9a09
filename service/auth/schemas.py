"""Request and response bodies of ``/tokens`` (the token itself appears only in the creation response)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.auth.service import check_token_name

Scope = Literal["jobs:read", "jobs:write", "datasets:read", "datasets:write", "admin"]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=100, description="what the token is for ('bootstrap' is reserved)"
    )
    scopes: list[Scope] = Field(min_length=1, description="admin grants every scope")
    expires_days: float | None = Field(default=None, gt=0, le=36500, description="lifetime; none: no expiry")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_token_name(v)


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str = Field(
        description="the first characters of a generated token, to tell tokens apart; the bootstrap token "
        "shows '(bootstrap)': no part of it is kept"
    )
    scopes: list[str]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="the bearer token; shown only in this response")


class TokenList(BaseModel):
    items: list[TokenOut]
