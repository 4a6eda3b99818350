"""Issue 4: 2 Byzantine nodes among 16 on a 4-regular graph break plain gossip, not ClippedGossip.

Reduced integration test of the decentralized robustness figure (``configs/decentralized.toml``
is the full one). Every Byzantine node sends each honest neighbour its own message: the dissensus
attack (He, Karimireddy, Jaggi 2022, eps = 1.5) or ALIE with the authors' z = 10 computed from the
victim's neighbourhood. Plain gossip averages those messages in and the honest nodes drift apart;
ClippedGossip with the paper's radius (tau = "oracle") clips them. Nodes keep their local
momentum (0.9) across rounds, as in the paper's experiments.
"""

from __future__ import annotations

import pytest

import flarena

ATTACKS = [
    {"name": "none"},
    {"name": "dissensus", "n_malicious": 2},
    {"name": "alie", "z": 10.0, "n_malicious": 2},
]
SPEC = {
    "name": "dsgd_byzantine",
    "seed": 0,
    "rounds": 20,
    "eval_every": 20,
    "framework": "decentralized",
    "data": {"dataset": "digits", "partition": "iid", "n_clients": 16},
    "model": {"name": "mlp", "hidden": [64]},
    "algorithm": {"name": "fedavg", "lr": 0.05, "batch_size": 32, "momentum": 0.9},
    "decentralized": {"topology": {"name": "k_regular", "k": 4}},
    "matrix": {
        "attack": ATTACKS,
        "decentralized.gossip_rule": ["gossip", {"name": "clipped_gossip", "tau": "oracle"}],
    },
}


@pytest.mark.slow
def test_attacks_break_plain_gossip_but_not_clipped_gossip(tmp_path):
    runs = flarena.run(SPEC, out=tmp_path / "r").runs
    assert (runs["status"] == "ok").all(), runs["error"].tolist()
    assert len(runs) == 6
    rule = runs["decentralized.gossip_rule.name"].map(
        {"gossip": "gossip", "clipped_gossip": "clip"}
    )
    res = {
        (a, g): (acc, cons)
        for a, g, acc, cons in zip(
            runs["attack.name"],
            rule,
            runs["final_test_accuracy"],
            runs["final_consensus_distance"],
            strict=True,
        )
    }
    clean_acc, clean_cons = res[("none", "gossip")]
    assert clean_acc > 0.9, res
    assert res[("none", "clip")][0] == pytest.approx(clean_acc)  # no Byzantine: no clipping
    for attack in ("dissensus", "alie"):
        acc, cons = res[(attack, "gossip")]
        # broken: honest accuracy down by more than 10 points, or consensus lost (x 100)
        assert acc < clean_acc - 0.10 or cons > 100 * clean_cons, (attack, res)
        assert res[(attack, "clip")][0] >= clean_acc - 0.05, (attack, res)
