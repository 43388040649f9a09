"""Put on a test process's ``PYTHONPATH``: its clock, as the service's code reads it, runs
``DAIK_TEST_CLOCK_SKEW`` seconds off, like a host whose clock drifted. The service reads the time through
one function, :func:`service.db.base.utcnow`; an import hook wraps it as soon as that module is loaded, so
every module that imports it later gets the skewed one."""

from __future__ import annotations

import datetime as dt
import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Any

SKEW = dt.timedelta(seconds=float(os.environ.get("DAIK_TEST_CLOCK_SKEW", "0") or 0))
TARGET = "service.db.base"


class _Skew(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_skewed(module: ModuleType) -> None:
            exec_module(module)
            real = module.utcnow
            module.utcnow = lambda: real() + SKEW

        loader.exec_module = exec_skewed  # type: ignore[method-assign]
        return spec


if SKEW:
    sys.meta_path.insert(0, _Skew())
