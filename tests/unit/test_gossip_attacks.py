"""Byzantine nodes in the gossip engine: per-edge messages, what attacks see, kept momentum."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from flarena.algorithms.base import LocalPlan
from flarena.algorithms.mixing import mixing_matrix
from flarena.bench.preflight import build
from flarena.core.contracts import AttackContext, ModelPoisoning, ThreatModel, VectorKind
from flarena.core.spec import parse_spec
from flarena.defenses.gossip.gossip_mean import GossipMean
from flarena.engines.gossip import GossipEngine, _Graph, edges_of, victims_of
from flarena.engines.local import BatchPlan, train_loop, train_vmap

CPU = torch.device("cpu")
F64 = torch.float64


def ring(n: int) -> sp.csr_array:
    i = np.arange(n)
    a = sp.coo_array((np.ones(n), (i, (i + 1) % n)), shape=(n, n))
    return sp.csr_array(((a + a.T) > 0).astype(np.int8))


def graph_for(adj, byz):
    W = mixing_matrix(adj, "metropolis")
    edges = edges_of(W, CPU, F64)
    return _Graph(W, torch.as_tensor(W.toarray()), edges, victims_of(edges, byz))


class Recorder(ModelPoisoning):
    """Sends the victim's id (as a constant vector) and records what it was shown."""

    threat_model: ClassVar[ThreatModel] = ThreatModel(sees_honest_updates=True)

    def __init__(self) -> None:
        self.calls: list[tuple[int, torch.Tensor, int, AttackContext]] = []

    def craft(self, honest, /, *, n_malicious, ctx):
        self.calls.append((ctx.neighbourhood.node, honest.clone(), n_malicious, ctx))
        return torch.full((n_malicious, honest.shape[1] or 3), 100.0 + ctx.neighbourhood.node)


class Blind(Recorder):
    threat_model: ClassVar[ThreatModel] = ThreatModel()


def actx() -> AttackContext:
    return AttackContext(
        round=1,
        malicious_ids=torch.tensor([0]),
        n_clients=5,
        vector_kind=VectorKind.MODEL,
        generator=torch.Generator().manual_seed(0),
        rng=np.random.default_rng(0),
    )


def test_victims_of_a_ring_with_one_byzantine_node():
    # ring 0-1-2-3-4-0, node 0 Byzantine: victims 1 (honest neighbour 2) and 4 (honest 3);
    # Metropolis on a 2-regular graph gives every weight, self weight included, 1/3
    byz = np.array([True, False, False, False, False])
    victims = victims_of(graph_for(ring(5), byz).edges, byz)
    assert [v.node for v in victims] == [1, 4]
    assert victims[0].honest_nbrs.tolist() == [2] and victims[1].honest_nbrs.tolist() == [3]
    for v in victims:
        assert v.byz_src.tolist() == [0]
        assert torch.allclose(v.honest_weights, torch.full((2,), 1 / 3, dtype=F64))
        assert torch.allclose(v.byz_weights, torch.tensor([1 / 3], dtype=F64))


def test_each_victim_gets_its_own_message_computed_from_its_own_neighbourhood():
    byz = np.array([True, False, False, False, False])
    g = graph_for(ring(5), byz)
    X = torch.arange(15, dtype=F64).reshape(5, 3)
    attack = Recorder()
    src, dst, _ = g.edges
    msgs = GossipEngine._forge(
        attack, X, X[src], g, actx(), shows_honest=True, rule=GossipMean(), knows_rule=False, seed=0
    )
    shown = {node: honest for node, honest, _, _ in attack.calls}
    assert torch.equal(shown[1], X[[1, 2]]) and torch.equal(shown[4], X[[4, 3]])
    for node, _, m, c in attack.calls:
        assert (
            m == 1 and c.n_clients == 3 and c.neighbourhood.byzantine_weight == pytest.approx(1 / 3)
        )
        assert torch.equal(c.neighbourhood.model, X[node]) and c.aggregator is None
    for e in range(src.shape[0]):
        s, d = int(src[e]), int(dst[e])
        want = torch.full((3,), 100.0 + d, dtype=F64) if s == 0 else X[s]
        assert torch.equal(msgs[e], want), (s, d)


def test_the_honest_rows_stay_hidden_unless_the_threat_model_declares_them():
    byz = np.array([True, False, False, False, False])
    g = graph_for(ring(5), byz)
    X = torch.randn(5, 3, dtype=F64)
    attack = Blind()
    GossipEngine._forge(
        attack,
        X,
        X[g.edges[0]],
        g,
        actx(),
        shows_honest=False,
        rule=GossipMean(),
        knows_rule=False,
        seed=0,
    )
    for _, honest, _, c in attack.calls:
        assert honest.shape == (0, 3) and c.neighbourhood.weights.numel() == 0


def test_a_knowing_attacker_gets_the_victims_rule_as_a_function():
    # the victim view of plain gossip at victim 1: W11 x1 + W12 x2 + W10 m = (x1 + x2 + m) / 3
    byz = np.array([True, False, False, False, False])
    g = graph_for(ring(5), byz)
    X = torch.randn(5, 3, dtype=F64)
    attack = Recorder()
    GossipEngine._forge(
        attack,
        X,
        X[g.edges[0]],
        g,
        actx(),
        shows_honest=True,
        rule=GossipMean(),
        knows_rule=True,
        seed=0,
    )
    c = next(c for node, _, _, c in attack.calls if node == 1)
    m = torch.randn(1, 3, dtype=F64)
    out = c.aggregator(torch.cat([X[[1, 2]], m]))
    assert torch.allclose(out, (X[1] + X[2] + m[0]) / 3)


def test_dissensus_with_epsilon_one_freezes_the_victims_under_plain_gossip():
    """With eps = 1 the Byzantine message cancels the victim's gossip step exactly."""
    from flarena.attacks.poisoning.dissensus import Dissensus

    byz = np.array([True, False, False, False, False, False])
    g = graph_for(ring(6), byz)
    X = torch.randn(6, 4, dtype=F64)
    src, dst, w = g.edges
    msgs = GossipEngine._forge(
        Dissensus(epsilon=1.0),
        X,
        X[src],
        g,
        actx(),
        shows_honest=True,
        rule=GossipMean(),
        knows_rule=False,
        seed=0,
    )
    new = GossipMean()(msgs, src=src, dst=dst, weights=w, own=X)
    assert torch.allclose(new[[1, 5]], X[[1, 5]])
    honest_gossip = torch.as_tensor(g.W.toarray()) @ X
    assert torch.allclose(new[[2, 3, 4]], honest_gossip[[2, 3, 4]])


def dec_spec(tiny, **attack):
    tiny.update(rounds=3, dtype="float64")
    tiny["data"]["n_clients"] = 8
    tiny["framework"] = "decentralized"
    tiny["decentralized"] = {"topology": "ring"}
    tiny["attack"] = attack
    return parse_spec(tiny)


def test_dissensus_run_records_honest_metrics_and_keeps_byzantine_nodes_out(tiny):
    spec = dec_spec(tiny, name="dissensus", n_malicious=2)
    out = GossipEngine().run(spec, build(spec), device=CPU, executor="loop")
    mal = eval(out.metrics["malicious_ids"])
    nodes = {r["node"] for r in out.rounds if r["node"] is not None}
    assert len(mal) == 2 and nodes == set(range(8)) - set(mal)
    assert np.isfinite(out.metrics["final_consensus_distance"])


def test_a_victim_with_too_many_byzantine_neighbours_for_the_rule_is_refused(tiny):
    spec = dec_spec(tiny, name="dissensus", n_malicious=2)

    class Picky(GossipMean):
        def check_neighbourhood(self, degree, n_byzantine):
            if n_byzantine > 0:
                raise ValueError("tolerates no Byzantine neighbour")

    from flarena.core import registry
    from flarena.core.errors import SpecError

    registry.register("gossip_rule", "picky_test_rule")(Picky)
    try:
        d = spec.raw | {"decentralized": {"topology": "ring", "gossip_rule": "picky_test_rule"}}
        with pytest.raises(
            SpecError, match=r"node \d+ \(2 neighbours, 1 Byzantine\).*no Byzantine"
        ):
            build(parse_spec(d))
    finally:
        registry.registry("gossip_rule").unregister("picky_test_rule")


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x)


@pytest.mark.parametrize("train", [train_loop, train_vmap])
def test_kept_momentum_makes_two_calls_equal_one_call_with_both_batches(train):
    torch.manual_seed(0)
    model = Tiny().double()
    x, y = torch.randn(8, 3, dtype=F64), torch.tensor([0, 1] * 4)
    start = torch.cat([p.detach().reshape(-1) for p in model.parameters()])[None].clone()
    lp = LocalPlan(
        epochs=1,
        steps=None,
        batch_size=4,
        lr=0.1,
        momentum=0.9,
        weight_decay=0.0,
        return_gradient=False,
    )
    b1, b2 = np.arange(4), np.arange(4, 8)
    both, _ = train(model, start, BatchPlan([[b1, b2]], 4), lp, x, y)
    state = torch.zeros_like(start)
    first, _ = train(model, start, BatchPlan([[b1]], 4), lp, x, y, state)
    assert state.abs().sum() > 0  # the buffer was written back
    second, _ = train(model, start + first, BatchPlan([[b2]], 4), lp, x, y, state)
    assert torch.allclose(first + second, both, atol=1e-12)
    fresh, _ = train(model, start + first, BatchPlan([[b2]], 4), lp, x, y)
    assert not torch.allclose(first + fresh, both, atol=1e-6)  # without the state it differs
