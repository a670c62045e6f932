"""From words to model inputs and back: tokenisation, word alignment, windows, pooling.

Token tasks need one vector per *word*: words are tokenised with a fast tokenizer, each
piece is mapped back to its word, sentences longer than the model accepts are cut into
overlapping windows (no word is ever dropped), and a word's pieces are reduced to one vector.
Sentence tasks need one vector per sentence (or pair). Each step is a small public function
so it can be tested alone; :func:`token_plan` and :func:`sentence_plan` put them together
into the batches :func:`redundancy.encoders.extract.extract` feeds the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

SENTENCE_MAX_LENGTH = 128
"""Longest sentence-task input in tokens (the paper's, and run_glue's, default)."""


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


@dataclass
class Plan:
    """What to feed the model and where each result row goes.

    ``sequences`` holds one tokenised input per window or sentence, ``lengths`` their token
    counts (for batching by length), ``selections`` (token tasks) per sequence the pair
    ``(positions, rows)`` of the pieces to pool and the output rows they go to, and
    ``n_rows`` the number of output rows (words or sentences).
    """

    sequences: list  # list of dict of lists (input_ids, attention_mask, token_type_ids...)
    lengths: np.ndarray
    # token tasks: per sequence, (positions, rows) arrays of the pieces to pool
    selections: list
    n_rows: int
    n_special: dict = field(default_factory=dict)


def default_max_length(tokenizer, config) -> int:
    """The longest input the model accepts: the smaller of the tokenizer's limit and the
    model's position table (either may be missing; 512 when both are)."""
    limits = []
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and 0 < limit < 100_000:
        limits.append(int(limit))
    n_pos = getattr(config, "max_position_embeddings", None)
    if n_pos and n_pos > 0:
        offset = (
            2 if getattr(config, "model_type", "") in ("roberta", "mpnet", "xlm-roberta") else 0
        )
        limits.append(int(n_pos) - offset)
    return min(limits) if limits else 512


def token_plan(tokenizer, sentences, max_length, aggregation) -> tuple[Plan, dict]:
    """Windows and piece selections for pre-split sentences; ``info`` counts windowed
    sentences, windows and words that had to be replaced by the unknown token."""
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
    return Plan(sequences, lengths, selections, int(offsets[-1])), info


def sentence_plan(tokenizer, sentences, max_length) -> tuple[Plan, dict]:
    """Tokenised ``(text,)`` or ``(text_a, text_b)`` instances, truncated to ``max_length``
    (``info["n_truncated"]`` counts the inputs that were longer)."""
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
    return Plan(sequences, lengths, [], len(sentences)), {"n_truncated": n_truncated}


def batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Sequences sorted by length (ties by position) and cut into batches."""
    order = np.lexsort((np.arange(len(lengths)), lengths))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(tokenizer, plan: Plan, idx: np.ndarray, device: str) -> dict:
    """Padded tensors of the sequences ``idx`` of a plan, on ``device``."""
    feats = [plan.sequences[i] for i in idx]
    enc = tokenizer.pad(feats, padding=True, return_tensors="pt", return_attention_mask=True)
    return {k: v.to(device) for k, v in enc.items()}
