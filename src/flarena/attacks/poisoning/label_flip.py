"""Label flipping: data poisoning of the malicious clients' labels."""

from __future__ import annotations

import torch
from torch import Tensor

from flarena.core.contracts import AttackContext, DataPoisoning
from flarena.core.registry import register


@register("attack", "label_flip")
class LabelFlip(DataPoisoning):
    r"""Label flipping: every label ``y`` becomes ``C - 1 - y`` (or only ``source -> target``).

    Untargeted (default): :math:`y \mapsto C - 1 - y` with :math:`C` = ``ctx.num_classes``, a
    permutation of the classes (e.g. with :math:`C = 10`: 0 -> 9, 1 -> 8, 9 -> 0). Targeted
    (``source`` and ``target`` both set): only the examples of class ``source`` are relabelled
    ``target``; every other label is kept. The inputs ``x`` are unchanged (returned as a copy);
    neither input is modified in place.

    Untargeted form as in Allen-Zhu et al. 2021 and Karimireddy et al. 2021/2022 (``9 - y`` on
    MNIST); targeted form as in Tolpegin et al., "Data poisoning attacks against federated
    learning systems", ESORICS 2020, and Fung et al., "The limitations of federated learning in
    Sybil settings" (FoolsGold), RAID 2020.

    Parameters
    ----------
    source : int or None
        Class (``>= 0``) whose examples are relabelled; set together with ``target``.
    target : int or None
        Class (``>= 0``) given to them; both must be ``< ctx.num_classes`` (checked when
        poisoning, since the class count is known only then).
    """

    def __init__(self, *, source: int | None = None, target: int | None = None) -> None:
        if (source is None) != (target is None):
            raise ValueError(
                f"set both source and target (targeted flip) or neither (untargeted), got "
                f"source = {source!r}, target = {target!r}"
            )
        for name, value in (("source", source), ("target", target)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"invalid {name} = {value!r}: must be an int or None")
            if value < 0:
                raise ValueError(f"invalid {name} = {value!r}: must be >= 0")
        self.source = source
        self.target = target

    def poison(self, x: Tensor, y: Tensor, /, *, ctx: AttackContext) -> tuple[Tensor, Tensor]:
        """Return ``(x, flipped y)`` as new tensors."""
        c = ctx.num_classes
        if c < 1:
            raise ValueError(f"label_flip needs ctx.num_classes >= 1, got {c}")
        if self.source is not None and self.target is not None:
            if self.source >= c or self.target >= c:
                raise ValueError(
                    f"label_flip source = {self.source}, target = {self.target} must be "
                    f"< num_classes = {c}"
                )
            flipped = y.clone()
            flipped[y == self.source] = self.target
        else:
            flipped = (c - 1) - y
        return x.clone(), flipped

    def success_inputs(
        self, x: Tensor, y: Tensor, /, *, num_classes: int
    ) -> tuple[Tensor, Tensor] | None:
        """Targeted flip: the test inputs of class ``source``, labelled ``target``; else None.

        The attack success rate is then the fraction of the source class classified as the
        target class (Tolpegin et al. 2020's targeted misclassification rate).
        """
        if self.source is None or self.target is None:
            return None
        keep = y == self.source
        return x[keep].clone(), torch.full_like(y[keep], self.target)

    def get_params(self) -> dict[str, int | None]:
        """Constructor parameters."""
        return {"source": self.source, "target": self.target}
