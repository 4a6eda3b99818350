"""Bulyan (El Mhamdi, Guerraoui, Rouault 2018)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix, int_param
from flarena.defenses.aggregators.krum import distance_table, neighbour_scores, ranking
from flarena.defenses.aggregators.median import coordinate_median, numpy_rows


@register("aggregator", "bulyan")
class Bulyan:
    r"""Bulyan: select n − 2f rows by repeated Krum, then a coordinate-wise mean around the median.

    1. Selection (El Mhamdi, Guerraoui, Rouault 2018, "The Hidden Vulnerability of Distributed
       Learning in Byzantium"): :math:`\theta = n - 2f` times, compute the Krum score
       :math:`s(i) = \sum_{j \in N_k(i)} \lVert x_i - x_j \rVert^2` (squared distances, the
       :math:`k` nearest *other* rows of the remaining set :math:`R`, :math:`|R| = r`), move the
       row with the smallest score from :math:`R` to the selected set :math:`S`. Krum's
       neighbour count with the same ``f`` is :math:`k = r - f - 2`. The recursion reaches
       :math:`r = 2f + 1`, below Krum's own condition :math:`r > 2f + 2`, where
       :math:`r - f - 2 < 2` makes the score degenerate (0 neighbours: every score is 0; 1:
       mutual nearest neighbours tie); there flarena uses :math:`k = \min(r - 1, 2)`, i.e.
       :math:`k = \min(r - 1, \max(r - f - 2, 2))` throughout. Ties go to the lowest row index.
    2. Aggregation: with :math:`m_j` the coordinate-wise median of :math:`S` (mean of the two
       middle values when :math:`\theta` is even), average per coordinate the
       :math:`\beta = \theta - 2f` values of :math:`S` closest to :math:`m_j` (ties in
       :math:`|x_{ij} - m_j|` go to the lowest row index).

    Requires :math:`n \ge 4f + 3`. Unweighted: ``ctx.weights`` is ignored. With a context,
    ``ctx.info["kept"]`` is the ``[n]`` bool mask of :math:`S`. ``f = 0`` selects every row and
    returns the mean.

    Non-finite values: a row with any NaN/inf coordinate is at distance :math:`+\infty` from every
    row and ranks after every finite row, so it is never selected while a finite row remains;
    with at most ``2f`` non-finite rows :math:`S` is finite, and so is the output.

    Parameters
    ----------
    f : int
        Number of Byzantine rows tolerated.
    """

    def __init__(self, *, f: int = 1) -> None:
        self.f = int_param("f", f, minimum=0)

    def check_n(self, n: int) -> None:
        """Refuse ``n < 4f + 3``."""
        if n < 4 * self.f + 3:
            raise ValueError(
                f"bulyan needs n >= 4f + 3 = {4 * self.f + 3} rows (f = {self.f}), got n = {n}"
            )

    def select(self, updates: Tensor) -> Tensor:
        """The ``[n]`` bool mask (on the CPU) of the ``n - 2f`` rows chosen by repeated Krum."""
        n = updates.shape[0]
        dist, nonfinite = distance_table(updates)
        remaining = torch.arange(n)
        kept = torch.zeros(n, dtype=torch.bool)
        for _ in range(n - 2 * self.f):
            r = remaining.numel()
            k = min(r - 1, max(r - self.f - 2, 2))
            scores = neighbour_scores(dist[remaining[:, None], remaining[None, :]], k)
            best = int(ranking(scores, nonfinite[remaining])[0])
            kept[remaining[best]] = True
            remaining = torch.cat([remaining[:best], remaining[best + 1 :]])
        return kept

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Aggregate ``[n, d]`` rows into ``[d]``."""
        n = check_matrix(updates)
        self.check_n(n)
        kept = self.select(updates).to(updates.device)
        if ctx is not None:
            ctx.info["kept"] = kept
        chosen = updates[kept]  # theta rows, in their original order
        return closest_to_median_mean(chosen, chosen.shape[0] - 2 * self.f)

    def get_params(self) -> dict[str, int]:
        """Constructor parameters."""
        return {"f": self.f}


def closest_to_median_mean(chosen: Tensor, beta: int) -> Tensor:
    r"""Per coordinate, the mean of the ``beta`` values of ``chosen`` closest to the median.

    :math:`m_j` is :func:`~flarena.defenses.aggregators.median.coordinate_median`; values are
    ranked by :math:`|x_{ij} - m_j|` (NaN as :math:`+\infty`), ties to the lowest row index.
    On the CPU (float32/float64) the ``beta``-th smallest deviation :math:`t_j` comes from one
    ``numpy.partition`` and the values with deviation :math:`\le t_j` are summed; only the
    coordinates where more than ``beta`` deviations are :math:`\le t_j` (ties at :math:`t_j`)
    go through the stable sort that applies the tie rule. Elsewhere: one stable
    ``torch.argsort`` along the rows.
    """
    deviation = (chosen - coordinate_median(chosen)).abs_()
    deviation.nan_to_num_(nan=torch.inf, posinf=torch.inf)
    rows = numpy_rows(deviation)
    if rows is None:
        return _closest_by_sort(chosen, deviation, beta)
    part = np.partition(rows, beta - 1, axis=0)
    threshold = torch.from_numpy(part[beta - 1])
    del part
    within = deviation <= threshold
    out = torch.where(within, chosen, 0.0).sum(dim=0) / beta
    ties = within.sum(dim=0) > beta
    if bool(ties.any()):
        out[ties] = _closest_by_sort(chosen[:, ties], deviation[:, ties], beta)
    return out


def _closest_by_sort(chosen: Tensor, deviation: Tensor, beta: int) -> Tensor:
    closest = torch.argsort(deviation, dim=0, stable=True)[:beta]
    return chosen.gather(0, closest).mean(dim=0)
