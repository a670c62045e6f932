"""Tests for redundancy.analysis.clustering: the paper's correlation clustering."""

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from redundancy.analysis import clustering as clu
from redundancy.analysis.clustering import (
    ClusterResult,
    cluster_neurons,
    cluster_windows,
    correlation_clustering,
    correlation_linkage,
    select_representatives,
    threshold_sweep,
    window_histogram,
)
from redundancy.analysis.similarity import correlation


def same_partition(a, b) -> bool:
    """True when two labellings group the items identically (ids may differ)."""
    a, b = np.asarray(a), np.asarray(b)
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def factor_data(n=200, d=120, k=10, seed=0):
    """Neurons loading sparsely on a few shared factors: a mix of tight and loose groups."""
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, k))
    W = rng.standard_normal((k, d)) * (rng.random((k, d)) < 0.25)
    noise = rng.uniform(0.2, 2.0, d)
    return (F @ W + noise * rng.standard_normal((n, d)) + 1.0).astype(np.float32)


def scipy_reference(corr, t):
    """The paper's recipe written out with scipy on a full float64 distance matrix."""
    r = np.nan_to_num(np.asarray(corr, dtype=np.float64))
    r = (r + r.T) / 2
    np.fill_diagonal(r, 1.0)
    return fcluster(linkage(squareform(1 - np.abs(r), checks=False), "average"), t, "distance")


@pytest.fixture(scope="module")
def factor_corr():
    return correlation(factor_data(), progress=False)


# ------------------------------------------------------------------------- clusters


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_direct_scipy_computation(seed):
    X = factor_data(d=90 + 20 * seed, k=5 + 5 * seed, seed=seed)
    corr = correlation(X, progress=False)
    Z = correlation_linkage(corr)
    for t in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0):
        ref = scipy_reference(corr, t)
        assert same_partition(cluster_neurons(corr, t), ref), t
        assert same_partition(cluster_neurons(corr, t, Z=Z), ref), t


def test_linkage_equals_scipy_on_squareform(factor_corr):
    r = factor_corr.astype(np.float64)
    ref = linkage(squareform(1 - np.abs(r), checks=False), "average")
    np.testing.assert_allclose(correlation_linkage(factor_corr), ref, atol=1e-12)


def test_asymmetric_and_nan_input_follow_the_paper(factor_corr):
    rng = np.random.default_rng(3)
    corr = factor_corr.astype(np.float64) + 0.02 * rng.standard_normal(factor_corr.shape)
    corr[4, 7] = np.nan
    for t in (0.3, 0.6):
        assert same_partition(cluster_neurons(corr, t), scipy_reference(corr, t))


def test_dense_graph_fallback_gives_same_clusters(factor_corr, monkeypatch):
    fast = cluster_neurons(factor_corr, 0.4)
    monkeypatch.setattr(clu, "_MAX_EDGES", 0)
    np.testing.assert_array_equal(cluster_neurons(factor_corr, 0.4), fast)


def test_planted_duplicates_and_sign_flips_cluster_together():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((500, 6))
    cols = [
        base[:, 0],
        base[:, 1],
        base[:, 0] + 0.01 * rng.standard_normal(500),  # duplicate of 0
        -3.0 * base[:, 1] + 0.01 * rng.standard_normal(500),  # sign-flipped copy of 1
        base[:, 2],
        base[:, 3],
        -base[:, 0],  # another (negated) copy of 0
        base[:, 4],
        base[:, 5],
    ]
    X = np.stack(cols, axis=1).astype(np.float32)
    labels = cluster_neurons(correlation(X, progress=False), 0.3)
    assert labels[0] == labels[2] == labels[6]
    assert labels[1] == labels[3]
    independent = labels[[0, 1, 4, 5, 7, 8]]
    assert len(set(independent.tolist())) == 6
    np.testing.assert_array_equal(labels, [0, 1, 0, 1, 2, 3, 0, 4, 5])


def test_labels_are_contiguous_and_ordered_by_smallest_member(factor_corr):
    labels = cluster_neurons(factor_corr, 0.5)
    assert labels.dtype == np.int64
    k = labels.max() + 1
    np.testing.assert_array_equal(np.unique(labels), np.arange(k))
    first_member = np.array([np.flatnonzero(labels == c)[0] for c in range(k)])
    assert np.all(np.diff(first_member) > 0)


def test_threshold_edges():
    corr = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(cluster_neurons(corr, 0.5), [0, 0, 1])  # height <= t merges
    np.testing.assert_array_equal(cluster_neurons(corr, 0.49), [0, 1, 2])
    np.testing.assert_array_equal(cluster_neurons(corr, 0.0), [0, 1, 2])
    np.testing.assert_array_equal(cluster_neurons(corr, 1.0), [0, 0, 0])
    np.testing.assert_array_equal(cluster_neurons(np.ones((1, 1)), 0.3), [0])


def test_cluster_neurons_errors(factor_corr):
    with pytest.raises(ValueError, match="threshold"):
        cluster_neurons(factor_corr, -0.1)
    with pytest.raises(TypeError, match="threshold"):
        cluster_neurons(factor_corr, "0.3")
    with pytest.raises(ValueError, match="square"):
        cluster_neurons(np.ones((3, 4)), 0.3)
    with pytest.raises(ValueError, match="neurons"):
        cluster_neurons(np.eye(3), 0.3, Z=correlation_linkage(factor_corr))


# ---------------------------------------------------------------------------- sweep


def test_threshold_sweep(factor_corr):
    df = threshold_sweep(factor_corr, n_hidden=30)
    assert list(df["threshold"]) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert np.all(np.diff(df["n_clusters"]) <= 0)  # more clusters at lower thresholds
    assert df["n_clusters"].iloc[0] > df["n_clusters"].iloc[-1]
    d = factor_corr.shape[0]
    np.testing.assert_allclose(df["fraction_redundant"], 1 - df["n_clusters"] / d)
    np.testing.assert_array_equal(df["n_kept"], df["n_clusters"])
    for t, n_clusters, largest in zip(df["threshold"], df["n_clusters"], df["largest_cluster"]):
        labels = cluster_neurons(factor_corr, t)
        assert labels.max() + 1 == n_clusters
        assert np.bincount(labels).max() == largest
    assert {"mean_window", "max_window"} <= set(df.columns)
    reuse = threshold_sweep(None, (0.3, 0.6), Z=correlation_linkage(factor_corr))
    np.testing.assert_array_equal(reuse["n_clusters"], df["n_clusters"].iloc[[2, 5]])


# -------------------------------------------------------------------------- windows


def test_cluster_windows_hand_made():
    # 3 layers x 4 neurons
    labels = np.array([0, 0, 1, 1, 2, 0, 3, 3, 4, 4, 4, 1])
    np.testing.assert_array_equal(cluster_windows(labels, 4), [2, 3, 1, 1, 1])
    hist = window_histogram(labels, 4)
    np.testing.assert_array_equal(hist["window"], [1, 2, 3])
    np.testing.assert_array_equal(hist["n_clusters"], [3, 1, 1])
    np.testing.assert_allclose(hist["fraction"], [0.6, 0.2, 0.2])
    no_singletons = window_histogram(labels, 4, min_size=2)
    np.testing.assert_array_equal(no_singletons["n_clusters"], [2, 1, 1])
    with pytest.raises(ValueError, match="n_hidden"):
        cluster_windows(labels, 5)


# -------------------------------------------------------------------- representatives


def test_random_representatives_one_per_cluster_and_seeded(factor_corr):
    labels = cluster_neurons(factor_corr, 0.6)
    kept = select_representatives(labels, random_state=0)
    assert np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(np.sort(labels[kept]), np.arange(labels.max() + 1))
    np.testing.assert_array_equal(select_representatives(labels, random_state=0), kept)
    assert np.bincount(labels).max() > 1
    others = [select_representatives(labels, random_state=s) for s in range(1, 6)]
    assert any(not np.array_equal(o, kept) for o in others)


def test_random_representatives_are_uniform_within_a_cluster():
    labels = np.array([0, 0, 0, 0, 1])
    counts = np.zeros(5, dtype=int)
    for seed in range(400):
        counts[select_representatives(labels, random_state=seed)[0]] += 1
    assert counts[4] == 0
    assert np.all((counts[:4] > 60) & (counts[:4] < 140))  # about 100 each


def test_central_representative_hand_checked():
    corr = np.array(
        [
            [1.0, -0.9, 0.5, 0.1, 0.0],
            [-0.9, 1.0, 0.8, 0.0, 0.1],
            [0.5, 0.8, 1.0, 0.2, 0.0],
            [0.1, 0.0, 0.2, 1.0, 0.9],
            [0.0, 0.1, 0.0, 0.9, 1.0],
        ]
    )
    labels = np.array([0, 0, 0, 1, 1])
    # mean |rho| to the others: neuron 0 -> 0.7, 1 -> 0.85, 2 -> 0.65; 3 and 4 tie -> 3
    np.testing.assert_array_equal(
        select_representatives(labels, method="central", corr=corr), [1, 3]
    )
    with pytest.raises(ValueError, match="corr"):
        select_representatives(labels, method="central")
    with pytest.raises(ValueError, match="method"):
        select_representatives(labels, method="first")


# ---------------------------------------------------------------------------- one call


def test_correlation_clustering_end_to_end():
    acts = factor_data(n=200, d=120).reshape(200, 4, 30)
    res = correlation_clustering(acts, 0.3, random_state=1, progress=False)
    assert isinstance(res, ClusterResult)
    corr = correlation(acts, progress=False)
    np.testing.assert_array_equal(res.labels, cluster_neurons(corr, 0.3))
    assert res.n_clusters == res.labels.max() + 1 == res.n_kept
    np.testing.assert_array_equal(res.kept, select_representatives(res.labels, random_state=1))
    np.testing.assert_array_equal(res.windows, cluster_windows(res.labels, 30))  # n_hidden inferred
    assert res.fraction_redundant == pytest.approx(1 - res.n_clusters / 120)
    assert res.linkage is None and set(res.timings) >= {"correlation", "linkage"}

    full = correlation_clustering(
        corr=corr, threshold=0.3, full_tree=True, representative="central"
    )
    np.testing.assert_array_equal(full.labels, res.labels)
    assert full.linkage.shape == (119, 4) and full.windows is None
    np.testing.assert_array_equal(
        full.kept, select_representatives(res.labels, method="central", corr=corr)
    )
    with pytest.raises(ValueError, match="needs activations"):
        correlation_clustering()


# ------------------------------------------------------------------ decompose_clusters


def planted_kinds(n=400, seed=3):
    """4 layers x 5 dims: dim 0 carried through layers 0-2, dims 1 and 2 of layer 3 equal,
    dim 3 of layer 0 with dim 4 of layer 2, and dim 1 at layers 0 and 2 only (a gap)."""
    rng = np.random.default_rng(seed)
    n_layers, h = 4, 5
    X = rng.standard_normal((n, n_layers * h))
    z = rng.standard_normal((n, 4))

    def put(layer, dim, k):
        X[:, layer * h + dim] = z[:, k] + 0.05 * rng.standard_normal(n)

    for layer in (0, 1, 2):
        put(layer, 0, 0)  # carry
    put(3, 1, 1), put(3, 2, 1)  # within one layer
    put(0, 3, 2), put(2, 4, 2)  # mixed: two dimensions
    put(0, 1, 3), put(2, 1, 3)  # mixed: one dimension, non-adjacent layers
    return X, h


def test_decompose_clusters_of_a_planted_clustering():
    X, h = planted_kinds()
    labels = cluster_neurons(correlation(X, progress=False), 0.3)
    out = clu.decompose_clusters(labels, h)
    assert out == {
        "n_neurons": 20,
        "n_clusters": 15,
        "n_multi": 4,
        "total_redundant": 5,
        "carry_clusters": 1,
        "carry_redundant": 2,
        "within_layer_clusters": 1,
        "within_layer_redundant": 1,
        "mixed_clusters": 2,
        "mixed_redundant": 2,
    }


def test_decompose_clusters_edge_cases():
    h = 4
    # one dimension at layers 0 and 2 (gap) -> mixed; at 1 and 2 -> carry
    labels = np.arange(12)
    labels[8 + 3] = labels[0 + 3]
    labels[4 + 2] = labels[8 + 2]
    out = clu.decompose_clusters(labels, h)
    assert (out["mixed_clusters"], out["carry_clusters"], out["within_layer_clusters"]) == (1, 1, 0)
    # everything in one cluster: mixed, all but one neuron redundant
    out = clu.decompose_clusters(np.zeros(12, dtype=int), h)
    assert out["mixed_redundant"] == out["total_redundant"] == 11
    # all singletons: nothing redundant; a single layer: every cluster is within_layer
    assert clu.decompose_clusters(np.arange(12), h)["total_redundant"] == 0
    out = clu.decompose_clusters(np.array([5, 5, 7, 7]), 4)
    assert (out["within_layer_clusters"], out["within_layer_redundant"]) == (2, 2)
    with pytest.raises(ValueError, match="n_hidden"):
        clu.decompose_clusters(np.arange(10), 4)


def test_decompose_clusters_parts_add_up_at_scale():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4000, size=13 * 768)
    out = clu.decompose_clusters(labels, 768)
    parts = sum(out[f"{k}_redundant"] for k in clu.CLUSTER_KINDS)
    assert parts == out["total_redundant"] == labels.size - np.unique(labels).size
    assert sum(out[f"{k}_clusters"] for k in clu.CLUSTER_KINDS) == out["n_multi"]
