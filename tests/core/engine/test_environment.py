"""The compute environment a run records: a stable numeric fingerprint, an id that changes with what decides
a run's floating-point results, and no side effect on the random state training draws from."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from daik_core.engine.environment import compute_environment, device_name, numeric_fingerprint


def test_the_fingerprint_is_stable_and_leaves_the_global_random_state_alone() -> None:
    torch.manual_seed(7)
    want = torch.rand(4)
    torch.manual_seed(7)
    first = numeric_fingerprint("cpu")
    got = torch.rand(4)
    assert torch.equal(got, want)  # the fingerprint drew from its own generator
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert numeric_fingerprint("cpu") == first == numeric_fingerprint(torch.device("cpu"))


def test_the_id_hashes_every_field_and_follows_the_thread_count() -> None:
    env = compute_environment("cpu")
    rest = {k: v for k, v in env.items() if k != "id"}
    assert env["id"] == hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:12]
    assert type(env["torch"]) is str and env["torch"] == torch.__version__
    assert env["device"] == "cpu" and env["world_size"] == 1
    assert env["threads"] == torch.get_num_threads() and env["fingerprint"] == numeric_fingerprint("cpu")
    assert compute_environment("cpu") == env  # the same process: the same environment
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        other = compute_environment("cpu")
    finally:
        torch.set_num_threads(threads)
    assert other["threads"] == threads + 1 and other["id"] != env["id"]
    assert compute_environment("cpu", world_size=2)["id"] != env["id"]


def test_the_device_name_is_the_processor_model() -> None:
    name = device_name("cpu")
    assert isinstance(name, str)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if "model name" in cpuinfo:
        assert name and name in cpuinfo
