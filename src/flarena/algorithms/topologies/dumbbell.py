"""Dumbbell graph: two cliques joined by a single bridge edge."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from flarena.algorithms.topologies.base import Topology, from_edges
from flarena.core.registry import register


@register("topology", "dumbbell")
class Dumbbell(Topology):
    r"""Dumbbell: two cliques of about n/2 nodes joined by one bridge edge.

    Clique sizes :math:`a = \lceil n/2 \rceil`, :math:`b = \lfloor n/2 \rfloor`.

    Nodes :math:`0..a-1` form the first clique and :math:`a..n-1` the second; the bridge is the
    edge :math:`(0, a)`. Edge count :math:`\binom{a}{2} + \binom{b}{2} + 1`. The bridge is a
    bottleneck (tiny spectral gap) as in the dumbbell experiments of He, Karimireddy, Jaggi 2022,
    "Byzantine-Robust Decentralized Learning via ClippedGossip". ``n = 2`` gives the single edge
    ``(0, 1)``. Needs ``n >= 2``.
    """

    name = "dumbbell"

    def __init__(self) -> None:
        pass

    def build(self, n: int, *, rng: np.random.Generator, round: int) -> sparse.csr_array:
        """Two cliques and the bridge ``(0, a)``."""
        a = (n + 1) // 2
        r1, c1 = np.triu_indices(a, k=1)
        r2, c2 = np.triu_indices(n - a, k=1)
        rows = np.concatenate([r1, r2 + a, [0]])
        cols = np.concatenate([c1, c2 + a, [a]])
        return from_edges(n, rows, cols)
