"""Coordinate-wise median (Yin et al. 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix


def numpy_rows(x: Tensor) -> NDArray[Any] | None:
    """A numpy view of ``x`` (no copy) when numpy can select along its rows, else ``None``.

    CPU float32/float64 tensors that do not require a gradient: numpy's ``partition`` and
    ``sort`` along the rows (vectorised with x86-simd-sort or Highway in numpy 2) beat
    ``torch.kthvalue`` and ``torch.sort`` there by 5 to 7 times (``docs/BENCHMARKS.md``).
    """
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.requires_grad:
        return None
    return x.numpy()


def coordinate_median(x: Tensor) -> Tensor:
    r"""Coordinate-wise median of ``[n, d]`` rows, NaN counted as :math:`+\infty`.

    Odd ``n``: the middle order statistic :math:`x_{((n+1)/2)}`. Even ``n``: the mean of the
    two middle order statistics, :math:`\tfrac12 x_{(n/2)} + \tfrac12 x_{(n/2+1)}`
    (``torch.median`` would return the lower one). No full sort is needed: on the CPU (float32
    and float64, see :func:`numpy_rows`) one ``numpy.partition`` along the rows puts
    :math:`x_{(\lfloor n/2 \rfloor + 1)}` in place with the smaller values before it, whose
    maximum is :math:`x_{(n/2)}` for even ``n``. Elsewhere (CUDA, half precision, autograd)
    each order statistic is one ``torch.kthvalue`` selection along the rows (radix select on
    CUDA), with NaN replaced by :math:`+\infty` first; numpy ranks NaN last too but keeps it,
    so the coordinates where the numpy result is NaN (at least half NaN values) are recomputed
    that way. The input is not modified.

    Parameters
    ----------
    x : Tensor
        ``[n, d]`` rows, ``n >= 1``.

    Returns
    -------
    Tensor
        ``[d]``, in ``x.dtype``.
    """
    rows = numpy_rows(x)
    if rows is None:
        return _median_torch(x)
    n, half = x.shape[0], x.shape[0] // 2
    part = np.partition(rows, half, axis=0)
    if n % 2 == 1:
        out = torch.from_numpy(part[half].copy())
    else:
        lower = torch.from_numpy(part[:half].max(axis=0))
        out = 0.5 * lower + 0.5 * torch.from_numpy(part[half])
    del part
    bad = torch.isnan(out)
    if bool(bad.any()):
        out[bad] = _median_torch(x[:, bad])
    return out


def _median_torch(x: Tensor) -> Tensor:
    n = x.shape[0]
    work = torch.where(torch.isnan(x), torch.inf, x)  # a new tensor: NaN ranks above everything
    lower = torch.kthvalue(work, (n + 1) // 2, dim=0).values
    if n % 2 == 1:
        return lower
    upper = torch.kthvalue(work, n // 2 + 1, dim=0).values
    return 0.5 * lower + 0.5 * upper  # halves first: no overflow near the dtype's max


@register("aggregator", "median")
class Median:
    r"""Coordinate-wise median of the rows.

    :math:`\mathrm{AGG}(x_1..x_n)_j = \mathrm{median}(x_{1j}, \dots, x_{nj})` for every
    coordinate :math:`j` (Yin, Chen, Ramchandran, Bartlett 2018, "Byzantine-Robust Distributed
    Learning: Towards Optimal Statistical Rates"). For even :math:`n` the median is the mean of
    the two middle values, :math:`\tfrac12 (x_{(n/2)j} + x_{(n/2+1)j})`, not the lower one that
    ``torch.median`` returns. Unweighted: ``ctx.weights`` is ignored.

    Non-finite values: per coordinate, NaN is ranked as :math:`+\infty` (so NaN, ``+inf`` and
    ``-inf`` are extreme values like any other). The output stays finite in a coordinate as long
    as fewer than half of the rows (at most :math:`\lceil n/2 \rceil - 1`) are non-finite there;
    beyond that breakdown point it may be infinite or NaN. The rule has no parameters.
    """

    def __init__(self) -> None:
        pass

    def check_n(self, n: int) -> None:
        """Refuse an empty round."""
        if n < 1:
            raise ValueError(f"median needs n >= 1 rows, got n = {n}")

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Aggregate ``[n, d]`` rows into ``[d]``."""
        check_matrix(updates)
        return coordinate_median(updates)

    def get_params(self) -> dict[str, object]:
        """Constructor parameters (none)."""
        return {}
