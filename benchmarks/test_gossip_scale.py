"""One D-SGD round with 1,000 nodes on a ring and on an Erdős–Rényi graph (p = 0.01), MLP with
d = 9,550 parameters (784-12-10), one local SGD step of batch 32 per node.

The bundled mnist5k has only 4 training images per node at n = 1,000, so the benchmark swaps
in synthetic data of the same shape (32 random 28 x 28 images per node, random labels; the
test set is mnist5k's): the time of a step does not depend on the pixels. The mixing step's
cost relative to the local step is about ``degree / (3 B)`` in flops (``2 deg d`` per node
against ``6 B d``), so a realistic batch matters: with B = 4 gossip on the ER graph would cost
as much as the step.

Run: ``python -m pytest benchmarks/test_gossip_scale.py -q`` (part of ``make bench``). A table
prints at the end: the local step, the mixing step, the mixing step's share of the round, and
each topology's peak memory for a whole one-round run (measured in a fresh subprocess).

What is timed (all contenders in one process, warmed up once before timing):
- ``local_step[vmap|loop]``: every node's local SGD step from its own model (the executors of
  ``flarena.engines.local``; vmap is one batched computation, loop one node after another).
- ``mixing[<graph>-matrix]``: plain gossip as the engine runs it without Byzantine messages,
  one sparse product ``X <- W X`` (``mixing.gossip``).
- ``mixing[<graph>-per_edge]``: the same step through the per-edge layout every robust rule
  uses (``messages = X[src]``, then the ``gossip`` rule's ``index_add_``): the price of letting
  each neighbour send a different vector.
- ``mixing[<graph>-clipped_gossip]`` and ``mixing[<graph>-cs_plus]``: two robust rules.
The goal is a mixing step of at most 10% of the round (local step + mixing) and no Python loop
over nodes where a matrix product can do the work.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks.conftest import RESULTS, record
from flarena.algorithms.mixing import gossip, mixing_matrix, to_torch
from flarena.bench.preflight import build
from flarena.core.seeding import Seeds
from flarena.core.spec import parse_spec
from flarena.defenses.gossip.clipped_gossip import ClippedGossip
from flarena.defenses.gossip.cs_plus import CSPlus
from flarena.defenses.gossip.gossip_mean import GossipMean
from flarena.engines.gossip import edges_of
from flarena.engines.local import EXECUTORS, flat_params, make_plan
from flarena.engines.sim import Components

B = 32

N = 1000
GRAPHS: dict[str, Any] = {
    "ring": "ring",
    "er": {"name": "erdos_renyi", "p": 0.01, "max_tries": 50},
}
GROUP = "dsgd round, 1000 nodes, MLP 784-12-10 (9,550 params), batch 32"


def spec_dict(topology: Any) -> dict[str, Any]:
    return {
        "name": "gossip_scale",
        "seed": 0,
        "rounds": 1,
        "framework": "decentralized",
        "data": {"dataset": "mnist5k", "partition": "iid", "n_clients": N},
        "model": {"name": "mlp", "hidden": [12]},
        "algorithm": {"name": "fedavg", "lr": 0.05, "batch_size": B},
        "decentralized": {"topology": topology},
    }


def synthetic(comp: Components) -> Components:
    """``comp`` with B random training images per node (seeded), split contiguously."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N * B, *comp.data.x_train.shape[1:], generator=g)
    y = torch.randint(0, comp.data.num_classes, (N * B,), generator=g)
    data = dataclasses.replace(comp.data, x_train=x, y_train=y)
    parts = [np.arange(i * B, (i + 1) * B) for i in range(N)]
    return dataclasses.replace(comp, data=data, parts=parts)


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    spec = parse_spec(spec_dict("ring"))
    comp = synthetic(build(spec))
    lp = comp.algorithm.local_plan()
    seeds = Seeds(0)
    plan = make_plan(comp.parts, lp, [seeds.numpy("shuffle", 1, c) for c in range(N)])
    w = flat_params(comp.model)
    X = w + 0.01 * torch.randn(N, w.numel(), generator=torch.Generator().manual_seed(0))
    graphs = {}
    for name, topo in GRAPHS.items():
        c = build(parse_spec(spec_dict(topo)), with_model=False)
        W = mixing_matrix(c.adjacency, "metropolis")
        graphs[name] = (to_torch(W, dtype=X.dtype, device=X.device), edges_of(W, X.device, X.dtype))
    out = {"comp": comp, "lp": lp, "plan": plan, "X": X, "graphs": graphs}
    for ex in EXECUTORS:  # warm-up
        local_step(out, ex)
    return out


def local_step(s: dict[str, Any], executor: str) -> torch.Tensor:
    comp = s["comp"]
    delta, _ = EXECUTORS[executor](
        comp.model, s["X"], s["plan"], s["lp"], comp.data.x_train, comp.data.y_train
    )
    return delta


@pytest.mark.parametrize("executor", ["vmap", "loop"])
def test_local_step(benchmark: Any, setup: dict[str, Any], executor: str) -> None:
    delta = benchmark.pedantic(local_step, args=(setup, executor), rounds=3, warmup_rounds=0)
    assert delta.shape == setup["X"].shape and torch.isfinite(delta).all()
    record(f"{GROUP}/local_step[{executor}]", benchmark)


RULES = {
    "per_edge": GossipMean(),
    "clipped_gossip": ClippedGossip(tau=1.0),
    "cs_plus": CSPlus(f=1),
}


@pytest.mark.parametrize("graph", list(GRAPHS))
@pytest.mark.parametrize("how", ["matrix", *RULES])
def test_mixing(benchmark: Any, setup: dict[str, Any], graph: str, how: str) -> None:
    X = setup["X"]
    Wt, (src, dst, w) = setup["graphs"][graph]
    if how == "matrix":

        def step() -> torch.Tensor:
            return gossip(Wt, X)
    else:
        rule = RULES[how]

        def step() -> torch.Tensor:
            out: torch.Tensor = rule(X[src], src=src, dst=dst, weights=w, own=X)
            return out

    out = benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    if how in ("matrix", "per_edge"):  # both are X <- W X
        torch.testing.assert_close(out, Wt @ X if Wt.layout == torch.strided else gossip(Wt, X))
    record(f"{GROUP}/mixing[{graph}-{how}]", benchmark)


PEAK = textwrap.dedent(
    """
    import json, sys, torch
    from benchmarks.test_gossip_scale import synthetic
    from flarena.bench.allocator import tune_malloc
    from flarena.bench.preflight import build
    from flarena.bench.timing import peak_memory_bytes
    from flarena.core.spec import parse_spec
    from flarena.engines.gossip import GossipEngine
    tune_malloc()
    spec = parse_spec(json.loads(sys.argv[1]))
    comp = synthetic(build(spec))
    before = peak_memory_bytes(torch.device("cpu"))
    out = GossipEngine().run(spec, comp, device=torch.device("cpu"), executor=sys.argv[2])
    m = out.metrics
    print(json.dumps({"rss_before": before, "rss_peak": m["peak_memory_bytes"],
                      **{k: v for k, v in m.items() if k.startswith("time.")}}))
    """
)


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_peak_memory_of_a_one_round_run(graph: str) -> None:
    """A whole one-round run (graph, local step, mixing, per-node evaluation) in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, json.dumps(spec_dict(GRAPHS[graph])), "vmap"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["rss_peak"] > 0 and res["rss_before"] > 0
    PEAKS[graph] = res


PEAKS: dict[str, dict[str, float]] = {}


def pytest_terminal_summary_table() -> list[str]:
    """The markdown table for docs/BENCHMARKS.md (printed by benchmarks/conftest.py)."""
    res = {k.split("/", 1)[1]: v for k, v in RESULTS.items() if k.startswith(GROUP + "/")}
    if not res:
        return []
    step = min(res.get("local_step[vmap]", float("inf")), res.get("local_step[loop]", float("inf")))
    lines = [
        f"### {GROUP}",
        "",
        "| graph | mixing | mixing (s) | local step (s) | mixing share of the round |",
        "|---|---|---:|---:|---:|",
    ]
    for g in GRAPHS:
        for how in ["matrix", *RULES]:
            t = res.get(f"mixing[{g}-{how}]")
            if t is not None:
                lines.append(
                    f"| {g} | {how} | {t:.4f} | {step:.3f} | {100 * t / (t + step):.1f}% |"
                )
    for ex in ("vmap", "loop"):
        if f"local_step[{ex}]" in res:
            lines.append(f"\nlocal step, {ex} executor: {res[f'local_step[{ex}]']:.3f} s")
    for g, p in PEAKS.items():
        lines.append(
            f"\none-round run on {g}: peak RSS {p['rss_peak'] / 2**20:.0f} MiB "
            f"(after the set-up: {p['rss_before'] / 2**20:.0f} MiB); phases "
            + ", ".join(f"{k[5:]} {v:.3f} s" for k, v in p.items() if k.startswith("time."))
        )
    return lines
