"""Neuron-level steps: correlation clustering (chapter 3) and ranking with minimal sets
(chapter 5), over every seed of the run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cache import cached, check_keys, check_table
from ..config import Config
from ..features import features_identity, get_activations
from ..paper import PAPER
from ._probing import (
    controls_apply,
    evaluate,
    interval,
    probe_data,
    stored_predictions,
    train_keyed,
    train_seeds,
)
from .layers import _probe_inputs, layer_probe_scores, oracle_probes, oracle_scores

__all__ = [
    "RANK_GRID",
    "cc_sweep",
    "cc_sweep_predictions",
    "cluster_labels",
    "cluster_windows_for",
    "minimal_set_predictions",
    "minimal_sets",
    "neuron_correlation",
]

RANK_GRID = tuple(
    sorted({0.005, 0.01, 0.02, 0.05, round(1 - PAPER.removable_for_task, 6), 0.2, 0.5})
)
"""Shares of all neurons at which every seed's top-ranked probe is trained and kept (with its
dev predictions) for the ranking chapter's decisions; ``1 - 0.92`` is the paper's claim. The
first seed's control-task probes (token tasks) use the same shares."""

_CORR: dict[str, np.ndarray] = {}


def neuron_correlation(
    model: str, task_name: str, cfg: Config, *, finetuned: bool | None = None
) -> np.ndarray:
    """Pearson correlation between every pair of neurons on the training split.

    Kept in memory for the last features only (400 MB at 9,984 neurons).
    """
    from ...analysis import similarity

    key = repr(features_identity(model, task_name, cfg, finetuned))
    if key not in _CORR:
        _CORR.clear()
        acts = get_activations(model, task_name, "train", cfg, finetuned=finetuned)
        _CORR[key] = similarity.correlation(acts.X, device=cfg.device)
    return _CORR[key]


# --------------------------------------------------------------------- clustering
def _sweep_run(model, task_name, cfg) -> pd.DataFrame:
    from ...analysis import clustering

    data = probe_data(model, task_name, cfg)
    corr = neuron_correlation(model, task_name, cfg)
    Z = clustering.correlation_linkage(corr)
    stats = clustering.threshold_sweep(None, cfg.thresholds, Z=Z).set_index("threshold")
    labels = {t: clustering.cluster_neurons(None, t, Z=Z) for t in cfg.thresholds}
    n_hidden = data.train.n_hidden
    parts = {t: clustering.decompose_clusters(labels[t], n_hidden) for t in cfg.thresholds}
    subsets = {
        (t, seed): clustering.select_representatives(
            labels[t], method=cfg.representative, random_state=seed, corr=corr
        )
        for seed in cfg.seeds
        for t in cfg.thresholds
    }
    probes = train_keyed(data, subsets, {key: key[1] for key in subsets}, cfg)
    dev, test = evaluate(data, probes, "dev", cfg=cfg), evaluate(data, probes, "test", cfg=cfg)
    arrays = {"dev": stored_predictions(data, [probes[k] for k in subsets], cfg)}
    rows = []
    for (t, seed), kept in subsets.items():
        row = stats.loc[t]
        rows.append(
            {
                "threshold": t,
                "seed": seed,
                "n_clusters": int(row["n_clusters"]),
                "n_kept": int(kept.size),
                "n_neurons": int(corr.shape[0]),
                "fraction_redundant": float(row["fraction_redundant"]),
                "largest_cluster": int(row["largest_cluster"]),
                **{
                    f"redundant_{kind}": parts[t][f"{kind}_redundant"] / corr.shape[0]
                    for kind in clustering.CLUSTER_KINDS
                },
                **{
                    f"clusters_{kind}": parts[t][f"{kind}_clusters"]
                    for kind in clustering.CLUSTER_KINDS
                },
                "dev": dev[(t, seed)],
                "test": test[(t, seed)],
            }
        )
    return pd.DataFrame(rows), arrays


def cc_sweep(model: str, task_name: str, cfg: Config) -> pd.DataFrame:
    """Correlation clustering at every threshold of ``cfg.thresholds``, for every seed.

    For each threshold: the clusters (one tree, :func:`redundancy.analysis.clustering.
    threshold_sweep`), one representative per cluster drawn with the seed, and the paper's
    probe trained on the kept neurons with the same seed.

    Returns
    -------
    DataFrame
        One row per threshold and seed: ``threshold``, ``seed``, ``n_clusters``, ``n_kept``,
        ``n_neurons``, ``fraction_redundant``, ``largest_cluster``, ``redundant_<kind>``
        (share of all neurons made redundant by clusters of each kind of
        :func:`redundancy.analysis.clustering.decompose_clusters`: ``carry``,
        ``within_layer``, ``mixed``) and ``clusters_<kind>``, ``dev``, ``test``, and
        ``oracle_dev`` (the same seed's oracle) and ``dev_vs_oracle`` (their ratio).
    """
    inputs = _sweep_inputs(model, task_name, cfg)
    check = check_table("threshold", "seed", "fraction_redundant", "dev", "test")

    def compute():
        table, arrays = _sweep_run(model, task_name, cfg)
        cached("cc_sweep_predictions", inputs, lambda: arrays, code=__name__, kind="arrays")
        return table

    table = cached(
        "cc_sweep",
        inputs,
        compute,
        code=__name__,
        kind="table",
        check=check,
        label=f"{model} / {task_name}",
    )
    oracle = oracle_scores(layer_probe_scores(model, task_name, cfg)).set_index("seed")["dev"]
    table["oracle_dev"] = table["seed"].map(oracle)
    table["dev_vs_oracle"] = table["dev"] / table["oracle_dev"]
    return table


def _sweep_inputs(model, task_name, cfg) -> dict:
    return {
        **_probe_inputs(model, task_name, cfg),
        "thresholds": list(cfg.thresholds),
        "representative": cfg.representative,
    }


def cc_sweep_predictions(model: str, task_name: str, cfg: Config) -> np.ndarray:
    """Dev predictions of the sweep's probes, ``(n_rows, n_dev)`` in the row order of
    :func:`cc_sweep`'s table (kept beside it; rebuilt with the sweep when missing)."""
    arrays = cached(
        "cc_sweep_predictions",
        _sweep_inputs(model, task_name, cfg),
        lambda: _sweep_run(model, task_name, cfg)[1],
        code=__name__,
        kind="arrays",
        check=check_keys("dev"),
        label=f"{model} / {task_name}",
    )
    return arrays["dev"]


def cluster_labels(
    model: str, task_name: str, cfg: Config, threshold: float | None = None
) -> np.ndarray:
    """Cluster label of every neuron at ``threshold`` (default ``cfg.cc_threshold``), on the
    pretrained features' training split (cached)."""
    from ...analysis import clustering

    threshold = cfg.cc_threshold if threshold is None else float(threshold)

    def compute():
        corr = neuron_correlation(model, task_name, cfg)
        return {"labels": clustering.cluster_neurons(corr, threshold)}

    inputs = {"features": features_identity(model, task_name, cfg), "t": threshold}
    arrays = cached(
        "cluster_labels",
        inputs,
        compute,
        code=__name__,
        kind="arrays",
        check=check_keys("labels"),
        label=f"{model} / {task_name} / t = {threshold:g}",
    )
    return arrays["labels"]


def cluster_windows_for(
    model: str,
    task_name: str,
    cfg: Config,
    threshold: float | None = None,
    *,
    finetuned: bool | None = None,
) -> pd.DataFrame:
    """Window (layers spanned) and size of every cluster at ``threshold`` (default
    ``cfg.cc_threshold``).

    Returns
    -------
    DataFrame
        One row per cluster: ``window``, ``size``; ``attrs["n_layers"]``.
    """
    from ...analysis import clustering

    threshold = cfg.cc_threshold if threshold is None else float(threshold)

    def compute():
        acts = get_activations(model, task_name, "train", cfg, finetuned=finetuned)
        corr = neuron_correlation(model, task_name, cfg, finetuned=finetuned)
        labels = clustering.cluster_neurons(corr, threshold)
        return {
            "window": clustering.cluster_windows(labels, acts.n_hidden),
            "size": np.unique(labels, return_counts=True)[1],
            "n_layers": np.array(acts.n_layers),
        }

    inputs = {"features": features_identity(model, task_name, cfg, finetuned), "t": threshold}
    arrays = cached(
        "windows", inputs, compute, code=__name__, kind="arrays", check=check_keys("window")
    )
    df = pd.DataFrame({"window": arrays["window"], "size": arrays["size"]})
    df.attrs["n_layers"] = int(arrays["n_layers"])
    return df


# ------------------------------------------------------------------------ ranking
def _search_all_seeds(data, oracles, oracle_dev, cfg) -> tuple[list, list]:
    """Every seed's minimal set, searched in shared passes: seed ``s`` ranks from its own
    oracle and trains its own probes. Returns the records and ``(probe, ordering)`` pairs."""
    from ...analysis.ranking import minimal_sets, rank_neurons

    orders = {seed: rank_neurons(oracles[seed]) for seed in cfg.seeds}
    found = minimal_sets(
        data.train.X,
        data.train.labels,
        data.acts["dev"].X,
        data.acts["dev"].labels,
        orders,
        base_scores={s: float(oracle_dev[s]) for s in cfg.seeds},
        seeds={s: s for s in cfg.seeds},
        delta=cfg.delta,
        metric=data.task.metric,
        kind=data.task.kind,
        progress=True,
        **cfg.probe_options(),
    )
    test = evaluate(data, {s: r.probe for s, r in found.items()}, "test", cfg=cfg)
    n, records = data.train.n_neurons, []
    for seed, res in found.items():
        share = np.bincount(res.neurons // data.train.n_hidden, minlength=data.train.n_layers)
        records.append(
            {
                "seed": seed,
                "k": res.k,
                "n_total": n,
                "fraction": res.k / n,
                "passed": res.passed,
                "dev": res.dev_score,
                "test": test[seed],
                "oracle_dev": float(oracle_dev[seed]),
                "curve": {"k": res.curve["k"].tolist(), "dev": res.curve["dev_score"].tolist()},
                "layer_share": (share / max(res.k, 1)).tolist(),
            }
        )
    return records, [(found[s].probe, orders[s]) for s in cfg.seeds]


def _grid_sizes(n: int) -> list[int]:
    return sorted({max(1, round(f * n)) for f in RANK_GRID})


def _nominal(k: int, n: int) -> float:
    """The share of :data:`RANK_GRID` that ``k`` of ``n`` neurons stands for."""
    return min(RANK_GRID, key=lambda f: abs(max(1, round(f * n)) - k))


def _grid_run(data, orders: dict, cfg) -> tuple[dict, np.ndarray]:
    """Every seed's probe on its own top-ranked neurons at each share of :data:`RANK_GRID`
    (one pass), their scores and dev predictions ``(n_seeds, n_sizes, n_dev)``."""
    n = data.train.n_neurons
    sizes = _grid_sizes(n)
    subsets = {(k, s): orders[s][:k] for s in cfg.seeds for k in sizes}
    probes = train_keyed(data, subsets, {key: key[1] for key in subsets}, cfg)
    dev, test = evaluate(data, probes, "dev", cfg=cfg), evaluate(data, probes, "test", cfg=cfg)
    preds = stored_predictions(data, [probes[k] for k in subsets], cfg)
    grid = {
        "k": sizes,
        "share": [_nominal(k, n) for k in sizes],
        "fraction": [k / n for k in sizes],
        "dev": [[dev[(k, s)] for k in sizes] for s in cfg.seeds],
        "test": [[test[(k, s)] for k in sizes] for s in cfg.seeds],
    }
    return grid, preds.reshape(len(cfg.seeds), len(sizes), -1)


def _selectivity_curve(data, order, grid, cfg) -> dict:
    """Control-task scores of the first seed's top-k probes at the grid's sizes, beside
    their task scores (token tasks only: a control needs word types that recur)."""
    seed = [cfg.seeds[0]]
    subsets = {k: order[:k] for k in grid["k"]}
    ctrl_probes = train_seeds(data, subsets, cfg, seed, control=True)
    ctrl = evaluate(data, ctrl_probes, "dev", control=True, cfg=cfg)
    return {
        "k": grid["k"],
        "fraction": grid["fraction"],
        "task_dev": grid["dev"][0],
        "control_dev": [ctrl[(k, seed[0])] for k in grid["k"]],
    }


def _minimal_sets_run(model, task_name, cfg) -> tuple[dict, dict]:
    from ...analysis.ranking import rank_neurons

    data = probe_data(model, task_name, cfg)
    oracles = oracle_probes(model, task_name, cfg)
    oracle_dev = oracle_scores(layer_probe_scores(model, task_name, cfg)).set_index("seed")["dev"]
    records, found = _search_all_seeds(data, oracles, oracle_dev, cfg)
    orders = {s: rank_neurons(oracles[s]) for s in cfg.seeds}
    grid, grid_preds = _grid_run(data, orders, cfg)
    out = {"seeds": records, "interval": interval(data, [p for p, _ in found], cfg), "grid": grid}
    if controls_apply(data, cfg):
        out["selectivity"] = _selectivity_curve(data, orders[cfg.seeds[0]], grid, cfg)
    arrays = {
        "grid": grid_preds,
        "minimal": stored_predictions(data, [p for p, _ in found], cfg),
    }
    return out, arrays


def minimal_sets(model: str, task_name: str, cfg: Config) -> dict:
    """Minimal set of top-ranked neurons keeping each seed's oracle dev score within δ.

    For every seed: the neurons are ranked (LCA) from that seed's oracle probe and the
    minimal set is searched with probes of that seed (:func:`redundancy.analysis.ranking.
    minimal_set`).

    Returns
    -------
    dict
        ``seeds``: one record per seed (``k``, ``n_total``, ``fraction`` of all neurons,
        ``passed``, ``dev``, ``test``, ``oracle_dev``, ``curve`` with ``k`` and ``dev`` of
        every size tried, ``layer_share``); ``interval``: bootstrap interval of the
        seed-averaged test score of the minimal-set probes; ``grid``: ``k``, ``fraction``
        and per-seed ``dev`` and ``test`` scores of top-ranked probes at :data:`RANK_GRID`;
        ``selectivity`` (control tasks, token tasks only): ``k``, ``fraction``,
        ``task_dev``, ``control_dev`` (first seed).
    """
    inputs = {**_probe_inputs(model, task_name, cfg), "delta": cfg.delta}

    def compute():
        result, arrays = _minimal_sets_run(model, task_name, cfg)
        cached("minimal_predictions", inputs, lambda: arrays, code=__name__, kind="arrays")
        return result

    return cached(
        "minimal_sets",
        inputs,
        compute,
        code=__name__,
        kind="json",
        check=check_keys("seeds", "interval", "grid"),
        label=f"{model} / {task_name}",
    )


def minimal_set_predictions(model: str, task_name: str, cfg: Config) -> dict:
    """Dev predictions kept beside :func:`minimal_sets`: ``grid`` ``(n_seeds, n_sizes,
    n_dev)`` for the top-ranked probes at :data:`RANK_GRID`, ``minimal`` ``(n_seeds, n_dev)``
    for each seed's minimal set."""
    inputs = {**_probe_inputs(model, task_name, cfg), "delta": cfg.delta}
    return cached(
        "minimal_predictions",
        inputs,
        lambda: _minimal_sets_run(model, task_name, cfg)[1],
        code=__name__,
        kind="arrays",
        check=check_keys("grid", "minimal"),
        label=f"{model} / {task_name}",
    )
