"""Exponential graph (Ying et al. 2021), symmetrised."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from flarena.algorithms.topologies.base import Topology, from_edges
from flarena.core.registry import register


@register("topology", "exponential")
class Exponential(Topology):
    r"""Static exponential graph: :math:`i \sim (i \pm 2^j) \bmod n`.

    Offsets :math:`2^j` for :math:`j = 0..\lfloor \log_2(n-1) \rfloor`.

    Ying, Yuan, Chen, Hu, Pan, Yin 2021, "Exponential Graph is Provably Efficient for
    Decentralized Deep Training" (NeurIPS) define the *directed* graph where node :math:`i` sends
    to :math:`(i + 2^j) \bmod n`. flarena uses its symmetrised, undirected version (the union of
    both directions), so every node also hears from :math:`(i - 2^j) \bmod n`; offsets that
    coincide modulo :math:`n` (e.g. :math:`+2^j \equiv -2^j` when :math:`2^{j+1} = n`) give one
    edge. Degree at most :math:`2(\lfloor \log_2(n-1) \rfloor + 1)`. Example, ``n = 8``: node 0
    links to 1, 2, 4, 7, 6. Needs ``n >= 2``.
    """

    name = "exponential"

    def __init__(self) -> None:
        pass

    def build(self, n: int, *, rng: np.random.Generator, round: int) -> sparse.csr_array:
        """Edges ``(i, i + 2^j mod n)``."""
        hops = 1 << np.arange(int(n - 1).bit_length(), dtype=np.int64)
        i = np.arange(n, dtype=np.int64)
        rows = np.repeat(i, hops.size)
        cols = (rows + np.tile(hops, n)) % n
        return from_edges(n, rows, cols)
