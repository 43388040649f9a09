"""The ablation table (torch-free: ``daik ablate`` and the service's batch results use the same code).

Input: one :class:`RunRecord` per (configuration, seed): the evaluation of that run's final model. Output:
one :class:`Row` per configuration with the mean and sample standard deviation over seeds of mAP50 (VOC07,
the DOTA server's 11-point metric, and all-point), mAP50:95 and each class's AP50; the difference from the
baseline **paired by seed** (the mean of ``x_seed - baseline_seed`` over the seeds both have, with a
two-sided Student-t confidence interval: each seed changes the data order, augmentation and initialisation
of both runs alike, so the paired difference has much less variance than the two means); the share of the
teacher-student gap that a configuration closes; and the model's parameters, GFLOPs and CPU latency.

Rendered as JSON (:func:`table_json`), CSV (:func:`table_csv`: one line per configuration, per-class
columns) and Markdown (:func:`table_markdown`).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Delta",
    "Row",
    "RunRecord",
    "Stat",
    "describe_environment",
    "environment_warning",
    "paired_delta",
    "summarize",
    "t_critical",
    "table_csv",
    "table_json",
    "table_markdown",
    "training_environments",
    "versus",
]

#: Two-sided 95 % critical values of Student's t for 1..30 degrees of freedom (beyond: 1.96, the normal's).
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_critical(df: int) -> float:
    """The two-sided 95 % critical value of Student's t with ``df`` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T95[df - 1] if df <= len(_T95) else 1.96


def _num(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


@dataclass
class RunRecord:
    """The evaluation of one run's final model (the teacher's record is its checkpoint's)."""

    config: str
    seed: int
    map50: float | None
    map50_all: float | None = None
    map50_95: float | None = None
    ap50: dict[str, float | None] = field(default_factory=dict)
    params: int | None = None
    gflops: float | None = None
    latency_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # anything else a caller keeps (paths, times)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "seed": self.seed,
            "map50": self.map50,
            "map50_all": self.map50_all,
            "map50_95": self.map50_95,
            "ap50": dict(self.ap50),
            "params": self.params,
            "gflops": self.gflops,
            "latency_ms": self.latency_ms,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> RunRecord:
        return RunRecord(
            config=str(d["config"]),
            seed=int(d["seed"]),
            map50=_num(d.get("map50")),
            map50_all=_num(d.get("map50_all")),
            map50_95=_num(d.get("map50_95")),
            ap50={str(k): _num(v) for k, v in dict(d.get("ap50") or {}).items()},
            params=None if d.get("params") is None else int(d["params"]),
            gflops=_num(d.get("gflops")),
            latency_ms=_num(d.get("latency_ms")),
            extra=dict(d.get("extra") or {}),
        )


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (None for one value) over ``n`` seeds."""

    mean: float | None
    std: float | None
    n: int

    @staticmethod
    def of(values: Iterable[float | None]) -> Stat:
        xs = [v for v in values if v is not None]
        if not xs:
            return Stat(None, None, 0)
        return Stat(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))

    @property
    def ci95(self) -> float | None:
        """Half-width of the mean's two-sided 95 % t interval, ``t * std / sqrt(n)`` (None for one value)."""
        if self.std is None or self.n < 2:
            return None
        return t_critical(self.n - 1) * self.std / math.sqrt(self.n)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


@dataclass(frozen=True)
class Delta:
    """A difference from the baseline paired by seed: mean over the ``n`` shared seeds and its two-sided
    95 % t interval ``[lo, hi]`` (None with fewer than two pairs)."""

    mean: float | None
    lo: float | None
    hi: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci95": None if self.lo is None else [self.lo, self.hi], "n": self.n}


def paired_delta(values: Mapping[int, float | None], baseline: Mapping[int, float | None]) -> Delta:
    """``values - baseline`` paired by seed (seeds where either is missing are left out)."""
    diffs = []
    for s, v in sorted(values.items()):
        b = baseline.get(s)
        if v is not None and b is not None:
            diffs.append(v - b)
    n = len(diffs)
    if n == 0:
        return Delta(None, None, None, 0)
    mean = statistics.fmean(diffs)
    if n == 1:
        return Delta(mean, None, None, 1)
    half = t_critical(n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return Delta(mean, mean - half, mean + half, n)


@dataclass
class Row:
    """One configuration of the table."""

    config: str
    seeds: list[int]
    map50: Stat
    map50_all: Stat
    map50_95: Stat
    ap50: dict[str, Stat]
    delta_map50: Delta | None  # None for the baseline itself (and when there is no baseline)
    delta_map50_95: Delta | None
    gap_closed: float | None  # (mean - baseline mean) / (teacher mean - baseline mean), mAP50
    params: int | None
    gflops: float | None
    latency_ms: float | None
    map50_by_seed: dict[int, float | None] = field(default_factory=dict)
    train_time_s: Stat = field(default_factory=lambda: Stat(None, None, 0))
    gap_closed_ci95: tuple[float, float] | None = None  # the paired interval of delta_map50 / the gap

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "seeds": list(self.seeds),
            "map50": self.map50.to_dict(),
            "map50_all": self.map50_all.to_dict(),
            "map50_95": self.map50_95.to_dict(),
            "ap50": {k: s.to_dict() for k, s in self.ap50.items()},
            "delta_map50": None if self.delta_map50 is None else self.delta_map50.to_dict(),
            "delta_map50_95": None if self.delta_map50_95 is None else self.delta_map50_95.to_dict(),
            "gap_closed": self.gap_closed,
            "gap_closed_ci95": None if self.gap_closed_ci95 is None else list(self.gap_closed_ci95),
            "map50_by_seed": {str(k): v for k, v in self.map50_by_seed.items()},
            "train_time_s": self.train_time_s.to_dict(),
            "params": self.params,
            "gflops": self.gflops,
            "latency_ms": self.latency_ms,
        }


def _first(values: Iterable[Any]) -> Any:
    return next((v for v in values if v is not None), None)


@dataclass(frozen=True)
class _Reference:
    """What every row of :func:`summarize` is compared with: the baseline's mAP50 and mAP50:95 by seed
    (None without a baseline), its mean mAP50, and the teacher-student gap of mean mAP50 (None without
    both)."""

    map50: dict[int, float | None] | None
    map50_95: dict[int, float | None] | None
    mean: float | None
    gap: float | None


def _by_config(records: Iterable[RunRecord]) -> dict[str, dict[int, RunRecord]]:
    """The records by configuration and seed; a later record of a (configuration, seed) replaces one."""
    by_config: dict[str, dict[int, RunRecord]] = {}
    for r in records:
        by_config.setdefault(r.config, {})[r.seed] = r
    return by_config


def _reference(
    by_config: Mapping[str, Mapping[int, RunRecord]], baseline: str, teacher: str | None
) -> _Reference:
    base = by_config.get(baseline)
    base_map50 = {s: r.map50 for s, r in base.items()} if base else None
    base_map5095 = {s: r.map50_95 for s, r in base.items()} if base else None
    base_mean = Stat.of(base_map50.values()).mean if base_map50 else None
    teacher_mean = (
        Stat.of(r.map50 for r in by_config[teacher].values()) if teacher and teacher in by_config else None
    )
    gap = (
        teacher_mean.mean - base_mean
        if teacher_mean is not None and teacher_mean.mean is not None and base_mean is not None
        else None
    )
    return _Reference(base_map50, base_map5095, base_mean, gap)


def _classes_of(recs: Sequence[RunRecord]) -> list[str]:
    """The classes of the records' AP50, in order of appearance."""
    classes: list[str] = []
    for r in recs:
        classes += [c for c in r.ap50 if c not in classes]
    return classes


def _gap_closed(
    m50: Stat, delta: Delta | None, ref: _Reference
) -> tuple[float | None, tuple[float, float] | None]:
    """The share of the teacher-student gap a (non-teacher) row closes, and its paired interval."""
    if not ref.gap:
        return None, None
    closed = (m50.mean - ref.mean) / ref.gap if m50.mean is not None and ref.mean is not None else None
    if delta is None or delta.lo is None or delta.hi is None:
        return closed, None
    return closed, (delta.lo / ref.gap, delta.hi / ref.gap)


def _row(
    name: str, runs: Mapping[int, RunRecord], ref: _Reference, *, is_base: bool, is_teacher: bool
) -> Row:
    """The row of configuration ``name`` from its records by seed, against ``ref``."""
    seeds = sorted(runs)
    recs = [runs[s] for s in seeds]
    m50 = Stat.of(r.map50 for r in recs)
    delta_map50 = (
        None if is_base or ref.map50 is None else paired_delta({s: runs[s].map50 for s in seeds}, ref.map50)
    )
    delta_map50_95 = (
        None
        if is_base or ref.map50_95 is None
        else paired_delta({s: runs[s].map50_95 for s in seeds}, ref.map50_95)
    )
    gap_closed, gap_closed_ci95 = (None, None) if is_teacher else _gap_closed(m50, delta_map50, ref)
    return Row(
        config=name,
        seeds=seeds,
        map50=m50,
        map50_all=Stat.of(r.map50_all for r in recs),
        map50_95=Stat.of(r.map50_95 for r in recs),
        ap50={c: Stat.of(r.ap50.get(c) for r in recs) for c in _classes_of(recs)},
        delta_map50=delta_map50,
        delta_map50_95=delta_map50_95,
        gap_closed=gap_closed,
        params=_first(r.params for r in recs),
        gflops=_first(r.gflops for r in recs),
        latency_ms=_first(r.latency_ms for r in recs),
        map50_by_seed={s: runs[s].map50 for s in seeds},
        train_time_s=Stat.of(_num(r.extra.get("train_time_s")) for r in recs),
        gap_closed_ci95=gap_closed_ci95,
    )


def summarize(
    records: Iterable[RunRecord],
    order: Sequence[str] | None = None,
    *,
    baseline: str = "baseline",
    teacher: str | None = "teacher",
) -> list[Row]:
    """One row per configuration, in ``order`` (then any other configuration in order of appearance).
    Differences are taken against the ``baseline`` configuration; the teacher-student gap against the
    ``teacher`` one (each ignored when absent). A later record of the same (configuration, seed) replaces
    an earlier one."""
    by_config = _by_config(records)
    names = [c for c in (order or []) if c in by_config] + [c for c in by_config if c not in (order or [])]
    ref = _reference(by_config, baseline, teacher)
    return [
        _row(name, by_config[name], ref, is_base=name == baseline, is_teacher=name == teacher)
        for name in names
    ]


def table_json(rows: Sequence[Row], **meta: Any) -> dict[str, Any]:
    return {**meta, "rows": [r.to_dict() for r in rows]}


def _classes(rows: Sequence[Row]) -> list[str]:
    out: list[str] = []
    for r in rows:
        out += [c for c in r.ap50 if c not in out]
    return out


def _cell(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def table_csv(rows: Sequence[Row]) -> str:
    """One line per configuration; per-class AP50 means as ``ap50_<class>`` columns."""
    classes = _classes(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["config", "seeds"]
    for m in ("map50", "map50_all", "map50_95"):
        head += [f"{m}_mean", f"{m}_std"]
    head += ["delta_map50", "delta_map50_ci_lo", "delta_map50_ci_hi", "delta_map50_95", "gap_closed"]
    head += ["params", "gflops", "latency_ms"] + [f"ap50_{c}" for c in classes]
    w.writerow(head)
    for r in rows:
        d, d95 = r.delta_map50, r.delta_map50_95
        line: list[Any] = [r.config, len(r.seeds)]
        for s in (r.map50, r.map50_all, r.map50_95):
            line += [_cell(s.mean, 6), _cell(s.std, 6)]
        line += [
            _cell(d.mean if d else None, 6),
            _cell(d.lo if d else None, 6),
            _cell(d.hi if d else None, 6),
            _cell(d95.mean if d95 else None, 6),
            _cell(r.gap_closed, 4),
            "" if r.params is None else r.params,
            _cell(r.gflops, 3),
            _cell(r.latency_ms, 2),
        ]
        line += [_cell(r.ap50[c].mean if c in r.ap50 else None, 6) for c in classes]
        w.writerow(line)
    return buf.getvalue()


def _pm(s: Stat) -> str:
    if s.mean is None:
        return "-"
    return f"{s.mean:.4f}" if s.std is None else f"{s.mean:.4f} ± {s.std:.4f}"


def _delta(d: Delta | None) -> str:
    if d is None or d.mean is None:
        return "-"
    if d.lo is None or d.hi is None:
        return f"{d.mean:+.4f} (n={d.n})"
    return f"{d.mean:+.4f} [{d.lo:+.4f}, {d.hi:+.4f}]"


def table_markdown(rows: Sequence[Row], *, per_class: bool = True) -> str:
    """The main table (means ± std over seeds, paired differences with 95 % intervals, cost, mean training
    time) and, with ``per_class``, a table of the per-class AP50 means and one of mAP50 by seed."""
    lines = [
        "| configuration | seeds | mAP50 (VOC07) | mAP50 (all-point) | mAP50:95 "
        "| Δ mAP50 vs baseline [95% CI] | Δ mAP50:95 | gap closed | params (M) | GFLOPs | CPU latency (ms) "
        "| train time (min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        minutes = r.train_time_s.mean
        lines.append(
            f"| {r.config} | {len(r.seeds)} | {_pm(r.map50)} | {_pm(r.map50_all)} | {_pm(r.map50_95)} "
            f"| {_delta(r.delta_map50)} | {_delta(r.delta_map50_95)} "
            f"| {'-' if r.gap_closed is None else f'{100 * r.gap_closed:.0f} %'} "
            f"| {'-' if r.params is None else f'{r.params / 1e6:.2f}'} "
            f"| {'-' if r.gflops is None else f'{r.gflops:.2f}'} "
            f"| {'-' if r.latency_ms is None else f'{r.latency_ms:.1f}'} "
            f"| {'-' if minutes is None else f'{minutes / 60:.0f}'} |"
        )
    if not per_class:
        return "\n".join(lines) + "\n"
    classes = _classes(rows)
    if classes:
        lines += ["", "| configuration | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
        for r in rows:
            cells = [_cell(r.ap50[c].mean if c in r.ap50 else None, 3) or "-" for c in classes]
            lines.append(f"| {r.config} | " + " | ".join(cells) + " |")
    seeds = sorted({s for r in rows for s in r.map50_by_seed})
    if seeds:
        lines += ["", "| mAP50 by seed | " + " | ".join(f"seed {s}" for s in seeds) + " |"]
        lines.append("|---|" + "---:|" * len(seeds))
        for r in rows:
            cells = [_cell(r.map50_by_seed.get(s)) or "-" for s in seeds]
            lines.append(f"| {r.config} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def versus(records: Iterable[RunRecord], name: str, order: Sequence[str] | None = None) -> list[str]:
    """One line per other configuration: ``name``'s mAP50 minus that configuration's, paired by seed, with
    its 95 % t interval (``daik ablate --versus NAME``); configurations sharing no seed are left out."""
    by_config: dict[str, dict[int, float]] = {}
    for r in records:
        if r.map50 is not None:
            by_config.setdefault(r.config, {})[r.seed] = r.map50
    if name not in by_config:
        raise ValueError(f"no finished run of {name!r}")
    mine = by_config[name]
    names = [c for c in (order or []) if c in by_config] + [c for c in by_config if c not in (order or [])]
    lines = []
    for other in names:
        if other == name:
            continue
        d = paired_delta(mine, by_config[other])
        if d.n:
            wins = sum(1 for s, v in mine.items() if s in by_config[other] and v > by_config[other][s])
            lines.append(f"{name} - {other}: {_delta(d)} mAP50, ahead on {wins} of {d.n} seeds")
    return lines


def training_environments(records: Sequence[RunRecord]) -> dict[str, dict[str, Any]]:
    """The distinct compute environments the trained runs of ``records`` ran in, by id (records written
    before environments were recorded add none)."""
    found: dict[str, dict[str, Any]] = {}
    for rec in records:
        for env in rec.extra.get("environments") or []:
            if isinstance(env, dict) and isinstance(env.get("id"), str):
                found.setdefault(env["id"], env)
    return found


def describe_environment(env: Mapping[str, Any]) -> str:
    """``AMD EPYC, AVX2 kernels, torch 2.13.0, 1 threads``: the processor's name alone does not tell two
    machines apart whose kernels differ."""
    parts = [str(env.get("device_name") or env.get("device"))]
    if env.get("cpu_capability") and env.get("device") == "cpu":
        parts.append(f"{env['cpu_capability']} kernels")
    parts += [f"torch {env.get('torch')}", f"{env.get('threads')} threads"]
    return ", ".join(parts)


def environment_warning(records: Sequence[RunRecord]) -> str | None:
    """A warning when the trained runs of ``records`` come from more than one compute environment (their
    floating-point results differ as a seed's would, so paired differences carry that noise too)."""
    envs = training_environments(records)
    if len(envs) < 2:
        return None
    runs: dict[str, list[str]] = {k: [] for k in envs}
    for rec in records:
        for env in rec.extra.get("environments") or []:
            if isinstance(env, dict) and env.get("id") in runs:
                runs[env["id"]].append(f"{rec.config} seed {rec.seed}")
    detail = "; ".join(f"{k} ({describe_environment(envs[k])}): {', '.join(runs[k])}" for k in envs)
    return (
        f"the runs of this table were trained in {len(envs)} compute environments, so "
        f"they are not bit-comparable and a paired difference mixes in that noise: {detail}"
    )
