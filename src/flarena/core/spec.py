"""Experiment specs: TOML -> validated, frozen, typed objects; ``--set`` overrides; matrices.

A spec is plain data. Components (dataset, partitioner, model, algorithm, attack, aggregator, ...)
are written either as a bare name (``partition = "iid"``) or as a table with ``name`` and the
plugin's keyword parameters (``partition = {name = "dirichlet", alpha = 0.3}``); both normalize to
the table form. The run id is a stable hash of the resolved spec, so matrices resume by id.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flarena.core.errors import SpecError, allowed, did_you_mean

# Sections whose value is one component: key -> registry kind.
COMPONENT_FIELDS: dict[str, str] = {
    "data.dataset": "dataset",
    "data.partition": "partitioner",
    "model": "model",
    "algorithm": "algorithm",
    "attack": "attack",
    "engine": "engine",
    "defense.aggregator": "aggregator",
    "decentralized.topology": "topology",
    "decentralized.gossip_rule": "gossip_rule",
}
# Fields holding a list of components.
COMPONENT_LIST_FIELDS: dict[str, str] = {
    "defense.preaggregators": "preaggregator",
    "defense.client": "defense",
}
# Keys of a component table that belong to the framework, not to the plugin's constructor.
RESERVED: dict[str, dict[str, Any]] = {
    "attack": {
        "n_malicious": 0,
        "attackers": "fixed",
        # the experiment's threat model: what attackers are allowed to know
        "sees_honest_updates": True,
        "knows_aggregator": True,
        # example count the malicious clients report for weighted aggregation (0: the truth)
        "claimed_examples": 0,
    },
    "engine": {"executor": "auto"},
}
CHANNELS = ("plain",)
FRAMEWORKS = ("federated", "decentralized")
MIXINGS = ("metropolis", "uniform")
ORDERS = ("step_then_gossip", "gossip_then_step")
ATTACKER_MODES = ("fixed", "resampled")
EXECUTORS = ("auto", "loop", "vmap")

DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "seed": 0,
    "rounds": 10,
    "eval_every": 1,
    "eval_clients_every": 0,
    "device": "auto",
    "dtype": "float32",
    "data": {
        "dataset": {"name": "mnist5k"},
        "partition": {"name": "iid"},
        "n_clients": 10,
        "normalize": True,
    },
    "model": {"name": "cnn"},
    "algorithm": {"name": "fedavg"},
    "attack": {
        "name": "none",
        "n_malicious": 0,
        "attackers": "fixed",
        "sees_honest_updates": True,
        "knows_aggregator": True,
        "claimed_examples": 0,
    },
    "defense": {
        "aggregator": {"name": "mean"},
        "preaggregators": [],
        "client": [],
        "channel": "plain",
    },
    "engine": {"name": "sim", "executor": "auto"},
    "framework": "federated",
    # used when framework = "decentralized": nodes hold models and gossip over a graph
    "decentralized": {
        "topology": {"name": "ring"},
        "mixing": "metropolis",
        "lazy": False,
        "gossip_rule": {"name": "gossip"},
        "order": "step_then_gossip",
        # each node's local momentum buffer persists across rounds (false: reset every round)
        "keep_momentum": True,
    },
}
# Scalar fields: dotted key -> (type, check, what is allowed).
SCALARS: dict[str, tuple[type | tuple[type, ...], Any, str]] = {
    "name": (str, lambda v: bool(v), "a non-empty string"),
    "seed": (int, lambda v: v >= 0, "an integer >= 0"),
    "rounds": (int, lambda v: v >= 1, "an integer >= 1"),
    "eval_every": (int, lambda v: v >= 1, "an integer >= 1"),
    "eval_clients_every": (int, lambda v: v >= 0, "an integer >= 0 (0: the final round only)"),
    "data.normalize": (bool, lambda v: True, "true or false"),
    "dtype": (str, lambda v: v in ("float32", "float64"), "float32 or float64"),
    "device": (
        str,
        lambda v: v in ("auto", "cpu", "cuda") or v.startswith("cuda:"),
        "auto, cpu, cuda or cuda:N",
    ),
    "data.n_clients": (int, lambda v: v >= 1, "an integer >= 1"),
    "defense.channel": (str, lambda v: v in CHANNELS, ", ".join(CHANNELS)),
    "attack.n_malicious": (int, lambda v: v >= 0, "an integer >= 0"),
    "attack.attackers": (str, lambda v: v in ATTACKER_MODES, ", ".join(ATTACKER_MODES)),
    "attack.sees_honest_updates": (bool, lambda v: True, "true or false"),
    "attack.knows_aggregator": (bool, lambda v: True, "true or false"),
    "attack.claimed_examples": (
        int,
        lambda v: v >= 0,
        "an integer >= 0 (0: malicious clients report their true example count)",
    ),
    "engine.executor": (str, lambda v: v in EXECUTORS, ", ".join(EXECUTORS)),
    "framework": (str, lambda v: v in FRAMEWORKS, ", ".join(FRAMEWORKS)),
    "decentralized.mixing": (str, lambda v: v in MIXINGS, ", ".join(MIXINGS)),
    "decentralized.lazy": (bool, lambda v: True, "true or false"),
    "decentralized.order": (str, lambda v: v in ORDERS, ", ".join(ORDERS)),
    "decentralized.keep_momentum": (bool, lambda v: True, "true or false"),
}
TOP_SECTIONS = {
    "data",
    "model",
    "algorithm",
    "attack",
    "defense",
    "engine",
    "decentralized",
    "matrix",
}


@dataclass(frozen=True)
class Component:
    """A plugin reference: its registered name (or ``module:Object``) and keyword parameters."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        """The parameters as a fresh dict."""
        return {k: copy.deepcopy(v) for k, v in self.params}

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form ``{"name": ..., **params}``."""
        return {"name": self.name, **self.kwargs}


@dataclass(frozen=True)
class DataSpec:
    """Which data set, how it is split, among how many clients."""

    dataset: Component
    partition: Component
    n_clients: int
    normalize: bool = True


@dataclass(frozen=True)
class AttackSpec:
    """The attack plugin, how many clients it controls, fixed or resampled each round.

    ``sees_honest_updates`` and ``knows_aggregator`` are the experiment's threat model (what an
    attacker is allowed to know); an attack that needs more is refused before training.
    ``claimed_examples`` is the example count malicious clients report (0: the truth), which
    matters when the server weights by reported counts.
    """

    component: Component
    n_malicious: int = 0
    attackers: str = "fixed"
    sees_honest_updates: bool = True
    knows_aggregator: bool = True
    claimed_examples: int = 0


@dataclass(frozen=True)
class DefenseSpec:
    """Client-side transforms -> channel -> pre-aggregators -> aggregator."""

    aggregator: Component
    preaggregators: tuple[Component, ...] = ()
    client: tuple[Component, ...] = ()
    channel: str = "plain"


@dataclass(frozen=True)
class DecentralizedSpec:
    """The graph, its gossip matrix and the rule each node mixes with (decentralized runs)."""

    topology: Component
    mixing: str = "metropolis"
    lazy: bool = False
    gossip_rule: Component = Component("gossip")
    order: str = "step_then_gossip"
    keep_momentum: bool = True


@dataclass(frozen=True)
class EngineSpec:
    """Which engine runs the spec, and how local training is executed."""

    component: Component
    executor: str = "auto"


@dataclass(frozen=True)
class Spec:
    """One fully resolved experiment (one cell of a matrix)."""

    name: str
    seed: int
    rounds: int
    eval_every: int
    eval_clients_every: int
    device: str
    dtype: str
    data: DataSpec
    model: Component
    algorithm: Component
    attack: AttackSpec
    defense: DefenseSpec
    engine: EngineSpec
    framework: str = "federated"
    decentralized: DecentralizedSpec = DecentralizedSpec(Component("ring"))
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as plain data (round-trips through :func:`parse_spec`)."""
        return copy.deepcopy(dict(self.raw))

    def flat(self) -> dict[str, Any]:
        """Every field as a dotted column (lists of components as JSON strings)."""
        return flatten(self.to_dict())

    @property
    def run_id(self) -> str:
        """Stable hash of the resolved spec (its name excluded), 16 hex digits."""
        d = self.to_dict()
        d.pop("name", None)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- loading --------------------------------------------------------------------------------------


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning I/O and syntax errors into :class:`SpecError`."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SpecError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"malformed TOML in {p}: {exc}") from None
    except OSError as exc:
        raise SpecError(f"cannot read config {p}: {exc}") from None


def parse_value(text: str) -> Any:
    """Parse an override value as a TOML value (``0.1``, ``true``, ``[1, 2]``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: list[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["a.b=1", ...]`` or a mapping -> ``{"a.b": 1}``."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(
                f"override {item!r} is not of the form key=value (e.g. algorithm.lr=0.1)"
            )
        out[key.strip()] = parse_value(value.strip())
    return out


def _normalize_component(value: Any, key: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, Mapping):
        if "name" not in value or not isinstance(value["name"], str):
            raise SpecError(f"{key}: a component table needs a string 'name' (got {dict(value)!r})")
        return dict(value)
    raise SpecError(f"{key}: expected a name or a table with 'name', got {value!r}")


def normalize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults, check keys, and turn every component into its table form."""
    d = copy.deepcopy(dict(raw))
    known_top = set(DEFAULTS) | TOP_SECTIONS
    for key in d:
        if key not in known_top:
            raise SpecError(
                f"unknown key {key!r}{did_you_mean(key, known_top)}; allowed: {allowed(known_top)}"
            )
    out: dict[str, Any] = copy.deepcopy(DEFAULTS)
    for key, value in d.items():
        if key == "matrix":
            continue
        if key in ("model", "algorithm", "attack", "engine"):
            comp = _normalize_component(value, key)
            out[key] = {**RESERVED.get(key, {}), **comp}
        elif key in ("data", "defense", "decentralized"):
            if not isinstance(value, Mapping):
                raise SpecError(f"[{key}] must be a table, got {value!r}")
            for sub, v in value.items():
                if sub not in out[key]:
                    raise SpecError(
                        f"unknown key '{key}.{sub}'{did_you_mean(sub, out[key])}; "
                        f"allowed in [{key}]: {allowed(out[key])}"
                    )
                dotted = f"{key}.{sub}"
                if dotted in COMPONENT_FIELDS:
                    out[key][sub] = _normalize_component(v, dotted)
                elif dotted in COMPONENT_LIST_FIELDS:
                    if not isinstance(v, list):
                        raise SpecError(f"{dotted} must be a list of components, got {v!r}")
                    out[key][sub] = [_normalize_component(c, dotted) for c in v]
                else:
                    out[key][sub] = v
        else:
            out[key] = value
    return out


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """Assign ``value`` at dotted ``key`` in a normalized spec dict (promoting bare components)."""
    parts = key.split(".")
    if key in ("data", "defense", "decentralized"):
        # a whole section: `defense` is replaced (a pipeline, unset steps back to defaults),
        # `data` and `decentralized` are merged into
        if not isinstance(value, Mapping):
            raise SpecError(f"{key} must be a table, got {value!r}")
        if key == "defense":
            d[key] = copy.deepcopy(DEFAULTS[key])
        for sub, v in value.items():
            if sub not in d[key]:
                raise SpecError(
                    f"unknown key '{key}.{sub}'{did_you_mean(sub, d[key])}; "
                    f"allowed in [{key}]: {allowed(d[key])}"
                )
            set_dotted(d, f"{key}.{sub}", v)
        return
    if parts[0] not in DEFAULTS:
        top = set(DEFAULTS)
        raise SpecError(
            f"unknown key {key!r}{did_you_mean(parts[0], top)}; top-level keys: {allowed(top)}"
        )
    node: Any = d
    for i, part in enumerate(parts[:-1]):
        prefix = ".".join(parts[: i + 1])
        child = node.get(part) if isinstance(node, dict) else None
        if isinstance(child, str) and (prefix in COMPONENT_FIELDS):
            child = {"name": child}
            node[part] = child
        if not isinstance(child, dict):
            raise SpecError(f"cannot set {key!r}: {prefix!r} is not a table")
        node = child
    last = parts[-1]
    if key in COMPONENT_FIELDS or key in ("model", "algorithm", "attack", "engine"):
        value = _normalize_component(value, key)
        old = node.get(last, {})
        reserved = RESERVED.get(key, {})
        value = {**{k: old.get(k, v) for k, v in reserved.items()}, **value}
    elif key in COMPONENT_LIST_FIELDS:
        if not isinstance(value, list):
            raise SpecError(f"{key} must be a list of components, got {value!r}")
        value = [_normalize_component(c, key) for c in value]
    elif len(parts) >= 2 and isinstance(node, dict) and last not in node:
        section = ".".join(parts[:-1])
        if section not in COMPONENT_FIELDS and section not in (
            "model",
            "algorithm",
            "attack",
            "engine",
        ):
            raise SpecError(
                f"unknown key {key!r}{did_you_mean(last, node)}; allowed in [{section}]: "
                f"{allowed(node)}"
            )
    node[last] = copy.deepcopy(value)


def _check_scalars(d: Mapping[str, Any]) -> None:
    for key, (typ, check, what) in SCALARS.items():
        node: Any = d
        for part in key.split("."):
            node = node[part]
        bad_type = isinstance(node, bool) != (typ is bool)
        if bad_type or not isinstance(node, typ) or not check(node):
            raise SpecError(f"invalid {key} = {node!r}: must be {what}")


def _component(d: Mapping[str, Any], reserved: Mapping[str, Any] = {}) -> Component:
    params = tuple(sorted((k, v) for k, v in d.items() if k != "name" and k not in reserved))
    return Component(str(d["name"]), params)


def parse_spec(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Spec:
    """Validate a (single-cell) spec mapping into a frozen :class:`Spec`.

    This checks structure, keys and scalar values. Plugin names and their parameters are checked
    by :func:`flarena.bench.preflight.check_spec`, which instantiates the components.
    """
    d = normalize(raw)
    for key, value in (overrides or {}).items():
        set_dotted(d, key, value)
    _check_scalars(d)
    if d["attack"]["n_malicious"] >= d["data"]["n_clients"]:
        raise SpecError(
            f"invalid attack.n_malicious = {d['attack']['n_malicious']}: must be smaller than "
            f"data.n_clients = {d['data']['n_clients']}"
        )
    if d["attack"]["name"] == "none" and d["attack"]["n_malicious"] > 0:
        raise SpecError("attack.n_malicious > 0 needs an attack: set attack.name")
    return Spec(
        name=d["name"],
        seed=d["seed"],
        rounds=d["rounds"],
        eval_every=d["eval_every"],
        eval_clients_every=d["eval_clients_every"],
        device=d["device"],
        dtype=d["dtype"],
        data=DataSpec(
            _component(d["data"]["dataset"]),
            _component(d["data"]["partition"]),
            d["data"]["n_clients"],
            d["data"]["normalize"],
        ),
        model=_component(d["model"]),
        algorithm=_component(d["algorithm"]),
        attack=AttackSpec(
            _component(d["attack"], RESERVED["attack"]),
            d["attack"]["n_malicious"],
            d["attack"]["attackers"],
            d["attack"]["sees_honest_updates"],
            d["attack"]["knows_aggregator"],
            d["attack"]["claimed_examples"],
        ),
        defense=DefenseSpec(
            _component(d["defense"]["aggregator"]),
            tuple(_component(c) for c in d["defense"]["preaggregators"]),
            tuple(_component(c) for c in d["defense"]["client"]),
            d["defense"]["channel"],
        ),
        engine=EngineSpec(_component(d["engine"], RESERVED["engine"]), d["engine"]["executor"]),
        framework=d["framework"],
        decentralized=DecentralizedSpec(
            _component(d["decentralized"]["topology"]),
            d["decentralized"]["mixing"],
            d["decentralized"]["lazy"],
            _component(d["decentralized"]["gossip_rule"]),
            d["decentralized"]["order"],
            d["decentralized"]["keep_momentum"],
        ),
        raw=d,
    )


def baseline_run_id(spec: Spec) -> str | None:
    """Run id of the same spec without attack (the twin an accuracy drop is measured against).

    None if ``spec`` has no attack already.
    """
    if spec.attack.component.name == "none" and spec.attack.n_malicious == 0:
        return None
    d = spec.to_dict()
    d["attack"] = copy.deepcopy(DEFAULTS["attack"])
    return parse_spec(d).run_id


# --- matrices -------------------------------------------------------------------------------------


def _matches(cell: Mapping[str, Any], rule: Mapping[str, Any]) -> bool:
    flat = flatten(cell)
    for key, want in rule.items():
        if key in COMPONENT_FIELDS or key in ("model", "algorithm", "attack", "engine"):
            want_c = _normalize_component(want, key)
            have = {k[len(key) + 1 :]: v for k, v in flat.items() if k.startswith(key + ".")}
            if any(have.get(k) != v for k, v in want_c.items()):
                return False
        elif flat.get(key, _MISSING) != want:
            return False
    return True


_MISSING = object()


def expand(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> list[Spec]:
    """Cross the ``[matrix]`` lists into specs (in a stable order), drop excluded and duplicates."""
    d = dict(raw)
    overrides = dict(overrides or {})
    matrix = dict(d.pop("matrix", {}) or {})
    for key in [k for k in overrides if k.startswith("matrix.")]:
        matrix[key[len("matrix.") :]] = overrides.pop(key)
    if not isinstance(matrix, dict):
        raise SpecError(f"[matrix] must be a table, got {matrix!r}")
    exclude = matrix.pop("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(r, dict) for r in exclude):
        raise SpecError("matrix.exclude must be a list of tables, e.g. [{seed = 1}]")
    axes: list[tuple[str, list[Any]]] = []
    for key, values in matrix.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"matrix.{key} must be a non-empty list, got {values!r}")
        axes.append((key, values))
    base = parse_spec(d, overrides)  # validates the base before crossing
    specs: list[Spec] = []
    seen: set[str] = set()
    cells: list[dict[str, Any]] = [{}]
    for key, values in axes:
        cells = [{**c, key: v} for c in cells for v in values]
    for assignment in cells:
        # --set overrides win over the matrix: applied again after the cell's own values
        merged = dict(assignment)
        for key, value in overrides.items():
            merged.pop(key, None)
            merged[key] = value
        spec = parse_spec(base.to_dict(), merged) if assignment else base
        if any(_matches(spec.to_dict(), rule) for rule in exclude):
            continue
        if spec.run_id not in seen:
            seen.add(spec.run_id)
            specs.append(spec)
    if not specs:
        raise SpecError("the matrix is empty: every cell is excluded")
    return specs


def load_matrix(
    config: str | Path | Mapping[str, Any], overrides: list[str] | Mapping[str, Any] | None = None
) -> list[Spec]:
    """Load a TOML path or a mapping, apply overrides, and expand its matrix into specs."""
    raw = load_toml(config) if isinstance(config, str | Path) else dict(config)
    return expand(raw, parse_overrides(overrides))


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> dotted keys; lists become JSON strings (tidy, Parquet-friendly)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list | tuple):
            out[key] = json.dumps(v, sort_keys=True, default=str)
        else:
            out[key] = v
    return out
