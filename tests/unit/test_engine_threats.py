"""The engine's side of the threat model: what attackers may know, root data, ASR, semantics."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import torch

from flarena.bench.preflight import build, semantics
from flarena.core import registry
from flarena.core.contracts import ModelPoisoning, ThreatModel
from flarena.core.errors import SpecError
from flarena.core.spec import baseline_run_id, parse_spec
from flarena.defenses.pipeline import DefenseView
from flarena.engines.sim import SimEngine

CPU = torch.device("cpu")
SEEN: dict[str, list] = {}


def run(d):
    spec = parse_spec(d)
    comp = build(spec)
    return SimEngine().run(spec, comp, device=CPU, executor="loop"), comp


class Adaptive(ModelPoisoning):
    """Sends -honest mean; records what the engine gave it."""

    threat_model: ClassVar[ThreatModel] = ThreatModel(
        sees_honest_updates=True, knows_aggregator=True
    )

    def craft(self, honest, /, *, n_malicious, ctx):
        SEEN.setdefault("aggregator", []).append(ctx.aggregator)
        bad = (-honest.mean(0)).expand(n_malicious, -1).clone()
        if ctx.aggregator is not None:
            full = torch.cat([honest, bad])
            SEEN.setdefault("view", []).append(ctx.aggregator(full))
        return bad


class Blind(ModelPoisoning):
    threat_model: ClassVar[ThreatModel] = ThreatModel()

    def craft(self, honest, /, *, n_malicious, ctx):
        SEEN.setdefault("aggregator", []).append(ctx.aggregator)
        return torch.zeros(n_malicious, int(ctx.global_params.numel()))


class Recorder:
    """Mean that records the weights and the server update it was given."""

    def __init__(self, root_examples: int | None = None) -> None:
        if root_examples is not None:
            self.root_examples = root_examples

    def __call__(self, updates, /, *, ctx=None):
        SEEN.setdefault("weights", []).append(ctx.weights.tolist())
        SEEN.setdefault("server_update", []).append(ctx.server_update)
        SEEN.setdefault("malicious", []).append(ctx.malicious.tolist())
        ctx.info["touched"] = True
        return updates.mean(0)


@pytest.fixture
def plugins():
    regs = {
        ("attack", "t_adaptive"): Adaptive,
        ("attack", "t_blind2"): Blind,
        ("aggregator", "t_record"): Recorder,
    }
    for (kind, name), obj in regs.items():
        registry.register(kind, name)(obj)
    SEEN.clear()
    yield
    for kind, name in regs:
        registry.registry(kind).unregister(name)


def test_attack_needing_honest_updates_is_refused_when_the_threat_model_forbids_it(tiny):
    tiny["attack"] = {"name": "alie", "n_malicious": 1, "sees_honest_updates": False}
    with pytest.raises(SpecError) as err:
        build(parse_spec(tiny))
    msg = str(err.value)
    assert "'alie' needs the honest clients' updates" in msg
    assert "attack.sees_honest_updates = false" in msg
    allowed = msg.split("allowed under this threat model: ")[1].split(", ")
    assert "gaussian" in allowed and "label_flip" in allowed and "backdoor" in allowed
    # sign_flip negates the honest *mean*, so it is omniscient too
    assert not {"alie", "ipm", "sign_flip", "mimic"} & set(allowed)


def test_blind_attacks_pass_a_threat_model_without_knowledge(tiny):
    tiny["attack"] = {
        "name": "gaussian",
        "n_malicious": 1,
        "sees_honest_updates": False,
        "knows_aggregator": False,
    }
    build(parse_spec(tiny))  # no error


def test_adaptive_attack_is_refused_without_defense_knowledge(tiny, plugins):
    tiny["attack"] = {"name": "t_adaptive", "n_malicious": 1, "knows_aggregator": False}
    with pytest.raises(SpecError, match="needs the defense in use"):
        build(parse_spec(tiny))


def test_only_attacks_that_know_the_defense_get_the_pipeline(tiny, plugins):
    tiny.update(rounds=2)
    tiny["data"]["n_clients"] = 6
    tiny["attack"] = {"name": "t_blind2", "n_malicious": 1}
    run(tiny)
    assert SEEN["aggregator"] == [None, None]
    SEEN.clear()
    tiny["attack"] = {"name": "t_adaptive", "n_malicious": 2}
    tiny["defense"] = {"aggregator": "median", "preaggregators": [{"name": "nnm", "f": 2}]}
    run(tiny)
    views = SEEN["aggregator"]
    assert len(views) == 2 and all(isinstance(v, DefenseView) for v in views)
    assert [type(p).__name__ for p in views[0].preaggregators] == ["NNM"]
    assert all(torch.isfinite(v).all() for v in SEEN["view"])


def test_defense_view_has_no_side_effect_and_matches_the_pipeline():
    from flarena.core.contracts import RoundContext, VectorKind
    from flarena.defenses.aggregators.median import Median
    from flarena.defenses.pipeline import apply_server_defense
    from flarena.defenses.preaggregators.bucketing import Bucketing

    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    ctx = RoundContext(
        round=1,
        client_ids=torch.arange(8),
        weights=torch.full((8,), 3.0),
        vector_kind=VectorKind.UPDATE,
        generator=gen,
        malicious=torch.zeros(8, dtype=torch.bool),
    )
    state = gen.get_state()
    view = DefenseView([Bucketing(s=2)], Median(), ctx, seed=7)
    a, b = view(x), view(x)
    assert torch.equal(a, b)  # same randomness every call
    assert torch.equal(gen.get_state(), state)  # the server's stream is untouched
    assert ctx.info == {} and ctx.weights.shape == (8,) and ctx.malicious is not None
    # the same steps with the same seed, run directly
    ref_ctx = RoundContext(
        round=1,
        client_ids=torch.arange(8),
        weights=torch.ones(8),
        vector_kind=VectorKind.UPDATE,
        generator=torch.Generator().manual_seed(7),
    )
    ref = apply_server_defense([Bucketing(s=2)], Median(), x, ref_ctx)
    assert torch.equal(a, ref)


def test_root_update_reaches_rules_that_declare_root_examples(tiny, plugins):
    tiny.update(rounds=2)
    tiny["defense"] = {"aggregator": {"name": "t_record", "root_examples": 30}}
    out, comp = run(tiny)
    got = SEEN["server_update"]
    assert len(got) == 2 and all(g is not None for g in got)
    assert got[0].shape == (out.metrics["n_params"],)
    assert not torch.equal(got[0], got[1])  # a new global model each round
    # rules without root_examples get none, and no root training is timed
    SEEN.clear()
    tiny["defense"] = {"aggregator": "t_record"}
    out2, _ = run(tiny)
    assert SEEN["server_update"] == [None, None]
    assert "time.server_train" not in out2.metrics and "time.server_train" in out.metrics


def test_root_examples_larger_than_the_training_set_is_refused(tiny, plugins):
    tiny["defense"] = {"aggregator": {"name": "t_record", "root_examples": 10**6}}
    with pytest.raises(SpecError, match="root_examples = 1000000 exceeds"):
        build(parse_spec(tiny))


def test_malicious_clients_can_claim_example_counts(tiny, plugins):
    tiny.update(rounds=1)
    tiny["data"]["n_clients"] = 5
    tiny["attack"] = {"name": "sign_flip", "n_malicious": 2, "claimed_examples": 100000}
    tiny["defense"] = {"aggregator": "t_record"}
    _, comp = run(tiny)
    weights, mal = SEEN["weights"][0], SEEN["malicious"][0]
    true_counts = [len(p) for p in comp.parts]
    for w, m, c in zip(weights, mal, true_counts, strict=True):
        assert w == (100000 if m else c)
    # uniform weighting ignores the claim
    SEEN.clear()
    tiny["algorithm"]["weighting"] = "uniform"
    run(tiny)
    assert SEEN["weights"][0] == [1.0] * 5


def test_semantics_columns_describe_the_run(tiny):
    tiny["data"]["n_clients"] = 10
    tiny["attack"] = {"name": "ipm", "n_malicious": 2, "claimed_examples": 50}
    tiny["algorithm"].update(momentum=0.9)
    tiny["defense"] = {
        "aggregator": {"name": "krum", "f": 3},
        "preaggregators": [{"name": "nnm", "f": 2}],
    }
    spec = parse_spec(tiny)
    sem = semantics(spec, build(spec, with_model=False))
    assert sem["semantics.vector_kind"] == "update"
    assert sem["semantics.client_momentum"] == 0.9 and sem["semantics.server_momentum"] == 0.0
    assert json.loads(sem["semantics.declared_f"]) == {"aggregator": 3, "preaggregators[0]": 2}
    assert sem["semantics.f_matches"] is False and sem["semantics.n_malicious"] == 2
    assert sem["semantics.omniscient"] is True
    assert "omniscient" in sem["semantics.threat_model"]
    assert "claim 50" in sem["semantics.weights"]
    # NNM then Krum with n = 10, f = 3: r = 3/4, Krum 6(1 + r) = 10.5, NNM 8f/n (k + 1) = 27.6
    assert sem["kappa_theory"] == pytest.approx(8 * 3 / 10 * (6 * (1 + 3 / 4) + 1))


def test_baseline_run_id_is_the_same_spec_without_attack(tiny):
    clean = parse_spec(tiny)
    assert baseline_run_id(clean) is None
    tiny["attack"] = {"name": "sign_flip", "n_malicious": 1, "attackers": "resampled"}
    attacked = parse_spec(tiny)
    assert baseline_run_id(attacked) == clean.run_id


def test_backdoor_reports_attack_success_rate(tiny):
    tiny.update(rounds=3)
    tiny["data"]["n_clients"] = 5
    tiny["attack"] = {"name": "backdoor", "n_malicious": 2, "target": 0, "boost": 2.0}
    out, _ = run(tiny)
    asr = [r["value"] for r in out.rounds if r["metric"] == "attack_success_rate"]
    assert len(asr) == 3 and all(0.0 <= a <= 1.0 for a in asr)
    assert out.metrics["final_attack_success_rate"] == asr[-1]


def test_targeted_label_flip_reports_attack_success_rate_untargeted_does_not(tiny):
    tiny.update(rounds=1)
    tiny["attack"] = {"name": "label_flip", "n_malicious": 1, "source": 3, "target": 8}
    out, _ = run(tiny)
    assert out.metrics["final_attack_success_rate"] is not None
    tiny["attack"] = {"name": "label_flip", "n_malicious": 1}
    out, _ = run(tiny)
    assert out.metrics["final_attack_success_rate"] is None
