"""Streaming moments, neuron correlations and linear CKA between layers.

Everything here starts from one streaming pass over the rows of an activation matrix
``X`` of shape ``(n_instances, n_neurons)`` (usually ``acts.X`` from
:func:`redundancy.extract.extract`, possibly a memory-mapped float16 array). The pass
accumulates the shifted sum and the shifted cross-product matrix in float64 while doing
each chunk's matrix product in float32 (BLAS ``ssyrk`` on the CPU, ``torch.matmul`` on a
GPU). From those :class:`Moments` we derive

* the Pearson correlation between every pair of neurons (:func:`correlation`), the input
  of the paper's correlation clustering (:mod:`redundancy.clustering`);
* linear CKA (Kornblith et al., 2019) between every pair of layers (:func:`layer_cka`),
  because for centred data every quantity CKA needs is a block of the centred
  cross-product matrix, so no second pass over the data is needed;
* linear CKA between the layers of two models seen on the same instances
  (:func:`cross_cka`).

The small textbook helpers :func:`gram_linear`, :func:`center_gram`, :func:`cka` and
:func:`linear_cka` state the definitions directly (Gram-matrix and feature-space forms);
they are quadratic in ``n_instances`` or hold whole matrices, and serve as references for
the tests and for readers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas

from redundancy._utils import check_choice, progress_bar, resolve_device

logger = logging.getLogger(__name__)

__all__ = [
    "Moments",
    "moments",
    "correlation",
    "layer_cka",
    "cross_cka",
    "correlation_from_moments",
    "cka_from_moments",
    "gram_linear",
    "center_gram",
    "cka",
    "linear_cka",
    "debiased_cka",
    "cka_uncertainty",
]

# Rows of a d x d matrix handled at once by the blockwise helpers below; keeps temporaries
# around 1024 x d (40 MB of float32 for d = 9,984) instead of d x d.
_ROW_BLOCK = 1024


@dataclass
class Moments:
    """First and second moments of the columns of an activation matrix.

    Attributes
    ----------
    n : int
        Number of rows (instances) seen.
    mean : numpy.ndarray of shape (d,), float64
        Column means.
    cov : numpy.ndarray of shape (d, d), float64
        Sample covariance (normalised by ``n - 1``, as :func:`numpy.cov`). Exactly
        symmetric. Correlations and CKA do not depend on the normalisation.

    Notes
    -----
    Usually built by :func:`moments`; reused by :func:`correlation`,
    :func:`layer_cka` and :func:`cka_from_moments` so that one pass over the data serves
    all of them.
    """

    n: int
    mean: np.ndarray
    cov: np.ndarray

    @property
    def n_features(self) -> int:
        """Number of columns (neurons) ``d``."""
        return int(self.mean.shape[0])

    @property
    def std(self) -> np.ndarray:
        """Sample standard deviation of each column, float64 (``ddof=1``)."""
        return np.sqrt(np.clip(np.diagonal(self.cov), 0.0, None))


# --------------------------------------------------------------------------- inputs


def _flat_view(X, *, caller: str, name: str = "X"):
    """Return ``(X2d, n_layers)`` where ``X2d`` is ``(n, d)`` without copying when possible.

    Accepts an ``Activations``-like object (anything with an ``acts`` attribute), a 3-D
    ``(n, n_layers, n_hidden)`` array (flattened to ``(n, n_layers * n_hidden)``, a view for
    C-contiguous arrays and memory maps) or a 2-D array. ``n_layers`` is ``None`` for 2-D
    input.
    """
    if hasattr(X, "acts") and not isinstance(X, np.ndarray):
        X = X.acts
    if not hasattr(X, "ndim") or not hasattr(X, "shape"):
        X = np.asarray(X)
    if X.ndim == 3:
        n, n_layers, n_hidden = X.shape
        return X.reshape(n, n_layers * n_hidden), int(n_layers)
    if X.ndim != 2:
        raise ValueError(
            f"The {name!r} parameter of {caller} must be a 2-D array (n_instances, n_neurons) "
            f"or a 3-D array (n_instances, n_layers, n_hidden). Got an array of shape "
            f"{tuple(X.shape)} instead."
        )
    return X, None


def _check_rows(X, *, caller: str, name: str = "X") -> None:
    if X.shape[0] < 2:
        raise ValueError(
            f"The {name!r} parameter of {caller} must have at least 2 rows (instances) to "
            f"estimate a covariance. Got {X.shape[0]} instead."
        )
    if X.shape[1] < 1:
        raise ValueError(f"The {name!r} parameter of {caller} has no columns (neurons).")


def _check_chunk_size(chunk_size, caller: str) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
        raise TypeError(
            f"The 'chunk_size' parameter of {caller} must be a positive int. "
            f"Got {chunk_size!r} instead."
        )
    if chunk_size < 1:
        raise ValueError(
            f"The 'chunk_size' parameter of {caller} must be a positive int. "
            f"Got {chunk_size!r} instead."
        )
    return int(chunk_size)


def _check_layers(d: int, n_layers, *, caller: str, name: str = "n_layers") -> int:
    if n_layers is None:
        raise ValueError(
            f"The {name!r} parameter of {caller} is required for 2-D input or Moments: pass "
            f"the number of layers (13 for a 12-layer model with its embedding layer), or "
            f"pass a 3-D array (n_instances, n_layers, n_hidden) so it can be inferred."
        )
    if isinstance(n_layers, bool) or not isinstance(n_layers, (int, np.integer)) or n_layers < 1:
        raise ValueError(
            f"The {name!r} parameter of {caller} must be a positive int. Got {n_layers!r} instead."
        )
    if d % n_layers:
        raise ValueError(
            f"The {name!r} parameter of {caller} must divide the number of neurons {d} "
            f"(neuron i belongs to layer i // n_hidden). Got {n_layers} instead."
        )
    return int(n_layers)


def _first_mean(X, chunk_size: int, dtype) -> np.ndarray:
    """Mean of the first chunk of rows, rounded to ``dtype``: the shift of the streaming pass."""
    rows = np.asarray(X[: min(chunk_size, X.shape[0])])
    return rows.mean(axis=0, dtype=np.float64).astype(dtype)


def _shifted_chunk(X, start: int, stop: int, shift: np.ndarray) -> np.ndarray:
    """``X[start:stop] - shift`` as a new C-contiguous array of ``shift.dtype``.

    Reads only that slice of ``X`` (a memory map stays on disk otherwise) and never writes
    into ``X``; a float16 chunk is converted on the fly by the subtraction.
    """
    return np.subtract(np.asarray(X[start:stop]), shift, dtype=shift.dtype)


def _use_torch(device: str) -> bool:
    """Chunk products go through torch on any device but the CPU (numpy/BLAS there)."""
    return device != "cpu"


def _progress(n: int, *, progress: bool, desc: str):
    return progress_bar(
        total=n,
        desc=desc,
        unit="row",
        unit_scale=True,
        progress=progress,
        leave=False,
    )


# ------------------------------------------------------------------ blockwise helpers


def _finish_moments(n: int, shift, s1: np.ndarray, S: np.ndarray, name: str) -> np.ndarray:
    """The mean, from the summed partials of a shifted pass; ``S`` (full, symmetric) is
    turned into the sample covariance in place. ``name``: the data's parameter name."""
    mean = shift + s1 / n
    if not np.all(np.isfinite(mean)):
        raise ValueError(
            f"The '{name}' parameter of moments contains NaN or infinite values; clean or "
            "mask them before computing correlations."
        )
    # Centre and normalise in place, by row blocks: S <- (S - s1 s1^T / n) / (n - 1).
    # s1_i * s1_j is the same float as s1_j * s1_i, so S stays exactly symmetric.
    for i0 in range(0, S.shape[0], _ROW_BLOCK):
        i1 = min(i0 + _ROW_BLOCK, S.shape[0])
        S[i0:i1] -= np.outer(s1[i0:i1], s1) / n
        S[i0:i1] /= n - 1
    return mean


def _mirror_lower(A: np.ndarray) -> None:
    """Copy the lower triangle of the square C-ordered ``A`` onto its upper triangle, in place."""
    d = A.shape[0]
    for i0 in range(0, d, _ROW_BLOCK):
        i1 = min(i0 + _ROW_BLOCK, d)
        A[i0:i1, i1:] = A[i1:, i0:i1].T
        D = A[i0:i1, i0:i1]
        iu = np.triu_indices(i1 - i0, 1)
        D[iu] = D.T[iu]


def _add_lower(acc: np.ndarray, Q: np.ndarray) -> None:
    """``acc += Q`` on the lower triangle (plus diagonal blocks) only, by row blocks."""
    d = acc.shape[0]
    for i0 in range(0, d, _ROW_BLOCK):
        i1 = min(i0 + _ROW_BLOCK, d)
        acc[i0:i1, :i1] += Q[i0:i1, :i1]


def _blockwise_frobenius_sq(C: np.ndarray, n_a: int, n_b: int) -> np.ndarray:
    """``F[a, b] = ||C[block a, block b]||_F^2`` for an ``(n_a*h_a, n_b*h_b)`` matrix ``C``."""
    h_a, h_b = C.shape[0] // n_a, C.shape[1] // n_b
    F = np.empty((n_a, n_b), dtype=np.float64)
    for a in range(n_a):
        rows = C[a * h_a : (a + 1) * h_a]
        F[a] = np.einsum("ilj,ilj->l", rows.reshape(h_a, n_b, h_b), rows.reshape(h_a, n_b, h_b))
    return F


# ------------------------------------------------------------------- streaming pass


def _stream_scatter(X, *, chunk_size: int, device: str, progress: bool, precision: str):
    """One pass over the rows of ``X``: shift, shifted column sums, shifted cross-products.

    Returns ``(n, shift, s1, S)`` with ``S`` the (d, d) float64 matrix
    ``sum_rows (x - shift)(x - shift)^T``, exactly symmetric.

    Why the shift: the centred cross-products are ``S - s1 s1^T / n``. Without a shift,
    ``S`` would be ``sum x x^T``, of order ``n * mean^2`` for neurons with a large mean
    relative to their spread (common in transformer activations: a few "outlier"
    dimensions have means far from zero), and the subtraction would cancel most of the
    significant digits -- badly so when the products are computed in float32. Shifting every
    row by a rough estimate of the mean (the first chunk's) keeps ``s1`` small and the
    subtraction harmless, while the result stays exact in exact arithmetic for any shift.
    """
    n, d = X.shape
    dtype = np.float32 if precision == "float32" else np.float64
    shift = _first_mean(X, chunk_size, dtype)
    s1 = np.zeros(d, dtype=np.float64)
    use_torch = _use_torch(device)
    if use_torch:
        import torch

        acc_t = torch.zeros((d, d), dtype=torch.float64, device=device)
    else:
        acc = np.zeros((d, d), dtype=np.float64)
        syrk = blas.ssyrk if precision == "float32" else blas.dsyrk
        P = None
    bar = _progress(n, progress=progress, desc="moments")
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        Y = _shifted_chunk(X, start, stop, shift)
        s1 += Y.sum(axis=0, dtype=np.float64)
        if use_torch:
            Yt = torch.from_numpy(Y).to(device)
            acc_t.add_(Yt.T @ Yt)
        else:
            # Y.T is Fortran-ordered (d, rows): syrk computes Y^T Y without copying and only
            # fills the upper triangle (in Fortran order), i.e. the lower triangle of its
            # C-ordered transpose -- half the flops of a general matrix product.
            # one (d, d) float32 buffer serves every chunk (beta=0 overwrites it): allocating
            # and page-faulting 400 MB per chunk would cost about a tenth of the product
            P = syrk(1.0, Y.T, c=P, beta=0.0, overwrite_c=1) if P is not None else syrk(1.0, Y.T)
            _add_lower(acc, P.T)
        bar.update(stop - start)
    bar.close()
    if use_torch:
        acc = acc_t.cpu().numpy()
        del acc_t
    else:
        del P
    _mirror_lower(acc)
    return n, shift.astype(np.float64), s1, acc


def moments(
    X,
    *,
    chunk_size: int = 4096,
    device: str | None = None,
    precision: str = "float32",
    progress: bool = True,
) -> Moments:
    """Column means and covariance of ``X`` in one streaming pass over its rows.

    Parameters
    ----------
    X : array-like of shape (n_instances, n_neurons) or (n_instances, n_layers, n_hidden)
        Activations, usually ``acts.X`` (or ``acts`` itself) from
        :func:`redundancy.extract.extract`. May be a memory-mapped float16 array: only
        ``chunk_size`` rows at a time are read and converted to float32, the array is
        never copied whole.
    chunk_size : int, default=4096
        Rows per chunk. Memory is about ``chunk_size * d * 4`` bytes for the chunk plus
        ``d * d * 12`` bytes for the accumulator and one chunk product (1.2 GB at
        d = 9,984).
    device : str, optional
        ``"cpu"``, ``"cuda"``, ...; ``None`` picks the GPU when one is visible. On the CPU
        each chunk product is a BLAS ``syrk``; on a GPU a ``torch.matmul``.
    precision : {"float32", "float64"}, default="float32"
        Precision of each chunk's matrix product. The sums across chunks are always
        float64. ``"float64"`` is about twice as slow on a CPU and only needed to match a
        float64 computation to more than about six digits.
    progress : bool, default=True
        Show a progress bar over rows.

    Returns
    -------
    Moments
        ``n``, ``mean`` (d,) float64 and the sample covariance ``cov`` (d, d) float64.
    """
    caller = "moments"
    X, _ = _flat_view(X, caller=caller)
    _check_rows(X, caller=caller)
    chunk_size = _check_chunk_size(chunk_size, caller)
    check_choice(precision, ("float32", "float64"), name="precision", caller=caller)
    device = resolve_device(device)
    t0 = time.perf_counter()
    n, shift, s1, S = _stream_scatter(
        X, chunk_size=chunk_size, device=device, progress=progress, precision=precision
    )
    mean = _finish_moments(n, shift, s1, S, "X")
    d = S.shape[0]
    elapsed = time.perf_counter() - t0
    nbytes = X.shape[0] * X.shape[1] * X.dtype.itemsize
    logger.info(
        "moments: %d x %d in %.2f s (%.2f GB/s of input) on %s",
        n,
        d,
        elapsed,
        nbytes / elapsed / 1e9,
        device,
    )
    return Moments(n=int(n), mean=mean, cov=S)


def _as_moments(X_or_moments, *, caller: str, chunk_size, device, progress, precision="float32"):
    """``(Moments, n_layers or None)`` from Moments, an Activations object or an array."""
    if isinstance(X_or_moments, Moments):
        return X_or_moments, None
    X, n_layers = _flat_view(X_or_moments, caller=caller)
    m = moments(X, chunk_size=chunk_size, device=device, precision=precision, progress=progress)
    return m, n_layers


# --------------------------------------------------------------------- correlation


def correlation_from_moments(m: Moments) -> np.ndarray:
    """Pearson correlation matrix (float32) from :class:`Moments`; see :func:`correlation`."""
    std = m.std
    inv = np.zeros_like(std)
    np.divide(1.0, std, out=inv, where=std > 0)
    d = std.shape[0]
    corr = np.empty((d, d), dtype=np.float32)
    for i0 in range(0, d, _ROW_BLOCK):
        i1 = min(i0 + _ROW_BLOCK, d)
        # outer(inv, inv) is exactly symmetric and cov is exactly symmetric, so the product
        # (and the float32 rounding) is too.
        block = m.cov[i0:i1] * np.outer(inv[i0:i1], inv)
        np.clip(block, -1.0, 1.0, out=block)
        corr[i0:i1] = block
    np.fill_diagonal(corr, 1.0)
    return corr


def correlation(
    X_or_moments,
    *,
    chunk_size: int = 4096,
    device: str | None = None,
    precision: str = "float32",
    progress: bool = True,
) -> np.ndarray:
    """Pearson correlation between every pair of neurons.

    Parameters
    ----------
    X_or_moments : array-like or Moments
        Activations ``(n_instances, n_neurons)`` (usually ``acts.X``), a 3-D ``acts``
        array, an ``Activations`` object, or :class:`Moments` already computed.
    chunk_size, device, precision, progress
        Passed to :func:`moments` when it has to be computed.

    Returns
    -------
    numpy.ndarray of shape (d, d), float32
        Exactly symmetric, values in [-1, 1], ones on the diagonal. A constant neuron
        (zero variance) has correlation 0 with every other neuron, as in the paper's
        pipeline where NaN becomes 0; the result never contains NaN.
    """
    m, _ = _as_moments(
        X_or_moments,
        caller="correlation",
        chunk_size=chunk_size,
        device=device,
        progress=progress,
        precision=precision,
    )
    return correlation_from_moments(m)


# ----------------------------------------------------------------------------- CKA


def _cka_from_blocks(F: np.ndarray, norms_a: np.ndarray, norms_b: np.ndarray) -> np.ndarray:
    denom = np.outer(norms_a, norms_b)
    out = np.zeros_like(F)
    np.divide(F, denom, out=out, where=denom > 0)
    if np.any(denom <= 0):
        logger.warning("linear CKA: a layer is constant over the instances; its CKA is set to 0.")
    return out


def cka_from_moments(m: Moments, n_layers: int) -> np.ndarray:
    """Linear CKA between every pair of layers from :class:`Moments`; see :func:`layer_cka`."""
    n_layers = _check_layers(m.n_features, n_layers, caller="cka_from_moments")
    # For centred X_a, X_b: CKA = ||X_a^T X_b||_F^2 / (||X_a^T X_a||_F ||X_b^T X_b||_F), and
    # X_a^T X_b is the (a, b) block of the centred cross-product matrix (n - 1) * cov; the
    # factor (n - 1) cancels.
    F = _blockwise_frobenius_sq(m.cov, n_layers, n_layers)
    F = (F + F.T) / 2.0  # the two block sums add the same squares in different orders
    norms = np.sqrt(np.diagonal(F))
    out = _cka_from_blocks(F, norms, norms)
    np.fill_diagonal(out, np.where(norms > 0, 1.0, 0.0))
    return out


def layer_cka(
    X_or_moments,
    n_layers: int | None = None,
    *,
    chunk_size: int = 4096,
    device: str | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Linear CKA between every pair of layers, from a single pass over the data.

    Linear centred kernel alignment (Kornblith et al., 2019) between the representations
    ``X_a`` and ``X_b`` (columns centred) of the same instances is
    ``||X_a^T X_b||_F^2 / (||X_a^T X_a||_F ||X_b^T X_b||_F)``. All three matrices are blocks
    of the centred cross-product matrix of the full ``X``, so the whole ``(L, L)`` table
    comes from :func:`moments` without a pass per pair of layers. This is the paper's
    layer-level general redundancy analysis (its CKA variant is not stated; linear CKA is
    the standard choice).

    Parameters
    ----------
    X_or_moments : array-like or Moments
        ``acts`` (n_instances, n_layers, n_hidden) or an ``Activations`` object (then
        ``n_layers`` is inferred), ``X`` (n_instances, n_neurons), or :class:`Moments`.
    n_layers : int, optional
        Number of layers; neuron ``i`` belongs to layer ``i // (n_neurons // n_layers)``.
        Required for 2-D input and Moments.
    chunk_size, device, progress
        Passed to :func:`moments`.

    Returns
    -------
    numpy.ndarray of shape (n_layers, n_layers), float64
        Symmetric, ones on the diagonal, values in [0, 1].
    """
    caller = "layer_cka"
    m, inferred = _as_moments(
        X_or_moments, caller=caller, chunk_size=chunk_size, device=device, progress=progress
    )
    if n_layers is None:
        n_layers = inferred
    elif inferred is not None and n_layers != inferred:
        raise ValueError(
            f"The 'n_layers' parameter of layer_cka ({n_layers}) disagrees with the layer "
            f"axis of the 3-D input ({inferred}); leave it out for 3-D input."
        )
    n_layers = _check_layers(m.n_features, n_layers, caller=caller)
    return cka_from_moments(m, n_layers)


def cross_cka(
    X_a,
    X_b,
    n_layers_a: int | None = None,
    n_layers_b: int | None = None,
    *,
    chunk_size: int = 4096,
    device: str | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Linear CKA between every layer of one model and every layer of another.

    Both activation matrices must describe the same instances in the same order (e.g.
    BERT and XLNet on the same words). They are streamed together once; only the
    cross-product ``X_a^T X_b`` and the within-layer blocks ``X_l^T X_l`` are accumulated,
    never the joint ``(d_a + d_b)^2`` matrix.

    Parameters
    ----------
    X_a, X_b : array-like
        ``(n_instances, n_layers, n_hidden)`` arrays or ``Activations`` (layers inferred),
        or ``(n_instances, n_neurons)`` with ``n_layers_a`` / ``n_layers_b`` given.
    n_layers_a, n_layers_b : int, optional
        Number of layers of each model; required for 2-D input.
    chunk_size, device, progress
        As in :func:`moments`.

    Returns
    -------
    numpy.ndarray of shape (n_layers_a, n_layers_b), float64
    """
    caller = "cross_cka"
    A, inf_a = _flat_view(X_a, caller=caller, name="X_a")
    B, inf_b = _flat_view(X_b, caller=caller, name="X_b")
    if A.shape[0] != B.shape[0]:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"[{A.shape[0]}, {B.shape[0]}]. cross_cka needs both models' activations on the "
            "same instances."
        )
    _check_rows(A, caller=caller, name="X_a")
    _check_rows(B, caller=caller, name="X_b")
    La = _check_layers(A.shape[1], n_layers_a or inf_a, caller=caller, name="n_layers_a")
    Lb = _check_layers(B.shape[1], n_layers_b or inf_b, caller=caller, name="n_layers_b")
    chunk_size = _check_chunk_size(chunk_size, caller)
    device = resolve_device(device)
    n = A.shape[0]
    ha, hb = A.shape[1] // La, B.shape[1] // Lb

    shift_a = _first_mean(A, chunk_size, np.float32)
    shift_b = _first_mean(B, chunk_size, np.float32)
    s_a = np.zeros(A.shape[1])
    s_b = np.zeros(B.shape[1])
    use_torch = _use_torch(device)
    if use_torch:
        import torch

        xp_zeros = lambda *shape: torch.zeros(shape, dtype=torch.float64, device=device)  # noqa: E731
    else:
        xp_zeros = lambda *shape: np.zeros(shape)  # noqa: E731
    P_ab = xp_zeros(A.shape[1], B.shape[1])
    P_aa = xp_zeros(La, ha, ha)
    P_bb = xp_zeros(Lb, hb, hb)
    bar = _progress(n, progress=progress, desc="cross moments")
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        Ya = _shifted_chunk(A, start, stop, shift_a)
        Yb = _shifted_chunk(B, start, stop, shift_b)
        s_a += Ya.sum(axis=0, dtype=np.float64)
        s_b += Yb.sum(axis=0, dtype=np.float64)
        if use_torch:
            Ya, Yb = torch.from_numpy(Ya).to(device), torch.from_numpy(Yb).to(device)
            Ra = Ya.reshape(-1, La, ha).transpose(0, 1)  # (La, rows, ha)
            Rb = Yb.reshape(-1, Lb, hb).transpose(0, 1)
            P_ab.add_(Ya.T @ Yb)
            P_aa.add_(Ra.transpose(1, 2) @ Ra)
            P_bb.add_(Rb.transpose(1, 2) @ Rb)
        else:
            P_ab += Ya.T @ Yb
            for P, Y, L, h in ((P_aa, Ya, La, ha), (P_bb, Yb, Lb, hb)):
                for layer in range(L):
                    block = Y[:, layer * h : (layer + 1) * h]
                    P[layer] += block.T @ block
        bar.update(stop - start)
    bar.close()
    if use_torch:
        P_ab, P_aa, P_bb = (t.cpu().numpy() for t in (P_ab, P_aa, P_bb))

    # Centre: sum (x - mu_a)(y - mu_b)^T = P - s_a s_b^T / n (the shift cancels).
    for i0 in range(0, P_ab.shape[0], _ROW_BLOCK):
        i1 = min(i0 + _ROW_BLOCK, P_ab.shape[0])
        P_ab[i0:i1] -= np.outer(s_a[i0:i1] / n, s_b)
    P_aa -= np.einsum("li,lj->lij", s_a.reshape(La, ha) / n, s_a.reshape(La, ha))
    P_bb -= np.einsum("li,lj->lij", s_b.reshape(Lb, hb) / n, s_b.reshape(Lb, hb))
    F = _blockwise_frobenius_sq(P_ab, La, Lb)
    norms_a = np.sqrt(np.einsum("lij,lij->l", P_aa, P_aa))
    norms_b = np.sqrt(np.einsum("lij,lij->l", P_bb, P_bb))
    # CKA <= 1 exactly; float32 chunk products can overshoot by a few ulps.
    return np.clip(_cka_from_blocks(F, norms_a, norms_b), 0.0, 1.0)


# ------------------------------------------------------------ textbook references


def gram_linear(X) -> np.ndarray:
    """Linear-kernel Gram matrix ``K = X X^T`` (n_instances x n_instances), float64.

    Reference implementation: quadratic in the number of instances, for small inputs.
    """
    X = np.asarray(X, dtype=np.float64)
    return X @ X.T


def center_gram(K) -> np.ndarray:
    """Double-centre a Gram matrix: ``H K H`` with ``H = I - 11^T / n`` (a new array).

    Centring the Gram matrix of a linear kernel is the same as centring the columns of
    ``X`` before forming ``X X^T``.
    """
    K = np.array(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(
            f"The 'K' parameter of center_gram must be a square matrix. Got shape {K.shape} "
            "instead."
        )
    K -= K.mean(axis=0, keepdims=True)
    K -= K.mean(axis=1, keepdims=True)
    return K


def cka(K, L) -> np.ndarray | float:
    """CKA between two Gram matrices on the same instances (Kornblith et al., 2019).

    ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with the biased HSIC estimator
    ``tr(K_c L_c)`` on double-centred Grams (its ``1 / (n - 1)^2`` factor cancels).
    """
    Kc, Lc = center_gram(K), center_gram(L)
    hsic_kl = np.sum(Kc * Lc)
    return float(hsic_kl / np.sqrt(np.sum(Kc * Kc) * np.sum(Lc * Lc)))


def linear_cka(X, Y) -> float:
    """Linear CKA in feature space: ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``.

    ``X`` (n, p) and ``Y`` (n, q) hold the same instances; columns are centred here. Equal
    to ``cka(gram_linear(X), gram_linear(Y))`` but costs O(n p q) instead of O(n^2).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{X.shape[0]}, "
            f"{Y.shape[0]}]."
        )
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    cross = np.linalg.norm(Y.T @ X) ** 2
    return float(cross / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)))


# ---------------------------------------------------------------- debiased CKA


def _debiased_hsic_features(cross_sq, a, b, n: int) -> float:
    """Unbiased HSIC (times ``n (n - 3)``) of linear kernels on column-centred data.

    ``cross_sq = ||X^T Y||_F^2``, ``a`` and ``b`` the squared row norms of ``X`` and ``Y``
    (the diagonals of their Gram matrices). Song et al.'s estimator with ``K~`` the Gram
    matrix with its diagonal set to zero: ``tr(K~ L~) = ||X^T Y||^2 - a.b``, and for centred
    columns ``1^T K~ 1 = -sum(a)`` and ``K~ 1 = -a``.
    """
    return float(cross_sq - n / (n - 2.0) * (a @ b) + a.sum() * b.sum() / ((n - 1.0) * (n - 2.0)))


def debiased_cka(X, Y) -> float:
    """Linear CKA with the unbiased HSIC estimator (Song et al., 2012; Nguyen et al., 2021).

    Linear CKA (:func:`linear_cka`) uses the biased HSIC estimator ``tr(K_c L_c)``, whose
    bias grows with the number of features relative to the number of instances: two
    *independent* random representations of 100 instances with 500 features each have a
    linear CKA near 0.8. The unbiased estimator leaves out the diagonal of the Gram
    matrices (an instance compared with itself), which removes that bias; CKA built from it
    is near 0 for independent data. It is a ratio of unbiased estimates, so it can be
    slightly negative when the true value is near 0 (clip at 0 for display, and say so).

    Computed in feature space in float64: ``||X^T Y||_F^2``, the row norms and their sums,
    never an ``n x n`` Gram matrix (O(n p q) time).

    Parameters
    ----------
    X : array-like of shape (n, p)
    Y : array-like of shape (n, q)
        The same ``n >= 4`` instances in both.

    Returns
    -------
    float
        In about [-1, 1] (1 for representations equal up to rotation and scale). 0 when
        either side is constant over the instances (no variance to compare).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(
            "The 'X' and 'Y' parameters of debiased_cka must be 2-D arrays (n_instances, "
            f"n_features). Got shapes {X.shape} and {Y.shape} instead."
        )
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{X.shape[0]}, "
            f"{Y.shape[0]}]."
        )
    n = X.shape[0]
    if n < 4:
        raise ValueError(
            f"debiased_cka needs at least 4 instances (the unbiased HSIC estimator divides "
            f"by n - 3). Got {n} instead."
        )
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    a, b = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)
    xy = _debiased_hsic_features(np.linalg.norm(X.T @ Y) ** 2, a, b, n)
    xx = _debiased_hsic_features(np.linalg.norm(X.T @ X) ** 2, a, a, n)
    yy = _debiased_hsic_features(np.linalg.norm(Y.T @ Y) ** 2, b, b, n)
    if xx <= 0 or yy <= 0:
        return 0.0
    return float(xy / np.sqrt(xx * yy))


# ------------------------------------------------------- CKA with its uncertainty


def _weight_moments(W: np.ndarray):
    """Power sums ``p_k = sum_i w_i^k`` (k = 1..4) of every row of ``W``, float64."""
    W = W.astype(np.float64)
    return [np.sum(W**k, axis=1) for k in (1, 2, 3, 4)]


def _pair_hsic(Ka, Kb, kda, kdb, KWa, KWb, W, W2, V, p):
    """Biased (weighted-centred) and unbiased (weighted U-statistic) HSIC of one pair of
    layers on every weighting (row) of ``W``; see :func:`cka_uncertainty`.

    ``Ka``, ``Kb``: float32 Gram matrices with zero diagonal; ``kda``, ``kdb``: their
    diagonals; ``KWa = Ka @ W.T`` (float64); ``V = [W; W^2]`` (float32).
    """
    nb = W.shape[0]
    MV = (Ka * Kb) @ V.T  # (m, 2 nb): M w and M w^2 for every weighting
    t1 = np.einsum("bi,ib->b", W, MV[:, :nb], dtype=np.float64)  # w^T M w
    t2 = np.einsum("bi,ib->b", W, MV[:, nb:], dtype=np.float64)  # w^T M w^2
    t3 = np.einsum("bi,ib->b", W2, MV[:, nb:], dtype=np.float64)  # (w^2)^T M w^2
    prod = KWa * KWb  # (m, nb) float64
    c1 = np.einsum("bi,ib->b", W, prod)
    c2 = np.einsum("bi,ib->b", W2, prod)
    sa = np.einsum("bi,ib->b", W, KWa)
    sb = np.einsum("bi,ib->b", W, KWb)
    p1, p2, p3, p4 = p
    # unbiased: average over tuples of *distinct source instances*, weighted by their counts
    A = t1 / (p1 * p1 - p2)
    C = (c1 - t2) / (p1**3 - 3 * p1 * p2 + 2 * p3)
    Bq = (sa * sb - 4 * (c2 - t3) - 2 * t3) / (
        p1**4 - 6 * p1 * p1 * p2 + 3 * p2 * p2 + 8 * p1 * p3 - 6 * p4
    )
    unbiased = A + Bq - 2 * C
    # biased: the same sums with the diagonal put back, centred with the weighted mean
    dd = W2 @ (kda * kdb)
    Fa = KWa + (W * kda).T
    Fb = KWb + (W * kdb).T
    full_c = np.einsum("bi,ib->b", W, Fa * Fb)
    qa = sa + W2 @ kda
    qb = sb + W2 @ kdb
    biased = (t1 + dd) - 2.0 / p1 * full_c + qa * qb / (p1 * p1)
    return biased, unbiased


def _ratio(num, da, db):
    den = np.sqrt(np.clip(da, 0, None) * np.clip(db, 0, None))
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def cka_uncertainty(
    X,
    n_layers: int | None = None,
    *,
    n_instances: int = 2000,
    n_resamples: int = 200,
    n_permutations: int = 200,
    random_state: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Linear and debiased CKA between every pair of layers, with intervals and a null.

    On a random subsample of ``n_instances`` rows (read in sorted order, so a memory map
    reads only those rows) this gives, for every pair of layers,

    * ``"linear"`` -- linear CKA (:func:`linear_cka`; biased upward when instances are few
      relative to features);
    * ``"debiased"`` -- CKA from the unbiased HSIC estimator (:func:`debiased_cka`). It is
      near 0 for unrelated layers and, being a ratio of unbiased estimates, can be
      slightly *negative* there: clip at 0 for display and say so;
    * ``"linear_low"``, ``"linear_high"``, ``"debiased_low"``, ``"debiased_high"`` --
      percentile bootstrap intervals (level ``confidence``) over instances: every
      resample draws ``n_instances`` rows of the subsample with replacement, the same
      resample for all pairs;
    * ``"null_high"``, ``"null_mean"`` -- the ``confidence`` quantile and the mean of the
      debiased CKA when the rows of one layer are shuffled relative to the other (a
      permutation null: what CKA gives with the instance correspondence destroyed). Each
      permutation shuffles every layer once; both orders of a pair are pooled, so a pair
      has ``2 n_permutations`` null draws.

    Duplicated rows and the debiased estimator: the unbiased HSIC leaves out every pair of
    an instance with itself, but a bootstrap resample holds copies of the same instance,
    and a copy paired with its twin is the very self-pair the estimator must exclude
    (counting it brings back the upward bias). Resamples are therefore scored as weighted
    U-statistics over the *source* rows: each of HSIC's three averages runs over tuples of
    distinct source rows only, weighted by how often the resample drew each row and
    normalised by the total weight of such tuples. With all weights 1 this is exactly
    Song et al.'s estimator. The linear CKA of a resample is the plain plug-in value on
    the resampled rows (duplicates included); since a resample holds only about 63% of
    distinct rows and linear CKA's upward bias grows as instances get fewer, its
    resamples sit above the point estimate (for unrelated layers of 50 features and 300
    instances: point 0.15, resamples 0.23 to 0.27). Its interval is therefore the
    percentile interval shifted by the bootstrap's estimate of that bias (mean of the
    resamples minus the point estimate), clipped to [0, 1].

    Conventions: the diagonal is 1 in ``linear``, ``debiased`` and their intervals (a layer
    against itself); the null's diagonal is a layer against a shuffled copy of itself. A
    layer that is constant on the subsample has CKA 0 (and null 0) with every other
    layer. No entry is NaN.

    Cost: per layer one ``n_instances``-square float32 Gram matrix (16 MB at 2,000); per
    pair one product of the Grams' element-wise product with the ``2 (n_resamples + 1)``
    resample weightings; per permutation a gather of each permuted Gram's upper half and
    one ``(n_layers, n_layers)`` product over it. The permutations dominate at the
    defaults (see ``docs/DESIGN.md`` for measured times).

    Parameters
    ----------
    X : array-like of shape (n, n_layers * n_hidden) or (n, n_layers, n_hidden)
        Activations, usually ``acts.X``; may be a memory map.
    n_layers : int, optional
        Required for 2-D input.
    n_instances : int, default=2000
        Rows used (all rows when there are fewer); at least 4.
    n_resamples, n_permutations : int, default=200
        Bootstrap resamples (at least 1) and permutations (0 skips the permutation null;
        ``null_high`` and ``null_mean`` are then zeros). The null costs about as much per
        permutation as the bootstrap per 10 resamples; 50 permutations (100 draws a pair)
        already place its 95th percentile well for display.
    random_state : int, default=0
        Seeds the subsample, the resamples and the permutations.
    confidence : float, default=0.95

    Returns
    -------
    dict of numpy.ndarray of shape (n_layers, n_layers), float64
        Keys ``linear``, ``debiased``, ``linear_low``, ``linear_high``, ``debiased_low``,
        ``debiased_high``, ``null_high``, ``null_mean``; plus ``"rows"`` (the subsample's
        row indices, int64).
    """
    from ..constraints import check

    caller = "cka_uncertainty"
    X2, inferred = _flat_view(X, caller=caller)
    n_layers = _check_layers(X2.shape[1], n_layers or inferred, caller=caller)
    for name, value, low in (
        ("n_instances", n_instances, 4),
        ("n_resamples", n_resamples, 1),
        ("n_permutations", n_permutations, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(
                f"The {name!r} parameter of {caller} must be an int >= {low}. "
                f"Got {value!r} instead."
            )
    confidence = check("confidence", confidence, caller)
    n, d = X2.shape
    m = min(int(n_instances), n)
    if m < 4:
        raise ValueError(f"{caller} needs at least 4 instances (rows). Got {n} instead.")
    t0 = time.perf_counter()
    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)
    S = np.asarray(X2[rows], dtype=np.float64)
    S -= S.mean(axis=0)
    L, h = n_layers, d // n_layers

    grams = np.empty((L, m, m), dtype=np.float32)
    kd = np.empty((L, m))
    for layer in range(L):
        Z = np.ascontiguousarray(S[:, layer * h : (layer + 1) * h], dtype=np.float32)
        G = grams[layer]
        np.matmul(Z, Z.T, out=G)
        kd[layer] = np.einsum("ij,ij->i", Z, Z, dtype=np.float64)
        G.flat[:: m + 1] = 0.0  # K~: the diagonal (an instance with itself) left out
    del S

    counts = rng.multinomial(m, np.full(m, 1.0 / m), size=int(n_resamples))
    W = np.vstack([np.ones((1, m)), counts]).astype(np.float32)  # row 0: the subsample
    W2 = W * W
    V = np.vstack([W, W2])
    Wd, W2d = W.astype(np.float64), W2.astype(np.float64)
    p = _weight_moments(W)
    KW = [(grams[layer] @ W.T).astype(np.float64) for layer in range(L)]

    biased = np.empty((L, L, W.shape[0]))
    unbiased = np.empty((L, L, W.shape[0]))
    for a in range(L):
        for b in range(a, L):
            bb, ub = _pair_hsic(grams[a], grams[b], kd[a], kd[b], KW[a], KW[b], Wd, W2d, V, p)
            biased[a, b] = biased[b, a] = bb
            unbiased[a, b] = unbiased[b, a] = ub
    diag = np.arange(L)
    lin = _ratio(biased, biased[diag, diag][:, None], biased[diag, diag][None, :])
    deb = _ratio(unbiased, unbiased[diag, diag][:, None], unbiased[diag, diag][None, :])
    lin[diag, diag] = 1.0
    deb[diag, diag] = 1.0
    alpha = (1.0 - confidence) / 2.0
    out = {"linear": lin[..., 0].copy(), "debiased": deb[..., 0].copy()}
    for key, vals in (("linear", lin[..., 1:]), ("debiased", deb[..., 1:])):
        lo, hi = np.quantile(vals, [alpha, 1.0 - alpha], axis=-1)
        if key == "linear":
            # duplicated rows shift linear CKA's resamples upward (see the docstring): the
            # interval is re-centred by the bootstrap estimate of that shift
            shift = vals.mean(axis=-1) - out[key]
            lo, hi = np.clip(lo - shift, 0.0, 1.0), np.clip(hi - shift, 0.0, 1.0)
        out[f"{key}_low"], out[f"{key}_high"] = lo, hi
    t_boot = time.perf_counter() - t0

    out["null_high"], out["null_mean"] = _permutation_null(
        grams, unbiased[diag, diag, 0], int(n_permutations), confidence, rng
    )
    out["rows"] = rows.astype(np.int64)
    logger.info(
        "cka_uncertainty: %d layers x %d, %d instances, %d resamples in %.1f s, "
        "%d permutations in %.1f s",
        L,
        h,
        m,
        n_resamples,
        t_boot,
        n_permutations,
        time.perf_counter() - t0 - t_boot,
    )
    return out


def _permutation_null(grams, self_hsic, n_permutations, confidence, rng, row_block=256):
    """Quantile and mean of debiased CKA with one side's rows shuffled (see
    :func:`cka_uncertainty`). ``grams``: zero-diagonal Grams; ``self_hsic``: each layer's
    unbiased HSIC with itself, as :func:`_pair_hsic` gives it (HSIC_u itself, so times
    ``n (n - 3)`` it matches the closed form used here).

    Per permutation ``P`` the expensive term is ``tr(K~_a P K~_b P^T)`` for every pair: it is
    accumulated over blocks of rows, each block's rows of every ``P K~_b P^T`` (from the
    block's first column on: both matrices are symmetric) gathered by a compiled loop
    (:mod:`._cka_kernel`), then one small matrix product per block.
    """
    from ._cka_kernel import permuted_rows

    L, m, _ = grams.shape
    if n_permutations == 0:
        return np.zeros((L, L)), np.zeros((L, L))
    r = grams.sum(axis=2, dtype=np.float64)  # K~ 1 per layer, (L, m)
    tot = r.sum(axis=1)  # 1^T K~ 1
    # Song et al.'s closed form gives n (n - 3) HSIC_u; self_hsic is HSIC_u
    s = self_hsic * (m * (m - 3.0))
    draws = np.empty((n_permutations, L, L))
    buf = np.empty((L, row_block, m), dtype=np.float32)
    # both matrices are symmetric: rows i0:i1 need only columns >= i0, the square block on
    # the diagonal counted once and the columns beyond it twice
    blocks = []
    for i0 in range(0, m, row_block):
        i1 = min(i0 + row_block, m)
        k, w = i1 - i0, m - i0
        own = np.ascontiguousarray(grams[:, i0:i1, i0:])
        own[:, :, k:] *= 2.0
        blocks.append((i0, i1, own.reshape(L, k * w)))
    for p in range(n_permutations):
        perm = rng.permutation(m)
        trace = np.zeros((L, L))
        for i0, i1, own in blocks:
            k, w = i1 - i0, m - i0
            part = buf.reshape(-1)[: L * k * w].reshape(L, k, w)
            permuted_rows(grams, perm, i0, i1, part)
            trace += own @ part.reshape(L, k * w).T
        cross = r @ r[:, perm].T
        num = trace + np.outer(tot, tot) / ((m - 1.0) * (m - 2.0)) - 2.0 / (m - 2.0) * cross
        draws[p] = _ratio(num, s[:, None], s[None, :])
    pooled = np.concatenate([draws, draws.transpose(0, 2, 1)])
    return np.quantile(pooled, confidence, axis=0), pooled.mean(axis=0)
