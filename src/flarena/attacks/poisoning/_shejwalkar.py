"""Shared core of the AGR-agnostic min-max and min-sum attacks (Shejwalkar & Houmansadr 2021).

Both attacks send ``mu + gamma * p`` (``mu`` the honest mean, ``p`` a perturbation direction)
with the largest ``gamma`` that the paper's binary search (Algorithm 1) finds for an objective;
they differ only in the objective. :class:`AgrAgnosticAttack` holds everything but the objective
and its docstring, which the public modules ``min_max`` and ``min_sum`` add.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from flarena.attacks.poisoning._honest import finite_honest
from flarena.core.contracts import AttackContext, ModelPoisoning, ThreatModel
from flarena.defenses._distances import pairwise_sq_distances

PERTURBATIONS = ("unit_vec", "sign", "std")
OBJECTIVES = ("min_max", "min_sum")
STD_DDOF = 1  # the "std" perturbation is the unbiased sample std (torch.std, the official code)


def perturbation(honest: Tensor, mu: Tensor, kind: str) -> Tensor:
    r"""The direction :math:`p` of the malicious row :math:`\mu + \gamma p`.

    ``"unit_vec"``: :math:`-\mu / \lVert \mu \rVert` (:math:`0` if :math:`\mu = 0`);
    ``"sign"``: :math:`-\mathrm{sign}(\mu)`; ``"std"``: :math:`-\sigma`, the coordinate-wise
    standard deviation of the honest rows with ``ddof = 1`` (:math:`0` with one honest row).

    Parameters
    ----------
    honest : Tensor
        ``[h, d]`` honest rows, ``h >= 1``.
    mu : Tensor
        ``[d]`` their mean.
    kind : {"unit_vec", "sign", "std"}
        Which direction.
    """
    if kind == "unit_vec":
        norm = torch.linalg.vector_norm(mu)
        if float(norm) == 0.0:
            return torch.zeros_like(mu)
        return -mu / norm
    if kind == "sign":
        return -torch.sign(mu)
    if kind == "std":
        if honest.shape[0] <= STD_DDOF:
            return torch.zeros_like(mu)
        return -honest.std(dim=0, correction=STD_DDOF)
    raise ValueError(f"invalid perturbation = {kind!r}; allowed: {', '.join(PERTURBATIONS)}")


def search_gamma(holds: Callable[[float], bool], gamma_init: float, tau: float) -> float:
    r"""Algorithm 1 of the paper, with the authors' step convention: the largest :math:`\gamma`.

    .. code-block:: text

        gamma <- gamma_init;  step <- gamma_init;  gamma_succ <- 0
        while |gamma_succ - gamma| > tau:
            if holds(gamma): gamma_succ <- gamma;  gamma <- gamma + step / 2
            else:            gamma <- gamma - step / 2
            step <- step / 2
        return gamma_succ

    After ``k`` rounds :math:`\gamma - \gamma_{succ} = \gamma_{init} / 2^k` exactly (by induction:
    a success sets :math:`\gamma_{succ}` to the old :math:`\gamma` and adds half the step, a
    failure removes half the step from a gap of one step), so the loop makes exactly
    :math:`K = \lceil \log_2(\gamma_{init} / \tau) \rceil` evaluations; it is run as
    ``while step > tau``, which is the same test without rounding. The result lies in
    :math:`\{0\} \cup [\gamma_{init} / 2^K, 2\gamma_{init})`; for a condition that holds on an
    interval :math:`[0, \gamma^*]` with :math:`\gamma^* < 2\gamma_{init}`, it is within
    :math:`2\gamma_{init} / 2^K \le 2\tau` below :math:`\gamma^*`.

    The paper's printout starts ``step`` at :math:`\gamma_{init}/2`; from there the search only
    reaches :math:`(\gamma_{init}/2, 3\gamma_{init}/2)` and, if the condition fails everywhere
    in that range, :math:`|\gamma_{succ} - \gamma| \to \gamma_{init}/2` and the loop never ends.
    The official code (``lamda_fail = lamda``) starts at :math:`\gamma_{init}`, as here.
    """
    gamma, step, gamma_succ = gamma_init, gamma_init, 0.0
    while step > tau:
        if holds(gamma):
            gamma_succ = gamma
            gamma = gamma + step / 2
        else:
            gamma = gamma - step / 2
        step = step / 2
    return gamma_succ


def agnostic_row(
    honest: Tensor, *, objective: str, kind: str, gamma_init: float, tau: float
) -> tuple[Tensor, float]:
    r"""The malicious row :math:`\mu + \gamma p` and the :math:`\gamma` found (float64 inside).

    With :math:`b = \mu + \gamma p`, :math:`\lVert b - x_i \rVert^2 = a_i + 2\gamma c_i +
    \gamma^2 \lVert p \rVert^2`, :math:`a_i = \lVert \mu - x_i \rVert^2`,
    :math:`c_i = \langle \mu - x_i, p \rangle`, so each test of the search costs :math:`O(h)`
    once :math:`a, c` are known. The honest pairwise squared distances come from one Gram
    matrix (:func:`~flarena.defenses._distances.pairwise_sq_distances`).

    ``min_max``: :math:`\max_i \lVert b - x_i \rVert^2 \le \max_{i,j} \lVert x_i - x_j \rVert^2`;
    ``min_sum``: :math:`\sum_i \lVert b - x_i \rVert^2 \le \min_i \sum_j \lVert x_i - x_j \rVert^2`
    (squared on both sides, as in the paper and its code; for min-max the same as unsquared).

    Parameters
    ----------
    honest : Tensor
        ``[h, d]`` finite honest rows, ``h >= 1``.
    objective : {"min_max", "min_sum"}
        The condition the search keeps true.
    kind : {"unit_vec", "sign", "std"}
        The perturbation (see :func:`perturbation`).
    gamma_init, tau : float
        The search's start and tolerance.

    Returns
    -------
    (Tensor, float)
        ``[d]`` row in ``honest``'s dtype and device, and :math:`\gamma`.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"invalid objective = {objective!r}; allowed: {', '.join(OBJECTIVES)}")
    h = honest.shape[0]
    if h == 1:  # no spread: both conditions allow only gamma = 0, the row itself
        return honest[0].clone(), 0.0
    x = honest.double()
    mu = x.mean(dim=0)
    p = perturbation(x, mu, kind)
    p_sq = float(p.square().sum())
    if p_sq == 0.0:  # mu = 0 with unit_vec, mu = 0 with sign, or identical rows with std
        return mu.to(honest.dtype), 0.0
    centred = mu - x  # [h, d] rows mu - x_i
    a = centred.square().sum(dim=1)  # [h] ||mu - x_i||^2
    c = centred @ p  # [h] <mu - x_i, p>
    dist = pairwise_sq_distances(x)  # [h, h], one Gram matrix
    max_bound = float(dist.max())
    sum_bound = float(dist.sum(dim=1).min())
    sum_a, sum_c = float(a.sum()), float(c.sum())

    def max_holds(gamma: float) -> bool:  # max_i ||b - x_i||^2 <= max_ij ||x_i - x_j||^2
        return float((a + (2.0 * gamma) * c + gamma * gamma * p_sq).max()) <= max_bound

    def sum_holds(gamma: float) -> bool:  # sum_i ||b - x_i||^2 <= min_i sum_j ||x_i - x_j||^2
        return sum_a + 2.0 * gamma * sum_c + h * gamma * gamma * p_sq <= sum_bound

    gamma = search_gamma(max_holds if objective == "min_max" else sum_holds, gamma_init, tau)
    row = mu + gamma * p
    return row.to(honest.dtype), gamma


def _positive_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"invalid {name} = {value!r}: must be a number")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"invalid {name} = {value!r}: must be a finite number > 0")
    return v


class AgrAgnosticAttack(ModelPoisoning):
    r"""Base of min-max and min-sum: validation, the perturbation and the search.

    Subclasses set :attr:`objective` (``"min_max"`` or ``"min_sum"``) and the docstring.
    ``craft`` records the :math:`\gamma` it used as ``ctx.info["opt_param"]`` (the engine
    reports it as the round's ``attack_param``).
    """

    threat_model: ClassVar[ThreatModel] = ThreatModel(sees_honest_updates=True)
    objective: ClassVar[str] = ""

    def __init__(
        self, *, perturbation: str = "unit_vec", gamma_init: float = 10.0, tau: float = 1e-5
    ) -> None:
        if not isinstance(perturbation, str) or perturbation not in PERTURBATIONS:
            raise ValueError(
                f"invalid perturbation = {perturbation!r}; allowed: {', '.join(PERTURBATIONS)}"
            )
        gamma_init = _positive_number("gamma_init", gamma_init)
        tau = _positive_number("tau", tau)
        if tau >= gamma_init:
            raise ValueError(
                f"invalid tau = {tau!r}: must be smaller than gamma_init = {gamma_init!r} "
                f"(the search would stop before its first step)"
            )
        self.perturbation = perturbation
        self.gamma_init = gamma_init
        self.tau = tau

    def craft(self, honest: Tensor, /, *, n_malicious: int, ctx: AttackContext) -> Tensor:
        """Return ``[n_malicious, d]`` copies of ``mu + gamma * p``."""
        honest, early = finite_honest(honest, n_malicious)
        if early is not None:
            return early
        row, gamma = agnostic_row(
            honest,
            objective=self.objective,
            kind=self.perturbation,
            gamma_init=self.gamma_init,
            tau=self.tau,
        )
        ctx.info["opt_param"] = gamma
        return row.expand(n_malicious, -1).clone()

    def get_params(self) -> dict[str, str | float]:
        """Constructor parameters."""
        return {"perturbation": self.perturbation, "gamma_init": self.gamma_init, "tau": self.tau}
