"""Efficient feature-based transfer: LayerSelector + correlation clustering + feature selection.

The procedure of Dalvi et al. (2020), section "Efficient feature-based transfer":

1. **LayerSelector** -- the smallest ``l`` whose incremental probe (layers ``0..l``)
   has a dev score ``>= oracle * (1 - delta_ls / 100)`` (:func:`~redundancy.analysis.metrics.within_delta`);
   later layers are dropped.
2. **CC** -- correlation clustering at threshold ``t`` (0.3) on the neurons of layers
   ``0..l``; one neuron per cluster is kept.
3. **FS** -- a probe on the kept neurons gives ``s_CC``; its neurons are ranked with LCA
   and the smallest ``k`` of :data:`~redundancy.ranking.FS_GRID` (percent of *all* the
   model's neurons) whose retrained probe has dev ``>= s_CC * (1 - delta_fs / 100)`` wins.

The paper reports ``(delta_ls, delta_fs)`` in ``{(3, 1), (2, 1), (1, 1)}``;
:func:`ccfs_sweep` runs them sharing the incremental probes, the clustering of each
selected layer and the FS search of each (layer, delta_fs); :func:`ccfs_seeds` runs the
sweep for several seeds and both branches, training every CC probe in one pass over the
data and searching every FS set in shared passes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .._utils import check_choice, stable_hash
from ..constraints import check
from .metrics import within_delta
from .probes import (
    KINDS,
    LinearProbe,
    _default_metric,
    evaluate_probes,
    incremental_subsets,
    train_probe,
    train_probes,
)
from .ranking import FS_GRID, minimal_set, minimal_sets, rank_neurons

logger = logging.getLogger(__name__)

__all__ = [
    "IncrementalScores",
    "LayerSelector",
    "TransferResult",
    "ccfs",
    "ccfs_seeds",
    "ccfs_sweep",
    "incremental_scores",
    "select_layer",
]

STEPS = ("oracle", "ls", "cc", "fs")


# ------------------------------------------------------------------ LayerSelector
def _check_delta(delta, name, caller):
    return check(name, delta, caller, param="delta")


def select_layer(incremental_scores, oracle_score: float | None = None, delta: float = 3.0) -> int:
    """Smallest ``l`` with ``incremental_scores[l] >= oracle_score * (1 - delta / 100)``.

    The comparison is :func:`~redundancy.analysis.metrics.within_delta` with the fraction
    ``delta / 100``.

    Parameters
    ----------
    incremental_scores : sequence of float
        Dev scores of the probes on layers ``0..l`` for ``l = 0..L-1`` (the last one is
        the oracle), usually :attr:`IncrementalScores.dev`.
    oracle_score : float, optional
        Dev score of the oracle; default the last incremental score.
    delta : float
        Allowed loss in percent (paper: 3, 2 or 1).

    Returns
    -------
    int
        The selected layer; the last layer when none passes.
    """
    scores = np.asarray(incremental_scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(
            "The 'incremental_scores' parameter of select_layer must be a non-empty 1-D "
            f"sequence of dev scores. Got shape {scores.shape} instead."
        )
    delta = _check_delta(delta, "delta", "select_layer")
    oracle = float(scores[-1] if oracle_score is None else oracle_score)
    passing = np.flatnonzero(within_delta(scores, oracle, delta / 100))
    return int(passing[0]) if passing.size else int(scores.size - 1)


class LayerSelector:
    """Scikit-learn style LayerSelector.

    Parameters
    ----------
    delta : float
        Allowed loss in percent of the oracle's dev score (paper: 3).

    Attributes
    ----------
    layer_ : int
        Selected layer ``l`` (keep layers ``0..l``).
    threshold_ : float
        ``oracle * (1 - delta / 100)``.
    scores_ : ndarray
        The incremental dev scores given to :meth:`fit`.
    """

    def __init__(self, delta: float = 3.0):
        self.delta = delta

    def fit(self, incremental_dev_scores, oracle_dev_score: float | None = None):
        """Select the layer from incremental dev scores; returns ``self``."""
        self.scores_ = np.asarray(incremental_dev_scores, dtype=np.float64)
        self.layer_ = select_layer(self.scores_, oracle_dev_score, self.delta)
        oracle = self.scores_[-1] if oracle_dev_score is None else float(oracle_dev_score)
        self.threshold_ = float(oracle) * (1 - float(self.delta) / 100)
        return self

    def neurons(self, n_hidden: int) -> np.ndarray:
        """Global ids of the neurons of layers ``0..layer_``."""
        if not hasattr(self, "layer_"):
            raise RuntimeError("This LayerSelector is not fitted yet; call fit(...) first.")
        return np.arange((self.layer_ + 1) * int(n_hidden), dtype=np.int64)

    def transform(self, X, n_hidden: int):
        """The columns of layers ``0..layer_`` of ``X`` (a view, no copy)."""
        return X[:, : self.neurons(n_hidden).size]

    def __repr__(self) -> str:
        return f"LayerSelector(delta={self.delta!r})"


# ---------------------------------------------------------------- incremental run
@dataclass
class IncrementalScores:
    """Dev/test scores of the incremental probes (layers ``0..l``); the last is the oracle."""

    dev: list
    test: list
    metric: str = "accuracy"

    @property
    def oracle_dev(self) -> float:
        return float(self.dev[-1])

    @property
    def oracle_test(self) -> float:
        return float(self.test[-1])


def incremental_scores(
    X_train,
    y_train,
    X_dev,
    y_dev,
    X_test,
    y_test,
    *,
    n_layers: int,
    n_hidden: int,
    metric: str | None = None,
    progress: bool = True,
    **probe_kwargs,
) -> IncrementalScores:
    """Train the ``n_layers`` incremental probes jointly and score them on dev and test."""
    kind = probe_kwargs.get("kind", "classification")
    metric = metric or _default_metric(kind)
    subsets = incremental_subsets(n_layers, n_hidden)
    probes = train_probes(X_train, y_train, subsets, progress=progress, **probe_kwargs)
    dev = evaluate_probes(probes, X_dev, y_dev, metric)
    test = evaluate_probes(probes, X_test, y_test, metric)
    return IncrementalScores(
        dev=[float(dev[k]) for k in subsets], test=[float(test[k]) for k in subsets], metric=metric
    )


# --------------------------------------------------------------------- result
@dataclass
class TransferResult:
    """Outcome of LayerSelector + CC + FS for one ``(delta_ls, delta_fs)`` pair.

    Attributes
    ----------
    layer : int
        Selected layer (layers ``0..layer`` kept).
    delta_ls, delta_fs : float
    threshold : float or None
        Clustering threshold; None for the branch without clustering (LS + FS).
    n_all, n_ls, n_cc, n_fs : int
        Neurons: in the whole model, after LayerSelector, after CC (``n_ls`` without
        clustering), after FS.
    neurons : list of int
        Global ids kept after FS (LCA order).
    cc_neurons : list of int
        Global ids kept after CC (sorted).
    dev, test : dict
        Scores per step ``{"oracle", "ls", "cc", "fs"}``.
    fs_percent : float
        FS grid percentage chosen.
    metric : str
    meta : dict
        Free-form (task, model, seeds, ...).
    probe : LinearProbe or None
        The final (FS) probe, as trained by the search; not part of :meth:`to_json`, nor of
        equality (None after :meth:`from_json`).
    """

    layer: int
    delta_ls: float
    delta_fs: float
    threshold: float | None
    n_all: int
    n_ls: int
    n_cc: int
    n_fs: int
    neurons: list
    cc_neurons: list
    dev: dict
    test: dict
    fs_percent: float
    metric: str = "accuracy"
    meta: dict = field(default_factory=dict)
    probe: LinearProbe | None = field(default=None, repr=False, compare=False)

    @property
    def branch(self) -> str:
        """``"LS+CC+FS"``, or ``"LS+FS"`` when no clustering ran (``threshold`` is None)."""
        return "LS+FS" if self.threshold is None else "LS+CC+FS"

    @property
    def fraction_kept(self) -> float:
        """Share of the model's neurons kept after FS: ``n_fs / n_all``."""
        return self.n_fs / self.n_all

    @property
    def score_kept(self) -> float:
        """Final test score as a share of the oracle's (NaN when the oracle scores 0)."""
        oracle = self.test["oracle"]
        return self.test["fs"] / oracle if oracle else float("nan")

    def to_json(self) -> str:
        """JSON text; :meth:`from_json` gives back an equal result (without the probe)."""
        record = asdict(replace(self, probe=None))
        del record["probe"]
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TransferResult:
        return cls(**json.loads(text))

    def as_row(self) -> dict:
        """One flat row for a results table: deltas, branch, selected layer, neurons after
        each step, dev and test scores per step, ``fraction_kept`` and ``score_kept``
        (fractions; convert to percent only for display)."""
        row = {
            "branch": self.branch,
            "delta_ls": self.delta_ls,
            "delta_fs": self.delta_fs,
            "layer": self.layer,
            "n_all": self.n_all,
            "n_ls": self.n_ls,
            "n_cc": self.n_cc,
            "n_fs": self.n_fs,
        }
        row.update({f"test_{step}": self.test[step] for step in STEPS})
        row.update({f"dev_{step}": self.dev[step] for step in STEPS})
        row.update(fraction_kept=self.fraction_kept, score_kept=self.score_kept)
        return row


# ------------------------------------------------------------------------ CCFS
def _cluster(X_sub, threshold, representative, random_state, n_hidden, device, progress):
    from .clustering import correlation_clustering  # imported lazily: scipy linkage etc.

    return correlation_clustering(
        X_sub,
        threshold,
        representative=representative,
        random_state=random_state,
        n_hidden=n_hidden,
        device=device,
        progress=progress,
    )


def _probe_options(probe_kwargs: dict, kind: str) -> dict:
    """The probes' options as :func:`train_probes` takes them (``probe_random_state`` as
    ``random_state``, plus ``kind``); also what keys a CC probe in the shared cache."""
    pk = {k: v for k, v in probe_kwargs.items() if k != "probe_random_state"}
    if "probe_random_state" in probe_kwargs:
        pk["random_state"] = probe_kwargs["probe_random_state"]
    pk["kind"] = kind
    return pk


def _cc_probe_key(clustered: tuple, metric: str, pk: dict) -> tuple:
    """Cache key of the probe on the neurons kept after CC (and of its FS searches)."""
    return ("ccprobe", clustered, metric, stable_hash(pk))


def ccfs(
    X_train,
    y_train,
    X_dev,
    y_dev,
    X_test,
    y_test,
    *,
    n_layers: int,
    n_hidden: int,
    delta_ls: float = 3,
    delta_fs: float = 1,
    threshold: float | None = 0.3,
    representative: str = "random",
    random_state: int = 0,
    metric: str | None = None,
    kind: str = "classification",
    incremental: IncrementalScores | None = None,
    cache: dict | None = None,
    progress: bool = True,
    **probe_kwargs,
) -> TransferResult:
    """LayerSelector + correlation clustering + feature selection (the paper's CCFS).

    Parameters
    ----------
    X_train, X_dev, X_test : arrays of shape (n_split, n_layers * n_hidden)
        Full activations of each split (float32 or float16 memmap), usually ``.X`` of
        :func:`redundancy.extract.extract`; never copied whole.
    y_train, y_dev, y_test : arrays
        Labels (``task.encode(split)``) or regression targets.
    n_layers, n_hidden : int
        Layer layout of the columns (neuron ``i`` in layer ``i // n_hidden``).
    delta_ls, delta_fs : float
        Allowed losses (percent) for LayerSelector and FS.
    threshold : float or None
        Correlation-clustering threshold ``t`` (paper: 0.3). None skips the clustering: the
        authors' second branch, LayerSelector + FS (their threshold ``-1``).
    representative, random_state : passed to
        :func:`redundancy.clustering.correlation_clustering` (``random_state`` is the
        clustering seed; the probes' seed is ``probe_kwargs["random_state"]``, 42 by
        default, given as ``probe_random_state``).
    metric : str, optional
        Score (:func:`redundancy.probes.score`); None: accuracy for classification,
        pearson for regression.
    kind : {"classification", "regression"}
    incremental : IncrementalScores, optional
        Precomputed :func:`incremental_scores`, to share across delta pairs.
    cache : dict, optional
        Shared between calls (see :func:`ccfs_sweep`): clusterings per selected layer,
        CC probes and FS searches are reused.
    progress : bool
    **probe_kwargs
        For :func:`redundancy.probes.train_probes` (``epochs``, ``device``, ...);
        ``probe_random_state`` sets the probes' seed.
    """
    caller = "ccfs"
    check_choice(kind, KINDS, name="kind", caller=caller)
    delta_ls = _check_delta(delta_ls, "delta_ls", caller)
    delta_fs = _check_delta(delta_fs, "delta_fs", caller)
    if threshold is not None:
        threshold = check("threshold", threshold, caller)
    n_all = int(n_layers) * int(n_hidden)
    if X_train.shape[1] != n_all:
        raise ValueError(
            f"X_train has {X_train.shape[1]} columns but n_layers * n_hidden = {n_all}; pass "
            "the full activation matrix and the model's layer layout."
        )
    metric = metric or _default_metric(kind)
    pk = _probe_options(probe_kwargs, kind)
    cache = {} if cache is None else cache
    data = ((X_train, y_train), (X_dev, y_dev), (X_test, y_test))
    if incremental is None:
        key = ("incremental", metric, stable_hash(pk))
        if key not in cache:
            cache[key] = incremental_scores(
                *data[0],
                *data[1],
                *data[2],
                n_layers=n_layers,
                n_hidden=n_hidden,
                metric=metric,
                progress=progress,
                **pk,
            )
        incremental = cache[key]
    if len(incremental.dev) != n_layers:
        raise ValueError(
            f"The 'incremental' parameter of {caller} must hold {n_layers} scores (one per "
            f"layer). Got {len(incremental.dev)} instead."
        )
    # 1. LayerSelector
    layer = select_layer(incremental.dev, incremental.oracle_dev, delta_ls)
    n_ls = (layer + 1) * int(n_hidden)
    logger.info("LayerSelector(delta=%g): layer %d (%d neurons)", delta_ls, layer, n_ls)
    # 2. correlation clustering on layers 0..layer (or every neuron of them: LS + FS)
    clustered = (layer, threshold, representative, random_state)
    kept = _kept_after_cc(X_train, clustered, n_ls, n_hidden, pk.get("device"), progress, cache)
    # 3. FS on the kept neurons
    cc, fs = _feature_selection(data, kept, clustered, delta_fs, n_all, metric, pk, progress, cache)
    return TransferResult(
        layer=int(layer),
        delta_ls=delta_ls,
        delta_fs=delta_fs,
        threshold=None if threshold is None else float(threshold),
        n_all=n_all,
        n_ls=n_ls,
        n_cc=int(kept.size),
        n_fs=int(fs["result"].k),
        neurons=[int(i) for i in fs["result"].neurons],
        cc_neurons=[int(i) for i in kept],
        dev={
            "oracle": incremental.oracle_dev,
            "ls": float(incremental.dev[layer]),
            "cc": cc["dev"],
            "fs": float(fs["result"].dev_score),
        },
        test={
            "oracle": incremental.oracle_test,
            "ls": float(incremental.test[layer]),
            "cc": cc["test"],
            "fs": fs["test"],
        },
        fs_percent=float(fs["result"].percent),
        metric=metric,
        meta={"representative": representative, "random_state": random_state},
        probe=fs["result"].probe,
    )


def _kept_after_cc(X_train, clustered, n_ls, n_hidden, device, progress, cache) -> np.ndarray:
    """Sorted neurons kept by clustering layers ``0..layer`` (all of them without clustering),
    computed once per (layer, threshold, representative, seed) for all δ pairs."""
    layer, threshold, representative, random_state = clustered
    key = ("cc", *clustered)
    if key not in cache:
        cache[key] = (
            np.arange(n_ls, dtype=np.int64)
            if threshold is None
            else _cluster(
                X_train[:, :n_ls],
                threshold,
                representative,
                random_state,
                n_hidden,
                device,
                progress,
            ).kept
        )
    return np.sort(np.asarray(cache[key], dtype=np.int64))


def _feature_selection(data, kept, clustered, delta_fs, n_all, metric, pk, progress, cache):
    """The probe on the kept neurons (its scores, ``s_CC``) and the FS search from its
    ranking; both shared across δ pairs."""
    (X_train, y_train), (X_dev, y_dev), (X_test, y_test) = data
    pkey = _cc_probe_key(clustered, metric, pk)
    if pkey not in cache:
        probe = train_probe(X_train, y_train, kept, progress=progress, **pk)
        cache[pkey] = {
            "dev": float(evaluate_probes({"p": probe}, X_dev, y_dev, metric)["p"]),
            "test": float(evaluate_probes({"p": probe}, X_test, y_test, metric)["p"]),
            "ordering": rank_neurons(probe),
        }
    cc = cache[pkey]
    fkey = ("fs", pkey, delta_fs)
    if fkey not in cache:
        result = minimal_set(
            X_train,
            y_train,
            X_dev,
            y_dev,
            cc["ordering"],
            base_score=cc["dev"],
            delta=delta_fs,
            grid=FS_GRID,
            n_total=n_all,
            metric=metric,
            progress=progress,
            **pk,
        )
        test = float(evaluate_probes({"p": result.probe}, X_test, y_test, metric)["p"])
        cache[fkey] = {"result": result, "test": test}
    return cc, cache[fkey]


def ccfs_sweep(
    X_train,
    y_train,
    X_dev,
    y_dev,
    X_test,
    y_test,
    *,
    deltas=((3, 1), (2, 1), (1, 1)),
    incremental: IncrementalScores | None = None,
    cache: dict | None = None,
    **kwargs,
) -> list[TransferResult]:
    """:func:`ccfs` for several ``(delta_ls, delta_fs)`` pairs, sharing all common work."""
    cache = {} if cache is None else cache
    return [
        ccfs(
            X_train,
            y_train,
            X_dev,
            y_dev,
            X_test,
            y_test,
            delta_ls=dls,
            delta_fs=dfs,
            incremental=incremental,
            cache=cache,
            **kwargs,
        )
        for dls, dfs in deltas
    ]


def ccfs_seeds(
    X_train,
    y_train,
    X_dev,
    y_dev,
    X_test,
    y_test,
    *,
    incremental: dict,
    n_layers: int,
    n_hidden: int,
    deltas=((3, 1), (2, 1), (1, 1)),
    thresholds=(0.3, None),
    representative: str = "random",
    metric: str | None = None,
    kind: str = "classification",
    progress: bool = True,
    **probe_kwargs,
) -> dict:
    """:func:`ccfs_sweep` for every seed of ``incremental`` (``{seed: IncrementalScores}``)
    and every clustering ``threshold`` (None: the LayerSelector + FS branch), seed ``s``
    drawing the cluster representatives and initialising the probes, as the sweep would
    alone; but the probes on the neurons kept after CC are trained in one pass, and the FS
    searches of all seeds and branches share their passes (:func:`minimal_sets`).

    Returns
    -------
    dict
        ``{(seed, threshold): [TransferResult per delta pair]}``.
    """
    caller = "ccfs_seeds"
    check_choice(kind, KINDS, name="kind", caller=caller)
    metric = metric or _default_metric(kind)
    n_all = int(n_layers) * int(n_hidden)
    device = probe_kwargs.get("device")
    rest = {k: v for k, v in probe_kwargs.items() if k != "probe_random_state"}
    train_kw = _probe_options(rest, kind)  # the options of every probe but its seed
    caches = {seed: {} for seed in incremental}
    kept, pkey = {}, {}
    for seed, inc in incremental.items():
        pk = _probe_options({**rest, "probe_random_state": seed}, kind)
        for threshold in thresholds:
            for dls, _ in deltas:
                layer = select_layer(inc.dev, inc.oracle_dev, _check_delta(dls, "delta_ls", caller))
                clustered = (layer, threshold, representative, seed)
                n_ls = (layer + 1) * int(n_hidden)
                kept[seed, clustered] = _kept_after_cc(
                    X_train, clustered, n_ls, n_hidden, device, progress, caches[seed]
                )
                pkey[seed, clustered] = _cc_probe_key(clustered, metric, pk)
    # every CC probe in one pass
    probes = train_probes(
        X_train, y_train, kept, random_state={key: key[0] for key in kept},
        progress=progress, **train_kw,
    )  # fmt: skip
    dev = evaluate_probes(probes, X_dev, y_dev, metric)
    test = evaluate_probes(probes, X_test, y_test, metric)
    orderings = {key: rank_neurons(probe) for key, probe in probes.items()}
    for key in probes:
        caches[key[0]][pkey[key]] = {
            "dev": float(dev[key]),
            "test": float(test[key]),
            "ordering": orderings[key],
        }
    # every FS search of one delta_fs in shared passes
    for dfs in sorted({float(d) for _, d in deltas}):
        found = minimal_sets(
            X_train, y_train, X_dev, y_dev, orderings,
            base_scores={key: float(dev[key]) for key in orderings},
            seeds={key: key[0] for key in orderings}, delta=dfs, grid=FS_GRID, n_total=n_all,
            metric=metric, progress=progress, caller=caller, **train_kw,
        )  # fmt: skip
        fs_test = evaluate_probes({k: r.probe for k, r in found.items()}, X_test, y_test, metric)
        for key, result in found.items():
            caches[key[0]][("fs", pkey[key], dfs)] = {"result": result, "test": float(fs_test[key])}
    data = (X_train, y_train, X_dev, y_dev, X_test, y_test)
    return {
        (seed, threshold): ccfs_sweep(
            *data,
            deltas=deltas,
            incremental=inc,
            cache=caches[seed],
            n_layers=n_layers,
            n_hidden=n_hidden,
            threshold=threshold,
            representative=representative,
            random_state=seed,
            metric=metric,
            kind=kind,
            progress=progress,
            probe_random_state=seed,
            **rest,
        )  # fmt: skip
        for seed, inc in incremental.items()
        for threshold in thresholds
    }
