"""What a score means: baselines, intervals over test instances, spreads over seeds.

* :func:`majority_baseline` -- the score of always predicting the most frequent training
  label (or, for regression, the training mean), the floor every probe must clear.
* :func:`bootstrap_interval` -- a percentile bootstrap interval of a test score. Instances
  of one sentence are not independent (a token task has many words per sentence), so the
  resampling unit is the *group* (sentence) when groups are given: a resample draws
  sentences with replacement and scores all their words. When several seeds' predictions
  are given, every resample scores each seed and averages them, so the interval is that of
  the seed-averaged score.
* :func:`seed_summary` -- mean, standard deviation, minimum and maximum over seeds.
* :func:`within_delta` -- the one test of "within delta of a reference" (``delta`` a
  fraction), used by the LayerSelector, the minimal-set search and the verdicts.
* :func:`paired_bootstrap` -- ratios score(subset) / score(reference) over resamples of test
  sentences, the same resample for both probes and every seed, and :func:`decide_within`,
  which turns them into "within", "outside" or "inconclusive".
* :func:`score_noise` -- the bootstrap standard deviation of a score, the size of the
  sampling noise to compare a tolerance ``delta`` with.
"""

from __future__ import annotations

import functools
import numbers
import warnings

import numpy as np
import pandas as pd

from ..constraints import check

__all__ = [
    "bootstrap_interval",
    "decide_within",
    "majority_baseline",
    "paired_bootstrap",
    "score",
    "score_noise",
    "seed_summary",
    "within_delta",
]


def score(y_true, y_pred, metric: str = "accuracy") -> float:
    """Score predictions (see :func:`redundancy.analysis.probes.score`)."""
    from .probes import score as _score

    return _score(y_true, y_pred, metric)


def majority_baseline(y_train, y_eval, metric: str = "accuracy", *, regression: bool = False):
    """Score of the constant prediction learnt from ``y_train``, on ``y_eval``.

    Classification: the most frequent training label (ties: the smallest code). Regression:
    the training mean (its Pearson or Spearman correlation is 0 by definition).

    Returns
    -------
    float
    """
    y_train, y_eval = np.asarray(y_train), np.asarray(y_eval)
    if y_train.size == 0 or y_eval.size == 0:
        raise ValueError("majority_baseline needs non-empty training and evaluation labels.")
    if regression:
        return score(y_eval, np.full(y_eval.shape, float(y_train.mean())), metric)
    majority = int(np.bincount(y_train.astype(np.int64)).argmax())
    return score(y_eval, np.full(y_eval.shape, majority, dtype=np.int64), metric)


def _group_index(groups, n: int, caller: str = "bootstrap_interval") -> tuple[np.ndarray, int]:
    if groups is None:
        return np.arange(n), n
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(
            f"The 'groups' parameter of {caller} must have one entry per instance "
            f"({n}). Got shape {groups.shape} instead."
        )
    _, index = np.unique(groups, return_inverse=True)
    return index.ravel(), int(index.max()) + 1


def bootstrap_interval(
    y_true,
    predictions,
    *,
    metric: str = "accuracy",
    groups=None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    random_state: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a (seed-averaged) test score.

    Parameters
    ----------
    y_true : array of shape (n,)
        Gold labels (or targets).
    predictions : array of shape (n,) or (n_seeds, n)
        Predictions of one probe, or of the same probe trained with several seeds.
    metric : str
        See :func:`redundancy.analysis.probes.score`.
    groups : array of shape (n,), optional
        Resampling unit of each instance (usually ``acts.sentence_index``); None resamples
        instances.
    n_bootstrap : int
        Resamples (at least 1).
    confidence : float
        Level of the interval, in (0, 1).
    random_state : int

    Returns
    -------
    (low, high) : tuple of float
    """
    caller = "bootstrap_interval"
    n_bootstrap = check("n_bootstrap", n_bootstrap, caller)
    confidence = check("confidence", confidence, caller)
    if n_bootstrap < 1:
        raise ValueError(f"The 'n_bootstrap' parameter of {caller} must be >= 1. Got 0 instead.")
    y_true = np.asarray(y_true)
    preds = np.atleast_2d(np.asarray(predictions))
    if preds.shape[1] != y_true.shape[0]:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{y_true.shape[0]}, {preds.shape[1]}]"
        )
    index, n_groups = _group_index(groups, y_true.shape[0])
    rng = np.random.default_rng(random_state)
    counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_bootstrap)
    if metric == "accuracy":
        stats = _accuracy_resamples(y_true, preds, index, n_groups, counts)
    else:
        stats = _generic_resamples(y_true, preds, index, counts, metric)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _accuracy_resamples(y_true, preds, index, n_groups, counts) -> np.ndarray:
    """Seed-averaged accuracy of every resample, from per-group hit counts (no loops)."""
    sizes = np.bincount(index, minlength=n_groups).astype(np.float64)
    hits = np.stack(
        [np.bincount(index, weights=(p == y_true), minlength=n_groups) for p in preds]
    )  # (n_seeds, n_groups)
    weighted_sizes = counts @ sizes  # (n_boot,)
    return (counts @ hits.T / weighted_sizes[:, None]).mean(axis=1)


def _generic_resamples(y_true, preds, index, counts, metric) -> np.ndarray:
    """Any metric: expand each resample's group counts to instance weights by repetition."""
    order = np.argsort(index, kind="stable")
    starts = np.searchsorted(index[order], np.arange(counts.shape[1]))
    ends = np.append(starts[1:], len(order))
    out = np.empty(counts.shape[0])
    for b, c in enumerate(counts):
        picked = np.concatenate([np.tile(order[s:e], k) for s, e, k in zip(starts, ends, c) if k])
        out[b] = np.mean([score(y_true[picked], p[picked], metric) for p in preds])
    return out


def seed_summary(values) -> dict:
    """``mean``, ``std`` (ddof=1; 0 for one seed), ``min``, ``max`` and ``n`` of per-seed values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("seed_summary needs at least one value.")
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def summarize(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """:func:`seed_summary` of column ``value`` for each group of ``by`` (a tidy table)."""
    rows = []
    for keys, part in df.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        rows.append({**dict(zip(by, keys)), **seed_summary(part[value])})
    return pd.DataFrame(rows)


# ------------------------------------------------------------ within delta of a reference

_METRIC_NAMES = ("accuracy", "f1", "matthews", "pearson", "spearman")


def _check_fraction_delta(delta, caller: str):
    """``delta`` as a float (or float array) in [0, 1); a percent gets a pointed message."""
    d = np.asarray(delta, dtype=np.float64)
    if d.dtype.kind not in "fiu" or not np.all(np.isfinite(d)) or np.any(d < 0) or np.any(d >= 1):
        hint = " (a fraction: 0.01 for 1%)" if np.all(np.isfinite(d)) and np.any(d >= 1) else ""
        raise ValueError(
            f"The 'delta' parameter of {caller} must be a number in [0, 1){hint}. "
            f"Got {delta!r} instead."
        )
    return float(d) if d.ndim == 0 else d


def within_delta(score, reference, delta):
    """Is ``score`` within ``delta`` of ``reference``: ``score >= (1 - delta) * reference``.

    The single definition of "keeps the reference's score up to a relative loss ``delta``"
    used throughout the library (LayerSelector, minimal sets, verdicts), so that every
    place draws the line at the same side of equality.

    Parameters
    ----------
    score, reference : float or array-like
        Scores (fractions), broadcast against each other.
    delta : float or array-like
        Allowed relative loss, a fraction in [0, 1) (0.01 for the paper's 1%).

    Returns
    -------
    bool or numpy.ndarray of bool
        A plain bool when every input is a scalar.
    """
    delta = _check_fraction_delta(delta, "within_delta")
    out = np.greater_equal(score, (1.0 - np.asarray(delta)) * np.asarray(reference))
    return bool(out) if np.ndim(out) == 0 else out


# --------------------------------------------------------------- paired bootstrap


def _check_resamples(n_resamples, caller: str) -> int:
    if (
        isinstance(n_resamples, bool)
        or not isinstance(n_resamples, numbers.Integral)
        or n_resamples < 1
    ):
        raise ValueError(
            f"The 'n_resamples' parameter of {caller} must be a positive int. "
            f"Got {n_resamples!r} instead."
        )
    return int(n_resamples)


def _as_seed_rows(values, n: int, name: str, caller: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim not in (1, 2) or arr.shape[-1] != n:
        raise ValueError(
            f"The {name!r} parameter of {caller} must have shape (n,) or (n_seeds, n) with "
            f"n = {n} instances. Got shape {arr.shape} instead. (Found input variables with "
            "inconsistent numbers of samples.)"
        )
    return np.atleast_2d(arr)


def _resample_counts(random_state, n_groups: int, n_resamples: int) -> np.ndarray:
    """How often each group is drawn in each resample, ``(n_resamples, n_groups)``.

    A chapter decides dozens of settings on the same split with the same seed, hence the
    same resamples: for an int seed they are drawn once and shared (read-only; about 0.16 s
    for 1,000 resamples of 2,000 sentences), which changes no number."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return _shared_counts(int(random_state), int(n_groups), int(n_resamples))
    return _draw_counts(np.random.default_rng(random_state), n_groups, n_resamples)


def _draw_counts(rng, n_groups: int, n_resamples: int) -> np.ndarray:
    return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_resamples)


@functools.lru_cache(maxsize=4)
def _shared_counts(seed: int, n_groups: int, n_resamples: int) -> np.ndarray:
    counts = _draw_counts(np.random.default_rng(seed), n_groups, n_resamples)
    counts = counts.astype(np.int32) if n_groups < 2**31 else counts
    counts.flags.writeable = False
    return counts


def _resampled_scores(y_true, rows, index, n_groups, counts, metric) -> np.ndarray:
    """Score of every row of ``rows`` (n_rows, n) on every resample: (n_resamples, n_rows).

    Accuracy: per-group hit counts times the resample counts (one matrix product). Other
    metrics: each resample's instances repeated by their group's count, scored directly.
    """
    if metric == "accuracy":
        sizes = np.bincount(index, minlength=n_groups).astype(np.float64)
        hits = np.stack(
            [np.bincount(index, weights=(r == y_true), minlength=n_groups) for r in rows]
        )  # (n_rows, n_groups); a loop over seeds only
        out = np.empty((counts.shape[0], rows.shape[0]))
        for b0 in range(0, counts.shape[0], 256):  # bounded temporaries for many groups
            c = counts[b0 : b0 + 256].astype(np.float64)
            out[b0 : b0 + 256] = (c @ hits.T) / (c @ sizes)[:, None]
        return out
    out = np.empty((counts.shape[0], rows.shape[0]))
    arange = np.arange(y_true.shape[0])
    for b, c in enumerate(counts):
        picked = np.repeat(arange, c[index])
        out[b] = [score(y_true[picked], r[picked], metric) for r in rows]
    return out


def paired_bootstrap(
    y_true,
    preds,
    reference,
    groups=None,
    *,
    n_resamples: int = 1000,
    random_state: int = 0,
    metric: str = "accuracy",
) -> np.ndarray:
    """Bootstrap ratios score(subset) / score(reference) on shared resamples of the test set.

    A subset probe and the reference probe (the oracle) are scored on the *same* resample
    of test sentences, and so are all seeds, so the ratios carry the sampling noise of the
    comparison (paired: the noise both probes share cancels) rather than of two unrelated
    intervals.

    Parameters
    ----------
    y_true : array of shape (n,)
        Gold labels.
    preds : array of shape (n,) or (n_seeds, n)
        Test predictions of the subset probe, one row per seed.
    reference : array of shape (n,) or (n_seeds, n)
        Test predictions of the reference probe for the same seeds; a 1-D reference is
        used for every seed.
    groups : array of shape (n,), optional
        Resampling unit of each instance (the sentence id, as in
        :func:`bootstrap_interval`); None resamples instances.
    n_resamples : int, default=1000
    random_state : int, default=0
    metric : str, default="accuracy"
        Any metric of :func:`redundancy.analysis.probes.score`. Accuracy is computed from
        per-sentence hit counts in one matrix product; the others score every resample
        directly (slower: about a millisecond per resample and seed).

    Returns
    -------
    numpy.ndarray of shape (n_resamples, n_seeds), float64
        ``score(preds[s]) / score(reference[s])`` on each resample. A resample on which the
        reference scores 0 or less has no meaningful ratio: NaN there, with a warning
        (only a reference near chance, or a correlation metric near 0, gets there).
    """
    caller = "paired_bootstrap"
    n_resamples = _check_resamples(n_resamples, caller)
    if metric not in _METRIC_NAMES:
        raise ValueError(
            f"The 'metric' parameter of {caller} must be one of {_METRIC_NAMES}. "
            f"Got {metric!r} instead."
        )
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(
            f"The 'y_true' parameter of {caller} must be a non-empty 1-D array. "
            f"Got shape {y_true.shape} instead."
        )
    n = y_true.shape[0]
    P = _as_seed_rows(preds, n, "preds", caller)
    R = _as_seed_rows(reference, n, "reference", caller)
    if R.shape[0] == 1 and P.shape[0] > 1:
        R = np.broadcast_to(R, P.shape)
    if R.shape != P.shape:
        raise ValueError(
            f"The 'reference' parameter of {caller} must have one row per seed of 'preds' "
            f"({P.shape[0]}) or be 1-D. Got shape {np.shape(reference)} instead."
        )
    index, n_groups = _group_index(groups, n, caller)
    counts = _resample_counts(random_state, n_groups, n_resamples)
    both = _resampled_scores(y_true, np.concatenate([P, R]), index, n_groups, counts, metric)
    num, den = both[:, : P.shape[0]], both[:, P.shape[0] :]
    ratios = np.full(num.shape, np.nan)
    np.divide(num, den, out=ratios, where=den > 0)
    bad = int(np.count_nonzero(~(den > 0)))
    if bad:
        warnings.warn(
            f"{caller}: the reference scores 0 or less on {bad} of {den.size} "
            "(resample, seed) pairs; their ratios are NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
    return ratios


def decide_within(ratios, delta, *, confidence: float = 0.95) -> dict:
    """Decide whether a subset keeps its reference's score up to ``delta``, with its noise.

    The percentile interval of the ratios pooled over resamples *and* seeds (so it holds
    both the sampling noise of the test set and the spread between seeds) is compared with
    ``1 - delta`` by :func:`within_delta`:

    * ``"within"`` when even its lower end is within delta (``low >= 1 - delta``);
    * ``"outside"`` when even its upper end is not (``high < 1 - delta``);
    * ``"inconclusive"`` otherwise: the data cannot tell.

    Parameters
    ----------
    ratios : array-like of any shape
        Usually :func:`paired_bootstrap`'s ``(n_resamples, n_seeds)`` ratios. NaN entries
        (resamples with no meaningful ratio) are left out.
    delta : float
        Allowed relative loss, a fraction in [0, 1).
    confidence : float, default=0.95
        Level of the two-sided interval.

    Returns
    -------
    dict
        ``{"low", "high", "mean"}`` (floats: the interval's ends and the mean ratio) and
        ``"decision"``: ``"within"``, ``"outside"`` or ``"inconclusive"``.
    """
    caller = "decide_within"
    delta = _check_fraction_delta(delta, caller)
    if np.ndim(delta):
        raise ValueError(f"The 'delta' parameter of {caller} must be a scalar. Got {delta!r}.")
    confidence = check("confidence", confidence, caller)
    r = np.asarray(ratios, dtype=np.float64).ravel()
    r = r[~np.isnan(r)]
    if r.size == 0:
        raise ValueError(
            f"The 'ratios' parameter of {caller} holds no ratio (empty or all NaN); see "
            "paired_bootstrap."
        )
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(r, [alpha, 1.0 - alpha])
    if within_delta(low, 1.0, delta):
        decision = "within"
    elif not within_delta(high, 1.0, delta):
        decision = "outside"
    else:
        decision = "inconclusive"
    return {"low": float(low), "high": float(high), "mean": float(r.mean()), "decision": decision}


def score_noise(
    y_true,
    preds,
    groups=None,
    *,
    n_resamples: int = 1000,
    random_state: int = 0,
    metric: str = "accuracy",
) -> float:
    """Bootstrap standard deviation of a test score (a fraction), resampling sentences.

    The size of the sampling noise of the score: a tolerance ``delta`` much smaller than
    ``score_noise / score`` cannot be resolved by this test set. For ``(n_seeds, n)``
    predictions it is the noise of the seed-averaged score (the same resample for every
    seed).

    Returns
    -------
    float
        Standard deviation (``ddof=1``; 0 for one resample) of the resampled scores.
    """
    caller = "score_noise"
    n_resamples = _check_resamples(n_resamples, caller)
    if metric not in _METRIC_NAMES:
        raise ValueError(
            f"The 'metric' parameter of {caller} must be one of {_METRIC_NAMES}. "
            f"Got {metric!r} instead."
        )
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(
            f"The 'y_true' parameter of {caller} must be a non-empty 1-D array. "
            f"Got shape {y_true.shape} instead."
        )
    P = _as_seed_rows(preds, y_true.shape[0], "preds", caller)
    index, n_groups = _group_index(groups, y_true.shape[0], caller)
    counts = _resample_counts(random_state, n_groups, n_resamples)
    stats = _resampled_scores(y_true, P, index, n_groups, counts, metric).mean(axis=1)
    return float(stats.std(ddof=1)) if stats.size > 1 else 0.0
