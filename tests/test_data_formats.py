"""Tests for redundancy.data.formats on small files written by the tests."""

import re

import numpy as np
import pytest

from redundancy.data import load_task
from redundancy.data.formats import (
    GLUE_SEED,
    GLUE_TASKS,
    read_conll,
    read_glue,
    read_glue_file,
    read_word_label,
)


def _write(path, text):
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _write_bytes(path, data):
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- encoding (every reader)

WORDS = "The café sat .\nA/B dog\n"
LABELS = "DT NN VBD .\nNN NN\n"
CONLL = "The\tDT\tB-NP\ncafé\tNN\tI-NP\n\nsat\tVBD\tB-VP\n"
SST2 = 'sentence\tlabel\nthe "café" is good .\t1\nbad .\t0\n'


def _readers(tmp_path):
    """``name -> (path to corrupt, text, read())`` for one file of each reader."""
    labels = _write(tmp_path / "x.label", LABELS)
    return {
        "word_label": (tmp_path / "x.word", WORDS, lambda p: read_word_label(p, labels)),
        "conll": (tmp_path / "x.txt", CONLL, read_conll),
        "glue": (tmp_path / "train.tsv", SST2, lambda p: read_glue_file(p, "sst2")),
    }


@pytest.mark.parametrize("reader", ["word_label", "conll", "glue"])
def test_latin1_file_names_file_line_byte_offset_and_iconv(tmp_path, reader):
    path, text, read = _readers(tmp_path)[reader]
    _write_bytes(path, text.encode("latin-1"))
    with pytest.raises(ValueError) as info:
        read(path)
    message = str(info.value)
    line = text[: text.index("é")].count("\n") + 1
    offset = len(text[: text.index("é")].encode("latin-1"))
    assert f"{path}, line {line}, byte offset {offset}:" in message
    assert "not valid UTF-8" in message and f"iconv -f latin1 -t utf-8 {path}" in message


@pytest.mark.parametrize("reader", ["word_label", "conll", "glue"])
def test_invalid_utf8_byte(tmp_path, reader):
    path, text, read = _readers(tmp_path)[reader]
    data = text.encode()
    _write_bytes(path, data[:5] + b"\xff" + data[6:])
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line 1, byte offset 5: not"):
        read(path)


@pytest.mark.parametrize("reader", ["word_label", "conll", "glue"])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig", "utf-32"])
def test_files_with_a_byte_order_mark_are_decoded(tmp_path, reader, encoding):
    path, text, read = _readers(tmp_path)[reader]
    expected = read(_write(path, text))
    data = text.encode(encoding)
    if encoding == "utf-16-be":  # the codec writes no mark: add the big-endian one
        data = b"\xfe\xff" + data
    assert read(_write_bytes(path, data)) == expected


@pytest.mark.parametrize("reader", ["word_label", "conll", "glue"])
def test_utf16_without_mark_is_refused(tmp_path, reader):
    path, text, read = _readers(tmp_path)[reader]
    _write_bytes(path, text.encode("utf-16-le"))
    with pytest.raises(ValueError) as info:
        read(path)
    message = str(info.value)
    # a NUL byte, or an invalid UTF-8 byte where 'é' is (line 2 of the CoNLL and GLUE texts)
    line = 1 if reader == "word_label" else 2
    assert f"{path}, line {line}, byte offset" in message and "UTF-16" in message
    assert "iconv -f utf-16le" in message


def test_damaged_utf16_is_refused(tmp_path):
    path = _write_bytes(tmp_path / "x.txt", CONLL.encode("utf-16")[:-1])
    with pytest.raises(ValueError, match=r"x.txt, line 4, byte offset \d+: not valid UTF-16"):
        read_conll(path)


@pytest.mark.parametrize("reader", ["word_label", "conll", "glue"])
def test_crlf_bom_and_trailing_blank_line_parse_exactly(tmp_path, reader):
    path, text, read = _readers(tmp_path)[reader]
    expected = read(_write(path, text))
    variant = "\ufeff" + text.replace("\n", "\r\n") + "\r\n"
    assert read(_write(path, variant)) == expected


@pytest.mark.parametrize("reader", ["word_label", "conll", "glue"])
def test_lone_carriage_return_is_refused(tmp_path, reader):
    path, text, read = _readers(tmp_path)[reader]
    i = text.index("\n")
    _write(path, text[:i] + "\r" + text[i + 1 :])
    offset = len(text[:i].encode())
    with pytest.raises(ValueError, match=rf"line 1, byte offset {offset}: character U\+000D"):
        read(path)


def test_control_characters_are_refused_in_token_files_only(tmp_path):
    w = _write(tmp_path / "x.word", "a b\x0bc\n")
    y = _write(tmp_path / "x.label", "X Y Z\n")
    with pytest.raises(ValueError, match=r"x.word, line 1, byte offset 3: character U\+000B"):
        read_word_label(w, y)
    _write(tmp_path / "c.txt", "a\tX\n\ufeffb\tY\n")
    with pytest.raises(ValueError, match=r"c.txt, line 2, byte offset 4: character U\+FEFF"):
        read_conll(tmp_path / "c.txt")
    # GLUE texts are kept as they are
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\na\x0bb\t1\n")
    assert read_glue_file(path, "sst2")[0] == [("a\x0bb",)]


# ---------------------------------------------------------------- word / label files


def test_read_word_label(tmp_path):
    w = _write(tmp_path / "train.word", "The cat sat .\nA/B dog\n")
    y = _write(tmp_path / "train.label", "DT NN VBD .\nNN NN\n")
    sentences, labels = read_word_label(w, y)
    assert sentences == [("The", "cat", "sat", "."), ("A/B", "dog")]
    assert labels == [("DT", "NN", "VBD", "."), ("NN", "NN")]


def test_word_label_tabs_and_spaces_are_the_same_separator(tmp_path):
    w = _write(tmp_path / "a.word", "The cat\tsat\nA  dog\n\n\n")
    y = _write(tmp_path / "a.label", "DT\tNN VBD\t\nNN\tNN\n")
    assert read_word_label(w, y) == (
        [("The", "cat", "sat"), ("A", "dog")],
        [
            ("DT", "NN", "VBD"),
            ("NN", "NN"),
        ],
    )


def test_word_label_count_mismatch_names_files_line_and_counts(tmp_path):
    w = _write(tmp_path / "dev.word", "a b\nc d e\n")
    y = _write(tmp_path / "dev.label", "X Y\nX Y\n")
    with pytest.raises(ValueError) as info:
        read_word_label(w, y)
    message = str(info.value)
    assert f"{w} and {y}, line 2: 3 words but 2 labels" in message


def test_word_label_different_number_of_lines_points_at_first_difference(tmp_path):
    w = _write(tmp_path / "a.word", "a\nb c\nd\n")
    y = _write(tmp_path / "a.label", "X\nY\n")
    with pytest.raises(ValueError) as info:
        read_word_label(w, y)
    message = str(info.value)
    assert re.search(r"a.word has 3 lines but .*a.label has 2", message)
    assert "line 2 (2 words, 1 labels)" in message


def test_word_label_blank_line_in_the_middle(tmp_path):
    w = _write(tmp_path / "a.word", "a\n\nb\n")
    y = _write(tmp_path / "a.label", "X\n\nY\n")
    with pytest.raises(ValueError, match=r"a.label, line 2: blank line"):
        read_word_label(w, y)


def test_word_label_refuses_the_word_file_as_label_file(tmp_path):
    w = _write(tmp_path / "a.word", "a b\n")
    with pytest.raises(ValueError, match="same file or have the same content"):
        read_word_label(w, w)
    copy = _write(tmp_path / "a.label", "a b\n")
    with pytest.raises(ValueError, match="same file or have the same content"):
        read_word_label(w, copy)


def test_word_label_empty_file(tmp_path):
    w = _write(tmp_path / "e.word", "\n\n")
    y = _write(tmp_path / "e.label", "X\n")
    with pytest.raises(ValueError, match=r"e.word is empty"):
        read_word_label(w, y)


def test_word_label_missing_file(tmp_path):
    w = _write(tmp_path / "x.word", "a\n")
    with pytest.raises(FileNotFoundError, match="x.label"):
        read_word_label(w, tmp_path / "x.label")


# ---------------------------------------------------------------- CoNLL


def test_read_conll(tmp_path):
    text = "-DOCSTART- -X- O O\n\nConfidence NN B-NP\nin IN B-PP\nthe DT B-NP\n\n\npound NN I-NP\n"
    path = _write(tmp_path / "train.txt", text)
    sentences, labels = read_conll(path)
    assert sentences == [("Confidence", "in", "the"), ("pound",)]
    assert labels == [("B-NP", "B-PP", "B-NP"), ("I-NP",)]
    _, pos = read_conll(path, word_col=0, label_col=1)
    assert pos == [("NN", "IN", "DT"), ("NN",)]


def test_conll_missing_label_column_is_refused(tmp_path):
    # before: the word became its own label
    path = _write(tmp_path / "bad.txt", "a NN B-NP\nb\nc NN B-NP\n")
    with pytest.raises(ValueError) as info:
        read_conll(path)
    message = str(info.value)
    assert "bad.txt, line 2: expected 3 space-separated columns, as on line 1" in message
    assert "got 1" in message


def test_conll_column_count_must_not_change(tmp_path):
    # before: label_col=-1 took the chunk tag here and the POS tag on line 3
    path = _write(tmp_path / "bad.txt", "a\tDT\tB-NP\n\nb\tNN\nc\tNN\tI-NP\n")
    with pytest.raises(ValueError, match=r"bad.txt, line 3: expected 3 tab-separated columns"):
        read_conll(path)


def test_conll_too_few_columns_for_the_requested_label(tmp_path):
    path = _write(tmp_path / "bad.txt", "a NN\nb NN\n")
    with pytest.raises(ValueError, match=r"bad.txt, line 1: label_col=2 needs at least 3"):
        read_conll(path, label_col=2)


def test_conll_single_column_file_has_no_label(tmp_path):
    path = _write(tmp_path / "one.txt", "a\nb\n")
    with pytest.raises(ValueError, match=r"one.txt, line 1: word_col=0 and label_col=-1 are"):
        read_conll(path)


def test_conll_tab_separated_fields_keep_their_spaces(tmp_path):
    # before: "New York" was cut to "New" and the columns shifted
    path = _write(tmp_path / "t.txt", "New York\tNNP\tB-NP\n is \tVBZ \tB-VP\n")
    assert read_conll(path) == ([("New York", "is")], [("B-NP", "B-VP")])
    assert read_conll(path, label_col=1)[1] == [("NNP", "VBZ")]


def test_conll_empty_tab_field_is_refused(tmp_path):
    path = _write(tmp_path / "t.txt", "a\tDT\tB-NP\nb\t\tI-NP\n")
    with pytest.raises(ValueError, match=r"t.txt, line 2: column 1 is empty"):
        read_conll(path)


def test_conll_tab_line_in_a_space_separated_file(tmp_path):
    ok = _write(tmp_path / "ok.txt", "a DT B-NP\nin\tIN\tB-PP\n")
    assert read_conll(ok) == ([("a", "in")], [("B-NP", "B-PP")])
    bad = _write(tmp_path / "bad.txt", "a DT B-NP\nNew York\tNNP\tI-NP\n")
    with pytest.raises(ValueError, match="Line 1 has no tab, so the file is read as space"):
        read_conll(bad)


def test_conll_comment_lines(tmp_path):
    text = "# sent_id = 1\n# text = a b\na\tDT\nb\tNN\n\n# sent_id = 2\n#\tSYM\n"
    path = _write(tmp_path / "c.txt", text)
    with pytest.raises(ValueError, match=r"c.txt, line 1: '# sent_id = 1' looks like a CoNLL-U"):
        read_conll(path)
    assert read_conll(path, comments=True) == ([("a", "b")], [("DT", "NN")])
    # a '#' token inside a sentence stays a token; a plain '#' line is a token by default
    ptb = _write(tmp_path / "ptb.txt", "# # B-NP\n5 CD I-NP\n\nA DT B-NP\n# # I-NP\n")
    expected = ([("#", "5"), ("A", "#")], [("B-NP", "I-NP"), ("B-NP", "I-NP")])
    assert read_conll(ptb) == expected
    assert read_conll(ptb, comments=True) == ([("5",), ("A", "#")], [("I-NP",), ("B-NP", "I-NP")])
    hashed = _write(tmp_path / "h.txt", "a\tDT\n# a comment\nb\tNN\n")
    with pytest.raises(ValueError, match="pass comments=True"):
        read_conll(hashed)


def test_conll_options_are_checked(tmp_path):
    path = _write(tmp_path / "c.txt", "a DT\n")
    with pytest.raises(ValueError, match=r"'format' parameter of read_conll must be one of"):
        read_conll(path, format="conll-u")
    with pytest.raises(TypeError, match=r"'comments' parameter of read_conll must be a bool"):
        read_conll(path, comments="yes")
    with pytest.raises(TypeError, match=r"'label_col' parameter of read_conll must be an int"):
        read_conll(path, label_col="1")


def test_conll_empty_file(tmp_path):
    path = _write(tmp_path / "empty.txt", "\n\n-DOCSTART- -X- O\n")
    with pytest.raises(ValueError, match="empty.txt holds no sentence"):
        read_conll(path)


CONLLU = (
    "# newdoc id = d1\n# sent_id = 1\n# text = Don't go home\n"
    "1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_\n"
    "2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_\n"
    "3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_\n"
    "3.1\tgo\tgo\tVERB\t_\t_\t_\t_\t3:conj\t_\n"
    "4\thome town\thome\tNOUN\tNN\t_\t3\tobj\t_\tSpaceAfter=No\n"
    "\n# sent_id = 2\n1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_\n"
)


def test_read_conllu(tmp_path):
    path = _write(tmp_path / "u.conllu", CONLLU)
    sentences, upos = read_conll(path, format="conllu")
    assert sentences == [("Do", "n't", "go", "home town"), ("Yes",)]
    assert upos == [("AUX", "PART", "VERB", "NOUN"), ("INTJ",)]
    assert read_conll(path, 1, 7, format="conllu")[1][0] == ("aux", "advmod", "root", "obj")


@pytest.mark.parametrize(
    "change, message",
    [
        (("1\tDo\tdo", "ID\tFORM\tLEMMA"), r"line 5: expected a CoNLL-U ID .* got 'ID'"),
        (("2\tn't", "3\tn't"), r"line 6: expected word ID 2, got 3"),
        (("\tSpaceAfter=No\n\n", "\tSpaceAfter=No\n"), r"line 10: comment line after the words"),
        (("\t3:conj\t_\n", "\t3:conj\n"), r"line 8: expected 10 non-empty .* got 9"),
        (("\tobj\t_\t", "\tobj\t\t"), r"line 9: expected 10 non-empty .* column 9 empty"),
    ],
)
def test_conllu_malformed_lines(tmp_path, change, message):
    path = _write(tmp_path / "u.conllu", CONLLU.replace(*change))
    with pytest.raises(ValueError, match=rf"u.conllu, {message}"):
        read_conll(path, format="conllu")


def test_conllu_columns_must_name_a_word_and_a_label(tmp_path):
    path = _write(tmp_path / "u.conllu", CONLLU)
    with pytest.raises(ValueError, match=r"word_col=0 \(ID\) and label_col=-1 \(MISC\)"):
        read_conll(path, 0, -1, format="conllu")
    with pytest.raises(ValueError, match=r"must be in \[-10, 9\]"):
        read_conll(path, 1, 10, format="conllu")


def test_conll_task_options(tmp_path):
    for split in ("train", "dev", "test"):
        _write(tmp_path / f"{split}.conllu", CONLLU)
        _write(tmp_path / f"{split}.txt", "# sent_id = 1\nHe\tPRP\nran\tVBD\n")
    task = load_task("conll", data_dir=tmp_path, format="conllu", word_col=1, label_col=4)
    assert task.train.labels == [("VBP", "RB", "VB", "NN"), ("UH",)]
    assert task.options["format"] == "conllu"
    with pytest.raises(ValueError, match=r"word_col=0 \(ID\)"):
        load_task("conll", data_dir=tmp_path, format="conllu")
    with pytest.raises(ValueError, match="looks like a CoNLL-U comment"):
        load_task("conll", data_dir=tmp_path)
    task = load_task("conll", data_dir=tmp_path, comments=True)
    assert task.test.sentences == [("He", "ran")] and task.test.labels == [("PRP", "VBD")]
    with pytest.raises(ValueError, match=r"'format' parameter of load_task\('conll'\)"):
        load_task("conll", data_dir=tmp_path, format="tsv")


# ---------------------------------------------------------------- GLUE


def _glue_rows(task, n):
    """Header and rows of a tiny GLUE file in the official layout; row i's label encodes i."""
    labels = {
        "stsb": lambda i: f"{(i % 21) / 4:.3f}",
        "mnli": lambda i: ("entailment", "neutral", "contradiction")[i % 3],
        "qnli": lambda i: ("entailment", "not_entailment")[i % 2],
        "rte": lambda i: ("entailment", "not_entailment")[i % 2],
    }.get(task, lambda i: str(i % 2))
    if task == "cola":
        return None, [
            ["gj04", labels(i), "" if i % 2 else "*", f"sentence {i} ."] for i in range(n)
        ]
    if task == "sst2":
        return ["sentence", "label"], [[f"sentence {i} .", labels(i)] for i in range(n)]
    if task == "mrpc":
        header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
        return header, [[labels(i), "1", "2", f"a {i}", f"b {i}"] for i in range(n)]
    if task == "qqp":
        header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
        return header, [[str(i), "1", "2", f"a {i}?", f"b {i}?", labels(i)] for i in range(n)]
    if task == "stsb":
        header = ["index", "genre", "filename", "year", "old_index", "source1", "source2"]
        header += ["sentence1", "sentence2", "score"]
        rows = [
            [str(i), "g", "f", "y", "o", "s", "s", f"a {i}", f"b {i}", labels(i)] for i in range(n)
        ]
        return header, rows
    if task == "mnli":
        header = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse"]
        header += ["sentence2_binary_parse", "sentence1_parse", "sentence2_parse"]
        header += ["sentence1", "sentence2", "label1", "gold_label"]
        rows = [
            [str(i), "p", "q", "g", "( a )", "( b )", "(ROOT a)", "(ROOT b)", f"a {i}", f"b {i}"]
            + [labels(i), labels(i)]
            for i in range(n)
        ]
        return header, rows
    if task == "qnli":
        header = ["index", "question", "sentence", "label"]
        return header, [[str(i), f"a {i}?", f"b {i}", labels(i)] for i in range(n)]
    header = ["index", "sentence1", "sentence2", "label"]
    return header, [[str(i), f"a {i}", f"b {i}", labels(i)] for i in range(n)]


def _write_glue(folder, task, n_train=30, n_test=7):
    folder.mkdir(parents=True, exist_ok=True)
    test_file = GLUE_TASKS[task].test_file
    for name, n in (("train.tsv", n_train), (test_file, n_test)):
        header, rows = _glue_rows(task, n)
        lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
        _write(folder / name, "\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("task", sorted(GLUE_TASKS))
def test_read_glue_file_finds_columns(tmp_path, task):
    folder = _write_glue(tmp_path / task, task, n_train=5)
    sentences, labels, ids = read_glue_file(folder / "train.tsv", task)
    assert len(sentences) == len(labels) == len(ids) == 5
    if task in ("cola", "sst2"):
        assert sentences[3] == ("sentence 3 .",)
    else:
        assert sentences[3][0].startswith("a 3") and sentences[3][1].startswith("b 3")
    header, rows = _glue_rows(task, 5)
    spec = GLUE_TASKS[task]
    column = spec.label if header is None else header.index(spec.label)
    expected = [r[column] for r in rows]
    if task == "stsb":
        assert labels == pytest.approx([float(x) for x in expected])
        assert labels[3] == pytest.approx(0.75)
    else:
        assert labels == expected
    first_data_line = 1 if task == "cola" else 2
    assert ids[0] == f"train.tsv:{first_data_line}"


def test_mnli_dev_matched_layout_and_test_file(tmp_path):
    header = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse"]
    header += ["sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1"]
    header += ["sentence2", "label1", "label2", "label3", "label4", "label5", "gold_label"]
    row = ["0", "p", "q", "g", "( a )", "( b )", "(ROOT a)", "(ROOT b)", "A .", "B ."]
    row += ["neutral", "entailment", "neutral", "neutral", "neutral", "neutral"]
    path = _write(tmp_path / "dev_matched.tsv", "\t".join(header) + "\n" + "\t".join(row) + "\n")
    assert read_glue_file(path, "mnli") == ([("A .", "B .")], ["neutral"], ["dev_matched.tsv:2"])
    test = _write(
        tmp_path / "test_matched.tsv", "\t".join(header[:10]) + "\n" + "\t".join(row[:10])
    )
    with pytest.raises(
        ValueError, match=r"test_matched.tsv, line 1: .*'gold_label'.*have no labels"
    ):
        read_glue_file(test, "mnli")


def test_glue_text_is_kept_as_it_is(tmp_path):
    # quote characters, leading spaces and a BOM-marked MRPC header (as in the download)
    text = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n"
    text += '1\t1\t2\t"Quoted," he said \'x\'\t  spaced "\r\n'
    path = _write(tmp_path / "train.tsv", text)
    assert read_glue_file(path, "mrpc")[:2] == ([("\"Quoted,\" he said 'x'", '  spaced "')], ["1"])


def test_glue_columns_are_found_by_header_name(tmp_path):
    # RTE columns in an unusual order: the reader must use the header, not positions
    path = _write(
        tmp_path / "train.tsv", "label\tsentence2\tindex\tsentence1\nentailment\tB\t0\tA\n"
    )
    sentences, labels, _ = read_glue_file(path, "rte")
    assert sentences == [("A", "B")] and labels == ["entailment"]


@pytest.mark.parametrize(
    "task, header, row, bad",
    [
        ("sst2", "sentence\tlabel", "good .\t{}", ["2", "positive", "", "1.0", "-1"]),
        ("cola", None, "gj04\t{}\t\tok .", ["2", "", "acceptable"]),
        ("mrpc", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "{}\t1\t2\ta\tb", ["yes", "2"]),
        ("qqp", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "0\t1\t2\ta\tb\t{}", ["x"]),
        ("mnli", "sentence1\tsentence2\tgold_label", "a\tb\t{}", ["entailmnet", "-", "Neutral"]),
        ("qnli", "index\tquestion\tsentence\tlabel", "0\ta\tb\t{}", ["neutral", "1"]),
        ("rte", "index\tsentence1\tsentence2\tlabel", "0\ta\tb\t{}", ["contradiction", ""]),
    ],
)
def test_glue_label_outside_the_task_label_set(tmp_path, task, header, row, bad):
    good = GLUE_TASKS[task].labels[0]
    for value in bad:
        lines = ([header] if header else []) + [row.format(good), row.format(value)]
        path = _write(tmp_path / "train.tsv", "\n".join(lines) + "\n")
        with pytest.raises(ValueError) as info:
            read_glue_file(path, task)
        message = str(info.value)
        lineno = 3 if header else 2
        valid = ", ".join(map(repr, GLUE_TASKS[task].labels))
        assert f"{path}, line {lineno}: expected one of the {task} labels {{{valid}}}" in message
        assert f"got {value!r}" in message


def test_integer_nli_labels_are_refused_with_a_hint(tmp_path):
    # a Hugging Face export writes 0/1 for entailment/not_entailment: not guessed, refused
    path = _write(tmp_path / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n")
    with pytest.raises(ValueError, match=r"line 2: .* got '1'. Integer labels come from a Hug"):
        read_glue_file(path, "rte")


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "7", "-0.5", "5.01", "1e9", "", "high"])
def test_stsb_score_must_be_a_finite_number_in_0_5(tmp_path, score):
    path = _write(tmp_path / "train.tsv", f"sentence1\tsentence2\tscore\na\tb\t{score}\n")
    with pytest.raises(ValueError, match=r"train.tsv, line 2: expected a score \(a finite number "):
        read_glue_file(path, "stsb")


def test_stsb_score_bounds_are_included(tmp_path):
    path = _write(tmp_path / "train.tsv", "sentence1\tsentence2\tscore\na\tb\t0\nc\td\t5.000\n")
    assert read_glue_file(path, "stsb")[1] == [0.0, 5.0]


def test_cola_header_is_refused_with_a_hint(tmp_path):
    # before: the header became an example labelled 'label'
    path = _write(tmp_path / "train.tsv", "source\tlabel\tmark\tsentence\ngj04\t1\t\tok .\n")
    with pytest.raises(ValueError) as info:
        read_glue_file(path, "cola")
    message = str(info.value)
    assert (
        f"{path}, line 1: expected one of the cola labels" in message and "got 'label'" in message
    )
    assert "no header line" in message and "sed -i 1d" in message


def test_repeated_header_is_refused(tmp_path):
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\ngood .\t1\nsentence\tlabel\n")
    with pytest.raises(ValueError, match=r"line 3: .* got 'label'. This looks like a repeated"):
        read_glue_file(path, "sst2")


@pytest.mark.parametrize("task", ["rte", "mnli", "stsb"])
def test_read_glue_protocol(tmp_path, task):
    folder = _write_glue(tmp_path / task, task, n_train=40, n_test=9)
    splits = read_glue(folder, f"glue-{task}")
    train, dev, test = splits["train"], splits["dev"], splits["test"]
    assert (len(train), len(dev), len(test)) == (36, 4, 9)
    assert not set(train.ids) & set(dev.ids)
    assert sorted(train.ids + dev.ids, key=lambda s: int(s.split(":")[1])) == [
        f"train.tsv:{i}" for i in range(2, 42)
    ]
    # dev is the seeded 10% of the official train set; the official dev set is the test set
    expected_dev = sorted(np.random.default_rng(GLUE_SEED).permutation(40)[:4])
    assert dev.ids == [f"train.tsv:{i + 2}" for i in expected_dev]
    assert test.ids[0] == f"{GLUE_TASKS[task].test_file}:2"
    again = read_glue(folder, task)
    assert again["dev"].ids == dev.ids
    other = read_glue(folder, task, random_state=1)
    assert other["dev"].ids != dev.ids


def test_read_glue_names_the_bad_file(tmp_path):
    folder = _write_glue(tmp_path / "RTE", "rte")
    text = (folder / "dev.tsv").read_text().replace("not_entailment", "not entailment", 1)
    _write(folder / "dev.tsv", text)
    with pytest.raises(ValueError, match=r"RTE/dev.tsv, line 3: expected one of the rte labels"):
        read_glue(folder, "rte")


def test_glue_missing_file_says_what_is_expected(tmp_path):
    folder = _write_glue(tmp_path / "MNLI", "mnli")
    (folder / "dev_matched.tsv").unlink()
    with pytest.raises(FileNotFoundError) as info:
        read_glue(folder, "mnli")
    message = str(info.value)
    assert "dev_matched.tsv" in message and "train.tsv" in message and "gluebenchmark" in message


def test_glue_missing_or_repeated_column_is_named(tmp_path):
    path = _write(tmp_path / "train.tsv", "index\tquestion\tlabel\n0\tWhy?\tentailment\n")
    with pytest.raises(ValueError) as info:
        read_glue_file(path, "qnli")
    message = str(info.value)
    assert "'sentence'" in message and "['index', 'question', 'label']" in message
    path = _write(tmp_path / "train.tsv", "sentence\tsentence\tlabel\na\tb\t1\n")
    with pytest.raises(ValueError, match=r"line 1: expected one column 'sentence' .* found 2"):
        read_glue_file(path, "sst2")


def test_glue_malformed_line(tmp_path):
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\ngood .\t1\nbroken line without label\n")
    with pytest.raises(
        ValueError, match=r"train.tsv, line 3: expected 2 tab-separated fields, got 1"
    ):
        read_glue_file(path, "sst2")


def test_cola_malformed_line(tmp_path):
    path = _write(tmp_path / "train.tsv", "gj04\t1\t\tok .\ngj04\t0\n")
    with pytest.raises(ValueError, match=r"train.tsv, line 2: expected 4"):
        read_glue_file(path, "cola")


def test_unknown_glue_task(tmp_path):
    with pytest.raises(ValueError, match=r"The 'task' parameter of read_glue must be one of"):
        read_glue(tmp_path, "wnli")


@pytest.mark.parametrize("task", sorted(GLUE_TASKS))
def test_task_pairs_says_what_loading_gives(tmp_path, task):
    """task_pairs (used to estimate work before loading) agrees with the loaded instances."""
    from redundancy.data.tasks import task_pairs

    loaded = load_task(f"glue-{task}", data_dir=_write_glue(tmp_path / task, task))
    assert task_pairs(f"glue-{task}") == (len(loaded.train.sentences[0]) == 2)
    assert task_pairs(f"glue-{task}") == (task not in ("cola", "sst2"))
