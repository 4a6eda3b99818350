"""Gossip rules: plain gossip and ClippedGossip, expected values worked out by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor

from flarena.core import registry
from flarena.defenses.gossip.base import GossipContext, GossipRule, self_weights
from flarena.defenses.gossip.clipped_gossip import ClippedGossip
from flarena.defenses.gossip.gossip_mean import GossipMean


def star() -> dict[str, Tensor]:
    """Node 0 with neighbours 1, 2, 3 (weights 0.25 each, self 0.25); node 3 is Byzantine."""
    own = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [30.0, 40.0]], dtype=torch.float64)
    src = torch.tensor([1, 2, 3])
    dst = torch.tensor([0, 0, 0])
    return {
        "messages": own[src].clone(),
        "src": src,
        "dst": dst,
        "weights": torch.full((3,), 0.25, dtype=torch.float64),
        "own": own,
    }


def edges_of(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Directed edges j -> i for every off-diagonal non-zero W[i, j]."""
    off = w.clone()
    off.fill_diagonal_(0.0)
    dst, src = off.nonzero(as_tuple=True)
    return src, dst, w[dst, src]


def ring_w() -> Tensor:
    """Metropolis weights of a 4-cycle plus the chord 0-2 (degrees 3, 2, 3, 2)."""
    adj = torch.zeros(4, 4, dtype=torch.float64)
    for i, j in ((0, 1), (1, 2), (2, 3), (3, 0), (0, 2)):
        adj[i, j] = adj[j, i] = 1.0
    deg = adj.sum(dim=1)
    w = adj / (1.0 + torch.maximum(deg[:, None], deg[None, :]))
    return w + torch.diag(1.0 - w.sum(dim=1))


def test_registered_and_protocol() -> None:
    assert {"gossip", "clipped_gossip"} <= set(registry.names("gossip_rule"))
    rule = registry.create("gossip_rule", "clipped_gossip", tau=2.0)
    assert isinstance(rule, ClippedGossip) and isinstance(rule, GossipRule)
    assert rule.get_params() == {"tau": 2.0, "f": None}
    assert ClippedGossip(tau="oracle").get_params() == {"tau": "oracle", "f": None}
    assert GossipMean().get_params() == {}


def test_self_weights() -> None:
    w = torch.tensor([0.25, 0.25, 0.5])
    dst = torch.tensor([0, 0, 1])
    assert torch.equal(self_weights(w, dst, 3), torch.tensor([0.5, 0.5, 1.0]))


def test_oracle_three_neighbours_by_hand() -> None:
    kw = star()
    byz = torch.tensor([False, False, False, True])
    out = ClippedGossip(tau="oracle")(**kw, ctx=GossipContext(byzantine=byz))
    # delta_0 = 0.25; tau_0 = sqrt((0.25 * 25 + 0.25 * 1) / 0.25) = sqrt(26)
    tau = math.sqrt(26.0)
    want = 0.25 * (
        torch.tensor([3.0, 4.0]) + torch.tensor([0.0, 1.0]) + torch.tensor([30.0, 40.0]) * tau / 50
    )
    torch.testing.assert_close(out[0], want.double())
    # nodes 1..3 receive nothing: unchanged
    torch.testing.assert_close(out[1:], kw["own"][1:])


def test_oracle_no_byzantine_neighbour_does_not_clip() -> None:
    kw = star()
    out = ClippedGossip(tau="oracle")(
        **kw, ctx=GossipContext(byzantine=torch.zeros(4, dtype=torch.bool))
    )
    torch.testing.assert_close(out[0], torch.tensor([8.25, 11.25], dtype=torch.float64))


def test_oracle_needs_byzantine() -> None:
    with pytest.raises(ValueError, match="ctx.byzantine"):
        ClippedGossip(tau="oracle")(**star())
    with pytest.raises(ValueError, match="ctx.byzantine"):
        ClippedGossip(tau="oracle")(**star(), ctx=GossipContext())


def test_fixed_tau_by_hand() -> None:
    # tau = 2: (3,4) norm 5 -> (1.2, 1.6); (0,1) norm 1 kept; (30,40) norm 50 -> (1.2, 1.6)
    out = ClippedGossip(tau=2.0)(**star())
    torch.testing.assert_close(out[0], torch.tensor([0.6, 1.05], dtype=torch.float64))


def test_fixed_tau_is_relative_to_own_model() -> None:
    kw = star()
    kw["own"] = kw["own"] + torch.tensor([1.0, 0.0], dtype=torch.float64)  # own rows shifted
    # node 0 at (1, 0) receives (3,4), (0,1), (30,40): offsets (2,4), (-1,1), (29,40)
    out = ClippedGossip(tau=1.0)(**kw)
    offs = torch.tensor([[2.0, 4.0], [-1.0, 1.0], [29.0, 40.0]], dtype=torch.float64)
    want = torch.tensor([1.0, 0.0], dtype=torch.float64) + 0.25 * (
        offs / offs.norm(dim=1, keepdim=True)
    ).sum(dim=0)
    torch.testing.assert_close(out[0], want)


def test_plain_gossip_equals_dense_product() -> None:
    w = ring_w()
    x = torch.arange(12, dtype=torch.float64).reshape(4, 3) ** 1.5
    src, dst, wts = edges_of(w)
    out = GossipMean()(x[src], src=src, dst=dst, weights=wts, own=x)
    dense = torch.zeros_like(x)
    for i in range(4):
        for j in range(4):
            dense[i] += w[i, j] * x[j]
    torch.testing.assert_close(out, dense)


def test_clipped_infinite_tau_equals_plain_gossip() -> None:
    w = ring_w()
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    src, dst, wts = edges_of(w)
    plain = GossipMean()(x[src], src=src, dst=dst, weights=wts, own=x)
    clipped = ClippedGossip(tau=math.inf)(x[src], src=src, dst=dst, weights=wts, own=x)
    torch.testing.assert_close(clipped, plain)
    torch.testing.assert_close(plain, w @ x)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("tau", [1.0, "oracle"])
def test_non_finite_message_contributes_nothing(bad: float, tau: float | str) -> None:
    kw = star()
    kw["messages"][2, 1] = bad
    ctx = GossipContext(byzantine=torch.tensor([False, False, False, True]))
    out = ClippedGossip(tau=tau)(**kw, ctx=ctx)
    assert bool(torch.isfinite(out).all())
    kw["messages"][2] = kw["own"][0]  # as if the Byzantine node had sent x_0
    torch.testing.assert_close(out, ClippedGossip(tau=tau)(**kw, ctx=ctx))


def test_no_mutation_and_dtype_kept() -> None:
    kw = star()
    kw = {k: v.float() if v.is_floating_point() else v for k, v in kw.items()}
    before = {k: v.clone() for k, v in kw.items()}
    for rule in (GossipMean(), ClippedGossip(tau=1.0)):
        out = rule(**kw)
        assert out.dtype == torch.float32 and out.shape == (4, 2)
        for k, v in kw.items():
            assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("tau", [0.0, -1.0, math.nan, "Adaptive", "", True, None, "1.0"])
def test_invalid_tau_refused(tau: object) -> None:
    with pytest.raises(ValueError, match="tau"):
        ClippedGossip(tau=tau)  # type: ignore[arg-type]


def test_adaptive_tau_needs_f_and_f_needs_adaptive() -> None:
    with pytest.raises(ValueError, match="tau='adaptive' needs f"):
        ClippedGossip(tau="adaptive")
    for f in (-1, 1.5, True):
        with pytest.raises(ValueError, match="invalid f"):
            ClippedGossip(tau="adaptive", f=f)  # type: ignore[arg-type]
    for tau in (1.0, "oracle"):
        with pytest.raises(ValueError, match="only with tau='adaptive'"):
            ClippedGossip(tau=tau, f=1)
    rule = registry.create("gossip_rule", "clipped_gossip", tau="adaptive", f=2)
    assert rule.get_params() == {"tau": "adaptive", "f": 2}


def test_adaptive_tau_by_hand() -> None:
    kw: dict[str, Any] = star()
    # node 0 receives (3,4) d 5 w 0.2, (0,1) d 1 w 0.1, (30,40) d 50 w 0.3: W_0 = 0.6
    kw["weights"] = torch.tensor([0.2, 0.1, 0.3], dtype=torch.float64)
    # f = 1: b = 0.3, W - b = 0.3; by distance C = 0.1, 0.3, 0.6: (0,1) and (3,4) kept
    # (C_2 = 0.3 up to rounding); tau = sqrt((0.1 * 1 + 0.2 * 25) / 0.3) = sqrt(17) < 5.
    # (3,4) and (30,40) both clip to (3,4) tau / 5: step = 0.1 (0,1) + 0.5 (3,4) tau / 5
    tau = math.sqrt(17.0)
    out = ClippedGossip(tau="adaptive", f=1)(**kw)
    want = torch.tensor([0.3 * tau, 0.1 + 0.4 * tau], dtype=torch.float64)
    torch.testing.assert_close(out[0], want)
    torch.testing.assert_close(out[1:], kw["own"][1:])
    # f = 2: b = 0.5, W - b = 0.1: only (0,1) kept, tau = sqrt(0.1 / 0.5); every offset is
    # clipped to length tau: step = tau (0.1 (0,1) + 0.5 (3,4) / 5) = tau (0.3, 0.5)
    tau = math.sqrt(0.2)
    out = ClippedGossip(tau="adaptive", f=2)(**kw)
    torch.testing.assert_close(out[0], tau * torch.tensor([0.3, 0.5], dtype=torch.float64))
    # f = 0: no clipping, plain gossip
    out = ClippedGossip(tau="adaptive", f=0)(**kw)
    torch.testing.assert_close(out[0], torch.tensor([9.6, 12.9], dtype=torch.float64))


def test_adaptive_tau_equals_oracle_when_the_byzantine_neighbour_is_farthest() -> None:
    # uniform weights, f = 1, the Byzantine node 3 the farthest: the closest W - b of weight
    # are exactly the honest neighbours, so the radius is the oracle's sqrt(26)
    kw: dict[str, Any] = star()
    ctx = GossipContext(byzantine=torch.tensor([False, False, False, True]))
    oracle = ClippedGossip(tau="oracle")(**kw, ctx=ctx)
    torch.testing.assert_close(ClippedGossip(tau="adaptive", f=1)(**kw), oracle)


def test_bad_edges_refused() -> None:
    kw = star()
    with pytest.raises(ValueError, match="self loops"):
        GossipMean()(**{**kw, "src": torch.tensor([0, 2, 3])})
    with pytest.raises(ValueError, match="src"):
        GossipMean()(**{**kw, "src": torch.tensor([1, 2, 9])})
    with pytest.raises(ValueError, match="weights"):
        GossipMean()(**{**kw, "weights": torch.tensor([0.25, -0.25, 0.25], dtype=torch.float64)})
    with pytest.raises(ValueError, match="messages"):
        GossipMean()(**{**kw, "messages": kw["messages"][:, :1]})
