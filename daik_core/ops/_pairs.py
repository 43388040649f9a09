"""Candidate pairs whose axis-aligned boxes overlap, found by a sweep along x, yielded in bounded chunks.

The exact polygon intersections are only computed for these pairs: a pair whose enclosing axis-aligned
boxes do not overlap (with a positive area) cannot have a positive intersection area.

Sweep: sort one set by ``x1``; for a box ``[x1, x2)`` of the other set, the partners whose ``x1`` lies in
``[x1, x2)`` are one contiguous range of the sorted set (two ``searchsorted`` calls). The pairs with
x-overlap are those where ``x1_b`` falls inside ``a``'s x-range or ``x1_a`` inside ``b``'s, two disjoint
sweeps. The ranges are expanded in blocks (of at least ``_EXPAND`` candidates), filtered on y, and the
surviving pairs are handed out in chunks of exactly ``chunk_size`` (the last one smaller), so that the
exact computation always runs on full chunks.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["overlap_pairs", "rechunk", "self_overlap_pairs"]

# candidates expanded at once before the y filter (int64 index tensors: a few MB)
_EXPAND = 1 << 16


def _expand_ranges(starts: Tensor, counts: Tensor, chunk_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(owner, position)`` for ``position in [starts[owner], starts[owner] + counts[owner])``.

    ``starts, counts (K,)``; each yield holds at most ``max(chunk_size, counts.max())`` entries.
    """
    k = counts.numel()
    if k == 0:
        return
    end = counts.cumsum(0)  # (K,) inclusive
    total = int(end[-1])
    if total == 0:
        return
    device = counts.device
    shift = starts - (end - counts)  # position = flat index + shift[owner]
    thresholds = torch.arange(chunk_size, total + chunk_size, chunk_size, device=device)
    bounds = [*torch.searchsorted(end, thresholds, right=True).tolist(), k]
    lo = 0
    for hi in bounds:
        if hi <= lo:
            continue
        c = counts[lo:hi]
        first = int(end[lo - 1]) if lo > 0 else 0
        size = int(end[hi - 1]) - first
        if size > 0:
            owner = torch.repeat_interleave(torch.arange(lo, hi, device=device), c, output_size=size)
            flat = torch.arange(first, first + size, device=device)
            yield owner, flat + shift.index_select(0, owner)
        lo = hi


def rechunk(pairs: Iterator[tuple[Tensor, Tensor]], chunk_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Regroup a stream of index pairs into chunks of exactly ``chunk_size`` pairs (the last one smaller)."""
    buf_i: list[Tensor] = []
    buf_j: list[Tensor] = []
    held = 0
    for i, j in pairs:
        buf_i.append(i)
        buf_j.append(j)
        held += i.numel()
        if held >= chunk_size:
            all_i, all_j = torch.cat(buf_i), torch.cat(buf_j)
            full = held - held % chunk_size
            for s in range(0, full, chunk_size):
                yield all_i[s : s + chunk_size], all_j[s : s + chunk_size]
            buf_i, buf_j = [all_i[full:]], [all_j[full:]]
            held -= full
    if held:
        yield torch.cat(buf_i), torch.cat(buf_j)


def _overlapping(a: Tensor, b: Tensor, ia: Tensor, ib: Tensor) -> Tensor:
    """Positions ``k`` where boxes ``a[ia[k]]`` and ``b[ib[k]]`` (xyxy) overlap."""
    a, b = a.index_select(0, ia), b.index_select(0, ib)
    keep = (a[:, 1] < b[:, 3]) & (b[:, 1] < a[:, 3]) & (a[:, 0] < b[:, 2]) & (b[:, 0] < a[:, 2])
    return keep.nonzero().squeeze(1)


def overlap_pairs(hbb1: Tensor, hbb2: Tensor, chunk_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield index pairs ``(i (T,), j (T,))`` with ``hbb1[i]`` and ``hbb2[j]`` (xyxy) overlapping.

    Every overlapping pair is yielded exactly once, in chunks of ``T = chunk_size`` pairs (the last smaller).
    """
    return rechunk(_overlap_pairs(hbb1, hbb2), chunk_size)


def _overlap_pairs(hbb1: Tensor, hbb2: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    for a, b, swap in ((hbb1, hbb2, False), (hbb2, hbb1, True)):
        order = b[:, 0].argsort()
        b_sorted = b.index_select(0, order)
        xs = b_sorted[:, 0].contiguous()
        # first sweep: x1_a <= x1_b < x2_a; second sweep (swapped roles): x1_b < x1_a < x2_b
        lo = torch.searchsorted(xs, a[:, 0].contiguous(), right=swap)
        hi = torch.searchsorted(xs, a[:, 2].contiguous(), right=False)
        for owner, pos in _expand_ranges(lo, (hi - lo).clamp_min(0), _EXPAND):
            k = _overlapping(a, b_sorted, owner, pos)
            i, j = owner.index_select(0, k), order.index_select(0, pos.index_select(0, k))
            yield (j, i) if swap else (i, j)


def self_overlap_pairs(hbb: Tensor, chunk_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield index pairs ``(i (T,), j (T,))``, ``i != j``, of overlapping boxes of ``hbb (N, 4)``.

    Every unordered overlapping pair is yielded once, in an unspecified orientation, in chunks of
    ``T = chunk_size`` pairs (the last smaller).
    """
    return rechunk(_self_overlap_pairs(hbb), chunk_size)


def _self_overlap_pairs(hbb: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    n = hbb.shape[0]
    order = hbb[:, 0].argsort()
    hbb_sorted = hbb.index_select(0, order)
    xs = hbb_sorted[:, 0].contiguous()
    hi = torch.searchsorted(xs, hbb_sorted[:, 2].contiguous(), right=False)  # positions with x1 < x2_p
    lo = torch.arange(1, n + 1, device=hbb.device)  # only partners after p in x order
    for owner, pos in _expand_ranges(lo, (hi - lo).clamp_min(0), _EXPAND):
        k = _overlapping(hbb_sorted, hbb_sorted, owner, pos)
        yield order.index_select(0, owner.index_select(0, k)), order.index_select(0, pos.index_select(0, k))
