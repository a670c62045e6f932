"""Readers for the file formats of the paper's own data.

- parallel ``*.word`` / ``*.label`` files (POS, SEM, CCG, chunking in the authors' setup):
  :func:`read_word_label`;
- CoNLL-style column files and CoNLL-U: :func:`read_conll`;
- GLUE task folders (``train.tsv``, ``dev.tsv``): :func:`read_glue_file`, :func:`read_glue`.

Every reader either returns exactly what the file holds or raises a :class:`ValueError` that
names the file, the line (and for an encoding problem the byte offset), what was expected
and how to fix it. What all readers share:

- **Encoding.** UTF-8, with or without a byte-order mark (BOM). A file that starts with a
  UTF-16 or UTF-32 BOM is decoded as such (the mark makes the encoding certain; Windows
  tools write such files). Bytes that are not valid UTF-8 (Latin-1, Windows-1252, UTF-16
  without a BOM) are refused with the ``iconv`` command that converts the file.
- **Line ends.** ``\\n`` or ``\\r\\n`` (mixed is fine); a ``\\r`` alone is refused. A NUL
  character is refused (UTF-16 without a BOM, or binary data).
- **Token files** (word/label, CoNLL) also refuse control characters, Unicode line
  separators and a BOM in the middle of the file: none can be part of a word or a tag.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
import shlex
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

CONLLU_COLUMNS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
"""The ten columns of a CoNLL-U token line."""

# --------------------------------------------------------------------------------------
# text files: encoding and lines
# --------------------------------------------------------------------------------------

# UTF-32 marks first: the UTF-32-LE mark starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)
_LONE_CR = re.compile(r"\r(?!\n)")
# C0 controls but tab/LF/CR, DEL, C1 controls, line/paragraph separators, a BOM inside the text
_NOT_IN_TOKENS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff]")


def _iconv(path: Path, source: str) -> str:
    quoted = shlex.quote(str(path))
    return f"`iconv -f {source} -t utf-8 {quoted} > {shlex.quote(str(path) + '.utf8')}`"


def _decode(path: Path, data: bytes) -> tuple[str, str, int]:
    """``(text, codec, length of the BOM)``; a ValueError naming line and byte offset if the
    bytes are not valid in the encoding the file announces (UTF-8 when it announces none)."""
    bom, codec, name = next(
        ((b, c, n) for b, c, n in _BOMS if data.startswith(b)), (b"", "utf-8", "UTF-8")
    )
    body = data[len(bom) :]
    try:
        return body.decode(codec), codec, len(bom)
    except UnicodeDecodeError as err:
        line = body[: err.start].decode(codec, errors="replace").count("\n") + 1
        bad = body[err.start : max(err.end, err.start + 1)].hex(" ")
        if bom:
            hint = (
                f"The file starts with a {name} byte-order mark but is not valid {name} after "
                "it: it is damaged or was cut. Export it again as UTF-8."
            )
        elif b"\x00" in body:
            hint = (
                "The file has NUL bytes: it looks like UTF-16 without a byte-order mark. "
                f"Convert it, e.g. {_iconv(path, 'utf-16le')} (utf-16be if big-endian)."
            )
        else:
            hint = (
                "The readers need UTF-8. If the file is Latin-1 or Windows-1252, convert it, "
                f"e.g. {_iconv(path, 'latin1')} (or -f cp1252), and read the converted file."
            )
        raise ValueError(
            f"{path}, line {line}, byte offset {len(bom) + err.start}: not valid {name} "
            f"({err.reason}: byte(s) {bad}). {hint}"
        ) from None


def _refuse_char(path: Path, text: str, index: int, codec: str, bom_len: int, why: str):
    line = text.count("\n", 0, index) + 1
    offset = bom_len + len(text[:index].encode(codec))
    char = f"U+{ord(text[index]):04X}"
    raise ValueError(f"{path}, line {line}, byte offset {offset}: character {char}: {why}")


def _read_lines(path: Path, *, tokens: bool = False) -> list[str]:
    """The lines of a text file, without their line ends (see the module docstring).

    ``tokens=True`` also refuses the characters that cannot be part of a word or a tag.
    """
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    text, codec, bom_len = _decode(path, path.read_bytes())
    nul = text.find("\x00")
    if nul >= 0:
        _refuse_char(
            path,
            text,
            nul,
            codec,
            bom_len,
            "a NUL character. The file looks like UTF-16 without a byte-order mark, or binary "
            f"data. If it is UTF-16, convert it, e.g. {_iconv(path, 'utf-16le')}.",
        )
    cr = _LONE_CR.search(text)
    if cr:
        _refuse_char(
            path,
            text,
            cr.start(),
            codec,
            bom_len,
            "a carriage return (\\r) not followed by a line feed. Lines must end with \\n or "
            "\\r\\n: remove the stray \\r, or convert old Mac line ends with "
            f"`tr '\\r' '\\n' < {shlex.quote(str(path))}`.",
        )
    bad = _NOT_IN_TOKENS.search(text) if tokens else None
    if bad:
        _refuse_char(
            path,
            text,
            bad.start(),
            codec,
            bom_len,
            "a control character, line separator or byte-order mark cannot be part of a word "
            "or a tag. The file is damaged (or two files were concatenated): remove it.",
        )
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _content_lines(path: Path) -> list[str]:
    """Lines of a token file without its trailing blank lines; an empty file is refused."""
    lines = _read_lines(path, tokens=True)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{path} is empty: expected one sentence per line.")
    return lines


# --------------------------------------------------------------------------------------
# parallel word / label files
# --------------------------------------------------------------------------------------


def read_word_label(
    word_path: str | os.PathLike, label_path: str | os.PathLike
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Read parallel word and label files (one sentence per line).

    This is the format of the authors' token tasks (``train.word`` / ``train.label`` ...):
    line ``i`` of the label file holds one label per word of line ``i`` of the word file.
    Words and labels are separated by whitespace (spaces or tabs, in any mix, as Python's
    ``str.split`` splits), so no word or label contains whitespace. Blank lines at the end
    of either file are ignored; a blank line anywhere else is refused.

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
        For a file that is not UTF-8 text, an empty file, different numbers of lines (with
        the first line whose counts differ), a line whose numbers of words and labels differ
        (both files, the line, both counts), a blank line, or a label file that is the word
        file itself.
    """
    word_path, label_path = Path(word_path), Path(label_path)
    words, labels = _content_lines(word_path), _content_lines(label_path)
    if word_path.samefile(label_path) or words == labels:
        raise ValueError(
            f"{word_path} and {label_path} are the same file or have the same content: the "
            "label file must hold one label (tag) per word, not the words themselves."
        )
    w_tok, l_tok = [line.split() for line in words], [line.split() for line in labels]
    first = next((i for i, (w, t) in enumerate(zip(w_tok, l_tok)) if len(w) != len(t)), None)
    both = f"{word_path} and {label_path}"
    if len(words) != len(labels):
        where = ""
        if first is not None:
            where = (
                f" The first line whose numbers of words and labels differ is line {first + 1} "
                f"({len(w_tok[first])} words, {len(l_tok[first])} labels): look for a missing "
                "or extra line there."
            )
        raise ValueError(
            f"{word_path} has {len(words)} lines but {label_path} has {len(labels)}: the files "
            f"must be parallel (one sentence per line in both).{where}"
        )
    if first is not None:
        raise ValueError(
            f"{both}, line {first + 1}: {len(w_tok[first])} words but {len(l_tok[first])} "
            "labels; every word needs exactly one label (words and labels are separated by "
            "spaces or tabs, so neither may contain whitespace)."
        )
    blank = next((i for i, w in enumerate(w_tok) if not w), None)
    if blank is not None:
        raise ValueError(
            f"{both}, line {blank + 1}: blank line; expected a sentence (one sentence per line; "
            "blank lines are allowed only at the end). Remove the line from both files."
        )
    return [tuple(w) for w in w_tok], [tuple(t) for t in l_tok]


# --------------------------------------------------------------------------------------
# CoNLL and CoNLL-U
# --------------------------------------------------------------------------------------

# "# sent_id = 1", "# text = ...", "# global.columns = ...", "# newdoc", "# newpar"
_COMMENT_SHAPE = re.compile(r"#\s*(\S+\s*=|newdoc\b|newpar\b)")
_WORD_ID = re.compile(r"[1-9][0-9]*")
_SKIPPED_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*|[0-9]+\.[1-9][0-9]*")


class _Sentences:
    """Collects (word, label) pairs into sentences."""

    def __init__(self):
        self.sentences, self.labels, self.words, self.tags = [], [], [], []

    def add(self, word: str, tag: str):
        self.words.append(word)
        self.tags.append(tag)

    def close(self):
        if self.words:
            self.sentences.append(tuple(self.words))
            self.labels.append(tuple(self.tags))
            self.words, self.tags = [], []


@dataclass(frozen=True)
class _Layout:
    tabbed: bool
    n_cols: int
    first: int
    word: int
    label: int


def _check_col(name: str, col, default: int) -> int:
    if col is None:
        return default
    if not isinstance(col, (int, np.integer)) or isinstance(col, bool):
        raise TypeError(
            f"The {name!r} parameter of read_conll must be an int or None. Got {col!r} instead."
        )
    return int(col)


def _conll_layout(path, lineno, line, word_col, label_col) -> _Layout:
    """Separator and columns, fixed by the first token line of a plain CoNLL file."""
    tabbed = "\t" in line
    n_cols = len(line.split("\t") if tabbed else line.split())
    idx = {}
    for name, col in (("word_col", word_col), ("label_col", label_col)):
        idx[name] = col if col >= 0 else n_cols + col
        if not 0 <= idx[name] < n_cols:
            raise ValueError(
                f"{path}, line {lineno}: {name}={col} needs at least "
                f"{col + 1 if col >= 0 else -col} columns, but this first token line has "
                f"{n_cols}: {line!r}. Pass the right word_col / label_col."
            )
    if idx["word_col"] == idx["label_col"]:
        raise ValueError(
            f"{path}, line {lineno}: word_col={word_col} and label_col={label_col} are the same "
            f"column of this {n_cols}-column line: {line!r}. Expected at least two columns (a "
            "word and a label); is the label column missing?"
        )
    return _Layout(tabbed, n_cols, lineno, idx["word_col"], idx["label_col"])


def _conll_fields(path, lineno, line, layout: _Layout) -> list[str]:
    fields = [f.strip() for f in line.split("\t")] if layout.tabbed else line.split()
    if len(fields) == layout.n_cols and not (layout.tabbed and "" in fields):
        return fields
    if len(fields) != layout.n_cols:
        sep = "tab-separated" if layout.tabbed else "space-separated"
        problem = (
            f"expected {layout.n_cols} {sep} columns, as on line {layout.first} (the first "
            f"token line), got {len(fields)}"
        )
    else:
        problem = f"column {fields.index('')} is empty"
    hint = " Every token line must have the same columns: fix or remove this line."
    if line.startswith("#"):
        hint += (
            " Lines starting with '#' are read as tokens: pass comments=True to skip comment "
            "lines, or format='conllu' for a CoNLL-U file."
        )
    elif "\t" in line and not layout.tabbed:
        hint += f" Line {layout.first} has no tab, so the file is read as space-separated."
    raise ValueError(f"{path}, line {lineno}: {problem}: {line!r}.{hint}")


def _parse_conll(path, lines, word_col, label_col, comments, out: _Sentences):
    layout = None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            out.close()
            continue
        if line.startswith("#") and comments is not False:
            if comments and not out.words:
                continue
            if comments is None and _COMMENT_SHAPE.match(line):
                raise ValueError(
                    f"{path}, line {lineno}: {line!r} looks like a CoNLL-U comment. Pass "
                    "comments=True to skip '#' lines before a sentence, format='conllu' for a "
                    "CoNLL-U file, or comments=False to read '#' lines as tokens."
                )
        if line.split(maxsplit=1)[0] == "-DOCSTART-":
            out.close()
            continue
        if layout is None:
            layout = _conll_layout(path, lineno, line, word_col, label_col)
        fields = _conll_fields(path, lineno, line, layout)
        out.add(fields[layout.word], fields[layout.label])


def _conllu_columns(word_col: int, label_col: int) -> tuple[int, int]:
    n = len(CONLLU_COLUMNS)
    cols = {}
    for name, col in (("word_col", word_col), ("label_col", label_col)):
        if not -n <= col < n:
            raise ValueError(
                f"The {name!r} parameter of read_conll must be in [-10, 9] for a CoNLL-U file "
                f"(10 columns). Got {col!r} instead."
            )
        cols[name] = col % n
    if cols["word_col"] == 0 or cols["label_col"] in (0, n - 1, cols["word_col"]):
        raise ValueError(
            f"read_conll(format='conllu'): word_col={word_col} ({CONLLU_COLUMNS[cols['word_col']]})"
            f" and label_col={label_col} ({CONLLU_COLUMNS[cols['label_col']]}) do not name a word "
            "and a label. Use word_col=1 (FORM) and label_col=3 (UPOS), 4 (XPOS) or 7 (DEPREL)."
        )
    return cols["word_col"], cols["label_col"]


def _conllu_is_word(path, lineno, token_id: str, expected: int) -> bool:
    """True for a word line, False for a multiword range (``1-2``) or empty node (``1.1``)."""
    if _WORD_ID.fullmatch(token_id):
        if int(token_id) != expected:
            raise ValueError(
                f"{path}, line {lineno}: expected word ID {expected}, got {token_id}. Word IDs "
                "count 1, 2, 3 ... within a sentence: a line is missing or repeated, or the "
                "blank line that ends the previous sentence is missing."
            )
        return True
    if _SKIPPED_ID.fullmatch(token_id):
        return False
    raise ValueError(
        f"{path}, line {lineno}: expected a CoNLL-U ID in column 1 (a word number 1, 2 ..., a "
        f"multiword range like 1-2 or an empty node like 1.1), got {token_id!r}. A header line? "
        "CoNLL-U has none (column names go in a '# global.columns = ...' comment): delete it."
    )


def _parse_conllu(path, lines, word_col, label_col, out: _Sentences):
    n = len(CONLLU_COLUMNS)
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            out.close()
            continue
        if line.startswith("#"):
            if out.words:
                raise ValueError(
                    f"{path}, line {lineno}: comment line after the words of a sentence. In "
                    "CoNLL-U comments come before a sentence and a blank line ends each "
                    "sentence: add the missing blank line before this line."
                )
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) != n or "" in fields:
            got = (
                f"got {len(fields)}" if len(fields) != n else f"column {fields.index('') + 1} empty"
            )
            raise ValueError(
                f"{path}, line {lineno}: expected {n} non-empty tab-separated columns "
                f"({' '.join(CONLLU_COLUMNS)}; '_' for no value), {got}: {line!r}."
            )
        if _conllu_is_word(path, lineno, fields[0], len(out.words) + 1):
            out.add(fields[word_col], fields[label_col])


def read_conll(
    path: str | os.PathLike,
    word_col: int | None = None,
    label_col: int | None = None,
    *,
    format: str = "conll",
    comments: bool | None = None,
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Read a CoNLL-style column file: one token per line, a blank line after each sentence.

    ``format="conll"`` (CoNLL-2000, CoNLL-2003 ...): the first token line fixes the
    separator and the number of columns. If it holds a tab, every line is split on tabs
    only (a space inside a field is part of it; spaces around a field are dropped; an empty
    field is refused); otherwise on runs of whitespace. Every token line must have that many
    columns. ``-DOCSTART-`` lines end a sentence and are skipped.

    ``format="conllu"``: ten tab-separated columns (:data:`CONLLU_COLUMNS`); ``#`` comment
    lines before a sentence are skipped, multiword-token lines (ID ``1-2``) and empty nodes
    (ID ``1.1``) are skipped, and word IDs must count 1, 2, 3 ... in each sentence.

    Parameters
    ----------
    path : path-like
        The file (for example CoNLL-2000 ``train.txt`` or a UD ``.conllu`` file).
    word_col, label_col : int, optional
        Columns of the word and the label, counted from 0 (negative values count from the
        end). Default: 0 and -1 (first and last) for ``"conll"``, 1 (FORM) and 3 (UPOS) for
        ``"conllu"``.
    format : {"conll", "conllu"}, default="conll"
    comments : bool or None, default=None
        Plain CoNLL only. ``True``: lines starting with ``#`` before the first token of a
        sentence are comments and skipped (a ``#`` line inside a sentence is a token, as the
        Penn Treebank's ``#``). ``False``: ``#`` lines are tokens. ``None``: ``#`` lines are
        tokens, but one shaped like a CoNLL-U comment (``# sent_id = 1``, ``# newdoc``) is
        refused, so that comments never become words unnoticed.

    Returns
    -------
    sentences, labels : list of tuple of str

    Raises
    ------
    ValueError
        For a file that is not UTF-8 text, a line whose number of columns differs from the
        first token line's (file, line, expected number), columns that do not fit the file,
        a comment-shaped line (``comments=None``), a malformed CoNLL-U line or ID, or a file
        without any sentence.
    TypeError
        For a column that is not an int.
    """
    path = Path(path)
    if format not in ("conll", "conllu"):
        raise ValueError(
            "The 'format' parameter of read_conll must be one of {'conll', 'conllu'}. Got "
            f"{format!r} instead."
        )
    if comments is not None and not isinstance(comments, bool):
        raise TypeError(
            f"The 'comments' parameter of read_conll must be a bool or None. Got {comments!r} "
            "instead."
        )
    conllu = format == "conllu"
    word_col = _check_col("word_col", word_col, 1 if conllu else 0)
    label_col = _check_col("label_col", label_col, 3 if conllu else -1)
    out = _Sentences()
    if conllu:
        word_col, label_col = _conllu_columns(word_col, label_col)
        _parse_conllu(path, _read_lines(path, tokens=True), word_col, label_col, out)
    else:
        _parse_conll(path, _read_lines(path, tokens=True), word_col, label_col, comments, out)
    out.close()
    if not out.sentences:
        raise ValueError(
            f"{path} holds no sentence: expected one token per line and a blank line after "
            "each sentence."
        )
    return out.sentences, out.labels


# --------------------------------------------------------------------------------------
# GLUE
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GlueSpec:
    """Where a GLUE task keeps its text and label columns, and what a label may be.

    ``text`` and ``label`` are header names, or column positions for files without a header
    (CoLA). ``n_fields`` is the number of fields of a header-less file. ``labels`` is the
    task's label set; ``score_range`` the closed interval of a regression score (STS-B).
    """

    text: tuple
    label: str | int
    labels: tuple[str, ...] = ()
    test_file: str = "dev.tsv"
    header: bool = True
    n_fields: int | None = None
    score_range: tuple[float, float] | None = None

    @property
    def regression(self) -> bool:
        return self.score_range is not None


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
GLUE_TASKS: dict[str, GlueSpec] = {
    "cola": GlueSpec(text=(3,), label=1, labels=_BINARY, header=False, n_fields=4),
    "sst2": GlueSpec(text=("sentence",), label="label", labels=_BINARY),
    "mrpc": GlueSpec(text=("#1 String", "#2 String"), label="Quality", labels=_BINARY),
    "qqp": GlueSpec(text=("question1", "question2"), label="is_duplicate", labels=_BINARY),
    "stsb": GlueSpec(text=("sentence1", "sentence2"), label="score", score_range=(0.0, 5.0)),
    "mnli": GlueSpec(
        text=("sentence1", "sentence2"),
        label="gold_label",
        labels=("entailment", "neutral", "contradiction"),
        test_file="dev_matched.tsv",
    ),
    "qnli": GlueSpec(text=("question", "sentence"), label="label", labels=_NLI2),
    "rte": GlueSpec(text=("sentence1", "sentence2"), label="label", labels=_NLI2),
}
"""The GLUE tasks of the paper, the layout of their files and their labels."""

_SCORE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


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


def _glue_layout(path: Path, task: str, spec: GlueSpec, lines: list[str]):
    """``(text columns, label column, number of fields, number of header lines)``."""
    if not spec.header:
        return list(spec.text), spec.label, spec.n_fields, 0
    if not lines:
        raise ValueError(f"{path} is empty: expected a header line naming the columns.")
    header = [name.strip() for name in lines[0].split("\t")]
    for name in (*spec.text, spec.label):
        if header.count(name) != 1:
            hint = ""
            if name == spec.label:
                hint = (
                    " GLUE test files (test.tsv, test_matched.tsv) have no labels: use "
                    f"train.tsv and {spec.test_file}."
                )
            raise ValueError(
                f"{path}, line 1: expected one column {name!r} in the header {header!r}, found "
                f"{header.count(name)}. Is this the GLUE {task} file?{hint}"
            )
    return [header.index(n) for n in spec.text], header.index(spec.label), len(header), 1


def _glue_label(path: Path, lineno: int, raw: str, spec: GlueSpec, task: str):
    """The label of one line (``str``, or ``float`` for a score), or a ValueError."""
    if spec.score_range is not None:
        low, high = spec.score_range
        if _SCORE.fullmatch(raw) and low <= float(raw) <= high:
            return float(raw)
        expected = f"a score (a finite number from {low:g} to {high:g})"
    elif raw in spec.labels:
        return raw
    else:
        expected = f"one of the {task} labels {{{', '.join(map(repr, spec.labels))}}}"
    column = f"column {spec.label + 1 if isinstance(spec.label, int) else repr(spec.label)}"
    if not spec.header and lineno == 1:
        hint = (
            f" GLUE {task} files have no header line: if line 1 is one, delete it (for "
            f"example `sed -i 1d {shlex.quote(str(path))}`)."
        )
    elif raw == spec.label:
        hint = " This looks like a repeated header line: delete it."
    elif raw.isdigit() and spec.labels and not spec.labels[0].isdigit():
        hint = (
            " Integer labels come from a Hugging Face `datasets` export: write the label names "
            "instead (`features['label'].int2str`), as the GLUE download does."
        )
    else:
        hint = " Fix the label or remove the line."
    raise ValueError(f"{path}, line {lineno}: expected {expected} in {column}, got {raw!r}.{hint}")


def read_glue_file(
    path: str | os.PathLike, task: str
) -> tuple[list[tuple[str, ...]], list, list[str]]:
    """Read one GLUE ``.tsv`` file.

    Fields are separated by tabs, without quoting (GLUE texts contain quote characters, read
    as they are). Columns are found by their header names, whatever their order and whatever
    other columns the file has (MNLI's parses and annotator labels); CoLA has no header:
    source, label, original mark, sentence. Each label must belong to the task's label set
    (:data:`GLUE_TASKS`): ``0``/``1`` for CoLA, SST-2, MRPC and QQP;
    entailment/neutral/contradiction for MNLI; entailment/not_entailment for QNLI and RTE;
    STS-B scores must be finite numbers from 0 to 5. Spaces around a label are ignored, texts
    are kept as they are, blank lines are skipped.

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
        For a file that is not UTF-8 text, a missing or repeated column (named, with the
        header found), a line whose number of fields differs from the header's (file, line,
        expected number), a label outside the task's set or a score outside [0, 5] (file,
        line, the valid labels), or a file without examples.
    """
    path = Path(path)
    spec = _glue_spec(task)
    lines = _read_lines(path)
    text_idx, label_idx, n_fields, first = _glue_layout(path, task, spec, lines)
    sentences, labels, ids = [], [], []
    for lineno in range(first + 1, len(lines) + 1):
        line = lines[lineno - 1]
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != n_fields:
            raise ValueError(
                f"{path}, line {lineno}: expected {n_fields} tab-separated fields, got "
                f"{len(fields)}. A text may hold a stray tab or line break (the official QQP "
                "train.tsv has a few such lines): repair or delete the line."
            )
        labels.append(_glue_label(path, lineno, fields[label_idx].strip(), spec, task))
        sentences.append(tuple(fields[i] for i in text_idx))
        ids.append(f"{path.name}:{lineno}")
    if not sentences:
        raise ValueError(f"{path} holds no example: expected one example per line.")
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
    file order. Both files are read with :func:`read_glue_file`.

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
