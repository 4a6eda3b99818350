"""Backdoor (Bagdasaryan et al. 2020; BadNets trigger): expected data worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flarena.attacks.poisoning.backdoor import Backdoor, stamp_trigger
from flarena.core.contracts import AttackContext, VectorKind


def ctx(seed: int = 0, num_classes: int = 10) -> AttackContext:
    return AttackContext(
        round=1,
        malicious_ids=torch.tensor([0]),
        n_clients=4,
        vector_kind=VectorKind.UPDATE,
        generator=torch.Generator().manual_seed(seed),
        rng=np.random.default_rng(seed),
        num_classes=num_classes,
    )


def test_trigger_is_a_square_of_each_channels_max_in_the_bottom_right_corner():
    x = torch.zeros(2, 2, 5, 5)
    x[0, 0, 0, 0] = 3.0  # channel 0's max over the batch
    x[1, 1, 2, 2] = 7.0  # channel 1's max
    out = stamp_trigger(x, 2)
    expected = x.clone()
    expected[:, 0, 3:, 3:] = 3.0
    expected[:, 1, 3:, 3:] = 7.0
    assert torch.equal(out, expected)
    assert x[0, 0, 4, 4] == 0  # input untouched


def test_trigger_on_flat_inputs_sets_the_last_size_squared_features():
    x = torch.tensor([[0.0, 1.0, 2.0, 0.5, 0.0, 0.0]])
    out = stamp_trigger(x, 2)  # 4 features set to the max, 2.0
    assert out.tolist() == [[0.0, 1.0, 2.0, 2.0, 2.0, 2.0]]


def test_poison_triggers_and_relabels_the_requested_fraction():
    x = torch.rand(10, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    y = torch.arange(10) % 3 + 1  # never the target 0
    px, py = Backdoor(target=0, size=2, poison_fraction=0.3).poison(x, y, ctx=ctx())
    changed = (py != y).nonzero().squeeze(1)
    assert len(changed) == 3  # round(0.3 * 10)
    peak = x.max()
    for i in range(10):
        if i in changed.tolist():
            assert py[i] == 0
            assert torch.all(px[i, 0, 4:, 4:] == peak)
            assert torch.equal(px[i, 0, :4], x[i, 0, :4])  # the rest of the image is kept
        else:
            assert torch.equal(px[i], x[i]) and py[i] == y[i]
    # same seed, same picks; another seed, (here) other picks
    px2, py2 = Backdoor(target=0, size=2, poison_fraction=0.3).poison(x, y, ctx=ctx())
    assert torch.equal(px, px2) and torch.equal(py, py2)
    _, py3 = Backdoor(target=0, size=2, poison_fraction=0.3).poison(x, y, ctx=ctx(seed=9))
    assert not torch.equal(py, py3)


def test_at_least_one_example_is_poisoned():
    x, y = torch.rand(3, 1, 4, 4), torch.tensor([1, 2, 3])
    _, py = Backdoor(target=0, poison_fraction=0.01).poison(x, y, ctx=ctx())
    assert int((py == 0).sum()) == 1


def test_success_inputs_are_the_non_target_examples_triggered_with_target_labels():
    x = torch.rand(6, 1, 5, 5)
    y = torch.tensor([0, 1, 2, 0, 4, 5])
    xs, ys = Backdoor(target=0, size=1).success_inputs(x, y, num_classes=10)
    assert ys.tolist() == [0, 0, 0, 0]  # the 4 examples whose label is not 0
    assert torch.equal(xs[:, :, :4, :], x[[1, 2, 4, 5], :, :4, :])
    assert torch.all(xs[:, 0, 4, 4] == x[[1, 2, 4, 5]].max())


def test_boost_scales_the_malicious_rows():
    rows = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    out = Backdoor(boost=10.0).adjust_update(rows, ctx=ctx())
    assert out.tolist() == [[10.0, -20.0], [5.0, 0.0]]
    assert rows.tolist() == [[1.0, -2.0], [0.5, 0.0]]


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"target": -1}, "target"),
        ({"size": 0}, "size"),
        ({"poison_fraction": 0.0}, "poison_fraction"),
        ({"poison_fraction": 1.5}, "poison_fraction"),
        ({"boost": 0.0}, "boost"),
        ({"boost": float("inf")}, "boost"),
    ],
)
def test_invalid_parameters_are_refused(params, match):
    with pytest.raises(ValueError, match=match):
        Backdoor(**params)


def test_target_outside_the_classes_is_refused_when_poisoning():
    with pytest.raises(ValueError, match="num_classes = 10"):
        Backdoor(target=10).poison(torch.rand(2, 1, 4, 4), torch.tensor([1, 2]), ctx=ctx())
