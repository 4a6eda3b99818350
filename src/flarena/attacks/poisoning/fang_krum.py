"""Fang et al. 2020's full-knowledge attack on Krum, in update space."""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

import torch
from torch import Tensor

from flarena.attacks.poisoning._honest import finite_honest
from flarena.core.contracts import AttackContext, ModelPoisoning, ThreatModel
from flarena.core.registry import register
from flarena.defenses.aggregators.krum import distance_table, krum_order, neighbour_scores


def fang_krum_lambda0(honest: Tensor, c: int) -> float:
    r"""The paper's upper bound on :math:`\lambda`, the search's start, in update space.

    .. math:: \lambda_0 = \frac{1}{(m - 2c - 1)\sqrt d}
              \min_{i} \sum_{l \in \tilde\Gamma_i} \lVert x_l - x_i \rVert
              + \frac{1}{\sqrt d} \max_{i} \lVert x_i \rVert

    over the ``h`` honest rows, :math:`m = h + c`, :math:`\tilde\Gamma_i` the
    :math:`m - c - 2 = h - 2` honest rows nearest to :math:`x_i` (other than :math:`x_i`), and
    unsquared Euclidean distances; :math:`\lVert x_i \rVert` is the distance to the reference
    :math:`w_{Re}`, which in update space is the zero update. If :math:`m - 2c - 1 \le 0`
    (Krum's :math:`n > 2c + 2` fails) that factor is taken as 1.
    """
    h, d = honest.shape
    dist, _ = distance_table(honest)  # [h, h] squared, float64, one Gram matrix
    sums = neighbour_scores(dist.sqrt(), h - 2)  # [h] sum of h - 2 nearest unsquared distances
    spread = float(sums.min())
    reach = float(torch.linalg.vector_norm(honest.double(), dim=1).max())
    denominator = max(h - c - 1, 1)  # m - 2c - 1 with m = h + c
    return spread / (denominator * math.sqrt(d)) + reach / math.sqrt(d)


@register("attack", "fang_krum")
class FangKrum(ModelPoisoning):
    r"""Fang et al.'s full-knowledge attack on Krum: ``-lambda * sign`` of the honest change.

    In update space (rows are updates, the reference model :math:`w_{Re}` is the current global
    model, i.e. the zero update) every malicious row is

    .. math:: b = -\lambda s, \qquad s = \mathrm{sign}\Big(\frac1h \sum_{i=1}^h x_i\Big)

    (the paper's :math:`w_1' = w_{Re} - \lambda s`, :math:`s` the direction in which each global
    parameter would change without attack), with the largest :math:`\lambda` found as follows:
    start at the paper's upper bound

    .. math:: \lambda_0 = \frac{1}{(m - 2c - 1)\sqrt d}
              \min_{i} \sum_{l \in \tilde\Gamma_i} \lVert x_l - x_i \rVert
              + \frac{1}{\sqrt d} \max_{i} \lVert x_i \rVert

    (:math:`c` = ``n_malicious``, :math:`m = h + c` rows, :math:`i, l` over the honest rows,
    :math:`\tilde\Gamma_i` the :math:`m - c - 2` honest rows nearest to :math:`x_i`, unsquared
    distances) and halve :math:`\lambda` until Krum, simulated on ``[honest; c copies of b]``
    with flarena's Krum (:func:`~flarena.defenses.aggregators.krum.krum_order`: squared distances,
    :math:`n - f - 2` neighbours, ties to the lowest row index) and ``f`` Byzantine rows, selects
    a malicious row, or :math:`\lambda \le` ``threshold``.

    Conventions and deviations: :math:`s` is the sign of the honest mean (the paper's full
    knowledge uses the change the aggregation of the before-attack models would make; the MXNet
    reference code, ``full_krum``, uses the sign of the sum of all rows); :math:`s_j = 0` leaves
    coordinate :math:`j` at 0. The other :math:`c - 1` malicious rows are exact copies of
    :math:`b` (the paper samples them within a tiny :math:`\varepsilon` of :math:`b`; copies are
    the strongest choice, each is at distance 0 from :math:`c - 1` neighbours). The simulation
    puts the honest rows first, so Krum ties go to an honest row (conservative; the MXNet
    reference code puts the malicious rows first and simulates Krum with unsquared distances).
    If :math:`\lambda` falls to ``threshold`` or below without a malicious row being selected,
    that last :math:`\lambda` is used untested (it is at most ``threshold``, so the rows are
    nearly zero; the MXNet reference code returns :math:`\lambda = 0` and lets the attackers
    send benign updates instead). If :math:`m - 2c - 1 \le 0` the first term's factor
    :math:`m - 2c - 1` is taken as 1. The :math:`\lambda` used is stored in
    ``ctx.info["opt_param"]``. The attack does not need ``ctx.aggregator``: it simulates Krum
    itself (``knows_aggregator`` states that it is tailored to Krum).

    Edge cases: honest rows with a non-finite coordinate are ignored; no (finite) honest row
    gives zeros; one honest row gives
    :math:`\lambda_0 = \lVert x_1 \rVert / \sqrt d` (no neighbours).

    Fang, Cao, Jia, Gong, "Local Model Poisoning Attacks to Byzantine-Robust Federated Learning",
    USENIX Security 2020 (Section 3.2, "Attacking Krum", full knowledge).

    Parameters
    ----------
    f : int or None
        Byzantine rows the simulated Krum tolerates (:math:`\ge 0`); None uses ``n_malicious``.
    threshold : float
        Stop halving once :math:`\lambda \le` ``threshold`` (:math:`> 0`; the paper's 1e-5).
    """

    threat_model: ClassVar[ThreatModel] = ThreatModel(
        sees_honest_updates=True, knows_aggregator=True
    )

    def __init__(self, *, f: int | None = None, threshold: float = 1e-5) -> None:
        self.f: int | None = None
        if f is not None:
            if isinstance(f, bool) or not isinstance(f, numbers.Integral):
                raise TypeError(f"invalid f = {f!r}: must be an integer or None")
            if f < 0:
                raise ValueError(f"invalid f = {f!r}: must be an integer >= 0 or None")
            self.f = int(f)
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise TypeError(f"invalid threshold = {threshold!r}: must be a number")
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"invalid threshold = {threshold!r}: must be a finite number > 0")
        self.threshold: float = float(threshold)

    def search(self, honest: Tensor, n_malicious: int) -> tuple[Tensor, float]:
        """The direction ``s`` and the ``lambda`` chosen for ``[h >= 1, d >= 1]`` honest rows."""
        h = honest.shape[0]
        s = torch.sign(honest.mean(dim=0))
        f = n_malicious if self.f is None else self.f
        lam = fang_krum_lambda0(honest, n_malicious)
        while lam > self.threshold:
            rows = torch.cat([honest, (-lam * s).expand(n_malicious, -1)])
            order, _ = krum_order(rows, f)
            if int(order[0]) >= h:  # Krum selects a malicious row
                break
            lam /= 2
        return s, lam

    def craft(self, honest: Tensor, /, *, n_malicious: int, ctx: AttackContext) -> Tensor:
        """Return ``[n_malicious, d]`` copies of ``-lambda * sign(mean(honest))``."""
        honest, early = finite_honest(honest, n_malicious)
        if early is not None:
            return early
        d = honest.shape[1]
        if d == 0:
            return honest.new_zeros(n_malicious, d)
        s, lam = self.search(honest, n_malicious)
        ctx.info["opt_param"] = lam
        return (-lam * s).expand(n_malicious, -1).clone()

    def get_params(self) -> dict[str, int | float | None]:
        """Constructor parameters."""
        return {"f": self.f, "threshold": self.threshold}
