"""Robust gossip rules (registry kind ``gossip_rule``): how a node mixes what neighbours sent."""

from flarena.defenses.gossip import (  # noqa: F401  (registration)
    clipped_gossip,
    cs_plus,
    gossip_mean,
    gts,
    neighbourhood,
)
