"""Random k-regular graph (pairing model with rejection), redrawn until connected."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from flarena.algorithms.topologies.base import (
    Topology,
    check_count,
    from_edges,
    int_param,
    is_connected,
)
from flarena.core.registry import register

#: Consecutive rounds of the pairing without a new edge before the attempt is abandoned.
MAX_STALLS = 50


def pair_stubs(n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    r"""Edges of a simple ``k``-regular graph on ``n`` nodes by the pairing model, or ``None``.

    Each node gets ``k`` stubs. Repeatedly: shuffle the free stubs, pair them consecutively and
    keep every pair that is not a self loop, not an existing edge and not a repeat within the
    batch; the other stubs stay free. This is the batched form of Steger, Wormald 1999,
    "Generating random regular graphs quickly" (the method of ``networkx.random_regular_graph``).
    Returns ``None`` when the free stubs stop making progress (no usable pair left); the caller
    restarts. Needs ``n * k`` even and ``k < n``.
    """
    stubs = np.repeat(np.arange(n, dtype=np.int64), k)
    taken = np.empty(0, dtype=np.int64)  # sorted keys lo * n + hi of accepted edges
    stalls = 0
    while stubs.size:
        rng.shuffle(stubs)
        a, b = stubs[0::2], stubs[1::2]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        keys = lo * n + hi
        usable = np.flatnonzero((lo != hi) & ~np.isin(keys, taken, assume_unique=False))
        new, first = np.unique(keys[usable], return_index=True)
        if new.size == 0:
            stalls += 1
            if stalls > MAX_STALLS:
                return None
            continue
        stalls = 0
        taken = np.union1d(taken, new)
        free = np.ones(a.size, dtype=bool)
        free[usable[first]] = False
        stubs = np.concatenate([a[free], b[free]])
    return np.divmod(taken, n)


@register("topology", "k_regular")
class KRegular(Topology):
    r"""Random connected :math:`k`-regular graph: every node has exactly :math:`k` neighbours.

    Sampled by the pairing (configuration) model with rejection of self loops and multi-edges
    as they arise (:func:`pair_stubs`, after Steger and Wormald 1999), and redrawn with the same
    generator until the graph is connected, up to ``max_tries`` draws. For :math:`k > (n-1)/2`
    the complement of a random :math:`(n-1-k)`-regular graph is taken instead (pairing stalls
    when dense); such a graph has minimum degree :math:`\ge n/2` and is always connected. The
    law is close to, not exactly, uniform over connected :math:`k`-regular graphs
    (asymptotically uniform for small :math:`k`, as for ``networkx.random_regular_graph``).

    Needs :math:`k < n`, :math:`nk` even, and :math:`k \ge 2` unless :math:`n = 2` (a 1-regular
    graph is a perfect matching, disconnected for :math:`n > 2`).

    Parameters
    ----------
    k : int
        Degree, ``>= 1``.
    max_tries : int
        Draws before giving up (default 100).
    """

    name = "k_regular"

    def __init__(self, *, k: int, max_tries: int = 100) -> None:
        self.k = int_param("k", k, minimum=1)
        self.max_tries = int_param("max_tries", max_tries, minimum=1)

    def check_n(self, n: int) -> None:
        """Refuse ``k >= n``, odd ``n * k``, and ``k = 1`` with ``n > 2``."""
        n = check_count(n)
        k = self.k
        if k >= n:
            raise ValueError(f"invalid k = {k} for n = {n}: must be < n")
        if (n * k) % 2:
            raise ValueError(
                f"invalid k = {k} for n = {n}: n * k must be even (odd n needs even k)"
            )
        if k == 1 and n > 2:
            raise ValueError(
                f"invalid k = 1 for n = {n}: must be >= 2 (a 1-regular graph is a perfect "
                f"matching, disconnected for n > 2)"
            )

    def build(self, n: int, *, rng: np.random.Generator, round: int) -> sparse.csr_array:
        """Pair stubs until a simple connected graph comes out."""
        k = self.k
        dense = 2 * k > n - 1
        kk = n - 1 - k if dense else k
        for _ in range(self.max_tries):
            edges = pair_stubs(n, kk, rng)
            if edges is None:
                continue
            if dense:
                keep = np.ones((n, n), dtype=bool)
                keep[edges] = False
                rows, cols = np.nonzero(np.triu(keep, k=1))
                adj = from_edges(n, rows, cols)
            else:
                adj = from_edges(n, *edges)
            if is_connected(adj):
                return adj
        raise ValueError(
            f"k_regular(k={k}) with n={n}: no simple connected graph after {self.max_tries} draws"
        )

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""
        return {"k": self.k, "max_tries": self.max_tries}
