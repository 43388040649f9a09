"""Shared fixtures of the ops tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Run these tests on one intra-op thread: small tensors gain nothing from more, and on a shared,
    oversubscribed CI machine OpenMP's spinning threads can make them tens of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
