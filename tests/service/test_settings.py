"""Secrets in settings: ``redact_url`` hides every password (SQLAlchemy's rendering), in a URL alone or in an
error message quoting one; ``Settings.redacted`` shows no secret; the security settings' defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # PostgreSQL with and without a user, with a quoted password
        ("postgresql+psycopg://daik:s3cret@pg:5432/daik", "postgresql+psycopg://daik:***@pg:5432/daik"),
        ("postgresql+psycopg://daik:p%40ss%2Fw@pg/daik", "postgresql+psycopg://daik:***@pg/daik"),
        ("postgresql+psycopg://:s3cret@pg:5432/daik", "postgresql+psycopg://:***@pg:5432/daik"),
        (
            "postgresql+psycopg://postgres@127.0.0.1:5432/daik",
            "postgresql+psycopg://postgres@127.0.0.1:5432/daik",
        ),
        # Redis: a password without a user (the usual form), with a user (ACL), none, TLS with options
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://default:s3cret@redis:6379/0", "redis://default:***@redis:6379/0"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("rediss://:s3cret@redis:6380/1?ssl_cert_reqs=none", "rediss://:***@redis:6380/1?ssl_cert_reqs=none"),
        # the embedded defaults have no password
        ("sqla+sqlite:////var/lib/daik/broker.sqlite", "sqla+sqlite:////var/lib/daik/broker.sqlite"),
    ],
)
def test_redact_url_hides_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url) and "p%40ss" not in redact_url(url)


def test_redact_url_in_a_message_and_on_urls_sqlalchemy_cannot_parse() -> None:
    message = "cannot reach redis://:s3cret@redis:6379/0 (and 'postgresql://u:s3cret@pg/db'): refused"
    assert redact_url(message) == (
        "cannot reach redis://:***@redis:6379/0 (and 'postgresql://u:***@pg/db'): refused"
    )
    assert redact_url("redis://:s3cret@redis:notaport/0") == "redis://:***@redis:notaport/0"
    assert redact_url("no URL here: connection refused") == "no URL here: connection refused"


def test_redacted_settings_show_no_secret(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database_url="postgresql+psycopg://daik:pg-s3cret@pg:5432/daik",
        broker_url="redis://:redis-s3cret@redis:6379/0",
        bootstrap_token="b" * 40,
        session_secret="session-s3cret",
    )
    shown = settings.redacted()
    assert shown["database_url"] == "postgresql+psycopg://daik:***@pg:5432/daik"
    assert shown["broker_url"] == "redis://:***@redis:6379/0"
    assert shown["bootstrap_token"] == "***" and shown["session_secret"] == "***"
    assert not any(s in repr(shown) for s in ("s3cret", "b" * 32))


def test_security_settings_defaults_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DAIK_COOKIE_SECURE", "DAIK_MAX_BATCH_CELLS", "DAIK_BOOTSTRAP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings()
    assert defaults.cookie_secure == "auto" and defaults.max_batch_cells == 500
    monkeypatch.setenv("DAIK_COOKIE_SECURE", "true")
    monkeypatch.setenv("DAIK_MAX_BATCH_CELLS", "40")
    assert (Settings().cookie_secure, Settings().max_batch_cells) == (True, 40)
    monkeypatch.setenv("DAIK_COOKIE_SECURE", "false")
    assert Settings().cookie_secure is False
    monkeypatch.setenv("DAIK_COOKIE_SECURE", "sometimes")
    with pytest.raises(ValueError, match="cookie_secure"):
        Settings()
