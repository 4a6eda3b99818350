"""Centered clipping (Karimireddy, He, Jaggi 2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix, int_param, positive_float
from flarena.defenses._distances import GRAM_BLOCK, column_blocks, distances_to, finite_rows
from flarena.defenses.aggregators.median import coordinate_median


@register("aggregator", "centered_clipping")
class CenteredClipping:
    r"""Centered clipping: move a centre by the mean of the rows' offsets clipped to radius τ.

    :math:`v \leftarrow v + \frac1n \sum_i (x_i - v)\,\min\!\left(1, \tau / \lVert x_i - v
    \rVert\right)`, repeated :math:`L` = ``iters`` times (Karimireddy, He, Jaggi 2021,
    "Learning from History for Byzantine Robust Optimization"). The start :math:`v_0` is
    ``ctx.previous_aggregate`` (the engine passes the previous round's aggregate, so the centre
    is carried across rounds, as in the paper). In the first round, without a context, or if
    the previous aggregate is not finite, :math:`v_0` is the coordinate-wise median of the
    rows (NaN ranked as :math:`+\infty`, mean of the two middle values for even ``n``): a robust
    start that keeps the rule deterministic and translation equivariant (a zero start would
    not be). Unweighted: ``ctx.weights`` is ignored.

    Non-finite values: a row with any NaN/inf coordinate contributes nothing (as if
    :math:`x_i = v`) but still counts in the :math:`1/n`, so each row moves the centre by at
    most :math:`\tau / n` per iteration as in the paper's analysis; the output is finite
    whenever :math:`v_0` is (with the median start: fewer than half the rows non-finite).

    Each iteration reads the rows twice, blockwise over the columns: once for the distances
    :math:`\lVert x_i - v \rVert` (squares summed in float64 for float32 rows,
    :func:`~flarena.defenses._distances.distances_to`), once for the clipped sum; no
    ``[n, d]`` temporary is made. If a distance is not finite (a non-finite row, or an
    overflow), the iterations are redone with the non-finite rows set aside as described above.

    Parameters
    ----------
    tau : float
        Clipping radius :math:`\tau > 0`.
    iters : int
        Number of clipping iterations :math:`L \ge 1`.
    """

    def __init__(self, *, tau: float = 10.0, iters: int = 1) -> None:
        self.tau = positive_float("tau", tau)
        self.iters = int_param("iters", iters, minimum=1)

    def check_n(self, n: int) -> None:
        """Refuse an empty round."""
        if n < 1:
            raise ValueError(f"centered_clipping needs n >= 1 rows, got n = {n}")

    def _start(self, updates: Tensor, ctx: RoundContext | None) -> Tensor:
        prev = None if ctx is None else ctx.previous_aggregate
        if prev is not None:
            if prev.shape != updates.shape[1:]:
                raise ValueError(
                    f"ctx.previous_aggregate has shape {tuple(prev.shape)}, "
                    f"want ({updates.shape[1]},)"
                )
            v = prev.to(device=updates.device, dtype=updates.dtype)
            if bool(torch.isfinite(v).all()):
                return v.clone()
        return coordinate_median(updates)

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Aggregate ``[n, d]`` rows into ``[d]``."""
        n = check_matrix(updates)
        start = self._start(updates, ctx)
        v = self._iterate(updates, start, n) if bool(torch.isfinite(start).all()) else None
        if v is not None:
            return v
        ok = finite_rows(updates)
        x = updates if bool(ok.all()) else updates[ok]
        v = start
        for _ in range(self.iters):
            diff = x - v
            scale = (self.tau / diff.norm(dim=1)).clamp(max=1.0)  # norm 0 -> inf -> 1
            v = v + (scale[:, None] * diff).sum(dim=0) / n
        return v

    def _iterate(self, x: Tensor, v: Tensor, n: int) -> Tensor | None:
        """The iterations over finite rows, blockwise; ``None`` if a distance is not finite."""
        d = x.shape[1]
        for _ in range(self.iters):
            dist = distances_to(x, v)
            if not bool(torch.isfinite(dist).all()):
                return None
            scale = (self.tau / dist).clamp(max=1.0).to(x.dtype)  # distance 0 -> inf -> 1
            step = torch.empty_like(v)
            for a in column_blocks(d):
                b = a + GRAM_BLOCK
                torch.mv((x[:, a:b] - v[a:b]).T, scale, out=step[a:b])
            v = v + step / n
        return v

    def get_params(self) -> dict[str, float | int]:
        """Constructor parameters."""
        return {"tau": self.tau, "iters": self.iters}
