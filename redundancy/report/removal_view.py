"""What the removal chapter shows: loss against blocks removed, neurons replaced, tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

LABELS = {
    "adjacent_cka": "book's adjacent-layer CKA, highest first",
    "last_first": "last blocks first (LayerSelector)",
    "block_influence": "Block Influence (ShortGPT), lowest first",
    "cka_in_out": "CKA(block input, output), highest first",
    "angular_span": "angular distance, best span (Gromov)",
    "greedy_loss": "greedy by calibration loss (SLEB)",
    "greedy_output": "greedy by change of the last layer",
    "cka_recomputed": "CKA recomputed after each removal",
    "random": "random blocks (median; bars: range of the sets)",
}
"""How the figures and tables name each ordering."""

METHODS = {
    "cluster": "clustering: fit from the representative",
    "cluster-mean": "the same neurons: their mean",
    "random-mean": "as many random neurons: their mean (median; bars: range)",
}
"""How the neuron figure names each replacement."""


SHORT = {
    "adjacent_cka": "book's adjacent CKA",
    "last_first": "last blocks first",
    "block_influence": "Block Influence",
    "cka_in_out": "CKA(input, output)",
    "angular_span": "angular span",
    "greedy_loss": "greedy (SLEB)",
    "greedy_output": "greedy (last layer)",
    "cka_recomputed": "CKA recomputed",
    "random": "random sets",
    "angular": "angular distance, last token",
    "angular_mean": "angular distance, every token",
    "n_replaced": "neurons replaced",
    "blocks": "blocks removed",
    "ratio": "to the whole model",
    "mean_abs_corr": "mean |correlation|",
    "score": "score",
}
"""How the tables name orderings and columns."""


def readable(df: pd.DataFrame) -> pd.DataFrame:
    """A removal table for the book: orderings and columns by name, not by code."""
    out = df.rename(columns=SHORT, index=SHORT)
    out.index = out.index.set_names([SHORT.get(n, n) for n in out.index.names])
    return out


def _value_column(table: pd.DataFrame) -> tuple[str, bool]:
    """The score column and whether higher is better (decoders: perplexity, lower)."""
    if "score" in table:
        return "score", True
    return "perplexity", False


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per ordering and k: the score (or perplexity), its interval, the ratio to
    the whole model and the blocks removed; random sets as their median with the range of
    the sets in ``low``/``high``. Sorted by k, best first."""
    col, higher = _value_column(table)
    exhaustive = table.attrs.get("random") == "exhaustive"
    rows = []
    for (name, k), g in table[table["k"] > 0].groupby(["ordering", "k"], sort=False):
        if name == "random":
            rows.append(
                {
                    "ordering": name,
                    "k": k,
                    col: float(np.median(g[col])),
                    "low": float(g[col].min()),
                    "high": float(g[col].max()),
                    "ratio": float(np.median(g["ratio"])),
                    "blocks": f"all {len(g)} sets" if exhaustive else f"{len(g)} seeds",
                }
            )
        else:
            r = g.iloc[0]
            rows.append(
                {"ordering": name, "k": k, col: r[col], "low": r["low"], "high": r["high"],
                 "ratio": r["ratio"], "blocks": r["blocks"]}
            )  # fmt: skip
    out = pd.DataFrame(rows)
    out = out.sort_values(["k", col], ascending=[True, not higher])
    return out.set_index(["k", "ordering"])


def plot_removal(table: pd.DataFrame, ax=None, *, title: str | None = None):
    """The score (or perplexity, log scale) against the number of blocks removed, one line
    per ordering with its bootstrap interval (random: the range of the sets); the dashed
    line is the whole model (decoders: the dotted one twice its perplexity)."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    col, higher = _value_column(table)
    s = summary(table).reset_index()
    for name in [o for o in LABELS if o in set(s["ordering"])]:
        g = s[s["ordering"] == name].sort_values("k")
        err = np.vstack([g[col] - g["low"], g["high"] - g[col]]).clip(min=0)
        style = {"color": "grey", "linestyle": "--"} if name == "random" else {}
        ax.errorbar(g["k"], g[col], yerr=err, marker="o", capsize=3, label=LABELS[name], **style)
    base = float(table.loc[table["ordering"] == "none", col].iloc[0])
    ax.axhline(base, color="black", linestyle="--", linewidth=1, label="no block removed")
    if higher:
        ax.set_ylabel(table.attrs.get("metric", "score") + " (test subset)")
    else:
        ax.axhline(2 * base, color="black", linestyle=":", linewidth=1, label="2 x unpruned")
        ax.set_yscale("log")
        ax.set_ylabel("perplexity, Brown news")
    ax.set_xlabel("blocks removed (k)")
    ax.set_xticks(sorted(set(s["k"])))
    if title:
        ax.set_title(title)
    return ax


def plot_model_removal(blocks: pd.DataFrame, tables: dict | None = None):
    """One panel per model and task (:func:`plot_removal`), one legend under them.

    ``blocks``: the chapter's measured rows (``model`` and ``task`` columns); ``tables``
    (``(model, task)`` -> the step's table) lends each panel its attrs (metric, random
    sets). Panels are titled by task, or by model and task when there are several models."""
    from . import plots

    pairs = list(dict.fromkeys(zip(blocks["model"], blocks["task"])))
    several = len({m for m, _ in pairs}) > 1
    fig, axes = plots.panels(len(pairs), min_width=3.3, height=3.2)
    for ax, (model, task) in zip(axes, pairs):
        part = blocks[(blocks["model"] == model) & (blocks["task"] == task)]
        part = part.drop(columns=["higher_better"], errors="ignore")
        if (tables or {}).get((model, task)) is not None:
            part.attrs.update(tables[(model, task)].attrs)
        plot_removal(part, ax=ax, title=f"{model} / {task}" if several else str(task))
    plots.figure_legend(fig, axes[0])
    return fig


def plot_decoders(tables: dict):
    """One panel per decoder (``model`` -> :func:`removal_sweep`'s table), perplexity
    against blocks removed (:func:`plot_removal`), one legend under them."""
    from . import plots

    fig, axes = plots.panels(len(tables), min_width=5.0, height=4.0)
    for ax, (model, table) in zip(axes, tables.items()):
        plot_removal(table, ax=ax, title=str(model) if len(tables) > 1 else None)
    plots.figure_legend(fig, axes[0])
    return fig


def plot_neurons(neurons: pd.DataFrame):
    """Perplexity against the clustering threshold, one panel per kind of cluster
    (within a layer, residual carry): clustering's replacement, the same neurons replaced
    by their mean, and as many random neurons replaced by their mean; the dashed line is
    the whole model. Thresholds at which clustering replaced nothing are left out; one
    panel per model and kind when ``neurons`` has a ``model`` column. A panel whose
    perplexities reach ten times the whole model's has a logarithmic axis."""
    from . import plots

    if "model" not in neurons:
        neurons = neurons.assign(model="")
    data = neurons[(neurons["method"] != "none") & (neurons["n_replaced"] > 0)]
    pairs = list(dict.fromkeys(zip(data["model"], data["kind"]))) or [
        (neurons["model"].iloc[0], "nothing replaced")
    ]
    several = len({m for m, _ in pairs}) > 1
    fig, axes = plots.panels(len(pairs), min_width=3.3, height=3.2)
    for ax, (model, kind) in zip(axes, pairs):
        mine = neurons[neurons["model"] == model]
        base = float(mine.loc[mine["method"] == "none", "perplexity"].iloc[0])
        part = data[(data["model"] == model) & (data["kind"] == kind)]
        for method, label in METHODS.items():
            g = part[part["method"] == method].groupby("threshold")["perplexity"]
            if not len(g):
                continue
            mid = g.median()
            if method == "random-mean":
                lo, hi = g.min(), g.max()
            else:
                lo = part[part["method"] == method].groupby("threshold")["low"].min()
                hi = part[part["method"] == method].groupby("threshold")["high"].max()
            err = np.vstack([mid - lo, hi - mid]).clip(min=0)
            ax.errorbar(mid.index, mid, yerr=err, marker="o", capsize=3, label=label)
        ax.axhline(base, color="black", linestyle="--", linewidth=1, label="nothing replaced")
        if len(part) and part["high"].max() > 10 * base:  # 73 and 58,000 on one axis
            ax.set_yscale("log")
        ax.set_title(f"{model} / {kind}" if several else str(kind))
        ax.set_xlabel("clustering threshold (1 - |correlation|)")
        ax.set_ylabel("perplexity, Brown news")
    plots.figure_legend(fig, axes[0])
    return fig
