"""Correlation clustering of neurons: the paper's neuron-level general redundancy analysis.

Dalvi et al. (2020) group neurons whose activations are strongly correlated over the
training instances and keep one neuron per group; the others are counted as redundant.

* Dissimilarity between neurons ``i`` and ``j``: ``1 - |rho_ij|`` (Pearson correlation from
  :func:`redundancy.similarity.correlation`; NaN -> 0, symmetrised, as in the paper).
* Agglomerative clustering with **average linkage** (scipy), flat clusters cut at distance
  ``threshold``: a merged group has mean ``|rho|`` between its two halves of at least
  ``1 - threshold``. The paper sweeps ``threshold`` over 0.1, ..., 0.9 and uses 0.3.
* One representative per cluster (:func:`select_representatives`): at random, as the
  authors do, or the most central member.
* Cluster windows (:func:`cluster_windows`): how many consecutive layers a cluster spans.
* What the clusters are (:func:`decompose_clusters`): one hidden dimension carried by the
  residual stream through adjacent layers, neurons of one layer, or a mix.

Speed. One average-linkage tree answers every threshold (:func:`threshold_sweep`). For a
single threshold :func:`cluster_neurons` avoids the full tree: a group formed at height
``<= t`` always contains a pair of neurons at distance ``<= t`` across each of its merges,
so every flat cluster lies inside one connected component of the graph whose edges are the
pairs at distance ``<= t``. Running average linkage on each component separately gives the
same flat clusters (average linkage is reducible, so the merges below ``t`` inside a
component do not depend on the rest) at a fraction of the cost when ``t`` is small.
"""

from __future__ import annotations

import logging
import numbers
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from redundancy._utils import check_choice

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ClusterResult",
    "correlation_linkage",
    "cluster_neurons",
    "select_representatives",
    "threshold_sweep",
    "cluster_windows",
    "decompose_clusters",
    "window_histogram",
    "correlation_clustering",
]

#: The paper's sweep of clustering thresholds (distance ``1 - |rho|``).
DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

_ROW_BLOCK = 512
# Pairs within threshold + _EDGE_SLACK count as edges of the component graph. Any slack >= 0
# keeps the result exact (a coarser partition into components is still valid); the slack
# exceeds the float32 spacing near 1 and the rounding of the averages scipy computes.
_EDGE_SLACK = 1e-6
# Beyond this many edges the component graph would cost more than it saves: use the full tree.
_MAX_EDGES = 5_000_000


# --------------------------------------------------------------------------- checks


def _check_corr(corr, caller: str) -> np.ndarray:
    if corr is None:
        raise ValueError(
            f"The 'corr' parameter of {caller} is required: compute it with "
            "redundancy.similarity.correlation(X)."
        )
    corr = np.asarray(corr)
    if corr.ndim != 2 or corr.shape[0] != corr.shape[1]:
        raise ValueError(
            f"The 'corr' parameter of {caller} must be a square (n_neurons, n_neurons) "
            f"correlation matrix. Got an array of shape {corr.shape} instead."
        )
    if not np.issubdtype(corr.dtype, np.floating):
        corr = corr.astype(np.float64)
    return corr


def _check_threshold(threshold, caller: str) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(
            f"The 'threshold' parameter of {caller} must be a real number >= 0 (a distance "
            f"1 - |rho|; the paper uses 0.3). Got {threshold!r} instead."
        )
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(
            f"The 'threshold' parameter of {caller} must be a real number >= 0 (a distance "
            f"1 - |rho|; the paper uses 0.3). Got {threshold!r} instead."
        )
    return float(threshold)


def _check_labels(labels, caller: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"The 'labels' parameter of {caller} must be a 1-D integer array with one cluster "
            f"id per neuron (from cluster_neurons). Got dtype {labels.dtype} and shape "
            f"{labels.shape} instead."
        )
    return labels


def _check_n_hidden(n_hidden, d: int, caller: str) -> int:
    if isinstance(n_hidden, bool) or not isinstance(n_hidden, numbers.Integral) or n_hidden < 1:
        raise ValueError(
            f"The 'n_hidden' parameter of {caller} must be a positive int (neurons per layer, "
            f"768 for BERT-base). Got {n_hidden!r} instead."
        )
    if d % n_hidden:
        raise ValueError(
            f"The 'n_hidden' parameter of {caller} must divide the number of neurons {d}. "
            f"Got {n_hidden} instead."
        )
    return int(n_hidden)


# ------------------------------------------------------------------------ distances


def _distance_rows(corr: np.ndarray, i0: int, i1: int) -> np.ndarray:
    """Distances ``1 - |(rho + rho^T) / 2|`` for rows ``i0:i1`` and columns ``i0:``, float64.

    NaN correlations count as 0 (distance 1), as in the paper's pipeline. Symmetrising is
    done in the dtype of ``corr`` (exact for the exactly symmetric output of
    :func:`redundancy.similarity.correlation`, and float64 arithmetic for float64 input).
    """
    upper = corr[i0:i1, i0:] + corr[i0:, i0:i1].T
    upper *= 0.5
    np.nan_to_num(upper, copy=False, nan=0.0)
    np.abs(upper, out=upper)
    dist = np.subtract(1.0, upper, dtype=np.float64)
    np.clip(dist, 0.0, None, out=dist)
    return dist


def _upper_mask(i0: int, i1: int, d: int) -> np.ndarray:
    """Mask of the strictly-upper entries of rows ``i0:i1`` restricted to columns ``i0:``."""
    return np.arange(i0, d)[None, :] > np.arange(i0, i1)[:, None]


def _condensed_distance(corr: np.ndarray) -> np.ndarray:
    """Condensed distance vector (scipy's ``pdist`` layout) built row block by row block.

    Avoids the full ``(d, d)`` float64 distance matrix that ``squareform`` would need.
    """
    d = corr.shape[0]
    out = np.empty(d * (d - 1) // 2, dtype=np.float64)
    pos = 0
    for i0 in range(0, d, _ROW_BLOCK):
        i1 = min(i0 + _ROW_BLOCK, d)
        vals = _distance_rows(corr, i0, i1)[_upper_mask(i0, i1, d)]
        out[pos : pos + vals.size] = vals
        pos += vals.size
    return out


def correlation_linkage(corr) -> np.ndarray:
    """Average-linkage tree of the neurons under the distance ``1 - |rho|``.

    Parameters
    ----------
    corr : array-like of shape (n_neurons, n_neurons)
        Pearson correlations, usually :func:`redundancy.similarity.correlation` (float32).

    Returns
    -------
    numpy.ndarray of shape (n_neurons - 1, 4)
        scipy linkage matrix; pass it as ``Z`` to :func:`cluster_neurons` or
        :func:`threshold_sweep` to cut it at many thresholds. Average linkage is monotone,
        so cutting at ``t`` keeps exactly the merges of height ``<= t``.

    Notes
    -----
    scipy's nearest-neighbour-chain algorithm takes O(d^2) time and keeps the condensed
    distances (``d (d - 1) / 2`` float64, 400 MB for d = 9,984) plus one working copy.
    """
    corr = _check_corr(corr, "correlation_linkage")
    if corr.shape[0] < 2:
        raise ValueError(
            "The 'corr' parameter of correlation_linkage must describe at least 2 neurons. "
            f"Got shape {corr.shape} instead."
        )
    return linkage(_condensed_distance(corr), method="average")


# ---------------------------------------------------------------------- flat clusters


def _relabel(raw: np.ndarray) -> np.ndarray:
    """Map arbitrary cluster ids to 0..K-1, numbered by the smallest neuron of each cluster."""
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.ravel()]


def _component_graph(corr: np.ndarray, threshold: float):
    """Components of a graph containing every pair at distance ``<= threshold``, or None.

    ``|(rho_ij + rho_ji) / 2| <= max(|rho_ij|, |rho_ji|)``, so marking ``(i, j)`` whenever
    either ``|rho_ij|`` or ``|rho_ji|`` reaches ``1 - threshold`` gives a superset of those
    pairs from plain row blocks (no transposed reads, no float64 copies). A superset only
    merges components, which keeps the per-component clustering exact.
    """
    d = corr.shape[0]
    cut = corr.dtype.type(1.0 - threshold - _EDGE_SLACK)
    rows, cols, n_edges = [], [], 0
    for i0 in range(0, d, _ROW_BLOCK):
        i1 = min(i0 + _ROW_BLOCK, d)
        block = corr[i0:i1]
        r, c = np.nonzero((block >= cut) | (block <= -cut))
        keep = r + i0 != c
        n_edges += int(keep.sum())
        if n_edges > 2 * _MAX_EDGES:
            return None
        rows.append((r[keep] + i0).astype(np.int32))
        cols.append(c[keep].astype(np.int32))
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(d, d))
    _, comp = connected_components(graph, directed=False)
    logger.debug("component graph: %d edges, %d components", n_edges, comp.max() + 1)
    return comp


def _cluster_by_components(corr: np.ndarray, threshold: float) -> np.ndarray | None:
    """Flat clusters at ``threshold`` by average linkage inside each graph component."""
    comp = _component_graph(corr, threshold)
    if comp is None:
        return None
    d = corr.shape[0]
    raw = np.arange(d)  # a neuron's raw label is the smallest neuron of its cluster
    order = np.argsort(comp, kind="stable")  # members of a component stay in index order
    sizes = np.bincount(comp)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))

    # Components of two neurons: one merge, at their distance (vectorised).
    pair_starts = starts[sizes == 2]
    a, b = order[pair_starts], order[pair_starts + 1]
    sym = np.abs(np.nan_to_num((corr[a, b] + corr[b, a]) * 0.5, nan=0.0))
    joined = np.subtract(1.0, sym, dtype=np.float64) <= threshold  # as in _distance_rows
    raw[b[joined]] = a[joined]

    # Larger components: average linkage on the sub-matrix (a loop over components only).
    for start, size in zip(starts[sizes > 2], sizes[sizes > 2]):
        idx = order[start : start + size]
        sub_z = linkage(_condensed_distance(corr[np.ix_(idx, idx)]), method="average")
        flat = fcluster(sub_z, threshold, criterion="distance")
        _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
        raw[idx] = idx[first[inverse.ravel()]]
    return raw


def cluster_neurons(corr, threshold: float = 0.3, *, Z=None) -> np.ndarray:
    """Flat correlation clusters of the neurons at one threshold.

    Parameters
    ----------
    corr : array-like of shape (n_neurons, n_neurons)
        Pearson correlations from :func:`redundancy.similarity.correlation`. May be
        ``None`` when ``Z`` is given.
    threshold : float, default=0.3
        Distance ``1 - |rho|`` at which the average-linkage tree is cut (the paper's 0.3:
        groups with mean ``|rho| >= 0.7``).
    Z : numpy.ndarray, optional
        Linkage from :func:`correlation_linkage`, to reuse across thresholds. Without it the
        tree is built only where needed, one connected component of the graph of pairs with
        distance ``<= threshold`` at a time (same clusters, much faster for small
        thresholds).

    Returns
    -------
    numpy.ndarray of shape (n_neurons,), int64
        Cluster id of every neuron: 0-based, contiguous, numbered in the order of each
        cluster's smallest neuron (neuron 0 is in cluster 0).

    Notes
    -----
    With exactly tied distances the flat clusters of average linkage may depend on the
    order in which ties are broken; this happens with scipy alone as well.
    """
    caller = "cluster_neurons"
    threshold = _check_threshold(threshold, caller)
    if Z is not None:
        Z = np.asarray(Z)
        if Z.ndim != 2 or Z.shape[1] != 4:
            raise ValueError(
                f"The 'Z' parameter of {caller} must be a scipy linkage matrix of shape "
                f"(n_neurons - 1, 4) from correlation_linkage. Got shape {Z.shape} instead."
            )
        if corr is not None and np.shape(corr)[0] != Z.shape[0] + 1:
            raise ValueError(
                f"The 'Z' parameter of {caller} describes {Z.shape[0] + 1} neurons but 'corr' "
                f"has {np.shape(corr)[0]}; build Z with correlation_linkage(corr)."
            )
        return _relabel(fcluster(Z, threshold, criterion="distance"))
    corr = _check_corr(corr, caller)
    if corr.shape[0] < 2:
        return np.zeros(corr.shape[0], dtype=np.int64)
    raw = _cluster_by_components(corr, threshold)
    if raw is None:
        logger.info(
            "cluster_neurons: dense similarity graph at t=%g; building full tree", threshold
        )
        raw = fcluster(correlation_linkage(corr), threshold, criterion="distance")
    return _relabel(raw)


# -------------------------------------------------------------------- representatives


def _first_per_group(group: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Index of the first element of each group after sorting by ``keys`` (primary first)."""
    order = np.lexsort((*reversed(keys), group))
    g = group[order]
    starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
    return order[starts]


def _within_cluster_abs_sums(corr: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``sum_j |rho_ij|`` over the neurons ``j`` in the cluster of ``i``, float64, by row blocks."""
    d = labels.size
    sums = np.empty(d, dtype=np.float64)
    for i0 in range(0, d, _ROW_BLOCK):
        i1 = min(i0 + _ROW_BLOCK, d)
        same = labels[i0:i1, None] == labels[None, :]
        block = np.nan_to_num(np.abs(corr[i0:i1]), nan=0.0)
        sums[i0:i1] = np.where(same, block, 0.0).sum(axis=1, dtype=np.float64)
    return sums


def select_representatives(
    labels, *, method: str = "random", random_state=0, corr=None
) -> np.ndarray:
    """Keep one neuron per cluster.

    Parameters
    ----------
    labels : array-like of shape (n_neurons,), int
        Cluster ids, usually from :func:`cluster_neurons`.
    method : {"random", "central"}, default="random"
        ``"random"``: a member drawn uniformly at random in every cluster (the authors'
        choice), reproducible through ``random_state``. ``"central"``: the member with the
        highest mean ``|rho|`` to the other members of its cluster (deterministic; ties go to
        the lowest neuron id); needs ``corr``.
    random_state : int, numpy.random.Generator or None, default=0
        Seed for ``"random"`` (passed to :func:`numpy.random.default_rng`).
    corr : array-like of shape (n_neurons, n_neurons), optional
        Correlations, required for ``"central"``.

    Returns
    -------
    numpy.ndarray of shape (n_clusters,), int64
        Sorted ids of the kept neurons (one per cluster).
    """
    caller = "select_representatives"
    labels = _check_labels(labels, caller)
    check_choice(method, ("random", "central"), name="method", caller=caller)
    d = labels.size
    if d == 0:
        return np.zeros(0, dtype=np.int64)
    _, group = np.unique(labels, return_inverse=True)
    group = group.ravel()
    ids = np.arange(d)
    if method == "random":
        # The member with the smallest uniform key is a uniform draw from its cluster.
        keys = np.random.default_rng(random_state).random(d)
        chosen = _first_per_group(group, keys)
    else:
        corr = _check_corr(corr, caller)
        if corr.shape[0] != d:
            raise ValueError(
                f"The 'corr' parameter of {caller} must be ({d}, {d}) to match 'labels'. Got "
                f"shape {corr.shape} instead."
            )
        sizes = np.bincount(group)[group]
        sums = _within_cluster_abs_sums(corr, group) - np.abs(
            np.nan_to_num(np.diagonal(corr), nan=0.0)
        )
        score = np.zeros(d)
        np.divide(sums, sizes - 1, out=score, where=sizes > 1)
        # Round away float noise so that scores equal in exact arithmetic tie (-> lowest id).
        score = np.round(score, 9)
        chosen = _first_per_group(group, -score, ids)
    return np.sort(chosen).astype(np.int64)


# ---------------------------------------------------------------------------- windows


def cluster_windows(labels, n_hidden: int) -> np.ndarray:
    """Number of consecutive layers each cluster spans: ``max(layer) - min(layer) + 1``.

    Parameters
    ----------
    labels : array-like of shape (n_neurons,), int
        Cluster ids (usually from :func:`cluster_neurons`); neuron ``i`` belongs to layer
        ``i // n_hidden``.
    n_hidden : int
        Neurons per layer (768 for BERT-base).

    Returns
    -------
    numpy.ndarray of shape (n_clusters,), int64
        Window of each cluster, in the order of the sorted cluster ids (cluster ``k`` at
        position ``k`` for labels from :func:`cluster_neurons`).
    """
    caller = "cluster_windows"
    labels = _check_labels(labels, caller)
    n_hidden = _check_n_hidden(n_hidden, labels.size, caller)
    _, group = np.unique(labels, return_inverse=True)
    group = group.ravel()
    layer = np.arange(labels.size) // n_hidden
    order = np.lexsort((layer, group))  # by cluster, then layer
    g = group[order]
    starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
    ends = np.concatenate((starts[1:], [g.size])) - 1
    return (layer[order][ends] - layer[order][starts] + 1).astype(np.int64)


#: The kinds of multi-member clusters told apart by :func:`decompose_clusters`.
CLUSTER_KINDS = ("carry", "within_layer", "mixed")


def decompose_clusters(labels, n_hidden: int) -> dict:
    """Split the redundancy found by clustering into what kind of cluster holds it.

    Every cluster with at least two members is one of

    * ``"carry"`` -- all members are the *same hidden dimension* of a run of adjacent
      layers (layers ``l, l+1, ..., l+k``): the residual stream carrying one dimension
      from layer to layer, which a residual architecture produces by construction;
    * ``"within_layer"`` -- all members are in one layer (different dimensions);
    * ``"mixed"`` -- anything else (several dimensions across layers, or one dimension at
      layers with a gap between them).

    Clustering keeps one neuron per cluster, so a cluster of ``s`` members makes ``s - 1``
    neurons *redundant*; the counts below split those neurons by kind.

    Parameters
    ----------
    labels : array-like of shape (n_neurons,), int
        Cluster id of every neuron (flat index: neuron ``i`` is dimension ``i % n_hidden``
        of layer ``i // n_hidden``), usually from :func:`cluster_neurons`.
    n_hidden : int
        Neurons per layer.

    Returns
    -------
    dict of int
        ``n_neurons``, ``n_clusters`` (singletons included), ``n_multi`` (clusters with two
        or more members), ``total_redundant`` (``n_neurons - n_clusters``) and, for each
        kind in :data:`CLUSTER_KINDS`, ``<kind>_clusters`` and ``<kind>_redundant``. The
        three ``_redundant`` counts add up to ``total_redundant`` and the three
        ``_clusters`` counts to ``n_multi``.
    """
    caller = "decompose_clusters"
    labels = _check_labels(labels, caller)
    n_hidden = _check_n_hidden(n_hidden, labels.size, caller)
    out = {"n_neurons": int(labels.size)}
    if labels.size == 0:
        zeros = {f"{k}_{what}": 0 for k in CLUSTER_KINDS for what in ("clusters", "redundant")}
        return {**out, "n_clusters": 0, "n_multi": 0, "total_redundant": 0, **zeros}
    _, group = np.unique(labels, return_inverse=True)
    group = group.ravel()
    neuron = np.arange(labels.size)
    layer, dim = neuron // n_hidden, neuron % n_hidden
    order = np.argsort(group, kind="stable")
    g = group[order]
    starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
    size = np.diff(np.append(starts, g.size))
    lay, dm = layer[order], dim[order]
    span = np.maximum.reduceat(lay, starts) - np.minimum.reduceat(lay, starts) + 1
    one_dim = np.maximum.reduceat(dm, starts) == np.minimum.reduceat(dm, starts)
    multi = size >= 2
    # one dimension cannot appear twice in a layer, so `size` distinct layers spanning
    # exactly `size` layers are a run of adjacent layers
    kinds = {
        "carry": multi & one_dim & (span == size),
        "within_layer": multi & (span == 1),
    }
    kinds["mixed"] = multi & ~kinds["carry"] & ~kinds["within_layer"]
    out.update(
        n_clusters=int(size.size),
        n_multi=int(multi.sum()),
        total_redundant=int(labels.size - size.size),
    )
    for kind, mask in kinds.items():
        out[f"{kind}_clusters"] = int(mask.sum())
        out[f"{kind}_redundant"] = int((size[mask] - 1).sum())
    return out


def window_histogram(
    labels, n_hidden: int, *, n_layers: int | None = None, min_size: int = 1
) -> pd.DataFrame:
    """Number of clusters per window (1 = inside one layer, 2 = two adjacent layers, ...).

    Parameters
    ----------
    labels, n_hidden
        As in :func:`cluster_windows`.
    n_layers : int, optional
        Largest window listed; defaults to ``n_neurons // n_hidden``.
    min_size : int, default=1
        Only count clusters with at least this many neurons (``2`` leaves out singletons,
        whose window is always 1).

    Returns
    -------
    pandas.DataFrame
        Columns ``window`` (1..n_layers), ``n_clusters`` and ``fraction`` (of the counted
        clusters), one row per window including empty ones.
    """
    labels = _check_labels(labels, "window_histogram")
    windows = cluster_windows(labels, n_hidden)
    sizes = np.unique(labels, return_counts=True)[1]
    windows = windows[sizes >= min_size]
    n_layers = n_layers or labels.size // n_hidden
    counts = np.bincount(windows, minlength=n_layers + 1)[1 : n_layers + 1]
    total = max(int(counts.sum()), 1)
    return pd.DataFrame(
        {"window": np.arange(1, n_layers + 1), "n_clusters": counts, "fraction": counts / total}
    )


# ----------------------------------------------------------------------------- sweep


def threshold_sweep(
    corr, thresholds=DEFAULT_THRESHOLDS, *, Z=None, n_hidden: int | None = None
) -> pd.DataFrame:
    """Cluster statistics for a sweep of thresholds, from one average-linkage tree.

    Parameters
    ----------
    corr : array-like of shape (n_neurons, n_neurons)
        Correlations from :func:`redundancy.similarity.correlation`; may be ``None`` if
        ``Z`` is given.
    thresholds : sequence of float, default=(0.1, 0.2, ..., 0.9)
        The paper's sweep.
    Z : numpy.ndarray, optional
        Linkage from :func:`correlation_linkage`; built from ``corr`` when missing.
    n_hidden : int, optional
        Neurons per layer; adds the mean and largest cluster window.

    Returns
    -------
    pandas.DataFrame
        One row per threshold: ``threshold``, ``n_clusters``, ``n_kept`` (one neuron per
        cluster), ``n_redundant``, ``fraction_redundant`` (``1 - n_clusters / n_neurons``),
        ``largest_cluster``, ``n_singletons`` and, with ``n_hidden``, ``mean_window`` and
        ``max_window``.
    """
    caller = "threshold_sweep"
    thresholds = [_check_threshold(t, caller) for t in np.atleast_1d(thresholds).tolist()]
    if Z is None:
        Z = correlation_linkage(_check_corr(corr, caller))
    Z = np.asarray(Z)
    d = Z.shape[0] + 1
    rows = []
    for t in thresholds:
        labels = cluster_neurons(None, t, Z=Z)
        sizes = np.bincount(labels)
        row = {
            "threshold": t,
            "n_clusters": sizes.size,
            "n_kept": sizes.size,
            "n_redundant": d - sizes.size,
            "fraction_redundant": 1.0 - sizes.size / d,
            "largest_cluster": int(sizes.max()),
            "n_singletons": int(np.sum(sizes == 1)),
        }
        if n_hidden is not None:
            windows = cluster_windows(labels, n_hidden)
            row["mean_window"] = float(windows.mean())
            row["max_window"] = int(windows.max())
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ one call


@dataclass
class ClusterResult:
    """Outcome of :func:`correlation_clustering`.

    Attributes
    ----------
    labels : numpy.ndarray of shape (n_neurons,), int64
        Cluster id of every neuron (0-based, numbered by smallest member).
    kept : numpy.ndarray of shape (n_clusters,), int64
        Sorted ids of the representative neurons, one per cluster.
    n_clusters : int
    threshold : float
    representative : str
        ``"random"`` or ``"central"``.
    random_state : object
        Seed used for ``"random"`` representatives.
    linkage : numpy.ndarray or None
        Full average-linkage tree (``full_tree=True``), reusable with
        :func:`threshold_sweep`; ``None`` otherwise.
    windows : numpy.ndarray or None
        Layer window of each cluster when ``n_hidden`` is known.
    timings : dict
        Seconds spent in ``correlation``, ``linkage`` and ``flat_clusters`` (the latter
        includes the per-component trees when no full tree was built) and
        ``representatives``.
    """

    labels: np.ndarray
    kept: np.ndarray
    n_clusters: int
    threshold: float
    representative: str = "random"
    random_state: object = 0
    linkage: np.ndarray | None = None
    windows: np.ndarray | None = None
    timings: dict = field(default_factory=dict)

    @property
    def n_neurons(self) -> int:
        """Number of neurons clustered."""
        return int(self.labels.size)

    @property
    def n_kept(self) -> int:
        """Number of neurons kept (one per cluster)."""
        return int(self.kept.size)

    @property
    def fraction_redundant(self) -> float:
        """Share of neurons that are not kept: ``1 - n_clusters / n_neurons``."""
        return 1.0 - self.n_clusters / self.n_neurons


def correlation_clustering(
    X=None,
    threshold: float = 0.3,
    *,
    representative: str = "random",
    random_state=0,
    n_hidden: int | None = None,
    corr=None,
    full_tree: bool = False,
    device: str | None = None,
    chunk_size: int = 4096,
    progress: bool = True,
) -> ClusterResult:
    """The paper's correlation clustering (CC): cluster neurons and keep one per cluster.

    Parameters
    ----------
    X : array-like, optional
        Activations ``(n_instances, n_neurons)`` (usually ``acts.X``), a 3-D ``acts`` array
        or an ``Activations`` object; may be a float16 memory map (streamed, never copied).
        Not needed when ``corr`` is given.
    threshold : float, default=0.3
        Distance ``1 - |rho|`` at which clusters are cut (the paper's pipeline value).
    representative : {"random", "central"}, default="random"
        See :func:`select_representatives`.
    random_state : int, numpy.random.Generator or None, default=0
        Seed for random representatives.
    n_hidden : int, optional
        Neurons per layer, for cluster windows; inferred from 3-D input.
    corr : array-like, optional
        Precomputed correlations (:func:`redundancy.similarity.correlation`).
    full_tree : bool, default=False
        Also build and return the full linkage tree (for later threshold sweeps). Not
        needed for the clusters themselves, which come from per-component trees.
    device, chunk_size, progress
        Passed to :func:`redundancy.similarity.correlation`.

    Returns
    -------
    ClusterResult
    """
    from redundancy.analysis import similarity

    caller = "correlation_clustering"
    threshold = _check_threshold(threshold, caller)
    check_choice(representative, ("random", "central"), name="representative", caller=caller)
    timings = {}
    if X is not None:
        X, n_layers = similarity._flat_view(X, caller=caller)
        if n_hidden is None and n_layers is not None:
            n_hidden = X.shape[1] // n_layers
    t0 = time.perf_counter()
    if corr is None:
        if X is None:
            raise ValueError(
                f"{caller} needs activations 'X' or a precomputed correlation matrix 'corr'."
            )
        corr = similarity.correlation(X, chunk_size=chunk_size, device=device, progress=progress)
    corr = _check_corr(corr, caller)
    if X is not None and corr.shape[0] != X.shape[1]:
        raise ValueError(
            f"The 'corr' parameter of {caller} is {corr.shape} but X has {X.shape[1]} neurons."
        )
    timings["correlation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    Z = correlation_linkage(corr) if full_tree else None
    timings["linkage"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = cluster_neurons(corr, threshold, Z=Z)
    timings["flat_clusters"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kept = select_representatives(
        labels, method=representative, random_state=random_state, corr=corr
    )
    timings["representatives"] = time.perf_counter() - t0
    windows = cluster_windows(labels, n_hidden) if n_hidden is not None else None
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    logger.info(
        "correlation clustering at t=%g: %d neurons -> %d clusters (%.1f%% redundant); %s",
        threshold,
        labels.size,
        n_clusters,
        100.0 * (1 - n_clusters / max(labels.size, 1)),
        ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()),
    )
    return ClusterResult(
        labels=labels,
        kept=kept,
        n_clusters=n_clusters,
        threshold=threshold,
        representative=representative,
        random_state=random_state,
        linkage=Z,
        windows=windows,
        timings=timings,
    )
