"""Every conformance check on every built-in plugin of every kind (as timm tests every model)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from flarena.algorithms.mixing import gossip, mixing_matrix
from flarena.core import registry
from flarena.defenses.gossip.base import GossipContext
from flarena.engines.gossip import edges_of
from flarena.testing import parametrize_with_checks, registered


def builtin(kind: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The plugins of ``kind`` that flarena itself ships (no third-party entry points)."""
    return {
        name: plugin
        for name, plugin in registered(kind).items()
        if registry.provenance(kind, name)["origin"] == "builtin"
    }


@parametrize_with_checks("aggregator", builtin("aggregator"))
def test_aggregator(plugin: Any, check: Callable[[], None]) -> None:
    check()


@parametrize_with_checks("preaggregator", builtin("preaggregator"))
def test_preaggregator(plugin: Any, check: Callable[[], None]) -> None:
    check()


@parametrize_with_checks("defense", builtin("defense"))
def test_defense(plugin: Any, check: Callable[[], None]) -> None:
    check()


@parametrize_with_checks("attack", builtin("attack"))
def test_attack(plugin: Any, check: Callable[[], None]) -> None:
    check()


@parametrize_with_checks("partitioner", builtin("partitioner"))
def test_partitioner(plugin: Any, check: Callable[[], None]) -> None:
    check()


@parametrize_with_checks("model", builtin("model"))
def test_model(plugin: Any, check: Callable[[], None]) -> None:
    check()


@parametrize_with_checks("algorithm", builtin("algorithm"))
def test_algorithm(plugin: Any, check: Callable[[], None]) -> None:
    check()


@parametrize_with_checks("dataset", builtin("dataset"))
def test_dataset(plugin: Any, check: Callable[[], None]) -> None:
    check()


def with_params(kind: str, extra: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The built-ins of ``kind`` plus ``{label: (registered_name, params)}`` variants.

    A variant labelled like a built-in replaces it (required parameters); one whose registered
    name is not (yet) registered is left out.
    """
    plugins = builtin(kind)
    factories = {name: obj for name, (obj, _) in plugins.items()}
    for label, (name, params) in extra.items():
        if name in factories:
            plugins[label] = (factories[name], params)
    return plugins


#: Topologies with required parameters, and variants covering other code paths.
TOPOLOGY_PARAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "erdos_renyi": ("erdos_renyi", {"p": 0.5}),
    "erdos_renyi_redraw": ("erdos_renyi", {"p": 0.5, "redraw_each_round": True}),
    "k_regular": ("k_regular", {"k": 4}),
    "k_regular_dense": ("k_regular", {"k": 6}),  # k > (n - 1) / 2: the complement path
    "torus_2_rows": ("torus", {"rows": 2}),
}

#: Gossip-rule variants beyond the default parameters.
GOSSIP_RULE_PARAMS: dict[str, tuple[str, dict[str, Any]]] = {
    "clipped_gossip_oracle": ("clipped_gossip", {"tau": "oracle"}),
    "clipped_gossip_inf": ("clipped_gossip", {"tau": math.inf}),
    "clipped_gossip_adaptive": ("clipped_gossip", {"tau": "adaptive", "f": 1}),
}

#: Built-in gossip rules that fail a check by their definition (labels not registered are
#: ignored). The rule files may declare the same in ``_xfail_checks`` instead.
_PER_NODE = "a per-node robust step: the clipped or trimmed offsets are not antisymmetric"
GOSSIP_RULE_XFAIL: dict[str, dict[str, str]] = {
    "clipped_gossip_adaptive": {"mean_preserved": f"{_PER_NODE} (per-node radius)"},
    "cs_plus": {"mean_preserved": f"{_PER_NODE} (per-node radius)"},
    "gts": {"mean_preserved": f"{_PER_NODE} (trims the farthest neighbours)"},
    "neighbourhood": {"mean_preserved": f"{_PER_NODE} (an aggregator per neighbourhood)"},
}


@parametrize_with_checks("topology", with_params("topology", TOPOLOGY_PARAMS))
def test_topology(plugin: Any, check: Callable[[], None]) -> None:
    check()


@parametrize_with_checks(
    "gossip_rule", with_params("gossip_rule", GOSSIP_RULE_PARAMS), xfail=GOSSIP_RULE_XFAIL
)
def test_gossip_rule(plugin: Any, check: Callable[[], None]) -> None:
    check()


@pytest.mark.parametrize(
    ("name", "params"), [("gossip", {}), ("clipped_gossip", {"tau": math.inf})]
)
def test_honest_gossip_is_one_mixing_step(name: str, params: dict[str, Any]) -> None:
    """Honest messages, no Byzantine node: plain gossip (and unclipped ClippedGossip) is X <- WX."""
    n = 12
    adj = registry.create("topology", "erdos_renyi", p=0.3)(n, rng=np.random.default_rng(0))
    W = mixing_matrix(adj)
    X = torch.randn(n, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    src, dst, w = edges_of(W, torch.device("cpu"), torch.float64)
    rule = registry.create("gossip_rule", name, **params)
    ctx = GossipContext(byzantine=torch.zeros(n, dtype=torch.bool))
    out = rule(X[src], src=src, dst=dst, weights=w, own=X, ctx=ctx)
    torch.testing.assert_close(out, gossip(W, X))


def test_every_kind_with_builtins_is_covered() -> None:
    """A kind that gains built-in plugins must be listed above (or have no checks of its own)."""
    from flarena.testing import CHECKED_KINDS

    tested = {
        "aggregator",
        "preaggregator",
        "defense",
        "attack",
        "partitioner",
        "model",
        "algorithm",
        "dataset",
        "topology",
        "gossip_rule",
    }
    assert tested == set(CHECKED_KINDS)
