"""Print speed ratios (engine / floor) after the benchmarks ran side by side in one session."""

from __future__ import annotations

from typing import Any

from flarena.bench.allocator import tune_malloc

tune_malloc()  # as the runner does: benchmarks measure what `flarena run` runs

RESULTS: dict[str, float] = {}


def record(name: str, benchmark: Any) -> None:
    """Remember a benchmark's median seconds under ``name``."""
    stats = benchmark.stats.stats if hasattr(benchmark.stats, "stats") else benchmark.stats
    RESULTS[name] = float(stats.median)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    import sys

    scale = sys.modules.get("benchmarks.test_gossip_scale")
    if scale is not None:
        lines = scale.pytest_terminal_summary_table()
        if lines:
            terminalreporter.write_sep("-", "decentralized scale")
            for line in lines:
                terminalreporter.write_line(line)
    groups: dict[str, dict[str, float]] = {}
    for key, sec in RESULTS.items():
        group, _, name = key.partition("/")
        groups.setdefault(group, {})[name] = sec
    for group, res in groups.items():
        floor = res.get("floor")
        if not floor:
            continue
        terminalreporter.write_sep("-", f"ratios to the floor: {group}")
        for name, sec in sorted(res.items(), key=lambda kv: kv[1]):
            terminalreporter.write_line(f"{name:>28s}: {sec:8.3f} s  {sec / floor:5.2f}x floor")
