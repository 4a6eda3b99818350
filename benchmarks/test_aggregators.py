"""Every aggregator and pre-aggregator on n = 50 rows of d = 10⁶ float32 on the CPU, side by side
with the same rule in ByzFL (``byzfl`` 0.0.11) and in Flower 1.42's robust math.

Run: ``python -m pytest benchmarks/test_aggregators.py -q`` (part of ``make bench``). The module
prints a markdown table at its end; ``benchmarks/aggregator_table.py`` rebuilds it from a
``--benchmark-json`` file. The ByzFL benchmarks are skipped when byzfl is not installed
(``pip install --no-deps byzfl==0.0.11``; see ``benchmarks/_peers.py``).

Method
------
- One seeded input, created once: 40 "honest" rows ``b + 0.5 ε_i`` around a shared random
  direction ``b`` and 10 "Byzantine" rows ``-2 b + 0.5 ε_i`` (200 MB of float32). Every
  contender gets the same memory: flarena and ByzFL the torch tensor, Flower its numpy view.
- ``f = 10`` throughout (Bulyan's ``n >= 4f + 3`` allows at most 11).
- Before it is timed, every contender runs once; its output is checked against flarena's
  (``torch.testing.assert_close``, or an exact row match for Krum), or against what a documented
  convention difference predicts (e.g. ByzFL's Krum with ``f`` equals flarena's with ``f - 1``).
  The check is recorded as the table's note. That run is also the contender's warm-up.
- All contenders run in this one process, on the same threads: torch's intra-op pool and
  numpy's OpenBLAS both default to every core. Numpy's sort and partition (Flower's median and
  trimmed mean) are single-threaded by design.
- ByzFL's ``Clipping`` and ``ARC`` modify their input in place, so they get a fresh copy of the
  rows before each round (made outside the timed region); the ``byzfl-copy`` variant times the
  copy too, as flarena always returns a new matrix. ByzFL's ``CenteredClipping`` keeps its last
  output as the next call's start, so a new instance is made in each call (from 0).
- Flower's legacy ``aggregate_bulyan`` loops over all pairs for each of its 30 Krum calls
  (about 16 s): it is timed once, and checked on that timed output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from benchmarks._peers import Flower, load_byzfl
from benchmarks.aggregator_table import Timing, markdown
from flarena.core.contracts import RoundContext, VectorKind
from flarena.defenses.aggregators.bulyan import Bulyan
from flarena.defenses.aggregators.centered_clipping import CenteredClipping
from flarena.defenses.aggregators.geometric_median import GeometricMedian
from flarena.defenses.aggregators.krum import Krum
from flarena.defenses.aggregators.mean import Mean
from flarena.defenses.aggregators.median import Median
from flarena.defenses.aggregators.multi_krum import MultiKrum
from flarena.defenses.aggregators.trimmed_mean import TrimmedMean
from flarena.defenses.preaggregators.arc import ARC
from flarena.defenses.preaggregators.bucketing import Bucketing
from flarena.defenses.preaggregators.clip import Clip
from flarena.defenses.preaggregators.nnm import NNM

N, D, F = 50, 10**6, 10
SEED = 20241125
TAU_CC = 100.0  # ByzFL's default centred-clipping radius
NU_GM, T_GM = 0.1, 3  # ByzFL's default geometric-median smoothing and iterations
BUCKET = 2
RTOL = ATOL = 1e-5
TIMED_SECONDS = 15.0  # rounds per contender: about this many seconds, between 1 and 11


def make_rows() -> Tensor:
    g = torch.Generator().manual_seed(SEED)
    base = torch.randn(D, generator=g)
    x = 0.5 * torch.randn(N, D, generator=g)
    x[: N - F] += base
    x[N - F :] -= 2.0 * base
    return x


@dataclass
class Data:
    x: Tensor
    xn: Any  # numpy view of x (same memory)
    clip_tau: float  # between the two middle row norms: static clipping shrinks half the rows
    byzfl: Any  # (aggregators, preaggregators) or None
    flower: Flower


def _ctx(n: int, **kw: Any) -> RoundContext:
    return RoundContext(
        round=1,
        client_ids=torch.arange(n),
        weights=torch.ones(n),
        vector_kind=VectorKind.UPDATE,
        **kw,
    )


# -- contenders: rule -> impl -> (data -> (callable, setup or None)) -------------------------
Run = tuple[Callable[..., Any], Callable[[], tuple[tuple[Any, ...], dict[str, Any]]] | None]


def _plain(fn: Callable[[], Any]) -> Run:
    return fn, None


def _fresh_copy(fn: Callable[[Tensor], Any], x: Tensor) -> Run:
    """For a rule that modifies its input: a new copy each round, made outside the timing."""
    return fn, lambda: ((x.clone(),), {})


def _flarena(rule: str, d: Data) -> Run:
    x = d.x
    rules: dict[str, Callable[[], Any]] = {
        "mean": lambda: Mean(weighted=False)(x),
        "median": lambda: Median()(x),
        "trimmed_mean": lambda: TrimmedMean(f=F)(x),
        "krum": lambda: Krum(f=F)(x),
        "multi_krum": lambda: MultiKrum(f=F, m=N - F)(x),
        "bulyan": lambda: Bulyan(f=F)(x),
        "geometric_median": lambda: GeometricMedian(nu=NU_GM, max_iter=T_GM, tol=0.0)(x),
        "centered_clipping": lambda: CenteredClipping(tau=TAU_CC, iters=1)(
            x, ctx=_ctx(N, previous_aggregate=torch.zeros(D))
        ),
        "nnm": lambda: NNM(f=F)(x),
        "bucketing": lambda: Bucketing(s=BUCKET)(x, ctx=_ctx(N, generator=_gen())),
        "clip": lambda: Clip(tau=d.clip_tau)(x),
        "arc": lambda: ARC(f=F)(x),
    }
    return _plain(rules[rule])


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(SEED)


def _byzfl(rule: str, d: Data) -> Run | None:
    if d.byzfl is None:
        return None
    agg, pre = d.byzfl
    x = d.x

    def bucketing() -> Any:
        torch.manual_seed(SEED)  # ByzFL permutes with torch's global generator
        return pre.Bucketing(s=BUCKET)(x)

    rules: dict[str, Run] = {
        "mean": _plain(lambda: agg.Average()(x)),
        "median": _plain(lambda: agg.Median()(x)),
        "trimmed_mean": _plain(lambda: agg.TrMean(f=F)(x)),
        "krum": _plain(lambda: agg.Krum(f=F)(x)),
        "multi_krum": _plain(lambda: agg.MultiKrum(f=F)(x)),
        "geometric_median": _plain(lambda: agg.GeometricMedian(nu=NU_GM, T=T_GM)(x)),
        "centered_clipping": _plain(lambda: agg.CenteredClipping(L=1, tau=TAU_CC)(x)),
        "nnm": _plain(lambda: pre.NNM(f=F)(x)),
        "bucketing": _plain(bucketing),
        "clip": _fresh_copy(lambda v: pre.Clipping(c=d.clip_tau)(v), x),
        "arc": _fresh_copy(lambda v: pre.ARC(f=F)(v), x),
    }
    return rules.get(rule)


def _flower(rule: str, d: Data) -> Run | None:
    fl, xn = d.flower, d.xn
    rules: dict[str, Callable[[], Any]] = {
        "median": lambda: fl.median(xn),
        "trimmed_mean": lambda: fl.trimmed_mean(xn, F / N),
        "krum": lambda: fl.krum(xn, F),
        "multi_krum": lambda: fl.multi_krum(xn, F, N - F),
        "bulyan": lambda: fl.bulyan(xn, F),
    }
    return _plain(rules[rule]) if rule in rules else None


def _flower_legacy(rule: str, d: Data) -> Run | None:
    fl, xn = d.flower, d.xn
    rules: dict[str, Callable[[], Any]] = {
        "median": lambda: fl.legacy_median(xn),
        "trimmed_mean": lambda: fl.legacy_trimmed_mean(xn, F / N),
        "krum": lambda: fl.legacy_krum(xn, F),
        "multi_krum": lambda: fl.legacy_multi_krum(xn, F, N - F),
        "bulyan": lambda: fl.legacy_bulyan(xn, F),
    }
    return _plain(rules[rule]) if rule in rules else None


def _byzfl_copy(rule: str, d: Data) -> Run | None:
    """ByzFL's in-place rules on a copy made inside the timed region (flarena never writes into
    its input, so it always pays for a new ``[n, d]`` matrix)."""
    if d.byzfl is None:
        return None
    pre, x = d.byzfl[1], d.x
    rules: dict[str, Callable[[], Any]] = {
        "clip": lambda: pre.Clipping(c=d.clip_tau)(x.clone()),
        "arc": lambda: pre.ARC(f=F)(x.clone()),
    }
    return _plain(rules[rule]) if rule in rules else None


CONTENDERS: dict[str, Callable[[str, Data], Run | None]] = {
    "flarena": lambda rule, d: _flarena(rule, d),
    "byzfl": _byzfl,
    "byzfl-copy": _byzfl_copy,
    "flower": _flower,
    "flower-legacy": _flower_legacy,
}
SLOW = {("bulyan", "flower-legacy")}  # timed once, checked on the timed output

RULES = [
    "mean",
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "bulyan",
    "geometric_median",
    "centered_clipping",
    "nnm",
    "bucketing",
    "clip",
    "arc",
]
SHARED = {
    "byzfl": set(RULES) - {"bulyan"},
    "byzfl-copy": {"clip", "arc"},
    "flower": {"median", "trimmed_mean", "krum", "multi_krum", "bulyan"},
    "flower-legacy": {"median", "trimmed_mean", "krum", "multi_krum", "bulyan"},
}
CASES = [(impl, r) for r in RULES for impl in CONTENDERS if impl == "flarena" or r in SHARED[impl]]


# -- agreement checks ------------------------------------------------------------------------
def _t(out: Any) -> Tensor:
    return out if isinstance(out, Tensor) else torch.from_numpy(np.asarray(out))


def _close(out: Any, want: Tensor, what: str = "equal") -> str:
    got = _t(out).to(want.dtype)
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
    return f"{what} (max abs diff {float((got - want).abs().max()):.1e})"


def _row_index(x: Tensor, row: Tensor) -> int:
    hits = [i for i in range(x.shape[0]) if torch.equal(x[i], row)]
    assert len(hits) == 1, "the output is not one of the input rows"
    return hits[0]


def _bulyan_step2(chosen: Tensor, f: int) -> Tensor:
    """Flarena's Bulyan aggregation step on given rows (mean of the θ − 2f closest to the
    coordinate-wise median, ties to the lowest row), as written in its docstring."""
    from flarena.defenses.aggregators.median import coordinate_median

    beta = chosen.shape[0] - 2 * f
    deviation = (chosen - coordinate_median(chosen)).abs()
    closest = torch.argsort(deviation, dim=0, stable=True)[:beta]
    return chosen.gather(0, closest).mean(dim=0)


def _close_up_to_ties(out: Any, want: Tensor, chosen: Tensor, beta: int) -> int:
    """Assert ``out`` equals ``want`` except where the ``beta``-th and ``beta + 1``-th smallest
    distances to the median tie (up to float32 rounding of the median); return that count."""
    got = _t(out).to(want.dtype)
    bad = ~torch.isclose(got, want, rtol=RTOL, atol=ATOL)
    if bool(bad.any()):
        cols = chosen[:, bad]
        median = torch.from_numpy(np.median(cols.numpy(), axis=0))
        deviation = (cols - median).abs().sort(dim=0).values
        torch.testing.assert_close(deviation[beta - 1], deviation[beta], rtol=1e-5, atol=1e-6)
    return int(bad.sum())


def check(rule: str, impl: str, out: Any, ref: Tensor, d: Data) -> str:
    """Assert ``out`` (``impl``'s output) agrees with flarena's ``ref``; return the note."""
    x = d.x
    if impl == "flarena":
        torch.testing.assert_close(_t(out), ref, rtol=0, atol=0)
        return ""
    if rule == "krum":
        got = _row_index(x, _t(out))
        if impl == "byzfl":
            want_row = _row_index(x, Krum(f=F - 1)(x))
            assert got == want_row
            return (
                f"same row ({got}) as flarena with f = {F - 1}: ByzFL scores n − f − 1 "
                "neighbours, flarena n − f − 2 (Blanchard et al.)"
            )
        assert got == _row_index(x, ref)
        return f"same row ({got})"
    if rule == "multi_krum":
        if impl == "byzfl":
            want = MultiKrum(f=F - 1, m=N - F)(x)
            return _close(
                out, want, f"equals flarena with f = {F - 1}, m = {N - F} (n − f − 1 nbrs)"
            )
        return _close(out, ref)
    if rule == "bulyan":
        ours_rows = set(Bulyan(f=F).select(x).nonzero().squeeze(1).tolist())
        if impl == "flower":
            theirs_rows = set(d.flower.select(d.xn, F, N - 2 * F))
        else:  # the legacy aggregate_bulyan selects by repeated Krum, as flarena does
            theirs_rows = ours_rows
        chosen = x[sorted(theirs_rows)]
        ties = _close_up_to_ties(out, _bulyan_step2(chosen, F), chosen, N - 4 * F)
        tie_note = (
            f"; {ties} coordinates differ by a tie at the {N - 4 * F}-th closest value "
            "(flarena: lowest row; Flower: np.argpartition's order)"
            if ties
            else ""
        )
        if ours_rows == theirs_rows:
            return f"equal, same {N - 2 * F} rows selected{tie_note}"
        differ = len(ours_rows ^ theirs_rows) // 2
        return (
            f"selects by one Multi-Krum ranking ({differ} of {N - 2 * F} rows differ from "
            f"repeated Krum); equals flarena's step 2 on Flower's rows{tie_note}"
        )
    if rule == "geometric_median":
        # ByzFL starts from 0, flarena from the mean: 3 iterations differ, the limit must not.
        cols = slice(0, 20_000)
        sub = x[:, cols].contiguous()
        byz_limit = _t(d.byzfl[0].GeometricMedian(nu=NU_GM, T=500)(sub))
        our_limit = GeometricMedian(nu=NU_GM, max_iter=500, tol=0.0)(sub)
        torch.testing.assert_close(byz_limit, our_limit, rtol=1e-4, atol=1e-4)
        gap = float((_t(out) - ref).norm() / ref.norm())
        return (
            f"starts from 0 (flarena: the mean); after {T_GM} iterations relative gap {gap:.1e}; "
            f"after 500 iterations (first 2·10⁴ coordinates) max abs diff "
            f"{float((byz_limit - our_limit).abs().max()):.1e}"
        )
    if rule in ("clip", "arc"):
        # ByzFL scales by a float32 row norm (about 1e-5 off at d = 10⁶): compare both to float64
        x64 = x.double()
        norms = torch.linalg.vector_norm(x64, dim=1)
        k = ARC(f=F).clipped_count(N)
        radius = d.clip_tau if rule == "clip" else float(norms.sort().values[N - k - 1])
        exact = x64 * (radius / norms).clamp(max=1.0)[:, None]
        theirs, ours = _t(out).double(), ref.double()
        torch.testing.assert_close(ours, exact, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(theirs, exact, rtol=1e-4, atol=1e-4)

        def rel(a: Tensor) -> float:
            return float(((a - exact).abs() / exact.abs().clamp(min=1e-3)).max())

        return (
            f"equal up to rounding: max rel. diff from float64 {rel(theirs):.0e} "
            f"(flarena {rel(ours):.0e}; ByzFL's row norms are float32)"
        )
    if rule == "centered_clipping":
        return _close(out, ref, "equal (both start from 0, τ = 100, L = 1)")
    if rule == "bucketing":
        return _close(out, ref, "equal (same permutation: same seed, torch.randperm)")
    return _close(out, ref)


# -- the benchmark ---------------------------------------------------------------------------
RESULTS: list[Timing] = []
REFERENCE: dict[str, Tensor] = {}


@pytest.fixture(scope="module")
def data(request: pytest.FixtureRequest) -> Any:
    x = make_rows()
    norms = torch.linalg.vector_norm(x.double(), dim=1).sort().values
    d = Data(
        x=x,
        xn=x.numpy(),
        clip_tau=float(norms[N // 2 - 1] + norms[N // 2]) / 2,  # no row on the radius
        byzfl=load_byzfl(),
        flower=Flower(),
    )
    yield d
    assert torch.equal(d.x, make_rows()), "a contender modified the shared input"
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is not None and capture is not None and RESULTS:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_sep(
                "-",
                f"aggregators: n = {N}, d = {D}, float32, CPU, "
                f"{torch.get_num_threads()} torch threads",
            )
            for line in markdown(RESULTS, RULES).splitlines():
                reporter.write_line(line)


@pytest.mark.parametrize(("impl", "rule"), CASES, ids=[f"{r}-{i}" for i, r in CASES])
def test_aggregator(benchmark: Any, data: Data, impl: str, rule: str) -> None:
    run = CONTENDERS[impl](rule, data)
    if run is None:
        pytest.skip(f"{impl} is not installed")
    fn, setup = run
    if rule not in REFERENCE:
        REFERENCE[rule] = _t(_flarena(rule, data)[0]())
    benchmark.group = f"aggregator: {rule}"
    benchmark.extra_info.update(rule=rule, impl=impl)

    def once() -> Any:
        args, kwargs = setup() if setup is not None else ((), {})
        return fn(*args, **kwargs)

    if (rule, impl) in SLOW:
        out = benchmark.pedantic(fn, setup=setup, rounds=1, warmup_rounds=0)
        note = check(rule, impl, out, REFERENCE[rule], data)
    else:
        start = time.perf_counter()
        out = once()  # the check run, also the warm-up
        elapsed = time.perf_counter() - start
        note = check(rule, impl, out, REFERENCE[rule], data)
        del out
        rounds = max(1, min(11, int(TIMED_SECONDS / max(elapsed, 1e-3))))
        benchmark.pedantic(fn, setup=setup, rounds=rounds, warmup_rounds=0)
    benchmark.extra_info["note"] = note
    if benchmark.disabled:  # --benchmark-disable: the checks ran, nothing was timed
        return
    stats = benchmark.stats.stats
    RESULTS.append(Timing(rule, impl, float(stats.median), float(stats.min), stats.rounds, note))
