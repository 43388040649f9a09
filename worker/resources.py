"""What a ``daik worker`` gives each job it runs: GPUs of its own, a share of the CPU cores, and an
environment that carries none of the service's secrets.

Devices. A GPU worker (``--gpus N``, N >= 1) owns a pool of devices: ``--devices`` (``CUDA_VISIBLE_DEVICES``
ids: indices or UUIDs), by default every GPU visible to it (the entries of its own ``CUDA_VISIBLE_DEVICES``
when that is set, else what ``nvidia-smi`` lists). :func:`plan_devices` checks the pool at start: each id
must exist on this host (``DAIK_ALLOW_ABSENT_DEVICES=1`` lifts that, for tests and dry runs), and
``--concurrency`` jobs of N devices must fit in it (the default concurrency fills it). Each job takes N
devices of the pool (:meth:`DevicePool.acquire`) and its trainer sees exactly those as
``CUDA_VISIBLE_DEVICES``; a CPU job sees none (``CUDA_VISIBLE_DEVICES=""``).

A device is held with ``flock`` on its lock file, in a folder of the worker's own (local, never on a
shared filesystem): by the pool process that runs the job and by the trainer, which inherits the lock's file
descriptor. The kernel drops a lock when every process holding it is gone, so a device comes back when its
job ends, and also when the pool process or the trainer is killed, but never while any process of the job
still runs on it. The worker's main process reads which devices are held (:meth:`DevicePool.in_use`) for
the worker registry.

CPU threads. Each trainer gets ``OMP_NUM_THREADS`` (which also sets torch's intra-op threads) = the cores it
owns: ``--cpus``; else the worker's own ``OMP_NUM_THREADS`` when set; else the cores this process may run
on divided by the concurrency (:func:`threads_per_job`). A job of several GPUs runs one process per GPU
(``torchrun``), which share the job's threads.

Environment. A trainer gets only what training needs (:func:`trainer_environ`): the system's basics (PATH,
HOME, locale, time zone, temp folder, library path), Python's, CUDA's, NCCL's, torch's and the thread
libraries' variables, experiment tracking's settings (``DAIK_MLFLOW_TRACKING_URI``,
``DAIK_MLFLOW_EXPERIMENT``, ``DAIK_TENSORBOARD`` and the MLflow client's ``MLFLOW_*``, its tracking server's
credentials included), and the names listed in ``DAIK_TRAINER_ENV``; never the database or broker URL, the
service's tokens or any other ``DAIK_*`` setting.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DeviceError",
    "DevicePool",
    "Grant",
    "JobResources",
    "Visible",
    "find_visible",
    "plan_devices",
    "threads_per_job",
    "trainer_environ",
]

log = logging.getLogger(__name__)

#: passed to trainers as they are (exact names)
PASSED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "LD_LIBRARY_PATH",
        "VIRTUAL_ENV",
        "XDG_CACHE_HOME",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        # experiment tracking (daik_core.engine.tracking): where runs are reported, set by the operator
        "DAIK_MLFLOW_TRACKING_URI",
        "DAIK_MLFLOW_EXPERIMENT",
        "DAIK_TENSORBOARD",
    }
)
#: passed to trainers as they are (name prefixes): locale, Python, CUDA and its libraries, NCCL / Gloo,
#: torch, Triton, the OpenMP / BLAS thread settings
PASSED_PREFIXES = (
    "LC_",
    "PYTHON",
    "CUDA_",
    "CUBLAS_",
    "CUDNN_",
    "NCCL_",
    "GLOO_",
    "TORCH_",
    "TORCHINDUCTOR_",
    "PYTORCH_",
    "TRITON_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "KMP_",
    "MLFLOW_",  # the MLflow client's own settings: the tracking server's credentials, TLS, timeouts
)
NVIDIA_SMI_TIMEOUT_S = 30.0


class DeviceError(ValueError):
    """A device pool that cannot work (the message names the flag and the bad value), or a job that needs
    more devices than its worker grants."""


# ------------------------------------------------------------------------------------ the pool at start
@dataclass(frozen=True)
class Visible:
    """The GPUs this process can use: ``ids`` (the default pool), the ids a ``--devices`` entry may name
    (``accepted``: indices and UUIDs), and where they were found (``source``, for error messages)."""

    ids: tuple[str, ...]
    accepted: frozenset[str]
    source: str


def find_visible(environ: Mapping[str, str] | None = None) -> Visible:
    """The entries of ``CUDA_VISIBLE_DEVICES`` when it is set (even empty: no GPU); else the GPUs that
    ``nvidia-smi`` lists (by index; UUIDs accepted too); none when ``nvidia-smi`` is missing or fails."""
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        ids = tuple(x.strip() for x in environ["CUDA_VISIBLE_DEVICES"].split(",") if x.strip())
        return Visible(ids, frozenset(ids), "CUDA_VISIBLE_DEVICES")
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return Visible((), frozenset(), "no nvidia-smi on this host")
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return Visible((), frozenset(), f"nvidia-smi failed: {err}")
    rows = [[part.strip() for part in line.split(",")] for line in out.splitlines() if line.strip()]
    ids = tuple(row[0] for row in rows)
    accepted = frozenset(ids) | frozenset(row[1] for row in rows if len(row) > 1)
    return Visible(ids, accepted, "nvidia-smi")


def plan_devices(
    devices: str | None, *, gpus: int, concurrency: int | None, allow_absent: bool, visible: Visible
) -> tuple[tuple[str, ...], int]:
    """The device pool and the concurrency of a worker of ``gpus`` GPUs per job: ``devices`` (the
    ``--devices`` text, comma-separated ids; None: every visible GPU) checked against ``visible``, and
    ``concurrency`` (None: as many jobs as the pool holds; a CPU worker: 1). Raises :class:`DeviceError`
    naming the flag and the value."""
    if gpus < 0:
        raise DeviceError(f"--gpus must be >= 0, got {gpus}")
    if concurrency is not None and concurrency < 1:
        raise DeviceError(f"--concurrency must be >= 1, got {concurrency}")
    if gpus == 0:
        if devices is not None:
            raise DeviceError("--devices is for GPU workers, and --gpus is 0 (CPU jobs see no GPU)")
        return (), concurrency or 1
    if devices is None:
        pool = visible.ids
        if not pool:
            raise DeviceError(
                f"--gpus {gpus}: no GPU is visible ({visible.source}); name the devices with --devices"
            )
    else:
        pool = tuple(x.strip() for x in devices.split(","))
        if any(not x for x in pool):
            raise DeviceError(f"--devices {devices!r}: an empty device id")
        twice = sorted({x for x in pool if pool.count(x) > 1})
        if twice:
            raise DeviceError(f"--devices {devices!r}: {', '.join(twice)} named twice")
        absent = [x for x in pool if x not in visible.accepted]
        if absent and not allow_absent:
            raise DeviceError(
                f"--devices: {', '.join(absent)} not on this host (visible: "
                f"{', '.join(visible.ids) or 'none'}; {visible.source}); DAIK_ALLOW_ABSENT_DEVICES=1 allows "
                "absent devices for tests and dry runs"
            )
    fits = len(pool) // gpus
    listed = ", ".join(pool)
    if fits == 0:
        raise DeviceError(
            f"--gpus {gpus}: a job needs {gpus} devices and the pool has {len(pool)} ({listed})"
        )
    if concurrency is None:
        return pool, fits
    if concurrency > fits:
        raise DeviceError(
            f"--concurrency {concurrency}: {concurrency} jobs of {gpus} GPU{'s' * (gpus > 1)} need "
            f"{concurrency * gpus} devices and the pool has {len(pool)} ({listed})"
        )
    return pool, concurrency


def threads_per_job(cpus: int | None, *, concurrency: int, environ: Mapping[str, str] | None = None) -> int:
    """The CPU threads each trainer gets (module docstring): ``cpus``, else the worker's own
    ``OMP_NUM_THREADS`` (a positive integer), else this process's cores / ``concurrency`` (at least 1)."""
    if cpus is not None:
        if cpus < 1:
            raise DeviceError(f"--cpus must be >= 1, got {cpus}")
        return cpus
    environ = os.environ if environ is None else environ
    own = environ.get("OMP_NUM_THREADS", "").strip()
    if own.isdigit() and int(own) >= 1:
        return int(own)
    return max(1, len(os.sched_getaffinity(0)) // concurrency)


# --------------------------------------------------------------------------------------- the device pool
_PROBES: set[int] = set()  # descriptors the main process holds for a moment to see whether a device is held


def _close_probes_in_child() -> None:
    """A pool process forked while the main process held a probe's lock must not keep that lock."""
    for fd in list(_PROBES):
        with contextlib.suppress(OSError):
            os.close(fd)
    _PROBES.clear()


os.register_at_fork(after_in_child=_close_probes_in_child)


@dataclass
class Grant:
    """The devices a job holds (``devices``), through the lock descriptors ``fds`` (pass them to the
    trainer so the devices stay held while it runs), and the CPU threads it gets. :meth:`release` (or the
    end of a ``with`` block) closes this process's descriptors."""

    devices: tuple[str, ...] = ()
    threads: int | None = None
    fds: tuple[int, ...] = ()
    pooled: bool = False  # the devices come from a pool: the job may use no others
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Grant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def visible_devices(self, gpus: int) -> str | None:
        """``CUDA_VISIBLE_DEVICES`` for a job of ``gpus`` GPUs: "" for a CPU job, the granted devices for a
        GPU job (None: no pool, the trainer inherits the worker's own). Raises :class:`DeviceError` when
        the job needs more devices than were granted."""
        if gpus == 0:
            return ""
        if not self.pooled:
            return None
        if gpus > len(self.devices):
            raise DeviceError(
                f"the job needs {gpus} GPUs and this worker grants {len(self.devices)} per job "
                f"({', '.join(self.devices) or 'none'})"
            )
        return ",".join(self.devices[:gpus])


class DevicePool:
    """The devices of one worker, one lock file each (``slot-<i>.lock``, i the device's place in the pool)
    in ``folder``. Made in the worker's main process before it forks its pool processes, which share it."""

    def __init__(self, devices: Sequence[str], folder: Path) -> None:
        self.devices = tuple(devices)
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._files = [folder / f"slot-{i}.lock" for i in range(len(self.devices))]
        for f in self._files:
            f.touch()

    @classmethod
    def create(cls, devices: Sequence[str]) -> DevicePool:
        """A pool whose lock files live in a new private folder under the system's temp folder."""
        return cls(devices, Path(tempfile.mkdtemp(prefix="daik-devices-")))

    def _try_lock(self, i: int) -> int | None:
        fd = os.open(self._files[i], os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def acquire(
        self, n: int, *, timeout: float, stop: threading.Event | None = None, poll: float = 0.1
    ) -> Grant | None:
        """Take ``n`` free devices, waiting up to ``timeout`` seconds for them (a killed job's trainer may
        still be stopping); None when they do not come free in time, or once ``stop`` is set."""
        deadline = time.monotonic() + timeout
        waiting = False
        while True:
            taken: list[tuple[int, int]] = []
            for i in range(len(self.devices)):
                fd = self._try_lock(i)
                if fd is not None:
                    taken.append((i, fd))
                    if len(taken) == n:
                        devices = tuple(self.devices[j] for j, _ in taken)
                        return Grant(devices, fds=tuple(f for _, f in taken), pooled=True)
            for _, fd in taken:
                os.close(fd)
            if not waiting:
                waiting = True
                log.info("waiting for %d free device%s of %s", n, "s" * (n > 1), ", ".join(self.devices))
            if time.monotonic() >= deadline or (stop is not None and stop.wait(poll)):
                return None
            if stop is None:
                time.sleep(poll)

    def in_use(self) -> list[str]:
        """The devices some job holds now (a device whose lock cannot be shared)."""
        held = []
        for i, device in enumerate(self.devices):
            fd = os.open(self._files[i], os.O_RDONLY | os.O_CLOEXEC)
            _PROBES.add(fd)  # before the lock: a child forked from here on closes its copy
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(device)
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)  # unlocked before it leaves _PROBES
            finally:
                _PROBES.discard(fd)
                os.close(fd)
        return held

    def remove(self) -> None:
        """Delete the lock folder (at the worker's shutdown)."""
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class JobResources:
    """What one worker grants each job: ``gpus`` devices of ``pool`` (None for a CPU worker) and
    ``threads`` CPU threads (None: the trainer picks its own, for callers outside a worker)."""

    gpus: int = 0
    pool: DevicePool | None = None
    threads: int | None = None

    def take(self, timeout: float, stop: threading.Event | None = None) -> Grant | None:
        """A grant for one job (None: the pool's devices did not come free within ``timeout`` s, or
        ``stop`` was set while waiting)."""
        if self.pool is None or self.gpus == 0:
            return Grant(threads=self.threads)
        grant = self.pool.acquire(self.gpus, timeout=timeout, stop=stop)
        if grant is not None:
            grant.threads = self.threads
        return grant

    @contextlib.contextmanager
    def granted(self, timeout: float, stop: threading.Event | None = None) -> Iterator[Grant | None]:
        grant = self.take(timeout, stop)
        try:
            yield grant
        finally:
            if grant is not None:
                grant.release()


def trainer_environ(
    environ: Mapping[str, str], *, extra_names: Sequence[str], gpus: int, grant: Grant | None
) -> dict[str, str]:
    """The trainer's environment (module docstring): the passed names of ``environ`` and ``extra_names``,
    ``PYTHONUNBUFFERED=1``, ``CUDA_VISIBLE_DEVICES`` for a job of ``gpus`` GPUs
    (:meth:`Grant.visible_devices`) and ``OMP_NUM_THREADS`` = the grant's threads (shared by the ``gpus``
    processes of a multi-GPU job)."""
    extra = set(extra_names)
    env = {
        k: v for k, v in environ.items() if k in PASSED_NAMES or k in extra or k.startswith(PASSED_PREFIXES)
    }
    env["PYTHONUNBUFFERED"] = "1"
    grant = grant or Grant()
    visible = grant.visible_devices(gpus)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    if grant.threads is not None:
        env["OMP_NUM_THREADS"] = str(max(1, grant.threads // max(gpus, 1)))
    return env
