"""Waiting in tests by polling the awaited condition instead of sleeping a fixed time: :func:`wait_for`
returns as soon as the condition holds (and fails with a message once ``timeout`` has passed),
:func:`holds_for` checks that a condition keeps holding for a while (what a fixed sleep before a negative
assertion meant)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["holds_for", "wait_for"]

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 20.0,
    interval: float = 0.05,
    *,
    what: str = "the condition",
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a true value, and return that value;
    after ``timeout`` seconds raise :class:`AssertionError` naming ``what`` (and what ``on_timeout``
    returns, e.g. a process's log)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{on_timeout()}" if on_timeout is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(interval)


def holds_for(predicate: Callable[[], object], duration: float, interval: float = 0.05) -> bool:
    """Whether ``predicate`` stays true for ``duration`` seconds (polled every ``interval``); ``False`` as
    soon as it does not."""
    deadline = time.monotonic() + duration
    while True:
        if not predicate():
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(interval)
