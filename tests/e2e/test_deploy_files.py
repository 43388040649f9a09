"""docker-compose.yml validated by the real compose tool (``docker compose`` v2 or Debian's
``docker-compose``; ``config`` needs no Docker engine), and the shape of the stack it describes: health-gated
start order, a one-shot migration, a GPU reservation, secrets only from the environment. CI installs the
tool (.ci/run); locally the test skips, saying so, when neither command exists."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SECRETS = {"POSTGRES_PASSWORD": "pg-secret-for-the-test", "DAIK_BOOTSTRAP_TOKEN": "token-for-the-test"}


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    exe = shutil.which("docker-compose")
    return [exe] if exe else None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    cmd = _compose_command()
    if cmd is None:
        if os.environ.get("CI"):
            pytest.fail("no compose tool in CI: .ci/run installs Debian's docker-compose")
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (CI installs docker-compose)")
    return cmd


def _config(
    compose: list[str], path: Path, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("DAIK_")}
    return subprocess.run(
        [*compose, "-f", str(path), "--project-directory", str(REPO), "config", *extra],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def stack(compose: list[str]) -> dict[str, Any]:
    quiet = _config(compose, COMPOSE_FILE, SECRETS, "-q")
    assert quiet.returncode == 0, quiet.stderr
    full = _config(compose, COMPOSE_FILE, SECRETS)
    assert full.returncode == 0, full.stderr
    config: dict[str, Any] = yaml.safe_load(full.stdout)
    return config


def test_compose_rejects_an_invalid_file(compose: list[str], tmp_path: Path) -> None:
    # the validator can fail: an unknown key in a service is an error
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("shm_size: 8gb", "shm_sise: 8gb"))
    assert broken.read_text() != COMPOSE_FILE.read_text()
    result = _config(compose, broken, SECRETS, "-q")
    assert result.returncode != 0
    assert "shm_sise" in result.stderr


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_secrets_come_from_the_environment(compose: list[str], missing: str) -> None:
    text = COMPOSE_FILE.read_text()
    assert all(value not in text for value in SECRETS.values())
    result = _config(compose, COMPOSE_FILE, {k: v for k, v in SECRETS.items() if k != missing}, "-q")
    assert result.returncode != 0 and missing in result.stderr, result.stderr


def test_stack_services_and_start_order(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker", "worker-cpu", "beat"}
    assert services["postgres"]["healthcheck"]["test"] and services["redis"]["healthcheck"]["test"]
    assert services["migrate"]["command"] == ["daik", "db", "upgrade"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("api", "worker", "worker-cpu", "beat"):
        deps = services[name]["depends_on"]
        assert deps["migrate"] == {"condition": "service_completed_successfully"}, name
        assert deps["redis"] == {"condition": "service_healthy"}, name
    assert services["api"]["command"][:2] == ["daik", "api"]
    assert services["beat"]["command"] == ["daik", "beat"]
    assert services["worker-cpu"]["command"] == ["daik", "worker", "--gpus", "0"]


def test_the_gpu_worker_owns_every_gpu_of_the_host(stack: dict[str, Any]) -> None:
    """One worker service owns all the GPUs (its device pool) and runs one 1-GPU job per GPU; it can list
    them (nvidia-smi needs the utility capability)."""
    worker = stack["services"]["worker"]
    assert worker["command"] == ["daik", "worker", "--gpus", "1"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    (reservation,) = devices
    assert (reservation["driver"], reservation["capabilities"]) == ("nvidia", ["gpu"])
    assert reservation["count"] in ("all", -1)  # Debian's docker-compose keeps "all", compose v2 writes -1
    assert "utility" in worker["environment"]["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    assert worker["build"]["args"]["TORCH_INDEX_URL"].endswith(("cu128", "cu126", "cu124", "cu121"))
    assert stack["services"]["worker-cpu"]["build"]["args"]["TORCH_INDEX_URL"].endswith("/cpu")


def test_every_daik_service_shares_the_settings(stack: dict[str, Any]) -> None:
    services = stack["services"]
    for name in ("migrate", "api", "worker", "worker-cpu", "beat"):
        env = services[name]["environment"]
        assert env["DAIK_DATABASE_URL"].startswith("postgresql+psycopg://daik:"), name
        assert SECRETS["POSTGRES_PASSWORD"] in env["DAIK_DATABASE_URL"], name
        assert env["DAIK_BROKER_URL"].startswith("redis://redis:6379/"), name
        assert (env["DAIK_DATA_ROOT"], env["DAIK_ARTIFACT_ROOT"]) == ("/data", "/artifacts"), name
        targets = {
            str(v).split(":")[-2] if isinstance(v, str) else v["target"] for v in services[name]["volumes"]
        }
        assert {"/data", "/artifacts"} <= targets, name
    assert services["api"]["environment"]["DAIK_BOOTSTRAP_TOKEN"] == SECRETS["DAIK_BOOTSTRAP_TOKEN"]
    assert all("DAIK_BOOTSTRAP_TOKEN" not in services[n]["environment"] for n in ("worker", "beat"))


def test_dockerfile_builds_torch_then_the_project() -> None:
    lines = [ln.strip() for ln in (REPO / "Dockerfile").read_text().splitlines()]
    code = [ln for ln in lines if ln and not ln.startswith("#")]
    assert code[0] == "FROM python:3.11-slim"
    assert any(ln.startswith("ARG TORCH_INDEX_URL=") for ln in code)
    torch_at = next(i for i, ln in enumerate(code) if 'pip install "torch==' in ln)
    project_at = next(i for i, ln in enumerate(code) if "pip install" in ln and ".[service,worker]" in ln)
    assert torch_at < project_at
    assert "${TORCH_INDEX_URL}" in code[torch_at]
    assert any(ln.startswith("USER ") and "root" not in ln for ln in code)


def _published(port: str | dict[str, Any]) -> tuple[str, str, int]:
    """(host address, host port, container port) of a compose port, in the short form Debian's
    docker-compose prints (``127.0.0.1:8000:8000/tcp``) or the long one of ``docker compose`` v2."""
    if isinstance(port, str):
        host_ip, published, target = port.split("/")[0].rsplit(":", 2)
        return host_ip, published, int(target)
    return str(port.get("host_ip", "")), str(port["published"]), int(port["target"])


def test_api_is_published_on_loopback_unless_asked(compose: list[str], stack: dict[str, Any]) -> None:
    api = stack["services"]["api"]
    assert [_published(p) for p in api["ports"]] == [("127.0.0.1", "8000", 8000)]
    assert api["environment"]["DAIK_COOKIE_SECURE"] == "auto"
    # behind a TLS proxy on another host: every interface, and the session cookie always Secure
    env = {**SECRETS, "DAIK_API_BIND": "0.0.0.0", "DAIK_PORT": "8443", "DAIK_COOKIE_SECURE": "true"}
    result = _config(compose, COMPOSE_FILE, env)
    assert result.returncode == 0, result.stderr
    api = yaml.safe_load(result.stdout)["services"]["api"]
    assert [_published(p) for p in api["ports"]] == [("0.0.0.0", "8443", 8000)]
    assert api["environment"]["DAIK_COOKIE_SECURE"] == "true"
