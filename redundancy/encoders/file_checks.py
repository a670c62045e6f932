"""Checks that an activation file belongs to a task's split: vectors per sentence, the
sentence text the file stores, and its encoding. The readers of
:mod:`redundancy.encoders.activation_files` call them; every error names the file and the
sentence (or line) and says what to do.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from ..data.base import Task

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"sentence \d+|w\d+( w\d+)*")


_OCCURRENCE = re.compile(r" \(Occurrence \d+\)$")


def _count_error(path, i: int, found: int, task: Task, split: str, expected: int) -> ValueError:
    what = "words" if task.level == "token" else "vector (a sentence task)"
    text = " ".join(task.split(split).sentences[i])
    text = text if len(text) <= 60 else text[:57] + "..."
    return ValueError(
        f"{path}: sentence {i} (line {i + 1} of the corpus) holds {found} vectors, but sentence "
        f"{i} of the {split!r} split of task {task.name!r} has {expected} {what} ({text!r}). "
        "NeuroX writes one vector per word with its default detokenisation: this file holds "
        "sub-word tokens, a sentence cut at the model's length limit, or other sentences."
    )


def _missing_error(path, i: int, where: str, task: Task, split: str, n: int) -> ValueError:
    return ValueError(
        f"{path}: sentence {i} is missing ({where}). The {split!r} split of task {task.name!r} "
        f"has {n} sentences, so the file must hold sentences 0 to {n - 1} in corpus order."
    )


def _check_counts(path, found: np.ndarray, expected: np.ndarray, task: Task, split: str) -> None:
    """Compare the vectors per sentence of a file with the task's; extra sentences are allowed."""
    n = len(expected)
    if len(found) < n:
        raise _missing_error(path, len(found), "the file ends before it", task, split, n)
    bad = np.flatnonzero(found[:n] != expected)
    if bad.size:
        i = int(bad[0])
        raise _count_error(path, i, int(found[i]), task, split, int(expected[i]))
    if len(found) > n:
        logger.info(
            "%s holds %d sentences; the first %d are the %s split of %s",
            path,
            len(found),
            n,
            split,
            task.name,
        )


def _normal(text: str) -> str:
    return " ".join(text.split())


def _check_text(path, i: int, stored, sentence, task: Task, split: str) -> None:
    """Refuse a file whose sentence ``i`` has other text than the split's (same word counts,
    other sentences: the activations would silently be paired with the wrong words).

    ``stored`` is the file's text (a string) or its tokens (a list); files written without the
    task's sentences hold placeholders (``sentence 3``, ``w0 w1``) and are not compared.
    """
    text = _normal(" ".join(stored) if isinstance(stored, list) else str(stored))
    if _PLACEHOLDER.fullmatch(text):
        return
    want = _normal(" ".join(sentence))
    if text != want:
        short = lambda t: t if len(t) <= 60 else t[:57] + "..."  # noqa: E731
        raise ValueError(
            f"{path}: sentence {i} (line {i + 1} of the corpus) is {short(text)!r} in the file, "
            f"but sentence {i} of the {split!r} split of task {task.name!r} is {short(want)!r}. "
            "The file was extracted from another corpus (or another order): run NeuroX on the "
            "task's .word file (write_word_label) or pass the task it was made for."
        )


def _hdf5_texts(f, path) -> dict[int, str]:
    """Sentence index -> stored text, from NeuroX's ``sentence_to_index`` JSON string."""
    import h5py

    node = f["sentence_to_index"]
    if not isinstance(node, h5py.Dataset) or node.shape not in ((1,), ()):
        raise ValueError(
            f"{path}: 'sentence_to_index' must be a dataset holding one JSON string. Got "
            f"{type(node).__name__} {getattr(node, 'shape', '')} instead."
        )
    raw = node[0] if node.shape == (1,) else node[()]
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{path}: 'sentence_to_index' is not UTF-8 text (byte {e.start}); NeuroX writes "
                "UTF-8."
            ) from None
    try:
        mapping = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{path}: 'sentence_to_index' is not a JSON object {{sentence text: index}} ({e})."
        ) from None
    if not isinstance(mapping, dict):
        raise ValueError(
            f"{path}: 'sentence_to_index' must be a JSON object {{sentence text: index}}. Got "
            f"{type(mapping).__name__} instead."
        )
    texts = {}
    for text, index in mapping.items():
        if isinstance(index, (str, int)) and str(index).isdigit():
            texts[int(index)] = _OCCURRENCE.sub("", text)
    return texts


def _json_lines(path: Path):
    """``(line number, text)`` of every non-blank line."""
    with open(path, "rb") as fp:
        for lineno, raw in enumerate(fp, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{path}, line {lineno}: not UTF-8 text (byte {e.start} of the line is "
                    f"{raw[e.start : e.start + 1]!r}); NeuroX writes UTF-8 JSON. Convert the file "
                    "(e.g. iconv -f latin1 -t utf-8) or re-export it."
                ) from None
            if line.strip():
                yield lineno, line
