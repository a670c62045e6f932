"""Tests of redundancy.encoders.extract against direct forward passes of tiny random models."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import make_sentence_task, make_token_task
from transformers import AutoModel, AutoTokenizer

import redundancy.encoders.extract as ex
from redundancy.data.base import UNSEEN_LABEL, Split, Task, label_vocabulary
from redundancy.encoders.alignment import (
    align_words,
    choose_windows,
    pool_pieces,
    pool_sentence,
    tokenize_words,
)
from redundancy.encoders.extract import Activations, extract

ATOL = 1e-5
_REAL_FORWARD = ex._forward


def _load(folder):
    model = AutoModel.from_pretrained(folder).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def _task_from(sentences, name="hand"):
    labels = [tuple("X" for _ in s) for s in sentences]
    sp = Split("train", [tuple(s) for s in sentences], labels, [str(i) for i in range(len(labels))])
    return Task(name, "token", "classification", sp, sp, sp, label_names=label_vocabulary(["X"]))


@torch.inference_mode()
def _reference_words(model, tokenizer, words, aggregation, ids=None, wids=None):
    """One sentence (or one window) alone through the model; pieces reduced in plain Python."""
    if ids is None:
        enc = tokenizer(list(words), is_split_into_words=True, return_tensors="pt")
        ids, wids = enc["input_ids"], enc.word_ids(0)
    else:
        ids = torch.tensor([ids])
    hs = torch.stack(model(input_ids=ids, output_hidden_states=True).hidden_states, 1)[0]
    out = {}
    for w in sorted({w for w in wids if w is not None}):
        pos = [p for p, x in enumerate(wids) if x == w]
        vec = {"first": hs[:, pos[0]], "last": hs[:, pos[-1]], "mean": hs[:, pos].mean(1)}
        out[w] = vec[aggregation].numpy()
    return out


# ------------------------------------------------------------------ helpers alone
def test_align_words_hand_built():
    # [CLS] w0 w1 w1 w1 w3 [SEP]; word 2 has no piece
    first, last, count = align_words(np.array([-1, 0, 1, 1, 1, 3, -1]), 4)
    np.testing.assert_array_equal(first, [1, 2, -1, 5])
    np.testing.assert_array_equal(last, [1, 4, -1, 5])
    np.testing.assert_array_equal(count, [1, 3, 0, 1])


def test_choose_windows_prefers_complete_then_centred():
    w0 = np.array([-1, 0, 1, 2, 2, -1])  # word 2 complete but at the edge
    w1 = np.array([-1, 2, 2, 3, 4, -1])  # word 2 complete with 0 context on the left too
    w2 = np.array([-1, 3, 4, 5, 6, -1])
    chosen = choose_windows([w0, w1, w2], 7)
    # word 3: window 1 -> context min(2, 1) = 1; window 2 -> context 0: window 1
    # word 4: window 1 -> context 0; window 2 -> context min(1, 2) = 1: window 2
    np.testing.assert_array_equal(chosen, [0, 0, 0, 1, 2, 2, 2])
    # a word split across windows goes where most of its pieces are
    chosen = choose_windows([np.array([-1, 0, 1, 1, -1]), np.array([-1, 1, 1, 1, 2, -1])], 3)
    np.testing.assert_array_equal(chosen, [0, 1, 1])


def test_pool_pieces_formula():
    rng = np.random.default_rng(0)
    hs = [torch.from_numpy(rng.normal(size=(2, 5, 3)).astype(np.float32)) for _ in range(4)]
    b = torch.tensor([0, 0, 1, 1, 1])
    p = torch.tensor([1, 2, 0, 3, 4])
    g = torch.tensor([0, 0, 1, 2, 2])
    out = pool_pieces(hs, b, p, g, 3, "mean").numpy()
    H = np.stack([h.numpy() for h in hs], axis=1)  # (batch, layer, seq, hidden)
    np.testing.assert_allclose(out[0], H[0, :, 1:3].mean(1), atol=1e-6)
    np.testing.assert_allclose(out[1], H[1, :, 0], atol=1e-6)
    np.testing.assert_allclose(out[2], H[1, :, 3:5].mean(1), atol=1e-6)
    one = pool_pieces(hs, b[[0, 2, 4]], p[[0, 2, 4]], torch.tensor([2, 0, 1]), 3, "first").numpy()
    np.testing.assert_allclose(one[2], H[0, :, 1], atol=0)
    np.testing.assert_allclose(one[1], H[1, :, 4], atol=0)


def test_pool_sentence_left_and_right_padding():
    rng = np.random.default_rng(1)
    hs = [torch.from_numpy(rng.normal(size=(2, 4, 3)).astype(np.float32)) for _ in range(2)]
    H = np.stack([h.numpy() for h in hs], axis=1)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_allclose(pool_sentence(hs, right, "first")[0], H[0, :, 0])
    np.testing.assert_allclose(pool_sentence(hs, right, "last")[0], H[0, :, 2])
    np.testing.assert_allclose(pool_sentence(hs, left, "first")[0], H[0, :, 1])
    np.testing.assert_allclose(pool_sentence(hs, left, "last")[0], H[0, :, 3])
    np.testing.assert_allclose(pool_sentence(hs, right, "mean")[0], H[0, :, :3].mean(1), atol=1e-6)
    np.testing.assert_allclose(pool_sentence(hs, left, "mean")[1], H[1].mean(1), atol=1e-6)


def test_tokenize_words_replaces_pieceless_words_and_windows(tiny_bert):
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    sents = [("a", "\u200b", "", "cat"), tuple(["word"] * 40)]
    win = tokenize_words(tok, sents, max_length=16)
    assert win.n_replaced == 2
    first = win.word_ids[0]
    assert sorted(set(first[first >= 0].tolist())) == [0, 1, 2, 3]
    assert win.input_ids[0][2] == tok.unk_token_id
    assert (win.sentence == 1).sum() > 1 and all(len(x) <= 16 for x in win.input_ids)


# ------------------------------------------------------------------ token tasks
@pytest.mark.parametrize("aggregation", ["last", "first", "mean"])
def test_word_vectors_match_direct_forward(tiny_bert, tmp_path, aggregation):
    sents = [
        ["an", "unbelievably", "quick", "fox"],
        ["researchers", "analysed", "redundancy"],
        ["a", "cat", "\u200b", "sat"],
    ]
    task = _task_from(sents)
    acts = extract(
        tiny_bert, task, aggregation=aggregation, batch_size=2, cache_dir=tmp_path, progress=False
    )
    assert isinstance(acts, Activations)
    assert acts.acts.shape == (11, 3, 32) and acts.n_neurons == 96
    assert np.shares_memory(acts.X, acts.acts) and acts.X.shape == (11, 96)
    np.testing.assert_array_equal(acts.sentence_index, [0] * 4 + [1] * 3 + [2] * 4)
    np.testing.assert_array_equal(acts.labels, task.encode("train"))
    model, tok = _load(tiny_bert)
    assert len(tok.tokenize("unbelievably")) > 1  # the hand-built case really has pieces
    row = 0
    for words in sents:
        words = [w if w != "\u200b" else tok.unk_token for w in words]
        ref = _reference_words(model, tok, words, aggregation)
        for w in range(len(words)):
            np.testing.assert_allclose(acts.acts[row], ref[w], atol=ATOL)
            row += 1


def test_long_sentence_windows_keep_every_word(tiny_bert, tmp_path):
    rng = np.random.default_rng(3)
    from conftest import WORDS

    words = list(rng.choice(WORDS, size=30))
    task = _task_from([words, ["short", "one"]])
    acts = extract(tiny_bert, task, max_length=16, cache_dir=tmp_path, progress=False)
    assert acts.acts.shape[0] == 32 and acts.meta["n_windowed"] == 1
    # reference: the tokenizer's windows, each word from its best window chosen by hand
    model, tok = _load(tiny_bert)
    enc = tok(
        words,
        is_split_into_words=True,
        truncation=True,
        max_length=16,
        stride=7,
        return_overflowing_tokens=True,
    )
    n_win = len(enc["input_ids"])
    assert n_win > 2
    best = {}
    for k in range(n_win):
        wids = enc.word_ids(k)
        content = [p for p, w in enumerate(wids) if w is not None]
        for w in {x for x in wids if x is not None}:
            pos = [p for p, x in enumerate(wids) if x == w]
            score = (len(pos), min(pos[0] - content[0], content[-1] - pos[-1]))
            if w not in best or score > best[w][0]:
                best[w] = (score, k)
    assert sorted(best) == list(range(30))
    refs = [
        _reference_words(model, tok, None, "last", enc["input_ids"][k], enc.word_ids(k))
        for k in range(n_win)
    ]
    for w in range(30):
        np.testing.assert_allclose(acts.acts[w], refs[best[w][1]][w], atol=ATOL)
    # words of the short sentence are unaffected by the window limit
    ref_short = _reference_words(model, tok, ["short", "one"], "last")
    np.testing.assert_allclose(acts.acts[30], ref_short[0], atol=ATOL)


# ------------------------------------------------------------------ sentence tasks
def test_sentence_first_token_right_padding(tiny_bert, tmp_path):
    task = make_sentence_task(6)
    acts = extract(tiny_bert, task, batch_size=4, cache_dir=tmp_path, progress=False)
    assert acts.meta["pooling"] == "first" and acts.acts.shape == (6, 3, 32)
    model, tok = _load(tiny_bert)
    with torch.inference_mode():
        for i, (text,) in enumerate(task.train.sentences):
            hs = model(**tok(text, return_tensors="pt"), output_hidden_states=True).hidden_states
            np.testing.assert_allclose(acts.acts[i], torch.stack(hs, 1)[0, :, 0], atol=ATOL)


def test_sentence_last_token_left_padding_xlnet(tiny_xlnet, tmp_path):
    task = make_sentence_task(5)
    acts = extract(tiny_xlnet, task, batch_size=5, cache_dir=tmp_path, progress=False)
    assert acts.meta["pooling"] == "last"
    model, tok = _load(tiny_xlnet)
    assert tok.padding_side == "left"
    with torch.inference_mode():
        for i, (text,) in enumerate(task.train.sentences):
            hs = model(**tok(text, return_tensors="pt"), output_hidden_states=True).hidden_states
            np.testing.assert_allclose(acts.acts[i], torch.stack(hs, 1)[0, :, -1], atol=1e-4)


def test_sentence_pairs_and_mean_pooling(tiny_bert, tmp_path):
    task = make_sentence_task(4, pairs=True)
    acts = extract(tiny_bert, task, pooling="mean", cache_dir=tmp_path, progress=False)
    model, tok = _load(tiny_bert)
    with torch.inference_mode():
        for i, (a, b) in enumerate(task.train.sentences):
            enc = tok(a, b, return_tensors="pt")
            assert (enc["token_type_ids"] == 1).any()
            hs = model(**enc, output_hidden_states=True).hidden_states
            np.testing.assert_allclose(acts.acts[i], torch.stack(hs, 1)[0].mean(1), atol=ATOL)


def test_sentence_truncation_is_counted(tiny_bert, tmp_path):
    task = make_sentence_task(4)
    task.train.sentences[1] = (" ".join(["cat"] * 40),)
    acts = extract(tiny_bert, task, max_length=16, cache_dir=tmp_path, progress=False)
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    lengths = [len(tok(text)["input_ids"]) for (text,) in task.train.sentences]
    assert lengths[1] > 40
    assert acts.meta["n_truncated"] == sum(n > 16 for n in lengths)
    assert acts.meta["max_length"] == 16


# ------------------------------------------------------------------ cache
class _Interrupted(RuntimeError):
    pass


class _Counter:
    """Wraps extract._forward: counts calls and can fail after a number of them."""

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def __call__(self, model, inputs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise _Interrupted("simulated interruption")
        self.calls += 1
        return _REAL_FORWARD(model, inputs)


def test_cache_hit_runs_no_forward_pass(tiny_bert, tmp_path, monkeypatch):
    task = make_token_task(4)
    first = extract(tiny_bert, task, cache_dir=tmp_path, progress=False)
    counter = _Counter()
    monkeypatch.setattr(ex, "_forward", counter)
    second = extract(tiny_bert, task, cache_dir=tmp_path, progress=False)
    assert counter.calls == 0
    assert isinstance(second.acts, np.memmap)
    np.testing.assert_array_equal(first.acts, second.acts)
    # a different option is a different cache entry
    extract(tiny_bert, task, aggregation="mean", cache_dir=tmp_path, progress=False)
    assert counter.calls > 0


def test_resume_after_interruption(tiny_bert, tmp_path, monkeypatch):
    task = make_token_task(10)
    clean = extract(tiny_bert, task, batch_size=2, cache_dir=tmp_path / "clean", progress=False)
    monkeypatch.setattr(ex, "_forward", _Counter(fail_after=3))
    with pytest.raises(_Interrupted):
        extract(tiny_bert, task, batch_size=2, cache_dir=tmp_path / "run", progress=False)
    counter = _Counter()
    monkeypatch.setattr(ex, "_forward", counter)
    resumed = extract(tiny_bert, task, batch_size=2, cache_dir=tmp_path / "run", progress=False)
    assert counter.calls == 5 - 3 and resumed.meta["resumed_batches"] == 3
    np.testing.assert_array_equal(resumed.acts, clean.acts)


def _only_folder(root):
    (folder,) = [p.parent for p in root.rglob("manifest.json")]
    return folder


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "fields", "index"])
def test_damaged_cache_is_rebuilt(tiny_bert, tmp_path, monkeypatch, damage):
    task = make_token_task(4)
    clean = np.array(extract(tiny_bert, task, cache_dir=tmp_path, progress=False).acts)
    folder = _only_folder(tmp_path)
    acts_path = folder / "acts.npy"
    if damage == "truncate":
        acts_path.write_bytes(acts_path.read_bytes()[:-100])
    elif damage == "flip":
        raw = bytearray(acts_path.read_bytes())
        raw[-7] ^= 0xFF
        acts_path.write_bytes(bytes(raw))
    elif damage == "manifest":
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["key"] = "0" * 16
        (folder / "manifest.json").write_text(json.dumps(manifest))
    elif damage == "fields":  # valid JSON without the fields a manifest needs
        (folder / "manifest.json").write_text(json.dumps({"format": 2, "key": "x"}))
    else:
        np.save(folder / "sentence_index.npy", np.zeros(len(clean), dtype=np.int32))
    counter = _Counter()
    monkeypatch.setattr(ex, "_forward", counter)
    with pytest.warns(UserWarning, match="rebuilding"):
        again = extract(tiny_bert, task, cache_dir=tmp_path, progress=False)
    assert counter.calls > 0
    np.testing.assert_array_equal(again.acts, clean)


def test_changed_weights_change_the_key(tiny_bert, tmp_path_factory, tmp_path):
    import shutil

    folder = tmp_path_factory.mktemp("copy") / "m"
    shutil.copytree(tiny_bert, folder)
    task = make_token_task(3)
    a = extract(str(folder), task, cache_dir=tmp_path, progress=False)
    model = AutoModel.from_pretrained(folder)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.mul_(2.0)
    model.save_pretrained(folder)
    b = extract(str(folder), task, cache_dir=tmp_path, progress=False)
    assert a.meta["path"] != b.meta["path"]
    assert not np.allclose(a.acts[:, 0], b.acts[:, 0])


def test_float16_and_determinism(tiny_bert, tmp_path):
    task = make_token_task(5)
    a = extract(tiny_bert, task, cache_dir=tmp_path / "a", progress=False)
    b = extract(tiny_bert, task, cache_dir=tmp_path / "b", progress=False)
    np.testing.assert_array_equal(a.acts, b.acts)  # same inputs -> identical numbers
    h = extract(tiny_bert, task, dtype="float16", cache_dir=tmp_path / "a", progress=False)
    assert h.acts.dtype == np.float16 and h.meta["path"] != a.meta["path"]
    np.testing.assert_allclose(h.acts.astype(np.float32), a.acts, rtol=2e-3, atol=2e-3)


def test_minilm_few_sentences(tmp_path):
    task = make_token_task(3)
    acts = extract("minilm", task, cache_dir=tmp_path, progress=False)
    assert acts.acts.shape == (len(task.encode("train")), 7, 384)
    assert np.isfinite(acts.X).all() and acts.meta["n_windowed"] == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aggregation": "avg"}, "'aggregation' parameter of extract must be one of"),
        ({"pooling": "cls"}, "'pooling' parameter"),
        ({"dtype": "float64"}, "'dtype' parameter"),
        ({"split": "valid"}, "'split' parameter"),
        ({"batch_size": 0}, "'batch_size' parameter"),
    ],
)
def test_bad_arguments(tiny_bert, token_task, kwargs, match):
    with pytest.raises(ValueError, match=match):
        extract(tiny_bert, token_task, progress=False, **kwargs)


def test_tasks_over_the_same_sentences_share_the_cache(tiny_bert, tmp_path, monkeypatch):
    task = make_token_task(4)
    first = extract(tiny_bert, task, cache_dir=tmp_path, progress=False)
    relabelled = dataclasses.replace(
        task,
        name="other",
        train=dataclasses.replace(
            task.train, labels=[tuple("Y" for _ in s) for s in task.train.sentences]
        ),
        label_names=("Y", UNSEEN_LABEL),
    )
    counter = _Counter()
    monkeypatch.setattr(ex, "_forward", counter)
    second = extract(tiny_bert, relabelled, cache_dir=tmp_path, progress=False)
    assert counter.calls == 0
    np.testing.assert_array_equal(second.acts, first.acts)
    np.testing.assert_array_equal(second.labels, relabelled.encode("train"))
    assert not np.array_equal(second.labels, first.labels)


def test_a_moved_model_folder_hits_the_cache(tiny_bert, tmp_path, monkeypatch):
    """Identity is content, not location: a copy elsewhere (a new clone, a rebuilt .venv)
    finds the activations extracted from the original."""
    import shutil

    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    task = make_token_task(4)
    first = extract(tiny_bert, task, cache_dir=tmp_path / "acts", progress=False)
    moved = tmp_path / "new-venv" / "site-packages" / "model"
    shutil.copytree(tiny_bert, moved)
    counter = _Counter()
    monkeypatch.setattr(ex, "_forward", counter)
    again = extract(str(moved), task, cache_dir=tmp_path / "acts", progress=False)
    assert counter.calls == 0
    np.testing.assert_array_equal(again.acts, first.acts)


def test_the_manifest_records_identity_and_timings(tiny_bert, tmp_path):
    task = make_token_task(3)
    first = extract(tiny_bert, task, cache_dir=tmp_path, progress=False)
    again = extract(tiny_bert, task, cache_dir=tmp_path, progress=False)  # read from the cache
    for acts in (first, again):
        assert acts.meta["timings"]["total_s"] >= acts.meta["timings"]["forward_s"] > 0
        assert acts.meta["model_identity"]["digest"] and acts.meta["key_inputs"]["code"]
