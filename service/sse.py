"""Server-Sent Events: the one polling loop behind ``/jobs/{id}/events`` and the jobs feed ``/jobs/events``.

A stream polls the database in a worker thread (a short session per poll, so no connection is held between
polls), writes each new row as an ``id`` / ``event`` / ``data`` message, sends a ``: keep-alive`` comment
after :data:`SSE_KEEPALIVE_SECONDS` of silence, and ends when its source says so, when the client goes away
or after an optional lifetime. The periods are read from ``app.state`` (``sse_poll_seconds``,
``sse_keepalive_seconds``) so that tests can shorten them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse

__all__ = [
    "SSE_KEEPALIVE_SECONDS",
    "SSE_POLL_SECONDS",
    "Polled",
    "event_stream",
    "format_event",
    "sanitize",
    "sse_200",
    "sse_response",
]

SSE_POLL_SECONDS = 0.5  # how often a stream looks for new rows (app.state.sse_poll_seconds)
SSE_KEEPALIVE_SECONDS = 15.0  # a comment line after this long without data (app.state.sse_keepalive_seconds)
RETRY_MS = 3000  # the client's reconnection delay, sent first


@dataclass(frozen=True)
class Polled:
    """What one poll of a stream's source found: ``(id, event type, data)`` messages to send; ``more``: a
    whole page came back, poll again at once; ``finished``: nothing will follow, end after these."""

    events: Sequence[tuple[int, str, Any]] = field(default_factory=list)
    more: bool = False
    finished: bool = False


def sanitize(value: Any) -> Any:
    """JSON without NaN / Infinity (which JSON.parse rejects): non-finite floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    return value


def format_event(event_id: int, event_type: str, *, data: Any) -> str:
    """One SSE message; ``data`` as compact JSON (sanitized)."""
    payload = json.dumps(sanitize(data), separators=(",", ":"))
    return f"id: {event_id}\nevent: {event_type}\ndata: {payload}\n\n"


async def event_stream(
    request: Request, poll: Callable[[], Polled], *, lifetime: float | None = None
) -> AsyncIterator[str]:
    """The SSE text of a stream whose source is ``poll`` (called in a worker thread, one call at a time):
    ``retry`` first, then each poll's messages, keep-alive comments in silence; ends when a poll says
    ``finished``, when the client has gone, or ``lifetime`` seconds after the start."""
    period = float(getattr(request.app.state, "sse_poll_seconds", SSE_POLL_SECONDS))
    keepalive = float(getattr(request.app.state, "sse_keepalive_seconds", SSE_KEEPALIVE_SECONDS))
    yield f"retry: {RETRY_MS}\n\n"
    last_sent = started = time.monotonic()
    while True:
        polled = await anyio.to_thread.run_sync(poll)
        for event_id, event_type, data in polled.events:
            yield format_event(event_id, event_type, data=data)
        if polled.finished:
            return
        if polled.more:
            continue  # more are waiting
        now = time.monotonic()
        if polled.events:
            last_sent = now
        elif now - last_sent >= keepalive:
            yield ": keep-alive\n\n"
            last_sent = now
        if await request.is_disconnected() or (lifetime is not None and now - started >= lifetime):
            return
        await anyio.sleep(period)


def sse_response(stream: AsyncIterator[str]) -> StreamingResponse:
    """The streaming response of an SSE stream (no caching, no proxy buffering)."""
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def sse_200(description: str) -> dict[str, Any]:
    """The OpenAPI ``200`` entry of an SSE route."""
    return {"description": description, "content": {"text/event-stream": {"schema": {"type": "string"}}}}
