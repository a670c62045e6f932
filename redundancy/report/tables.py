"""What the chapters show: compact tables and text built from the steps' results.

Only arranging and formatting happens here (means and ranges over seeds, pivots, percents
for display); every number comes from :mod:`redundancy.report.steps`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "cc_table",
    "claim",
    "layer_table",
    "minimal_table",
    "rule_text",
    "show",
    "transfer_summary",
]


def show(df: pd.DataFrame, percent=(), *, digits: int = 1, index: bool = True):
    """A styled table: ``percent`` columns (fractions) as percents, columns already in
    percent (named "... (%)") with ``digits`` decimals, other floats with three decimals,
    thousands separators for integers; float index values (thresholds) as written."""
    percent = [c for c in percent if c in df.columns]
    fmt = {c: (lambda v, d=digits: "" if pd.isna(v) else f"{100 * v:.{d}f}%") for c in percent}
    for c in df.columns:
        if c in fmt:
            continue
        name = c[-1] if isinstance(c, tuple) else c
        if pd.api.types.is_integer_dtype(df[c]):
            fmt[c] = "{:,}"
        elif pd.api.types.is_float_dtype(df[c]):
            fmt[c] = f"{{:.{digits}f}}" if str(name).endswith("(%)") else "{:.3f}"
    styler = df.style.format(fmt, na_rep="")
    styler = styler.format_index(lambda v: f"{v:g}" if isinstance(v, float) else v, axis=0)
    return styler if index else styler.hide(axis="index")


def claim(rule):
    """Markdown: the paper's claim, as the rule states it."""
    from IPython.display import Markdown

    return Markdown(f"**The paper's claim.** {rule.claim[0].upper()}{rule.claim[1:]}.")


def rule_text(rule):
    """Markdown: the rule that turns this chapter's numbers into its verdict."""
    from IPython.display import Markdown

    return Markdown(f"**Rule.** {rule.describe()[0].upper()}{rule.describe()[1:]}")


def _span(values, scale=100.0, digits=1) -> str:
    """Mean, with the range over seeds in brackets when it shows at ``digits`` decimals."""
    v = np.asarray(values, dtype=float) * scale
    lo, hi = f"{v.min():.{digits}f}", f"{v.max():.{digits}f}"
    if v.size == 1 or lo == hi:
        return f"{v.mean():.{digits}f}"
    return f"{v.mean():.{digits}f} ({lo}-{hi})"


def layer_table(scores: dict) -> pd.DataFrame:
    """One row per (model, task): majority baseline, oracle test score (mean, seed range,
    bootstrap interval), the best single layer and the oracle's selectivity.

    ``scores``: ``{(model, task): layer_probe_scores table}``.
    """
    rows = []
    for (model, task), df in scores.items():
        t = df[df["target"] == "task"]
        last = t["layer"].max()
        oracle = t[(t["kind"] == "incremental") & (t["layer"] == last)]["test"]
        single = t[t["kind"] == "layer"].groupby("layer")["test"].mean()
        ctrl = df[(df["target"] == "control") & (df["kind"] == "incremental")]
        ctrl = ctrl[ctrl["layer"] == last]["test"]
        lo, hi = df.attrs.get("oracle_interval", [np.nan, np.nan])
        rows.append(
            {
                "model": model,
                "task": task,
                "majority (%)": f"{100 * df.attrs['majority']['test']:.1f}",
                "oracle test (%)": _span(oracle),
                "95% interval": "" if np.isnan(lo) else f"{100 * lo:.1f}-{100 * hi:.1f}",
                "best layer": f"{int(single.idxmax())} ({100 * single.max():.1f})",
                "selectivity (points)": ""
                if ctrl.empty
                else f"{100 * (oracle.mean() - ctrl.mean()):.1f}",
            }
        )
    return pd.DataFrame(rows).set_index(["model", "task"])


def cc_table(sweeps: pd.DataFrame) -> pd.DataFrame:
    """Rows: thresholds. Columns: redundant neurons and, per run, the dev score kept
    (percent of the oracle's; mean over seeds with the range)."""
    out = {}
    for run, part in sweeps.groupby("run", sort=False):
        red = part.groupby("threshold")["fraction_redundant"].first()
        out[(run, "redundant (%)")] = (100 * red).round(1)
        out[(run, "dev kept (%)")] = part.groupby("threshold")["dev_vs_oracle"].apply(_span)
    df = pd.DataFrame(out)
    df.index.name = "threshold"
    return df


def minimal_table(results: dict) -> pd.DataFrame:
    """One row per (model, task): minimal set and removable share over seeds, test scores,
    and the minimal set's selectivity when control tasks ran.

    ``results``: ``{(model, task): minimal_sets result}``.
    """
    rows = []
    for (model, task), res in results.items():
        recs = pd.DataFrame(res["seeds"])
        lo, hi = res["interval"]
        row = {
            "model": model,
            "task": task,
            "minimal set (% of neurons)": _span(recs["fraction"], digits=2),
            "removable (%)": _span(1 - recs["fraction"]),
            "minimal-set test (%)": _span(recs["test"]),
            "95% interval": "" if np.isnan(lo) else f"{100 * lo:.1f}-{100 * hi:.1f}",
        }
        sel = res.get("selectivity")
        if sel:
            i = int(np.argmin(np.abs(np.asarray(sel["k"]) - recs["k"].iloc[0])))
            row["selectivity (points)"] = (
                f"{100 * (sel['task_dev'][i] - sel['control_dev'][i]):.1f}"
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "task"])


def transfer_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, branch, δ pair): selected layer(s), neurons kept after each
    step and the score kept, means over seeds (ranges in brackets)."""
    rows = []
    keys = ["model", "task", "branch", "delta_ls", "delta_fs"]
    for (model, task, branch, dls, dfs), part in runs.groupby(keys, sort=False):
        layers = sorted(part["layer"].unique())
        rows.append(
            {
                "model / task": f"{model} / {task}",
                "branch": branch,
                "δ (LS, FS)": f"({dls:g}, {dfs:g})",
                "layer": ", ".join(map(str, layers)),
                "after CC (%)": _span(part["n_cc"] / part["n_all"], digits=1),
                "kept (%)": _span(part["fraction_kept"], digits=2),
                "score kept (%)": _span(part["score_kept"]),
            }
        )
    return pd.DataFrame(rows)


def selectivity_table(minimal: dict, scores: dict, delta: float) -> pd.DataFrame:
    """The minimal-set claim under selectivity, per (model, task) with control tasks.

    Selectivity = task dev score − control-task dev score (first seed). Columns: the oracle's
    selectivity, the selectivity of the top-ranked set of the minimal set's size, the smallest
    top-ranked set whose selectivity is within δ (percent) of the oracle's, and the share of
    neurons removable under that criterion, next to the share removable under accuracy.

    ``minimal``: ``{(model, task): minimal_sets result}``; ``scores``: ``{(model, task):
    layer_probe_scores table}``.
    """
    rows = []
    for key, res in minimal.items():
        sel, df = res.get("selectivity"), scores[key]
        if not sel:
            continue
        seed = res["seeds"][0]
        last = df["layer"].max()
        at = df[
            (df["kind"] == "incremental") & (df["layer"] == last) & (df["seed"] == seed["seed"])
        ]
        ctrl = df[
            (df["kind"] == "incremental") & (df["layer"] == last) & (df["target"] == "control")
        ]
        if at.empty or ctrl.empty:
            continue
        oracle_sel = float(at[at["target"] == "task"]["dev"].iloc[0] - ctrl["dev"].iloc[0])
        curve = np.asarray(sel["task_dev"]) - np.asarray(sel["control_dev"])
        i_min = int(np.argmin(np.abs(np.asarray(sel["k"]) - seed["k"])))
        ok = np.flatnonzero(curve >= oracle_sel * (1 - delta / 100))
        share = float(sel["fraction"][ok[0]]) if ok.size else None
        rows.append(
            {
                "model": key[0],
                "task": key[1],
                "oracle sel.": f"{100 * oracle_sel:.1f}",
                "minimal set (%)": f"{100 * seed['fraction']:.2f}",
                "its sel.": f"{100 * curve[i_min]:.1f}",
                "set keeping sel. (%)": "none" if share is None else f"{100 * share:.2f}",
                "removable by acc. (%)": f"{100 * (1 - seed['fraction']):.1f}",
                "removable by sel. (%)": "" if share is None else f"{100 * (1 - share):.1f}",
            }
        )
    return pd.DataFrame(rows).set_index(["model", "task"]) if rows else pd.DataFrame()


def speed_table(speed: pd.DataFrame) -> pd.DataFrame:
    """Forward-pass time at each selected layer against the full model, with the speed-up's
    range over the timed rounds."""
    out = pd.DataFrame(
        {
            "model / task": speed["model"] + " / " + speed["task"],
            "layer": speed["layer"],
            "ms stopped": speed["ms_per_instance"].round(3),
            "ms full": speed["full_ms_per_instance"].round(3),
            "speed-up (range)": [
                f"{m:.2f}x ({lo:.2f}-{hi:.2f})"
                for m, lo, hi in zip(speed["speedup"], speed["speedup_low"], speed["speedup_high"])
            ],
        }
    )
    return out
