"""Which queued jobs may not start: those of a batch that is paused, stopped or cancelled.

One SQL predicate, used by the worker's claim (so a message of a held job is a no-op, like a duplicate
delivery) and by the re-dispatcher (so held jobs are not re-sent every period). ``service.batches`` explains
the design: the batch's status is the one switch; no job row changes state when a batch is paused.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists

from service.db.models import HELD_BATCH_STATES, Batch, BatchCell

__all__ = ["held_by_batch"]


def held_by_batch(job_id: Any) -> ColumnElement[bool]:
    """True where the job ``job_id`` (a column or a value) belongs to a batch whose status holds it."""
    return exists().where(
        BatchCell.job_id == job_id,
        Batch.id == BatchCell.batch_id,
        Batch.status.in_([s.value for s in HELD_BATCH_STATES]),
    )
