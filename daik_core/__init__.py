"""DAIK core: a pure PyTorch library for oriented detection and its distillation.

It never imports the service, the worker, web, database or queue packages (checked by import-linter).
``import daik_core`` loads no torch: the Python API (:func:`train`, :class:`Detector`, :class:`Predictions`,
in :mod:`daik_core.api`) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daik_core.api import Detector, Predictions, train

__version__ = "0.1.0"
__all__ = ["Detector", "Predictions", "__version__", "train"]

_API = ("Detector", "Predictions", "train")


def __getattr__(name: str) -> Any:
    if name in _API:
        from daik_core import api

        return getattr(api, name)
    raise AttributeError(f"module 'daik_core' has no attribute {name!r}")
