"""DDP helpers: the process group that ``torchrun`` describes, and small collectives.

``torchrun --nproc-per-node=N -m daik_core.cli train SPEC`` starts N processes with the environment
variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR`` / ``MASTER_PORT``);
:func:`init_distributed` reads them and joins the process group: NCCL when the processes use CUDA, gloo on
CPU. Without those variables (or with ``WORLD_SIZE=1``) everything here is a no-op, so single-process code
calls the same functions.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from daik_core.errors import DaikError

__all__ = [
    "DIST_TIMEOUT",
    "DistInfo",
    "all_reduce_max",
    "all_reduce_mean",
    "barrier",
    "cleanup_distributed",
    "dist_env",
    "init_distributed",
    "resolve_device",
    "unwrap_model",
]

#: Collective timeout. Rank 0 evaluates alone while the others wait at a barrier, so it must exceed the
#: longest evaluation (NCCL's own default is 10 minutes).
DIST_TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files, evaluates and calls the callbacks."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DaikError(f"environment variable {name}={raw!r} is not an integer") from None


def dist_env() -> DistInfo:
    """The ranks that ``torchrun`` put into the environment (one process when there are none)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DaikError(
            f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}"
        )
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by the environment (see the module docstring); a no-op for one
    process. ``device`` is this process's device (``cuda:<local_rank>`` under DDP on GPUs): it picks the
    backend. Idempotent: an already initialised group is reused."""
    info = dist_env()
    if not info.distributed:
        return info
    if not dist.is_available():
        raise DaikError("this PyTorch build has no torch.distributed: cannot run with WORLD_SIZE > 1")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=DIST_TIMEOUT)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=info.local_rank)


def cleanup_distributed() -> None:
    """Leave the process group (when one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (a no-op for one process)."""
    if _active():
        dist.barrier()


def all_reduce_mean(t: Tensor) -> Tensor:
    """The mean of ``t`` over the ranks (a new tensor; ``t`` itself for one process)."""
    if not _active():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def all_reduce_max(t: Tensor) -> Tensor:
    """The element-wise maximum of ``t`` over the ranks (``t`` itself for one process)."""
    if not _active():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DDP (or DataParallel) wrapper."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def resolve_device(name: str, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``. Under DDP a CUDA device is
    always ``cuda:<local_rank>`` (one GPU per process)."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DaikError(f"hparams.device: {name!r} requested but CUDA is not available (use cpu or auto)")
        index = local_rank if distributed or name == "cuda" else int(name.split(":", 1)[1])
        if index >= torch.cuda.device_count():
            raise DaikError(
                f"hparams.device: cuda:{index} requested but there are {torch.cuda.device_count()} "
                "CUDA devices"
            )
        return torch.device(f"cuda:{index}")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise DaikError("hparams.device: 'mps' requested but MPS is not available")
        if distributed:
            raise DaikError("hparams.device: DDP does not run on mps")
        return torch.device("mps")
    return torch.device("cpu")
