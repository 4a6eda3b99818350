r"""Gossip mixing matrices for decentralized learning.

A topology is given as an adjacency matrix ``adj`` (``scipy.sparse.csr_array`` ``[n, n]``,
symmetric, 0/1, zero diagonal).  :func:`mixing_matrix` turns it into a gossip matrix
:math:`W` (float64 CSR) and one gossip step is :math:`X \leftarrow W X` (:func:`gossip`), rows of
:math:`X` being the nodes' parameter vectors.

Kinds
-----
``"metropolis"``
    Metropolis--Hastings weights (Xiao & Boyd, 2004, "Fast linear iterations for distributed
    averaging"; Boyd et al., 2006, "Randomized gossip algorithms"):
    :math:`W_{ij} = 1 / (1 + \max(d_i, d_j))` for every edge :math:`\{i, j\}`,
    :math:`W_{ii} = 1 - \sum_{j \ne i} W_{ij}`.  Symmetric and doubly stochastic on any graph, so
    gossip preserves the average and converges to it on connected graphs.
``"uniform"``
    Uniform neighbour averaging: :math:`W_{ij} = 1 / (d_i + 1)` for
    :math:`j \in N(i) \cup \{i\}`.  Row-stochastic only; it is doubly stochastic (and symmetric)
    **only on regular graphs**.  On irregular graphs gossip converges to a degree-weighted
    average, not to the mean.
``lazy=True``
    Replaces :math:`W` by :math:`(W + I) / 2`: all eigenvalues move into :math:`[0, 1]`, which
    removes the oscillation of bipartite graphs (eigenvalue :math:`-1`) at the price of at most
    halving the spectral gap.

Spectral gap
------------
:func:`spectral_gap` returns :math:`\delta = 1 - |\lambda_2(W)|` where :math:`|\lambda_2|` is the
second-largest eigenvalue *modulus* of :math:`W` (the largest being 1); for symmetric :math:`W`
this is :math:`1 - \max(|\lambda_2|, |\lambda_n|) = 1 - \|W - \tfrac1n 11^\top\|_2`, the
definition of Koloskova, Stich & Jaggi (2019).  For symmetric doubly stochastic :math:`W` one
gossip step contracts :math:`\|WX - \bar X\|_F \le (1 - \delta) \|X - \bar X\|_F`, so the
constant :math:`p` of Koloskova et al. (2020), :math:`\|XW - \bar X\|_F^2 \le (1-p)\|X - \bar
X\|_F^2`, is :math:`p = 1 - (1 - \delta)^2 = 1 - \lambda_{\max}(W^\top W - \tfrac1n 11^\top)`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from numpy.typing import NDArray
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh

__all__ = [
    "MIXINGS",
    "DENSE_EIG_MAX_N",
    "SPARSE_DENSITY",
    "check_mixing",
    "consensus_distance",
    "gossip",
    "is_connected",
    "mixing_matrix",
    "require_connected",
    "spectral_gap",
    "to_torch",
]

#: Accepted values of ``kind`` in :func:`mixing_matrix`.
MIXINGS: tuple[str, ...] = ("metropolis", "uniform")

#: Largest ``n`` for which :func:`spectral_gap` uses a dense eigen-solver.
DENSE_EIG_MAX_N = 2000

#: :func:`gossip` uses a sparse product below this density (``nnz / n^2``), dense above.
SPARSE_DENSITY = 0.1


def _as_adjacency(adj: Any) -> Any:
    """Validate and return ``adj`` as a ``csr_array`` (0/1 int8, symmetric, zero diagonal)."""
    if not sp.issparse(adj):
        adj = np.asarray(adj)
    a = sp.csr_array(adj)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"adjacency must be a non-empty square [n, n] matrix, got {a.shape}")
    a = a.copy()
    a.eliminate_zeros()
    if a.nnz and not np.all(a.data == 1):
        raise ValueError("adjacency entries must be 0/1 (unweighted graph)")
    if np.any(a.diagonal() != 0):
        raise ValueError("adjacency must have a zero diagonal (no self loops)")
    if (a != a.T).nnz:
        raise ValueError("adjacency must be symmetric (undirected graph)")
    return a.astype(np.int8)


def _degrees(adj: Any) -> NDArray[np.float64]:
    return np.asarray(adj.sum(axis=1), dtype=np.float64).ravel()


def mixing_matrix(adj: Any, kind: str = "metropolis", *, lazy: bool = False) -> Any:
    r"""Build the gossip matrix of a topology.

    Parameters
    ----------
    adj : scipy.sparse.csr_array
        ``[n, n]`` symmetric 0/1 adjacency with zero diagonal.
    kind : {"metropolis", "uniform"}
        Weighting rule (see the module docstring).  ``"uniform"`` is doubly stochastic only
        on regular graphs.
    lazy : bool
        Return :math:`(W + I) / 2` instead of :math:`W`.

    Returns
    -------
    scipy.sparse.csr_array
        ``[n, n]`` float64 row-stochastic matrix, nonzero exactly on edges and the diagonal.

    Raises
    ------
    ValueError
        Unknown ``kind`` or malformed adjacency.
    """
    if kind not in MIXINGS:
        raise ValueError(f"unknown mixing kind {kind!r}; expected one of {MIXINGS}")
    a = _as_adjacency(adj)
    n = a.shape[0]
    deg = _degrees(a)
    coo = a.tocoo()
    r, c = coo.row, coo.col
    if kind == "metropolis":
        w = 1.0 / (1.0 + np.maximum(deg[r], deg[c]))
        off = sp.csr_array((w, (r, c)), shape=(n, n), dtype=np.float64)
        diag = 1.0 - np.asarray(off.sum(axis=1)).ravel()
    else:  # uniform
        w = 1.0 / (deg[r] + 1.0)
        off = sp.csr_array((w, (r, c)), shape=(n, n), dtype=np.float64)
        diag = 1.0 / (deg + 1.0)
    W = off + sp.diags_array(diag, format="csr", dtype=np.float64)
    if lazy:
        W = 0.5 * (W + sp.eye_array(n, format="csr", dtype=np.float64))
    W = sp.csr_array(W, dtype=np.float64)
    W.sum_duplicates()
    W.sort_indices()
    return W


def check_mixing(
    W: Any, *, need_doubly_stochastic: bool, n: int | None = None, tol: float = 1e-10
) -> None:
    """Raise ``ValueError`` unless ``W`` is a valid gossip matrix.

    Parameters
    ----------
    W : scipy.sparse array or numpy.ndarray
        Candidate ``[n, n]`` mixing matrix.
    need_doubly_stochastic : bool
        Also require column sums of 1 (needed for gossip to preserve the average).
    n : int or None
        Expected number of nodes, if known.
    tol : float
        Absolute tolerance on sums and on negativity.

    Raises
    ------
    ValueError
        Wrong shape, negative entries, rows (or columns) not summing to 1.
    """
    M: Any = sp.csr_array(W) if sp.issparse(W) else np.asarray(W, dtype=np.float64)
    shape = M.shape
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"mixing matrix must be square [n, n], got shape {shape}")
    if n is not None and shape[0] != n:
        raise ValueError(f"mixing matrix has shape {shape}, expected [{n}, {n}]")
    vals: NDArray[np.float64] = np.asarray(M.data if sp.issparse(M) else M, dtype=np.float64)
    if vals.size and not np.all(np.isfinite(vals)):
        raise ValueError("mixing matrix has non-finite entries")
    if vals.size and vals.min() < -tol:
        raise ValueError(f"mixing matrix has negative entries (min {vals.min():.3g})")
    rows = np.asarray(M.sum(axis=1)).ravel()
    dev = np.abs(rows - 1.0)
    if dev.size and dev.max() > tol:
        i = int(dev.argmax())
        raise ValueError(
            f"mixing matrix is not row-stochastic: row {i} sums to {rows[i]:.12g} "
            f"(max |sum - 1| = {dev.max():.3g} > tol {tol:g})"
        )
    if need_doubly_stochastic:
        cols = np.asarray(M.sum(axis=0)).ravel()
        dev = np.abs(cols - 1.0)
        if dev.size and dev.max() > tol:
            j = int(dev.argmax())
            raise ValueError(
                f"mixing matrix is not doubly stochastic: column {j} sums to {cols[j]:.12g} "
                f"(max |sum - 1| = {dev.max():.3g} > tol {tol:g}); gossip would not preserve "
                "the average (uniform averaging is doubly stochastic only on regular graphs; "
                "use kind='metropolis')"
            )


def is_connected(adj: Any) -> bool:
    """Whether the undirected graph ``adj`` has a single connected component."""
    k, _ = connected_components(sp.csr_array(adj), directed=False)
    return bool(k == 1)


def require_connected(adj: Any, name: str) -> None:
    """Raise ``ValueError`` if topology ``name`` is disconnected.

    The message names the number of components and their sizes (largest first).
    """
    k, labels = connected_components(sp.csr_array(adj), directed=False)
    if k == 1:
        return
    sizes = sorted(np.bincount(labels).tolist(), reverse=True)
    shown = ", ".join(str(s) for s in sizes[:10]) + (", ..." if len(sizes) > 10 else "")
    raise ValueError(
        f"topology {name!r} is disconnected: {k} components (sizes {shown}); "
        "gossip cannot reach consensus across components (increase the edge probability/degree "
        "or choose another seed)"
    )


def _is_symmetric(W: Any, tol: float = 1e-12) -> bool:
    d = W - W.T
    return bool(d.nnz == 0 or np.abs(d.data).max() <= tol)


def spectral_gap(W: Any) -> float:
    r"""Spectral gap :math:`1 - |\lambda_2(W)|` of a stochastic matrix.

    :math:`|\lambda_2|` is the second-largest eigenvalue modulus (the largest is 1); for
    symmetric ``W`` the gap is :math:`1 - \max(|\lambda_2|, |\lambda_n|)`.  A disconnected or
    bipartite (non-lazy) topology has gap 0.

    Symmetric ``W``: dense ``numpy.linalg.eigvalsh`` for ``n <= DENSE_EIG_MAX_N``; above, ARPACK
    (``scipy.sparse.linalg.eigsh``) in shift-invert mode around 1 (top two eigenvalues) and
    around -1 (smallest).  Non-symmetric ``W`` (uniform averaging on an irregular graph):
    dense ``numpy.linalg.eigvals`` for ``n <= DENSE_EIG_MAX_N`` only.

    Parameters
    ----------
    W : scipy.sparse array or numpy.ndarray
        ``[n, n]`` row-stochastic mixing matrix.

    Returns
    -------
    float
        The gap, in ``[0, 1]``.

    Raises
    ------
    ValueError
        Non-symmetric ``W`` with ``n > DENSE_EIG_MAX_N``.
    """
    M = sp.csr_array(W, dtype=np.float64)
    n = M.shape[0]
    if n == 1:
        return 1.0
    sym = _is_symmetric(M)
    if n <= DENSE_EIG_MAX_N:
        D = M.toarray()
        ev = np.linalg.eigvalsh(D) if sym else np.linalg.eigvals(D)
        mod = np.sort(np.abs(ev))[::-1]
        second = float(mod[1])
    elif sym:
        # Shift-invert: eigenvalues closest to the shifts converge fast even when clustered
        # (e.g. rings, where lambda_2 = 1 - O(1/n^2)).
        top = eigsh(M.tocsc(), k=2, sigma=1.0 + 1e-8, which="LM", return_eigenvectors=False)
        bottom = eigsh(M.tocsc(), k=1, sigma=-1.0 - 1e-8, which="LM", return_eigenvectors=False)
        lam2 = float(np.sort(top)[0])
        second = max(abs(lam2), abs(float(bottom[0])))
    else:
        raise ValueError(
            f"spectral_gap of a non-symmetric mixing matrix is only supported for "
            f"n <= {DENSE_EIG_MAX_N} (got n = {n}); use kind='metropolis'"
        )
    return float(min(1.0, max(0.0, 1.0 - second)))


def consensus_distance(X: Any, mask: Any = None) -> float:
    r"""Mean squared distance of the (selected) rows to their mean.

    :math:`\frac{1}{|H|} \sum_{i \in H} \|x_i - \bar x_H\|^2` with
    :math:`\bar x_H = \frac{1}{|H|} \sum_{i \in H} x_i`, computed in float64.

    Parameters
    ----------
    X : torch.Tensor or numpy.ndarray
        ``[n, d]`` node parameters (a 1-D input is treated as ``[n, 1]``).
    mask : array-like of bool or None
        ``[n]`` selection of honest rows ``H``; all rows when ``None``.

    Returns
    -------
    float
        The consensus distance.

    Raises
    ------
    ValueError
        Wrong mask length or empty selection.
    """
    if isinstance(X, torch.Tensor):
        A = X.detach().to("cpu", torch.float64).numpy()
    else:
        A = np.asarray(X, dtype=np.float64)
    if A.ndim == 1:
        A = A[:, None]
    if A.ndim != 2:
        raise ValueError(f"X must be [n, d], got shape {A.shape}")
    if mask is not None:
        m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        m = m.astype(bool).ravel()
        if m.shape[0] != A.shape[0]:
            raise ValueError(f"mask has length {m.shape[0]}, X has {A.shape[0]} rows")
        A = A[m]
    if A.shape[0] == 0:
        raise ValueError("consensus_distance needs at least one selected row")
    centred = A - A.mean(axis=0, keepdims=True)
    return float(np.sum(centred * centred) / A.shape[0])


def to_torch(W: Any, *, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Convert a mixing matrix to torch: sparse CSR below ``SPARSE_DENSITY``, else dense."""
    M = sp.csr_array(W)
    n_rows, n_cols = M.shape
    density = M.nnz / max(1, n_rows * n_cols)
    if density < SPARSE_DENSITY:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                torch.as_tensor(M.indptr, dtype=torch.int64),
                torch.as_tensor(M.indices, dtype=torch.int64),
                torch.as_tensor(M.data, dtype=dtype),
                size=(n_rows, n_cols),
                dtype=dtype,
                device=device,
                check_invariants=False,
            )
    return torch.as_tensor(M.toarray(), dtype=dtype, device=device)


def gossip(W: Any, X: torch.Tensor) -> torch.Tensor:
    """One gossip step ``W @ X`` as a single (sparse or dense) product.

    Parameters
    ----------
    W : scipy.sparse array, numpy.ndarray or torch.Tensor
        ``[n, n]`` mixing matrix; a torch tensor (e.g. from :func:`to_torch`, to avoid
        re-converting every round) is used as is after casting to ``X``'s dtype/device.
    X : torch.Tensor
        ``[n, d]`` floating-point node parameters.

    Returns
    -------
    torch.Tensor
        New ``[n, d]`` tensor with ``X``'s dtype and device.
    """
    if X.ndim != 2 or not X.is_floating_point():
        raise ValueError(f"X must be a floating [n, d] tensor, got {X.dtype} {tuple(X.shape)}")
    if isinstance(W, torch.Tensor):
        Wt = W.to(device=X.device, dtype=X.dtype)
    else:
        Wt = to_torch(W, dtype=X.dtype, device=X.device)
    if Wt.shape[0] != Wt.shape[1] or Wt.shape[1] != X.shape[0]:
        raise ValueError(f"W has shape {tuple(Wt.shape)}, X has {X.shape[0]} rows")
    return Wt @ X
