from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flarena.core import registry
from flarena.defenses.aggregators.clustering import Clustering, cosine_distances

from ._helpers import ctx


def polar(deg: float, length: float) -> list[float]:
    rad = math.radians(deg)
    return [length * math.cos(rad), length * math.sin(rad)]


# Four rows at angles 0, 40, 90, 150 degrees (lengths 1..4: cosine ignores them).
# Cosine distances 1 - cos(angle between):
#        0      40     90     150
#   0    -   .2340  1.0    1.8660
#   40        -     .3572  1.3420
#   90               -     .5
# average: merge {0, 40} at .234; then d({0,40}, 90) = (1 + .357)/2 = .679,
#   d(90, 150) = .5, d({0,40}, 150) = (1.866 + 1.342)/2 = 1.604 -> merge {90, 150} at .5;
#   two clusters of 2: the tie goes to the cluster holding row 0 -> rows 0, 1
# complete / weighted: d({0,40}, 90) = max(1, .357) = 1 (weighted: .679) > .5 -> same as average
# single: d({0,40}, 90) = min(1, .357) = .357 < .5 -> merge {0, 40, 90}; 150 alone -> rows 0, 1, 2
ANGLES = [0.0, 40.0, 90.0, 150.0]
FAN = torch.tensor([polar(a, i + 1.0) for i, a in enumerate(ANGLES)], dtype=torch.float64)


def test_cosine_distances_by_hand():
    dist = cosine_distances(FAN)
    want = np.array([[1 - math.cos(math.radians(a - b)) for b in ANGLES] for a in ANGLES])
    np.testing.assert_allclose(dist, want, atol=1e-12)
    assert np.all(np.diag(dist) == 0.0)


@pytest.mark.parametrize(
    ("linkage", "kept"),
    [
        ("average", [True, True, False, False]),
        ("complete", [True, True, False, False]),
        ("weighted", [True, True, False, False]),
        ("single", [True, True, True, False]),
    ],
)
def test_fan_by_hand(linkage, kept):
    c = ctx(4)
    out = Clustering(linkage=linkage)(FAN, ctx=c)
    assert c.info["kept"].tolist() == kept
    assert torch.allclose(out, FAN[torch.tensor(kept)].mean(0), atol=1e-12)


def test_size_tie_goes_to_the_cluster_of_the_lowest_row():
    # the same rows, 150 degrees first: clusters {150, 90} (rows 0, 1) and {40, 0} (rows 2, 3)
    x = FAN.flip(0)
    c = ctx(4)
    out = Clustering()(x, ctx=c)
    assert c.info["kept"].tolist() == [True, True, False, False]
    assert torch.allclose(out, (x[0] + x[1]) / 2, atol=1e-12)


# Two obvious groups of directions: four rows near e1, two near e2 (interleaved).
GROUPS = torch.tensor(
    [[1.0, 0.0], [0.0, 1.0], [2.0, 0.1], [3.0, -0.1], [0.1, 5.0], [1.0, 0.05]],
    dtype=torch.float64,
)
# within the e1 group cosines > 0.99 (distances < 0.01); across, cosines < 0.11 (distances > 0.89)
GROUPS_KEPT = [True, False, True, True, False, True]
GROUPS_MEAN = torch.tensor([(1 + 2 + 3 + 1) / 4, (0 + 0.1 - 0.1 + 0.05) / 4], dtype=torch.float64)


@pytest.mark.parametrize("linkage", ["average", "complete", "single", "weighted"])
def test_two_groups_keep_the_larger(linkage):
    c = ctx(6)
    out = Clustering(linkage=linkage)(GROUPS, ctx=c)
    assert c.info["kept"].tolist() == GROUPS_KEPT
    assert torch.allclose(out, GROUPS_MEAN, atol=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nonfinite_rows_never_kept(bad):
    x = torch.cat([GROUPS, torch.tensor([[bad, 1.0], [1.0, bad], [bad, bad]], dtype=torch.float64)])
    c = ctx(9)
    out = Clustering()(x, ctx=c)
    assert torch.allclose(out, GROUPS_MEAN, atol=1e-12)
    assert c.info["kept"].tolist() == GROUPS_KEPT + [False, False, False]
    # one finite row among non-finite ones: that row
    y = torch.tensor([[bad, 0.0], [2.0, 3.0], [bad, bad]])
    assert torch.equal(Clustering()(y), torch.tensor([2.0, 3.0]))


def test_all_nonfinite_keeps_all():
    x = torch.full((3, 2), float("nan"))
    c = ctx(3)
    assert torch.isnan(Clustering()(x, ctx=c)).all()
    assert c.info["kept"].all()


def test_zero_rows():
    e1 = torch.tensor([[1.0, 0.0], [2.0, 0.1], [3.0, -0.1]], dtype=torch.float64)
    zeros = torch.zeros(2, 2, dtype=torch.float64)
    # zero rows: distance 1 from every non-zero row, 0 from each other -> a cluster of their own
    dist = cosine_distances(torch.cat([e1, zeros]))
    assert np.all(dist[3:, :3] == 1.0) and dist[3, 4] == 0.0
    c = ctx(5)
    out = Clustering()(torch.cat([zeros[:1], e1, zeros[1:]]), ctx=c)
    assert c.info["kept"].tolist() == [False, True, True, True, False]
    assert torch.allclose(out, e1.mean(0), atol=1e-12)
    # a majority of zero rows wins (an honest majority is assumed): the output is zero
    assert torch.equal(Clustering()(torch.cat([e1[:2], zeros, zeros[:1]])), torch.zeros(2))


def test_tied_top_merges_keep_every_row():
    # three orthogonal rows: every distance is exactly 1, no cut gives two clusters
    x = torch.eye(3, dtype=torch.float64) * torch.tensor([[1.0], [2.0], [3.0]])
    c = ctx(3)
    out = Clustering()(x, ctx=c)
    assert c.info["kept"].all()
    assert torch.allclose(out, x.mean(0))
    # identical rows: one cluster
    row = torch.tensor([0.3, -1.2, 4.0])
    c = ctx(5)
    assert torch.allclose(Clustering()(row.expand(5, 3).clone(), ctx=c), row)
    assert c.info["kept"].all()


def test_one_and_two_rows():
    assert torch.equal(Clustering()(torch.tensor([[1.0, 2.0]])), torch.tensor([1.0, 2.0]))
    # two directions: two clusters of one, the tie goes to row 0
    c = ctx(2)
    assert torch.equal(
        Clustering()(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), ctx=c), torch.tensor([1.0, 0.0])
    )
    assert c.info["kept"].tolist() == [True, False]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_kept_and_input_untouched(dtype):
    x = GROUPS.to(dtype)
    before = x.clone()
    c = ctx(6)
    out = Clustering()(x, ctx=c)
    assert out.dtype == dtype
    assert torch.equal(x, before)
    assert torch.allclose(out.double(), GROUPS_MEAN, atol=1e-6)


def test_weights_ignored():
    c = ctx(6)
    c.weights = torch.tensor([1.0, 100.0, 1.0, 1.0, 100.0, 1.0])
    assert torch.allclose(Clustering()(GROUPS, ctx=c), GROUPS_MEAN, atol=1e-12)


def direction_rows(draw: st.DrawFn, count: int, d: int, sign: float, scale: float) -> torch.Tensor:
    """Rows within 10 degrees of sign * e1: (1, t) with |t_j| <= 0.05, times a positive length."""
    small = st.floats(-0.05, 0.05, allow_nan=False)
    lengths = st.floats(0.1, 10.0, allow_nan=False)
    rows = []
    for _ in range(count):
        tail = [draw(small) for _ in range(d - 1)]
        length = draw(lengths)  # one length per row, so the direction stays within 10 degrees
        rows.append([sign * length * scale * v for v in [1.0, *tail]])
    return torch.tensor(rows, dtype=torch.float64).reshape(count, d)


@settings(max_examples=40, deadline=None)
@given(
    st.data(),
    st.integers(1, 3),
    st.integers(1, 4),
    st.sampled_from(["average", "complete", "single", "weighted"]),
)
def test_opposite_minority_is_dropped(data, f, d, linkage):
    # honest rows within 10 degrees of e1, f < n/2 attackers within 10 degrees of -e1 at 1e9:
    # every within-group distance (< 1 - cos 20) is below every cross distance (> 1 - cos 160),
    # so any linkage splits honest from attackers, and the honest group is the larger
    n = 2 * f + 1 + data.draw(st.integers(0, 3))
    honest = direction_rows(data.draw, n - f, d, 1.0, 1.0)
    bad = direction_rows(data.draw, f, d, -1.0, 1e9)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 99))))
    x = torch.cat([honest, bad])[perm]
    c = ctx(n)
    out = Clustering(linkage=linkage)(x, ctx=c)
    assert c.info["kept"].tolist() == (perm < n - f).tolist()
    assert torch.allclose(out, honest.mean(0), atol=1e-12)


@pytest.mark.parametrize("linkage", ["average", "complete", "single"])
@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_sklearn_on_random_rows(linkage, seed):
    # an independent reference: sklearn's agglomerative clustering on scipy's cosine distances
    sk = pytest.importorskip("sklearn.cluster")
    from scipy.spatial.distance import cdist

    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ref = sk.AgglomerativeClustering(n_clusters=2, metric="precomputed", linkage=linkage)
    labels = ref.fit_predict(cdist(x.numpy(), x.numpy(), metric="cosine"))
    big = np.argmax(np.bincount(labels))  # n = 9 is odd: no size tie
    c = ctx(9)
    out = Clustering(linkage=linkage)(x, ctx=c)
    assert c.info["kept"].tolist() == (labels == big).tolist()
    assert torch.allclose(out, x[torch.from_numpy(labels == big)].mean(0))


def test_parameters_and_registration():
    assert Clustering().get_params() == {"linkage": "average"}
    assert Clustering(linkage="complete").get_params() == {"linkage": "complete"}
    for bad in ("ward", "centroid", "median", "Average", 3):
        with pytest.raises(ValueError, match="invalid linkage"):
            Clustering(linkage=bad)  # type: ignore[arg-type]
    assert registry.get("aggregator", "clustering") is Clustering
    Clustering().check_n(1)
    with pytest.raises(ValueError, match="n >= 1"):
        Clustering().check_n(0)
