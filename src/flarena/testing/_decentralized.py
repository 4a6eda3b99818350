r"""Checks of the decentralized kinds: topologies and gossip rules.

Topologies (:mod:`flarena.algorithms.topologies.base`): ``topo(n, rng=rng, round=t)`` returns a
symmetric 0/1 ``int8`` :class:`scipy.sparse.csr_array` with a zero diagonal, drawn only from
``rng``; static topologies are connected; ``check_n(n)`` refuses with :class:`ValueError` a node
count the topology cannot be built for (every topology needs ``n >= 2``).

Gossip rules (:mod:`flarena.defenses.gossip.base`): ``rule(messages [E, d], src=, dst=,
weights=, own=[n, d], ctx=) -> [n, d]`` on the per-edge layout, with the self weight implied.
The test graphs get Metropolis weights (:func:`flarena.algorithms.mixing.mixing_matrix`, so
:math:`W` is symmetric and doubly stochastic) and their edges come from
:func:`flarena.engines.gossip.edges_of`, as in the engine. ``ctx.byzantine`` is all ``False``,
so that oracle rules run; a rule with ``check_neighbourhood(degree, n_byzantine)`` gets a graph
whose degrees it accepts.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch import Tensor

from flarena.algorithms.mixing import is_connected, mixing_matrix
from flarena.algorithms.topologies.base import from_edges
from flarena.defenses.gossip.base import GossipContext
from flarena.engines.gossip import edges_of
from flarena.testing._common import NamedCheck, Plugin, assert_close, params_equal, seeded
from flarena.testing._rules import DTYPES, D

__all__ = ["gossip_rule_checks", "topology_checks"]

# --- topologies -------------------------------------------------------------------------------

#: Node counts a topology is built for (the first :data:`MAX_COUNTS` it supports).
NODE_COUNTS = (4, 8, 9, 16)
#: Tried in turn when a topology supports none of :data:`NODE_COUNTS` (``torus(rows=5, cols=7)``).
MORE_NODE_COUNTS = tuple(range(2, 65))
#: How many supported node counts the checks use.
MAX_COUNTS = 3
#: Rounds a time-varying topology is called for (a static one: round 0 only, as the engine).
ROUNDS = (0, 1, 2)
#: Node counts every topology must refuse.
TOO_FEW = (0, 1)


def _dense(adj: Any) -> np.ndarray:
    """``adj`` as a dense numpy array (whatever the topology returned)."""
    return np.asarray(adj.toarray() if hasattr(adj, "toarray") else adj)


class _Topo:
    """A topology under test: its probe instance, the node counts and rounds to build for."""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        probe = plugin.make()
        self.time_varying = getattr(probe, "time_varying", False) is True
        self.rounds = ROUNDS if self.time_varying else (0,)
        counts = [n for n in NODE_COUNTS if self.supports(n, probe)][:MAX_COUNTS]
        if not counts:
            counts = [n for n in MORE_NODE_COUNTS if self.supports(n, probe)][:MAX_COUNTS]
        if not counts:
            raise AssertionError(
                f"{plugin.label}: check_n(n) refused every n in 2..{MORE_NODE_COUNTS[-1]}"
            )
        self.counts = tuple(counts)

    def supports(self, n: int, topo: Any = None) -> bool:
        """Whether ``check_n(n)`` accepts ``n`` (without ``check_n``: whether building works)."""
        topo = self.plugin.make() if topo is None else topo
        check = getattr(topo, "check_n", None)
        try:
            if callable(check):
                check(n)
            else:
                topo(n, rng=np.random.default_rng(0), round=0)
        except ValueError:
            return False
        except Exception as exc:
            raise AssertionError(
                f"{self.plugin.label}: check_n({n}) raised {type(exc).__name__}: {exc}; "
                f"refuse an unsupported n with ValueError"
            ) from exc
        return True

    def build(self, n: int, *, seed: int = 0, round: int = 0, topo: Any = None) -> Any:
        """The graph of a fresh instance (or of ``topo``) on ``n`` nodes."""
        topo = self.plugin.make() if topo is None else topo
        try:
            return topo(n, rng=np.random.default_rng(seed), round=round)
        except Exception as exc:
            raise AssertionError(
                f"{self.plugin.label}: building the graph on n = {n} nodes (check_n accepts it; "
                f"seed {seed}, round {round}) raised {type(exc).__name__}: {exc}"
            ) from exc

    def graphs(self) -> Iterator[tuple[int, int, Any]]:
        """``(n, round, adjacency)`` for every node count and round checked."""
        for n in self.counts:
            for t in self.rounds:
                yield n, t, self.build(n, round=t)

    def fail(self, n: int, t: int, message: str) -> AssertionError:
        """An AssertionError naming the plugin, ``n`` and the round."""
        return AssertionError(f"{self.plugin.label} (n = {n}, round {t}): {message}")


def _format_problem(adj: Any, n: int) -> str | None:
    """What is wrong with the type, shape or dtype of an adjacency, if anything."""
    if not isinstance(adj, sparse.csr_array):
        return f"returned {type(adj).__name__}, want a scipy.sparse.csr_array"
    if tuple(adj.shape) != (n, n):
        return f"shape {tuple(adj.shape)}, want ({n}, {n})"
    if adj.dtype != np.int8:
        return f"dtype {adj.dtype}, want int8"
    return None


def _entry_problem(a: np.ndarray) -> str | None:
    """What is wrong with the entries of a dense adjacency (0/1, symmetric, zero diagonal)."""
    if not np.isin(a, (0, 1)).all():
        return f"entries {sorted(set(np.unique(a).tolist()) - {0, 1})[:5]} are not 0/1"
    if not np.array_equal(a, a.T):
        return "not symmetric"
    if np.diagonal(a).any():
        return "non-zero diagonal"
    return None


def topology_checks(plugin: Plugin) -> list[NamedCheck]:
    """Checks of a topology ``topo(n, rng=rng, round=t) -> csr_array [n, n]``."""
    cache: list[_Topo] = []

    def get() -> _Topo:
        if not cache:
            cache.append(_Topo(plugin))
        return cache[0]

    def time_varying_attribute() -> None:
        value = getattr(plugin.make(), "time_varying", None)
        if not isinstance(value, bool):
            raise AssertionError(
                f"{plugin.label}: time_varying is {value!r}; set it to True (a new graph every "
                f"round) or False (one graph for the whole run)"
            )

    def output_type() -> None:
        topo = get()
        for n, t, adj in topo.graphs():
            if (msg := _format_problem(adj, n)) is not None:
                raise topo.fail(n, t, msg)

    def binary_entries() -> None:
        topo = get()
        for n, t, adj in topo.graphs():
            if sparse.issparse(adj):
                summed = adj.copy()
                summed.sum_duplicates()
                if summed.nnz != adj.nnz:
                    raise topo.fail(n, t, "duplicate stored entries; merge them (from_edges)")
            a = _dense(adj)
            if not np.isin(a, (0, 1)).all():
                bad = sorted(set(np.unique(a).tolist()) - {0, 1})[:5]
                raise topo.fail(n, t, f"entries {bad} are not 0/1")

    def symmetric() -> None:
        topo = get()
        for n, t, adj in topo.graphs():
            a = _dense(adj)
            if not np.array_equal(a, a.T):
                i, j = np.argwhere(a != a.T)[0]
                raise topo.fail(
                    n, t, f"not symmetric: A[{i}, {j}] = {a[i, j]} but A[{j}, {i}] = {a[j, i]}"
                )

    def zero_diagonal() -> None:
        topo = get()
        for n, t, adj in topo.graphs():
            if (loops := np.flatnonzero(np.diagonal(_dense(adj)))).size:
                raise topo.fail(n, t, f"self loops at nodes {loops[:10].tolist()}")

    def deterministic() -> None:
        topo = get()
        for n in topo.counts:
            for t in topo.rounds:
                a, b = (
                    _dense(topo.build(n, seed=7, round=t)),
                    _dense(topo.build(n, seed=7, round=t)),
                )
                if a.shape != b.shape or not np.array_equal(a, b):
                    raise topo.fail(
                        n,
                        t,
                        "two fresh instances given the same rng seed built different graphs; "
                        "draw all randomness from the `rng` argument",
                    )

    def no_hidden_state() -> None:
        topo = get()
        obj = plugin.make()
        get_params = getattr(obj, "get_params", None)
        before = get_params() if callable(get_params) else None
        for n in topo.counts:
            for t in topo.rounds:
                first = topo.build(n, seed=3, round=t, topo=obj)
                a = _dense(first).copy()
                if sparse.issparse(first):
                    first.data[:] = 0  # the caller owns the result: must not feed the next call
                b = _dense(topo.build(n, seed=3, round=t, topo=obj))
                if a.shape != b.shape or not np.array_equal(a, b):
                    raise topo.fail(
                        n,
                        t,
                        "calling the same instance twice with the same seed built different "
                        "graphs; keep no state between calls and return a new array each time",
                    )
        if before is not None and not params_equal(obj.get_params(), before):
            raise AssertionError(
                f"{plugin.label}: building graphs changed get_params() from {before!r} to "
                f"{obj.get_params()!r}"
            )

    def global_rng_untouched() -> None:
        topo = get()
        np_state, py_state = np.random.get_state(), random.getstate()
        marker = np.random.random(), random.random()
        np.random.set_state(np_state)
        random.setstate(py_state)
        for n in topo.counts:
            topo.build(n, round=topo.rounds[-1])
        after = np.random.random(), random.random()
        np.random.set_state(np_state)
        random.setstate(py_state)
        if after != marker:
            raise AssertionError(
                f"{plugin.label}: used numpy's or Python's global random state; draw all "
                f"randomness from the `rng` argument"
            )

    def connected() -> None:
        topo = get()
        if topo.time_varying:  # only the union over rounds must mix (random_matching)
            return
        for n, t, adj in topo.graphs():
            if not is_connected(sparse.csr_array(_dense(adj))):
                raise topo.fail(
                    n,
                    t,
                    "the graph is disconnected; a static topology must return a connected "
                    "graph or raise ValueError",
                )

    def check_n_refuses_too_few() -> None:
        obj = plugin.make()
        check = getattr(obj, "check_n", None)
        if not callable(check):
            raise AssertionError(
                f"{plugin.label}: has no check_n(n) method; the runner calls it before training "
                f"to refuse a node count the topology cannot be built for"
            )
        for n in TOO_FEW:
            try:
                check(n)
            except ValueError:
                continue
            except Exception as exc:
                raise AssertionError(
                    f"{plugin.label}: check_n({n}) must raise ValueError, got "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            raise AssertionError(
                f"{plugin.label}: check_n({n}) did not raise; every topology needs n >= 2"
            )

    def two_nodes() -> None:
        topo = get()
        if not topo.supports(2):
            return
        for t in topo.rounds:
            adj = topo.build(2, round=t)
            if (msg := _format_problem(adj, 2) or _entry_problem(_dense(adj))) is not None:
                raise topo.fail(2, t, msg)
            if not topo.time_varying and not _dense(adj)[0, 1]:
                raise topo.fail(2, t, "no edge (0, 1): the only connected graph on 2 nodes")

    return [
        ("time_varying_attribute", time_varying_attribute),
        ("output_type", output_type),
        ("binary_entries", binary_entries),
        ("symmetric", symmetric),
        ("zero_diagonal", zero_diagonal),
        ("deterministic", deterministic),
        ("no_hidden_state", no_hidden_state),
        ("global_rng_untouched", global_rng_untouched),
        ("connected", connected),
        ("check_n_refuses_too_few", check_n_refuses_too_few),
        ("two_nodes", two_nodes),
    ]


# --- gossip rules -----------------------------------------------------------------------------

#: Undirected edges of the default test graph on 8 nodes: a ring plus chords (degrees 2 to 4).
IRREGULAR_EDGES = (
    *((i, (i + 1) % 8) for i in range(8)),
    (0, 2),
    (0, 4),
    (3, 6),
)
#: Complete graphs tried in turn when the rule's ``check_neighbourhood`` refuses a degree.
COMPLETE_SIZES = (8, 16, 32)
#: Scale of the per-edge deviation of the messages from the senders' rows.
NOISE = 0.5
Inputs = dict[str, Tensor]


def _complete(n: int) -> Any:
    rows, cols = np.triu_indices(n, k=1)
    return from_edges(n, rows, cols)


def _accepts(rule: Any, adj: Any) -> bool:
    """Whether ``rule.check_neighbourhood(degree, 0)`` accepts every degree of ``adj``."""
    check = getattr(rule, "check_neighbourhood", None)
    if not callable(check):
        return True
    for degree in np.unique(np.asarray(adj.sum(axis=1)).ravel()):
        try:
            check(int(degree), 0)
        except ValueError:
            return False
    return True


class _Gossip:
    """Calls a fresh gossip rule on a test graph whose degrees it accepts."""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        probe = plugin.make()
        rows, cols = zip(*IRREGULAR_EDGES, strict=True)
        candidates = [from_edges(8, rows, cols), *(_complete(n) for n in COMPLETE_SIZES)]
        accepted = [adj for adj in candidates if _accepts(probe, adj)]
        if not accepted:
            raise AssertionError(
                f"{plugin.label}: check_neighbourhood(degree, 0) refused every graph tried, up "
                f"to the complete graph on {COMPLETE_SIZES[-1]} nodes"
            )
        self.adj = accepted[0]
        self.n = int(self.adj.shape[0])
        # the same graph plus node n without neighbours, if the rule accepts degree 0
        coo = self.adj.tocoo()
        lonely = from_edges(self.n + 1, coo.row, coo.col)
        self.lonely = lonely if _accepts(probe, lonely) else None

    def inputs(
        self,
        *,
        adj: Any = None,
        dtype: torch.dtype = torch.float64,
        device: str = "cpu",
        honest: bool = False,
        own: Tensor | None = None,
        seed: int = 0,
    ) -> Inputs:
        """Keyword arguments of one call: Metropolis weights, seeded ``own`` and messages.

        ``honest``: every message is its sender's row of ``own``; otherwise each edge adds its
        own seeded deviation (what Byzantine senders may do).
        """
        adj = self.adj if adj is None else adj
        n = int(adj.shape[0])
        src, dst, weights = edges_of(mixing_matrix(adj), torch.device(device), dtype)
        if own is None:
            own = torch.randn(n, D, generator=seeded(seed), dtype=dtype).to(device)
        messages = own[src].clone()
        if not honest:
            noise = torch.randn(src.shape[0], D, generator=seeded(seed + 1), dtype=dtype)
            messages += NOISE * noise.to(device)
        return {"messages": messages, "src": src, "dst": dst, "weights": weights, "own": own}

    def ctx(self, n: int, *, seed: int = 0, device: str = "cpu") -> GossipContext:
        """A context with a seeded generator and ``byzantine`` all ``False``."""
        return GossipContext(
            round=1,
            generator=seeded(seed, device),
            byzantine=torch.zeros(n, dtype=torch.bool, device=device),
        )

    def __call__(self, kw: Inputs, *, ctx: GossipContext | None = None) -> Tensor:
        """Call a fresh instance; without ``ctx``, a default :meth:`ctx`."""
        rule = self.plugin.make()
        own = kw["own"]
        c = self.ctx(own.shape[0], device=str(own.device)) if ctx is None else ctx
        try:
            out = rule(
                kw["messages"],
                src=kw["src"],
                dst=kw["dst"],
                weights=kw["weights"],
                own=own,
                ctx=c,
            )
        except Exception as exc:
            raise AssertionError(
                f"{self.plugin.label}: calling the gossip rule on {own.shape[0]} nodes, "
                f"{kw['src'].shape[0]} directed edges, d = {own.shape[1]} ({own.dtype}, "
                f"{own.device}) raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(out, Tensor):
            raise AssertionError(
                f"{self.plugin.label}: returned {type(out).__name__}, not a Tensor"
            )
        if tuple(out.shape) != tuple(own.shape):
            raise self.fail(f"output shape {tuple(out.shape)}, want {tuple(own.shape)}")
        return out

    def fail(self, message: str) -> AssertionError:
        """An AssertionError naming the plugin and the graph."""
        return AssertionError(
            f"{self.plugin.label} (gossip rule, n = {self.n}, d = {D}): {message}"
        )


def gossip_rule_checks(plugin: Plugin) -> list[NamedCheck]:
    """Checks of a gossip rule ``rule(messages [E, d], *, src, dst, weights, own, ctx) -> [n, d]``.

    ``mean_preserved`` holds for plain gossip (and for a fixed-radius clipping, whose clipped
    offsets are antisymmetric) but not for rules that trim or clip per node; such rules declare
    it in ``_xfail_checks``.
    """
    cache: list[_Gossip] = []

    def get() -> _Gossip:
        if not cache:
            cache.append(_Gossip(plugin))
        return cache[0]

    def output_shape() -> None:
        g = get()
        g(g.inputs())  # the call checks the shape

    def dtype_kept() -> None:
        g = get()
        for dtype in DTYPES:
            out = g(g.inputs(dtype=dtype))
            if out.dtype != dtype:
                raise g.fail(f"{dtype} inputs gave a {out.dtype} output")

    def device_kept() -> None:
        g = get()
        for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
            out = g(g.inputs(device=dev))
            if out.device.type != dev:
                raise g.fail(f"{dev} inputs gave an output on {out.device}")

    def no_mutation() -> None:
        g = get()
        for dtype in DTYPES:  # float32 weights and messages need no cast: they could be written
            kw = g.inputs(dtype=dtype)
            before = {k: v.clone() for k, v in kw.items()}
            g(kw)
            if changed := [k for k in kw if not torch.equal(kw[k], before[k])]:
                raise g.fail(f"{', '.join(changed)} modified in place ({dtype}); work on a copy")

    def finite_output() -> None:
        g = get()
        kw = g.inputs()
        kw["own"], kw["messages"] = kw["own"] * 100, kw["messages"] * 100
        if not torch.isfinite(g(kw)).all():
            raise g.fail("finite inputs gave a non-finite output")

    def deterministic() -> None:
        g = get()
        kw = g.inputs()
        a, b = g(kw, ctx=g.ctx(g.n, seed=7)), g(kw, ctx=g.ctx(g.n, seed=7))
        if not torch.equal(a, b):
            raise g.fail(
                "two fresh instances given the same inputs and the same ctx.generator seed "
                "returned different outputs; take all randomness from ctx.generator"
            )

    def consensus_preserved() -> None:
        g = get()
        row = torch.randn(D, generator=seeded(11), dtype=torch.float64)
        kw = g.inputs(own=row.expand(g.n, D).clone(), honest=True)
        assert_close(
            g(kw),
            kw["own"],
            f"{plugin.label}: at consensus (all nodes equal, honest messages) the models moved",
        )

    def mean_preserved() -> None:
        g = get()
        kw = g.inputs(honest=True)
        assert_close(
            g(kw).mean(0),
            kw["own"].mean(0),
            f"{plugin.label}: with honest messages and a symmetric doubly stochastic W "
            f"(Metropolis) the average model changed",
        )

    def permutation_equivariance() -> None:
        g = get()
        kw = g.inputs()
        perm = torch.randperm(g.n, generator=seeded(3))  # new node k is old node perm[k]
        inv = torch.argsort(perm)
        order = torch.randperm(kw["src"].shape[0], generator=seeded(4))  # and shuffle the edges
        relabelled = {
            "messages": kw["messages"][order],
            "src": inv[kw["src"]][order],
            "dst": inv[kw["dst"]][order],
            "weights": kw["weights"][order],
            "own": kw["own"][perm],
        }
        assert_close(
            g(relabelled),
            g(kw)[perm],
            f"{plugin.label}: relabelling the nodes (and reordering the edges) did not relabel "
            f"the output",
        )

    def isolated_node_keeps_model() -> None:
        g = get()
        if g.lonely is None:  # check_neighbourhood(0, 0) refuses a node without neighbours
            return
        kw = g.inputs(adj=g.lonely)
        out = g(kw)
        assert_close(
            out[-1],
            kw["own"][-1],
            f"{plugin.label}: a node without neighbours (no incoming edges) changed its model",
        )

    return [
        ("output_shape", output_shape),
        ("dtype_kept", dtype_kept),
        ("device_kept", device_kept),
        ("no_mutation", no_mutation),
        ("finite_output", finite_output),
        ("deterministic", deterministic),
        ("consensus_preserved", consensus_preserved),
        ("mean_preserved", mean_preserved),
        ("permutation_equivariance", permutation_equivariance),
        ("isolated_node_keeps_model", isolated_node_keeps_model),
    ]
