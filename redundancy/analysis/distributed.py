"""Moments, correlations and layer CKA of activations larger than one machine, on Dask.

The in-process pass of :mod:`redundancy.analysis.similarity` streams the rows of an
activation matrix through one float64 accumulator. Here the same pass is a Dask reduction:
every block of rows gives a *partial* ``(n, s1, S)`` -- its row count, the column sums and the
cross-products of its rows after subtracting a shift -- and partials are added pairwise (a
tree of fan-in ``split_every``) in float64, wherever the blocks live.

Equality with the in-process pass. :func:`redundancy.analysis.similarity.moments` subtracts
the float32-rounded mean of the first ``chunk_size`` rows from every row (the *shift*, which
keeps the float32 products free of cancellation) and adds each chunk's float32 product
(BLAS ``ssyrk``) to a float64 accumulator, chunk after chunk. :func:`moments` computes the
same shift from the same rows with the same function, splits every block into the same
``chunk_size`` row chunks (blocks are multiples of ``chunk_size`` and start at multiples of
it), and computes each chunk's product with the same call. The float32 products are
therefore the very numbers the in-process pass adds; only the order of the float64
additions differs (within a block the same, across blocks a tree), so the results agree to
float64 rounding: a relative error of order ``n_chunks * 1e-16``.

Readers turn the files of this project into Dask arrays of shape ``(n, n_layers,
n_hidden)``, split into blocks of rows and read lazily on the workers (every worker opens the
file itself, so the files must be on a filesystem the workers see):

* :func:`from_npy`, :func:`from_store` -- ``acts.npy`` of the activation cache (or any
  ``.npy`` file, such as NeuroX files converted by an activation set);
* :func:`from_safetensors` -- files of :func:`redundancy.encoders.interop.write_safetensors`;
* :func:`from_neurox_hdf5` -- NeuroX's HDF5 files, one dataset per sentence;
* :func:`from_activations` -- the file behind an :class:`~redundancy.encoders.store.Activations`.

NeuroX JSON files cannot be read by rows; an activation set converts them once to
``acts.npy`` (:meth:`redundancy.encoders.interop.ActivationSet.get`), which
:func:`from_activations` then reads.

Dask is an optional dependency: ``pip install -e .[distributed]``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from . import similarity

logger = logging.getLogger(__name__)

__all__ = [
    "block_rows_for",
    "correlation",
    "from_activations",
    "from_neurox_hdf5",
    "from_npy",
    "from_safetensors",
    "from_store",
    "layer_cka",
    "moments",
    "require_dask",
]

INSTALL_HINT = "pip install -e .[distributed]"


def require_dask(what: str = "this function", *, distributed: bool = False):
    """Import and return ``dask`` (and ``distributed`` when asked), or raise an ImportError
    that says how to install it."""
    try:
        import dask
        import dask.array  # noqa: F401

        if distributed:
            import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{what} needs Dask, an optional dependency of redundancy. Install it with "
            f"`{INSTALL_HINT}` (or `pip install 'dask[distributed]>=2024.1'`)."
        ) from exc
    return dask


# --------------------------------------------------------------------------------------------
# readers: files as Dask arrays of rows
# --------------------------------------------------------------------------------------------
def block_rows_for(n_features: int, itemsize: int = 4, chunk_size: int = 4096) -> int:
    """Rows per Dask block for the moments reduction: a multiple of ``chunk_size`` whose
    block is about as large as one partial result (``8 * d * d`` bytes), so that reading
    the data, not adding partials, dominates."""
    k = max(1, math.ceil(8 * n_features / (chunk_size * itemsize)))
    return k * chunk_size


class _RowFile:
    """A C-ordered array inside a file, opened (memory-mapped) lazily by each worker.

    Pickles as its path and layout only, so a Dask graph carries a few hundred bytes per
    file, never the data.
    """

    def __init__(self, path, offset: int, dtype, shape: tuple):
        self.path, self.offset = str(path), int(offset)
        self.dtype, self.shape = np.dtype(dtype), tuple(int(s) for s in shape)
        self.ndim = len(self.shape)
        stat = os.stat(self.path)
        self._stamp = (stat.st_size, stat.st_mtime_ns)
        self._map = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_map"} | {"_map": None}

    def __dask_tokenize__(self):
        return ("row-file", self.path, self.offset, str(self.dtype), self.shape, self._stamp)

    def __getitem__(self, key):
        if self._map is None:
            self._map = np.memmap(
                self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape
            )
        return np.array(self._map[key])


class _NeuroxRows:
    """The rows of a NeuroX HDF5 file (``"0"``, ``"1"``, ... of shape ``(layers, words,
    hidden)``) as one ``(words, layers, hidden)`` array, read sentence by sentence."""

    def __init__(self, path, shapes: list[tuple]):
        self.path = str(path)
        counts = np.array([s[1] for s in shapes], dtype=np.int64)
        self.ends = np.cumsum(counts)
        self.shape = (int(self.ends[-1]) if len(counts) else 0, shapes[0][0], shapes[0][2])
        self.dtype, self.ndim = np.dtype(np.float32), 3
        stat = os.stat(self.path)
        self._stamp = (stat.st_size, stat.st_mtime_ns)

    def __dask_tokenize__(self):
        return ("neurox-rows", self.path, self.shape, self._stamp)

    def __getitem__(self, key):
        import h5py

        key = key if isinstance(key, tuple) else (key,)
        start, stop, _ = key[0].indices(self.shape[0])  # from_array passes slices only
        out = np.empty((max(stop - start, 0), *self.shape[1:]), dtype=np.float32)
        if stop > start:
            first = int(np.searchsorted(self.ends, start, side="right"))
            last = int(np.searchsorted(self.ends, stop - 1, side="right"))
            with h5py.File(self.path, "r") as f:
                for i in range(first, last + 1):
                    lo, hi = (int(self.ends[i - 1]) if i else 0), int(self.ends[i])
                    a, b = max(lo, start), min(hi, stop)
                    block = f[str(i)][:, a - lo : b - lo, :]
                    out[a - start : b - start] = block.transpose(1, 0, 2)
        return out[(slice(None), *key[1:])]


def _as_dask(source, block_rows: int | None, name: str):
    da = require_dask(name).array
    n, layers, hidden = source.shape
    if block_rows is None:
        block_rows = block_rows_for(layers * hidden, source.dtype.itemsize)
    if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)):
        raise TypeError(
            f"The 'block_rows' parameter of {name} must be a positive int. Got {block_rows!r}."
        )
    if block_rows < 1:
        raise ValueError(
            f"The 'block_rows' parameter of {name} must be a positive int. Got {block_rows!r}."
        )
    chunks = (min(int(block_rows), max(n, 1)), layers, hidden)
    meta = np.empty((0, 0, 0), dtype=source.dtype)
    return da.from_array(source, chunks=chunks, asarray=False, fancy=False, meta=meta)


def _check_3d(shape, path, what: str) -> None:
    if len(shape) != 3:
        raise ValueError(
            f"{path}: expected {what} of shape (n_instances, n_layers, n_hidden). "
            f"Got shape {tuple(shape)} instead."
        )


def from_npy(path, *, block_rows: int | None = None):
    """A ``.npy`` file of activations ``(n, n_layers, n_hidden)`` as a Dask array.

    Parameters
    ----------
    path : path-like
        An ``acts.npy`` of the activation cache, of a converted NeuroX file, or any
        C-ordered float16/float32 ``.npy`` file of that shape.
    block_rows : int, optional
        Rows per block; default :func:`block_rows_for` (a multiple of 4,096 rows).

    Returns
    -------
    dask.array.Array
        Blocks of rows, each read from the file by the worker that needs it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected an .npy activation file).")
    try:
        mapped = np.load(path, mmap_mode="r")
    except ValueError as exc:
        raise ValueError(f"{path} is not an .npy file ({exc}).") from None
    shape, dtype, offset = mapped.shape, mapped.dtype, mapped.offset
    fortran = mapped.ndim > 1 and not mapped.flags.c_contiguous
    del mapped
    _check_3d(shape, path, "an array")
    if fortran:
        raise ValueError(f"{path}: the array is Fortran-ordered; expected C order (rows first).")
    return _as_dask(_RowFile(path, offset, dtype, shape), block_rows, "from_npy")


def from_store(folder, *, block_rows: int | None = None):
    """The activations of one folder of the activation cache (``acts.npy`` + manifest).

    A folder without its ``manifest.json`` is an extraction that has not finished (the
    manifest is written last) and is refused.
    """
    folder = Path(folder)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{folder} has no manifest.json: not a finished extraction of the activation cache "
            "(the manifest is written last). Run the extraction to the end first."
        )
    info = json.loads(manifest.read_text())
    x = from_npy(folder / "acts.npy", block_rows=block_rows)
    if list(x.shape) != list(info.get("shape", x.shape)):
        raise ValueError(
            f"{folder}: acts.npy has shape {x.shape}, its manifest says {info['shape']}."
        )
    return x


def from_safetensors(path, *, rows: int | None = None, block_rows: int | None = None):
    """The ``acts`` tensor of a safetensors activation file as a Dask array.

    Parameters
    ----------
    path : path-like
        A file written by :func:`redundancy.encoders.interop.write_safetensors`.
    rows : int, optional
        Keep the first ``rows`` rows (a file may hold more sentences than a split).
    block_rows : int, optional
        Rows per block.
    """
    from ..encoders.activation_files import _ST_DTYPES, _st_header

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a safetensors file).")
    header, start = _st_header(path)
    spec = header["acts"]
    _check_3d(spec["shape"], path, "a tensor 'acts'")
    source = _RowFile(
        path, start + spec["data_offsets"][0], _ST_DTYPES[spec["dtype"]], spec["shape"]
    )
    x = _as_dask(source, block_rows, "from_safetensors")
    return x if rows is None else x[: int(rows)]


def from_neurox_hdf5(path, *, n_sentences: int | None = None, block_rows: int | None = None):
    """A NeuroX HDF5 activation file as a Dask array ``(n_words, n_layers, n_hidden)``.

    Parameters
    ----------
    path : path-like
        Written by NeuroX's ``transformers_extractor`` (``output_type="hdf5"``): datasets
        ``"0"``, ``"1"``, ... of shape ``(n_layers, n_words, n_hidden)``.
    n_sentences : int, optional
        Read only the first sentences (default: every dataset ``"0"``, ``"1"``, ...).
    block_rows : int, optional
        Rows (words) per block; every block reads the sentences it overlaps.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a NeuroX HDF5 file).")
    with h5py.File(path, "r") as f:
        n = n_sentences if n_sentences is not None else sum(k.isdigit() for k in f.keys())
        missing = [i for i in range(n) if str(i) not in f]
        if n < 1 or missing:
            raise ValueError(
                f"{path}: expected datasets '0' ... '{max(n - 1, 0)}' (one per sentence, "
                f"NeuroX's layout). Missing: {missing[:5] or 'all'}."
            )
        shapes = [f[str(i)].shape for i in range(n)]
    if any(len(s) != 3 or (s[0], s[2]) != (shapes[0][0], shapes[0][2]) for s in shapes):
        raise ValueError(
            f"{path}: every sentence must be an array (n_layers, n_words, n_hidden) with the "
            f"same n_layers and n_hidden. Got shapes {sorted(set(shapes))[:4]} instead."
        )
    return _as_dask(_NeuroxRows(path, shapes), block_rows, "from_neurox_hdf5")


def from_activations(acts, *, block_rows: int | None = None):
    """The activations of an :class:`~redundancy.encoders.store.Activations` as a Dask array,
    read from its file (the activation cache, a safetensors file, a converted NeuroX file).

    Activations held only in memory are wrapped as they are (for tests and small data).
    """
    da = require_dask("from_activations").array
    meta, n = acts.meta, acts.n_instances
    if meta.get("format") == "safetensors" and meta.get("source"):
        return from_safetensors(meta["source"], rows=n, block_rows=block_rows)
    folder = meta.get("path")
    if folder and (Path(folder) / "acts.npy").is_file():
        x = from_npy(Path(folder) / "acts.npy", block_rows=block_rows)
        if x.shape[0] != n:
            x = x[:n]
        return x
    logger.info("activations of %s/%s are in memory; wrapping them", acts.task, acts.split)
    rows = block_rows or block_rows_for(acts.n_neurons, acts.acts.dtype.itemsize)
    return da.from_array(np.asarray(acts.acts), chunks=(rows, -1, -1))


# --------------------------------------------------------------------------------------------
# the moments reduction
# --------------------------------------------------------------------------------------------
def _flat(x, caller: str):
    """A 2-D Dask array of rows (3-D input flattened) and the number of layers, or None."""
    da = require_dask(caller).array
    if not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x), chunks=(4096,) + (-1,) * (np.ndim(x) - 1))
    if x.ndim == 3:
        n, layers, hidden = x.shape
        return x.rechunk({1: -1, 2: -1}).reshape(n, layers * hidden), int(layers)
    if x.ndim != 2:
        raise ValueError(
            f"The 'x' parameter of {caller} must be a 2-D (n_instances, n_neurons) or 3-D "
            f"(n_instances, n_layers, n_hidden) array. Got shape {x.shape} instead."
        )
    return x.rechunk({1: -1}), None


def _aligned(x, chunk_size: int):
    """``x`` with row blocks that are whole multiples of ``chunk_size`` (the last excepted)."""
    sizes = x.chunks[0]
    if all(s % chunk_size == 0 for s in sizes[:-1]):
        return x
    target = max(chunk_size, (max(sizes) // chunk_size) * chunk_size)
    return x.rechunk({0: target})


def _shift(block, chunk_size: int, precision: str) -> np.ndarray:
    dtype = np.float32 if precision == "float32" else np.float64
    return similarity._first_mean(block, chunk_size, dtype)


def _partial(block, shift, chunk_size: int, precision: str, device: str) -> tuple:
    """``(n, s1, S)`` of one block: the in-process pass over its chunks, S's lower triangle."""
    from scipy.linalg import blas

    n, d = block.shape
    s1 = np.zeros(d, dtype=np.float64)
    acc = np.zeros((d, d), dtype=np.float64)
    syrk = blas.ssyrk if precision == "float32" else blas.dsyrk
    for start in range(0, n, chunk_size):
        Y = similarity._shifted_chunk(block, start, min(start + chunk_size, n), shift)
        s1 += Y.sum(axis=0, dtype=np.float64)
        if similarity._use_torch(device):
            import torch

            Yt = torch.from_numpy(Y).to(device)
            acc += torch.tril(Yt.T @ Yt).cpu().numpy()
        else:
            similarity._add_lower(acc, syrk(1.0, Y.T).T)
    return n, s1, acc


def _combine(*parts) -> tuple:
    n, s1, acc = parts[0][0], parts[0][1].copy(), parts[0][2].copy()
    for m, t, S in parts[1:]:
        n, s1 = n + m, s1 + t
        acc += S
    return n, s1, acc


def _check_option(value, name: str, low: int) -> int:
    from ..constraints import Integer

    return Integer(low).validate(value, name, "moments")


def moments(
    x,
    *,
    chunk_size: int = 4096,
    precision: str = "float32",
    device: str = "cpu",
    split_every: int = 4,
) -> similarity.Moments:
    """Column means and covariance of a Dask array of activations, as a Dask reduction.

    Equal to :func:`redundancy.analysis.similarity.moments` with the same ``chunk_size``
    and ``precision`` to float64 rounding (see the module docstring). Runs on the Dask
    client that is current (``distributed.Client``), else on Dask's local threads.

    Parameters
    ----------
    x : dask.array.Array or array-like
        ``(n_instances, n_neurons)`` or ``(n_instances, n_layers, n_hidden)``, e.g. from
        :func:`from_store`. Row blocks that are not multiples of ``chunk_size`` are
        rechunked first (the readers' blocks already are).
    chunk_size : int, default=4096
        Rows of each float32 product, and rows whose mean is the shift; the in-process
        default.
    precision : {"float32", "float64"}
        Precision of each chunk's product; sums are always float64.
    device : str, default="cpu"
        ``"cpu"`` (BLAS ``syrk``) or a torch device the workers have (``"cuda"``).
    split_every : int, default=4
        Partials added per task of the tree. A worker holds about ``split_every + 1``
        float64 ``(d, d)`` matrices while adding (0.8 GB each at d = 9,984).

    Returns
    -------
    redundancy.analysis.similarity.Moments
    """
    dask = require_dask("moments")
    from .._utils import check_choice

    chunk_size = _check_option(chunk_size, "chunk_size", 1)
    split_every = _check_option(split_every, "split_every", 2)
    check_choice(precision, ("float32", "float64"), name="precision", caller="moments")
    X, _ = _flat(x, "moments")
    similarity._check_rows(X, caller="moments", name="x")
    blocks = _aligned(X, chunk_size).to_delayed().ravel()
    shift = dask.delayed(_shift)(blocks[0], chunk_size, precision)
    parts = [dask.delayed(_partial)(b, shift, chunk_size, precision, device) for b in blocks]
    while len(parts) > 1:
        parts = [
            dask.delayed(_combine)(*parts[i : i + split_every])
            for i in range(0, len(parts), split_every)
        ]
    shift, (n, s1, S) = dask.compute(shift, parts[0])
    return _finish(n, np.asarray(shift, dtype=np.float64), s1, S)


def _finish(n: int, shift: np.ndarray, s1: np.ndarray, S: np.ndarray) -> similarity.Moments:
    """Mean and covariance from the summed partials, as the in-process pass finishes."""
    similarity._mirror_lower(S)
    mean = similarity._finish_moments(n, shift, s1, S, "x")
    return similarity.Moments(n=int(n), mean=mean, cov=S)


def correlation(x, **options) -> np.ndarray:
    """Pearson correlation between every pair of neurons, from :func:`moments` (options
    passed on); float32 ``(d, d)`` as :func:`redundancy.analysis.similarity.correlation`."""
    return similarity.correlation_from_moments(moments(x, **options))


def layer_cka(x, n_layers: int | None = None, **options) -> np.ndarray:
    """Linear CKA between every pair of layers, from :func:`moments` (options passed on).

    ``n_layers`` is inferred from a 3-D ``x``; 2-D input needs it. Returns the ``(L, L)``
    float64 table of :func:`redundancy.analysis.similarity.layer_cka`.
    """
    _, inferred = _flat(x, "layer_cka")
    if n_layers is None:
        n_layers = inferred
    elif inferred is not None and n_layers != inferred:
        raise ValueError(
            f"The 'n_layers' parameter of layer_cka ({n_layers}) disagrees with the layer "
            f"axis of the 3-D input ({inferred}); leave it out for 3-D input."
        )
    return similarity.cka_from_moments(moments(x, **options), n_layers)
