r"""The topology contract and the helpers every topology shares.

A topology is a class with keyword-only, validated constructor parameters. Called as
``topo(n, rng=rng, round=t)`` it returns the adjacency of an undirected graph on ``n`` nodes as a
:class:`scipy.sparse.csr_array`: symmetric, entries 0/1 of dtype ``int8``, zero diagonal (no self
loops), no duplicate entries. All randomness comes from the passed
:class:`numpy.random.Generator`, so the same seed gives the same graph.

``time_varying`` says how the engine calls it: ``False``, once with ``round=0`` and the graph is
kept for the whole run; ``True``, once per round with that round's generator. It is a class
attribute, except where a parameter decides it (``erdos_renyi(redraw_each_round=True)`` sets it on
the instance). ``check_n(n)`` raises :class:`ValueError` when the topology cannot be built for
``n`` nodes; every topology needs ``n >= 2``. Static topologies return connected graphs (an error
is raised otherwise); the time-varying ``random_matching`` does not (see its docstring).

Builders are vectorised (no Python loop over nodes) and scale to ``n = 10_000``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

__all__ = [
    "Topology",
    "check_count",
    "degrees",
    "from_edges",
    "int_param",
    "is_connected",
    "probability",
]


def int_param(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an ``int >= minimum``; ``ValueError`` otherwise (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"invalid {name} = {value!r}: must be an integer >= {minimum}")
    return int(value)


def probability(name: str, value: object) -> float:
    """``value`` as a float in ``(0, 1]``; ``ValueError`` otherwise (bools are refused)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not (math.isfinite(v) and 0.0 < v <= 1.0):
        raise ValueError(f"invalid {name} = {value!r}: must be a number in (0, 1]")
    return v


def check_count(n: object, *, minimum: int = 2) -> int:
    """The node count ``n`` as an ``int >= minimum``, else ``ValueError`` naming ``n``."""
    return int_param("n", n, minimum=minimum)


def from_edges(n: int, rows: Any, cols: Any) -> sparse.csr_array:
    """Undirected 0/1 ``int8`` adjacency of ``n`` nodes from edge endpoint arrays.

    Each ``(rows[e], cols[e])`` becomes an undirected edge: the result is symmetrised, self loops
    ``(i, i)`` are dropped and duplicate edges (either orientation) are merged into one entry.
    """
    r = np.asarray(rows, dtype=np.int64).ravel()
    c = np.asarray(cols, dtype=np.int64).ravel()
    if r.shape != c.shape:
        raise ValueError(f"rows and cols differ in length: {r.size} != {c.size}")
    if r.size and (min(r.min(), c.min()) < 0 or max(r.max(), c.max()) >= n):
        raise ValueError(f"edge endpoints must lie in 0 .. {n - 1}")
    keep = r != c
    r, c = r[keep], c[keep]
    both_r = np.concatenate([r, c])
    both_c = np.concatenate([c, r])
    keys = np.unique(both_r * n + both_c)  # sorted row-major: already CSR order
    rr, cc = np.divmod(keys, n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rr, minlength=n), out=indptr[1:])
    data = np.ones(keys.size, dtype=np.int8)
    return sparse.csr_array((data, cc, indptr), shape=(n, n))


def is_connected(adj: Any) -> bool:
    """Whether the undirected graph ``adj`` has a single connected component."""
    if adj.shape[0] <= 1:
        return True
    count, _ = csgraph.connected_components(adj, directed=False)
    return bool(count == 1)


def degrees(adj: Any) -> np.ndarray:
    """Node degrees (number of neighbours) of a 0/1 adjacency, as ``int64``."""
    return np.asarray(sparse.csr_array(adj).sum(axis=1), dtype=np.int64).ravel()


class Topology:
    """Base class of the built-in topologies: validates ``n`` then calls :meth:`build`.

    Subclasses implement :meth:`build` and :meth:`get_params`, and override :meth:`check_n`
    when they need more than ``n >= 2``.
    """

    #: Name used in error messages (the registered name).
    name: str = "topology"
    #: ``True``: a new graph each round (the engine calls once per round with that round's rng).
    time_varying: bool = False

    def check_n(self, n: int) -> None:
        """Refuse a node count the topology cannot be built for (here: ``n < 2``)."""
        check_count(n)

    def __call__(
        self,
        n: int,
        *,
        rng: np.random.Generator,
        round: int = 0,
    ) -> sparse.csr_array:
        """Adjacency of the graph on ``n`` nodes (symmetric, 0/1 ``int8``, zero diagonal)."""
        self.check_n(n)
        return self.build(int(n), rng=rng, round=int(round))

    def build(self, n: int, *, rng: np.random.Generator, round: int) -> sparse.csr_array:
        """Build the graph for a checked ``n``."""
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{self.name}({args})"
