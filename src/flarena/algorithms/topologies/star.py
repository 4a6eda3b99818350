"""Star graph: one hub linked to every other node."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from flarena.algorithms.topologies.base import Topology, from_edges
from flarena.core.registry import register


@register("topology", "star")
class Star(Topology):
    r"""Star :math:`K_{1, n-1}`: node 0 is the hub, :math:`0 \sim i` for :math:`i = 1..n-1`.

    Degrees: :math:`n - 1` for the hub, 1 for every leaf; a decentralized stand-in for the
    server-client layout. Needs ``n >= 2``.
    """

    name = "star"

    def __init__(self) -> None:
        pass

    def build(self, n: int, *, rng: np.random.Generator, round: int) -> sparse.csr_array:
        """Edges ``(0, i)``."""
        leaves = np.arange(1, n)
        return from_edges(n, np.zeros_like(leaves), leaves)
