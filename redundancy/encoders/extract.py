"""Activations of every layer of an encoder, one vector per word or per sentence, cached on disk.

:func:`extract` is the only entry point most code needs::

    acts = extract("minilm", task, split="train")   # acts.acts: (n_words, n_layers, n_hidden)

Token tasks give one vector per *word* and layer (layer 0 = embedding output), the
sub-word pieces of a word reduced by ``aggregation``; sentences longer than the model
accepts go through overlapping windows (no word is ever dropped). Sentence tasks give the
vector of one token (``pooling``) per layer. Results live in a memory-mapped cache that is
written batch by batch, resumes after an interruption, and is verified before it is trusted.
The helpers (:func:`tokenize_words`, :func:`align_words`, :func:`choose_windows`,
:func:`pool_pieces`, :func:`pool_sentence`) are public so they can be tested alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._utils import atomic_write_text, check_choice, progress_disabled, resolve_device, stable_hash
from .._utils import cache_dir as _cache_dir
from ..data.base import Task

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Version of the on-disk layout and of the windowing rule; part of every cache key."""

AGGREGATIONS = ("first", "last", "mean")
POOLINGS = ("auto", "first", "last", "mean")
DTYPES = ("float32", "float16")
FULL_CHECKSUM_BYTES = 1 << 30
"""Arrays up to this size are hashed in full on load; larger ones on a fixed sample of rows."""
N_SAMPLE_ROWS = 257
SENTENCE_MAX_LENGTH = 128
_WORD_ARRAYS = ("acts", "sentence_index")


# --------------------------------------------------------------------------------------------
# result container
# --------------------------------------------------------------------------------------------
@dataclass
class Activations:
    """Activations of one split of a task, as :func:`extract` returns them.

    Attributes
    ----------
    acts : numpy.ndarray
        ``(n_instances, n_layers, n_hidden)`` float32 or float16, memory-mapped from the cache.
        Instances are words (token tasks, sentences in order) or sentences.
    labels : numpy.ndarray
        ``(n_instances,)``, equal to ``task.encode(split)``.
    label_names : tuple of str
        The task's label vocabulary (``()`` for regression).
    sentence_index : numpy.ndarray
        ``(n_instances,)`` int32, the sentence each instance comes from.
    model, task, split : str
        What was extracted.
    meta : dict
        Options (aggregation or pooling, max_length, dtype), ``n_windowed`` (token tasks:
        sentences that needed windows), ``n_truncated`` (sentence tasks), ``path`` (cache
        folder), ``model_identity`` and ``timings``.
    """

    acts: np.ndarray
    labels: np.ndarray
    label_names: tuple
    sentence_index: np.ndarray
    model: str
    task: str
    split: str
    meta: dict = field(default_factory=dict)

    @property
    def n_instances(self) -> int:
        return self.acts.shape[0]

    @property
    def n_layers(self) -> int:
        return self.acts.shape[1]

    @property
    def n_hidden(self) -> int:
        return self.acts.shape[2]

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.n_hidden

    @property
    def X(self) -> np.ndarray:
        """Flat ``(n_instances, n_neurons)`` view (no copy); neuron ``i`` is in layer ``i // n_hidden``."""
        return self.acts.reshape(self.acts.shape[0], -1)

    def __repr__(self) -> str:
        return (
            f"Activations(model={self.model!r}, task={self.task!r}, split={self.split!r}, "
            f"acts={tuple(self.acts.shape)} {self.acts.dtype})"
        )


# --------------------------------------------------------------------------------------------
# tokenisation, alignment, windows
# --------------------------------------------------------------------------------------------
@dataclass
class _Windows:
    """Tokenised token-task sentences: one entry per window (most sentences have one)."""

    input_ids: list  # list of lists of ints, special tokens included
    word_ids: list  # list of int32 arrays, -1 on special tokens
    sentence: np.ndarray  # (n_windows,) sentence of each window
    n_replaced: int  # words with no pieces, replaced by the unknown token


def _unknown_word(tokenizer) -> str:
    return tokenizer.unk_token or tokenizer.pad_token or "_"


def tokenize_words(tokenizer, sentences, max_length: int) -> _Windows:
    """Tokenise pre-split sentences into windows of at most ``max_length`` tokens.

    Sentences that fit give one window; longer ones give overlapping windows (half a window
    of overlap) made by the tokenizer itself, so every model's special tokens stay right.
    A word the tokenizer turns into no piece at all (an empty string, a zero-width space,
    a control character) is replaced by the tokenizer's unknown token (else its padding
    token) so it still gets a vector.

    Parameters
    ----------
    tokenizer : transformers fast tokenizer
        From :func:`redundancy.models.load_tokenizer`.
    sentences : sequence of tuple of str
        ``Split.sentences`` of a token task.
    max_length : int
        Longest window in tokens, special tokens included.
    """
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    room = max_length - n_special
    if room < 2:
        raise ValueError(
            f"The 'max_length' parameter of extract must leave at least 2 tokens besides the "
            f"{n_special} special tokens. Got {max_length} instead."
        )
    sentences = [list(s) for s in sentences]

    def run(batch):
        enc = tokenizer(
            batch,
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
            stride=room // 2,
            return_overflowing_tokens=True,
            add_special_tokens=True,
        )
        wids = [
            np.array([-1 if w is None else w for w in enc.word_ids(i)], dtype=np.int32)
            for i in range(len(enc["input_ids"]))
        ]
        return list(enc["input_ids"]), wids, np.asarray(enc["overflow_to_sample_mapping"])

    ids, wids, owner = run(sentences) if sentences else ([], [], np.zeros(0, dtype=np.int64))
    # words with no piece: find them, replace them, tokenise those sentences again
    seen = [np.zeros(len(s), dtype=bool) for s in sentences]
    for w, s in zip(wids, owner):
        seen[s][w[w >= 0]] = True
    broken = [i for i, m in enumerate(seen) if not m.all()]
    n_replaced = 0
    if broken:
        unk = _unknown_word(tokenizer)
        for i in broken:
            n_replaced += int((~seen[i]).sum())
            sentences[i] = [unk if not m else w for w, m in zip(sentences[i], seen[i])]
        ids2, wids2, owner2 = run([sentences[i] for i in broken])
        keep = ~np.isin(owner, broken)
        ids = [x for x, k in zip(ids, keep) if k] + ids2
        wids = [x for x, k in zip(wids, keep) if k] + wids2
        owner = np.concatenate([owner[keep], np.asarray(broken)[owner2]])
        order = np.argsort(owner, kind="stable")
        ids = [ids[i] for i in order]
        wids = [wids[i] for i in order]
        owner = owner[order]
        logger.info("%d words had no sub-word piece and were replaced by %r", n_replaced, unk)
    return _Windows(ids, wids, owner.astype(np.int64), n_replaced)


def align_words(word_ids: np.ndarray, n_words: int):
    """First and last position and number of pieces of every word in one tokenised sequence.

    Parameters
    ----------
    word_ids : array of int
        Word of each token position (``-1`` for special tokens), from a fast tokenizer's
        ``word_ids()``.
    n_words : int
        Number of words of the sentence.

    Returns
    -------
    first, last, count : arrays of shape (n_words,)
        ``first``/``last`` are -1 and ``count`` 0 for words absent from the sequence.
    """
    word_ids = np.asarray(word_ids)
    pos = np.flatnonzero(word_ids >= 0)
    w = word_ids[pos]
    count = np.bincount(w, minlength=n_words)[:n_words]
    first = np.full(n_words, -1, dtype=np.int64)
    last = np.full(n_words, -1, dtype=np.int64)
    # positions increase along the sequence: the last write wins for `last`, reversed for `first`
    last[w] = pos
    first[w[::-1]] = pos[::-1]
    return first, last, count


def choose_windows(word_ids_list, n_words: int) -> np.ndarray:
    """For each word of one sentence, the window it takes its vector from.

    The rule: the window holding most of the word's pieces (all of them, unless the word is
    longer than half a window), then the one where the word has most context, counted as the
    smaller of the numbers of pieces before and after it inside the window.

    Parameters
    ----------
    word_ids_list : list of arrays
        ``word_ids`` of each window of the sentence (``-1`` for special tokens).
    n_words : int

    Returns
    -------
    numpy.ndarray
        ``(n_words,)`` window numbers (positions in ``word_ids_list``).
    """
    if len(word_ids_list) == 1:
        return np.zeros(n_words, dtype=np.int64)
    best = np.full(n_words, -1, dtype=np.int64)
    best_score = np.full((n_words, 2), -1, dtype=np.int64)
    for k, wids in enumerate(word_ids_list):
        first, last, count = align_words(wids, n_words)
        content = np.flatnonzero(np.asarray(wids) >= 0)
        lo, hi = content.min(), content.max()
        context = np.minimum(first - lo, hi - last)
        present = count > 0
        better = present & (
            (count > best_score[:, 0])
            | ((count == best_score[:, 0]) & (context > best_score[:, 1]))
        )
        best[better] = k
        best_score[better, 0] = count[better]
        best_score[better, 1] = context[better]
    if (best < 0).any():
        raise RuntimeError(f"words {np.flatnonzero(best < 0).tolist()} are in no window")
    return best


def pool_pieces(hidden_states, batch_idx, pos_idx, group_idx, n_groups: int, aggregation: str):
    """Reduce selected token vectors of every layer to one vector per group (word).

    Parameters
    ----------
    hidden_states : sequence of torch.Tensor
        ``n_layers`` tensors ``(batch, seq, hidden)`` (a model's ``hidden_states``).
    batch_idx, pos_idx : torch.LongTensor
        ``(n_pieces,)`` sequence and position of each selected piece.
    group_idx : torch.LongTensor
        ``(n_pieces,)`` output row of each piece.
    n_groups : int
    aggregation : {"first", "last", "mean"}
        For ``"first"``/``"last"`` give exactly one piece per group (the caller selects it);
        ``"mean"`` averages all the pieces of a group.

    Returns
    -------
    torch.Tensor
        ``(n_groups, n_layers, hidden)`` float32.
    """
    import torch

    vals = torch.stack([h[batch_idx, pos_idx] for h in hidden_states], dim=1).float()
    if aggregation in ("first", "last"):
        out = vals.new_zeros((n_groups, *vals.shape[1:]))
        out[group_idx] = vals
        return out
    out = vals.new_zeros((n_groups, *vals.shape[1:]))
    out.index_add_(0, group_idx, vals)
    counts = torch.bincount(group_idx, minlength=n_groups).clamp_min(1).to(out.dtype)
    return out / counts[:, None, None]


def pool_sentence(hidden_states, attention_mask, pooling: str):
    """One vector per sequence and layer.

    Parameters
    ----------
    hidden_states : sequence of torch.Tensor
        ``n_layers`` tensors ``(batch, seq, hidden)``.
    attention_mask : torch.Tensor
        ``(batch, seq)``, 1 on real tokens, 0 on padding (left or right).
    pooling : {"first", "last", "mean"}
        ``"first"``: the first real token (``[CLS]`` for BERT); ``"last"``: the last real token
        (``<cls>`` for XLNet, which pads on the left); ``"mean"``: the mean over real tokens.

    Returns
    -------
    torch.Tensor
        ``(batch, n_layers, hidden)`` float32.
    """
    import torch

    mask = attention_mask.bool()
    seq = mask.shape[1]
    ar = torch.arange(seq, device=mask.device)
    if pooling == "mean":
        m = mask.to(torch.float32)[:, :, None]
        denom = m.sum(1).clamp_min(1)
        return torch.stack([(h.float() * m).sum(1) / denom for h in hidden_states], dim=1)
    if pooling == "first":
        pos = torch.where(mask, ar, seq).min(1).values
    else:
        pos = torch.where(mask, ar, -1).max(1).values
    rows = torch.arange(mask.shape[0], device=mask.device)
    return torch.stack([h[rows, pos] for h in hidden_states], dim=1).float()


# --------------------------------------------------------------------------------------------
# plans: what to feed the model, batch by batch, and where the results go
# --------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    sequences: list  # list of dict of lists (input_ids, attention_mask, token_type_ids...)
    lengths: np.ndarray
    # token tasks: per sequence, (positions, rows) arrays of the pieces to pool
    selections: list
    n_rows: int
    n_special: dict = field(default_factory=dict)


def default_max_length(tokenizer, config) -> int:
    """The longest input the model accepts: the tokenizer's limit, else the position table."""
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and 0 < limit < 100_000:
        return int(limit)
    n_pos = getattr(config, "max_position_embeddings", None)
    if n_pos and n_pos > 0:
        offset = (
            2 if getattr(config, "model_type", "") in ("roberta", "mpnet", "xlm-roberta") else 0
        )
        return int(n_pos) - offset
    return 512


def _token_plan(tokenizer, sentences, max_length, aggregation) -> tuple[_Plan, dict]:
    win = tokenize_words(tokenizer, sentences, max_length)
    lengths_words = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    offsets = np.concatenate([[0], np.cumsum(lengths_words)])
    n_windows = np.bincount(win.sentence, minlength=len(sentences))
    starts = np.concatenate([[0], np.cumsum(n_windows)])
    selections = []
    for s in range(len(sentences)):
        n_words = int(lengths_words[s])
        wins = range(starts[s], starts[s + 1])
        chosen = choose_windows([win.word_ids[k] for k in wins], n_words)
        for j, k in enumerate(wins):
            wids = win.word_ids[k]
            words = np.flatnonzero(chosen == j)
            if aggregation == "mean":
                pos = np.flatnonzero(np.isin(wids, words) & (wids >= 0))
                rows = offsets[s] + wids[pos]
            else:
                first, last, _ = align_words(wids, n_words)
                pos = (first if aggregation == "first" else last)[words]
                rows = offsets[s] + words
            selections.append((pos.astype(np.int64), rows.astype(np.int64)))
    sequences = [{"input_ids": ids} for ids in win.input_ids]
    lengths = np.fromiter((len(x) for x in win.input_ids), dtype=np.int64, count=len(sequences))
    n_windowed = int((n_windows > 1).sum())
    if n_windowed:
        logger.info(
            "%d of %d sentences are longer than %d tokens and went through overlapping windows",
            n_windowed,
            len(sentences),
            max_length,
        )
    info = {"n_windowed": n_windowed, "n_windows": len(sequences), "n_replaced": win.n_replaced}
    return _Plan(sequences, lengths, selections, int(offsets[-1])), info


def _sentence_plan(tokenizer, sentences, max_length) -> tuple[_Plan, dict]:
    pairs = [s for s in sentences if len(s) == 2]
    if pairs and len(pairs) != len(sentences):
        raise ValueError("A sentence task mixes single sentences and pairs; use one kind per task.")
    if any(len(s) not in (1, 2) for s in sentences):
        raise ValueError("Sentence-task instances must be (text,) or (text_a, text_b) tuples.")
    a = [s[0] for s in sentences]
    b = [s[1] for s in sentences] if pairs else None
    full = tokenizer(a, b, truncation=False, add_special_tokens=True)["input_ids"]
    n_truncated = int(sum(len(x) > max_length for x in full))
    enc = tokenizer(a, b, truncation=True, max_length=max_length, add_special_tokens=True)
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    sequences = [{k: enc[k][i] for k in keys} for i in range(len(sentences))]
    lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64, count=len(sentences))
    if n_truncated:
        logger.info(
            "%d of %d instances were longer than %d tokens and were truncated",
            n_truncated,
            len(sentences),
            max_length,
        )
    return _Plan(sequences, lengths, [], len(sentences)), {"n_truncated": n_truncated}


def _batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Sequences sorted by length (ties by position) and cut into batches."""
    order = np.lexsort((np.arange(len(lengths)), lengths))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _collate(tokenizer, plan: _Plan, idx: np.ndarray, device: str) -> dict:

    feats = [plan.sequences[i] for i in idx]
    enc = tokenizer.pad(feats, padding=True, return_tensors="pt", return_attention_mask=True)
    return {k: v.to(device) for k, v in enc.items()}


def _forward(model, inputs: dict):
    """One forward pass; returns the tuple of hidden states (embedding output first)."""
    out = model(**inputs, output_hidden_states=True, return_dict=True)
    return out.hidden_states


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-")[:60] or "x"


def _sample_rows(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, N_SAMPLE_ROWS)).round().astype(np.int64))


def _checksum(arr: np.ndarray) -> dict:
    """SHA-256 of an array's bytes in row order: in full when small, else of sampled rows."""
    h = hashlib.sha256()
    full = arr.nbytes <= FULL_CHECKSUM_BYTES or arr.shape[0] == 0
    rows = np.arange(arr.shape[0]) if full else _sample_rows(arr.shape[0])
    step = max(1, (64 << 20) // max(1, arr[:1].nbytes))
    for i in range(0, len(rows), step):
        sel = rows[i : i + step]
        chunk = arr[sel[0] : sel[-1] + 1] if full else arr[sel]
        h.update(np.ascontiguousarray(chunk).tobytes())
    return {"sha256": h.hexdigest(), "rows": "all" if full else f"sample{len(rows)}"}


class _CacheError(Exception):
    pass


def _load_cached(folder: Path, key: str, shape: tuple, dtype: str):
    """Open a finished cache; raise _CacheError when anything disagrees with what is expected."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _CacheError(f"unreadable manifest ({e})") from e
    if manifest.get("key") != key or manifest.get("format") != CACHE_FORMAT:
        raise _CacheError("manifest key does not match the inputs")
    if tuple(manifest.get("shape", ())) != tuple(shape) or manifest.get("dtype") != dtype:
        raise _CacheError("manifest shape/dtype do not match the inputs")
    arrays = {}
    for name in _WORD_ARRAYS:
        path = folder / f"{name}.npy"
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError, EOFError) as e:
            raise _CacheError(f"{path.name} cannot be read ({e})") from e
        expected = manifest["checksums"].get(name)
        if expected is None or _checksum(arr) != expected:
            raise _CacheError(f"{path.name} does not match its checksum")
        arrays[name] = arr
    if arrays["acts"].shape != tuple(shape) or str(arrays["acts"].dtype) != dtype:
        raise _CacheError("acts.npy has the wrong shape or dtype")
    return manifest, arrays


def _clear(folder: Path) -> None:
    for f in folder.iterdir():
        if f.name == ".lock":
            continue
        if f.is_dir():
            shutil.rmtree(f)
        else:
            f.unlink()


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """Exclusive advisory lock on a cache folder (POSIX); a no-op where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # Windows: no cross-process lock
        yield
        return
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_progress(path: Path) -> set[int]:
    done = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip().isdigit():
                done.add(int(line))
    return done


# --------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------
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
    The cache folder's name holds a hash of the model identity, the data fingerprint of
    the split, the options and the cache format. Arrays are written in place batch by batch
    and ``progress.txt`` lists the finished batches, so an interrupted run resumes; the
    manifest (with checksums) is written last. A cache that disagrees with its manifest or
    inputs is rebuilt with a warning. See ``docs/extraction.md``.
    """
    from .models import load_tokenizer, model_identity, resolve_model

    if not isinstance(task, Task):
        raise TypeError(
            f"The 'task' parameter of extract must be a redundancy Task. Got {type(task).__name__} instead."
        )
    check_choice(split, ("train", "dev", "test"), name="split", caller="extract")
    check_choice(aggregation, AGGREGATIONS, name="aggregation", caller="extract")
    check_choice(pooling, POOLINGS, name="pooling", caller="extract")
    check_choice(dtype, DTYPES, name="dtype", caller="extract")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"The 'batch_size' parameter of extract must be a positive int. Got {batch_size!r} instead."
        )
    if max_length is not None and (not isinstance(max_length, (int, np.integer)) or max_length < 4):
        raise ValueError(
            f"The 'max_length' parameter of extract must be None or an int >= 4. Got {max_length!r} instead."
        )
    t0 = time.perf_counter()
    from transformers import AutoConfig

    path = resolve_model(model)
    tokenizer = load_tokenizer(model)
    config = AutoConfig.from_pretrained(path)
    token_level = task.level == "token"
    if max_length is None:
        max_length = default_max_length(tokenizer, config) if token_level else SENTENCE_MAX_LENGTH
    if pooling == "auto":
        pooling = "last" if tokenizer.padding_side == "left" else "first"
    sp = task.split(split)
    labels = task.encode(split)
    identity = model_identity(model)
    key_inputs = {
        "model": identity,
        # the text alone: labels are attached from the task on every load, so they can never
        # be stale, and tasks over the same sentences share one cache entry
        "data": sp.text_fingerprint(),
        "level": task.level,
        "reduce": aggregation if token_level else pooling,
        "dtype": dtype,
        "max_length": int(max_length),
        "format": CACHE_FORMAT,
    }
    key = stable_hash(key_inputs)
    n_layers = int(getattr(config, "num_hidden_layers", getattr(config, "n_layer", 0))) + 1
    n_hidden = int(getattr(config, "hidden_size", getattr(config, "d_model", 0)))
    n_rows = len(labels)
    if n_rows == 0:
        raise ValueError(f"Split {split!r} of task {task.name!r} is empty; nothing to extract.")
    shape = (n_rows, n_layers, n_hidden)
    root = Path(cache_dir) if cache_dir is not None else _cache_dir("activations")
    label = (
        model
        if model in ("minilm", "mpnet")
        else (Path(path).name if Path(path).is_dir() else path)
    )
    folder = root / _slug(label) / f"{task.level}-{split}-{key}"
    folder.mkdir(parents=True, exist_ok=True)

    with _folder_lock(folder):  # one writer per cache folder across processes

        def result(manifest, arrays):
            meta = dict(manifest["meta"])
            meta["path"] = str(folder)
            return Activations(
                acts=arrays["acts"],
                labels=labels,
                label_names=tuple(task.label_names),
                sentence_index=arrays["sentence_index"],
                model=str(model),
                task=task.name,
                split=split,
                meta=meta,
            )

        try:
            manifest, arrays = _load_cached(folder, key, shape, dtype)
            logger.info("activations loaded from %s", folder)
            return result(manifest, arrays)
        except FileNotFoundError:
            pass
        except _CacheError as e:
            warnings.warn(
                f"The activation cache in {folder} is damaged or stale ({e}); rebuilding it.",
                stacklevel=2,
            )
            _clear(folder)

        # ---- plan -----------------------------------------------------------------------------
        t_tok = time.perf_counter()
        if token_level:
            plan, info = _token_plan(tokenizer, sp.sentences, max_length, aggregation)
        else:
            plan, info = _sentence_plan(tokenizer, sp.sentences, max_length)
        if plan.n_rows != n_rows:
            raise ValueError(
                f"Task {task.name!r} split {split!r} has {n_rows} labels but {plan.n_rows} instances; "
                "the split's sentences and labels disagree."
            )
        batches = _batches(plan.lengths, int(batch_size))
        plan_hash = stable_hash([b.tolist() for b in batches] + [plan.lengths.tolist()])
        t_tok = time.perf_counter() - t_tok

        # ---- resume or start --------------------------------------------------------------------
        state = {"key": key, "plan": plan_hash, "n_batches": len(batches), "shape": list(shape)}
        state_path, progress_path = folder / "state.json", folder / "progress.txt"
        acts_path = folder / "acts.npy"
        resumed = False
        if state_path.is_file() and acts_path.is_file():
            try:
                old = json.loads(state_path.read_text())
                acts = np.lib.format.open_memmap(acts_path, mode="r+")
                resumed = old == state and acts.shape == shape and str(acts.dtype) == dtype
            except (OSError, ValueError, json.JSONDecodeError):
                resumed = False
        if not resumed:
            _clear(folder)
            atomic_write_text(state_path, json.dumps(state))
            acts = np.lib.format.open_memmap(acts_path, mode="w+", dtype=dtype, shape=shape)
            done: set[int] = set()
        else:
            done = _read_progress(progress_path)
            logger.info(
                "resuming extraction in %s: %d of %d batches done", folder, len(done), len(batches)
            )

        # ---- forward passes ---------------------------------------------------------------------
        import torch
        from tqdm.auto import tqdm

        from .models import load_model

        device = resolve_device(device)
        net, _ = load_model(model, device=device)
        unit = "word" if token_level else "sentence"
        todo = [i for i in range(len(batches)) if i not in done]
        if token_level:
            sizes = [sum(len(plan.selections[j][1]) for j in b) for b in batches]
        else:
            sizes = [len(b) for b in batches]
        t_fwd = time.perf_counter()
        bar = tqdm(
            total=n_rows,
            initial=sum(sizes[i] for i in done),
            unit=unit,
            unit_scale=True,
            disable=progress_disabled(progress),
            desc=f"{Path(path).name}/{task.name}/{split}",
        )
        with open(progress_path, "a") as progress_file, torch.inference_mode(), bar:
            for i in todo:
                idx = batches[i]
                inputs = _collate(tokenizer, plan, idx, device)
                hidden = _forward(net, inputs)
                if token_level:
                    sel = [plan.selections[j] for j in idx]
                    counts = [len(p) for p, _ in sel]
                    b_idx = torch.from_numpy(np.repeat(np.arange(len(idx)), counts)).to(device)
                    pos = torch.from_numpy(np.concatenate([p for p, _ in sel])).to(device)
                    rows = np.concatenate([r for _, r in sel])
                    uniq, group = np.unique(rows, return_inverse=True)
                    vecs = pool_pieces(
                        hidden,
                        b_idx,
                        pos,
                        torch.from_numpy(group).to(device),
                        len(uniq),
                        aggregation,
                    )
                else:
                    uniq = np.sort(idx)
                    vecs = pool_sentence(hidden, inputs["attention_mask"], pooling)
                    vecs = vecs[torch.from_numpy(np.argsort(idx, kind="stable")).to(device)]
                acts[uniq] = vecs.cpu().numpy().astype(dtype, copy=False)
                acts.flush()
                progress_file.write(f"{i}\n")
                progress_file.flush()
                os.fsync(progress_file.fileno())
                bar.update(sizes[i])
        t_fwd = time.perf_counter() - t_fwd
        del net

        # ---- finish: small arrays, checksums, manifest ------------------------------------------
        lengths_words = (
            np.fromiter((len(s) for s in sp.sentences), dtype=np.int64, count=len(sp))
            if token_level
            else np.ones(len(sp), dtype=np.int64)
        )
        sentence_index = np.repeat(np.arange(len(sp), dtype=np.int32), lengths_words)
        np.save(folder / "sentence_index.npy", sentence_index)
        acts.flush()
        del acts
        acts = np.load(acts_path, mmap_mode="r")
        checksums = {
            "acts": _checksum(acts),
            "sentence_index": _checksum(np.load(folder / "sentence_index.npy", mmap_mode="r")),
        }
        n_done_now = sum(sizes[i] for i in todo)
        meta = {
            ("aggregation" if token_level else "pooling"): aggregation if token_level else pooling,
            "level": task.level,
            "max_length": int(max_length),
            "dtype": dtype,
            "batch_size": int(batch_size),
            "device": device,
            **info,
            "resumed_batches": len(done),
            "model_identity": identity,
            "timings": {
                "tokenize_s": round(t_tok, 4),
                "forward_s": round(t_fwd, 4),
                "total_s": round(time.perf_counter() - t0, 4),
                f"{unit}s_per_s": round(n_done_now / t_fwd, 2) if t_fwd > 0 else None,
            },
        }
        manifest = {
            "format": CACHE_FORMAT,
            "key": key,
            "key_inputs": key_inputs,
            "shape": list(shape),
            "dtype": dtype,
            "model": str(model),
            "task": task.name,
            "split": split,
            "checksums": checksums,
            "meta": meta,
        }
        atomic_write_text(folder / "manifest.json", json.dumps(manifest, indent=1, default=str))
        state_path.unlink(missing_ok=True)
        progress_path.unlink(missing_ok=True)
        arrays = {
            "acts": acts,
            "sentence_index": np.load(folder / "sentence_index.npy", mmap_mode="r"),
        }
        logger.info(
            "extracted %s %s/%s: %s in %.1fs (%s)",
            path,
            task.name,
            split,
            shape,
            t_fwd,
            meta["timings"][f"{unit}s_per_s"],
        )
        return result(manifest, arrays)
