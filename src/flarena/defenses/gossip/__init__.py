"""Robust gossip rules (registry kind ``gossip_rule``): how a node mixes what neighbours sent."""

from flarena.defenses.gossip import clipped_gossip, gossip_mean  # noqa: F401  (registration)
