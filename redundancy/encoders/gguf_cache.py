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

import json
import logging
import os
import shutil
import tempfile
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .._utils import (
    announce,
    cache_dir,
    entry_lock,
    file_digest,
    folder_damage,
    sha256_file,
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
        _convert(gguf_path, root, target, key)
    return target


def _intact(target: Path, *, warn: bool = False) -> bool:
    if not (target / RECORD).is_file():
        return False
    problem = folder_damage(target, RECORD)
    if problem is None:
        return True
    if warn:
        warnings.warn(
            f"The converted GGUF model {target} is damaged ({problem}); converting it again.",
            stacklevel=3,
        )
        shutil.rmtree(target, ignore_errors=True)
    return False


def _convert(gguf_path: Path, root: Path, target: Path, key: str) -> None:
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
    with tempfile.TemporaryDirectory(dir=root, prefix=".convert-") as tmp:
        out = Path(tmp) / "model"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        files = {f.name: sha256_file(f) for f in sorted(out.iterdir()) if f.is_file()}
        record = {"gguf": gguf_path.name, "key": key, "dtype": "float32", "files": files}
        (out / RECORD).write_text(json.dumps(record, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    logger.info("converted %s -> %s", gguf_path, target)
