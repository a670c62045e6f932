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
subsets of one matrix ``X`` while reading every batch of ``X`` only once. The union of
the subsets is cut into *atoms*, maximal groups of neurons that belong to exactly the
same probes (the 13 layers, for the 13 per-layer and 12 incremental probes of the
paper). Each atom holds one weight block stacking the rows of every probe that reads
it, so the forward pass is one matrix product per atom and no product ever touches a
weight that is structurally zero. The gradients are written by hand (softmax minus
one-hot, plus ``l1 * sign(W) + l2 * W / ||W||`` with the norm taken per probe) and all
weights live in one flat buffer updated by a single fused Adam kernel. Each probe
follows exactly the optimisation it would follow alone; only the floating-point
summation order of its logits differs (results agree to about 1e-6).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .._utils import check_choice, progress_disabled, resolve_device

logger = logging.getLogger(__name__)

__all__ = [
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
# Bytes of X moved to the device per chunk when training (a whole number of batches).
_CHUNK_BYTES = 64 * 2**20
_CHUNK_BATCHES = 64
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
def layer_subsets(n_layers: int, n_hidden: int) -> dict[str, slice]:
    """Neurons of each layer alone: ``{"layer 0": slice(0, H), ..., "layer L-1": ...}``.

    Layer 0 is the embedding output; neuron ``i`` belongs to layer ``i // n_hidden``.
    """
    _check_pos_int(n_layers, "n_layers", "layer_subsets")
    _check_pos_int(n_hidden, "n_hidden", "layer_subsets")
    return {
        f"layer {layer}": slice(layer * n_hidden, (layer + 1) * n_hidden)
        for layer in range(n_layers)
    }


def incremental_subsets(n_layers: int, n_hidden: int) -> dict[str, slice]:
    """Neurons of layers ``0..l``: ``{"layers 0-0": ..., ..., "layers 0-(L-1)": ...}``.

    The last one is the paper's *oracle* (all layers). ``"layers 0-0"`` equals
    ``"layer 0"`` of :func:`layer_subsets`; :func:`train_probes` trains such duplicates once.
    """
    _check_pos_int(n_layers, "n_layers", "incremental_subsets")
    _check_pos_int(n_hidden, "n_hidden", "incremental_subsets")
    return {f"layers 0-{i}": slice(0, (i + 1) * n_hidden) for i in range(n_layers)}


def _check_pos_int(value, name, caller):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"The {name!r} parameter of {caller} must be a positive int. Got {value!r} instead."
        )


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


def _rows_tensor(X, r0: int, r1: int, device: str) -> torch.Tensor:
    """Rows ``r0:r1`` of X as a tensor on ``device`` in X's own dtype (a view on CPU)."""
    block = np.asarray(X[r0:r1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only memmaps: we never write
        t = torch.from_numpy(block)
    if device != "cpu":
        t = t.to(device, non_blocking=False)
    return t


class _RowSource:
    """Serves X in chunks of whole batches, in data order, on the training device.

    On a GPU with room for it, X is uploaded once (in its own dtype) and kept for every
    epoch; otherwise chunks are streamed. On the CPU, float32 chunks are views of X.
    """

    def __init__(self, X, batch_size: int, device: str):
        self.X, self.device, self.n = X, device, X.shape[0]
        row_bytes = X.shape[1] * np.dtype(X.dtype).itemsize
        per_chunk = min(_CHUNK_BATCHES, _CHUNK_BYTES // max(1, row_bytes * batch_size))
        self.chunk = batch_size * max(1, per_chunk)
        self.resident = None
        if device.startswith("cuda"):
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            if self.n * row_bytes < 0.5 * free:
                self.resident = torch.empty(tuple(X.shape), dtype=_torch_dtype(X), device=device)
                for r0 in range(0, self.n, self.chunk):
                    r1 = min(self.n, r0 + self.chunk)
                    self.resident[r0:r1] = _rows_tensor(X, r0, r1, device)

    def chunks(self):
        for r0 in range(0, self.n, self.chunk):
            r1 = min(self.n, r0 + self.chunk)
            if self.resident is not None:
                yield r0, self.resident[r0:r1]
            else:
                yield r0, _rows_tensor(self.X, r0, r1, self.device)


def _torch_dtype(X):
    return torch.float16 if np.dtype(X.dtype) == np.float16 else torch.float32


# ------------------------------------------------------------------ joint trainer
class _JointProbes:
    """Many probes over subsets of X's columns, stored as per-atom blocks of one flat buffer.

    Layout. ``cols`` (the gathered column order) concatenates the atoms; atom ``a`` covers
    gathered columns ``[a0, a1)`` and the probes ``P_a``; its block ``W_a`` has shape
    ``(len(P_a) * n_out, a1 - a0)``, row ``r`` being class ``r % n_out`` of probe
    ``P_a[r // n_out]``. The per-row output index ``row_out`` maps block rows to the
    logits ``(n_probes * n_out, batch)``.
    """

    def __init__(self, neuron_sets, n_out, device, random_state):
        self.P, self.C, self.device = len(neuron_sets), n_out, device
        self.sets = neuron_sets
        union = np.unique(np.concatenate(neuron_sets))
        member = np.zeros((self.P, union.size), dtype=bool)
        for p, s in enumerate(neuron_sets):
            member[p, np.searchsorted(union, s)] = True
        # Atoms: columns with the same membership pattern, ordered by their first column.
        packed = np.packbits(member, axis=0).T  # (n_union, ceil(P/8))
        _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        atom_rank = np.argsort(np.argsort(first))
        order = np.lexsort((union, atom_rank[inverse]))  # by atom, then by column id
        self.cols = union[order]
        atom_of_col = atom_rank[inverse][order]
        bounds = np.flatnonzero(np.diff(atom_of_col)) + 1
        starts = np.r_[0, bounds]
        ends = np.r_[bounds, self.cols.size]
        self.contiguous = bool(np.all(np.diff(self.cols) == 1))
        self.c0 = int(self.cols[0])
        self.gather = None if self.contiguous else torch.as_tensor(self.cols, device=device)

        # Blocks, flat storage, initial values.
        self.atoms = []  # (a0, a1, probes, r0, r1, off)
        row_out, row_probe, r, off = [], [], 0, 0
        for a0, a1 in zip(starts.tolist(), ends.tolist()):
            probes = np.flatnonzero(member[:, np.searchsorted(union, self.cols[a0])])
            m = probes.size * n_out
            self.atoms.append((a0, a1, probes, r, r + m, off))
            row_out.append((probes[:, None] * n_out + np.arange(n_out)[None, :]).ravel())
            row_probe.append(np.repeat(probes, n_out))
            r += m
            off += m * (a1 - a0)
        self.R, self.n_params = r, off
        row_out = np.concatenate(row_out)
        self.identity_rows = self.R == self.P * n_out and bool(np.all(row_out == np.arange(self.R)))
        self.row_out = torch.as_tensor(row_out, device=device)
        self.row_probe = torch.as_tensor(np.concatenate(row_probe), device=device)

        theta = np.empty(self.n_params, dtype=np.float32)
        bias = np.empty(self.P * n_out, dtype=np.float32)
        for p, s in enumerate(neuron_sets):
            w0, b0 = init_probe_parameters(s.size, n_out, random_state)
            bias[p * n_out : (p + 1) * n_out] = b0
            for a0, a1, probes, _, _, off in self.atoms:
                j = np.searchsorted(probes, p)
                if j < probes.size and probes[j] == p:
                    n_a = a1 - a0
                    blk = theta[off : off + probes.size * n_out * n_a].reshape(-1, n_a)
                    blk[j * n_out : (j + 1) * n_out] = w0[:, np.searchsorted(s, self.cols[a0:a1])]
        self.theta = torch.from_numpy(theta).to(device)
        self.bias = torch.from_numpy(bias).to(device)
        self.g_theta = torch.zeros_like(self.theta)
        self.g_bias = torch.zeros_like(self.bias)
        self.W = [self._view(self.theta, a) for a in self.atoms]
        self.gW = [self._view(self.g_theta, a) for a in self.atoms]
        self.adam = [[torch.zeros_like(self.theta), torch.zeros_like(self.bias)] for _ in (0, 1)]
        self.steps = [torch.zeros((), dtype=torch.float32, device=device) for _ in (0, 1)]

    def _view(self, flat, atom):
        a0, a1, _, r0, r1, off = atom
        return flat[off : off + (r1 - r0) * (a1 - a0)].view(r1 - r0, a1 - a0)

    def select(self, xb: torch.Tensor) -> torch.Tensor:
        """The gathered columns of a float32 batch."""
        if self.contiguous:
            return xb[:, self.c0 : self.c0 + self.cols.size]
        return xb.index_select(1, self.gather)

    def forward(self, xg: torch.Tensor) -> torch.Tensor:
        """Logits, shape (P * n_out, batch)."""
        B = xg.shape[0]
        Z = torch.empty(self.R, B, device=self.device)
        for (a0, a1, _, r0, r1, _), W in zip(self.atoms, self.W):
            torch.mm(W, xg[:, a0:a1].T, out=Z[r0:r1])
        if self.identity_rows:
            return Z.add_(self.bias[:, None])
        out = self.bias[:, None].expand(self.P * self.C, B).contiguous()
        return out.index_add_(0, self.row_out, Z)

    def backward(self, xg: torch.Tensor, G: torch.Tensor, l1: float, l2: float) -> None:
        """Fill the gradient buffers from d(loss)/d(logits) ``G`` (P * n_out, batch)."""
        torch.sum(G, dim=1, out=self.g_bias)
        Gr = G if self.identity_rows else G.index_select(0, self.row_out)
        for (a0, a1, _, r0, r1, _), gW in zip(self.atoms, self.gW):
            torch.mm(Gr[r0:r1], xg[:, a0:a1], out=gW)
        if l1:
            self.g_theta.add_(torch.sign(self.theta), alpha=l1)
        if l2:
            if self.P == 1:
                norm = torch.linalg.vector_norm(self.theta)
                self.g_theta.addcmul_(self.theta, l2 / norm.clamp_min(1e-30))
            else:
                sq = self.theta * self.theta
                rows = torch.empty(self.R, device=self.device)
                for atom in self.atoms:
                    torch.sum(self._view(sq, atom), dim=1, out=rows[atom[3] : atom[4]])
                norms = torch.zeros(self.P, device=self.device).index_add_(0, self.row_probe, rows)
                scale = (l2 / norms.sqrt_().clamp_min_(1e-30))[self.row_probe]
                for atom, W, gW in zip(self.atoms, self.W, self.gW):
                    gW.addcmul_(W, scale[atom[3] : atom[4], None])

    def adam_step(self, lr, betas, eps) -> None:
        torch._foreach_add_(self.steps, 1.0)
        torch._fused_adam_(
            [self.theta, self.bias],
            [self.g_theta, self.g_bias],
            self.adam[0],
            self.adam[1],
            [],
            self.steps,
            lr=lr,
            beta1=betas[0],
            beta2=betas[1],
            weight_decay=0.0,
            eps=eps,
            amsgrad=False,
            maximize=False,
        )

    def extract(self, p: int, theta: np.ndarray, bias: np.ndarray):
        """(weight (n_out, k), bias (n_out,)) of probe ``p`` in sorted-neuron order.

        ``theta`` and ``bias`` are the flat buffers as numpy arrays (moved off the device once).
        """
        s = self.sets[p]
        w = np.empty((self.C, s.size), dtype=np.float32)
        for a0, a1, probes, r0, r1, off in self.atoms:
            j = np.searchsorted(probes, p)
            if j < probes.size and probes[j] == p:
                blk = theta[off : off + (r1 - r0) * (a1 - a0)].reshape(r1 - r0, a1 - a0)
                w[:, np.searchsorted(s, self.cols[a0:a1])] = blk[j * self.C : (j + 1) * self.C]
        b = bias[p * self.C : (p + 1) * self.C].copy()
        return w, b


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
    random_state: int = 42,
    device=None,
    num_threads: int | None = 1,
    progress: bool = True,
    engine: str = "auto",
) -> dict[str, LinearProbe]:
    """Train one paper probe per neuron subset, all together, reading each batch of X once.

    Parameters
    ----------
    X : ndarray of shape (n_instances, n_neurons), float32 or float16 (memmap allowed)
        Activations, usually ``extract(...).X`` (neuron ``i`` in layer ``i // n_hidden``).
        Never copied as a whole: each batch is converted to float32 on ``device``.
    y : ndarray of shape (n_instances,)
        int64 class codes (``task.encode(split)``), or float targets for regression.
    subsets : dict[str, subset] or sequence of subsets
        Name -> neurons: None (all), a slice, an array of neuron ids or a boolean mask.
        :func:`layer_subsets` and :func:`incremental_subsets` give the paper's ones.
        Identical subsets are trained once and share the result.
    kind : {"classification", "regression"}
    n_classes : int, optional
        Number of classes; default ``y.max() + 1``.
    l1, l2 : float
        Weights of ``sum |W|`` and of the unsquared Frobenius norm of ``W`` (per probe).
    lr, batch_size, epochs : Adam learning rate, rows per step (in data order), epochs.
    random_state : int
        Seed of the initialisation (see the module docstring).
    device : {"cpu", "cuda", None}
        None picks the GPU when there is one.
    num_threads : int or None
        CPU threads for the training loop only (torch's setting is restored afterwards);
        None keeps torch's current setting. The default, 1, is deliberate: a step is a
        handful of small kernels (about 5 MB of X per batch), which gain little from a
        second thread and lose 5-25x when the cores are shared with other work
        (measured on a busy 2-core machine). Applies to the torch engine; the numba
        engine splits each batch into fixed row blocks and runs them on torch's current
        number of threads (its result does not depend on the thread count).
    progress : bool
        Show a progress bar.
    engine : {"auto", "torch", "numba"}
        Implementation of the training loop; both follow the same maths and agree to
        float32 rounding. ``"numba"`` is a compiled loop (:mod:`redundancy._probe_kernel`)
        that fuses the forward pass, the gradient and the Adam step of each batch and reads
        every row of X once; it handles a single distinct probe over a contiguous range of
        columns, on the CPU, with a C-contiguous float32 ``X`` (array or memmap) and a small
        weight (at most 512 KB, so that the weight and its gradient stay in cache).
        ``"torch"`` handles everything (joint probes, float16, GPU). ``"auto"`` picks numba
        when it is installed and applicable, torch otherwise.

    Returns
    -------
    dict[str, LinearProbe]
        Same keys (or ``"0", "1", ...`` for a sequence) and order as ``subsets``.
    """
    caller = "train_probes"
    check_choice(kind, KINDS, name="kind", caller=caller)
    check_choice(engine, ENGINES, name="engine", caller=caller)
    y = _check_X_y(X, y, caller, kind)
    for name, v in (("batch_size", batch_size), ("epochs", epochs)):
        _check_pos_int(v, name, caller)
    if not isinstance(subsets, dict):
        subsets = {str(i): s for i, s in enumerate(subsets)}
    if not subsets:
        raise ValueError(f"The 'subsets' parameter of {caller} must not be empty.")
    n, D = X.shape
    if kind == "classification":
        n_out = int(n_classes) if n_classes is not None else int(y.max()) + 1
        if y.max() >= n_out:
            raise ValueError(
                f"The 'n_classes' parameter of {caller} must exceed the largest class code "
                f"({y.max()}). Got {n_classes} instead."
            )
    else:
        n_out = 1
    device = resolve_device(device)

    # Deduplicate identical subsets.
    unique, key_of, names = [], {}, {}
    for name, sub in subsets.items():
        ids = _as_neurons(sub, D, name)
        if ids.size == 0:
            raise ValueError(f"Subset {name!r} of {caller} selects no neurons.")
        key = ids.tobytes()
        if key not in key_of:
            key_of[key] = len(unique)
            unique.append(ids)
        names[name] = key_of[key]
    model = _JointProbes(unique, n_out, device, random_state)
    logger.info(
        "Training %d probes (%d distinct, %d atoms, %d weights) on %d x %d, %d epochs",
        len(names),
        model.P,
        len(model.atoms),
        model.n_params,
        n,
        D,
        epochs,
    )
    if not _adam_available():  # pragma: no cover - very old torch
        raise RuntimeError("train_probes needs torch >= 2.4 (torch._fused_adam_).")

    use_numba = _pick_engine(engine, model, X, device, caller) == "numba"
    if use_numba:  # numba runs a batch's row blocks on torch's current number of threads
        _fit_numba(
            model, X, y, kind, n_out, l1, l2, lr, batch_size, epochs, device, progress,
            threads=torch.get_num_threads(),
        )  # fmt: skip
    else:
        with _threads(num_threads if device == "cpu" else None):
            _fit(model, X, y, kind, n_out, l1, l2, lr, batch_size, epochs, device, progress)

    meta = {
        "l1": l1,
        "l2": l2,
        "lr": lr,
        "batch_size": batch_size,
        "epochs": epochs,
        "random_state": random_state,
        "n_train": int(n),
    }
    theta, bias = model.theta.cpu().numpy(), model.bias.cpu().numpy()
    trained = {p: model.extract(p, theta, bias) for p in range(model.P)}
    return {
        name: LinearProbe(
            neurons=unique[p].copy(),
            weight=trained[p][0].copy(),
            bias=trained[p][1].copy(),
            kind=kind,
            n_classes=n_out if kind == "classification" else None,
            meta=dict(meta),
        )
        for name, p in names.items()
    }


@contextlib.contextmanager
def _threads(n):
    """Temporarily use ``n`` intra-op CPU threads (no change when None)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _fit(model, X, y, kind, n_out, l1, l2, lr, batch_size, epochs, device, progress):
    """The training loop: batches in data order, hand-written gradients, fused Adam."""
    n = X.shape[0]
    y_t = torch.from_numpy(y).to(device)
    source = _RowSource(X, batch_size, device)
    n_steps = epochs * math.ceil(n / batch_size)
    bar = tqdm(
        total=n_steps, desc="probes", unit="step", disable=progress_disabled(progress), leave=False
    )
    P, C = model.P, n_out
    buffers = {}
    for _ in range(epochs):
        for c0, chunk in source.chunks():
            m = chunk.shape[0]
            if kind == "classification":  # one-hot targets of this chunk, (n_out, m)
                onehot_T = torch.zeros(n_out, m, device=device)
                onehot_T[y_t[c0 : c0 + m], torch.arange(m, device=device)] = 1.0
            for b0 in range(0, m, batch_size):
                xb = chunk[b0 : b0 + batch_size]
                B = xb.shape[0]
                if xb.dtype != torch.float32:  # copy_ into a buffer: much faster than .float()
                    if B not in buffers:
                        buffers[B] = torch.empty(B, xb.shape[1], device=device)
                    xb = buffers[B].copy_(xb)
                i0 = c0 + b0
                xg = model.select(xb)
                logits = model.forward(xg)
                if kind == "classification":
                    G = torch.softmax(logits.view(P, C, B), dim=1)
                    G.sub_(onehot_T[:, b0 : b0 + B]).mul_(1.0 / B)
                    G = G.view(P * C, B)
                else:
                    G = logits.sub_(y_t[i0 : i0 + B]).mul_(2.0 / B)
                model.backward(xg, G, l1, l2)
                model.adam_step(lr, (0.9, 0.999), 1e-8)
            bar.update(math.ceil(m / batch_size))
    bar.close()


def _numba_unsupported(model, X, device) -> str | None:
    """Why the numba engine cannot train ``model`` on ``X`` (None when it can)."""
    if device != "cpu":
        return f"it runs on the CPU only (device is {device!r})"
    if np.dtype(X.dtype) != np.float32:
        return f"it needs float32 X (got {X.dtype})"
    if not (isinstance(X, np.ndarray) and X.flags.c_contiguous):
        return "it needs a C-contiguous numpy array or memmap for X"
    if model.P != 1 or not model.contiguous:
        return "it trains one probe over a contiguous range of columns"
    if model.n_params * 4 > _NUMBA_MAX_WEIGHT_BYTES:
        return f"the weight is larger than {_NUMBA_MAX_WEIGHT_BYTES // 1024} KB"
    return None


def _pick_engine(engine, model, X, device, caller) -> str:
    if engine == "torch":
        return "torch"
    why = _numba_unsupported(model, X, device)
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


def _fit_numba(
    model, X, y, kind, n_out, l1, l2, lr, batch_size, epochs, device, progress, *, threads=1
):
    """The training loop of :func:`_fit` as one compiled call per epoch (see ``engine``).

    The rows of each batch are cut into ``kernel.ROW_BLOCKS`` fixed blocks processed on up to
    ``threads`` numba threads; the result does not depend on ``threads``.
    """
    kernel = _probe_kernel()
    import numba

    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    n = X.shape[0]
    Xa = np.asarray(X)  # a plain ndarray view of a memmap
    theta, bias = model.theta.numpy(), model.bias.numpy()  # share memory with the model
    state = [np.zeros_like(theta), np.zeros_like(bias)]  # gradient buffers
    moments = [np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(bias), np.zeros_like(bias)]
    steps_per_epoch = math.ceil(n / batch_size)
    bar = tqdm(
        total=epochs * steps_per_epoch,
        desc="probes",
        unit="step",
        disable=progress_disabled(progress),
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
