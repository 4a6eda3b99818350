"""Multi-Krum (Blanchard et al. 2017): the mean of the m rows with the best Krum scores."""

from __future__ import annotations

import torch
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix, int_param
from flarena.defenses.aggregators.krum import krum_check_n, krum_order


@register("aggregator", "multi_krum")
class MultiKrum:
    r"""Multi-Krum: the mean of the m rows with the smallest Krum scores.

    With the Krum score :math:`s(i) = \sum_{j \in N(i)} \lVert x_i - x_j \rVert^2` over the
    :math:`n - f - 2` nearest rows other than :math:`x_i` (squared distances), the output is
    :math:`\frac1m \sum_{i \in S} x_i`, :math:`S` the :math:`m` rows with the smallest scores
    (Blanchard, El Mhamdi, Guerraoui, Stainer 2017, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent"). ``m = 1`` is Krum; ``f = 0, m = n`` is the mean.
    Requires :math:`n > 2f + 2` and :math:`m \le n`. Ties in the score go to the lowest row
    index. Unweighted: ``ctx.weights`` is ignored. With a context, ``ctx.info["kept"]`` is the
    ``[n]`` bool mask of the selected rows.

    Non-finite values: a row with any NaN/inf coordinate is at distance :math:`+\infty` from every
    row and is *never* selected, even when ``m`` reaches it: if fewer than ``m`` rows are finite,
    the mean of all the finite rows is returned (the output is non-finite only if every row is).
    With at most ``f`` non-finite rows the scores of the finite rows are finite.

    Parameters
    ----------
    f : int
        Number of Byzantine rows tolerated.
    m : int or None
        Number of rows averaged; ``None`` (default) means :math:`n - f`, all the rows that can be
        selected when ``f`` of them are Byzantine.
    """

    def __init__(self, *, f: int = 1, m: int | None = None) -> None:
        self.f = int_param("f", f, minimum=0)
        self.m = None if m is None else int_param("m", m, minimum=1)

    def _m(self, n: int) -> int:
        return n - self.f if self.m is None else self.m

    def check_n(self, n: int) -> None:
        """Refuse ``n <= 2f + 2``, and ``m > n``."""
        krum_check_n("multi_krum", n, self.f)
        if self.m is not None and self.m > n:
            raise ValueError(f"multi_krum averages m = {self.m} rows, more than n = {n}")

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Aggregate ``[n, d]`` rows into ``[d]``."""
        n = check_matrix(updates)
        self.check_n(n)
        order, nonfinite = krum_order(updates, self.f)
        n_finite = n - int(nonfinite.sum())
        count = min(self._m(n), n_finite) if n_finite > 0 else self._m(n)
        kept = torch.zeros(n, dtype=torch.bool)
        kept[order[:count]] = True
        kept = kept.to(updates.device)
        if ctx is not None:
            ctx.info["kept"] = kept
        if bool(kept.all()):
            return updates.mean(dim=0)  # m = n is exactly x.mean(0)
        if bool(nonfinite.any()):
            return updates[kept].mean(dim=0)  # 0 * inf: no product with a non-finite row
        # the kept rows' sum as one matrix-vector product (0/1 weights), without copying them
        return (kept.to(updates.dtype) @ updates).div_(int(kept.sum()))

    def get_params(self) -> dict[str, int | None]:
        """Constructor parameters."""
        return {"f": self.f, "m": self.m}
