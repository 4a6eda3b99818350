"""Nearest Neighbor Mixing (NNM): replace each row by the mean of its nearest neighbours."""

from __future__ import annotations

import torch
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix, int_param, require_minority
from flarena.defenses._distances import finite_rows, pairwise_sq_distances, sq_distances_wide


@register("preaggregator", "nnm")
class NNM:
    r"""Nearest Neighbor Mixing: each row becomes the mean of its :math:`n - f` nearest rows.

    .. math::

        y_i = \frac{1}{n - f} \sum_{j \in N_i} x_j,

    where :math:`N_i` holds the :math:`n - f` rows closest to :math:`x_i` in Euclidean distance,
    :math:`x_i` itself included (Allouah et al., "Fixing by Mixing: A Recipe for Optimal
    Byzantine ML under Heterogeneity", AISTATS 2023, Algorithm 1). The output has the same
    ``[n, d]`` shape; an aggregator is applied afterwards. With :math:`f = 0` every row becomes
    the global mean.

    Conventions:

    - :math:`x_i` always counts as its own first neighbour; ties among the other rows (equal
      distances) are broken by the lowest row index.
    - Distances come from one Gram matrix (:func:`~flarena.defenses._distances.
      pairwise_sq_distances`), no loop over pairs.
    - A non-finite row (any NaN or infinite coordinate) is infinitely far from every other row,
      so it is never a neighbour of a finite row; its own output is the row itself, unchanged
      (still non-finite), for the aggregator to deal with. Should fewer than :math:`n - f` rows
      be finite, a finite row is mixed with the finite rows among its :math:`n - f` nearest
      (all the finite rows).
    - The weights in ``ctx`` are not used (the paper's mixing is unweighted) and not changed.

    Parameters
    ----------
    f : int
        Number of Byzantine rows tolerated, ``f >= 0``. The paper assumes :math:`n > 2f`;
        :meth:`check_n` refuses fewer rows.
    """

    def __init__(self, *, f: int = 1) -> None:
        self.f = int_param("f", f, minimum=0)

    def check_n(self, n: int) -> None:
        """Refuse ``n`` rows unless ``n > 2f`` (the paper's assumption)."""
        require_minority("nnm", self.f, n, "Allouah et al. 2023")

    def output_rows(self, n: int) -> int:
        """Rows of the output: as many as the input."""
        return n

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Mix ``[n, d]`` rows into ``[n, d]`` rows."""
        check_matrix(updates)
        n = updates.shape[0]
        self.check_n(n)
        dist = sq_distances_wide(updates)  # finite iff every row is
        if bool(torch.isfinite(dist).all()):
            ok = torch.ones(n, dtype=torch.bool, device=updates.device)
            key = dist.to(updates.dtype).double()  # as pairwise_sq_distances rounds it
        else:
            ok = finite_rows(updates)
            idx = ok.nonzero().squeeze(1)
            # ranking key: squared distance, +inf to/from non-finite rows
            key = torch.full((n, n), float("inf"), dtype=torch.float64, device=updates.device)
            if idx.numel() > 0:
                sub = pairwise_sq_distances(updates[idx]).double()
                key[idx[:, None], idx[None, :]] = sub
        key.fill_diagonal_(-1.0)  # a row is always its own first neighbour
        order = torch.sort(key, dim=1, stable=True).indices[:, : n - self.f]
        sel = torch.zeros(n, n, dtype=torch.bool, device=updates.device)
        sel.scatter_(1, order, True)
        if bool(ok.all()):
            return (sel.to(updates.dtype) @ updates).div_(n - self.f)
        sel &= ok[None, :]  # never average a non-finite row into a finite one
        clean = torch.where(ok[:, None], updates, torch.zeros_like(updates))
        counts = sel.sum(dim=1, keepdim=True).clamp(min=1).to(updates.dtype)
        mixed = (sel.to(updates.dtype) @ clean) / counts
        return torch.where(ok[:, None], mixed, updates)

    def get_params(self) -> dict[str, int]:
        """Constructor parameters."""
        return {"f": self.f}
