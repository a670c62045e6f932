"""Activations in and out: NeuroX's files, safetensors, and activation sets.

This is the public face of :mod:`redundancy.encoders.activation_files` (readers and writers
of NeuroX's HDF5 and JSON files and of safetensors files; see its docstring for the layouts)
plus **activation sets**: a folder the book can use in place of a model, an
``activations.yaml`` naming per task and split a file and its format, plus the layer layout::

    aset = open_activation_set("runs/bert-neurox")    # folder with activations.yaml
    acts = aset.get(task, "train")                     # Activations, checked against the task

:func:`export_activation_set` writes such a folder from this project's activations. See
``docs/interop.md``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .._utils import atomic_write_text, check_choice, entry_lock, file_digest, stable_hash
from .._utils import cache_dir as _cache_dir
from ..data.base import Task
from .activation_files import (
    FORMATS,
    SPLITS,
    _activations,
    _expected_counts,
    infer_format,
    read_activations,
    read_neurox_hdf5,
    read_neurox_json,
    read_safetensors,
    write_activations,
    write_neurox_hdf5,
    write_neurox_json,
    write_safetensors,
    write_word_label,
)
from .extract import Activations

__all__ = [
    "FORMATS",
    "MANIFEST",
    "ActivationSet",
    "export_activation_set",
    "infer_format",
    "is_activation_set",
    "open_activation_set",
    "read_activations",
    "read_neurox_hdf5",
    "read_neurox_json",
    "read_safetensors",
    "write_activations",
    "write_neurox_hdf5",
    "write_neurox_json",
    "write_safetensors",
    "write_word_label",
]

logger = logging.getLogger(__name__)

MANIFEST = "activations.yaml"
"""Name of the file that makes a folder an activation set."""
SET_VERSION = 1
"""Version of the ``activations.yaml`` layout written by :func:`export_activation_set`."""
READER_VERSION = 1
"""Version of the conversion from NeuroX files; part of the key of every converted array."""
"""Files up to this size are hashed in full; larger ones on fixed samples."""
_SET_KEYS = ("version", "name", "model", "description", "n_layers", "n_hidden")
_SET_KEYS += ("embedding_layer", "activations")


# --------------------------------------------------------------------------------------------
# activation sets: a folder the book can use in place of a model
# --------------------------------------------------------------------------------------------
def _file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (memoised on disk by path, size and modification time)."""
    return file_digest(path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "activations"


@dataclass
class ActivationSet:
    """Activations of one encoder for some tasks and splits, read from files in a folder.

    Made by :func:`open_activation_set`; use it where a model name is expected.

    Attributes
    ----------
    folder : pathlib.Path
    name : str
        Display name (the ``model`` of every :class:`Activations` it returns).
    n_layers, n_hidden : int
        Layer layout every file must have.
    files : dict
        ``{task name: {split: (path, format)}}``.
    model : str
        Where the activations came from (free text, may be empty).
    description : str
    embedding_layer : bool
        Whether layer 0 is the embedding output (False when NeuroX ran with
        ``--ignore_embeddings``).
    cache_dir : pathlib.Path, optional
        Where NeuroX files are converted to memory-mapped arrays; default
        ``cache_dir("imported")``.
    """

    folder: Path
    name: str
    n_layers: int
    n_hidden: int
    files: dict
    model: str = ""
    description: str = ""
    embedding_layer: bool = True
    cache_dir: Path | None = field(default=None, repr=False)

    @property
    def tasks(self) -> tuple[str, ...]:
        """Names of the tasks the set has activations for."""
        return tuple(self.files)

    def splits(self, task_name: str) -> tuple[str, ...]:
        """Splits the set has for ``task_name`` (empty when none)."""
        return tuple(self.files.get(task_name, {}))

    @cached_property
    def identity(self) -> str:
        """Hash of the layer layout and the content of every file (a key for cached results)."""
        content = {
            t: {s: [fmt, _file_digest(p)] for s, (p, fmt) in splits.items()}
            for t, splits in self.files.items()
        }
        layout = [self.n_layers, self.n_hidden, self.embedding_layer]
        return stable_hash({"layout": layout, "files": content, "version": SET_VERSION})

    def get(self, task: Task, split: str) -> Activations:
        """Activations of one split of a task, checked against the task and the layer layout.

        NeuroX files are converted once into a memory-mapped ``acts.npy`` under ``cache_dir``
        (keyed by the file's content and the split's text, verified on every load);
        safetensors files are memory-mapped in place.
        """
        _expected_counts(task, split, "ActivationSet.get")
        entry = self.files.get(task.name, {}).get(split)
        if entry is None:
            held = ", ".join(f"{t}/{s}" for t in self.files for s in self.files[t]) or "nothing"
            raise ValueError(
                f"The activation set {self.name!r} ({self.folder / MANIFEST}) has no "
                f"activations for task {task.name!r}, split {split!r}. It holds: {held}."
            )
        path, fmt = entry
        if fmt == "safetensors":
            acts = read_safetensors(path, task, split, model=self.name)
        else:
            acts = self._converted(path, fmt, task, split)
        if (acts.n_layers, acts.n_hidden) != (self.n_layers, self.n_hidden):
            raise ValueError(
                f"{path}: expected {self.n_layers} layers of {self.n_hidden} values, as "
                f"{self.folder / MANIFEST} declares. Got {acts.n_layers} x {acts.n_hidden} instead."
            )
        acts.model = self.name
        acts.meta.update(activation_set=str(self.folder), embedding_layer=self.embedding_layer)
        return acts

    def _converted(self, path: Path, fmt: str, task: Task, split: str) -> Activations:
        key = stable_hash(
            {
                "file": _file_digest(path),
                "format": fmt,
                "text": task.split(split).text_fingerprint(),
                "level": task.level,
                "reader": READER_VERSION,
            }
        )
        root = Path(self.cache_dir) if self.cache_dir is not None else _cache_dir("imported")
        folder = root / _slug(self.name) / f"{_slug(task.name)}-{split}-{key}"
        # one process converts a file; the others wait, then read what it wrote
        with entry_lock(folder.parent / f".{folder.name}.lock"):
            acts = self._load_converted(folder, key, task, split, path)
            if acts is not None:
                return acts
            acts = read_activations(path, task, split, format=fmt, model=self.name, out_dir=folder)
            info = {"key": key, "digest": _file_digest(folder / "acts.npy"), "meta": acts.meta}
            atomic_write_text(folder / "manifest.json", json.dumps(info, default=str))
        logger.info("converted %s into %s", path, folder)
        return acts

    def _load_converted(self, folder: Path, key: str, task: Task, split: str, source: Path):
        """The converted array of ``folder`` when it matches its recorded SHA-256, else None
        (with a warning when there was one). The digest is memoised by size and
        modification time; ``REDUNDANCY_VERIFY=1`` hashes the bytes on every load."""
        record = folder / "manifest.json"
        if not record.is_file():
            return None
        try:
            info = json.loads(record.read_text())
            arr = np.load(folder / "acts.npy", mmap_mode="r")
            if info["key"] == key and info["digest"] == _file_digest(folder / "acts.npy"):
                counts = _expected_counts(task, split, "ActivationSet.get")
                return _activations(arr, task, split, counts, self.name, info["meta"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.info("cannot use %s: %s", folder, e)
        warnings.warn(
            f"The converted activations in {folder} are damaged or stale; converting "
            f"{source} again.",
            stacklevel=4,
        )
        return None


def _bad(manifest: Path, key: str, wanted: str, value) -> ValueError:
    return ValueError(f"{manifest}: {key!r} must be {wanted}. Got {value!r} instead.")


def _positive_int(manifest: Path, raw: dict, key: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(manifest, key, "a positive int", value)
    return value


def _entry(manifest: Path, task: str, split: str, value) -> tuple[Path, str]:
    where = f"activations.{task}.{split}"
    if isinstance(value, str):
        value = {"file": value}
    if not isinstance(value, dict) or not isinstance(value.get("file"), str):
        raise _bad(manifest, where, "a file name or a mapping {file: ..., format: ...}", value)
    unknown = sorted(set(value) - {"file", "format"})
    if unknown:
        raise _bad(manifest, where, "a mapping with the keys 'file' and 'format'", value)
    path = Path(value["file"])
    path = path if path.is_absolute() else manifest.parent / path
    fmt = value.get("format")
    if fmt is None:
        try:
            fmt = infer_format(path)
        except ValueError as e:
            raise ValueError(f"{manifest}: {where}: {e}") from None
    if fmt not in FORMATS:
        raise _bad(manifest, f"{where}.format", f"one of {{{', '.join(map(repr, FORMATS))}}}", fmt)
    if not path.is_file():
        raise FileNotFoundError(f"{manifest}: {where} names {path}, which does not exist.")
    return path, fmt


def _read_manifest(manifest: Path) -> dict:
    import yaml

    try:
        raw = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{manifest} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{manifest}: expected a mapping with the keys {', '.join(_SET_KEYS)}.")
    unknown = sorted(set(raw) - set(_SET_KEYS))
    if unknown:
        raise ValueError(
            f"{manifest}: unknown key(s) {', '.join(map(repr, unknown))}; expected some of "
            f"{', '.join(_SET_KEYS)}."
        )
    version = raw.get("version", SET_VERSION)
    if version != SET_VERSION:
        raise _bad(manifest, "version", f"{SET_VERSION} (the layout this library reads)", version)
    if not isinstance(raw.get("embedding_layer", True), bool):
        raise _bad(manifest, "embedding_layer", "true or false", raw["embedding_layer"])
    for key in ("name", "model", "description"):
        if not isinstance(raw.get(key, ""), str):
            raise _bad(manifest, key, "a string", raw[key])
    return raw


def open_activation_set(folder: str | os.PathLike, *, cache_dir=None) -> ActivationSet:
    """Open a folder of activations described by its ``activations.yaml``.

    The file looks like this (``format`` may be left out when the extension tells it)::

        name: bert-base-cased (NeuroX)      # display name; default the folder's name
        model: bert-base-cased              # optional: where the activations come from
        n_layers: 13                        # layers in every file (embeddings included)
        n_hidden: 768
        embedding_layer: true               # false if NeuroX ran with --ignore_embeddings
        activations:
          pos:
            train: {file: pos/train.hdf5, format: neurox-hdf5}
            dev: pos/dev.hdf5
            test: pos/test.json             # neurox-json
          brown-genre:
            train: brown-genre/train.safetensors

    Every named file must exist; relative paths are relative to the folder.

    Parameters
    ----------
    folder : path-like
        The folder, or its ``activations.yaml``.
    cache_dir : path-like, optional
        Where NeuroX files are converted to memory-mapped arrays.

    Returns
    -------
    ActivationSet
    """
    folder = Path(folder)
    manifest = folder if folder.name == MANIFEST and folder.is_file() else folder / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest}: no such file; an activation set is a folder with an {MANIFEST} "
            "naming its files (see docs/interop.md)."
        )
    raw = _read_manifest(manifest)
    acts = raw.get("activations")
    if not isinstance(acts, dict) or not acts:
        raise _bad(manifest, "activations", "a mapping {task: {split: file}}", acts)
    files = {}
    for task, splits in acts.items():
        if not isinstance(splits, dict) or not splits or set(splits) - set(SPLITS):
            raise _bad(
                manifest, f"activations.{task}", "a mapping with keys among " + str(SPLITS), splits
            )
        files[str(task)] = {s: _entry(manifest, task, s, v) for s, v in splits.items()}
    return ActivationSet(
        folder=manifest.parent,
        name=raw.get("name") or manifest.parent.resolve().name,
        n_layers=_positive_int(manifest, raw, "n_layers"),
        n_hidden=_positive_int(manifest, raw, "n_hidden"),
        files=files,
        model=raw.get("model", ""),
        description=raw.get("description", ""),
        embedding_layer=raw.get("embedding_layer", True),
        cache_dir=None if cache_dir is None else Path(cache_dir),
    )


def is_activation_set(path) -> bool:
    """Whether ``path`` is a folder with an ``activations.yaml`` (or that file itself)."""
    try:
        p = Path(path)
        return (p.is_dir() and (p / MANIFEST).is_file()) or (p.name == MANIFEST and p.is_file())
    except (TypeError, OSError):
        return False


_EXTENSIONS = {"neurox-hdf5": ".hdf5", "neurox-json": ".json", "safetensors": ".safetensors"}


def export_activation_set(
    folder: str | os.PathLike,
    activations: Mapping[tuple[str, str], Activations],
    *,
    format: str = "safetensors",
    tasks: Sequence[Task] | None = None,
    name: str | None = None,
    model: str = "",
    embedding_layer: bool = True,
) -> ActivationSet:
    """Write activations as an activation set: one file per task and split, and the manifest.

    Parameters
    ----------
    folder : path-like
        Created if needed; files go to ``<task>/<split>.<ext>`` and ``activations.yaml``.
    activations : mapping
        ``{(task name, split): Activations}``, all with the same layer layout.
    format : {"safetensors", "neurox-hdf5", "neurox-json"}, default="safetensors"
    tasks : sequence of Task, optional
        The tasks named in ``activations``. With them, NeuroX files get the real words and
        parallel ``<task>/<split>.word``/``.label`` files are written (the corpus NeuroX
        needs), and safetensors files the text fingerprint of their split.
    name : str, optional
        Display name; default the activations' ``model`` when they share one.
    model : str, optional
        Where the activations come from (free text).
    embedding_layer : bool, default=True
        Whether layer 0 is the embedding output.

    Returns
    -------
    ActivationSet
        The folder, opened.
    """
    import yaml

    check_choice(format, FORMATS, name="format", caller="export_activation_set")
    if not activations:
        raise ValueError("The 'activations' parameter of export_activation_set is empty.")
    layouts = {(a.n_layers, a.n_hidden) for a in activations.values()}
    if len(layouts) != 1:
        raise ValueError(
            "The 'activations' parameter of export_activation_set must share one layer layout "
            f"(n_layers, n_hidden). Got {sorted(layouts)} instead."
        )
    by_name = {t.name: t for t in (tasks or ())}
    folder = Path(folder)
    entries: dict = {}
    for (task_name, split), acts in activations.items():
        check_choice(split, SPLITS, name="split", caller="export_activation_set")
        if (task_name, split) != (acts.task, acts.split):
            logger.info("exporting %r as %s/%s", acts, task_name, split)
        task = by_name.get(task_name)
        stem = Path(_slug(task_name)) / split
        rel = stem.with_suffix(_EXTENSIONS[format]).as_posix()
        write_activations(acts, folder / rel, format=format, task=task)
        if task is not None and format != "safetensors":
            write_word_label(task, split, folder / stem)
        entries.setdefault(str(task_name), {})[split] = {"file": rel, "format": format}
    models = {a.model for a in activations.values()}
    n_layers, n_hidden = layouts.pop()
    doc = {
        "version": SET_VERSION,
        "name": name or (models.pop() if len(models) == 1 else folder.resolve().name),
        "model": model,
        "n_layers": int(n_layers),
        "n_hidden": int(n_hidden),
        "embedding_layer": bool(embedding_layer),
        "activations": entries,
    }
    atomic_write_text(folder / MANIFEST, yaml.safe_dump(doc, sort_keys=False))
    return open_activation_set(folder)
