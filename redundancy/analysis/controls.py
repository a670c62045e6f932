"""Control tasks and selectivity (Hewitt & Liang, EMNLP 2019).

A probe's accuracy alone cannot tell whether the neurons it reads *encode* a property or
whether the probe merely memorises word identity. A control task keeps the task's output
space and word types but breaks the link to the property: every word type gets a label
drawn at random, once and for all, from the task's training label distribution. The same
probe trained on the control task measures what memorising word types buys;
**selectivity** = task score − control score. A small neuron set that keeps the task score
but has low selectivity mostly memorises.

Labels are a deterministic function of the word type and the seed (a hash), so a type has
the same control label in every split and every run, and types unseen in training get a
label from the same distribution. Sentence tasks have no word types to hold fixed; the
analogue used by :func:`control_labels` gives every distinct instance text (sentence, or
pair) a fixed random label, which measures pure memorisation capacity and cannot
generalise to unseen sentences (its test score is the majority class's).
:func:`sentence_control_labels` is a control that *can* generalise: a sentence's label is a
fixed random function of the words it contains (see there). Regression tasks have no
control task.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["control_labels", "label_distribution", "selectivity", "sentence_control_labels"]


def label_distribution(y_train, n_classes: int) -> np.ndarray:
    """Empirical distribution of the training labels (float64, sums to 1)."""
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=n_classes)
    if counts.sum() == 0:
        raise ValueError("label_distribution needs at least one training label.")
    return counts / counts.sum()


def _uniform_of(types, random_state: int) -> np.ndarray:
    """A number in [0, 1) per type, fixed by the type's text and the seed."""
    salt = f"{int(random_state)}\x1f".encode()
    out = np.empty(len(types), dtype=np.float64)
    for i, t in enumerate(types):
        digest = hashlib.blake2b(salt + t.encode("utf-8"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little") / 2.0**64
    return out


def control_labels(types, distribution, *, random_state: int = 0) -> np.ndarray:
    """Control label of every instance: a random label fixed per type.

    Parameters
    ----------
    types : sequence of str
        The type of every instance: the word (token tasks) or the instance text (sentence
        tasks; join the two texts of a pair).
    distribution : array of shape (n_classes,)
        Label distribution to draw from (:func:`label_distribution` of the training labels).
    random_state : int
        Seed of the assignment.

    Returns
    -------
    numpy.ndarray of int64, shape (n_instances,)
    """
    p = np.asarray(distribution, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.isclose(p.sum(), 1.0) or (p < 0).any():
        raise ValueError(
            "The 'distribution' parameter of control_labels must be a probability vector. "
            f"Got {distribution!r} instead."
        )
    vocab, inverse = np.unique(np.asarray(list(types), dtype=object), return_inverse=True)
    u = _uniform_of([str(v) for v in vocab], random_state)
    cdf = np.cumsum(p)
    cdf[-1] = 1.0
    per_type = np.minimum(np.searchsorted(cdf, u, side="right"), p.size - 1)
    return per_type[inverse.ravel()].astype(np.int64)


def sentence_control_labels(
    sentences, distribution, *, reference=None, random_state: int = 0
) -> np.ndarray:
    """Control labels for a sentence task that depend only on the words of each sentence.

    Hewitt and Liang's control keeps what a probe could exploit without the property:
    word identity. For sentences, every word type gets a fixed random number in [0, 1)
    (from its text and the seed, as in :func:`control_labels`) and a sentence scores the
    mean over its tokens; the labels are then cut from that score at the quantiles of the
    label distribution over the ``reference`` sentences (the training split), so the
    control has the task's label distribution there. The label is a fixed function of the
    bag of words: it generalises to unseen sentences exactly as far as a probe can read
    lexical content from the representation, which is what the control should measure
    (a per-sentence random label cannot generalise at all). Word order and syntax play no
    part, by design.

    Parameters
    ----------
    sentences : sequence of sequence of str
        Tokens of every instance (for a pair, the tokens of both texts together).
    distribution : array of shape (n_classes,)
        Label distribution to reproduce (:func:`label_distribution` of the training labels).
    reference : sequence of sequence of str, optional
        Sentences whose scores set the cut points (the training split); default
        ``sentences``. Pass the training sentences when labelling dev and test.
    random_state : int

    Returns
    -------
    numpy.ndarray of int64, shape (n_instances,)
    """
    p = np.asarray(distribution, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.isclose(p.sum(), 1.0) or (p < 0).any():
        raise ValueError(
            "The 'distribution' parameter of sentence_control_labels must be a probability "
            f"vector. Got {distribution!r} instead."
        )
    sentences = [list(s) for s in sentences]
    reference = sentences if reference is None else [list(s) for s in reference]
    if any(len(s) == 0 for s in sentences) or any(len(s) == 0 for s in reference):
        raise ValueError("sentence_control_labels needs at least one token per sentence.")
    everything = sentences + reference
    tokens = np.asarray([t for s in everything for t in s], dtype=object)
    owner = np.repeat(np.arange(len(everything)), [len(s) for s in everything])
    vocab, inverse = np.unique(tokens, return_inverse=True)
    u = _uniform_of([f"sentence\x1d{v}" for v in vocab], random_state)
    score = np.bincount(owner, weights=u[inverse.ravel()]) / np.bincount(owner)
    own, ref = score[: len(sentences)], score[len(sentences) :]
    cuts = np.quantile(ref, np.cumsum(p)[:-1])
    return np.searchsorted(cuts, own, side="right").astype(np.int64)


def task_types(task, split: str) -> list[str]:
    """The type of every instance of a split (see :func:`control_labels`)."""
    sp = task.split(split)
    if task.level == "token":
        return [w for sentence in sp.sentences for w in sentence]
    return ["\x1e".join(s) for s in sp.sentences]


def selectivity(task_score, control_score):
    """Task score minus control score (Hewitt & Liang's selectivity)."""
    return np.asarray(task_score, dtype=np.float64) - np.asarray(control_score, dtype=np.float64)
