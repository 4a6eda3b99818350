"""Plots: pure functions from tidy DataFrames to matplotlib figures (seaborn styling)."""

from __future__ import annotations

import json
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

SPEC_PREFIXES = (
    "data.",
    "model.",
    "algorithm.",
    "attack.",
    "defense.",
    "engine.",
    "decentralized.",
)
SPEC_SCALARS = ("rounds", "eval_every", "eval_clients_every", "device", "dtype", "framework")


def spec_columns(runs: pd.DataFrame) -> list[str]:
    """Columns of ``runs`` that come from the spec (seed excluded)."""
    return [c for c in runs.columns if c.startswith(SPEC_PREFIXES) or c in SPEC_SCALARS]


def varying_columns(runs: pd.DataFrame) -> list[str]:
    """Spec columns whose value differs between runs: the matrix's factors."""
    out = []
    for c in spec_columns(runs):
        if runs[c].astype(str).nunique(dropna=False) > 1:
            out.append(c)
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(col: str) -> str:
    parts = col.split(".")
    return ".".join(parts[1:]) if len(parts) > 1 else parts[0]


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and v != v) and str(v) not in ("nan", "<NA>")


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def config_labels(runs: pd.DataFrame) -> pd.Series:
    """One readable label per run from its varying factors, e.g. ``partition=dirichlet(alpha=0.3)``.

    A component's name and parameters are folded together; parameters a run does not have
    (NaN in the tidy table) are left out.
    """
    cols = varying_columns(runs)
    if "spec_json" in runs.columns:  # label by what the specs say, not by filled-in defaults
        said: set[str] = set()
        for text in runs["spec_json"].dropna().unique():
            said |= set(_flatten(json.loads(text)))
        cols = [c for c in cols if c in said]
    if not cols:
        return pd.Series(["all runs"] * len(runs), index=runs.index)
    groups: dict[str, list[str]] = {}
    for c in cols:
        stem = c[: -len(".name")] if c.endswith(".name") else c
        owner = next((g for g in groups if stem.startswith(g + ".")), None)
        if (
            owner is None
            and f"{c.rsplit('.', 1)[0]}.name" in runs.columns
            and not c.endswith(".name")
        ):
            owner = c.rsplit(".", 1)[0]
            groups.setdefault(owner, [])
        groups.setdefault(owner or stem, []).append(c)

    def label(row: pd.Series) -> str:
        out = []
        for stem, members in groups.items():
            if stem.startswith("decentralized.") and row.get("framework") == "federated":
                continue  # the graph does not apply to a federated run
            name_col = f"{stem}.name"
            if name_col in runs.columns:
                name = row[name_col]
                params = [
                    f"{c.rsplit('.', 1)[1]}={_fmt(row[c])}"
                    for c in members
                    if c != name_col and _present(row[c])
                ]
                out.append(f"{_short(stem)}={name}" + (f"({', '.join(params)})" if params else ""))
            else:
                out.append(", ".join(f"{_short(c)}={_fmt(row[c])}" for c in members))
        return ", ".join(out)

    return runs.apply(label, axis=1)


def metric_vs_round(
    rounds: pd.DataFrame, runs: pd.DataFrame, *, metric: str = "test_accuracy", ax: Any = None
) -> Figure:
    """Line plot of a global metric against round; mean over seeds with a 95% CI band."""
    df = rounds[(rounds["metric"] == metric) & rounds["node"].isna()]
    labels = config_labels(runs).rename("config")
    df = df.merge(pd.concat([runs["run_id"], labels], axis=1), on="run_id")
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.2))
    else:
        fig = ax.figure
    sns.lineplot(
        data=df,
        x="round",
        y="value",
        hue="config",
        errorbar=("ci", 95),
        ax=ax,
        marker="o",
        markersize=3,
    )
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_xlabel("round")
    ax.grid(alpha=0.3)
    if ax.get_legend() is not None:
        ax.legend(fontsize=7, title=None, loc="best")
    fig.tight_layout()
    return fig


def phase_times(runs: pd.DataFrame, *, ax: Any = None) -> Figure:
    """Stacked seconds per phase (mean over seeds) for each configuration."""
    cols = [c for c in runs.columns if c.startswith("time.") and c != "time.total"]
    df = runs.loc[runs["status"] == "ok"].copy()
    df["config"] = config_labels(df)
    mean = df.groupby("config")[cols].mean()
    mean.columns = [c.removeprefix("time.") for c in mean.columns]
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(len(mean), 2)))
    else:
        fig = ax.figure
    mean.plot.barh(stacked=True, ax=ax, colormap="tab10")
    ax.set_xlabel("seconds per run")
    ax.set_ylabel("")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Any) -> None:
    """Save ``fig`` as PNG and close it."""
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
