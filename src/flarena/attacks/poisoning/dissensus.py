"""The dissensus attack on gossip (He, Karimireddy, Jaggi 2022)."""

from __future__ import annotations

import math
from typing import ClassVar

from torch import Tensor

from flarena.core.contracts import AttackContext, ModelPoisoning, ThreatModel
from flarena.core.registry import register


@register("attack", "dissensus")
class Dissensus(ModelPoisoning):
    r"""Dissensus: push each honest neighbour away from its honest neighbours' consensus.

    For a victim :math:`i` with honest neighbours :math:`H_i` and Byzantine neighbours of total
    gossip weight :math:`\delta_i`, every Byzantine neighbour sends

    .. math:: m_i = x_i - \varepsilon\,\frac{1}{\delta_i}
              \sum_{j \in H_i} W_{ij}\,(x_j - x_i).

    Under plain gossip the victim then moves by
    :math:`\sum_{j \in H_i} W_{ij}(x_j - x_i) + \delta_i (m_i - x_i) = (1 - \varepsilon)
    \sum_{j \in H_i} W_{ij}(x_j - x_i)`: :math:`\varepsilon = 1` cancels the victim's gossip
    step (no consensus), :math:`\varepsilon > 1` reverses it (dissensus). The message lies
    within the honest neighbours' spread, so it is hard to tell apart by distance.

    He, Karimireddy, Jaggi, "Byzantine-robust decentralized learning via ClippedGossip", 2022
    (arXiv:2202.01545), Section 5; the authors' experiments use :math:`\varepsilon = 1.5`.

    A decentralized attack: it needs ``ctx.neighbourhood`` (the victim's model and the gossip
    weights of its honest neighbours, whose models come as the ``honest`` rows, the victim's
    own row first), so federated runs refuse it before training. With no Byzantine weight
    (:math:`\delta_i = 0`) or no honest row the message is :math:`x_i` itself (harmless).

    Parameters
    ----------
    epsilon : float
        :math:`\varepsilon > 0`; 1.5 by default.
    """

    threat_model: ClassVar[ThreatModel] = ThreatModel(sees_honest_updates=True)
    frameworks: ClassVar[tuple[str, ...]] = ("decentralized",)

    def __init__(self, *, epsilon: float = 1.5) -> None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
            raise TypeError(f"invalid epsilon = {epsilon!r}: must be a number")
        if not (math.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"invalid epsilon = {epsilon!r}: must be a finite number > 0")
        self.epsilon = float(epsilon)

    def craft(self, honest: Tensor, /, *, n_malicious: int, ctx: AttackContext) -> Tensor:
        """Return ``[n_malicious, d]`` copies of the dissensus message to ``ctx.neighbourhood``."""
        nb = ctx.neighbourhood
        if nb is None:
            raise ValueError(
                "dissensus is a decentralized attack: it needs ctx.neighbourhood (the victim's "
                "model and its honest neighbours' weights)"
            )
        if honest.ndim != 2 or honest.shape[0] != nb.weights.shape[0]:
            raise ValueError(
                f"expected {nb.weights.shape[0]} honest rows (the victim's, then its honest "
                f"neighbours'), got shape {tuple(honest.shape)}"
            )
        x_i = nb.model.to(honest.dtype)
        if n_malicious == 0:
            return honest.new_zeros(0, x_i.shape[0])
        if nb.byzantine_weight <= 0 or honest.shape[0] == 0:
            return x_i.expand(n_malicious, -1).clone()
        w = nb.weights.to(honest.device, honest.dtype)
        pull = (w[:, None] * (honest - x_i)).sum(0)  # the victim's own row adds 0
        row = x_i - (self.epsilon / nb.byzantine_weight) * pull
        return row.expand(n_malicious, -1).clone()

    def get_params(self) -> dict[str, float]:
        """Constructor parameters."""
        return {"epsilon": self.epsilon}
