"""A GGUF file dequantised once into a Hugging Face folder in the cache.

``transformers`` reads a GGUF file by dequantising every tensor and rebuilding the tokenizer
from the file's metadata: for SmolLM2-135M that is about 20 s for the weights and 5 to 8 s
for the config or the tokenizer alone, paid again by every process and every split that
loads the model. :func:`converted_folder` pays it once: it writes the dequantised float32
weights (``model.safetensors``), the config and the fast tokenizer to
``<cache>/models/gguf/<name>-<key>/`` and every later load reads that folder (about a
second). The key holds the GGUF file's SHA-256, the versions of ``transformers`` and
``gguf`` that converted it and :data:`CONVERTER` (this module's conversion), so a changed
file or a new reader converts again; ``converted.json`` records every written file's
SHA-256 and a folder whose files no longer match it is converted again, never trusted.
The numbers are those of loading the GGUF file directly (``tests/test_gguf_cache.py``).
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .._utils import (
    announce,
    cache_dir,
    entry_lock,
    file_digest,
    intact_folder,
    save_model_folder,
    stable_hash,
)

logger = logging.getLogger(__name__)

__all__ = ["CONVERTER", "RECORD", "conversion_key", "converted_folder"]

CONVERTER = "1"
"""Version of the conversion below; bump it when what it writes changes."""
RECORD = "converted.json"


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def conversion_key(gguf_path: str | os.PathLike) -> str:
    """The cache key of a GGUF file's converted folder: its content and the converter's
    versions (``transformers``, ``gguf``, :data:`CONVERTER`)."""
    return stable_hash(
        {
            "gguf": file_digest(gguf_path),
            "transformers": _version("transformers"),
            "gguf_reader": _version("gguf"),
            "converter": CONVERTER,
        },
        length=16,
    )


def converted_folder(
    gguf_path: str | os.PathLike, *, root: str | os.PathLike | None = None
) -> Path:
    """The cached Hugging Face folder of a GGUF file (converted on first use).

    Parameters
    ----------
    gguf_path : path-like
        An existing ``.gguf`` file (the ``gguf`` reader installed).
    root : path-like, optional
        Folder of the converted models; default ``<cache>/models/gguf``.

    Returns
    -------
    Path
        A folder ``from_pretrained`` loads as a causal LM (``AutoModelForCausalLM``), as the
        bare stack of blocks (``AutoModel``), its config and its tokenizer.
    """
    gguf_path = Path(gguf_path).resolve()
    root = Path(root) if root is not None else cache_dir("models/gguf")
    root.mkdir(parents=True, exist_ok=True)
    key = conversion_key(gguf_path)
    target = root / f"{gguf_path.stem.replace(' ', '-')[:60]}-{key}"
    if _intact(target):
        return target
    with entry_lock(root / f".{key}.lock"):  # concurrent processes convert once
        if _intact(target, warn=True):
            return target
        announce(f"dequantising {gguf_path.name} once (about 30 s)")
        logger.info("converting %s into %s", gguf_path, target)
        _convert(gguf_path, target, key)
        announce("")  # the conversion is over: the book's bar stops showing it
    return target


def _intact(target: Path, *, warn: bool = False) -> bool:
    """Whether ``target`` is a complete conversion; with ``warn``, a damaged one is removed
    (the caller holds the lock)."""
    return intact_folder(target, RECORD, "converted GGUF model", "converting it again", repair=warn)


def _convert(gguf_path: Path, target: Path, key: str) -> None:
    """Dequantise into a temporary folder, then rename it: complete or absent."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf_path.parent), gguf_path.name
    loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    # the loaded model is marked as GGUF-quantised and refuses to be saved: copy its
    # (dequantised) weights into a plain model of the same config
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    info = {"gguf": gguf_path.name, "key": key, "dtype": "float32"}
    save_model_folder(model, tokenizer, target, RECORD, info)
    logger.info("converted %s -> %s", gguf_path, target)
