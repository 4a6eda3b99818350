from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flarena.core import registry
from flarena.defenses.aggregators.fltrust import FLTrust

from ._helpers import ctx

# g0 = (1, 0), norm 1; rows (2, 0), (0, 3), (-1, 0), (1, 1)
G0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
ROWS = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
# cosines with g0:       1,     0,     -1,     1/sqrt2
# TS = ReLU(cos):        1,     0,      0,     1/sqrt2
# normalised rows g_i * ||g0|| / ||g_i||: (1, 0), (0, 1), (-1, 0), (1/sqrt2, 1/sqrt2)
# sum TS_i gbar_i = 1 * (1, 0) + 1/sqrt2 * (1/sqrt2, 1/sqrt2) = (1.5, 0.5)
# sum TS = 1 + 1/sqrt2
R2 = 1.0 / math.sqrt(2.0)
TRUST = [1.0, 0.0, 0.0, R2]
EXPECTED = torch.tensor([1.5, 0.5], dtype=torch.float64) / (1.0 + R2)


def test_by_hand():
    c = ctx(4, server_update=G0)
    out = FLTrust()(ROWS, ctx=c)
    assert torch.allclose(out, EXPECTED, rtol=1e-12, atol=1e-12)
    assert torch.allclose(c.info["trust"], torch.tensor(TRUST, dtype=torch.float64), atol=1e-12)
    assert c.info["kept"].tolist() == [True, False, False, True]


def test_output_takes_the_server_update_norm():
    # g0 = (2, 0): same scores, every normalised row twice as long -> output doubles
    out = FLTrust()(ROWS, ctx=ctx(4, server_update=2 * G0))
    assert torch.allclose(out, 2 * EXPECTED, rtol=1e-12, atol=1e-12)
    # rescaling a row by a positive factor changes nothing (magnitudes are normalised away)
    scaled = ROWS * torch.tensor([[1e6], [1e-3], [7.0], [0.01]], dtype=torch.float64)
    out2 = FLTrust()(scaled, ctx=ctx(4, server_update=G0))
    assert torch.allclose(out2, EXPECTED, rtol=1e-12, atol=1e-12)


def test_rows_parallel_to_g0_give_g0():
    g0 = torch.tensor([3.0, -4.0], dtype=torch.float64)
    x = torch.stack([g0 * 0.1, g0 * 5.0, g0 * 2.0])
    assert torch.allclose(FLTrust()(x, ctx=ctx(3, server_update=g0)), g0, atol=1e-12)


def test_no_trust_gives_zeros():
    # cosines 0 and -1: every TS is 0 -> the zero vector (no step this round)
    x = torch.tensor([[0.0, 2.0], [-1.0, 0.0]], dtype=torch.float64)
    c = ctx(2, server_update=G0)
    out = FLTrust()(x, ctx=c)
    assert torch.equal(out, torch.zeros(2, dtype=torch.float64))
    assert c.info["kept"].tolist() == [False, False]
    assert c.info["trust"].tolist() == [0.0, 0.0]


def test_zero_row_gets_no_trust():
    x = torch.cat([ROWS, torch.zeros(1, 2, dtype=torch.float64)])
    c = ctx(5, server_update=G0)
    out = FLTrust()(x, ctx=c)
    assert torch.allclose(out, EXPECTED, rtol=1e-12, atol=1e-12)
    assert c.info["trust"][4].item() == 0.0
    assert not c.info["kept"][4]


def test_zero_or_nonfinite_server_update_gives_zeros():
    for g0 in (torch.zeros(2), torch.tensor([float("nan"), 1.0]), torch.tensor([math.inf, 0.0])):
        c = ctx(4, server_update=g0)
        out = FLTrust()(ROWS, ctx=c)
        assert torch.equal(out, torch.zeros(2, dtype=torch.float64))
        assert not c.info["kept"].any()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nonfinite_rows_are_excluded(bad):
    x = torch.cat([ROWS, torch.tensor([[bad, 1.0], [1.0, bad]], dtype=torch.float64)])
    c = ctx(6, server_update=G0)
    out = FLTrust()(x, ctx=c)
    assert torch.allclose(out, EXPECTED, rtol=1e-12, atol=1e-12)
    assert c.info["kept"].tolist() == [True, False, False, True, False, False]
    assert c.info["trust"][4:].tolist() == [0.0, 0.0]


def test_missing_server_update_raises():
    with pytest.raises(ValueError, match=r"fltrust needs the server's root-data update"):
        FLTrust()(ROWS)
    with pytest.raises(ValueError, match=r"ctx.server_update = None"):
        FLTrust()(ROWS, ctx=ctx(4))
    with pytest.raises(ValueError, match=r"ctx.server_update has shape \(3,\), want \(2,\)"):
        FLTrust()(ROWS, ctx=ctx(4, server_update=torch.zeros(3)))


def test_weights_ignored():
    c = ctx(4, server_update=G0)
    c.weights = torch.tensor([100.0, 1.0, 1.0, 0.5])
    assert torch.allclose(FLTrust()(ROWS, ctx=c), EXPECTED, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_kept_and_input_untouched(dtype):
    x = ROWS.to(dtype)
    g0 = G0.float()  # the server update may come in another dtype
    before, g0_before = x.clone(), g0.clone()
    c = ctx(4, server_update=g0)
    out = FLTrust()(x, ctx=c)
    assert out.dtype == dtype
    assert c.info["trust"].dtype == dtype
    assert torch.equal(x, before) and torch.equal(g0, g0_before)
    assert torch.allclose(out.double(), EXPECTED, rtol=1e-6)


def test_float32_huge_rows_do_not_overflow():
    x = torch.tensor([[3e38, 0.0], [-3e38, 3e38], [1e-30, 1e-30]], dtype=torch.float32)
    out = FLTrust()(x, ctx=ctx(3, server_update=torch.tensor([1.0, 0.0])))
    # cosines 1, -1/sqrt2, 1/sqrt2 -> TS 1, 0, 1/sqrt2, as in the by-hand example
    assert torch.allclose(out.double(), EXPECTED, rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_properties(n, d, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) * 10
    g0 = torch.randn(d, generator=gen, dtype=torch.float64)
    c = ctx(n, server_update=g0)
    out = FLTrust()(x, ctx=c)
    # a convex combination of vectors of norm ||g0||: norm at most ||g0||
    assert out.norm() <= g0.norm() * (1 + 1e-12)
    # the output never points away from g0 (every kept row has cos > 0)
    assert out @ g0 >= -1e-12
    # row order does not matter
    perm = torch.randperm(n, generator=gen)
    assert torch.allclose(FLTrust()(x[perm], ctx=ctx(n, server_update=g0)), out, atol=1e-12)
    # a NaN row and a huge attacker against g0 change nothing
    bad = torch.cat([x, torch.full((1, d), float("nan"), dtype=torch.float64), -1e9 * g0[None]])
    assert torch.allclose(FLTrust()(bad, ctx=ctx(n + 2, server_update=g0)), out, atol=1e-12)


def test_parameters_and_registration():
    assert FLTrust().root_examples == 100
    assert FLTrust(root_examples=7).get_params() == {"root_examples": 7}
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="invalid root_examples"):
            FLTrust(root_examples=bad)
    assert registry.get("aggregator", "fltrust") is FLTrust
    FLTrust().check_n(1)
    with pytest.raises(ValueError, match="n >= 1"):
        FLTrust().check_n(0)
