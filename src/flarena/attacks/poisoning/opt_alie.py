"""ALIE with its z line-searched against the defense in use (ByzFL's Opt-ALIE)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from flarena.attacks.poisoning._line_search import (
    maximise_damage,
    record_no_search,
    require_aggregator,
    search_params,
)
from flarena.attacks.poisoning.alie import DIRECTIONS
from flarena.core.contracts import AttackContext, ModelPoisoning, ThreatModel
from flarena.core.registry import register


@register("attack", "opt_alie")
class OptALIE(ModelPoisoning):
    r"""Optimal ALIE: ALIE with z line-searched to push the defended aggregate from the honest mean.

    For a candidate :math:`t` the malicious rows are ALIE's (see ``alie``), per coordinate
    :math:`k`,

    .. math:: b_k(t) = \mu_k \mp t\,\sigma_k

    (:math:`\mu, \sigma` the coordinate-wise mean and standard deviation of the :math:`h` honest
    rows, ``ddof`` as in ``alie``), all :math:`m` rows equal. The attack evaluates the server's
    whole defense pipeline ``ctx.aggregator`` on the round matrix
    :math:`X(t) = [x_1; \dots; x_h; b(t); \dots; b(t)]` (honest rows first) and maximises

    .. math:: s(t) = \lVert \mathrm{AGG}(X(t)) - \mu \rVert_2, \qquad t \in [t_\min, t_\max],

    computed in float64; it returns the rows for the best :math:`t` and records it in
    ``ctx.info["opt_param"]`` (with ``"opt_score"`` = :math:`s(t)` and ``"opt_evals"``, the
    aggregations made), for the engine to log each round.

    The search (``flarena.attacks.poisoning._line_search``): ``"golden"`` evaluates a grid of
    ``evals // 2 + 1`` evenly spaced :math:`t` (both ends included), then golden-section steps
    around the best grid point; with the defaults (:math:`[0, 10]`, 20 evaluations) the grid step
    is 1 and the final bracket :math:`2 \cdot 0.618^8 \approx 0.043` wide. ``"byzfl"`` is
    ByzFL's expansion--contraction search from :math:`t_\min` (step ``delta`` doubled while it
    improves, then shrunk by ``ratio``; proposals only above the current best, cut at
    :math:`t_\max`, which may be ``inf`` for ByzFL's unbounded search).

    Cost: at most ``evals`` calls of the defense pipeline on an :math:`[h + m, d]` matrix per
    round (20 by default: e.g. 20 Krum scorings, :math:`O(20\, n^2 d)`), plus one
    :math:`[h + m, d]` copy per call.

    Conventions (ByzFL 0.0.11 ``Optimal_ALittleIsEnough`` is the peer): the same objective
    (distance of the aggregate from the honest mean). Where flarena differs: the aggregator is
    the pipeline actually in use, not one given to the attack (ByzFL takes ``agg`` and
    ``pre_agg_list``, by default the mean after static clipping), and :math:`m` is the round's
    number of malicious rows, not a configured ``f``; the sign is ``direction="minus"``
    (:math:`\mu - t\sigma`, as ``alie``; ByzFL adds, :math:`\mu + t\sigma`) and
    :math:`\sigma` uses ``ddof=1`` as ByzFL's code does (its docstring says :math:`1/n`); the
    range is bounded, :math:`[0, 10]`, and searched on both sides of the first improving point
    (``search="golden"``), where ByzFL starts at 0 with step 10 and only ever proposes larger
    values, so an optimum between 0 and its first improving step is missed; scores in float64
    (ByzFL: the input dtype); a non-finite aggregate scores :math:`-\infty`; ties go to the
    smallest :math:`t`. ``search="byzfl", t_max=inf, direction="plus"`` reproduces ByzFL's
    search with its defaults (``start = 0, delta = 10, ratio = 0.8, evals = 20``).

    Edge cases: if every candidate gives a non-finite aggregate the answer is :math:`t_\min` (the
    base attack with the smallest :math:`t`); with no honest row the rows are zeros and no search
    is run (``ctx.info["opt_param"]`` is NaN, ``"opt_evals"`` 0); with one honest row
    (``ddof = 1``) :math:`\sigma = 0`, every candidate is that row and the tie rule answers
    :math:`t_\min`. Raises :class:`~flarena.core.errors.FlarenaError` if ``ctx.aggregator`` is
    None. No randomness.

    Baruch, Baruch, Goldberg, "A little is enough: circumventing defenses for distributed
    learning", NeurIPS 2019; the line search from ByzFL (Allouah, Farhadkhani, Guerraoui, Gupta,
    Pinot, Stephan, "Fixing by mixing: a recipe for optimal Byzantine ML under heterogeneity",
    AISTATS 2023).

    Parameters
    ----------
    t_min, t_max : float
        The range of :math:`z` searched, :math:`0 \le t_\min \le t_\max`; ``t_max = inf`` only
        with ``search="byzfl"``.
    evals : int
        Evaluations of the defense per round, ``>= 2``.
    search : {"golden", "byzfl"}
        Grid then golden section (default), or ByzFL's expansion--contraction.
    delta : float
        ``"byzfl"`` only: the first step above :math:`t_\min` (ByzFL's 10).
    ratio : float
        ``"byzfl"`` only: the step's contraction factor, in :math:`(0.5, 1)` (ByzFL's 0.8).
    direction : {"minus", "plus"}
        :math:`\mu - t\sigma` or :math:`\mu + t\sigma`.
    ddof : {0, 1}
        Delta degrees of freedom of :math:`\sigma`.
    """

    threat_model: ClassVar[ThreatModel] = ThreatModel(
        sees_honest_updates=True, knows_aggregator=True
    )

    def __init__(
        self,
        *,
        t_min: float = 0.0,
        t_max: float = 10.0,
        evals: int = 20,
        search: str = "golden",
        delta: float = 10.0,
        ratio: float = 0.8,
        direction: str = "minus",
        ddof: int = 1,
    ) -> None:
        self._search = search_params(
            t_min=t_min, t_max=t_max, evals=evals, search=search, delta=delta, ratio=ratio
        )
        if direction not in DIRECTIONS:
            raise ValueError(f"invalid direction = {direction!r}; allowed: {', '.join(DIRECTIONS)}")
        if isinstance(ddof, bool) or ddof not in (0, 1):
            raise ValueError(f"invalid ddof = {ddof!r}: must be 0 or 1")
        self.direction = direction
        self.ddof = int(ddof)

    def craft(self, honest: Tensor, /, *, n_malicious: int, ctx: AttackContext) -> Tensor:
        """Return ``[n_malicious, d]`` rows ``mu -/+ z * sigma`` with the most damaging ``z``."""
        if honest.ndim != 2:
            raise ValueError(f"expected honest rows [h, d], got shape {tuple(honest.shape)}")
        require_aggregator("opt_alie", ctx)
        h, d = honest.shape
        if n_malicious == 0 or h == 0:
            record_no_search(ctx)
            return honest.new_zeros(n_malicious, d)
        mu = honest.mean(0)
        sigma = honest.std(0, correction=self.ddof) if h > self.ddof else honest.new_zeros(d)
        sign = -1.0 if self.direction == "minus" else 1.0

        def row(t: float) -> Tensor:
            return mu + (sign * t) * sigma  # alie's expression, so the rows match it exactly

        return maximise_damage(
            "opt_alie", honest, row, n_malicious=n_malicious, ctx=ctx, params=self._search
        )

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""
        return {**self._search, "direction": self.direction, "ddof": self.ddof}
