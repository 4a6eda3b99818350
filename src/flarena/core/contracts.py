"""The typed contracts every engine, attack and defense speaks.

Every client or node update is a flat vector; a round's updates are one ``[n, d]`` tensor.
What a row *means* is named by :class:`VectorKind` and recorded in every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor


class VectorKind(StrEnum):
    """What one row of the update matrix is."""

    GRADIENT = "gradient"  # FedSGD: a gradient at the global model
    UPDATE = "update"  # FedAvg: local model - global model
    MODEL = "model"  # gossip: the node's model itself


@dataclass(frozen=True)
class ThreatModel:
    """What a model-poisoning attacker knows and controls.

    Parameters
    ----------
    sees_honest_updates
        Omniscient attacker: receives the honest rows of the current round (ALIE, IPM, min-max).
    knows_aggregator
        The attacker may adapt to the aggregation rule (``ctx.aggregator`` is filled in).
    """

    sees_honest_updates: bool = False
    knows_aggregator: bool = False


@dataclass
class RoundContext:
    """What a defense may know in one round.

    ``malicious`` is filled in for *bookkeeping* (detection rates) only: a defense must never
    use it.
    """

    round: int
    client_ids: Tensor  # [n] ids of the clients whose rows are in the matrix
    weights: Tensor  # [n] aggregation weights (example counts, or ones), as clients reported them
    vector_kind: VectorKind
    declared_f: int = 0
    generator: torch.Generator | None = None
    previous_aggregate: Tensor | None = None
    global_params: Tensor | None = None
    malicious: Tensor | None = None  # [n] bool, bookkeeping only
    # the server's own update on its clean root data set (FLTrust), computed by the engine for a
    # rule that declares ``root_examples``; None otherwise
    server_update: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)  # defenses report here (e.g. kept rows)


@dataclass(frozen=True)
class NeighbourhoodView:
    r"""What a Byzantine node knows about the honest node it sends to (decentralized runs).

    In a decentralized run a model-poisoning attack acts *per victim*: for every honest node
    :math:`i` with Byzantine neighbours, ``craft`` is called once and its ``n_malicious`` rows
    are the messages the Byzantine neighbours of :math:`i` send to :math:`i` (so a Byzantine
    node may send a different vector to each neighbour). The ``honest`` rows passed to
    ``craft`` are then the victim's own model followed by its honest neighbours' models
    (empty unless the threat model declares ``sees_honest_updates``), as in the ClippedGossip
    authors' code.

    Parameters
    ----------
    node
        The victim's node id.
    model
        The victim's current model :math:`x_i` ``[d]`` (every neighbour receives it).
    weights
        ``[h]`` gossip weights of the ``honest`` rows: :math:`W_{ii}` for the victim's own row,
        then :math:`W_{ij}` of each honest neighbour (empty if the honest rows are hidden).
    byzantine_weight
        :math:`\delta_i = \sum_{j\ \mathrm{Byzantine}} W_{ij}`, the total weight node
        :math:`i` gives its Byzantine neighbours.
    n_honest_neighbours
        How many honest neighbours the victim has (known to the attacker even when their
        models are hidden).
    """

    node: int
    model: Tensor
    weights: Tensor
    byzantine_weight: float
    n_honest_neighbours: int


@dataclass
class AttackContext:
    """What an attacker gets in one round."""

    round: int
    malicious_ids: Tensor  # [m] client ids controlled by the attacker this round
    n_clients: int  # rows in the round's matrix (honest + malicious)
    vector_kind: VectorKind
    generator: torch.Generator
    rng: np.random.Generator
    global_params: Tensor | None = None
    num_classes: int = 0
    # The server's whole defense pipeline (pre-aggregators then aggregator) as a side-effect-free
    # callable ``[n, d] -> [d]``, filled in only if ``threat_model.knows_aggregator``; an adaptive
    # attack evaluates candidate matrices with it. None otherwise.
    aggregator: Any = None
    # decentralized runs: the victim this call crafts messages for; None in federated runs
    neighbourhood: NeighbourhoodView | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Aggregator(Protocol):
    """``[n, d] -> [d]``; validates its parameters (e.g. f) at construction."""

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Aggregate the rows into one vector."""
        ...


@runtime_checkable
class PreAggregator(Protocol):
    """``[n, d] -> [m, d]`` (nearest-neighbour mixing, bucketing, clipping)."""

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Map the rows to (possibly fewer) rows."""
        ...


@runtime_checkable
class ClientTransform(Protocol):
    """Client-side defense applied to each row before it leaves the client (clip, noise)."""

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Transform the honest clients' rows."""
        ...


class ModelPoisoning:
    """Crafts the malicious rows of the update matrix.

    Subclasses implement :meth:`craft`. The engine passes the honest rows only if
    ``threat_model.sees_honest_updates`` is true; otherwise ``honest`` has zero rows.
    """

    threat_model: ClassVar[ThreatModel] = ThreatModel()
    kind: ClassVar[str] = "model_poisoning"

    def craft(self, honest: Tensor, /, *, n_malicious: int, ctx: AttackContext) -> Tensor:
        """Return ``[n_malicious, d]`` malicious rows."""
        raise NotImplementedError


class DataPoisoning:
    """Alters the malicious clients' training data (label flipping, backdoor triggers)."""

    kind: ClassVar[str] = "data_poisoning"

    def poison(self, x: Tensor, y: Tensor, /, *, ctx: AttackContext) -> tuple[Tensor, Tensor]:
        """Return the poisoned ``(x, y)`` of one malicious client."""
        raise NotImplementedError

    def success_inputs(
        self, x: Tensor, y: Tensor, /, *, num_classes: int
    ) -> tuple[Tensor, Tensor] | None:
        """Test inputs and the labels the attacker wants for them, or None if untargeted.

        The engine reports ``attack_success_rate``: the fraction of these inputs the global model
        classifies as the attacker's label (triggered inputs for a backdoor; the source class
        for a targeted label flip).
        """
        return None

    def adjust_update(self, rows: Tensor, /, *, ctx: AttackContext) -> Tensor:
        """The malicious clients' trained rows as they are sent; the identity by default.

        E.g. model-replacement boosting. Must return a new tensor of the same shape.
        """
        return rows


def is_model_poisoning(obj: object) -> bool:
    """Whether ``obj`` crafts rows (has ``craft``)."""
    return callable(getattr(obj, "craft", None))


def is_data_poisoning(obj: object) -> bool:
    """Whether ``obj`` poisons data (has ``poison``)."""
    return callable(getattr(obj, "poison", None))
