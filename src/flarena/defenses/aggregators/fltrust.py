"""FLTrust (Cao, Fang, Liu, Gong 2021): trust scores from the server's own root-data update."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix, int_param
from flarena.defenses._distances import finite_rows
from flarena.defenses.aggregators.clustering import unit_rows


@register("aggregator", "fltrust")
class FLTrust:
    r"""FLTrust: rows rescaled to the server update's norm, weighted by ReLU(cosine) with it.

    With :math:`g_0` the server's own update on its clean root data set
    (``ctx.server_update``), each row gets the trust score
    :math:`TS_i = \mathrm{ReLU}\big(\cos(g_i, g_0)\big) = \max\!\big(0,
    \frac{\langle g_i, g_0 \rangle}{\lVert g_i \rVert \lVert g_0 \rVert}\big)`, is rescaled to
    :math:`\bar g_i = \frac{\lVert g_0 \rVert}{\lVert g_i \rVert} g_i`, and the output is

    .. math::

        g = \frac{1}{\sum_j TS_j} \sum_i TS_i \, \bar g_i

    (Cao, Fang, Liu, Gong 2021, "FLTrust: Byzantine-robust Federated Learning via Trust
    Bootstrapping", NDSS). The paper then steps the global model with a global
    learning rate, :math:`w \leftarrow w - \alpha g`; here the engine takes the server step and
    the rule returns :math:`g`. The engine computes :math:`g_0` each round for a rule that
    declares ``root_examples``: it trains the current global model on a clean root data set of
    that many examples with the clients' local plan (the paper's default root data set has 100
    examples). Unweighted: ``ctx.weights`` is ignored (the trust scores are the weights). With a
    context, ``ctx.info["trust"]`` is the ``[n]`` vector of trust scores and
    ``ctx.info["kept"]`` the ``[n]`` bool mask :math:`TS_i > 0`.

    Conventions: if every trust score is 0 (no row within 90° of :math:`g_0`), the output is
    the zero vector: no step this round, as the widely used MXNet FLTrust code's
    :math:`\sum_j TS_j + 10^{-9}` denominator gives. A zero row has no direction, so its
    cosine is undefined: :math:`TS_i = 0` (that code's ``norm + 1e-9`` gives the same). A zero
    or non-finite :math:`g_0` gives no trusted direction: every score is 0 and the output is
    zero. Non-finite values: a row with any NaN/inf coordinate gets :math:`TS_i = 0` and adds
    nothing, so the output is always finite (for a finite :math:`g_0`). Every row enters with
    norm :math:`\lVert g_0 \rVert` whatever its own, so the output norm is at most
    :math:`\lVert g_0 \rVert`. Not translation equivariant, and the identical-rows property
    holds only when :math:`g_0` is that row.

    Parameters
    ----------
    root_examples : int
        Size of the server's clean root data set (``>= 1``; 100 in the paper), read by the
        engine, which computes ``ctx.server_update`` on it.

    Raises
    ------
    ValueError
        When called without a context, or with ``ctx.server_update`` missing or not of shape
        ``[d]``.
    """

    #: By definition FLTrust needs the server's update from ctx and rescales every row.
    _xfail_checks: ClassVar[dict[str, str]] = {
        "ctx_none": "fltrust needs the server's root-data update (ctx.server_update): without "
        "a context it raises ValueError by design",
        "translation_equivariance": "rows are weighted by their angle with the server update "
        "and rescaled to its norm, both measured from the origin, so agg(x + c) != agg(x) + c",
    }

    def __init__(self, *, root_examples: int = 100) -> None:
        self.root_examples = int_param("root_examples", root_examples, minimum=1)

    def check_n(self, n: int) -> None:
        """Refuse an empty round."""
        if n < 1:
            raise ValueError(f"fltrust needs n >= 1 rows, got n = {n}")

    def _server_update(self, updates: Tensor, ctx: RoundContext | None) -> Tensor:
        g0 = None if ctx is None else ctx.server_update
        if g0 is None:
            got = "no context (ctx=None)" if ctx is None else "ctx.server_update = None"
            raise ValueError(
                "fltrust needs the server's root-data update (ctx.server_update), which the "
                f"engine computes on a root data set of root_examples = {self.root_examples} "
                f"examples; got {got}"
            )
        if tuple(g0.shape) != (updates.shape[1],):
            raise ValueError(
                f"ctx.server_update has shape {tuple(g0.shape)}, want ({updates.shape[1]},)"
            )
        return g0.to(device=updates.device, dtype=torch.float64)

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Aggregate ``[n, d]`` rows into ``[d]``."""
        check_matrix(updates)
        g0 = self._server_update(updates, ctx)
        ok = finite_rows(updates)
        work = torch.where(ok[:, None], updates.double(), 0.0)  # a non-finite row -> zero row
        unit, _ = unit_rows(work)  # zero rows -> zero direction -> cosine 0
        if bool(torch.isfinite(g0).all()):
            unit0, norm0 = unit_rows(g0[None, :])
        else:
            unit0, norm0 = torch.zeros_like(g0)[None, :], torch.zeros_like(g0[:1])
        trust = (unit @ unit0[0]).clamp(min=0.0, max=1.0)  # ReLU(cos); 0 for zero rows
        total = trust.sum()
        if float(total) > 0.0:
            out = (trust @ unit) * (norm0[0] / total)
        else:
            out = torch.zeros(updates.shape[1], dtype=torch.float64, device=updates.device)
        if ctx is not None:
            ctx.info["trust"] = trust.to(updates.dtype)
            ctx.info["kept"] = trust > 0
        return out.to(updates.dtype)

    def get_params(self) -> dict[str, int]:
        """Constructor parameters."""
        return {"root_examples": self.root_examples}
