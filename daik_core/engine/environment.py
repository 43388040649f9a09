"""The compute environment of a training run: what decides its floating-point results.

Training is bit-for-bit repeatable with the same spec, code and environment; another torch build, another
processor family (AVX2 against AVX-512 kernels), another GPU or another number of threads changes the order
of floating-point sums, and a 40-epoch run then ends a few mAP points away, as a different seed would. The
trainer records :func:`compute_environment` in its checkpoints and ``results.json``, and ``daik ablate``
warns when the runs of one table were trained in more than one environment: a paired difference between
such runs carries that noise too.

The environment's ``id`` hashes the software versions, the device, the thread count and a *numeric
fingerprint*: the bytes of a small fixed computation (a 3x3 convolution's output and weight gradient, and a
matrix product) run with the kernels training uses. Two runs with the same ``id`` compute the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["compute_environment", "device_name", "numeric_fingerprint"]


def numeric_fingerprint(device: torch.device | str = "cpu") -> str:
    """12 hex digits of the bytes of a fixed convolution (forward and weight gradient) and matrix product on
    ``device``. Its inputs come from a private generator: the global random state is not touched."""
    gen = torch.Generator().manual_seed(20230601)
    x = torch.randn(2, 32, 24, 24, generator=gen)
    w = torch.randn(48, 32, 3, 3, generator=gen)
    a = torch.randn(96, 257, generator=gen)
    b = torch.randn(257, 80, generator=gen)
    dev = torch.device(device)
    w_dev = w.to(dev).requires_grad_(True)
    with torch.enable_grad():
        y = F.conv2d(x.to(dev), w_dev, padding=1)
        (y.square().mean()).backward()
    assert w_dev.grad is not None
    h = hashlib.sha256()
    for t in (y.detach(), w_dev.grad, a.to(dev) @ b.to(dev)):
        h.update(t.float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def device_name(device: torch.device | str = "cpu") -> str:
    """The processor's or GPU's model name (``""`` when unknown)."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def compute_environment(device: torch.device | str = "cpu", world_size: int = 1) -> dict[str, Any]:
    """What decides a run's floating-point results on ``device`` in this process, with its ``id``."""
    dev = torch.device(device)
    env: dict[str, Any] = {
        "torch": str(torch.__version__),  # a TorchVersion, which weights-only loading refuses
        "numpy": str(np.__version__),
        "python": platform.python_version(),
        "device": dev.type,
        "device_name": device_name(dev),
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "threads": torch.get_num_threads(),
        "world_size": world_size,
        "fingerprint": numeric_fingerprint(dev),
    }
    if dev.type == "cuda" and torch.cuda.is_available():
        env["cuda"] = str(torch.version.cuda)
        env["cudnn"] = torch.backends.cudnn.version()
    digest = hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:12]
    return {"id": digest, **env}
