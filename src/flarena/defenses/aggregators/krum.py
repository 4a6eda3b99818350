"""Krum (Blanchard et al. 2017), and the Krum scores Multi-Krum and Bulyan reuse."""

from __future__ import annotations

import torch
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix, int_param
from flarena.defenses._distances import finite_rows, sq_distances_wide


def distance_table(x: Tensor) -> tuple[Tensor, Tensor]:
    r"""Squared distances of ``[n, d]`` rows, ``+inf`` for any pair with a non-finite row.

    One Gram matrix (:func:`~flarena.defenses._distances.pairwise_sq_distances`) over the finite
    rows, summed in float64 and not rounded back to the rows' dtype; a distance that overflows is
    ``+inf`` too. The Gram matrix is first taken
    over all rows: when it is finite every row is (see
    :func:`~flarena.defenses._distances.sq_distances_wide`) and no separate pass over the
    ``[n, d]`` matrix looks for non-finite values.

    Returns
    -------
    (Tensor, Tensor)
        ``[n, n]`` float64 distances on the CPU (``n`` is small and the selection is sequential)
        and the ``[n]`` bool mask of the non-finite rows.
    """
    n = x.shape[0]
    dist = sq_distances_wide(x).double().cpu()
    if bool(torch.isfinite(dist).all()):
        return dist, torch.zeros(n, dtype=torch.bool)
    ok = finite_rows(x)
    if bool(ok.all()):
        dist = sq_distances_wide(x.double()).cpu()
    else:
        dist = torch.full((n, n), torch.inf, dtype=torch.float64)
        idx = ok.nonzero().squeeze(1)
        if idx.numel() > 0:
            sub = sq_distances_wide(x[idx].double()).cpu()
            idx = idx.cpu()
            dist[idx[:, None], idx[None, :]] = sub
    dist = torch.where(torch.isnan(dist), torch.inf, dist)
    return dist, ~ok.cpu()


def neighbour_scores(dist: Tensor, k: int) -> Tensor:
    r"""Krum scores: per row, the sum of its ``k`` smallest squared distances to the *other* rows.

    :math:`s(i) = \sum_{j \in N_k(i)} \lVert x_i - x_j \rVert^2`, :math:`N_k(i)` the ``k``
    nearest rows other than ``i`` (a duplicate of ``x_i`` counts, at distance 0).
    ``0 <= k <= r - 1`` for an ``[r, r]`` table.
    """
    r = dist.shape[0]
    if k <= 0:
        return torch.zeros(r, dtype=dist.dtype)
    others = dist.clone()
    others.fill_diagonal_(torch.inf)
    return others.topk(k, dim=1, largest=False).values.sum(dim=1)


def ranking(scores: Tensor, nonfinite: Tensor) -> Tensor:
    """Row indices ordered by (non-finite row last, score, index): ties go to the lowest index."""
    order = torch.argsort(scores, stable=True)
    return order[torch.argsort(nonfinite[order].to(torch.int32), stable=True)]


def krum_order(x: Tensor, f: int) -> tuple[Tensor, Tensor]:
    """Rows ranked by their Krum score (``n - f - 2`` neighbours), and the non-finite mask."""
    dist, nonfinite = distance_table(x)
    scores = neighbour_scores(dist, x.shape[0] - f - 2)
    return ranking(scores, nonfinite), nonfinite


def krum_check_n(name: str, n: int, f: int) -> None:
    """Refuse ``n <= 2f + 2`` (Krum's condition, Blanchard et al. 2017)."""
    if n <= 2 * f + 2:
        raise ValueError(f"{name} needs n > 2f + 2 = {2 * f + 2} rows (f = {f}), got n = {n}")


@register("aggregator", "krum")
class Krum:
    r"""Krum: the row with the smallest sum of squared distances to its n − f − 2 nearest rows.

    :math:`s(i) = \sum_{j \in N(i)} \lVert x_i - x_j \rVert^2`, where :math:`N(i)` is the set of
    the :math:`n - f - 2` rows nearest to :math:`x_i` *other than* :math:`x_i`; the output is
    :math:`x_{i^*}`, :math:`i^* = \arg\min_i s(i)` (Blanchard, El Mhamdi, Guerraoui, Stainer
    2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent"). Distances
    are *squared* and the neighbours number :math:`n - f - 2` (peer suites use unsquared
    distances or :math:`n - f - 1`). Requires :math:`n > 2f + 2`. Ties in the score go to the
    lowest row index. Unweighted: ``ctx.weights`` is ignored. With a context,
    ``ctx.info["kept"]`` is the ``[n]`` bool mask of the selected row.

    Non-finite values: a row with any NaN/inf coordinate is at distance :math:`+\infty` from every
    row and ranks after every finite row, so it is never selected while a finite row exists.
    With at most ``f`` non-finite rows every finite row has :math:`n - f - 1 \ge n - f - 2`
    finite neighbours, so the scores, and the output, stay finite.

    Parameters
    ----------
    f : int
        Number of Byzantine rows tolerated.
    """

    def __init__(self, *, f: int = 1) -> None:
        self.f = int_param("f", f, minimum=0)

    def check_n(self, n: int) -> None:
        """Refuse ``n <= 2f + 2``."""
        krum_check_n("krum", n, self.f)

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Aggregate ``[n, d]`` rows into ``[d]``."""
        n = check_matrix(updates)
        self.check_n(n)
        order, _ = krum_order(updates, self.f)
        best = int(order[0])
        if ctx is not None:
            kept = torch.zeros(n, dtype=torch.bool, device=updates.device)
            kept[best] = True
            ctx.info["kept"] = kept
        return updates[best].clone()

    def get_params(self) -> dict[str, int]:
        """Constructor parameters."""
        return {"f": self.f}
