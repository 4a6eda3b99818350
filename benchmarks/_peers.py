"""Peer implementations for the aggregator benchmark: ByzFL's rules and Flower's robust math.

ByzFL (``pip install --no-deps byzfl==0.0.11``, a benchmark-only dependency)
------------------------------------------------------------------------------
``import byzfl`` runs ``byzfl/__init__.py``, which imports ``byzfl.fed_framework`` and through it
``torchvision``. torchvision has no CPU wheel that matches the CPU torch used here (installing it
pulls a CUDA torch), and the aggregators do not need it. :func:`load_byzfl` therefore loads only
``byzfl.aggregators.aggregators`` and ``byzfl.aggregators.preaggregators``: it registers empty
package modules for ``byzfl``, ``byzfl.aggregators`` and ``byzfl.utils`` (with the installed
``__path__``, so the submodules are found on disk) in ``sys.modules`` *without executing their
``__init__.py``*, then imports the two modules by name. Their own imports
(``byzfl.utils.misc``, ``byzfl.utils.torch_tools``, numpy, scipy, torch) resolve normally. If
byzfl is not installed, :func:`load_byzfl` returns ``None`` and the benchmark skips the ByzFL
columns.

Flower (``flwr``, already a dependency of flarena)
--------------------------------------------------
Flower 1.42 carries two copies of its robust math:

- the current Message API, ``flwr.serverapp.strategy``: ``multikrum.compute_distances`` (one
  uncentred float32 Gram matrix, not clamped), ``multikrum.select_multikrum`` (Krum and
  Multi-Krum; also Bulyan's selection), ``fedtrimmedavg.trim_mean``, ``np.median`` (FedMedian),
  and ``bulyan.aggregate_n_closest_weights``;
- the legacy strategies' ``flwr.server.strategy.aggregate``: ``aggregate_krum`` (a Python loop
  over all pairs), ``aggregate_bulyan`` (repeated Krum), ``aggregate_median``,
  ``aggregate_trimmed_avg``.

Both operate on numpy arrays. The Message API functions take ``RecordDict`` / ``ArrayRecord``
objects; the thin holders below expose exactly the attributes they use (``array_records``,
``[key]``, ``to_numpy_ndarrays()``) around the benchmark's own float32 rows (views, no copy), so
Flower's code runs unchanged while no (de)serialisation is timed.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


def load_byzfl() -> tuple[types.ModuleType, types.ModuleType] | None:
    """ByzFL's ``(aggregators, preaggregators)`` modules, without ``byzfl/__init__.py``.

    Returns ``None`` when byzfl is not installed. A module already in ``sys.modules`` is reused.
    """
    spec = importlib.util.find_spec("byzfl") if "byzfl" not in sys.modules else None
    if "byzfl" not in sys.modules:
        if spec is None or not spec.submodule_search_locations:
            return None
        root = Path(next(iter(spec.submodule_search_locations)))
        for name, path in (
            ("byzfl", root),
            ("byzfl.aggregators", root / "aggregators"),
            ("byzfl.utils", root / "utils"),
        ):
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(path)]
            pkg.__package__ = name
            sys.modules[name] = pkg
    aggregators = importlib.import_module("byzfl.aggregators.aggregators")
    preaggregators = importlib.import_module("byzfl.aggregators.preaggregators")
    return aggregators, preaggregators


class _Record:
    """Stands for Flower's ``ArrayRecord`` of one flattened layer."""

    def __init__(self, row: NDArray[np.float32]) -> None:
        self.row = row

    def to_numpy_ndarrays(self) -> list[NDArray[np.float32]]:
        return [self.row]


class _Content(dict[str, _Record]):
    """Stands for Flower's ``RecordDict`` holding one ``ArrayRecord`` under ``"arrays"``."""

    def __init__(self, row: NDArray[np.float32]) -> None:
        super().__init__(arrays=_Record(row))

    @property
    def array_records(self) -> dict[str, _Record]:
        return self


class Flower:
    """Flower 1.42's robust aggregation math, called on ``[n, d]`` numpy rows."""

    def __init__(self) -> None:
        from flwr.server.strategy import aggregate as legacy
        from flwr.serverapp.strategy import bulyan, fedtrimmedavg, multikrum

        self.legacy = legacy
        self._multikrum = multikrum
        self._trim_mean = fedtrimmedavg.trim_mean
        self._n_closest = bulyan.aggregate_n_closest_weights

    # -- current Message API (flwr.serverapp.strategy) -------------------------------------
    def select(self, x: NDArray[np.float32], f: int, m: int) -> list[int]:
        """Row indices chosen by ``select_multikrum(contents, f, m)`` (Krum when ``m = 1``)."""
        contents = [_Content(row) for row in x]
        chosen = self._multikrum.select_multikrum(contents, f, m)  # type: ignore[arg-type]
        ids = {id(c): i for i, c in enumerate(contents)}
        return [ids[id(c)] for c in chosen]

    def krum(self, x: NDArray[np.float32], f: int) -> NDArray[np.float32]:
        """``Krum`` strategy: the single row chosen by ``select_multikrum``."""
        return x[self.select(x, f, 1)[0]]

    def multi_krum(self, x: NDArray[np.float32], f: int, m: int) -> Any:
        """``MultiKrum`` strategy: the (equal-weight) mean of the ``m`` selected rows."""
        return np.mean(x[self.select(x, f, m)], axis=0)

    def median(self, x: NDArray[np.float32]) -> Any:
        """``FedMedian``: ``np.median`` over the rows."""
        return np.median(x, axis=0)

    def trimmed_mean(self, x: NDArray[np.float32], beta: float) -> Any:
        """``FedTrimmedAvg``: ``trim_mean(x, beta)``, ``int(beta * n)`` cut at each end."""
        return self._trim_mean(x, beta)

    def bulyan(self, x: NDArray[np.float32], f: int) -> Any:
        """``Bulyan.aggregate_train``'s math: Multi-Krum selection of ``n - 2f`` rows, then the
        mean of the ``theta - 2f`` values closest to the coordinate-wise median."""
        theta = x.shape[0] - 2 * f
        selected = [[x[i]] for i in self.select(x, f, theta)]
        median = [np.median(arr, axis=0) for arr in zip(*selected, strict=True)]
        return self._n_closest(median, selected, theta - 2 * f)[0]

    # -- legacy strategies (flwr.server.strategy.aggregate) --------------------------------
    @staticmethod
    def _results(x: NDArray[np.float32]) -> list[tuple[list[NDArray[np.float32]], int]]:
        return [([row], 1) for row in x]

    def legacy_krum(self, x: NDArray[np.float32], f: int) -> Any:
        """``aggregate_krum(results, f, to_keep=0)``: Krum, distances by a loop over pairs."""
        return self.legacy.aggregate_krum(self._results(x), f, 0)[0]

    def legacy_multi_krum(self, x: NDArray[np.float32], f: int, m: int) -> Any:
        """``aggregate_krum(results, f, to_keep=m)``: example-weighted mean of ``m`` rows."""
        return self.legacy.aggregate_krum(self._results(x), f, m)[0]

    def legacy_median(self, x: NDArray[np.float32]) -> Any:
        return self.legacy.aggregate_median(self._results(x))[0]

    def legacy_trimmed_mean(self, x: NDArray[np.float32], beta: float) -> Any:
        return self.legacy.aggregate_trimmed_avg(self._results(x), beta)[0]

    def legacy_bulyan(self, x: NDArray[np.float32], f: int) -> Any:
        """``aggregate_bulyan`` with ``aggregate_krum`` (to_keep=0): repeated Krum selection."""
        return self.legacy.aggregate_bulyan(
            self._results(x), f, self.legacy.aggregate_krum, to_keep=0
        )[0]
