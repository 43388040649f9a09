"""The ablation table: means over seeds, differences paired by seed with t intervals, the share of the
teacher-student gap, and its CSV / Markdown / JSON forms, on hand-computed values."""

from __future__ import annotations

import csv
import io
import math

import pytest

from daik_core.ablation.table import (
    RunRecord,
    Stat,
    paired_delta,
    summarize,
    t_critical,
    table_csv,
    table_json,
    table_markdown,
    versus,
)


def _records() -> list[RunRecord]:
    recs = [RunRecord("teacher", 0, 0.5, 0.45, 0.3, {"plane": 0.6, "ship": 0.4}, 9_000_000, 20.0, 30.0)]
    for seed, (b, d) in enumerate([(0.10, 0.15), (0.20, 0.24), (0.30, 0.38)]):
        recs.append(
            RunRecord(
                "baseline", seed, b, b - 0.01, b / 2, {"plane": b, "ship": 2 * b}, 5_000_000, 10.0, 15.0
            )
        )
        extra = {"hash": "h", "train_time_s": 600.0 + 60 * seed}
        recs.append(RunRecord("DAIK", seed, d, d - 0.01, d / 2, {"plane": d}, 5_000_000, 10.0, 15.0, extra))
    return recs


def test_t_critical_values() -> None:
    assert t_critical(1) == 12.706 and t_critical(2) == 4.303 and t_critical(30) == 2.042
    assert t_critical(31) == 1.96 and t_critical(1000) == 1.96
    with pytest.raises(ValueError):
        t_critical(0)


def test_paired_difference_by_hand() -> None:
    # differences 0.05, 0.04, 0.08: mean 0.0566667, sd 0.0208167, half width 4.303 * sd / sqrt(3)
    d = paired_delta({0: 0.15, 1: 0.24, 2: 0.38}, {0: 0.10, 1: 0.20, 2: 0.30})
    sd = math.sqrt(((0.05 - 0.17 / 3) ** 2 + (0.04 - 0.17 / 3) ** 2 + (0.08 - 0.17 / 3) ** 2) / 2)
    half = 4.303 * sd / math.sqrt(3)
    assert d.n == 3 and d.mean == pytest.approx(0.17 / 3)
    assert d.lo == pytest.approx(0.17 / 3 - half) and d.hi == pytest.approx(0.17 / 3 + half)
    assert d.lo == pytest.approx(0.004951, abs=1e-6) and d.hi == pytest.approx(0.108382, abs=1e-6)


def test_pairing_uses_only_shared_seeds_and_skips_missing_values() -> None:
    d = paired_delta({0: 0.3, 1: None, 5: 0.9}, {0: 0.1, 1: 0.2, 2: 0.3})
    assert d.n == 1 and d.mean == pytest.approx(0.2) and d.lo is None and d.hi is None
    assert paired_delta({7: 0.1}, {0: 0.1}).n == 0


def test_pairing_removes_the_seed_effect() -> None:
    # each seed shifts both runs alike: the unpaired spread is large, the paired interval is tight
    base = {0: 0.1, 1: 0.3, 2: 0.5}
    d = paired_delta({s: v + 0.02 for s, v in base.items()}, base)
    assert d.mean == pytest.approx(0.02) and d.hi - d.lo == pytest.approx(0.0, abs=1e-9)  # type: ignore[operator]


def test_summarize_means_stds_deltas_and_gap() -> None:
    rows = {r.config: r for r in summarize(_records(), ["teacher", "baseline", "DAIK"])}
    assert list(rows) == ["teacher", "baseline", "DAIK"]
    base, daik, teacher = rows["baseline"], rows["DAIK"], rows["teacher"]
    assert (
        base.seeds == [0, 1, 2]
        and base.map50.mean == pytest.approx(0.2)
        and base.map50.std == pytest.approx(0.1)
    )
    assert base.delta_map50 is None and base.gap_closed == pytest.approx(0.0)
    assert daik.map50.mean == pytest.approx(0.77 / 3)
    assert daik.delta_map50 is not None and daik.delta_map50.mean == pytest.approx(0.17 / 3)
    assert daik.delta_map50_95 is not None and daik.delta_map50_95.mean == pytest.approx(0.17 / 6)
    # teacher 0.5, baseline 0.2: DAIK closes (0.256667 - 0.2) / 0.3 of the gap
    assert daik.gap_closed == pytest.approx((0.77 / 3 - 0.2) / 0.3)
    assert teacher.gap_closed is None and teacher.map50 == Stat(0.5, None, 1)
    assert base.ap50["ship"].mean == pytest.approx(0.4) and "ship" not in daik.ap50
    assert daik.params == 5_000_000 and teacher.latency_ms == 30.0


def test_a_later_record_of_the_same_run_replaces_the_earlier() -> None:
    recs = [RunRecord("baseline", 0, 0.1), RunRecord("baseline", 0, 0.3)]
    (row,) = summarize(recs)
    assert row.map50 == Stat(0.3, None, 1)


def test_no_baseline_or_teacher_gives_no_deltas() -> None:
    rows = summarize([RunRecord("a", 0, 0.1), RunRecord("a", 1, 0.2)])
    assert rows[0].delta_map50 is None and rows[0].gap_closed is None


def test_csv_round_trip() -> None:
    rows = summarize(_records(), ["teacher", "baseline", "DAIK"])
    parsed = list(csv.DictReader(io.StringIO(table_csv(rows))))
    assert [p["config"] for p in parsed] == ["teacher", "baseline", "DAIK"]
    daik = parsed[2]
    assert float(daik["map50_mean"]) == pytest.approx(0.77 / 3, abs=1e-6)
    assert float(daik["delta_map50_ci_lo"]) == pytest.approx(0.004951, abs=1e-6)
    assert daik["ap50_ship"] == "" and float(parsed[1]["ap50_ship"]) == pytest.approx(0.4)
    assert parsed[1]["delta_map50"] == "" and daik["params"] == "5000000"


def test_markdown_and_json() -> None:
    rows = summarize(_records(), ["teacher", "baseline", "DAIK"])
    md = table_markdown(rows)
    assert "| DAIK | 3 | 0.2567 ± 0.1159 |" in md
    assert "+0.0567 [+0.0050, +0.1084]" in md and "| 19 % |" in md
    assert "| 15.0 | 11 |" in md  # CPU latency, then the mean training time in minutes (600, 660, 720 s)
    assert "| 15.0 | - |" in md  # the baseline's records have no training time
    assert "| configuration | plane | ship |" in md  # the per-class table
    assert "| mAP50 by seed | seed 0 | seed 1 | seed 2 |" in md
    assert "| DAIK | 0.1500 | 0.2400 | 0.3800 |" in md and "| teacher | 0.5000 | - | - |" in md
    brief = table_markdown(rows, per_class=False)
    assert "plane" not in brief and "by seed" not in brief
    js = table_json(rows, spec="x")
    assert js["spec"] == "x" and js["rows"][2]["delta_map50"]["ci95"][0] == pytest.approx(0.004951, abs=1e-6)


def test_record_round_trip_turns_non_finite_into_none() -> None:
    r = RunRecord("a", 1, float("nan"), 0.2, None, {"x": float("inf"), "y": 0.5}, 10, 1.5, 2.0, {"hash": "h"})
    back = RunRecord.from_dict(r.to_dict())
    assert back.map50 is None and back.ap50 == {"x": None, "y": 0.5} and back.extra == {"hash": "h"}


def test_versus_pairs_one_configuration_against_every_other() -> None:
    recs = [*_records(), RunRecord("CWD", 0, 0.12, None, None, {}, None, None, None)]
    lines = versus(recs, "DAIK", ["teacher", "baseline", "DAIK", "CWD"])
    # DAIK - baseline: diffs .05, .04, .08 -> mean .0567, sd .0208, half 4.303 * sd / sqrt 3
    half = t_critical(2) * 0.02081666 / math.sqrt(3)
    ci = f"[{0.0566667 - half:+.4f}, {0.0566667 + half:+.4f}]"
    assert lines[1] == f"DAIK - baseline: +0.0567 {ci} mAP50, ahead on 3 of 3 seeds"
    assert lines[0] == "DAIK - teacher: -0.3500 (n=1) mAP50, ahead on 0 of 1 seeds"  # the teacher's seed 0
    assert lines[2] == "DAIK - CWD: +0.0300 (n=1) mAP50, ahead on 1 of 1 seeds"
    with pytest.raises(ValueError, match="FitNet"):
        versus(recs, "FitNet")
