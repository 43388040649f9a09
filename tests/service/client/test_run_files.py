"""The run-folder helpers behind ``/jobs/{id}/files`` and ``/jobs/{id}/logs``, on files made here: the
kinds, the listing (symlinks left out), path checks, and the log tail read backwards across blocks."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from service.artifacts import service as files
from service.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", artifact_root=tmp_path / "artifacts", data_root=tmp_path / "data")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("results.json", "results"),
        ("metrics.jsonl", "metrics"),
        ("events.jsonl", "events"),
        ("trainer.log", "log"),
        ("pr_curve.png", "plot"),
        ("val_pred_0.JPG", "plot"),
        ("best.onnx", "onnx"),
        ("last.pt", "checkpoint"),
        ("job_spec.yaml", "spec"),
        ("gallery.json", "other"),
    ],
)
def test_file_kind(name: str, kind: str) -> None:
    assert files.file_kind(name) == kind


def test_listing_and_lookup_stay_in_the_folder(settings: Settings, tmp_path: Path) -> None:
    job_id = uuid.uuid4()
    root = files.job_output_dir(settings, job_id)
    (root / "attempt-2" / "weights").mkdir(parents=True)
    (root / "attempt-2" / "weights" / "best.pt").write_bytes(b"x" * 7)
    (root / "attempt-2" / "results.json").write_text("{}")
    (root / "notes.txt").write_text("n")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (root / "attempt-2" / "out.txt").symlink_to(outside)
    (root / "attempt-3").symlink_to(tmp_path)

    listed, truncated = files.list_job_files(settings, job_id)
    assert not truncated
    assert [(f.path, f.size, f.kind, f.attempt) for f in listed] == [
        ("attempt-2/results.json", 2, "results", 2),
        ("attempt-2/weights/best.pt", 7, "checkpoint", 2),
        ("notes.txt", 1, "other", None),
    ]
    assert files.job_file(settings, job_id, value="attempt-2/weights/best.pt") == (
        root / "attempt-2" / "weights" / "best.pt"
    )
    for bad in (
        "attempt-2/out.txt",
        "attempt-3/outside.txt",
        "../../outside.txt",
        str(outside),
        "attempt-2/../notes.txt",
        "attempt-2//results.json",
        "attempt-2\\results.json",
        "notes.txt\x00",
        "attempt-2",
        "",
    ):
        assert files.job_file(settings, job_id, value=bad) is None, bad
    assert files.list_job_files(settings, uuid.uuid4()) == ([], False)  # not started: no folder


def test_log_tail_reads_the_last_lines_across_blocks(settings: Settings) -> None:
    job_id = uuid.uuid4()
    root = files.job_output_dir(settings, job_id)
    (root / "attempt-1").mkdir(parents=True)
    (root / "attempt-2").mkdir(parents=True)
    lines = [f"line {i} " + "x" * 50 for i in range(5000)]  # ~290 KB: several 64 KiB blocks
    (root / "attempt-2" / "trainer.log").write_text("\n".join(lines) + "\n")
    (root / "attempt-1" / "trainer.log").write_text("first attempt\n")

    tail = files.log_tail(settings, job_id, [(1, None), (2, None)], tail=3000)
    assert tail is not None and tail.attempt == 2 and tail.path == "attempt-2/trainer.log"
    assert tail.lines == lines[-3000:]
    first = files.log_tail(settings, job_id, [(1, None), (2, None)], tail=10, attempt=1)
    assert first == files.LogTail(1, "attempt-1/trainer.log", ["first attempt"])
    assert files.log_tail(settings, job_id, [(1, None), (2, None)], tail=0).lines == []
    assert files.log_tail(settings, job_id, [(1, None)], tail=5, attempt=4) is None


def test_log_tail_falls_back_to_the_stored_tail(settings: Settings) -> None:
    job_id = uuid.uuid4()
    stored = [(1, "a\nb\nc")]
    assert files.log_tail(settings, job_id, stored, tail=2) == files.LogTail(1, None, ["b", "c"])
    assert files.log_tail(settings, job_id, [], tail=2) == files.LogTail(None, None, [])
