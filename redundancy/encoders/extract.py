"""Activations of every layer of an encoder, one vector per word or per sentence, cached on disk.

:func:`extract` is the only entry point most code needs::

    acts = extract("minilm", task, split="train")   # acts.acts: (n_words, n_layers, n_hidden)

Token tasks give one vector per *word* and layer (layer 0 = embedding output), the
sub-word pieces of a word reduced by ``aggregation``; sentences longer than the model
accepts go through overlapping windows (no word is ever dropped). Sentence tasks give the
vector of one token (``pooling``) per layer. It reads as four steps: plan the batches
(:mod:`redundancy.encoders.alignment`), open or resume the cache folder
(:mod:`redundancy.encoders.store`), run the batches, finish the cache. A cache is keyed
by the model's content, the text, the options and the source of the extraction code, and
verified before it is trusted.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np

from .._utils import cache_dir as _cache_dir
from .._utils import entry_lock, progress_bar, resolve_device, source_digest, stable_hash
from ..constraints import check
from ..data.base import Task
from .alignment import (
    SENTENCE_MAX_LENGTH,
    batches,
    collate,
    default_max_length,
    pool_pieces,
    pool_sentence,
    sentence_plan,
    token_plan,
)
from .store import Activations, ActivationStore, CacheError, slug

__all__ = ["Activations", "extract", "extraction_key"]

logger = logging.getLogger(__name__)


def extract(
    model: str,
    task: Task,
    split: str = "train",
    *,
    aggregation: str = "last",
    pooling: str = "auto",
    dtype: str = "float32",
    max_length: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Activations:
    """Activations of every layer for one split of a task, cached on disk.

    Parameters
    ----------
    model : str
        ``"minilm"``, ``"mpnet"``, a hub id or a local folder (see
        :func:`redundancy.models.resolve_model`), e.g. the folder returned by
        :func:`redundancy.finetune.finetune` for sentence tasks.
    task : Task
        From :func:`redundancy.data.load_task`.
    split : {"train", "dev", "test"}, default="train"
    aggregation : {"last", "first", "mean"}, default="last"
        Token tasks: how a word's sub-word pieces become one vector (last piece, as NeuroX).
    pooling : {"auto", "first", "last", "mean"}, default="auto"
        Sentence tasks: the token standing for the sentence. ``"auto"`` is the first token for
        right-padding tokenizers (BERT's ``[CLS]``) and the last one for left-padding ones
        (XLNet's ``<cls>``); ``"mean"`` averages the non-padding tokens.
    dtype : {"float32", "float16"}, default="float32"
        Storage type of the activations.
    max_length : int, optional
        Longest input in tokens, special tokens included. Token tasks: defaults to the model's
        limit (512 for BERT-like models); longer sentences go through overlapping windows and
        each word takes its vector from the window where it has most context. Sentence tasks:
        defaults to 128, and longer inputs are truncated (the usual protocol; the count is
        logged and stored in ``meta["n_truncated"]``).
    batch_size : int, default=32
        Sequences per forward pass (sequences are sorted by length first).
    device : str, optional
        ``None`` picks the GPU when there is one.
    cache_dir : path, optional
        Folder of the cache; default ``cache_dir("activations")``.
    progress : bool, default=True
        Show a progress bar (words or sentences per second).

    Returns
    -------
    Activations
        ``acts`` memory-mapped from the cache, ``(n_instances, n_layers, n_hidden)``.

    Notes
    -----
    The cache folder's name holds a hash of :func:`extraction_key`. Arrays are written in place batch by batch
    and ``progress.txt`` lists the finished batches, so an interrupted run resumes; the
    manifest (with checksums) is written last. A cache that disagrees with its manifest or
    inputs is rebuilt with a warning. See ``docs/extraction.md``.
    """
    from .decoders import is_decoder, load_config
    from .models import load_tokenizer, model_identity, resolve_model

    caller = "extract"
    if not isinstance(task, Task):
        raise TypeError(
            f"The 'task' parameter of extract must be a redundancy Task. Got {type(task).__name__} instead."
        )
    split = task.split(split).name
    for name, value in (("aggregation", aggregation), ("pooling", pooling), ("dtype", dtype)):
        check(name, value, caller)
    batch_size = check("batch_size", batch_size, caller)
    max_length = check("max_length", max_length, caller)
    t0 = time.perf_counter()
    path = resolve_model(model)
    tokenizer = load_tokenizer(model)
    config = load_config(path)
    decoder = is_decoder(config)
    token_level = task.level == "token"
    if max_length is None:
        limit = default_max_length(tokenizer, config)
        max_length = limit if token_level else min(SENTENCE_MAX_LENGTH, limit)
    if pooling == "auto":  # a decoder's last token is the only one that saw the whole input
        pooling = "last" if decoder or tokenizer.padding_side == "left" else "first"
    identity = model_identity(model)
    key_inputs = extraction_key(
        identity, task, split, aggregation if token_level else pooling, dtype, max_length
    )
    labels = task.encode(split)
    if len(labels) == 0:
        raise ValueError(f"Split {split!r} of task {task.name!r} is empty; nothing to extract.")
    shape = (len(labels), *_layout(config))
    root = Path(cache_dir) if cache_dir is not None else _cache_dir("activations")
    key = stable_hash(key_inputs)
    store = ActivationStore(
        _folder(root, model, path, f"{task.level}-{split}-{key}"), key, shape, dtype
    )
    with entry_lock(store.folder / ".lock"):  # one writer per cache folder across processes
        found = _load(store)
        if found is None:
            options = {
                "token_level": token_level,
                "aggregation": aggregation,
                "pooling": pooling,
                "max_length": max_length,
                "batch_size": batch_size,
                "decoder": decoder,
                "started": t0,
                "recorded": {"model_identity": identity, "key_inputs": key_inputs},
            }
            found = _build(store, model, task, split, tokenizer, options, device, progress)
        manifest, arrays = found
    meta = {**manifest["meta"], "path": str(store.folder)}
    return Activations(
        arrays["acts"],
        labels,
        tuple(task.label_names),
        arrays["sentence_index"],
        str(model),
        task.name,
        split,
        meta,
    )


def extraction_key(
    identity: dict, task: Task, split: str, reduce: str, dtype: str, max_length: int
) -> dict:
    """What an activation cache entry depends on (its key is the hash of this dict).

    The model's content, the text of the split (not its labels: they are attached from the
    task on every load, so tasks over the same sentences share one entry), the level, the
    reduction of pieces or the pooling, the storage dtype, the input length, the cache
    format and the source of the extraction code.
    """
    from .store import CACHE_FORMAT

    return {
        "model": identity.get("digest") or identity.get("hub_id"),
        "data": task.split(split).text_fingerprint(),
        "level": task.level,
        "reduce": reduce,
        "dtype": dtype,
        "max_length": int(max_length),
        "format": CACHE_FORMAT,
        "code": source_digest(__name__),
    }


def _folder(root: Path, model: str, path: str, name: str) -> Path:
    """The cache folder ``<root>/<model label>/<name>``; the label only helps people find
    their way, so an entry made under another label (the same model in another folder) is
    found and used."""
    label = model if model in ("minilm", "mpnet") else Path(path).name
    folder = root / slug(label) / name
    if not folder.is_dir():
        existing = sorted(root.glob(f"*/{name}"))
        if existing:
            return existing[0]
    return folder


def _layout(config) -> tuple[int, int]:
    """``(n_layers, n_hidden)`` of a model config (layers counted with the embeddings)."""
    n_layers = int(getattr(config, "num_hidden_layers", getattr(config, "n_layer", 0))) + 1
    n_hidden = int(getattr(config, "hidden_size", getattr(config, "d_model", 0)))
    return n_layers, n_hidden


def _load(store: ActivationStore):
    try:
        found = store.load()
    except CacheError as e:
        warnings.warn(
            f"The activation cache in {store.folder} is damaged or stale ({e}); rebuilding it.",
            stacklevel=3,
        )
        store.clear()
        return None
    if found is not None:
        logger.info("activations loaded from %s", store.folder)
    return found


def _build(store, model, task, split, tokenizer, options, device, progress):
    """Plan, open or resume the store, run the batches, finish: ``(manifest, arrays)``."""
    sp = task.split(split)
    t_tok = time.perf_counter()
    if options.get("decoder"):
        from .decoders import decoder_sentence_plan, decoder_token_plan

        if options["token_level"]:
            plan, info = decoder_token_plan(
                tokenizer, sp.sentences, options["max_length"], options["aggregation"]
            )
        else:
            plan, info = decoder_sentence_plan(tokenizer, sp.sentences, options["max_length"])
    elif options["token_level"]:
        plan, info = token_plan(
            tokenizer, sp.sentences, options["max_length"], options["aggregation"]
        )
    else:
        plan, info = sentence_plan(tokenizer, sp.sentences, options["max_length"])
    if plan.n_rows != store.shape[0]:
        raise ValueError(
            f"Task {task.name!r} split {split!r} has {store.shape[0]} labels but {plan.n_rows} "
            "instances; the split's sentences and labels disagree."
        )
    order = batches(plan.lengths, options["batch_size"])
    plan_hash = stable_hash([b.tolist() for b in order] + [plan.lengths.tolist()])
    t_tok = time.perf_counter() - t_tok
    done = store.open({"plan": plan_hash, "n_batches": len(order)})
    device = resolve_device(device)
    desc = f"{Path(str(model)).name}/{task.name}/{split}"
    t_fwd = time.perf_counter()
    n_new = _run_batches(
        store, model, tokenizer, plan, order, done, options, device, desc, progress
    )
    t_fwd = time.perf_counter() - t_fwd
    lengths = [len(s) for s in sp.sentences] if options["token_level"] else [1] * len(sp)
    sentence_index = np.repeat(np.arange(len(sp), dtype=np.int32), lengths)
    unit = "word" if options["token_level"] else "sentence"
    meta = {
        ("aggregation" if options["token_level"] else "pooling"): options[
            "aggregation" if options["token_level"] else "pooling"
        ],
        "level": task.level,
        "max_length": int(options["max_length"]),
        "dtype": store.dtype,
        "batch_size": int(options["batch_size"]),
        "device": device,
        **info,
        "resumed_batches": len(done),
        "timings": {
            "tokenize_s": round(t_tok, 4),
            "forward_s": round(t_fwd, 4),
            "total_s": round(time.perf_counter() - options["started"], 4),
            f"{unit}s_per_s": round(n_new / t_fwd, 2) if t_fwd > 0 else None,
        },
        **options["recorded"],
    }
    info = {"model": str(model), "task": task.name, "split": split, "meta": meta}
    logger.info("extracted %s %s/%s: %s in %.1fs", model, task.name, split, store.shape, t_fwd)
    return store.finish(sentence_index, info)


def _run_batches(store, model, tokenizer, plan, order, done, options, device, desc, progress):
    """Forward passes over the batches not yet done; returns the instances they produced."""
    import torch

    from .models import load_model

    net, _ = load_model(model, device=device, progress=progress)
    token_level = options["token_level"]
    sizes = [sum(len(plan.selections[j][1]) for j in b) if token_level else len(b) for b in order]
    todo = [i for i in range(len(order)) if i not in done]
    bar = progress_bar(
        total=store.shape[0],
        initial=sum(sizes[i] for i in done),
        unit_scale=True,
        unit="word" if token_level else "sentence",
        desc=desc,
        progress=progress,
    )
    with store.writer() as write, torch.inference_mode(), bar:
        for i in todo:
            idx = order[i]
            inputs = collate(tokenizer, plan, idx, device)
            hidden = _forward(net, inputs)
            if token_level:
                rows, vecs = _pool_words(hidden, plan, idx, options["aggregation"], device)
            else:
                rows = np.sort(idx)
                mask = inputs["attention_mask"]
                if options.get("decoder"):
                    from .decoders import sentence_mask

                    mask = sentence_mask(mask, options["pooling"])
                vecs = pool_sentence(hidden, mask, options["pooling"])
                vecs = vecs[torch.from_numpy(np.argsort(idx, kind="stable")).to(device)]
            write(i, rows, vecs.cpu().numpy())
            bar.update(sizes[i])
    return sum(sizes[i] for i in todo)


def _forward(model, inputs: dict):
    """One forward pass; the tuple of hidden states, embedding output first."""
    return model(**inputs, output_hidden_states=True, return_dict=True).hidden_states


def _pool_words(hidden, plan, idx, aggregation, device):
    """Rows and per-word vectors of one batch of token-task sequences."""
    import torch

    sel = [plan.selections[j] for j in idx]
    counts = [len(p) for p, _ in sel]
    b_idx = torch.from_numpy(np.repeat(np.arange(len(idx)), counts)).to(device)
    pos = torch.from_numpy(np.concatenate([p for p, _ in sel])).to(device)
    rows = np.concatenate([r for _, r in sel])
    uniq, group = np.unique(rows, return_inverse=True)
    vecs = pool_pieces(
        hidden, b_idx, pos, torch.from_numpy(group).to(device), len(uniq), aggregation
    )
    return uniq, vecs
