"""Checks of the update-matrix rules: aggregators, pre-aggregators and client transforms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from flarena.core.contracts import RoundContext, VectorKind
from flarena.testing._common import NamedCheck, Plugin, assert_close, seeded

__all__ = ["aggregator_checks", "defense_checks", "preaggregator_checks"]

#: Columns of the test matrices.
D = 6
DTYPES = (torch.float32, torch.float64)
ShapeRule = Callable[[Tensor, Tensor], str | None]


def declared_f(obj: Any) -> int:
    """The plugin's ``f`` attribute (number of Byzantine rows it is built for), else 0."""
    f = getattr(obj, "f", None)
    return int(f) if isinstance(f, int | float) and not isinstance(f, bool) and f >= 0 else 0


def rows_for(obj: Any) -> int:
    """Rows of the test matrix: enough for the strictest robust rule, ``n >= 4f + 3``."""
    return max(11, 4 * declared_f(obj) + 3)


def needs_server_update(obj: Any) -> bool:
    """Whether the rule declares ``root_examples`` (FLTrust): it then needs ctx.server_update."""
    r = getattr(obj, "root_examples", None)
    return isinstance(r, int) and not isinstance(r, bool)


def server_row(device: torch.device | str = "cpu") -> Tensor:
    """The fixed seeded ``[D]`` server update given to a rule that declares ``root_examples``."""
    return torch.randn(D, generator=seeded(13)).to(device)


def make_ctx(
    n: int,
    f: int,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    server_update: Tensor | None = None,
) -> RoundContext:
    """A round context with uniform weights, as the engine would pass for ``n`` rows."""
    return RoundContext(
        round=1,
        client_ids=torch.arange(n, device=device),
        weights=torch.ones(n, device=device),
        vector_kind=VectorKind.UPDATE,
        declared_f=f,
        generator=seeded(seed, device),
        server_update=server_update,
    )


def matrix(n: int, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> Tensor:
    """A seeded ``[n, D]`` standard normal matrix."""
    return torch.randn(n, D, generator=seeded(seed), dtype=dtype)


class _Rule:
    """Calls a fresh rule on a seeded matrix and checks the result is a tensor."""

    def __init__(self, plugin: Plugin, what: str) -> None:
        self.plugin, self.what = plugin, what
        probe = plugin.make()
        self.f, self.n = declared_f(probe), rows_for(probe)
        self.root = needs_server_update(probe)

    def ctx(
        self,
        n: int | None = None,
        *,
        seed: int = 0,
        device: str = "cpu",
        server_update: Tensor | None = None,
    ) -> RoundContext:
        """A uniform context; with :func:`server_row` for a rule that declares ``root_examples``."""
        if server_update is None and self.root:
            server_update = server_row(device)
        return make_ctx(
            self.n if n is None else n,
            self.f,
            seed=seed,
            device=device,
            server_update=server_update,
        )

    def __call__(self, x: Tensor, *, ctx: RoundContext | None | str = "default") -> Tensor:
        """Call a fresh instance on ``x``; ``ctx="default"`` builds a uniform context."""
        rule = self.plugin.make()
        c = self.ctx(x.shape[0], device=str(x.device)) if isinstance(ctx, str) else ctx
        try:
            out = rule(x, ctx=c)
        except Exception as exc:
            raise AssertionError(
                f"{self.plugin.label}: calling the {self.what} on a [{x.shape[0]}, {x.shape[1]}] "
                f"{x.dtype} tensor (ctx={'None' if c is None else 'RoundContext'}) raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(out, Tensor):
            raise AssertionError(
                f"{self.plugin.label}: returned {type(out).__name__}, not a Tensor"
            )
        return out

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"{self.plugin.label} ({self.what}, n={self.n}, d={D}): {message}")


def _common(get: Callable[[], _Rule], shape_ok: ShapeRule) -> list[NamedCheck]:
    """Checks shared by the three kinds: shape, dtype, device, no mutation, finite, seeded."""

    def output_shape() -> None:
        rule = get()
        x = matrix(rule.n)
        if (msg := shape_ok(x, rule(x))) is not None:
            raise rule.fail(msg)

    def dtype_kept() -> None:
        rule = get()
        for dtype in DTYPES:
            out = rule(matrix(rule.n, dtype=dtype))
            if out.dtype != dtype:
                raise rule.fail(f"a {dtype} input gave a {out.dtype} output")

    def device_kept() -> None:
        rule = get()
        for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
            out = rule(matrix(rule.n).to(dev))
            if out.device.type != dev:
                raise rule.fail(f"a {dev} input gave an output on {out.device}")

    def no_mutation() -> None:
        rule = get()
        x, ctx = matrix(rule.n), rule.ctx()
        # a rule may *replace* ctx.weights (bucketing: per-bucket sums); it must not write into them
        original, before, weights = ctx.weights, x.clone(), ctx.weights.clone()
        rule(x, ctx=ctx)
        if not torch.equal(x, before):
            raise rule.fail("the input matrix was modified in place; work on a copy")
        if not torch.equal(original, weights):
            raise rule.fail("ctx.weights was modified in place")

    def finite_output() -> None:
        rule = get()
        if not torch.isfinite(rule(matrix(rule.n) * 100)).all():
            raise rule.fail("a finite input gave a non-finite output")

    def deterministic() -> None:
        rule = get()
        x = matrix(rule.n)
        a, b = rule(x, ctx=rule.ctx(seed=7)), rule(x, ctx=rule.ctx(seed=7))
        if a.shape != b.shape or not torch.equal(a, b):
            raise rule.fail(
                "two fresh instances given the same input and the same ctx.generator seed "
                "returned different outputs; take all randomness from ctx.generator"
            )

    return [
        ("output_shape", output_shape),
        ("dtype_kept", dtype_kept),
        ("device_kept", device_kept),
        ("no_mutation", no_mutation),
        ("finite_output", finite_output),
        ("deterministic", deterministic),
    ]


def _lazy(plugin: Plugin, what: str) -> Callable[[], _Rule]:
    """Build the :class:`_Rule` (which constructs the plugin) only when a check runs."""
    cache: list[_Rule] = []

    def get() -> _Rule:
        if not cache:
            cache.append(_Rule(plugin, what))
        return cache[0]

    return get


def aggregator_checks(plugin: Plugin) -> list[NamedCheck]:
    """Checks of an aggregator ``[n, d] -> [d]``."""
    get = _lazy(plugin, "aggregator")

    def shape_ok(x: Tensor, out: Tensor) -> str | None:
        want = (x.shape[1],)
        return None if tuple(out.shape) == want else f"output shape {tuple(out.shape)}, want {want}"

    def ctx_none() -> None:
        rule = get()
        out = rule(matrix(rule.n), ctx=None)
        if tuple(out.shape) != (D,):
            raise rule.fail(f"with ctx=None the output shape is {tuple(out.shape)}, want ({D},)")

    def round_context() -> None:
        rule = get()
        out = rule(matrix(rule.n), ctx=rule.ctx())
        if tuple(out.shape) != (D,):
            raise rule.fail(f"with a RoundContext the output shape is {tuple(out.shape)}")

    def permutation_invariance() -> None:
        rule = get()
        x = matrix(rule.n, dtype=torch.float64)
        perm = torch.randperm(rule.n, generator=seeded(3))
        ctx_p = rule.ctx()
        ctx_p.weights, ctx_p.client_ids = ctx_p.weights[perm], ctx_p.client_ids[perm]
        expected, actual = rule(x, ctx=rule.ctx()), rule(x[perm], ctx=ctx_p)
        assert_close(actual, expected, f"{plugin.label}: permuting the rows changed the output")

    def translation_equivariance() -> None:
        rule = get()
        x = matrix(rule.n, dtype=torch.float64)
        c = torch.randn(D, generator=seeded(5), dtype=torch.float64) * 3
        expected, actual = rule(x) + c, rule(x + c)
        assert_close(actual, expected, f"{plugin.label}: agg(x + c) != agg(x) + c")

    def identical_rows() -> None:
        rule = get()
        row = torch.randn(D, generator=seeded(11), dtype=torch.float64)
        # a rule with a server update (FLTrust) is given that same row as the server's update
        c = rule.ctx(server_update=row) if rule.root else "default"
        out = rule(row.expand(rule.n, D).clone(), ctx=c)
        assert_close(out, row, f"{plugin.label}: {rule.n} identical rows did not give that row")

    return [
        *_common(get, shape_ok),
        ("ctx_none", ctx_none),
        ("round_context", round_context),
        ("permutation_invariance", permutation_invariance),
        ("translation_equivariance", translation_equivariance),
        ("identical_rows", identical_rows),
    ]


def preaggregator_checks(plugin: Plugin) -> list[NamedCheck]:
    """Checks of a pre-aggregator ``[n, d] -> [m, d]``."""
    get = _lazy(plugin, "pre-aggregator")

    def shape_ok(x: Tensor, out: Tensor) -> str | None:
        if out.ndim != 2 or out.shape[1] != x.shape[1] or out.shape[0] < 1:
            return f"output shape {tuple(out.shape)}, want [m >= 1, {x.shape[1]}]"
        return None

    def identical_rows() -> None:
        rule = get()
        row = torch.randn(D, generator=seeded(11), dtype=torch.float64)
        out = rule(row.expand(rule.n, D).clone())
        if out.ndim != 2 or out.shape[0] < 1:
            raise rule.fail(f"output shape {tuple(out.shape)} for identical rows")
        assert_close(out, row.expand_as(out), f"{plugin.label}: identical rows were changed")

    return [*_common(get, shape_ok), ("identical_rows", identical_rows)]


def defense_checks(plugin: Plugin) -> list[NamedCheck]:
    """Checks of a client-side transform ``[n, d] -> [n, d]``."""

    def shape_ok(x: Tensor, out: Tensor) -> str | None:
        ok = tuple(out.shape) == tuple(x.shape)
        return None if ok else f"output shape {tuple(out.shape)}, want {tuple(x.shape)}"

    return _common(_lazy(plugin, "client transform"), shape_ok)
