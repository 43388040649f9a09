"""Fails when a production function grows past what a maintainer reads at once.

Every function and method in daik_core/, service/ and worker/ must have a cyclomatic complexity of rank D
or better (radon: at most 30) and be at most 80 lines long, decorators and docstring included. Prints the
offenders, worst first, and exits 1 when there are any.

    .venv/bin/python scripts/check_complexity.py [--max-complexity 30] [--max-lines 80]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from radon.complexity import cc_rank, cc_visit

PACKAGES = ("daik_core", "service", "worker")


def _lengths(tree: ast.AST) -> dict[tuple[str, int], int]:
    """(name, first line of the def) -> lines from the first decorator to the last line."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            out[(node.name, node.lineno)] = (node.end_lineno or node.lineno) - start + 1
    return out


def check(root: Path, max_complexity: int, max_lines: int) -> list[str]:
    problems: list[tuple[int, str]] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            rel = path.relative_to(root)
            for block in cc_visit(source):
                if block.complexity > max_complexity:
                    problems.append(
                        (
                            block.complexity,
                            f"{rel}:{block.lineno}: {block.fullname} has complexity {block.complexity} "
                            f"(rank {cc_rank(block.complexity)}; at most {max_complexity})",
                        )
                    )
            for (name, line), length in _lengths(ast.parse(source)).items():
                if length > max_lines:
                    text = f"{rel}:{line}: {name} is {length} lines long (at most {max_lines})"
                    problems.append((length, text))
    return [text for _, text in sorted(problems, reverse=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-complexity", type=int, default=30)
    parser.add_argument("--max-lines", type=int, default=80)
    args = parser.parse_args()
    problems = check(Path(__file__).resolve().parent.parent, args.max_complexity, args.max_lines)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} function(s) to split", file=sys.stderr)
        return 1
    print("complexity: every function is rank D or better and at most 80 lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
