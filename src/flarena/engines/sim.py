"""The ``sim`` engine: every client in one process, updates as one ``[n, d]`` tensor.

One round: sample clients -> broadcast -> local training (batched or loop) -> attack hook
(malicious rows crafted, or malicious data poisoned beforehand) -> client-side defenses (honest
rows) -> channel -> pre-aggregators -> aggregator -> server step -> evaluate every k rounds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flarena.algorithms.base import ServerAlgorithm
from flarena.bench.timing import PhaseTimer, peak_memory_bytes, reset_peak_memory
from flarena.core.contracts import (
    AttackContext,
    DataPoisoning,
    RoundContext,
    is_data_poisoning,
    is_model_poisoning,
)
from flarena.core.errors import FlarenaError
from flarena.core.registry import register
from flarena.core.seeding import Seeds
from flarena.defenses.pipeline import DefenseView, apply_server_defense
from flarena.engines.local import EXECUTORS, default_executor, flat_params, load_flat, make_plan

log = logging.getLogger(__name__)

Row = dict[str, Any]


@dataclass
class Components:
    """The instantiated plugins of one spec (see :func:`flarena.bench.preflight.build`)."""

    data: Any  # DataBundle
    parts: list[np.ndarray]
    model: nn.Module
    algorithm: ServerAlgorithm
    attack: Any
    client_defenses: list[Any]
    preaggregators: list[Any]
    aggregator: Any
    provenance: list[dict[str, str]] = field(default_factory=list)
    # decentralized runs: the topology plugin, the gossip rule, and the static graph's
    # adjacency (None for a time-varying topology, which is drawn each round)
    topology: Any = None
    gossip_rule: Any = None
    adjacency: Any = None


@dataclass
class RunOutput:
    """What one run produced: final metrics for ``runs`` and long rows for ``rounds``."""

    metrics: dict[str, Any]
    rounds: list[Row]
    final_params: Tensor | None = None


class RunDiverged(FlarenaError):
    """The global model became non-finite."""


@torch.no_grad()
def evaluate(
    model: nn.Module, vec: Tensor, x: Tensor, y: Tensor, chunk: int = 2048
) -> tuple[float, float, Tensor]:
    """Accuracy, mean cross-entropy and per-example correctness of the model ``vec`` on (x, y)."""
    load_flat(model, vec)
    model.eval()
    correct = torch.empty(len(y), dtype=torch.bool, device=y.device)
    loss = torch.zeros((), device=y.device, dtype=x.dtype)
    for i in range(0, len(y), chunk):
        out = model(x[i : i + chunk])
        loss += F.cross_entropy(out, y[i : i + chunk], reduction="sum")
        correct[i : i + chunk] = out.argmax(1) == y[i : i + chunk]
    return float(correct.float().mean()), float(loss) / len(y), correct


def robustness_metrics(agg: Tensor, honest: Tensor) -> dict[str, float]:
    r"""Distance of the aggregate from the honest mean: raw, and as a robustness coefficient.

    ``agg_error`` :math:`= \lVert a - \bar x_H \rVert` and
    ``kappa_hat`` :math:`= \lVert a - \bar x_H \rVert^2 / (\frac{1}{|H|}
    \sum_{i \in H} \lVert x_i - \bar x_H \rVert^2)`, the empirical counterpart of the
    :math:`(f, \kappa)`-robustness of Allouah et al. 2023 ("Fixing by Mixing"), with
    :math:`\bar x_H` the *unweighted* mean of the rows the honest clients sent. ``kappa_hat`` is
    NaN when the honest rows are all equal (zero spread).
    """
    if honest.shape[0] == 0:
        return {}
    mean_h = honest.double().mean(0)
    err2 = float(((agg.double() - mean_h) ** 2).sum())
    spread = float(((honest.double() - mean_h) ** 2).sum(1).mean())
    return {
        "agg_error": err2**0.5,
        "kappa_hat": err2 / spread if spread > 0 else float("nan"),
    }


def _rows_context(ctx: RoundContext, mask: Tensor) -> RoundContext:
    """The round's context restricted to the rows selected by ``mask`` (weights, ids, flags)."""
    cpu_mask = mask.cpu()
    return replace(
        ctx,
        client_ids=ctx.client_ids[cpu_mask],
        weights=ctx.weights[mask],
        malicious=None if ctx.malicious is None else ctx.malicious[cpu_mask],
        info={},
    )


@register("engine", "sim")
class SimEngine:
    """In-process engine: all clients as tensors on one device; the fastest and the reference."""

    def run(
        self,
        spec: Any,
        comp: Components,
        *,
        device: torch.device,
        executor: str = "auto",
        on_round: Callable[[int, dict[str, float]], None] | None = None,
    ) -> RunOutput:
        """Train ``spec.rounds`` rounds and return metrics and per-round rows."""
        seeds = Seeds(spec.seed)
        exe_name = default_executor(device) if executor == "auto" else executor
        train = EXECUTORS[exe_name]
        timer = PhaseTimer(device)
        reset_peak_memory(device)
        dtype = getattr(torch, spec.dtype)
        data, algo, model = comp.data, comp.algorithm, comp.model.to(device, dtype)
        xtr, ytr = data.x_train.to(device, dtype), data.y_train.to(device)
        xte, yte = data.x_test.to(device, dtype), data.y_test.to(device)
        n_clients = len(comp.parts)
        counts = torch.tensor([len(p) for p in comp.parts], dtype=torch.float32)
        owner = torch.empty(len(ytr), dtype=torch.long)
        for cid, ix in enumerate(comp.parts):
            owner[torch.from_numpy(ix)] = cid
        owner = owner.to(device)
        global_vec = flat_params(model).to(device)
        server_buf = torch.zeros_like(global_vec)
        prev_agg: Tensor | None = None
        lp = algo.local_plan()
        n_mal = spec.attack.n_malicious
        claimed = spec.attack.claimed_examples
        threat = getattr(comp.attack, "threat_model", None)
        knows_defense = bool(getattr(threat, "knows_aggregator", False))
        # FLTrust-style rules: the server's clean root data set, sampled once from the training
        # set (as in Cao et al. 2021), trained on each round with the clients' local plan
        root_n = getattr(comp.aggregator, "root_examples", None)
        root_idx = (
            np.sort(seeds.numpy("root").choice(len(ytr), int(root_n), replace=False))
            if root_n
            else None
        )
        # attack success rate: the inputs the attacker wants classified as its labels
        asr_set = None
        success_inputs = getattr(comp.attack, "success_inputs", None)
        if is_data_poisoning(comp.attack) and n_mal > 0 and callable(success_inputs):
            got = success_inputs(xte, yte, num_classes=data.num_classes)
            if got is not None and len(got[1]) > 0:
                asr_set = (got[0].to(device, dtype), got[1].to(device))
        adjust = getattr(comp.attack, "adjust_update", None)
        if getattr(adjust, "__func__", None) is DataPoisoning.adjust_update:
            adjust = None  # the identity: skip the copy
        fixed_mal = np.sort(seeds.numpy("attackers").choice(n_clients, n_mal, replace=False))
        rows: list[Row] = []
        last: dict[str, float] = {}
        best_acc = float("nan")
        detection: list[float] = []
        kappas: list[float] = []
        for r in range(1, spec.rounds + 1):
            # --- sampling ---------------------------------------------------------------------
            k = algo.clients_per_round or n_clients
            if k > n_clients:
                k = n_clients
            sampled = np.sort(seeds.numpy("sampling", r).choice(n_clients, k, replace=False))
            mal_set = (
                fixed_mal
                if spec.attack.attackers == "fixed"
                else np.sort(seeds.numpy("attackers", r).choice(n_clients, n_mal, replace=False))
            )
            is_mal = np.isin(sampled, mal_set)
            actx = AttackContext(
                round=r,
                malicious_ids=torch.from_numpy(sampled[is_mal]),
                n_clients=k,
                vector_kind=algo.vector_kind,
                generator=seeds.torch("attack", r, device=device),
                rng=seeds.numpy("attack", r),
                global_params=global_vec,
                num_classes=data.num_classes,
            )
            # --- attack on data (before training) --------------------------------------------
            x_seen, y_seen = xtr, ytr
            crafting = is_model_poisoning(comp.attack) and n_mal > 0
            with timer.phase("attack"):
                if is_data_poisoning(comp.attack) and is_mal.any():
                    x_seen, y_seen = xtr.clone(), ytr.clone()
                    for cid in sampled[is_mal]:
                        sel = torch.from_numpy(comp.parts[cid]).to(device)
                        px, py = comp.attack.poison(xtr[sel], ytr[sel], ctx=actx)
                        x_seen[sel], y_seen[sel] = px.to(device), py.to(device)
            # --- local training ---------------------------------------------------------------
            trainers = sampled[~is_mal] if crafting else sampled
            plan = make_plan(
                [comp.parts[c] for c in trainers],
                lp,
                [seeds.numpy("shuffle", r, int(c)) for c in trainers],
            )
            with timer.phase("local_train"):
                trained, losses = train(model, global_vec, plan, lp, x_seen, y_seen)
            server_update = None
            if root_idx is not None:
                with timer.phase("server_train"):
                    root_plan = make_plan([root_idx], lp, [seeds.numpy("root_shuffle", r)])
                    server_update = train(model, global_vec, root_plan, lp, xtr, ytr)[0][0]
            weights = counts[sampled] if algo.weighting == "examples" else torch.ones(k)
            if claimed and algo.weighting == "examples":
                weights[torch.from_numpy(is_mal)] = float(claimed)
            rctx = RoundContext(
                round=r,
                client_ids=torch.from_numpy(sampled),
                weights=weights.to(device),
                vector_kind=algo.vector_kind,
                declared_f=n_mal,
                generator=seeds.torch("defense", r, device=device),
                previous_aggregate=prev_agg,
                global_params=global_vec,
                malicious=torch.from_numpy(is_mal),
                server_update=server_update,
            )
            if knows_defense:
                actx.aggregator = DefenseView(
                    comp.preaggregators,
                    comp.aggregator,
                    rctx,
                    seed=seeds.int("attacker_view", r),
                )
            # --- attack on updates ------------------------------------------------------------
            with timer.phase("attack"):
                if callable(adjust) and is_data_poisoning(comp.attack) and is_mal.any():
                    mal_rows = torch.from_numpy(is_mal).to(device)
                    adjusted = adjust(trained[mal_rows], ctx=actx)
                    trained = trained.clone()
                    trained[mal_rows] = adjusted.to(trained.dtype)
                if crafting and is_mal.any():
                    honest = (
                        trained if comp.attack.threat_model.sees_honest_updates else trained[:0]
                    )
                    bad = comp.attack.craft(honest, n_malicious=int(is_mal.sum()), ctx=actx)
                    if tuple(bad.shape) != (int(is_mal.sum()), global_vec.numel()):
                        raise FlarenaError(
                            f"attack returned shape {tuple(bad.shape)}, expected "
                            f"({int(is_mal.sum())}, {global_vec.numel()})"
                        )
                    updates = torch.empty(k, global_vec.numel(), device=device, dtype=dtype)
                    updates[torch.from_numpy(~is_mal).to(device)] = trained
                    updates[torch.from_numpy(is_mal).to(device)] = bad.to(device, updates.dtype)
                else:
                    updates = trained
            opt_param = actx.info.get("opt_param")
            # --- defenses ---------------------------------------------------------------------
            with timer.phase("defense"):
                if comp.client_defenses:
                    honest_mask = torch.from_numpy(~is_mal).to(device)
                    hctx = _rows_context(rctx, honest_mask)
                    h = updates[honest_mask]
                    for d in comp.client_defenses:
                        h = d(h, ctx=hctx)
                    updates = updates.clone()
                    updates[honest_mask] = h
                honest_sent = updates[torch.from_numpy(~is_mal).to(device)]
            with timer.phase("aggregate"):
                agg = apply_server_defense(comp.preaggregators, comp.aggregator, updates, rctx)
                robust = robustness_metrics(agg, honest_sent)
                if opt_param is not None:
                    robust["attack_param"] = float(opt_param)
                kept = rctx.info.get("kept")
                if kept is not None:
                    kept = torch.as_tensor(kept).cpu()
                    if kept.dtype == torch.bool and kept.numel() == k:
                        mal_t = torch.from_numpy(is_mal)
                        if is_mal.any():
                            robust["malicious_kept"] = float(kept[mal_t].float().mean())
                            detection.append(1.0 - robust["malicious_kept"])
                        robust["honest_dropped"] = float((~kept[~mal_t]).float().mean())
                direction = algo.server_direction_sign() * agg
                server_buf = algo.server_momentum * server_buf + direction
                global_vec = global_vec + algo.server_lr * server_buf
                prev_agg = agg
            if not torch.isfinite(global_vec).all():
                raise RunDiverged(f"the global model became non-finite in round {r}")
            # --- evaluation -------------------------------------------------------------------
            round_metrics: dict[str, float] = {"train_loss": float(losses.mean()), **robust}
            for c, loss_c in zip(trainers, losses.tolist(), strict=True):
                rows.append({"round": r, "node": int(c), "metric": "local_loss", "value": loss_c})
            if r % spec.eval_every == 0 or r == spec.rounds:
                with timer.phase("evaluate"):
                    acc, loss, _ = evaluate(model, global_vec, xte, yte)
                round_metrics.update(test_accuracy=acc, test_loss=loss)
                if asr_set is not None:
                    asr_acc, _, _ = evaluate(model, global_vec, *asr_set)
                    round_metrics["attack_success_rate"] = asr_acc
                best_acc = acc if not best_acc >= acc else best_acc
            every_c = spec.eval_clients_every
            if r == spec.rounds or (every_c and r % every_c == 0):
                with timer.phase("evaluate"):
                    _, _, corr = evaluate(model, global_vec, xtr, ytr)
                    per_client = torch.bincount(owner, weights=corr.float(), minlength=n_clients)
                    per_client = per_client / torch.bincount(owner, minlength=n_clients).clamp_min(
                        1
                    )
                for c, a in enumerate(per_client.tolist()):
                    rows.append({"round": r, "node": c, "metric": "client_accuracy", "value": a})
            times = timer.pop_round()
            round_metrics.update({f"time.{p}": t for p, t in times.items()})
            for name, value in round_metrics.items():
                rows.append({"round": r, "node": None, "metric": name, "value": float(value)})
            last.update(round_metrics)
            if "kappa_hat" in robust and np.isfinite(robust["kappa_hat"]):
                kappas.append(robust["kappa_hat"])
            if on_round is not None:
                on_round(r, round_metrics)
        metrics: dict[str, Any] = {
            "final_test_accuracy": last.get("test_accuracy"),
            "final_test_loss": last.get("test_loss"),
            "best_test_accuracy": best_acc,
            "final_train_loss": last.get("train_loss"),
            "rounds_completed": spec.rounds,
            "executor": exe_name,
            "vector_kind": algo.vector_kind.value,
            "n_params": int(global_vec.numel()),
            "malicious_ids": json.dumps(
                fixed_mal.tolist() if spec.attack.attackers == "fixed" else "resampled"
            ),
            "peak_memory_bytes": peak_memory_bytes(device),
            "malicious_removed_rate": float(np.mean(detection)) if detection else None,
            "final_attack_success_rate": last.get("attack_success_rate"),
            "kappa_hat_mean": float(np.mean(kappas)) if kappas else None,
            "kappa_hat_max": float(np.max(kappas)) if kappas else None,
        }
        metrics.update({f"time.{p}": t for p, t in timer.total.items()})
        return RunOutput(metrics, rows, global_vec.detach().cpu())
