"""Tidy result store: ``runs`` (one row per run) and ``rounds`` (long), Parquet on disk.

Layout of a results directory::

    manifest.json          versions, machine, the spec and every cell's run id
    runs.parquet           one row per run (consolidated from parts/)
    rounds.parquet         long: run_id, round, node (nullable), metric, value
    label_hist.parquet     long: run_id, client, label, count
    parts/<run_id>/        one run's own files; run.parquet is written last (the commit marker)
    plots/*.png, report.md

Every file is written atomically (temporary file in the same directory, fsync, rename), so a
killed matrix never leaves a half-written table; each worker writes only its own run's part, and
only the parent consolidates, so parallel workers cannot corrupt the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from flarena.core.errors import SpecError

ROUNDS_COLUMNS = ["run_id", "round", "node", "metric", "value"]
HIST_COLUMNS = ["run_id", "client", "label", "count"]
TMP_SUFFIX = ".tmp"  # temporary files of atomic writes; stale ones are removed under the lock


def atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp)`` then rename ``tmp`` over ``path`` (same directory, fsynced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its files are mode 0600 whatever the umask, and the rename would
    # carry that over to the results; O_EXCL with mode 0666 honours the umask like open() does.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        writer(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Atomically write ``df`` as Parquet (mixed-type object columns become strings)."""
    df = _parquet_safe(df)
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_json(obj: Any, path: Path) -> None:
    """Atomically write ``obj`` as indented JSON."""

    def _w(tmp: Path) -> None:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    atomic_write(path, _w)


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col] if v is not None and not _isnan(v)}
            if len(kinds) > 1 or (kinds and not kinds <= {str, bool, int, float}):
                df[col] = [None if v is None or _isnan(v) else str(v) for v in df[col]]
    return df


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and v != v


def check_writable(out: Path) -> None:
    """Refuse an output directory that cannot be created or written, without creating it."""
    p = out.resolve()
    if p.exists() and not p.is_dir():
        raise SpecError(f"output path {out} exists and is not a directory")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SpecError(f"output directory {out} cannot be created: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SpecError(f"output directory {out} is not writable (no write permission on {probe})")


class ResultStore:
    """Reads and writes one results directory."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.parts = self.out / "parts"
        # consolidate() re-reads only parts that changed: run_id -> (stamp, run, rounds, hist)
        self._cache: dict[str, tuple[tuple[int, int], list[pd.DataFrame]]] = {}
        self._last_consolidated = 0.0

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock: one matrix invocation writes a directory at a time."""
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / ".lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SpecError(f"another flarena run is writing to {self.out}") from None
            try:
                self._remove_stale_tmp()
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _remove_stale_tmp(self) -> None:
        """Delete temporary files left by a killed writer (only the lock holder writes here)."""
        for pattern in ("", "plots/", "parts/*/"):  # where atomic_write puts them; no deep walk
            for tmp in self.out.glob(f"{pattern}.*{TMP_SUFFIX}"):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def status_of(self, run_id: str) -> str | None:
        """``ok``/``failed`` for a recorded run, None if it never finished."""
        path = self.parts / run_id / "run.parquet"
        if not path.exists():
            return None
        try:
            return str(pd.read_parquet(path, columns=["status"])["status"].iloc[0])
        except Exception:  # a part from an incompatible older version: treat as not done
            return None

    def write_run(
        self, run: dict[str, Any], rounds: list[dict[str, Any]], hist: list[dict[str, Any]]
    ) -> None:
        """Record one run: its long tables first, the run row last (the commit marker)."""
        rid = run["run_id"]
        d = self.parts / rid
        rdf = pd.DataFrame(rounds, columns=ROUNDS_COLUMNS[1:])
        rdf.insert(0, "run_id", rid)
        rdf["node"] = rdf["node"].astype("Int64")
        write_parquet(rdf, d / "rounds.parquet")
        hdf = pd.DataFrame(hist, columns=HIST_COLUMNS[1:])
        hdf.insert(0, "run_id", rid)
        write_parquet(hdf, d / "label_hist.parquet")
        write_parquet(pd.DataFrame([run]), d / "run.parquet")

    def _read_part(self, d: Path) -> list[pd.DataFrame] | None:
        """``[run, rounds?, hist?]`` of one committed part, from the cache if unchanged."""
        run_file = d / "run.parquet"
        try:
            st = run_file.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)  # run.parquet is written last: it stamps the part
        hit = self._cache.get(d.name)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        frames = [pd.read_parquet(run_file)]
        for name in ("rounds.parquet", "label_hist.parquet"):
            frames.append(pd.read_parquet(d / name) if (d / name).exists() else pd.DataFrame())
        self._cache[d.name] = (stamp, frames)
        return frames

    def consolidate(self, *, min_interval: float = 0.0) -> None:
        """Rebuild ``runs``, ``rounds`` and ``label_hist`` from the committed parts.

        Parts already read by this store are reused while their ``run.parquet`` is unchanged.
        With ``min_interval`` > 0, a call within that many seconds of the previous rebuild does
        nothing (the runner passes it during a matrix and rebuilds unconditionally at the end):
        the parts are the record, the three tables a view of them.
        """
        now = time.monotonic()
        if min_interval > 0 and now - self._last_consolidated < min_interval:
            return
        runs: list[pd.DataFrame] = []
        rounds: list[pd.DataFrame] = []
        hists: list[pd.DataFrame] = []
        for d in sorted(self.parts.glob("*")) if self.parts.exists() else []:
            frames = self._read_part(d)
            if frames is None:
                continue
            runs.append(frames[0])
            if not frames[1].empty:
                rounds.append(frames[1])
            if not frames[2].empty:
                hists.append(frames[2])
        runs_df = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame()
        if "finished_at" in runs_df:
            runs_df = runs_df.sort_values("finished_at", kind="stable").reset_index(drop=True)
        runs_df = add_accuracy_drop(runs_df)
        write_parquet(runs_df, self.out / "runs.parquet")
        empty_r = pd.DataFrame(columns=ROUNDS_COLUMNS)
        write_parquet(
            pd.concat(rounds, ignore_index=True) if rounds else empty_r, self.out / "rounds.parquet"
        )
        empty_h = pd.DataFrame(columns=HIST_COLUMNS)
        write_parquet(
            pd.concat(hists, ignore_index=True) if hists else empty_h,
            self.out / "label_hist.parquet",
        )
        self._last_consolidated = time.monotonic()


def add_accuracy_drop(runs: pd.DataFrame) -> pd.DataFrame:
    """Add ``accuracy_drop``: the no-attack twin's final accuracy minus this run's.

    The twin is the run whose id is this run's ``baseline_run_id`` (the same spec with the attack
    removed). A failed attacked run (e.g. a diverged model) counts as 0 accuracy, so its drop is
    the twin's whole accuracy. NaN where the twin is missing or failed; 0 for the twin itself.
    """
    if runs.empty or "baseline_run_id" not in runs or "final_test_accuracy" not in runs:
        return runs
    out = runs.copy()
    ok = out["status"] == "ok" if "status" in out else pd.Series(True, index=out.index)
    acc = out["final_test_accuracy"].astype(float)
    by_id = pd.Series(acc.where(ok).to_numpy(), index=out["run_id"]).groupby(level=0).last()
    base = out["baseline_run_id"].map(by_id).astype(float)
    is_base = out["baseline_run_id"].isna()
    drop = base - acc.where(ok, 0.0)
    out["accuracy_drop"] = drop.where(~is_base, acc.where(ok) * 0.0)
    return out


class Results:
    """A results directory as DataFrames, with plotting helpers (the API's return value)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        if not (self.out / "runs.parquet").exists():
            raise SpecError(f"{out} is not a flarena results directory (no runs.parquet)")

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run."""
        return pd.read_parquet(self.out / "runs.parquet")

    @property
    def rounds(self) -> pd.DataFrame:
        """Long per-round metrics."""
        return pd.read_parquet(self.out / "rounds.parquet")

    @property
    def label_hist(self) -> pd.DataFrame:
        """Per-client label counts of every run."""
        return pd.read_parquet(self.out / "label_hist.parquet")

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest: versions, machine, spec, cells."""
        return dict(json.loads((self.out / "manifest.json").read_text()))

    def plot_accuracy(self, **kwargs: Any) -> Any:
        """Test accuracy against round (see :func:`flarena.results.plots.metric_vs_round`)."""
        from flarena.results.plots import metric_vs_round

        return metric_vs_round(self.rounds, self.runs, metric="test_accuracy", **kwargs)

    def plot_phase_times(self, **kwargs: Any) -> Any:
        """Seconds per phase per configuration."""
        from flarena.results.plots import phase_times

        return phase_times(self.runs, **kwargs)

    def __repr__(self) -> str:
        runs = self.runs
        ok = int((runs["status"] == "ok").sum()) if len(runs) else 0
        return f"Results({str(self.out)!r}: {len(runs)} runs, {ok} ok)"
