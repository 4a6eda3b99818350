"""Erdős–Rényi random graph G(n, p), redrawn until connected."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import sparse

from flarena.algorithms.topologies.base import (
    Topology,
    from_edges,
    int_param,
    is_connected,
    probability,
)
from flarena.core.registry import register


def sample_gnp(n: int, p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    r"""Edges ``(i, j)``, ``i < j``, of one draw of :math:`G(n, p)`.

    Exact and memory-light (:math:`O(n + |E|)`, never an :math:`n \times n` matrix): the edge
    count is drawn as :math:`m \sim \mathrm{Binomial}(\binom{n}{2}, p)`, then :math:`m` distinct
    pairs uniformly without replacement among the :math:`\binom{n}{2}` upper-triangle pairs
    (indexed row-major and decoded with a ``searchsorted`` over the row offsets). Given
    :math:`m` every :math:`m`-edge graph is equally likely, which is exactly :math:`G(n, p)`.
    """
    n_pairs = n * (n - 1) // 2
    m = int(rng.binomial(n_pairs, p))
    keys = rng.choice(n_pairs, size=m, replace=False).astype(np.int64)
    i = np.arange(n, dtype=np.int64)
    offsets = i * (2 * n - i - 1) // 2  # pairs whose first node is < i
    rows = np.searchsorted(offsets, keys, side="right") - 1
    cols = keys - offsets[rows] + rows + 1
    return rows, cols


@register("topology", "erdos_renyi")
class ErdosRenyi(Topology):
    r"""Erdős–Rényi :math:`G(n, p)`, conditioned on being connected.

    Each of the :math:`\binom{n}{2}` pairs is linked independently with probability :math:`p`.

    A disconnected draw is redrawn with the *same* generator (so the result is still a
    deterministic function of the seed), up to ``max_tries`` draws, then ``ValueError``: raise
    ``p`` above the connectivity threshold :math:`\ln(n)/n` (Erdős, Rényi 1959, "On random
    graphs I"). Sampling is exact and vectorised, see :func:`sample_gnp`. Expected degree
    :math:`p(n-1)`.

    Parameters
    ----------
    p : float
        Edge probability in ``(0, 1]``.
    max_tries : int
        Draws before giving up on connectivity (default 100).
    redraw_each_round : bool
        ``False`` (default): one graph for the whole run. ``True``: time-varying, a fresh
        connected draw every round from that round's generator.
    """

    name = "erdos_renyi"

    def __init__(self, *, p: float, max_tries: int = 100, redraw_each_round: bool = False) -> None:
        self.p = probability("p", p)
        self.max_tries = int_param("max_tries", max_tries, minimum=1)
        if not isinstance(redraw_each_round, bool):
            raise ValueError(f"invalid redraw_each_round = {redraw_each_round!r}: must be a bool")
        self.redraw_each_round = redraw_each_round
        self.time_varying = redraw_each_round

    def build(self, n: int, *, rng: np.random.Generator, round: int) -> sparse.csr_array:
        """Draw until connected."""
        for _ in range(self.max_tries):
            adj = from_edges(n, *sample_gnp(n, self.p, rng))
            if is_connected(adj):
                return adj
        raise ValueError(
            f"erdos_renyi(p={self.p}) with n={n} was not connected after {self.max_tries} draws; "
            f"raise p (connectivity threshold ~ ln(n)/n = {math.log(n) / n:.4g})"
        )

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""
        return {
            "p": self.p,
            "max_tries": self.max_tries,
            "redraw_each_round": self.redraw_each_round,
        }
