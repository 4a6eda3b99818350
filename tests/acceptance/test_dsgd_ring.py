"""Issue 4: D-SGD on a ring of 16 nodes (IID) ends within 3 points of FedAvg at equal samples.

Each node does one local epoch over its own data per round, as each FedAvg client does, so both
see the same samples; the ring's small spectral gap (about 0.05) leaves the nodes short of
consensus, which costs D-SGD a little accuracy.
"""

from __future__ import annotations

import pytest

import flarena

SPEC = {
    "name": "dsgd_ring",
    "seed": 0,
    "rounds": 10,
    "eval_every": 10,
    "data": {"dataset": "mnist5k", "partition": "iid", "n_clients": 16},
    "model": {"name": "mlp", "hidden": [64]},
    "algorithm": {"name": "fedavg", "lr": 0.1, "batch_size": 32},
    "decentralized": {"topology": "ring"},
    "matrix": {"framework": ["federated", "decentralized"]},
}


@pytest.mark.slow
def test_dsgd_ring_within_3_points_of_fedavg(tmp_path):
    runs = flarena.run(SPEC, out=tmp_path / "r").runs
    assert (runs["status"] == "ok").all(), runs["error"].tolist()
    acc = dict(zip(runs["framework"], runs["final_test_accuracy"], strict=True))
    assert acc["federated"] > 0.85, acc
    assert acc["decentralized"] >= acc["federated"] - 0.03, acc
