"""Decentralized result plots, the graph rebuilt from a run's spec, and the report sections."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgba

import flarena
from flarena.algorithms.mixing import mixing_matrix, spectral_gap
from flarena.core import registry
from flarena.core.seeding import Seeds
from flarena.core.spec import parse_spec
from flarena.results.decentralized import (
    BYZANTINE_COLOR,
    HONEST_COLOR,
    consensus_distance_vs_round,
    decentralized_sections,
    decentralized_table,
    final_node_accuracies,
    node_accuracy_spread,
    run_graph,
    run_labels,
    topology_drawing,
)
from flarena.results.plots import config_labels
from flarena.results.report import summary_table, write_plots, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

BASE = {
    "name": "dec",
    "rounds": 4,
    "eval_every": 2,
    "data": {"dataset": "digits", "partition": "iid", "n_clients": 6},
    "model": {"name": "mlp", "hidden": [16]},
    "algorithm": {"name": "fedavg", "lr": 0.1, "batch_size": 16},
}


def spec_dict(topology="ring", *, seed=0, framework="decentralized", f=0, rule="gossip"):
    d = json.loads(json.dumps(BASE))
    d["seed"] = seed
    d["framework"] = framework
    d["decentralized"] = {"topology": topology, "gossip_rule": rule}
    if f:
        d["attack"] = {"name": "label_flip", "n_malicious": f}
    return d


def run_row(d, *, status="ok", acc=0.8, cd=0.1, gap=0.2, malicious=None):
    """A ``runs`` row shaped like the runner's (spec columns, spec_json, the engine's metrics)."""
    spec = parse_spec(d)
    row = {"run_id": spec.run_id, "name": "dec"}
    row.update(spec.flat())
    row["spec_json"] = json.dumps(spec.to_dict(), sort_keys=True)
    row.update(
        {
            "status": status,
            "error": None if status == "ok" else "RunDiverged: boom",
            "final_test_accuracy": acc,
            "best_test_accuracy": acc,
            "time.total": 1.0,
            "time.local_train": 0.8,
        }
    )
    if spec.framework == "decentralized":
        row.update(
            {
                "final_test_accuracy_min": acc - 0.1,
                "final_average_model_accuracy": acc + 0.05,
                "final_consensus_distance": cd,
                "spectral_gap": gap,
                "malicious_ids": str(malicious if malicious is not None else []),
                "time.gossip": 0.1,
            }
        )
    else:
        row["time.aggregate"] = 0.1
    return row


def round_rows(run_id, *, decentralized=True, rounds=4, eval_every=2, nodes=(0, 1, 2), cd=0.1):
    rows = []
    for r in range(1, rounds + 1):
        if decentralized:
            rows.append((run_id, r, None, "consensus_distance", cd * r))
        if r % eval_every == 0:
            accs = [0.5 + 0.1 * r / rounds + 0.01 * i for i in nodes]
            rows.append((run_id, r, None, "test_accuracy", float(np.mean(accs))))
            if decentralized:
                rows += [
                    (run_id, r, i, "test_accuracy", a) for i, a in zip(nodes, accs, strict=True)
                ]
                rows.append((run_id, r, None, "test_accuracy_min", min(accs)))
                rows.append((run_id, r, None, "average_model_accuracy", max(accs)))
            else:
                rows.append((run_id, r, None, "test_loss", 1.0 / r))
    return rows


def tables(rows_spec):
    """(runs, rounds) from [(spec dict, row kwargs)]."""
    runs = pd.DataFrame([run_row(d, **kw) for d, kw in rows_spec])
    rounds = []
    for (d, kw), rid in zip(rows_spec, runs["run_id"], strict=True):
        if kw.get("status", "ok") == "ok":
            dec = d["framework"] == "decentralized"
            rounds += round_rows(rid, decentralized=dec, cd=kw.get("cd", 0.1))
    rdf = pd.DataFrame(rounds, columns=["run_id", "round", "node", "metric", "value"])
    rdf["node"] = rdf["node"].astype("Int64")
    return runs, rdf


@pytest.fixture
def dec_tables():
    er = {"name": "erdos_renyi", "p": 0.6}
    return tables(
        [
            (spec_dict("ring", seed=0, f=1), {"cd": 0.2, "malicious": [3]}),
            (spec_dict("ring", seed=1, f=1), {"cd": 0.3, "malicious": [0]}),
            (spec_dict(er, seed=0, f=1), {"cd": 0.05, "malicious": [2]}),
            (spec_dict(er, seed=1, f=1), {"status": "failed"}),
        ]
    )


# --- labels --------------------------------------------------------------------------------------


def test_labels_name_the_topology_that_config_labels_misses(dec_tables):
    runs, _ = dec_tables
    labels = run_labels(runs)
    assert list(labels) == ["topology=ring"] * 2 + ["topology=erdos_renyi(p=0.6)"] * 2


def test_labels_of_a_mixed_matrix_name_the_framework_only_on_federated_rows():
    runs, _ = tables(
        [
            (spec_dict("ring", framework="federated"), {}),
            (spec_dict("ring"), {}),
            (spec_dict("complete"), {}),
        ]
    )
    labels = list(run_labels(runs))
    assert labels == [
        "framework=federated",
        "framework=decentralized, topology=ring",
        "framework=decentralized, topology=complete",
    ]


def test_labels_of_federated_runs_are_config_labels():
    runs, _ = tables([(spec_dict(framework="federated", seed=s), {}) for s in (0, 1)])
    runs.loc[1, "algorithm.lr"] = 0.5
    pd.testing.assert_series_equal(run_labels(runs), config_labels(runs))


# --- plots ---------------------------------------------------------------------------------------


def test_consensus_distance_one_log_line_per_configuration(dec_tables):
    runs, rounds = dec_tables
    fig = consensus_distance_vs_round(runs, rounds)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["topology=erdos_renyi(p=0.6)", "topology=ring"]
    curves = [np.asarray(line.get_ydata(), float) for line in ax.get_lines()]
    curves = [c for c in curves if len(c) == 4]
    assert len(curves) == 2
    # ring: mean over its two seeds (cd * round with cd 0.2 and 0.3); the failed ER run is left out
    for cd in (0.25, 0.05):
        assert any(np.allclose(c, [cd * r for r in range(1, 5)]) for c in curves)


def test_consensus_distance_ignores_federated_runs_and_draws_into_a_given_ax():
    import matplotlib.pyplot as plt

    runs, rounds = tables([(spec_dict(framework="federated"), {}), (spec_dict("ring"), {})])
    fig, ax = plt.subplots()
    assert consensus_distance_vs_round(runs, rounds, ax=ax) is fig
    assert len([ln for ln in ax.get_lines() if ln.get_label() == "all runs"]) == 1


def test_final_node_accuracies_keep_only_the_last_evaluated_round(dec_tables):
    runs, rounds = dec_tables
    df = final_node_accuracies(runs, rounds)
    assert set(df["round"]) == {4}
    assert len(df) == 3 * 3  # 3 ok runs x 3 honest nodes
    assert df["value"].between(0.6, 0.62 + 1e-9).all()


def test_node_accuracy_spread_marks_the_average_model(dec_tables):
    runs, rounds = dec_tables
    fig = node_accuracy_spread(runs, rounds)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "topology=erdos_renyi(p=0.6)",
        "topology=ring",
    ]
    diamonds = next(c for c in ax.collections if c.get_label() == "average model")
    np.testing.assert_allclose(diamonds.get_offsets()[:, 0], [0.85, 0.85])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["honest node", "average model"]


def test_plots_without_data_do_not_fail():
    runs, rounds = tables([(spec_dict(framework="federated"), {})])
    for fn in (consensus_distance_vs_round, node_accuracy_spread):
        fig = fn(runs, rounds)
        assert "no " in fig.axes[0].texts[0].get_text()


# --- topology drawing ----------------------------------------------------------------------------


def _nodes(ax, label):
    return next(
        c for c in ax.collections if isinstance(c, PathCollection) and c.get_label() == label
    )


def _n_edges(adj):
    a = adj.tocoo()
    return int((a.row < a.col).sum())


@pytest.mark.parametrize(
    ("name", "params"), [("ring", {}), ("erdos_renyi", {"p": 0.4}), ("star", {})]
)
def test_topology_drawing_draws_every_edge_and_the_byzantine_nodes_apart(name, params):
    n, byz = 10, [2, 7]
    adj = registry.create("topology", name, **params)(n, rng=Seeds(0).numpy("topology"))
    fig = topology_drawing(adj, byz, title=name)
    ax = fig.axes[0]
    (edges,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(edges.get_segments()) == _n_edges(adj)
    honest, bad = _nodes(ax, "honest"), _nodes(ax, "Byzantine")
    assert len(honest.get_offsets()) == n - len(byz)
    assert len(bad.get_offsets()) == len(byz)
    np.testing.assert_allclose(bad.get_facecolor()[0], to_rgba(BYZANTINE_COLOR))
    np.testing.assert_allclose(honest.get_facecolor()[0], to_rgba(HONEST_COLOR))
    # distinct marker shapes (circle vs square)
    assert len(honest.get_paths()[0].vertices) != len(bad.get_paths()[0].vertices)
    # every edge ends at a drawn node
    ends = np.concatenate(list(edges.get_segments()))
    drawn = np.concatenate([honest.get_offsets(), bad.get_offsets()])
    assert all(np.isclose(drawn, e).all(1).any() for e in ends)
    if name == "ring":  # on a circle: the Byzantine squares sit where nodes 2 and 7 belong
        angles = 2 * np.pi * np.array(byz) / n
        want = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        np.testing.assert_allclose(bad.get_offsets(), want, atol=1e-6)
    assert ax.get_title() == name
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["honest", "Byzantine"]


@pytest.mark.parametrize("layout", ["auto", "circular", "kamada_kawai", "spring"])
def test_topology_drawing_is_deterministic(layout):
    adj = registry.create("topology", "erdos_renyi", p=0.3)(12, rng=Seeds(3).numpy("topology"))
    a = _nodes(topology_drawing(adj, [1], layout=layout).axes[0], "honest").get_offsets()
    b = _nodes(topology_drawing(adj, [1], layout=layout).axes[0], "honest").get_offsets()
    np.testing.assert_array_equal(a, b)


def test_topology_drawing_refuses_an_unknown_layout():
    adj = registry.create("topology", "ring")(5, rng=Seeds(0).numpy("topology"))
    with pytest.raises(ValueError, match="layout"):
        topology_drawing(adj, [], layout="grid")


def test_topology_drawing_without_byzantine_nodes_and_bad_ids():
    adj = registry.create("topology", "ring")(5, rng=Seeds(0).numpy("topology"))
    ax = topology_drawing(adj, []).axes[0]
    assert [c.get_label() for c in ax.collections if isinstance(c, PathCollection)] == ["honest"]
    with pytest.raises(ValueError, match="byzantine_ids"):
        topology_drawing(adj, [5])


# --- rebuilding a run's graph --------------------------------------------------------------------


def test_run_graph_rebuilds_a_static_graph_with_the_engine_seed_stream():
    d = spec_dict({"name": "erdos_renyi", "p": 0.5}, seed=4, f=1)
    row = run_row(d, malicious=[5])
    g = run_graph(row)
    want = registry.create("topology", "erdos_renyi", p=0.5)(6, rng=Seeds(4).numpy("topology"))
    assert (g.adjacency != want).nnz == 0
    assert g.byzantine_ids == [5] and not g.time_varying
    assert g.title == "erdos_renyi(p=0.5), n=6, seed 4, 1 Byzantine"


def test_run_graph_of_a_time_varying_topology_is_the_round_1_graph():
    d = spec_dict({"name": "random_matching"}, seed=2, f=2)
    row = run_row(d)
    row["malicious_ids"] = None  # e.g. a failed run: drawn from the seed as the engine does
    g = run_graph(row)
    topo = registry.create("topology", "random_matching")
    want = topo(6, rng=Seeds(2).numpy("topology", 0), round=0)
    assert (g.adjacency != want).nnz == 0
    assert g.time_varying and "round-1 graph (time-varying)" in g.title
    assert g.byzantine_ids == sorted(Seeds(2).numpy("attackers").choice(6, 2, replace=False))


def test_run_graph_refuses_federated_runs():
    with pytest.raises(ValueError, match="federated"):
        run_graph(run_row(spec_dict(framework="federated")))


# --- tables and report ---------------------------------------------------------------------------


def test_decentralized_table_groups_by_topology_rule_attack(dec_tables):
    runs, _ = dec_tables
    t = decentralized_table(runs)
    assert list(t["topology"]) == ["erdos_renyi(p=0.6)", "ring"]
    assert set(t["gossip rule"]) == {"gossip"} and set(t["attack"]) == {"label_flip (f=1)"}
    ring = t.set_index("topology").loc["ring"]
    assert ring["runs"] == 2 and ring["failed"] == 0
    assert ring["consensus dist"] == pytest.approx(0.25)
    assert ring["honest acc min"] == pytest.approx(0.7)
    er = t.set_index("topology").loc["erdos_renyi(p=0.6)"]
    assert er["runs"] == 1 and er["failed"] == 1


def test_decentralized_table_adds_other_varying_factors():
    d = spec_dict("ring")
    d2 = spec_dict("ring")
    d2["decentralized"]["mixing"] = "uniform"
    runs, _ = tables([(d, {}), (d2, {})])
    t = decentralized_table(runs)
    assert list(t["other"]) == ["mixing=metropolis", "mixing=uniform"]


def test_sections_write_the_figures_and_embed_them(dec_tables, tmp_path):
    runs, rounds = dec_tables
    lines = decentralized_sections(runs, rounds, tmp_path)
    text = "\n".join(lines)
    assert text.startswith("## Decentralized runs")
    for stem in ("consensus_distance_vs_round", "node_accuracy_spread", "topologies"):
        assert f"![{stem}](plots/{stem}.png)" in text
        assert (tmp_path / "plots" / f"{stem}.png").read_bytes()[:8] == PNG_MAGIC
    assert "| ring | gossip | label_flip (f=1) | 2 |" in text
    assert not list((tmp_path / "plots").glob(".*tmp"))


def test_sections_of_failed_runs_only_have_the_table(tmp_path):
    runs, rounds = tables([(spec_dict("ring", seed=s), {"status": "failed"}) for s in (0, 1)])
    text = "\n".join(decentralized_sections(runs, rounds, tmp_path))
    assert "2 decentralized run(s), 0 ok" in text
    assert "| ring | gossip | none | 0 |" in text and "![" not in text


def test_sections_are_empty_without_decentralized_runs(tmp_path):
    runs, rounds = tables([(spec_dict(framework="federated"), {})])
    assert decentralized_sections(runs, rounds, tmp_path) == []
    assert not (tmp_path / "plots").exists()


def test_federated_report_has_no_decentralized_section(tmp_path):
    runs, rounds = tables([(spec_dict(framework="federated", seed=s), {}) for s in (0, 1)])
    plots = write_plots(tmp_path, runs, rounds)
    assert [p.name for p in plots] == [
        "test_accuracy_vs_round.png",
        "test_loss_vs_round.png",
        "phase_times.png",
    ]
    # no rounds passed and no rounds.parquet: a federated report never needs them
    text = write_report(tmp_path, {"name": "fed"}, runs, plots).read_text()
    assert "Decentralized" not in text
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in plots)
    assert list(summary_table(runs)["config"]) == list(config_labels(runs).unique())


def test_mixed_matrix_report_does_not_crash(tmp_path):
    """Federated runs have no consensus distance, decentralized ones no test loss here."""
    runs, rounds = tables(
        [
            (spec_dict(framework="federated"), {}),
            (spec_dict("ring"), {}),
            (spec_dict("ring", seed=1), {"status": "failed"}),
        ]
    )
    plots = write_plots(tmp_path, runs, rounds)
    assert {p.name for p in plots} >= {"test_accuracy_vs_round.png", "test_loss_vs_round.png"}
    text = write_report(tmp_path, {"name": "mix"}, runs, plots, rounds).read_text()
    assert "## Decentralized runs" in text and "## Failed runs" in text
    assert "| framework=decentralized | 1 |" in text and "| framework=federated | 1 |" in text
    # a metric no ok run recorded is skipped rather than drawn empty
    no_loss = rounds[rounds["metric"] != "test_loss"]
    names = [p.name for p in write_plots(tmp_path / "b", runs, no_loss)]
    assert "test_loss_vs_round.png" not in names


# --- a real run ----------------------------------------------------------------------------------

REAL = {
    "name": "dec_report",
    "seed": 0,
    "rounds": 3,
    "eval_every": 1,
    "device": "cpu",
    "framework": "decentralized",
    "data": {"dataset": "digits", "partition": "iid", "n_clients": 6},
    "model": {"name": "mlp", "hidden": [16]},
    "algorithm": {"name": "fedavg", "lr": 0.1, "batch_size": 32},
    "attack": {"name": "label_flip", "n_malicious": 1},
    "decentralized": {"topology": "ring", "mixing": "metropolis", "gossip_rule": "gossip"},
    "matrix": {
        "decentralized.topology": [
            "ring",
            {"name": "erdos_renyi", "p": 0.6, "redraw_each_round": True},
        ]
    },
}


def test_real_decentralized_run_gets_its_report_section(tmp_path):
    res = flarena.run(REAL, out=tmp_path / "r")
    runs, rounds = res.runs, res.rounds
    assert (runs["status"] == "ok").all(), runs["error"].tolist()
    text = (tmp_path / "r" / "report.md").read_text()
    assert "## Decentralized runs" in text
    assert "| ring | gossip | label_flip (f=1) | 1 |" in text
    for stem in ("consensus_distance_vs_round", "node_accuracy_spread", "topologies"):
        assert f"(plots/{stem}.png)" in text
        data = (tmp_path / "r" / "plots" / f"{stem}.png").read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000
    # the rebuilt graphs are the ones the engine used: same spectral gap, same Byzantine node
    for _, row in runs.iterrows():
        g = run_graph(row)
        assert g.byzantine_ids == json.loads(row["malicious_ids"])
        gap = spectral_gap(mixing_matrix(g.adjacency, "metropolis"))
        assert gap == pytest.approx(row["spectral_gap"], abs=1e-12)
        assert g.time_varying == (row["decentralized.topology.name"] == "erdos_renyi")
    per_node = rounds[rounds["node"].notna()]
    assert len(final_node_accuracies(runs, rounds)) == 2 * 5  # 2 runs x 5 honest nodes
    assert set(per_node["metric"]) == {"test_accuracy"}
