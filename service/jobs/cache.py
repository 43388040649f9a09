"""An in-process cache of a job's computed reads (the metrics series, the latest value of each metric), keyed
by the job row's version.

Every write that changes a job's metrics also updates its row: the worker's reporter locks the row and sets
``updated_at`` in the same transaction as the metric rows (``worker.reporting.lock_job``), a retry or a
cancel changes ``status``. So ``(updated_at, attempt, step, status)``, read with the job row that every job
route loads anyway, names one state of the metrics: a read whose key is cached needs no metric query, and a
write makes the next read miss. Many viewers of one running job (dashboards polling it) then cost one
metrics query per change instead of one per request. Each API process has its own cache; entries are
bounded in number and size (least recently used out first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from service.db.models import Job

__all__ = ["ReadCache", "job_version"]

T = TypeVar("T")


def job_version(job: Job) -> tuple[Any, ...]:
    """What changes whenever the job's metrics or evaluations change (module docstring)."""
    return (job.id, job.updated_at, job.attempt, job.step, job.status)


class ReadCache:
    """A thread-safe LRU of ``max_entries`` values; bytes values over ``max_value_bytes`` are not kept."""

    def __init__(self, max_entries: int = 256, max_value_bytes: int = 4 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_value_bytes = max_value_bytes
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        if self.max_entries <= 0:
            return compute()
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]  # type: ignore[no-any-return,unused-ignore]
            self.misses += 1
        value = compute()  # outside the lock: two threads may compute one key, both get a right answer
        if isinstance(value, bytes | bytearray) and len(value) > self.max_value_bytes:
            return value
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._data)
