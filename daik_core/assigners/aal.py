"""AAL: the angular-distance / aspect-ratio lookup table ``W(AR, dtheta)`` of DAIK.

``W`` says how well a predicted orientation agrees with a ground-truth box, given the GT's aspect ratio
``AR = long side / short side`` (clamped to ``[1, ar_max]``) and the angle difference ``dtheta`` between the
predicted and the GT long-side angles (radians, any value). Orientations are defined modulo pi, so the
difference is folded to ``d = min(dtheta mod pi, pi - dtheta mod pi)`` in ``[0, pi/2]``: ``W`` is
symmetric in ``+-dtheta`` and pi-periodic by construction. Values lie in ``[0, 1]``, 1 at ``d = 0``.

Two forms (``mode``):

``"table"`` (default, our *reading* of the paper's "table"): the exact rotated IoU of a box of aspect
    ratio ``AR`` with itself turned by ``d`` about its centre, precomputed once with
    :func:`daik_core.ops.rotated_iou_aligned` in float64 on a regular ``ar_bins x angle_bins`` grid over
    ``[1, ar_max] x [0, pi/2]`` and read back by bilinear interpolation (error below 1e-3 at the default
    400 x 400). It is 90-degree periodic for squares (a square turned by 90 degrees is itself), falls
    monotonically on ``[0, 90]`` degrees for elongated boxes, and is very sharp for thin ones (AR 7 at
    10 degrees: about 0.5). Aspect ratios beyond ``ar_max`` are read at ``ar_max`` (slightly too lenient).

``"sin"`` (the paper's closed form ``W* = |sin(V(AR) * dtheta)|``, ``V = 2 if AR > r else 1``): ``W*`` is 0
    at zero difference, so it is a *misalignment* (a penalty), not an alignment weight. Our *reading* turns
    it into a similarity that is 1 at ``d = 0`` and falls with ``d``::

        W = 1 - sin(min(V(AR) * d, pi / 2))

    ``V`` is the sensitivity: for ``AR <= r`` (V = 1) W falls to 0 at 90 degrees; for elongated boxes
    (``AR > r``, V = 2) twice as fast, reaching 0 at 45 degrees and staying there. The saturation at pi/2
    is part of the reading: the raw ``|sin(2 d)|`` would climb back to "perfectly aligned" at 90 degrees,
    exactly where a thin box overlaps its GT least. This form ignores the 90-degree symmetry of squares
    (``W(1, 90 deg) = 0``), one reason the exact table is the default.

Shapes: ``aspect_ratio`` and ``dtheta`` broadcast against each other; the result has their broadcast shape
and the floating dtype of ``dtheta`` (at least float32).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
from torch import Tensor, nn

from daik_core.ops import rotated_iou_aligned

__all__ = ["AALMode", "AALTable", "aal_iou_grid", "fold_angle_difference"]

AALMode = Literal["table", "sin"]

_HALF_PI = math.pi / 2

# pairs of boxes computed at once while building the table (float64; about 3 KB each)
_BUILD_CHUNK = 1 << 16


def fold_angle_difference(dtheta: Tensor) -> Tensor:
    """The smallest difference of two orientations (modulo pi): ``dtheta (...)`` radians -> ``[0, pi/2]``."""
    d = torch.remainder(dtheta, math.pi)
    return torch.minimum(d, math.pi - d).clamp(0.0, _HALF_PI)


@functools.lru_cache(maxsize=4)
def _cached_grid(ar_max: float, ar_bins: int, angle_bins: int) -> Tensor:
    ar = torch.linspace(1.0, ar_max, ar_bins, dtype=torch.float64)
    angle = torch.linspace(0.0, _HALF_PI, angle_bins, dtype=torch.float64)
    ar_grid, angle_grid = torch.meshgrid(ar, angle, indexing="ij")  # (ar_bins, angle_bins)
    zero, one = torch.zeros_like(ar_grid), torch.ones_like(ar_grid)
    boxes = torch.stack((zero, zero, ar_grid, one, zero), dim=-1).reshape(-1, 5)
    turned = torch.stack((zero, zero, ar_grid, one, angle_grid), dim=-1).reshape(-1, 5)
    iou = rotated_iou_aligned(boxes, turned, chunk_size=_BUILD_CHUNK).reshape(ar_bins, angle_bins)
    iou[:, 0] = 1.0  # exactly 1 at zero difference, whatever the rounding
    return iou.clamp(0.0, 1.0)


def aal_iou_grid(ar_max: float = 7.0, ar_bins: int = 400, angle_bins: int = 400) -> Tensor:
    """The exact table ``(ar_bins, angle_bins)`` float64 on CPU: row ``i`` is ``AR = 1 + i (ar_max - 1) /
    (ar_bins - 1)``, column ``k`` is ``d = k (pi/2) / (angle_bins - 1)``; entry = rotated IoU of an
    ``AR x 1`` box with itself turned by ``d``. Cached per process (building 400 x 400 takes seconds)."""
    if not ar_max > 1.0:
        raise ValueError(f"ar_max must be > 1, got {ar_max}")
    if ar_bins < 2 or angle_bins < 2:
        raise ValueError(f"ar_bins and angle_bins must be >= 2, got {ar_bins}, {angle_bins}")
    return _cached_grid(float(ar_max), int(ar_bins), int(angle_bins)).clone()


class AALTable(nn.Module):
    """``W(AR, dtheta)`` in ``[0, 1]`` (module docstring). Built once; ``table(aspect_ratio, dtheta)``.

    The table mode keeps its grid as a non-persistent float32 buffer ``grid (ar_bins, angle_bins)``, so it
    follows ``.to(device)`` and stays out of checkpoints. Lookups work on any device (a grid on another
    device is copied for the call).
    """

    grid: Tensor

    def __init__(
        self,
        mode: AALMode = "table",
        ar_max: float = 7.0,
        ar_bins: int = 400,
        angle_bins: int = 400,
        r: float = 3.0,
        *,
        grid: Tensor | None = None,
    ) -> None:
        super().__init__()
        if mode not in ("table", "sin"):
            raise ValueError(f"AAL mode must be 'table' or 'sin', got {mode!r}")
        if not ar_max > 1.0:
            raise ValueError(f"ar_max must be > 1, got {ar_max}")
        if not r >= 1.0:
            raise ValueError(f"r must be >= 1, got {r}")
        self.mode: AALMode = mode
        self.ar_max = float(ar_max)
        self.r = float(r)
        if grid is not None:
            if mode != "table":
                raise ValueError("a grid can only be given to the 'table' mode")
            if grid.dim() != 2 or grid.shape[0] < 2 or grid.shape[1] < 2:
                raise ValueError(
                    f"grid must have shape (ar_bins >= 2, angle_bins >= 2), got {tuple(grid.shape)}"
                )
            if bool(((grid < 0) | (grid > 1) | grid.isnan()).any()):
                raise ValueError("grid values must lie in [0, 1]")
            values = grid.detach().to(torch.float32).clone()
        elif mode == "table":
            values = aal_iou_grid(ar_max, ar_bins, angle_bins).to(torch.float32)
        else:
            values = torch.zeros(0, 0)
        self.register_buffer("grid", values, persistent=False)

    @classmethod
    def from_grid(cls, grid: Tensor, ar_max: float = 7.0) -> AALTable:
        """A table-mode AAL over ``[1, ar_max] x [0, pi/2]`` holding given values ``grid (ar_bins,
        angle_bins)`` in ``[0, 1]`` instead of the rotated IoU (e.g. all ones, which turns AAL off)."""
        return cls("table", ar_max=ar_max, grid=grid)

    def extra_repr(self) -> str:
        if self.mode == "sin":
            return f"mode='sin', r={self.r}, ar_max={self.ar_max}"
        return f"mode='table', ar_max={self.ar_max}, grid={tuple(self.grid.shape)}"

    def forward(self, aspect_ratio: Tensor, dtheta: Tensor) -> Tensor:
        """``W`` of aspect ratios ``(...)`` (long / short side, any value >= 0; clamped to ``[1, ar_max]``)
        and angle differences ``(...)`` (radians). Not differentiable in a useful way (a lookup)."""
        dtype = dtheta.dtype if dtheta.dtype in (torch.float32, torch.float64) else torch.float32
        ar = aspect_ratio.to(dtype).nan_to_num(nan=1.0).clamp(1.0, self.ar_max)
        d = fold_angle_difference(dtheta.to(dtype))
        ar, d = torch.broadcast_tensors(ar, d)
        if self.mode == "sin":
            v = torch.where(ar > self.r, 2.0, 1.0).to(dtype)
            return 1.0 - torch.sin((v * d).clamp(max=_HALF_PI))
        return self._lookup(ar, d)

    def _lookup(self, ar: Tensor, d: Tensor) -> Tensor:
        grid = self.grid.to(device=d.device, dtype=d.dtype)
        n_ar, n_angle = grid.shape
        fa = (ar - 1.0) * ((n_ar - 1) / (self.ar_max - 1.0))  # fractional row
        ft = d * ((n_angle - 1) / _HALF_PI)  # fractional column
        ia = fa.floor().long().clamp(0, n_ar - 2)
        it = ft.floor().long().clamp(0, n_angle - 2)
        wa = (fa - ia).clamp(0.0, 1.0)
        wt = (ft - it).clamp(0.0, 1.0)
        flat = grid.reshape(-1)
        base = ia * n_angle + it

        def at(offset: int) -> Tensor:
            return flat[base + offset]

        top = at(0) * (1 - wt) + at(1) * wt
        bottom = at(n_angle) * (1 - wt) + at(n_angle + 1) * wt
        return (top * (1 - wa) + bottom * wa).clamp(0.0, 1.0)
