"""The job state machine, written once as a table (SERVICE.md). The API and the worker both ask it.

queued -> running -> (cancelling) -> succeeded | failed | cancelled
running -> queued          a retryable attempt failure (bounded by max_restarts)
failed | cancelled -> queued   POST /jobs/{id}/retry
"""

from __future__ import annotations

from service.db.models import JobStatus

__all__ = ["TRANSITIONS", "IllegalTransition", "check_transition", "is_idempotent"]

S = JobStatus
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.queued: frozenset({S.running, S.cancelled}),
    S.running: frozenset({S.succeeded, S.failed, S.cancelling, S.cancelled, S.queued}),
    S.cancelling: frozenset({S.cancelled, S.failed, S.succeeded}),
    S.succeeded: frozenset(),
    S.failed: frozenset({S.queued}),
    S.cancelled: frozenset({S.queued}),
}

# asking for the state a job is already in, or heading to, is an idempotent no-op (202), not an error
_HEADING = {S.cancelled: frozenset({S.cancelled, S.cancelling})}


class IllegalTransition(Exception):
    """``current -> target`` is not allowed (the API answers 409)."""

    def __init__(self, current: JobStatus, target: JobStatus) -> None:
        super().__init__(f"a {current.value} job cannot become {target.value}")
        self.current, self.target = current, target


def is_idempotent(current: JobStatus, target: JobStatus) -> bool:
    return current == target or current in _HEADING.get(target, frozenset())


def check_transition(current: JobStatus | str, target: JobStatus | str) -> bool:
    """True when the job must move; False when it already is (or is heading to) ``target``; raises
    :class:`IllegalTransition` otherwise."""
    cur, tgt = JobStatus(current), JobStatus(target)
    if is_idempotent(cur, tgt):
        return False
    if tgt not in TRANSITIONS[cur]:
        raise IllegalTransition(cur, tgt)
    return True
