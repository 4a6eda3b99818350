"""Gossip mixing matrices: expectations computed by hand."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from flarena.algorithms.mixing import (
    check_mixing,
    consensus_distance,
    gossip,
    is_connected,
    mixing_matrix,
    require_connected,
    spectral_gap,
    to_torch,
)


def _adj(n: int, edges: list[tuple[int, int]]) -> sp.csr_array:
    r = [i for i, j in edges] + [j for i, j in edges]
    c = [j for i, j in edges] + [i for i, j in edges]
    return sp.csr_array((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))


def _ring(n: int) -> sp.csr_array:
    return _adj(n, [(i, (i + 1) % n) for i in range(n)])


def _complete(n: int) -> sp.csr_array:
    return _adj(n, [(i, j) for i in range(n) for j in range(i + 1, n)])


def _random_connected(n: int, p: float, seed: int) -> sp.csr_array:
    """Random Hamiltonian path (guarantees connectivity) plus ~p*n(n-1)/2 random edges."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    m = rng.binomial(n * (n - 1) // 2, p)
    r = np.concatenate([perm[:-1], rng.integers(0, n, m)])
    c = np.concatenate([perm[1:], rng.integers(0, n, m)])
    keep = r != c
    r, c = r[keep], c[keep]
    a = sp.csr_array((np.ones(2 * r.size), (np.r_[r, c], np.r_[c, r])), shape=(n, n))
    a.data[:] = 1
    return a.astype(np.int8)


PATH4 = _adj(4, [(0, 1), (1, 2), (2, 3)])


def _ring_gap(n: int) -> float:
    k = np.arange(1, n)
    return float(1 - np.max(np.abs((1 + 2 * np.cos(2 * np.pi * k / n)) / 3)))


def test_metropolis_path4():
    W = mixing_matrix(PATH4, "metropolis")
    assert isinstance(W, sp.csr_array) and W.dtype == np.float64
    t = 1 / 3
    expected = np.array(
        [[2 / 3, t, 0, 0], [t, t, t, 0], [0, t, t, t], [0, 0, t, 2 / 3]],
    )
    np.testing.assert_allclose(W.toarray(), expected, atol=1e-15)
    check_mixing(W, need_doubly_stochastic=True)


def test_uniform_path4_not_doubly_stochastic():
    W = mixing_matrix(PATH4, "uniform").toarray()
    np.testing.assert_allclose(W[0], [1 / 2, 1 / 2, 0, 0])
    np.testing.assert_allclose(W[1], [1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(W[3], [0, 0, 1 / 2, 1 / 2])
    check_mixing(W, need_doubly_stochastic=False)
    with pytest.raises(ValueError, match="not doubly stochastic.*column"):
        check_mixing(W, need_doubly_stochastic=True)


def test_uniform_regular_equals_metropolis():
    a = _ring(7)
    np.testing.assert_allclose(
        mixing_matrix(a, "uniform").toarray(), mixing_matrix(a, "metropolis").toarray()
    )


def test_lazy():
    W = mixing_matrix(PATH4, "metropolis", lazy=True).toarray()
    t = 1 / 3
    expected = 0.5 * (
        np.array([[2 / 3, t, 0, 0], [t, t, t, 0], [0, t, t, t], [0, 0, t, 2 / 3]]) + np.eye(4)
    )
    np.testing.assert_allclose(W, expected, atol=1e-15)
    assert W[0, 0] == pytest.approx(5 / 6) and W[1, 1] == pytest.approx(2 / 3)
    Wu = mixing_matrix(PATH4, "uniform", lazy=True).toarray()
    np.testing.assert_allclose(Wu[0], [3 / 4, 1 / 4, 0, 0])


def test_check_mixing_rejections():
    with pytest.raises(ValueError, match="square"):
        check_mixing(np.ones((2, 3)) / 3, need_doubly_stochastic=False)
    with pytest.raises(ValueError, match="negative"):
        check_mixing(np.array([[1.5, -0.5], [-0.5, 1.5]]), need_doubly_stochastic=True)
    with pytest.raises(ValueError, match="row-stochastic: row 1"):
        check_mixing(np.array([[1.0, 0.0], [0.2, 0.7]]), need_doubly_stochastic=False)
    with pytest.raises(ValueError, match="expected"):
        check_mixing(np.eye(2), need_doubly_stochastic=True, n=3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown mixing kind"):
        mixing_matrix(PATH4, "max_degree")
    with pytest.raises(ValueError, match="symmetric"):
        mixing_matrix(sp.csr_array(np.triu(np.ones((3, 3), dtype=np.int8), 1)), "metropolis")
    with pytest.raises(ValueError, match="diagonal"):
        mixing_matrix(sp.csr_array(np.eye(3, dtype=np.int8)), "metropolis")


def test_connectivity():
    assert is_connected(PATH4)
    two = _adj(6, [(0, 1), (1, 2), (3, 4)])  # components {0,1,2}, {3,4}, {5}
    assert not is_connected(two)
    require_connected(PATH4, "path")
    with pytest.raises(ValueError, match=r"'er' is disconnected: 3 components \(sizes 3, 2, 1\)"):
        require_connected(two, "er")


@pytest.mark.parametrize("n", [3, 5, 10])
def test_gap_complete_graph(n):
    W = mixing_matrix(_complete(n), "metropolis")
    np.testing.assert_allclose(W.toarray(), np.full((n, n), 1 / n), atol=1e-15)
    assert spectral_gap(W) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("n", [8, 9])
def test_gap_ring_closed_form(n):
    W = mixing_matrix(_ring(n), "metropolis")
    assert spectral_gap(W) == pytest.approx(_ring_gap(n), abs=1e-12)


def test_gap_bipartite_and_lazy():
    # lazy ring: eigenvalues (1 + (1 + 2cos(2 pi k / n)) / 3) / 2, all >= 0.
    W = mixing_matrix(_ring(8), "metropolis", lazy=True)
    lam = (1 + (1 + 2 * np.cos(2 * np.pi * np.arange(1, 8) / 8)) / 3) / 2
    assert spectral_gap(W) == pytest.approx(1 - lam.max(), abs=1e-12)
    disconnected = mixing_matrix(_adj(4, [(0, 1), (2, 3)]), "metropolis")
    assert spectral_gap(disconnected) == pytest.approx(0.0, abs=1e-12)


def test_gap_nonsymmetric_uniform_dense():
    W = mixing_matrix(PATH4, "uniform")
    ev = np.sort(np.abs(np.linalg.eigvals(W.toarray())))[::-1]
    assert spectral_gap(W) == pytest.approx(1 - ev[1], abs=1e-12)


def test_gap_sparse_path_ring_3000():
    n = 3000
    W = mixing_matrix(_ring(n), "metropolis")
    gap = spectral_gap(W)
    expected = _ring_gap(n)
    assert gap == pytest.approx(expected, abs=1e-6)
    assert gap == pytest.approx(expected, rel=1e-3)


def test_gap_sparse_random_matches_dense():
    a = _random_connected(2500, 0.002, seed=1)
    W = mixing_matrix(a, "metropolis")
    ev = np.linalg.eigvalsh(W.toarray())
    expected = 1 - max(abs(ev[-2]), abs(ev[0]))
    assert spectral_gap(W) == pytest.approx(expected, abs=1e-8)


def test_gap_sparse_nonsymmetric_refused():
    a = _random_connected(2100, 0.002, seed=2)
    with pytest.raises(ValueError, match="non-symmetric"):
        spectral_gap(mixing_matrix(a, "uniform"))


def test_build_fast_n10000():
    ring = _ring(10_000)
    er = _random_connected(10_000, 5e-4, seed=3)
    t0 = time.perf_counter()
    for a in (ring, er):
        for kind in ("metropolis", "uniform"):
            W = mixing_matrix(a, kind)
            check_mixing(W, need_doubly_stochastic=kind == "metropolis")
    assert time.perf_counter() - t0 < 1.0


def test_consensus_distance_oracle():
    X = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]])
    # mean (1, 1); squared distances 2, 2, 4 -> 8/3
    assert consensus_distance(X) == pytest.approx(8 / 3)
    assert consensus_distance(torch.tensor(X, dtype=torch.float32)) == pytest.approx(8 / 3)
    # rows 0 and 1: mean (1, 0); distances 1, 1 -> 1
    assert consensus_distance(X, mask=[True, True, False]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least one"):
        consensus_distance(X, mask=[False, False, False])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gossip_sparse_equals_dense(dtype):
    a = _random_connected(200, 0.02, seed=4)
    W = mixing_matrix(a, "metropolis")
    assert to_torch(W, dtype=dtype, device="cpu").layout == torch.sparse_csr
    X = torch.randn(200, 7, dtype=dtype, generator=torch.Generator().manual_seed(0))
    Y = gossip(W, X)
    assert Y.dtype == dtype and Y.device == X.device and Y.shape == X.shape
    ref = torch.as_tensor(W.toarray(), dtype=dtype) @ X
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(Y, ref, atol=tol, rtol=tol)
    dense_W = mixing_matrix(_complete(6), "metropolis")  # density 1 -> dense path
    assert to_torch(dense_W, dtype=dtype, device="cpu").layout == torch.strided
    X6 = torch.randn(6, 3, dtype=dtype)
    torch.testing.assert_close(gossip(dense_W, X6), X6.mean(0, keepdim=True).expand(6, 3))
    # preserves the average (doubly stochastic)
    torch.testing.assert_close(Y.mean(0), X.mean(0), atol=tol, rtol=tol)


@pytest.mark.parametrize("graph", ["ring", "random"])
def test_gossip_contracts_at_spectral_rate(graph):
    a = _ring(30) if graph == "ring" else _random_connected(40, 0.08, seed=5)
    assert is_connected(a)
    W = mixing_matrix(a, "metropolis")
    check_mixing(W, need_doubly_stochastic=True)
    rho = 1 - spectral_gap(W)
    assert 0 < rho < 1
    Wt = to_torch(W, dtype=torch.float64, device="cpu")
    X = torch.randn(a.shape[0], 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    c0 = consensus_distance(X)
    for t in range(1, 21):
        X = gossip(Wt, X)
        assert consensus_distance(X) <= rho ** (2 * t) * c0 * (1 + 1e-9)
