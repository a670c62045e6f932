"""Tests for redundancy.analysis.similarity: streaming moments, correlations and linear CKA."""

from types import SimpleNamespace

import numpy as np
import pytest

from redundancy.analysis import _cka_stats
from redundancy.analysis import similarity as sim
from redundancy.analysis.similarity import (
    Moments,
    center_gram,
    cka,
    correlation,
    cross_cka,
    gram_linear,
    layer_cka,
    linear_cka,
    moments,
)


def layered_acts(n=240, n_layers=4, n_hidden=6, seed=0, offset=3.0):
    """Activations whose layers are noisy linear maps of the previous one (so CKA varies)."""
    rng = np.random.default_rng(seed)
    layers = [rng.standard_normal((n, n_hidden))]
    for _ in range(n_layers - 1):
        mix = rng.standard_normal((n_hidden, n_hidden)) / np.sqrt(n_hidden)
        layers.append(layers[-1] @ mix + 0.7 * rng.standard_normal((n, n_hidden)))
    acts = np.stack(layers, axis=1) + offset
    return acts.astype(np.float32)


def reference_corr(X):
    with np.errstate(divide="ignore", invalid="ignore"):  # constant columns -> NaN -> 0
        r = np.corrcoef(np.asarray(X, dtype=np.float64).T)
    r = np.nan_to_num(r)
    np.fill_diagonal(r, 1.0)
    return r


# --------------------------------------------------------------------------- moments


def test_moments_match_numpy():
    X = layered_acts().reshape(240, -1)
    m = moments(X, chunk_size=50, progress=False)
    ref = X.astype(np.float64)
    assert isinstance(m, Moments) and m.n == 240 and m.n_features == X.shape[1]
    np.testing.assert_allclose(m.mean, ref.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(m.cov, np.cov(ref.T), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.std, ref.std(axis=0, ddof=1), rtol=1e-5)
    assert m.mean.dtype == np.float64 and m.cov.dtype == np.float64
    assert np.array_equal(m.cov, m.cov.T)


def test_moments_do_not_modify_input():
    X = layered_acts().reshape(240, -1)
    before = X.copy()
    moments(X, chunk_size=64, progress=False)
    np.testing.assert_array_equal(X, before)


def test_shift_avoids_cancellation_for_large_means():
    # Mean 1e4, spread 1: sum(x^2) - n mean^2 in float32 would lose every digit.
    rng = np.random.default_rng(1)
    X = (1e4 + rng.standard_normal((2000, 5))).astype(np.float32)
    m = moments(X, chunk_size=300, progress=False)
    np.testing.assert_allclose(m.cov, np.cov(X.astype(np.float64).T), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_chunking_independence(chunk_size):
    X = layered_acts().reshape(240, -1)
    base = moments(X, chunk_size=240, progress=False)
    m = moments(X, chunk_size=chunk_size, progress=False)
    np.testing.assert_allclose(m.cov, base.cov, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(m.mean, base.mean, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(correlation(m), correlation(base), atol=1e-6)


def test_float64_precision_matches_numpy_closely():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((500, 12)) * rng.uniform(0.1, 10, 12) + 5
    m = moments(X, chunk_size=77, precision="float64", progress=False)
    np.testing.assert_allclose(m.cov, np.cov(X.T), rtol=1e-11, atol=1e-12)


def test_torch_path_matches_numpy_path(monkeypatch):
    X = layered_acts().reshape(240, -1)
    a = moments(X, chunk_size=50, progress=False)
    monkeypatch.setattr(sim, "_use_torch", lambda device: True)
    b = moments(X, chunk_size=50, device="cpu", progress=False)
    np.testing.assert_allclose(b.cov, a.cov, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-7)
    assert np.array_equal(b.cov, b.cov.T)
    acts = layered_acts()
    np.testing.assert_allclose(
        cross_cka(acts, acts[:, :2], progress=False),
        layer_cka(acts, progress=False)[:, :2],
        atol=1e-6,
    )


def test_moments_input_errors():
    with pytest.raises(ValueError, match="at least 2 rows"):
        moments(np.ones((1, 4), dtype=np.float32), progress=False)
    with pytest.raises(ValueError, match="2-D array"):
        moments(np.ones(5), progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        moments(np.ones((3, 4)), chunk_size=0, progress=False)
    with pytest.raises(ValueError, match="precision"):
        moments(np.ones((3, 4)), precision="float16", progress=False)
    X = np.ones((4, 3))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        moments(X, progress=False)


# ----------------------------------------------------------------------- correlation


def test_correlation_matches_corrcoef():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 30)).astype(np.float32)
    X[:, 5] = -2 * X[:, 3] + 0.1 * X[:, 5]
    corr = correlation(X, chunk_size=64, progress=False)
    assert corr.dtype == np.float32 and corr.shape == (30, 30)
    np.testing.assert_allclose(corr, reference_corr(X), atol=2e-6)
    assert np.array_equal(corr, corr.T)
    assert np.all(np.diagonal(corr) == 1.0)


def test_constant_neurons_give_zero_not_nan():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((100, 6)).astype(np.float32)
    X[:, 2] = 7.25
    X[:, 4] = 0.0
    corr = correlation(X, chunk_size=30, progress=False)
    assert not np.isnan(corr).any()
    np.testing.assert_array_equal(corr[2, [0, 1, 3, 4, 5]], 0.0)
    np.testing.assert_array_equal(corr[:, 4][[0, 1, 2, 3, 5]], 0.0)
    assert corr[2, 2] == 1.0 and corr[4, 4] == 1.0
    np.testing.assert_allclose(corr, reference_corr(X), atol=2e-6)


def test_float16_memmap_input(tmp_path):
    acts = layered_acts(n=300)
    path = tmp_path / "acts.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=acts.shape)
    mm[:] = acts
    mm.flush()
    del mm
    X16 = np.load(path, mmap_mode="r")  # read-only memory map: nothing may write into it
    corr = correlation(X16, chunk_size=64, progress=False)
    ref = reference_corr(np.asarray(X16, dtype=np.float64).reshape(300, -1))
    np.testing.assert_allclose(corr, ref, atol=2e-6)
    np.testing.assert_allclose(
        layer_cka(X16, progress=False),
        layer_cka(np.asarray(X16, dtype=np.float32), progress=False),
        atol=1e-6,
    )


def test_accepts_3d_and_activations_objects():
    acts = layered_acts()
    flat = correlation(acts.reshape(240, -1), progress=False)
    np.testing.assert_array_equal(correlation(acts, progress=False), flat)
    holder = SimpleNamespace(acts=acts)
    np.testing.assert_array_equal(correlation(holder, progress=False), flat)
    np.testing.assert_array_equal(
        layer_cka(holder, progress=False), layer_cka(acts, progress=False)
    )


# ------------------------------------------------------------------------------ CKA


def test_feature_space_and_gram_forms_agree():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((50, 8))
    Y = X @ rng.standard_normal((8, 5)) + rng.standard_normal((50, 5))
    assert linear_cka(X, Y) == pytest.approx(cka(gram_linear(X), gram_linear(Y)), rel=1e-10)


def test_center_gram_equals_centring_features():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((20, 4)) + 3
    Xc = X - X.mean(axis=0)
    np.testing.assert_allclose(center_gram(gram_linear(X)), Xc @ Xc.T, atol=1e-10)


def test_layer_cka_matches_gram_formula():
    acts = layered_acts(n=120, n_layers=4, n_hidden=5)
    got = layer_cka(acts, chunk_size=32, progress=False)
    A = acts.astype(np.float64)
    ref = np.array(
        [[cka(gram_linear(A[:, a]), gram_linear(A[:, b])) for b in range(4)] for a in range(4)]
    )
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert got.shape == (4, 4) and got.dtype == np.float64
    np.testing.assert_array_equal(got, got.T)
    np.testing.assert_array_equal(np.diagonal(got), 1.0)
    # neighbouring layers are more alike than distant ones in this planted chain
    assert got[0, 1] > got[0, 3]


def test_layer_cka_from_moments_and_2d():
    acts = layered_acts()
    m = moments(acts, progress=False)
    np.testing.assert_allclose(
        layer_cka(m, n_layers=4), layer_cka(acts.reshape(240, -1), 4, progress=False), atol=0
    )
    with pytest.raises(ValueError, match="n_layers"):
        layer_cka(m)
    with pytest.raises(ValueError, match="divide"):
        layer_cka(m, n_layers=5)
    with pytest.raises(ValueError, match="disagrees"):
        layer_cka(acts, n_layers=2, progress=False)


def test_cka_self_is_one():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((60, 7))
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert cka(gram_linear(X), gram_linear(X)) == pytest.approx(1.0)


def test_cka_invariances():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((80, 6))
    Y = X @ rng.standard_normal((6, 6)) + 0.5 * rng.standard_normal((80, 6))
    base = linear_cka(X, Y)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert linear_cka(X * 3.7, Y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(X @ Q, Y) == pytest.approx(base, rel=1e-10)
    # the streaming estimator has the same invariances
    acts = np.stack([X, Y, X @ Q * 0.25], axis=1).astype(np.float32)
    table = layer_cka(acts, progress=False)
    assert table[0, 2] == pytest.approx(1.0, abs=1e-6)
    assert table[1, 2] == pytest.approx(table[0, 1], abs=1e-6)
    # ...but not invariance to a general invertible linear map
    G = np.diag([1.0, 10.0, 0.1, 5.0, 1.0, 0.3]) @ rng.standard_normal((6, 6))
    assert abs(np.linalg.det(G)) > 1e-6
    assert abs(linear_cka(X @ G, Y) - base) > 1e-3


def test_cross_cka_self_equals_layer_cka():
    acts = layered_acts()
    np.testing.assert_allclose(
        cross_cka(acts, acts, chunk_size=64, progress=False),
        layer_cka(acts, chunk_size=64, progress=False),
        atol=1e-6,
    )


def test_cross_cka_two_models_matches_reference():
    a = layered_acts(n=150, n_layers=3, n_hidden=5, seed=1)
    b = np.stack(
        [a.reshape(150, -1)[:, :7] + 0.1, a.reshape(150, -1)[:, 8:15] * -1.0], axis=1
    ).astype(np.float32)  # 2 layers x 7 neurons, related to a
    got = cross_cka(a.reshape(150, -1), b.reshape(150, -1), 3, 2, chunk_size=40, progress=False)
    ref = np.array([[linear_cka(a[:, i], b[:, j]) for j in range(2)] for i in range(3)])
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        cross_cka(a, b[:100], progress=False)


# ------------------------------------------------------------------ debiased CKA


def _song_hsic(K, L):
    """Song et al. (2012) unbiased HSIC, straight from the Gram matrices."""
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones(n)
    return (
        np.sum(K * L)
        + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ K @ L @ one)
    ) / (n * (n - 3))


def _song_cka(X, Y):
    K, L = X @ X.T, Y @ Y.T
    return _song_hsic(K, L) / np.sqrt(_song_hsic(K, K) * _song_hsic(L, L))


def test_debiased_cka_matches_the_gram_reference():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))
    Y = X @ rng.standard_normal((6, 9)) + rng.standard_normal((40, 9)) + 3.0  # uncentred
    assert sim.debiased_cka(X, Y) == pytest.approx(_song_cka(X, Y), rel=1e-10)
    assert sim.debiased_cka(X, X @ rng.standard_normal((6, 6))) < 1.0
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert sim.debiased_cka(X, 2.5 * X @ Q) == pytest.approx(1.0, abs=1e-12)
    assert sim.debiased_cka(X, np.ones((40, 3))) == 0.0
    with pytest.raises(ValueError, match="at least 4"):
        sim.debiased_cka(X[:3], Y[:3])


def test_debiased_cka_removes_the_bias_of_few_instances():
    rng = np.random.default_rng(1)
    lin, deb = [], []
    for _ in range(5):
        X, Y = rng.standard_normal((100, 500)), rng.standard_normal((100, 500))
        lin.append(sim.linear_cka(X, Y))
        deb.append(sim.debiased_cka(X, Y))
    assert min(lin) > 0.75  # independent, yet linear CKA says "similar"
    assert max(np.abs(deb)) < 0.06 and abs(np.mean(deb)) < 0.02


def test_weighted_hsic_is_the_u_statistic_over_distinct_source_rows():
    # brute force: every ordered tuple of distinct source rows, weighted by the counts
    import itertools

    rng = np.random.default_rng(2)
    n, w = 7, np.array([2.0, 0.0, 1.0, 3.0, 1.0, 0.0, 1.0])
    X = rng.standard_normal((n, 3))
    Y = X[:, :2] + rng.standard_normal((n, 2))
    K, L = X @ X.T, Y @ Y.T
    sums = {}
    for k in (2, 3, 4):
        num = den = 0.0
        for t in itertools.permutations(range(n), k):
            wt = np.prod(w[list(t)])
            if k == 2:
                term = K[t[0], t[1]] * L[t[0], t[1]]
            elif k == 3:
                term = K[t[0], t[1]] * L[t[0], t[2]]
            else:
                term = K[t[0], t[1]] * L[t[2], t[3]]
            num += wt * term
            den += wt
        sums[k] = num / den
    brute = sums[2] + sums[4] - 2 * sums[3]
    Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    W = np.vstack([np.ones(n), w])
    V = np.vstack([W, W * W]).astype(np.float32)
    biased, unbiased = _cka_stats._pair_hsic(
        Kt.astype(np.float32), Lt.astype(np.float32), np.diag(K), np.diag(L),
        Kt @ W.T, Lt @ W.T, W, W * W, V, _cka_stats._weight_moments(W),
    )  # fmt: skip
    assert unbiased[1] == pytest.approx(brute, rel=1e-5)
    assert unbiased[0] == pytest.approx(_song_hsic(K, L), rel=1e-5)  # weights 1: Song
    # the biased one is the plug-in value on the resample, duplicates included
    idx = np.repeat(np.arange(n), w.astype(int))
    Xe, Ye = X[idx] - X[idx].mean(0), Y[idx] - Y[idx].mean(0)
    assert biased[1] == pytest.approx(np.linalg.norm(Xe.T @ Ye) ** 2, rel=1e-5)


def _layers(n, h, rng):
    z = rng.standard_normal((n, h))
    a = z + 0.5 * rng.standard_normal((n, h))
    return np.hstack([z, a, z @ np.linalg.qr(rng.standard_normal((h, h)))[0],
                      rng.standard_normal((n, h)), np.full((n, h), 2.0)])  # fmt: skip


def test_cka_uncertainty_point_values_intervals_and_null():
    rng = np.random.default_rng(3)
    n, h = 500, 20
    X = _layers(n, h, rng).astype(np.float32)
    out = sim.cka_uncertainty(X, 5, n_instances=300, n_resamples=100, n_permutations=40)
    keys = ("linear", "debiased", "linear_low", "linear_high", "debiased_low",
            "debiased_high", "null_high", "null_mean")  # fmt: skip
    for key in keys:
        assert out[key].shape == (5, 5) and np.all(np.isfinite(out[key])), key
        np.testing.assert_allclose(out[key], out[key].T, atol=1e-12)
    rows = out["rows"]
    assert rows.size == 300 and np.all(np.diff(rows) > 0)
    S = X[rows].astype(np.float64)
    blocks = [S[:, i * h : (i + 1) * h] for i in range(5)]
    assert out["linear"][0, 1] == pytest.approx(sim.linear_cka(blocks[0], blocks[1]), rel=1e-4)
    assert out["debiased"][0, 1] == pytest.approx(sim.debiased_cka(blocks[0], blocks[1]), rel=1e-4)
    assert out["debiased"][0, 3] == pytest.approx(sim.debiased_cka(blocks[0], blocks[3]), abs=1e-4)
    # planted: layer 2 is layer 0 rotated -> 1; layer 4 constant -> 0 off the diagonal
    assert out["debiased"][0, 2] == pytest.approx(1.0, abs=1e-5)
    assert out["linear"][0, 2] == pytest.approx(1.0, abs=1e-5)
    assert np.all(out["debiased"][4, :4] == 0) and np.all(out["linear"][4, :4] == 0)
    assert np.all(np.diag(out["debiased"]) == 1) and np.all(np.diag(out["linear_low"]) == 1)
    # intervals hold the point estimates (related and unrelated pairs)
    for key in ("linear", "debiased"):
        for a, b in ((0, 1), (0, 3), (1, 3)):
            assert out[f"{key}_low"][a, b] <= out[key][a, b] <= out[f"{key}_high"][a, b]
    # independent layers: debiased near 0 and inside the null; linear biased upward
    assert abs(out["debiased"][0, 3]) < out["null_high"][0, 3] + 0.02
    assert out["linear"][0, 3] > 0.03 > abs(out["debiased"][0, 3])
    assert abs(out["null_mean"][0, 3]) < 0.01 and 0 < out["null_high"][0, 3] < 0.05
    assert out["debiased"][0, 1] > out["null_high"][0, 1] + 0.5


def test_cka_uncertainty_bootstrap_of_the_debiased_estimator_is_not_pushed_up():
    # unrelated layers with many features: the resamples' debiased CKA stays centred on 0
    # (duplicated rows' self-pairs excluded), linear CKA's resamples would not
    rng = np.random.default_rng(4)
    X = rng.standard_normal((200, 2 * 100)).astype(np.float32)
    out = sim.cka_uncertainty(X, 2, n_instances=200, n_resamples=200, n_permutations=0)
    assert out["debiased_low"][0, 1] < 0 < out["debiased_high"][0, 1]
    assert out["debiased_high"][0, 1] < 0.06
    assert np.all(out["null_high"] == 0) and np.all(out["null_mean"] == 0)
    with pytest.raises(ValueError, match="n_instances"):
        sim.cka_uncertainty(X, 2, n_instances=3)
