"""Static norm clipping of every row to a fixed radius."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix
from flarena.defenses._distances import finite_rows, row_norms


def clip_rows(updates: Tensor, tau: Tensor | float, norms: Tensor | None = None) -> Tensor:
    r"""``x_i * min(1, tau / ||x_i||)`` for every row; non-finite rows become zero rows.

    Norms are taken in float64 for float32/16 input (no overflow of the squares; see
    :func:`~flarena.defenses._distances.row_norms`), a zero row stays zero, and ``tau = inf``
    leaves the finite rows unchanged. ``norms`` are the rows' ``row_norms``, if the caller has
    them already. One pass reads the rows for the norms, one writes the scaled copy.
    """
    if norms is None:
        norms = row_norms(updates)
    ok = torch.isfinite(norms)
    if not bool(ok.all()):  # non-finite rows, or float64 norms that overflowed
        bad = (~ok).nonzero().squeeze(1)
        ok[bad] = finite_rows(updates[bad])
    scale = (torch.as_tensor(tau, dtype=norms.dtype, device=norms.device) / norms).clamp(max=1.0)
    scale = torch.nan_to_num(scale, nan=1.0)  # 0 / 0 or inf / inf: nothing to shrink
    out = updates * scale.to(updates.dtype)[:, None]
    if not bool(ok.all()):
        out[~ok] = 0.0
    return out


@register("preaggregator", "clip")
class Clip:
    r"""Static norm clipping: scale every row to norm at most :math:`\tau`.

    .. math::

        y_i = x_i \cdot \min\left(1, \frac{\tau}{\lVert x_i \rVert_2}\right),

    the fixed-threshold clipping that Allouah et al. ("The Vital Role of Gradient Clipping in
    Byzantine-Resilient Distributed Learning", 2024) compare against their adaptive rule
    (see ``arc``). The output has the same ``[n, d]`` shape; a row of norm at most
    :math:`\tau` (a zero row included) is unchanged.

    A row with a NaN or infinite coordinate has no direction to keep, so it cannot be clipped:
    it is replaced by a zero row (it then adds nothing to a mean downstream). ``ctx`` is not
    used.

    Parameters
    ----------
    tau : float
        Clipping radius, finite and ``> 0``.
    """

    #: By definition, n identical rows longer than tau come out shorter (still identical).
    _xfail_checks: ClassVar[dict[str, str]] = {
        "identical_rows": "static clipping shrinks every row longer than tau, identical rows "
        "included (they stay identical to each other, but not to the input)",
    }

    def __init__(self, *, tau: float = 1.0) -> None:
        if isinstance(tau, bool) or not isinstance(tau, int | float):
            raise ValueError(f"clip: tau must be a number > 0, got {tau!r}")
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"clip: tau must be finite and > 0, got {tau!r}")
        self.tau = float(tau)

    def output_rows(self, n: int) -> int:
        """Rows of the output: as many as the input."""
        return n

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Clip each of the ``[n, d]`` rows to norm ``tau``."""
        check_matrix(updates)
        return clip_rows(updates, self.tau)

    def get_params(self) -> dict[str, float]:
        """Constructor parameters."""
        return {"tau": self.tau}
