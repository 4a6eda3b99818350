"""Ring (cycle) graph."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from flarena.algorithms.topologies.base import Topology, from_edges
from flarena.core.registry import register


@register("topology", "ring")
class Ring(Topology):
    r"""Ring (cycle :math:`C_n`): :math:`i \sim (i \pm 1) \bmod n`.

    Every node has degree 2 for ``n >= 3``. With ``n = 2`` both neighbours of a node are the same
    node and the "ring" is the single edge ``(0, 1)`` (degrees 1). Its spectral gap shrinks as
    :math:`O(1/n^2)`, the slow-mixing extreme of the usual benchmark graphs. Needs ``n >= 2``.
    """

    name = "ring"

    def __init__(self) -> None:
        pass

    def build(self, n: int, *, rng: np.random.Generator, round: int) -> sparse.csr_array:
        """Edges ``(i, i + 1 mod n)``."""
        i = np.arange(n)
        return from_edges(n, i, (i + 1) % n)
