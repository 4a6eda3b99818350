"""Build and check every component of a spec before any training.

scikit-learn's rule: cheap constructors that validate at once, so bad input fails early with one
clear message.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from flarena.core import registry
from flarena.core.contracts import is_data_poisoning, is_model_poisoning
from flarena.core.errors import SpecError
from flarena.core.seeding import Seeds
from flarena.core.spec import Component, Spec
from flarena.defenses.theory import theoretical_kappa
from flarena.engines.sim import Components


def _create(kind: str, comp: Component, key: str, prov: list[dict[str, str]], **extra: Any) -> Any:
    try:
        obj = registry.create(kind, comp.name, **comp.kwargs, **extra)
    except SpecError as exc:
        raise SpecError(f"{key}: {exc}") from None
    prov.append(registry.provenance(kind, comp.name))
    return obj


def build(spec: Spec, *, with_model: bool = True) -> Components:
    """Instantiate data, partition, model, algorithm, attack and defenses of ``spec``."""
    from flarena.datasets import load_dataset
    from flarena.models import build_model

    seeds = Seeds(spec.seed)
    prov: list[dict[str, str]] = []
    ds = spec.data.dataset
    try:
        data = load_dataset(ds.name, **ds.kwargs)
    except SpecError as exc:
        raise SpecError(f"data.dataset: {exc}") from None
    prov.append(registry.provenance("dataset", ds.name))
    if spec.data.normalize:
        data = data.standardized()
    n_train = len(data.y_train)
    if spec.data.n_clients > n_train:
        raise SpecError(
            f"invalid data.n_clients = {spec.data.n_clients}: more clients than the "
            f"{n_train} training examples of {ds.name!r}; every client needs at least one"
        )
    partitioner = _create("partitioner", spec.data.partition, "data.partition", prov)
    labels = data.y_train.numpy()
    parts = partitioner(labels, spec.data.n_clients, rng=seeds.numpy("partition"))
    empty = [i for i, p in enumerate(parts) if len(p) == 0]
    if empty or len(parts) != spec.data.n_clients:
        raise SpecError(
            f"data.partition {spec.data.partition.name!r} left client(s) {empty[:5]} with no "
            "example; use fewer clients or a less skewed partition"
        )
    algorithm = _create("algorithm", spec.algorithm, "algorithm", prov)
    cpr = getattr(algorithm, "clients_per_round", None)
    if cpr is not None and cpr > spec.data.n_clients:
        raise SpecError(
            f"invalid algorithm.clients_per_round = {cpr}: more than data.n_clients = "
            f"{spec.data.n_clients}"
        )
    attack = _create("attack", spec.attack.component, "attack", prov)
    check_threat_model(spec, attack)
    frameworks = getattr(attack, "frameworks", None)
    if frameworks and spec.framework not in frameworks:
        raise SpecError(
            f"attack {spec.attack.component.name!r} works in {' and '.join(frameworks)} runs "
            f"only; this spec has framework = {spec.framework!r}"
        )
    if spec.framework == "decentralized" and spec.attack.attackers != "fixed":
        raise SpecError(
            f"invalid attack.attackers = {spec.attack.attackers!r} for a decentralized run: "
            "Byzantine nodes are fixed for the whole run (allowed: fixed)"
        )
    client_defs = [
        _create("defense", c, f"defense.client[{i}]", prov)
        for i, c in enumerate(spec.defense.client)
    ]
    pres = [
        _create("preaggregator", c, f"defense.preaggregators[{i}]", prov)
        for i, c in enumerate(spec.defense.preaggregators)
    ]
    aggregator = _create("aggregator", spec.defense.aggregator, "defense.aggregator", prov)
    _check_rows(spec, algorithm, pres, aggregator)
    root_n = getattr(aggregator, "root_examples", None)
    if root_n is not None and int(root_n) > n_train:
        raise SpecError(
            f"defense.aggregator: root_examples = {root_n} exceeds the {n_train} training "
            f"examples of {ds.name!r}"
        )
    _create("engine", spec.engine.component, "engine", prov)
    topology = gossip_rule = adjacency = None
    if spec.framework == "decentralized":
        topology, gossip_rule, adjacency = _build_decentralized(spec, attack, seeds, prov)
    model: Any = None
    if with_model:
        mc = spec.model
        try:
            model = build_model(
                mc.name,
                input_shape=data.input_shape,
                num_classes=data.num_classes,
                generator_seed=seeds.int("model"),
                **mc.kwargs,
            )
        except SpecError as exc:
            raise SpecError(f"model: {exc}") from None
        prov.append(registry.provenance("model", mc.name))
    return Components(
        data=data,
        parts=[np.asarray(p, dtype=np.int64) for p in parts],
        model=model,
        algorithm=algorithm,
        attack=attack,
        client_defenses=client_defs,
        preaggregators=pres,
        aggregator=aggregator,
        provenance=prov,
        topology=topology,
        gossip_rule=gossip_rule,
        adjacency=adjacency,
    )


def _build_decentralized(
    spec: Spec, attack: Any, seeds: Seeds, prov: list[dict[str, str]]
) -> tuple[Any, Any, Any]:
    """Topology, gossip rule and (static) adjacency of a decentralized spec, checked."""
    from flarena.algorithms.mixing import check_mixing, mixing_matrix, require_connected
    from flarena.defenses.gossip.base import check_neighbourhoods
    from flarena.engines.gossip import byzantine_nodes

    dec = spec.decentralized
    topology = _create("topology", dec.topology, "decentralized.topology", prov)
    rule = _create("gossip_rule", dec.gossip_rule, "decentralized.gossip_rule", prov)
    n = spec.data.n_clients
    try:
        topology.check_n(n)
    except ValueError as exc:
        raise SpecError(f"decentralized.topology: {exc} (data.n_clients = {n})") from None
    if getattr(topology, "time_varying", False):
        return topology, rule, None
    try:
        adj = topology(n, rng=seeds.numpy("topology"), round=0)
        require_connected(adj, dec.topology.name)
        W = mixing_matrix(adj, dec.mixing, lazy=dec.lazy)
        check_mixing(W, need_doubly_stochastic=True, n=n)
    except ValueError as exc:
        raise SpecError(f"decentralized: {exc}") from None
    try:
        check_neighbourhoods(rule, adj, byzantine_nodes(spec.seed, n, spec.attack.n_malicious))
    except ValueError as exc:
        raise SpecError(
            f"decentralized.gossip_rule {dec.gossip_rule.name!r} cannot defend this graph "
            f"(topology {dec.topology.name!r}, attack.n_malicious = {spec.attack.n_malicious}, "
            f"seed {spec.seed}): {exc}"
        ) from None
    return topology, rule, adj


def _threat_needs(attack: Any) -> list[str]:
    tm = getattr(attack, "threat_model", None)
    if tm is None or not is_model_poisoning(attack):
        return []
    return [k for k in ("sees_honest_updates", "knows_aggregator") if getattr(tm, k, False)]


def check_threat_model(spec: Spec, attack: Any) -> None:
    """Refuse an attack that needs knowledge the spec's threat model forbids.

    ``attack.sees_honest_updates = false`` forbids attacks that read the honest clients' rows
    (ALIE, IPM, min-max, ...); ``attack.knows_aggregator = false`` forbids attacks that adapt to
    the defense (the "optimal" line searches, Fang et al.).
    """
    forbidden = [k for k in _threat_needs(attack) if not getattr(spec.attack, k)]
    if not forbidden:
        return
    allowed_now = []
    for name in registry.names("attack"):
        try:
            obj = registry.get("attack", name)
        except Exception:  # a broken third-party plugin must not hide the real message
            continue
        if all(getattr(spec.attack, k) for k in _threat_needs(obj)):
            allowed_now.append(name)
    what = {
        "sees_honest_updates": "the honest clients' updates",
        "knows_aggregator": "the defense in use",
    }
    key = forbidden[0]
    raise SpecError(
        f"attack {spec.attack.component.name!r} needs {what[key]} (its threat model declares "
        f"{key}), but the spec sets attack.{key} = false; attacks allowed under this threat "
        f"model: {', '.join(allowed_now)}"
    )


def semantics(spec: Spec, comp: Components) -> dict[str, Any]:
    """What the run's vectors and numbers mean, as ``semantics.*`` columns of ``runs``.

    The row kind (gradient, update or model), where momentum lives, the actual attacker count
    beside every defense step's declared ``f``, fixed or resampled attackers, what the
    aggregation weights are and whether an attacker can inflate them, and the attack's threat
    model (``omniscient``: it reads the honest updates).
    """
    algo, attack = comp.algorithm, comp.attack
    lp = algo.local_plan()
    tm = getattr(attack, "threat_model", None) if is_model_poisoning(attack) else None
    declared: dict[str, int] = {}
    steps = [(f"preaggregators[{i}]", p) for i, p in enumerate(comp.preaggregators)]
    steps.append(("aggregator", comp.aggregator))
    for key, rule in steps:
        f = getattr(rule, "f", None)
        if isinstance(f, int) and not isinstance(f, bool):
            declared[key] = f
    n_mal = spec.attack.n_malicious
    if algo.weighting == "examples":
        weights = (
            f"example counts as reported; malicious clients claim {spec.attack.claimed_examples}"
            if spec.attack.claimed_examples
            else "example counts as reported (truthfully)"
        )
    else:
        weights = "uniform"
    threat = "none"
    if tm is not None:
        parts = []
        if tm.sees_honest_updates:
            parts.append("omniscient (reads the honest updates)")
        if tm.knows_aggregator:
            parts.append("knows the defense")
        threat = "; ".join(parts) or "non-omniscient"
    elif is_data_poisoning(attack):
        threat = "data poisoning (own data only)"
    n_rows = getattr(algo, "clients_per_round", None) or spec.data.n_clients
    agg_f = declared.get("aggregator", n_mal)
    kappa = theoretical_kappa(
        spec.defense.aggregator.name,
        n_rows,
        agg_f,
        [p.name for p in spec.defense.preaggregators],
    )
    decentral = spec.framework == "decentralized"
    return {
        "kappa_theory": None if decentral else kappa,
        "semantics.vector_kind": "model" if decentral else algo.vector_kind.value,
        "semantics.client_momentum": float(lp.momentum),
        "semantics.server_momentum": float(algo.server_momentum),
        "semantics.n_malicious": n_mal,
        "semantics.declared_f": json.dumps(declared, sort_keys=True),
        "semantics.f_matches": all(f == n_mal for f in declared.values()) if declared else None,
        "semantics.attackers": spec.attack.attackers,
        "semantics.weights": weights,
        "semantics.threat_model": threat,
        "semantics.omniscient": bool(tm is not None and tm.sees_honest_updates),
        "semantics.momentum_kept": bool(decentral and spec.decentralized.keep_momentum)
        if lp.momentum
        else None,
    }


def _check_rows(spec: Spec, algorithm: Any, pres: list[Any], aggregator: Any) -> None:
    """Let each rule refuse the number of rows it will see (e.g. Krum needs n > 2f + 2).

    A rule may define ``check_n(n: int) -> None`` raising ``ValueError`` with the reason. The
    pre-aggregators may change the row count: each may define ``output_rows(n) -> int``.
    """
    n = getattr(algorithm, "clients_per_round", None) or spec.data.n_clients
    steps = [(f"defense.preaggregators[{i}]", p) for i, p in enumerate(pres)]
    steps.append(("defense.aggregator", aggregator))
    for key, rule in steps:
        check_n = getattr(rule, "check_n", None)
        if callable(check_n):
            try:
                check_n(n)
            except ValueError as exc:
                raise SpecError(f"{key}: {exc} (this round has n = {n} rows)") from None
        output_rows = getattr(rule, "output_rows", None)
        if callable(output_rows):
            n = int(output_rows(n))


def effective_params(spec: Spec) -> dict[str, Any]:
    """Every component's parameters with the plugin's defaults filled in, as dotted columns.

    The run id hashes only what the spec says; these columns make the defaults visible too.
    """
    out: dict[str, Any] = {}
    comps: list[tuple[str, str, Component]] = [
        ("dataset", "data.dataset", spec.data.dataset),
        ("partitioner", "data.partition", spec.data.partition),
        ("model", "model", spec.model),
        ("algorithm", "algorithm", spec.algorithm),
        ("attack", "attack", spec.attack.component),
        ("aggregator", "defense.aggregator", spec.defense.aggregator),
    ]
    for kind, key, comp in comps:
        params = registry.parameters_of(registry.get(kind, comp.name))
        for name, p in params.items():
            if name in ("input_shape", "num_classes") or p.default is p.empty:
                continue
            value = comp.kwargs.get(name, p.default)
            if isinstance(value, list | tuple):
                value = json.dumps(list(value))
            out[f"{key}.{name}"] = value
    return out


def label_histogram_rows(comp: Components) -> list[dict[str, int]]:
    """Per-client label counts as long rows ``{client, label, count}``."""
    labels = comp.data.y_train.numpy()
    rows = []
    for cid, ix in enumerate(comp.parts):
        counts = np.bincount(labels[ix], minlength=comp.data.num_classes)
        rows += [{"client": cid, "label": lab, "count": int(c)} for lab, c in enumerate(counts)]
    return rows
