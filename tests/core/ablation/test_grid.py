"""Ablation grids: the named grids, explicit and product grids, and the spec of each configuration."""

from __future__ import annotations

import cProfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from daik_core.ablation.grid import GRIDS, cell_spec, config_hash, parse_grid, select_cells, slug
from daik_core.ablation.runner import training_hash
from daik_core.config import parse_spec
from daik_core.errors import DaikError


def _base(**losses: Any) -> Any:
    return parse_spec(
        {
            "name": "kd",
            "kind": "distill" if losses else "train",
            "dataset": {"train": "tr", "val": "va", "classes": "a,b"},
            **({"teacher": {"checkpoint": "t.pt"}} if losses else {}),
            "losses": losses,
            "hparams": {"epochs": 3, "seed": 0},
        }
    )


def test_paper_grid_has_every_component_the_baselines_and_the_teacher() -> None:
    names = [c.name for c in parse_grid("paper")]
    assert names == [
        "teacher", "baseline", "+AD", "+AAL", "+SAD", "+LD", "+cls KD", "DAIK", "logit KD", "FitNet", "CWD"
    ]  # fmt: skip
    assert [c.name for c in parse_grid("daik")] == ["teacher", "baseline", "DAIK"]
    assert set(GRIDS) == {"paper", "kd", "daik"}
    kd = {c.name: c for c in parse_grid("kd")}
    assert list(kd) == [
        "teacher", "baseline", "KD base", "KD base +AD", "KD base +AAL", "KD base +SAD", "DAIK",
        "KD base +CWD", "CWD", "logit KD", "FitNet",
    ]  # fmt: skip
    on = {"enabled": True}
    # every comparison method sits on the same KD base, as DAIK does
    assert kd["KD base"].losses == {"ld": on, "cls_kd": on}
    assert kd["DAIK"].losses == {"ad": on, "aal": on, "sad": on, "ld": on, "cls_kd": on}
    assert kd["KD base +CWD"].losses == {"ld": on, "cls_kd": on, "feat": {"kind": "cwd"}}
    assert kd["KD base +SAD"].losses == {"ld": on, "cls_kd": on, "sad": on}


def test_cell_specs_turn_on_only_their_terms_and_keep_the_base_options() -> None:
    # the base spec runs full DAIK with a custom AD weight: each cell starts from all toggles off
    base = _base(ad={"enabled": True, "weight": 2.5}, ld={"enabled": True}, feat={"kind": "cwd"})
    cells = {c.name: c for c in parse_grid("paper")}
    ad = cell_spec(base, cells["+AD"], 1, "out/ad", "t.pt")
    assert ad.kind == "distill" and ad.teacher is not None and ad.teacher.checkpoint == "t.pt"
    assert ad.losses.ad.enabled and ad.losses.ad.weight == 2.5
    assert not ad.losses.ld.enabled and ad.losses.feat.kind == "none"
    assert ad.hparams.seed == 1 and ad.output == "out/ad" and ad.name == "kd-plus-ad-s1"
    baseline = cell_spec(base, cells["baseline"], 0, "o", "t.pt")
    assert baseline.kind == "train" and baseline.teacher is None and not baseline.losses.needs_teacher()
    assert not baseline.losses.ad.enabled and baseline.losses.ad.weight == 2.5
    aal = cell_spec(base, cells["+AAL"], 0, "o", None)  # AAL changes the assigner only: no teacher
    assert aal.kind == "train" and aal.losses.aal.enabled
    full = cell_spec(base, cells["DAIK"], 0, "o", "t.pt")
    assert all(getattr(full.losses, t).enabled for t in ("ad", "aal", "sad", "ld", "cls_kd"))
    assert cell_spec(base, cells["CWD"], 0, "o", "t.pt").losses.feat.kind == "cwd"


def test_a_cell_that_needs_the_teacher_without_one_is_an_error() -> None:
    cells = {c.name: c for c in parse_grid("paper")}
    with pytest.raises(DaikError, match=r"'\+SAD' needs a teacher"):
        cell_spec(_base(), cells["+SAD"], 0, "o", None)
    with pytest.raises(DaikError, match="is the teacher"):
        cell_spec(_base(), cells["teacher"], 0, "o", "t.pt")


def test_product_grid() -> None:
    cells = parse_grid({"product": {"ad.enabled": [False, True], "ad.weight": [0.5, 2.0]}})
    assert [c.name for c in cells] == [
        "ad.enabled=false,ad.weight=0.5",
        "ad.enabled=false,ad.weight=2.0",
        "ad.enabled=true,ad.weight=0.5",
        "ad.enabled=true,ad.weight=2.0",
    ]
    assert cells[3].losses == {"ad": {"enabled": True, "weight": 2.0}}
    # its "=" and "," are not allowed in a job name: they become "-"
    spec = cell_spec(_base(), cells[3], 1, "out", "t.pt")
    assert spec.name == "kd-ad.enabled-true-ad.weight-2.0-s1"


def test_explicit_grid_and_its_errors() -> None:
    cells = parse_grid([{"name": "baseline"}, {"name": "ld", "losses": {"ld": {"enabled": True, "tau": 5}}}])
    assert [c.name for c in cells] == ["baseline", "ld"] and not cells[0].teacher
    with pytest.raises(DaikError, match="unknown grid 'nope'"):
        parse_grid("nope")
    with pytest.raises(DaikError, match=r"'bad': losses\.ld\.tau: Input should be greater than 0$"):
        parse_grid([{"name": "bad", "losses": {"ld": {"tau": -1}}}])
    with pytest.raises(DaikError, match="used twice"):
        parse_grid([{"name": "a"}, {"name": "a"}])
    with pytest.raises(DaikError, match=r"grid\[0\]: unknown keys seeds"):
        parse_grid([{"name": "a", "seeds": 3}])
    with pytest.raises(DaikError, match=r"product\.ad\.enabled: a non-empty list"):
        parse_grid({"product": {"ad.enabled": []}})
    with pytest.raises(DaikError, match="losses"):
        parse_grid({"product": {"nosuch.enabled": [True]}})


def _calls(fn: Callable[[], object]) -> int:
    """The Python and C function calls ``fn()`` makes (deterministic, unlike a timing)."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        fn()
    finally:
        profile.disable()
    return sum(entry.callcount for entry in profile.getstats())


def _explicit(n: int) -> list[dict[str, Any]]:
    return [{"name": f"cell {i}", "losses": {"ad": {"enabled": True, "weight": 1.0 + i}}} for i in range(n)]


def test_parsing_a_grid_is_linear_in_its_cells() -> None:
    # the API parses a batch's grid on its thread pool: twice the cells may cost about twice the work, not
    # four times (checking each name against every earlier one made 2,000 cells take seconds)
    small, large = _calls(lambda: parse_grid(_explicit(500))), _calls(lambda: parse_grid(_explicit(1000)))
    assert large <= 2.2 * small, (small, large)
    assert len(parse_grid(_explicit(2000))) == 2000
    # the duplicate check still compares every earlier name, by its folder name too
    for twin in ("cell 3", "CELL-3"):
        with pytest.raises(DaikError, match=rf"^grid: configuration name '{twin}' is used twice$"):
            parse_grid([*_explicit(1000), {"name": twin}])


def test_config_hash_follows_what_is_trained() -> None:
    base = _base()
    cells = {c.name: c for c in parse_grid("paper")}
    a = cell_spec(base, cells["baseline"], 0, "o1", None)
    assert config_hash(a) == config_hash(cell_spec(base, cells["baseline"], 0, "o2", None))  # output only
    assert config_hash(a) != config_hash(cell_spec(base, cells["baseline"], 1, "o1", None))  # the seed
    assert config_hash(a) != config_hash(cell_spec(base, cells["+AAL"], 0, "o1", None))


def test_slug() -> None:
    assert slug("+cls KD") == "plus-cls-kd" and slug("DAIK") == "daik" and slug("logit KD") == "logit-kd"


def test_the_tuning_grid_of_the_results_shares_its_runs_with_the_kd_grid() -> None:
    """configs/grids/synth-kd-tuning.yaml (docs/RESULTS.md) parses, and its rows named as the kd grid's give
    the same run spec (same hash), so one output folder serves both tables."""
    root = Path(__file__).resolve().parents[3]
    cells = {
        c.name: c
        for c in parse_grid(yaml.safe_load((root / "configs/grids/synth-kd-tuning.yaml").read_text()))
    }
    kd = {c.name: c for c in parse_grid("kd")}
    shared = set(cells) & set(kd)
    assert shared == set(kd)  # every row of the comparison is tuned
    base = _base(ad={"enabled": False})
    for name in shared - {"teacher"}:
        assert config_hash(cell_spec(base, cells[name], 0, "o", "t.pt")) == config_hash(
            cell_spec(base, kd[name], 0, "o", "t.pt")
        ), name
    cosine = cell_spec(base, cells["KD base (cosine decay)"], 0, "o", "t.pt").losses
    assert cosine.decay == "cosine" and cosine.ld.enabled and cosine.cls_kd.enabled and not cosine.ad.enabled
    assert cell_spec(base, cells["CWD (x4)"], 0, "o", "t.pt").losses.feat.weight == 4.0
    # FitNet runs at the weight that won its sweep, in the comparison and in the paper's ablation alike;
    # CWD keeps the recipe's weight 1 (its own sweep's winner)
    weight = lambda cell: cell_spec(base, cell, 0, "o", "t.pt").losses.feat.weight  # noqa: E731
    assert weight(cells["FitNet (x1)"]) == 1.0 and weight(cells["FitNet (x4)"]) == 4.0
    paper = {c.name: c for c in parse_grid("paper")}
    assert weight(kd["FitNet"]) == weight(paper["FitNet"]) == weight(cells["FitNet"]) == 0.25
    assert weight(kd["CWD"]) == weight(paper["CWD"]) == 1.0


# the hashes of these run specs, computed before JobSpec.with_overrides built them: a finished ablation run
# is reused only while its hash stays the same, so a refactoring of how a run's spec is built keeps them
_PINNED_HASHES = {
    ("distill", "baseline"): ("0c2eab256360a009", "1897e581960b43d0"),
    ("distill", "+AAL"): ("dd8875eab26acbaa", "d81991a00d349857"),
    ("distill", "DAIK"): ("8881b724815da4ab", "c6bc376e85ed3a6a"),
    ("distill", "CWD"): ("c988ebeb1544efed", "0e1fa659b3cf3b00"),
    ("train", "+cls KD"): ("3fea4d04d4cc774d", "9ab44ce372b5af25"),
    ("job", "baseline"): ("502030d6791458f1", "672496340ac2cee2"),
    ("job", "DAIK"): ("26da79461fa05b52", "fd7bc531344004a3"),
}


def test_run_hashes_are_pinned() -> None:
    data = {"name": "kd", "dataset": {"train": "tr", "val": "va", "classes": "a,b"}}
    bases = {
        "distill": parse_spec(
            {
                **data,
                "kind": "distill",
                "teacher": {"checkpoint": "t.pt"},
                "losses": {"ad": {"enabled": True}},
                "hparams": {"epochs": 3, "seed": 0},
            }
        ),
        "train": parse_spec({**data, "hparams": {"epochs": 3}}),
        "job": parse_spec(
            {**data, "kind": "distill", "teacher": {"job": "abc"}, "losses": {"ld": {"enabled": True}}}
        ),
    }
    cells = {c.name: c for c in parse_grid("paper")}
    for (base, name), hashes in _PINNED_HASHES.items():
        seed, output, teacher = (2, "o", "t2.pt") if base == "job" else (1, "out/x", "teach.pt")
        spec = cell_spec(bases[base], cells[name], seed, output, teacher)
        assert (config_hash(spec), training_hash(spec)) == hashes, (base, name)
    daik = cell_spec(bases["job"], cells["DAIK"], 2, "o", "t2.pt")
    assert daik.teacher is not None and (daik.teacher.checkpoint, daik.teacher.job) == ("t2.pt", None)


def test_select_cells_takes_names_whole_or_comma_separated_and_refuses_unknown_ones() -> None:
    cells = parse_grid(
        yaml.safe_load(
            (Path(__file__).resolve().parents[3] / "configs/grids/synth-kd-tuning.yaml").read_text()
        )
    )
    names = lambda sel: [c.name for c in sel]  # noqa: E731
    assert names(select_cells(cells, ["DAIK,baseline"])) == ["baseline", "DAIK"]  # grid order
    assert names(select_cells(cells, ["DAIK", "teacher"])) == ["teacher", "DAIK"]  # repeated option
    # a name holding a comma is one configuration, alone or beside others
    assert names(select_cells(cells, ["KD base (cls x1, tau 4)", "FitNet (x4)"])) == [
        "KD base (cls x1, tau 4)", "FitNet (x4)"
    ]  # fmt: skip
    with pytest.raises(DaikError) as err:
        select_cells(cells, ["KD base (cls x2, tau 4)"])
    assert str(err.value).startswith("--only: not in the grid: 'KD base (cls x2', 'tau 4)' (grid: teacher, ")
