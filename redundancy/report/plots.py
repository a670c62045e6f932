"""Figures of the book: one style, one function per kind of figure.

Every ``plot_*`` function draws on ``ax`` (a new figure when None) and returns the Axes, so
chapters can lay several out with ``plt.subplots``. Scores are drawn in percent; axes carry
units; heat maps carry a colour bar.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
"""Colours used in order for models/tasks (colour-blind friendly enough, high contrast)."""

HEATMAP_CMAP = "viridis"
_REF_COLORS = ("black", "dimgrey", "grey", "darkgrey")
_REF_STYLES = ("--", ":", "-.", (0, (5, 5)))

_LABELS = {
    "percent_removed": "redundant neurons (% of all)",
    "percent_kept": "kept neurons (% of all)",
    "n_clusters": "clusters",
    "dev": "dev score (%)",
    "test": "test score (%)",
    "score": "score (%)",
    "threshold": "clustering threshold t (distance 1 − |ρ|)",
    "ms_per_instance": "time per instance (ms)",
    "seconds": "training time (s)",
    "n_features": "features",
    "layer": "forward pass stopped after layer (0 = embeddings)",
    "dev_vs_oracle": "dev score (% of the oracle's)",
    "test_vs_oracle": "test score (% of the oracle's)",
}


def set_style() -> None:
    """Apply the book's matplotlib style (white grid, readable fonts, tight layout)."""
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 4.2),
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "figure.autolayout": True,
            "axes.grid": True,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11,
            "axes.titleweight": "bold",
            "axes.labelsize": 10,
            "axes.prop_cycle": mpl.cycler(color=list(PALETTE)),
            "grid.alpha": 0.3,
            "legend.fontsize": 8.5,
            "legend.frameon": False,
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
            "image.cmap": HEATMAP_CMAP,
        }
    )


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    return ax


def _label(column: str) -> str:
    return _LABELS.get(column, column.replace("_", " "))


def _pct(values) -> np.ndarray:
    """Scores in [0, 1] -> percent; values already above 1 are left alone."""
    v = np.asarray(values, dtype=float)
    return v * 100 if np.nanmax(np.abs(v), initial=0) <= 1.0 else v


def plot_cka(
    sim,
    ax=None,
    *,
    title: str | None = None,
    xlabel: str = "layer",
    ylabel: str = "layer",
    annotate: bool | None = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = HEATMAP_CMAP,
    colorbar: bool = True,
    colorbar_label: str = "linear CKA",
):
    """Heat map of a layer-by-layer similarity matrix (linear CKA).

    Parameters
    ----------
    sim : array-like of shape (n_layers_a, n_layers_b)
        Similarities in [0, 1], usually from :func:`redundancy.similarity.layer_cka` or
        :func:`~redundancy.similarity.cross_cka`. Row/column ``l`` is layer ``l``; layer 0 is
        the embedding output.
    ax : matplotlib Axes, optional
    title, xlabel, ylabel : str
    annotate : bool, optional
        Write each value in its cell; default when the matrix has at most 13 x 13 cells.
    vmin, vmax : float
        Colour scale (fixed to [0, 1] so heat maps compare across models).
    cmap : str
        Colour map; a diverging one (``"RdBu_r"``) suits differences of two CKA matrices.
    colorbar : bool
        Draw a colour bar.
    colorbar_label : str
        Its label.

    Returns
    -------
    matplotlib.axes.Axes
    """
    sim = np.asarray(sim, dtype=float)
    if sim.ndim != 2:
        raise ValueError(
            f"The 'sim' parameter of plot_cka must be a 2-D matrix. Got shape {sim.shape} instead."
        )
    ax = _axes(ax)
    image = ax.imshow(sim, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    rows, cols = sim.shape
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(False)
    if annotate is None:
        annotate = max(rows, cols) <= 13
    if annotate:
        size = 7 if max(rows, cols) > 8 else 8
        for i in range(rows):
            for j in range(cols):
                v = sim[i, j]
                light = (
                    (v - vmin) / (vmax - vmin or 1.0) > 0.6
                    if cmap == HEATMAP_CMAP
                    else abs(v) < 0.6 * max(abs(vmin), abs(vmax))
                )
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=size,
                    color="black" if light else "white",
                )
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    return ax


def plot_layer_scores(df: pd.DataFrame, ax=None, *, split: str = "test", title: str | None = None):
    """Probe score of each layer alone and of layers 0..l together, against the oracle.

    Parameters
    ----------
    df : DataFrame
        One row per probe with columns ``kind`` (``"layer"``, ``"incremental"`` or
        ``"oracle"``), ``layer`` and the score columns ``dev`` / ``test`` (fractions or %),
        as returned by :func:`redundancy.experiments.layer_probe_scores`.
    ax : matplotlib Axes, optional
    split : {"dev", "test"}
        Which score to draw.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if split not in df.columns:
        raise ValueError(
            f"The 'split' parameter of plot_layer_scores must be a column of df ({list(df.columns)}). Got {split!r} instead."
        )
    ax = _axes(ax)
    for kind, marker, name in (
        ("layer", "o", "layer l alone"),
        ("incremental", "s", "layers 0..l"),
    ):
        part = df[df["kind"] == kind].sort_values("layer")
        if len(part):
            ax.plot(part["layer"], _pct(part[split]), marker=marker, markersize=4, label=name)
    oracle = df[df["kind"] == "oracle"]
    if len(oracle):
        ax.axhline(
            _pct(oracle[split]).item(),
            color="black",
            linestyle="--",
            linewidth=1,
            label="oracle (all layers)",
        )
    layers = df["layer"].dropna()
    if len(layers):
        ax.set_xticks(range(int(layers.min()), int(layers.max()) + 1))
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(f"{split} score (%)")
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return ax


def _lines(df, x, y, hue, ax, marker="o", label=None):
    groups = [(label, df)] if hue is None else list(df.groupby(hue, sort=False))
    for name, part in groups:
        part = part.sort_values(x)
        ax.plot(
            part[x], part[y], marker=marker, markersize=4, label=None if name is None else str(name)
        )


def plot_cc_sweep(
    sweep: pd.DataFrame,
    ax=None,
    *,
    y: str = "percent_removed",
    hue: str | None = "model",
    reference: float | Mapping | None = None,
    reference_label: str = "reference",
    title: str | None = None,
):
    """One line per model (or task) across the correlation-clustering thresholds.

    Parameters
    ----------
    sweep : DataFrame
        Columns ``threshold`` and ``y`` (e.g. ``percent_removed`` or a probe score), and
        ``hue`` when given; from :func:`redundancy.experiments.cc_sweep`.
    ax : matplotlib Axes, optional
    y : str
        Column drawn on the y axis; scores (``dev``/``test``) are drawn in percent.
    hue : str or None
        Column naming the lines.
    reference : float or mapping, optional
        Horizontal dashed line(s): one value, or ``{hue value: value}`` (e.g. oracle scores).
    reference_label : str
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    df = sweep.copy()
    if y in ("dev", "test", "score"):
        df[y] = _pct(df[y])
    if hue is not None and hue not in df.columns:
        hue = None
    _lines(df, "threshold", y, hue, ax)
    if reference is not None:
        refs = reference.items() if isinstance(reference, Mapping) else [(None, reference)]
        for i, (name, value) in enumerate(refs):
            value = float(_pct([value])[0]) if y in ("dev", "test", "score") else float(value)
            if name is None:
                label = reference_label
            else:
                label = f"{reference_label} ({name})" if reference_label else str(name)
            ax.axhline(
                value,
                color=_REF_COLORS[i % len(_REF_COLORS)],
                linestyle=_REF_STYLES[i % len(_REF_STYLES)],
                linewidth=1,
                label=label,
            )
    ax.set_xlabel(_label("threshold"))
    ax.set_ylabel(_label(y))
    if y == "percent_removed":
        ax.set_ylim(0, 100)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_window_hist(
    windows,
    ax=None,
    *,
    n_layers: int | None = None,
    title: str | None = None,
    label: str | None = None,
    offset: float = 0.0,
    width: float = 0.8,
):
    """Histogram of cluster windows: how many layers each multi-neuron cluster spans.

    Parameters
    ----------
    windows : array-like of int
        ``max(layer) - min(layer) + 1`` per cluster, from
        :func:`redundancy.clustering.cluster_windows` (usually only clusters of two or more
        neurons).
    ax : matplotlib Axes, optional
    n_layers : int, optional
        Largest possible window (x axis runs 1..n_layers); default the largest window seen.
    title, label : str, optional
    offset, width : float
        Bar placement, to draw several models side by side on one Axes.

    Returns
    -------
    matplotlib.axes.Axes
    """
    w = np.asarray(windows, dtype=int).ravel()
    top = int(n_layers if n_layers is not None else (w.max() if w.size else 1))
    counts = np.bincount(w, minlength=top + 1)[1 : top + 1] if w.size else np.zeros(top, dtype=int)
    share = 100 * counts / max(w.size, 1)
    ax = _axes(ax)
    ax.bar(np.arange(1, top + 1) + offset, share, width=width, label=label)
    ax.set_xticks(range(1, top + 1))
    ax.set_xlabel("cluster window (layers spanned)")
    ax.set_ylabel("clusters (%)")
    if label:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_ranking_curve(
    curve: pd.DataFrame,
    ax=None,
    *,
    x: str = "percent",
    y: str = "dev",
    oracle: float | None = None,
    delta: float | None = None,
    minimal: float | None = None,
    label: str | None = None,
    title: str | None = None,
):
    """Probe score when keeping only the top-ranked neurons, as their share grows.

    Parameters
    ----------
    curve : DataFrame
        Columns ``x`` (percent of all neurons kept) and ``y`` (score), e.g. from
        :func:`redundancy.experiments.minimal_set_for`.
    ax : matplotlib Axes, optional
    x, y : str
        Column names.
    oracle : float, optional
        Score of the probe on every neuron (dashed line).
    delta : float, optional
        Tolerance in percent; with ``oracle`` draws the line ``oracle * (1 - delta/100)``.
    minimal : float, optional
        Percent of neurons in the minimal set (dotted vertical line).
    label, title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    part = curve.sort_values(x)
    ax.plot(part[x], _pct(part[y]), marker="o", markersize=3, label=label or "top-k neurons")
    if oracle is not None:
        o = float(_pct([oracle])[0])
        ax.axhline(o, color="black", linestyle="--", linewidth=1, label="oracle (all neurons)")
        if delta is not None:
            ax.axhline(
                o * (1 - delta / 100),
                color="grey",
                linestyle=":",
                linewidth=1,
                label=f"oracle − {delta:g}%",
            )
    if minimal is not None:
        ax.axvline(
            minimal, color="black", linestyle=":", linewidth=1, label=f"minimal set: {minimal:.3g}%"
        )
    ax.set_xscale("log")
    ax.set_xlabel("top-ranked neurons kept (% of all, log scale)")
    ax.set_ylabel(_label(y))
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return ax


def plot_timing(
    df: pd.DataFrame,
    ax=None,
    *,
    x: str = "layer",
    y: str = "ms_per_instance",
    hue: str | None = None,
    reference: Mapping | float | None = None,
    reference_label: str = "paper",
    logx: bool = False,
    logy: bool = False,
    title: str | None = None,
):
    """Timing curve (forward pass per stopping layer, or probe training per feature count).

    Parameters
    ----------
    df : DataFrame
        Columns ``x`` and ``y`` (and ``hue``), from :func:`redundancy.timing.time_forward`
        or :func:`~redundancy.timing.time_probe`.
    ax : matplotlib Axes, optional
    x, y, hue : str
        Column names.
    reference : float or mapping, optional
        Published figure(s) drawn as dashed horizontal lines (``{label: value}``).
    reference_label : str
    logx, logy : bool
        Log-scale axes (feature counts; times spanning orders of magnitude).
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    _lines(df, x, y, hue if hue in df.columns else None, ax, label="this run")
    if reference is not None:
        refs = (
            reference.items() if isinstance(reference, Mapping) else [(reference_label, reference)]
        )
        for i, (name, value) in enumerate(refs):
            ax.axhline(
                float(value),
                color=_REF_COLORS[i % len(_REF_COLORS)],
                linestyle=_REF_STYLES[i % len(_REF_STYLES)],
                linewidth=1,
                label=str(name),
            )
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax
