"""Neuron-level steps: correlation clustering (chapter 3) and ranking with minimal sets
(chapter 5), over every seed of the run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cache import cached, check_keys, check_table
from ..config import Config
from ..features import features_identity, get_activations
from ._probing import evaluate, interval, probe_data, train_keyed, train_seeds
from .layers import _probe_inputs, layer_probe_scores, oracle_probes, oracle_scores

__all__ = ["cc_sweep", "cluster_windows_for", "minimal_sets", "neuron_correlation"]

SELECTIVITY_GRID = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
"""Neuron shares (of all neurons) at which the ranking chapter compares task and control."""

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
    subsets = {
        (t, seed): clustering.select_representatives(
            labels[t], method=cfg.representative, random_state=seed, corr=corr
        )
        for seed in cfg.seeds
        for t in cfg.thresholds
    }
    probes = train_keyed(data, subsets, {key: key[1] for key in subsets}, cfg)
    dev, test = evaluate(data, probes, "dev", cfg=cfg), evaluate(data, probes, "test", cfg=cfg)
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
                "dev": dev[(t, seed)],
                "test": test[(t, seed)],
            }
        )
    return pd.DataFrame(rows)


def cc_sweep(model: str, task_name: str, cfg: Config) -> pd.DataFrame:
    """Correlation clustering at every threshold of ``cfg.thresholds``, for every seed.

    For each threshold: the clusters (one tree, :func:`redundancy.analysis.clustering.
    threshold_sweep`), one representative per cluster drawn with the seed, and the paper's
    probe trained on the kept neurons with the same seed.

    Returns
    -------
    DataFrame
        One row per threshold and seed: ``threshold``, ``seed``, ``n_clusters``, ``n_kept``,
        ``n_neurons``, ``fraction_redundant``, ``largest_cluster``, ``dev``, ``test``, and
        ``oracle_dev`` (the same seed's oracle) and ``dev_vs_oracle`` (their ratio).
    """
    inputs = {
        **_probe_inputs(model, task_name, cfg),
        "thresholds": list(cfg.thresholds),
        "representative": cfg.representative,
    }
    check = check_table("threshold", "seed", "fraction_redundant", "dev", "test")
    table = cached(
        "cc_sweep",
        inputs,
        lambda: _sweep_run(model, task_name, cfg),
        code=__name__,
        kind="table",
        check=check,
        label=f"{model} / {task_name}",
    )
    oracle = oracle_scores(layer_probe_scores(model, task_name, cfg)).set_index("seed")["dev"]
    table["oracle_dev"] = table["seed"].map(oracle)
    table["dev_vs_oracle"] = table["dev"] / table["oracle_dev"]
    return table


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


def _selectivity_curve(data, order, k_min, cfg) -> dict:
    """Task and control scores of probes on the top-k neurons at a few shares (first seed)."""
    n = data.train.n_neurons
    sizes = sorted({max(1, round(f * n)) for f in SELECTIVITY_GRID} | {int(k_min)})
    subsets = {k: order[:k] for k in sizes}
    seed = [cfg.seeds[0]]
    task = evaluate(data, train_seeds(data, subsets, cfg, seed), "dev", cfg=cfg)
    ctrl_probes = train_seeds(data, subsets, cfg, seed, control=True)
    ctrl = evaluate(data, ctrl_probes, "dev", control=True, cfg=cfg)
    return {
        "k": sizes,
        "fraction": [k / n for k in sizes],
        "task_dev": [task[(k, seed[0])] for k in sizes],
        "control_dev": [ctrl[(k, seed[0])] for k in sizes],
    }


def _minimal_sets_run(model, task_name, cfg) -> dict:
    data = probe_data(model, task_name, cfg)
    oracles = oracle_probes(model, task_name, cfg)
    oracle_dev = oracle_scores(layer_probe_scores(model, task_name, cfg)).set_index("seed")["dev"]
    records, found = _search_all_seeds(data, oracles, oracle_dev, cfg)
    out = {"seeds": records, "interval": interval(data, [p for p, _ in found], cfg)}
    if cfg.control_tasks and data.task.kind == "classification":
        out["selectivity"] = _selectivity_curve(data, found[0][1], records[0]["k"], cfg)
    return out


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
        seed-averaged test score of the minimal-set probes; ``selectivity`` (with control
        tasks): ``k``, ``fraction``, ``task_dev``, ``control_dev`` of top-k probes.
    """
    inputs = {**_probe_inputs(model, task_name, cfg), "delta": cfg.delta}
    return cached(
        "minimal_sets",
        inputs,
        lambda: _minimal_sets_run(model, task_name, cfg),
        code=__name__,
        kind="json",
        check=check_keys("seeds", "interval"),
        label=f"{model} / {task_name}",
    )
