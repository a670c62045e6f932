"""Activation files in the formats the field uses: NeuroX's HDF5 and JSON, and safetensors.

NeuroX (Dalvi et al. 2019, https://github.com/fdalvi/NeuroX) keeps the activations of a
corpus next to parallel ``.word``/``.label`` files (one sentence per line, words separated
by spaces). Its extractor (``neurox.data.extraction.transformers_extractor``, version 1.0.9)
writes, with its default options (every layer, one file), one entry per line of the corpus:

- **HDF5** (``.hdf5``): a dataset named ``"0"``, ``"1"``, ... per sentence, float32 of shape
  ``(n_layers, n_words, n_hidden)``, plus a dataset ``sentence_to_index`` whose single string
  is a JSON object mapping each sentence's text to its dataset name, in corpus order.
- **JSON** (``.json``, really JSON lines): one object per sentence,
  ``{"linex_index": i, "features": [{"token": w, "layers": [{"index": l, "values": [...]}]}]}``,
  values rounded to 8 decimals.

Layer 0 is the embedding output unless NeuroX ran with ``--ignore_embeddings``. For a sentence
task NeuroX expects one vector per sentence. :func:`read_activations` turns such a file and a
task's split into this project's :class:`~redundancy.encoders.extract.Activations`, checking
every sentence's vector count against the task; :func:`write_activations` goes the other way.
Import these from :mod:`redundancy.encoders.interop`, which adds activation sets.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .._utils import atomic_write_text, check_choice, share
from ..data.base import Task
from .extract import Activations

logger = logging.getLogger(__name__)

FORMATS = ("neurox-hdf5", "neurox-json", "safetensors")
"""File formats an activation file may have."""
SPLITS = ("train", "dev", "test")
SAFETENSORS_KIND = "redundancy-activations"
JSON_DECIMALS = 8
"""NeuroX rounds every JSON value to this many decimals."""
LARGE_BYTES = 4 << 30
"""Reading more than this into memory (no ``out_dir``) gives a warning."""
_SUFFIXES = {".hdf5": "neurox-hdf5", ".h5": "neurox-hdf5", ".json": "neurox-json"}
_SUFFIXES.update({".jsonl": "neurox-json", ".safetensors": "safetensors"})
_ST_DTYPES = {"F16": "<f2", "F32": "<f4", "I32": "<i4", "I64": "<i8"}
_ST_ALLOWED = {"acts": ("F16", "F32"), "sentence_index": ("I32", "I64")}


# --------------------------------------------------------------------------------------------
# the task side: how many vectors each sentence must have
# --------------------------------------------------------------------------------------------
def _expected_counts(task: Task, split: str, caller: str) -> np.ndarray:
    """Vectors per sentence: its words (token tasks) or one (sentence tasks, as in NeuroX)."""
    if not isinstance(task, Task):
        raise TypeError(
            f"The 'task' parameter of {caller} must be a redundancy Task. "
            f"Got {type(task).__name__} instead."
        )
    check_choice(split, SPLITS, name="split", caller=caller)
    sp = task.split(split)
    if len(sp) == 0:
        raise ValueError(f"Split {split!r} of task {task.name!r} is empty; nothing to read.")
    if task.level == "token":
        return np.fromiter((len(s) for s in sp.sentences), dtype=np.int64, count=len(sp))
    return np.ones(len(sp), dtype=np.int64)


def _count_error(path, i: int, found: int, task: Task, split: str, expected: int) -> ValueError:
    what = "words" if task.level == "token" else "vector (a sentence task)"
    text = " ".join(task.split(split).sentences[i])
    text = text if len(text) <= 60 else text[:57] + "..."
    return ValueError(
        f"{path}: sentence {i} (line {i + 1} of the corpus) holds {found} vectors, but sentence "
        f"{i} of the {split!r} split of task {task.name!r} has {expected} {what} ({text!r}). "
        "NeuroX writes one vector per word with its default detokenisation: this file holds "
        "sub-word tokens, a sentence cut at the model's length limit, or other sentences."
    )


def _missing_error(path, i: int, where: str, task: Task, split: str, n: int) -> ValueError:
    return ValueError(
        f"{path}: sentence {i} is missing ({where}). The {split!r} split of task {task.name!r} "
        f"has {n} sentences, so the file must hold sentences 0 to {n - 1} in corpus order."
    )


def _check_counts(path, found: np.ndarray, expected: np.ndarray, task: Task, split: str) -> None:
    """Compare the vectors per sentence of a file with the task's; extra sentences are allowed."""
    n = len(expected)
    if len(found) < n:
        raise _missing_error(path, len(found), "the file ends before it", task, split, n)
    bad = np.flatnonzero(found[:n] != expected)
    if bad.size:
        i = int(bad[0])
        raise _count_error(path, i, int(found[i]), task, split, int(expected[i]))
    if len(found) > n:
        logger.info(
            "%s holds %d sentences; the first %d are the %s split of %s",
            path,
            len(found),
            n,
            split,
            task.name,
        )


def _activations(arr, task: Task, split: str, counts: np.ndarray, model: str, meta: dict):
    sentence_index = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    return Activations(
        acts=arr,
        labels=task.encode(split),
        label_names=tuple(task.label_names),
        sentence_index=sentence_index,
        model=str(model),
        task=task.name,
        split=split,
        meta={"level": task.level, **meta},
    )


def _existing(path, fmt: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a {fmt} activation file).")
    return path


# --------------------------------------------------------------------------------------------
# output arrays: in memory, or an .npy file written in place and renamed when complete
# --------------------------------------------------------------------------------------------
class _Output:
    """Preallocated ``(n_rows, n_layers, n_hidden)`` float32 array that sentences stream into."""

    def __init__(self, shape: tuple, out_dir=None):
        self.final = None if out_dir is None else Path(out_dir) / "acts.npy"
        if self.final is None:
            self.array = np.empty(shape, dtype=np.float32)
            return
        self.final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.final.parent, prefix=".acts.", suffix=".npy")
        os.close(fd)
        share(tmp)  # mkstemp makes 0600; the array ends with the umask's mode
        self.tmp = Path(tmp)
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float32, shape=shape)

    def finish(self) -> np.ndarray:
        if self.final is None:
            return self.array
        self.array.flush()
        del self.array
        os.replace(self.tmp, self.final)
        return np.load(self.final, mmap_mode="r")

    def discard(self) -> None:
        if self.final is not None:
            self.__dict__.pop("array", None)
            self.tmp.unlink(missing_ok=True)


def _stream(path, shape, out_dir, fill) -> np.ndarray:
    """Allocate the output, let ``fill(array)`` write it, and clean up if it fails."""
    nbytes = int(np.prod(shape)) * 4
    if out_dir is None and nbytes > LARGE_BYTES:
        warnings.warn(
            f"Reading {path} into {nbytes / 2**30:.1f} GiB of memory; pass out_dir=<folder> to "
            "write the activations to a memory-mapped file instead.",
            stacklevel=3,
        )
    out = _Output(shape, out_dir)
    try:
        fill(out.array)
    except BaseException:
        out.discard()
        raise
    return out.finish()


# --------------------------------------------------------------------------------------------
# NeuroX HDF5
# --------------------------------------------------------------------------------------------
def read_neurox_hdf5(
    path: str | os.PathLike, task: Task, split: str, *, model: str | None = None, out_dir=None
) -> Activations:
    """Read a NeuroX HDF5 activation file for one split of a task.

    Parameters
    ----------
    path : path-like
        File written by NeuroX's ``transformers_extractor`` with ``output_type="hdf5"``
        (datasets ``"0"``, ``"1"``, ... of shape ``(n_layers, n_words, n_hidden)`` and
        ``sentence_to_index``), one entry per line of the corpus it read.
    task : Task
        The task whose sentences the corpus holds, in the same order. Sentence ``i`` of the
        split must have as many vectors as words (token tasks) or exactly one (sentence tasks);
        a file with more sentences than the split gives its first ones.
    split : {"train", "dev", "test"}
    model : str, optional
        Name recorded in the result; default the file's name.
    out_dir : path-like, optional
        Folder that receives ``acts.npy``, written sentence by sentence and returned
        memory-mapped; by default the activations are read into memory.

    Returns
    -------
    Activations
        ``acts`` float32 ``(n_words, n_layers, n_hidden)``; ``labels = task.encode(split)``.
    """
    import h5py

    path = _existing(path, "NeuroX HDF5")
    expected = _expected_counts(task, split, "read_neurox_hdf5")
    try:
        handle = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path} is not an HDF5 file ({e}); expected NeuroX's layout.") from e
    with handle as f:
        if "sentence_to_index" not in f:
            raise ValueError(
                f"{path} has no 'sentence_to_index' dataset: expected a NeuroX HDF5 file "
                "(one dataset per sentence named by its index, plus 'sentence_to_index')."
            )
        n_file = sum(1 for k in f.keys() if k.isdigit())
        shapes = []
        for i in range(len(expected)):
            if str(i) not in f:
                raise _missing_error(path, i, f"no dataset {str(i)!r}", task, split, len(expected))
            shapes.append(f[str(i)].shape)
        layouts = {(s[0], s[2]) for s in shapes if len(s) == 3}
        if any(len(s) != 3 for s in shapes) or len(layouts) != 1:
            raise ValueError(
                f"{path}: every sentence must be an array (n_layers, n_words, n_hidden) with the "
                f"same n_layers and n_hidden. Got shapes {sorted(set(shapes))[:4]} instead."
            )
        found = np.array([s[1] for s in shapes], dtype=np.int64)
        _check_counts(path, found, expected, task, split)
        (n_layers, n_hidden) = layouts.pop()
        ends = np.cumsum(expected)

        def fill(out):
            for i, end in enumerate(ends):
                out[end - expected[i] : end] = f[str(i)][()].transpose(1, 0, 2)

        shape = (int(ends[-1]), int(n_layers), int(n_hidden))
        arr = _stream(path, shape, out_dir, fill)
    meta = {"format": "neurox-hdf5", "source": str(path), "n_sentences_in_file": n_file}
    if out_dir is not None:
        meta["path"] = str(out_dir)
    return _activations(arr, task, split, expected, model or path.name, meta)


def _sentence_texts(n: int, sentences) -> list[str]:
    """The text of each sentence for ``sentence_to_index``, made unique as NeuroX does."""
    if sentences is None:
        return [f"sentence {i}" for i in range(n)]
    if len(sentences) != n:
        raise ValueError(
            f"The 'sentences' parameter must give one sentence per sentence of the activations: "
            f"got {len(sentences)} for {n}."
        )
    seen: dict[str, int] = {}
    out = []
    for s in sentences:
        text = " ".join(s)
        seen[text] = seen.get(text, 0) + 1
        out.append(text if seen[text] == 1 else f"{text} (Occurrence {seen[text]})")
    return out


def _sentence_bounds(acts: Activations) -> np.ndarray:
    """Row boundaries of the sentences: ``rows[b[i]:b[i + 1]]`` is sentence ``i``."""
    si = np.asarray(acts.sentence_index)
    if si.size and (si[0] != 0 or np.any(np.diff(si) < 0) or np.any(np.diff(si) > 1)):
        raise ValueError(
            f"{acts!r}: sentence_index must number the sentences 0, 1, ... in row order."
        )
    n = int(si[-1]) + 1 if si.size else 0
    return np.concatenate([[0], np.cumsum(np.bincount(si, minlength=n))])


def write_neurox_hdf5(acts: Activations, path: str | os.PathLike, *, sentences=None) -> Path:
    """Write activations in NeuroX's HDF5 layout, readable by ``neurox.data.loader.load_activations``.

    Parameters
    ----------
    acts : Activations
    path : path-like
        Must end in ``.hdf5`` (NeuroX picks the reader by extension).
    sentences : sequence of sequence of str, optional
        The split's sentences (``task.split(split).sentences``) for the keys of
        ``sentence_to_index``; default ``"sentence 0"``, ``"sentence 1"``, ...

    Returns
    -------
    pathlib.Path
    """
    import h5py

    path = Path(path)
    if path.suffix != ".hdf5":
        raise ValueError(f"{path}: NeuroX reads HDF5 activations from files ending in '.hdf5'.")
    bounds = _sentence_bounds(acts)
    texts = _sentence_texts(len(bounds) - 1, sentences)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            for i in range(len(bounds) - 1):
                block = np.asarray(acts.acts[bounds[i] : bounds[i + 1]], dtype=np.float32)
                f.create_dataset(str(i), data=block.transpose(1, 0, 2))
            index = f.create_dataset("sentence_to_index", (1,), dtype=h5py.string_dtype())
            index[0] = json.dumps({t: str(i) for i, t in enumerate(texts)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# NeuroX JSON (one object per line)
# --------------------------------------------------------------------------------------------
def _json_sentence(features, path, lineno: int) -> np.ndarray:
    try:
        arr = np.array(
            [[layer["values"] for layer in tok["layers"]] for tok in features], dtype=np.float32
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{path}, line {lineno}: expected features[*].layers[*].values, lists of numbers of "
            f"one length ({type(e).__name__}: {e})."
        ) from e
    if arr.ndim != 3:
        raise ValueError(
            f"{path}, line {lineno}: expected every token to have layers of values. Got an array "
            f"of shape {arr.shape} instead."
        )
    return arr


def _json_lines(path: Path):
    """``(line number, text)`` of every non-blank line."""
    with open(path, encoding="utf-8") as fp:
        for lineno, line in enumerate(fp, start=1):
            if line.strip():
                yield lineno, line


def _json_record(line: str, path: Path, lineno: int) -> list:
    """The ``features`` of one line, checked to be NeuroX's shape of object."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path}, line {lineno}: not JSON ({e}); expected NeuroX's JSON lines, one object "
            "per sentence."
        ) from e
    if not isinstance(rec, dict) or not isinstance(rec.get("features"), list):
        raise ValueError(
            f"{path}, line {lineno}: expected an object with 'linex_index' and 'features'."
        )
    return rec


def _first_json_layout(path: Path) -> tuple[int, int]:
    for lineno, line in _json_lines(path):
        feats = _json_record(line, path, lineno)["features"]
        if feats:
            arr = _json_sentence(feats[:1], path, lineno)
            return arr.shape[1], arr.shape[2]
    raise ValueError(f"{path} holds no sentence with features: expected NeuroX's JSON lines.")


def read_neurox_json(
    path: str | os.PathLike, task: Task, split: str, *, model: str | None = None, out_dir=None
) -> Activations:
    """Read a NeuroX JSON activation file (one object per line) for one split of a task.

    The file is read line by line into a preallocated array, so it is never held in memory
    whole. Line ``i`` must carry ``"linex_index": i``. Values keep NeuroX's 8 decimals.

    Parameters
    ----------
    path : path-like
        File written by NeuroX's ``transformers_extractor`` with ``output_type="json"``.
    task, split, model, out_dir
        As in :func:`read_neurox_hdf5`.

    Returns
    -------
    Activations
    """
    path = _existing(path, "NeuroX JSON")
    expected = _expected_counts(task, split, "read_neurox_json")
    n_layers, n_hidden = _first_json_layout(path)
    ends = np.cumsum(expected)
    n_seen = [0]

    def fill(out):
        for lineno, line in _json_lines(path):
            i = n_seen[0]
            n_seen[0] += 1
            if i >= len(expected):
                continue  # sentences after the split's: counted, not parsed
            rec = _json_record(line, path, lineno)
            feats = rec["features"]
            if rec.get("linex_index") != i:
                where = f"line {lineno} has linex_index {rec.get('linex_index')!r}"
                raise _missing_error(path, i, where, task, split, len(expected))
            if len(feats) != expected[i]:
                raise _count_error(path, i, len(feats), task, split, int(expected[i]))
            vecs = _json_sentence(feats, path, lineno)
            if vecs.shape[1:] != (n_layers, n_hidden):
                raise ValueError(
                    f"{path}, line {lineno}: expected {n_layers} layers of {n_hidden} values per "
                    f"token, as on the first line. Got {vecs.shape[1:]} instead."
                )
            out[ends[i] - expected[i] : ends[i]] = vecs
        if n_seen[0] < len(expected):
            raise _missing_error(path, n_seen[0], "the file ends before it", task, split, len(ends))

    arr = _stream(path, (int(ends[-1]), n_layers, n_hidden), out_dir, fill)
    meta = {"format": "neurox-json", "source": str(path), "n_sentences_in_file": n_seen[0]}
    if out_dir is not None:
        meta["path"] = str(out_dir)
    return _activations(arr, task, split, expected, model or path.name, meta)


def _json_tokens(n: int, sentence, i: int) -> list[str]:
    if sentence is None:
        return [f"w{k}" for k in range(n)]
    if n == len(sentence):
        return list(sentence)
    if n == 1:  # a sentence task: one vector for the whole text
        return [" ".join(sentence)]
    raise ValueError(
        f"Sentence {i} has {n} vectors but {len(sentence)} words in 'sentences' "
        f"({' '.join(sentence)[:60]!r}); expected one vector per word or one per sentence."
    )


def write_neurox_json(acts: Activations, path: str | os.PathLike, *, sentences=None) -> Path:
    """Write activations in NeuroX's JSON-lines layout (values rounded to 8 decimals).

    Parameters
    ----------
    acts : Activations
    path : path-like
        Must end in ``.json`` (NeuroX picks the reader by extension).
    sentences : sequence of sequence of str, optional
        The split's sentences, for the ``token`` fields (token tasks: the words; sentence
        tasks: the text); default ``"w0"``, ``"w1"``, ...

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if path.suffix != ".json":
        raise ValueError(f"{path}: NeuroX reads JSON activations from files ending in '.json'.")
    bounds = _sentence_bounds(acts)
    if sentences is not None and len(sentences) != len(bounds) - 1:
        raise ValueError(
            f"The 'sentences' parameter of write_neurox_json must give one sentence per sentence "
            f"of the activations: got {len(sentences)} for {len(bounds) - 1}."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fp:
            for i in range(len(bounds) - 1):
                block = np.asarray(acts.acts[bounds[i] : bounds[i + 1]], dtype=np.float64)
                values = np.round(block, JSON_DECIMALS).tolist()
                n = len(values)
                tokens = _json_tokens(n, None if sentences is None else sentences[i], i)
                feats = [
                    {"token": t, "layers": [{"index": k, "values": v} for k, v in enumerate(tok)]}
                    for t, tok in zip(tokens, values)
                ]
                fp.write(json.dumps({"linex_index": i, "features": feats}) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# safetensors: written in row chunks, read memory-mapped
# --------------------------------------------------------------------------------------------
def _st_code(dtype) -> str:
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _ST_DTYPES.items()}
    dtype = np.dtype(dtype).newbyteorder("=")
    if dtype not in codes:
        raise ValueError(
            f"write_safetensors stores {sorted(_ST_DTYPES)} arrays. Got dtype {dtype} instead."
        )
    return codes[dtype]


def write_safetensors(
    acts: Activations, path: str | os.PathLike, *, task: Task | None = None
) -> Path:
    """Write activations to a safetensors file: tensors ``acts`` and ``sentence_index``.

    The header's metadata holds ``model``, ``task``, ``split``, ``n_layers``, ``n_hidden``,
    ``level`` and ``label_names`` (JSON), plus the split's ``text_fingerprint`` when ``task``
    is given (:func:`read_safetensors` warns when the text it is read with differs). The
    array is written in chunks of rows, so a memory-mapped ``acts`` is never loaded whole;
    ``safetensors.numpy.load_file`` reads the result.

    Parameters
    ----------
    acts : Activations
    path : path-like
    task : Task, optional
        The task ``acts`` was extracted for.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    tensors = {"acts": acts.acts, "sentence_index": np.asarray(acts.sentence_index, np.int32)}
    header, offset = {}, 0
    for name, arr in tensors.items():
        header[name] = {
            "dtype": _st_code(arr.dtype),
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    meta = {"format": SAFETENSORS_KIND, "model": acts.model, "task": acts.task}
    meta.update(split=acts.split, n_layers=acts.n_layers, n_hidden=acts.n_hidden)
    meta.update(level=acts.meta.get("level", ""), label_names=json.dumps(list(acts.label_names)))
    if task is not None:
        meta["text_fingerprint"] = task.split(acts.split).text_fingerprint()
    header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data starts 8-byte aligned
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(blob)) + blob)
            for arr in tensors.values():
                little = np.dtype(_ST_DTYPES[_st_code(arr.dtype)])
                step = max(1, (64 << 20) // max(1, arr[:1].nbytes))
                for start in range(0, arr.shape[0], step):
                    f.write(np.ascontiguousarray(arr[start : start + step], dtype=little).data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _st_header(path: Path) -> tuple[dict, int]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if n < 2 or n > size - 8:
            raise ValueError(f"{path} is not a safetensors file (header length {n}, size {size}).")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a safetensors file (bad header: {e}).") from e
    for name in ("acts", "sentence_index"):
        spec = header.get(name)
        ok = isinstance(spec, dict) and spec.get("dtype") in _ST_ALLOWED[name]
        lo, hi = (spec.get("data_offsets") or (0, -1)) if ok else (0, -1)
        count = int(np.prod(spec["shape"])) if ok else 0
        if not ok or hi - lo != count * np.dtype(_ST_DTYPES[spec["dtype"]]).itemsize:
            raise ValueError(
                f"{path}: expected a tensor {name!r} of one of the dtypes {_ST_ALLOWED[name]} "
                f"(activations written by write_safetensors). Got {spec!r} instead."
            )
        if 8 + n + hi > size:
            raise ValueError(f"{path}: tensor {name!r} runs past the end of the file (truncated).")
    return header, 8 + n


def read_safetensors(
    path: str | os.PathLike, task: Task, split: str, *, model: str | None = None
) -> Activations:
    """Read activations written by :func:`write_safetensors` (``acts`` memory-mapped).

    Parameters
    ----------
    path : path-like
        A safetensors file with tensors ``acts`` ``(n, n_layers, n_hidden)`` and
        ``sentence_index`` ``(n,)`` (sentences numbered 0, 1, ... in row order).
    task : Task
        Gives the labels; sentence ``i`` must have as many rows as words (token tasks) or one
        (sentence tasks). A file with more sentences than the split gives its first ones.
    split : {"train", "dev", "test"}
    model : str, optional
        Name recorded in the result; default the ``model`` of the file's metadata.

    Returns
    -------
    Activations
        ``acts`` as stored (float32 or float16), bit for bit.
    """
    path = _existing(path, "safetensors")
    expected = _expected_counts(task, split, "read_safetensors")
    header, start = _st_header(path)
    meta_in = header.get("__metadata__") or {}

    def tensor(name):
        spec = header[name]
        offset = start + spec["data_offsets"][0]
        dtype, shape = np.dtype(_ST_DTYPES[spec["dtype"]]), tuple(spec["shape"])
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)

    acts, si = tensor("acts"), np.array(tensor("sentence_index"), dtype=np.int64)
    if acts.ndim != 3 or si.shape != acts.shape[:1]:
        raise ValueError(
            f"{path}: expected 'acts' (n, n_layers, n_hidden) and 'sentence_index' (n,). "
            f"Got {acts.shape} and {si.shape} instead."
        )
    steps = np.diff(si)
    if si.size and (si[0] != 0 or steps.min(initial=0) < 0 or steps.max(initial=0) > 1):
        raise ValueError(f"{path}: 'sentence_index' must number the sentences 0, 1, ... in order.")
    found = np.bincount(si) if si.size else np.zeros(0, dtype=np.int64)
    _check_counts(path, found, expected, task, split)
    stored = meta_in.get("text_fingerprint")
    if stored and len(found) == len(expected):
        if stored != task.split(split).text_fingerprint():
            warnings.warn(
                f"{path} was written for other sentences than the {split!r} split of task "
                f"{task.name!r} (same word counts, different text).",
                stacklevel=2,
            )
    meta = {"format": "safetensors", "source": str(path), "n_sentences_in_file": len(found)}
    meta["file_metadata"] = dict(meta_in)
    rows = int(expected.sum())
    name = model or meta_in.get("model") or path.name
    return _activations(acts[:rows], task, split, expected, name, meta)


# --------------------------------------------------------------------------------------------
# one entry point for every format
# --------------------------------------------------------------------------------------------
def infer_format(path: str | os.PathLike) -> str:
    """The format of an activation file from its extension (``.hdf5``/``.h5``, ``.json``/``.jsonl``,
    ``.safetensors``)."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ValueError(
            f"Cannot tell the format of {path} from its extension: expected one of "
            f"{sorted(_SUFFIXES)}, or name the format, one of {set(FORMATS)}."
        )
    return _SUFFIXES[suffix]


def read_activations(
    path: str | os.PathLike,
    task: Task,
    split: str,
    *,
    format: str | None = None,
    model: str | None = None,
    out_dir=None,
) -> Activations:
    """Read an activation file of any supported format for one split of a task.

    Parameters
    ----------
    path : path-like
    task : Task
    split : {"train", "dev", "test"}
    format : {"neurox-hdf5", "neurox-json", "safetensors"}, optional
        Default: from the extension (:func:`infer_format`).
    model : str, optional
        Name recorded in the result.
    out_dir : path-like, optional
        NeuroX formats: folder for a memory-mapped ``acts.npy`` (safetensors files are always
        memory-mapped in place).

    Returns
    -------
    Activations
    """
    fmt = infer_format(path) if format is None else format
    check_choice(fmt, FORMATS, name="format", caller="read_activations")
    if fmt == "safetensors":
        return read_safetensors(path, task, split, model=model)
    reader = read_neurox_hdf5 if fmt == "neurox-hdf5" else read_neurox_json
    return reader(path, task, split, model=model, out_dir=out_dir)


def write_activations(acts: Activations, path, *, format: str | None = None, task=None) -> Path:
    """Write activations in one of :data:`FORMATS` (default: from the extension).

    ``task`` (the task ``acts`` belongs to) gives NeuroX files their words and safetensors
    files the split's text fingerprint.
    """
    fmt = infer_format(path) if format is None else format
    check_choice(fmt, FORMATS, name="format", caller="write_activations")
    if fmt == "safetensors":
        return write_safetensors(acts, path, task=task)
    sentences = None if task is None else task.split(acts.split).sentences
    writer = write_neurox_hdf5 if fmt == "neurox-hdf5" else write_neurox_json
    return writer(acts, path, sentences=sentences)


def write_word_label(task: Task, split: str, stem: str | os.PathLike) -> tuple[Path, Path]:
    """Write a split as NeuroX's parallel ``<stem>.word`` and ``<stem>.label`` files.

    One sentence per line, words (token tasks) or the text (sentence tasks, the two texts of
    a pair separated by a tab) on the ``.word`` line, labels on the ``.label`` line. The
    ``.word`` file is the corpus to give NeuroX's extractor, whose entry ``i`` then matches
    sentence ``i`` of the split.
    """
    check_choice(split, SPLITS, name="split", caller="write_word_label")
    sp = task.split(split)
    if task.level == "token":
        bad = [(i, w) for i, s in enumerate(sp.sentences) for w in s if w.split() != [w]]
        if bad:
            i, w = bad[0]
            raise ValueError(
                f"Sentence {i} of the {split!r} split of task {task.name!r} has the word {w!r}: "
                "NeuroX splits lines on spaces, so words must be non-empty, without whitespace."
            )
        words = [" ".join(s) for s in sp.sentences]
        labels = [" ".join(y) for y in sp.labels]
    else:
        words = ["\t".join(s) for s in sp.sentences]
        labels = [str(y) for y in sp.labels]
    stem = Path(stem)
    word_path, label_path = Path(f"{stem}.word"), Path(f"{stem}.label")
    atomic_write_text(word_path, "\n".join(words) + "\n")
    atomic_write_text(label_path, "\n".join(labels) + "\n")
    return word_path, label_path
