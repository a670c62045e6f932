"""The on-disk activation cache: one folder per (model, text, options, code), verified on load.

A folder holds ``acts.npy`` (written in place, batch by batch, through a memory map),
``sentence_index.npy`` and ``manifest.json``, the last written, atomically. While an
extraction runs, ``state.json`` (what is being built) and ``progress.txt`` (finished batch
numbers, fsynced) make an interrupted run resumable. :class:`ActivationStore` wraps the
life cycle: :meth:`ActivationStore.load` trusts a folder only when its manifest parses, has
every field, matches the key, shape and dtype asked for, and the arrays match their
checksums; anything else is reported (with the folder named) and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._utils import atomic_write_text

logger = logging.getLogger(__name__)

CACHE_FORMAT = 2
"""Version of the on-disk layout and of the windowing rule; part of every cache key."""

FULL_CHECKSUM_BYTES = 1 << 30
"""Arrays up to this size are hashed in full on load; larger ones on a fixed sample of rows."""
N_SAMPLE_ROWS = 257
ARRAYS = ("acts", "sentence_index")
_MANIFEST_FIELDS = {
    "format": int,
    "key": str,
    "shape": list,
    "dtype": str,
    "checksums": dict,
    "meta": dict,
}


@dataclass
class Activations:
    """Activations of one split of a task, as :func:`redundancy.encoders.extract.extract`
    returns them.

    Attributes
    ----------
    acts : numpy.ndarray
        ``(n_instances, n_layers, n_hidden)`` float32 or float16, memory-mapped from the cache.
        Instances are words (token tasks, sentences in order) or sentences.
    labels : numpy.ndarray
        ``(n_instances,)``, equal to ``task.encode(split)``.
    label_names : tuple of str
        The task's label vocabulary (``()`` for regression).
    sentence_index : numpy.ndarray
        ``(n_instances,)`` int32, the sentence each instance comes from.
    model, task, split : str
        What was extracted (``model`` as the caller named it).
    meta : dict
        Options (aggregation or pooling, max_length, dtype), ``n_windowed`` (token tasks:
        sentences that needed windows), ``n_truncated`` (sentence tasks), ``path`` (cache
        folder), ``model_identity`` and ``timings``.
    """

    acts: np.ndarray
    labels: np.ndarray
    label_names: tuple
    sentence_index: np.ndarray
    model: str
    task: str
    split: str
    meta: dict = field(default_factory=dict)

    @property
    def n_instances(self) -> int:
        return self.acts.shape[0]

    @property
    def n_layers(self) -> int:
        return self.acts.shape[1]

    @property
    def n_hidden(self) -> int:
        return self.acts.shape[2]

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.n_hidden

    @property
    def X(self) -> np.ndarray:
        """Flat ``(n_instances, n_neurons)`` view (no copy); neuron ``i`` is in layer ``i // n_hidden``."""
        return self.acts.reshape(self.acts.shape[0], -1)

    def __repr__(self) -> str:
        return (
            f"Activations(model={self.model!r}, task={self.task!r}, split={self.split!r}, "
            f"acts={tuple(self.acts.shape)} {self.acts.dtype})"
        )


class CacheError(Exception):
    """A cache folder that cannot be trusted (damaged, stale or incomplete)."""


def slug(text: str) -> str:
    """A file-name friendly version of ``text`` (for readable cache folder names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-")[:60] or "x"


def _sample_rows(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, N_SAMPLE_ROWS)).round().astype(np.int64))


def checksum(arr: np.ndarray) -> dict:
    """SHA-256 of an array's bytes in row order: in full when small, else of sampled rows."""
    h = hashlib.sha256()
    full = arr.nbytes <= FULL_CHECKSUM_BYTES or arr.shape[0] == 0
    rows = np.arange(arr.shape[0]) if full else _sample_rows(arr.shape[0])
    step = max(1, (64 << 20) // max(1, arr[:1].nbytes))
    for i in range(0, len(rows), step):
        sel = rows[i : i + step]
        chunk = arr[sel[0] : sel[-1] + 1] if full else arr[sel]
        h.update(np.ascontiguousarray(chunk).tobytes())
    return {"sha256": h.hexdigest(), "rows": "all" if full else f"sample{len(rows)}"}


def read_manifest(path: Path) -> dict:
    """Parse a manifest and check that every field is there with the right type."""
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CacheError(f"unreadable manifest ({e})") from e
    if not isinstance(manifest, dict):
        raise CacheError("the manifest is not a JSON object")
    for name, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(name), kind):
            raise CacheError(f"the manifest lacks a valid {name!r} field")
    for name in ARRAYS:
        if not isinstance(manifest["checksums"].get(name), dict):
            raise CacheError(f"the manifest lacks the checksum of {name}.npy")
    return manifest


class ActivationStore:
    """One cache folder of activations.

    Parameters
    ----------
    folder : Path
        The folder (created).
    key : str
        Hash of everything the activations depend on.
    shape : tuple
        ``(n_instances, n_layers, n_hidden)``.
    dtype : str
        ``"float32"`` or ``"float16"``.
    """

    def __init__(self, folder: Path, key: str, shape: tuple, dtype: str):
        self.folder, self.key, self.shape, self.dtype = Path(folder), key, tuple(shape), dtype
        self.folder.mkdir(parents=True, exist_ok=True)
        self.acts: np.ndarray | None = None
        self.done: set[int] = set()

    # ---- finished caches --------------------------------------------------------------------
    def load(self) -> tuple[dict, dict] | None:
        """``(manifest, arrays)`` of a finished, verified cache; None when there is none.

        Raises :class:`CacheError` when the folder holds a cache that cannot be trusted.
        """
        path = self.folder / "manifest.json"
        if not path.is_file():
            return None
        manifest = read_manifest(path)
        if manifest["key"] != self.key or manifest["format"] != CACHE_FORMAT:
            raise CacheError("its key does not match the inputs")
        if tuple(manifest["shape"]) != self.shape or manifest["dtype"] != self.dtype:
            raise CacheError("its shape or dtype does not match the inputs")
        arrays = {}
        for name in ARRAYS:
            try:
                arr = np.load(self.folder / f"{name}.npy", mmap_mode="r")
            except (OSError, ValueError, EOFError) as e:
                raise CacheError(f"{name}.npy cannot be read ({e})") from e
            if checksum(arr) != manifest["checksums"][name]:
                raise CacheError(f"{name}.npy does not match its checksum")
            arrays[name] = arr
        if arrays["acts"].shape != self.shape or str(arrays["acts"].dtype) != self.dtype:
            raise CacheError("acts.npy has the wrong shape or dtype")
        return manifest, arrays

    def clear(self) -> None:
        """Delete everything in the folder but its lock."""
        for f in self.folder.iterdir():
            if f.name == ".lock":
                continue
            shutil.rmtree(f) if f.is_dir() else f.unlink()

    # ---- building ---------------------------------------------------------------------------
    def open(self, state: dict) -> set[int]:
        """Open ``acts.npy`` for writing; resume when the folder holds an unfinished run with
        the same ``state`` (key and batch plan). Returns the batch numbers already done."""
        state_path, acts_path = self.folder / "state.json", self.folder / "acts.npy"
        state = {"key": self.key, "shape": list(self.shape), **state}
        if state_path.is_file() and acts_path.is_file():
            try:
                old = json.loads(state_path.read_text())
                acts = np.lib.format.open_memmap(acts_path, mode="r+")
                if old == state and acts.shape == self.shape and str(acts.dtype) == self.dtype:
                    self.acts, self.done = acts, self._read_progress()
                    logger.info(
                        "resuming extraction in %s: %d batches done", self.folder, len(self.done)
                    )
                    return set(self.done)
            except (OSError, ValueError, json.JSONDecodeError):
                pass
        self.clear()
        atomic_write_text(state_path, json.dumps(state))
        self.acts = np.lib.format.open_memmap(
            acts_path, mode="w+", dtype=self.dtype, shape=self.shape
        )
        self.done = set()
        return set()

    def _read_progress(self) -> set[int]:
        path = self.folder / "progress.txt"
        if not path.is_file():
            return set()
        return {int(x) for x in path.read_text().split() if x.isdigit()}

    @contextlib.contextmanager
    def writer(self):
        """Yields ``write(batch_number, rows, values)``: rows land at their final place, then
        the batch number is recorded (flushed and fsynced), so a crash loses at most the
        batch in flight."""
        with open(self.folder / "progress.txt", "a") as log:

            def write(batch: int, rows: np.ndarray, values: np.ndarray) -> None:
                self.acts[rows] = values.astype(self.dtype, copy=False)
                self.acts.flush()
                log.write(f"{batch}\n")
                log.flush()
                os.fsync(log.fileno())
                self.done.add(batch)

            yield write

    def finish(self, sentence_index: np.ndarray, manifest: dict) -> tuple[dict, dict]:
        """Write the small arrays, checksums and the manifest (last); return what
        :meth:`load` would."""
        np.save(self.folder / "sentence_index.npy", sentence_index)
        self.acts.flush()
        self.acts = None
        arrays = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        manifest = {
            "format": CACHE_FORMAT,
            "key": self.key,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "checksums": {name: checksum(arr) for name, arr in arrays.items()},
            **manifest,
        }
        atomic_write_text(
            self.folder / "manifest.json", json.dumps(manifest, indent=1, default=str)
        )
        (self.folder / "state.json").unlink(missing_ok=True)
        (self.folder / "progress.txt").unlink(missing_ok=True)
        return manifest, arrays
