"""D-SGD in the gossip engine: oracles against FedAvg, metrics, and refusals."""

from __future__ import annotations

import pytest
import torch

from flarena.bench.preflight import build
from flarena.core.errors import SpecError
from flarena.core.spec import parse_spec
from flarena.engines.gossip import GossipEngine
from flarena.engines.sim import SimEngine

CPU = torch.device("cpu")


def decentralized(tiny, **dec):
    tiny["framework"] = "decentralized"
    tiny["decentralized"] = dec
    return tiny


def run(d, engine):
    spec = parse_spec(d)
    return engine.run(spec, build(spec), device=CPU, executor="loop")


def test_complete_graph_gossip_is_fedavg_with_uniform_weights(tiny):
    """Metropolis on K_n is W = 11^T / n: after each round every node holds the plain average of
    the nodes' local models, which is FedAvg with uniform weights (same data order per round)."""
    tiny.update(rounds=3, dtype="float64")
    tiny["data"].update(partition={"name": "dirichlet", "alpha": 0.5}, n_clients=5)
    tiny["algorithm"]["weighting"] = "uniform"
    fed = run(tiny, SimEngine())
    dec = run(decentralized(tiny, topology="complete"), GossipEngine())
    assert (fed.final_params - dec.final_params).abs().max().item() < 1e-10
    cons = [r["value"] for r in dec.rounds if r["metric"] == "consensus_distance"]
    assert max(cons) < 1e-20  # every node holds the same model after gossip
    assert dec.metrics["spectral_gap"] == pytest.approx(1.0)


def test_ring_records_consensus_and_per_node_accuracy(tiny):
    tiny.update(rounds=2, eval_every=1)
    tiny["data"]["n_clients"] = 6
    out = run(decentralized(tiny, topology="ring"), GossipEngine())
    per_node = [r for r in out.rounds if r["metric"] == "test_accuracy" and r["node"] is not None]
    assert sorted({r["node"] for r in per_node}) == list(range(6))
    cons = [r["value"] for r in out.rounds if r["metric"] == "consensus_distance"]
    assert len(cons) == 2 and all(c > 0 for c in cons)
    # ring of 6, Metropolis: eigenvalues (1 + 2 cos(2 pi k / 6)) / 3 -> second largest 2/3
    assert out.metrics["spectral_gap"] == pytest.approx(1 - 2 / 3)
    assert out.metrics["vector_kind"] == "model"


def test_gossip_then_step_differs_from_step_then_gossip(tiny):
    tiny.update(rounds=2)
    tiny["data"]["n_clients"] = 6
    a = run(decentralized(tiny, topology="ring"), GossipEngine())
    b = run(decentralized(tiny, topology="ring", order="gossip_then_step"), GossipEngine())
    # gossip keeps the average (W doubly stochastic), so the mean models agree; the nodes differ
    assert torch.allclose(a.final_params, b.final_params, atol=1e-6)
    cons_a = [r["value"] for r in a.rounds if r["metric"] == "consensus_distance"]
    cons_b = [r["value"] for r in b.rounds if r["metric"] == "consensus_distance"]
    assert cons_a != cons_b


@pytest.mark.parametrize(
    ("dec", "extra", "match"),
    [
        ({"topology": "star", "mixing": "uniform"}, {}, "not doubly stochastic"),
        ({"topology": {"name": "torus", "rows": 3, "cols": 3}}, {}, "n_clients = 4"),
        ({"topology": "rnig"}, {}, "did you mean 'ring'"),
        ({"topology": "ring", "gossip_rule": "krum"}, {}, "unknown gossip_rule 'krum'"),
        (
            {"topology": "ring"},
            {"attack": {"name": "alie", "n_malicious": 1, "attackers": "resampled"}},
            "Byzantine nodes are fixed",
        ),
    ],
)
def test_bad_decentralized_specs_are_refused_before_training(tiny, dec, extra, match):
    d = decentralized(tiny, **dec)
    d.update(extra)
    with pytest.raises(SpecError, match=match):
        build(parse_spec(d))


def test_a_decentralized_attack_is_refused_in_a_federated_run(tiny):
    tiny["attack"] = {"name": "dissensus", "n_malicious": 1}
    with pytest.raises(SpecError, match="decentralized runs only"):
        build(parse_spec(tiny))


def test_disconnected_random_graph_is_refused(tiny):
    tiny["data"]["n_clients"] = 8
    d = decentralized(tiny, topology={"name": "erdos_renyi", "p": 0.01, "max_tries": 3})
    with pytest.raises(SpecError, match="not connected"):
        build(parse_spec(d))


@pytest.mark.parametrize("budget", [2**25, 5000])  # one block, and many small blocks/chunks
@pytest.mark.parametrize("model_spec", [{"name": "mlp", "hidden": [16]}, {"name": "cnn"}])
def test_batched_node_evaluation_equals_one_model_at_a_time(tiny, model_spec, budget):
    from flarena.engines.gossip import evaluate_nodes
    from flarena.engines.local import flat_params
    from flarena.engines.sim import evaluate

    tiny["model"] = model_spec
    comp = build(parse_spec(tiny))
    model, data = comp.model, comp.data
    base = flat_params(model)
    g = torch.Generator().manual_seed(0)
    X = base + 0.5 * torch.randn(5, base.numel(), generator=g)
    x, y = data.x_test[:300], data.y_test[:300]
    got = evaluate_nodes(model, X, x, y, budget=budget)
    want = [evaluate(model, X[i], x, y)[0] for i in range(5)]
    assert got.tolist() == pytest.approx(want, abs=1e-6)  # evaluate() averages in float32
    assert len(set(want)) > 1  # the rows are different models
