"""Complete graph: every pair of nodes linked (exact averaging in one gossip step)."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from flarena.algorithms.topologies.base import Topology, from_edges
from flarena.core.registry import register


@register("topology", "complete")
class Complete(Topology):
    r"""Complete graph :math:`K_n`: :math:`i \sim j` for every :math:`i \ne j`.

    Degree :math:`n - 1` everywhere; :math:`n(n-1)/2` edges, so memory grows as :math:`n^2`
    (about 50 M edges at ``n = 10_000``). With uniform weights one gossip step averages exactly,
    as a federated server would. Needs ``n >= 2``.
    """

    name = "complete"

    def __init__(self) -> None:
        pass

    def build(self, n: int, *, rng: np.random.Generator, round: int) -> sparse.csr_array:
        """All pairs."""
        rows, cols = np.triu_indices(n, k=1)
        return from_edges(n, rows, cols)
