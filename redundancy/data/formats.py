"""Readers for the file formats of the paper's own data.

- parallel ``*.word`` / ``*.label`` files (POS, SEM, CCG, chunking in the authors' setup):
  :func:`read_word_label`;
- CoNLL-style column files: :func:`read_conll`;
- GLUE task folders (``train.tsv``, ``dev.tsv``): :func:`read_glue_file`, :func:`read_glue`.

Every reader names the file, the line and what was expected when the input is malformed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import Split

logger = logging.getLogger(__name__)

GLUE_URL = (
    "https://gluebenchmark.com/tasks (or the download_glue_data.py script of the GLUE baselines)"
)
GLUE_SEED = 7361
"""Seed of the authors' 90/10 split of the official GLUE training sets."""


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [line.rstrip("\r\n") for line in f]


def read_word_label(
    word_path: str | os.PathLike, label_path: str | os.PathLike
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Read parallel word and label files (one sentence per line, tokens separated by spaces).

    This is the format of the authors' token tasks (``train.word`` / ``train.label`` ...):
    line ``i`` of the label file holds one label per word of line ``i`` of the word file.

    Parameters
    ----------
    word_path, label_path : path-like
        The two files.

    Returns
    -------
    sentences, labels : list of tuple of str
        ``labels[i]`` has the same length as ``sentences[i]``.

    Raises
    ------
    ValueError
        For an empty file, different numbers of lines, or a line whose numbers of words and
        labels differ (the message names both files, the line and both counts).
    """
    word_path, label_path = Path(word_path), Path(label_path)
    words = _read_lines(word_path)
    labels = _read_lines(label_path)
    # A final empty line (trailing newline already removed by readlines) is not a sentence.
    while words and not words[-1].strip():
        words.pop()
    while labels and not labels[-1].strip():
        labels.pop()
    for path, lines in ((word_path, words), (label_path, labels)):
        if not lines:
            raise ValueError(f"{path} is empty: expected one sentence per line.")
    if len(words) != len(labels):
        raise ValueError(
            f"{word_path} has {len(words)} lines but {label_path} has {len(labels)}: the files "
            "must be parallel (one sentence per line in both)."
        )
    sentences, tags = [], []
    for lineno, (w_line, l_line) in enumerate(zip(words, labels), start=1):
        w, t = tuple(w_line.split()), tuple(l_line.split())
        if len(w) != len(t):
            raise ValueError(
                f"Line {lineno}: {word_path} has {len(w)} words but {label_path} has {len(t)} "
                "labels; every word needs exactly one label."
            )
        if not w:
            raise ValueError(
                f"Line {lineno} of {word_path} and {label_path} is empty: expected a sentence."
            )
        sentences.append(w)
        tags.append(t)
    return sentences, tags


def read_conll(
    path: str | os.PathLike, word_col: int = 0, label_col: int = -1
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Read a CoNLL-style column file: one token per line, sentences separated by blank lines.

    Columns are separated by tabs or spaces; ``-DOCSTART-`` lines are skipped.

    Parameters
    ----------
    path : path-like
        The file (for example CoNLL-2000 ``train.txt``).
    word_col, label_col : int, default=0 and -1
        Columns holding the word and the label (negative values count from the end).

    Returns
    -------
    sentences, labels : list of tuple of str

    Raises
    ------
    ValueError
        For a line with too few columns (file, line, number of columns expected) or a file
        without any sentence.
    """
    path = Path(path)
    for name, col in (("word_col", word_col), ("label_col", label_col)):
        if not isinstance(col, (int, np.integer)) or isinstance(col, bool):
            raise TypeError(
                f"The {name!r} parameter of read_conll must be an int. Got {col!r} instead."
            )
    needed = max(c + 1 if c >= 0 else -c for c in (word_col, label_col))
    sentences, labels = [], []
    words, tags = [], []

    def close():
        if words:
            sentences.append(tuple(words))
            labels.append(tuple(tags))
            words.clear()
            tags.clear()

    for lineno, line in enumerate(_read_lines(path), start=1):
        fields = line.split()
        if not fields:
            close()
            continue
        if fields[0] == "-DOCSTART-":
            close()
            continue
        if len(fields) < needed:
            raise ValueError(
                f"{path}, line {lineno}: expected at least {needed} columns (word_col={word_col}, "
                f"label_col={label_col}), got {len(fields)}: {line!r}"
            )
        words.append(fields[word_col])
        tags.append(fields[label_col])
    close()
    if not sentences:
        raise ValueError(f"{path} holds no sentence: expected one token per line.")
    return sentences, labels


@dataclass(frozen=True)
class GlueSpec:
    """Where a GLUE task keeps its text and label columns.

    ``text`` and ``label`` are header names, or column positions for files without a header
    (CoLA). ``n_fields`` is the number of fields of a header-less file.
    """

    text: tuple
    label: str | int
    test_file: str = "dev.tsv"
    header: bool = True
    n_fields: int | None = None
    regression: bool = False


GLUE_TASKS: dict[str, GlueSpec] = {
    "cola": GlueSpec(text=(3,), label=1, header=False, n_fields=4),
    "sst2": GlueSpec(text=("sentence",), label="label"),
    "mrpc": GlueSpec(text=("#1 String", "#2 String"), label="Quality"),
    "qqp": GlueSpec(text=("question1", "question2"), label="is_duplicate"),
    "stsb": GlueSpec(text=("sentence1", "sentence2"), label="score", regression=True),
    "mnli": GlueSpec(
        text=("sentence1", "sentence2"), label="gold_label", test_file="dev_matched.tsv"
    ),
    "qnli": GlueSpec(text=("question", "sentence"), label="label"),
    "rte": GlueSpec(text=("sentence1", "sentence2"), label="label"),
}
"""The GLUE tasks of the paper and the layout of their files."""


def _glue_spec(task: str) -> GlueSpec:
    key = task.lower().removeprefix("glue-").replace("-", "")
    if key not in GLUE_TASKS:
        opts = ", ".join(repr(k) for k in GLUE_TASKS)
        raise ValueError(
            f"The 'task' parameter of read_glue must be one of {{{opts}}}. Got {task!r} instead."
        )
    return GLUE_TASKS[key]


def glue_files(task: str) -> tuple[str, str]:
    """The files a GLUE task folder must hold: ``(train file, file used as test)``."""
    return "train.tsv", _glue_spec(task).test_file


def read_glue_file(
    path: str | os.PathLike, task: str
) -> tuple[list[tuple[str, ...]], list, list[str]]:
    """Read one GLUE ``.tsv`` file.

    Fields are separated by tabs (no quoting: GLUE texts contain quote characters). Columns
    are found by their header names (CoLA has no header: source, label, original mark,
    sentence).

    Parameters
    ----------
    path : path-like
        For example ``glue_data/RTE/train.tsv``.
    task : str
        One of ``cola``, ``sst2``, ``mrpc``, ``qqp``, ``stsb``, ``mnli``, ``qnli``, ``rte``.

    Returns
    -------
    sentences : list of tuple of str
        ``(text,)`` or ``(text_a, text_b)``.
    labels : list
        ``str`` labels, or ``float`` scores for STS-B.
    ids : list of str
        ``"<file name>:<line number>"``.

    Raises
    ------
    ValueError
        For a missing column (named, with the header found) or a line whose number of fields
        differs from the header's (file, line, expected number).
    """
    path = Path(path)
    spec = _glue_spec(task)
    lines = _read_lines(path)
    if spec.header:
        if not lines:
            raise ValueError(f"{path} is empty: expected a header line.")
        header = lines[0].split("\t")
        columns = {name.strip(): i for i, name in enumerate(header)}
        for name in (*spec.text, spec.label):
            if name not in columns:
                raise ValueError(
                    f"{path}: no column {name!r} in the header {header!r}. Is this the "
                    f"GLUE {task} file?"
                )
        text_idx = [columns[name] for name in spec.text]
        label_idx = columns[spec.label]
        n_fields, first = len(header), 1
    else:
        text_idx, label_idx, n_fields, first = list(spec.text), spec.label, spec.n_fields, 0
    sentences, labels, ids = [], [], []
    for lineno in range(first + 1, len(lines) + 1):
        line = lines[lineno - 1]
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != n_fields:
            raise ValueError(
                f"{path}, line {lineno}: expected {n_fields} tab-separated fields, got "
                f"{len(fields)}."
            )
        raw = fields[label_idx].strip()
        if spec.regression:
            try:
                label = float(raw)
            except ValueError:
                raise ValueError(
                    f"{path}, line {lineno}: expected a number in column {spec.label!r}, got "
                    f"{raw!r}."
                ) from None
        else:
            label = raw
        sentences.append(tuple(fields[i] for i in text_idx))
        labels.append(label)
        ids.append(f"{path.name}:{lineno}")
    if not sentences:
        raise ValueError(f"{path} holds no example.")
    return sentences, labels, ids


def read_glue(
    folder: str | os.PathLike,
    task: str,
    *,
    random_state: int = GLUE_SEED,
    dev_fraction: float = 0.1,
) -> dict[str, Split]:
    """Read a GLUE task folder with the paper's protocol.

    The official training set is split 90/10 (seeded permutation) into train and dev; the
    official dev set (``dev_matched.tsv`` for MNLI) is the test set. Both parts keep the
    file order.

    Parameters
    ----------
    folder : path-like
        The task folder of the GLUE download, for example ``glue_data/RTE``.
    task : str
        ``cola``, ``sst2``, ``mrpc``, ``qqp``, ``stsb``, ``mnli``, ``qnli`` or ``rte``
        (a ``glue-`` prefix is accepted).
    random_state : int, default=7361
        Seed of the train/dev split (the authors' seed).
    dev_fraction : float, default=0.1

    Returns
    -------
    dict
        ``{"train": Split, "dev": Split, "test": Split}``.
    """
    folder = Path(folder)
    train_file, test_file = glue_files(task)
    missing = [folder / f for f in (train_file, test_file) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"The GLUE {task} folder {folder} lacks {', '.join(str(m) for m in missing)}. It "
            f"must hold {train_file} and {test_file} as in the official GLUE download; get "
            f"GLUE from {GLUE_URL}."
        )
    if not 0.0 < dev_fraction < 1.0:
        raise ValueError(
            f"The 'dev_fraction' parameter of read_glue must be in (0, 1). Got {dev_fraction!r} "
            "instead."
        )
    sentences, labels, ids = read_glue_file(folder / train_file, task)
    n = len(sentences)
    n_dev = int(round(dev_fraction * n))
    perm = np.random.default_rng(random_state).permutation(n)
    is_dev = np.zeros(n, dtype=bool)
    is_dev[perm[:n_dev]] = True

    def take(name, mask):
        idx = np.flatnonzero(mask)
        return Split(
            name,
            [sentences[i] for i in idx],
            [labels[i] for i in idx],
            [ids[i] for i in idx],
        )

    test = Split("test", *read_glue_file(folder / test_file, task))
    out = {"train": take("train", ~is_dev), "dev": take("dev", is_dev), "test": test}
    logger.info(
        "GLUE %s: %d train, %d dev, %d test examples",
        task,
        len(out["train"]),
        len(out["dev"]),
        len(out["test"]),
    )
    return out
