"""Run one spec or a whole matrix: preflight, resume, parallel workers, failure recording."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import logging
import multiprocessing as mp
import os
import platform
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flarena.core.errors import FlarenaError, SpecError
from flarena.core.spec import Spec, baseline_run_id, load_matrix, parse_overrides, parse_spec
from flarena.results.store import Results, ResultStore, check_writable, write_json

if TYPE_CHECKING:
    import torch

# torch, the plugins and the engine are imported where they are used, so that a typo in a spec or
# a bad option is reported in a fraction of a second, before the heavy imports.
log = logging.getLogger(__name__)
# During a matrix the consolidated tables are rebuilt at most this often (and always at the end);
# each run's part is written, atomically, as soon as it finishes.
CONSOLIDATE_EVERY_S = 5.0

Progress = Callable[[str, dict[str, Any]], None]  # event name, payload


class RunFailed(FlarenaError):
    """A run failed and ``fail_fast`` stopped the matrix (not bad input: exit code 1)."""


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape the numbers."""
    out = {"python": platform.python_version()}
    for name in ("flarena", "torch", "flwr", "opacus", "numpy", "pandas", "scikit-learn"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            if name == "flarena":
                from flarena import __version__

                out[name] = __version__
    return out


def machine() -> dict[str, Any]:
    """The machine a matrix ran on."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_devices": [],
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
    return info


def device_name(device: torch.device) -> str:
    """Human name of a device (GPU model, or the CPU)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run_one(
    spec: Spec, *, on_round: Callable[[int, dict[str, float]], None] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run one spec; never raises for a failed run (the failure is recorded in the row)."""
    from flarena.bench.preflight import (
        build,
        effective_params,
        label_histogram_rows,
        semantics,
    )
    from flarena.bench.timing import resolve_device
    from flarena.engines.gossip import GossipEngine
    from flarena.engines.sim import SimEngine

    started = time.time()
    row: dict[str, Any] = {"run_id": spec.run_id, "name": spec.name, **spec.flat()}
    row["spec_json"] = json.dumps(spec.to_dict(), sort_keys=True)
    row.update({f"version.{k}": v for k, v in versions().items()})
    rounds: list[dict[str, Any]] = []
    hist: list[dict[str, Any]] = []
    try:
        device = resolve_device(spec.device)
        row["device_name"] = device_name(device)
        row["device_type"] = device.type
        comp = build(spec)
        for key, value in effective_params(spec).items():
            row.setdefault(key, value)
        row.update(semantics(spec, comp))
        row["baseline_run_id"] = baseline_run_id(spec)
        row["plugins"] = json.dumps(comp.provenance, sort_keys=True)
        row["plugin_distributions"] = json.dumps(
            sorted({f"{p['distribution']}=={p['version']}" for p in comp.provenance})
        )
        hist = label_histogram_rows(comp)
        engine: Any = SimEngine() if spec.framework == "federated" else GossipEngine()
        out = engine.run(
            spec, comp, device=device, executor=spec.engine.executor, on_round=on_round
        )
        rounds = out.rounds
        row.update(out.metrics)
        row["status"] = "ok"
        row["error"] = None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # recorded, not swallowed: status=failed with the error text
        log.error("run %s failed: %s", spec.run_id, exc)
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc(limit=20)
    finished = time.time()
    row["time.total"] = finished - started
    row["started_at"] = dt.datetime.fromtimestamp(started, dt.UTC).isoformat()
    row["finished_at"] = dt.datetime.fromtimestamp(finished, dt.UTC).isoformat()
    return row, rounds, hist


def _worker(spec_dict: dict[str, Any], out: str, threads: int) -> tuple[str, str, str | None]:
    import torch

    from flarena.bench.allocator import tune_malloc

    tune_malloc()
    torch.set_num_threads(threads)
    spec = parse_spec(spec_dict)
    row, rounds, hist = run_one(spec)
    ResultStore(out).write_run(row, rounds, hist)
    return spec.run_id, str(row["status"]), row.get("error")


def preflight(specs: list[Spec]) -> None:
    """Build every cell's components and check devices; raise :class:`SpecError` on bad input."""
    from flarena.bench.preflight import build
    from flarena.bench.timing import resolve_device

    for i, spec in enumerate(specs):
        prefix = f"matrix cell {i + 1}/{len(specs)}: " if len(specs) > 1 else ""
        try:
            resolve_device(spec.device)
            build(spec, with_model=True)
        except SpecError as exc:
            raise SpecError(f"{prefix}{exc}") from None
        except Exception as exc:  # a plugin whose constructor crashes: refuse the matrix, clearly
            log.info("preflight of cell %d failed", i + 1, exc_info=True)
            raise SpecError(
                f"{prefix}building the components failed: {type(exc).__name__}: {exc}"
            ) from exc


def run_matrix(
    config: str | Path | Mapping[str, Any],
    *,
    overrides: list[str] | Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    jobs: int = 1,
    device: str | None = None,
    fail_fast: bool = False,
    progress: Progress | None = None,
) -> Results:
    """Run every cell of a matrix into ``out`` and return its :class:`Results`.

    Finished run ids are skipped (resume); failed ones are run again. Bad input raises
    :class:`SpecError` before anything is written. Large CPU tensors are kept in the process
    between rounds (:func:`flarena.bench.allocator.tune_malloc`; ``FLARENA_MALLOC=default``
    turns that off).
    """
    from flarena.bench.allocator import tune_malloc

    tune_malloc()
    if not isinstance(jobs, int) or jobs < 1:
        raise SpecError(f"invalid jobs = {jobs!r}: must be an integer >= 1")
    ov = parse_overrides(overrides)
    if device is not None:
        ov["device"] = device
    specs = load_matrix(config, ov)
    out_dir = Path(out) if out is not None else Path("results") / specs[0].name
    check_writable(out_dir)
    preflight(specs)
    emit = progress or (lambda event, payload: None)
    store = ResultStore(out_dir)
    with store.lock():
        manifest: dict[str, Any] = {
            "name": specs[0].name,
            "config": str(config) if isinstance(config, str | Path) else "<mapping>",
            "overrides": {k: v for k, v in ov.items()},
            "versions": versions(),
            "machine": machine(),
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "cells": [{"run_id": s.run_id, "spec": s.to_dict()} for s in specs],
        }
        old = out_dir / "manifest.json"
        if old.exists():
            try:
                manifest["created_at"] = json.loads(old.read_text()).get(
                    "created_at", manifest["created_at"]
                )
            except json.JSONDecodeError:
                pass
        write_json(manifest, out_dir / "manifest.json")
        todo = [s for s in specs if store.status_of(s.run_id) != "ok"]
        emit("matrix_start", {"total": len(specs), "todo": len(todo), "out": str(out_dir)})
        try:
            if jobs == 1 or len(todo) <= 1:
                for spec in todo:
                    emit("run_start", {"run_id": spec.run_id, "rounds": spec.rounds})

                    def on_round(r: int, m: dict[str, float], rid: str = spec.run_id) -> None:
                        emit("round", {"run_id": rid, "round": r, **m})

                    row, rounds, hist = run_one(spec, on_round=on_round)
                    store.write_run(row, rounds, hist)
                    store.consolidate(min_interval=CONSOLIDATE_EVERY_S)
                    emit(
                        "run_end",
                        {
                            "run_id": spec.run_id,
                            "status": row["status"],
                            "error": row.get("error"),
                            "final_test_accuracy": row.get("final_test_accuracy"),
                            "seconds": row.get("time.total"),
                        },
                    )
                    if fail_fast and row["status"] != "ok":
                        raise RunFailed(
                            f"run {spec.run_id} failed (--fail-fast): {row.get('error')}"
                        )
            else:
                _run_parallel(todo, store, jobs, fail_fast, emit)
        finally:
            store.consolidate()
            manifest["updated_at"] = dt.datetime.now(dt.UTC).isoformat()
            write_json(manifest, out_dir / "manifest.json")
        from flarena.results.report import write_plots, write_report  # seaborn: slow to import

        results = Results(out_dir)
        plots = write_plots(out_dir, results.runs, results.rounds)
        write_report(out_dir, manifest, results.runs, plots)
        emit("matrix_end", {"out": str(out_dir)})
        return results


def _run_parallel(
    todo: list[Spec], store: ResultStore, jobs: int, fail_fast: bool, emit: Progress
) -> None:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        pending: dict[Future[tuple[str, str, str | None]], Spec] = {}
        for spec in todo:
            emit("run_start", {"run_id": spec.run_id, "rounds": spec.rounds})
            pending[pool.submit(_worker, spec.to_dict(), str(store.out), threads)] = spec
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    spec = pending.pop(fut)
                    try:
                        rid, status, error = fut.result()
                    except Exception as exc:  # the worker died (killed, out of memory): record it
                        rid, status, error = spec.run_id, "failed", f"worker crashed: {exc!r}"
                        row = {"run_id": rid, "name": spec.name, **spec.flat(), "status": status}
                        row.update(error=error, finished_at=dt.datetime.now(dt.UTC).isoformat())
                        store.write_run(row, [], [])
                    store.consolidate(min_interval=CONSOLIDATE_EVERY_S)
                    emit("run_end", {"run_id": rid, "status": status, "error": error})
                    if fail_fast and status != "ok":
                        raise RunFailed(f"run {rid} failed (--fail-fast): {error}")
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
