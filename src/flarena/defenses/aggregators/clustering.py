"""Clustering (Sattler et al. 2020): the mean of the larger of two cosine-similarity clusters."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster
from scipy.cluster.hierarchy import linkage as hierarchical_linkage
from scipy.spatial.distance import squareform
from torch import Tensor

from flarena.core.contracts import RoundContext
from flarena.core.registry import register
from flarena.defenses._checks import check_matrix
from flarena.defenses._distances import finite_rows

#: Linkages of :func:`scipy.cluster.hierarchy.linkage` that are defined for an arbitrary
#: precomputed dissimilarity ("centroid", "median" and "ward" assume Euclidean distances).
LINKAGES = ("single", "complete", "average", "weighted")


def unit_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    r"""Unit directions :math:`x_i / \lVert x_i \rVert` of finite rows, and their norms.

    Each row is divided by its largest absolute entry before the norm is taken, so neither the
    norm of a tiny row underflows nor that of a huge one overflows. A zero row has no direction:
    its unit row is the zero vector (so its cosine with any row is 0).

    Parameters
    ----------
    x : Tensor
        ``[r, d]`` finite rows, float64.

    Returns
    -------
    (Tensor, Tensor)
        ``[r, d]`` unit rows (zero for a zero row) and the ``[r]`` norms
        :math:`\lVert x_i \rVert` (``+inf`` only beyond the dtype's range).
    """
    if x.shape[1] == 0:
        return x.clone(), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    peak = x.abs().amax(dim=1)
    nonzero = peak > 0
    scaled = x / torch.where(nonzero, peak, torch.ones_like(peak))[:, None]
    length = torch.linalg.vector_norm(scaled, dim=1)  # in [1, sqrt(d)] for a non-zero row
    unit = scaled / torch.where(nonzero, length, torch.ones_like(length))[:, None]
    return unit, peak * length


def cosine_distances(x: Tensor) -> np.ndarray:
    r"""Cosine distances :math:`1 - \cos(x_i, x_j)` of finite rows, from one normalised Gram matrix.

    :math:`D = 1 - U U^\top` with :math:`U` the unit rows (:func:`unit_rows`), accumulated in
    float64, symmetrised, clipped to :math:`[0, 2]`, zero diagonal. A zero row has no
    direction: it is at distance 1 (cosine 0) from every non-zero row, and at distance 0 from
    another zero row (identical rows are at distance 0). No Python loop over pairs.

    Parameters
    ----------
    x : Tensor
        ``[r, d]`` finite rows.

    Returns
    -------
    numpy.ndarray
        ``[r, r]`` float64 on the CPU.
    """
    unit, norms = unit_rows(x.double())
    dist = 1.0 - unit @ unit.T
    dist = (0.5 * (dist + dist.T)).clamp_(0.0, 2.0)
    zero = norms == 0
    dist[zero[:, None] & zero[None, :]] = 0.0  # pairs of zero rows
    dist.fill_diagonal_(0.0)
    return dist.cpu().numpy()


def larger_cluster(dist: np.ndarray, method: str) -> np.ndarray:
    """Bool mask of the larger of (at most) two flat clusters of a hierarchical clustering.

    ``scipy.cluster.hierarchy.linkage`` on the condensed ``dist`` with ``method``, then
    ``fcluster(..., 2, "maxclust")``. Equal sizes: the cluster holding the lowest row index.
    If the top merges of the dendrogram tie in height, ``maxclust`` forms a single cluster and
    every row is in it.
    """
    r = dist.shape[0]
    if r == 1:
        return np.ones(1, dtype=bool)
    tree = hierarchical_linkage(squareform(dist, checks=False), method=method)
    labels = fcluster(tree, 2, criterion="maxclust")
    sizes = np.bincount(labels)
    largest = np.flatnonzero(sizes == sizes.max())
    best = labels[np.flatnonzero(np.isin(labels, largest))[0]]  # lowest row index on a tie
    return np.asarray(labels == best)


@register("aggregator", "clustering")
class Clustering:
    r"""Clustering: split the rows in two by cosine similarity, average the larger group.

    Pairwise cosine distances :math:`D_{ij} = 1 - \frac{\langle x_i, x_j \rangle}
    {\lVert x_i \rVert \lVert x_j \rVert}` (one normalised Gram matrix), agglomerative
    (hierarchical) clustering of the rows with ``linkage`` (average by default) cut into two
    clusters, and the output :math:`\frac{1}{|C|} \sum_{i \in C} x_i`, :math:`C` the larger
    cluster (Sattler, Müller, Wiegand, Samek 2020, "On the Byzantine Robustness of Clustered
    Federated Learning", ICASSP, applying the bipartition of clustered FL to Byzantine clients;
    the "Clustering" aggregator of the Blades suite). The benign group is taken to be the
    larger one: an honest majority is assumed, but no ``f`` is needed. Equal sizes (even
    ``n``): the cluster holding the lowest row index. The clustering is
    ``scipy.cluster.hierarchy.linkage`` on the condensed distances followed by
    ``fcluster(..., 2, "maxclust")``; if the two top merges tie in height (e.g. three rows at
    equal angles, or identical rows), no cut gives exactly two clusters and every row is kept.
    Unweighted: ``ctx.weights`` is ignored. With a context, ``ctx.info["kept"]`` is the ``[n]``
    bool mask of the averaged rows. Not translation equivariant: angles are measured from the
    origin.

    Conventions where peers differ: Blades runs ``sklearn``'s ``AgglomerativeClustering``
    (``n_clusters=2``, always two clusters), in later versions with complete linkage; an early
    version used average linkage on the cosine *similarity* as if it were a distance, which
    clusters dissimilar rows together; it maps an undefined (NaN) distance to :math:`-1`,
    making a NaN or zero row the nearest row to all others, and breaks size ties by the
    arbitrary label 0. The clustered-FL reference code uses complete linkage on :math:`-\cos`;
    ``linkage="single"`` gives the bipartition that minimises the largest cross-cluster
    similarity, the one clustered FL defines.

    Zero rows: a zero row has no direction; its cosine with every non-zero row is taken as 0
    (distance 1), as the clustered-FL code does with its ``1e-12`` in the denominator, and zero
    rows are at distance 0 from each other (identical rows), so that several of them form a
    cluster of their own rather than tying every merge at height 1.
    Non-finite values: a row with any NaN/inf coordinate is left out of the clustering and
    never averaged (a cluster of its own that is never kept); the finite rows are clustered as
    above, so the output is finite whenever one row is. If every row is non-finite, all are
    kept and the output is their (non-finite) mean.

    Parameters
    ----------
    linkage : str
        Linkage of the hierarchical clustering: ``"average"`` (default, as in an early
        Blades version), ``"complete"`` (later Blades, clustered-FL code), ``"single"`` or
        ``"weighted"``. scipy's ``"centroid"``, ``"median"`` and ``"ward"`` are refused: they
        are defined for Euclidean distances between observations, not for a cosine
        dissimilarity.
    """

    #: By definition the clusters are of directions, measured from the origin.
    _xfail_checks: ClassVar[dict[str, str]] = {
        "translation_equivariance": "rows are clustered by their cosine similarities, angles "
        "measured from the origin: shifting every row changes the clusters and the rows kept",
    }

    def __init__(self, *, linkage: str = "average") -> None:
        if not isinstance(linkage, str) or linkage not in LINKAGES:
            raise ValueError(
                f"invalid linkage = {linkage!r}: must be one of {', '.join(LINKAGES)} "
                f"(centroid, median and ward need Euclidean distances, not cosine ones)"
            )
        self.linkage = linkage

    def check_n(self, n: int) -> None:
        """Refuse an empty round."""
        if n < 1:
            raise ValueError(f"clustering needs n >= 1 rows, got n = {n}")

    def __call__(self, updates: Tensor, /, *, ctx: RoundContext | None = None) -> Tensor:
        """Aggregate ``[n, d]`` rows into ``[d]``."""
        n = check_matrix(updates)
        ok = finite_rows(updates)
        idx = ok.nonzero().squeeze(1)
        kept = torch.zeros(n, dtype=torch.bool)
        if idx.numel() == 0:
            kept[:] = True
        else:
            chosen = larger_cluster(cosine_distances(updates[idx]), self.linkage)
            kept[idx.cpu()[torch.from_numpy(chosen)]] = True
        kept = kept.to(updates.device)
        if ctx is not None:
            ctx.info["kept"] = kept
        return updates[kept].mean(dim=0)

    def get_params(self) -> dict[str, str]:
        """Constructor parameters."""
        return {"linkage": self.linkage}
