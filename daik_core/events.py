"""The trainer's event stream, typed: one dataclass per kind of event, written one JSON object per line.

``daik train SPEC --events FILE`` appends them to FILE; the job worker tails the file into the database and
judges how an attempt ended from it (never from the log's text). Who writes what:

- rank 0's :class:`~daik_core.engine.callbacks.JsonlEvents`: :class:`Start`, :class:`Progress`, :class:`Eval`,
  :class:`Epoch`, :class:`Checkpoint` and, once, :class:`End` (``completed``, or ``stopped`` when a stop was
  asked for: ``last.pt`` then holds the exact point);
- any rank whose training raises (``daik train``): :class:`Failure` (``oom``: out of memory; ``error``:
  anything else, the message names it);
- the multi-process launcher (:mod:`daik_core.engine.launch`, torchrun underneath): one :class:`RankExit` per
  rank that torchrun saw fail, with its exit code (negative: the signal that killed it) and the message of
  the rank's torchelastic error file when it wrote one.

A line is ``{"event": KIND, field: value, ...}``; epochs are 1-based, ``step`` counts the optimiser steps
done, non-finite numbers are written as ``null``. :func:`decode` checks every field's type and ignores fields
it does not know (a newer writer may add some). This module imports nothing but the standard library: the
worker's process, which never imports torch, reads the same types.
"""

from __future__ import annotations

import json
import math
import os
import signal
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeAlias, Union, get_args, get_origin, get_type_hints

__all__ = [
    "Checkpoint",
    "End",
    "Epoch",
    "Eval",
    "Event",
    "EventError",
    "EventWriter",
    "Failure",
    "Progress",
    "RankExit",
    "Start",
    "decode",
    "encode",
]


class EventError(ValueError):
    """A line that is not a valid event (its text, or the field that is wrong, is named)."""


@dataclass(frozen=True)
class Start:
    """Before the first iteration; ``epoch`` / ``step`` > 0: resumed after that many epochs / steps."""

    KIND: ClassVar[str] = "start"
    epochs: int
    iters_per_epoch: int
    epoch: int = 0
    step: int = 0


@dataclass(frozen=True)
class Progress:
    """During an epoch (at most one per ``progress_interval`` s): iteration ``iteration`` of ``epoch``."""

    KIND: ClassVar[str] = "progress"
    epoch: int
    iteration: int
    iters_per_epoch: int
    step: int
    loss: float | None = None
    images_per_s: float | None = None


@dataclass(frozen=True)
class Eval:
    """A validation of the EMA model after ``epoch``: mAP50, mAP50:95 and the per-class APs (``None``: a class
    without ground truth)."""

    KIND: ClassVar[str] = "eval"
    epoch: int
    step: int
    map50: float | None
    map50_95: float | None
    ap50: dict[str, float | None] = field(default_factory=dict)
    ap50_95: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Epoch:
    """The end of ``epoch``: its mean loss terms (``loss_*``, ``loss``), ``lr`` and ``images_per_s``."""

    KIND: ClassVar[str] = "epoch"
    epoch: int
    step: int
    metrics: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file written (atomically) after ``epoch``: ``last.pt``, or ``best.pt`` (``is_best``)."""

    KIND: ClassVar[str] = "checkpoint"
    epoch: int
    step: int
    path: str
    is_best: bool = False


@dataclass(frozen=True)
class End:
    """The run's end: ``completed`` (``results`` is ``results.json``'s content) or ``stopped`` (a stop was
    asked for, e.g. SIGTERM; ``last.pt`` holds the point to resume from)."""

    KIND: ClassVar[str] = "end"
    status: Literal["completed", "stopped"]
    results: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """Training raised on ``rank``: ``oom`` (out of memory: CUDA's, or the process's own allocations) or
    ``error`` (anything else; ``message`` is the error, e.g. a bad dataset folder)."""

    KIND: ClassVar[str] = "failure"
    kind: Literal["oom", "error"]
    message: str
    rank: int = 0


@dataclass(frozen=True)
class RankExit:
    """A rank that torchrun saw fail: ``exitcode`` (negative: killed by signal ``-exitcode``), the message of
    the rank's torchelastic error file when it wrote one, and whether torchrun took it for the root cause
    (``first``: the earliest failure)."""

    KIND: ClassVar[str] = "rank_exit"
    rank: int
    exitcode: int
    message: str | None = None
    first: bool = False

    @property
    def signal(self) -> signal.Signals | None:
        """The signal that killed the rank, if one did."""
        if self.exitcode >= 0:
            return None
        try:
            return signal.Signals(-self.exitcode)
        except ValueError:
            return None


Event: TypeAlias = Start | Progress | Eval | Epoch | Checkpoint | End | Failure | RankExit

KINDS: dict[str, type[Event]] = {
    cls.KIND: cls for cls in (Start, Progress, Eval, Epoch, Checkpoint, End, Failure, RankExit)
}


def _finite(x: Any) -> Any:
    """``x`` with every non-finite float (NaN, inf) replaced by ``None``, recursively: strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def encode(event: Event) -> str:
    """One line of JSON (without the newline): ``{"event": KIND, ...the fields}``."""
    data = {"event": event.KIND, **{f.name: getattr(event, f.name) for f in fields(event)}}
    return json.dumps(_finite(data), allow_nan=False)


def decode(line: str | bytes) -> Event:
    """The event of one line; raises :class:`EventError` naming what is wrong (not JSON, no or an unknown
    ``event``, a missing field, a field of the wrong type). Unknown fields are ignored."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EventError(f"not JSON ({err}): {_excerpt(line)}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        raise EventError(f'not an event (a JSON object with an "event" name): {_excerpt(line)}')
    cls = KINDS.get(obj["event"])
    if cls is None:
        raise EventError(f"unknown event {obj['event']!r} (known: {', '.join(KINDS)})")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in obj:
            if f.default is MISSING and f.default_factory is MISSING:
                raise EventError(f"{cls.KIND} event: missing field {f.name!r}")
            continue
        values[f.name] = _check(obj[f.name], hints[f.name], f"{cls.KIND}.{f.name}")
    return cls(**values)


def _excerpt(line: str | bytes) -> str:
    return repr(line[:200])


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _check(value: Any, hint: Any, where: str) -> Any:
    """``value`` as type ``hint`` (an int stands for a float); :class:`EventError` naming ``where``."""
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in get_args(hint):
            try:
                return _check(value, option, where)
            except EventError:
                continue
        raise EventError(f"{where}: {value!r} is not {_name(hint)}")
    if origin is Literal:
        if value in get_args(hint):
            return value
        raise EventError(f"{where}: {value!r} is not one of {', '.join(map(repr, get_args(hint)))}")
    if origin is dict:
        if not isinstance(value, dict):
            raise EventError(f"{where}: {value!r} is not an object")
        _, item = get_args(hint)
        return {str(k): _check(v, item, f"{where}[{k!r}]") for k, v in value.items()}
    ok = {
        type(None): value is None,
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:
        raise TypeError(f"{where}: no check for the type {hint!r}")
    if not ok:
        raise EventError(f"{where}: {value!r} is not {_name(hint)}")
    return float(value) if hint is float else value


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


class EventWriter:
    """Appends events to ``path``, one line per write system call (``O_APPEND``: several processes, e.g. the
    ranks of one run, may write to one file), so that a tailing reader sees whole lines. The file is opened
    on the first event (under DDP only the ranks that write create it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def write(self, event: Event) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        data = (encode(event) + "\n").encode("utf-8")
        while data:  # a regular file takes it in one call; a short write is finished here
            data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
