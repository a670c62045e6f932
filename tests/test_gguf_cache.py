"""A GGUF file is dequantised once into a cached folder that loads to the same numbers."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gguf") is None, reason="gguf reader not installed (.[decoder])"
)


def write_tiny_gguf(path, seed: int = 0, n_layers: int = 2, hidden: int = 16, ff: int = 32):
    """A random 2-block Llama with a byte-level BPE vocabulary, written as a float32 GGUF."""
    import gguf

    rng = np.random.default_rng(seed)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ", "."]
    tokens = ["<s>", "</s>", *letters, "Ġt", "he", "Ġthe"]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ff)
    w.add_block_count(n_layers)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL] * 2 + [gguf.TokenType.NORMAL] * (len(tokens) - 2))
    w.add_token_merges(["Ġ t", "h e", "Ġt he"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    w.add_tensor("token_embd.weight", weight(len(tokens), hidden))
    square = ("attn_q", "attn_k", "attn_v", "attn_output")
    for i in range(n_layers):
        for name in square:
            w.add_tensor(f"blk.{i}.{name}.weight", weight(hidden, hidden))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", weight(ff, hidden))
        w.add_tensor(f"blk.{i}.ffn_up.weight", weight(ff, hidden))
        w.add_tensor(f"blk.{i}.ffn_down.weight", weight(hidden, ff))
        w.add_tensor(f"blk.{i}.attn_norm.weight", 1 + weight(hidden))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", 1 + weight(hidden))
    w.add_tensor("output_norm.weight", 1 + weight(hidden))
    w.add_tensor("output.weight", weight(len(tokens), hidden))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def gguf_file(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    return write_tiny_gguf(folder / "tiny.gguf")


def test_converted_folder_loads_to_the_gguf_numbers(gguf_file, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from redundancy.encoders.decoders import load_config, load_decoder
    from redundancy.encoders.gguf_cache import RECORD, converted_folder

    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    folder = converted_folder(gguf_file)
    assert folder.parent == tmp_path / "cache" / "models" / "gguf"
    assert json.loads((folder / RECORD).read_text())["files"]["model.safetensors"]
    where, name = str(gguf_file.parent), gguf_file.name
    direct = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    direct_tok = AutoTokenizer.from_pretrained(where, gguf_file=name)
    # the library's loaders read the cached folder
    model, tok = load_decoder(str(gguf_file), lm_head=True)
    assert load_config(str(gguf_file)).num_hidden_layers == 2
    text = "the cat sat. the end"
    assert tok(text)["input_ids"] == direct_tok(text)["input_ids"]
    assert (
        tok(text, return_offsets_mapping=True)["offset_mapping"]
        == direct_tok(text, return_offsets_mapping=True)["offset_mapping"]
    )
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        a = direct(ids, output_hidden_states=True)
        b = model(ids, output_hidden_states=True)
    torch.testing.assert_close(b.logits, a.logits, rtol=0, atol=0)
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(y, x, rtol=0, atol=0)


def test_conversion_is_reused_and_follows_the_file(gguf_file, tmp_path):
    from redundancy.encoders.gguf_cache import converted_folder

    root = tmp_path / "converted"
    first = converted_folder(gguf_file, root=root)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert converted_folder(gguf_file, root=root) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # not converted again
    # another file's content: another folder, whatever its name
    write_tiny_gguf(gguf_file, seed=1)
    second = converted_folder(gguf_file, root=root)
    assert second != first and second.name.startswith("tiny-")


def test_damaged_conversion_is_rebuilt(gguf_file, tmp_path):
    from safetensors.numpy import load_file

    from redundancy.encoders.gguf_cache import converted_folder

    root = tmp_path / "converted"
    folder = converted_folder(gguf_file, root=root)
    weights = folder / "model.safetensors"
    good = load_file(weights)
    data = bytearray(weights.read_bytes())
    data[-8:] = b"\x00" * 8
    weights.write_bytes(bytes(data))  # same size, new mtime: the digest memo is not trusted
    with pytest.warns(UserWarning, match="damaged"):
        again = converted_folder(gguf_file, root=root)
    assert again == folder
    rebuilt = load_file(weights)
    for key, value in good.items():
        np.testing.assert_array_equal(rebuilt[key], value)
