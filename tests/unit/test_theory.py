"""Theoretical kappa of Allouah et al. 2023 (Table 1), worked out by hand for n = 20, f = 4."""

from __future__ import annotations

import pytest

from flarena.defenses.theory import kappa_lower_bound, theoretical_kappa

# n = 20, f = 4: r = f / (n - 2f) = 4 / 12 = 1/3


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("trimmed_mean", 6 * (1 / 3) * (4 / 3)),  # 8/3
        ("median", 4 * (4 / 3) ** 2),  # 64/9
        ("geometric_median", 64 / 9),
        ("krum", 8.0),  # 6 * 4/3
    ],
)
def test_table_values(rule, expected):
    assert theoretical_kappa(rule, 20, 4, []) == pytest.approx(expected)


def test_nnm_composition():
    # NNM then trimmed mean: 8 f / n * (kappa + 1) = 8 * 4 / 20 * (8/3 + 1) = 1.6 * 11/3
    assert theoretical_kappa("trimmed_mean", 20, 4, ["nnm"]) == pytest.approx(1.6 * 11 / 3)


def test_no_entry_or_no_minority_gives_none():
    assert theoretical_kappa("bulyan", 20, 4, []) is None
    assert theoretical_kappa("mean", 20, 4, []) is None
    assert theoretical_kappa("krum", 20, 4, ["bucketing"]) is None
    assert theoretical_kappa("krum", 8, 4, []) is None  # n <= 2f


def test_lower_bound():
    assert kappa_lower_bound(20, 4) == pytest.approx(1 / 3)
