"""``daik worker`` and ``daik beat`` (registered through the ``daik.commands`` entry point group)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Filled in by the worker: adds ``worker`` and ``beat``."""
