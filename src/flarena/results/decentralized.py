"""Plots and report sections of decentralized (gossip) runs: consensus, node spread, graphs.

Pure functions from the tidy tables to matplotlib figures, like :mod:`flarena.results.plots`,
plus :func:`decentralized_sections`, the ``report.md`` sections of the decentralized runs of a
results directory. Every metric of a decentralized run is over its *honest* nodes: ``rounds``
holds, per round, aggregate rows (``node`` missing: ``test_accuracy`` is the mean of the honest
nodes' accuracies, ``test_accuracy_min``/``_max``, ``average_model_accuracy`` of the honest
nodes' averaged model, ``consensus_distance``) and, at evaluated rounds, one ``test_accuracy``
row per honest node.

:func:`run_graph` rebuilds the communication graph of a run from its stored spec
(``spec_json``) with the engine's own seed stream, so a drawing shows the graph the run used.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from flarena.results.plots import (  # noqa: E402
    _fmt,
    _present,
    _short,
    config_labels,
    save,
    varying_columns,
)
from flarena.results.store import atomic_write  # noqa: E402

log = logging.getLogger(__name__)

DECENTRALIZED = "decentralized"
#: Spec components of the decentralized section (name column ``<stem>.name`` plus parameters).
DEC_COMPONENTS = ("decentralized.topology", "decentralized.gossip_rule")
#: Graphs with more nodes than this are not drawn in the report (the drawing would be a blur).
MAX_DRAW_NODES = 300
#: At most this many topology panels in the report's ``topologies.png``.
MAX_DRAWINGS = 8
#: Node placements of :func:`topology_drawing`.
LAYOUTS = ("auto", "circular", "kamada_kawai", "spring")
#: ``layout="auto"`` uses Kamada-Kawai for connected irregular graphs up to this size.
KAMADA_KAWAI_MAX_N = 100
HONEST_COLOR = "tab:blue"
BYZANTINE_COLOR = "tab:red"


# --- selecting and labelling runs ----------------------------------------------------------------


def is_decentralized(runs: pd.DataFrame) -> pd.Series:
    """Boolean mask of the decentralized rows of ``runs`` (all False without ``framework``)."""
    if "framework" not in runs.columns:
        return pd.Series(False, index=runs.index)
    return (runs["framework"] == DECENTRALIZED).fillna(False).astype(bool)


def has_decentralized(runs: pd.DataFrame) -> bool:
    """Whether ``runs`` holds at least one decentralized run."""
    return bool(is_decentralized(runs).any())


def _extra_factor_columns(runs: pd.DataFrame) -> list[str]:
    """Varying ``framework``/``decentralized.*`` columns that :func:`config_labels` leaves out."""
    covered = set(varying_columns(runs))
    out = []
    for c in runs.columns:
        if c in covered or not (c == "framework" or c.startswith(DECENTRALIZED + ".")):
            continue
        if runs[c].astype(str).nunique(dropna=False) > 1:
            out.append(c)
    return out


def run_labels(runs: pd.DataFrame) -> pd.Series:
    """:func:`~flarena.results.plots.config_labels` plus the decentralized factors.

    ``config_labels`` only looks at the spec sections it knows (data, model, algorithm, attack,
    defense, engine); this adds the varying ``framework`` and ``decentralized.*`` columns in the
    same style (``topology=erdos_renyi(p=0.5)``, ``mixing=uniform``). The decentralized factors
    are left out of federated rows (they do not apply there). Where nothing of the sort varies
    the result is exactly ``config_labels(runs)``.

    Parameters
    ----------
    runs : pandas.DataFrame
        The ``runs`` table (or a subset of it).

    Returns
    -------
    pandas.Series
        One label per row, aligned with ``runs.index``.
    """
    base = config_labels(runs)
    extra = _extra_factor_columns(runs)
    if not extra:
        return base
    comps = {
        stem: [c for c in extra if c.startswith(stem + ".")]
        for stem in DEC_COMPONENTS
        if any(c.startswith(stem + ".") for c in extra)
    }
    scalars = [c for c in extra if not any(c in members for members in comps.values())]
    dec = is_decentralized(runs)

    def label(idx: Any, row: pd.Series) -> str:
        parts = []
        for c in scalars:
            if c == "framework" or dec[idx]:
                parts.append(f"{_short(c)}={_fmt(row[c])}")
        if dec[idx]:
            for stem, members in comps.items():
                name_col = f"{stem}.name"
                params = [
                    f"{c.rsplit('.', 1)[1]}={_fmt(row[c])}"
                    for c in members
                    if c != name_col and _present(row[c])
                ]
                name = row[name_col] if name_col in runs.columns else "?"
                parts.append(
                    f"{_short(stem)}={name}" + (f"({', '.join(params)})" if params else "")
                )
        b = base[idx]
        head = [] if b == "all runs" else [b]
        return ", ".join(head + parts) or "all runs"

    return pd.Series([label(i, r) for i, r in runs.iterrows()], index=runs.index, dtype=object)


def _ok_decentralized(runs: pd.DataFrame) -> pd.DataFrame:
    ok = runs["status"] == "ok" if "status" in runs.columns else True
    return runs.loc[is_decentralized(runs) & ok]


def _new_ax(ax: Any, figsize: tuple[float, float]) -> tuple[Figure, Any]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    return fig, ax


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


# --- plots ---------------------------------------------------------------------------------------


def consensus_distance_vs_round(runs: pd.DataFrame, rounds: pd.DataFrame, ax: Any = None) -> Figure:
    """Consensus distance (log scale) against round, one line per configuration.

    The consensus distance of a round is the mean squared distance of the honest nodes' models
    to their average. Seeds are aggregated as in
    :func:`~flarena.results.plots.metric_vs_round`: the line is the mean over seeds, the band
    its 95% confidence interval. Only the ok decentralized runs of ``runs`` are drawn; exact
    zeros (e.g. complete graph) are clipped to the bottom of the log axis.

    Parameters
    ----------
    runs : pandas.DataFrame
        The ``runs`` table; federated and failed runs are ignored.
    rounds : pandas.DataFrame
        The long ``rounds`` table (``run_id, round, node, metric, value``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding ``ax``.
    """
    fig, ax = _new_ax(ax, (7, 4.2))
    dec = _ok_decentralized(runs)
    df = rounds[(rounds["metric"] == "consensus_distance") & rounds["node"].isna()]
    labels = run_labels(dec).rename("config")
    df = df.merge(pd.concat([dec["run_id"], labels], axis=1), on="run_id")
    if df.empty:
        _no_data(ax, "consensus distance")
        return fig
    df = df.assign(value=df["value"].astype(float), round=df["round"].astype(int))
    sns.lineplot(
        data=df,
        x="round",
        y="value",
        hue="config",
        hue_order=sorted(df["config"].unique()),
        errorbar=("ci", 95),
        ax=ax,
        marker="o",
        markersize=3,
    )
    ax.set_yscale("log", nonpositive="clip")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("consensus distance (honest nodes)")
    ax.set_xlabel("round")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend() is not None:
        ax.legend(fontsize=7, title=None, loc="best")
    fig.tight_layout()
    return fig


def final_node_accuracies(runs: pd.DataFrame, rounds: pd.DataFrame) -> pd.DataFrame:
    """Per-node honest test accuracy at each ok decentralized run's last evaluated round.

    Returns
    -------
    pandas.DataFrame
        Columns ``run_id, round, node, value, config`` (one row per honest node and run).
    """
    dec = _ok_decentralized(runs)
    df = rounds[(rounds["metric"] == "test_accuracy") & rounds["node"].notna()]
    df = df[df["run_id"].isin(dec["run_id"])]
    if df.empty:
        return pd.DataFrame(columns=["run_id", "round", "node", "value", "config"])
    last = df.groupby("run_id")["round"].transform("max")
    df = df[df["round"] == last]
    labels = pd.concat([dec["run_id"], run_labels(dec).rename("config")], axis=1)
    out = df[["run_id", "round", "node", "value"]].merge(labels, on="run_id")
    return out.assign(value=out["value"].astype(float)).reset_index(drop=True)


def node_accuracy_spread(runs: pd.DataFrame, rounds: pd.DataFrame, ax: Any = None) -> Figure:
    """Spread of the honest nodes' test accuracy at the final evaluated round, per configuration.

    One row per configuration: a box plot (quartiles, whiskers, mean as a triangle) over every
    honest node of every seed, the nodes themselves as points, and the accuracy of the honest
    nodes' averaged model (mean over seeds) as a red diamond. This shows at once how far the
    worst node lags the typical one (slow mixing, nodes next to Byzantine neighbours) and how
    much the nodes would gain from exact consensus, which the min/mean/max curves against
    round (already in ``rounds``) hide.

    Parameters
    ----------
    runs : pandas.DataFrame
        The ``runs`` table; federated and failed runs are ignored.
    rounds : pandas.DataFrame
        The long ``rounds`` table with its per-node rows.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding ``ax``.
    """
    df = final_node_accuracies(runs, rounds)
    order = sorted(df["config"].unique())
    fig, ax = _new_ax(ax, (7, 1.2 + 0.55 * max(len(order), 2)))
    if df.empty:
        _no_data(ax, "per-node accuracy")
        return fig
    with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11's deprecated vert=
        warnings.filterwarnings("ignore", message="vert: bool", category=DeprecationWarning)
        sns.boxplot(
            data=df,
            x="value",
            y="config",
            order=order,
            orient="h",
            color="0.85",
            showfliers=False,
            showmeans=True,
            meanprops={"marker": "^", "markerfacecolor": "black", "markeredgecolor": "black"},
            ax=ax,
        )
    sns.stripplot(
        data=df,
        x="value",
        y="config",
        order=order,
        orient="h",
        color=HONEST_COLOR,
        size=3.5,
        alpha=0.7,
        jitter=0.2,
        ax=ax,
        label="honest node",
    )
    dec = _ok_decentralized(runs)
    if "final_average_model_accuracy" in dec.columns:
        avg = (
            pd.DataFrame(
                {
                    "config": run_labels(dec),
                    "acc": dec["final_average_model_accuracy"].astype(float),
                }
            )
            .groupby("config")["acc"]
            .mean()
            .reindex(order)
        )
        ys = np.arange(len(order))
        keep = avg.notna().to_numpy()
        ax.scatter(
            avg.to_numpy()[keep],
            ys[keep],
            marker="D",
            s=40,
            color=BYZANTINE_COLOR,
            zorder=5,
            label="average model",
        )
    handles, names = ax.get_legend_handles_labels()
    uniq = dict(zip(names, handles, strict=True))  # one strip handle per category otherwise
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="best")
    ax.set_xlabel("honest node test accuracy at the final evaluated round")
    ax.set_ylabel("")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def _is_regular(degrees: np.ndarray) -> bool:
    return bool(degrees.size >= 3 and degrees.min() == degrees.max() and degrees.min() > 0)


def topology_drawing(
    adjacency: Any,
    byzantine_ids: Sequence[int],
    ax: Any = None,
    title: str | None = None,
    *,
    layout: str = "auto",
) -> Figure:
    """Draw a communication graph, Byzantine nodes as red squares, honest ones as blue circles.

    The layout is deterministic: ``"auto"`` puts a regular graph (ring, torus, complete,
    k-regular, exponential) on a circle, uses Kamada-Kawai (started from the circle) for a
    connected irregular graph of at most :data:`KAMADA_KAWAI_MAX_N` nodes (star, dumbbell,
    Erdos-Renyi: its clusters and hubs stand out), and a spring layout with ``seed=0``
    otherwise (large or disconnected graphs). Node ids are written on graphs up to 40 nodes.

    Parameters
    ----------
    adjacency : scipy sparse array or numpy.ndarray
        ``[n, n]`` symmetric 0/1 adjacency (a topology plugin's output).
    byzantine_ids : sequence of int
        Ids of the Byzantine nodes (``malicious_ids`` of a run).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure otherwise.
    title : str, optional
        Title of the axes.
    layout : {"auto", "circular", "kamada_kawai", "spring"}
        Node placement.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding ``ax``. The edges are one ``LineCollection`` (one segment per
        undirected edge); the honest and Byzantine nodes are ``PathCollection`` objects
        labelled ``honest`` and ``Byzantine``.
    """
    import networkx as nx  # type: ignore[import-untyped]  # no stubs; see pyproject's mypy
    from scipy import sparse

    adj = sparse.csr_array(adjacency)
    n = adj.shape[0]
    if adj.shape != (n, n):
        raise ValueError(f"adjacency must be square, got shape {adj.shape}")
    byz = sorted({int(i) for i in byzantine_ids})
    if byz and (byz[0] < 0 or byz[-1] >= n):
        raise ValueError(f"byzantine_ids must lie in 0 .. {n - 1}, got {byz}")
    if layout not in LAYOUTS:
        raise ValueError(f"invalid layout = {layout!r}: must be one of {', '.join(LAYOUTS)}")
    g = nx.from_scipy_sparse_array(adj)
    g.remove_edges_from(list(nx.selfloop_edges(g)))
    deg = np.asarray([d for _, d in sorted(g.degree())], dtype=np.int64)
    if layout == "auto":
        if _is_regular(deg):
            layout = "circular"
        elif n <= KAMADA_KAWAI_MAX_N and nx.is_connected(g):
            layout = "kamada_kawai"
        else:
            layout = "spring"
    if layout == "circular":
        pos = nx.circular_layout(g)
    elif layout == "kamada_kawai":
        pos = nx.kamada_kawai_layout(g)  # starts from the circular layout: deterministic
    else:
        pos = nx.spring_layout(g, seed=0)
    fig, ax = _new_ax(ax, (4.5, 4.5))
    size = float(np.clip(4000 / max(n, 1), 12, 300))
    nx.draw_networkx_edges(g, pos, ax=ax, edgelist=sorted(g.edges()), width=0.8, alpha=0.5)
    byz_set = set(byz)
    honest = [i for i in range(n) if i not in byz_set]
    if honest:
        nx.draw_networkx_nodes(
            g,
            pos,
            nodelist=honest,
            ax=ax,
            node_color=HONEST_COLOR,
            node_shape="o",
            node_size=size,
            label="honest",
        )
    if byz:
        nx.draw_networkx_nodes(
            g,
            pos,
            nodelist=byz,
            ax=ax,
            node_color=BYZANTINE_COLOR,
            node_shape="s",
            node_size=size * 1.3,
            label="Byzantine",
        )
    if n <= 40:
        nx.draw_networkx_labels(g, pos, ax=ax, font_size=7, font_color="white")
    ax.legend(
        fontsize=7,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=2,
        markerscale=0.6,
        frameon=False,
    )
    ax.set_axis_off()
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


# --- rebuilding a run's graph --------------------------------------------------------------------


class RunGraph(NamedTuple):
    """The communication graph of one run, rebuilt from its spec."""

    adjacency: Any  #: scipy.sparse.csr_array, ``[n, n]``
    byzantine_ids: list[int]
    title: str
    time_varying: bool


def _component_label(name: str, params: Mapping[str, Any]) -> str:
    args = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(params.items()))
    return f"{name}({args})" if args else name


def _malicious_ids(run: Mapping[str, Any] | pd.Series, n: int, n_mal: int, seed: int) -> list[int]:
    text = run.get("malicious_ids")
    if isinstance(text, str) and text.strip():
        try:
            return sorted(int(i) for i in json.loads(text))
        except (ValueError, TypeError):
            log.warning("unreadable malicious_ids %r; drawing them from the seed", text)
    from flarena.core.seeding import Seeds

    # the engine's own draw (engines/gossip.py), for runs that failed before recording it
    return sorted(int(i) for i in Seeds(seed).numpy("attackers").choice(n, n_mal, replace=False))


def run_graph(run: Mapping[str, Any] | pd.Series) -> RunGraph:
    """Rebuild the adjacency a decentralized run trained on, from its ``spec_json``.

    The topology plugin is created from the stored spec and called with the engine's seed
    stream: ``Seeds(seed).numpy("topology")`` for a static graph (as
    ``bench.preflight._build_decentralized``) and ``Seeds(seed).numpy("topology", 0)`` with
    ``round=0`` for a time-varying one, which is the graph the engine gossips over in round 1
    (the title says so). The Byzantine ids are the run's ``malicious_ids`` (drawn from the
    seed as the engine does when the row lacks them).

    Parameters
    ----------
    run : mapping or pandas.Series
        One row of ``runs`` with at least ``spec_json``.

    Returns
    -------
    RunGraph
        Adjacency, Byzantine ids, a title and whether the topology is time-varying.

    Raises
    ------
    ValueError
        When the row has no spec or is not a decentralized run.
    flarena.core.errors.SpecError
        When the topology plugin cannot be created (e.g. a plugin no longer installed).
    """
    from flarena.core import registry
    from flarena.core.seeding import Seeds
    from flarena.core.spec import parse_spec

    text = run.get("spec_json")
    if not isinstance(text, str):
        raise ValueError("the run has no spec_json: its graph cannot be rebuilt")
    spec = parse_spec(json.loads(text))
    if spec.framework != DECENTRALIZED:
        raise ValueError(f"run {run.get('run_id')} is {spec.framework}, not decentralized")
    comp = spec.decentralized.topology
    topo = registry.create("topology", comp.name, **comp.kwargs)
    n = spec.data.n_clients
    seeds = Seeds(spec.seed)
    time_varying = bool(getattr(topo, "time_varying", False))
    rng = seeds.numpy("topology", 0) if time_varying else seeds.numpy("topology")
    adj = topo(n, rng=rng, round=0)
    byz = _malicious_ids(run, n, spec.attack.n_malicious, spec.seed)
    title = f"{_component_label(comp.name, comp.kwargs)}, n={n}, seed {spec.seed}"
    if byz:
        title += f", {len(byz)} Byzantine"
    if time_varying:
        title += "\nround-1 graph (time-varying)"
    return RunGraph(adj, byz, title, time_varying)


# --- report sections -----------------------------------------------------------------------------


def _spec_dicts(runs: pd.DataFrame) -> pd.Series:
    return runs["spec_json"].map(json.loads)


def _group_labels(dec: pd.DataFrame) -> pd.DataFrame:
    """Topology, gossip rule and attack labels of the decentralized runs, from their specs."""
    from flarena.results.robustness import attack_label

    specs = _spec_dicts(dec)

    def comp(d: Mapping[str, Any]) -> str:
        return _component_label(str(d["name"]), {k: v for k, v in d.items() if k != "name"})

    def attack(s: Mapping[str, Any]) -> str:
        f = int(s["attack"].get("n_malicious", 0))
        return attack_label(dict(s)) + (f" (f={f})" if f else "")

    return pd.DataFrame(
        {
            "topology": specs.map(lambda s: comp(s["decentralized"]["topology"])),
            "gossip rule": specs.map(lambda s: comp(s["decentralized"]["gossip_rule"])),
            "attack": specs.map(attack),
        },
        index=dec.index,
    )


_GROUP_SKIP = ("decentralized.topology", "decentralized.gossip_rule", "attack.")


def _other_factors(dec: pd.DataFrame) -> pd.Series | None:
    """A label of the varying factors other than topology, gossip rule, attack (None: none)."""
    cols = [
        c
        for c in dict.fromkeys(varying_columns(dec) + _extra_factor_columns(dec))
        if not c.startswith(_GROUP_SKIP) and c != "framework"
    ]
    if not cols:
        return None
    return dec.apply(
        lambda row: ", ".join(f"{_short(c)}={_fmt(row[c])}" for c in cols if _present(row[c])),
        axis=1,
    )


def _mean_col(g: Any, col: str, frame: pd.DataFrame) -> pd.Series:
    if col not in frame.columns:
        return pd.Series(math.nan, index=g.size().index)
    return g[col].mean()


def decentralized_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Final metrics of the decentralized runs per (topology, gossip rule, attack).

    Means over the ok runs (seeds) of the final honest mean and minimum node accuracy, the
    averaged model's accuracy, the final consensus distance and the spectral gap of the
    gossip matrix. Other varying factors (mixing, partition, ...) add an ``other`` column.

    Returns
    -------
    pandas.DataFrame
        One row per group; empty when there is no decentralized run with a spec.
    """
    dec = runs.loc[is_decentralized(runs)]
    if dec.empty or "spec_json" not in dec.columns:
        return pd.DataFrame()
    frame = pd.concat([dec, _group_labels(dec)], axis=1)
    keys = ["topology", "gossip rule", "attack"]
    other = _other_factors(dec)
    if other is not None:
        frame["other"] = other
        keys.append("other")
    ok = frame[frame["status"] == "ok"] if "status" in frame.columns else frame
    g = ok.groupby(keys, sort=True)
    table = pd.DataFrame(
        {
            "runs": g.size(),
            "honest acc mean": _mean_col(g, "final_test_accuracy", ok),
            "honest acc min": _mean_col(g, "final_test_accuracy_min", ok),
            "avg-model acc": _mean_col(g, "final_average_model_accuracy", ok),
            "consensus dist": _mean_col(g, "final_consensus_distance", ok),
            "spectral gap": _mean_col(g, "spectral_gap", ok),
        }
    )
    all_keys = frame.groupby(keys, sort=True).size().index
    table = table.reindex(all_keys)
    table["runs"] = table["runs"].fillna(0).astype(int)
    if "status" in frame.columns and (frame["status"] != "ok").any():
        failed = frame[frame["status"] != "ok"].groupby(keys, sort=True).size()
        table["failed"] = failed.reindex(all_keys).fillna(0).astype(int)
    return table.reset_index()


def _graph_runs(dec: pd.DataFrame) -> list[pd.Series]:
    """One ok run per (topology, n, f): the lowest seed's, for the drawings."""
    labels = _group_labels(dec)["topology"]
    frame = dec.assign(
        _topo=labels,
        _n=dec.get("data.n_clients", pd.Series(0, index=dec.index)),
        _f=dec.get("attack.n_malicious", pd.Series(0, index=dec.index)),
    )
    sort_by = [c for c in ("seed", "run_id") if c in frame.columns]
    frame = frame.sort_values(["_topo", "_n", "_f", *sort_by], kind="stable")
    firsts = frame.groupby(["_topo", "_n", "_f"], sort=True).head(1)
    return [row for _, row in firsts.iterrows()]


def topology_figure(runs: pd.DataFrame) -> Figure | None:
    """One panel per distinct (topology, n, f) among the ok decentralized runs (None: none).

    Each panel is :func:`topology_drawing` of the graph :func:`run_graph` rebuilds for that
    group's lowest-seed run; graphs over :data:`MAX_DRAW_NODES` nodes and panels past
    :data:`MAX_DRAWINGS` are left out, as are graphs that cannot be rebuilt (logged).
    """
    from flarena.core.errors import FlarenaError

    dec = _ok_decentralized(runs)
    if dec.empty or "spec_json" not in dec.columns:
        return None
    graphs: list[RunGraph] = []
    for run in _graph_runs(dec):
        if len(graphs) == MAX_DRAWINGS:
            log.info("topology drawings: only the first %d are drawn", MAX_DRAWINGS)
            break
        try:
            rg = run_graph(run)
        except (FlarenaError, ValueError, TypeError, KeyError) as exc:
            log.warning("cannot rebuild the graph of run %s: %s", run.get("run_id"), exc)
            continue
        if rg.adjacency.shape[0] > MAX_DRAW_NODES:
            log.info("graph of run %s has over %d nodes: not drawn", run["run_id"], MAX_DRAW_NODES)
            continue
        graphs.append(rg)
    if not graphs:
        return None
    cols = min(len(graphs), 4)
    rows = math.ceil(len(graphs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.8 * rows), squeeze=False)
    for ax, rg in zip(axes.flat, graphs, strict=False):
        topology_drawing(rg.adjacency, rg.byzantine_ids, ax=ax, title=rg.title)
    for ax in list(axes.flat)[len(graphs) :]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def _fmt_sci(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and v != v) else f"{float(v):.3g}"


def decentralized_sections(runs: pd.DataFrame, rounds: pd.DataFrame, out_dir: Path) -> list[str]:
    """Markdown sections of the decentralized runs, writing their figures under ``out_dir/plots``.

    Writes ``consensus_distance_vs_round.png``, ``node_accuracy_spread.png`` and
    ``topologies.png`` (each atomically; a figure without data is not written) and returns
    the lines of a ``## Decentralized runs`` section: the table of
    :func:`decentralized_table` and the figures, linked relative to ``out_dir``.

    Parameters
    ----------
    runs : pandas.DataFrame
        The ``runs`` table (federated rows are ignored).
    rounds : pandas.DataFrame
        The long ``rounds`` table.
    out_dir : pathlib.Path
        The results directory (where ``report.md`` lives).

    Returns
    -------
    list of str
        Markdown lines; empty when ``runs`` has no decentralized run.
    """
    from flarena.results.report import _md_table  # report imports this module lazily

    if not has_decentralized(runs):
        return []
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    dec_all = runs.loc[is_decentralized(runs)]
    dec = _ok_decentralized(runs)
    lines = [
        "## Decentralized runs",
        "",
        f"{len(dec_all)} decentralized run(s), {len(dec)} ok. Every metric is over the honest "
        "nodes: *honest acc mean/min* are the mean and the worst of the nodes' own models' "
        "final test accuracies, *avg-model acc* the accuracy of the honest nodes' averaged "
        "model, *consensus dist* the final mean squared distance of the honest models to "
        "their average, *spectral gap* 1 - |lambda_2| of the gossip matrix (of round 1 for a "
        "time-varying graph). Means over seeds.",
        "",
    ]
    table = decentralized_table(runs)
    if not table.empty:
        table["consensus dist"] = table["consensus dist"].map(_fmt_sci)
        lines += [_md_table(table), ""]
    figures: list[tuple[str, str, Any]] = []
    rounds_dec = rounds[rounds["run_id"].isin(dec["run_id"])]
    has_cd = bool((rounds_dec["metric"] == "consensus_distance").any())
    has_nodes = bool(((rounds_dec["metric"] == "test_accuracy") & rounds_dec["node"].notna()).any())
    if has_cd:
        figures.append(
            (
                "consensus_distance_vs_round",
                "Consensus distance against round (log scale; mean over seeds, 95% CI)",
                lambda: consensus_distance_vs_round(dec, rounds_dec),
            )
        )
    if has_nodes:
        figures.append(
            (
                "node_accuracy_spread",
                "Honest nodes' test accuracy at the final evaluated round (box: quartiles, "
                "triangle: mean, points: nodes of every seed, diamond: averaged model)",
                lambda: node_accuracy_spread(dec, rounds_dec),
            )
        )
    for stem, caption, make in figures:
        path = plots / f"{stem}.png"
        atomic_write(path, lambda tmp, make=make: save(make(), tmp))  # type: ignore[misc]
        lines += [f"### {caption}", "", f"![{stem}](plots/{path.name})", ""]
    topo_fig = topology_figure(dec)
    if topo_fig is not None:
        path = plots / "topologies.png"
        atomic_write(path, lambda tmp: save(topo_fig, tmp))
        lines += [
            "### Topologies (red squares: Byzantine nodes; one panel per topology, n and f, "
            "lowest seed)",
            "",
            f"![topologies](plots/{path.name})",
            "",
        ]
    return lines


__all__ = [
    "RunGraph",
    "consensus_distance_vs_round",
    "decentralized_sections",
    "decentralized_table",
    "final_node_accuracies",
    "has_decentralized",
    "is_decentralized",
    "node_accuracy_spread",
    "run_graph",
    "run_labels",
    "topology_drawing",
    "topology_figure",
]
