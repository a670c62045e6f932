"""Tests for redundancy.data.formats on small files written by the tests."""

import numpy as np
import pytest

from redundancy.data.formats import (
    GLUE_SEED,
    GLUE_TASKS,
    read_conll,
    read_glue,
    read_glue_file,
    read_word_label,
)

# ---------------------------------------------------------------- word / label files


def _write(path, text):
    path.write_text(text)
    return path


def test_read_word_label(tmp_path):
    w = _write(tmp_path / "train.word", "The cat sat .\nA/B dog\n")
    y = _write(tmp_path / "train.label", "DT NN VBD .\nNN NN\n")
    sentences, labels = read_word_label(w, y)
    assert sentences == [("The", "cat", "sat", "."), ("A/B", "dog")]
    assert labels == [("DT", "NN", "VBD", "."), ("NN", "NN")]


def test_word_label_count_mismatch_names_files_line_and_counts(tmp_path):
    w = _write(tmp_path / "dev.word", "a b\nc d e\n")
    y = _write(tmp_path / "dev.label", "X Y\nX Y\n")
    with pytest.raises(ValueError) as info:
        read_word_label(w, y)
    message = str(info.value)
    assert "Line 2" in message and "dev.word" in message and "dev.label" in message
    assert "3 words" in message and "2 labels" in message


def test_word_label_different_number_of_lines(tmp_path):
    w = _write(tmp_path / "a.word", "a\nb\nc\n")
    y = _write(tmp_path / "a.label", "X\nY\n")
    with pytest.raises(ValueError, match=r"a.word has 3 lines but .*a.label has 2"):
        read_word_label(w, y)


def test_word_label_empty_file(tmp_path):
    w = _write(tmp_path / "e.word", "")
    y = _write(tmp_path / "e.label", "X\n")
    with pytest.raises(ValueError, match=r"e.word is empty"):
        read_word_label(w, y)


def test_word_label_missing_file(tmp_path):
    w = _write(tmp_path / "x.word", "a\n")
    with pytest.raises(FileNotFoundError, match="x.label"):
        read_word_label(w, tmp_path / "x.label")


# ---------------------------------------------------------------- CoNLL


def test_read_conll(tmp_path):
    text = (
        "-DOCSTART- -X- O O\n\nConfidence NN B-NP\nin\tIN\tB-PP\nthe DT B-NP\n\n\npound NN I-NP\n"
    )
    path = _write(tmp_path / "train.txt", text)
    sentences, labels = read_conll(path)
    assert sentences == [("Confidence", "in", "the"), ("pound",)]
    assert labels == [("B-NP", "B-PP", "B-NP"), ("I-NP",)]
    _, pos = read_conll(path, word_col=0, label_col=1)
    assert pos == [("NN", "IN", "DT"), ("NN",)]


def test_conll_too_few_columns(tmp_path):
    path = _write(tmp_path / "bad.txt", "a NN B-NP\nb NN\n")
    with pytest.raises(ValueError) as info:
        read_conll(path, label_col=2)
    message = str(info.value)
    assert "bad.txt, line 2" in message and "at least 3 columns" in message


def test_conll_empty_file(tmp_path):
    path = _write(tmp_path / "empty.txt", "\n\n")
    with pytest.raises(ValueError, match="empty.txt holds no sentence"):
        read_conll(path)


# ---------------------------------------------------------------- GLUE


def _glue_rows(task, n):
    """Header and rows of a tiny GLUE file; the label of row i encodes i."""
    labels = {
        "cola": lambda i: str(i % 2),
        "sst2": lambda i: str(i % 2),
        "mrpc": lambda i: str(i % 2),
        "qqp": lambda i: str(i % 2),
        "stsb": lambda i: f"{i / 4:.2f}",
        "mnli": lambda i: ("entailment", "neutral", "contradiction")[i % 3],
        "qnli": lambda i: ("entailment", "not_entailment")[i % 2],
        "rte": lambda i: ("entailment", "not_entailment")[i % 2],
    }[task]
    if task == "cola":
        return None, [["gj04", labels(i), "", f"sentence {i} ."] for i in range(n)]
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
        header = ["index", "promptID", "pairID", "genre", "sentence1", "sentence2", "gold_label"]
        return header, [[str(i), "p", "q", "g", f"a {i}", f"b {i}", labels(i)] for i in range(n)]
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
        (folder / name).write_text("\n".join(lines) + "\n")
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


def test_glue_columns_are_found_by_header_name(tmp_path):
    # RTE columns in an unusual order: the reader must use the header, not positions
    path = tmp_path / "train.tsv"
    path.write_text("label\tsentence2\tindex\tsentence1\nentailment\tB\t0\tA\n")
    sentences, labels, _ = read_glue_file(path, "rte")
    assert sentences == [("A", "B")] and labels == ["entailment"]


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


def test_glue_missing_file_says_what_is_expected(tmp_path):
    folder = _write_glue(tmp_path / "MNLI", "mnli")
    (folder / "dev_matched.tsv").unlink()
    with pytest.raises(FileNotFoundError) as info:
        read_glue(folder, "mnli")
    message = str(info.value)
    assert "dev_matched.tsv" in message and "train.tsv" in message and "gluebenchmark" in message


def test_glue_missing_column_is_named(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("index\tquestion\tlabel\n0\tWhy?\tentailment\n")
    with pytest.raises(ValueError) as info:
        read_glue_file(path, "qnli")
    message = str(info.value)
    assert "'sentence'" in message and "['index', 'question', 'label']" in message


def test_glue_malformed_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\ngood .\t1\nbroken line without label\n")
    with pytest.raises(
        ValueError, match=r"train.tsv, line 3: expected 2 tab-separated fields, got 1"
    ):
        read_glue_file(path, "sst2")


def test_cola_malformed_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("gj04\t1\t\tok .\ngj04\t0\n")
    with pytest.raises(ValueError, match=r"train.tsv, line 2: expected 4"):
        read_glue_file(path, "cola")


def test_stsb_score_must_be_a_number(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence1\tsentence2\tscore\na\tb\thigh\n")
    with pytest.raises(ValueError, match=r"line 2: expected a number"):
        read_glue_file(path, "stsb")


def test_unknown_glue_task(tmp_path):
    with pytest.raises(ValueError, match=r"The 'task' parameter of read_glue must be one of"):
        read_glue(tmp_path, "wnli")
