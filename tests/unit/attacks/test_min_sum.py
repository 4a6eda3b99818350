from __future__ import annotations

import math

import pytest
import torch

from flarena.attacks.poisoning.min_max import MinMax
from flarena.attacks.poisoning.min_sum import MinSum
from flarena.core import registry

from .test_sign_flip import ctx

# x1 = [1, 0], x2 = [3, 0], x3 = [2, 3]: mu = [2, 1]
# ||x_i - mu||^2 = 2, 2, 4, so S = sum_i ||x_i - mu||^2 = 8
# pairwise squared distances 4 (x1 x2), 10 (x1 x3), 10 (x2 x3):
#   row sums x1: 4 + 10 = 14, x2: 4 + 10 = 14, x3: 10 + 10 = 20 -> T = min = 14
# For b = mu + g p: sum_i ||b - x_i||^2 = S + 2 g <p, sum_i (mu - x_i)> + h g^2 ||p||^2
#                                      = 8 + 3 g^2 ||p||^2   (sum_i (mu - x_i) = 0)
# so the boundary is g* = sqrt((T - S) / (h ||p||^2)) = sqrt(6 / (3 ||p||^2)) = sqrt(2) / ||p||.
HONEST = [[1.0, 0.0], [3.0, 0.0], [2.0, 3.0]]
S, T, H = 8.0, 14.0, 3
SLACK = 2 * 10 / 2**20  # K = 20 tests with gamma_init = 10, tau = 1e-5


def run(perturbation: str, honest=None, **kwargs):
    c = ctx(5, 2)
    x = torch.tensor(HONEST if honest is None else honest, dtype=torch.float64)
    out = MinSum(perturbation=perturbation, **kwargs).craft(x, n_malicious=2, ctx=c)
    return out, c.info["opt_param"]


def test_registered_and_omniscient():
    assert registry.get("attack", "min_sum") is MinSum
    assert MinSum.threat_model.sees_honest_updates
    assert MinSum().get_params() == {"perturbation": "unit_vec", "gamma_init": 10.0, "tau": 1e-5}


@pytest.mark.parametrize(
    ("perturbation", "p_sq", "p"),
    [
        # unit_vec: p = -[2, 1] / sqrt5, ||p||^2 = 1  -> g* = sqrt2
        ("unit_vec", 1.0, (-2 / math.sqrt(5), -1 / math.sqrt(5))),
        # sign: p = -[1, 1], ||p||^2 = 2 -> g* = 1
        ("sign", 2.0, (-1.0, -1.0)),
        # std (ddof 1): sigma = [1, sqrt3], ||p||^2 = 4 -> g* = sqrt2 / 2
        ("std", 4.0, (-1.0, -math.sqrt(3))),
    ],
)
def test_gamma_is_the_closed_form(perturbation, p_sq, p):
    g_star = math.sqrt((T - S) / (H * p_sq))
    out, g = run(perturbation)
    assert g_star - SLACK <= g <= g_star
    row = [2 + g * p[0], 1 + g * p[1]]
    assert torch.allclose(out, torch.tensor([row, row], dtype=torch.float64))
    # the condition holds at the returned row
    b = out[0]
    total = sum(float(((b - torch.tensor(x, dtype=torch.float64)) ** 2).sum()) for x in HONEST)
    assert total <= T * (1 + 1e-12)


def test_an_honest_row_at_the_mean_allows_no_shift():
    # x2 = mu = [1, 1]: min_i ||x_i - mu|| = 0, so g* = 0 and the row is the mean itself
    out, g = run("unit_vec", honest=[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    assert g == 0.0
    assert torch.allclose(out, torch.tensor([[1.0, 1.0]] * 2, dtype=torch.float64))


def test_random_rows_meet_the_bound_and_the_boundary():
    gen = torch.Generator().manual_seed(4)
    honest = torch.randn(9, 6, generator=gen, dtype=torch.float64) + 1.0
    c = ctx(12, 3)
    out = MinSum(perturbation="std").craft(honest, n_malicious=3, ctx=c)
    mu = honest.mean(0)
    sigma = honest.std(0)
    g_star = float((honest - mu).norm(dim=1).min() / sigma.norm())
    assert g_star - SLACK <= c.info["opt_param"] <= g_star
    assert torch.allclose(out[0], mu - c.info["opt_param"] * sigma)
    d = torch.cdist(honest, honest) ** 2
    assert float(((honest - out[0]) ** 2).sum()) <= float(d.sum(1).min()) * (1 + 1e-12)


def test_min_sum_differs_from_min_max():
    # same example: min-max's unit_vec boundary is ~1.713 (test_min_max), min-sum's sqrt2
    _, g_sum = run("unit_vec")
    c = ctx(5, 2)
    MinMax().craft(torch.tensor(HONEST, dtype=torch.float64), n_malicious=2, ctx=c)
    assert g_sum < c.info["opt_param"]


def test_float32_rows_keep_dtype():
    out = MinSum(perturbation="sign").craft(torch.tensor(HONEST), n_malicious=3, ctx=ctx(6, 3))
    assert out.dtype == torch.float32 and out.shape == (3, 2)
    assert torch.allclose(out, torch.tensor([[1.0, 0.0]] * 3), atol=1e-4)  # g* = 1


def test_edge_cases():
    assert torch.equal(
        MinSum().craft(torch.empty(0, 4), n_malicious=2, ctx=ctx(2, 2)), torch.zeros(2, 4)
    )
    one = torch.tensor([[0.5, -1.0]])
    assert torch.equal(MinSum().craft(one, n_malicious=3, ctx=ctx(4, 3)), one.expand(3, 2))
    same = torch.tensor([[1.0, 2.0]] * 3)  # std perturbation is 0: the row is the mean
    out = MinSum(perturbation="std").craft(same, n_malicious=1, ctx=ctx(4, 1))
    assert torch.equal(out, torch.tensor([[1.0, 2.0]]))


def test_deterministic_and_does_not_modify_honest():
    honest = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    before = honest.clone()
    a = MinSum().craft(honest, n_malicious=2, ctx=ctx(7, 2, seed=1))
    b = MinSum().craft(honest, n_malicious=2, ctx=ctx(7, 2, seed=9))
    assert torch.equal(a, b)
    assert torch.equal(honest, before)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"perturbation": "unit"}, "perturbation"),
        ({"gamma_init": 0}, "gamma_init"),
        ({"gamma_init": float("nan")}, "gamma_init"),
        ({"tau": -1e-5}, "tau"),
        ({"gamma_init": 1e-6}, "tau"),  # tau = 1e-5 >= gamma_init
    ],
)
def test_invalid_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MinSum(**kwargs)
