"""Files under the artifact root: checkpoint rows, their files (never outside the root), the rule for
checkpoint paths a client gives (``teacher.checkpoint``, ``student.weights``), and the files of a job's run
folder (``<artifact_root>/jobs/<id>``: each attempt's results, metrics, log, plots, exported ONNX and
weights) listed and served only from inside that folder."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.datasets.service import confine
from service.db.models import Attempt, Checkpoint, Job
from service.errors import invalid
from service.settings import Settings

__all__ = [
    "MAX_LISTED_FILES",
    "PLOT_MEDIA_TYPES",
    "PLOT_NAMES",
    "JobFile",
    "LogTail",
    "attempt_logs",
    "best_checkpoint",
    "checkpoint_file",
    "file_kind",
    "get_checkpoint",
    "job_file",
    "job_output_dir",
    "job_output_file",
    "list_checkpoints",
    "list_job_files",
    "list_plots",
    "log_tail",
    "resolve_artifact_file",
]

MAX_LISTED_FILES = 5000  # a run folder holds tens of files; a listing stops here
LOG_FILE = "trainer.log"  # each attempt's log, in its folder (worker.pipelines.prepare_run)
_ATTEMPT = re.compile(r"^attempt-(\d{1,9})$")
PLOT_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


#: The pictures a training run writes in its output folder (``daik_core.plots``: ``RUN_PLOT_FILES`` and the
#: ``val_pred_<i>.jpg`` of ``VAL_PRED_IMAGES``; not imported, it loads numpy): the only names served.
PLOT_NAMES: tuple[str, ...] = (
    "results.png",
    "pr_curve.png",
    "confusion_matrix.png",
    "labels.png",
    "val_pred_0.jpg",
    "val_pred_1.jpg",
    "val_pred_2.jpg",
)
PLOT_MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg"}


def job_output_dir(settings: Settings, job_id: uuid.UUID) -> Path:
    """``<artifact_root>/jobs/<job_id>``: the trainer's ``output`` (the contracts)."""
    return settings.artifact_dir.resolve() / "jobs" / str(job_id)


def resolve_artifact_file(settings: Settings, value: str, *, field: str) -> Path:
    """A file under the artifact root (relative to it, or absolute under it), or a 422 naming ``field``."""
    path = confine(settings.artifact_dir, value, field=field, root_name="artifact root")
    if not path.is_file():
        raise invalid(field, f"no file {value!r} under the artifact root")
    return path


def list_checkpoints(session: Session, job_id: uuid.UUID) -> Sequence[Checkpoint]:
    """The job's usable checkpoints (invalid ones, which failed to load, are left out), oldest first."""
    return session.scalars(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.valid.is_(True))
        .order_by(Checkpoint.step, Checkpoint.id)
    ).all()


def get_checkpoint(session: Session, job_id: uuid.UUID, checkpoint_id: int) -> Checkpoint | None:
    row = session.get(Checkpoint, checkpoint_id)
    return row if row is not None and row.job_id == job_id else None


def best_checkpoint(session: Session, job_id: uuid.UUID) -> Checkpoint | None:
    """The newest valid checkpoint marked best."""
    return session.scalars(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.is_best.is_(True), Checkpoint.valid.is_(True))
        .order_by(Checkpoint.step.desc(), Checkpoint.id.desc())
        .limit(1)
    ).one_or_none()


def checkpoint_file(settings: Settings, row: Checkpoint) -> Path | None:
    """The checkpoint's file when it exists inside the artifact root (a row pointing elsewhere, through
    ``..``, an absolute path or a symlink, gives None)."""
    root = settings.artifact_dir.resolve()
    try:
        path = (root / row.path).resolve()
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


# --------------------------------------------------------------------------------------- run folder


@dataclass(frozen=True)
class JobFile:
    path: str  # relative to the job's run folder, with "/"
    size: int
    kind: str
    attempt: int | None  # the attempt folder it is in (attempt-<n>); None: the run folder itself
    modified_at: dt.datetime


def file_kind(name: str) -> str:
    """What a file of a run folder is, from its name: results, metrics, log, events, plot, onnx,
    checkpoint, spec or other."""
    lower = name.lower()
    suffix = PurePosixPath(lower).suffix
    if lower == "results.json":
        return "results"
    if lower == "metrics.jsonl":
        return "metrics"
    if lower == "events.jsonl":
        return "events"
    if suffix == ".log":
        return "log"
    if suffix in PLOT_SUFFIXES:
        return "plot"
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".pt", ".pth"):
        return "checkpoint"
    if suffix in (".yaml", ".yml"):
        return "spec"
    return "other"


def _attempt_number(name: str) -> int | None:
    match = _ATTEMPT.match(name)
    return int(match.group(1)) if match else None


def _attempt_of(rel: PurePosixPath) -> int | None:
    """The attempt whose folder holds ``rel`` (``attempt-<n>/...``); None for the run folder's own files."""
    return _attempt_number(rel.parts[0]) if len(rel.parts) > 1 else None


def list_job_files(settings: Settings, job_id: uuid.UUID) -> tuple[list[JobFile], bool]:
    """The regular files under the job's run folder (symlinks are not followed nor listed), sorted by
    path, at most :data:`MAX_LISTED_FILES`; the flag says whether the listing was cut there. An absent
    folder (a job not started yet) lists nothing."""
    root = job_output_dir(settings, job_id)
    if not root.is_dir():
        return [], False
    out: list[JobFile] = []
    truncated = False
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            full = Path(folder) / name
            try:
                st = full.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if len(out) >= MAX_LISTED_FILES:
                truncated = True
                break
            rel = PurePosixPath(full.relative_to(root).as_posix())
            out.append(
                JobFile(
                    path=str(rel),
                    size=st.st_size,
                    kind=file_kind(name),
                    attempt=_attempt_of(rel),
                    modified_at=dt.datetime.fromtimestamp(st.st_mtime, tz=dt.timezone.utc),
                )
            )
        if truncated:
            break
    out.sort(key=lambda f: f.path)
    return out, truncated


def job_file(settings: Settings, job_id: uuid.UUID, *, value: str) -> Path | None:
    """The regular file ``value`` (relative, ``/``-separated) of the job's run folder, or None: for an
    absolute path, ``..``, a backslash or NUL, a symlink anywhere on the way, or anything that is not a
    regular file inside the folder."""
    if not value or "\x00" in value or "\\" in value:
        return None
    rel = PurePosixPath(value)
    if rel.is_absolute() or any(part in ("..", ".", "") for part in value.split("/")):
        return None
    root = job_output_dir(settings, job_id)
    path = root / rel
    try:
        # no symlink on the way: each component is checked without following links
        current = root
        for part in rel.parts:
            current = current / part
            if current.is_symlink():
                return None
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if not resolved.is_relative_to(root) or not resolved.is_file():
        return None
    return resolved


@dataclass(frozen=True)
class LogTail:
    attempt: int | None
    path: str | None  # the log file, relative to the run folder; None: the database's copy or nothing
    lines: list[str]


_TAIL_BLOCK = 64 * 1024
MAX_TAIL_BYTES = 8 * 1024 * 1024  # a tail never reads more than this of a log


def _tail_lines(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of a text file, read backwards in blocks (at most :data:`MAX_TAIL_BYTES`)."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= n and end - pos < MAX_TAIL_BYTES:
            step = min(_TAIL_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    if pos > 0 and lines:
        lines = lines[1:]  # the first line read is cut
    return lines[-n:] if n > 0 else []


def attempt_logs(session: Session, job_id: uuid.UUID) -> list[tuple[int, str | None]]:
    """(number, log tail stored when it ended) of each of the job's attempts."""
    rows = session.execute(select(Attempt.number, Attempt.log_tail).where(Attempt.job_id == job_id)).all()
    return [(number, text) for number, text in rows]


def log_tail(
    settings: Settings,
    job_id: uuid.UUID,
    attempts: Sequence[tuple[int, str | None]],
    *,
    tail: int,
    attempt: int | None = None,
) -> LogTail | None:
    """The last ``tail`` lines of an attempt's log: ``attempt`` (None: the latest attempt that has a log
    file, or the database's tail of the latest one). ``attempts``: (number, log_tail) of the job's attempts
    from the database. None when ``attempt`` names an attempt that does not exist."""
    numbers = sorted({n for n, _ in attempts})
    stored = dict(attempts)
    root = job_output_dir(settings, job_id)
    if attempt is not None:
        candidates = [attempt]
        if attempt not in stored and not (root / f"attempt-{attempt}").is_dir():
            return None
    else:
        on_disk = [_attempt_number(p.name) for p in root.glob("attempt-*")] if root.is_dir() else []
        candidates = sorted({*numbers, *(n for n in on_disk if n is not None)}, reverse=True)
    for number in candidates:
        rel = f"attempt-{number}/{LOG_FILE}"
        path = job_file(settings, job_id, value=rel)
        if path is not None:
            return LogTail(number, rel, _tail_lines(path, tail))
        text = stored.get(number)
        if text:
            return LogTail(number, None, text.splitlines()[-tail:] if tail > 0 else [])
    return LogTail(candidates[0] if candidates else None, None, [])


def job_output_file(settings: Settings, job: Job, *, name: str) -> Path | None:
    """The file ``name`` of the job's latest attempt (the trainer's output is the attempt's folder,
    ``attempt-<n>``; a job run before attempts had their own folders has it in its output folder), when
    the file resolves inside the artifact root (symlinks followed). ``name`` is a bare file name."""
    if not job.output_dir or not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    root = settings.artifact_dir.resolve()
    for folder in (Path(job.output_dir) / f"attempt-{job.attempt}", Path(job.output_dir)):
        try:
            path = (folder / name).resolve()
        except (OSError, RuntimeError):
            continue
        if path.is_relative_to(root) and path.is_file():
            return path
    return None


def list_plots(settings: Settings, job: Job) -> list[tuple[str, Path]]:
    """The pictures of :data:`PLOT_NAMES` that the job's run has written, in that order."""
    found = []
    for name in PLOT_NAMES:
        path = job_output_file(settings, job, name=name)
        if path is not None:
            found.append((name, path))
    return found
