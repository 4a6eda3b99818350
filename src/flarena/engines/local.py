"""Local training of all sampled clients: a batched ``torch.func`` executor and the reference loop.

Both executors consume the same :class:`BatchPlan`, so they compute the same numbers (to float
tolerance). Each client's epoch is a seeded permutation of its own examples cut into batches of
``B``; the last batch of an epoch is partial (``n_k mod B`` examples). With ``local_steps`` set,
batches are taken from successive epochs until the count is reached (data are *cycled*).

Clients with fewer batches than the busiest client are handled by **masking** in the batched
executor: the plan pads every client to ``S`` steps of ``B`` slots with a boolean mask; a padded
slot contributes nothing to the loss, and a step with no real slot leaves the client's parameters
and momentum untouched (``torch.where`` on an ``active`` flag). So the batched executor is exactly
the loop, not an approximation.

SGD follows ``torch.optim.SGD`` (dampening 0, no Nesterov): ``g += wd * p``;
``buf = momentum * buf + g``; ``p -= lr * buf``, with fresh momentum every round unless the
caller passes a ``momentum_state`` ``[K, d]`` (decentralized nodes keep their local momentum
across rounds): the buffers then start from it and are written back into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from flarena.algorithms.base import LocalPlan


@dataclass
class BatchPlan:
    """Per client, the list of batches (global example indices) it trains on this round."""

    batches: list[list[np.ndarray]]  # [K][steps_k] -> indices
    batch_size: int

    @property
    def max_steps(self) -> int:
        """Steps of the busiest client."""
        return max((len(b) for b in self.batches), default=0)

    def padded(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``idx [K, S, B]`` (int64, padded with 0) and ``mask [K, S, B]`` (bool)."""
        k, s, b = len(self.batches), self.max_steps, self.batch_size
        idx = np.zeros((k, s, b), dtype=np.int64)
        mask = np.zeros((k, s, b), dtype=bool)
        for i, client in enumerate(self.batches):
            for j, batch in enumerate(client):
                idx[i, j, : len(batch)] = batch
                mask[i, j, : len(batch)] = True
        return torch.from_numpy(idx).to(device), torch.from_numpy(mask).to(device)


def make_plan(
    client_indices: list[np.ndarray], plan: LocalPlan, rngs: list[np.random.Generator]
) -> BatchPlan:
    """Cut each client's data into this round's batches (see module docstring)."""
    batches: list[list[np.ndarray]] = []
    full = plan.batch_size is None
    bsz = max(len(ix) for ix in client_indices) if full else int(plan.batch_size or 1)
    for ix, rng in zip(client_indices, rngs, strict=True):
        n = len(ix)
        b = n if full else bsz
        chosen: list[np.ndarray] = []
        want = plan.steps
        epochs = 0
        while True:
            perm = ix[rng.permutation(n)]
            cuts = [perm[i : i + b] for i in range(0, n, b)]
            epochs += 1
            for c in cuts:
                chosen.append(c)
                if want is not None and len(chosen) == want:
                    break
            if want is None and epochs == plan.epochs:
                break
            if want is not None and len(chosen) == want:
                break
        batches.append(chosen)
    return BatchPlan(batches, bsz)


def flat_params(model: nn.Module) -> Tensor:
    """All parameters as one detached vector (the model's ``parameters()`` order)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def load_flat(model: nn.Module, vec: Tensor) -> None:
    """Copy a flat vector into the model's parameters in place."""
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            n = p.numel()
            p.copy_(vec[offset : offset + n].view_as(p))
            offset += n


def _start(global_vec: Tensor, k: int) -> Tensor:
    """Client ``k``'s starting parameters: the ``[d]`` global vector, or row ``k`` of ``[K, d]``.

    Decentralized nodes each train from their own model.
    """
    return global_vec if global_vec.ndim == 1 else global_vec[k]


def train_loop(
    model: nn.Module,
    global_vec: Tensor,
    plan: BatchPlan,
    lp: LocalPlan,
    x: Tensor,
    y: Tensor,
    momentum_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Reference executor: one client after another. Returns ``rows [K, d]`` and ``losses [K]``.

    ``global_vec`` is the ``[d]`` model every client starts from, or ``[K, d]`` per-client
    starting models; a row is the client's final model minus its own start (or its gradient).
    ``momentum_state`` ``[K, d]``, if given, holds each client's momentum buffer: read at the
    start and updated in place at the end (otherwise momentum starts at 0).
    """
    device = global_vec.device
    params: list[Tensor] = list(model.parameters())
    d = global_vec.shape[-1]
    rows = torch.empty(len(plan.batches), d, device=device, dtype=global_vec.dtype)
    losses = torch.zeros(len(plan.batches), device=device, dtype=global_vec.dtype)
    model.train()
    for k, client_batches in enumerate(plan.batches):
        load_flat(model, _start(global_vec, k))
        if momentum_state is None:
            bufs = [torch.zeros_like(p) for p in params]
        else:
            bufs = [
                c.view_as(p).clone()
                for c, p in zip(
                    torch.split(momentum_state[k], [p.numel() for p in params]), params, strict=True
                )
            ]
        total = torch.zeros((), device=device, dtype=global_vec.dtype)
        for batch in client_batches:
            sel = torch.from_numpy(batch).to(device)
            loss = F.cross_entropy(model(x[sel]), y[sel])
            grads = torch.autograd.grad(loss, params)
            total += loss.detach()
            if lp.return_gradient:
                rows[k] = torch.cat([g.reshape(-1) for g in grads])
                continue
            with torch.no_grad():
                gs = list(grads)
                if lp.weight_decay:
                    torch._foreach_add_(gs, params, alpha=lp.weight_decay)
                if lp.momentum:
                    torch._foreach_mul_(bufs, lp.momentum)
                    torch._foreach_add_(bufs, gs)
                    torch._foreach_add_(params, bufs, alpha=-lp.lr)
                else:
                    torch._foreach_add_(params, gs, alpha=-lp.lr)
        if not lp.return_gradient:
            rows[k] = flat_params(model) - _start(global_vec, k)
            if momentum_state is not None:
                momentum_state[k] = torch.cat([b.reshape(-1) for b in bufs])
        losses[k] = total / max(len(client_batches), 1)
    return rows, losses


def train_vmap(
    model: nn.Module,
    global_vec: Tensor,
    plan: BatchPlan,
    lp: LocalPlan,
    x: Tensor,
    y: Tensor,
    momentum_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Batched executor: all clients at once with ``vmap(grad(functional_call))``.

    ``global_vec`` is ``[d]`` (one start for all) or ``[K, d]`` (per-client starts);
    ``momentum_state`` as in :func:`train_loop`.
    """
    device = global_vec.device
    k = len(plan.batches)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    if global_vec.ndim == 1:
        base = dict(zip(names, torch.split(global_vec, sizes), strict=True))
        params = {
            n: base[n].view(s).expand(k, *s).clone() for n, s in zip(names, shapes, strict=True)
        }
    else:
        cols = torch.split(global_vec, sizes, dim=1)
        params = {n: c.reshape(k, *s).clone() for n, c, s in zip(names, cols, shapes, strict=True)}
    if momentum_state is None:
        bufs = {n: torch.zeros_like(p) for n, p in params.items()}
    else:
        mcols = torch.split(momentum_state, sizes, dim=1)
        bufs = {n: c.reshape(k, *s).clone() for n, c, s in zip(names, mcols, shapes, strict=True)}
    idx, mask = plan.padded(device)
    model.train()

    def loss_fn(p: dict[str, Tensor], xb: Tensor, yb: Tensor, mb: Tensor) -> Tensor:
        out = functional_call(model, p, (xb,))
        per = F.cross_entropy(out, yb, reduction="none")
        return (per * mb).sum() / mb.sum().clamp_min(1.0)

    step = vmap(grad_and_value(loss_fn))
    total = torch.zeros(k, device=device, dtype=global_vec.dtype)
    counts = torch.zeros(k, device=device, dtype=global_vec.dtype)
    grads: dict[str, Tensor] = {}
    for s in range(plan.max_steps):
        ix, mb = idx[:, s], mask[:, s]
        active = mb.any(dim=1)
        grads, loss = step(params, x[ix], y[ix], mb.to(x.dtype))
        total += torch.where(active, loss.detach(), torch.zeros_like(loss))
        counts += active.to(total.dtype)
        if lp.return_gradient:
            break
        with torch.no_grad():
            for n in names:
                a = active.view(k, *([1] * (params[n].ndim - 1)))
                g = grads[n]
                if lp.weight_decay:
                    g = g + lp.weight_decay * params[n]
                if lp.momentum:
                    new_buf = lp.momentum * bufs[n] + g
                    bufs[n] = torch.where(a, new_buf, bufs[n])
                    g = new_buf
                params[n] = torch.where(a, params[n] - lp.lr * g, params[n])
    if lp.return_gradient:
        rows = torch.cat([grads[n].reshape(k, -1) for n in names], dim=1)
    else:
        rows = torch.cat([params[n].reshape(k, -1) for n in names], dim=1) - global_vec
        if momentum_state is not None:
            momentum_state.copy_(torch.cat([bufs[n].reshape(k, -1) for n in names], dim=1))
    return rows.detach(), total / counts.clamp_min(1.0)


EXECUTORS = {"loop": train_loop, "vmap": train_vmap}


def default_executor(device: torch.device) -> str:
    """The executor measured fastest on this kind of device (docs/BENCHMARKS.md).

    On CPU, PyTorch's batched (grouped) convolutions behind ``vmap`` run slower than one client
    after another, so the loop is the default; on CUDA the batched executor fills the device.
    """
    return "vmap" if device.type == "cuda" else "loop"
