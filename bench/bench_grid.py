"""Benchmark: ``daik_core.ablation.grid.parse_grid`` on explicit grids of growing size (the API parses a
batch's grid on its thread pool). Linear parsing keeps the time per cell flat as the grid grows.

    .venv/bin/python bench/bench_grid.py [--cells 250 500 1000 2000] [--repeat 3]

Prints, per size, the best time of ``repeat`` parses, the time per cell and its ratio to the smallest
grid's (about 1.0 when parsing is linear; it grew with the grid size when every name was compared with
every earlier one).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from daik_core.ablation.grid import parse_grid


def explicit(n: int) -> list[dict[str, Any]]:
    return [{"name": f"cell {i}", "losses": {"ad": {"enabled": True, "weight": 1.0 + i}}} for i in range(n)]


def best_time(n: int, repeat: int) -> float:
    grid = explicit(n)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        parse_grid(grid)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'cells':>6} {'parse_grid (s)':>15} {'per cell (ms)':>14} {'vs smallest':>12}")
    base: float | None = None
    for n in args.cells:
        t = best_time(n, args.repeat)
        per_cell = t / n
        base = base or per_cell
        print(f"{n:>6} {t:>15.3f} {per_cell * 1e3:>14.3f} {per_cell / base:>11.2f}x")


if __name__ == "__main__":
    main()
