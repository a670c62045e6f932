"""Compiled (numba) training loop for one dense probe on the CPU.

One call runs a whole epoch of the paper probe over a contiguous column range of a
C-contiguous float32 matrix: per batch, the logits, the loss gradient with respect to the
logits, the weight gradient (accumulated while a row is still in cache), the elastic-net
penalty terms and the Adam update, with the same formulas and float32 arithmetic as the
torch path of :mod:`redundancy.probes`. Rows are processed four at a time and columns in
tiles of ``_TILE``, two weight rows at a time, so that the row tiles are read from memory
once and then served from L1, and each weight or gradient element loaded serves four rows.

Only the dot products and the gradient accumulation may be reassociated by the compiler
(``reassoc``/``contract``, needed to vectorise the sums); the softmax, the penalties and
Adam use strict IEEE float32 arithmetic (the Frobenius norm of the L2 term is accumulated
in float64, then rounded to float32). Everything is single-threaded and deterministic.

numba caches the compiled code on disk. When the package folder is not writable, the
cache goes to ``cache_dir("numba")`` (``$REDUNDANCY_CACHE/numba``) unless
``NUMBA_CACHE_DIR`` is already set.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

logger = logging.getLogger(__name__)


def _configure_cache() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = os.path.dirname(os.path.abspath(__file__))
    pycache = os.path.join(here, "__pycache__")
    probe = pycache if os.path.isdir(pycache) else here
    if os.access(probe, os.W_OK):
        return
    try:
        from .._utils import cache_dir

        os.environ["NUMBA_CACHE_DIR"] = str(cache_dir("numba"))
    except OSError:  # pragma: no cover - no writable cache anywhere: numba falls back itself
        pass


_configure_cache()

try:
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - exercised when numba is not installed
    numba = None
    AVAILABLE = False
else:
    AVAILABLE = True

# Columns per tile (4 rows x 2 KB stay in L1 while each output row passes over them).
_TILE = 512
# Flags for the dot products / gradient sums only: reassociation and FMA contraction.
_FAST = {"reassoc", "contract"}


def _jit(fastmath, parallel=False):
    def deco(fn):
        if not AVAILABLE:
            return fn
        return njit(
            cache=True, nogil=True, fastmath=fastmath, error_model="numpy", parallel=parallel
        )(fn)

    return deco


# Every batch is cut into this many fixed blocks of rows, each with its own gradient buffer;
# the blocks run in parallel (numba threads) and their gradients are added in block order,
# so the numbers do not depend on how many threads ran them.
ROW_BLOCKS = 2


# ----------------------------------------------------------------- dot products
@_jit(_FAST)
def _logits4(x0, x1, x2, x3, W, bias, Z):
    """Z[u, j] = W[j] . x_u + bias[j] for four rows ``x_u`` (1-D views of length k).

    Columns are taken in tiles of ``_TILE`` so that the four row tiles stay in L1 while
    the rows of ``W`` pass over them, two at a time (eight running sums in registers).
    """
    R, k = W.shape
    for j in range(R):
        for u in range(4):
            Z[u, j] = 0.0
    for t0 in range(0, k, _TILE):
        t1 = min(k, t0 + _TILE)
        a0 = x0[t0:t1]
        a1 = x1[t0:t1]
        a2 = x2[t0:t1]
        a3 = x3[t0:t1]
        j = 0
        while j + 1 < R:
            wa = W[j, t0:t1]
            wb = W[j + 1, t0:t1]
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s2 = np.float32(0.0)
            s3 = np.float32(0.0)
            r0 = np.float32(0.0)
            r1 = np.float32(0.0)
            r2 = np.float32(0.0)
            r3 = np.float32(0.0)
            for i in range(t1 - t0):
                va = wa[i]
                vb = wb[i]
                e0 = a0[i]
                e1 = a1[i]
                e2 = a2[i]
                e3 = a3[i]
                s0 += va * e0
                s1 += va * e1
                s2 += va * e2
                s3 += va * e3
                r0 += vb * e0
                r1 += vb * e1
                r2 += vb * e2
                r3 += vb * e3
            Z[0, j] += s0
            Z[1, j] += s1
            Z[2, j] += s2
            Z[3, j] += s3
            Z[0, j + 1] += r0
            Z[1, j + 1] += r1
            Z[2, j + 1] += r2
            Z[3, j + 1] += r3
            j += 2
        if j < R:
            wa = W[j, t0:t1]
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s2 = np.float32(0.0)
            s3 = np.float32(0.0)
            for i in range(t1 - t0):
                va = wa[i]
                s0 += va * a0[i]
                s1 += va * a1[i]
                s2 += va * a2[i]
                s3 += va * a3[i]
            Z[0, j] += s0
            Z[1, j] += s1
            Z[2, j] += s2
            Z[3, j] += s3
    for j in range(R):
        for u in range(4):
            Z[u, j] += bias[j]


@_jit(_FAST)
def _accumulate4(x0, x1, x2, x3, G, gW):
    """gW[j] += sum_u G[u, j] * x_u, by column tiles and pairs of rows as in :func:`_logits4`."""
    R, k = gW.shape
    for t0 in range(0, k, _TILE):
        t1 = min(k, t0 + _TILE)
        a0 = x0[t0:t1]
        a1 = x1[t0:t1]
        a2 = x2[t0:t1]
        a3 = x3[t0:t1]
        j = 0
        while j + 1 < R:
            ga = gW[j, t0:t1]
            gb = gW[j + 1, t0:t1]
            p0 = G[0, j]
            p1 = G[1, j]
            p2 = G[2, j]
            p3 = G[3, j]
            q0 = G[0, j + 1]
            q1 = G[1, j + 1]
            q2 = G[2, j + 1]
            q3 = G[3, j + 1]
            for i in range(t1 - t0):
                e0 = a0[i]
                e1 = a1[i]
                e2 = a2[i]
                e3 = a3[i]
                ga[i] += p0 * e0 + p1 * e1 + p2 * e2 + p3 * e3
                gb[i] += q0 * e0 + q1 * e1 + q2 * e2 + q3 * e3
            j += 2
        if j < R:
            ga = gW[j, t0:t1]
            p0 = G[0, j]
            p1 = G[1, j]
            p2 = G[2, j]
            p3 = G[3, j]
            for i in range(t1 - t0):
                ga[i] += p0 * a0[i] + p1 * a1[i] + p2 * a2[i] + p3 * a3[i]


@_jit(_FAST)
def _logits1(x0, W, bias, Z):
    R, k = W.shape
    for j in range(R):
        w = W[j]
        s0 = np.float32(0.0)
        for i in range(k):
            s0 += w[i] * x0[i]
        Z[0, j] = s0 + bias[j]


@_jit(_FAST)
def _accumulate1(x0, G, gW):
    R, k = gW.shape
    for j in range(R):
        g = gW[j]
        g0 = G[0, j]
        for i in range(k):
            g[i] += g0 * x0[i]


# ------------------------------------------------------------ strict float32 parts
@_jit(False)
def _output_grad(Z, G, n_rows, targets, t0, classification, scale):
    """G[u] = (softmax(Z[u]) - onehot(y)) * scale, or (Z[u] - y) * scale (regression)."""
    R = Z.shape[1]
    for u in range(n_rows):
        if classification:
            m = Z[u, 0]
            for j in range(1, R):
                if Z[u, j] > m:
                    m = Z[u, j]
            tot = np.float32(0.0)
            for j in range(R):
                e = np.float32(math.exp(Z[u, j] - m))
                G[u, j] = e
                tot += e
            c = int(targets[t0 + u])
            for j in range(R):
                p = G[u, j] / tot
                if j == c:
                    p = p - np.float32(1.0)
                G[u, j] = p * scale
        else:
            G[u, 0] = (Z[u, 0] - np.float32(targets[t0 + u])) * scale


@_jit(False)
def _penalise_and_step(W, bias, gW, gb, mW, vW, mb, vb, l1, l2, step, lr, beta1, beta2, eps):
    """Add ``l1 sign(W) + l2 W / ||W||`` to gW, then one Adam step on W and bias."""
    n = W.size
    if l2 != 0.0:
        sq = 0.0
        for i in range(n):
            sq += np.float64(W[i]) * np.float64(W[i])
        norm = np.float32(math.sqrt(sq))
        if norm < np.float32(1e-30):
            norm = np.float32(1e-30)
        s2 = np.float32(l2) / norm
    else:
        s2 = np.float32(0.0)
    s1 = np.float32(l1)
    bc1 = 1.0 - beta1**step
    bc2 = 1.0 - beta2**step
    step_size = np.float32(lr / bc1)
    bc2_sqrt = np.float32(math.sqrt(bc2))
    b1 = np.float32(beta1)
    b2 = np.float32(beta2)
    c1 = np.float32(1.0 - beta1)
    c2 = np.float32(1.0 - beta2)
    e = np.float32(eps)
    for i in range(n):
        w = W[i]
        g = gW[i]
        if l1 != 0.0:
            sg = np.float32(0.0)
            if w > 0:
                sg = np.float32(1.0)
            elif w < 0:
                sg = np.float32(-1.0)
            g = g + s1 * sg
        if l2 != 0.0:
            g = g + w * s2
        m = mW[i] * b1 + g * c1
        v = vW[i] * b2 + g * g * c2
        mW[i] = m
        vW[i] = v
        W[i] = w - step_size * m / (np.float32(math.sqrt(v)) / bc2_sqrt + e)
    for i in range(bias.size):
        g = gb[i]
        m = mb[i] * b1 + g * c1
        v = vb[i] * b2 + g * g * c2
        mb[i] = m
        vb[i] = v
        bias[i] = bias[i] - step_size * m / (np.float32(math.sqrt(v)) / bc2_sqrt + e)


@_jit(False)
def _block_gradient(X, r0, r1, c0, c1, targets, classification, scale, W2, bias, gW2, gb, Z, G):
    """Accumulate the gradient of rows ``r0:r1`` into ``gW2`` and ``gb`` (zeroed here)."""
    gW2[:] = 0.0
    gb[:] = 0.0
    R = bias.size
    r = r0
    while r < r1:
        if r1 - r >= 4:
            x0 = X[r, c0:c1]
            x1 = X[r + 1, c0:c1]
            x2 = X[r + 2, c0:c1]
            x3 = X[r + 3, c0:c1]
            _logits4(x0, x1, x2, x3, W2, bias, Z)
            _output_grad(Z, G, 4, targets, r, classification, scale)
            _accumulate4(x0, x1, x2, x3, G, gW2)
            n_done = 4
        else:
            x0 = X[r, c0:c1]
            _logits1(x0, W2, bias, Z)
            _output_grad(Z, G, 1, targets, r, classification, scale)
            _accumulate1(x0, G, gW2)
            n_done = 1
        for uu in range(n_done):
            for j in range(R):
                gb[j] += G[uu, j]
        r += n_done


@_jit(False, parallel=True)
def train_epoch(
    X,
    c0,
    targets,
    classification,
    W,
    bias,
    gW,
    gb,
    mW,
    vW,
    mb,
    vb,
    step0,
    batch_size,
    lr,
    beta1,
    beta2,
    eps,
    l1,
    l2,
):
    """One epoch over the rows of ``X`` (C-contiguous float32), reading its columns
    ``c0 : c0 + k`` where ``k = W.size // R`` and ``R = bias.size``.

    ``W`` (flat, row-major ``(R, k)``), ``bias``, the Adam moments and the gradient
    buffers (flat like ``W``) are updated in place; returns the step count after the epoch.
    Each batch is split into :data:`ROW_BLOCKS` blocks of rows (multiples of four) whose
    gradients are computed in parallel and added in block order.
    """
    n_rows = X.shape[0]
    R = bias.size
    k = W.size // R
    c1 = c0 + k
    W2 = W.reshape((R, k))
    gW2 = gW.reshape((R, k))
    nb = ROW_BLOCKS
    gWb = np.empty((nb, R, k), dtype=np.float32)
    gbb = np.empty((nb, R), dtype=np.float32)
    Zb = np.empty((nb, 4, R), dtype=np.float32)
    Gb = np.empty((nb, 4, R), dtype=np.float32)
    step = step0
    for b0 in range(0, n_rows, batch_size):
        m = min(batch_size, n_rows - b0)
        if classification:
            scale = np.float32(1.0 / m)
        else:
            scale = np.float32(2.0 / m)
        per = ((m + nb - 1) // nb + 3) // 4 * 4  # rows per block, a multiple of four
        for blk in numba.prange(nb):
            r0 = min(b0 + blk * per, b0 + m)
            r1 = min(r0 + per, b0 + m)
            _block_gradient(
                X, r0, r1, c0, c1, targets, classification, scale,
                W2, bias, gWb[blk], gbb[blk], Zb[blk], Gb[blk],
            )  # fmt: skip
        gW2[:] = gWb[0]
        gb[:] = gbb[0]
        for blk in range(1, nb):
            gW2 += gWb[blk]
            gb += gbb[blk]
        step += 1
        _penalise_and_step(W, bias, gW, gb, mW, vW, mb, vb, l1, l2, step, lr, beta1, beta2, eps)
    return step


# ------------------------------------------------------- joint probes: one fused step
if AVAILABLE:
    from numba.core import types as _nbtypes
    from numba.extending import intrinsic

    @intrinsic
    def _bits_of(typingctx, x):
        """The IEEE bits of a float32 as a uint32 (no conversion)."""
        if x != _nbtypes.float32:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(_nbtypes.uint32))

        return _nbtypes.uint32(_nbtypes.float32), codegen

    @intrinsic
    def _float_of(typingctx, x):
        """The float32 whose IEEE bits are the low 32 bits of the integer ``x``."""
        if not isinstance(x, _nbtypes.Integer):
            return None

        def codegen(context, builder, signature, args):
            value = args[0]
            if signature.args[0].bitwidth > 32:
                value = builder.trunc(value, context.get_value_type(_nbtypes.uint32))
            return builder.bitcast(value, context.get_value_type(_nbtypes.float32))

        return _nbtypes.float32(x), codegen

else:  # pragma: no cover - the kernels below are never called without numba

    def _bits_of(x):
        return np.array(x, dtype=np.float32).view(np.uint32)[()]

    def _float_of(x):
        return np.array(x & 0xFFFFFFFF, dtype=np.uint32).view(np.float32)[()]


@_jit(False)
def _widen_bf16(src, dst):
    """dst[i] = float32 value of the bfloat16 bits src[i] (exact)."""
    for i in range(src.size):
        dst[i] = _float_of(np.uint32(src[i]) << np.uint32(16))


@_jit(False)
def _narrow_bf16(src, dst):
    """dst[i] = bfloat16 bits of src[i], rounded to nearest even (torch's conversion)."""
    for i in range(src.size):
        x = src[i]
        if x != x:
            dst[i] = np.uint16(0x7FC0)
        else:
            b = _bits_of(x)
            dst[i] = np.uint16(
                (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> 16
            )


@_jit(_FAST)
def _sum_squares(w):
    """sum(w ** 2), accumulated in float64 (vectorised: the order is fixed by the code)."""
    s = 0.0
    for i in range(w.size):
        x = np.float64(w[i])
        s += x * x
    return s


@_jit(False)
def _adam_row(w, g, m, v, s1, s2, step_size, bc2_sqrt, b1, b2, c1, c2, e):
    """Penalised gradient ``g + s1 sign(w) + s2 w``, then one Adam step, for one weight row."""
    for i in range(w.size):
        x = w[i]
        sg = np.float32(0.0)
        if x > 0:
            sg = np.float32(1.0)
        elif x < 0:
            sg = np.float32(-1.0)
        gi = g[i] + s1 * sg + x * s2
        mi = m[i] * b1 + gi * c1
        vi = v[i] * b2 + gi * gi * c2
        m[i] = mi
        v[i] = vi
        w[i] = x - step_size * mi / (np.float32(math.sqrt(vi)) / bc2_sqrt + e)


@_jit(False)
def _adam_constants(step, lr, beta1, beta2):
    """(step size, sqrt of the second bias correction) of Adam step ``step`` as float32."""
    bc1 = 1.0 - beta1**step
    bc2 = 1.0 - beta2**step
    return np.float32(lr / bc1), np.float32(math.sqrt(bc2))


@_jit(False)
def joint_rows(
    theta,
    grad,
    grad16,
    m,
    v,
    row_off,
    row_len,
    row_scale,
    row_sq,
    theta16,
    r_start,
    r_stop,
    l1,
    step,
    lr,
    beta1,
    beta2,
    eps,
):
    """Elastic-net gradient and Adam update of the weight rows ``r_start:r_stop`` of the
    joint probes (the caller shares the rows out among threads; rows are independent, so the
    result does not depend on how).

    Row ``r`` of the flat buffers is ``[row_off[r], row_off[r] + row_len[r])``; its L2 term
    is ``row_scale[r] * W`` (``l2 / ||W_p||`` of the row's probe, computed by the caller from
    ``row_sq``). The gradient is ``grad`` (float32) or, when ``grad16`` is not empty, the
    bfloat16 bits ``grad16``. After the update ``row_sq[r]`` holds the row's new sum of
    squares (float64) and, when ``theta16`` is not empty, ``theta16`` the bfloat16 bits of
    the new weights.
    """
    step_size, bc2_sqrt = _adam_constants(step, lr, beta1, beta2)
    b1 = np.float32(beta1)
    b2 = np.float32(beta2)
    c1 = np.float32(1.0 - beta1)
    c2 = np.float32(1.0 - beta2)
    e = np.float32(eps)
    s1 = np.float32(l1)
    width = 0
    for r in range(r_start, r_stop):
        width = max(width, row_len[r])
    wide16 = grad16.size > 0
    scratch = np.empty(width if wide16 else 0, dtype=np.float32)
    for r in range(r_start, r_stop):
        a = row_off[r]
        b = a + row_len[r]
        if wide16:
            g = scratch[: b - a]
            _widen_bf16(grad16[a:b], g)
        else:
            g = grad[a:b]
        w = theta[a:b]
        _adam_row(w, g, m[a:b], v[a:b], s1, row_scale[r], step_size, bc2_sqrt, b1, b2, c1, c2, e)
        row_sq[r] = _sum_squares(w)
        if theta16.size > 0:
            _narrow_bf16(w, theta16[a:b])


@_jit(False)
def adam_bias(bias, gbias, mb, vb, step, lr, beta1, beta2, eps):
    """One Adam step on the (unpenalised) biases."""
    step_size, bc2_sqrt = _adam_constants(step, lr, beta1, beta2)
    b1 = np.float32(beta1)
    b2 = np.float32(beta2)
    c1 = np.float32(1.0 - beta1)
    c2 = np.float32(1.0 - beta2)
    e = np.float32(eps)
    for i in range(bias.size):
        gi = gbias[i]
        mi = mb[i] * b1 + gi * c1
        vi = vb[i] * b2 + gi * gi * c2
        mb[i] = mi
        vb[i] = vi
        bias[i] = bias[i] - step_size * mi / (np.float32(math.sqrt(vi)) / bc2_sqrt + e)
