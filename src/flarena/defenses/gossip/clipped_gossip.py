r"""ClippedGossip (He, Karimireddy, Jaggi 2022)."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from flarena.core.registry import register
from flarena.defenses._checks import int_param, positive_float
from flarena.defenses.gossip._sorted import (
    byzantine_weight,
    check_tolerated,
    sort_neighbours,
    tolerance,
)
from flarena.defenses.gossip.base import GossipContext, check_edges

_TAU_RULES = ("oracle", "adaptive")


def _tau_param(value: object) -> float | str:
    r"""``tau`` as a float in :math:`(0, \infty]`, ``"oracle"`` or ``"adaptive"``."""
    if isinstance(value, str):
        if value not in _TAU_RULES:
            raise ValueError(
                f"invalid tau = {value!r}: must be a number > 0 or one of {list(_TAU_RULES)}"
            )
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and value == math.inf:
        return math.inf
    return positive_float("tau", value)


@register("gossip_rule", "clipped_gossip")
class ClippedGossip:
    r"""ClippedGossip: move each node by the weighted sum of its neighbours' clipped offsets.

    :math:`x_i \leftarrow x_i + \sum_{j \to i} W_{ij}\,\mathrm{CLIP}(m_{ji} - x_i, \tau_i)`,
    :math:`\mathrm{CLIP}(z, \tau) = z \min(1, \tau / \lVert z \rVert)` (He, Karimireddy, Jaggi
    2022, "Byzantine-robust decentralized learning via ClippedGossip"), where :math:`m_{ji}`
    is the vector node :math:`j` sent to node :math:`i`. The self weight :math:`W_{ii}` does
    not appear (its offset is 0). With :math:`\tau_i = \infty` and honest messages this is
    plain gossip :math:`X \leftarrow W X` (``gossip``).

    Radius
    ------
    ``tau`` a number :math:`\tau > 0` (``math.inf`` allowed: no clipping)
        The same fixed :math:`\tau_i = \tau` for every node, as in the official code's
        experiments with a hand-tuned radius.
    ``tau="oracle"``
        The paper's theoretical radius, an **oracle** that uses ``ctx.byzantine`` (which
        neighbours are Byzantine), unknown to a real node:
        :math:`\tau_i = \sqrt{\frac{1}{\delta_i} \sum_{j \to i,\ j\ \mathrm{honest}} W_{ij}
        \lVert x_i - m_{ji} \rVert^2}`, :math:`\delta_i = \sum_{j \to i,\ j\ \mathrm{Byzantine}}
        W_{ij}`. A node without Byzantine neighbours (:math:`\delta_i = 0`) does not clip
        (:math:`\tau_i = \infty`). Needs ``ctx.byzantine``; ``ValueError`` without it.
    ``tau="adaptive"`` with ``f``
        The practical, data-driven version of the oracle radius (He et al.'s rule as
        implemented in Gaucher, Dieuleveut, Hendrikx 2025's public code, ``cs_he``): the honest
        neighbours are replaced by "the closest :math:`W_i - b_i` of weight" and
        :math:`\delta_i` by the assumed Byzantine weight :math:`b_i`, the sum of the ``f``
        largest incoming :math:`W_{ij}` (:math:`f w` for uniform weights :math:`w`). With node
        :math:`i`'s neighbours sorted by :math:`d_j = \lVert m_{ji} - x_i \rVert` and
        cumulative weights :math:`C_k`, :math:`K_i = \{k : C_k \le W_i - b_i\}` (the closest
        neighbours kept whole, up to :math:`10^{-9} W_i`; a neighbour straddling
        :math:`W_i - b_i` is left out) and
        :math:`\tau_i = \sqrt{\frac{1}{b_i} \sum_{k \in K_i} W_{i(k)} d_{(k)}^2}`;
        :math:`\tau_i = \infty` when :math:`b_i = 0` (``f = 0``: plain gossip), 0 when
        :math:`K_i` is empty. Uses no oracle; the sorting is a segment sort over the edges, with
        no loop over the nodes. :meth:`check_neighbourhood` refuses a node with more than ``f``
        Byzantine neighbours, or with ``f >= degree`` (nothing kept: the node would not move).

    Non-finite values: a message whose offset :math:`m_{ji} - x_i` has a non-finite norm (a
    NaN/inf coordinate, or an overflow) contributes 0, as if :math:`m_{ji} = x_i`; so the
    output is finite whenever ``own`` is. For the adaptive radius it counts as infinitely far
    (sorted last) and never enters the sum of :math:`\tau_i`. Offset norms are computed in
    float64; the result keeps ``own``'s dtype. Inputs are not modified.

    Parameters
    ----------
    tau : float or {"oracle", "adaptive"}
        Clipping radius :math:`\tau > 0` for every node, ``"oracle"`` or ``"adaptive"`` (see
        above).
    f : int, optional
        Byzantine neighbours assumed per node (``>= 0``), required with ``tau="adaptive"`` and
        refused otherwise.
    """

    def __init__(self, *, tau: float | str = 1.0, f: int | None = None) -> None:
        self.tau = _tau_param(tau)
        if self.tau == "adaptive":
            if f is None:
                raise ValueError(
                    "clipped_gossip with tau='adaptive' needs f, the number of Byzantine "
                    "neighbours assumed per node (an integer >= 0)"
                )
            self.f: int | None = int_param("f", f, minimum=0)
        elif f is not None:
            raise ValueError(
                f"clipped_gossip: f = {f!r} is used only with tau='adaptive' (got tau = {tau!r})"
            )
        else:
            self.f = None

    def check_neighbourhood(self, degree: int, n_byzantine: int) -> None:
        """With ``tau="adaptive"``: refuse more than ``f`` Byzantine neighbours, or ``f >= degree``.

        A fixed or oracle radius has no such bound: this does nothing.
        """
        if self.f is None:
            return
        check_tolerated("clipped_gossip", self.f, n_byzantine)
        if self.f > 0 and self.f >= degree:
            raise ValueError(
                f"clipped_gossip(f={self.f}) with tau='adaptive' needs more than f = {self.f} "
                f"neighbours, got {degree}: the radius would be 0 (nothing to learn from)"
            )

    def _radii(
        self, dist: Tensor, src: Tensor, dst: Tensor, w: Tensor, n: int, ctx: object
    ) -> Tensor:
        """Per-node radii ``[n]`` (float64)."""
        if self.f is not None:  # tau == "adaptive"
            return _adaptive_radii(dist, dst, w, n, self.f)
        if self.tau != "oracle":
            return torch.full((n,), float(self.tau), dtype=torch.float64, device=dist.device)
        byz = None if not isinstance(ctx, GossipContext) else ctx.byzantine
        if byz is None or byz.shape != (n,):
            raise ValueError(
                f"clipped_gossip with tau='oracle' needs ctx.byzantine, a [n] bool tensor (n = {n})"
            )
        from_byz = byz.to(device=src.device, dtype=torch.bool)[src]
        w64 = w.to(torch.float64)
        delta = torch.zeros(n, dtype=torch.float64, device=dist.device)
        delta.index_add_(0, dst, torch.where(from_byz, w64, 0.0))
        spread = torch.zeros(n, dtype=torch.float64, device=dist.device)
        honest = torch.where(from_byz | ~torch.isfinite(dist), 0.0, w64 * dist.square())
        spread.index_add_(0, dst, honest)
        tau = (spread / delta).sqrt()  # delta = 0 -> inf (or nan for 0/0), replaced next
        return torch.where(delta > 0, tau, math.inf)

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
        diff = msg - own[dst]
        dist = torch.linalg.vector_norm(diff, dim=1, dtype=torch.float64)
        tau = self._radii(dist, src, dst, w, n, ctx)[dst]
        ok = torch.isfinite(dist)
        # norm <= tau keeps the offset (also norm = tau = 0 and tau = inf); non-finite -> 0
        scale = torch.where(dist <= tau, 1.0, tau / dist)
        scale = torch.where(ok, scale, 0.0).to(own.dtype)
        step = torch.where(ok[:, None], diff, 0.0) * (w * scale)[:, None]
        return own.clone().index_add_(0, dst, step)

    def get_params(self) -> dict[str, float | str | int | None]:
        """Constructor parameters (``f`` is None unless ``tau="adaptive"``)."""
        return {"tau": self.tau, "f": self.f}


def _adaptive_radii(dist: Tensor, dst: Tensor, w: Tensor, n: int, f: int) -> Tensor:
    r""":math:`\tau_i = \sqrt{\sum_{k \in K_i} W_{i(k)} d_{(k)}^2 / b_i}`, ``[n]`` float64."""
    s = sort_neighbours(dist, dst, w, n)
    b = byzantine_weight(w, dst, n, f)
    target = s.total - b
    inside = (s.cum <= (target + tolerance(s.total))[s.dst]) & torch.isfinite(s.dist)
    spread = torch.zeros(n, dtype=torch.float64, device=dst.device)
    spread.index_add_(0, s.dst, torch.where(inside, s.weight * s.dist.square(), 0.0))
    tau = (spread / b).sqrt()  # b = 0 -> inf (or nan for 0/0), replaced next
    return torch.where(b > 0, tau, math.inf)
