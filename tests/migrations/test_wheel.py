"""A built wheel carries the migrations: ``daik db upgrade`` works from ``pip install dist/*.whl`` in a fresh
virtual environment, outside the repository (nothing downloaded: the wheel is installed without its
dependencies, which the new environment reads from this one's site-packages through a ``.pth`` file)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from daik_core import __version__
from service import migrate

REPO = Path(__file__).resolve().parents[2]


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, f"{argv}: {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_db_upgrade_from_an_installed_wheel(tmp_path: Path) -> None:
    # built from a copy of the sources: no build/ folder of an earlier build can slip files in
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    for name in ("daik_core", "service", "worker", "migrations"):
        shutil.copytree(REPO / name, src / name, ignore=skip)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."], cwd=src)
    (wheel,) = dist.glob("daik-*.whl")
    assert wheel.name.startswith(f"daik-{__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    versions = sorted(p.name for p in (REPO / "migrations" / "versions").glob("*.py"))
    assert {f"service/migrations/versions/{v}" for v in versions} <= names
    assert {"service/migrations/alembic.ini", "service/migrations/env.py"} <= names
    assert f"daik-{__version__}.dist-info/licenses/LICENSE" in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(py), "-c", purelib], tmp_path).strip())
    (site / "_daik_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([*pip, "--python", str(py), "install", "-q", "--no-deps", str(wheel)], tmp_path)

    work = tmp_path / "elsewhere"  # not the repository: its migrations/ folder must not be what is found
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAIK_") and k != "PYTHONPATH"}
    db = work / "daik.sqlite"
    env.update(DAIK_HOME=str(work / "home"), DAIK_DATABASE_URL=f"sqlite:///{db}")
    where = _run([str(py), "-c", "import service.migrate as m; print(m.MIGRATIONS_DIR)"], work, env).strip()
    assert Path(where) == site / "service" / "migrations"

    out = _run([str(venv / "bin" / "daik"), "db", "upgrade"], work, env)
    head = migrate.head_revision()
    assert f"database at revision {head} (head {head})" in out
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == head and {"job", "api_token"} <= tables
    assert _run([str(venv / "bin" / "daik"), "--version"], work, env).strip() == f"daik {__version__}"
