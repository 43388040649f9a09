"""The typed event stream (``daik_core.events``): encode / decode of every kind, precise errors, strict JSON,
and no torch."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from daik_core.events import (
    Checkpoint,
    End,
    Epoch,
    Eval,
    Event,
    EventError,
    EventWriter,
    Failure,
    Progress,
    RankExit,
    Start,
    decode,
    encode,
)

EVERY_KIND: list[Event] = [
    Start(epochs=3, iters_per_epoch=4, epoch=1, step=4),
    Progress(epoch=2, iteration=1, iters_per_epoch=4, step=5, loss=0.5, images_per_s=None),
    Eval(epoch=2, step=8, map50=0.5, map50_95=0.25, ap50={"a": 0.5, "b": None}, ap50_95={"a": 0.25}),
    Epoch(epoch=2, step=8, metrics={"loss": 1.5, "lr": 0.01}),
    Checkpoint(epoch=2, step=8, path="/x/weights/last.pt", is_best=False),
    End(status="stopped", results={"status": "stopped", "epoch": 2}),
    Failure(kind="oom", message="OutOfMemoryError: CUDA out of memory", rank=1),
    RankExit(rank=1, exitcode=-9, message=None, first=True),
]


@pytest.mark.parametrize("event", EVERY_KIND, ids=lambda e: e.KIND)
def test_every_kind_round_trips(event: Event) -> None:
    line = encode(event)
    assert "\n" not in line and json.loads(line)["event"] == event.KIND
    assert decode(line) == event
    assert decode(line.encode()) == event


def test_the_wire_format_is_flat_json_with_nulls_for_non_finite_numbers() -> None:
    line = encode(Epoch(epoch=1, step=2, metrics={"loss": math.nan, "lr": math.inf, "x": 1.0}))
    assert json.loads(line) == {
        "event": "epoch",
        "epoch": 1,
        "step": 2,
        "metrics": {"loss": None, "lr": None, "x": 1.0},
    }
    # an int stands for a float; fields decode does not know are ignored (a newer writer may add some)
    got = decode('{"event": "eval", "epoch": 1, "step": 2, "map50": 1, "map50_95": null, "new": [1]}')
    assert got == Eval(epoch=1, step=2, map50=1.0, map50_95=None)
    assert isinstance(got, Eval) and isinstance(got.map50, float)
    assert RankExit(rank=0, exitcode=-9).signal is not None and RankExit(rank=0, exitcode=1).signal is None


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not an event"),
        ('{"epoch": 1}', "not an event"),
        ('{"event": "bogus"}', "unknown event 'bogus'"),
        ('{"event": "start", "epochs": 2}', "start event: missing field 'iters_per_epoch'"),
        ('{"event": "start", "epochs": "2", "iters_per_epoch": 1}', "start.epochs: '2' is not int"),
        ('{"event": "start", "epochs": true, "iters_per_epoch": 1}', "start.epochs: True is not int"),
        ('{"event": "end", "status": "done"}', "end.status: 'done' is not one of 'completed', 'stopped'"),
        ('{"event": "failure", "kind": "oom", "message": 3}', "failure.message: 3 is not str"),
        (
            '{"event": "epoch", "epoch": 1, "step": 1, "metrics": {"a": "x"}}',
            "epoch.metrics['a']: 'x' is not",
        ),
    ],
)
def test_a_bad_line_is_an_error_that_names_what_is_wrong(line: str, error: str) -> None:
    with pytest.raises(EventError, match=error.replace("[", r"\[").replace("(", r"\(")):
        decode(line)


def test_the_writer_appends_whole_lines_and_creates_the_file_on_the_first_event(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.jsonl"
    writer = EventWriter(path)
    assert not path.exists()
    with writer:
        writer.write(EVERY_KIND[0])
    with EventWriter(path) as again:  # another process (a rank) appends to the same file
        again.write(EVERY_KIND[-1])
    assert [decode(line) for line in path.read_text().splitlines()] == [EVERY_KIND[0], EVERY_KIND[-1]]


def test_importing_the_events_loads_no_torch() -> None:
    """The worker's process reads these types and never imports torch (import-linter checks it too)."""
    code = "import sys, daik_core.events; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
