"""Fang et al. 2020's full-knowledge attack on trimmed mean and median, in update space."""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

import torch
from torch import Tensor

from flarena.attacks.poisoning._honest import finite_honest
from flarena.core.contracts import AttackContext, ModelPoisoning, ThreatModel
from flarena.core.registry import register


def fang_intervals(honest: Tensor, b: float) -> tuple[Tensor, Tensor]:
    r"""Per coordinate, the interval ``[lo, hi]`` the malicious values are drawn from.

    With :math:`s_j = \mathrm{sign}(\mu_j)` of the honest mean, :math:`w_{\max,j}`,
    :math:`w_{\min,j}` the honest maximum and minimum:

    - :math:`s_j = -1`: :math:`[w_{\max,j}, b\,w_{\max,j}]` if :math:`w_{\max,j} > 0`, else
      :math:`[w_{\max,j}, w_{\max,j}/b]` (at or above the honest maximum);
    - :math:`s_j = +1` or :math:`0`: :math:`[w_{\min,j}/b, w_{\min,j}]` if :math:`w_{\min,j} > 0`,
      else :math:`[b\,w_{\min,j}, w_{\min,j}]` (at or below the honest minimum).

    Parameters
    ----------
    honest : Tensor
        ``[h, d]`` finite honest rows, ``h >= 1``.
    b : float
        The paper's :math:`b > 1`.

    Returns
    -------
    (Tensor, Tensor)
        ``[d]`` lower and upper ends, ``lo <= hi``, in ``honest``'s dtype.
    """
    s = torch.sign(honest.mean(dim=0))
    w_max = honest.max(dim=0).values
    w_min = honest.min(dim=0).values
    # s_j = -1: push the coordinate up, at or above the honest maximum
    up_hi = torch.where(w_max > 0, w_max * b, w_max / b)
    # s_j = +1 (and 0): push it down, at or below the honest minimum
    down_lo = torch.where(w_min > 0, w_min / b, w_min * b)
    up = s < 0
    big = torch.finfo(honest.dtype).max  # b * w may overflow; keep the ends finite
    lo = torch.where(up, w_max, down_lo).clamp(-big, big)
    hi = torch.where(up, up_hi, w_min).clamp(-big, big)
    return lo, hi


@register("attack", "fang_trimmed_mean")
class FangTrimmedMean(ModelPoisoning):
    r"""Fang et al.'s full-knowledge attack on trimmed mean and on the median.

    The paper uses the same attack against both coordinate-wise rules ("Attacking Trimmed Mean"
    and "Attacking Median", Section 3.2). Per coordinate :math:`j`, with the honest rows
    :math:`x_1..x_h` of the round, :math:`s_j = \mathrm{sign}(\tfrac1h \sum_i x_{i,j})` the
    direction in which the honest update moves the parameter, and
    :math:`w_{\max,j} = \max_i x_{i,j}`, :math:`w_{\min,j} = \min_i x_{i,j}`, each malicious
    value is drawn independently and uniformly from

    .. math::
        s_j = -1:\ \begin{cases} [w_{\max,j},\ b\,w_{\max,j}] & w_{\max,j} > 0 \\
                                 [w_{\max,j},\ w_{\max,j}/b] & w_{\max,j} \le 0 \end{cases}
        \qquad
        s_j = +1:\ \begin{cases} [w_{\min,j}/b,\ w_{\min,j}] & w_{\min,j} > 0 \\
                                 [b\,w_{\min,j},\ w_{\min,j}] & w_{\min,j} \le 0 \end{cases}

    so the malicious values sit just beyond the honest extreme on the side opposite to the
    honest change, which drags the trimmed mean or median against it.

    Conventions and deviations: update space. The paper states the intervals for local *models*;
    here :math:`w_{\max}, w_{\min}`, the case they select and the factor :math:`b` apply to the
    update values themselves (as both reference codes do with gradients). The side of the honest
    extreme is the same either way (models and updates differ by one shift common to all rows),
    but the reach beyond it scales with the update's magnitude, not the parameter's. :math:`s`
    is the sign of the honest mean (the paper's full knowledge uses the change the before-attack
    aggregate would make; the MXNet reference code, ``full_trim``, uses the sign of the sum of
    all rows). :math:`s_j = 0` is treated as :math:`s_j = +1` (the MXNet reference code sends 0
    there). Values are uniform on the interval, drawn with ``ctx.generator`` (the MXNet
    reference code divides or multiplies by :math:`1 + U(0, 1)`, not uniform on the interval),
    and clamped to it against rounding, so they never cross the honest extreme. With
    :math:`w_{\max,j} = 0` (resp. :math:`w_{\min,j} = 0`) the interval is the single point 0.

    Edge cases: honest rows with a non-finite coordinate are ignored; no (finite) honest row
    gives zeros; a single honest row works (:math:`w_{\max} = w_{\min}` = that row).

    Fang, Cao, Jia, Gong, "Local Model Poisoning Attacks to Byzantine-Robust Federated Learning",
    USENIX Security 2020 (Section 3.2, full knowledge).

    Parameters
    ----------
    b : float
        How far beyond the honest extreme the interval reaches, a factor :math:`> 1` (the paper's
        :math:`b = 2`).
    """

    threat_model: ClassVar[ThreatModel] = ThreatModel(sees_honest_updates=True)

    def __init__(self, *, b: float = 2.0) -> None:
        if isinstance(b, bool) or not isinstance(b, numbers.Real):
            raise TypeError(f"invalid b = {b!r}: must be a number")
        if not (math.isfinite(b) and b > 1):
            raise ValueError(f"invalid b = {b!r}: must be a finite number > 1")
        self.b: float = float(b)

    def craft(self, honest: Tensor, /, *, n_malicious: int, ctx: AttackContext) -> Tensor:
        """Return ``[n_malicious, d]`` rows drawn uniformly from the per-coordinate intervals."""
        honest, early = finite_honest(honest, n_malicious)
        if early is not None:
            return early
        lo, hi = fang_intervals(honest, self.b)
        gen = ctx.generator
        u = torch.rand(
            (n_malicious, honest.shape[1]), generator=gen, device=gen.device, dtype=honest.dtype
        )
        u = u.to(honest.device)
        return torch.clamp(lo + u * (hi - lo), min=lo, max=hi)

    def get_params(self) -> dict[str, float]:
        """Constructor parameters."""
        return {"b": self.b}
