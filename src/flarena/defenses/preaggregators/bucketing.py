"""Bucketing: shuffle the rows and average them in buckets of ``s``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix


@register("preaggregator", "bucketing")
class Bucketing:
    r"""Shuffle the rows, split them into buckets of ``s``, and average each bucket.

    With a random permutation :math:`\pi` of the rows,

    .. math::

        y_b = \frac{1}{|B_b|} \sum_{i \in B_b} x_{\pi(i)}, \qquad
        B_b = \{(b - 1)s + 1, \dots, \min(bs, n)\}, \quad b = 1..\lceil n/s \rceil,

    (Karimireddy, He, Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets via
    Bucketing", ICLR 2022, Algorithm 1). The output is ``[ceil(n / s), d]``; an aggregator is
    applied afterwards. Averaging reduces the heterogeneity the aggregator sees, at the price of
    up to ``s`` times as many contaminated rows.

    Conventions:

    - The permutation is drawn with ``torch.randperm`` from ``ctx.generator``; without a
      context, or with ``ctx.generator = None``, from a fresh generator seeded 0, so the output
      is always deterministic.
    - When ``s`` does not divide ``n`` the last bucket is smaller (``n mod s`` rows); no row is
      duplicated to fill it (FLPoison silently repeats rows instead).
    - Inside a bucket the rows are averaged without weights, as in the paper. When a context is
      given, ``ctx.weights`` is *replaced* (not modified in place) by the per-bucket sums of the
      shuffled weights, ``[ceil(n / s)]``, so that a weighted aggregator downstream weighs a
      bucket by the examples behind it. ``ctx.client_ids`` and ``ctx.malicious`` are left alone.
    - A non-finite row makes its bucket's mean non-finite; that is left to the aggregator.

    Parameters
    ----------
    s : int
        Bucket size, ``s >= 1``; ``s = 1`` only shuffles the rows.
    """

    def __init__(self, *, s: int = 2) -> None:
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ValueError(f"bucketing: s must be an integer >= 1, got {s!r}")
        self.s = s

    def check_n(self, n: int) -> None:
        """Refuse an empty round."""
        if n < 1:
            raise ValueError(f"bucketing needs at least one row, got n = {n}")

    def output_rows(self, n: int) -> int:
        """Rows of the output: ``ceil(n / s)``."""
        return math.ceil(n / self.s)

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Average shuffled buckets of ``[n, d]`` rows into ``[ceil(n / s), d]`` rows."""
        check_matrix(updates)
        n, device = updates.shape[0], updates.device
        gen = ctx.generator if ctx is not None and ctx.generator is not None else None
        if gen is None:
            gen = torch.Generator().manual_seed(0)
        perm = torch.randperm(n, generator=gen, device=gen.device).to(device)
        m = self.output_rows(n)
        bucket = torch.arange(n, device=device) // self.s
        # each bucket summed row by row straight into the output, in the shuffled order (the
        # order index_add_ would use), then divided by its size: no shuffled copy of the rows
        order = perm.tolist()
        out = torch.empty(m, updates.shape[1], dtype=updates.dtype, device=device)
        for b in range(m):
            rows = order[b * self.s : (b + 1) * self.s]
            if len(rows) == 1:
                out[b].copy_(updates[rows[0]])
                continue
            torch.add(updates[rows[0]], updates[rows[1]], out=out[b])
            for r in rows[2:]:
                out[b].add_(updates[r])
            out[b].div_(len(rows))
        if ctx is not None and ctx.weights is not None and ctx.weights.shape[0] == n:
            w = ctx.weights.to(device)
            new_w = torch.zeros(m, dtype=w.dtype, device=device)
            ctx.weights = new_w.index_add_(0, bucket, w[perm])
        return out

    def get_params(self) -> dict[str, int]:
        """Constructor parameters."""
        return {"s": self.s}
