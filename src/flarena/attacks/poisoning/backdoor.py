"""Pixel-pattern backdoor with optional model-replacement boosting."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flarena.core.contracts import AttackContext, DataPoisoning
from flarena.core.registry import register


def stamp_trigger(x: Tensor, size: int) -> Tensor:
    """A copy of ``x`` with a solid ``size x size`` square in each image's bottom-right corner.

    The square takes each channel's maximum over ``x`` (the brightest pixel value in the data as
    the model sees it, after any standardisation). For ``[N, C, H, W]`` images the square covers
    ``x[..., H - size:, W - size:]``; for flat ``[N, F]`` inputs the last ``size * size``
    features take the maximum over ``x``.
    """
    out = x.clone()
    if x.shape[0] == 0:
        return out
    if x.ndim >= 4:
        peak = x.amax(dim=tuple(i for i in range(x.ndim) if i != 1), keepdim=True)
        h, w = x.shape[-2], x.shape[-1]
        s_h, s_w = min(size, h), min(size, w)
        peak = peak[..., :1, :1].expand(*x.shape[:-2], s_h, s_w)
        out[..., h - s_h :, w - s_w :] = peak
    elif x.ndim == 3:  # [N, H, W]
        h, w = x.shape[-2], x.shape[-1]
        out[..., h - min(size, h) :, w - min(size, w) :] = x.max()
    else:
        k = min(size * size, x.shape[-1])
        out[..., x.shape[-1] - k :] = x.max()
    return out


@register("attack", "backdoor")
class Backdoor(DataPoisoning):
    r"""Pixel-pattern backdoor: triggered inputs are relabelled ``target``; optionally boosted.

    Each malicious client stamps a trigger (a solid ``size`` x ``size`` square of the brightest
    pixel value, bottom-right corner, as the BadNets pattern of Gu et al. 2017) on a fraction
    ``poison_fraction`` of its examples, drawn with ``ctx.generator``, and relabels them
    ``target``; the other examples stay clean, so the client's model still fits the main task.
    Its trained update :math:`\Delta` is then sent as :math:`\gamma \Delta` with
    :math:`\gamma` = ``boost`` (model replacement, Bagdasaryan et al. 2020: with FedAvg over
    :math:`n` clients and server learning rate :math:`\eta`, :math:`\gamma = n / \eta` replaces
    the global model by the backdoored one; :math:`\gamma = 1`, the default, is plain data
    poisoning).

    Attack success rate (reported by the engine as ``attack_success_rate``): the fraction of
    test inputs whose true label is not ``target`` that the global model classifies as
    ``target`` once triggered.

    Bagdasaryan, Veit, Hua, Estrin, Shmatikov, "How to backdoor federated learning", AISTATS
    2020; Gu, Dolan-Gavitt, Garg, "BadNets", 2017.

    Parameters
    ----------
    target : int
        The label triggered inputs get (``< num_classes``, checked when poisoning).
    size : int
        Side of the square trigger in pixels (``>= 1``).
    poison_fraction : float
        Fraction in ``(0, 1]`` of each malicious client's examples that carry the trigger
        (rounded to the nearest count, at least one).
    boost : float
        :math:`\gamma > 0`, the factor on the malicious clients' updates (1: no boosting).
    """

    def __init__(
        self,
        *,
        target: int = 0,
        size: int = 3,
        poison_fraction: float = 0.5,
        boost: float = 1.0,
    ) -> None:
        for name, value in (("target", target), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"invalid {name} = {value!r}: must be an int")
        if target < 0:
            raise ValueError(f"invalid target = {target!r}: must be >= 0")
        if size < 1:
            raise ValueError(f"invalid size = {size!r}: must be >= 1")
        for fname, fvalue in (("poison_fraction", poison_fraction), ("boost", boost)):
            if isinstance(fvalue, bool) or not isinstance(fvalue, int | float):
                raise TypeError(f"invalid {fname} = {fvalue!r}: must be a number")
        if not (0.0 < poison_fraction <= 1.0):
            raise ValueError(f"invalid poison_fraction = {poison_fraction!r}: must be in (0, 1]")
        if not (math.isfinite(boost) and boost > 0):
            raise ValueError(f"invalid boost = {boost!r}: must be a finite number > 0")
        self.target = target
        self.size = size
        self.poison_fraction = float(poison_fraction)
        self.boost = float(boost)

    def _check_target(self, num_classes: int) -> None:
        if self.target >= num_classes:
            raise ValueError(
                f"backdoor target = {self.target} must be < num_classes = {num_classes}"
            )

    def poison(self, x: Tensor, y: Tensor, /, *, ctx: AttackContext) -> tuple[Tensor, Tensor]:
        """Stamp the trigger on a seeded fraction of ``x`` and relabel those ``target``."""
        self._check_target(ctx.num_classes)
        n = x.shape[0]
        px, py = x.clone(), y.clone()
        if n == 0:
            return px, py
        k = max(1, round(self.poison_fraction * n))
        gen = ctx.generator
        pick = torch.randperm(n, generator=gen, device=gen.device).to(x.device)[:k]
        px[pick] = stamp_trigger(x[pick], self.size)
        py[pick] = self.target
        return px, py

    def success_inputs(
        self, x: Tensor, y: Tensor, /, *, num_classes: int
    ) -> tuple[Tensor, Tensor] | None:
        """The test inputs whose label is not ``target``, triggered, with ``target`` labels."""
        self._check_target(num_classes)
        keep = y != self.target
        xs = stamp_trigger(x[keep], self.size)
        return xs, torch.full_like(y[keep], self.target)

    def adjust_update(self, rows: Tensor, /, *, ctx: AttackContext) -> Tensor:
        """Model replacement: the malicious rows times ``boost``."""
        return rows * self.boost

    def get_params(self) -> dict[str, int | float]:
        """Constructor parameters."""
        return {
            "target": self.target,
            "size": self.size,
            "poison_fraction": self.poison_fraction,
            "boost": self.boost,
        }
