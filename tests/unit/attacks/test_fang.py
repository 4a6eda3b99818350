from __future__ import annotations

import math

import pytest
import torch

from flarena.attacks.poisoning.fang_krum import FangKrum, fang_krum_lambda0
from flarena.attacks.poisoning.fang_trimmed_mean import FangTrimmedMean, fang_intervals
from flarena.core import registry
from flarena.defenses.aggregators.krum import Krum
from flarena.defenses.aggregators.median import Median
from flarena.defenses.aggregators.trimmed_mean import TrimmedMean

from .test_sign_flip import ctx

# ---------------------------------------------------------------------------------- Fang on Krum
# Five honest rows in d = 2: x1 = [1, 0], x2 = [-1, 0], x3 = [0, 1], x4 = [0, -1], x5 = [1, 1];
# c = 2 attackers, so m = 7 rows. mean = [0.2, 0.2] -> s = [1, 1] and b = -lam * [1, 1].
# Unsquared honest distances: d12 = 2, d13 = d14 = d23 = d24 = sqrt2, d15 = d35 = 1, d34 = 2,
# d25 = d45 = sqrt5. Gamma~ has m - c - 2 = 3 neighbours:
#   x1: 1 + sqrt2 + sqrt2, x2: sqrt2 + sqrt2 + 2, x3: 1 + 2 sqrt2, x4: 2 sqrt2 + 2,
#   x5: 1 + 1 + sqrt5
# min = 1 + 2 sqrt2; max_i ||x_i|| = ||x5|| = sqrt2; m - 2c - 1 = 2; sqrt(d) = sqrt2:
#   lambda0 = (1 + 2 sqrt2) / (2 sqrt2) + sqrt2 / sqrt2 = 2 + 1 / (2 sqrt2) ~ 2.3536
KRUM_HONEST = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, 1.0]]
LAMBDA0 = 2 + 1 / (2 * math.sqrt(2))
# Squared distances of b = -lam [1, 1] to the honest rows:
#   x1, x3: 2 lam^2 + 2 lam + 1;  x2, x4: 2 lam^2 - 2 lam + 1;  x5: 2 (1 + lam)^2
# Krum with f = 2 on 7 rows: n - f - 2 = 3 neighbours (squared distances).
#   malicious: its copy (0) + x2 + x4 = 4 lam^2 - 4 lam + 2
#   x2 (and x4): the two copies + 2 = 4 lam^2 - 4 lam + 4 (always 2 more)
#   x1 (and x3): of {1, 2, 2, 4, beta, beta}, beta = 2 lam^2 + 2 lam + 1: 1 + 2 beta if beta <= 2,
#                else 1 + 2 + 2 = 5 -> the malicious row is lower iff 4 lam^2 - 4 lam - 3 < 0,
#                i.e. lam < 1.5
#   x5: 1 + 1 + min(2 (1 + lam)^2, 5): the malicious row is lower for lam < (1 + sqrt6) / 2
# so Krum selects a malicious row iff lam < 1.5: lambda0 ~ 2.35 fails, lambda0 / 2 ~ 1.18 wins.
KRUM_ROOT = 1.5


def krum_honest() -> torch.Tensor:
    return torch.tensor(KRUM_HONEST, dtype=torch.float64)


def test_fang_krum_registered_and_threat_model():
    assert registry.get("attack", "fang_krum") is FangKrum
    assert FangKrum.threat_model.sees_honest_updates
    assert FangKrum.threat_model.knows_aggregator
    assert FangKrum().get_params() == {"f": None, "threshold": 1e-5}


def test_fang_krum_lambda0_hand_computed():
    assert fang_krum_lambda0(krum_honest(), 2) == pytest.approx(LAMBDA0, rel=1e-12)
    # c = 1: m = 6, m - 2c - 1 = 3 and Gamma~ has m - c - 2 = 3 neighbours (the same sums)
    assert fang_krum_lambda0(krum_honest(), 1) == pytest.approx(
        (1 + 2 * math.sqrt(2)) / (3 * math.sqrt(2)) + 1, rel=1e-12
    )
    # c = 3: m - 2c - 1 = 8 - 7 = 1; Gamma~ has m - c - 2 = 3 neighbours
    assert fang_krum_lambda0(krum_honest(), 3) == pytest.approx(
        (1 + 2 * math.sqrt(2)) / math.sqrt(2) + 1, rel=1e-12
    )
    # c = 4: m - 2c - 1 = 9 - 9 = 0 <= 0 is taken as 1 (same value as c = 3)
    assert fang_krum_lambda0(krum_honest(), 4) == pytest.approx(
        fang_krum_lambda0(krum_honest(), 3), rel=1e-12
    )
    # one honest row: no neighbours, lambda0 = ||x|| / sqrt(d) = 5 / 2
    assert fang_krum_lambda0(torch.tensor([[3.0, 4.0, 0.0, 0.0]]), 2) == pytest.approx(2.5)


def test_fang_krum_halves_until_krum_selects_a_malicious_row():
    c = ctx(7, 2)
    out = FangKrum().craft(krum_honest(), n_malicious=2, ctx=c)
    lam = LAMBDA0 / 2
    assert lam < KRUM_ROOT <= LAMBDA0  # one halving
    assert c.info["opt_param"] == pytest.approx(lam, rel=1e-12)
    assert torch.allclose(out, torch.tensor([[-lam, -lam]] * 2, dtype=torch.float64))
    # flarena's Krum aggregator (f = 2) on the full matrix picks the malicious row, in either order
    for rows in (torch.cat([krum_honest(), out]), torch.cat([out, krum_honest()])):
        assert torch.equal(Krum(f=2)(rows), out[0])


def test_fang_krum_stops_at_threshold_with_the_last_lambda():
    # threshold 3 >= lambda0: no Krum test at all, lambda0 is used although Krum rejects it
    c = ctx(7, 2)
    out = FangKrum(threshold=3.0).craft(krum_honest(), n_malicious=2, ctx=c)
    assert c.info["opt_param"] == pytest.approx(LAMBDA0, rel=1e-12)
    assert torch.allclose(out, torch.full((2, 2), -LAMBDA0, dtype=torch.float64))
    assert not torch.equal(Krum(f=2)(torch.cat([krum_honest(), out])), out[0])


def test_fang_krum_unfoolable_krum_halves_to_the_threshold():
    # f = 5 on 7 rows: 0 neighbours, every score 0, the tie goes to the first (honest) row, so no
    # lambda succeeds; it halves to the first value <= 1e-5: lambda0 / 2^18 (/ 2^17 ~ 1.8e-5)
    c = ctx(7, 2)
    FangKrum(f=5).craft(krum_honest(), n_malicious=2, ctx=c)
    assert LAMBDA0 / 2**17 > 1e-5 >= LAMBDA0 / 2**18
    assert c.info["opt_param"] == pytest.approx(LAMBDA0 / 2**18, rel=1e-12)


def test_fang_krum_f_parameter():
    # f = 0: n - f - 2 = 5 neighbours.
    #   malicious: 0 + x2 + x4 + x1 + x3 = 2 (2 lam^2 - 2 lam + 1) + 2 (2 lam^2 + 2 lam + 1)
    #              = 8 lam^2 + 4
    #   x2 (and x4): the copies, 2, 2, 4 = 2 (2 lam^2 - 2 lam + 1) + 8 = 4 lam^2 - 4 lam + 10
    #   -> malicious lower iff 4 lam^2 + 4 lam - 6 < 0, lam < (-1 + sqrt7) / 2 ~ 0.823
    #   (x1, x3: 4 lam^2 + 4 lam + 7 and x5 are higher there)
    # halving: 2.35, 1.18, 0.588 -> lambda0 / 4
    c = ctx(7, 2)
    out = FangKrum(f=0).craft(krum_honest(), n_malicious=2, ctx=c)
    assert LAMBDA0 / 4 < (-1 + math.sqrt(7)) / 2 < LAMBDA0 / 2
    assert c.info["opt_param"] == pytest.approx(LAMBDA0 / 4, rel=1e-12)
    assert torch.equal(Krum(f=0)(torch.cat([krum_honest(), out])), out[0])


def test_fang_krum_zero_sign_coordinate_stays_zero():
    # mean [1.5, 0]: s = [1, 0]
    honest = torch.tensor([[1.0, 1.0], [2.0, -1.0], [1.5, 0.0], [1.5, 0.5], [1.5, -0.5]])
    c = ctx(7, 2)
    out = FangKrum().craft(honest, n_malicious=2, ctx=c)
    assert torch.equal(out[:, 1], torch.zeros(2))
    assert torch.allclose(out[:, 0], torch.full((2,), -c.info["opt_param"]))


def test_fang_krum_random_rows_fool_krum():
    gen = torch.Generator().manual_seed(0)
    honest = torch.randn(12, 20, generator=gen) * 0.1 + 0.05
    out = FangKrum().craft(honest, n_malicious=3, ctx=ctx(15, 3))
    assert out.dtype == torch.float32 and out.shape == (3, 20)
    assert torch.equal(Krum(f=3)(torch.cat([honest, out])), out[0])
    assert (torch.sign(out[0]) == -torch.sign(honest.mean(0))).all()


def test_fang_krum_edge_cases():
    assert torch.equal(
        FangKrum().craft(torch.empty(0, 3), n_malicious=2, ctx=ctx(2, 2)), torch.zeros(2, 3)
    )
    assert FangKrum().craft(krum_honest(), n_malicious=0, ctx=ctx(5, 0)).shape == (0, 2)
    with_inf = torch.cat([krum_honest(), torch.tensor([[math.inf, 0.0]], dtype=torch.float64)])
    a = FangKrum().craft(with_inf, n_malicious=2, ctx=ctx(8, 2))
    assert torch.equal(a, FangKrum().craft(krum_honest(), n_malicious=2, ctx=ctx(7, 2)))


def test_fang_krum_deterministic_and_does_not_modify_honest():
    honest = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    before = honest.clone()
    a = FangKrum().craft(honest, n_malicious=3, ctx=ctx(11, 3, seed=0))
    b = FangKrum().craft(honest, n_malicious=3, ctx=ctx(11, 3, seed=7))
    assert torch.equal(a, b)
    assert torch.equal(honest, before)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"f": -1}, ValueError, "f"),
        ({"f": 1.5}, TypeError, "f"),
        ({"f": True}, TypeError, "f"),
        ({"threshold": 0.0}, ValueError, "threshold"),
        ({"threshold": -1e-5}, ValueError, "threshold"),
        ({"threshold": float("nan")}, ValueError, "threshold"),
        ({"threshold": "1e-5"}, TypeError, "threshold"),
    ],
)
def test_fang_krum_invalid_parameters(kwargs, error, name):
    with pytest.raises(error, match=name):
        FangKrum(**kwargs)


# ----------------------------------------------------------------- Fang on trimmed mean / median
# Three honest rows, d = 5, one coordinate per case (b = 2):
#   j0: [1, 2, 3]    mean 2 > 0 (s = +1), w_min = 1 > 0   -> [w_min / 2, w_min] = [0.5, 1]
#   j1: [2, -1, 2]   mean 1 > 0 (s = +1), w_min = -1 <= 0 -> [2 w_min, w_min]  = [-2, -1]
#   j2: [3, -4, 0]   mean -1/3 (s = -1),  w_max = 3 > 0   -> [w_max, 2 w_max]  = [3, 6]
#   j3: [-1, -2, -3] mean -2 (s = -1),    w_max = -1 <= 0 -> [w_max, w_max / 2] = [-1, -0.5]
#   j4: [1, -1, 0]   mean 0 (s = 0, treated as +1), w_min = -1 -> [-2, -1]
TM_HONEST = [[1.0, 2.0, 3.0, -1.0, 1.0], [2.0, -1.0, -4.0, -2.0, -1.0], [3.0, 2.0, 0.0, -3.0, 0.0]]
TM_LO = [0.5, -2.0, 3.0, -1.0, -2.0]
TM_HI = [1.0, -1.0, 6.0, -0.5, -1.0]


def tm_honest(dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(TM_HONEST, dtype=dtype)


def test_fang_trimmed_mean_registered():
    assert registry.get("attack", "fang_trimmed_mean") is FangTrimmedMean
    assert FangTrimmedMean.threat_model.sees_honest_updates
    assert FangTrimmedMean().get_params() == {"b": 2.0}


def test_fang_intervals_hand_computed():
    lo, hi = fang_intervals(tm_honest(), 2.0)
    assert lo.tolist() == TM_LO
    assert hi.tolist() == TM_HI
    # b = 3: j0 [1/3, 1], j1 [-3, -1], j2 [3, 9], j3 [-1, -1/3], j4 [-3, -1]
    lo3, hi3 = fang_intervals(tm_honest(), 3.0)
    assert torch.allclose(lo3, torch.tensor([1 / 3, -3.0, 3.0, -1.0, -3.0], dtype=torch.float64))
    assert torch.allclose(hi3, torch.tensor([1.0, -1.0, 9.0, -1 / 3, -1.0], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fang_trimmed_mean_samples_fill_the_intervals(dtype):
    out = FangTrimmedMean().craft(tm_honest(dtype), n_malicious=400, ctx=ctx(403, 400))
    assert out.dtype == dtype and out.shape == (400, 5)
    lo = torch.tensor(TM_LO, dtype=dtype)
    hi = torch.tensor(TM_HI, dtype=dtype)
    assert (out >= lo).all() and (out <= hi).all()
    # uniform: 400 draws come within 5% of the width of both ends, and the rows differ
    width = hi - lo
    assert ((out.min(0).values - lo) < 0.05 * width).all()
    assert ((hi - out.max(0).values) < 0.05 * width).all()
    assert not torch.equal(out[0], out[1])
    # on the side opposite to the honest change: below the honest minimum where s >= 0,
    # above the honest maximum where s = -1
    h = tm_honest(dtype)
    assert (out[:, [0, 1, 4]] <= h.min(0).values[[0, 1, 4]]).all()
    assert (out[:, [2, 3]] >= h.max(0).values[[2, 3]]).all()


def test_fang_trimmed_mean_drags_median_and_trimmed_mean_against_the_change():
    gen = torch.Generator().manual_seed(2)
    honest = torch.randn(7, 30, generator=gen) + 0.3
    out = FangTrimmedMean().craft(honest, n_malicious=3, ctx=ctx(10, 3))
    s = torch.sign(honest.mean(0))
    rows = torch.cat([honest, out])
    for rule in (Median(), TrimmedMean(f=3)):
        clean = rule(honest) if isinstance(rule, Median) else TrimmedMean(f=0)(honest)
        moved = (rule(rows) - clean) * s
        assert (moved <= 1e-6).all()  # never along the honest change
        assert (moved < 0).float().mean() > 0.9


def test_fang_trimmed_mean_one_honest_row():
    # one row [2, -1, 0]: mean = row, s = [1, -1, 0]
    # j0: s = +1, w_min = 2 > 0 -> [1, 2]; j1: s = -1, w_max = -1 -> [-1, -0.5];
    # j2: s = 0 (as +1), w_min = 0 -> [0, 0]
    honest = torch.tensor([[2.0, -1.0, 0.0]])
    out = FangTrimmedMean().craft(honest, n_malicious=50, ctx=ctx(51, 50))
    assert ((out[:, 0] >= 1) & (out[:, 0] <= 2)).all()
    assert ((out[:, 1] >= -1) & (out[:, 1] <= -0.5)).all()
    assert torch.equal(out[:, 2], torch.zeros(50))


def test_fang_trimmed_mean_seeded_by_ctx_generator():
    a = FangTrimmedMean().craft(tm_honest(), n_malicious=4, ctx=ctx(7, 4, seed=3))
    b = FangTrimmedMean().craft(tm_honest(), n_malicious=4, ctx=ctx(7, 4, seed=3))
    c = FangTrimmedMean().craft(tm_honest(), n_malicious=4, ctx=ctx(7, 4, seed=4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the values are lo + u (hi - lo) with u the generator's first uniforms
    u = torch.rand((4, 5), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lo = torch.tensor(TM_LO, dtype=torch.float64)
    hi = torch.tensor(TM_HI, dtype=torch.float64)
    assert torch.allclose(a, lo + u * (hi - lo))


def test_fang_trimmed_mean_edge_cases_and_no_mutation():
    assert torch.equal(
        FangTrimmedMean().craft(torch.empty(0, 3), n_malicious=2, ctx=ctx(2, 2)),
        torch.zeros(2, 3),
    )
    assert FangTrimmedMean().craft(tm_honest(), n_malicious=0, ctx=ctx(3, 0)).shape == (0, 5)
    honest = tm_honest()
    before = honest.clone()
    FangTrimmedMean().craft(honest, n_malicious=3, ctx=ctx(6, 3))
    assert torch.equal(honest, before)
    with_nan = torch.cat([tm_honest(), torch.full((1, 5), math.nan, dtype=torch.float64)])
    out = FangTrimmedMean().craft(with_nan, n_malicious=3, ctx=ctx(7, 3))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("b", "error"),
    [(1.0, ValueError), (0.5, ValueError), (float("inf"), ValueError), ("2", TypeError)],
)
def test_fang_trimmed_mean_invalid_b(b, error):
    with pytest.raises(error, match="b = "):
        FangTrimmedMean(b=b)
