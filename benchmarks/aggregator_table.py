"""Markdown tables of the aggregator benchmark (``benchmarks/test_aggregators.py``).

The benchmark prints these tables at the end of its module. To rebuild them from a saved run::

    python -m pytest benchmarks/test_aggregators.py --benchmark-json=aggregators.json
    python -m benchmarks.aggregator_table aggregators.json

Times are the median (and the minimum) over the timed rounds; a ratio ``peer / flarena`` above 1
means flarena is faster. Each ratio is shown for the medians and, in parentheses, the minima.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """One benchmark: a rule run by one implementation."""

    rule: str
    impl: str  # "flarena", "byzfl", "flower", "flower-legacy"
    median: float  # seconds
    min: float  # seconds
    rounds: int
    note: str = ""  # agreement with flarena (or a convention difference), from the check


#: Further contenders, shown in a second table.
EXTRA = {
    "flower-legacy": "Flower legacy (`flwr.server.strategy.aggregate`)",
    "byzfl-copy": "ByzFL on a copy made in the timed region",
}


def _sec(t: Timing | None) -> str:
    if t is None:
        return "—"
    fmt = (lambda s: f"{s * 1e3:.0f} ms") if t.median < 1.0 else (lambda s: f"{s:.2f} s")
    return f"{fmt(t.median)} ({fmt(t.min)})"


def _ratio(peer: Timing | None, ours: Timing | None) -> str:
    if peer is None or ours is None:
        return "—"
    med, low = peer.median / ours.median, peer.min / ours.min
    return f"**{med:.1f}×** ({low:.1f}×)"


def _notes(cells: Iterable[Timing | None]) -> str:
    parts = [f"{t.impl}: {t.note}" for t in cells if t is not None and t.note]
    return "; ".join(parts) if parts else "—"


def markdown(timings: Iterable[Timing], order: Iterable[str] = ()) -> str:
    """The main table (flarena vs ByzFL and Flower's Message API) and a table of the variants."""
    by: dict[str, dict[str, Timing]] = {}
    for t in timings:
        by.setdefault(t.rule, {})[t.impl] = t
    rules = [r for r in order if r in by] + sorted(r for r in by if r not in set(order))
    out = [
        "| rule | flarena | byzfl | flower | byzfl / flarena | flower / flarena "
        "| outputs equal? / convention note |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule in rules:
        row = by[rule]
        ours, byz, flw = row.get("flarena"), row.get("byzfl"), row.get("flower")
        out.append(
            f"| {rule} | {_sec(ours)} | {_sec(byz)} | {_sec(flw)} | {_ratio(byz, ours)} "
            f"| {_ratio(flw, ours)} | {_notes((byz, flw))} |"
        )
    extra = [(r, impl) for r in rules for impl in EXTRA if impl in by[r]]
    if extra:
        out += [
            "",
            "| rule | flarena | variant | its time | variant / flarena "
            "| outputs equal? / convention note |",
            "|---|---|---|---|---|---|",
        ]
        for rule, impl in extra:
            ours, other = by[rule].get("flarena"), by[rule][impl]
            out.append(
                f"| {rule} | {_sec(ours)} | {EXTRA[impl]} | {_sec(other)} "
                f"| {_ratio(other, ours)} | {_notes((other,))} |"
            )
    return "\n".join(out)


def from_json(data: Mapping[str, Any]) -> list[Timing]:
    """Timings from a ``--benchmark-json`` file's contents (entries written by this benchmark)."""
    found = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if "rule" not in info:
            continue
        stats = bench["stats"]
        found.append(
            Timing(
                rule=info["rule"],
                impl=info["impl"],
                median=float(stats["median"]),
                min=float(stats["min"]),
                rounds=int(stats["rounds"]),
                note=info.get("note", ""),
            )
        )
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks.aggregator_table BENCHMARK.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as fh:
        data = json.load(fh)
    order = [t.rule for t in from_json(data)]
    print(markdown(from_json(data), dict.fromkeys(order)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
