r"""Plain gossip averaging, the non-robust baseline."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from flarena.core.registry import register
from flarena.defenses.gossip.base import GossipContext, check_edges, self_weights


@register("gossip_rule", "gossip")
class GossipMean:
    r"""Plain gossip: each node takes the weighted average of its own model and what it received.

    :math:`x_i \leftarrow W_{ii} x_i + \sum_{j \to i} W_{ij} m_{ji}` with
    :math:`W_{ii} = 1 - \sum_{j \to i} W_{ij}`; with honest messages (:math:`m_{ji} = x_j`)
    this is one step :math:`X \leftarrow W X` of :func:`flarena.algorithms.mixing.gossip`
    (Boyd et al., 2006, "Randomized gossip algorithms"). Not robust: a single Byzantine
    neighbour moves node :math:`i` arbitrarily far, and a non-finite message propagates to the
    receiving node's model (deliberately: this is the baseline). ``ctx`` is ignored.

    ``linear = True`` tells the engine that, when every message is the sender's model, the rule
    is the matrix product :math:`X \leftarrow W X`, which it then computes as one (sparse or
    dense) product instead of the per-edge layout.
    """

    linear: ClassVar[bool] = True

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
        out = own * self_weights(w, dst, own.shape[0])[:, None]
        return out.index_add_(0, dst, w[:, None] * msg)

    def get_params(self) -> dict[str, float]:
        """Constructor parameters (none)."""
        return {}
