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
analogue used here gives every distinct instance text (sentence, or pair) a fixed random
label, which measures pure memorisation capacity. Regression tasks have no control task.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["control_labels", "label_distribution", "selectivity"]


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


def task_types(task, split: str) -> list[str]:
    """The type of every instance of a split (see :func:`control_labels`)."""
    sp = task.split(split)
    if task.level == "token":
        return [w for sentence in sp.sentences for w in sentence]
    return ["\x1e".join(s) for s in sp.sentences]


def selectivity(task_score, control_score):
    """Task score minus control score (Hewitt & Liang's selectivity)."""
    return np.asarray(task_score, dtype=np.float64) - np.asarray(control_score, dtype=np.float64)
