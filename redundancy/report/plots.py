"""Figures of the book: one style, one function per kind of figure.

Every ``plot_*`` function draws on ``ax`` (a new figure when None) and returns the Axes, so
chapters can lay several out with ``plt.subplots``. Inputs are the steps' tables, with
scores and shares as fractions; the figures show percents (multiplied here, never guessed).
Results over several seeds are drawn as the mean with a band from the lowest to the highest
seed.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
"""Colours used in order for models/tasks (colour-blind friendly enough, high contrast)."""

HEATMAP_CMAP = "viridis"
LEVEL_COLORS = {
    "reproduced": "#2ca02c",
    "partly reproduced": "#ff7f0e",
    "not reproduced": "#d62728",
    "inconclusive": "#7f7f7f",
}


def set_style() -> None:
    """Apply the book's matplotlib style (white grid, readable fonts, tight layout)."""
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "figure.autolayout": True,
            "axes.grid": True,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 10.5,
            "axes.titleweight": "bold",
            "axes.labelsize": 9.5,
            "axes.prop_cycle": mpl.cycler(color=list(PALETTE)),
            "grid.alpha": 0.3,
            "legend.fontsize": 8,
            "legend.frameon": False,
            "xtick.labelsize": 8.5,
            "ytick.labelsize": 8.5,
            "image.cmap": HEATMAP_CMAP,
        }
    )


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    return ax


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
        Similarities in [0, 1] (:func:`redundancy.analysis.similarity.layer_cka`); layer 0 is
        the embedding output.
    ax : matplotlib Axes, optional
    title, xlabel, ylabel : str
    annotate : bool, optional
        Write each value in its cell; default when the matrix has at most 13 x 13 cells.
    vmin, vmax : float
        Colour scale (fixed to [0, 1] so heat maps compare across models).
    cmap : str
        A diverging one (``"RdBu_r"``) suits differences of two CKA matrices.
    colorbar : bool
    colorbar_label : str

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
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(False)
    if annotate is None:
        annotate = max(rows, cols) <= 13
    if annotate:
        size = 6.5 if max(rows, cols) > 8 else 7.5
        for (i, j), v in np.ndenumerate(sim):
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


def plot_labels(labels: pd.DataFrame, ax=None, *, title: str | None = None):
    """Share of each label in a task's training split (horizontal bars, most frequent on top).

    ``labels`` has columns ``label`` and ``share`` (fractions), one task
    (:func:`redundancy.report.steps.label_table`).
    """
    ax = _axes(ax)
    part = labels.iloc[::-1]
    ax.barh(part["label"].astype(str), 100 * part["share"], color=PALETTE[0])
    ax.set_xlabel("training instances (%)")
    ax.tick_params(axis="y", labelsize=7.5)
    if title:
        ax.set_title(title)
    return ax


def plot_layer_scores(scores: pd.DataFrame, ax=None, *, split: str = "test", title=None):
    """Probe score of each layer alone and of layers 0..l, with the majority baseline and,
    when present, the control task's score of each layer (its selectivity is the gap).

    ``scores`` is a :func:`redundancy.report.steps.layer_probe_scores` table (fractions).
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
    ax.set_xticks(sorted(task["layer"].unique()))
    ax.set(xlabel="layer (0 = embeddings)", ylabel=f"{split} score (%)")
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return ax


def plot_cc_sweep(sweeps: pd.DataFrame, ax=None, *, y: str = "fraction_redundant", title=None):
    """One line per run (``run`` column) across the correlation-clustering thresholds, the
    mean over seeds with a band; ``y`` is ``fraction_redundant`` or ``dev_vs_oracle``."""
    ax = _axes(ax)
    for run, part in sweeps.groupby("run", sort=False):
        values = _by_seed(part, "threshold", y)
        _band(ax, values.index, values, label=str(run))
    ax.set_xlabel("clustering threshold t (distance 1 − |ρ|)")
    ax.set_ylabel(
        "redundant neurons (% of all)"
        if y == "fraction_redundant"
        else "dev score (% of the oracle's)"
    )
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return ax


def plot_window_hist(
    windows, ax=None, *, n_layers=None, title=None, label=None, offset=0.0, width=0.8
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
    if label:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax


def plot_ranking_curves(result: dict, ax=None, *, delta: float, title=None):
    """Dev score of probes on the top-k ranked neurons (every seed) against k, with each
    seed's oracle − δ line and minimal set (:func:`redundancy.report.steps.minimal_sets`)."""
    ax = _axes(ax)
    for i, rec in enumerate(result["seeds"]):
        color = PALETTE[i % len(PALETTE)]
        share = 100 * np.asarray(rec["curve"]["k"]) / rec["n_total"]
        ax.plot(
            share,
            100 * np.asarray(rec["curve"]["dev"]),
            marker="o",
            markersize=2.5,
            color=color,
            linewidth=1,
            label=f"seed {rec['seed']}",
        )
        ax.axhline(
            100 * rec["oracle_dev"] * (1 - delta / 100), color=color, linestyle=":", linewidth=0.8
        )
        ax.axvline(100 * rec["fraction"], color=color, linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set(xlabel="top-ranked neurons kept (% of all, log scale)", ylabel="dev score (%)")
    ax.legend(loc="lower right", title="dotted: oracle − δ; dashed: minimal set")
    if title:
        ax.set_title(title)
    return ax


def plot_selectivity(selectivity: dict, ax=None, *, title=None):
    """Task and control dev scores of probes on the top-k neurons, and their difference
    (selectivity), against k (``minimal_sets(...)["selectivity"]``)."""
    ax = _axes(ax)
    x = 100 * np.asarray(selectivity["fraction"])
    task, control = np.asarray(selectivity["task_dev"]), np.asarray(selectivity["control_dev"])
    ax.plot(x, 100 * task, marker="o", markersize=3, label="task")
    ax.plot(x, 100 * control, marker=".", linestyle="--", color="grey", label="control task")
    ax.plot(x, 100 * (task - control), marker="s", markersize=3, label="selectivity")
    ax.set_xscale("log")
    ax.set(xlabel="top-ranked neurons kept (% of all, log scale)", ylabel="dev score (%)")
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return ax


def plot_transfer(
    runs: pd.DataFrame, ax=None, *, score_kept: float, neurons_kept: float, title=None
):
    """Score kept against neurons kept for every (run, δ pair), mean over seeds with the
    seed range as error bars; the claim's region is shaded."""
    ax = _axes(ax)
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
            xerr=[x["mean"] - x["min"], x["max"] - x["mean"]],
            yerr=[y["mean"] - y["min"], y["max"] - y["mean"]],
            fmt="o" if branch == "LS+CC+FS" else "^",
            color=PALETTE[i % len(PALETTE)],
            markersize=4,
            capsize=2,
            linewidth=0.8,
            label=f"{run}, {branch}",
        )
    ax.set_xscale("log")
    ax.set(xlabel="neurons kept (% of all, log scale)", ylabel="test score (% of the oracle's)")
    ax.legend(loc="lower right", fontsize=7)
    if title:
        ax.set_title(title)
    return ax


def plot_forward_timing(summary: pd.DataFrame, ax=None, *, reference=None, title=None):
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
    ax.set(
        xlabel="forward pass stopped after layer (0 = embeddings)",
        ylabel="time per instance (ms, log scale)",
    )
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return ax


def plot_probe_timing(
    summary: pd.DataFrame, ax=None, *, scale: float = 1.0, reference=None, title=None
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
    ax.set(xlabel="features", ylabel="training time (s, log scale)")
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return ax


def plot_decomposition(measured: pd.DataFrame, ax=None, *, title=None):
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
    ax.set(xlabel="clustering threshold t", ylabel="neurons (%)", ylim=(0, 100))
    ax.set_title(title or task)
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_verdicts(verdicts: pd.DataFrame, axes=None):
    """Small multiples, one per chapter with numbers: the paper's value (dashed) beside this
    run's estimate and interval, coloured by the verdict (``verdicts.load(cfg)``)."""
    import matplotlib.pyplot as plt

    rows = verdicts[verdicts["value"].notna()].reset_index(drop=True)
    if axes is None:
        _, axes = plt.subplots(len(rows), 1, figsize=(7.0, 0.95 * max(len(rows), 1)), squeeze=False)
        axes = axes[:, 0]
    for ax, (_, r) in zip(axes, rows.iterrows()):
        pct = r["unit"] == "fraction"
        k = 100.0 if pct else 1.0
        lo = r["low"] if pd.notna(r["low"]) else r["value"]
        hi = r["high"] if pd.notna(r["high"]) else r["value"]
        color = LEVEL_COLORS.get(r["level"], "black")
        ax.errorbar(
            [k * r["value"]],
            [0],
            xerr=[[k * (r["value"] - lo)], [k * (hi - r["value"])]],
            fmt="o",
            color=color,
            capsize=3,
        )
        if pd.notna(r["paper_value"]):
            ax.axvline(k * r["paper_value"], color="black", linestyle="--", linewidth=1)
        if "threshold" in r and pd.notna(r["threshold"]):
            ax.axvline(k * r["threshold"], color="grey", linestyle=":", linewidth=1)
        ax.set_yticks([])
        ax.grid(axis="y", visible=False)
        unit = "%" if pct else f" ({r['unit']})"
        ax.set_title(f"{r['chapter']}: {r['level']}", loc="left", fontsize=8.5, color=color)
        ax.tick_params(axis="x", labelsize=7.5)
        ax.set_xlabel(f"value{unit}; dashed: the paper; dotted: the book's line", fontsize=7.5)
    return axes
