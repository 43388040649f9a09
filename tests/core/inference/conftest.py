"""The engine tests' synthetic data and one-thread fixtures, shared with the inference tests."""

from tests.core.engine.conftest import _one_thread, data_root

__all__ = ["_one_thread", "data_root"]
