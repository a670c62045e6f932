"""The paper's efficiency measurements, made so that machine noise cannot decide them.

Two measurements: a forward pass stopped after layer ``l`` against the full model
(:func:`time_forward`), and probe training time against the number of features
(:func:`time_probe`). Both

* **warm up** every configuration before timing it (first calls allocate memory, load
  kernels, compile numba code);
* **interleave** the repeats round robin: repeat ``r`` times every configuration once
  (starting at a different one each round), so a slow phase of the machine hits all
  configurations alike instead of one layer or one size;
* return the **raw** timings (one row per configuration and repeat, with the order in
  which they were taken); :func:`summarize_forward` and :func:`summarize_probe` give the
  median and the spread, and ratios are taken *within* a round (paired), which cancels a
  machine that is slow for a whole round.

A comparison is decided only when its whole spread lies on one side
(:func:`clear_difference`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from .._utils import progress_bar, resolve_device
from ..constraints import check, check_sequence
from ..encoders.truncate import block_list, truncated

logger = logging.getLogger(__name__)

__all__ = [
    "block_list",
    "clear_difference",
    "round_robin",
    "stopping_points",
    "summarize_forward",
    "summarize_probe",
    "time_forward",
    "time_probe",
    "truncated",
]


def round_robin(items, repeats: int) -> list[tuple[int, object]]:
    """``(repeat, item)`` pairs: every item once per round, each round starting one item
    later than the previous one."""
    items = list(items)
    n = len(items)
    return [(r, items[(r + i) % n]) for r in range(repeats) for i in range(n)]


def stopping_points(n_blocks: int, *, keep=(), max_points: int | None = None) -> list[int]:
    """Layers a forward pass is stopped after: every layer ``0..n_blocks``, or for a model
    with more than ``max_points`` of them, ``max_points`` evenly spaced ones (rounded to
    the nearest layer) plus every layer in ``keep``; the last layer always."""
    n_blocks = int(n_blocks)
    if max_points is None or n_blocks + 1 <= max_points:
        points = set(range(n_blocks + 1))
    else:
        if max_points < 2:
            raise ValueError(
                f"max_points must be at least 2 (first and last layer). Got {max_points}."
            )
        points = {int(x) for x in np.round(np.linspace(0, n_blocks, max_points))}
    extra = {int(k) for k in keep}
    if any(not 0 <= k <= n_blocks for k in extra):
        raise ValueError(f"Layers to keep must lie in [0, {n_blocks}]. Got {sorted(extra)}.")
    return sorted(points | extra | {n_blocks})


def _encode(tokenizer, sentences, max_length):
    if all(isinstance(s, str) for s in sentences):
        return tokenizer(list(sentences), truncation=True, max_length=max_length)
    return tokenizer(
        [list(s) for s in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )


def _batches(tokenizer, sentences, batch_size, max_length, device):
    enc = _encode(tokenizer, sentences, max_length)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    out = []
    for i in range(0, len(order), batch_size):
        feats = [{k: enc[k][j] for k in keys} for j in order[i : i + batch_size]]
        batch = tokenizer.pad(feats, padding=True, return_tensors="pt")
        out.append({k: v.to(device) for k, v in batch.items()})
    return out


def time_forward(
    model,
    sentences,
    layers=None,
    *,
    max_points: int | None = None,
    batch_size: int = 32,
    repeats: int = 5,
    device: str | None = None,
    max_length: int = 128,
    progress: bool = True,
) -> pd.DataFrame:
    """Milliseconds per instance of a forward pass stopped after layer ``l``, round robin.

    Layer ``l`` means the embeddings plus the first ``l`` transformer blocks (layer 0: the
    embeddings only). No hidden states of every layer and no pooler are computed. The full
    model is always measured too.

    Parameters
    ----------
    model : str
        See :func:`redundancy.encoders.models.resolve_model`.
    sentences : sequence of str or of tuple of str
        Raw texts, or pre-split words such as ``task.test.sentences`` of a token task.
    layers : iterable of int, optional
        Layers to time; default every layer ``0..n_blocks`` (see ``max_points``).
    max_points : int, optional
        With ``layers``: those layers are kept and, for a model deeper than ``max_points``
        layers, only ``max_points`` evenly spaced others are added
        (:func:`stopping_points`); without ``layers``, the evenly spaced ones alone.
    batch_size : int, default=32
    repeats : int, default=5
        Timed passes over all sentences per layer, interleaved (after one warm-up pass each).
    device : str, optional
        ``None`` picks the GPU when there is one.
    max_length : int, default=128
    progress : bool, default=True

    Returns
    -------
    pandas.DataFrame
        Raw timings, one row per layer and repeat: ``layer``, ``repeat``, ``order`` (when it
        was taken), ``ms_per_instance``, ``n_blocks``, ``n_instances``, ``batch_size``,
        ``device``. See :func:`summarize_forward`.
    """
    import torch

    from ..encoders.models import load_model

    repeats = check("repeats", repeats, "time_forward")
    if len(sentences) == 0:
        raise ValueError("The 'sentences' parameter of time_forward must not be empty.")
    device = resolve_device(device)
    net, tokenizer = load_model(model, device=device, progress=progress)
    owner, attr = block_list(net)
    n_blocks = len(getattr(owner, attr))
    if max_points is not None:
        layers = stopping_points(n_blocks, keep=layers or (), max_points=max_points)
    else:
        layers = sorted(
            set(range(n_blocks + 1) if layers is None else map(int, layers)) | {n_blocks}
        )
    batches = _batches(tokenizer, sentences, batch_size, max_length, device)

    def one_pass(n) -> float:
        with truncated(net, n), torch.inference_mode():
            t0 = time.perf_counter()
            for batch in batches:
                net(**batch, output_hidden_states=False, return_dict=True)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - t0

    for n in layers:  # warm-up: every configuration once, untimed
        one_pass(n)
    schedule = round_robin(layers, repeats)
    rows = []
    for order, (r, n) in enumerate(
        progress_bar(schedule, desc="time_forward", unit="pass", progress=progress)
    ):
        ms = one_pass(n) * 1000.0 / len(sentences)
        rows.append({"layer": n, "repeat": r, "order": order, "ms_per_instance": ms})
    df = pd.DataFrame(rows)
    return df.assign(
        n_blocks=n_blocks, n_instances=len(sentences), batch_size=batch_size, device=device
    )


def _spread(values, low=0.0, high=1.0):
    return float(np.quantile(values, low)), float(np.quantile(values, high))


def summarize_forward(raw: pd.DataFrame) -> pd.DataFrame:
    """Per layer: median ms per instance and its range over repeats, and the speed-up of
    stopping there (full model / truncated, paired within each round: median and range).

    Returns
    -------
    pandas.DataFrame
        ``layer``, ``ms_per_instance`` (median), ``ms_low``, ``ms_high``,
        ``full_ms_per_instance``, ``speedup`` (median), ``speedup_low``, ``speedup_high``,
        ``n_repeats``, ``device``.
    """
    last = int(raw["n_blocks"].iloc[0])
    wide = raw.pivot_table(index="repeat", columns="layer", values="ms_per_instance")
    rows = []
    for layer in wide.columns:
        ms = wide[layer].to_numpy()
        ratio = wide[last].to_numpy() / ms
        rows.append(
            {
                "layer": int(layer),
                "ms_per_instance": float(np.median(ms)),
                "ms_low": _spread(ms)[0],
                "ms_high": _spread(ms)[1],
                "full_ms_per_instance": float(np.median(wide[last])),
                "speedup": float(np.median(ratio)),
                "speedup_low": _spread(ratio)[0],
                "speedup_high": _spread(ratio)[1],
                "n_repeats": int(len(ms)),
                "device": raw["device"].iloc[0],
            }
        )
    return pd.DataFrame(rows)


def time_probe(
    n_features_list,
    *,
    n_instances: int = 100_000,
    n_classes: int = 2,
    epochs: int = 10,
    repeats: int = 3,
    random_state: int = 0,
    device: str | None = None,
    progress: bool = True,
    **probe_kwargs,
) -> pd.DataFrame:
    """Seconds to train the paper's probe against the number of features, round robin.

    The paper's reference point: all 9,984 features, 100,000 instances, 10 epochs, 2
    classes, 48.48 s on a GTX TITAN X. Data are seeded Gaussian features with labels from a
    random linear rule; only the time matters. Every size is trained once untimed first
    (compiles numba code, allocates torch buffers).

    Parameters
    ----------
    n_features_list : iterable of int
        Numbers of features to time, e.g. ``[100, 1000, 9984]``.
    n_instances, n_classes, epochs : int
        Size of the synthetic training set and the probe's training length.
    repeats : int, default=3
        Timed trainings per size, interleaved across sizes.
    random_state : int, default=0
    device : str, optional
    progress : bool, default=True
    **probe_kwargs
        Further options of :func:`redundancy.analysis.probes.train_probe` (``compute_dtype``).

    Returns
    -------
    pandas.DataFrame
        Raw timings: ``n_features``, ``repeat``, ``order``, ``seconds``, ``n_instances``,
        ``n_classes``, ``epochs``, ``device``. See :func:`summarize_probe`.
    """
    from .probes import train_probe

    sizes = sorted(
        set(
            check_sequence(
                "n_features_list", n_features_list or (), "time_probe", param="n_features"
            )
        )
    )
    if not sizes:
        raise ValueError(
            "The 'n_features_list' parameter of time_probe must hold positive ints. "
            f"Got {n_features_list!r} instead."
        )
    repeats = check("repeats", repeats, "time_probe")
    device = resolve_device(device)
    rng = np.random.default_rng(random_state)
    X = rng.standard_normal((n_instances, sizes[-1]), dtype=np.float32)
    w = rng.standard_normal((sizes[-1], n_classes), dtype=np.float32)
    y = np.argmax(X @ w, axis=1).astype(np.int64)
    data = {k: np.ascontiguousarray(X[:, :k]) for k in sizes}
    del X

    def train(k, n_epochs):
        t0 = time.perf_counter()
        train_probe(
            data[k],
            y,
            kind="classification",
            n_classes=n_classes,
            epochs=n_epochs,
            random_state=random_state,
            device=device,
            progress=False,
            **probe_kwargs,
        )
        return time.perf_counter() - t0

    for k in sizes:  # warm-up: one epoch of every size, untimed
        train(k, 1)
    rows = []
    schedule = round_robin(sizes, repeats)
    for order, (r, k) in enumerate(
        progress_bar(schedule, desc="time_probe", unit="probe", progress=progress)
    ):
        rows.append({"n_features": k, "repeat": r, "order": order, "seconds": train(k, epochs)})
    return pd.DataFrame(rows).assign(
        n_instances=n_instances, n_classes=n_classes, epochs=epochs, device=device
    )


def summarize_probe(raw: pd.DataFrame) -> pd.DataFrame:
    """Per feature count: median seconds and range, and the time relative to the smallest
    count (paired within each round: median and range)."""
    wide = raw.pivot_table(index="repeat", columns="n_features", values="seconds")
    smallest = wide[wide.columns.min()].to_numpy()
    rows = []
    for k in wide.columns:
        s = wide[k].to_numpy()
        ratio = s / smallest
        rows.append(
            {
                "n_features": int(k),
                "seconds": float(np.median(s)),
                "seconds_low": _spread(s)[0],
                "seconds_high": _spread(s)[1],
                "vs_smallest": float(np.median(ratio)),
                "vs_smallest_low": _spread(ratio)[0],
                "vs_smallest_high": _spread(ratio)[1],
                "n_repeats": int(len(s)),
                "n_instances": int(raw["n_instances"].iloc[0]),
                "device": raw["device"].iloc[0],
            }
        )
    return pd.DataFrame(rows)


def clear_difference(low: float, high: float, reference: float = 1.0) -> int:
    """``1`` when a ratio's whole range lies above ``reference``, ``-1`` below, ``0`` when
    the range straddles it (too noisy to decide)."""
    if low > reference:
        return 1
    if high < reference:
        return -1
    return 0
