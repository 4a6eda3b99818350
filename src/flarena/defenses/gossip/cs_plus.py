r"""CS+-RG, clipped sum robust gossip (Gaucher, Dieuleveut, Hendrikx 2025)."""

from __future__ import annotations

import math

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


def cs_plus_radii(dist: Tensor, dst: Tensor, weights: Tensor, n: int, f: int) -> Tensor:
    r"""The CS+ clipping radii :math:`\tau_i`, ``[n]`` float64.

    With node :math:`i`'s neighbours sorted by distance, cumulative weights :math:`C_k` and
    target :math:`T_i = W_i - 2 b_i`: :math:`\tau_i = d_{(k^*)}` for the largest :math:`k^*`
    with :math:`C_{k^*} \le T_i` (up to :math:`10^{-9} W_i`), 0 when there is none or
    :math:`T_i \le 0`, :math:`\infty` when :math:`b_i = 0`. ``dist`` are the ``[E]`` distances
    (:math:`+\infty` for a non-finite offset).
    """
    s = sort_neighbours(dist, dst, weights, n)
    b = byzantine_weight(weights, dst, n, f)
    target = s.total - 2.0 * b
    tol = tolerance(s.total)
    inside = (s.cum <= (target + tol)[s.dst]) & (target > tol)[s.dst]
    tau = torch.zeros(n, dtype=torch.float64, device=dst.device)
    tau.scatter_reduce_(0, s.dst, torch.where(inside, s.dist, 0.0), reduce="amax")
    return torch.where(b > 0, tau, math.inf)


def clipped_step(
    diff: Tensor, dist: Tensor, tau: Tensor, w: Tensor, dst: Tensor, own: Tensor, eta: float
) -> Tensor:
    r""":math:`x_i + \eta \sum_j w_j \mathrm{CLIP}(z_j, \tau_i)`, a non-finite offset giving 0."""
    t = tau[dst]
    ok = torch.isfinite(dist)
    # norm <= tau keeps the offset (also norm = tau = 0 and tau = inf); non-finite -> 0
    scale = torch.where(dist <= t, 1.0, t / dist)
    scale = torch.where(ok, scale, 0.0).to(own.dtype)
    step = torch.where(ok[:, None], diff, 0.0) * (eta * w * scale)[:, None]
    return own.clone().index_add_(0, dst, step)


@register("gossip_rule", "cs_plus")
class CSPlus:
    r"""CS+-RG: clip neighbours' offsets so that only the farthest :math:`2b_i` of weight is cut.

    :math:`x_i \leftarrow x_i + \eta \sum_{j \to i} W_{ij}\,\mathrm{CLIP}(m_{ji} - x_i,
    \tau_i)`, :math:`\mathrm{CLIP}(z, \tau) = z \min(1, \tau / \lVert z \rVert)` (Gaucher,
    Dieuleveut, Hendrikx 2025, "Unified breakdown analysis for Byzantine robust gossip",
    ICML; the clipped sum CS+ of their robust-gossip framework), with a data-driven radius that
    needs no oracle. Sort node :math:`i`'s neighbours by the distance
    :math:`d_j = \lVert m_{ji} - x_i \rVert`, let :math:`C_k` be the cumulative weight of the
    :math:`k` closest, :math:`W_i = \sum_{j \to i} W_{ij}` and :math:`b_i` the assumed Byzantine
    weight, the sum of the ``f`` largest :math:`W_{ij}` (:math:`f w` for uniform weights
    :math:`w`). The radius is

    .. math:: \tau_i = d_{(k^*)}, \quad k^* = \max\{k : C_k \le W_i - 2 b_i\},

    so that exactly the farthest neighbours carrying at least :math:`2 b_i` of weight are
    clipped: the :math:`b_i` Byzantine weight can pull node :math:`i` by at most as much as
    the honest weight it displaces. The comparison allows a relative tolerance of
    :math:`10^{-9} W_i` (float sums). :math:`\tau_i = 0` (the node does not move) when no
    :math:`k` qualifies, in particular when :math:`W_i \le 2 b_i`; :math:`\tau_i = \infty`
    (plain gossip, ``gossip``) when :math:`b_i = 0`, e.g. ``f = 0``. Same as Gaucher's public
    ``cs_plus`` (a ``searchsorted`` of :math:`W_i - 2 b_i` in the cumulative weights).

    The self weight :math:`W_{ii}` does not appear (its offset is 0). The sorting is a segment
    sort over the edges (:mod:`flarena.defenses.gossip._sorted`), with no loop over the nodes;
    equal distances keep the edge order.

    Non-finite values: an offset with a non-finite norm (a NaN/inf coordinate, or an overflow)
    counts as infinitely far (it is sorted last, so clipped first) and contributes 0, as if
    :math:`m_{ji} = x_i`, also when :math:`\tau_i = \infty`; the output is finite whenever
    ``own`` is. Offset norms are computed in float64; the result keeps ``own``'s dtype. Inputs
    are not modified; ``ctx`` is not used.

    Parameters
    ----------
    f : int
        Byzantine neighbours assumed per node (``>= 0``); :math:`b_i` is the weight of the
        ``f`` heaviest incoming edges. :meth:`check_neighbourhood` refuses a node with more
        Byzantine neighbours, or with ``2f >= degree``.
    eta : float
        Communication step :math:`\eta > 0` (1 in the paper's experiments).
    """

    def __init__(self, *, f: int = 1, eta: float = 1.0) -> None:
        self.f = int_param("f", f, minimum=0)
        self.eta = positive_float("eta", eta)

    def check_neighbourhood(self, degree: int, n_byzantine: int) -> None:
        """Refuse more than ``f`` Byzantine neighbours, or ``2f >= degree``."""
        check_tolerated("cs_plus", self.f, n_byzantine)
        if self.f > 0 and 2 * self.f >= degree:
            raise ValueError(
                f"cs_plus(f={self.f}) needs more than 2f = {2 * self.f} neighbours, got "
                f"{degree}: every neighbour would be clipped to radius 0 (nothing to learn from)"
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
        tau = cs_plus_radii(dist, dst, w, n, self.f)
        return clipped_step(diff, dist, tau, w, dst, own, self.eta)

    def get_params(self) -> dict[str, float]:
        """Constructor parameters."""
        return {"f": self.f, "eta": self.eta}
