"""``daik up``: the whole service on one machine, for a laptop, a demo or a single GPU box.

It creates the folders, migrates the database, then runs ``daik api``, ``daik worker`` (N times) and
``daik beat`` as child processes with one environment, waits until ``/readyz`` answers, and prints the URL
and the admin token. With no ``DAIK_DATABASE_URL`` / ``DAIK_BROKER_URL`` everything is embedded: an SQLite
database and a kombu SQLAlchemy broker under ``DAIK_HOME``, so it needs no server at all.

Process handling, the part users of other job systems complain about (a stop that leaves processes alive):

- each child runs in its own session (process group), so a terminal's Ctrl-C reaches only ``daik up``,
  which forwards SIGINT / SIGTERM to every child, waits a grace period, then SIGKILLs each child's process
  group and every process that descended from it (a trainer in its own group included): no orphans;
- on Linux each child also gets SIGTERM from the kernel if ``daik up`` itself is killed (PR_SET_PDEATHSIG);
- a child that dies unexpectedly stops the others, and ``daik up`` exits non-zero naming it, with the end
  of its log (children log to ``<home>/logs/<name>.log``).

The admin token: ``DAIK_BOOTSTRAP_TOKEN`` when set; otherwise one generated on the first start, kept in
``<home>/token`` (mode 600) and reused by the next starts. It reaches the API as ``DAIK_BOOTSTRAP_TOKEN``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

import httpx
import psutil

from service import migrate
from service.db.session import make_engine
from service.settings import Settings

__all__ = [
    "READY_TIMEOUT_SECONDS",
    "STOP_GRACE_SECONDS",
    "Child",
    "Supervisor",
    "daik_command",
    "load_or_create_token",
    "up",
]

STOP_GRACE_SECONDS = 30.0  # a worker's warm shutdown checkpoints its running job before it exits
READY_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.25
LOG_TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# loaded here, not between fork and exec (where loading a library could block on a lock held by a thread)
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def daik_command(*args: str) -> list[str]:
    """``daik ARGS`` with this interpreter (the console script may not be on PATH)."""
    return [sys.executable, "-m", "daik_core.cli", *args]


def load_or_create_token(path: Path) -> str:
    """The admin token kept in ``path``: read when the file holds one, otherwise generated (256 random
    bits) and written. The file is (re)set to mode 600 either way: it is a credential."""
    token = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    if not token:
        token = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: on Linux, ask the kernel to send SIGTERM to the child when
    its parent dies, so even a SIGKILLed ``daik up`` leaves no service process behind."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


@dataclass
class Child:
    """A named child process and where its output goes (``None``: this process's stdout / stderr)."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts named commands as children, each in its own process group, and stops all of them and all
    their descendants. Used by :func:`up` and by the end-to-end tests (their fixtures' finalizers)."""

    def __init__(self, env: Mapping[str, str] | None = None, *, grace: float = STOP_GRACE_SECONDS) -> None:
        self.env = dict(os.environ if env is None else env)
        self.grace = grace
        self.children: list[Child] = []
        self._known: dict[int, psutil.Process] = {}  # every descendant seen, by pid

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Child:
        """Start ``argv`` as the child ``name`` with the supervisor's environment updated by ``env``; its
        stdout and stderr are appended to ``log_path``."""
        out: IO[bytes] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(log_path, "ab")  # noqa: SIM115  (handed to the child; closed right after the fork)
        try:
            proc = subprocess.Popen(
                list(argv),
                env=self.env if env is None else {**self.env, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # only calls prctl (no threads run here)
            )
        finally:
            if out is not None:
                out.close()
        child = Child(name=name, argv=list(argv), proc=proc, log_path=log_path)
        self.children.append(child)
        return child

    def first_exited(self) -> Child | None:
        """The first child (in start order) that has exited, if any."""
        return next((c for c in self.children if c.exited()), None)

    def _collect_descendants(self) -> None:
        """Remember every live descendant of the children: one that starts its own session (a trainer) or
        outlives its parent is no longer in the child's process group, and must still be stopped."""
        for child in self.children:
            if child.exited():
                continue
            try:
                for p in psutil.Process(child.pid).children(recursive=True):
                    self._known.setdefault(p.pid, p)
            except psutil.NoSuchProcess:
                pass

    def _alive_descendants(self) -> list[psutil.Process]:
        alive = []
        for p in self._known.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        return alive

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to each running child, wait up to the grace period for the children and their
        descendants to exit, then SIGKILL each child's process group and every descendant still alive.
        Reaps every child; safe to call twice."""
        self._collect_descendants()
        for child in self.children:
            if not child.exited():
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(sig)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            self._collect_descendants()
            if all(c.exited() for c in self.children) and not self._alive_descendants():
                return
            time.sleep(0.1)
        for child in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)  # the group's id is the child's pid (own session)
        for p in self._alive_descendants():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()  # psutil checks the pid still names the same process (no pid-reuse accident)
        for child in self.children:
            child.proc.wait()
        psutil.wait_procs(list(self._known.values()), timeout=5)


class _Signals:
    """Records SIGINT / SIGTERM instead of raising, so :func:`up` can forward them and stop in order."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum

    def __enter__(self) -> _Signals:
        for s in (signal.SIGINT, signal.SIGTERM):
            self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *_exc: object) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)  # type: ignore[arg-type]


def _url_host(host: str) -> str:
    """The address to reach a server bound to ``host`` (a wildcard bind is reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _report_death(child: Child) -> None:
    code = child.proc.returncode
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    print(f"daik up: the {child.name} process {how} unexpectedly; stopping the others", file=sys.stderr)
    tail = child.log_tail()
    if tail:
        print(f"--- last lines of {child.log_path} ---\n{tail}\n---", file=sys.stderr)


def up(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    grace: float = STOP_GRACE_SECONDS,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> int:
    """Run the service on this machine until SIGINT / SIGTERM (exit 0) or until a child dies (exit 1,
    naming it). ``workers`` ``daik worker`` processes (0: API and beat only)."""
    if workers < 0:
        raise SystemExit(f"daik up: error: --workers must be >= 0, got {workers}")
    settings.ensure_dirs()
    engine = make_engine(settings.db_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()

    token_file = settings.home / "token"
    if settings.bootstrap_token is not None:
        token, token_note = settings.bootstrap_token.get_secret_value(), "from DAIK_BOOTSTRAP_TOKEN"
    else:
        token, token_note = load_or_create_token(token_file), f"kept in {token_file}"
    env = dict(os.environ, DAIK_HOME=str(settings.home), DAIK_BOOTSTRAP_TOKEN=token, PYTHONUNBUFFERED="1")
    logs = settings.home / "logs"
    url = f"http://{_url_host(host)}:{port}"

    # the workers share the cores: N trainers with a thread per core each would stall one another
    worker_env: dict[str, str] = {}
    if workers and "OMP_NUM_THREADS" not in os.environ:
        worker_env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    commands: list[tuple[str, list[str], dict[str, str]]] = [
        ("api", daik_command("api", "--host", host, "--port", str(port)), {})
    ]
    commands += [(f"worker-{i + 1}", daik_command("worker"), worker_env) for i in range(workers)]
    commands += [("beat", daik_command("beat"), {})]

    supervisor = Supervisor(env, grace=grace)
    with _Signals() as signals:
        try:
            for name, argv, child_env in commands:
                supervisor.start(name, argv, logs / f"{name}.log", env=child_env)
            print(f"daik up: starting {', '.join(c[0] for c in commands)} (logs in {logs})", flush=True)

            deadline = time.monotonic() + ready_timeout
            while not _ready(url):
                if signals.received is not None:
                    return 0
                dead = supervisor.first_exited()
                if dead is not None:
                    _report_death(dead)
                    return 1
                if time.monotonic() > deadline:
                    print(f"daik up: {url}/readyz not ready after {ready_timeout:.0f} s", file=sys.stderr)
                    return 1
                time.sleep(POLL_SECONDS)

            print(
                f"DAIK is up at {url}  (API docs: {url}/docs)\n"
                f"admin token: {token}  ({token_note})\n"
                f"  curl -H 'Authorization: Bearer {token}' {url}/jobs\n"
                f"stop: Ctrl-C, or kill -TERM {os.getpid()}",
                flush=True,
            )
            while signals.received is None:
                dead = supervisor.first_exited()
                if dead is not None:
                    _report_death(dead)
                    return 1
                time.sleep(POLL_SECONDS)
            print("daik up: stopping", flush=True)
            return 0
        finally:
            supervisor.stop(signals.received or signal.SIGTERM)
