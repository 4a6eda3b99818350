r"""Per-node sorting of incoming edges by distance, without a Python loop over the nodes.

The distance-based gossip rules (``cs_plus``, ``gts``, ``clipped_gossip(tau="adaptive")``) look
at each node's neighbours in order of their distance :math:`d_j = \lVert m_{ji} - x_i \rVert`
to the node, and at the cumulative gossip weight :math:`C_k = \sum_{l \le k} W_{i j_{(l)}}` of
the :math:`k` closest ones (Gaucher, Dieuleveut, Hendrikx 2025, "Unified breakdown analysis for
Byzantine robust gossip"). On the per-edge layout of :mod:`flarena.defenses.gossip.base` this is
a *segment sort*: the edges are sorted by distance, then stably by destination, so that each
node's incoming edges form one contiguous segment, closest first; a segmented prefix sum then
gives every :math:`C_k` at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "SortedNeighbours",
    "byzantine_weight",
    "check_tolerated",
    "edge_offsets",
    "segment_positions",
    "segmented_cumsum",
    "sort_neighbours",
    "tolerance",
]

# relative tolerance of the comparisons C_k <= T (T a difference of weight sums, in float64)
_RTOL = 1e-9


def edge_offsets(msg: Tensor, own: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
    r"""Offsets :math:`z_e = m_e - x_{dst(e)}` ``[E, d]`` and their norms ``[E]`` (float64).

    A norm that is not finite (a NaN/inf coordinate, or an overflow) is returned as
    :math:`+\infty`: such an offset counts as infinitely far from the node.
    """
    diff = msg - own[dst]
    dist = torch.linalg.vector_norm(diff, dim=1, dtype=torch.float64)
    return diff, torch.where(torch.isfinite(dist), dist, torch.inf)


def segment_positions(sorted_dst: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Segments of an edge list sorted by destination.

    Returns
    -------
    (Tensor, Tensor, Tensor)
        ``start`` ``[n]`` (index of node ``i``'s first edge), ``count`` ``[n]`` (its degree) and
        ``pos`` ``[E]`` (the rank of every edge within its node's segment, from 0).
    """
    count = torch.bincount(sorted_dst, minlength=n)
    start = torch.cumsum(count, 0) - count
    pos = torch.arange(sorted_dst.shape[0], device=sorted_dst.device) - start[sorted_dst]
    return start, count, pos


def segmented_cumsum(values: Tensor, pos: Tensor) -> Tensor:
    r"""Inclusive prefix sums of ``values`` ``[E]`` restarted at every segment (``pos == 0``).

    A Hillis-Steele scan: :math:`\lceil \log_2 \max \mathrm{deg} \rceil` vectorised steps, each
    adding the value :math:`s` places back when it lies in the same segment. Only values of
    one segment are ever added together, so a node's :math:`C_k` carries the rounding of its
    own few weights, not that of a global prefix sum over the whole graph. ``values`` is not
    modified.
    """
    out = values.clone()
    if out.numel() == 0:
        return out
    longest = int(pos.max()) + 1
    step = 1
    while step < longest:
        shifted = torch.zeros_like(out)
        shifted[step:] = out[:-step]
        out = out + torch.where(pos >= step, shifted, 0.0)
        step *= 2
    return out


def _segment_sort(key: Tensor, dst: Tensor) -> Tensor:
    """Edge order grouped by ``dst`` (ascending), ``key`` ascending within a node; stable."""
    by_key = torch.argsort(key, stable=True)
    return by_key[torch.argsort(dst[by_key], stable=True)]


@dataclass(frozen=True)
class SortedNeighbours:
    r"""Every node's incoming edges, closest first (see :func:`sort_neighbours`).

    All ``[E]`` fields are in the sorted order; weights and sums are float64.
    """

    order: Tensor  # [E] original edge index of each sorted position
    dst: Tensor  # [E] destination node, ascending
    dist: Tensor  # [E] distance d_j (+inf when not finite), ascending within a node
    weight: Tensor  # [E] gossip weight W_ij
    cum: Tensor  # [E] C_k, the inclusive cumulative weight within the node
    total: Tensor  # [n] W_i = sum_j W_ij

    def unsort(self, values: Tensor) -> Tensor:
        """Values ``[E]`` given in the sorted order, put back in the original edge order."""
        out = torch.empty_like(values)
        out[self.order] = values
        return out


def sort_neighbours(dist: Tensor, dst: Tensor, weights: Tensor, n: int) -> SortedNeighbours:
    r"""Segment sort of the edges by distance and the per-node cumulative weights.

    The edges are sorted by ``dist`` then stably by ``dst``: every node's incoming edges are
    contiguous, closest first; equal distances keep the edge order (``torch.argsort(...,
    stable=True)``). A NaN distance is sorted as :math:`+\infty`. The cumulative weights
    :math:`C_k` come from :func:`segmented_cumsum`.

    Parameters
    ----------
    dist : Tensor
        ``[E]`` distances :math:`\lVert m_{ji} - x_i \rVert` (any float dtype).
    dst : Tensor
        ``[E]`` destinations (``torch.long``).
    weights : Tensor
        ``[E]`` non-negative gossip weights.
    n : int
        Number of nodes.
    """
    d = torch.nan_to_num(dist.to(torch.float64), nan=torch.inf, posinf=torch.inf)
    order = _segment_sort(d, dst)
    s_dst = dst[order]
    s_w = weights.to(torch.float64)[order]
    _, _, pos = segment_positions(s_dst, n)
    total = torch.zeros(n, dtype=torch.float64, device=dst.device).index_add_(0, s_dst, s_w)
    return SortedNeighbours(
        order=order,
        dst=s_dst,
        dist=d[order],
        weight=s_w,
        cum=segmented_cumsum(s_w, pos),
        total=total,
    )


def byzantine_weight(weights: Tensor, dst: Tensor, n: int, f: int) -> Tensor:
    r"""Assumed Byzantine weight :math:`b_i` of every node, ``[n]`` float64.

    :math:`b_i` = the sum of the ``f`` largest incoming weights :math:`W_{ij}` of node ``i``
    (all of them when its degree is at most ``f``): the most weight ``f`` Byzantine neighbours
    could have, a conservative bound. With uniform weights :math:`w` it is :math:`f w`, as in
    Gaucher et al.'s code. ``f = 0`` gives 0 everywhere.
    """
    b = torch.zeros(n, dtype=torch.float64, device=dst.device)
    if f <= 0 or dst.numel() == 0:
        return b
    w = weights.to(torch.float64)
    order = _segment_sort(-w, dst)
    s_dst = dst[order]
    _, _, pos = segment_positions(s_dst, n)
    return b.index_add_(0, s_dst, torch.where(pos < f, w[order], 0.0))


def tolerance(total: Tensor) -> Tensor:
    r"""Absolute tolerance :math:`10^{-9} W_i` of the comparisons :math:`C_k \le T_i`."""
    return _RTOL * total


def check_tolerated(rule: str, f: int, n_byzantine: int) -> None:
    """``ValueError`` when a node has more Byzantine neighbours than the ``f`` a rule assumes."""
    if n_byzantine > f:
        plural = "" if f == 1 else "s"
        raise ValueError(
            f"{rule}(f={f}) tolerates at most {f} Byzantine neighbour{plural} per node; "
            "raise f or move the Byzantine nodes"
        )
