"""Time-varying random perfect matching."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from flarena.algorithms.topologies.base import Topology, from_edges
from flarena.core.registry import register


@register("topology", "random_matching")
class RandomMatching(Topology):
    r"""Each round, a uniformly random perfect matching of the nodes.

    The nodes are shuffled with the round's generator and consecutive pairs are linked, which
    draws a uniform perfect matching; for odd ``n`` the last node of the shuffle stays unmatched
    (degree 0) that round. Every node has degree at most 1 (exactly 1 for even ``n``), so the
    per-round cost is one exchange per node, as in randomized pairwise gossip (Boyd, Ghosh,
    Prabhakar, Shah 2006, "Randomized Gossip Algorithms").

    A single matching is disconnected for ``n > 2``: it is the union over rounds that mixes, so
    connectivity is *not* required of (or checked for) this time-varying topology. Needs
    ``n >= 2``.
    """

    name = "random_matching"
    time_varying = True

    def __init__(self) -> None:
        pass

    def build(self, n: int, *, rng: np.random.Generator, round: int) -> sparse.csr_array:
        """Pair consecutive nodes of a random permutation."""
        perm = rng.permutation(n)
        m = n // 2
        return from_edges(n, perm[0 : 2 * m : 2], perm[1 : 2 * m : 2])
