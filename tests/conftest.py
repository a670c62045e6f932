"""Shared fixtures: tiny tasks built from Splits, tiny randomly initialised models from configs.

``make_token_task`` / ``make_sentence_task`` are plain functions too, so other test modules can
import them (``from conftest import make_token_task``) or use the fixtures below.
"""

from __future__ import annotations

import numpy as np
import pytest

from redundancy.data.base import Split, Task, label_vocabulary

WORDS = (
    "the cat sat on a mat while an unbelievably quick brown fox jumped over lazy dogs "
    "and researchers analysed redundancy in pretrained transformers with probes"
).split()


def make_token_task(n_sentences=6, *, lengths=None, name="tiny-pos", random_state=0) -> Task:
    """A token task of random sentences over a small vocabulary; tag = word length class.

    Parameters
    ----------
    n_sentences : int
        Sentences per split (dev/test get half as many).
    lengths : sequence of int, optional
        Word counts of the training sentences (default: random 3..12).
    """
    rng = np.random.default_rng(random_state)

    def split(name, n, lens=None):
        lens = lens if lens is not None else rng.integers(3, 13, size=n)
        sents = [tuple(rng.choice(WORDS, size=int(k))) for k in lens]
        labels = [tuple("LONG" if len(w) > 4 else "SHORT" for w in s) for s in sents]
        return Split(name, sents, labels, [f"{name}:{i}" for i in range(len(sents))])

    train = split("train", n_sentences, lengths)
    dev = split("dev", max(1, n_sentences // 2))
    test = split("test", max(1, n_sentences // 2))
    names = label_vocabulary(y for tags in train.labels for y in tags)
    return Task(name, "token", "classification", train, dev, test, label_names=names)


def make_sentence_task(
    n_sentences=8, *, pairs=False, regression=False, name="tiny-sent", random_state=0
) -> Task:
    """A sentence task whose label is planted in the text: sentences with "cat" are "pos".

    With ``pairs=True`` instances are ``(text_a, text_b)``; with ``regression=True`` the
    target is the number of words of ``text_a``.
    """
    rng = np.random.default_rng(random_state)

    def split(name, n):
        sents, labels = [], []
        for i in range(n):
            k = int(rng.integers(3, 9))
            words = list(rng.choice([w for w in WORDS if w != "cat"], size=k))
            positive = i % 2 == 0
            if positive:
                words[int(rng.integers(0, k))] = "cat"
            a = " ".join(words)
            inst = (a, " ".join(rng.choice(WORDS, size=4))) if pairs else (a,)
            sents.append(inst)
            labels.append(float(k) if regression else ("pos" if positive else "neg"))
        return Split(name, sents, labels, [f"{name}:{i}" for i in range(n)])

    train, dev, test = split("train", n_sentences), split("dev", 4), split("test", 4)
    kind = "regression" if regression else "classification"
    names = () if regression else label_vocabulary(train.labels)
    return Task(name, "sentence", kind, train, dev, test, label_names=names)


def _save_tiny(folder, config, padding_side="right"):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from redundancy.encoders.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    tokenizer.padding_side = padding_side
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModel.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """Folder of a 2-layer, hidden-32 random BERT with the minilm (uncased WordPiece) tokenizer."""
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return _save_tiny(tmp_path_factory.mktemp("tiny-bert"), config)


@pytest.fixture(scope="session")
def tiny_xlnet(tmp_path_factory):
    """Folder of a 2-layer random XLNet with the minilm tokenizer set to pad on the left."""
    from transformers import XLNetConfig

    config = XLNetConfig(vocab_size=30522, d_model=32, n_layer=2, n_head=2, d_inner=64)
    return _save_tiny(tmp_path_factory.mktemp("tiny-xlnet"), config, padding_side="left")


@pytest.fixture
def token_task():
    return make_token_task()


@pytest.fixture
def sentence_task():
    return make_sentence_task()
