"""Opt-ALIE and Opt-IPM: ALIE's z and IPM's epsilon line-searched against the defense in use.

Expected values are worked out by hand in the comments (closed forms for the mean, 1-D order
statistics for the median and Krum), not taken from running the code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from flarena.attacks.poisoning._line_search import GOLDEN, line_search
from flarena.attacks.poisoning.alie import ALittleIsEnough
from flarena.attacks.poisoning.ipm import InnerProductManipulation
from flarena.attacks.poisoning.opt_alie import OptALIE
from flarena.attacks.poisoning.opt_ipm import OptIPM
from flarena.core import registry
from flarena.core.contracts import AttackContext, VectorKind
from flarena.core.errors import FlarenaError
from flarena.defenses.aggregators.krum import Krum
from flarena.defenses.aggregators.mean import Mean
from flarena.defenses.aggregators.median import Median
from flarena.testing import check_attack, parametrize_with_checks

# golden section after the default split of 20 evaluations: 11 grid points, 9 refinement steps;
# the final bracket is 2 * grid step * GOLDEN ** 8 wide (0.0426 for a grid step of 1)
TOL_STEP_1 = 2 * GOLDEN**8


def actx(aggregator: object, n_clients: int = 0, n_malicious: int = 0) -> AttackContext:
    return AttackContext(
        round=1,
        malicious_ids=torch.arange(n_clients - n_malicious, n_clients),
        n_clients=n_clients,
        vector_kind=VectorKind.UPDATE,
        generator=torch.Generator().manual_seed(0),
        rng=np.random.default_rng(0),
        num_classes=10,
        aggregator=aggregator,
    )


def col(*values: float) -> Tensor:
    """Honest rows of a 1-D example, float64."""
    return torch.tensor([[v] for v in values], dtype=torch.float64)


class Counting:
    """Wraps an aggregator and counts its calls."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, x: Tensor) -> Tensor:
        self.calls += 1
        out: Tensor = self.inner(x)  # type: ignore[operator]
        return out


# --- registration and threat model ---------------------------------------------------------------


def test_registered_and_adaptive():
    assert registry.get("attack", "opt_alie") is OptALIE
    assert registry.get("attack", "opt_ipm") is OptIPM
    for cls in (OptALIE, OptIPM):
        assert cls.threat_model.sees_honest_updates
        assert cls.threat_model.knows_aggregator


@parametrize_with_checks(
    "attack",
    {
        "opt_alie": (OptALIE, {}),
        "opt_ipm": (OptIPM, {}),
        "opt_alie_byzfl": (OptALIE, {"search": "byzfl", "t_max": math.inf, "direction": "plus"}),
        "opt_ipm_byzfl": (OptIPM, {"search": "byzfl", "t_max": 50.0, "evals": 7}),
    },
)
def test_conformance(plugin, check):
    check()


def test_check_attack_by_name():
    check_attack("opt_alie")
    check_attack("opt_ipm")


# --- the plain mean: the score grows with t, the answer is the upper end ----------------------


def test_ipm_against_mean_picks_t_max():
    # mean of n = h + m rows = (h mu - m t mu) / n; minus mu: -(m / n)(1 + t) mu, so
    # s(t) = (m / n)(1 + t) ||mu||, increasing: the answer is t_max = 100, s = (3/8) * 101 * 5
    honest = torch.tensor([[3.0, 4.0]] * 5, dtype=torch.float64)  # mu = [3, 4], ||mu|| = 5
    ctx = actx(Mean(), 8, 3)
    out = OptIPM().craft(honest, n_malicious=3, ctx=ctx)
    assert ctx.info["opt_param"] == 100.0
    assert ctx.info["opt_score"] == pytest.approx(3 / 8 * 101 * 5, rel=1e-12)
    assert torch.equal(out, torch.tensor([[-300.0, -400.0]] * 3, dtype=torch.float64))
    assert isinstance(ctx.info["opt_param"], float)
    # a narrower range: still its upper end
    ctx = actx(Mean(), 8, 3)
    OptIPM(t_min=0.5, t_max=2.0).craft(honest, n_malicious=3, ctx=ctx)
    assert ctx.info["opt_param"] == 2.0
    assert ctx.info["opt_score"] == pytest.approx(3 / 8 * 3 * 5, rel=1e-12)


def test_alie_against_mean_picks_t_max():
    # mean minus mu = (m / n)(-t sigma): s(t) = (m / n) t ||sigma||, increasing -> t_max = 10.
    # columns [0, 2, 4] and [0, 4, 8]: sigma (ddof 1) = [2, 4], ||sigma|| = sqrt(20)
    honest = torch.tensor([[0.0, 0.0], [2.0, 4.0], [4.0, 8.0]], dtype=torch.float64)
    ctx = actx(Mean(), 5, 2)
    out = OptALIE().craft(honest, n_malicious=2, ctx=ctx)
    assert ctx.info["opt_param"] == 10.0
    assert ctx.info["opt_score"] == pytest.approx(2 / 5 * 10 * math.sqrt(20), rel=1e-12)
    assert torch.equal(out, torch.tensor([[2 - 20.0, 4 - 40.0]] * 2, dtype=torch.float64))


# --- interior optima, by hand in one dimension ---------------------------------------------


def test_alie_against_median_stops_where_the_median_stops_moving():
    # honest -2, -1, 0, 1, 2: mu = 0, sigma (ddof 1) = sqrt(10 / 4) = sqrt(2.5); m = 2 rows at
    # b = -t sigma <= 0; the median of 7 values is the 4th: sorted
    #   b <= -1:       [.., -1 is 4th]            -> median -1
    #   -1 <= b <= 0:  [-2, -1, b, b, 0, 1, 2]   -> median b
    # so s(t) = min(t sigma, 1): it rises to 1 at t* = 1 / sigma = sqrt(0.4) and stays there.
    # Ties go to the smallest t, so the answer is t* (from above, within the final bracket).
    honest = col(-2, -1, 0, 1, 2)
    t_star = math.sqrt(0.4)
    ctx = actx(Median(), 7, 2)
    out = OptALIE().craft(honest, n_malicious=2, ctx=ctx)
    t = ctx.info["opt_param"]
    assert t_star <= t <= t_star + TOL_STEP_1
    assert ctx.info["opt_score"] == 1.0  # the median is exactly the honest -1
    assert torch.equal(out, ALittleIsEnough(z=t).craft(honest, n_malicious=2, ctx=ctx))


def test_alie_against_krum_stops_just_before_krum_rejects_it():
    # honest -1, -1, 1, 1: mu = 0, sigma (ddof 1) = sqrt(4 / 3) = 2 / sqrt(3); m = 3 rows at
    # b = -s, s = 2t / sqrt(3). Krum(f = 2), n = 7: score = sum of the 3 smallest squared
    # distances to the other rows.
    #   malicious row: two copies (0, 0), then the honest -1 at (s - 1)^2  -> (s - 1)^2
    #   honest -1 (s > 3): the other -1 (0), the honest 1s (4, 4)           -> 8
    #   honest  1:          the other 1 (0), the honest -1s (4, 4)          -> 8
    # (for s <= 3 the honest -1 scores 2 (s - 1)^2 >= the malicious score, and the tie at s = 1
    # picks the honest -1 = b). So Krum returns b while (s - 1)^2 < 8, i.e. s < 1 + 2 sqrt(2),
    # and the honest -1 (lowest index) after: s(t) = s for t < t*, 1 after, with
    # t* = (1 + 2 sqrt 2) sqrt(3) / 2 = 3.3155; the answer is just below t*.
    honest = col(-1, -1, 1, 1)
    t_star = (1 + 2 * math.sqrt(2)) * math.sqrt(3) / 2
    ctx = actx(Krum(f=2), 7, 3)
    out = OptALIE().craft(honest, n_malicious=3, ctx=ctx)
    t = ctx.info["opt_param"]
    assert t_star - TOL_STEP_1 <= t < t_star
    assert ctx.info["opt_score"] == pytest.approx(2 * t / math.sqrt(3), rel=1e-12)
    assert ctx.info["opt_score"] > 3.7  # far above the 1 of any t beyond t*
    assert torch.equal(out, ALittleIsEnough(z=t).craft(honest, n_malicious=3, ctx=ctx))


def test_ipm_against_krum_stops_just_before_krum_rejects_it():
    # honest 0, 0, 2, 2: mu = 1; m = 3 rows at b = -t. Krum(f = 2), n = 7, 3 neighbours:
    #   malicious: copies (0, 0), the honest 0s at t^2                    -> t^2
    #   honest 0: the other 0 (0), then min(t^2, 4) twice                 -> 2 min(t^2, 4)
    #   honest 2: the other 2 (0), the honest 0s (4, 4)                   -> 8
    # Krum returns b while t^2 < 8 (s(t) = |-t - 1| = 1 + t), the honest 0 after (s = 1):
    # t* = 2 sqrt(2) = 2.828; the answer is just below it.
    honest = col(0, 0, 2, 2)
    t_star = 2 * math.sqrt(2)
    ctx = actx(Krum(f=2), 7, 3)
    out = OptIPM(t_max=10.0).craft(honest, n_malicious=3, ctx=ctx)
    t = ctx.info["opt_param"]
    assert t_star - TOL_STEP_1 <= t < t_star
    assert ctx.info["opt_score"] == pytest.approx(1 + t, rel=1e-12)
    want = InnerProductManipulation(epsilon=t).craft(honest, n_malicious=3, ctx=ctx)
    assert torch.equal(out, want)


def test_median_and_mean_give_different_z():
    # Against the mean the score (m / n) t ||sigma|| grows, so z = t_max = 10. Against the
    # coordinate-wise median: once b_k = mu_k - t sigma_k is below every honest value of
    # coordinate k, for every k (t >= t_all = max_k (mu_k - min_i x_ik) / sigma_k), the median is
    # a fixed order statistic of the honest values and the score is constant; ties go to the
    # smallest t, so z <= t_all + 2 grid steps (the bracket of the golden section).
    honest = torch.randn(8, 5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    mu, sigma = honest.mean(0), honest.std(0)
    t_all = float(((mu - honest.min(0).values) / sigma).max())
    assert t_all + 2 < 10
    on_mean, on_median = actx(Mean(), 11, 3), actx(Median(), 11, 3)
    OptALIE().craft(honest, n_malicious=3, ctx=on_mean)
    OptALIE().craft(honest, n_malicious=3, ctx=on_median)
    assert on_mean.info["opt_param"] == 10.0
    assert on_median.info["opt_param"] <= t_all + 2
    assert on_median.info["opt_param"] != on_mean.info["opt_param"]


# --- non-finite aggregates, degenerate rounds ---------------------------------------------------


def test_non_finite_aggregates_are_never_chosen():
    # a rule that breaks (NaN) as soon as a value reaches 5 in magnitude, the mean otherwise:
    # honest 0, 2 (mu = 1), m = 1 row at -t: s(t) = (1/3)(1 + t) for t < 5, -inf after, so the
    # answer is just below 5 (golden bracket on [0, 10]: grid step 1)
    def fragile(x: Tensor) -> Tensor:
        return x.mean(0) if bool((x.abs() < 5).all()) else torch.full_like(x[0], math.nan)

    ctx = actx(fragile, 3, 1)
    OptIPM(t_max=10.0).craft(col(0, 2), n_malicious=1, ctx=ctx)
    assert 5 - TOL_STEP_1 <= ctx.info["opt_param"] < 5
    assert ctx.info["opt_score"] == pytest.approx((1 + ctx.info["opt_param"]) / 3, rel=1e-12)


@pytest.mark.parametrize("search", ["golden", "byzfl"])
def test_all_non_finite_falls_back_to_t_min(search):
    def broken(x: Tensor) -> Tensor:
        return torch.full_like(x[0], math.inf)

    honest = torch.tensor([[0.0, 0.0], [2.0, 4.0], [4.0, 8.0]])
    ctx = actx(broken, 5, 2)
    out = OptALIE(t_min=1.5, search=search).craft(honest, n_malicious=2, ctx=ctx)
    assert ctx.info["opt_param"] == 1.5
    assert ctx.info["opt_score"] == -math.inf
    assert torch.equal(out, ALittleIsEnough(z=1.5).craft(honest, n_malicious=2, ctx=ctx))


@pytest.mark.parametrize("cls", [OptALIE, OptIPM])
def test_no_honest_row_gives_zeros_without_a_search(cls):
    agg = Counting(Mean())
    ctx = actx(agg, 2, 2)
    out = cls().craft(torch.empty(0, 3), n_malicious=2, ctx=ctx)
    assert torch.equal(out, torch.zeros(2, 3))
    assert math.isnan(ctx.info["opt_param"]) and ctx.info["opt_evals"] == 0
    assert agg.calls == 0
    assert cls().craft(torch.ones(2, 3), n_malicious=0, ctx=ctx).shape == (0, 3)


def test_one_honest_row_alie_has_nothing_to_search():
    # sigma (ddof 1) of one row is taken as 0: every candidate is the row; ties -> t_min
    ctx = actx(Median(), 3, 2)
    out = OptALIE(t_min=0.25).craft(torch.tensor([[1.0, 2.0]]), n_malicious=2, ctx=ctx)
    assert torch.equal(out, torch.tensor([[1.0, 2.0]] * 2))
    assert ctx.info["opt_param"] == 0.25


# --- contract: errors, info, no mutation, determinism, cost ------------------------------------


@pytest.mark.parametrize(("cls", "name"), [(OptALIE, "opt_alie"), (OptIPM, "opt_ipm")])
def test_needs_the_defense_pipeline(cls, name):
    with pytest.raises(FlarenaError, match=f"{name} needs the defense pipeline"):
        cls().craft(torch.ones(3, 2), n_malicious=1, ctx=actx(None, 4, 1))


@pytest.mark.parametrize("cls", [OptALIE, OptIPM])
def test_evaluation_count_info_no_mutation_determinism(cls):
    honest = torch.randn(9, 4, generator=torch.Generator().manual_seed(3))
    before = honest.clone()
    agg = Counting(Median())
    ctx = actx(agg, 12, 3)
    a = cls().craft(honest, n_malicious=3, ctx=ctx)
    assert torch.equal(honest, before)
    assert agg.calls == 20 == ctx.info["opt_evals"]  # the default budget, all distinct points
    assert isinstance(ctx.info["opt_param"], float) and isinstance(ctx.info["opt_score"], float)
    ctx2 = actx(Median(), 12, 3)
    b = cls().craft(honest, n_malicious=3, ctx=ctx2)
    assert torch.equal(a, b) and ctx2.info["opt_param"] == ctx.info["opt_param"]
    assert a.shape == (3, 4) and a.dtype == honest.dtype
    assert torch.equal(a[0], a[1]) and torch.equal(a[1], a[2])


def test_evals_budget_is_respected():
    agg = Counting(Mean())
    ctx = actx(agg, 6, 2)
    OptIPM(evals=5).craft(torch.ones(4, 2), n_malicious=2, ctx=ctx)
    assert agg.calls == 5  # 3 grid points (0, 50, 100) and 2 golden-section points
    agg = Counting(Mean())
    OptIPM(t_min=2.0, t_max=2.0).craft(torch.ones(4, 2), n_malicious=2, ctx=actx(agg, 6, 2))
    assert agg.calls == 1  # a single point: one evaluation


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"t_min": -1.0}, "t_min"),
        ({"t_min": math.nan}, "t_min"),
        ({"t_min": math.inf}, "t_min"),
        ({"t_min": 3.0, "t_max": 2.0}, "t_max"),
        ({"t_max": math.nan}, "t_max"),
        ({"t_max": math.inf}, "t_max"),  # unbounded only with search="byzfl"
        ({"evals": 0}, "evals"),
        ({"evals": -3}, "evals"),
        ({"evals": 1}, "evals"),
        ({"evals": 2.5}, "evals"),
        ({"evals": True}, "evals"),
        ({"search": "grid"}, "search"),
        ({"delta": 0.0}, "delta"),
        ({"delta": -10.0}, "delta"),
        ({"ratio": 0.5}, "ratio"),
        ({"ratio": 1.0}, "ratio"),
    ],
)
@pytest.mark.parametrize("cls", [OptALIE, OptIPM])
def test_invalid_parameters(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"invalid {name} = "):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"direction": "up"}, "direction"), ({"ddof": 2}, "ddof")]
)
def test_invalid_alie_parameters(kwargs, name):
    with pytest.raises(ValueError, match=f"invalid {name} = "):
        OptALIE(**kwargs)


def test_non_numbers_are_type_errors():
    with pytest.raises(TypeError, match="invalid t_min = "):
        OptIPM(t_min="0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="invalid t_max = "):
        OptALIE(t_max=None)  # type: ignore[arg-type]


def test_get_params():
    assert OptALIE().get_params() == {
        "t_min": 0.0,
        "t_max": 10.0,
        "evals": 20,
        "search": "golden",
        "delta": 10.0,
        "ratio": 0.8,
        "direction": "minus",
        "ddof": 1,
    }
    assert OptIPM(t_max=5, evals=8, search="byzfl").get_params() == {
        "t_min": 0.0,
        "t_max": 5.0,
        "evals": 8,
        "search": "byzfl",
        "delta": 10.0,
        "ratio": 0.8,
    }
    assert OptALIE(search="byzfl", t_max=math.inf).get_params()["t_max"] == math.inf


# --- ByzFL's search ----------------------------------------------------------------------------


def test_byzfl_search_hand_traced():
    # f(t) = -(t - 25)^2 from 0, delta 10, ratio 0.8, 6 evaluations:
    # expansion: 0 (-625); 10 (-225) better, delta 20; 30 (-25) better, delta 40;
    #            70 (-2025) worse, delta 32, stop;
    # contraction: 30 + 32 = 62 worse, delta 25.6; 30 + 25.6 = 55.6 worse -> 30.
    # Every proposal is above the best so far: the optimum 25 is never reached.
    res = line_search(
        lambda t: -((t - 25.0) ** 2), t_min=0.0, t_max=math.inf, evals=6, search="byzfl"
    )
    assert [t for t, _ in res.trace] == pytest.approx([0, 10, 30, 70, 62, 55.6])
    assert res.t == 30.0 and res.score == -25.0 and res.evals == 6
    # the default search on [0, 100] brackets 25 (grid step 10: final bracket 20 * 0.618^8)
    gold = line_search(lambda t: -((t - 25.0) ** 2), t_min=0.0, t_max=100.0, evals=20)
    assert abs(gold.t - 25.0) <= 20 * GOLDEN**8
    assert gold.evals == 20


def test_byzfl_search_cut_at_t_max():
    # same f, t_max = 15: 0; 10 better, delta 20; min(30, 15) = 15 better, delta 40; 15 again
    # (cached, not better), delta 32, stop; contraction proposes min(15 + ..., 15) = 15 -> 15
    res = line_search(lambda t: -((t - 25.0) ** 2), t_min=0.0, t_max=15.0, evals=6, search="byzfl")
    assert res.t == 15.0
    assert [t for t, _ in res.trace] == [0.0, 10.0, 15.0]  # distinct points scored once


def test_opt_ipm_byzfl_unbounded_against_mean_reproduces_byzfl():
    # the score grows with t, so every ByzFL proposal improves: the step doubles 19 times from
    # 10, t = 10 + 20 + ... + 10 * 2^18 = 10 (2^19 - 1) (ByzFL's Opt-IPM with agg = Average,
    # no pre-aggregator, 20 evaluations)
    honest = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    ctx = actx(Mean(), 3, 1)
    out = OptIPM(search="byzfl", t_max=math.inf).craft(honest, n_malicious=1, ctx=ctx)
    t = 10.0 * (2**19 - 1)
    assert ctx.info["opt_param"] == t
    assert torch.equal(out, torch.tensor([[-2.0 * t, -3.0 * t]], dtype=torch.float64))


def test_line_search_ties_and_non_finite():
    # constant: every point ties -> the smallest, t_min
    assert line_search(lambda t: 1.0, t_min=2.0, t_max=7.0, evals=10).t == 2.0
    # NaN everywhere -> -inf everywhere -> t_min
    res = line_search(lambda t: math.nan, t_min=2.0, t_max=7.0, evals=10)
    assert res.t == 2.0 and res.score == -math.inf
    # +inf counts as -inf too: never preferred to a finite score
    res = line_search(lambda t: math.inf if t > 3 else t, t_min=0.0, t_max=10.0, evals=20)
    assert 3 - TOL_STEP_1 <= res.t <= 3
