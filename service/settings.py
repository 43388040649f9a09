"""One typed settings object for the API, the worker and the CLI, read from the environment (``DAIK_*``).

Embedded defaults (one machine, no servers): an SQLite file and a kombu SQLAlchemy broker under
``DAIK_HOME`` (default ``~/.daik``). Production: ``DAIK_DATABASE_URL=postgresql+psycopg://...`` and
``DAIK_BROKER_URL=redis://...``. Directories are created on first use, not at import.

Secrets (``DAIK_BOOTSTRAP_TOKEN``, ``DAIK_SESSION_SECRET``, passwords inside URLs) come only from the
environment and never appear in ``repr`` or logs: use :meth:`Settings.redacted`.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["MIN_BOOTSTRAP_TOKEN_LENGTH", "Settings", "redact_url"]

#: the bootstrap token is an admin credential chosen by a person: long enough not to be guessed
MIN_BOOTSTRAP_TOKEN_LENGTH = 32

# a URL inside a longer text (an error message), up to a blank or a quote
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# the userinfo of what follows "://": "user:password@" or ":password@" (no user)
_USERINFO = re.compile(r"^([^:/@\s]*):[^@\s]*@")


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not a URL SQLAlchemy parses (e.g. a port that is not a number)
        scheme, _, rest = url.partition("://")
        return scheme + "://" + _USERINFO.sub(r"\1:***@", rest)


def redact_url(text: str) -> str:
    """A URL, or a text quoting URLs (an error message), with every password shown as ``***``:
    ``redis://:secret@host/0`` -> ``redis://:***@host/0``, ``postgresql://user:secret@host/db`` ->
    ``postgresql://user:***@host/db`` (SQLAlchemy's URL rendering with the password hidden)."""
    return _URL_IN_TEXT.sub(lambda m: _hide_password(m.group(0)), text)


class Settings(BaseSettings):
    # a bad value is never echoed in the error: it may be a secret (a token, a URL with its password)
    model_config = SettingsConfigDict(
        env_prefix="DAIK_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    home: Path = Field(default=Path("~/.daik"), description="embedded state: SQLite files, logs")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite in home")
    broker_url: str | None = Field(default=None, description="Celery broker; default: SQLAlchemy in home")
    data_root: Path | None = Field(default=None, description="datasets live under here; default home/data")
    artifact_root: Path | None = Field(
        default=None, description="job outputs and checkpoints; default home/artifacts"
    )
    bootstrap_token: SecretStr | None = Field(
        default=None,
        description=f"registered with admin scope at API start when set; at least "
        f"{MIN_BOOTSTRAP_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`); only its SHA-256 is stored",
    )
    # liveness (SERVICE.md): the lease a claim takes, how often the worker heartbeats, and the broker's
    # visibility timeout, which must exceed the longest job
    lease_seconds: int = Field(default=90, ge=5)
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    visibility_timeout: int = Field(default=7 * 24 * 3600, ge=5)
    redispatch_after_seconds: int = Field(default=60, ge=1)
    read_cache_entries: int = Field(
        default=256, ge=0, description="computed job reads kept per API process (service.jobs.cache); 0: off"
    )
    schedule_dispatch_seconds: float = Field(
        default=60.0, ge=1, description="how often `daik beat` fires the schedule dispatcher"
    )
    trainer_command: str | None = Field(
        default=None,
        description="the command a worker runs instead of `python -m daik_core.cli` (split like a shell "
        "line; it gets `train SPEC --events FILE -q [--resume | --overwrite]`): custom launchers, and the "
        "fault tests' scripted trainer; single-GPU and CPU jobs only",
    )
    trainer_env: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="names of further environment variables a worker passes to its trainers, comma-separated "
        "(a trainer gets only what it needs: PATH, locale, CUDA / NCCL / torch / thread settings, not the "
        "database URL, the broker URL or any other DAIK_* setting)",
    )
    allow_absent_devices: bool = Field(
        default=False,
        description="let `daik worker --devices` name GPUs this host does not have (tests, dry runs)",
    )
    worker_stale_seconds: float = Field(
        default=60.0, gt=0, description="a worker without a heartbeat for this long is not counted as live"
    )
    cancel_grace_seconds: float = Field(default=60.0, ge=0)
    progress_timeout_seconds: float = Field(
        default=1800.0,
        ge=0,
        description="the no-progress watchdog: a trainer that writes no event for this long (a hung "
        "collective, a stuck loader) is stopped and its attempt fails as `timeout`, retried while restarts "
        "are left; 0: off. Mind the longest validation: a trainer reports nothing while it evaluates",
    )
    max_request_bytes: int = Field(default=1_000_000, ge=1024)
    cors_origins: tuple[str, ...] = Field(default=(), description="allowed CORS origins; none by default")
    # the dashboard's cookie session (service.auth.session)
    session_secret: SecretStr | None = Field(
        default=None,
        description="signs the dashboard's session cookies; unset: a random one kept in home/session_secret, "
        "shared by every API process on that home",
    )
    session_hours: float = Field(default=12.0, gt=0, le=24 * 90, description="a dashboard login's lifetime")
    cookie_secure: bool | Literal["auto"] = Field(
        default="auto",
        description="the session cookie's Secure flag: auto (only when the request came over https), true "
        "(always: the API sits behind a TLS proxy that forwards plain http) or false",
    )
    max_batch_cells: int = Field(
        default=500,
        ge=1,
        description="the most configurations x seeds one batch (or a schedule's template) may have",
    )

    @field_validator("bootstrap_token")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < MIN_BOOTSTRAP_TOKEN_LENGTH:
            # the message never quotes the token
            raise ValueError(
                f"must be at least {MIN_BOOTSTRAP_TOKEN_LENGTH} characters, got "
                f"{len(v.get_secret_value())} (e.g. `openssl rand -hex 32`)"
            )
        return v

    @field_validator("database_url")
    @classmethod
    def _parses(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                make_url(v)
            except (ArgumentError, ValueError):  # the message never quotes the URL: it may hold a password
                raise ValueError(
                    "not a database URL (e.g. postgresql+psycopg://user:password@host:5432/daik, or "
                    "sqlite:////absolute/path/daik.sqlite)"
                ) from None
        return v

    @field_validator("home", "data_root", "artifact_root")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return None if v is None else v.expanduser().resolve()

    @field_validator("trainer_env", mode="before")
    @classmethod
    def _split_names(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(name.strip() for name in v.split(",") if name.strip())
        return v

    @field_validator("trainer_env")
    @classmethod
    def _no_settings(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        """A trainer never gets a DAIK_* setting (URLs with passwords, tokens): naming one is an error."""
        own = {f"DAIK_{name.upper()}" for name in cls.model_fields}
        for name in v:
            if name.upper() in own:
                raise ValueError(f"{name} is a DAIK setting; workers never pass settings to trainers")
        return v

    @cached_property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'daik.sqlite'}"

    @cached_property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.home / 'broker.sqlite'}"

    @cached_property
    def data_dir(self) -> Path:
        return self.data_root or self.home / "data"

    @cached_property
    def artifact_dir(self) -> Path:
        return self.artifact_root or self.home / "artifacts"

    @property
    def embedded(self) -> bool:
        """True when the database is SQLite (one machine)."""
        return self.db_url.startswith("sqlite")

    def ensure_dirs(self) -> None:
        for d in (self.home, self.data_dir, self.artifact_dir):
            d.mkdir(parents=True, exist_ok=True)

    def redacted(self) -> dict[str, Any]:
        """The settings as they may be logged: URLs without passwords, secrets masked."""
        return {
            "home": str(self.home),
            "database_url": redact_url(self.db_url),
            "broker_url": redact_url(self.broker),
            "data_root": str(self.data_dir),
            "artifact_root": str(self.artifact_dir),
            "bootstrap_token": "***" if self.bootstrap_token else None,
            "session_secret": "***" if self.session_secret else None,
        }
