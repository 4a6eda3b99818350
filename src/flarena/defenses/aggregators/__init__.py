"""Aggregation rules ``[n, d] -> [d]`` (registry kind ``aggregator``); one rule per file."""

from flarena.defenses.aggregators import (  # noqa: F401  (registration)
    bulyan,
    centered_clipping,
    clustering,
    fltrust,
    geometric_median,
    krum,
    mean,
    median,
    multi_krum,
    trimmed_mean,
)
