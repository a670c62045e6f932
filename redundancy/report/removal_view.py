"""What the removal chapter shows: perplexity against blocks removed, and its table."""

from __future__ import annotations

import numpy as np
import pandas as pd

LABELS = {
    "block_influence": "Block Influence (ShortGPT), lowest first",
    "cka_in_out": "CKA(block input, output), highest first",
    "adjacent_cka": "book's adjacent-layer CKA, highest first",
    "angular_span": "angular distance, best span (Gromov)",
    "greedy_loss": "greedy by calibration loss (SLEB)",
    "cka_recomputed": "CKA recomputed after each removal",
    "last_first": "last blocks first",
    "random": "random blocks (median; bars: range over seeds)",
}


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per ordering and k: perplexity, its interval, the ratio to the unpruned
    model and the blocks removed; random orderings as the median over seeds with the range
    of the seeds in ``low``/``high``."""
    rows = []
    for (name, k), g in table[table["k"] > 0].groupby(["ordering", "k"], sort=False):
        if name == "random":
            rows.append(
                dict(
                    ordering=name,
                    k=k,
                    perplexity=float(np.median(g["perplexity"])),
                    low=float(g["perplexity"].min()),
                    high=float(g["perplexity"].max()),
                    ratio=float(np.median(g["ratio"])),
                    blocks=f"{len(g)} seeds",
                )
            )
        else:
            r = g.iloc[0]
            rows.append(
                dict(ordering=name, k=k, perplexity=r["perplexity"], low=r["low"], high=r["high"],
                     ratio=r["ratio"], blocks=r["blocks"])
            )  # fmt: skip
    out = pd.DataFrame(rows)
    return out.sort_values(["k", "perplexity"]).set_index(["k", "ordering"])


def plot_removal(table: pd.DataFrame, ax=None):
    """Perplexity (log scale) against the number of blocks removed, one line per ordering,
    error bars from the bootstrap interval (random: the seeds' range); the dashed line is
    the unpruned model."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    s = summary(table).reset_index()
    for name in [o for o in LABELS if o in set(s["ordering"])]:
        g = s[s["ordering"] == name].sort_values("k")
        err = np.vstack([g["perplexity"] - g["low"], g["high"] - g["perplexity"]])
        ax.errorbar(g["k"], g["perplexity"], yerr=err, marker="o", capsize=3, label=LABELS[name])
    base = float(table.loc[table["ordering"] == "none", "perplexity"].iloc[0])
    ax.axhline(base, color="grey", linestyle="--", linewidth=1, label="no block removed")
    ax.axhline(2 * base, color="grey", linestyle=":", linewidth=1, label="2 x unpruned")
    ax.set_yscale("log")
    ax.set_xlabel("blocks removed (k)")
    ax.set_ylabel("perplexity on held-out Brown news")
    ax.set_xticks(sorted(set(s["k"])))
    ax.legend(fontsize=7, loc="upper left")
    return ax
