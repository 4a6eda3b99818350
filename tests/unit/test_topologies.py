import math

import numpy as np
import pytest

from flarena.algorithms.topologies import base
from flarena.algorithms.topologies.complete import Complete
from flarena.algorithms.topologies.dumbbell import Dumbbell
from flarena.algorithms.topologies.erdos_renyi import ErdosRenyi
from flarena.algorithms.topologies.exponential import Exponential
from flarena.algorithms.topologies.k_regular import KRegular
from flarena.algorithms.topologies.random_matching import RandomMatching
from flarena.algorithms.topologies.ring import Ring
from flarena.algorithms.topologies.star import Star
from flarena.algorithms.topologies.torus import Torus
from flarena.core import registry


def rng(seed=0):
    return np.random.default_rng(seed)


def edges(adj):
    coo = adj.tocoo()
    return {(int(i), int(j)) for i, j in zip(coo.row, coo.col, strict=True) if i < j}


def neighbours(adj, i):
    return set(adj.indices[adj.indptr[i] : adj.indptr[i + 1]].tolist())


def check_valid(adj, n, connected=True):
    assert adj.shape == (n, n)
    assert adj.dtype == np.int8
    assert set(np.unique(adj.data).tolist()) <= {1}
    assert (adj != adj.T).nnz == 0
    assert adj.diagonal().sum() == 0
    adj.sum_duplicates()
    assert adj.has_canonical_format
    if connected:
        assert base.is_connected(adj)


CASES = [
    (Complete(), 7),
    (Ring(), 2),
    (Ring(), 9),
    (Torus(), 16),
    (Torus(rows=2, cols=5), 10),
    (Star(), 6),
    (ErdosRenyi(p=0.5), 20),
    (KRegular(k=3), 10),
    (KRegular(k=6), 9),
    (KRegular(k=1), 2),
    (Exponential(), 13),
    (Dumbbell(), 7),
    (Dumbbell(), 2),
]


@pytest.mark.parametrize(("topo", "n"), CASES, ids=lambda x: repr(x))
def test_valid_and_connected(topo, n):
    check_valid(topo(n, rng=rng()), n)


def test_ring_hand_worked():
    assert edges(Ring()(5, rng=rng())) == {(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)}
    assert edges(Ring()(2, rng=rng())) == {(0, 1)}


def test_torus_3x3():
    adj = Torus()(9, rng=rng())
    assert base.degrees(adj).tolist() == [4] * 9
    assert neighbours(adj, 4) == {1, 3, 5, 7}
    assert neighbours(adj, 0) == {1, 2, 3, 6}
    rect = Torus(rows=3)(12, rng=rng())
    assert base.degrees(rect).tolist() == [4] * 12
    assert base.degrees(Torus(rows=2, cols=5)(10, rng=rng())).tolist() == [3] * 10


def test_star_and_complete_degrees():
    assert base.degrees(Star()(5, rng=rng())).tolist() == [4, 1, 1, 1, 1]
    assert base.degrees(Complete()(5, rng=rng())).tolist() == [4] * 5


def test_exponential_n8():
    adj = Exponential()(8, rng=rng())
    assert neighbours(adj, 0) == {1, 2, 4, 7, 6}
    assert neighbours(adj, 3) == {4, 5, 7, 2, 1}


@pytest.mark.parametrize("n", [2, 7, 10])
def test_dumbbell_edges(n):
    a, b = math.ceil(n / 2), n // 2
    adj = Dumbbell()(n, rng=rng())
    assert len(edges(adj)) == math.comb(a, 2) + math.comb(b, 2) + 1
    assert (0, a) in edges(adj)


@pytest.mark.parametrize(("n", "k"), [(10, 3), (12, 2), (30, 4), (9, 6), (8, 7), (200, 5)])
def test_k_regular(n, k):
    for seed in range(3):
        adj = KRegular(k=k)(n, rng=rng(seed))
        check_valid(adj, n)
        assert base.degrees(adj).tolist() == [k] * n


def test_k_regular_seeded():
    a = KRegular(k=3)(20, rng=rng(5))
    b = KRegular(k=3)(20, rng=rng(5))
    assert (a != b).nnz == 0


def test_erdos_renyi_seed_and_mean():
    topo = ErdosRenyi(p=0.3)
    a, b = topo(40, rng=rng(1)), topo(40, rng=rng(1))
    assert (a != b).nnz == 0
    assert (a != topo(40, rng=rng(2))).nnz > 0
    pairs = math.comb(40, 2)
    counts = [len(edges(topo(40, rng=rng(s)))) for s in range(50)]
    mean, sd = np.mean(counts), math.sqrt(pairs * 0.3 * 0.7 / len(counts))
    assert abs(mean - 0.3 * pairs) < 5 * sd


def test_erdos_renyi_refuses_small_p():
    with pytest.raises(ValueError, match=r"was not connected after 100 draws; raise p") as e:
        ErdosRenyi(p=0.01)(50, rng=rng())
    assert "erdos_renyi(p=0.01) with n=50" in str(e.value)
    assert "ln(n)/n = 0.07824" in str(e.value)


def test_erdos_renyi_time_varying():
    assert ErdosRenyi(p=0.5).time_varying is False
    tv = ErdosRenyi(p=0.5, redraw_each_round=True)
    assert tv.time_varying is True
    assert (tv(20, rng=rng(0), round=0) != tv(20, rng=rng(1), round=1)).nnz > 0


@pytest.mark.parametrize("n", [2, 9, 10])
def test_random_matching(n):
    topo = RandomMatching()
    assert topo.time_varying is True
    adj = topo(n, rng=rng(0))
    check_valid(adj, n, connected=(n == 2))
    deg = base.degrees(adj)
    assert deg.max() <= 1
    assert deg.sum() == 2 * (n // 2)
    if n > 2:
        assert (adj != topo(n, rng=rng(1), round=1)).nnz > 0


def test_static_flags():
    for cls in (Complete, Ring, Torus, Star, Exponential, Dumbbell):
        assert cls.time_varying is False
    assert KRegular(k=2).time_varying is False


@pytest.mark.parametrize(
    ("topo", "n", "word"),
    [
        (Ring(), 1, "n"),
        (Complete(), 0, "n"),
        (Torus(), 10, "n"),
        (Torus(rows=3), 10, "n"),
        (Torus(rows=3, cols=3), 12, "n"),
        (KRegular(k=5), 5, "k"),
        (KRegular(k=3), 7, "k"),
        (KRegular(k=1), 4, "k"),
        (Dumbbell(), 1, "n"),
        (RandomMatching(), 1, "n"),
        (Ring(), 2.5, "n"),
        (Star(), True, "n"),
    ],
)
def test_check_n_refusals(topo, n, word):
    with pytest.raises(ValueError, match=rf"invalid {word} = "):
        topo.check_n(n)
    with pytest.raises(ValueError, match=rf"invalid {word} = "):
        topo(n, rng=rng())


@pytest.mark.parametrize(
    ("factory", "word"),
    [
        (lambda: ErdosRenyi(p=0), "p"),
        (lambda: ErdosRenyi(p=1.5), "p"),
        (lambda: ErdosRenyi(p=0.5, max_tries=0), "max_tries"),
        (lambda: ErdosRenyi(p=0.5, redraw_each_round=1), "redraw_each_round"),
        (lambda: KRegular(k=0), "k"),
        (lambda: KRegular(k=2.0), "k"),
        (lambda: Torus(rows=0), "rows"),
        (lambda: Torus(cols=True), "cols"),
    ],
)
def test_param_refusals(factory, word):
    with pytest.raises(ValueError, match=rf"invalid {word} = "):
        factory()


def test_get_params():
    assert ErdosRenyi(p=0.2).get_params() == {
        "p": 0.2,
        "max_tries": 100,
        "redraw_each_round": False,
    }
    assert KRegular(k=4).get_params() == {"k": 4, "max_tries": 100}
    assert Torus(rows=2).get_params() == {"rows": 2, "cols": None}
    assert Ring().get_params() == {}
    assert repr(KRegular(k=4)) == "k_regular(k=4, max_tries=100)"


def test_from_edges_merges():
    adj = base.from_edges(4, [0, 1, 2, 2, 3], [1, 0, 2, 3, 2])
    assert edges(adj) == {(0, 1), (2, 3)}
    check_valid(adj, 4, connected=False)
    assert not base.is_connected(adj)


def test_large_n():
    n = 10_000
    ring = Ring()(n, rng=rng())
    assert ring.shape == (n, n)
    assert (base.degrees(ring) == 2).all()
    expo = Exponential()(n, rng=rng())
    assert (base.degrees(expo) == 28).all()  # offsets 1..8192, none self-opposite mod 10000
    er = ErdosRenyi(p=0.001)(n, rng=rng())
    deg = base.degrees(er)
    assert er.shape == (n, n)
    assert abs(deg.mean() - 0.001 * (n - 1)) < 0.5
    assert base.is_connected(er)


def test_registry():
    for name in [
        "complete",
        "ring",
        "torus",
        "star",
        "erdos_renyi",
        "k_regular",
        "exponential",
        "dumbbell",
        "random_matching",
    ]:
        assert name in registry.registry("topology")
    topo = registry.create("topology", "ring")
    assert isinstance(topo, Ring)
    assert isinstance(registry.create("topology", "erdos_renyi", p=0.5), ErdosRenyi)
