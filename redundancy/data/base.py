"""The two containers every loader returns: :class:`Split` and :class:`Task`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .._utils import hash_strings

UNSEEN_LABEL = "<unseen>"
"""Placeholder for dev/test labels that never occur in training (the paper maps them to one tag)."""

Level = Literal["token", "sentence"]
Kind = Literal["classification", "regression"]


@dataclass
class Split:
    """One split of a task.

    ``sentences[i]`` is, for token tasks, the tuple of words of sentence ``i``; for sentence
    tasks, ``(text,)`` or ``(text_a, text_b)`` for pairs. ``labels[i]`` is, for token tasks,
    the tuple of tags (same length as the words); for sentence tasks one label (``str``) or
    one number (``float``, regression). ``ids[i]`` is a stable id such as ``"ca01:17"``
    (document and sentence number) that tells where the sentence came from. ``docs[i]`` is the
    source document of sentence ``i`` (``"ca01"``), or ``docs`` is empty when the format has
    no documents (GLUE, word/label files).
    """

    name: str
    sentences: list[tuple[str, ...]]
    labels: list
    ids: list[str]
    docs: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not (len(self.sentences) == len(self.labels) == len(self.ids)):
            raise ValueError(
                f"Split {self.name!r}: inconsistent numbers of sentences, labels and ids: "
                f"[{len(self.sentences)}, {len(self.labels)}, {len(self.ids)}]"
            )
        if self.docs and len(self.docs) != len(self.sentences):
            raise ValueError(
                f"Split {self.name!r}: 'docs' must be empty or give one document per sentence: "
                f"got {len(self.docs)} documents for {len(self.sentences)} sentences."
            )

    def __len__(self) -> int:
        return len(self.sentences)

    def text_fingerprint(self) -> str:
        """Hash of the text alone (ids and sentences, not labels): the activation cache key, so
        tasks over the same sentences (``brown-pos`` and ``brown-upos``) share activations."""
        return hash_strings(i + "\x1e" + "\x1f".join(s) for s, i in zip(self.sentences, self.ids))

    def fingerprint(self) -> str:
        """Hash of the content (sentences, labels, ids)."""

        def rows():
            for s, y, i in zip(self.sentences, self.labels, self.ids):
                yield i
                yield "\x1f".join(s)
                yield "\x1f".join(y) if isinstance(y, tuple) else repr(y)

        return hash_strings(rows())


@dataclass
class Task:
    """A labelled task with train/dev/test splits.

    ``label_names`` is the label vocabulary: the training labels in sorted order followed by
    :data:`UNSEEN_LABEL` (classification), or ``()`` for regression.
    """

    name: str
    level: Level
    kind: Kind
    train: Split
    dev: Split
    test: Split
    label_names: tuple[str, ...] = ()
    metric: str = "accuracy"
    description: str = ""
    source: str = ""
    options: dict = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in ("train", "dev", "test"):
            raise ValueError(
                f"The 'split' parameter of Task.split must be one of {{'train', 'dev', 'test'}}. Got {name!r} instead."
            )
        return getattr(self, name)

    @property
    def n_classes(self) -> int:
        return len(self.label_names) if self.kind == "classification" else 1

    def encode(self, split: str | Split) -> np.ndarray:
        """Labels of a split as one flat array: int64 class codes (token tasks: one per word,
        sentences in order) or float32 targets for regression. Unseen labels get the code of
        :data:`UNSEEN_LABEL`."""
        sp = self.split(split) if isinstance(split, str) else split
        if self.kind == "regression":
            return np.asarray(sp.labels, dtype=np.float32)
        index = {name: i for i, name in enumerate(self.label_names)}
        unseen = index.get(UNSEEN_LABEL, len(index) - 1)
        flat = [y for tags in sp.labels for y in tags] if self.level == "token" else list(sp.labels)
        return np.fromiter((index.get(y, unseen) for y in flat), dtype=np.int64, count=len(flat))

    def fingerprint(self, split: str) -> str:
        return hash_strings(
            [self.name, self.level, self.kind, *self.label_names, self.split(split).fingerprint()]
        )


def label_vocabulary(train_labels) -> tuple[str, ...]:
    """Sorted training labels plus the unseen placeholder.

    A training label spelled like the placeholder is refused: dev/test labels never seen in
    training would be scored as that real class.
    """
    labels = set(train_labels)
    if UNSEEN_LABEL in labels:
        raise ValueError(
            f"A training label is literally {UNSEEN_LABEL!r}, the name this library gives the "
            "labels of dev and test instances never seen in training; the two would be one "
            f"class. Rename that label in the task's label file (e.g. to 'UNSEEN') and reload."
        )
    return tuple(sorted(labels)) + (UNSEEN_LABEL,)
