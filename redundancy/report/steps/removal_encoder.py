"""Removal steps for encoders: take out blocks the book calls redundant, measure a task.

An encoder has no language-model head, so what removing ``k`` of its blocks costs is read
from the book's own tasks, on a seeded subset of the test split:

* **token tasks** (universal POS): a probe (the paper's, with the run's hyper-parameters)
  is trained on the pruned model's last layer over a subset of the training split and
  scored on the test subset: is the information still there at the output? Removing the
  last ``k`` blocks this way is the probe on layer ``L - k`` of chapter 4.
* **sentence tasks**: with ``finetune`` (the paper's set-up) the fine-tuned model's own
  classifier, nothing retrained (no repair); without it, a probe on the pruned model's
  sentence vector, as for token tasks.

Orderings are computed per model on calibration text, Brown *learned* sentences (files
``cj``; no labels are used): Block Influence, linear CKA between adjacent layers (the
book's measure, per word), the best span by angular distance, a greedy search on how far
the pruned model's last layer moves from the whole model's (SLEB's idea without a
language-model head), last blocks first (the paper's LayerSelector), and random sets:
every set of ``k`` blocks when there are few (the exact distribution of a random choice),
else seeded draws.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ..._utils import progress_bar
from ..cache import cached, check_table
from ..config import Config

__all__ = ["CALIBRATION_GENRE", "encoder_removal", "removal_ks"]

logger = logging.getLogger(__name__)

CALIBRATION_GENRE = "cj"
"""Prefix of the Brown files the orderings are computed on (genre *learned*)."""


def removal_ks(total: int) -> list[int]:
    """Numbers of blocks removed: 1, 2, a quarter and half of the blocks."""
    return sorted({k for k in (1, 2, total // 4, total // 2) if 1 <= k < total})


def reference_seconds(model: str, shape: tuple[int, int], cfg: Config) -> float:
    """Rough seconds :func:`encoder_removal` takes for every task of a run on the reference
    2-core machine, for an encoder of ``shape = (layers, hidden)``: the tokens its settings
    run (each restarts where it differs from the setting before: about 0.27 of a whole pass)
    at about 7,000 MiniLM tokens a second, scaled by layers x hidden^1.5."""
    import math

    from ...data.tasks import task_pairs

    n_layers, n_hidden = shape
    blocks = n_layers - 1
    settings = sum((c if (c := math.comb(blocks, k)) <= 20 else 10) + 5 for k in removal_ks(blocks))
    total = 0.0
    for task in cfg.tasks:
        # the subsets: 150 sentences of the test and training splits for a token task, 300
        # test instances for a sentence task (and 150 training ones without fine-tuning),
        # fewer where the run's splits are smaller
        options = cfg.task_options.get(task, {})
        if task in cfg.token_tasks:
            tokens = sum(
                min(150 * 25, options.get(f"{s}_tokens") or 10**9) for s in ("train", "test")
            )
        else:
            n = min(300, options.get("test_sentences") or 10**9)
            if not cfg.finetune:
                n += min(150, options.get("train_sentences") or 10**9)
            tokens = n * 25 * (2 if task_pairs(task) else 1)
        total += settings * 0.27 * tokens + 9 * 200 * 25
    return total / 7000 * n_layers * n_hidden**1.5 / (7 * 384**1.5)


def _subset(n: int, size: int, seed: int) -> np.ndarray:
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def _max_length(tokenizer, net, cfg: Config, token_level: bool) -> int:
    from ...encoders.alignment import SENTENCE_MAX_LENGTH, default_max_length

    if cfg.max_length is not None:
        return int(cfg.max_length)
    limit = default_max_length(tokenizer, net.config)
    return limit if token_level else min(SENTENCE_MAX_LENGTH, limit)


class _Split:
    """Instances of one split through the model (block inputs recorded once).

    ``read``: ``"words"`` (last layer per word), ``"layers"`` (every layer per word),
    ``"sentence"`` (last layer, pooled) or ``"head"`` (the classifier's predictions).
    """

    def __init__(self, net, tokenizer, sentences, cfg: Config, read: str, pooling="first"):
        from ...analysis.encoder_removal import EncoderRuns
        from ...encoders.alignment import batches, collate, sentence_plan, token_plan

        token_level = read in ("words", "layers")
        limit = _max_length(tokenizer, net, cfg, token_level)
        if token_level:
            self.plan, _ = token_plan(tokenizer, sentences, limit, cfg.aggregation)
        else:
            self.plan, _ = sentence_plan(tokenizer, sentences, limit)
        self.order = batches(self.plan.lengths, cfg.batch_size)
        inputs = [collate(tokenizer, self.plan, idx, str(net.device)) for idx in self.order]
        if read == "layers":
            inputs = [{**b, "output_hidden_states": True} for b in inputs]
        self.read, self.pooling, self.aggregation = read, pooling, cfg.aggregation
        self.inputs = inputs
        self.runs = EncoderRuns(net, inputs, self._readout)

    def _readout(self, out, i):
        from ...encoders.alignment import pool_sentence
        from ...encoders.extract import _pool_words

        idx = self.order[i]
        if self.read == "head":
            logits = out.logits.float().cpu()
            return idx, (logits[:, 0] if logits.shape[1] == 1 else logits.argmax(-1)).numpy()
        if self.read == "sentence":
            mask = self.inputs[i]["attention_mask"]
            vecs = pool_sentence([out.last_hidden_state], mask, self.pooling)[:, 0]
            return idx, vecs.float().cpu().numpy()
        hidden = out.hidden_states if self.read == "layers" else [out.last_hidden_state]
        rows, vecs = _pool_words(hidden, self.plan, idx, self.aggregation, hidden[0].device)
        return rows, vecs.float().cpu().numpy()

    def outputs(self, removed=()) -> np.ndarray:
        """Predictions or vectors of every instance (word, sentence), in instance order."""
        parts = self.runs.run(removed)
        first = parts[0][1]
        out = np.zeros((self.plan.n_rows, *first.shape[1:]), dtype=first.dtype)
        for rows, values in parts:
            out[rows] = values
        return out.reshape(len(out), -1) if self.read == "words" else out


def _load(model: str, task_name: str, cfg: Config):
    """``(net, tokenizer, head)``: the fine-tuned classifier for a sentence task of a
    fine-tuning run, else the pretrained encoder."""
    from ..._utils import resolve_device
    from ...encoders.models import load_model, quiet_loading
    from ..features import finetuned_model, get_task

    device = resolve_device(cfg.device)
    if get_task(task_name, cfg).level == "sentence" and cfg.finetune:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = finetuned_model(model, task_name, cfg, progress=False)
        with quiet_loading(False):
            net = AutoModelForSequenceClassification.from_pretrained(path)
        return net.eval().to(device), AutoTokenizer.from_pretrained(path), True
    net, tok = load_model(model, device=device, progress=False)
    return net, tok, False


def _instances(task, split: str, size: int, seed: int):
    """A seeded subset of a split: its sentences, flat labels and sentence of each label."""
    sp = task.split(split)
    idx = _subset(len(sp), size, seed)
    y = task.encode(split)
    if task.level == "token":
        lens = np.fromiter((len(s) for s in sp.sentences), dtype=np.int64, count=len(sp))
        keep = np.repeat(np.isin(np.arange(len(sp)), idx), lens)
        groups = np.repeat(np.arange(len(idx)), lens[idx])
        return [sp.sentences[i] for i in idx], y[keep], groups
    return [sp.sentences[i] for i in idx], y[idx], None


def _calibration(n: int) -> list:
    from ...data.brown import read_brown

    sents = [s for d in read_brown() if d.file.startswith(CALIBRATION_GENRE) for s in d.words]
    return [list(s) for s in sents[:n]]


def _orderings(cal: _Split, ks, n_random: int, max_exhaustive: int, seed: int) -> dict:
    """Removal sets per ``(ordering, k, seed)`` from the calibration text."""
    import torch

    from ...analysis import removal as rm
    from ...analysis.encoder_removal import output_change, removal_sets

    full = cal.outputs()  # (words, L + 1, hidden)
    states = torch.from_numpy(np.ascontiguousarray(full.transpose(1, 0, 2)))
    L = len(states) - 1
    ranked = {
        "block_influence": rm.rank_blocks(rm.block_influence(states), highest_first=False),
        "adjacent_cka": rm.rank_blocks(rm.cka_in_out(states), highest_first=True),
        "last_first": list(range(L - 1, -1, -1)),
    }
    ranked["greedy_output"], _ = rm.greedy_order(
        lambda r: output_change(full[:, -1], cal.outputs(r)[:, -1]), L, max(ks)
    )
    sets: dict = {}
    for k in ks:
        for name, order in ranked.items():
            sets[(name, k, -1)] = sorted(order[:k])
        sets[("angular_span", k, -1)] = rm.best_span(states, k)
        chosen, how = removal_sets(
            L, k, max_exhaustive=max_exhaustive, n_random=n_random, random_state=seed
        )
        for i, blocks in enumerate(chosen):
            sets[("random", k, i)] = blocks
    return sets, how


def _evaluate(task, test: _Split, train, y, y_train, groups, cfg: Config, removed) -> tuple:
    """``(score, low, high)`` of the task with ``removed`` blocks taken out."""
    from ...analysis.metrics import bootstrap_interval, score
    from ...analysis.probes import train_probe

    if train is None:
        preds = test.outputs(removed)
    else:
        probe = train_probe(
            train.outputs(removed),
            y_train,
            kind=task.kind,
            n_classes=task.n_classes if task.kind == "classification" else None,
            random_state=cfg.random_state,
            progress=False,
            engine="torch",  # one small probe per setting: the numba engine's threads cost more
            **cfg.probe_options(),
        )
        preds = probe.predict(test.outputs(removed))
    value = score(y, preds, task.metric)
    low, high = bootstrap_interval(
        y,
        preds,
        metric=task.metric,
        groups=groups,
        n_bootstrap=max(cfg.n_bootstrap, 1),
        confidence=cfg.confidence,
        random_state=cfg.random_state,
    )
    return value, low, high


def _sweep(model: str, task_name: str, cfg: Config, sizes: dict, ks, n_random, max_exhaustive):
    from ...analysis.encoder_removal import run_order
    from ..features import get_task

    started = time.perf_counter()
    task = get_task(task_name, cfg)
    net, tok, head = _load(model, task_name, cfg)
    token = task.level == "token"
    pooling = "first" if cfg.pooling == "auto" else cfg.pooling
    read = "head" if head else ("words" if token else "sentence")
    n_test = sizes["n_token"] if token else sizes["n_test"]
    sents, y, groups = _instances(task, "test", n_test, cfg.random_state)
    test = _Split(net, tok, sents, cfg, read, pooling)
    train = y_train = None
    if not head:
        sents_tr, y_train, _ = _instances(task, "train", sizes["n_token"], cfg.random_state)
        train = _Split(net, tok, sents_tr, cfg, read, pooling)
    cal = _Split(net, tok, _calibration(sizes["n_calibration"]), cfg, "layers")
    total = cal.runs.total
    ks = [k for k in (ks or removal_ks(total)) if 1 <= k < total]
    sets, how = _orderings(cal, ks, n_random, max_exhaustive, cfg.random_state)
    done: dict = {(): _evaluate(task, test, train, y, y_train, groups, cfg, [])}
    # distinct sets once each, in the order that restarts each late from the one before
    for blocks in progress_bar(
        run_order(sets.values(), total), desc="removed blocks", unit="setting"
    ):
        done[tuple(blocks)] = _evaluate(task, test, train, y, y_train, groups, cfg, blocks)
    rows = [dict(ordering="none", k=0, seed=-1, blocks="", **_values(done[()]))]
    for (name, k, seed), blocks in sets.items():
        rows.append(
            dict(ordering=name, k=k, seed=seed, blocks=",".join(map(str, blocks)), **_values(done[tuple(blocks)]))
        )  # fmt: skip
    table = pd.DataFrame(rows)
    table.insert(0, "task", task_name)
    table["ratio"] = table["score"] / done[()][0]
    table.attrs.update(
        seconds=round(time.perf_counter() - started, 1),
        n_blocks=int(total),
        random=how,
        readout="classifier" if head else "probe",
        metric=task.metric,
        n_test=int(len(y)),
        n_settings=len(done),
        baseline=float(done[()][0]),
        majority=_majority(y, task.kind),
        # blocks the test split ran over all settings, against a whole pass for each
        blocks_run_share=round(
            test.runs.blocks_run / max(1, (len(done) - 1) * total * len(test.inputs)), 3
        ),
    )
    return table


def _majority(y, kind: str) -> float | None:
    """Accuracy of always answering the test subset's most frequent label (None for a
    regression task): where every setting scores this, the readout has learned nothing."""
    if kind != "classification" or not len(y):
        return None
    _, counts = np.unique(np.asarray(y), return_counts=True)
    return float(counts.max() / counts.sum())


def _values(v) -> dict:
    return {"score": float(v[0]), "low": float(v[1]), "high": float(v[2])}


def encoder_removal(
    model: str,
    task_name: str,
    cfg: Config,
    *,
    ks=None,
    n_test: int = 300,
    n_token_sentences: int = 150,
    n_calibration: int = 200,
    n_random: int = 10,
    max_exhaustive: int = 20,
) -> pd.DataFrame:
    """A task's score on an encoder with ``k`` blocks removed, per ordering.

    Parameters
    ----------
    model, task_name : the run's model and task (sentence tasks use the fine-tuned model
        when ``cfg.finetune``)
    ks : list of int, optional
        Default :func:`removal_ks` (for 6 blocks: 1, 2, 3).
    n_test : int
        Test instances of a sentence task (a seeded subset).
    n_token_sentences : int
        Token tasks: test sentences (every word scored) and, as many, training sentences
        of the probe (seeded subsets); sentence tasks without fine-tuning: training
        instances of the probe.
    n_calibration : int
        Brown *learned* sentences the orderings are computed on.
    n_random, max_exhaustive : random sets: all ``C(L, k)`` when at most ``max_exhaustive``,
        else ``n_random`` seeded draws.

    Returns
    -------
    DataFrame
        ``task``, ``ordering``, ``k``, ``seed`` (-1 for deterministic orderings, the set's
        number for random ones), ``blocks``, ``score``, ``low``, ``high`` (bootstrap over
        test sentences), ``ratio`` (to the whole model). The whole model is the row
        ``ordering="none"``. ``attrs``: ``seconds``, ``n_blocks``, ``random``
        (``"exhaustive"`` or ``"seeds"``), ``readout`` (``"classifier"`` or ``"probe"``),
        ``metric``, ``n_test``, ``n_settings`` (distinct sets evaluated), ``baseline``,
        ``majority`` (accuracy of the test subset's most frequent label; None for
        regression), ``blocks_run_share`` (blocks the test split ran, against a whole pass
        per setting).
    """
    from ..features import features_identity

    sizes = {
        "n_test": int(n_test),
        "n_token": int(n_token_sentences),
        "n_calibration": int(n_calibration),
    }
    inputs = {
        "features": features_identity(model, task_name, cfg),
        "sizes": sizes,
        "ks": None if ks is None else sorted(int(k) for k in ks),
        "random": [int(n_random), int(max_exhaustive), cfg.random_state],
        "probe": cfg.probe_options() | {"device": None},
        "bootstrap": [cfg.n_bootstrap, cfg.confidence],
        "calibration": CALIBRATION_GENRE,
        "batch_size": cfg.batch_size,
    }
    return cached(
        "encoder_removal",
        inputs,
        lambda: _sweep(model, task_name, cfg, sizes, ks, n_random, max_exhaustive),
        code=__name__,
        kind="table",
        check=check_table("task", "ordering", "k", "seed", "score", "low", "high"),
        label=f"{model}/{task_name}",
    )
