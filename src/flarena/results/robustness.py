"""Attack x defense tables and heatmaps for Byzantine-robustness matrices."""

from __future__ import annotations

import json
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

WORST = "worst case"
_RESERVED_ATTACK = frozenset(
    {
        "name",
        "n_malicious",
        "attackers",
        "sees_honest_updates",
        "knows_aggregator",
        "claimed_examples",
    }
)


def _component(d: dict[str, Any], skip: frozenset[str] = frozenset({"name"})) -> str:
    params = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(d.items())
        if k not in skip
    )
    return f"{d['name']}({params})" if params else str(d["name"])


def attack_label(spec: dict[str, Any]) -> str:
    """``sign_flip(scale=10)``: the attack as the spec names it (attacker count left out)."""
    return _component(spec["attack"], _RESERVED_ATTACK)


def defense_label(spec: dict[str, Any]) -> str:
    """``nnm(f=4) -> krum(f=4)``: client transforms, pre-aggregators, then the aggregator."""
    d = spec["defense"]
    steps = [_component(c) for c in d.get("client", [])]
    steps += [_component(c) for c in d.get("preaggregators", [])]
    steps.append(_component(d["aggregator"]))
    return " -> ".join(steps)


def attack_defense_table(
    runs: pd.DataFrame,
    *,
    value: str = "final_test_accuracy",
    by: str | None = None,
    failed: float | None = 0.0,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """Mean of ``value`` over seeds per (defense, attack), with a worst-case row and column.

    A failed run (e.g. a model that diverged) counts as ``failed`` (0 accuracy by default: the
    attack won; None keeps the column's own value, e.g. ``accuracy_drop`` already charges a
    failed run its twin's whole accuracy). The ``worst case`` column is each defense's worst
    value over attacks; the ``worst case`` row is each attack's worst over defenses (its best
    effect); worst is the minimum if ``higher_is_better`` else the maximum. ``by`` (a runs
    column, e.g. ``data.partition.name``) adds an outer index level, one table per value.
    """
    df = runs.copy()
    specs = df["spec_json"].map(json.loads)
    df["attack"] = specs.map(attack_label)
    df["defense"] = specs.map(defense_label)
    score = df[value].astype(float)
    df["score"] = score if failed is None else score.where(df["status"] == "ok", failed)
    keys = [by] if by else []
    tables = []
    for key, part in df.groupby(keys) if keys else [((), df)]:
        table = part.pivot_table(index="defense", columns="attack", values="score", aggfunc="mean")
        if higher_is_better:
            table[WORST] = table.min(axis=1)
            table.loc[WORST] = table.min(axis=0)
        else:
            table[WORST] = table.max(axis=1)
            table.loc[WORST] = table.max(axis=0)
        if keys:
            table = pd.concat({key[0] if isinstance(key, tuple) else key: table}, names=[by])
        tables.append(table)
    return pd.concat(tables)


def attack_defense_heatmap(runs: pd.DataFrame, *, by: str | None = None) -> Figure:
    """Heatmap of final accuracy (defense x attack) with worst cases; one panel per ``by``."""
    table = attack_defense_table(runs, by=by)
    groups = list(table.index.get_level_values(0).unique()) if by else [None]
    n_att = table.shape[1]
    n_def = len(table) // max(len(groups), 1)
    fig, axes = plt.subplots(
        1, len(groups), figsize=(1.1 * n_att * len(groups) + 3.5, 0.45 * n_def + 2.2), squeeze=False
    )
    for ax, g in zip(axes[0], groups, strict=True):
        t = table.loc[g] if g is not None else table
        sns.heatmap(
            t,
            annot=True,
            fmt=".2f",
            vmin=0,
            vmax=1,
            cmap="RdYlGn",
            cbar=False,
            ax=ax,
            annot_kws={"fontsize": 7},
        )
        ax.axhline(len(t) - 1, color="black", lw=1.5)
        ax.axvline(t.shape[1] - 1, color="black", lw=1.5)
        ax.set_title(
            f"{by.split('.')[-2] if by and '.' in by else by} = {g}"
            if g is not None
            else "final test accuracy",
            fontsize=9,
        )
        ax.set_xlabel("attack")
        ax.set_ylabel("defense" if ax is axes[0][0] else "")
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def is_attack_defense_matrix(runs: pd.DataFrame) -> bool:
    """Whether the runs cross at least two attacks with at least two defenses."""
    if "spec_json" not in runs or runs.empty:
        return False
    specs = runs["spec_json"].map(json.loads)
    return specs.map(attack_label).nunique() >= 2 and specs.map(defense_label).nunique() >= 2
