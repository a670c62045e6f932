"""Debiased CKA and the uncertainty of CKA between layers (exported by :mod:`.similarity`).

* :func:`debiased_cka` -- linear CKA from the unbiased HSIC estimator (Song et al., 2012),
  in feature space.
* :func:`cka_uncertainty` -- linear and debiased CKA between every pair of layers on a
  subsample, bootstrap intervals over instances and a permutation null, from one Gram
  matrix per layer.
"""

from __future__ import annotations

import logging
import time

import numpy as np

logger = logging.getLogger("redundancy.analysis.similarity")

__all__ = ["cka_uncertainty", "debiased_cka"]


# ---------------------------------------------------------------- debiased CKA


def _debiased_hsic_features(cross_sq, a, b, n: int) -> float:
    """Unbiased HSIC (times ``n (n - 3)``) of linear kernels on column-centred data.

    ``cross_sq = ||X^T Y||_F^2``, ``a`` and ``b`` the squared row norms of ``X`` and ``Y``
    (the diagonals of their Gram matrices). Song et al.'s estimator with ``K~`` the Gram
    matrix with its diagonal set to zero: ``tr(K~ L~) = ||X^T Y||^2 - a.b``, and for centred
    columns ``1^T K~ 1 = -sum(a)`` and ``K~ 1 = -a``.
    """
    return float(cross_sq - n / (n - 2.0) * (a @ b) + a.sum() * b.sum() / ((n - 1.0) * (n - 2.0)))


def debiased_cka(X, Y) -> float:
    """Linear CKA with the unbiased HSIC estimator (Song et al., 2012; Nguyen et al., 2021).

    Linear CKA (:func:`~redundancy.analysis.similarity.linear_cka`) uses the biased HSIC estimator ``tr(K_c L_c)``, whose
    bias grows with the number of features relative to the number of instances: two
    *independent* random representations of 100 instances with 500 features each have a
    linear CKA near 0.8. The unbiased estimator leaves out the diagonal of the Gram
    matrices (an instance compared with itself), which removes that bias; CKA built from it
    is near 0 for independent data. It is a ratio of unbiased estimates, so it can be
    slightly negative when the true value is near 0 (clip at 0 for display, and say so).

    Computed in feature space in float64: ``||X^T Y||_F^2``, the row norms and their sums,
    never an ``n x n`` Gram matrix (O(n p q) time).

    Parameters
    ----------
    X : array-like of shape (n, p)
    Y : array-like of shape (n, q)
        The same ``n >= 4`` instances in both.

    Returns
    -------
    float
        In about [-1, 1] (1 for representations equal up to rotation and scale). 0 when
        either side is constant over the instances (no variance to compare).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(
            "The 'X' and 'Y' parameters of debiased_cka must be 2-D arrays (n_instances, "
            f"n_features). Got shapes {X.shape} and {Y.shape} instead."
        )
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{X.shape[0]}, "
            f"{Y.shape[0]}]."
        )
    n = X.shape[0]
    if n < 4:
        raise ValueError(
            f"debiased_cka needs at least 4 instances (the unbiased HSIC estimator divides "
            f"by n - 3). Got {n} instead."
        )
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    a, b = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)
    xy = _debiased_hsic_features(np.linalg.norm(X.T @ Y) ** 2, a, b, n)
    xx = _debiased_hsic_features(np.linalg.norm(X.T @ X) ** 2, a, a, n)
    yy = _debiased_hsic_features(np.linalg.norm(Y.T @ Y) ** 2, b, b, n)
    if xx <= 0 or yy <= 0:
        return 0.0
    return float(xy / np.sqrt(xx * yy))


# ------------------------------------------------------- CKA with its uncertainty


def _weight_moments(W: np.ndarray):
    """Power sums ``p_k = sum_i w_i^k`` (k = 1..4) of every row of ``W``, float64."""
    W = W.astype(np.float64)
    return [np.sum(W**k, axis=1) for k in (1, 2, 3, 4)]


def _pair_hsic(Ka, Kb, kda, kdb, KWa, KWb, W, W2, V, p):
    """Biased (weighted-centred) and unbiased (weighted U-statistic) HSIC of one pair of
    layers on every weighting (row) of ``W``; see :func:`cka_uncertainty`.

    ``Ka``, ``Kb``: float32 Gram matrices with zero diagonal; ``kda``, ``kdb``: their
    diagonals; ``KWa = Ka @ W.T`` (float64); ``V = [W; W^2]`` (float32).
    """
    nb = W.shape[0]
    MV = (Ka * Kb) @ V.T  # (m, 2 nb): M w and M w^2 for every weighting
    t1 = np.einsum("bi,ib->b", W, MV[:, :nb], dtype=np.float64)  # w^T M w
    t2 = np.einsum("bi,ib->b", W, MV[:, nb:], dtype=np.float64)  # w^T M w^2
    t3 = np.einsum("bi,ib->b", W2, MV[:, nb:], dtype=np.float64)  # (w^2)^T M w^2
    prod = KWa * KWb  # (m, nb) float64
    c1 = np.einsum("bi,ib->b", W, prod)
    c2 = np.einsum("bi,ib->b", W2, prod)
    sa = np.einsum("bi,ib->b", W, KWa)
    sb = np.einsum("bi,ib->b", W, KWb)
    p1, p2, p3, p4 = p
    # unbiased: average over tuples of *distinct source instances*, weighted by their counts
    A = t1 / (p1 * p1 - p2)
    C = (c1 - t2) / (p1**3 - 3 * p1 * p2 + 2 * p3)
    Bq = (sa * sb - 4 * (c2 - t3) - 2 * t3) / (
        p1**4 - 6 * p1 * p1 * p2 + 3 * p2 * p2 + 8 * p1 * p3 - 6 * p4
    )
    unbiased = A + Bq - 2 * C
    # biased: the same sums with the diagonal put back, centred with the weighted mean
    dd = W2 @ (kda * kdb)
    Fa = KWa + (W * kda).T
    Fb = KWb + (W * kdb).T
    full_c = np.einsum("bi,ib->b", W, Fa * Fb)
    qa = sa + W2 @ kda
    qb = sb + W2 @ kdb
    biased = (t1 + dd) - 2.0 / p1 * full_c + qa * qb / (p1 * p1)
    return biased, unbiased


def _ratio(num, da, db):
    den = np.sqrt(np.clip(da, 0, None) * np.clip(db, 0, None))
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def cka_uncertainty(
    X,
    n_layers: int | None = None,
    *,
    n_instances: int = 2000,
    n_resamples: int = 200,
    n_permutations: int = 200,
    random_state: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Linear and debiased CKA between every pair of layers, with intervals and a null.

    On a random subsample of ``n_instances`` rows (read in sorted order, so a memory map
    reads only those rows) this gives, for every pair of layers,

    * ``"linear"`` -- linear CKA (:func:`~redundancy.analysis.similarity.linear_cka`; biased upward when instances are few
      relative to features);
    * ``"debiased"`` -- CKA from the unbiased HSIC estimator (:func:`debiased_cka`). It is
      near 0 for unrelated layers and, being a ratio of unbiased estimates, can be
      slightly *negative* there: clip at 0 for display and say so;
    * ``"linear_low"``, ``"linear_high"``, ``"debiased_low"``, ``"debiased_high"`` --
      percentile bootstrap intervals (level ``confidence``) over instances: every
      resample draws ``n_instances`` rows of the subsample with replacement, the same
      resample for all pairs;
    * ``"null_high"``, ``"null_mean"`` -- the ``confidence`` quantile and the mean of the
      debiased CKA when the rows of one layer are shuffled relative to the other (a
      permutation null: what CKA gives with the instance correspondence destroyed). Each
      permutation shuffles every layer once; both orders of a pair are pooled, so a pair
      has ``2 n_permutations`` null draws.

    Duplicated rows and the debiased estimator: the unbiased HSIC leaves out every pair of
    an instance with itself, but a bootstrap resample holds copies of the same instance,
    and a copy paired with its twin is the very self-pair the estimator must exclude
    (counting it brings back the upward bias). Resamples are therefore scored as weighted
    U-statistics over the *source* rows: each of HSIC's three averages runs over tuples of
    distinct source rows only, weighted by how often the resample drew each row and
    normalised by the total weight of such tuples. With all weights 1 this is exactly
    Song et al.'s estimator. The linear CKA of a resample is the plain plug-in value on
    the resampled rows (duplicates included); since a resample holds only about 63% of
    distinct rows and linear CKA's upward bias grows as instances get fewer, its
    resamples sit above the point estimate (for unrelated layers of 50 features and 300
    instances: point 0.15, resamples 0.23 to 0.27). Its interval is therefore the
    percentile interval shifted by the bootstrap's estimate of that bias (mean of the
    resamples minus the point estimate), clipped to [0, 1].

    Conventions: the diagonal is 1 in ``linear``, ``debiased`` and their intervals (a layer
    against itself); the null's diagonal is a layer against a shuffled copy of itself. A
    layer that is constant on the subsample has CKA 0 (and null 0) with every other
    layer. No entry is NaN.

    Cost: per layer one ``n_instances``-square float32 Gram matrix (16 MB at 2,000); per
    pair one product of the Grams' element-wise product with the ``2 (n_resamples + 1)``
    resample weightings; per permutation a gather of each permuted Gram's upper half and
    one ``(n_layers, n_layers)`` product over it. Measured on 2 CPU cores shared with
    other jobs (load 9-12), 2,000 instances: 7 layers x 384 took 7.5 s for 200 resamples
    and 0.6 s a permutation; 13 x 768 took 34 s for 200 resamples and 0.8 s a
    permutation.

    Parameters
    ----------
    X : array-like of shape (n, n_layers * n_hidden) or (n, n_layers, n_hidden)
        Activations, usually ``acts.X``; may be a memory map.
    n_layers : int, optional
        Required for 2-D input.
    n_instances : int, default=2000
        Rows used (all rows when there are fewer); at least 4.
    n_resamples, n_permutations : int, default=200
        Bootstrap resamples (at least 1) and permutations (0 skips the permutation null;
        ``null_high`` and ``null_mean`` are then zeros). At 2,000 instances a permutation
        costs several resamples (it touches every entry of every Gram matrix), so the null
        dominates the time at the defaults; fewer permutations (each gives two draws a
        pair) trade the precision of ``null_high`` for time.
    random_state : int, default=0
        Seeds the subsample, the resamples and the permutations.
    confidence : float, default=0.95

    Returns
    -------
    dict of numpy.ndarray of shape (n_layers, n_layers), float64
        Keys ``linear``, ``debiased``, ``linear_low``, ``linear_high``, ``debiased_low``,
        ``debiased_high``, ``null_high``, ``null_mean``; plus ``"rows"`` (the subsample's
        row indices, int64).
    """
    from ..constraints import check
    from .similarity import _check_layers, _flat_view

    caller = "cka_uncertainty"
    X2, inferred = _flat_view(X, caller=caller)
    n_layers = _check_layers(X2.shape[1], n_layers or inferred, caller=caller)
    for name, value, low in (
        ("n_instances", n_instances, 4),
        ("n_resamples", n_resamples, 1),
        ("n_permutations", n_permutations, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(
                f"The {name!r} parameter of {caller} must be an int >= {low}. "
                f"Got {value!r} instead."
            )
    confidence = check("confidence", confidence, caller)
    n, d = X2.shape
    m = min(int(n_instances), n)
    if m < 4:
        raise ValueError(f"{caller} needs at least 4 instances (rows). Got {n} instead.")
    t0 = time.perf_counter()
    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)
    S = np.asarray(X2[rows], dtype=np.float64)
    S -= S.mean(axis=0)
    L, h = n_layers, d // n_layers

    grams, kd = _zero_diagonal_grams(S, L)
    del S
    counts = rng.multinomial(m, np.full(m, 1.0 / m), size=int(n_resamples))
    biased, unbiased = _all_pairs_hsic(grams, kd, counts)
    diag = np.arange(L)
    out = _cka_summaries(biased, unbiased, confidence)
    t_boot = time.perf_counter() - t0

    out["null_high"], out["null_mean"] = _permutation_null(
        grams, unbiased[diag, diag, 0], int(n_permutations), confidence, rng
    )
    out["rows"] = rows.astype(np.int64)
    logger.info(
        "cka_uncertainty: %d layers x %d, %d instances, %d resamples in %.1f s, "
        "%d permutations in %.1f s",
        L,
        h,
        m,
        n_resamples,
        t_boot,
        n_permutations,
        time.perf_counter() - t0 - t_boot,
    )
    return out


def _zero_diagonal_grams(S, n_layers: int):
    """Per layer the float32 Gram matrix of the centred rows ``S`` with its diagonal set to
    zero (``K~``: an instance compared with itself left out), and that diagonal (float64)."""
    m, h = S.shape[0], S.shape[1] // n_layers
    grams = np.empty((n_layers, m, m), dtype=np.float32)
    kd = np.empty((n_layers, m))
    for layer in range(n_layers):
        Z = np.ascontiguousarray(S[:, layer * h : (layer + 1) * h], dtype=np.float32)
        np.matmul(Z, Z.T, out=grams[layer])
        kd[layer] = np.einsum("ij,ij->i", Z, Z, dtype=np.float64)
        grams[layer].flat[:: m + 1] = 0.0
    return grams, kd


def _all_pairs_hsic(grams, kd, counts):
    """Biased and unbiased HSIC of every pair of layers, ``(L, L, 1 + n_resamples)``:
    weighting 0 is the subsample itself, the others the bootstrap counts."""
    L, m, _ = grams.shape
    W = np.vstack([np.ones((1, m)), counts]).astype(np.float32)
    W2 = W * W
    V = np.vstack([W, W2])
    Wd, W2d = W.astype(np.float64), W2.astype(np.float64)
    p = _weight_moments(W)
    KW = [(grams[layer] @ W.T).astype(np.float64) for layer in range(L)]
    biased = np.empty((L, L, W.shape[0]))
    unbiased = np.empty((L, L, W.shape[0]))
    for a in range(L):
        for b in range(a, L):
            bb, ub = _pair_hsic(grams[a], grams[b], kd[a], kd[b], KW[a], KW[b], Wd, W2d, V, p)
            biased[a, b] = biased[b, a] = bb
            unbiased[a, b] = unbiased[b, a] = ub
    return biased, unbiased


def _cka_summaries(biased, unbiased, confidence: float) -> dict:
    """Point values and bootstrap intervals of both CKAs from the HSIC tables."""
    diag = np.arange(biased.shape[0])
    lin = _ratio(biased, biased[diag, diag][:, None], biased[diag, diag][None, :])
    deb = _ratio(unbiased, unbiased[diag, diag][:, None], unbiased[diag, diag][None, :])
    lin[diag, diag] = 1.0
    deb[diag, diag] = 1.0
    alpha = (1.0 - confidence) / 2.0
    out = {"linear": lin[..., 0].copy(), "debiased": deb[..., 0].copy()}
    for key, vals in (("linear", lin[..., 1:]), ("debiased", deb[..., 1:])):
        lo, hi = np.quantile(vals, [alpha, 1.0 - alpha], axis=-1)
        if key == "linear":
            # duplicated rows shift linear CKA's resamples upward (see cka_uncertainty):
            # the interval is re-centred by the bootstrap estimate of that shift
            shift = vals.mean(axis=-1) - out[key]
            lo, hi = np.clip(lo - shift, 0.0, 1.0), np.clip(hi - shift, 0.0, 1.0)
        out[f"{key}_low"], out[f"{key}_high"] = lo, hi
    return out


def _permutation_null(grams, self_hsic, n_permutations, confidence, rng, row_block=256):
    """Quantile and mean of debiased CKA with one side's rows shuffled (see
    :func:`cka_uncertainty`). ``grams``: zero-diagonal Grams; ``self_hsic``: each layer's
    unbiased HSIC with itself, as :func:`_pair_hsic` gives it (HSIC_u itself, so times
    ``n (n - 3)`` it matches the closed form used here).

    Per permutation ``P`` the expensive term is ``tr(K~_a P K~_b P^T)`` for every pair: it is
    accumulated over blocks of rows, each block's rows of every ``P K~_b P^T`` (from the
    block's first column on: both matrices are symmetric) gathered by a compiled loop
    (:mod:`._cka_kernel`), then one small matrix product per block.
    """
    from ._cka_kernel import permuted_rows

    L, m, _ = grams.shape
    if n_permutations == 0:
        return np.zeros((L, L)), np.zeros((L, L))
    r = grams.sum(axis=2, dtype=np.float64)  # K~ 1 per layer, (L, m)
    tot = r.sum(axis=1)  # 1^T K~ 1
    # Song et al.'s closed form gives n (n - 3) HSIC_u; self_hsic is HSIC_u
    s = self_hsic * (m * (m - 3.0))
    draws = np.empty((n_permutations, L, L))
    buf = np.empty((L, row_block, m), dtype=np.float32)
    # both matrices are symmetric: rows i0:i1 need only columns >= i0, the square block on
    # the diagonal counted once and the columns beyond it twice
    blocks = []
    for i0 in range(0, m, row_block):
        i1 = min(i0 + row_block, m)
        k, w = i1 - i0, m - i0
        own = np.ascontiguousarray(grams[:, i0:i1, i0:])
        own[:, :, k:] *= 2.0
        blocks.append((i0, i1, own.reshape(L, k * w)))
    for p in range(n_permutations):
        perm = rng.permutation(m)
        trace = np.zeros((L, L))
        for i0, i1, own in blocks:
            k, w = i1 - i0, m - i0
            part = buf.reshape(-1)[: L * k * w].reshape(L, k, w)
            permuted_rows(grams, perm, i0, i1, part)
            trace += own @ part.reshape(L, k * w).T
        cross = r @ r[:, perm].T
        num = trace + np.outer(tot, tot) / ((m - 1.0) * (m - 2.0)) - 2.0 / (m - 2.0) * cross
        draws[p] = _ratio(num, s[:, None], s[None, :])
    pooled = np.concatenate([draws, draws.transpose(0, 2, 1)])
    return np.quantile(pooled, confidence, axis=0), pooled.mean(axis=0)
