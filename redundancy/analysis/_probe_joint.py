"""The torch engine of :func:`redundancy.analysis.probes.train_probes`: many probes, one pass.

Layout. The union of the probes' neuron subsets is cut into *atoms*, maximal groups of
neurons read by exactly the same probes (the 13 layers, for the per-layer and incremental
probes of a 13-layer model). Atom ``a`` covers the gathered columns ``[a0, a1)`` and the
probes ``P_a``; its weight block ``W_a`` has shape ``(len(P_a) * n_out, a1 - a0)``, row ``r``
being class ``r % n_out`` of probe ``P_a[r // n_out]``. All blocks live in one flat float32
buffer, so a step is one matrix product per atom for the logits, one per atom for the
weight gradient, and one pass over the flat buffers for the penalties and Adam.

The probes of one subset trained with several seeds are simply more probes reading the
same atoms (more rows in each block).

Many small atoms. Subsets drawn independently (one cluster representative per cluster, at
every threshold and seed) share almost no membership pattern: 27 such subsets of 2,688
neurons make 2,683 atoms, and two tiny products per atom per step cost far more in calls
than in arithmetic (47 ms a step where the products need 2). When more than
``_MAX_SMALL_ATOMS`` atoms have fewer than ``_SMALL_ATOM`` columns, their columns are
pooled: the probes reading them are grouped into chains of nested subsets (the prefixes of
one ranking searched for a minimal set; a lone subset) and each chain gets one block over
the columns it reads, gathered for it (a column read by two chains is gathered twice),
with a fixed 0/1 mask where a probe of the chain does not read a column; or, when that
costs more (counting ``_GATHER_COST`` weights per gathered column), one block for all of
them over the pooled columns. The weights a
probe does not own start at zero and their gradient is masked to zero, so the L1 sign term,
the L2 norm and Adam leave them at exactly zero and every probe trains as it would alone
(to float32 rounding of the longer sums).

Compute dtype. With ``"bfloat16"`` the two products per atom take bfloat16 operands (the
batch, and a bfloat16 copy of the weights refreshed after every step) and give bfloat16
results, accumulated in float32 inside the product; the logits are widened to float32
before the softmax, and the penalties, Adam and the master weights stay in float32.

The step. On the CPU with numba, the penalties and Adam run as one compiled pass over the
flat buffers (:func:`._probe_kernel.joint_rows`) that also keeps each row's sum of squares
for the next step's L2 term and, in bfloat16, writes the bfloat16 weights. Elsewhere (GPU)
the same arithmetic runs as torch kernels and ``torch._fused_adam_``.

Threads. On the CPU the products of a step (one per atom) and the pieces of the update are
independent tasks shared by a small team of threads (:class:`WorkSharing`), each task
single-threaded; torch's own intra-op threads are set to one meanwhile. Every number is
therefore computed by the same single-threaded kernel whatever the team size, so results
are bitwise identical for any thread count, and a thread descheduled by the operating
system (another job on the machine) holds a step back by one task at most, where the
barriers of multi-threaded products stall every product of every step.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .._utils import progress_bar

# Bytes of X moved to the device per chunk when training (a whole number of batches).
_CHUNK_BYTES = 64 * 2**20
_CHUNK_BATCHES = 64

# Multiply-adds per step (two products: logits and weight gradient) from which the torch
# engine uses every thread torch may use (``num_threads=None``). Measured with the
# benchmarks' ``probe-threads`` case on a 2-core AMD EPYC VM (AVX-512), torch 2.13 / MKL, the
# 25 per-layer and incremental probes over 13 x 768 neurons, batch 128, on a machine shared
# with other jobs (load average 2-4), ms per step on 1 / 2 threads: 2 classes (41 M
# multiply-adds) 2.25 / 2.33, and 3.03 / 2.95 with one core kept busy: nothing to gain;
# 5 classes (101 M) 4.10 / 2.80 (6.77 / 4.57 busy); 50 classes (1.0 G) 28.5 / 16.7
# (31.1 / 31.5 busy); 150 classes (3.0 G) 85.6 / 45.8 (83.4 / 78.3 busy).
PARALLEL_MACS = 100e6

# Atoms narrower than this many columns are pooled into one masked block when there are more
# than _MAX_SMALL_ATOMS of them (see the module docstring, "Many small atoms").
_SMALL_ATOM = 64
_MAX_SMALL_ATOMS = 16
# What gathering one more column of a batch costs, in weights of a block read per row
# (index_select of strided columns against the products' arithmetic; measured on the
# clustering sweep and minimal-set searches of the default book, 2-core AVX-512 VM).
_GATHER_COST = 32


def _torch_dtype(X):
    return torch.float16 if np.dtype(X.dtype) == np.float16 else torch.float32


def _rows_tensor(X, r0: int, r1: int, device: str) -> torch.Tensor:
    """Rows ``r0:r1`` of X as a tensor on ``device`` in X's own dtype (a view on CPU)."""
    import warnings

    block = np.asarray(X[r0:r1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only memmaps: we never write
        t = torch.from_numpy(block)
    if device != "cpu":
        t = t.to(device, non_blocking=False)
    return t


class RowSource:
    """Serves X in chunks of whole batches, in data order, on the training device.

    On a GPU with room for it, X is uploaded once (in its own dtype) and kept for every
    epoch; otherwise chunks are streamed. On the CPU, chunks are views of X.
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


def _atoms(neuron_sets):
    """(membership (P, n_union), gathered column order, atom start/end indices)."""
    union = np.unique(np.concatenate(neuron_sets))
    member = np.zeros((len(neuron_sets), union.size), dtype=bool)
    for p, s in enumerate(neuron_sets):
        member[p, np.searchsorted(union, s)] = True
    # Atoms: columns with the same membership pattern, ordered by their first column.
    packed = np.packbits(member, axis=0).T  # (n_union, ceil(P/8))
    _, first, inverse = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    atom_rank = np.argsort(np.argsort(first))
    order = np.lexsort((union, atom_rank[inverse]))  # by atom, then by column id
    cols = union[order]
    atom_of_col = atom_rank[inverse][order]
    bounds = np.flatnonzero(np.diff(atom_of_col)) + 1
    return member, union, cols, np.r_[0, bounds], np.r_[bounds, cols.size]


def _chains(member: np.ndarray) -> list[list[int]]:
    """Probes (rows of ``member``) grouped into chains of nested column sets, greedily from
    the smallest set: each set joins the first chain whose largest set it contains."""
    chains, tops = [], []
    for p in np.argsort(member.sum(axis=1), kind="stable"):
        if tops:
            inside = ~(member[tops] & ~member[p]).any(axis=1)
            hit = np.flatnonzero(inside)
            if hit.size:
                chains[hit[0]].append(int(p))
                tops[hit[0]] = int(p)
                continue
        chains.append([int(p)])
        tops.append(int(p))
    return chains


def _blocks(neuron_sets, n_out: int):
    """(gathered column order, blocks): each block ``(a0, a1, probes, mask)`` covers the
    gathered columns ``[a0, a1)`` read by ``probes``; ``mask`` is None when every probe of
    the block reads every column, else their (len(probes), a1 - a0) membership.

    Atoms are blocks of their own. When there are many small atoms, their columns are
    pooled instead: the probes reading them are grouped into chains of nested subsets
    (the prefixes of one ranking; a lone cluster-representative subset) and each chain gets
    one masked block over its own columns (a column read by two chains is gathered twice).
    """
    member, union, cols, starts, ends = _atoms(neuron_sets)

    def probes_of(c):
        return np.flatnonzero(member[:, np.searchsorted(union, c)])

    small = (ends - starts) < _SMALL_ATOM
    if small.sum() <= _MAX_SMALL_ATOMS:
        return cols, [(a0, a1, probes_of(cols[a0]), None) for a0, a1 in zip(starts, ends)]
    big = [(a0, a1) for a0, a1, s in zip(starts, ends, small) if not s]
    pooled = np.sort(np.concatenate([cols[a0:a1] for a0, a1, s in zip(starts, ends, small) if s]))
    blocks, pieces, pos = [], [], 0
    for a0, a1 in big:
        blocks.append((pos, pos + a1 - a0, probes_of(cols[a0]), None))
        pieces.append(cols[a0:a1])
        pos += a1 - a0
    sub = member[:, np.searchsorted(union, pooled)]
    involved = np.flatnonzero(sub.any(axis=1))
    groups = [np.sort(involved[chain]) for chain in _chains(sub[involved])]
    used = [sub[probes].any(axis=0) for probes in groups]
    # one block for all (its weights) against one block per chain (fewer weights, but every
    # column read by two chains is gathered twice), in weights read per row of a batch
    one = (involved.size * n_out + _GATHER_COST) * pooled.size
    per_chain = sum((g.size * n_out + _GATHER_COST) * int(u.sum()) for g, u in zip(groups, used))
    if one <= per_chain:
        groups, used = [involved], [np.ones(pooled.size, dtype=bool)]
    for probes, cols_used in zip(groups, used):
        mask = sub[probes][:, cols_used]
        width = int(cols_used.sum())
        blocks.append((pos, pos + width, probes, None if mask.all() else mask))
        pieces.append(pooled[cols_used])
        pos += width
    return np.concatenate(pieces), blocks


def _masked_mm(a, b, out, mask):
    torch.mm(a, b, out=out)
    out.mul_(mask)


class WorkSharing:
    """Runs lists of independent tasks on ``n`` threads, each thread taking the next task
    when it is free (the calling thread is one of them).

    Shared by whoever is free rather than split in fixed halves, the work never waits long
    for a thread the operating system has descheduled (a machine shared with other jobs),
    where an OpenMP barrier inside every matrix product would; each task runs on one
    thread, so the result does not depend on ``n``.
    """

    def __init__(self, n: int):
        self.n = max(1, int(n))
        self.pool = None
        if self.n > 1:  # a new thread must be told too: else MKL runs ~4x slower in it
            self.pool = ThreadPoolExecutor(
                self.n - 1, initializer=torch.set_num_threads, initargs=(1,)
            )

    def run(self, tasks) -> None:
        if self.pool is None:
            for task in tasks:
                task()
            return
        todo, lock = iter(tasks), threading.Lock()

        def worker():
            while True:
                with lock:
                    task = next(todo, None)
                if task is None:
                    return
                task()

        helpers = [self.pool.submit(worker) for _ in range(self.n - 1)]
        try:
            worker()
        finally:  # never leave a helper running into the next phase
            errors = [helper.exception() for helper in helpers]
        for error in errors:
            if error is not None:
                raise error

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


class JointProbes:
    """Many probes over subsets of X's columns (see the module docstring for the layout).

    Parameters
    ----------
    neuron_sets : list of int64 arrays
        Sorted neuron ids of each probe (the same set may appear with different seeds).
    seeds : list of int
        Initialisation seed of each probe.
    init : callable
        ``init(n_neurons, n_out, seed) -> (weight, bias)``, the documented initialisation.
    n_out, device, compute_dtype : outputs per probe, torch device, "float32" or "bfloat16".
    fused : bool
        Use the compiled step (CPU only); otherwise torch kernels.
    """

    def __init__(self, neuron_sets, seeds, init, n_out, device, compute_dtype, fused):
        self.P, self.C, self.device = len(neuron_sets), n_out, device
        self.sets, self.seeds = neuron_sets, list(seeds)
        self.half = compute_dtype == "bfloat16"
        self.fused = fused and device == "cpu"
        self.cols, blocks = _blocks(neuron_sets, n_out)
        self.contiguous = bool(np.all(np.diff(self.cols) == 1))
        self.c0 = int(self.cols[0])
        self.gather = None if self.contiguous else torch.as_tensor(self.cols, device=device)
        self.atoms = []  # (a0, a1, probes, r0, r1, off)
        self.masks = []  # None, or the block's (probes, columns) membership
        row_out, row_probe, row_len, row_off, r, off = [], [], [], [], 0, 0
        for a0, a1, probes, mask in blocks:
            a0, a1 = int(a0), int(a1)
            m = probes.size * n_out
            self.atoms.append((a0, a1, probes, r, r + m, off))
            self.masks.append(mask)
            row_out.append((probes[:, None] * n_out + np.arange(n_out)[None, :]).ravel())
            row_probe.append(np.repeat(probes, n_out))
            row_len.append(np.full(m, a1 - a0))
            row_off.append(off + (a1 - a0) * np.arange(m))
            r += m
            off += m * (a1 - a0)
        self.R, self.n_params = r, off
        row_out = np.concatenate(row_out)
        self.identity_rows = self.R == self.P * n_out and bool(np.all(row_out == np.arange(self.R)))
        self.row_out = torch.as_tensor(row_out, device=device)
        self.row_probe_np = np.concatenate(row_probe)
        self.row_probe = torch.as_tensor(self.row_probe_np, device=device)
        self.row_off = np.concatenate(row_off).astype(np.int64)
        self.row_len = np.concatenate(row_len).astype(np.int64)
        self._init_parameters(init)
        self._buffers = {}
        # Largest blocks first, so that the last tasks of a step are short.
        sizes = [(r1 - r0) * (a1 - a0) for a0, a1, _, r0, r1, _ in self.atoms]
        self.order = sorted(range(len(self.atoms)), key=lambda a: -sizes[a])
        self.team = WorkSharing(1)
        self.row_chunks = [(0, self.R)]

    def share_work(self, team: WorkSharing) -> None:
        """Run the products and the update on ``team``; the rows of the update are cut into
        pieces of about equal size, four per thread."""
        self.team = team
        n = 1 if team.n == 1 else 4 * team.n
        cum = np.cumsum(self.row_len)
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n) / n) if n > 1 else []
        bounds = np.unique(np.r_[0, cuts, self.R])
        self.row_chunks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))

    def _owned(self, a: int, j: int):
        """Gathered columns of block ``a`` that its ``j``-th probe reads (slice or mask)."""
        mask = self.masks[a]
        return slice(None) if mask is None else mask[j]

    def _init_parameters(self, init):
        theta = np.zeros(self.n_params, dtype=np.float32)
        bias = np.empty(self.P * self.C, dtype=np.float32)
        for p, s in enumerate(self.sets):
            w0, b0 = init(s.size, self.C, self.seeds[p])
            bias[p * self.C : (p + 1) * self.C] = b0
            for a, (a0, a1, probes, _, _, off) in enumerate(self.atoms):
                j = np.searchsorted(probes, p)
                if j < probes.size and probes[j] == p:
                    n_a, own = a1 - a0, self._owned(a, j)
                    blk = theta[off : off + probes.size * self.C * n_a].reshape(-1, n_a)
                    cols = self.cols[a0:a1][own]
                    blk[j * self.C : (j + 1) * self.C, own] = w0[:, np.searchsorted(s, cols)]
        dev = self.device
        self.theta = torch.from_numpy(theta).to(dev)
        self.bias = torch.from_numpy(bias).to(dev)
        self.g_bias = torch.zeros_like(self.bias)
        self.moments = [torch.zeros_like(self.theta), torch.zeros_like(self.theta)]
        self.bias_moments = [torch.zeros_like(self.bias), torch.zeros_like(self.bias)]
        self.t = 0
        cdtype = torch.bfloat16 if self.half else torch.float32
        self.grad = torch.zeros(self.n_params, dtype=cdtype, device=dev)
        self.theta16 = self.theta.to(torch.bfloat16) if self.half else None
        weights = self.theta16 if self.half else self.theta
        self.W = [self._view(weights, a) for a in self.atoms]
        self.gW = [self._view(self.grad, a) for a in self.atoms]
        self.gmask = [
            None
            if m is None
            else torch.as_tensor(np.repeat(m, self.C, axis=0), dtype=cdtype, device=dev)
            for m in self.masks
        ]
        rows = np.add.reduceat(theta.astype(np.float64) ** 2, self.row_off) if theta.size else []
        self.row_sq = np.asarray(rows, dtype=np.float64)

    def _view(self, flat, atom):
        a0, a1, _, r0, r1, off = atom
        return flat[off : off + (r1 - r0) * (a1 - a0)].view(r1 - r0, a1 - a0)

    def _buf(self, name, shape, dtype=torch.float32):
        """A reusable scratch tensor (large temporaries cost page faults on every step)."""
        key = (name, tuple(shape), dtype)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(shape, dtype=dtype, device=self.device)
        return self._buffers[key]

    # -------------------------------------------------------------- the step
    def prepare(self, xb: torch.Tensor) -> torch.Tensor:
        """The gathered columns of a batch, in the compute dtype."""
        xg = xb[:, self.c0 : self.c0 + self.cols.size] if self.contiguous else None
        if xg is None:
            xg = xb.index_select(1, self.gather)
        want = torch.bfloat16 if self.half else torch.float32
        if xg.dtype == want:
            return xg
        return self._buf("x", xg.shape, want).copy_(xg)

    def forward(self, xg: torch.Tensor) -> torch.Tensor:
        """Logits (float32), shape (P * n_out, batch)."""
        B = xg.shape[0]
        Z = self._buf("Z", (self.R, B), xg.dtype)
        tasks = []
        for a in self.order:
            a0, a1, _, r0, r1, _ = self.atoms[a]
            tasks.append(functools.partial(torch.mm, self.W[a], xg[:, a0:a1].T, out=Z[r0:r1]))
        self.team.run(tasks)
        if self.half:
            Z = self._buf("Z32", (self.R, B)).copy_(Z)
        if self.identity_rows:
            return Z.add_(self.bias[:, None])
        out = self._buf("logits", (self.P * self.C, B)).copy_(self.bias[:, None])
        return out.index_add_(0, self.row_out, Z)

    def backward(self, xg: torch.Tensor, G: torch.Tensor) -> None:
        """Fill the gradient buffers from d(loss)/d(logits) ``G`` (P * n_out, batch)."""
        torch.sum(G, dim=1, out=self.g_bias)
        B = G.shape[1]
        if not self.identity_rows:
            G = torch.index_select(G, 0, self.row_out, out=self._buf("Gr", (self.R, B)))
        if self.half:
            G = self._buf("G16", (self.R, B), torch.bfloat16).copy_(G)
        tasks = []
        for a in self.order:
            a0, a1, _, r0, r1, _ = self.atoms[a]
            if self.gmask[a] is None:
                task = functools.partial(torch.mm, G[r0:r1], xg[:, a0:a1], out=self.gW[a])
            else:
                task = functools.partial(
                    _masked_mm, G[r0:r1], xg[:, a0:a1], self.gW[a], self.gmask[a]
                )
            tasks.append(task)
        self.team.run(tasks)

    def step(self, l1: float, l2: float, lr: float, betas=(0.9, 0.999), eps=1e-8) -> None:
        """Elastic-net gradient and one Adam step on every weight and bias."""
        self.t += 1
        if self.fused:
            self._fused_step(l1, l2, lr, betas, eps)
        else:
            self._torch_step(l1, l2, lr, betas, eps)

    def _row_scale(self, l2: float) -> np.ndarray:
        """``l2 / ||W_p||`` of each row's probe, from the rows' sums of squares."""
        if not l2:
            return np.zeros(self.R, dtype=np.float32)
        sq = np.bincount(self.row_probe_np, weights=self.row_sq, minlength=self.P)
        norms = np.maximum(np.sqrt(sq).astype(np.float32), np.float32(1e-30))
        return (np.float32(l2) / norms)[self.row_probe_np]

    def _fused_step(self, l1, l2, lr, betas, eps):
        from . import _probe_kernel as kernel

        empty16 = np.empty(0, dtype=np.uint16)
        grad = self.grad.numpy() if not self.half else np.empty(0, dtype=np.float32)
        grad16 = self.grad.view(torch.int16).numpy().view(np.uint16) if self.half else empty16
        theta16 = self.theta16.view(torch.int16).numpy().view(np.uint16) if self.half else empty16
        m, v = (t.numpy() for t in self.moments)
        hp = (float(l1), self.t, float(lr), float(betas[0]), float(betas[1]), float(eps))
        rows = functools.partial(
            kernel.joint_rows, self.theta.numpy(), grad, grad16, m, v, self.row_off,
            self.row_len, self._row_scale(l2), self.row_sq, theta16,
        )  # fmt: skip
        self.team.run([functools.partial(rows, r0, r1, *hp) for r0, r1 in self.row_chunks])
        mb, vb = (t.numpy() for t in self.bias_moments)
        kernel.adam_bias(self.bias.numpy(), self.g_bias.numpy(), mb, vb, *hp[1:])

    def _torch_step(self, l1, l2, lr, betas, eps):
        g = self.grad
        if self.half:
            g = self._buf("g32", (self.n_params,)).copy_(self.grad)
        if l1:
            g.add_(torch.sign(self.theta, out=self._buf("sign", (self.n_params,))), alpha=l1)
        if l2:
            rows = self._buf("rows", (self.R,))
            weights = [self._view(self.theta, a) for a in self.atoms]
            for atom, W in zip(self.atoms, weights):
                torch.linalg.vecdot(W, W, dim=1, out=rows[atom[3] : atom[4]])
            norms = torch.zeros(self.P, device=self.device).index_add_(0, self.row_probe, rows)
            scale = (l2 / norms.sqrt_().clamp_min_(1e-30))[self.row_probe]
            for atom, W in zip(self.atoms, weights):
                self._view(g, atom).addcmul_(W, scale[atom[3] : atom[4], None])
        steps = [torch.full((), float(self.t), device=self.device)] * 2
        torch._fused_adam_(
            [self.theta, self.bias], [g, self.g_bias], [self.moments[0], self.bias_moments[0]],
            [self.moments[1], self.bias_moments[1]], [], steps, lr=lr, beta1=betas[0],
            beta2=betas[1], weight_decay=0.0, eps=eps, amsgrad=False, maximize=False,
        )  # fmt: skip
        if self.half:
            self.theta16.copy_(self.theta)

    # ------------------------------------------------------------- results
    def extract(self, p: int, theta: np.ndarray, bias: np.ndarray):
        """(weight (n_out, k), bias (n_out,)) of probe ``p`` in sorted-neuron order.

        ``theta`` and ``bias`` are the flat buffers as numpy arrays (moved off the device once).
        """
        s = self.sets[p]
        w = np.empty((self.C, s.size), dtype=np.float32)
        for a, (a0, a1, probes, r0, r1, off) in enumerate(self.atoms):
            j = np.searchsorted(probes, p)
            if j < probes.size and probes[j] == p:
                own = self._owned(a, j)
                blk = theta[off : off + (r1 - r0) * (a1 - a0)].reshape(r1 - r0, a1 - a0)
                cols = self.cols[a0:a1][own]
                w[:, np.searchsorted(s, cols)] = blk[j * self.C : (j + 1) * self.C, own]
        b = bias[p * self.C : (p + 1) * self.C].copy()
        return w, b

    def macs_per_step(self, batch_size: int) -> int:
        """Multiply-adds of the two products of one full batch."""
        return 2 * int(batch_size) * int(self.n_params)


@contextlib.contextmanager
def intra_op_threads(n):
    """Temporarily use ``n`` intra-op threads in torch and numba (no change when None)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    nb_old = None
    with contextlib.suppress(ImportError):
        import numba

        nb_old = numba.get_num_threads()
        numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        torch.set_num_threads(old)
        if nb_old is not None:
            numba.set_num_threads(nb_old)


def choose_threads(model: JointProbes, batch_size: int, device: str) -> int | None:
    """Threads for the torch engine: all of torch's when a step is matmul bound, else 1."""
    if device != "cpu":
        return None
    if model.macs_per_step(batch_size) >= PARALLEL_MACS:
        return torch.get_num_threads()
    return 1


def fit(model, X, y, kind, n_out, l1, l2, lr, batch_size, epochs, device, progress, threads=1):
    """Train ``model``: on the CPU its products and update are shared by ``threads`` threads
    (:class:`WorkSharing`), each running single-threaded kernels; elsewhere ``threads`` is
    ignored."""
    team = WorkSharing(threads if device == "cpu" and threads else 1)
    model.share_work(team)
    try:
        with intra_op_threads(1 if device == "cpu" else None):
            _loop(model, X, y, kind, n_out, l1, l2, lr, batch_size, epochs, device, progress)
    finally:
        model.share_work(WorkSharing(1))
        team.close()


def _loop(model, X, y, kind, n_out, l1, l2, lr, batch_size, epochs, device, progress):
    """The training loop: batches in data order, hand-written gradients, one fused step."""
    n = X.shape[0]
    y_t = torch.from_numpy(y).to(device)
    source = RowSource(X, batch_size, device)
    bar = progress_bar(
        total=epochs * math.ceil(n / batch_size),
        desc="probes",
        unit="step",
        progress=progress,
        leave=False,
    )
    P, C = model.P, n_out
    for _ in range(epochs):
        for c0, chunk in source.chunks():
            m = chunk.shape[0]
            if kind == "classification":  # one-hot targets of this chunk, (n_out, m)
                onehot_T = torch.zeros(n_out, m, device=device)
                onehot_T[y_t[c0 : c0 + m], torch.arange(m, device=device)] = 1.0
            for b0 in range(0, m, batch_size):
                xg = model.prepare(chunk[b0 : b0 + batch_size])
                B = xg.shape[0]
                logits = model.forward(xg)
                if kind == "classification":
                    G = torch.softmax(logits.view(P, C, B), dim=1)
                    G.sub_(onehot_T[:, b0 : b0 + B]).mul_(1.0 / B)
                    G = G.view(P * C, B)
                else:
                    G = logits.sub_(y_t[c0 + b0 : c0 + b0 + B]).mul_(2.0 / B)
                model.backward(xg, G)
                model.step(l1, l2, lr)
            bar.update(math.ceil(m / batch_size))
    bar.close()
