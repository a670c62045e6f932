"""Property test: a damaged data file ends in a clear error or in the original parse.

Hypothesis builds small valid files for every reader of :mod:`redundancy.data.formats`
(parallel word/label files, plain CoNLL with tabs or spaces, CoNLL-U, and the file layouts
of the eight GLUE tasks, MNLI's train and dev-matched layouts included), written with the
variations the readers tolerate: a UTF-8 byte-order mark, CRLF line ends, no final newline
or a trailing blank line, tabs and spaces mixed in word/label files, spaces inside and around
tab-separated CoNLL fields, quote characters in GLUE texts, accented letters. It first checks
that the clean files parse to exactly what was written. Then it damages one file and reads
again: the reader must raise a ``ValueError`` whose message names the damaged file, or return
exactly the parse of the clean files.

Corruptions, and how they are kept to damage a correct reader can see:

- **truncation** at a byte inside one record line, keeping at least one non-blank character
  of it and cutting before the separator that precedes its last field (for word/label files:
  anywhere before the last word of the file). A cut at a line boundary, or inside the last
  field (a shorter tag, a shorter last sentence), leaves a valid shorter file that no reader
  can tell from a real one, so such cuts are not drawn. For plain CoNLL the first token line
  is never cut either: it fixes the number of columns, so a cut first line would define a
  valid file of fewer columns.
- **byte damage**: an ASCII byte replaced by NUL or by a byte of 0x80-0xFF. Such a byte is
  never valid UTF-8 at that place. (Replacing one printable character by another makes a
  valid file with a different word: undetectable, so not drawn.)
- **column drop**: one field (word, tag, GLUE column) removed from one line, or from the
  header. Plain CoNLL samples hold at least two token lines, so the first line's count can
  be compared with another.
- **re-encoding** of the whole text as Latin-1, Windows-1252, UTF-16 or UTF-32 with or
  without a byte-order mark, or UTF-8 with a mark. Accented letters are drawn from
  U+00C0-U+00FF only, whose one-byte Latin-1 form is never valid UTF-8 (other characters
  can form valid UTF-8 by chance, e.g. "Ã©" in Latin-1 reads as "é"). Files with a UTF-16
  or UTF-32 mark are decoded by design; without a mark they hold NUL bytes and are refused.
- **inserted header**: a header line put where data is expected. Word/label: at the top of
  one file (its line count no longer matches). GLUE: a copy of the header at any line (its
  label is not in the task's label set), a CoLA-style header for header-less CoLA. CoNLL-U:
  a column-name line (not an ID) or a ``# global.columns`` comment (skipped, so the parse is
  unchanged). Plain CoNLL has no header convention: a header with as many columns as the data
  is just a token line, so the test inserts a header with one more column, or a
  ``# global.columns`` comment (refused by default, skipped with ``comments=True``).
"""

import codecs
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from redundancy.data.formats import (
    GLUE_TASKS,
    read_conll,
    read_glue,
    read_glue_file,
    read_word_label,
)

SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
ACCENTS = "éèüñçÀÿ"  # all in U+00C0-U+00FF
TOKEN_CHARS = string.ascii_letters + string.digits + "'\".,;:!?()-/$%&*+<>@[]_{}|~" + ACCENTS
TAGS = ("NN", "VB", "DT", "JJ", "B-NP", "I-NP", "O", ".", ",", "$")
ENCODINGS = ("latin-1", "cp1252", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le")
ENCODINGS += ("utf-8-sig",)


@dataclass
class Sample:
    """Valid files (as lines) plus what the corruptions may touch."""

    files: dict[str, list[str]]
    styles: dict[str, dict]
    read: Callable[[Path], object]
    truth: list[tuple[Callable[[Path], object], object]]
    split: Callable[[str], tuple[list[str], str]]
    cuts: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    drops: dict[str, list[int]] = field(default_factory=dict)
    headers: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    options: str = ""


def _render(lines: list[str], style: dict, encoding: str | None = None) -> bytes:
    newline = "\r\n" if style["crlf"] else "\n"
    text = newline.join(lines) + style["end"].replace("\n", newline)
    if encoding is not None:
        return text.encode(encoding)
    return (codecs.BOM_UTF8 if style["bom"] else b"") + text.encode("utf-8")


def _cut_offset(lines: list[str], style: dict, i: int, j: int) -> int:
    newline = "\r\n" if style["crlf"] else "\n"
    prefix = newline.join(lines[:i]) + (newline if i else "") + lines[i][:j]
    return (3 if style["bom"] else 0) + len(prefix.encode("utf-8"))


def _line_cut(line: str, sep_index: int) -> tuple[int, int]:
    """Cuts that keep a non-blank character and stop before the last separator."""
    return len(line) - len(line.lstrip()) + 1, sep_index


def _styles():
    return st.fixed_dictionaries(
        {"bom": st.booleans(), "crlf": st.booleans(), "end": st.sampled_from(["", "\n", "\n\n"])}
    )


def _words(first: bool = False):
    plain = st.text(TOKEN_CHARS, min_size=1, max_size=6).filter(
        lambda w: not w.startswith(("#", "-DOCSTART-"))
    )
    return plain if first else st.one_of(plain, st.just("#"))


def _sentence(draw, max_len=5):
    n = draw(st.integers(1, max_len))
    return [draw(_words(first=k == 0)) for k in range(n)]


# ---------------------------------------------------------------- samples


@st.composite
def word_label_samples(draw):
    sentences = [_sentence(draw) for _ in range(draw(st.integers(2, 5)))]
    tags = [[draw(st.sampled_from(TAGS)) for _ in s] for s in sentences]
    seps = st.sampled_from([" ", "\t", "  ", " \t"])

    def line(tokens):
        return tokens[0] + "".join(draw(seps) + t for t in tokens[1:])

    files = {"x.word": [line(s) for s in sentences], "x.label": [line(t) for t in tags]}
    if files["x.word"] == files["x.label"]:
        files["x.word"][0] = "w" + files["x.word"][0]
        sentences[0][0] = "w" + sentences[0][0]
    cuts, drops, headers = {}, {}, {}
    for name, lines in files.items():
        last = lines[-1]
        last_start = len(last) - len(last.split()[-1])
        cuts[name] = [(i, 0, len(x)) for i, x in enumerate(lines[:-1])]
        cuts[name] += [(len(lines) - 1, 0, last_start - 1)] if last_start > 0 else []
        drops[name] = list(range(len(lines)))
        headers[name] = [(draw(st.sampled_from(["words", "WORD TAG", "# tokens"])), 0)]

    def read(folder):
        return read_word_label(folder / "x.word", folder / "x.label")

    truth = (list(map(tuple, sentences)), list(map(tuple, tags)))
    return Sample(
        files,
        {name: draw(_styles()) for name in files},
        read,
        [(read, truth)],
        lambda x: (x.split(), " "),
        cuts,
        drops,
        headers,
    )


@st.composite
def conll_samples(draw):
    n_cols, tabbed = draw(st.integers(2, 4)), draw(st.booleans())
    comments, label_col = draw(st.sampled_from([None, True, False])), draw(st.sampled_from([-1, 1]))
    sep = "\t" if tabbed else " "
    lines, rows_of = [], []
    if draw(st.booleans()):
        lines += [sep.join(["-DOCSTART-"] + ["-X-"] * (n_cols - 2) + ["O"]), ""]
    sentences, labels = [], []
    for _ in range(draw(st.integers(2, 4))):
        words = _sentence(draw)
        if tabbed:  # a field may hold a space, and spaces around a field are dropped
            words = [w + (" " + w.lower() if draw(st.booleans()) else "") for w in words]
        rows = [[w] + [draw(st.sampled_from(TAGS)) for _ in range(n_cols - 1)] for w in words]
        sentences.append(tuple(words))
        labels.append(tuple(r[label_col] for r in rows))
        for row in rows:
            pad = " " if tabbed and draw(st.booleans()) else ""
            rows_of.append(len(lines))
            lines.append(
                sep.join(f"{pad}{x}" if k == 0 else f"{x}{pad}" for k, x in enumerate(row))
            )
        lines += [""] * draw(st.integers(1, 2))
    lines = lines[: -1 if lines[-1] == "" else None]
    cuts = [(i, *_line_cut(lines[i], lines[i].rindex(sep))) for i in rows_of[1:]]
    header_fields = ["ID", "WORD", "POS", "CHUNK", "NER"][: n_cols + 1]
    headers = [(sep.join(header_fields), 0)]
    headers += [("# global.columns = " + " ".join(c for c in _CONLLU_NAMES), 0)]

    def read(folder):
        return read_conll(folder / "x.txt", label_col=label_col, comments=comments)

    def split(line):
        return (line.split("\t"), "\t") if tabbed else (line.split(), " ")

    return Sample(
        {"x.txt": lines},
        {"x.txt": draw(_styles())},
        read,
        [(read, (sentences, labels))],
        split,
        {"x.txt": cuts},
        {"x.txt": rows_of},
        {"x.txt": headers},
        f"comments={comments}, label_col={label_col}",
    )


_CONLLU_NAMES = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
_UPOS = ("NOUN", "VERB", "DET", "ADJ", "PUNCT", "PRON")


@st.composite
def conllu_samples(draw):
    label_col = draw(st.sampled_from([3, 4]))
    lines, token_lines, sentences, labels = [], [], [], []
    for k in range(draw(st.integers(1, 3))):
        words = _sentence(draw)
        words = [w + (" x" if draw(st.booleans()) else "") for w in words]  # FORM may hold a space
        rows = [
            [str(i + 1), w, w.lower(), draw(st.sampled_from(_UPOS)), draw(st.sampled_from(TAGS))]
            + ["_", str(i), "dep", "_", draw(st.sampled_from(["_", "SpaceAfter=No"]))]
            for i, w in enumerate(words)
        ]
        if draw(st.booleans()):
            lines += [f"# sent_id = {k + 1}", "# text = " + " ".join(words)]
        if len(rows) > 1 and draw(st.booleans()):  # a multiword token over words 1-2
            token_lines.append(len(lines))
            lines.append("\t".join(["1-2", rows[0][1] + rows[1][1]] + ["_"] * 8))
        for i, row in enumerate(rows):
            token_lines.append(len(lines))
            lines.append("\t".join(row))
            if draw(st.integers(0, 5)) == 0:  # an empty node
                token_lines.append(len(lines))
                lines.append("\t".join([f"{i + 1}.1", "e", "e", "X", "_", "_", "_", "_", "_", "_"]))
        sentences.append(tuple(words))
        labels.append(tuple(r[label_col] for r in rows))
        lines.append("")
    lines.pop()
    cuts = [(i, *_line_cut(lines[i], lines[i].rindex("\t"))) for i in token_lines]
    headers = [("\t".join(_CONLLU_NAMES), 0), ("# global.columns = " + " ".join(_CONLLU_NAMES), 0)]

    def read(folder):
        return read_conll(folder / "x.conllu", 1, label_col, format="conllu")

    return Sample(
        {"x.conllu": lines},
        {"x.conllu": draw(_styles())},
        read,
        [(read, (sentences, labels))],
        lambda x: (x.split("\t"), "\t"),
        {"x.conllu": cuts},
        {"x.conllu": token_lines},
        {"x.conllu": headers},
    )


GLUE_TEXT = st.text(TOKEN_CHARS + "  '\"", min_size=1, max_size=12).filter(lambda t: t.strip())

GLUE_HEADERS = {
    "sst2": ["sentence", "label"],
    "mrpc": ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    "qqp": ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
    "stsb": ["index", "genre", "filename", "year", "old_index", "source1", "source2"]
    + ["sentence1", "sentence2", "score"],
    "mnli": ["index", "promptID", "pairID", "genre", "sentence1_binary_parse"]
    + ["sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"],
    "qnli": ["index", "question", "sentence", "label"],
    "rte": ["index", "sentence1", "sentence2", "label"],
}


def _glue_file(draw, task: str, test: bool):
    """Lines of one GLUE file in the official layout, and its expected parse."""
    spec = GLUE_TASKS[task]
    header = list(GLUE_HEADERS.get(task, ["source", "label", "mark", "sentence"]))
    if task == "mnli":  # train: one annotator label; dev_matched: five
        header += [f"label{k}" for k in range(1, 6 if test else 2)] + ["gold_label"]
    rows, sentences, labels = [], [], []
    for _ in range(draw(st.integers(1, 5))):
        if spec.regression:
            label = f"{draw(st.integers(0, 5000)) / 1000:.3f}"
        else:
            label = draw(st.sampled_from(spec.labels))
        row = {name: draw(st.sampled_from(["0", "a1", "g"])) for name in header}
        row.update({name: draw(GLUE_TEXT) for name in spec.text if isinstance(name, str)})
        row["label" if task == "cola" else spec.label] = label
        if task == "cola":
            row.update(source="gj04", mark="" if label == "1" else "*", sentence=draw(GLUE_TEXT))
        if task == "mnli":
            row.update({f"label{k}": draw(st.sampled_from(spec.labels)) for k in range(1, 6)})
        rows.append("\t".join(row[name] for name in header))
        text_names = ("sentence",) if task == "cola" else spec.text
        sentences.append(tuple(row[name] for name in text_names))
        labels.append(float(label) if spec.regression else label)
    lines = rows if task == "cola" else ["\t".join(header)] + rows
    return lines, "\t".join(header), (sentences, labels)


@st.composite
def glue_samples(draw, task):
    spec = GLUE_TASKS[task]
    files, truth, headers, cuts = {}, [], {}, {}
    for name in ("train.tsv", spec.test_file):
        lines, header, expected = _glue_file(draw, task, test=name != "train.tsv")
        files[name] = lines
        first = 1 if task == "cola" else 2
        ids = [f"{name}:{first + i}" for i in range(len(expected[0]))]
        truth.append(
            (lambda folder, name=name: read_glue_file(folder / name, task), (*expected, ids))
        )
        headers[name] = [(header, draw(st.integers(0, len(lines))))]
        cuts[name] = [(i, *_line_cut(x, x.rindex("\t"))) for i, x in enumerate(lines)]
    return Sample(
        files,
        {name: draw(_styles()) for name in files},
        lambda folder: read_glue(folder, task),
        truth,
        lambda x: (x.split("\t"), "\t"),
        cuts,
        {name: list(range(len(lines))) for name, lines in files.items()},
        headers,
    )


# ---------------------------------------------------------------- corruptions and the property


def _corrupt(draw, sample: Sample) -> tuple[str, str, bytes]:
    """``(kind, damaged file, its new bytes)``."""
    name = draw(st.sampled_from(sorted(sample.files)))
    lines, style = sample.files[name], sample.styles[name]
    original = _render(lines, style)
    kind = draw(st.sampled_from(["truncate", "byte", "drop", "reencode", "header"]))
    if kind == "truncate":
        i, low, high = draw(st.sampled_from(sample.cuts[name]))
        return kind, name, original[: _cut_offset(lines, style, i, draw(st.integers(low, high)))]
    if kind == "byte":
        ascii_at = [k for k, b in enumerate(original) if b < 0x80]
        k = draw(st.sampled_from(ascii_at))
        new = draw(st.one_of(st.just(0), st.integers(0x80, 0xFF)))
        return kind, name, original[:k] + bytes([new]) + original[k + 1 :]
    if kind == "drop":
        i = draw(st.sampled_from(sample.drops[name]))
        fields, sep = sample.split(lines[i])
        del fields[draw(st.integers(0, len(fields) - 1))]
        return kind, name, _render(lines[:i] + [sep.join(fields)] + lines[i + 1 :], style)
    if kind == "reencode":
        encoding = draw(st.sampled_from(ENCODINGS))
        return f"{kind} {encoding}", name, _render(lines, style, encoding)
    header, at = draw(st.sampled_from(sample.headers[name]))
    return kind, name, _render(lines[:at] + [header] + lines[at:], style)


def _check(sample: Sample, data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, lines in sample.files.items():
            (folder / name).write_bytes(_render(lines, sample.styles[name]))
        for read, expected in sample.truth:
            assert read(folder) == expected
        clean = sample.read(folder)
        kind, name, damaged = _corrupt(data.draw, sample)
        (folder / name).write_bytes(damaged)
        note(f"{sample.options} {kind} of {name}: {damaged!r}")
        try:
            parsed = sample.read(folder)
        except ValueError as err:
            assert str(folder / name) in str(err), str(err)
            event(f"{kind.split()[0]}: error")
            return
        assert parsed == clean
        event(f"{kind.split()[0]}: same parse")


@settings(max_examples=200, **SETTINGS)
@given(sample=word_label_samples(), data=st.data())
def test_word_label_corruption(sample, data):
    _check(sample, data)


@settings(max_examples=250, **SETTINGS)
@given(sample=conll_samples(), data=st.data())
def test_conll_corruption(sample, data):
    _check(sample, data)


@settings(max_examples=200, **SETTINGS)
@given(sample=conllu_samples(), data=st.data())
def test_conllu_corruption(sample, data):
    _check(sample, data)


@settings(max_examples=400, **SETTINGS)
@given(
    sample=st.sampled_from(sorted(GLUE_TASKS)).flatmap(glue_samples),
    data=st.data(),
)
def test_glue_corruption(sample, data):
    _check(sample, data)
