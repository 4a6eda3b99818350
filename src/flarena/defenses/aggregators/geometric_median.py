"""Geometric median by smoothed Weiszfeld iterations (RFA, Pillutla et al. 2022)."""

from __future__ import annotations

import torch
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix, int_param, positive_float
from flarena.defenses._distances import distances_to, finite_rows


@register("aggregator", "geometric_median")
class GeometricMedian:
    r"""Geometric median of the rows (RFA): smoothed Weiszfeld iterations from the weighted mean.

    Approximates :math:`\arg\min_z \sum_i w_i \lVert z - x_i \rVert` by
    :math:`z \leftarrow \sum_i \beta_i x_i / \sum_i \beta_i`,
    :math:`\beta_i = w_i / \max(\lVert z - x_i \rVert, \nu)`, starting from the weighted mean
    :math:`z_0 = \sum_i w_i x_i / \sum_i w_i` (Pillutla, Kakade, Harchaoui 2022, "Robust
    Aggregation for Federated Learning", Algorithm 3, smoothed Weiszfeld). The weights
    :math:`w_i` are ``ctx.weights`` when a context with ``n`` weights of positive sum is given,
    else uniform. Iterations stop when a step is small relative to the estimate,
    :math:`\lVert z_{t+1} - z_t \rVert \le \mathrm{tol} \cdot \lVert z_{t+1} \rVert`, or after
    ``max_iter`` updates. (RFA's code stops on the relative change of the objective
    :math:`\sum_i w_i \lVert z - x_i \rVert`; far outliers dominate that objective and stop the
    iterations while :math:`z` is still far from the median, so flarena tests the step.)
    Computed in the input dtype, except the distances :math:`\lVert z - x_i \rVert`, which are
    summed blockwise in float64 for float32 rows
    (:func:`~flarena.defenses._distances.distances_to`). Each iteration reads the rows twice,
    once for the distances and once for :math:`\sum_i \beta_i x_i` (a matrix-vector product),
    and allocates nothing of size ``[n, d]``.

    Non-finite values: a row with any NaN/inf coordinate gets weight 0 (a point at infinity has
    Weiszfeld weight 0 in the limit), so the result is the geometric median of the finite rows;
    it is non-finite only if every row is.

    Parameters
    ----------
    nu : float
        Smoothing :math:`\nu > 0`: distances below it count as :math:`\nu` (no division by 0).
    max_iter : int
        Maximum number of Weiszfeld updates, ``>= 1``.
    tol : float
        Step size, relative to the norm of the estimate, at which to stop, ``>= 0``.
    """

    def __init__(self, *, nu: float = 1e-6, max_iter: int = 100, tol: float = 1e-7) -> None:
        self.nu = positive_float("nu", nu)
        self.max_iter = int_param("max_iter", max_iter, minimum=1)
        self.tol = positive_float("tol", tol, allow_zero=True)

    def check_n(self, n: int) -> None:
        """Refuse an empty round."""
        if n < 1:
            raise ValueError(f"geometric_median needs n >= 1 rows, got n = {n}")

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Aggregate ``[n, d]`` rows into ``[d]``."""
        n = check_matrix(updates)
        w = updates.new_ones(n)
        if ctx is not None and ctx.weights is not None and ctx.weights.shape == (n,):
            given = ctx.weights.to(device=updates.device, dtype=updates.dtype)
            if bool(given.isfinite().all()) and bool((given >= 0).all()):
                w = given
        if float(w.sum()) > 0.0:
            z = self._weiszfeld(updates, w)  # every row finite: no row is set aside
            if z is not None:
                return z
        ok = finite_rows(updates)
        if not bool(ok.any()):
            return updates.mean(dim=0)
        x = updates if bool(ok.all()) else updates[ok]
        w = w[ok]
        if not float(w.sum()) > 0.0:
            w = x.new_ones(x.shape[0])
        z = self._weiszfeld(x, w)
        if z is None:  # an overflow: the same iterations with [n, d] temporaries
            z = (w[:, None] * x).sum(dim=0) / w.sum()
            for _ in range(self.max_iter):
                beta = w / (x - z).norm(dim=1).clamp(min=self.nu)
                z_new = (beta[:, None] * x).sum(dim=0) / beta.sum()
                step = float((z_new - z).norm())
                z = z_new
                if step <= self.tol * float(z.norm()):
                    break
        return z

    def _weiszfeld(self, x: Tensor, w: Tensor) -> Tensor | None:
        """The iterations from the weighted mean; ``None`` if a value is not finite."""
        z = (w @ x) / w.sum()
        if not bool(torch.isfinite(z).all()):
            return None
        for _ in range(self.max_iter):
            dist = distances_to(x, z)
            if not bool(torch.isfinite(dist).all()):
                return None
            beta = w / dist.to(x.dtype).clamp(min=self.nu)
            z_new = (beta @ x) / beta.sum()
            step = float((z_new - z).norm())
            z = z_new
            if step <= self.tol * float(z.norm()):
                break
        return z

    def get_params(self) -> dict[str, float | int]:
        """Constructor parameters."""
        return {"nu": self.nu, "max_iter": self.max_iter, "tol": self.tol}
