"""Ablation grids: which distillation toggles each configuration of an ablation turns on (torch-free, so that
the service can materialise a batch's jobs from the same definitions).

A :class:`Cell` names a configuration and the ``losses:`` settings it merges into the base job spec. The
base spec keeps every option (weights, temperatures, the AAL form ...): ``+AD`` only turns ``ad.enabled``
on, with whatever ``ad`` options the base spec gives. A cell whose terms read the teacher becomes a
``kind: distill`` spec; the others (the baseline, AAL alone: it only changes the assigner) stay
``kind: train``. The ``teacher`` cell is the teacher checkpoint itself, evaluated, not trained.

Grids: a name (:data:`GRIDS`: ``paper``, ``kd``, ``daik``), an explicit list of cells
``[{"name": ..., "losses": {...}}, ...]``, or a product ``{"product": {"ad.enabled": [false, true],
"ld.weight": [0.25, 1.0]}}`` (one cell per combination, named ``ad.enabled=true,ld.weight=1.0``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from daik_core.config import (
    TRACKING_HPARAMS,
    DistillSpec,
    JobSpec,
    deep_merge,
    format_validation_error,
    relative_spec_paths,
)
from daik_core.errors import DaikError

__all__ = [
    "BASELINE",
    "GRIDS",
    "TEACHER",
    "Cell",
    "cell_spec",
    "config_hash",
    "needs_teacher",
    "parse_grid",
    "select_cells",
    "slug",
]

TEACHER = "teacher"
BASELINE = "baseline"

_ON = {"enabled": True}
_DAIK = {"ad": _ON, "aal": _ON, "sad": _ON, "ld": _ON, "cls_kd": _ON}


@dataclass(frozen=True)
class Cell:
    """One configuration of an ablation: ``losses`` is merged into the base spec's ``losses:``."""

    name: str
    losses: Mapping[str, Any] = field(default_factory=dict)
    teacher: bool = False  # the teacher row: its checkpoint is evaluated, nothing is trained

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "losses": copy.deepcopy(dict(self.losses)), "teacher": self.teacher}


#: FitNet's imitation weight, tuned on the tuning split (docs/RESULTS.md): the recipe's ``feat.weight`` 1 is
#: CWD's tuned weight, at which FitNet's imitation competes with the detection task.
_FITNET = {"feat": {"kind": "fitnet", "weight": 0.25}}

#: The paper's ablation: each DAIK component alone on the baseline student, full DAIK, the comparison
#: baselines (Hinton logit KD, FitNet and CWD on the neck features) and the teacher.
PAPER_GRID: tuple[Cell, ...] = (
    Cell(TEACHER, teacher=True),
    Cell(BASELINE),
    Cell("+AD", {"ad": _ON}),
    Cell("+AAL", {"aal": _ON}),
    Cell("+SAD", {"sad": _ON}),
    Cell("+LD", {"ld": _ON}),
    Cell("+cls KD", {"cls_kd": _ON}),
    Cell("DAIK", _DAIK),
    Cell("logit KD", {"logit_kd": _ON}),
    Cell("FitNet", _FITNET),
    Cell("CWD", {"feat": {"kind": "cwd"}}),
)

_KD_BASE = {"ld": _ON, "cls_kd": _ON}

#: The fair comparison: every KD method on equal terms. ``KD base`` is the logit / DFL distillation that
#: the method's reference code puts under every method (LD + class KD); DAIK adds AD, AAL and SAD to it,
#: each also alone; CWD both on the KD base and alone; plain logit KD and FitNet (at its tuned weight).
KD_GRID: tuple[Cell, ...] = (
    Cell(TEACHER, teacher=True),
    Cell(BASELINE),
    Cell("KD base", _KD_BASE),
    Cell("KD base +AD", {**_KD_BASE, "ad": _ON}),
    Cell("KD base +AAL", {**_KD_BASE, "aal": _ON}),
    Cell("KD base +SAD", {**_KD_BASE, "sad": _ON}),
    Cell("DAIK", _DAIK),
    Cell("KD base +CWD", {**_KD_BASE, "feat": {"kind": "cwd"}}),
    Cell("CWD", {"feat": {"kind": "cwd"}}),
    Cell("logit KD", {"logit_kd": _ON}),
    Cell("FitNet", _FITNET),
)

#: The short grid: the baseline student, full DAIK and the teacher.
DAIK_GRID: tuple[Cell, ...] = (Cell(TEACHER, teacher=True), Cell(BASELINE), Cell("DAIK", _DAIK))

GRIDS: dict[str, tuple[Cell, ...]] = {"paper": PAPER_GRID, "kd": KD_GRID, "daik": DAIK_GRID}


def slug(name: str) -> str:
    """A folder name for a configuration: ``+cls KD`` -> ``plus-cls-kd``."""
    s = name.strip().lower().replace("+", "plus-")
    s = re.sub(r"[^a-z0-9._=-]+", "-", s).strip("-")
    return s or "cell"


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise DaikError(f"grid: {dotted}: {part} is not a section of losses")
    node[parts[-1]] = value


def _check_losses(name: str, losses: Mapping[str, Any], defaults: dict[str, Any]) -> None:
    try:
        DistillSpec.model_validate(deep_merge(defaults, losses))
    except ValidationError as err:
        problems = "; ".join(f"losses.{line}" for line in format_validation_error(err))
        raise DaikError(f"grid: configuration {name!r}: {problems}") from None


def _toggles_off(losses: dict[str, Any]) -> dict[str, Any]:
    """The base spec's ``losses:`` with every term off and every option kept."""
    out = copy.deepcopy(losses)
    for term in out.values():
        if isinstance(term, dict) and "enabled" in term:
            term["enabled"] = False
    if isinstance(out.get("feat"), dict):
        out["feat"]["kind"] = "none"
    return out


def _product_cells(grid: Mapping[str, Any]) -> list[Cell]:
    """The cells of ``{"product": {"<term>.<option>": [values, ...]}}``: one per combination of values."""
    product = grid.get("product")
    if set(grid) != {"product"} or not isinstance(product, Mapping) or not product:
        raise DaikError('grid: a mapping grid must be {"product": {"<term>.<option>": [values, ...]}}')
    keys = [str(k) for k in product]
    values = []
    for k in keys:
        v = product[k]
        if not isinstance(v, Sequence) or isinstance(v, str) or not v:
            raise DaikError(f"grid: product.{k}: a non-empty list of values")
        values.append(list(v))
    cells = []
    for combo in itertools.product(*values):
        losses: dict[str, Any] = {}
        for k, v in zip(keys, combo, strict=True):
            _set_path(losses, k, v)
        name = ",".join(f"{k}={json.dumps(v)}" for k, v in zip(keys, combo, strict=True))
        cells.append(Cell(name, losses))
    return cells


def _explicit_cells(grid: Sequence[Mapping[str, Any]]) -> list[Cell]:
    """The cells of an explicit list of ``{name, losses, teacher}``."""
    cells = []
    for i, item in enumerate(grid):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"]:
            raise DaikError(f"grid[{i}]: a cell is {{'name': str, 'losses': {{...}}, 'teacher': bool}}")
        extra = set(item) - {"name", "losses", "teacher"}
        if extra:
            raise DaikError(f"grid[{i}]: unknown keys {', '.join(sorted(extra))}")
        losses_in = item.get("losses", {})
        if not isinstance(losses_in, Mapping):
            raise DaikError(f"grid[{i}].losses: a mapping of distillation terms")
        cells.append(Cell(item["name"], dict(losses_in), bool(item.get("teacher", False))))
    return cells


def parse_grid(grid: str | Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[Cell]:
    """A named grid, an explicit list of cells or a product of settings (see the module docstring); the
    settings are validated against :class:`~daik_core.config.DistillSpec` and names must be unique."""
    cells: list[Cell]
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise DaikError(f"grid: unknown grid {grid!r} (named grids: {', '.join(GRIDS)})")
        cells = list(GRIDS[grid])
    elif isinstance(grid, Mapping):
        cells = _product_cells(grid)
    else:
        cells = _explicit_cells(grid)
    if not cells:
        raise DaikError("grid: no configurations")
    seen: set[str] = set()  # the slugs of the names so far: one set lookup per cell (linear in the cells)
    defaults = DistillSpec().model_dump(mode="json")
    for cell in cells:
        name_slug = slug(cell.name)
        if name_slug in seen:
            raise DaikError(f"grid: configuration name {cell.name!r} is used twice")
        seen.add(name_slug)
        _check_losses(cell.name, cell.losses, defaults)
    return cells


def select_cells(cells: Sequence[Cell], only: Sequence[str]) -> list[Cell]:
    """The configurations of ``cells`` named in ``only`` (``daik ablate --only``, which may be given more than
    once), in grid order. Each value is one configuration's name, or a comma-separated list of names; a name
    that itself holds a comma ("KD base (cls x1, tau 4)") is taken whole."""
    names = {c.name for c in cells}
    wanted: list[str] = []
    for value in only:
        if value.strip() in names:
            wanted.append(value.strip())
        else:
            wanted += [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise DaikError(
            f"--only: not in the grid: {', '.join(map(repr, unknown))} "
            f"(grid: {', '.join(c.name for c in cells)})"
        )
    return [c for c in cells if c.name in wanted]


def needs_teacher(base: JobSpec, cell: Cell) -> bool:
    """Whether ``cell`` over ``base`` reads a teacher (a distillation term is on): its runs are
    ``kind: distill``."""
    losses = deep_merge(_toggles_off(base.model_dump(mode="json")["losses"]), cell.losses)
    return DistillSpec.model_validate(losses).needs_teacher()


def cell_spec(base: JobSpec, cell: Cell, seed: int, output: str, teacher_checkpoint: str | None) -> JobSpec:
    """The job spec of ``cell`` at ``seed``: the base spec with the cell's toggles merged into its
    ``losses:`` (whose own toggles are all turned off first, their options kept); ``kind: distill`` with
    the teacher when a term reads it, ``kind: train`` otherwise."""
    if cell.teacher:
        raise DaikError(f"configuration {cell.name!r} is the teacher: it is evaluated, not trained")
    # a job name allows fewer characters than a folder: a product cell's "=" becomes "-"
    name = f"{base.name}-{re.sub(r'[^A-Za-z0-9._-]', '-', slug(cell.name))}-s{seed}"
    overrides: dict[str, Any] = {
        "name": name,
        "hparams": {"seed": seed},
        "output": output,
        "losses": deep_merge(_toggles_off(base.model_dump(mode="json")["losses"]), cell.losses),
        "kind": "train",
        "teacher": None,
    }
    if needs_teacher(base, cell):
        if teacher_checkpoint is None:
            raise DaikError(
                f"configuration {cell.name!r} needs a teacher: "
                "give teacher.checkpoint in the spec or --teacher"
            )
        overrides["kind"] = "distill"
        # every field of the teacher given: the base spec's teacher (a checkpoint or a job) is replaced
        overrides["teacher"] = {"checkpoint": teacher_checkpoint, "job": None}
    return base.with_overrides(overrides, source=f"configuration {cell.name!r}")


def config_hash(spec: JobSpec) -> str:
    """A hash of what a run trains (the spec without its name, its output and where it is reported:
    :data:`~daik_core.config.TRACKING_HPARAMS`): a finished run whose record carries the same hash is
    reused, a changed spec trains again."""
    data = relative_spec_paths(spec.model_dump(mode="json"))  # as hashed when specs kept relative paths
    data.pop("name", None)
    data.pop("output", None)
    for key in TRACKING_HPARAMS:  # tracking changes nothing trained; and the hashes of older specs stay
        data["hparams"].pop(key, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
