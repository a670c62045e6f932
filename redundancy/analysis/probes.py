"""Elastic-net linear probes, trained jointly, and the metrics used to score them.

The probe is the one of Dalvi et al. (2020), inherited from Linguistic Correlation
Analysis (Dalvi et al., AAAI 2019): a linear model ``Wx + b`` trained with

    loss = CE(Wx + b, y)  +  l1 * sum |W|  +  l2 * sqrt(sum W**2)

(cross-entropy averaged over the batch; mean squared error for regression; the L2 term
is the *unsquared* Frobenius norm; the bias is not penalised), ``l1 = l2 = 1e-5``, Adam
(lr 1e-3, betas 0.9/0.999, eps 1e-8), batches of 128 rows **in data order**, 10 epochs.

Initialisation (documented because it decides the result): for a probe reading ``k``
neurons with ``n_out`` outputs, a ``torch.Generator`` seeded with ``random_state``
draws the weight ``(n_out, k)`` and then the bias ``(n_out,)`` from
``U(-1/sqrt(k), 1/sqrt(k))``: exactly what ``torch.nn.Linear(k, n_out)`` holds right
after ``torch.manual_seed(random_state)``. The same subset and seed therefore always
start from the same point, whichever other probes are trained alongside it.

Joint training. :func:`train_probes` trains any number of probes over arbitrary neuron
subsets of one matrix ``X``, with one or several seeds, while reading every batch of ``X``
only once (:mod:`._probe_joint`): one matrix product per group of neurons shared by the same
probes, hand-written gradients, and one fused pass for the penalties and Adam. Each probe
follows exactly the optimisation it would follow alone; only the floating-point summation
order of its logits differs (results agree to about 1e-6).

Subset keys. :func:`layer_subsets` and :func:`incremental_subsets` key their subsets by a
:class:`LayerSet` ``(kind, layer)``, so callers address the probe of layer 3 as
``LayerSet("layer", 3)`` and the probe on layers 0..3 as ``LayerSet("incremental", 3)``;
``str()`` gives ``"layer 3"`` and ``"layers 0-3"`` for display.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from .. import constraints
from .._utils import progress_bar, resolve_device
from ..constraints import check_choice
from ._probe_joint import JointProbes, _rows_tensor, choose_threads, fit, intra_op_threads

logger = logging.getLogger(__name__)

__all__ = [
    "LayerSet",
    "LinearProbe",
    "METRICS",
    "evaluate",
    "evaluate_probes",
    "incremental_subsets",
    "init_probe_parameters",
    "layer_subsets",
    "per_class_accuracy",
    "score",
    "train_probe",
    "train_probes",
]

KINDS = ("classification", "regression")
ENGINES = ("auto", "torch", "numba")
METRICS = ("accuracy", "f1", "matthews", "pearson", "spearman")

# Rows converted to float32 at a time when scoring; bounded so memory stays small.
_EVAL_ROWS = 4096
# Largest weight block (bytes) the numba engine takes: W and its gradient stay in L2.
_NUMBA_MAX_WEIGHT_BYTES = 512 * 2**10


# --------------------------------------------------------------------------- probe
@dataclass
class LinearProbe:
    """A trained linear probe over some columns (neurons) of an activation matrix.

    Attributes
    ----------
    neurons : ndarray of int64, shape (k,)
        Sorted column indices of the full ``X`` that the probe reads (global neuron ids).
    weight : ndarray of float32, shape (n_out, k)
        Column ``j`` is the weight of neuron ``neurons[j]``; ``n_out`` is the number of
        classes, or 1 for regression.
    bias : ndarray of float32, shape (n_out,)
    kind : {"classification", "regression"}
    n_classes : int or None
        Number of classes (None for regression).
    meta : dict
        Free-form training details (hyper-parameters, seed, number of rows).
    """

    neurons: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    kind: str = "classification"
    n_classes: int | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_neurons(self) -> int:
        """Number of neurons the probe reads."""
        return int(len(self.neurons))

    def decision_function(self, X, *, batch_size: int = _EVAL_ROWS, device=None) -> np.ndarray:
        """Raw outputs ``X[:, neurons] @ W.T + b`` for a full activation matrix.

        Parameters
        ----------
        X : array-like of shape (n_instances, n_neurons_total)
            The *full* matrix the probe was trained on (float32, or a float16 memmap);
            the probe selects its own columns, ``batch_size`` rows at a time.

        Returns
        -------
        ndarray of float32, shape (n_instances, n_out), or (n_instances,) for regression.
        """
        out = _forward_many([self], X, batch_size=batch_size, device=device)[0]
        return out[:, 0] if self.kind == "regression" else out

    def predict(self, X, *, batch_size: int = _EVAL_ROWS, device=None) -> np.ndarray:
        """Class codes (int64) for classification, values (float32) for regression."""
        out = self.decision_function(X, batch_size=batch_size, device=device)
        return out if self.kind == "regression" else out.argmax(axis=1).astype(np.int64)

    def to_dict(self) -> dict:
        """JSON-serialisable dictionary (lists of numbers); inverse of :meth:`from_dict`."""
        return {
            "neurons": self.neurons.tolist(),
            "weight": self.weight.tolist(),
            "bias": self.bias.tolist(),
            "kind": self.kind,
            "n_classes": self.n_classes,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict) -> LinearProbe:
        """Rebuild a probe from :meth:`to_dict` output."""
        return cls(
            neurons=np.asarray(d["neurons"], dtype=np.int64),
            weight=np.asarray(d["weight"], dtype=np.float32).reshape(len(d["bias"]), -1),
            bias=np.asarray(d["bias"], dtype=np.float32),
            kind=d.get("kind", "classification"),
            n_classes=d.get("n_classes"),
            meta=dict(d.get("meta", {})),
        )


# ------------------------------------------------------------------------ subsets
class LayerSet(NamedTuple):
    """Key of a per-layer or incremental probe: ``kind`` "layer" (layer ``layer`` alone) or
    "incremental" (layers ``0..layer``). ``str()`` gives "layer 3" / "layers 0-3"."""

    kind: str
    layer: int

    def __str__(self) -> str:
        if self.kind == "layer":
            return f"layer {self.layer}"
        return f"layers 0-{self.layer}"


def layer_subsets(n_layers: int, n_hidden: int) -> dict[LayerSet, slice]:
    """Neurons of each layer alone: ``{LayerSet("layer", l): slice(l * H, (l + 1) * H)}``.

    Layer 0 is the embedding output; neuron ``i`` belongs to layer ``i // n_hidden``.
    """
    _check_pos_int(n_layers, "n_layers", "layer_subsets")
    _check_pos_int(n_hidden, "n_hidden", "layer_subsets")
    return {
        LayerSet("layer", layer): slice(layer * n_hidden, (layer + 1) * n_hidden)
        for layer in range(n_layers)
    }


def incremental_subsets(n_layers: int, n_hidden: int) -> dict[LayerSet, slice]:
    """Neurons of layers ``0..l``: ``{LayerSet("incremental", l): slice(0, (l + 1) * H)}``.

    The last one is the paper's *oracle* (all layers). ``LayerSet("incremental", 0)`` reads
    the same neurons as ``LayerSet("layer", 0)``; :func:`train_probes` trains such
    duplicates once.
    """
    _check_pos_int(n_layers, "n_layers", "incremental_subsets")
    _check_pos_int(n_hidden, "n_hidden", "incremental_subsets")
    return {LayerSet("incremental", i): slice(0, (i + 1) * n_hidden) for i in range(n_layers)}


def _check_pos_int(value, name, caller):
    return constraints.Integer(1).validate(value, name, caller)


def _as_neurons(sub, n_cols: int, name: str) -> np.ndarray:
    """Normalise a subset (None, slice, list, array of ids or booleans) to sorted int64 ids."""
    if sub is None:
        return np.arange(n_cols, dtype=np.int64)
    if isinstance(sub, slice):
        return np.arange(n_cols, dtype=np.int64)[sub]
    arr = np.asarray(sub)
    if arr.dtype == bool:
        if arr.shape != (n_cols,):
            raise ValueError(
                f"The boolean mask for subset {name!r} must have shape ({n_cols},). "
                f"Got {arr.shape} instead."
            )
        arr = np.flatnonzero(arr)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(
            f"Subset {name!r} must be None, a slice, or a 1-D array of neuron ids. "
            f"Got an array of shape {arr.shape} and dtype {arr.dtype} instead."
        )
    arr = np.unique(arr.astype(np.int64))
    if arr.size and (arr[0] < 0 or arr[-1] >= n_cols):
        raise ValueError(
            f"Subset {name!r} has neuron ids outside [0, {n_cols}) (X has {n_cols} columns). "
            f"Got ids from {arr[0]} to {arr[-1]} instead."
        )
    return arr


# --------------------------------------------------------------------------- init
def init_probe_parameters(
    n_neurons: int, n_out: int, random_state: int = 42
) -> tuple[np.ndarray, np.ndarray]:
    """The documented initial ``(weight, bias)`` of a probe reading ``n_neurons`` neurons.

    A ``torch.Generator`` seeded with ``random_state`` draws the weight then the bias from
    ``U(-1/sqrt(n_neurons), 1/sqrt(n_neurons))``, which equals ``torch.nn.Linear``'s
    default initialisation after ``torch.manual_seed(random_state)``.
    """
    gen = torch.Generator().manual_seed(int(random_state))
    # nn.Linear: kaiming_uniform_(a=sqrt(5)) -> bound = sqrt(3) * sqrt(2 / (1 + 5)) / sqrt(fan_in)
    gain = math.sqrt(2.0 / (1 + 5))
    w_bound = math.sqrt(3.0) * gain / math.sqrt(n_neurons)
    weight = torch.empty(n_out, n_neurons).uniform_(-w_bound, w_bound, generator=gen)
    b_bound = 1 / math.sqrt(n_neurons)
    bias = torch.empty(n_out).uniform_(-b_bound, b_bound, generator=gen)
    return weight.numpy(), bias.numpy()


# ------------------------------------------------------------------------ data I/O
def _check_X_y(X, y, caller: str, kind: str):
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise ValueError(
            f"The 'X' parameter of {caller} must be a 2-D array (n_instances, n_neurons). "
            f"Got {type(X).__name__} with shape {getattr(X, 'shape', None)} instead."
        )
    if np.dtype(X.dtype) not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ValueError(
            f"The 'X' parameter of {caller} must be float32 or float16 (for example the "
            f"memory-mapped activations of redundancy.extract). Got dtype {X.dtype} instead; "
            f"convert with X.astype(np.float32) if it fits in memory."
        )
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != X.shape[0]:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{X.shape[0]}, {len(y) if y.ndim else 0}] (X rows, y)."
        )
    if kind == "classification":
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"The 'y' parameter of {caller} must hold integer class codes for "
                f"classification. Got dtype {y.dtype} instead; use kind='regression' for "
                f"real-valued targets."
            )
        y = y.astype(np.int64)
        if y.size and y.min() < 0:
            raise ValueError(f"The 'y' parameter of {caller} must be >= 0. Got {y.min()}.")
    else:
        y = y.astype(np.float32)
    return y


def _adam_available() -> bool:
    return hasattr(torch, "_fused_adam_")


def train_probes(
    X,
    y,
    subsets,
    *,
    kind: str = "classification",
    n_classes: int | None = None,
    l1: float = 1e-5,
    l2: float = 1e-5,
    lr: float = 1e-3,
    batch_size: int = 128,
    epochs: int = 10,
    random_state: int | Sequence[int] = 42,
    device=None,
    num_threads: int | None = None,
    progress: bool = True,
    engine: str = "auto",
    compute_dtype: str = "float32",
) -> dict:
    """Train one paper probe per neuron subset (and seed), all together, reading X once per epoch.

    Parameters
    ----------
    X : ndarray of shape (n_instances, n_neurons), float32 or float16 (memmap allowed)
        Activations, usually ``extract(...).X`` (neuron ``i`` in layer ``i // n_hidden``).
        Never copied as a whole: each batch is converted to the compute dtype on ``device``.
    y : ndarray of shape (n_instances,)
        int64 class codes (``task.encode(split)``), or float targets for regression.
    subsets : dict[key, subset] or sequence of subsets
        Key -> neurons: None (all), a slice, an array of neuron ids or a boolean mask.
        :func:`layer_subsets` and :func:`incremental_subsets` give the paper's ones (keyed
        by :class:`LayerSet`). Identical subsets are trained once and share the result.
    kind : {"classification", "regression"}
    n_classes : int, optional
        Number of classes; default ``y.max() + 1``.
    l1, l2 : float
        Weights of ``sum |W|`` and of the unsquared Frobenius norm of ``W`` (per probe).
    lr, batch_size, epochs : Adam learning rate, rows per step (in data order), epochs.
    random_state : int, sequence of int or mapping
        Seed of the initialisation (see the module docstring). A sequence trains every
        subset once per seed, jointly, each probe exactly as it would be trained alone
        with that seed; the result is then keyed ``(key, seed)``. A mapping gives each
        subset (by key) its own seed; keys stay as given.
    device : {"cpu", "cuda", None}
        None picks the GPU when there is one.
    num_threads : int or None
        CPU threads for the training loop. The torch engine shares the matrix products
        and the update of every step among that many threads, a whole product per thread
        and each thread taking the next one when it is free (:class:`._probe_joint.
        WorkSharing`), so a core busy with other work delays a step by at most one product
        and the result does not depend on the thread count (bitwise). None chooses: every
        thread torch may use (``torch.get_num_threads()``) when a step is at least
        ``_probe_joint.PARALLEL_MACS`` (100 M) multiply-adds (from about 5 classes for
        the 25 probes of a 13 x 768 model; 1.5x faster on 2 cores, 1.9x at 150 classes),
        one thread below (2 classes: a step of a few small kernels gained nothing from a
        second thread); see ``benchmarks/README.md`` ("Threads") for the measurement. The numba engine runs its fixed row blocks on ``num_threads``
        numba threads (default ``torch.get_num_threads()``); its result does not depend on
        that number either.
    progress : bool
        Show a progress bar.
    engine : {"auto", "torch", "numba"}
        Implementation of the training loop; both follow the same maths and agree to
        float32 rounding. ``"numba"`` is a compiled loop (:mod:`._probe_kernel`) that fuses
        the forward pass, the gradient and the Adam step of each batch and reads every row
        of X once; it handles a single distinct probe (one subset, one seed) over a
        contiguous range of columns, on the CPU, in float32, with a C-contiguous float32
        ``X`` (array or memmap) and a small weight (at most 512 KB, so that the weight and
        its gradient stay in cache). ``"torch"`` (:mod:`._probe_joint`) handles everything
        (joint probes, several seeds, float16 X, bfloat16, GPU). ``"auto"`` picks numba
        when it is installed and applicable, torch otherwise.
    compute_dtype : {"float32", "bfloat16"}
        Dtype of the two matrix products of each step (torch engine). ``"bfloat16"``
        multiplies bfloat16 copies of the batch and of the weights (float32 accumulation
        inside the product, bfloat16 result) and keeps the master weights, the softmax,
        the penalties and Adam in float32: about 2x the product throughput on CPUs with
        AVX512-BF16 and on GPUs, at a cost in accuracy measured in ``benchmarks/``.

    Returns
    -------
    dict[key, LinearProbe] or dict[(key, seed), LinearProbe]
        Same keys (or ``"0", "1", ...`` for a sequence) and order as ``subsets``; with a
        sequence of seeds, keys ``(key, seed)`` ordered by key, then seed.
    """
    caller = "train_probes"
    check_choice(kind, KINDS, name="kind", caller=caller)
    check_choice(engine, ENGINES, name="engine", caller=caller)
    compute_dtype = constraints.check("compute_dtype", compute_dtype, caller)
    y = _check_X_y(X, y, caller, kind)
    hp = _check_hyper_parameters(l1, l2, lr, batch_size, epochs, num_threads, caller)
    seeds, many = _check_seeds(random_state, caller)
    n_out = _n_outputs(kind, n_classes, y, caller)
    device = resolve_device(device)
    named, unique = _distinct_probes(subsets, seeds, X.shape[1], caller)
    if not _adam_available():  # pragma: no cover - very old torch
        raise RuntimeError("train_probes needs torch >= 2.4 (torch._fused_adam_).")
    model = JointProbes(
        [ids for ids, _ in unique], [seed for _, seed in unique], init_probe_parameters,
        n_out, device, compute_dtype, fused=_probe_kernel() is not None,
    )  # fmt: skip
    use_numba = _pick_engine(engine, model, X, device, caller, compute_dtype) == "numba"
    threads = num_threads
    if threads is None:
        threads = (
            torch.get_num_threads() if use_numba else choose_threads(model, batch_size, device)
        )
    logger.info(
        "Training %d probes (%d distinct, %d atoms, %d weights, %.2g multiply-adds per step) "
        "on %d x %d, %d epochs, %s, %s engine, %s threads",
        len(named), model.P, len(model.atoms), model.n_params, model.macs_per_step(batch_size),
        X.shape[0], X.shape[1], epochs, compute_dtype, "numba" if use_numba else "torch", threads,
    )  # fmt: skip
    args = (model, X, y, kind, n_out, hp["l1"], hp["l2"], hp["lr"], batch_size, epochs, device)
    if use_numba:
        with intra_op_threads(threads):
            _fit_numba(*args, progress)
    else:
        fit(*args, progress, threads=threads)
    meta = {**hp, "n_train": int(X.shape[0]), "compute_dtype": compute_dtype}
    meta.update(engine="numba" if use_numba else "torch", num_threads=threads)
    probes = _collect(model, unique, kind, n_out, meta)
    return {key if many else key[0]: probes[p] for key, p in named.items()}


def _check_hyper_parameters(l1, l2, lr, batch_size, epochs, num_threads, caller) -> dict:
    """The checked optimisation settings, as recorded in each probe's ``meta``."""
    if num_threads is not None:
        _check_pos_int(num_threads, "num_threads", caller)
    return {
        "l1": constraints.check("l1", l1, caller),
        "l2": constraints.check("l2", l2, caller),
        "lr": constraints.check("lr", lr, caller, param="learning_rate"),
        "batch_size": constraints.check("batch_size", batch_size, caller),
        "epochs": constraints.check("epochs", epochs, caller),
    }


def _check_seeds(random_state, caller) -> tuple[list[int], bool]:
    """(seeds, whether a sequence was given)."""
    if isinstance(random_state, Mapping):  # one seed per subset: keys stay as given
        seeds = {k: constraints.check("random_state", s, caller) for k, s in random_state.items()}
        return seeds, False
    if isinstance(random_state, (list, tuple, np.ndarray)):
        seeds = [constraints.check("random_state", s, caller) for s in random_state]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(
                f"The 'random_state' parameter of {caller} must be an int >= 0 or a non-empty "
                f"sequence of distinct ints >= 0. Got {random_state!r} instead."
            )
        return seeds, True
    return [constraints.check("random_state", random_state, caller)], False


def _n_outputs(kind, n_classes, y, caller) -> int:
    if kind != "classification":
        return 1
    n_out = int(n_classes) if n_classes is not None else int(y.max()) + 1
    if y.max() >= n_out:
        raise ValueError(
            f"The 'n_classes' parameter of {caller} must exceed the largest class code "
            f"({y.max()}). Got {n_classes} instead."
        )
    return n_out


def _distinct_probes(subsets, seeds, n_cols, caller):
    """``({(key, seed): index}, [(neuron ids, seed), ...])`` with duplicates trained once."""
    if not isinstance(subsets, dict):
        subsets = {str(i): s for i, s in enumerate(subsets)}
    if not subsets:
        raise ValueError(f"The 'subsets' parameter of {caller} must not be empty.")
    if isinstance(seeds, dict) and set(seeds) != set(subsets):
        raise ValueError(
            f"A mapping 'random_state' of {caller} must give one seed per subset: it has "
            f"{len(seeds)} keys for {len(subsets)} subsets."
        )
    unique, index, named = [], {}, {}
    for name, sub in subsets.items():
        ids = _as_neurons(sub, n_cols, str(name))
        if ids.size == 0:
            raise ValueError(f"Subset {str(name)!r} of {caller} selects no neurons.")
        for seed in [seeds[name]] if isinstance(seeds, dict) else seeds:
            key = (ids.tobytes(), seed)
            if key not in index:
                index[key] = len(unique)
                unique.append((ids, seed))
            named[(name, seed)] = index[key]
    return named, unique


def _collect(model, unique, kind, n_out, meta) -> list[LinearProbe]:
    """The trained probes, one per distinct (subset, seed), as :class:`LinearProbe`."""
    theta, bias = model.theta.cpu().numpy(), model.bias.cpu().numpy()
    out = []
    for p, (ids, seed) in enumerate(unique):
        weight, b = model.extract(p, theta, bias)
        out.append(
            LinearProbe(
                neurons=ids.copy(),
                weight=weight,
                bias=b,
                kind=kind,
                n_classes=n_out if kind == "classification" else None,
                meta={**meta, "random_state": seed},
            )
        )
    return out


def _numba_unsupported(model, X, device, compute_dtype="float32") -> str | None:
    """Why the numba engine cannot train ``model`` on ``X`` (None when it can)."""
    if device != "cpu":
        return f"it runs on the CPU only (device is {device!r})"
    if compute_dtype != "float32":
        return f"it computes in float32 only (compute_dtype is {compute_dtype!r})"
    if np.dtype(X.dtype) != np.float32:
        return f"it needs float32 X (got {X.dtype})"
    if not (isinstance(X, np.ndarray) and X.flags.c_contiguous):
        return "it needs a C-contiguous numpy array or memmap for X"
    if model.P != 1 or not model.contiguous:
        return "it trains one probe (one subset, one seed) over a contiguous range of columns"
    if model.n_params * 4 > _NUMBA_MAX_WEIGHT_BYTES:
        return f"the weight is larger than {_NUMBA_MAX_WEIGHT_BYTES // 1024} KB"
    return None


def _pick_engine(engine, model, X, device, caller, compute_dtype="float32") -> str:
    if engine == "torch":
        return "torch"
    why = _numba_unsupported(model, X, device, compute_dtype)
    if engine == "auto":
        if why is None and _probe_kernel() is not None:
            return "numba"
        return "torch"
    if _probe_kernel() is None:
        raise ImportError(
            f"engine='numba' of {caller} needs the numba package; install it "
            "(pip install numba) or use engine='torch'."
        )
    if why is not None:
        raise ValueError(
            f"The 'engine' parameter of {caller} is 'numba', but {why}; use engine='torch' "
            "or engine='auto' for this case."
        )
    return "numba"


def _probe_kernel():
    """The compiled kernel module, or None when numba is not installed."""
    global _KERNEL
    if _KERNEL is False:
        from . import _probe_kernel as kernel

        _KERNEL = kernel if kernel.AVAILABLE else None
    return _KERNEL


_KERNEL = False


def _fit_numba(model, X, y, kind, n_out, l1, l2, lr, batch_size, epochs, device, progress):
    """The training loop of :func:`._probe_joint.fit` as one compiled call per epoch.

    The rows of each batch are cut into ``kernel.ROW_BLOCKS`` fixed blocks processed on
    numba's current number of threads; the result does not depend on that number.
    """
    kernel = _probe_kernel()
    n = X.shape[0]
    Xa = np.asarray(X)  # a plain ndarray view of a memmap
    theta, bias = model.theta.numpy(), model.bias.numpy()  # share memory with the model
    state = [np.zeros_like(theta), np.zeros_like(bias)]  # gradient buffers
    moments = [np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(bias), np.zeros_like(bias)]
    steps_per_epoch = math.ceil(n / batch_size)
    bar = progress_bar(
        total=epochs * steps_per_epoch,
        desc="probes",
        unit="step",
        progress=progress,
        leave=False,
    )
    step = 0
    for _ in range(epochs):
        step = kernel.train_epoch(
            Xa,
            model.c0,
            y,
            kind == "classification",
            theta,
            bias,
            *state,
            *moments,
            step,
            batch_size,
            float(lr),
            0.9,
            0.999,
            1e-8,
            float(l1),
            float(l2),
        )
        bar.update(steps_per_epoch)
    bar.close()


def train_probe(X, y, neurons=None, **kwargs) -> LinearProbe:
    """Train one paper probe on ``X[:, neurons]`` (all neurons when None).

    Same parameters as :func:`train_probes`; ``neurons`` is a slice, ids or a mask.
    """
    return train_probes(X, y, {"probe": neurons}, **kwargs)["probe"]


# ---------------------------------------------------------------------- scoring
def _forward_many(probes, X, *, batch_size=_EVAL_ROWS, device=None) -> list[np.ndarray]:
    """Outputs of several probes over one pass of X (each chunk converted once)."""
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise ValueError(
            "X must be the full 2-D activation matrix (n_instances, n_neurons). "
            f"Got shape {getattr(X, 'shape', None)} instead."
        )
    device = resolve_device(device) if device is not None else "cpu"
    D = X.shape[1]
    params = []
    for pr in probes:
        nz = np.asarray(pr.neurons, dtype=np.int64)
        if nz.size and nz.max() >= D:
            raise ValueError(
                f"The probe reads neuron {nz.max()} but X has only {D} columns; pass the "
                "full activation matrix the probe was trained on."
            )
        contiguous = nz.size > 0 and bool(np.all(np.diff(nz) == 1))
        sel = (
            slice(int(nz[0]), int(nz[-1]) + 1) if contiguous else torch.as_tensor(nz, device=device)
        )
        params.append(
            (
                sel,
                torch.as_tensor(pr.weight, device=device),
                torch.as_tensor(pr.bias, device=device),
            )
        )
    outs = [np.empty((X.shape[0], pr.weight.shape[0]), dtype=np.float32) for pr in probes]
    for r0 in range(0, X.shape[0], batch_size):
        r1 = min(X.shape[0], r0 + batch_size)
        xb = _rows_tensor(X, r0, r1, device)
        if xb.dtype != torch.float32:  # copy_ converts float16 much faster than .float()
            xb = torch.empty(xb.shape, device=device).copy_(xb)
        for out, (sel, w, b) in zip(outs, params):
            xs = xb[:, sel] if isinstance(sel, slice) else xb.index_select(1, sel)
            out[r0:r1] = torch.addmm(b, xs, w.T).cpu().numpy()
    return outs


def _default_metric(kind: str) -> str:
    return "accuracy" if kind == "classification" else "pearson"


def score(y_true, y_pred, metric: str = "accuracy") -> float:
    """Score predictions: ``accuracy``, ``f1`` (macro), ``matthews``, ``pearson``, ``spearman``.

    Computed with scikit-learn / scipy. Correlations of a constant prediction are 0.
    """
    check_choice(metric, METRICS, name="metric", caller="score")
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{y_true.shape[0]}, {y_pred.shape[0]}]"
        )
    if metric == "accuracy":
        return float(np.mean(y_true == y_pred))
    if metric == "f1":
        from sklearn.metrics import f1_score

        return float(f1_score(y_true, y_pred, average="macro"))
    if metric == "matthews":
        from sklearn.metrics import matthews_corrcoef

        return float(matthews_corrcoef(y_true, y_pred))
    from scipy import stats

    if np.std(y_pred) == 0 or np.std(y_true) == 0:
        return 0.0
    fn = stats.pearsonr if metric == "pearson" else stats.spearmanr
    return float(fn(y_true.astype(np.float64), y_pred.astype(np.float64))[0])


def per_class_accuracy(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Accuracy on the instances of each class (NaN for a class absent from ``y_true``)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = int(n_classes) if n_classes is not None else int(max(y_true.max(), y_pred.max())) + 1
    total = np.bincount(y_true, minlength=k).astype(np.float64)
    hit = np.bincount(y_true[y_true == y_pred], minlength=k).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hit / total, np.nan)


def evaluate_probes(probes: dict, X, y, metric: str | None = None, *, device=None) -> dict:
    """Score many probes with one pass over X: ``{name: score}``.

    ``metric`` defaults to accuracy for classification probes and pearson for regression.
    """
    names = list(probes)
    outs = _forward_many([probes[k] for k in names], X, device=device)
    y = np.asarray(y)
    if len(y) != X.shape[0]:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{X.shape[0]}, {len(y)}]"
        )
    res = {}
    for k, out in zip(names, outs):
        pr = probes[k]
        pred = out[:, 0] if pr.kind == "regression" else out.argmax(axis=1)
        res[k] = score(y, pred, metric or _default_metric(pr.kind))
    return res


def evaluate(probe: LinearProbe, X, y, metric: str | None = None, *, device=None) -> float:
    """Score one probe on ``(X, y)``; see :func:`evaluate_probes`."""
    return evaluate_probes({"p": probe}, X, y, metric, device=device)["p"]
