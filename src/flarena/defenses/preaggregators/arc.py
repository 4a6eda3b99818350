"""Adaptive Robust Clipping (ARC): clip the largest rows to the norm of the next one."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix, int_param, require_minority
from flarena.defenses._distances import row_norms
from flarena.defenses.preaggregators.clip import clip_rows


@register("preaggregator", "arc")
class ARC:
    r"""Adaptive Robust Clipping: clip the :math:`k` largest rows to the :math:`(k+1)`-th norm.

    With :math:`k = \lfloor 2 \frac{f}{n} (n - f) \rfloor` and :math:`C` the
    :math:`(k+1)`-th largest row norm,

    .. math::

        y_i = x_i \cdot \min\left(1, \frac{C}{\lVert x_i \rVert_2}\right),

    so the :math:`k` rows of largest norm are scaled down to norm :math:`C` and the others are
    unchanged (Allouah, Guerraoui, Gupta, Jellouli, Rizk, Stephan, "The Vital Role of Gradient
    Clipping in Byzantine-Resilient Distributed Learning", 2024, Algorithm ARC). The output has
    the same ``[n, d]`` shape; an aggregator is applied afterwards. Since
    :math:`2f(n - f) \le n^2 / 2`, :math:`k \le n / 2` and :math:`C` always exists; with
    :math:`f = 0` nothing is clipped.

    Conventions:

    - Rows whose norm ties with :math:`C` are unchanged, so the result does not depend on how
      ties in the ranking are broken.
    - A non-finite row (any NaN or infinite coordinate) ranks above every finite row when
      :math:`C` is chosen, and is replaced by a zero row (it has no direction to keep, as in
      ``clip``). If more than :math:`k` rows are non-finite, :math:`C` is infinite and the
      finite rows are unchanged.
    - ``ctx`` is not used; ``f`` is fixed at construction, not taken from ``ctx.declared_f``.

    Parameters
    ----------
    f : int
        Number of Byzantine rows tolerated, ``f >= 0``. The paper assumes :math:`n > 2f`;
        :meth:`check_n` refuses fewer rows.
    """

    def __init__(self, *, f: int = 1) -> None:
        self.f = int_param("f", f, minimum=0)

    def clipped_count(self, n: int) -> int:
        r"""``k = floor(2 (f / n) (n - f))``: how many rows are clipped for ``n`` rows."""
        return (2 * self.f * (n - self.f)) // n  # exact integer floor, no rounding

    def check_n(self, n: int) -> None:
        """Refuse ``n`` rows unless ``n > 2f`` (the paper's assumption)."""
        require_minority("arc", self.f, n, "Allouah et al. 2024")

    def output_rows(self, n: int) -> int:
        """Rows of the output: as many as the input."""
        return n

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Clip the ``k`` largest of the ``[n, d]`` rows to the ``(k+1)``-th largest norm."""
        check_matrix(updates)
        n = updates.shape[0]
        self.check_n(n)
        k = self.clipped_count(n)
        if k == 0:
            return clip_rows(updates, math.inf)
        norms = row_norms(updates)  # non-finite exactly for the non-finite rows
        ranked = torch.where(torch.isfinite(norms), norms, torch.full_like(norms, math.inf))
        threshold = torch.topk(ranked, k + 1).values[k]
        return clip_rows(updates, threshold, norms)

    def get_params(self) -> dict[str, int]:
        """Constructor parameters."""
        return {"f": self.f}
