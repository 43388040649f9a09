"""The ablation's record of compute environments: the distinct environments of a table's runs, and the
warning when one table mixes runs trained in different ones."""

from __future__ import annotations

import io
import json
from pathlib import Path

from daik_core.ablation.runner import foreign_environment_warning, write_table
from daik_core.ablation.table import RunRecord, environment_warning, training_environments


def _env(env_id: str, name: str) -> dict[str, object]:
    return {"id": env_id, "device": "cpu", "device_name": name, "torch": "2.13.0", "threads": 1}


def _record(config: str, seed: int, *envs: dict[str, object]) -> RunRecord:
    return RunRecord(config, seed, 0.5, extra={"hash": "h", "environments": list(envs)})


def test_one_environment_gives_no_warning() -> None:
    a = _env("aaaaaaaaaaaa", "AMD EPYC")
    records = [_record("baseline", 0, a), _record("DAIK", 0, a), RunRecord("teacher", 0, 0.7)]
    assert training_environments(records) == {"aaaaaaaaaaaa": a}
    assert environment_warning(records) is None
    # records written before environments were recorded count for none
    assert environment_warning([*records, RunRecord("DAIK", 1, 0.5, extra={"hash": "h"})]) is None


def test_mixed_environments_are_named_with_their_runs(tmp_path: Path) -> None:
    a, b = _env("aaaaaaaaaaaa", "AMD EPYC"), _env("bbbbbbbbbbbb", "Intel Xeon")
    records = [_record("baseline", 0, a), _record("DAIK", 0, b), _record("DAIK", 1, a, b)]
    assert list(training_environments(records)) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    warning = environment_warning(records)
    assert warning is not None and "2 compute environments" in warning
    assert "aaaaaaaaaaaa (AMD EPYC, torch 2.13.0, 1 threads): baseline seed 0, DAIK seed 1" in warning
    assert "bbbbbbbbbbbb (Intel Xeon, torch 2.13.0, 1 threads): DAIK seed 0, DAIK seed 1" in warning
    # the table's JSON lists them, and writing it prints the warning on the log it is given
    log = io.StringIO()
    write_table(tmp_path, records, ["baseline", "DAIK"], log, spec="s")
    table = json.loads((tmp_path / "ablation.json").read_text())
    assert [e["id"] for e in table["environments"]] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert log.getvalue() == f"ablate: warning: {warning}\n"
    one = io.StringIO()
    write_table(tmp_path, records[:1], ["baseline", "DAIK"], one, spec="s")
    assert one.getvalue() == ""


def test_warning_names_the_kernels_of_two_processors_of_one_name() -> None:
    a = {**_env("aaaaaaaaaaaa", "AMD EPYC"), "cpu_capability": "AVX512"}
    b = {**_env("bbbbbbbbbbbb", "AMD EPYC"), "cpu_capability": "AVX2"}
    warning = environment_warning([_record("baseline", 0, a), _record("baseline", 1, b)])
    assert warning is not None
    assert "aaaaaaaaaaaa (AMD EPYC, AVX512 kernels, torch 2.13.0, 1 threads): baseline seed 0" in warning
    assert "bbbbbbbbbbbb (AMD EPYC, AVX2 kernels, torch 2.13.0, 1 threads): baseline seed 1" in warning


def test_a_machine_foreign_to_the_finished_runs_is_warned_about_before_training(tmp_path: Path) -> None:
    a = {**_env("aaaaaaaaaaaa", "AMD EPYC"), "cpu_capability": "AVX512"}
    b = {**_env("bbbbbbbbbbbb", "AMD EPYC"), "cpu_capability": "AVX2"}
    assert foreign_environment_warning(tmp_path, a) is None  # nothing trained yet
    for config, seed in (("baseline", 0), ("daik", 0), ("daik", 1)):
        run = tmp_path / "runs" / config / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"status": "completed", "environments": [a]}))
    (tmp_path / "runs" / "daik" / "seed2").mkdir()
    (tmp_path / "runs" / "daik" / "seed2" / "results.json").write_text("{broken")  # skipped
    assert foreign_environment_warning(tmp_path, a) is None  # the same machine
    warning = foreign_environment_warning(tmp_path, b)
    assert warning is not None
    assert warning.startswith("this process's compute environment bbbbbbbbbbbb (AMD EPYC, AVX2 kernels")
    assert "aaaaaaaaaaaa (AMD EPYC, AVX512 kernels, torch 2.13.0, 1 threads): 3 run(s)" in warning
    assert "not be bit-comparable" in warning


def test_runs_known_only_by_their_scores_count_as_trained_elsewhere(tmp_path: Path) -> None:
    """A grid continued on another machine from a committed table holds the runs' scores (record-*.json)
    without their results.json: their environments count as well."""
    a = {**_env("aaaaaaaaaaaa", "AMD EPYC"), "cpu_capability": "AVX512"}
    b = {**_env("bbbbbbbbbbbb", "AMD EPYC"), "cpu_capability": "AVX2"}
    for config, seed in (("baseline", 0), ("daik", 0)):
        run = tmp_path / "runs" / config / f"seed{seed}"
        run.mkdir(parents=True)
        for split in ("val-1", "tune-2"):  # two splits' scores of one run: one run
            record = _record(config, seed, a).to_dict()
            (run / f"record-{split}.json").write_text(json.dumps(record))
    (tmp_path / "runs" / "teacher").mkdir()
    (tmp_path / "runs" / "teacher" / "record-val-1.json").write_text(
        json.dumps(RunRecord("teacher", 0, 0.7).to_dict())
    )
    warning = foreign_environment_warning(tmp_path, b)
    assert (
        warning is not None
        and "aaaaaaaaaaaa (AMD EPYC, AVX512 kernels, torch 2.13.0, 1 threads): 2 run(s)" in warning
    )
    assert foreign_environment_warning(tmp_path, a) is None
    # a results.json speaks for its run, before the records: here the run was trained on b
    run = tmp_path / "runs" / "daik" / "seed0"
    (run / "results.json").write_text(json.dumps({"status": "completed", "environments": [b]}))
    assert foreign_environment_warning(tmp_path, b) is None
    warning = foreign_environment_warning(tmp_path, {**_env("cccccccccccc", "Intel Xeon")})
    assert warning is not None and "aaaaaaaaaaaa" in warning and "bbbbbbbbbbbb" in warning
    assert ": 1 run(s)" in warning and ": 2 run(s)" not in warning
