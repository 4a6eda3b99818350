"""The Markdown report of a results directory: summary table, failed runs, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from flarena.results.plots import config_labels, metric_vs_round, phase_times, save
from flarena.results.robustness import (
    attack_defense_heatmap,
    attack_defense_table,
    is_attack_defense_matrix,
)
from flarena.results.store import ROUNDS_COLUMNS, atomic_write


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per configuration: mean, std and count over seeds (ok runs only)."""
    ok = runs[runs["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame(columns=["config", "runs", "acc_mean", "acc_std", "s_per_run"])
    ok["config"] = _labels(ok)
    g = ok.groupby("config", sort=True)
    return pd.DataFrame(
        {
            "runs": g.size(),
            "acc_mean": g["final_test_accuracy"].mean(),
            "acc_std": g["final_test_accuracy"].std(ddof=1).fillna(0.0),
            "best_acc": g["best_test_accuracy"].mean(),
            "s_per_run": g["time.total"].mean(),
        }
    ).reset_index()


def _has_decentralized(runs: pd.DataFrame) -> bool:
    return "framework" in runs.columns and bool((runs["framework"] == "decentralized").any())


def _labels(runs: pd.DataFrame) -> pd.Series:
    """Configuration labels; with decentralized runs, their topology/gossip factors too."""
    if not _has_decentralized(runs):
        return config_labels(runs)
    from flarena.results.decentralized import run_labels

    return run_labels(runs)


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [("" if v != v else f"{v:.4f}") if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_plots(out: Path, runs: pd.DataFrame, rounds: pd.DataFrame) -> list[Path]:
    """Accuracy/loss vs round and phase-time plots under ``out/plots``."""
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        return written
    for metric in ("test_accuracy", "test_loss"):
        if _has_decentralized(runs) and not _has_metric(rounds, ok, metric):
            continue  # a mixed matrix: the metric may be recorded by one framework only
        path = plots / f"{metric}_vs_round.png"
        atomic_write(path, lambda tmp, m=metric: save(metric_vs_round(rounds, ok, metric=m), tmp))  # type: ignore[misc]
        written.append(path)
    path = plots / "phase_times.png"
    atomic_write(path, lambda tmp: save(phase_times(ok), tmp))
    written.append(path)
    if is_attack_defense_matrix(runs):
        by = _split_column(runs)
        path = plots / "attack_defense_heatmap.png"
        atomic_write(path, lambda tmp: save(attack_defense_heatmap(runs, by=by), tmp))
        written.append(path)
    return written


def _has_metric(rounds: pd.DataFrame, runs: pd.DataFrame, metric: str) -> bool:
    """Whether ``rounds`` has a global (node-less) row of ``metric`` for one of ``runs``."""
    if rounds.empty or "metric" not in rounds.columns:
        return False
    sel = (rounds["metric"] == metric) & rounds["node"].isna()
    return bool(rounds.loc[sel, "run_id"].isin(runs["run_id"]).any())


def _split_column(runs: pd.DataFrame) -> str | None:
    col = "data.partition.name"
    return col if col in runs and runs[col].nunique() > 1 else None


def kappa_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per defense pipeline and attacker count f: the paper's kappa beside the measured kappa_hat.

    Over the ok runs under attack (the bound depends on f, and without attackers kappa_hat only
    measures how far the rule is from the plain mean).
    """
    import json

    from flarena.results.robustness import defense_label

    cols = ["kappa_theory", "kappa_hat_mean", "kappa_hat_max", "semantics.n_malicious"]
    if runs.empty or not set(cols) <= set(runs.columns):
        return pd.DataFrame()
    ok = runs[(runs["status"] == "ok") & (runs["semantics.n_malicious"] > 0)].copy()
    if ok.empty:
        return pd.DataFrame()
    ok["defense"] = ok["spec_json"].map(json.loads).map(defense_label)
    ok["f"] = ok["semantics.n_malicious"].astype(int)
    g = ok.groupby(["defense", "f"], sort=True)
    return pd.DataFrame(
        {
            "kappa (paper)": g["kappa_theory"].first(),
            "kappa_hat mean": g["kappa_hat_mean"].mean(),
            "kappa_hat max": g["kappa_hat_max"].max(),
        }
    ).reset_index()


def robustness_sections(runs: pd.DataFrame) -> list[str]:
    """Markdown sections of an attack x defense matrix: accuracy, drop, ASR, kappa."""
    by = _split_column(runs)
    table = attack_defense_table(runs, by=by).reset_index()
    lines = [
        "## Attack x defense: final test accuracy (mean over seeds; a failed run counts 0)",
        "",
        _md_table(table.rename(columns={"index": "defense"})),
        "",
    ]
    if "accuracy_drop" in runs and runs["accuracy_drop"].notna().any():
        drop = attack_defense_table(
            runs, value="accuracy_drop", by=by, failed=None, higher_is_better=False
        ).reset_index()
        lines += [
            "## Accuracy drop against the same spec without attack (higher is worse)",
            "",
            _md_table(drop.rename(columns={"index": "defense"})),
            "",
        ]
    asr_col = "final_attack_success_rate"
    if asr_col in runs and runs[asr_col].notna().any():
        asr = attack_defense_table(
            runs[runs[asr_col].notna() | (runs["status"] != "ok")],
            value=asr_col,
            by=by,
            failed=None,
            higher_is_better=False,
        ).reset_index()
        lines += [
            "## Attack success rate of targeted attacks and backdoors (higher is worse)",
            "",
            _md_table(asr.rename(columns={"index": "defense"})),
            "",
        ]
    kt = kappa_table(runs)
    if not kt.empty:
        lines += [
            "## Robustness coefficient: the paper's kappa beside the measured kappa_hat",
            "",
            "kappa_hat = ||aggregate - honest mean||^2 / honest variance, per round, over the runs "
            "with f attackers (Allouah et al. 2023); the paper's value is an upper bound for "
            "the worst case (blank: the paper gives none).",
            "",
            _md_table(kt),
            "",
        ]
    return lines


def _read_rounds(out: Path) -> pd.DataFrame:
    path = out / "rounds.parquet"
    if path.exists():
        return pd.read_parquet(path)
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ROUNDS_COLUMNS})


def write_report(
    out: Path,
    manifest: dict[str, Any],
    runs: pd.DataFrame,
    plots: list[Path],
    rounds: pd.DataFrame | None = None,
) -> Path:
    """Write ``report.md`` stitching the summary table, failures and plots.

    With decentralized runs in ``runs`` (``framework = "decentralized"``) the report gains the
    sections of :func:`flarena.results.decentralized.decentralized_sections`, whose figures are
    written under ``out/plots``; ``rounds`` is then read from ``out/rounds.parquet`` when not
    given. A federated-only report does not read ``rounds``.
    """
    vers = manifest.get("versions", {})
    n_ok, n_failed = int((runs["status"] == "ok").sum()), int((runs["status"] == "failed").sum())
    lines = [
        f"# flarena report: {manifest.get('name', out.name)}",
        "",
        f"- config: `{manifest.get('config')}`  overrides: `{manifest.get('overrides')}`",
        f"- runs: {len(runs)} ({n_ok} ok, {n_failed} failed) of "
        f"{len(manifest.get('cells', []))} cells",
        f"- machine: {manifest.get('machine', {}).get('platform')}, "
        f"{manifest.get('machine', {}).get('cpu_count')} CPUs, devices: "
        f"{', '.join(sorted(set(runs.get('device_name', pd.Series(dtype=str)).astype(str))))}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(vers.items())),
        "",
        "## Final test accuracy (mean ± std over seeds)",
        "",
        _md_table(summary_table(runs)),
        "",
    ]
    if is_attack_defense_matrix(runs):
        lines += robustness_sections(runs)
    if _has_decentralized(runs):
        from flarena.results.decentralized import decentralized_sections

        if rounds is None:
            rounds = _read_rounds(out)
        lines += decentralized_sections(runs, rounds, out)
    failed = runs[runs["status"] == "failed"]
    if not failed.empty:
        lines += ["## Failed runs", ""]
        lines += [f"- `{r.run_id}`: {r.error}" for r in failed.itertuples()]
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p.stem}](plots/{p.name})" for p in plots]
        lines.append("")
    path = out / "report.md"

    def _write(tmp: Path) -> None:
        tmp.write_text("\n".join(lines))

    atomic_write(path, _write)
    return path
