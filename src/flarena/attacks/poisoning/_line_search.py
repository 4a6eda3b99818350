r"""One-dimensional maximisation of an attack parameter, shared by the adaptive attacks.

An adaptive ("optimal") attack has one scalar parameter :math:`t` (ALIE's :math:`z`, IPM's
:math:`\varepsilon`, ...) and a score :math:`s(t)`, the damage the rows crafted with :math:`t`
do to the defense in use (one aggregation per evaluation). This module finds a :math:`t` with a
large score in :math:`[t_\min, t_\max]` with a fixed budget of evaluations, by one of two
searches:

``"golden"`` (flarena's default), a coarse grid then golden-section refinement:

1. evaluate the :math:`g = \lfloor \mathrm{evals}/2 \rfloor + 1` evenly spaced points
   :math:`t_i = t_\min + i\Delta`, :math:`\Delta = (t_\max - t_\min)/(g - 1)`, both ends included;
2. take the best grid point :math:`t_i` and spend the other :math:`r = \mathrm{evals} - g`
   evaluations on a golden-section search in the bracket :math:`[t_{i-1}, t_{i+1}]` (cut at the
   ends of the range). After :math:`r \ge 2` evaluations the bracket is
   :math:`2\Delta\varphi^{r-1}` wide, :math:`\varphi = (\sqrt5 - 1)/2 \approx 0.618`; if the
   score is unimodal in the bracket (increasing then decreasing, or increasing up to a cliff or a
   plateau) the answer is within that width of the best :math:`t`.

   E.g. 20 evaluations on :math:`[0, 10]`: 11 grid points (:math:`\Delta = 1`), 9 golden-section
   steps, final bracket :math:`2 \cdot 0.618^8 \approx 0.043`.

``"byzfl"``, ByzFL 0.0.11's expansion--contraction search (``Optimal_ALittleIsEnough`` and
``Optimal_InnerProductManipulation``, ``_expansion_phase`` / ``_contraction_phase``):

1. :math:`x = t_\min` (ByzFL's ``start``), step :math:`\delta`; *expansion*: propose
   :math:`x + \delta`; if strictly better, move there and double :math:`\delta`; at the first
   proposal that is not better, :math:`\delta \leftarrow \rho\delta` and stop expanding;
2. *contraction*: until the budget is spent, propose :math:`x + \delta`, move there if strictly
   better, and :math:`\delta \leftarrow \rho\delta` in any case.

   Every proposal lies *above* the current best, so the search never returns below its first
   improving step (e.g. with :math:`\delta = 10` an optimum at 3 is missed once 10 beat 0).
   ByzFL is unbounded; here a proposal is cut at :math:`t_\max`, which may be :math:`+\infty`
   to reproduce ByzFL exactly (its defaults: ``start = 0``, :math:`\delta = 10`,
   :math:`\rho = 0.8`, 20 evaluations).

Conventions common to both: a score that is NaN or infinite counts as :math:`-\infty` (such a
candidate is never preferred to a measurable one); ties go to the smallest :math:`t` (the least
conspicuous of equally damaging parameters), so if every score is :math:`-\infty` the answer is
:math:`t_\min`; a :math:`t` evaluated twice is scored once (the score is assumed deterministic).
The search is deterministic: it draws no random numbers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flarena.core.contracts import AttackContext
from flarena.core.errors import FlarenaError

SEARCHES = ("golden", "byzfl")

#: :math:`\varphi = (\sqrt5 - 1)/2`, the golden-section ratio.
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class LineSearchResult:
    r"""What a line search found.

    Attributes
    ----------
    t : float
        The best parameter evaluated (ties: the smallest).
    score : float
        Its score (:math:`-\infty` if no score was finite).
    evals : int
        Number of calls of the score function (distinct parameters evaluated).
    trace : tuple of (float, float)
        ``(t, score)`` of every call, in order.
    """

    t: float
    score: float
    evals: int
    trace: tuple[tuple[float, float], ...]


class _Scorer:
    """Memoised score; non-finite scores become ``-inf``; keeps the best (ties: smallest t)."""

    def __init__(self, score: Callable[[float], float]) -> None:
        self._score = score
        self._cache: dict[float, float] = {}
        self.trace: list[tuple[float, float]] = []

    def __call__(self, t: float) -> float:
        t = float(t)
        if t in self._cache:
            return self._cache[t]
        y = float(self._score(t))
        if not math.isfinite(y):
            y = -math.inf
        self._cache[t] = y
        self.trace.append((t, y))
        return y

    def result(self) -> LineSearchResult:
        t, y = min(self.trace, key=lambda p: (-p[1], p[0]))
        return LineSearchResult(t=t, score=y, evals=len(self.trace), trace=tuple(self.trace))


def golden_search(
    score: Callable[[float], float], t_min: float, t_max: float, evals: int
) -> LineSearchResult:
    """Grid of ``evals // 2 + 1`` points, then golden section around the best (module docstring)."""
    f = _Scorer(score)
    if t_min == t_max:
        f(t_min)
        return f.result()
    g = evals // 2 + 1
    step = (t_max - t_min) / (g - 1)
    grid = [t_min + i * step for i in range(g - 1)] + [t_max]
    values = [f(t) for t in grid]
    best = max(range(g), key=lambda i: (values[i], -i))  # ties: the smallest t
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, g - 1)]
    budget = evals - g
    if budget <= 0:
        return f.result()
    c = b - GOLDEN * (b - a)
    d = a + GOLDEN * (b - a)
    fc = f(c)
    budget -= 1
    if budget == 0:
        return f.result()
    fd = f(d)
    budget -= 1
    while budget > 0:
        if fc >= fd:  # the maximum is in [a, d]; on a tie keep the smaller t
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = f(c)
        else:  # in [c, b]
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = f(d)
        budget -= 1
    return f.result()


def byzfl_search(
    score: Callable[[float], float],
    t_min: float,
    t_max: float,
    evals: int,
    *,
    delta: float,
    ratio: float,
) -> LineSearchResult:
    """ByzFL's expansion--contraction search from ``t_min``, proposals cut at ``t_max``."""
    f = _Scorer(score)
    best_x = t_min
    best_y = f(best_x)
    remaining = evals - 1
    while remaining > 0:  # expansion
        x = min(best_x + delta, t_max)
        y = f(x)
        remaining -= 1
        if y > best_y:
            best_x, best_y = x, y
            delta *= 2.0
        else:
            delta *= ratio
            break
    while remaining > 0:  # contraction
        x = min(best_x + delta, t_max)
        y = f(x)
        remaining -= 1
        if y > best_y:
            best_x, best_y = x, y
        delta *= ratio
    # ByzFL keeps the first of equal scores; every proposal is above best_x, so that is also
    # the smallest t among the ties -- the same rule as _Scorer.result
    return LineSearchResult(t=best_x, score=best_y, evals=len(f.trace), trace=tuple(f.trace))


def line_search(
    score: Callable[[float], float],
    *,
    t_min: float,
    t_max: float,
    evals: int,
    search: str = "golden",
    delta: float = 10.0,
    ratio: float = 0.8,
) -> LineSearchResult:
    """Maximise ``score`` over ``[t_min, t_max]`` with at most ``evals`` evaluations.

    Parameters
    ----------
    score : callable
        ``t -> float``, deterministic; NaN or infinite results count as ``-inf``.
    t_min, t_max : float
        The range searched (``t_max`` may be ``inf`` for ``search="byzfl"`` only).
    evals : int
        Budget of evaluations, ``>= 2``.
    search : {"golden", "byzfl"}
        Grid plus golden section, or ByzFL's expansion--contraction (module docstring).
    delta, ratio : float
        ByzFL's initial step and contraction ratio; ignored by ``"golden"``.

    Returns
    -------
    LineSearchResult
    """
    if search == "golden":
        return golden_search(score, t_min, t_max, evals)
    if search == "byzfl":
        return byzfl_search(score, t_min, t_max, evals, delta=delta, ratio=ratio)
    raise ValueError(f"invalid search = {search!r}; allowed: {', '.join(SEARCHES)}")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"invalid {name} = {value!r}: must be a number")
    return float(value)


def search_params(
    *, t_min: Any, t_max: Any, evals: Any, search: Any, delta: Any, ratio: Any
) -> dict[str, Any]:
    """Validate the search's constructor parameters; return them normalised.

    ``0 <= t_min <= t_max``, both finite (``t_max = inf`` is allowed with ``search="byzfl"``,
    ByzFL's unbounded search); ``evals`` an integer ``>= 2``; ``delta`` finite ``> 0``;
    ``ratio`` in ``(0.5, 1)`` (ByzFL's bounds). ``TypeError`` for a non-number, ``ValueError``
    naming the parameter otherwise.
    """
    if search not in SEARCHES:
        raise ValueError(f"invalid search = {search!r}; allowed: {', '.join(SEARCHES)}")
    lo = _number("t_min", t_min)
    if not (math.isfinite(lo) and lo >= 0.0):
        raise ValueError(f"invalid t_min = {t_min!r}: must be a finite number >= 0")
    hi = _number("t_max", t_max)
    if math.isnan(hi) or hi < lo:
        raise ValueError(f"invalid t_max = {t_max!r}: must be a number >= t_min = {lo!r}")
    if math.isinf(hi) and search != "byzfl":
        raise ValueError(
            f"invalid t_max = {t_max!r}: must be finite (an unbounded range needs search='byzfl')"
        )
    if isinstance(evals, bool) or not isinstance(evals, numbers.Integral) or evals < 2:
        raise ValueError(f"invalid evals = {evals!r}: must be an integer >= 2")
    step = _number("delta", delta)
    if not (math.isfinite(step) and step > 0.0):
        raise ValueError(f"invalid delta = {delta!r}: must be a finite number > 0")
    rho = _number("ratio", ratio)
    if not (0.5 < rho < 1.0):
        raise ValueError(f"invalid ratio = {ratio!r}: must be a number in (0.5, 1)")
    return {
        "t_min": lo,
        "t_max": hi,
        "evals": int(evals),
        "search": str(search),
        "delta": step,
        "ratio": rho,
    }


def require_aggregator(name: str, ctx: AttackContext) -> Any:
    """``ctx.aggregator``, or a :class:`FlarenaError` saying the attack cannot run without it."""
    if ctx.aggregator is None:
        raise FlarenaError(
            f"{name} needs the defense pipeline: ctx.aggregator is None (the engine fills it in "
            f"for an attack whose threat_model.knows_aggregator is true; a hand-made "
            f"AttackContext must pass aggregator=<callable [n, d] -> [d]>)"
        )
    return ctx.aggregator


def maximise_damage(
    name: str,
    honest: Tensor,
    row: Callable[[float], Tensor],
    *,
    n_malicious: int,
    ctx: AttackContext,
    params: dict[str, Any],
) -> Tensor:
    r"""Rows ``row(t)`` for the ``t`` that moves the defended aggregate furthest from the mean.

    For a candidate ``t`` the round matrix is ``cat([honest, row(t) repeated n_malicious
    times])`` (honest rows first), the score is
    :math:`\lVert \mathrm{agg}(\text{matrix}) - \mu_{\text{honest}} \rVert_2` computed in
    float64 (:math:`-\infty` for a non-finite aggregate), and ``t`` is searched with
    :func:`line_search` and ``params`` (the output of :func:`search_params`). Records
    ``ctx.info["opt_param"]`` (the chosen ``t``), ``ctx.info["opt_score"]`` (its score) and
    ``ctx.info["opt_evals"]`` (aggregations made). ``honest`` must have at least one row.
    """
    aggregator = require_aggregator(name, ctx)
    h, d = honest.shape
    mu = honest.to(torch.float64).mean(0)

    def score(t: float) -> float:
        matrix = torch.cat([honest, row(t).expand(n_malicious, d)], dim=0)
        agg = aggregator(matrix)
        if not isinstance(agg, Tensor) or tuple(agg.shape) != (d,):
            shape = tuple(agg.shape) if isinstance(agg, Tensor) else type(agg).__name__
            raise FlarenaError(
                f"{name}: ctx.aggregator returned {shape} for a [{h + n_malicious}, {d}] matrix, "
                f"expected a [{d}] tensor"
            )
        if not bool(torch.isfinite(agg).all()):
            return -math.inf
        return float(torch.linalg.vector_norm(agg.to(torch.float64) - mu))

    with torch.no_grad():
        found = line_search(
            score,
            t_min=params["t_min"],
            t_max=params["t_max"],
            evals=params["evals"],
            search=params["search"],
            delta=params["delta"],
            ratio=params["ratio"],
        )
        out = row(found.t).expand(n_malicious, d).clone()
    ctx.info["opt_param"] = float(found.t)
    ctx.info["opt_score"] = float(found.score)
    ctx.info["opt_evals"] = int(found.evals)
    return out


def record_no_search(ctx: AttackContext) -> None:
    """``ctx.info`` when no search ran (no honest row, or no malicious row): NaN, 0 evaluations."""
    ctx.info["opt_param"] = math.nan
    ctx.info["opt_score"] = math.nan
    ctx.info["opt_evals"] = 0
