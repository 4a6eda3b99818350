"""Federated and decentralized algorithms (registry kinds ``algorithm`` and ``topology``)."""

from flarena.algorithms import fedavg, fedsgd, topologies  # noqa: F401  (registration)
from flarena.algorithms.base import LocalPlan, ServerAlgorithm

__all__ = ["LocalPlan", "ServerAlgorithm"]
