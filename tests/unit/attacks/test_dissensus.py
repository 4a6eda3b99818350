"""The dissensus attack (He, Karimireddy, Jaggi 2022), worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flarena.attacks.poisoning.dissensus import Dissensus
from flarena.core import registry
from flarena.core.contracts import AttackContext, NeighbourhoodView, VectorKind
from flarena.defenses.gossip.gossip_mean import GossipMean


def ctx(view: NeighbourhoodView | None, m: int = 1) -> AttackContext:
    return AttackContext(
        round=1,
        malicious_ids=torch.arange(m),
        n_clients=3 + m,
        vector_kind=VectorKind.MODEL,
        generator=torch.Generator().manual_seed(0),
        rng=np.random.default_rng(0),
        neighbourhood=view,
    )


# victim x_i = (0, 0); honest neighbours (1, 0) and (0, 2), each with weight 0.2; self weight
# 0.4; one Byzantine neighbour with weight 0.2
HONEST = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
VIEW = NeighbourhoodView(
    node=5,
    model=HONEST[0],
    weights=torch.tensor([0.4, 0.2, 0.2], dtype=torch.float64),
    byzantine_weight=0.2,
    n_honest_neighbours=2,
)


def test_registered_decentralized_and_omniscient():
    assert registry.get("attack", "dissensus") is Dissensus
    assert Dissensus.threat_model.sees_honest_updates
    assert Dissensus.frameworks == ("decentralized",)


def test_message_by_hand():
    # pull S = 0.2 (1, 0) + 0.2 (0, 2) = (0.2, 0.4); m = x_i - (1.5 / 0.2) S = (-1.5, -3)
    out = Dissensus().craft(HONEST, n_malicious=2, ctx=ctx(VIEW, 2))
    assert torch.allclose(out, torch.tensor([[-1.5, -3.0]] * 2, dtype=torch.float64))


@pytest.mark.parametrize("eps", [0.5, 1.0, 1.5, 3.0])
def test_plain_gossip_moves_the_victim_by_one_minus_epsilon_times_its_pull(eps):
    m = Dissensus(epsilon=eps).craft(HONEST, n_malicious=1, ctx=ctx(VIEW))
    own = torch.cat([HONEST, m])  # node 0 = victim; 1, 2 honest; 3 Byzantine
    src = torch.tensor([1, 2, 3])
    dst = torch.zeros(3, dtype=torch.long)
    w = torch.tensor([0.2, 0.2, 0.2], dtype=torch.float64)
    new = GossipMean()(own[src], src=src, dst=dst, weights=w, own=own)[0]
    pull = torch.tensor([0.2, 0.4], dtype=torch.float64)
    assert torch.allclose(new, HONEST[0] + (1 - eps) * pull)


def test_needs_a_neighbourhood_and_is_harmless_without_byzantine_weight():
    with pytest.raises(ValueError, match="decentralized attack"):
        Dissensus().craft(HONEST, n_malicious=1, ctx=ctx(None))
    view = NeighbourhoodView(5, HONEST[0], VIEW.weights, 0.0, 2)
    assert torch.equal(Dissensus().craft(HONEST, n_malicious=1, ctx=ctx(view))[0], HONEST[0])


@pytest.mark.parametrize("eps", [0, -1, float("nan"), float("inf")])
def test_bad_epsilon(eps):
    with pytest.raises(ValueError, match="epsilon"):
        Dissensus(epsilon=eps)
