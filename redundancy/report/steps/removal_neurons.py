"""Removing the neurons the book's clustering calls redundant, inside a decoder's forward pass.

The book clusters neurons by correlation and keeps one representative per cluster. Here the
clustering runs on the neurons of one site of a decoder (the MLP neurons of a block, or the
residual stream after it) over calibration text (Brown learned, as the removal steps), and
every non-representative member of a multi-member cluster is replaced inside the forward
pass by a least-squares fit from its cluster's representative. Two baselines take out the
same number of neurons without keeping anything: the same neurons replaced by their mean,
and randomly chosen neurons replaced by their mean (one draw per seed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cache import cached, check_table
from ..config import Config
from .removal import _inputs, _setup

__all__ = ["cluster_replacement"]


def cluster_replacement(
    model: str,
    cfg: Config,
    *,
    block: int = 15,
    site: str = "mlp",
    threshold: float | None = None,
    window: int = 128,
    n_eval: int = 16,
    n_calibration: int = 8,
) -> pd.DataFrame:
    """Perplexity with the clustering's redundant neurons of one site replaced.

    Parameters
    ----------
    block : int
        ``site="mlp"``: the block whose MLP neurons are clustered; ``"residual"``: the
        residual stream after block ``block - 1`` (the book's layer ``block``).
    threshold : float, optional
        Clustering threshold (distance ``1 - |rho|``); default ``cfg.cc_threshold``.

    Returns
    -------
    DataFrame
        ``method`` (``none``, ``cluster``, ``cluster-mean``, ``random-mean``), ``seed``,
        ``n_replaced``, ``perplexity``, ``low``, ``high``; ``attrs``: ``n_neurons``,
        ``n_clusters``, ``n_multi`` (clusters with more than one member).
    """
    threshold = cfg.cc_threshold if threshold is None else float(threshold)

    def compute():
        return _replace_clusters(
            model, cfg, block, site, threshold, (window, n_eval, n_calibration)
        )

    inputs = _inputs(
        model,
        cfg,
        block=block,
        site=site,
        threshold=threshold,
        representative=cfg.representative,
        seeds=list(cfg.seeds),
        window=window,
        n_eval=n_eval,
        n_calibration=n_calibration,
    )
    check = check_table("method", "perplexity", "low", "high")
    return cached(
        "cluster_replacement",
        inputs,
        compute,
        code=__name__,
        kind="table",
        check=check,
        label=model,
    )


def _clusters(acts, cfg: Config, threshold: float):
    """Cluster labels of a site's neurons, the replaced neurons and their representatives."""
    from ...analysis.clustering import cluster_neurons, select_representatives

    z = (acts - acts.mean(0)) / acts.std(0).clamp_min(1e-12)
    corr = ((z.T @ z) / (len(z) - 1)).clamp(-1, 1).double().numpy()
    labels = cluster_neurons(corr, threshold)
    keep = select_representatives(
        labels, method=cfg.representative, random_state=cfg.random_state, corr=corr
    )
    rep_of = np.full(labels.max() + 1, -1)
    rep_of[labels[keep]] = keep
    neurons = np.setdiff1d(np.arange(len(labels)), keep)
    return labels, neurons, rep_of[labels[neurons]]


def _replace_clusters(model, cfg: Config, block, site, threshold, sizes) -> pd.DataFrame:
    from ...analysis import removal as rm

    net, _, ev, cal = _setup(model, *sizes)
    acts = rm.site_activations(net, cal, site, block)
    labels, neurons, reps = _clusters(acts, cfg, threshold)
    evaluator = rm.WindowLoss(net, ev, cache=False)

    def score(fit, idx, rep):
        if fit is None:
            nll = evaluator.nll([])
        else:
            with rm.replaced_neurons(net, site, block, idx, rep, *fit):
                nll = evaluator.nll([])
        return rm.perplexity_interval(
            nll,
            evaluator.n_tokens,
            n_bootstrap=cfg.n_bootstrap,
            confidence=cfg.confidence,
            random_state=cfg.random_state,
        )

    n = len(neurons)
    rows = [("none", -1, 0, score(None, [], []))]
    if n:
        rows.append(
            ("cluster", -1, n, score(rm.fit_replacement(acts, neurons, reps), neurons, reps))
        )
        rows.append(
            ("cluster-mean", -1, n, score(rm.mean_replacement(acts, neurons), neurons, neurons))
        )
        for seed in cfg.seeds:
            pick = np.sort(np.random.default_rng(seed).choice(len(labels), n, replace=False))
            rows.append(
                ("random-mean", seed, n, score(rm.mean_replacement(acts, pick), pick, pick))
            )
    table = pd.DataFrame(
        [
            dict(method=m, seed=s, n_replaced=k, perplexity=v[0], low=v[1], high=v[2])
            for m, s, k, v in rows
        ]
    )
    sizes_ = np.bincount(labels)
    table.attrs.update(
        n_neurons=int(len(labels)),
        n_clusters=int(len(sizes_)),
        n_multi=int((sizes_ > 1).sum()),
        threshold=threshold,
    )
    return table
