"""Removing the neurons the book's clustering calls redundant, inside a decoder's forward pass.

At every clustering threshold of the run (``cfg.thresholds``, distance ``1 - |rho|``), one
block of the decoder (the middle one by default) is looked at in two ways, both calibrated
on the Brown learned text of the removal steps (every token but the start token):

* **within a layer** (``kind="within-layer"``): the block's MLP neurons (the input of its
  down projection) are clustered as the book clusters neurons (average linkage of
  ``1 - |rho|``, one representative per cluster chosen by ``cfg.representative``); every
  non-representative member of a multi-member cluster is replaced by a least-squares fit
  from its cluster's representative.
* **residual carry** (``kind="residual-carry"``): the clusters of the book's across-layer
  clustering that are one hidden dimension carried across the block: dimension ``d`` of
  the residual stream after the block (the book's layer ``b + 1``) is *carried* when it
  correlates with dimension ``d`` of the block's input (layer ``b``) at
  ``|rho| >= 1 - threshold``; every carried dimension of the block's output is replaced by
  a least-squares fit from the same dimension of its input (the block's write to it becomes
  a linear function of what came in).

Baselines take out the same number of neurons keeping nothing: the same neurons replaced
by their calibration mean (``cluster-mean``), and randomly chosen neurons (dimensions) of
the site replaced by their mean (``random-mean``, one draw per seed). The replacement runs
inside the forward pass at every position but the first (the start token, left out of the
calibration), and only the blocks from the replaced block on are run (the evaluation
text's cached stream).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..._utils import progress_bar
from ..cache import cached, check_table
from ..config import Config
from .removal import _base_nll, _evaluator, _inputs, _interval, _setup, _states

__all__ = ["KINDS", "cluster_replacement"]

KINDS = ("within-layer", "residual-carry")
"""The two kinds of cluster :func:`cluster_replacement` replaces."""


def cluster_replacement(
    model: str,
    cfg: Config,
    *,
    block: int | None = None,
    n_random: int = 1,
    window: int = 128,
    n_eval: int = 16,
    n_calibration: int = 8,
) -> pd.DataFrame:
    """Perplexity with the clustering's redundant neurons of one block replaced, at every
    threshold of ``cfg.thresholds``, within the layer and across the residual stream.

    Parameters
    ----------
    block : int, optional
        The block looked at (its MLP neurons; its input and output for the carry); default
        the middle block, ``n_blocks // 2`` (15 of SmolLM2's 30).
    n_random : int, default=1
        Random draws per threshold for ``random-mean`` (the first ``n_random`` of
        ``cfg.seeds``): one, so that the 9 thresholds and both kinds fit about two minutes
        on 2 CPU cores; the draws hardly vary next to the gap to ``cluster``.

    Returns
    -------
    DataFrame
        ``kind`` (``none``, ``within-layer``, ``residual-carry``), ``threshold``, ``method``
        (``none``, ``cluster``, ``cluster-mean``, ``random-mean``), ``seed`` (-1 but for
        ``random-mean``), ``n_replaced``, ``perplexity``, ``low``, ``high`` (bootstrap over
        the evaluation windows). The unreplaced model is the one row ``kind="none"``,
        ``method="none"``, ``threshold`` NaN. A threshold where the clustering replaces
        nothing has one ``cluster`` row with ``n_replaced=0`` and the unreplaced model's
        perplexity, and no baselines. ``attrs``: ``block``, ``thresholds``,
        ``random_seeds``, ``within_layer`` (``site``, ``n_neurons``, and per threshold
        ``n_clusters``, ``n_multi``, ``n_replaced``), ``residual_carry`` (``layers``,
        ``n_dims``, per threshold ``n_carried``), ``n_evaluated`` (distinct settings
        evaluated, the unreplaced model included; a setting that recurs at another
        threshold is evaluated once), ``seconds`` (the step) and ``seconds_parts``
        (``calibration``, ``within-layer``, ``residual-carry``).
    """
    seeds = list(cfg.seeds[: max(int(n_random), 0)])

    def compute():
        return _replace_clusters(model, cfg, block, seeds, (window, n_eval, n_calibration))

    inputs = _inputs(
        model,
        cfg,
        block=block,
        thresholds=list(cfg.thresholds),
        representative=cfg.representative,
        seeds=seeds,
        window=window,
        n_eval=n_eval,
        n_calibration=n_calibration,
    )
    check = check_table("kind", "threshold", "method", "n_replaced", "perplexity", "low", "high")
    return cached(
        "cluster_replacement",
        inputs,
        compute,
        code=__name__,
        kind="table",
        check=check,
        label=model,
    )


def _within_layer(acts, cfg: Config):
    """Per threshold: ``(neurons, representatives, n_clusters, n_multi)`` of the MLP site."""
    from ...analysis.clustering import cluster_neurons, correlation_linkage, select_representatives

    z = (acts - acts.mean(0)) / acts.std(0).clamp_min(1e-12)
    corr = ((z.T @ z) / (len(z) - 1)).clamp(-1, 1).double().numpy()
    tree = correlation_linkage(corr)
    out = []
    for threshold in cfg.thresholds:
        labels = cluster_neurons(corr, threshold, Z=tree)
        keep = select_representatives(
            labels, method=cfg.representative, random_state=cfg.random_state, corr=corr
        )
        rep_of = np.full(labels.max() + 1, -1)
        rep_of[labels[keep]] = keep
        neurons = np.setdiff1d(np.arange(len(labels)), keep)
        sizes = np.bincount(labels)
        out.append((neurons, rep_of[labels[neurons]], len(sizes), int((sizes > 1).sum())))
    return out


def _replace_clusters(model, cfg: Config, block, seeds, sizes) -> pd.DataFrame:
    from ...analysis import removal as rm

    started = time.perf_counter()
    net, _, _, cal = _setup(model, *sizes)
    block = rm.n_blocks(net) // 2 if block is None else int(block)
    evaluator = _evaluator(model, sizes)
    acts = rm.site_activations(net, cal, "mlp", block)
    states = _states(model, sizes)
    before, after = states[block], states[block + 1]
    clusters = _within_layer(acts, cfg)
    rho = np.abs(rm.carry_correlation(before, after))
    seconds = {"calibration": round(time.perf_counter() - started, 1)}
    done: dict = {}  # settings that coincide across thresholds share one evaluation

    def score(key, context):
        if key not in done:
            with context():
                done[key] = _interval(cfg, evaluator, evaluator.nll([], changed_from=block))
        return done[key]

    base = _interval(cfg, evaluator, _base_nll(model, sizes))
    rows = [("none", np.nan, "none", -1, 0, base)]

    def within(idx, reps, fit):
        return lambda: rm.replaced_neurons(net, "mlp", block, idx, reps, *fit, first=False)

    def carry(idx, fit):
        return lambda: rm.replaced_carry(net, block, idx, *fit, first=False)

    t0 = time.perf_counter()
    steps = zip(cfg.thresholds, clusters, strict=True)
    for threshold, (idx, reps, _, _) in progress_bar(
        steps, total=len(clusters), desc="within-layer clusters", unit="threshold"
    ):
        settings = [("cluster", -1, idx, rm.fit_replacement(acts, idx, reps), tuple(reps))]
        settings += _mean_settings(acts, idx, seeds)
        for method, seed, j, fit, tag in settings if len(idx) else settings[:1]:
            key = ("within", tuple(j), tag)
            value = score(key, within(j, j if tag == "mean" else reps, fit)) if len(j) else base
            rows.append(("within-layer", threshold, method, seed, len(j), value))
    seconds["within-layer"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    carried = [np.flatnonzero(rho >= 1 - t - 1e-12) for t in cfg.thresholds]
    steps = zip(cfg.thresholds, carried, strict=True)
    for threshold, idx in progress_bar(
        steps, total=len(carried), desc="residual-carry clusters", unit="threshold"
    ):
        settings = [("cluster", -1, idx, rm.fit_carry(before, after, idx), "fit")]
        settings += _mean_settings(after, idx, seeds)
        for method, seed, j, fit, tag in settings if len(idx) else settings[:1]:
            value = score(("carry", tuple(j), tag), carry(j, fit)) if len(j) else base
            rows.append(("residual-carry", threshold, method, seed, len(j), value))
    seconds["residual-carry"] = round(time.perf_counter() - t0, 1)
    columns = ["kind", "threshold", "method", "seed", "n_replaced"]
    table = pd.DataFrame(
        [dict(zip(columns, r[:5]), perplexity=r[5][0], low=r[5][1], high=r[5][2]) for r in rows]
    )
    table.attrs.update(
        block=block,
        thresholds=list(cfg.thresholds),
        random_seeds=list(seeds),
        within_layer=dict(
            site="mlp",
            n_neurons=int(acts.shape[1]),
            n_clusters=[int(c[2]) for c in clusters],
            n_multi=[int(c[3]) for c in clusters],
            n_replaced=[int(len(c[0])) for c in clusters],
        ),
        residual_carry=dict(
            layers=[block, block + 1],
            n_dims=int(len(rho)),
            n_carried=[int(len(c)) for c in carried],
        ),
        n_evaluated=len(done) + 1,
        seconds=round(time.perf_counter() - started, 1),
        seconds_parts=seconds,
    )
    return table


def _mean_settings(acts, idx, seeds) -> list:
    """The baselines of replacing ``idx``: the same neurons by their mean, then per seed as
    many random neurons of the site by theirs: ``(method, seed, neurons, fit, tag)``."""
    from ...analysis import removal as rm

    out = [("cluster-mean", -1, idx, rm.mean_replacement(acts, idx), "mean")]
    for seed in seeds:
        pick = np.sort(np.random.default_rng(seed).choice(acts.shape[1], len(idx), replace=False))
        out.append(("random-mean", seed, pick, rm.mean_replacement(acts, pick), "mean"))
    return out
