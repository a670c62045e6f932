"""A tiny random Llama-style causal LM with a byte-level BPE tokenizer, built from a config.

The tokenizer is trained here on a few sentences (``tokenizers`` ByteLevel BPE, GPT-2 style:
a word's first piece carries its leading space as ``Ġ``) with a small vocabulary, so most
words split into several byte-level pieces. Nothing is downloaded.
"""

from __future__ import annotations

from conftest import WORDS

BOS, EOS = "<s>", "</s>"
CORPUS = [
    " ".join(WORDS),
    "the quick brown fox jumped over the lazy dogs",
    "researchers analysed redundancy in pretrained transformers",
    "a cat sat on the mat",
]


def byte_level_tokenizer(vocab_size: int = 300):
    """A ``PreTrainedTokenizerFast`` over a ByteLevel BPE trained on :data:`CORPUS`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS
    )


def tiny_llama_config(vocab_size: int, n_layers: int = 4, hidden: int = 32):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        tie_word_embeddings=False,
    )


def tiny_llama(n_layers: int = 4, seed: int = 0):
    """``(model, tokenizer)``: a random ``LlamaForCausalLM`` (eval mode, float32)."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = byte_level_tokenizer()
    config = tiny_llama_config(len(tokenizer), n_layers)
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    return model, tokenizer


def save_tiny_llama(folder, n_layers: int = 4) -> str:
    model, tokenizer = tiny_llama(n_layers)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
