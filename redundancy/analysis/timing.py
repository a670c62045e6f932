"""The paper's efficiency measurements: a forward pass stopped after layer l, and probe training.

Timings depend on the machine and on whatever else runs on it; the tables these functions
return carry the device and batch size so a reader can judge them.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
import pandas as pd

from .._utils import progress_disabled, resolve_device

logger = logging.getLogger(__name__)

_BLOCK_PATHS = (
    ("encoder", "layer"),  # BERT, RoBERTa, MPNet, ELECTRA
    ("layer",),  # XLNet
    ("transformer", "layer"),  # DistilBERT
    ("layers",),
    ("h",),  # GPT-2
)


def block_list(model):
    """The ``ModuleList`` of transformer blocks of an encoder and its owner.

    Returns
    -------
    (owner, attribute)
        ``getattr(owner, attribute)`` is the ``torch.nn.ModuleList``.
    """
    import torch

    for path in _BLOCK_PATHS:
        owner = model
        for name in path[:-1]:
            owner = getattr(owner, name, None)
        blocks = getattr(owner, path[-1], None) if owner is not None else None
        if isinstance(blocks, torch.nn.ModuleList):
            return owner, path[-1]
    raise ValueError(
        f"Cannot find the transformer blocks of a {type(model).__name__}: looked for "
        f"{['.'.join(p) for p in _BLOCK_PATHS]}. Supported: BERT-like models, MPNet, XLNet."
    )


@contextlib.contextmanager
def truncated(model, n_blocks: int):
    """Within the block, ``model`` runs the embeddings and only its first ``n_blocks`` blocks.

    The block list is swapped for a slice of itself (the weights are shared, nothing is
    copied) and the pooler, if any, is switched off; both are restored on exit.
    """
    import torch

    owner, attr = block_list(model)
    blocks = getattr(owner, attr)
    if not 0 <= n_blocks <= len(blocks):
        raise ValueError(
            f"The 'layers' parameter of time_forward must hold layers in [0, {len(blocks)}]. "
            f"Got {n_blocks} instead."
        )
    pooler = getattr(model, "pooler", None)
    setattr(owner, attr, torch.nn.ModuleList(list(blocks)[:n_blocks]))
    if pooler is not None:
        model.pooler = None
    try:
        yield model
    finally:
        setattr(owner, attr, blocks)
        if pooler is not None:
            model.pooler = pooler


def _encode(tokenizer, sentences, max_length):
    if all(isinstance(s, str) for s in sentences):
        return tokenizer(list(sentences), truncation=True, max_length=max_length)
    return tokenizer(
        [list(s) for s in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )


def time_forward(
    model,
    sentences,
    layers=None,
    *,
    batch_size: int = 32,
    repeats: int = 3,
    device: str | None = None,
    max_length: int = 128,
    progress: bool = True,
) -> pd.DataFrame:
    """Milliseconds per instance of a forward pass stopped after layer ``l``, vs the full model.

    Layer ``l`` means the embeddings plus the first ``l`` transformer blocks (layer 0: the
    embeddings only), i.e. what a feature-based transfer using layers ``0..l`` (the
    LayerSelector's choice) has to compute. Outputs that are not needed are not computed:
    no hidden states of every layer, no pooler.

    Parameters
    ----------
    model : str
        See :func:`redundancy.models.resolve_model`.
    sentences : sequence of str or of tuple of str
        Raw texts, or pre-split words such as ``task.test.sentences`` of a token task.
    layers : iterable of int, optional
        Layers to time; default every layer ``0..n_blocks``.
    batch_size : int, default=32
    repeats : int, default=3
        Timed passes over all sentences per layer (after one warm-up pass); the median is kept.
    device : str, optional
        ``None`` picks the GPU when there is one.
    max_length : int, default=128
    progress : bool, default=True

    Returns
    -------
    pandas.DataFrame
        One row per layer: ``layer``, ``ms_per_instance``, ``full_ms_per_instance``,
        ``speedup`` (full / truncated), ``fraction_of_full``, ``n_instances``,
        ``batch_size``, ``device``.
    """
    import torch
    from tqdm.auto import tqdm

    from ..encoders.models import load_model

    if repeats < 1:
        raise ValueError(
            f"The 'repeats' parameter of time_forward must be >= 1. Got {repeats!r} instead."
        )
    if len(sentences) == 0:
        raise ValueError("The 'sentences' parameter of time_forward must not be empty.")
    device = resolve_device(device)
    net, tokenizer = load_model(model, device=device)
    owner, attr = block_list(net)
    n_blocks = len(getattr(owner, attr))
    layers = list(range(n_blocks + 1)) if layers is None else sorted({int(x) for x in layers})
    enc = _encode(tokenizer, sentences, max_length)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    batches = []
    for i in range(0, len(order), batch_size):
        feats = [{k: enc[k][j] for k in keys} for j in order[i : i + batch_size]]
        batch = tokenizer.pad(feats, padding=True, return_tensors="pt")
        batches.append({k: v.to(device) for k, v in batch.items()})

    def one_pass():
        for batch in batches:
            net(**batch, output_hidden_states=False, return_dict=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def measure(n):
        with truncated(net, n), torch.inference_mode():
            one_pass()  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                one_pass()
                times.append(time.perf_counter() - t0)
        return float(np.median(times)) * 1000.0 / len(sentences)

    todo = sorted(set(layers) | {n_blocks})
    ms = {}
    for n in tqdm(todo, desc="time_forward", unit="layer", disable=progress_disabled(progress)):
        ms[n] = measure(n)
    full = ms[n_blocks]
    rows = [
        {
            "layer": n,
            "ms_per_instance": ms[n],
            "full_ms_per_instance": full,
            "speedup": full / ms[n] if ms[n] > 0 else np.nan,
            "fraction_of_full": ms[n] / full if full > 0 else np.nan,
            "n_instances": len(sentences),
            "batch_size": batch_size,
            "device": device,
        }
        for n in layers
    ]
    return pd.DataFrame(rows)


def time_probe(
    n_features_list,
    *,
    n_instances: int = 100_000,
    n_classes: int = 2,
    epochs: int = 10,
    random_state: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Seconds to train the paper's probe against the number of features.

    The paper's reference point: all 9,984 features, 100,000 instances, 10 epochs, 2
    classes, 48.48 s on a GTX TITAN X. Data are seeded Gaussian features with labels from a
    random linear rule (so the probe has something to learn); only the time matters.

    Parameters
    ----------
    n_features_list : iterable of int
        Numbers of features to time, e.g. ``[100, 1000, 9984]``.
    n_instances, n_classes, epochs : int
        Size of the synthetic training set and the probe's training length.
    random_state : int, default=0
    device : str, optional
    progress : bool, default=True

    Returns
    -------
    pandas.DataFrame
        ``n_features``, ``seconds``, ``n_instances``, ``n_classes``, ``epochs``, ``device``.
    """
    from tqdm.auto import tqdm

    from .probes import train_probe

    sizes = [int(k) for k in n_features_list]
    if not sizes or min(sizes) < 1:
        raise ValueError(
            "The 'n_features_list' parameter of time_probe must hold positive ints. "
            f"Got {n_features_list!r} instead."
        )
    device = resolve_device(device)
    rng = np.random.default_rng(random_state)
    X = rng.standard_normal((n_instances, max(sizes)), dtype=np.float32)
    w = rng.standard_normal((max(sizes), n_classes), dtype=np.float32)
    y = np.argmax(X @ w, axis=1).astype(np.int64)
    rows = []
    for k in tqdm(sizes, desc="time_probe", unit="size", disable=progress_disabled(progress)):
        Xk = np.ascontiguousarray(X[:, :k])
        t0 = time.perf_counter()
        train_probe(
            Xk,
            y,
            kind="classification",
            n_classes=n_classes,
            epochs=epochs,
            random_state=random_state,
            device=device,
            progress=False,
        )
        seconds = time.perf_counter() - t0
        rows.append(
            {
                "n_features": k,
                "seconds": seconds,
                "n_instances": n_instances,
                "n_classes": n_classes,
                "epochs": epochs,
                "device": device,
            }
        )
    return pd.DataFrame(rows)
