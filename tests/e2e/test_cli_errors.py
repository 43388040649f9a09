"""User mistakes at the command line, run as a user runs them (a ``daik`` process): a non-zero exit, one line
on stderr that names the file or setting and the problem, and no Python traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: the distributions of the ``service`` extra, by import name (what `daik up` finds missing without it)
SERVICE_EXTRA_MODULES = (
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "pydantic_settings",
    "celery",
    "redis",
    "httpx",
    "psutil",
    "orjson",
    "cronsim",
    "jinja2",
    "itsdangerous",
)


def _env(tmp_path: Path, **daik: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAIK_")}
    env.update(DAIK_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1", **daik)
    return env


def _fails_in_one_line(argv: list[str], env: dict[str, str], *expected: str) -> str:
    """Run ``daik ARGV`` (or ``python -c`` when ``argv[0] == "-c"``); the error line it printed."""
    cmd = [sys.executable, *argv] if argv[0] == "-c" else [sys.executable, "-m", "daik_core.cli", *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    err = proc.stderr
    assert proc.returncode not in (0, None), (proc.returncode, proc.stdout, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("daik: error: "), err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def test_train_given_a_folder(tmp_path: Path) -> None:
    _fails_in_one_line(["train", str(tmp_path)], _env(tmp_path), str(tmp_path), "a folder, not a job spec")


def test_train_with_a_dataset_folder_that_is_not_there(tmp_path: Path) -> None:
    spec = tmp_path / "configs" / "s.yaml"
    spec.parent.mkdir()
    spec.write_text("name: s\ndataset:\n  train: ../data/x\n")
    resolved = tmp_path / "data" / "x"
    wanted = f"{spec}:3: dataset.train: ../data/x (resolved to {resolved}): folder does not exist"
    assert _fails_in_one_line(["train", str(spec)], _env(tmp_path)) == f"daik: error: {wanted}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", ("DAIK_DATABASE_URL", "not a database URL")),
        ("nosuchdb://host/db", ("DAIK_DATABASE_URL nosuchdb://host/db", "unknown database dialect")),
        # a PostgreSQL server that is not there (nothing listens on port 1): refused at once
        ("postgresql+psycopg://daik:s3cret@127.0.0.1:1/daik", ("DAIK_DATABASE_URL", "cannot connect")),
        ("sqlite:////nonexistent-folder/daik.sqlite", ("/nonexistent-folder/daik.sqlite", "cannot connect")),
    ],
)
def test_bad_or_unreachable_database_url(tmp_path: Path, url: str, expected: tuple[str, ...]) -> None:
    line = _fails_in_one_line(["db", "upgrade"], _env(tmp_path, DAIK_DATABASE_URL=url), *expected)
    assert "s3cret" not in line  # the password never appears


def test_database_url_errors_reach_daik_up_and_token_too(tmp_path: Path) -> None:
    env = _env(tmp_path, DAIK_DATABASE_URL="postgresql+psycopg://daik:s3cret@127.0.0.1:1/daik")
    _fails_in_one_line(["up"], env, "DAIK_DATABASE_URL", "cannot connect")
    _fails_in_one_line(["db", "current"], _env(tmp_path, DAIK_DATABASE_URL="::"), "DAIK_DATABASE_URL")


def test_a_bad_setting_is_named_by_its_variable(tmp_path: Path) -> None:
    _fails_in_one_line(["db", "current"], _env(tmp_path, DAIK_LEASE_SECONDS="1"), "DAIK_LEASE_SECONDS")


def test_daik_up_without_the_service_extra_says_which_extra(tmp_path: Path) -> None:
    blocked = "".join(f"sys.modules[{m!r}] = None; " for m in SERVICE_EXTRA_MODULES)
    code = f"import sys; {blocked}from daik_core.cli import main; sys.exit(main(['up']))"
    _fails_in_one_line(["-c", code], _env(tmp_path), "`daik up` needs the service extra", "daik[service]")


def test_a_corrupt_checkpoint_gets_no_advice_to_load_it_unsafely(tmp_path: Path) -> None:
    import torch

    image = tmp_path / "a.png"
    image.write_bytes(b"")  # never read: the checkpoint fails first
    foreign = tmp_path / "foreign.pt"  # a zip archive of torch.save with an object that is not a tensor
    torch.save({"format": "daik-checkpoint", "model": argparse.Namespace(x=1)}, foreign)
    torn = tmp_path / "torn.pt"
    torn.write_bytes(foreign.read_bytes()[:200])
    for weights in (foreign, torn):
        argv = ["predict", "--weights", str(weights), "--source", str(image), "--out", str(tmp_path / "o")]
        line = _fails_in_one_line(argv, _env(tmp_path), str(weights), "not a readable checkpoint")
        assert "weights_only" not in line and "torch.load" not in line


def test_ablate_table_only_without_finished_runs(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\ndataset: {train: data/train, val: data/val}\noutput: runs/s\n")
    argv = ["ablate", str(spec), "--grid", "daik", "--table-only", "--out", str(tmp_path / "ablate")]
    _fails_in_one_line(argv, _env(tmp_path), "no finished run", str(tmp_path / "ablate"))


def test_eval_dota_without_task1_files_of_any_class(tmp_path: Path) -> None:
    ann, det = tmp_path / "labelTxt", tmp_path / "det"
    ann.mkdir()
    det.mkdir()
    (ann / "P1.txt").write_text("0 0 10 0 10 10 0 10 plane 0\n")
    (det / "Task1_plane.TXT").write_text("P1 0.9 0 0 10 0 10 10 0 10\n")  # not the Task1_<class>.txt name
    argv = ["eval", "dota", "--ann-dir", str(ann), "--det-dir", str(det)]
    _fails_in_one_line(argv, _env(tmp_path), str(det), "no Task1_<class>.txt")
    (det / "Task1_ship.txt").write_text("")  # one class's (empty) file: a model that found no ship
    proc = subprocess.run([sys.executable, "-m", "daik_core.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 0 and "mAP50" in proc.stdout, proc.stderr
