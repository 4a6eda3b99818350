"""Decentralized learning in one process: every node's model as one row of an ``[n, d]`` tensor.

One round of D-SGD (Lian et al. 2017; Koloskova et al. 2020): each node takes its local steps from
its own model (both executors accept per-node starts), then gossips: node ``i`` mixes what its
neighbours sent with the gossip rule (plain gossip is ``X <- W X``). ``order =
"gossip_then_step"`` gossips first. Rows are *models* (``vector_kind = "model"``).

Byzantine nodes (``attack.n_malicious``) run the data-poisoning attack on their own data; the
engine reports every metric over the honest nodes only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from flarena.algorithms.mixing import gossip, mixing_matrix, spectral_gap, to_torch
from flarena.bench.timing import PhaseTimer, peak_memory_bytes, reset_peak_memory
from flarena.core.contracts import (
    AttackContext,
    NeighbourhoodView,
    VectorKind,
    is_data_poisoning,
    is_model_poisoning,
)
from flarena.core.errors import FlarenaError
from flarena.core.seeding import Seeds
from flarena.defenses.gossip.base import GossipContext, check_neighbourhoods
from flarena.engines.local import EXECUTORS, default_executor, flat_params, make_plan
from flarena.engines.sim import Components, RunDiverged, RunOutput, evaluate

log = logging.getLogger(__name__)


def edges_of(W: Any, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """The directed edges ``src -> dst`` of a scipy sparse gossip matrix and their weights.

    ``weights[e] = W[dst[e], src[e]]``; the diagonal (self weights) is left out.
    """
    coo = W.tocoo()
    off = coo.row != coo.col
    dst = torch.from_numpy(coo.row[off].astype(np.int64)).to(device)
    src = torch.from_numpy(coo.col[off].astype(np.int64)).to(device)
    w = torch.from_numpy(coo.data[off]).to(device, dtype)
    return src, dst, w


def evaluate_nodes(
    model: nn.Module, X: Tensor, x: Tensor, y: Tensor, *, budget: int = 2**25
) -> Tensor:
    """Test accuracy ``[k]`` of the models in the rows of ``X`` ``[k, d]``, batched over nodes.

    ``vmap(functional_call)`` evaluates a block of nodes at once instead of one forward pass
    per node; blocks and test chunks are sized so that a block's logits stay under ``budget``
    elements. Equal to :func:`flarena.engines.sim.evaluate` run on each row.
    """
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    model.eval()
    k, t = X.shape[0], len(y)
    width = max(sizes)  # a generous bound on any activation's width per example
    chunk = max(1, min(t, budget // width))
    block = max(1, min(k, budget // (chunk * width)))

    def logits(flat: Tensor, xb: Tensor) -> Tensor:
        cols = torch.split(flat, sizes)
        params = {n: c.view(s) for n, c, s in zip(names, cols, shapes, strict=True)}
        out: Tensor = functional_call(model, params, (xb,))
        return out

    many = vmap(logits, in_dims=(0, None))
    correct = torch.zeros(k, dtype=torch.long, device=X.device)
    with torch.no_grad():
        for b in range(0, k, block):
            for i in range(0, t, chunk):
                out = many(X[b : b + block], x[i : i + chunk])
                correct[b : b + block] += (out.argmax(-1) == y[i : i + chunk]).sum(1)
    return correct.double() / t


def byzantine_nodes(seed: int, n: int, n_malicious: int) -> np.ndarray:
    """The ``[n]`` bool mask of Byzantine nodes of a run (fixed for the whole run, seeded)."""
    byz = np.zeros(n, dtype=bool)
    byz[Seeds(seed).numpy("attackers").choice(n, n_malicious, replace=False)] = True
    return byz


@dataclass
class _Victim:
    """An honest node with Byzantine neighbours, as the per-edge attack sees it."""

    node: int
    byz_edges: Tensor  # [m] edge indices j -> node with j Byzantine, in edge order
    byz_src: Tensor  # [m] their senders
    byz_weights: Tensor  # [m] their gossip weights
    honest_nbrs: Tensor  # [h-1] honest neighbours' ids
    honest_weights: Tensor  # [h] W_ii, then W_ij of the honest neighbours


@dataclass
class _Graph:
    """One round's gossip graph in the layouts the engine needs."""

    W: Any  # scipy sparse mixing matrix
    Wt: Tensor  # the same in torch (sparse CSR or dense)
    edges: tuple[Tensor, Tensor, Tensor]  # src, dst, weights
    victims: list[_Victim]


def victims_of(edges: tuple[Tensor, Tensor, Tensor], byz: np.ndarray) -> list[_Victim]:
    """Every honest node with a Byzantine neighbour, with what an attack on it needs."""
    src, dst, w = (t.cpu() for t in edges)
    b = torch.from_numpy(byz)
    n = byz.shape[0]
    incoming = torch.zeros(n, dtype=w.dtype).index_add_(0, dst, w)
    from_byz = b[src] & ~b[dst]
    out: list[_Victim] = []
    for i in torch.unique(dst[from_byz]).tolist():
        into = dst == i
        be = torch.nonzero(into & b[src]).flatten()
        he = torch.nonzero(into & ~b[src]).flatten()
        out.append(
            _Victim(
                node=int(i),
                byz_edges=be,
                byz_src=src[be],
                byz_weights=w[be],
                honest_nbrs=src[he],
                honest_weights=torch.cat([(1.0 - incoming[i]).reshape(1), w[he]]),
            )
        )
    return out


class _VictimView:
    """The gossip rule at one victim as an adaptive attacker may call it: ``[h + m, d] -> [d]``.

    Rows are the victim's own model, its honest neighbours' models, then the ``m`` messages
    of its Byzantine neighbours; the answer is the victim's new model. A star graph of the
    neighbourhood is run through the real rule, with a generator re-seeded every call.
    """

    def __init__(self, rule: Any, v: _Victim, *, round: int, seed: int) -> None:
        self.rule, self.round, self.seed = rule, round, seed
        hw = v.honest_weights[1:]
        self.weights = torch.cat([hw, v.byz_weights])
        self.h = int(v.honest_weights.shape[0])
        self.calls = 0

    def __call__(self, rows: Tensor, /) -> Tensor:
        k = rows.shape[0]
        dev = rows.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(self.seed)
        byz = torch.zeros(k, dtype=torch.bool, device=dev)
        byz[self.h :] = True
        src = torch.arange(1, k, device=dev)
        ctx = GossipContext(round=self.round, generator=gen, byzantine=byz)
        self.calls += 1
        out: Tensor = self.rule(
            rows[1:],
            src=src,
            dst=torch.zeros_like(src),
            weights=self.weights.to(dev, rows.dtype),
            own=rows,
            ctx=ctx,
        )
        return out[0]


class GossipEngine:
    """The in-process decentralized engine (``framework = "decentralized"``)."""

    @staticmethod
    def _forge(
        attack: Any,
        models: Tensor,
        messages: Tensor,
        g: _Graph,
        actx: AttackContext,
        *,
        shows_honest: bool,
        rule: Any,
        knows_rule: bool,
        seed: int,
    ) -> Tensor:
        """The per-edge messages with every Byzantine -> honest edge replaced by the attack's.

        The attack is called once per victim (an honest node with Byzantine neighbours); its
        rows go, in order, to the victim's Byzantine in-edges.
        """
        messages = messages.clone()
        d = models.shape[1]
        for v in g.victims:
            m = int(v.byz_edges.shape[0])
            h = int(v.honest_weights.shape[0])
            dev = models.device
            if shows_honest:
                ids = torch.cat([torch.tensor([v.node]), v.honest_nbrs]).to(dev)
                honest, hw = models[ids], v.honest_weights
            else:
                honest, hw = models[:0], v.honest_weights[:0]
            view = NeighbourhoodView(
                node=v.node,
                model=models[v.node],
                weights=hw.to(dev, models.dtype),
                byzantine_weight=float(v.byz_weights.sum()),
                n_honest_neighbours=h - 1,
            )
            ctx = replace(
                actx,
                malicious_ids=v.byz_src,
                n_clients=h + m,
                neighbourhood=view,
                aggregator=_VictimView(rule, v, round=actx.round, seed=seed + v.node)
                if knows_rule
                else None,
                info={},
            )
            bad = attack.craft(honest, n_malicious=m, ctx=ctx)
            if tuple(bad.shape) != (m, d):
                raise FlarenaError(
                    f"attack returned shape {tuple(bad.shape)} for node {v.node}, "
                    f"expected ({m}, {d})"
                )
            messages[v.byz_edges.to(dev)] = bad.to(dev, messages.dtype)
        return messages

    def run(
        self,
        spec: Any,
        comp: Components,
        *,
        device: torch.device,
        executor: str = "auto",
        on_round: Callable[[int, dict[str, float]], None] | None = None,
    ) -> RunOutput:
        """Train ``spec.rounds`` rounds of D-SGD and return metrics and per-round rows."""
        seeds = Seeds(spec.seed)
        exe_name = default_executor(device) if executor == "auto" else executor
        train = EXECUTORS[exe_name]
        timer = PhaseTimer(device)
        reset_peak_memory(device)
        dtype = getattr(torch, spec.dtype)
        dec = spec.decentralized
        data, algo, model = comp.data, comp.algorithm, comp.model.to(device, dtype)
        xtr, ytr = data.x_train.to(device, dtype), data.y_train.to(device)
        xte, yte = data.x_test.to(device, dtype), data.y_test.to(device)
        n = len(comp.parts)
        lp = algo.local_plan()
        if lp.return_gradient:
            lp = type(lp)(**{**lp.__dict__, "return_gradient": False})
        X = flat_params(model).to(device).expand(n, -1).clone()  # every node starts alike
        n_mal = spec.attack.n_malicious
        byz = byzantine_nodes(spec.seed, n, n_mal)
        honest = torch.from_numpy(~byz).to(device)
        honest_ids = np.flatnonzero(~byz)
        byz_t = torch.from_numpy(byz).to(device)
        crafting = is_model_poisoning(comp.attack) and n_mal > 0
        threat = getattr(comp.attack, "threat_model", None)
        shows_honest = bool(crafting and getattr(threat, "sees_honest_updates", False))
        knows_rule = bool(crafting and getattr(threat, "knows_aggregator", False))
        # Byzantine nodes that craft messages do not train; every other node does
        trainers = honest_ids if crafting else np.arange(n)
        trainers_t = torch.from_numpy(trainers).to(device)
        keep_momentum = dec.keep_momentum and lp.momentum > 0
        mom = (
            torch.zeros(len(trainers), X.shape[1], device=device, dtype=dtype)
            if keep_momentum
            else None
        )
        linear = getattr(comp.gossip_rule, "linear", False) is True

        def graph(r: int) -> _Graph:
            adj = comp.adjacency
            if adj is None:  # time-varying: a new draw each round
                adj = comp.topology(n, rng=seeds.numpy("topology", r), round=r)
                # what preflight checks for a static graph, for every attack
                check_neighbourhoods(comp.gossip_rule, adj, byz)
            W = mixing_matrix(adj, dec.mixing, lazy=dec.lazy)
            edges = edges_of(W, device, dtype)
            Wt = to_torch(W, dtype=dtype, device=device)
            return _Graph(W, Wt, edges, victims_of(edges, byz) if crafting else [])

        g = graph(0)
        gap = spectral_gap(g.W)
        rows: list[dict[str, Any]] = []
        last: dict[str, float] = {}
        best = float("nan")
        for r in range(1, spec.rounds + 1):
            if comp.adjacency is None and r > 1:
                g = graph(r)
            actx = AttackContext(
                round=r,
                malicious_ids=torch.from_numpy(np.flatnonzero(byz)),
                n_clients=n,
                vector_kind=VectorKind.MODEL,
                generator=seeds.torch("attack", r, device=device),
                rng=seeds.numpy("attack", r),
                num_classes=data.num_classes,
            )
            x_seen, y_seen = xtr, ytr
            with timer.phase("attack"):
                if is_data_poisoning(comp.attack) and byz.any():
                    x_seen, y_seen = xtr.clone(), ytr.clone()
                    for cid in np.flatnonzero(byz):
                        sel = torch.from_numpy(comp.parts[cid]).to(device)
                        px, py = comp.attack.poison(xtr[sel], ytr[sel], ctx=actx)
                        x_seen[sel], y_seen[sel] = px.to(device), py.to(device)
            gctx = GossipContext(
                round=r, generator=seeds.torch("defense", r, device=device), byzantine=byz_t
            )

            def mix(
                models: Tensor,
                gctx: GossipContext = gctx,
                g: _Graph = g,
                actx: AttackContext = actx,
                r: int = r,
            ) -> Tensor:
                src, dst, w = g.edges
                if linear and not g.victims:
                    with timer.phase("gossip"):
                        return gossip(g.Wt, models)
                with timer.phase("attack"):
                    messages = models[src]
                    if g.victims:
                        messages = self._forge(
                            comp.attack,
                            models,
                            messages,
                            g,
                            actx,
                            shows_honest=shows_honest,
                            rule=comp.gossip_rule,
                            knows_rule=knows_rule,
                            seed=seeds.int("attacker_view", r),
                        )
                with timer.phase("gossip"):
                    out: Tensor = comp.gossip_rule(
                        messages, src=src, dst=dst, weights=w, own=models, ctx=gctx
                    )
                return out

            if dec.order == "gossip_then_step":
                X = mix(X)
            plan = make_plan(
                [comp.parts[c] for c in trainers],
                lp,
                [seeds.numpy("shuffle", r, int(c)) for c in trainers],
            )
            with timer.phase("local_train"):
                if crafting:
                    delta, losses_t = train(model, X[trainers_t], plan, lp, x_seen, y_seen, mom)
                    X = X.index_add(0, trainers_t, delta)
                else:
                    delta, losses_t = train(model, X, plan, lp, x_seen, y_seen, mom)
                    X = X + delta
            losses = torch.zeros(n, device=device, dtype=losses_t.dtype)
            losses[trainers_t] = losses_t
            if dec.order == "step_then_gossip":
                X = mix(X)
            if not torch.isfinite(X[honest]).all():
                raise RunDiverged(f"an honest node's model became non-finite in round {r}")
            metrics: dict[str, float] = {
                "train_loss": float(losses[honest].mean()),
                "consensus_distance": float(
                    ((X[honest] - X[honest].mean(0)) ** 2).sum(1).mean().double()
                ),
            }
            if r % spec.eval_every == 0 or r == spec.rounds:
                with timer.phase("evaluate"):
                    accs = evaluate_nodes(model, X[honest], xte, yte).tolist()
                    rows.extend(
                        {"round": r, "node": int(i), "metric": "test_accuracy", "value": a}
                        for i, a in zip(honest_ids, accs, strict=True)
                    )
                    avg_acc, avg_loss, _ = evaluate(model, X[honest].mean(0), xte, yte)
                metrics.update(
                    test_accuracy=float(np.mean(accs)),
                    test_accuracy_min=float(np.min(accs)),
                    test_accuracy_max=float(np.max(accs)),
                    average_model_accuracy=avg_acc,
                    test_loss=avg_loss,
                )
                best = metrics["test_accuracy"] if not best >= metrics["test_accuracy"] else best
            metrics.update({f"time.{p}": t for p, t in timer.pop_round().items()})
            for name, value in metrics.items():
                rows.append({"round": r, "node": None, "metric": name, "value": float(value)})
            last.update(metrics)
            if on_round is not None:
                on_round(r, metrics)
        out: dict[str, Any] = {
            "final_test_accuracy": last.get("test_accuracy"),
            "final_test_accuracy_min": last.get("test_accuracy_min"),
            "final_average_model_accuracy": last.get("average_model_accuracy"),
            "final_test_loss": last.get("test_loss"),
            "best_test_accuracy": best,
            "final_train_loss": last.get("train_loss"),
            "final_consensus_distance": last.get("consensus_distance"),
            "spectral_gap": gap,
            "rounds_completed": spec.rounds,
            "executor": exe_name,
            "vector_kind": VectorKind.MODEL.value,
            "n_params": int(X.shape[1]),
            "malicious_ids": str(np.flatnonzero(byz).tolist()),
            "peak_memory_bytes": peak_memory_bytes(device),
        }
        out.update({f"time.{p}": t for p, t in timer.total.items()})
        return RunOutput(out, rows, X[honest].mean(0).detach().cpu())
