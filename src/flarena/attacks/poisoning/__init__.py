"""Poisoning attacks, one per file."""

from flarena.attacks.poisoning import (  # noqa: F401  (registration)
    alie,
    backdoor,
    dissensus,
    fang_krum,
    fang_trimmed_mean,
    gaussian,
    ipm,
    label_flip,
    mimic,
    min_max,
    min_sum,
    opt_alie,
    opt_ipm,
    sign_flip,
)
