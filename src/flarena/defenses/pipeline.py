"""The server's defense pipeline: pre-aggregators, then the aggregator.

One function runs it for the engine (:func:`apply_server_defense`); :class:`DefenseView` wraps
the same steps as a side-effect-free callable for an adaptive attacker whose threat model
declares ``knows_aggregator`` (it may evaluate candidate matrices, but never sees the real
round's bookkeeping, weights or randomness).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from flarena.core.contracts import RoundContext


def apply_server_defense(
    preaggregators: Sequence[Any], aggregator: Any, updates: Tensor, ctx: RoundContext
) -> Tensor:
    """Run ``preaggregators`` then ``aggregator`` on ``[n, d]`` rows; return the ``[d]`` aggregate.

    When a pre-aggregator changes the row count, the rows are no longer clients: ``ctx`` loses
    its attacker flags, its client ids become ``0..m-1``, and its weights become uniform unless
    the step set weights of the new length itself (bucketing sums them). ``ctx.info`` collects
    what the steps report (e.g. ``kept``).
    """
    for pre in preaggregators:
        before = updates.shape[0]
        updates = pre(updates, ctx=ctx)
        if updates.shape[0] != before:
            ctx.malicious = None
            ctx.client_ids = torch.arange(updates.shape[0])
            if ctx.weights.shape[0] != updates.shape[0]:
                ctx.weights = torch.ones(updates.shape[0], device=updates.device)
    out: Tensor = aggregator(updates, ctx=ctx)
    return out


class DefenseView:
    """The defense pipeline as an adaptive attacker may call it: ``[n, d] -> [d]``, no side effect.

    Each call runs the real pre-aggregators and aggregator on a fresh copy of the round's
    context with uniform weights, no attacker flags, and a generator re-seeded with the same
    ``seed`` every call (so a randomized step such as bucketing answers the same matrix the same
    way, and the attacker's search never consumes the server's random stream). The previous
    aggregate, the global model and the server's root update (FLTrust) are public to this
    full-knowledge attacker.
    """

    def __init__(
        self,
        preaggregators: Sequence[Any],
        aggregator: Any,
        ctx: RoundContext,
        *,
        seed: int,
    ) -> None:
        self.preaggregators = list(preaggregators)
        self.aggregator = aggregator
        self._ctx = ctx
        self._seed = seed
        self.calls = 0

    def __call__(self, updates: Tensor, /) -> Tensor:
        """Aggregate a candidate ``[n, d]`` matrix as the server would."""
        n = updates.shape[0]
        gen = torch.Generator(device=updates.device)
        gen.manual_seed(self._seed)
        ctx = replace(
            self._ctx,
            client_ids=torch.arange(n),
            weights=torch.ones(n, device=updates.device, dtype=updates.dtype),
            malicious=None,
            generator=gen,
            info={},
        )
        self.calls += 1
        return apply_server_defense(self.preaggregators, self.aggregator, updates, ctx)

    def __repr__(self) -> str:
        steps = [type(p).__name__ for p in self.preaggregators] + [type(self.aggregator).__name__]
        return f"DefenseView({' -> '.join(steps)})"
