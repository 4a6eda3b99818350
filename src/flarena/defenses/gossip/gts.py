r"""GTS-RG, generalized trimmed sum robust gossip (Gaucher, Dieuleveut, Hendrikx 2025)."""

from __future__ import annotations

import torch
from torch import Tensor

from flarena.core.registry import register
from flarena.defenses._checks import int_param, positive_float
from flarena.defenses.gossip._sorted import (
    byzantine_weight,
    check_tolerated,
    edge_offsets,
    sort_neighbours,
    tolerance,
)
from flarena.defenses.gossip.base import GossipContext, check_edges


def gts_weights(dist: Tensor, dst: Tensor, weights: Tensor, n: int, f: int) -> Tensor:
    r"""The GTS kept weights :math:`w'_j` of the edges, ``[E]`` float64, in the edge order.

    With node :math:`i`'s neighbours sorted by distance and cumulative weights :math:`C_k`,
    target :math:`T_i = W_i - b_i`: :math:`w'_{(k)} = W_{i(k)}` when :math:`C_k \le T_i` (up to
    :math:`10^{-9} W_i`), else :math:`\max(0, T_i - C_{k-1})` (the straddling neighbour keeps
    the part of its weight below :math:`T_i`, the farther ones nothing); a kept fraction within
    the tolerance is 0.
    """
    s = sort_neighbours(dist, dst, weights, n)
    b = byzantine_weight(weights, dst, n, f)
    target = (s.total - b)[s.dst]
    tol = tolerance(s.total)[s.dst]
    below = target - (s.cum - s.weight)  # T_i - C_{k-1}
    kept = torch.where(s.cum <= target + tol, s.weight, torch.where(below > tol, below, 0.0))
    return s.unsort(kept)


@register("gossip_rule", "gts")
class GTS:
    r"""GTS-RG: drop the farthest :math:`b_i` of weight, move towards the rest (NNA for η = 1).

    :math:`x_i \leftarrow x_i + \eta \sum_{j \to i} w'_{ij} (m_{ji} - x_i)` (Gaucher,
    Dieuleveut, Hendrikx 2025, "Unified breakdown analysis for Byzantine robust gossip", ICML;
    the generalized trimmed sum GTS of their robust-gossip framework). Sort node :math:`i`'s
    neighbours by the distance :math:`d_j = \lVert m_{ji} - x_i \rVert`, let :math:`C_k` be the
    cumulative weight of the :math:`k` closest, :math:`W_i = \sum_{j \to i} W_{ij}` and
    :math:`b_i` the assumed Byzantine weight, the sum of the ``f`` largest :math:`W_{ij}`
    (:math:`f w` for uniform weights :math:`w`). The kept weights fill the mass
    :math:`T_i = W_i - b_i` with the closest neighbours first:

    .. math:: w'_{(k)} = \min\bigl(W_{i(k)},\ \max(0,\ T_i - C_{k-1})\bigr),

    so the neighbour straddling :math:`T_i` keeps the fraction :math:`T_i - C_{k-1}` and the
    farther ones nothing (comparisons up to :math:`10^{-9} W_i`). With :math:`\eta = 1` this is
    nearest-neighbour averaging: the weighted average of the node with its closest neighbours,
    the trimmed mass :math:`b_i` going back to the node's self weight. ``f = 0`` (:math:`b_i =
    0`) is plain gossip (``gossip``) for finite messages.

    Note: Gaucher et al.'s public code gives the straddling neighbour :math:`C_k - T_i` instead
    of :math:`T_i - C_{k-1}`, which looks like a bug (it keeps the trimmed part instead of the
    kept one); both agree when there is no straddling neighbour, e.g. with uniform weights and
    an integer ``f``. This implementation follows the paper's definition.

    The self weight :math:`W_{ii}` does not appear (its offset is 0). The sorting is a segment
    sort over the edges (:mod:`flarena.defenses.gossip._sorted`), with no loop over the nodes;
    equal distances keep the edge order.

    Non-finite values: an offset with a non-finite norm (a NaN/inf coordinate, or an overflow)
    counts as infinitely far (it is sorted last, so trimmed first) and, if some of its weight is
    still kept (more such neighbours than ``f``), contributes 0, as if :math:`m_{ji} = x_i`; the
    output is finite whenever ``own`` is. Offset norms are computed in float64; the result keeps
    ``own``'s dtype. Inputs are not modified; ``ctx`` is not used.

    Parameters
    ----------
    f : int
        Byzantine neighbours assumed per node (``>= 0``); :math:`b_i` is the weight of the
        ``f`` heaviest incoming edges. :meth:`check_neighbourhood` refuses a node with more
        Byzantine neighbours, or with ``f >= degree``.
    eta : float
        Communication step :math:`\eta > 0` (1: nearest-neighbour averaging).
    """

    def __init__(self, *, f: int = 1, eta: float = 1.0) -> None:
        self.f = int_param("f", f, minimum=0)
        self.eta = positive_float("eta", eta)

    def check_neighbourhood(self, degree: int, n_byzantine: int) -> None:
        """Refuse more than ``f`` Byzantine neighbours, or ``f >= degree``."""
        check_tolerated("gts", self.f, n_byzantine)
        if self.f > 0 and self.f >= degree:
            raise ValueError(
                f"gts(f={self.f}) needs more than f = {self.f} neighbours, got {degree}: "
                "every neighbour would be trimmed (nothing to learn from)"
            )

    def __call__(
        self,
        messages: Tensor,
        *,
        src: Tensor,
        dst: Tensor,
        weights: Tensor,
        own: Tensor,
        ctx: GossipContext | None = None,
    ) -> Tensor:
        """New models ``[n, d]`` of all nodes."""
        msg, w = check_edges(messages, src, dst, weights, own)
        n = own.shape[0]
        diff, dist = edge_offsets(msg, own, dst)
        kept = gts_weights(dist, dst, w, n, self.f)
        ok = torch.isfinite(dist)
        coef = torch.where(ok, self.eta * kept, 0.0).to(own.dtype)
        step = torch.where(ok[:, None], diff, 0.0) * coef[:, None]
        return own.clone().index_add_(0, dst, step)

    def get_params(self) -> dict[str, float]:
        """Constructor parameters."""
        return {"f": self.f, "eta": self.eta}
