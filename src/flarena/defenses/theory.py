r"""Theoretical robustness coefficients :math:`\kappa` of the aggregation rules.

A rule :math:`F` is :math:`(f, \kappa)`-robust (Allouah, Farhadkhani, Guerraoui, Gupta, Pinot,
Stephan, "Fixing by Mixing: A Recipe for Optimal Byzantine ML under Heterogeneity", AISTATS
2023, Definition 2) if for any :math:`n` vectors and any set :math:`S` of :math:`n - f` of them

.. math:: \lVert F(x_1..x_n) - \bar x_S \rVert^2 \le
          \frac{\kappa}{|S|} \sum_{i \in S} \lVert x_i - \bar x_S \rVert^2 .

The engine measures the empirical counterpart ``kappa_hat`` every round (with :math:`S` the
honest rows); :func:`theoretical_kappa` gives the paper's upper bound for the rule, so a run
can show both. With :math:`r = f / (n - 2f)` (Allouah et al. 2023, Table 1):

======================  =====================================
rule                    :math:`\kappa` (upper bound)
======================  =====================================
any rule (lower bound)  :math:`r`
trimmed mean            :math:`6r(1 + r)`
coordinate median       :math:`4(1 + r)^2`
geometric median        :math:`4(1 + r)^2`
Krum                    :math:`6(1 + r)`
NNM, then a rule        :math:`8 f / n \cdot (\kappa + 1)`
======================  =====================================

Rules the table does not cover (Multi-Krum, Bulyan, centered clipping, FLTrust, clustering,
bucketing, ARC, clipping) have no entry: ``None``.
"""

from __future__ import annotations

from collections.abc import Callable

KAPPA_BOUNDS: dict[str, Callable[[float], float]] = {
    "trimmed_mean": lambda r: 6 * r * (1 + r),
    "median": lambda r: 4 * (1 + r) ** 2,
    "geometric_median": lambda r: 4 * (1 + r) ** 2,
    "krum": lambda r: 6 * (1 + r),
}


def kappa_lower_bound(n: int, f: int) -> float:
    r"""No rule is :math:`(f, \kappa)`-robust with :math:`\kappa < f / (n - 2f)`."""
    return f / (n - 2 * f)


def theoretical_kappa(aggregator: str, n: int, f: int, preaggregators: list[str]) -> float | None:
    r"""The paper's :math:`\kappa` for ``preaggregators`` then ``aggregator`` on ``n`` rows.

    ``f`` is the number of Byzantine rows the bound is stated for. ``None`` if the table has no
    entry for the pipeline, or ``n <= 2f`` (no bound holds). Only NNM composes (Allouah et al.
    2023, Theorem 1); any other pre-aggregator gives ``None``.
    """
    if f < 0 or n <= 2 * f:
        return None
    bound = KAPPA_BOUNDS.get(aggregator)
    if bound is None or any(p != "nnm" for p in preaggregators) or len(preaggregators) > 1:
        return None
    kappa = bound(f / (n - 2 * f))
    if preaggregators:
        kappa = 8 * f / n * (kappa + 1)
    return kappa
