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
  (:func:`cross_cka`);
* debiased CKA (unbiased HSIC, :func:`debiased_cka`) and, on a subsample, both CKAs with
  bootstrap intervals and a permutation null (:func:`cka_uncertainty`); these live in
  :mod:`._cka_stats` and are exported here.

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

from ._cka_stats import cka_uncertainty, debiased_cka

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
