"""Checks of poisoning attacks: model poisoning (``craft``) and data poisoning (``poison``)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flarena.core.contracts import (
    AttackContext,
    NeighbourhoodView,
    ThreatModel,
    VectorKind,
    is_data_poisoning,
    is_model_poisoning,
)
from flarena.testing._common import NamedCheck, Plugin, seeded

__all__ = ["attack_checks"]

D = 6  # columns of the update matrix
HONEST = 8  # honest rows of the round
NUM_CLASSES = 10
IMAGE = (1, 8, 8)


def _ctx(
    m: int, *, seed: int = 0, dtype: torch.dtype = torch.float32, h: int = HONEST
) -> AttackContext:
    """A round's context, which also describes a gossip neighbourhood.

    Row 0 is the victim; every row and every malicious sender has weight ``1 / (HONEST + m)``.
    Federated attacks ignore the neighbourhood; decentralized ones (e.g. dissensus) use it.
    """
    from flarena.defenses.aggregators.mean import Mean

    w = 1.0 / (HONEST + m)
    victim = torch.randn(HONEST, D, generator=seeded(1), dtype=dtype)[0]
    return AttackContext(
        round=1,
        malicious_ids=torch.arange(HONEST, HONEST + m),
        n_clients=HONEST + m,
        vector_kind=VectorKind.UPDATE,
        generator=seeded(seed),
        rng=np.random.default_rng(seed),
        global_params=torch.randn(D, generator=seeded(99), dtype=dtype),
        num_classes=NUM_CLASSES,
        aggregator=Mean(),
        neighbourhood=NeighbourhoodView(
            node=0,
            model=victim,
            weights=torch.full((h,), w, dtype=dtype),
            byzantine_weight=m * w,
            n_honest_neighbours=HONEST - 1,
        ),
    )


def _threat_model(obj: Any) -> ThreatModel:
    tm = getattr(obj, "threat_model", None)
    if not isinstance(tm, ThreatModel):
        raise AssertionError(
            f"{type(obj).__name__}: a model-poisoning attack must declare "
            f"`threat_model: ClassVar[ThreatModel]`, got {tm!r}"
        )
    return tm


def _honest(obj: Any, dtype: torch.dtype = torch.float32) -> Tensor:
    """The honest rows the engine would pass: all of them if the attacker sees them, else none."""
    x = torch.randn(HONEST, D, generator=seeded(1), dtype=dtype)
    return x if _threat_model(obj).sees_honest_updates else x[:0].clone()


def _craft(plugin: Plugin, honest: Tensor, m: int, *, seed: int = 0) -> Tensor:
    attack = plugin.make()
    try:
        ctx = _ctx(m, seed=seed, dtype=honest.dtype, h=honest.shape[0])
        out = attack.craft(honest, n_malicious=m, ctx=ctx)
    except Exception as exc:
        raise AssertionError(
            f"{plugin.label}: craft(honest [{honest.shape[0]}, {D}] {honest.dtype}, "
            f"n_malicious={m}) raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, Tensor):
        raise AssertionError(f"{plugin.label}: craft returned {type(out).__name__}, not a Tensor")
    return out


def _model_poisoning_checks(plugin: Plugin) -> list[NamedCheck]:
    def craft_shape_dtype() -> None:
        for dtype in (torch.float32, torch.float64):
            for m in (1, 3):
                honest = _honest(plugin.make(), dtype)
                out = _craft(plugin, honest, m)
                if tuple(out.shape) != (m, D) or out.dtype != dtype:
                    raise AssertionError(
                        f"{plugin.label}: craft(n_malicious={m}) on {dtype} rows returned "
                        f"{tuple(out.shape)} {out.dtype}, want ({m}, {D}) {dtype}"
                    )

    def craft_finite() -> None:
        for m in (1, 3):
            if not torch.isfinite(_craft(plugin, _honest(plugin.make()), m)).all():
                raise AssertionError(f"{plugin.label}: craft(n_malicious={m}) is not finite")

    def craft_no_mutation() -> None:
        honest = torch.randn(HONEST, D, generator=seeded(1))
        before = honest.clone()
        _craft(plugin, honest, 3)
        if not torch.equal(honest, before):
            raise AssertionError(f"{plugin.label}: craft modified the honest rows in place")

    def craft_deterministic() -> None:
        honest = _honest(plugin.make())
        a, b = _craft(plugin, honest, 3, seed=5), _craft(plugin, honest, 3, seed=5)
        if a.shape != b.shape or not torch.equal(a, b):
            raise AssertionError(
                f"{plugin.label}: two fresh attacks with the same ctx.generator and ctx.rng "
                f"seeds crafted different rows; take all randomness from the context"
            )

    def threat_model() -> None:
        tm = _threat_model(plugin.make())
        if not tm.sees_honest_updates:
            out = _craft(plugin, torch.empty(0, D), 2)
            if tuple(out.shape) != (2, D) or not torch.isfinite(out).all():
                raise AssertionError(
                    f"{plugin.label}: its threat model does not see honest updates, so it must "
                    f"craft finite rows from zero honest rows; got {tuple(out.shape)} "
                    f"{'finite' if torch.isfinite(out).all() else 'non-finite'}"
                )

    return [
        ("craft_shape_dtype", craft_shape_dtype),
        ("craft_finite", craft_finite),
        ("craft_no_mutation", craft_no_mutation),
        ("craft_deterministic", craft_deterministic),
        ("threat_model", threat_model),
    ]


def _batch() -> tuple[Tensor, Tensor]:
    x = torch.rand(16, *IMAGE, generator=seeded(2))
    y = torch.randint(0, NUM_CLASSES, (16,), generator=seeded(3))
    return x, y


def _poison(plugin: Plugin, x: Tensor, y: Tensor, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    try:
        out = plugin.make().poison(x, y, ctx=_ctx(1, seed=seed))
        px, py = out
    except Exception as exc:
        raise AssertionError(
            f"{plugin.label}: poison(x {tuple(x.shape)}, y {tuple(y.shape)}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(px, Tensor) or not isinstance(py, Tensor):
        raise AssertionError(f"{plugin.label}: poison must return a pair of tensors")
    return px, py


def _data_poisoning_checks(plugin: Plugin) -> list[NamedCheck]:
    def poison_shapes_dtypes() -> None:
        x, y = _batch()
        px, py = _poison(plugin, x, y)
        for name, got, want in (("x", px, x), ("y", py, y)):
            if got.shape != want.shape or got.dtype != want.dtype:
                raise AssertionError(
                    f"{plugin.label}: poisoned {name} is {tuple(got.shape)} {got.dtype}, "
                    f"want {tuple(want.shape)} {want.dtype}"
                )

    def poison_labels_in_range() -> None:
        _, py = _poison(plugin, *_batch())
        if py.numel() and (int(py.min()) < 0 or int(py.max()) >= NUM_CLASSES):
            raise AssertionError(
                f"{plugin.label}: poisoned labels span [{int(py.min())}, {int(py.max())}], "
                f"outside [0, ctx.num_classes={NUM_CLASSES})"
            )

    def poison_no_mutation() -> None:
        x, y = _batch()
        bx, by = x.clone(), y.clone()
        _poison(plugin, x, y)
        if not (torch.equal(x, bx) and torch.equal(y, by)):
            raise AssertionError(f"{plugin.label}: poison modified its input x or y in place")

    def poison_deterministic() -> None:
        x, y = _batch()
        (ax, ay), (bx, by) = _poison(plugin, x, y, seed=4), _poison(plugin, x, y, seed=4)
        if not (torch.equal(ax, bx) and torch.equal(ay, by)):
            raise AssertionError(
                f"{plugin.label}: the same ctx seeds gave different poisoned data; take all "
                f"randomness from ctx.generator / ctx.rng"
            )

    return [
        ("poison_shapes_dtypes", poison_shapes_dtypes),
        ("poison_labels_in_range", poison_labels_in_range),
        ("poison_no_mutation", poison_no_mutation),
        ("poison_deterministic", poison_deterministic),
    ]


def attack_checks(plugin: Plugin) -> list[NamedCheck]:
    """Checks of an attack; which apply depends on whether it crafts rows or poisons data.

    A class is inspected without being constructed; a factory function is called once (the
    design requires constructors to be cheap). The ``none`` attack is neither kind.
    """
    if plugin.instance is not None:
        probe: Any = plugin.instance
    elif inspect.isclass(plugin.factory):
        probe = plugin.factory
    else:
        try:
            probe = plugin.make()
        except AssertionError:
            return []  # the `constructs` check reports it
    checks: list[NamedCheck] = []
    if is_model_poisoning(probe):
        checks += _model_poisoning_checks(plugin)
    if is_data_poisoning(probe):
        checks += _data_poisoning_checks(plugin)
    return checks
