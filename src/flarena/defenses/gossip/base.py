r"""The gossip-rule contract: how every node mixes what its neighbours sent, in one round.

A gossip rule is called once per round for all :math:`n` nodes at once, on a *per-edge* layout
(a dense ``[n, n, d]`` tensor of received vectors would be too big):

``rule(messages, *, src, dst, weights, own, ctx=None) -> Tensor [n, d]``

``own`` ``[n, d]``
    Each node's current model (after its local step).
``src``, ``dst`` ``[E]`` (``torch.long``)
    The directed edges :math:`j \to i` (``src = j``, ``dst = i``), one for every neighbour
    :math:`j` of every node :math:`i`; no self loops.
``messages`` ``[E, d]``
    The vector node ``src[e]`` sent to node ``dst[e]``: an honest node sends its own row of
    ``own``; a Byzantine node may send a different vector on each edge.
``weights`` ``[E]``
    The gossip weights :math:`W_{ij}` = ``W[dst, src]`` of the edges (non-negative). The self
    weight is implied: :math:`W_{ii} = 1 - \sum_{j \to i} W_{ij}` (:func:`self_weights`).

The result holds the new models of all nodes; the engine then overwrites the Byzantine nodes'
rows as it likes. Rules are vectorised over the edges (``index_add_``), with no Python loop
over the nodes, and never modify their inputs.

``ctx.byzantine`` (``[n]`` bool) is filled in for *bookkeeping* only: a rule must never use it,
except a rule documented as an **oracle** (e.g. ``clipped_gossip(tau="oracle")``, whose radius is
by definition a function of the honest and Byzantine neighbours' weights).

A rule that tolerates a bounded number of Byzantine neighbours, or needs a minimum degree (a
trimmed mean over a neighbourhood), says so with an optional method
``check_neighbourhood(degree, n_byzantine) -> None`` that raises ``ValueError`` (what is wrong
and what the rule allows) when it cannot run at a node with ``degree`` neighbours of which
``n_byzantine`` are Byzantine. :func:`check_neighbourhoods` applies it to every honest node of
a graph; the runner calls it before training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from flarena.defenses._checks import check_matrix

__all__ = ["GossipContext", "GossipRule", "check_edges", "check_neighbourhoods", "self_weights"]


@dataclass
class GossipContext:
    """What a gossip rule may know in one round.

    ``byzantine`` (``[n]`` bool, ``True`` for a Byzantine node) is for *bookkeeping* only: a
    rule must never use it, except a rule documented as an oracle.
    """

    round: int = 0
    generator: torch.Generator | None = None
    byzantine: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)  # rules may report here


@runtime_checkable
class GossipRule(Protocol):
    """One gossip round for all nodes: per-edge messages ``[E, d]`` -> new models ``[n, d]``."""

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
        """Return every node's new model."""
        ...


def check_edges(
    messages: Tensor, src: Tensor, dst: Tensor, weights: Tensor, own: Tensor
) -> tuple[Tensor, Tensor]:
    """Validate the per-edge layout; return ``messages`` and ``weights`` in ``own``'s dtype.

    ``ValueError`` for a non-float or empty ``own``, shapes that do not match, non-integer or
    out-of-range edge indices, self loops, or non-finite or negative weights. Nothing is copied
    when the dtypes already match.
    """
    n = check_matrix(own)
    d = own.shape[1]
    if not isinstance(messages, Tensor) or messages.ndim != 2 or messages.shape[1] != d:
        shape = tuple(messages.shape) if isinstance(messages, Tensor) else type(messages).__name__
        raise ValueError(f"messages must be an [E, {d}] tensor, got {shape}")
    if not torch.is_floating_point(messages):
        raise ValueError(f"messages must be floating point, got {messages.dtype}")
    e = messages.shape[0]
    for name, idx in (("src", src), ("dst", dst)):
        if not isinstance(idx, Tensor) or idx.shape != (e,) or idx.dtype != torch.long:
            got = (idx.dtype, tuple(idx.shape)) if isinstance(idx, Tensor) else type(idx).__name__
            raise ValueError(f"{name} must be a torch.long tensor of shape ({e},), got {got}")
        if e and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"{name} has node indices outside [0, {n})")
    if bool((src == dst).any()):
        raise ValueError("edges must not be self loops (src == dst); the self weight is implied")
    if not isinstance(weights, Tensor) or weights.shape != (e,):
        shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise ValueError(f"weights must have shape ({e},), got {shape}")
    w = weights.to(own.dtype)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("weights must be finite and non-negative")
    return messages.to(own.dtype), w


def self_weights(weights: Tensor, dst: Tensor, n: int) -> Tensor:
    r"""The self weights :math:`W_{ii} = 1 - \sum_{j \to i} W_{ij}`, shape ``[n]``."""
    incoming = torch.zeros(n, dtype=weights.dtype, device=weights.device)
    incoming.index_add_(0, dst, weights)
    return 1.0 - incoming


def check_neighbourhoods(rule: object, adjacency: Any, byzantine: np.ndarray) -> None:
    """Call ``rule.check_neighbourhood(degree, n_byzantine)`` for every honest node.

    ``adjacency`` is the symmetric 0/1 scipy sparse (or dense) adjacency, ``byzantine`` a
    ``[n]`` bool array. Does nothing for a rule without ``check_neighbourhood``. The
    ``ValueError`` names the first honest node the rule cannot handle.
    """
    check = getattr(rule, "check_neighbourhood", None)
    if check is None:
        return
    a = adjacency.toarray() if hasattr(adjacency, "toarray") else np.asarray(adjacency)
    a = (a != 0).astype(np.int64)
    np.fill_diagonal(a, 0)
    byz = np.asarray(byzantine, dtype=bool)
    degree = a.sum(1)
    n_byz = a @ byz.astype(np.int64)
    seen: set[tuple[int, int]] = set()
    for i in np.flatnonzero(~byz):
        key = (int(degree[i]), int(n_byz[i]))
        if key in seen:
            continue
        seen.add(key)
        try:
            check(*key)
        except ValueError as exc:
            raise ValueError(
                f"node {int(i)} ({key[0]} neighbours, {key[1]} Byzantine): {exc}"
            ) from None
