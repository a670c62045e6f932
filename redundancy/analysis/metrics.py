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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..constraints import check

__all__ = ["bootstrap_interval", "majority_baseline", "seed_summary", "score"]


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


def _group_index(groups, n: int) -> tuple[np.ndarray, int]:
    if groups is None:
        return np.arange(n), n
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(
            f"The 'groups' parameter of bootstrap_interval must have one entry per instance "
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
