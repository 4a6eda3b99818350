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
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flarena.algorithms.mixing import mixing_matrix, spectral_gap
from flarena.bench.timing import PhaseTimer, peak_memory_bytes
from flarena.core.contracts import AttackContext, VectorKind, is_data_poisoning
from flarena.core.seeding import Seeds
from flarena.defenses.gossip.base import GossipContext
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


class GossipEngine:
    """The in-process decentralized engine (``framework = "decentralized"``)."""

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
        byz = np.zeros(n, dtype=bool)
        byz[seeds.numpy("attackers").choice(n, n_mal, replace=False)] = True
        honest = torch.from_numpy(~byz).to(device)
        byz_t = torch.from_numpy(byz).to(device)

        def graph(r: int) -> tuple[Any, tuple[Tensor, Tensor, Tensor]]:
            adj = comp.adjacency
            if adj is None:  # time-varying: a new draw each round
                adj = comp.topology(n, rng=seeds.numpy("topology", r), round=r)
            W = mixing_matrix(adj, dec.mixing, lazy=dec.lazy)
            return W, edges_of(W, device, dtype)

        W0, edges = graph(0)
        gap = spectral_gap(W0)
        rows: list[dict[str, Any]] = []
        last: dict[str, float] = {}
        best = float("nan")
        for r in range(1, spec.rounds + 1):
            if comp.adjacency is None and r > 1:
                _, edges = graph(r)
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
                edges: tuple[Tensor, Tensor, Tensor] = edges,
            ) -> Tensor:
                src, dst, w = edges
                with timer.phase("gossip"):
                    out: Tensor = comp.gossip_rule(
                        models[src], src=src, dst=dst, weights=w, own=models, ctx=gctx
                    )
                return out

            if dec.order == "gossip_then_step":
                X = mix(X)
            plan = make_plan(comp.parts, lp, [seeds.numpy("shuffle", r, c) for c in range(n)])
            with timer.phase("local_train"):
                delta, losses = train(model, X, plan, lp, x_seen, y_seen)
            X = X + delta
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
                    accs = []
                    for i in np.flatnonzero(~byz):
                        acc_i, _, _ = evaluate(model, X[i], xte, yte)
                        accs.append(acc_i)
                        rows.append(
                            {"round": r, "node": int(i), "metric": "test_accuracy", "value": acc_i}
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
