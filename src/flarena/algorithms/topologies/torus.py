"""2-D torus (wrap-around grid)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import sparse

from flarena.algorithms.topologies.base import Topology, check_count, from_edges, int_param
from flarena.core.registry import register


@register("topology", "torus")
class Torus(Topology):
    r"""2-D torus: an ``rows x cols`` grid whose rows and columns wrap around.

    Node :math:`i = r \cdot \text{cols} + c` (row-major) links to
    :math:`((r \pm 1) \bmod \text{rows}, c)` and :math:`(r, (c \pm 1) \bmod \text{cols})`: degree 4
    when both sides are at least 3. A side of 2 makes the :math:`+1` and :math:`-1` neighbours
    along it the same node, and the duplicate edge counts once (degree 3 on a ``2 x m`` torus,
    2 on ``2 x 2``); a side of 1 adds no edge along it (a ``1 x m`` torus is a ring).

    Parameters
    ----------
    rows, cols : int or None
        Grid shape. Both ``None`` (default): a square torus, ``n`` must be a perfect square.
        One given: the other is ``n`` divided by it. ``n`` must equal ``rows * cols``; any other
        ``n`` is refused (no partial grids).
    """

    name = "torus"

    def __init__(self, *, rows: int | None = None, cols: int | None = None) -> None:
        self.rows = None if rows is None else int_param("rows", rows, minimum=1)
        self.cols = None if cols is None else int_param("cols", cols, minimum=1)

    def shape(self, n: int) -> tuple[int, int]:
        """The ``(rows, cols)`` used for ``n`` nodes; ``ValueError`` if ``n`` does not fit."""
        n = check_count(n)
        rows, cols = self.rows, self.cols
        if rows is None and cols is None:
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(
                    f"invalid n = {n} for torus: must be a perfect square when rows and cols "
                    f"are not given (or set rows/cols with rows * cols = n)"
                )
            return side, side
        if rows is None:
            assert cols is not None
            if n % cols:
                raise ValueError(
                    f"invalid n = {n} for torus(cols={cols}): must be a multiple of cols"
                )
            return n // cols, cols
        if cols is None:
            if n % rows:
                raise ValueError(
                    f"invalid n = {n} for torus(rows={rows}): must be a multiple of rows"
                )
            return rows, n // rows
        if rows * cols != n:
            raise ValueError(
                f"invalid n = {n} for torus(rows={rows}, cols={cols}): must be rows * cols = "
                f"{rows * cols}"
            )
        return rows, cols

    def check_n(self, n: int) -> None:
        """Refuse ``n < 2`` and any ``n`` that is not ``rows * cols``."""
        self.shape(n)

    def build(self, n: int, *, rng: np.random.Generator, round: int) -> sparse.csr_array:
        """Right and down neighbours of every cell, wrapped."""
        rows, cols = self.shape(n)
        grid = np.arange(n, dtype=np.int64).reshape(rows, cols)
        right = np.roll(grid, -1, axis=1)
        down = np.roll(grid, -1, axis=0)
        return from_edges(
            n, np.concatenate([grid.ravel()] * 2), np.concatenate([right.ravel(), down.ravel()])
        )

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""
        return {"rows": self.rows, "cols": self.cols}
