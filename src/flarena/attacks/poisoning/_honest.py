"""The honest-row preamble shared by attacks that compute statistics of the honest rows."""

from __future__ import annotations

from torch import Tensor

from flarena.defenses._distances import finite_rows


def finite_honest(honest: Tensor, n_malicious: int) -> tuple[Tensor, Tensor | None]:
    """Validate ``[h, d]`` honest rows; drop non-finite ones; give the answer if it is trivial.

    Returns ``(finite honest rows, early)``: ``early`` is ``[0, d]`` zeros for
    ``n_malicious == 0``, ``[n_malicious, d]`` zeros when no finite honest row is left, and None
    when the attack has something to compute.
    """
    if honest.ndim != 2:
        raise ValueError(f"expected honest rows [h, d], got shape {tuple(honest.shape)}")
    d = honest.shape[1]
    if n_malicious == 0:
        return honest, honest.new_zeros(0, d)
    honest = honest[finite_rows(honest)]
    if honest.shape[0] == 0:
        return honest, honest.new_zeros(n_malicious, d)
    return honest, None
