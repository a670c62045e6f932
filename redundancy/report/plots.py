"""Figures of the book: one style, one function per kind of figure, drawn at reading size.

Every ``plot_*`` function draws on ``ax`` (a new figure at the book's width when None) and
returns the Axes. Inputs are the steps' tables, with scores and shares as fractions; the
figures show percents (multiplied here, never guessed). Results over several seeds are drawn
as the mean with a band from the lowest to the highest seed.

Sizes. The book shows a figure's PNG at its natural size (one image pixel per CSS pixel) and
shrinks it to the text column when it is wider. A figure of ``w`` inches saved at
:data:`BOOK_DPI` is ``w * BOOK_DPI`` pixels, so every figure here is at most
:data:`CONTENT_WIDTH_PX` / :data:`BOOK_DPI` inches wide, and its smallest text (tick labels,
legends, numbers in cells) is :data:`MIN_TEXT_PT` points or more as the reader sees it.
Several panels are laid out with :func:`panels` / :func:`small_multiples`: as many columns as
fit at a readable panel width, further rows below, and one legend for all of them under the
panels, outside the data.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
"""Colours used in order for models/tasks (colour-blind friendly enough, high contrast)."""

HEATMAP_CMAP = "viridis"
DIVERGING_CMAP = "RdBu_r"
LEVEL_COLORS = {
    "reproduced": "#2ca02c",
    "partly reproduced": "#ff7f0e",
    "not reproduced": "#d62728",
    "inconclusive": "#7f7f7f",
}

BOOK_DPI = 110
"""Dots per inch of the book's figures (``figure.dpi``; the notebook backend saves PNGs at it)."""

CONTENT_WIDTH_PX = 768
"""Widest image the book shows unshrunk, in CSS pixels: measured in Chromium on a 1,400 px
wide window (sphinx-book-theme of jupyter-book 1.x, both sidebars shown; the text column is
784 px, an output image at most 768). At 1,280 px it is 672, and figures shrink by an eighth,
which the font sizes below leave room for."""

MIN_TEXT_PT = 9.0
"""Smallest text a figure may show, in points as displayed at :data:`CONTENT_WIDTH_PX`
(1 pt = 4/3 CSS px). The style's smallest font is 10 pt at 110 dpi, 11.5 pt as displayed."""

CONTENT_WIDTH_IN = CONTENT_WIDTH_PX / BOOK_DPI - 2 * 0.1
"""Widest figure, in inches, that shows unshrunk in the text column: the column less the
0.1 in margin on each side that the notebook backend adds when it crops a figure
(``bbox_inches="tight"``, matplotlib's ``savefig.pad_inches``)."""

_FONT = {"title": 11.0, "label": 10.5, "tick": 10.0, "legend": 10.0, "cell": 10.0}


def set_style() -> None:
    """Apply the book's matplotlib style: white grid, the book's dpi, constrained layout
    (figure legends outside the panels), fonts readable at the book's width."""
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.figsize": (CONTENT_WIDTH_IN, 3.6),
            "figure.dpi": BOOK_DPI,
            "savefig.dpi": BOOK_DPI,
            "figure.autolayout": False,
            "figure.constrained_layout.use": True,
            "axes.grid": True,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": _FONT["title"],
            "axes.titleweight": "bold",
            "axes.labelsize": _FONT["label"],
            "axes.prop_cycle": mpl.cycler(color=list(PALETTE)),
            "font.size": _FONT["tick"],
            "grid.alpha": 0.3,
            "legend.fontsize": _FONT["legend"],
            "legend.title_fontsize": _FONT["legend"],
            "legend.frameon": False,
            "xtick.labelsize": _FONT["tick"],
            "ytick.labelsize": _FONT["tick"],
            "image.cmap": HEATMAP_CMAP,
        }
    )


def figure(height: float = 3.6, width: float | None = None):
    """A one-panel figure at the book's text width (or ``width`` inches, never wider)."""
    import matplotlib.pyplot as plt

    width = CONTENT_WIDTH_IN if width is None else min(width, CONTENT_WIDTH_IN)
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return fig, ax


def layout(n: int, min_width: float = 3.3) -> tuple[int, int]:
    """``(rows, cols)`` for ``n`` panels at least ``min_width`` inches wide in the text
    column: as many columns as fit, the rest in further rows."""
    if n < 1:
        raise ValueError(f"The 'n' parameter of layout must be at least 1. Got {n} instead.")
    cols = max(1, min(n, int(CONTENT_WIDTH_IN // min_width)))
    return math.ceil(n / cols), cols


def panels(n: int, *, min_width: float = 3.3, height: float = 3.0, spare: bool = False):
    """A figure at the book's text width with ``n`` panels of at least ``min_width`` inches
    (rows of :func:`layout`, ``height`` inches each); returns ``(fig, axes)``, a list of
    ``n`` Axes. The grid's unused cells are removed, or with ``spare`` returned too, hidden,
    as ``(fig, axes, spares)`` (a place for the legend)."""
    import matplotlib.pyplot as plt

    rows, cols = layout(n, min_width)
    width = CONTENT_WIDTH_IN if cols > 1 else min(CONTENT_WIDTH_IN, max(min_width, 5.5))
    fig, grid = plt.subplots(
        rows, cols, figsize=(width, height * rows), squeeze=False, layout="constrained"
    )
    axes = list(grid.flat)
    for ax in axes[n:]:
        if spare:
            ax.axis("off")
        else:
            ax.remove()
    return (fig, axes[:n], axes[n:]) if spare else (fig, axes[:n])


def figure_legend(fig, ax=None, *, handles=None, labels=None, title=None):
    """One legend for the whole figure, under the panels (outside the data), with as many
    columns as its entries fit in the figure's width. Entries come from ``ax`` (the first
    panel by default) unless ``handles`` and ``labels`` are given."""
    if handles is None:
        ax = ax if ax is not None else fig.axes[0]
        handles, labels = ax.get_legend_handles_labels()
    seen, pairs = set(), []
    for h, lab in zip(handles, labels):
        if lab and not lab.startswith("_") and lab not in seen:
            seen.add(lab)
            pairs.append((h, lab))
    if not pairs:
        return None
    # an entry is about its text plus a 3-character handle wide, at ~0.55 em per character
    em = _FONT["legend"] / 72
    widths = [(len(lab) + 5) * 0.55 * em for _, lab in pairs]
    width = fig.get_figwidth() - 0.2
    ncols = len(pairs)
    while ncols > 1 and sum(sorted(widths)[-ncols:]) > width:
        ncols -= 1
    return fig.legend(
        [h for h, _ in pairs],
        [lab for _, lab in pairs],
        loc="outside lower center",
        ncols=ncols,
        title=title,
    )


def small_multiples(
    draw, items: dict, *, min_width: float = 3.3, height: float = 3.0, legend=True, **kwargs
):
    """One panel per item of ``items`` (``{title: data}``), drawn by ``draw(data, ax=ax,
    title=title, legend=False, **kwargs)``, laid out by :func:`panels`, with one legend (from
    the first panel) when ``legend``: in the grid's first empty cell when the last row is not
    full, else under the panels. Returns the figure."""
    fig, axes, spares = panels(len(items), min_width=min_width, height=height, spare=True)
    for ax, (title, data) in zip(axes, items.items()):
        draw(data, ax=ax, title=title, legend=False, **kwargs)
    handles, labels = axes[0].get_legend_handles_labels()
    if legend and handles and spares:
        spares[0].legend(handles, labels, loc="center")
    elif legend:
        figure_legend(fig, axes[0])
    for ax in spares[1 if legend and handles else 0 :]:
        ax.remove()
    return fig


def _legend(ax, legend) -> None:
    """``legend=True``: the figure's legend under the panels (this axes' entries)."""
    if legend:
        figure_legend(ax.figure, ax)


def _axes(ax, height: float = 3.6):
    if ax is not None:
        return ax
    return figure(height)[1]


def _band(ax, x, values: pd.DataFrame, *, label=None, color=None, marker="o", linestyle="-"):
    """Mean over the columns of ``values`` (one per seed) with a min-max band."""
    v = np.asarray(values, dtype=float)
    mean = v.mean(axis=1)
    (line,) = ax.plot(
        x, mean, marker=marker, markersize=3.5, label=label, color=color, linestyle=linestyle
    )
    if v.shape[1] > 1:
        ax.fill_between(
            x, v.min(axis=1), v.max(axis=1), color=line.get_color(), alpha=0.18, linewidth=0
        )
    return line


def _by_seed(df: pd.DataFrame, index: str, value: str, scale: float = 100.0) -> pd.DataFrame:
    return df.pivot_table(index=index, columns="seed", values=value).sort_index() * scale


def _cell_text_fits(ax, rows: int, cols: int, text: str) -> bool:
    """Whether ``text`` at the book's cell size fits a cell of a ``rows x cols`` heat map on
    ``ax`` (estimated from the panel's share of its figure, before layout; the colour bar
    takes about a fifth of it)."""
    fig = ax.figure
    box = ax.get_position()
    cell_w = 72 * 0.8 * box.width * fig.get_figwidth() / cols
    cell_h = 72 * 0.8 * box.height * fig.get_figheight() / rows
    return cell_w >= 0.62 * _FONT["cell"] * len(text) + 2 and cell_h >= 1.3 * _FONT["cell"]


def symmetric_limit(values, step: float = 0.05) -> float:
    """The largest absolute finite value of ``values``, rounded up to ``step`` (``step``
    when all are zero): the bound of a diverging colour scale centred on 0."""
    v = np.asarray(values, dtype=float)
    v = np.abs(v[np.isfinite(v)])
    top = float(v.max()) if v.size else 0.0
    return max(step, math.ceil(top / step - 1e-9) * step)


def plot_cka(
    sim,
    ax=None,
    *,
    title: str | None = None,
    xlabel: str = "layer",
    ylabel: str = "layer",
    annotate: bool | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    cmap: str = HEATMAP_CMAP,
    colorbar: bool = True,
    colorbar_label: str = "linear CKA",
    legend=None,
):
    """Heat map of a layer-by-layer similarity matrix (linear CKA), or of a difference of two.

    Parameters
    ----------
    sim : array-like of shape (n_layers_a, n_layers_b)
        Similarities in [0, 1] (:func:`redundancy.analysis.similarity.layer_cka`); layer 0 is
        the embedding output.
    ax : matplotlib Axes, optional
    title, xlabel, ylabel : str
    annotate : bool, optional
        Write each value in its cell; by default when the numbers fit the cells at the
        book's text size.
    vmin, vmax : float or None
        Colour scale, [0, 1] by default so heat maps compare across models. With a diverging
        ``cmap`` and both None the scale is symmetric around 0 at the data's largest
        absolute value (:func:`symmetric_limit`), so no cell saturates.
    cmap : str
        A diverging one (:data:`DIVERGING_CMAP`) suits differences of two CKA matrices.
    colorbar : bool
    colorbar_label : str
    legend : ignored
        Accepted so that :func:`small_multiples` can draw heat maps.

    Returns
    -------
    matplotlib.axes.Axes
    """
    sim = np.asarray(sim, dtype=float)
    if sim.ndim != 2:
        raise ValueError(
            f"The 'sim' parameter of plot_cka must be a 2-D matrix. Got shape {sim.shape} instead."
        )
    diverging = cmap != HEATMAP_CMAP
    if vmin is None or vmax is None:
        limit = symmetric_limit(sim) if diverging else None
        vmin = (-limit if diverging else np.nanmin(sim)) if vmin is None else vmin
        vmax = (limit if diverging else np.nanmax(sim)) if vmax is None else vmax
    ax = _axes(ax, height=4.6)
    image = ax.imshow(sim, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    rows, cols = sim.shape
    step = 1 if max(rows, cols) <= 13 else 2
    ax.set_xticks(range(0, cols, step))
    ax.set_yticks(range(0, rows, step))
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(False)
    widest = "-0.00" if np.nanmin(sim) < 0 else "0.00"
    if annotate is None:
        annotate = max(rows, cols) <= 13 and _cell_text_fits(ax, rows, cols, widest)
    if annotate:
        for (i, j), v in np.ndenumerate(sim):
            if not np.isfinite(v):
                continue
            light = (
                abs(v) < 0.55 * max(abs(vmin), abs(vmax))
                if diverging
                else (v - vmin) / (vmax - vmin or 1.0) > 0.6
            )
            ax.text(
                j,
                i,
                f"{v:.2f}".replace("-0.00", "0.00"),
                ha="center",
                va="center",
                fontsize=_FONT["cell"],
                color="black" if light else "white",
            )
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label=colorbar_label, fraction=0.05, pad=0.03)
    if title:
        ax.set_title(title)
    return ax


def plot_labels(labels: pd.DataFrame, ax=None, *, title: str | None = None, legend=None):
    """Share of each label in a task's training split (horizontal bars, most frequent on top).

    ``labels`` has columns ``label`` and ``share`` (fractions), one task
    (:func:`redundancy.report.steps.label_table`).
    """
    ax = _axes(ax)
    part = labels.iloc[::-1]
    ax.barh(part["label"].astype(str), 100 * part["share"], color=PALETTE[0])
    ax.set_xlabel("training instances (%)")
    ax.grid(axis="y", visible=False)
    if title:
        ax.set_title(title)
    return ax


def plot_layer_scores(
    scores: pd.DataFrame, ax=None, *, split: str = "test", title=None, legend=True
):
    """Probe score of each layer alone and of layers 0..l, with the majority baseline and,
    when present, the control task's score of each layer (its selectivity is the gap).

    ``scores`` is a :func:`redundancy.report.steps.layer_probe_scores` table (fractions).
    ``legend``: put the legend under the figure's panels (outside the curves).
    """
    if split not in ("dev", "test"):
        raise ValueError(
            f"The 'split' parameter of plot_layer_scores must be 'dev' or 'test'. Got {split!r}."
        )
    ax = _axes(ax)
    task = scores[scores["target"] == "task"]
    for kind, marker, name in (
        ("layer", "o", "layer l alone"),
        ("incremental", "s", "layers 0..l"),
    ):
        part = task[task["kind"] == kind]
        values = _by_seed(part, "layer", split)
        _band(ax, values.index, values, label=name, marker=marker)
    control = scores[(scores["target"] == "control") & (scores["kind"] == "layer")]
    if len(control):
        values = _by_seed(control, "layer", split)
        _band(
            ax,
            values.index,
            values,
            label="control task, layer l",
            marker=".",
            linestyle="--",
            color="grey",
        )
    majority = scores.attrs.get("majority", {}).get(split)
    if majority is not None:
        ax.axhline(
            100 * majority, color="black", linestyle=":", linewidth=1, label="majority class"
        )
    layers = sorted(task["layer"].unique())
    ax.set_xticks(layers[:: 1 if len(layers) <= 9 else 2])
    ax.set(xlabel="layer (0 = embeddings)", ylabel=f"{split} score (%)")
    _legend(ax, legend)
    if title:
        ax.set_title(title)
    return ax


def plot_cc_sweep(
    sweeps: pd.DataFrame, ax=None, *, y: str = "fraction_redundant", title=None, legend=True
):
    """One line per run (``run`` column) across the correlation-clustering thresholds, the
    mean over seeds with a band; ``y`` is ``fraction_redundant`` or ``dev_vs_oracle``."""
    ax = _axes(ax)
    for run, part in sweeps.groupby("run", sort=False):
        values = _by_seed(part, "threshold", y)
        _band(ax, values.index, values, label=str(run))
    ax.set_xlabel("threshold t (distance 1 − |ρ|)")
    ax.set_ylabel(
        "redundant neurons (% of all)" if y == "fraction_redundant" else "dev score (% of oracle)"
    )
    _legend(ax, legend)
    if title:
        ax.set_title(title)
    return ax


def plot_window_hist(
    windows,
    ax=None,
    *,
    n_layers=None,
    title=None,
    label=None,
    offset=0.0,
    width=0.8,
    legend=True,
):
    """Histogram of cluster windows: how many consecutive layers each cluster spans (share of
    the clusters given, usually those of two or more neurons)."""
    w = np.asarray(windows, dtype=int).ravel()
    top = int(n_layers if n_layers is not None else (w.max() if w.size else 1))
    counts = np.bincount(w, minlength=top + 1)[1 : top + 1] if w.size else np.zeros(top, int)
    ax = _axes(ax)
    ax.bar(np.arange(1, top + 1) + offset, 100 * counts / max(w.size, 1), width=width, label=label)
    ax.set_xticks(range(1, top + 1))
    ax.set(xlabel="cluster window (layers spanned)", ylabel="clusters (%)")
    if label and legend:
        # several groups drawn on one axes: the last call's legend lists them all
        for old in list(ax.figure.legends):
            old.remove()
        figure_legend(ax.figure, ax)
    if title:
        ax.set_title(title)
    return ax


def ranking_curve(record: dict, grid: dict | None = None, seed_index: int = 0) -> pd.DataFrame:
    """The whole ranking curve of one seed: the sizes the minimal-set search tried, the
    result's fixed ``grid`` of shares (the same seed's row) and the oracle at 100% of the
    neurons. Columns ``k``, ``share`` (fraction of all neurons) and ``dev``, sorted by
    ``k``; where a size appears twice the search's score is kept."""
    n = record["n_total"]
    parts = [pd.DataFrame({"k": record["curve"]["k"], "dev": record["curve"]["dev"]})]
    if grid:
        parts.append(pd.DataFrame({"k": grid["k"], "dev": grid["dev"][seed_index]}))
    parts.append(pd.DataFrame({"k": [n], "dev": [record["oracle_dev"]]}))
    curve = pd.concat(parts, ignore_index=True).drop_duplicates("k", keep="first")
    curve = curve.sort_values("k", kind="stable").reset_index(drop=True)
    curve["k"] = curve["k"].astype(int)
    curve.insert(1, "share", curve["k"] / n)
    return curve[["k", "share", "dev"]]


def plot_ranking_curves(result: dict, ax=None, *, delta: float, title=None, legend=True):
    """Dev score of probes on the top-k ranked neurons against k, for every seed, over the
    whole range: the minimal-set search's sizes, the result's ``grid`` of shares and the
    oracle (all neurons, 100%), on a log axis to 100%. Each seed's oracle − δ line is
    dotted and its minimal set dashed (:func:`redundancy.report.steps.minimal_sets`)."""
    ax = _axes(ax)
    grid = result.get("grid")
    low = 100.0
    for i, rec in enumerate(result["seeds"]):
        color = PALETTE[i % len(PALETTE)]
        curve = ranking_curve(rec, grid, i)
        low = min(low, 100 * curve["share"].min())
        ax.plot(
            100 * curve["share"],
            100 * curve["dev"],
            marker="o",
            markersize=2.5,
            color=color,
            linewidth=1.2,
            label=f"seed {rec['seed']}",
        )
        ax.axhline(
            100 * rec["oracle_dev"] * (1 - delta / 100), color=color, linestyle=":", linewidth=1
        )
        ax.axvline(100 * rec["fraction"], color=color, linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlim(low / 1.3, 130)
    _plain_log_ticks(ax.xaxis)
    ax.set(xlabel="top-ranked neurons kept (% of all)", ylabel="dev score (%)")
    # empty lines that only name the line styles in the legend
    ax.plot([], [], color="grey", linestyle=":", linewidth=1, label="oracle − δ")
    ax.plot([], [], color="grey", linestyle="--", linewidth=1, label="minimal set")
    _legend(ax, legend)
    if title:
        ax.set_title(title)
    return ax


def _plain_log_ticks(axis) -> None:
    """Label a log axis with plain numbers (0.1, 1, 10, 2, 5 ...), not powers of ten; minor
    ticks are labelled only where matplotlib would label them (short ranges)."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def __call__(self, x, pos=None):
            return f"{x:g}" if super().__call__(x, pos) else ""

    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain(labelOnlyBase=False, minor_thresholds=(1, 0.5)))


def plot_selectivity(selectivity: dict, ax=None, *, title=None, legend=True):
    """Task and control dev scores of probes on the top-k neurons, and their difference
    (selectivity), against k (``minimal_sets(...)["selectivity"]``)."""
    ax = _axes(ax)
    x = 100 * np.asarray(selectivity["fraction"])
    task, control = np.asarray(selectivity["task_dev"]), np.asarray(selectivity["control_dev"])
    ax.plot(x, 100 * task, marker="o", markersize=3, label="task")
    ax.plot(x, 100 * control, marker=".", linestyle="--", color="grey", label="control task")
    ax.plot(x, 100 * (task - control), marker="s", markersize=3, label="selectivity")
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set(xlabel="top-ranked neurons kept (% of all)", ylabel="dev score (%)")
    _legend(ax, legend)
    if title:
        ax.set_title(title)
    return ax


def plot_layer_shares(shares: pd.DataFrame, ax=None, *, title=None, legend=True):
    """Share of each minimal set's neurons per layer: one group of bars per layer, one bar
    per column of ``shares`` (index: layer; values: fractions of the set)."""
    from matplotlib.ticker import MaxNLocator

    ax = _axes(ax)
    n = max(shares.shape[1], 1)
    width = 0.8 / n
    x = np.asarray(shares.index, dtype=float)
    for i, column in enumerate(shares.columns):
        ax.bar(
            x + (i - (n - 1) / 2) * width,
            100 * shares[column].to_numpy(dtype=float),
            width=width,
            label=str(column),
            color=PALETTE[i % len(PALETTE)],
        )
    if len(x) <= 16:
        ax.set_xticks(x)
    else:  # a deep model: integer ticks the panel has room for
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.set(xlabel="layer (0 = embeddings)", ylabel="neurons of the set (%)")
    ax.grid(axis="x", visible=False)
    _legend(ax, legend)
    if title:
        ax.set_title(title)
    return ax


def plot_minimal_layer_shares(minimal: dict, *, seed: int = 0):
    """Which layers each minimal set's neurons come from (``minimal``: ``{(model, task):
    minimal_sets result}``, the given seed): one panel per model, one bar per task (models
    of different depths never share a layer axis). Returns the figure."""
    by_model: dict[str, dict] = {}
    for (model, task), result in minimal.items():
        by_model.setdefault(str(model), {})[task] = result["seeds"][seed]["layer_share"]
    frames = {m: pd.DataFrame(tasks) for m, tasks in by_model.items()}
    if len(frames) == 1:
        ((model, frame),) = frames.items()
        return plot_layer_shares(frame, title=model).figure
    return small_multiples(plot_layer_shares, frames, min_width=3.6, height=3.1)


def _spread_bars(center, low, high) -> list:
    """Error-bar lengths below and above ``center``; a mean of equal values can round a
    hair outside their range (three times 0.1 average to 0.10000000000000002), which
    matplotlib refuses as a negative length, so lengths are at least 0."""
    center, low, high = (np.asarray(v, dtype=float) for v in (center, low, high))
    return [np.maximum(center - low, 0.0), np.maximum(high - center, 0.0)]


def plot_transfer(
    runs: pd.DataFrame,
    ax=None,
    *,
    score_kept: float,
    neurons_kept: float,
    title=None,
    legend=True,
):
    """Score kept against neurons kept for every (run, δ pair), mean over seeds with the
    seed range as error bars; the claim's region is shaded."""
    ax = _axes(ax, height=4.2)
    ax.axhspan(100 * score_kept, 101, xmax=1, color="#2ca02c", alpha=0.06)
    ax.axhline(
        100 * score_kept,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"{100 * score_kept:g}% of the oracle",
    )
    ax.axvline(
        100 * neurons_kept,
        color="grey",
        linestyle=":",
        linewidth=1,
        label=f"{100 * neurons_kept:g}% of the neurons",
    )
    keys = ["run", "branch", "delta_ls", "delta_fs"]
    for i, ((run, branch), part) in enumerate(runs.groupby(["run", "branch"], sort=False)):
        agg = part.groupby(keys)[["fraction_kept", "score_kept"]].agg(["mean", "min", "max"])
        x, y = 100 * agg["fraction_kept"], 100 * agg["score_kept"]
        ax.errorbar(
            x["mean"],
            y["mean"],
            xerr=_spread_bars(x["mean"], x["min"], x["max"]),
            yerr=_spread_bars(y["mean"], y["min"], y["max"]),
            fmt="o" if branch == "LS+CC+FS" else "^",
            color=PALETTE[i % len(PALETTE)],
            markersize=5,
            capsize=2,
            linewidth=0.9,
            label=f"{run}, {branch}",
        )
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set(xlabel="neurons kept (% of all)", ylabel="test score (% of oracle)")
    _legend(ax, legend)
    if title:
        ax.set_title(title)
    return ax


def plot_forward_timing(summary: pd.DataFrame, ax=None, *, reference=None, title=None, legend=True):
    """Median time per instance when stopping after each layer, with the range over the timed
    rounds (:func:`redundancy.analysis.timing.summarize_forward`, ``model`` column for
    several models); ``reference``: ``{label: ms}`` drawn as lines."""
    ax = _axes(ax)
    for model, part in summary.groupby("model", sort=False):
        part = part.sort_values("layer")
        y = part["ms_per_instance"]
        ax.errorbar(
            part["layer"],
            y,
            yerr=[y - part["ms_low"], part["ms_high"] - y],
            fmt="o-",
            markersize=3.5,
            capsize=2,
            label=str(model),
        )
    for i, (name, value) in enumerate((reference or {}).items()):
        ax.axhline(
            value,
            color=("black", "dimgrey")[i % 2],
            linestyle=("--", ":")[i % 2],
            linewidth=1,
            label=name,
        )
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)
    ax.set(xlabel="forward pass stopped after layer (0 = embeddings)", ylabel="ms per instance")
    _legend(ax, legend)
    if title:
        ax.set_title(title)
    return ax


def plot_probe_timing(
    summary: pd.DataFrame,
    ax=None,
    *,
    scale: float = 1.0,
    reference=None,
    title=None,
    legend=True,
):
    """Median probe training time against the number of features, with the range over the
    timed rounds (:func:`redundancy.analysis.timing.summarize_probe`), multiplied by
    ``scale`` (e.g. to the paper's 100,000 instances)."""
    ax = _axes(ax)
    s = summary.sort_values("n_features")
    y = scale * s["seconds"]
    ax.errorbar(
        s["n_features"],
        y,
        yerr=[y - scale * s["seconds_low"], scale * s["seconds_high"] - y],
        fmt="o-",
        markersize=3.5,
        capsize=2,
        label="this run",
    )
    for name, value in (reference or {}).items():
        ax.axhline(value, color="black", linestyle="--", linewidth=1, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax.xaxis)
    _plain_log_ticks(ax.yaxis)
    ax.set(xlabel="features", ylabel="training time (s)")
    _legend(ax, legend)
    if title:
        ax.set_title(title)
    return ax


def plot_decomposition(measured: pd.DataFrame, ax=None, *, title=None, legend=True):
    """Redundant neurons per threshold split into residual carry, clusters within one layer
    and the rest (stacked areas, percent of all neurons; first task of the model: tasks
    on the same sentences share their clusters)."""
    ax = _axes(ax)
    task = measured["task"].iloc[0]
    part = measured[measured["task"] == task].groupby("threshold").first()
    x = part.index.to_numpy()
    parts = [
        ("redundant_carry", "residual carry"),
        ("redundant_within_layer", "within one layer"),
        ("redundant_mixed", "the rest"),
    ]
    ax.stackplot(x, *[100 * part[c].to_numpy() for c, _ in parts], labels=[n for _, n in parts])
    ax.plot(x, 100 * part["fraction_redundant"], color="black", linewidth=1, label="all redundant")
    ax.set(xlabel="threshold t", ylabel="neurons (%)", ylim=(0, 100))
    ax.set_title(title or task)
    _legend(ax, legend)
    return ax


def _chapter_title(name: str) -> str:
    """``"03-neurons-clustering"`` -> ``"3. neurons clustering"`` (short enough for a panel
    title at reading size), or the name itself when it has no number."""
    number, _, rest = str(name).partition("-")
    return f"{int(number)}. {rest.replace('-', ' ')}" if number.isdigit() and rest else str(name)


def verdict_parts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The summary's rows: one per result chapter and headline part (token tasks, sentence
    tasks; the chapter itself where it has no parts), each with its own level, value,
    interval, the paper's number and the book's line (the setup chapter is not a result)."""
    out = []
    for r in verdicts.itertuples():
        if str(r.chapter).startswith("01-") or r.value is None or pd.isna(r.value):
            continue
        parts = [p for p in (getattr(r, "rows", None) or []) if p.get("headline")] or [None]
        for part in parts:
            src = part or {
                "scope": "",
                "level": r.level,
                "value": r.value,
                "low": r.low,
                "high": r.high,
            }
            out.append(
                {
                    "chapter": r.chapter,
                    "part": src["scope"],
                    "level": src["level"],
                    "value": src["value"],
                    "low": src["low"] if src["low"] is not None else src["value"],
                    "high": src["high"] if src["high"] is not None else src["value"],
                    "paper_value": r.paper_value,
                    "threshold": getattr(r, "threshold", None),
                    "unit": r.unit,
                }
            )
    return pd.DataFrame(out)


def plot_verdicts(verdicts: pd.DataFrame, axes=None):
    """One row per result chapter and headline part (``verdict_parts``): this run's value and
    interval as a dot coloured by that part's own verdict, the paper's number (dashed, only
    where the paper gives one) and the book's own line (dotted) drawn apart."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = verdict_parts(verdicts)
    fig = None
    if axes is None:
        fig, axes = plt.subplots(
            max(len(rows), 1),
            1,
            figsize=(CONTENT_WIDTH_IN, 1.05 * max(len(rows), 1) + 0.6),
            squeeze=False,
            layout="constrained",
        )
        axes = axes[:, 0]
    for ax, (_, r) in zip(axes, rows.iterrows()):
        pct = r["unit"] in ("fraction", "share of the oracle")
        k = 100.0 if pct else 1.0
        color = LEVEL_COLORS.get(r["level"], "black")
        ax.errorbar(
            [k * r["value"]],
            [0],
            xerr=[[k * max(r["value"] - r["low"], 0)], [k * max(r["high"] - r["value"], 0)]],
            fmt="o",
            color=color,
            capsize=3,
        )
        if pd.notna(r["paper_value"]):
            ax.axvline(k * r["paper_value"], color="black", linestyle="--", linewidth=1)
        if pd.notna(r["threshold"]):
            ax.axvline(k * r["threshold"], color="grey", linestyle=":", linewidth=1.2)
        ax.set_yticks([])
        ax.grid(axis="y", visible=False)
        unit = "%" if pct else str(r["unit"])
        part = f" · {r['part']}" if r["part"] else ""
        ax.set_title(f"{_chapter_title(r['chapter'])}{part}: {r['level']}", loc="left", color=color)
        ax.set_xlabel(f"measured ({unit})")
    if fig is not None:
        handles = [
            Line2D([], [], color="black", marker="o", linestyle="", label="this run, interval"),
            Line2D([], [], color="black", linestyle="--", label="the paper's number"),
            Line2D([], [], color="grey", linestyle=":", label="the book's line (no paper number)"),
        ]
        figure_legend(fig, handles=handles, labels=[h.get_label() for h in handles])
    return axes
