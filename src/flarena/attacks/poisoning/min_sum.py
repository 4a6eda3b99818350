"""Min-sum (Shejwalkar & Houmansadr 2021): AGR-agnostic, bounded by the tightest honest row."""

from __future__ import annotations

from typing import ClassVar

from flarena.attacks.poisoning._shejwalkar import AgrAgnosticAttack
from flarena.core.registry import register


@register("attack", "min_sum")
class MinSum(AgrAgnosticAttack):
    r"""Min-sum: shift the honest mean while its squared-distance sum is within the honest minimum.

    Every malicious row is the same vector

    .. math:: b = \mu + \gamma p, \qquad
              \sum_{i} \lVert b - x_i \rVert^2 \le \min_{i} \sum_{j} \lVert x_i - x_j \rVert^2

    with :math:`x_1..x_h` the honest rows of the round, :math:`\mu` their mean, :math:`p` the
    perturbation and :math:`\gamma` the largest value the paper's binary search (Algorithm 1)
    finds for which the condition holds. Since :math:`\sum_i (\mu - x_i) = 0`, the left side is
    :math:`\sum_i \lVert \mu - x_i \rVert^2 + h\gamma^2\lVert p\rVert^2` and the exact boundary is
    :math:`\gamma^* = \min_i \lVert x_i - \mu \rVert / \lVert p \rVert`: the malicious row is no
    farther from the honest rows, in sum of squares, than the most central honest row.

    Perturbations: ``"unit_vec"`` :math:`p = -\mu / \lVert\mu\rVert` (the official code's
    default), ``"sign"`` :math:`p = -\mathrm{sign}(\mu)`, ``"std"`` :math:`p = -\sigma`, the
    coordinate-wise standard deviation of the honest rows with ``ddof = 1`` (``torch.std``, as in
    the official code).

    Conventions: squared distances (the paper and the official code). The search is Algorithm 1
    with the official code's step, which starts at :math:`\gamma_{init}`:
    :math:`\gamma \leftarrow \gamma \pm \text{step}/2`, :math:`\text{step} \leftarrow
    \text{step}/2`, stop when :math:`|\gamma_{succ} - \gamma| \le \tau`; exactly
    :math:`\lceil \log_2(\gamma_{init}/\tau) \rceil` tests (20 with the defaults), no other cap.
    It returns :math:`\gamma_{succ}`, the last value that passed (0 if none), within :math:`2\tau`
    below the exact boundary; it cannot exceed :math:`2\gamma_{init}`. The paper's printout starts
    the step at :math:`\gamma_{init}/2`, which confines the search to
    :math:`(\gamma_{init}/2, 3\gamma_{init}/2)` and does not end when the condition fails there;
    we follow the code. :math:`\gamma_{init} = 10` as in the official code. The :math:`\gamma`
    used is stored in ``ctx.info["opt_param"]``.

    Edge cases: honest rows with a non-finite coordinate are ignored; no (finite) honest row
    gives zeros; one honest row gives that row (:math:`\gamma = 0`);
    :math:`p = 0` (:math:`\mu = 0` with ``"unit_vec"`` or ``"sign"``, or identical honest rows
    with ``"std"``) gives :math:`b = \mu` and reports :math:`\gamma = 0`; an honest row equal to
    :math:`\mu` makes :math:`\gamma^* = 0`.

    Shejwalkar, Houmansadr, "Manipulating the Byzantine: Optimizing Model Poisoning Attacks and
    Defenses for Federated Learning", NDSS 2021 (AGR-agnostic min-sum attack).

    Parameters
    ----------
    perturbation : {"unit_vec", "sign", "std"}
        The direction :math:`p`.
    gamma_init : float
        Start of the search, :math:`> 0` (10.0).
    tau : float
        Search tolerance, :math:`0 < \tau < \gamma_{init}` (1e-5).
    """

    objective: ClassVar[str] = "min_sum"
