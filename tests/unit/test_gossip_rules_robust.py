"""Robust gossip rules: CS+, GTS, adaptive ClippedGossip and neighbourhood aggregation.

Expected values are worked out by hand from the formulas in the comments; the multi-node tests
compare the vectorised rules with straightforward per-node implementations written here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from flarena.core import registry
from flarena.defenses.aggregators.krum import Krum
from flarena.defenses.aggregators.mean import Mean
from flarena.defenses.aggregators.median import Median
from flarena.defenses.aggregators.trimmed_mean import TrimmedMean
from flarena.defenses.gossip import neighbourhood as neighbourhood_module
from flarena.defenses.gossip._sorted import (
    byzantine_weight,
    segment_positions,
    segmented_cumsum,
    sort_neighbours,
)
from flarena.defenses.gossip.base import GossipContext, GossipRule, check_neighbourhoods
from flarena.defenses.gossip.clipped_gossip import ClippedGossip
from flarena.defenses.gossip.cs_plus import CSPlus
from flarena.defenses.gossip.gossip_mean import GossipMean
from flarena.defenses.gossip.gts import GTS
from flarena.defenses.gossip.neighbourhood import Neighbourhood

F64 = torch.float64
X0 = torch.tensor([1.0, 1.0], dtype=F64)


def node_example() -> dict[str, Any]:
    """Node 0 at x_0 = (1, 1) with 4 neighbours, distinct weights, edges listed out of order.

    Offsets z_j = m_j - x_0 by distance:  z_a = (1, 0) d 1 w 0.1;  z_b = (0, 2) d 2 w 0.3;
    z_c = (-3, 0) d 3 w 0.2;  z_d = (0, -10) d 10 w 0.15.  W_0 = 0.75 (self weight 0.25).
    f = 1: b_0 = the largest weight = 0.3;  f = 2: b_0 = 0.3 + 0.2 = 0.5.
    Edge order: d, a, c, b (sources 4, 1, 3, 2).
    """
    own = torch.tensor([[1.0, 1.0], [2.0, 1.0], [1.0, 3.0], [-2.0, 1.0], [1.0, -9.0]], dtype=F64)
    src = torch.tensor([4, 1, 3, 2])
    return {
        "messages": own[src].clone(),
        "src": src,
        "dst": torch.zeros(4, dtype=torch.long),
        "weights": torch.tensor([0.15, 0.1, 0.2, 0.3], dtype=F64),
        "own": own,
    }


def five_example() -> dict[str, Any]:
    """Node 0 at the origin with 5 neighbours (weights 0.1, 0.12, 0.14, 0.16, 0.08 by distance).

    Offsets by distance: (0, 1), (2, 0), (0, -3), (4, 0), (0, 5); W_0 = 0.6.
    """
    own = torch.tensor(
        [[0.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, -3.0], [4.0, 0.0], [0.0, 5.0]], dtype=F64
    )
    src = torch.tensor([3, 5, 1, 4, 2])
    return {
        "messages": own[src].clone(),
        "src": src,
        "dst": torch.zeros(5, dtype=torch.long),
        "weights": torch.tensor([0.14, 0.08, 0.1, 0.16, 0.12], dtype=F64),
        "own": own,
    }


def random_graph(seed: int = 0, n: int = 9, d: int = 3) -> dict[str, Any]:
    """A graph with mixed degrees (an isolated node, leaves, hubs), random weights and messages.

    Every edge carries its own message (a Byzantine node may send different vectors).
    """
    g = torch.Generator().manual_seed(seed)
    pairs = [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    pairs += [(6, 7), (1, 7), (2, 7)]  # node 8 isolated
    src = torch.tensor([j for i, j in pairs] + [i for i, j in pairs])
    dst = torch.tensor([i for i, j in pairs] + [j for i, j in pairs])
    perm = torch.randperm(src.shape[0], generator=g)  # edges in no particular order
    src, dst = src[perm], dst[perm]
    own = torch.randn(n, d, generator=g, dtype=F64)
    messages = own[src] + torch.randn(src.shape[0], d, generator=g, dtype=F64) * 2.0
    weights = 0.02 + 0.15 * torch.rand(src.shape[0], generator=g, dtype=F64)
    return {"messages": messages, "src": src, "dst": dst, "weights": weights, "own": own}


def ring_w() -> Tensor:
    """Metropolis weights of a 4-cycle plus the chord 0-2 (degrees 3, 2, 3, 2)."""
    adj = torch.zeros(4, 4, dtype=F64)
    for i, j in ((0, 1), (1, 2), (2, 3), (3, 0), (0, 2)):
        adj[i, j] = adj[j, i] = 1.0
    deg = adj.sum(dim=1)
    w = adj / (1.0 + torch.maximum(deg[:, None], deg[None, :]))
    return w + torch.diag(1.0 - w.sum(dim=1))


def edges_of(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Directed edges j -> i for every off-diagonal non-zero W[i, j]."""
    off = w.clone()
    off.fill_diagonal_(0.0)
    dst, src = off.nonzero(as_tuple=True)
    return src, dst, w[dst, src]


# -- per-node reference implementations, straight from the formulas ---------------------------


def _node_view(kw: dict[str, Tensor], i: int) -> tuple[list[Tensor], list[float], list[float]]:
    """Node i's offsets, distances and weights, sorted by distance (ties: edge order)."""
    edges = [e for e in range(kw["dst"].shape[0]) if int(kw["dst"][e]) == i]
    z = [kw["messages"][e] - kw["own"][i] for e in edges]
    dist = [float(v.norm()) for v in z]
    w = [float(kw["weights"][e]) for e in edges]
    order = sorted(range(len(edges)), key=lambda k: (dist[k], k))
    return [z[k] for k in order], [dist[k] for k in order], [w[k] for k in order]


def _b(w: list[float], f: int) -> float:
    return sum(sorted(w, reverse=True)[:f])


def ref_cs_plus(kw: dict[str, Tensor], f: int, eta: float = 1.0) -> Tensor:
    out = kw["own"].clone()
    for i in range(out.shape[0]):
        z, dist, w = _node_view(kw, i)
        total, b = sum(w), _b(w, f)
        target = total - 2 * b
        tau = 0.0
        cum = 0.0
        for k in range(len(w)):
            cum += w[k]
            if target > 0 and cum <= target + 1e-9 * total:
                tau = dist[k]
        if b == 0:
            tau = math.inf
        for zk, dk, wk in zip(z, dist, w, strict=True):
            out[i] += eta * wk * zk * (1.0 if dk <= tau else tau / dk)
    return out


def ref_gts(kw: dict[str, Tensor], f: int, eta: float = 1.0) -> Tensor:
    out = kw["own"].clone()
    for i in range(out.shape[0]):
        z, _, w = _node_view(kw, i)
        left = sum(w) - _b(w, f)  # the mass still to keep, closest first
        for zk, wk in zip(z, w, strict=True):
            kept = min(wk, max(left, 0.0))
            left -= wk
            out[i] += eta * kept * zk
    return out


def ref_adaptive(kw: dict[str, Tensor], f: int) -> Tensor:
    out = kw["own"].clone()
    for i in range(out.shape[0]):
        z, dist, w = _node_view(kw, i)
        total, b = sum(w), _b(w, f)
        spread, cum = 0.0, 0.0
        for dk, wk in zip(dist, w, strict=True):
            cum += wk
            if cum <= total - b + 1e-9 * total:
                spread += wk * dk**2
        tau = math.sqrt(spread / b) if b > 0 else math.inf
        for zk, dk, wk in zip(z, dist, w, strict=True):
            out[i] += wk * zk * (1.0 if dk <= tau else tau / dk)
    return out


def ref_neighbourhood(kw: dict[str, Tensor], agg: Any) -> Tensor:
    out = kw["own"].clone()
    for i in range(out.shape[0]):
        edges = [e for e in range(kw["dst"].shape[0]) if int(kw["dst"][e]) == i]
        rows = torch.cat([kw["own"][i : i + 1], kw["messages"][edges]])
        try:
            if hasattr(agg, "check_n"):  # mean has none
                agg.check_n(rows.shape[0])
        except ValueError:
            continue  # too few rows: the node keeps its model
        out[i] = agg(rows)
    return out


# -- the helpers -------------------------------------------------------------------------------


def test_segment_sort_and_cumsum() -> None:
    dst = torch.tensor([2, 0, 2, 0, 2, 1, 2])
    dist = torch.tensor([3.0, 2.0, 1.0, math.nan, 2.0, 5.0, 0.5], dtype=F64)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], dtype=F64)
    s = sort_neighbours(dist, dst, w, 4)
    # node 0: edges 1 (d 2), 3 (NaN -> inf); node 1: edge 5; node 2: 6 (0.5), 2 (1), 4 (2), 0 (3)
    assert s.order.tolist() == [1, 3, 5, 6, 2, 4, 0]
    assert s.dst.tolist() == [0, 0, 1, 2, 2, 2, 2]
    assert s.dist[1] == math.inf
    torch.testing.assert_close(s.cum, torch.tensor([0.2, 0.6, 0.6, 0.7, 1.0, 1.5, 1.6], dtype=F64))
    torch.testing.assert_close(s.total, torch.tensor([0.6, 0.6, 1.6, 0.0], dtype=F64))
    torch.testing.assert_close(s.unsort(s.cum)[[1, 3]], torch.tensor([0.2, 0.6], dtype=F64))
    start, count, pos = segment_positions(s.dst, 4)
    assert start.tolist() == [0, 2, 3, 7] and count.tolist() == [2, 1, 4, 0]
    assert pos.tolist() == [0, 1, 0, 0, 1, 2, 3]


def test_segmented_cumsum_long_segments() -> None:
    g = torch.Generator().manual_seed(1)
    sizes = [1, 17, 0, 5, 64, 3]
    dst = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    vals = torch.rand(int(dst.shape[0]), generator=g, dtype=F64)
    _, _, pos = segment_positions(dst, len(sizes))
    got = segmented_cumsum(vals, pos)
    want = torch.cat([torch.cumsum(part, 0) for part in torch.split(vals, sizes)])
    torch.testing.assert_close(got, want)


def test_byzantine_weight() -> None:
    dst = torch.tensor([0, 0, 0, 1, 1, 2])
    w = torch.tensor([0.1, 0.3, 0.2, 0.05, 0.25, 0.4], dtype=F64)
    # node 0: largest 0.3, then 0.2; node 1: 0.25, then 0.05; node 2 (degree 1 < f): 0.4
    torch.testing.assert_close(
        byzantine_weight(w, dst, 4, 1), torch.tensor([0.3, 0.25, 0.4, 0.0], dtype=F64)
    )
    torch.testing.assert_close(
        byzantine_weight(w, dst, 4, 2), torch.tensor([0.5, 0.3, 0.4, 0.0], dtype=F64)
    )
    assert torch.equal(byzantine_weight(w, dst, 4, 0), torch.zeros(4, dtype=F64))


# -- CS+ ---------------------------------------------------------------------------------------


def test_cs_plus_four_neighbours_by_hand() -> None:
    kw = node_example()
    # f = 1: T = W - 2b = 0.75 - 0.6 = 0.15; C = 0.1, 0.4, 0.6, 0.75 -> k* = 1, tau = d_a = 1.
    # CLIP to radius 1: (1, 0), (0, 1), (-1, 0), (0, -1) with weights 0.1, 0.3, 0.2, 0.15:
    # step = (0.1 - 0.2, 0.3 - 0.15) = (-0.1, 0.15)
    out = CSPlus(f=1)(**kw)
    torch.testing.assert_close(out[0], X0 + torch.tensor([-0.1, 0.15], dtype=F64))
    torch.testing.assert_close(out[1:], kw["own"][1:])  # nodes 1..4 receive nothing
    # eta = 0.5 halves the step
    out = CSPlus(f=1, eta=0.5)(**kw)
    torch.testing.assert_close(out[0], X0 + torch.tensor([-0.05, 0.075], dtype=F64))
    # f = 2: T = 0.75 - 2 * 0.5 < 0 -> tau = 0, the node does not move
    torch.testing.assert_close(CSPlus(f=2)(**kw)[0], X0)
    # f = 0: tau = inf, plain gossip: 0.1 (1,0) + 0.3 (0,2) + 0.2 (-3,0) + 0.15 (0,-10)
    out = CSPlus(f=0)(**kw)
    torch.testing.assert_close(out[0], X0 + torch.tensor([-0.5, -0.9], dtype=F64))


def test_cs_plus_radius_is_an_inner_order_statistic() -> None:
    kw = five_example()
    # b = 0.16, T = 0.6 - 0.32 = 0.28; C = 0.1, 0.22, 0.36, ... -> k* = 2, tau = d_2 = 2.
    # Clipped weight 0.14 + 0.16 + 0.08 = 0.38 >= 2b. Clipped offsets: (0, 1), (2, 0), (0, -2),
    # (2, 0), (0, 2); step = (0.12*2 + 0.16*2, 0.1 - 0.14*2 + 0.08*2) = (0.56, -0.02)
    out = CSPlus(f=1)(**kw)
    torch.testing.assert_close(out[0], torch.tensor([0.56, -0.02], dtype=F64))


def test_cs_plus_closest_alone_exceeds_target() -> None:
    # weights by distance 0.3, 0.25, 0.2: b = 0.3, T = 0.75 - 0.6 = 0.15 < C_1 = 0.3 -> tau = 0
    kw = node_example()
    kw["weights"] = torch.tensor([0.05, 0.3, 0.2, 0.25], dtype=F64)  # d, a, c, b
    torch.testing.assert_close(CSPlus(f=1)(**kw)[0], X0)


# -- GTS ---------------------------------------------------------------------------------------


def test_gts_four_neighbours_by_hand() -> None:
    kw = node_example()
    # f = 1: T = W - b = 0.45; C = 0.1, 0.4, 0.6: a, b kept whole, c straddles T and keeps
    # T - C_2 = 0.05 (the reference code's C_3 - T would be 0.15), d nothing.
    # step = 0.1 (1, 0) + 0.3 (0, 2) + 0.05 (-3, 0) = (-0.05, 0.6)
    out = GTS(f=1)(**kw)
    torch.testing.assert_close(out[0], X0 + torch.tensor([-0.05, 0.6], dtype=F64))
    torch.testing.assert_close(out[1:], kw["own"][1:])
    # f = 2: T = 0.25: a whole (0.1), b keeps 0.15 of 0.3: step = (0.1, 0.3)
    out = GTS(f=2)(**kw)
    torch.testing.assert_close(out[0], X0 + torch.tensor([0.1, 0.3], dtype=F64))
    # eta = 0.5, f = 1: half the step
    out = GTS(f=1, eta=0.5)(**kw)
    torch.testing.assert_close(out[0], X0 + torch.tensor([-0.025, 0.3], dtype=F64))


def test_gts_is_nearest_neighbour_averaging() -> None:
    kw = five_example()
    # f = 1, eta = 1: b = 0.16, T = 0.44; C = 0.1, 0.22, 0.36, 0.52 -> the 4th neighbour keeps
    # 0.08 of 0.16. New model = self (1 - 0.44) * 0 + 0.1 (0,1) + 0.12 (2,0) + 0.14 (0,-3)
    # + 0.08 (4, 0) = (0.56, -0.32): a weighted average whose weights sum to 1
    out = GTS(f=1)(**kw)
    torch.testing.assert_close(out[0], torch.tensor([0.56, -0.32], dtype=F64))


# -- all distance-based rules on a graph ---------------------------------------------------------


@pytest.mark.parametrize("f", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segments_match_per_node_reference(f: int, seed: int) -> None:
    kw = random_graph(seed)
    torch.testing.assert_close(CSPlus(f=f, eta=0.7)(**kw), ref_cs_plus(kw, f, 0.7))
    torch.testing.assert_close(GTS(f=f, eta=0.7)(**kw), ref_gts(kw, f, 0.7))
    torch.testing.assert_close(ClippedGossip(tau="adaptive", f=f)(**kw), ref_adaptive(kw, f))


@pytest.mark.parametrize("rule", [CSPlus(f=0), GTS(f=0), ClippedGossip(tau="adaptive", f=0)])
def test_f_zero_is_plain_gossip(rule: GossipRule) -> None:
    w = ring_w()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, generator=g, dtype=F64)
    src, dst, wts = edges_of(w)
    msg = x[src] + torch.randn(src.shape[0], 5, generator=g, dtype=F64)  # per-edge messages
    plain = GossipMean()(msg, src=src, dst=dst, weights=wts, own=x)
    torch.testing.assert_close(rule(msg, src=src, dst=dst, weights=wts, own=x), plain)
    honest = rule(x[src], src=src, dst=dst, weights=wts, own=x)
    torch.testing.assert_close(honest, w @ x)


def robust_rules() -> list[Any]:
    return [
        CSPlus(f=1),
        GTS(f=1),
        ClippedGossip(tau="adaptive", f=1),
        Neighbourhood(aggregator="trimmed_mean", f=1),
        Neighbourhood(aggregator="median"),
        Neighbourhood(aggregator="krum", f=1),
    ]


@pytest.mark.parametrize("rule", robust_rules(), ids=lambda r: type(r).__name__)
def test_one_huge_byzantine_neighbour_moves_node_a_bounded_amount(rule: GossipRule) -> None:
    # node 0 at the origin, 4 honest neighbours within distance 1, neighbour 5 sends 1e6
    g = torch.Generator().manual_seed(4)
    own = torch.zeros(6, 3, dtype=F64)
    own[1:5] = torch.rand(4, 3, generator=g, dtype=F64) * 0.5
    src = torch.tensor([1, 2, 3, 4, 5])
    dst = torch.zeros(5, dtype=torch.long)
    msg = own[src].clone()
    msg[4] = 1e6
    wts = torch.tensor([0.1, 0.12, 0.14, 0.16, 0.18], dtype=F64)
    out = rule(msg, src=src, dst=dst, weights=wts, own=own)
    assert float(out[0].norm()) <= 1.0  # every honest model is within 0.5 * sqrt(3) < 1
    attacked = GossipMean()(msg, src=src, dst=dst, weights=wts, own=own)
    assert float(attacked[0].norm()) > 1e5  # the non-robust baseline is dragged away


@pytest.mark.parametrize("rule", robust_rules(), ids=lambda r: type(r).__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_no_mutation_and_dtype_kept(rule: GossipRule, dtype: torch.dtype) -> None:
    kw = random_graph(5)
    kw = {k: v.to(dtype) if v.is_floating_point() else v for k, v in kw.items()}
    before = {k: v.clone() for k, v in kw.items()}
    out = rule(**kw)
    assert out.dtype == dtype and out.shape == kw["own"].shape
    assert bool(torch.isfinite(out).all())
    for k, v in kw.items():
        assert torch.equal(v, before[k]), k
    if dtype == torch.float32:  # float32 agrees with float64 up to float32 rounding
        kw64 = {k: v.double() if v.is_floating_point() else v for k, v in kw.items()}
        torch.testing.assert_close(out, rule(**kw64).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_message_counts_as_farthest_and_contributes_nothing(bad: float) -> None:
    kw = node_example()
    kw["messages"][0, 1] = bad  # neighbour d (edge 0) sends a non-finite vector
    # sorted as the farthest, as it already was, so radii and kept weights do not change
    # CS+ f=1: tau = 1; the step loses d's clipped 0.15 (0, -1): (-0.1, 0.3)
    torch.testing.assert_close(CSPlus(f=1)(**kw)[0], X0 + torch.tensor([-0.1, 0.3], dtype=F64))
    # GTS f=1: d was trimmed anyway: (-0.05, 0.6)
    torch.testing.assert_close(GTS(f=1)(**kw)[0], X0 + torch.tensor([-0.05, 0.6], dtype=F64))
    # GTS f=0 keeps d's weight but d contributes 0: 0.1 (1,0) + 0.3 (0,2) + 0.2 (-3,0)
    torch.testing.assert_close(GTS(f=0)(**kw)[0], X0 + torch.tensor([-0.5, 0.6], dtype=F64))
    # CS+ f=0 (tau = inf): the same
    torch.testing.assert_close(CSPlus(f=0)(**kw)[0], X0 + torch.tensor([-0.5, 0.6], dtype=F64))
    # adaptive f=1: tau = sqrt(1.3 / 0.3) as without the bad value; d contributes 0
    tau = math.sqrt(1.3 / 0.3)
    out = ClippedGossip(tau="adaptive", f=1)(**kw)
    torch.testing.assert_close(out[0], X0 + torch.tensor([0.1 - 0.2 * tau, 0.6], dtype=F64))


def test_non_finite_messages_on_a_graph_keep_output_finite() -> None:
    kw = random_graph(6)
    kw["messages"][::5, 0] = math.nan
    kw["messages"][2::7, 1] = math.inf
    for rule in robust_rules()[:3] + [CSPlus(f=0), GTS(f=0)]:
        assert bool(torch.isfinite(rule(**kw)).all()), rule


# -- registry, parameters, check_neighbourhood -------------------------------------------------


def test_registered_and_parameters() -> None:
    assert {"cs_plus", "gts", "neighbourhood"} <= set(registry.names("gossip_rule"))
    rule = registry.create("gossip_rule", "cs_plus", f=2, eta=0.5)
    assert isinstance(rule, CSPlus) and isinstance(rule, GossipRule)
    assert rule.get_params() == {"f": 2, "eta": 0.5}
    assert GTS().get_params() == {"f": 1, "eta": 1.0}
    nb = registry.create("gossip_rule", "neighbourhood", aggregator="krum", f=2)
    assert isinstance(nb.rule, Krum) and nb.f == 2
    assert nb.get_params() == {"aggregator": "krum", "f": 2}
    assert Neighbourhood().get_params() == {"aggregator": "trimmed_mean", "f": 1}
    assert Neighbourhood(aggregator="median").f is None


@pytest.mark.parametrize("cls", [CSPlus, GTS])
@pytest.mark.parametrize(
    "params", [{"f": -1}, {"f": 1.5}, {"f": True}, {"eta": 0.0}, {"eta": math.nan}]
)
def test_invalid_parameters_refused(cls: type, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(params))):
        cls(**params)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"aggregator": "nope"}, "unknown aggregator 'nope'"),
        ({"aggregator": "trimmed_mean", "g": 1}, "unknown parameter 'g'"),
        ({"aggregator": "trimmed_mean", "f": -1}, "invalid f"),
        ({"aggregator": 3}, "invalid aggregator"),
    ],
)
def test_neighbourhood_invalid_aggregator(params: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Neighbourhood(**params)


def test_check_neighbourhood_messages() -> None:
    tolerated = r"\(f=1\) tolerates at most 1 Byzantine neighbour per node; raise f or move"
    for rule, name in ((CSPlus(f=1), "cs_plus"), (GTS(f=1), "gts")):
        with pytest.raises(ValueError, match=name + tolerated):
            rule.check_neighbourhood(6, 2)
    with pytest.raises(ValueError, match="at most 2 Byzantine neighbours"):
        GTS(f=2).check_neighbourhood(6, 3)
    with pytest.raises(ValueError, match="clipped_gossip" + tolerated):
        ClippedGossip(tau="adaptive", f=1).check_neighbourhood(6, 2)
    with pytest.raises(ValueError, match="neighbourhood\\(trimmed_mean, f=1\\) tolerates"):
        Neighbourhood(aggregator="trimmed_mean", f=1).check_neighbourhood(6, 2)
    # cs_plus needs degree > 2f, gts and adaptive clipping degree > f
    CSPlus(f=1).check_neighbourhood(3, 1)
    with pytest.raises(ValueError, match="more than 2f = 2 neighbours, got 2.*radius 0"):
        CSPlus(f=1).check_neighbourhood(2, 1)
    GTS(f=2).check_neighbourhood(3, 2)
    with pytest.raises(ValueError, match="more than f = 2 neighbours, got 2.*trimmed"):
        GTS(f=2).check_neighbourhood(2, 0)
    with pytest.raises(ValueError, match="more than f = 1 neighbours, got 1"):
        ClippedGossip(tau="adaptive", f=1).check_neighbourhood(1, 0)
    for unbounded in (CSPlus(f=0), GTS(f=0), ClippedGossip(tau="adaptive", f=0)):
        unbounded.check_neighbourhood(1, 0)
    # fixed and oracle radii have no bound
    ClippedGossip(tau=1.0).check_neighbourhood(1, 5)
    ClippedGossip(tau="oracle").check_neighbourhood(1, 5)


def test_neighbourhood_check_surfaces_the_aggregators_message() -> None:
    tm = Neighbourhood(aggregator="trimmed_mean", f=1)
    tm.check_neighbourhood(2, 1)  # 3 rows > 2f
    with pytest.raises(ValueError, match=r"1 neighbours' \(2 rows\): trimmed_mean needs n > 2f"):
        tm.check_neighbourhood(1, 0)
    krum = Neighbourhood(aggregator="krum", f=1)
    krum.check_neighbourhood(4, 1)  # 5 rows > 2f + 2
    with pytest.raises(ValueError, match="krum needs n > 2f \\+ 2 = 4 rows"):
        krum.check_neighbourhood(3, 1)
    with pytest.raises(ValueError, match="server"):
        Neighbourhood(aggregator="fltrust").check_neighbourhood(5, 0)
    Neighbourhood(aggregator="median").check_neighbourhood(1, 1)  # median declares no f


def test_check_neighbourhoods_on_a_graph() -> None:
    # a 5-cycle: every node has 2 neighbours; node 0 Byzantine, so nodes 1 and 4 see one
    adj = np.zeros((5, 5), dtype=np.int64)
    for i in range(5):
        adj[i, (i + 1) % 5] = adj[(i + 1) % 5, i] = 1
    byz = np.array([True, False, False, False, False])
    check_neighbourhoods(GTS(f=1), adj, byz)
    with pytest.raises(ValueError, match="node 1 \\(2 neighbours, 1 Byzantine\\): cs_plus"):
        check_neighbourhoods(CSPlus(f=1), adj, byz)


# -- neighbourhood aggregation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"aggregator": "trimmed_mean", "f": 1},
        {"aggregator": "trimmed_mean", "f": 0},
        {"aggregator": "median"},
        {"aggregator": "mean"},
        {"aggregator": "krum", "f": 1},
        {"aggregator": "geometric_median"},
    ],
)
@pytest.mark.parametrize("block", [1 << 24, 8])
def test_neighbourhood_equals_per_node_aggregator(
    params: dict[str, Any], block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(neighbourhood_module, "_BLOCK_ELEMENTS", block)  # 8: one node per block
    kw = random_graph(7)  # degrees 0 to 5
    rule = Neighbourhood(**params)
    ctx = GossipContext()
    out = rule(**kw, ctx=ctx)
    torch.testing.assert_close(out, ref_neighbourhood(kw, rule.rule))
    # the isolated node 8 (1 row) is refused by trimmed_mean(f=1) and krum(f=1): kept as is
    skipped = sorted(ctx.info["not_aggregated"].tolist())
    if params.get("f") == 1:
        assert 8 in skipped
        torch.testing.assert_close(out[8], kw["own"][8])
    else:
        assert skipped == []


@pytest.mark.parametrize(
    "agg", [TrimmedMean(f=1), Median(), Mean()], ids=lambda a: type(a).__name__
)
def test_neighbourhood_batched_handles_non_finite_like_the_aggregator(agg: Any) -> None:
    kw = random_graph(8)
    kw["messages"][::4, 0] = math.nan
    kw["messages"][1::6, 1] = math.inf
    kw["messages"][2::6, 2] = -math.inf
    name = {TrimmedMean: "trimmed_mean", Median: "median", Mean: "mean"}[type(agg)]
    rule = Neighbourhood(aggregator=name, **agg.get_params())
    torch.testing.assert_close(rule(**kw), ref_neighbourhood(kw, agg), equal_nan=True)


def test_neighbourhood_by_hand() -> None:
    # node 0 at (0, 0) receives (3, 4), (0, 1), (30, 40): rows (0,0), (3,4), (0,1), (30,40)
    # trimmed mean f = 1: coordinate 0: 0 0 3 30 -> (0 + 3) / 2; coordinate 1: 0 1 4 40 -> 2.5
    own = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [30.0, 40.0]], dtype=F64)
    src = torch.tensor([1, 2, 3])
    kw: dict[str, Any] = {"src": src, "dst": torch.zeros(3, dtype=torch.long), "own": own}
    wts = torch.full((3,), 0.25, dtype=F64)
    out = Neighbourhood(aggregator="trimmed_mean", f=1)(own[src], weights=wts, **kw)
    torch.testing.assert_close(out[0], torch.tensor([1.5, 2.5], dtype=F64))
    # median of 4 rows: mean of the two middle values: (0 + 3) / 2, (1 + 4) / 2
    out = Neighbourhood(aggregator="median")(own[src], weights=wts, **kw)
    torch.testing.assert_close(out[0], torch.tensor([1.5, 2.5], dtype=F64))
    # unweighted: the gossip weights do not matter
    out2 = Neighbourhood(aggregator="median")(own[src], weights=wts * 0.1, **kw)
    torch.testing.assert_close(out2, out)
    torch.testing.assert_close(out[1:], own[1:])
