"""Was a trainer killed by the kernel's OOM killer? The kernel counts, per memory cgroup, the processes its
OOM killer killed there (whether the cgroup's own limit or the whole host ran out), and a trainer lives in
its worker's cgroup. :class:`OomKills` reads that count, without root:

- cgroup v2: ``oom_kill`` in ``memory.events`` of the process's cgroup (``0::<path>`` in
  ``/proc/<pid>/cgroup``, under the ``cgroup2`` mount);
- cgroup v1: ``oom_kill`` in ``memory.oom_control`` of its ``memory`` cgroup (kernel 4.13 and later).

The supervisor reads the count before it starts a trainer and after it ended; a trainer (or a torchrun
rank) killed by SIGKILL while the count went up was killed by the OOM killer. What this cannot tell: which
process of the cgroup was killed (another process of the same cgroup killed meanwhile, and the trainer
SIGKILLed by someone else, would read as the trainer's OOM kill), and anything at all when the file is not
there or not readable (a process in the root cgroup, which has no ``memory.events``; no memory controller):
then :meth:`OomKills.count` is ``None`` and a SIGKILL stays a preemption. The kernel's log names the killed
process, but reading it needs root (``dmesg_restrict``), so it is not used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

__all__ = ["OomKills", "cgroup_oom_file"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Mount:
    root: str  # the cgroup path mounted there (not "/" inside a cgroup namespace or container)
    point: Path
    fstype: str
    options: frozenset[str]


def _mounts(proc: Path) -> list[_Mount]:
    """The cgroup mounts in ``/proc/<pid>/mountinfo`` (... root mount-point ... - fstype source options)."""
    out = []
    for line in (proc / "mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        out.append(_Mount(fields[3], Path(fields[4]), tail[0], frozenset(tail[2].split(","))))
    return out


def _under(mount: _Mount, path: str) -> Path:
    relative = Path(path).relative_to(mount.root) if Path(path).is_relative_to(mount.root) else Path(path)
    return mount.point / str(relative).lstrip("/")


def cgroup_oom_file(pid: int | str = "self") -> Path | None:
    """The file that holds the OOM kill count of ``pid``'s memory cgroup, or ``None`` when there is none."""
    proc = Path("/proc") / str(pid)
    try:
        memberships = (proc / "cgroup").read_text().splitlines()
        mounts = _mounts(proc)
    except OSError:
        return None
    for line in memberships:  # "hierarchy-id:controllers:path"
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            for m in mounts:
                if m.fstype == "cgroup2" and (candidate := _under(m, path) / "memory.events").is_file():
                    return candidate
        elif "memory" in controllers.split(","):
            for m in mounts:
                if m.fstype == "cgroup" and "memory" in m.options:
                    candidate = _under(m, path) / "memory.oom_control"
                    if candidate.is_file():
                        return candidate
    return None


class OomKills:
    """The OOM kill count of a memory cgroup (``file``: see :func:`cgroup_oom_file`)."""

    def __init__(self, file: Path | None) -> None:
        self.file = file

    @classmethod
    def of(cls, pid: int | str = "self") -> OomKills:
        return cls(cgroup_oom_file(pid))

    def count(self) -> int | None:
        """The ``oom_kill`` count now, or ``None`` when it cannot be read."""
        if self.file is None:
            return None
        try:
            for line in self.file.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError) as err:
            log.debug("%s: cannot read the OOM kill count: %s", self.file, err)
        return None
