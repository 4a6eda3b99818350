from __future__ import annotations

import math

import pytest
import torch

from flarena.attacks.poisoning._shejwalkar import search_gamma
from flarena.attacks.poisoning.min_max import MinMax
from flarena.core import registry

from .test_sign_flip import ctx

# x1 = [1, 0], x2 = [3, 0], x3 = [2, 3]: mu = [2, 1], ||mu|| = sqrt(5)
# mu - x1 = [1, 1], mu - x2 = [-1, 1], mu - x3 = [0, -2]; squared norms 2, 2, 4
# pairwise squared distances: |x1 - x2|^2 = 4, |x1 - x3|^2 = 1 + 9 = 10, |x2 - x3|^2 = 10
# so the honest diameter squared is 10.
HONEST = [[1.0, 0.0], [3.0, 0.0], [2.0, 3.0]]
MU = (2.0, 1.0)
# With the defaults gamma_init = 10, tau = 1e-5 the search makes K = 20 tests
# (10 / 2**19 > 1e-5 >= 10 / 2**20) and ends within 2 * 10 / 2**20 below the exact boundary.
SLACK = 2 * 10 / 2**20


def honest64() -> torch.Tensor:
    return torch.tensor(HONEST, dtype=torch.float64)


def run(perturbation: str, **kwargs):
    c = ctx(5, 2)
    out = MinMax(perturbation=perturbation, **kwargs).craft(honest64(), n_malicious=2, ctx=c)
    return out, c.info["opt_param"]


def test_registered_and_omniscient():
    assert registry.get("attack", "min_max") is MinMax
    assert MinMax.threat_model.sees_honest_updates
    assert MinMax().get_params() == {"perturbation": "unit_vec", "gamma_init": 10.0, "tau": 1e-5}


def test_unit_vec_gamma_is_the_quadratic_root():
    # p = -mu / sqrt(5) = -[2, 1] / sqrt(5); <mu - x_i, p> = -3/sqrt5, 1/sqrt5, 2/sqrt5
    # ||b - x_i||^2 = ||mu - x_i||^2 + 2 g <mu - x_i, p> + g^2:
    #   x1: 2 - 6g/sqrt5 + g^2, x2: 2 + 2g/sqrt5 + g^2, x3: 4 + 4g/sqrt5 + g^2 (the largest)
    # 4 + 4g/sqrt5 + g^2 = 10  ->  g^2 + (4/sqrt5) g - 6 = 0
    r5 = math.sqrt(5)
    g_star = (-4 / r5 + math.sqrt(16 / 5 + 24)) / 2  # ~1.71325
    out, g = run("unit_vec")
    assert g_star - SLACK <= g <= g_star
    row = [MU[0] - g * 2 / r5, MU[1] - g * 1 / r5]
    assert torch.allclose(out, torch.tensor([row, row], dtype=torch.float64))


def test_sign_gamma_is_one():
    # p = -sign(mu) = [-1, -1]; <mu - x_i, p> = -2, 0, 2; ||p||^2 = 2
    # largest: x3: 4 + 4g + 2g^2 = 10  ->  g^2 + 2g - 3 = 0  ->  g = 1 (b = [1, 0] = x1)
    out, g = run("sign")
    assert 1 - SLACK <= g <= 1
    assert torch.allclose(out, torch.tensor([[2 - g, 1 - g]] * 2, dtype=torch.float64))


def test_std_gamma_hand_computed():
    # ddof = 1: column 0 [1, 3, 2]: var (1 + 1 + 0) / 2 = 1;
    #           column 1 [0, 0, 3]: var (1 + 1 + 4) / 2 = 3
    # p = -[1, sqrt3], ||p||^2 = 4; <mu - x3, p> = 2 sqrt3 (the largest distance again)
    # 4 + 4 sqrt3 g + 4 g^2 = 10  ->  2g^2 + 2 sqrt3 g - 3 = 0  ->  g = (6 - 2 sqrt3) / 4
    g_star = (3 - math.sqrt(3)) / 2
    out, g = run("std")
    assert g_star - SLACK <= g <= g_star
    row = [2 - g, 1 - g * math.sqrt(3)]
    assert torch.allclose(out, torch.tensor([row, row], dtype=torch.float64))


@pytest.mark.parametrize("perturbation", ["unit_vec", "sign", "std"])
def test_condition_holds_on_random_rows(perturbation):
    gen = torch.Generator().manual_seed(3)
    honest = torch.randn(7, 5, generator=gen, dtype=torch.float64) + 0.5
    out = MinMax(perturbation=perturbation).craft(honest, n_malicious=3, ctx=ctx(10, 3))
    diameter = torch.cdist(honest, honest).max()
    reach = torch.cdist(out[:1], honest).max()
    assert reach <= diameter * (1 + 1e-12)
    assert reach >= diameter * (1 - 1e-3)  # and it goes (almost) all the way
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_search_reaches_at_most_twice_gamma_init():
    # the sign example's boundary is g = 1; from gamma_init = 0.1 every test passes:
    # K = 14 tests (0.1 / 2**13 > 1e-5 >= 0.1 / 2**14), the last success is 0.1 * (2 - 2**-13)
    _, g = run("sign", gamma_init=0.1)
    assert g == pytest.approx(0.1 * (2 - 2**-13), rel=1e-12)


def test_search_gamma_counts_and_extremes():
    calls: list[float] = []

    def never(g: float) -> bool:
        calls.append(g)
        return False

    assert search_gamma(never, 10.0, 1e-5) == 0.0
    assert len(calls) == 20
    # the first tests: 10, 10 - 5, 5 - 2.5, ...
    assert calls[:3] == [10.0, 5.0, 2.5]
    # always true: successes at 10, 15, 17.5, ... the 20th success is 10 * (2 - 2**-19)
    assert search_gamma(lambda g: True, 10.0, 1e-5) == pytest.approx(10 * (2 - 2**-19))
    # a threshold condition: within 2 * 10 / 2**20 below it
    g = search_gamma(lambda g: g <= 3.3, 10.0, 1e-5)
    assert 3.3 - SLACK <= g <= 3.3


def test_float32_rows_keep_dtype():
    honest = torch.tensor(HONEST)
    out = MinMax(perturbation="sign").craft(honest, n_malicious=2, ctx=ctx(5, 2))
    assert out.dtype == torch.float32 and out.shape == (2, 2)
    assert torch.allclose(out, torch.tensor([[1.0, 0.0]] * 2), atol=1e-4)


def test_no_honest_row_gives_zeros():
    out = MinMax().craft(torch.empty(0, 3), n_malicious=2, ctx=ctx(2, 2))
    assert torch.equal(out, torch.zeros(2, 3))


def test_one_honest_row_is_copied():
    honest = torch.tensor([[1.0, -2.0, 3.0]])
    for perturbation in ("unit_vec", "sign", "std"):
        c = ctx(3, 2)
        out = MinMax(perturbation=perturbation).craft(honest, n_malicious=2, ctx=c)
        assert torch.equal(out, honest.expand(2, 3))
        assert c.info["opt_param"] == 0.0


def test_zero_mean_with_unit_vec_gives_the_mean():
    # mu = [0, 0]: p = 0 by convention, the row is mu and gamma is reported as 0
    honest = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    c = ctx(4, 2)
    out = MinMax().craft(honest, n_malicious=2, ctx=c)
    assert torch.equal(out, torch.zeros(2, 2))
    assert c.info["opt_param"] == 0.0


def test_non_finite_honest_rows_are_ignored():
    with_nan = torch.tensor(HONEST + [[float("nan"), 1.0]], dtype=torch.float64)
    a = MinMax().craft(with_nan, n_malicious=2, ctx=ctx(6, 2))
    b = MinMax().craft(honest64(), n_malicious=2, ctx=ctx(6, 2))
    assert torch.equal(a, b)


def test_zero_malicious_rows():
    assert MinMax().craft(honest64(), n_malicious=0, ctx=ctx(3, 0)).shape == (0, 2)


def test_deterministic_and_does_not_modify_honest():
    honest = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    before = honest.clone()
    a = MinMax(perturbation="std").craft(honest, n_malicious=2, ctx=ctx(8, 2, seed=1))
    b = MinMax(perturbation="std").craft(honest, n_malicious=2, ctx=ctx(8, 2, seed=2))
    assert torch.equal(a, b)
    assert torch.equal(honest, before)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"perturbation": "gauss"}, "perturbation"),
        ({"gamma_init": 0.0}, "gamma_init"),
        ({"gamma_init": -1.0}, "gamma_init"),
        ({"gamma_init": float("inf")}, "gamma_init"),
        ({"tau": 0.0}, "tau"),
        ({"tau": float("nan")}, "tau"),
        ({"tau": 10.0}, "tau"),  # not smaller than gamma_init
    ],
)
def test_invalid_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MinMax(**kwargs)


def test_wrong_parameter_types():
    with pytest.raises(TypeError, match="gamma_init"):
        MinMax(gamma_init="10")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tau"):
        MinMax(tau=True)


def test_get_params_round_trip():
    attack = MinMax(perturbation="std", gamma_init=5, tau=1e-3)
    assert attack.get_params() == {"perturbation": "std", "gamma_init": 5.0, "tau": 1e-3}
    assert MinMax(**attack.get_params()).get_params() == attack.get_params()
