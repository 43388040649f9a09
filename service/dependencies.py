"""Dependencies shared by every domain: the settings, the session factory and a per-request session.

They read ``request.app.state`` (filled by :func:`service.main.create_app`), so each app built in a test
has its own settings and engine; nothing is a module-level global.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings

__all__ = ["SessionDep", "SessionmakerDep", "SettingsDep", "get_session", "get_sessionmaker", "get_settings"]


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    return factory


def get_session(factory: Annotated[sessionmaker[Session], Depends(get_sessionmaker)]) -> Iterator[Session]:
    """One session per request, closed (and so rolled back when not committed) after the response.
    Service functions commit explicitly where the contract needs it (e.g. commit, then send)."""
    with factory() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionmakerDep = Annotated[sessionmaker[Session], Depends(get_sessionmaker)]
SessionDep = Annotated[Session, Depends(get_session)]

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="same key + same body replays the first response; same key + another body: 422",
    ),
]
