"""Neuron ranking (Linguistic Correlation Analysis) and the minimal neuron set.

The ranking is the one of Dalvi et al. (AAAI 2019) used by Dalvi et al. (2020): from a
trained probe's weights ``W`` (classes x neurons), for a mass fraction ``p`` every class
takes its highest-``|w|`` neurons until their ``|w|`` sum reaches ``p`` of that class's
total ``|w|``; neurons are ordered by the ``p`` at which they first enter the union of
the classes' selections, ``p`` rising in steps of ``step`` (0.001).

The minimal set retrains probes on the top-``k`` neurons for growing ``k`` (a grid of
percentages of *all* the model's neurons) and keeps the first ``k`` whose dev score is
within ``delta`` percent of a base score.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._utils import progress_bar
from ..constraints import check
from .metrics import within_delta
from .probes import LinearProbe, evaluate_probes, train_probes

logger = logging.getLogger(__name__)

__all__ = [
    "FS_GRID",
    "MinimalSetResult",
    "PERCENT_GRID",
    "grid_sizes",
    "lca_entry_steps",
    "lca_ranking",
    "minimal_set",
    "minimal_sets",
    "rank_neurons",
]


def _round(values) -> tuple[float, ...]:
    return tuple(float(round(v, 1)) for v in values)


#: Percentages of all neurons tried by the minimal-set search (0.1..10 by 0.1, 15..50 by 5,
#: 60..90 by 10).
PERCENT_GRID = _round(
    [i / 10 for i in range(1, 101)] + list(range(15, 51, 5)) + list(range(60, 91, 10))
)
#: Percentages of all neurons tried by the FS step of LayerSelector + CC + FS.
FS_GRID = _round(
    [0.1, 0.2, 0.3, 0.4, 0.5]
    + list(range(1, 11))
    + list(range(15, 51, 5))
    + list(range(60, 91, 10))
)


# ----------------------------------------------------------------------------- LCA
def _check_weight(weight, caller):
    W = np.asarray(weight, dtype=np.float64)
    if W.ndim == 1:
        W = W[None, :]
    if W.ndim != 2 or W.shape[1] == 0:
        raise ValueError(
            f"The 'weight' parameter of {caller} must be a 2-D (n_classes, n_neurons) array, "
            f"usually probe.weight. Got shape {np.shape(weight)} instead."
        )
    if not np.all(np.isfinite(W)):
        raise ValueError(f"The 'weight' parameter of {caller} must be finite.")
    return np.abs(W)


def _check_step(step, caller):
    if not (isinstance(step, (int, float)) and 0 < step <= 1):
        raise ValueError(
            f"The 'step' parameter of {caller} must be a float in (0, 1]. Got {step!r} instead."
        )
    return float(step), int(round(1.0 / step))


def lca_entry_steps(weight, *, step: float = 0.001) -> np.ndarray:
    """Grid index ``m`` (``p = m * step``) at which each neuron first enters the selection.

    For class ``c`` with ``|w|`` sorted in decreasing order (ties: lower id first) and
    cumulative sums ``S_j``, the neuron at sorted position ``j`` is selected at mass ``p``
    iff ``S_{j-1} < p * S_total`` (the prefix before it has not reached ``p`` yet). Its
    entry is the smallest such ``m`` over classes. Neurons that never enter (zero weight
    everywhere) get ``round(1 / step) + 1``.

    Returns
    -------
    ndarray of int64, shape (n_neurons,)
    """
    A = _check_weight(weight, "lca_entry_steps")
    step, M = _check_step(step, "lca_entry_steps")
    C, k = A.shape
    order = np.argsort(-A, axis=1, kind="stable")
    cs = np.cumsum(np.take_along_axis(A, order, axis=1), axis=1)
    total = cs[:, -1:]
    before = np.concatenate([np.zeros((C, 1)), cs[:, :-1]], axis=1)  # S_{j-1}
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.floor(before / (step * total)) + 1
    m = np.where(total > 0, m, M + 1)
    m = np.clip(np.nan_to_num(m, nan=M + 1), 1, M + 1)
    # Exact check with the same float expression a direct loop uses: (m * step) * total.
    # Lower m while the previous grid point already passes; raise it while m fails.
    for _ in range(2):
        prev_ok = (m > 1) & (before < ((m - 1) * step) * total)
        m = np.where(prev_ok, m - 1, m)
        fail = (m <= M) & ~(before < (m * step) * total)
        m = np.where(fail, m + 1, m)
    entry_sorted = m.astype(np.int64)
    entry = np.full((C, k), M + 1, dtype=np.int64)
    np.put_along_axis(entry, order, entry_sorted, axis=1)
    return entry.min(axis=0)


def lca_ranking(weight, *, step: float = 0.001) -> np.ndarray:
    """Order neurons by when they enter the LCA selection as the mass ``p`` rises.

    Parameters
    ----------
    weight : ndarray of shape (n_classes, n_neurons)
        Probe weights, usually ``probe.weight`` of the oracle probe (1 row for regression,
        where the order is simply decreasing ``|w|``).
    step : float
        Increment of the mass fraction ``p`` (paper: 0.001).

    Returns
    -------
    ndarray of int64, shape (n_neurons,)
        Positions in the probe's column space, most important first (use
        :func:`rank_neurons` for global neuron ids). Neurons entering at the same step
        are ordered by larger ``max_c |w_c|``, then lower position; neurons with zero
        weight in every class come last.
    """
    A = _check_weight(weight, "lca_ranking")
    entry = lca_entry_steps(A, step=step)
    return np.lexsort((np.arange(A.shape[1]), -A.max(axis=0), entry)).astype(np.int64)


def rank_neurons(probe: LinearProbe, *, step: float = 0.001) -> np.ndarray:
    """Global neuron ids of ``probe.neurons`` in LCA order (most important first)."""
    return np.asarray(probe.neurons, dtype=np.int64)[lca_ranking(probe.weight, step=step)]


# --------------------------------------------------------------------- minimal set
def grid_sizes(grid, n_total: int, n_available: int | None = None) -> list[tuple[float, int]]:
    """``(percent, k)`` pairs: ``k = max(1, round(percent / 100 * n_total))``, deduplicated.

    With ``n_available``, sizes are capped there and the grid stops at the first capped one.
    """
    out, seen = [], set()
    for pct in grid:
        k = max(1, int(math.floor(pct * n_total / 100 + 0.5)))
        if n_available is not None:
            k = min(k, n_available)
        if k not in seen:
            seen.add(k)
            out.append((float(pct), k))
        if n_available is not None and k == n_available:
            break
    return out


@dataclass
class MinimalSetResult:
    """Outcome of :func:`minimal_set`.

    Attributes
    ----------
    k : int
        Size of the chosen set (the first grid size whose dev score passes).
    percent : float
        Grid percentage (of ``n_total``) that gave ``k``.
    neurons : ndarray of int64
        The chosen neurons (global ids), in ranking order.
    probe : LinearProbe
        Probe trained on them.
    dev_score : float
    base_score, threshold : float
        ``threshold = base_score * (1 - delta / 100)``; a size passes when dev >= threshold
        (:func:`~redundancy.analysis.metrics.within_delta`).
    passed : bool
        False when no grid size passed (then the whole ordering is used).
    curve : pandas.DataFrame
        Columns ``k``, ``percent``, ``dev_score``, ``passed`` for every size evaluated
        (joint rounds may evaluate a few sizes beyond the chosen one).
    """

    k: int
    percent: float
    neurons: np.ndarray
    probe: LinearProbe
    dev_score: float
    base_score: float
    threshold: float
    passed: bool
    curve: pd.DataFrame = field(repr=False)


def _check_ordering(ordering, caller) -> np.ndarray:
    ordering = np.asarray(ordering, dtype=np.int64)
    if ordering.ndim != 1 or ordering.size == 0:
        raise ValueError(
            f"The 'ordering' parameter of {caller} must be a non-empty 1-D array of neuron "
            f"ids (for example rank_neurons(oracle_probe)). Got shape {ordering.shape} instead."
        )
    if np.unique(ordering).size != ordering.size:
        raise ValueError(f"The 'ordering' parameter of {caller} must not repeat neurons.")
    return ordering


def minimal_set(X_train, y_train, X_dev, y_dev, ordering, *, base_score: float, **kwargs):
    """Smallest top-``k`` of ``ordering`` whose retrained probe keeps ``base_score``.

    Tries ``k`` for each grid percentage in order and returns the first one with dev score
    ``>= base_score * (1 - delta / 100)`` (:func:`~redundancy.analysis.metrics.within_delta`). Probes for consecutive grid sizes are trained
    jointly, one pass over ``X_train`` per round (see :func:`minimal_sets`); the answer is
    the same as the one-by-one search because each probe is trained exactly as it would be
    alone.

    Parameters
    ----------
    X_train, y_train, X_dev, y_dev : arrays
        Full activation matrices (all neurons) and labels, as for :func:`train_probes`.
    ordering : array of int
        Global neuron ids, most important first (usually :func:`rank_neurons` of the
        oracle probe).
    base_score : float
        Dev score to keep (usually the oracle probe's).
    **kwargs
        ``delta`` (allowed loss in percent of ``base_score``, paper: 1), ``grid``
        (percentages of ``n_total``: :data:`PERCENT_GRID` or :data:`FS_GRID`), ``n_total``
        (default ``X_train.shape[1]``), ``metric``, ``round_size`` (grid sizes trained
        together per pass), ``progress``, and :func:`train_probes` options
        (``epochs``, ``random_state``, ``kind``, ...); see :func:`minimal_sets`.
    """
    seed = kwargs.pop("random_state", 42)
    return minimal_sets(
        X_train,
        y_train,
        X_dev,
        y_dev,
        {0: ordering},
        base_scores={0: base_score},
        seeds={0: seed},
        caller="minimal_set",
        **kwargs,
    )[0]


def minimal_sets(
    X_train,
    y_train,
    X_dev,
    y_dev,
    orderings: dict,
    *,
    base_scores: dict,
    seeds: dict | None = None,
    delta: float = 1.0,
    grid=PERCENT_GRID,
    n_total: int | None = None,
    metric: str | None = None,
    round_size: int | None = None,
    progress: bool = True,
    caller: str = "minimal_sets",
    **probe_kwargs,
) -> dict:
    """:func:`minimal_set` for several orderings at once (e.g. one per seed), sharing every
    pass over ``X_train``: each round trains the next grid sizes of every search that has
    not found its set yet, each with its own seed (``seeds[key]``), and every search stops
    at its own first passing size, exactly as it would alone.

    A round takes, for each search, the next ``round_size`` sizes; by default (None) as
    many as fit in ``n_total`` neurons together (at least one): many small sizes cost a
    pass little more than one, since the pass is bound by reading ``X_train``, and later
    rounds hold fewer, larger sizes. The answer does not depend on ``round_size``.

    Returns
    -------
    dict
        ``{key: MinimalSetResult}``, keys of ``orderings``.
    """
    orders = {key: _check_ordering(o, caller) for key, o in orderings.items()}
    if round_size is not None and not (isinstance(round_size, int) and round_size >= 1):
        raise ValueError(
            f"The 'round_size' parameter of {caller} must be a positive int or None. "
            f"Got {round_size!r} instead."
        )
    delta = check("delta", delta, caller)
    seeds = seeds or dict.fromkeys(orders, 42)
    n_total = int(n_total) if n_total is not None else int(X_train.shape[1])
    searches = {
        key: _Search(o, float(base_scores[key]), delta / 100, grid_sizes(grid, n_total, o.size))
        for key, o in orders.items()
    }
    bar = progress_bar(
        total=sum(len(s.sizes) for s in searches.values()),
        desc="minimal set",
        unit="size",
        progress=progress,
        leave=False,
    )
    with bar:
        while any(s.todo for s in searches.values()):
            batch = {
                (key, k): s for key, s in searches.items() for _, k in s.next(round_size, n_total)
            }
            subsets = {(key, k): s.ordering[:k] for (key, k), s in batch.items()}
            state = {name: seeds[name[0]] for name in subsets}
            probes = train_probes(
                X_train, y_train, subsets, random_state=state, progress=False, **probe_kwargs
            )
            scores = evaluate_probes(probes, X_dev, y_dev, metric)
            for (key, k), s in batch.items():
                s.record(k, scores[(key, k)], probes[(key, k)])
            bar.update(len(batch))
    fill = dict(X_train=X_train, y_train=y_train, X_dev=X_dev, y_dev=y_dev, metric=metric)
    return {
        key: s.result(
            n_total, base_scores[key], {**probe_kwargs, "random_state": seeds[key]}, fill, caller
        )
        for key, s in searches.items()
    }


class _Search:
    """The state of one minimal-set search over a grid of sizes."""

    def __init__(self, ordering, base: float, delta: float, sizes: list):
        self.ordering, self.sizes = ordering, sizes
        self.base, self.delta = base, delta  # delta: a fraction
        self.threshold = base * (1.0 - delta)  # for display; passing is within_delta
        self.pos, self.rows, self.chosen, self.last = 0, [], None, None
        self.percent = {k: pct for pct, k in sizes}

    @property
    def todo(self) -> bool:
        return self.chosen is None and self.pos < len(self.sizes)

    def next(self, n: int | None, budget: int) -> list:
        """The next ``n`` sizes, or (``n`` None) as many as sum to at most ``budget``
        neurons (at least one)."""
        if not self.todo:
            return []
        if n is None:
            total = np.cumsum([k for _, k in self.sizes[self.pos :]])
            n = max(1, int(np.searchsorted(total, budget, side="right")))
        batch = self.sizes[self.pos : self.pos + n]
        self.pos += len(batch)
        return batch

    def record(self, k: int, dev: float, probe) -> None:
        ok = within_delta(dev, self.base, self.delta)
        self.rows.append({"k": k, "percent": self.percent[k], "dev_score": dev, "passed": ok})
        self.last = (self.percent[k], k, probe, dev)
        if ok and self.chosen is None:  # later sizes of the same round stay in the curve
            self.chosen = self.last

    def result(self, n_total, base_score, probe_kwargs, data, caller) -> MinimalSetResult:
        passed = self.chosen is not None
        if not passed:
            self.chosen = self._fallback(n_total, probe_kwargs, data, caller, base_score)
        pct, k, probe, dev = self.chosen
        logger.info(
            "minimal set: %d neurons (%.1f%%), dev %.4f >= %.4f", k, pct, dev, self.threshold
        )
        return MinimalSetResult(
            k=int(k),
            percent=float(pct),
            neurons=self.ordering[:k].copy(),
            probe=probe,
            dev_score=float(dev),
            base_score=float(base_score),
            threshold=self.threshold,
            passed=passed,
            curve=pd.DataFrame(self.rows, columns=["k", "percent", "dev_score", "passed"]),
        )

    def _fallback(self, n_total, probe_kwargs, data, caller, base_score):
        """No grid size passed: every ordered neuron (trained here unless it was the last
        grid size)."""
        warnings.warn(
            f"No grid size reached {self.threshold:.4f} (base {base_score:.4f}); {caller} "
            f"returns all {self.ordering.size} ordered neurons.",
            stacklevel=4,
        )
        k = self.ordering.size
        if self.sizes[-1][1] == k:
            return self.last
        probe = train_probes(
            data["X_train"], data["y_train"], [self.ordering], progress=False, **probe_kwargs
        )["0"]
        dev = evaluate_probes({"p": probe}, data["X_dev"], data["y_dev"], data["metric"])["p"]
        pct = 100.0 * k / n_total
        self.rows.append(
            {
                "k": k,
                "percent": pct,
                "dev_score": dev,
                "passed": within_delta(dev, self.base, self.delta),
            }
        )
        return (pct, k, probe, dev)
