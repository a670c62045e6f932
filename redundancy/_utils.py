"""Small helpers shared across the library: cache location, device choice, hashing, atomic writes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)


def cache_dir(sub: str | None = None, root: str | os.PathLike | None = None) -> Path:
    """Return (and create) the cache folder, or one of its sub-folders.

    The root is, in order: ``root`` if given, ``$REDUNDANCY_CACHE``, ``~/.cache/redundancy``.
    The Makefile points ``$REDUNDANCY_CACHE`` at ``.cache/`` inside the checkout.
    """
    base = Path(root or os.environ.get("REDUNDANCY_CACHE") or Path.home() / ".cache" / "redundancy")
    path = base / sub if sub else base
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_device(device: str | None = None) -> str:
    """``None``/``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    if device not in (None, "auto"):
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def stable_hash(obj, length: int = 16) -> str:
    """SHA-256 of a JSON-serialisable object (keys sorted), truncated to ``length`` hex digits."""
    payload = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(payload).hexdigest()[:length]


def hash_strings(items: Iterable[str], length: int = 16) -> str:
    """SHA-256 over a sequence of strings, separated unambiguously."""
    h = hashlib.sha256()
    for item in items:
        b = item.encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:length]


def json_default(obj):
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays, paths."""
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_choice(value, choices, *, name: str, caller: str):
    """Raise a scikit-learn style ValueError when ``value`` is not one of ``choices``."""
    if value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The {name!r} parameter of {caller} must be one of {{{opts}}}. Got {value!r} instead."
        )
    return value


def progress_disabled(progress: bool) -> bool:
    """Whether to hide a progress bar: ``progress=False``, or ``$TQDM_DISABLE`` set to a true
    value (the book runner sets it so that executed chapters hold results, not bar updates)."""
    return not progress or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
