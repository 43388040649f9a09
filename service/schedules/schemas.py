"""Request and response bodies of ``/schedules``."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ScheduleCreate", "ScheduleList", "ScheduleOut", "ScheduleUpdate"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_TEMPLATE = (
    'a POST /batches body; its base.teacher may be {"latest_succeeded": "<job name>"}: the newest '
    "succeeded job of that name when the schedule fires"
)


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=_NAME)
    cron: str = Field(min_length=1, max_length=200, description="five fields: minute hour day month weekday")
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description="an IANA time zone")
    enabled: bool = True
    template: dict[str, Any] = Field(description=_TEMPLATE)


class ScheduleUpdate(BaseModel):
    """``PATCH``: the fields given replace the stored ones (``If-Match`` required)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=_NAME)
    cron: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    enabled: bool | None = None
    template: dict[str, Any] | None = Field(default=None, description=_TEMPLATE)


class ScheduleOut(BaseModel):
    id: uuid.UUID
    name: str
    cron: str
    timezone: str
    enabled: bool
    template: dict[str, Any]
    next_fire_at: dt.datetime | None = Field(description="UTC; null while disabled")
    last_fire_at: dt.datetime | None
    last_fire_status: str | None = Field(description="created | failed")
    last_fire_error: str | None
    last_batch_id: uuid.UUID | None
    owner_token_id: int | None = Field(
        default=None,
        description="the id of the token that created it, which may steer it (and any admin token); null: "
        "admin-owned",
    )
    etag: str
    created_at: dt.datetime
    updated_at: dt.datetime


class ScheduleList(BaseModel):
    items: list[ScheduleOut]
