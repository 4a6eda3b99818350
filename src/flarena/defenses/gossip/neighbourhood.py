r"""Neighbourhood aggregation: every node applies a server aggregator to what it received."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from flarena.core import registry
from flarena.core.registry import register
from flarena.defenses.aggregators.mean import Mean
from flarena.defenses.aggregators.median import Median
from flarena.defenses.aggregators.trimmed_mean import TrimmedMean
from flarena.defenses.gossip.base import GossipContext, check_edges

# most elements of one [g, k + 1, d] block of neighbourhoods built at once
_BLOCK_ELEMENTS = 1 << 24


def _sorted_rows(stack: Tensor) -> Tensor:
    r"""``stack`` ``[g, m, d]`` sorted along the rows (dim 1), NaN ranked as :math:`+\infty`."""
    return torch.sort(torch.where(torch.isnan(stack), torch.inf, stack), dim=1).values


def _median_rows(stack: Tensor) -> Tensor:
    """Coordinate-wise median along dim 1, the formula of the ``median`` aggregator."""
    m = stack.shape[1]
    ordered = _sorted_rows(stack)
    if m % 2 == 1:
        return ordered[:, m // 2]
    return 0.5 * ordered[:, m // 2 - 1] + 0.5 * ordered[:, m // 2]


def _trimmed_mean_rows(stack: Tensor, f: int) -> Tensor:
    """Coordinate-wise trimmed mean along dim 1, the formula of ``trimmed_mean``."""
    if f == 0:
        return stack.mean(dim=1)
    m = stack.shape[1]
    return _sorted_rows(stack)[:, f : m - f].mean(dim=1)


@register("gossip_rule", "neighbourhood")
class Neighbourhood:
    r"""Every node replaces its model by a server aggregator of its own and its neighbours' models.

    :math:`x_i \leftarrow \mathrm{AGG}(x_i, m_{j_1 i}, \dots, m_{j_{k} i})` over the
    :math:`k + 1` rows made of node :math:`i`'s own model and the :math:`k = \deg i` messages
    it received, for any aggregator of the registry (kind ``aggregator``: ``mean``,
    ``median``, ``trimmed_mean``, ``krum``, ``multi_krum``, ``geometric_median``,
    ``centered_clipping``, ...). The rows are unweighted (the gossip weights are ignored, every
    edge counts as a neighbour), as in the decentralized coordinate-wise trimmed mean and
    median baselines of He, Karimireddy, Jaggi 2022 ("Byzantine-robust decentralized learning
    via ClippedGossip"). The rows are ordered own model first, then the messages in edge order
    (this decides an aggregator's ties, e.g. Krum's).
    The aggregator is called with ``ctx=None`` (no weights, no previous aggregate, no server
    update: ``fltrust`` therefore cannot run here, and :meth:`check_neighbourhood` says so).

    Batching: the nodes are grouped by degree (a vectorised bucketing of the edges). For the
    coordinate-wise rules ``mean`` (unweighted), ``median`` and ``trimmed_mean`` every degree
    group is computed at once on a ``[g, k + 1, d]`` tensor sorted along the rows, with the
    aggregator's own formula (NaN ranked as :math:`+\infty`; the mean of the two middle values
    for an even number of rows; ``trimmed_mean`` with ``f = 0`` is the plain mean), in blocks of
    at most :math:`2^{24}` elements. For any other aggregator this is a per-node loop otherwise,
    calling the aggregator on each node's ``[k + 1, d]`` rows.

    A node whose number of rows the aggregator's ``check_n`` refuses (e.g. ``trimmed_mean`` with
    ``k + 1 <= 2f``) keeps its own model; its index is listed in
    ``ctx.info["not_aggregated"]`` (a ``torch.long`` tensor, with a context). The runner's
    :meth:`check_neighbourhood` refuses such honest nodes before training, so this only happens
    at Byzantine nodes (whose rows the engine overwrites anyway) or when the check is skipped.

    Non-finite values are handled as the aggregator handles them (e.g. ``trimmed_mean`` with
    ``f`` rows per coordinate trimmed at each end keeps the output finite under at most ``f``
    non-finite messages; ``mean`` propagates them). The result keeps ``own``'s dtype. Inputs are
    not modified; ``ctx`` is only written to.

    Parameters
    ----------
    aggregator : str
        Registered aggregator name (or ``"module:Object"`` reference).
    **aggregator_params
        The aggregator's parameters, e.g. ``f=1`` for ``trimmed_mean``. The aggregator's ``f``
        attribute, when it has one, is the number of Byzantine neighbours tolerated per node
        (:meth:`check_neighbourhood`); an aggregator without ``f`` declares no bound.
    """

    def __init__(self, *, aggregator: str = "trimmed_mean", **aggregator_params: Any) -> None:
        if not isinstance(aggregator, str) or not aggregator:
            raise ValueError(
                f"invalid aggregator = {aggregator!r}: must be a registered aggregator name"
            )
        try:
            self.rule = registry.create("aggregator", aggregator, **aggregator_params)
        except ValueError as exc:
            raise ValueError(f"neighbourhood: {exc}") from None
        self.aggregator = aggregator
        self.aggregator_params = dict(aggregator_params)
        f = getattr(self.rule, "f", None)
        self.f: int | None = f if isinstance(f, int) and not isinstance(f, bool) else None

    def check_neighbourhood(self, degree: int, n_byzantine: int) -> None:
        """Refuse more Byzantine neighbours than the aggregator's ``f``, or too few rows.

        The aggregator's ``check_n`` (when it has one) must accept ``degree + 1`` rows, and the
        aggregator must run on ``degree + 1`` zero rows without a context; its own
        ``ValueError`` message is passed on.
        """
        if self.f is not None and n_byzantine > self.f:
            plural = "" if self.f == 1 else "s"
            raise ValueError(
                f"neighbourhood({self.aggregator}, f={self.f}) tolerates at most {self.f} "
                f"Byzantine neighbour{plural} per node; raise f or move the Byzantine nodes"
            )
        rows = degree + 1
        try:
            check = getattr(self.rule, "check_n", None)
            if check is not None:
                check(rows)
            self.rule(torch.zeros(rows, 1, dtype=torch.float64), ctx=None)
        except ValueError as exc:
            raise ValueError(
                f"neighbourhood({self.aggregator}) aggregates the node's own model and its "
                f"{degree} neighbours' ({rows} rows): {exc}"
            ) from None

    def _accepts(self, rows: int) -> bool:
        check = getattr(self.rule, "check_n", None)
        if check is None:
            return True
        try:
            check(rows)
        except ValueError:
            return False
        return True

    def _batched(self, stack: Tensor) -> Tensor | None:
        """``[g, k + 1, d] -> [g, d]`` for the coordinate-wise rules, else ``None``."""
        kind = type(self.rule)
        if kind is Mean:
            return stack.mean(dim=1)
        if kind is Median:
            return _median_rows(stack)
        if kind is TrimmedMean:
            return _trimmed_mean_rows(stack, self.rule.f)
        return None

    def __call__(
        self,
        messages: Tensor,
        *,
        src: Tensor,
        dst: Tensor,
        weights: Tensor,
        own: Tensor,
        ctx: GossipContext | None = None,
    ) -> Tensor:
        """New models ``[n, d]`` of all nodes."""
        msg, _ = check_edges(messages, src, dst, weights, own)
        n, d = own.shape
        by_node = torch.argsort(dst, stable=True)  # edge order within a node kept
        degree = torch.bincount(dst, minlength=n)
        start = torch.cumsum(degree, 0) - degree
        out = own.clone()
        skipped: list[Tensor] = []
        for k in torch.unique(degree).tolist():
            nodes = (degree == k).nonzero().squeeze(1)
            if not self._accepts(k + 1):
                skipped.append(nodes)
                continue
            block = max(1, _BLOCK_ELEMENTS // ((k + 1) * max(d, 1)))
            for lo in range(0, nodes.shape[0], block):
                part = nodes[lo : lo + block]
                idx = start[part][:, None] + torch.arange(k, device=dst.device)
                stack = torch.cat([own[part][:, None], msg[by_node[idx]]], dim=1)
                result = self._batched(stack)
                if result is None:  # a per-node loop otherwise
                    result = torch.stack([self.rule(rows, ctx=None) for rows in stack])
                out[part] = result.to(own.dtype)
        if ctx is not None:
            ctx.info["not_aggregated"] = (
                torch.cat(skipped)
                if skipped
                else torch.zeros(0, dtype=torch.long, device=own.device)
            )
        return out

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters: the aggregator's name and its parameters."""
        params = getattr(self.rule, "get_params", None)
        given = params() if callable(params) else self.aggregator_params
        return {"aggregator": self.aggregator, **given}
