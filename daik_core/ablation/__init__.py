"""Ablations: grids of distillation toggles (:mod:`~daik_core.ablation.grid`), the table with means over
seeds and paired differences (:mod:`~daik_core.ablation.table`; both torch-free, shared with the service)
and the ``daik ablate`` runner (:mod:`~daik_core.ablation.runner`, which needs torch: import it directly)."""

from daik_core.ablation.grid import BASELINE, GRIDS, TEACHER, Cell, cell_spec, config_hash, parse_grid
from daik_core.ablation.table import RunRecord, summarize, table_csv, table_json, table_markdown

__all__ = [
    "BASELINE",
    "GRIDS",
    "TEACHER",
    "Cell",
    "RunRecord",
    "cell_spec",
    "config_hash",
    "parse_grid",
    "summarize",
    "table_csv",
    "table_json",
    "table_markdown",
]
