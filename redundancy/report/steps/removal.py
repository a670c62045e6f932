"""Removal steps (beyond the paper): take out what the book calls redundant and measure it.

A decoder's blocks are ordered for removal by several scores (the book's CKA among them),
the first ``k`` are dropped without any repair, and the model's perplexity on held-out
Brown news is measured with a bootstrap interval over the evaluation windows.

* Calibration text (scores, the greedy search, neuron fits): Brown *learned* files (``cj``),
  the first ``n_calibration`` windows of ``window`` tokens.
* Evaluation text: Brown news ``ca01``-``ca10``, the first ``n_eval`` windows; no file is
  in both.
* Windows: the start token, then ``window`` tokens of running text (the words of a file's
  sentences joined by spaces); every token after the start token is predicted.

Every function returns a cached result keyed by the model's content, the parameters and
the source of this module's imports. Tables are tidy (one row per ordering, k and seed).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ..._utils import progress_bar
from ..cache import cached, check_table
from ..config import Config

__all__ = [
    "EVAL_FILES",
    "block_scores",
    "brown_texts",
    "neuron_replacement",
    "removal_sweep",
]

logger = logging.getLogger(__name__)

EVAL_FILES = tuple(f"ca{i:02d}" for i in range(1, 11))
"""Brown news files the perplexity is measured on."""
CALIBRATION_GENRE = "cj"
"""Prefix of the Brown files the orderings are calibrated on (genre *learned*)."""

_MODELS: dict = {}  # loaded decoders and their windows, by (path, window, sizes): one load per process


def brown_texts(files) -> list[str]:
    """Running text of Brown files: every sentence's words joined by spaces, in file order."""
    from ...data.brown import read_brown

    docs = {d.file: d for d in read_brown()}
    missing = [f for f in files if f not in docs]
    if missing:
        raise ValueError(f"The Brown corpus has no files {missing}.")
    return [" ".join(" ".join(s) for s in docs[f].words) for f in files]


def _calibration_texts() -> list[str]:
    from ...data.brown import read_brown

    return brown_texts([d.file for d in read_brown() if d.file.startswith(CALIBRATION_GENRE)])


def _eval_texts() -> list[str]:
    return brown_texts(EVAL_FILES)


def _setup(model: str, window: int, n_eval: int, n_calibration: int):
    """``(model, tokenizer, eval windows, calibration windows)``, loaded once per process."""
    from ...encoders.decoders import load_decoder
    from ...encoders.models import resolve_model

    path = resolve_model(model)
    key = (path, window, n_eval, n_calibration)
    if key not in _MODELS:
        from ...analysis.removal import text_windows

        net, tok = load_decoder(path, device="cpu", lm_head=True)
        ev = text_windows(tok, _eval_texts(), window, n_eval)
        cal = text_windows(tok, _calibration_texts(), window, n_calibration)
        _MODELS.clear()
        _MODELS[key] = (net, tok, ev, cal)
    return _MODELS[key]


def _shared(model: str, sizes: tuple, name: str, make):
    """What ``make(net, eval windows, calibration windows)`` returns, made once per process
    for the loaded decoder (block states, the evaluation text's cached stream), so the steps
    of one process do not recompute each other's forward passes."""
    from ...encoders.models import resolve_model

    net, _, ev, cal = _setup(model, *sizes)
    key = ((resolve_model(model), *sizes), name)
    if key not in _MODELS:
        _MODELS[key] = make(net, ev, cal)
    return _MODELS[key]


def _states(model: str, sizes: tuple, positions=None):
    """Block states of the calibration windows (:func:`block_states`), once per process."""
    from ...analysis.removal import block_states

    name = f"states-{positions}"
    return _shared(
        model, sizes, name, lambda net, ev, cal: block_states(net, cal, positions=positions)
    )


def _evaluator(model: str, sizes: tuple):
    """The evaluation windows' :class:`WindowLoss` (cached stream of the whole model)."""
    from ...analysis.removal import WindowLoss

    return _shared(model, sizes, "eval", lambda net, ev, cal: WindowLoss(net, ev))


def _base_nll(model: str, sizes: tuple):
    """The unchanged model's NLL per evaluation window, once per process."""
    return _shared(model, sizes, "base-nll", lambda *_: _evaluator(model, sizes).nll([]))


def _interval(cfg: Config, evaluator, nll):
    from ...analysis.removal import perplexity_interval

    return perplexity_interval(
        nll,
        evaluator.n_tokens,
        n_bootstrap=cfg.n_bootstrap,
        confidence=cfg.confidence,
        random_state=cfg.random_state,
    )


def _inputs(model: str, cfg: Config, **options) -> dict:
    from ...encoders.models import model_identity

    return {
        "model": model_identity(model),
        "eval_files": list(EVAL_FILES),
        "calibration": CALIBRATION_GENRE,
        "bootstrap": [cfg.n_bootstrap, cfg.confidence, cfg.random_state],
        **options,
    }


def block_scores(
    model: str, cfg: Config, *, window: int = 128, n_eval: int = 16, n_calibration: int = 8
) -> pd.DataFrame:
    """Every block's scores on the calibration text: ``block``, ``block_influence``,
    ``cka_in_out``, ``adjacent_cka`` (the book's: CKA between consecutive layers as the
    book extracts them, the last one after the final norm), ``angular`` (span of 1, last
    token) and ``angular_mean`` (span of 1, every token). ``attrs["seconds"]``: the step's
    time."""
    from ...analysis import removal as rm

    def compute():
        import torch

        started = time.perf_counter()
        sizes = (window, n_eval, n_calibration)
        net = _setup(model, *sizes)[0]
        states = _states(model, sizes)
        last = _states(model, sizes, "last")
        book = states.clone()
        with torch.inference_mode():
            book[-1] = rm.final_norm(net)(book[-1])
        L = len(states) - 1
        table = pd.DataFrame(
            {
                "block": np.arange(L),
                "block_influence": rm.block_influence(states),
                "cka_in_out": rm.cka_in_out(states),
                "adjacent_cka": rm.cka_in_out(book),
                "angular": rm.angular_distance(last, 1),
                "angular_mean": rm.angular_distance(states, 1),
            }
        )
        table.attrs["seconds"] = round(time.perf_counter() - started, 1)
        return table

    inputs = _inputs(model, cfg, window=window, n_eval=n_eval, n_calibration=n_calibration)
    return cached(
        "block_scores",
        inputs,
        compute,
        code=__name__,
        kind="table",
        check=check_table("block", "block_influence", "cka_in_out"),
        label=model,
    )


def _orders(net, cal, ks, seeds, scores, greedy, sizes_states, seconds: dict) -> dict:
    """Removal sets per (ordering, k, seed); the seconds of the recomputed orderings go to
    ``seconds``."""
    from ...analysis import removal as rm

    L = rm.n_blocks(net)
    kmax = max(ks)
    ranked = {
        "block_influence": rm.rank_blocks(scores["block_influence"], highest_first=False),
        "cka_in_out": rm.rank_blocks(scores["cka_in_out"], highest_first=True),
        "adjacent_cka": rm.rank_blocks(scores["adjacent_cka"], highest_first=True),
        "last_first": list(range(L - 1, -1, -1)),
    }
    started = time.perf_counter()
    stream = rm.WindowLoss(net, cal)  # the pruned model's states from its cached stream

    def states_of(removed):
        if not removed:
            return sizes_states(None)
        stream.rebase(removed)  # runs from the newly removed block only
        return stream.states()

    ranked["cka_recomputed"] = rm.iterative_order(
        states_of, rm.cka_in_out, kmax, highest_first=True
    )
    seconds["cka_recomputed"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    tries = progress_bar(total=sum(L - i for i in range(kmax)), desc="greedy removal", unit="try")

    def loss(removed):
        tries.update()
        return float(greedy.nll(removed).sum())

    with tries:
        ranked["greedy_loss"], _ = rm.greedy_order(loss, L, kmax, chosen=greedy.rebase)
    seconds["greedy_loss"] = round(time.perf_counter() - started, 1)
    last_states = sizes_states("last")
    sets: dict = {}
    for k in ks:
        for name, order in ranked.items():
            sets[(name, k, -1)] = sorted(order[:k])
        sets[("angular_span", k, -1)] = rm.best_span(last_states, k)
        for i, seed in enumerate(seeds):
            rng = np.random.default_rng(seed)
            sets[("random", k, i)] = sorted(int(b) for b in rng.choice(L, size=k, replace=False))
    return sets


def removal_sweep(
    model: str,
    cfg: Config,
    *,
    ks=(2, 4, 8),
    n_random: int = 10,
    window: int = 128,
    n_eval: int = 16,
    n_calibration: int = 8,
    n_greedy: int = 4,
) -> pd.DataFrame:
    """Perplexity on held-out Brown news with ``k`` blocks removed, per ordering.

    Orderings (see :mod:`redundancy.analysis.removal`): ``block_influence`` (lowest first),
    ``cka_in_out`` and ``adjacent_cka`` (highest first), ``angular_span`` (the span of ``k``
    blocks with the smallest angular distance, last token), ``greedy_loss`` (SLEB: greedy by
    calibration loss, recomputed after each removal, searching on the first ``n_greedy``
    calibration windows), ``cka_recomputed`` (CKA of input and output recomputed on the
    pruned model after each removal: the moonshot built from the book's own measure),
    ``last_first`` and ``random`` (``n_random`` seeds, seed ``i`` = ``cfg.random_state + i``).

    Cost: the greedy search tries ``L + (L - 1) + ... + (L - k + 1)`` candidates (212 for
    30 blocks and ``k = 8``); after each choice the pruned model's residual stream is cached
    (:meth:`WindowLoss.rebase`), so candidate ``b`` runs only the blocks after ``b`` and the
    head. ``cka_recomputed`` reads the pruned model's states from the same kind of cache.
    The calibration states are shared with :func:`block_scores` within a process, and
    orderings that pick the same blocks are evaluated once.

    Returns
    -------
    DataFrame
        ``ordering``, ``k``, ``seed`` (-1 for deterministic orderings), ``blocks``
        (comma-separated), ``perplexity``, ``low``, ``high`` (bootstrap over the evaluation
        windows), ``ratio`` (to the unpruned model). The unpruned model is the row
        ``ordering="none"``, ``k=0``. ``attrs``: ``baseline``, ``seconds`` (the whole step),
        ``seconds_parts`` (``setup``: scores and the cached streams, ``cka_recomputed``,
        ``greedy_loss``, ``evaluation``: every setting on the evaluation text),
        ``n_evaluated`` (distinct settings evaluated), ``n_blocks``, ``eval_tokens``.
    """
    ks = tuple(sorted({int(k) for k in ks}))
    seeds = [cfg.random_state + i for i in range(n_random)]

    def compute():
        return _sweep(model, cfg, ks, seeds, (window, n_eval, n_calibration), n_greedy)

    inputs = _inputs(
        model,
        cfg,
        ks=list(ks),
        n_random=n_random,
        window=window,
        n_eval=n_eval,
        n_calibration=n_calibration,
        n_greedy=n_greedy,
    )
    check = check_table("ordering", "k", "seed", "perplexity", "low", "high")
    return cached(
        "removal_sweep", inputs, compute, code=__name__, kind="table", check=check, label=model
    )


def _sweep(model, cfg: Config, ks, seeds, sizes, n_greedy: int) -> pd.DataFrame:
    from ...analysis import removal as rm

    started = time.perf_counter()
    seconds: dict = {}
    net, _, ev, cal = _setup(model, *sizes)
    scores = block_scores(model, cfg, window=sizes[0], n_eval=sizes[1], n_calibration=sizes[2])
    evaluator = _evaluator(model, sizes)
    greedy = rm.WindowLoss(net, cal[:n_greedy])  # SLEB's search runs on fewer windows
    seconds["setup"] = round(time.perf_counter() - started, 1)
    sets = _orders(net, cal, ks, seeds, scores, greedy, lambda p: _states(model, sizes, p), seconds)
    del greedy
    t0 = time.perf_counter()
    done: dict = {}  # orderings that agree share one evaluation

    def measure(blocks):
        if tuple(blocks) not in done:
            nll = evaluator.nll(blocks) if blocks else _base_nll(model, sizes)
            done[tuple(blocks)] = _interval(cfg, evaluator, nll)
        return done[tuple(blocks)]

    base = measure([])
    rows = [
        dict(
            ordering="none", k=0, seed=-1, blocks="", perplexity=base[0], low=base[1], high=base[2]
        )
    ]
    for (name, k, seed), blocks in progress_bar(sets.items(), desc="perplexity", unit="setting"):
        value, low, high = measure(blocks)
        rows.append(
            dict(
                ordering=name,
                k=k,
                seed=seed,
                blocks=",".join(map(str, blocks)),
                perplexity=value,
                low=low,
                high=high,
            )
        )
    seconds["evaluation"] = round(time.perf_counter() - t0, 1)
    table = pd.DataFrame(rows)
    table["ratio"] = table["perplexity"] / base[0]
    table.attrs.update(
        baseline=base[0],
        seconds=round(time.perf_counter() - started, 1),
        seconds_parts=seconds,
        n_evaluated=len(done),
        n_blocks=rm.n_blocks(net),
        eval_tokens=int(len(ev) * evaluator.n_tokens),
    )
    return table


def neuron_replacement(
    model: str,
    cfg: Config,
    *,
    block: int = 15,
    site: str = "mlp",
    n_neurons: int = 768,
    window: int = 128,
    n_eval: int = 16,
    n_calibration: int = 8,
) -> pd.DataFrame:
    """Replace ``n_neurons`` randomly chosen neurons of one site inside the forward pass.

    ``site="mlp"``: MLP neurons of ``block``; ``"residual"``: dimensions of the residual
    stream after block ``block - 1`` (the book's layer ``block``). Each chosen neuron is
    replaced either by its calibration mean (``mean``: keeps nothing) or by a least-squares
    fit from its representative, the other neuron of the site it correlates with most on
    the calibration text (``representative``: what a cluster of two keeps).

    Returns
    -------
    DataFrame
        ``method`` (``none``, ``mean``, ``representative``), ``perplexity``, ``low``,
        ``high``, ``mean_abs_corr`` (between neurons and representatives);
        ``attrs["seconds"]``. The replacement acts at every position (the start token
        too), as before; only the blocks from the replaced site on are run.
    """
    from ...analysis import removal as rm

    def compute():
        import torch

        started = time.perf_counter()
        net, _, ev, cal = _setup(model, window, n_eval, n_calibration)
        acts = rm.site_activations(net, cal, site, block)
        rng = np.random.default_rng(cfg.random_state)
        neurons = np.sort(rng.choice(acts.shape[1], size=n_neurons, replace=False))
        z = (acts - acts.mean(0)) / acts.std(0).clamp_min(1e-12)
        corr = (z.T @ z) / len(z)
        corr.fill_diagonal_(0)
        reps = corr[neurons].abs().argmax(1).numpy()
        best = corr[neurons, torch.as_tensor(reps)].abs().mean().item()
        evaluator = _evaluator(model, (window, n_eval, n_calibration))
        hooked = block if site == "mlp" else max(block - 1, 0)  # first block the hook changes
        rows = []
        fits = {
            "none": None,
            "mean": rm.mean_replacement(acts, neurons),
            "representative": rm.fit_replacement(acts, neurons, reps),
        }
        for method, fit in fits.items():
            if fit is None:
                nll = _base_nll(model, (window, n_eval, n_calibration))
            else:
                with rm.replaced_neurons(net, site, block, neurons, reps, *fit):
                    nll = evaluator.nll([], changed_from=hooked)
            value, low, high = _interval(cfg, evaluator, nll)
            rows.append(
                dict(method=method, perplexity=value, low=low, high=high, mean_abs_corr=best)
            )
        table = pd.DataFrame(rows)
        table.attrs["seconds"] = round(time.perf_counter() - started, 1)
        return table

    inputs = _inputs(
        model,
        cfg,
        block=block,
        site=site,
        n_neurons=n_neurons,
        window=window,
        n_eval=n_eval,
        n_calibration=n_calibration,
        seed=cfg.random_state,
    )
    check = check_table("method", "perplexity", "low", "high")
    return cached(
        "neuron_replacement", inputs, compute, code=__name__, kind="table", check=check, label=model
    )
