"""Graph topologies for decentralized (gossip) learning (registry kind ``topology``).

See :mod:`flarena.algorithms.topologies.base` for the contract. Importing this package
registers every built-in topology.
"""

from flarena.algorithms.topologies import (  # noqa: F401  (registration)
    complete,
    dumbbell,
    erdos_renyi,
    exponential,
    k_regular,
    random_matching,
    ring,
    star,
    torus,
)
from flarena.algorithms.topologies.base import Topology, degrees, from_edges, is_connected

__all__ = ["Topology", "degrees", "from_edges", "is_connected"]
