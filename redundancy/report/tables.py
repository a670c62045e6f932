"""What the chapters show: compact tables and text built from the steps' results.

Only arranging and formatting happens here (means and ranges over seeds, pivots, percents
for display); every number comes from :mod:`redundancy.report.steps`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = [
    "cc_table",
    "cka_stats",
    "claim",
    "decisions",
    "summary_markdown",
    "summary_table",
    "transfer_steps",
    "interval_text",
    "verdict_rows",
    "layer_table",
    "minimal_table",
    "parameter_label",
    "parameter_table",
    "probe_timing_table",
    "rule_text",
    "selection_table",
    "speed_table",
    "extraction_summary",
    "show",
    "transfer_summary",
]


def _has_unit(header) -> bool:
    name = str(header[-1] if isinstance(header, tuple) else header)
    return "%" in name or "points" in name


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _float_text(v) -> str:
    """A float for a table cell: three decimals below 100, one below 1,000, none below a
    million (with thousands separators), then ``m × 10ⁿ`` with three significant digits
    (a perplexity of 9,515,590,358 must not widen its column past the page)."""
    if pd.isna(v):
        return ""
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    size = abs(v)
    if size < 100:
        return f"{v:.3f}"
    if size < 1_000:
        return f"{v:.1f}"
    if size < 1_000_000:
        return f"{v:,.0f}"
    mantissa, exponent = f"{v:.2e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def show(df: pd.DataFrame, percent=(), *, digits: int = 1, index: bool = True):
    """A styled table: ``percent`` columns (fractions) as percents with ``digits`` decimals
    (their header gains " (%)" unless it already states "%" or "points": a unit is written in
    the header, never in the cells), columns already in percent (named "... (%)") with
    ``digits`` decimals, other floats by :func:`_float_text` (three decimals below 100),
    thousands separators for integers; float index values (thresholds) as written."""
    percent = [c for c in percent if c in df.columns]
    if percent:
        df = df.copy()
        for c in percent:
            df[c] = 100 * df[c].astype(float)
        df = df.rename(columns={c: c if _has_unit(c) else f"{c} (%)" for c in percent})
        percent = [c if _has_unit(c) else f"{c} (%)" for c in percent]
    fmt = {c: (lambda v, d=digits: "" if pd.isna(v) else f"{v:.{d}f}") for c in percent}
    for c in df.columns:
        if c in fmt:
            continue
        name = c[-1] if isinstance(c, tuple) else c
        if pd.api.types.is_integer_dtype(df[c]):
            fmt[c] = "{:,}"
        elif pd.api.types.is_float_dtype(df[c]):
            fmt[c] = f"{{:.{digits}f}}" if str(name).endswith("(%)") else _float_text
    styler = df.style.format(fmt, na_rep="")
    styler = styler.format_index(lambda v: f"{v:g}" if isinstance(v, float) else v, axis=0)
    return styler if index else styler.hide(axis="index")


def claim(rule, *, paper: bool = True):
    """Markdown: the paper's claim, as the rule (or a chapter's rule) states it; with
    ``paper=False`` a claim the book tests beyond the paper, said so."""
    from IPython.display import Markdown

    rule = getattr(rule, "rule", None) or rule
    lead = "The paper's claim." if paper else "The claim tested (the book's, not the paper's)."
    return Markdown(f"**{lead}** {rule.claim[0].upper()}{rule.claim[1:]}.")


def rule_text(rule, cfg=None):
    """Markdown: the rule that turns this chapter's numbers into its verdict; given a
    :class:`~redundancy.report.chapters.Chapter`, with how it decides for ``cfg``."""
    from IPython.display import Markdown

    text = rule.rule_text(cfg) if hasattr(rule, "rule_text") else rule.describe()
    return Markdown(f"**Rule.** {text[0].upper()}{text[1:]}")


def interval_text(low: float, high: float, digits: int = 1) -> str:
    """``"lo-hi"`` in percent (one number when both read the same)."""
    if pd.isna(low) or pd.isna(high):
        return ""
    a, b = f"{100 * low:.{digits}f}", f"{100 * high:.{digits}f}"
    return a if a == b else f"{a}-{b}"


def decisions(measured: pd.DataFrame, keys: list, extra: dict | None = None) -> pd.DataFrame:
    """A chapter's decisions for people: ``keys`` as the index, the score kept (percent of
    the oracle's score on the same sentences) with its paired-bootstrap interval and the decision, plus ``extra``
    columns (``{column: header}``, fractions shown as percents)."""
    extra = extra or {}
    out = measured[keys].copy()
    for key in keys:
        if key == "fraction":
            out[key] = [f"{100 * v:g}%" for v in measured[key]]
    for column, header in extra.items():
        out[header] = (100 * measured[column]).round(1)
    out["score kept (%)"] = (100 * measured["ratio"]).round(1)
    out["interval (%)"] = [
        interval_text(lo, hi) for lo, hi in zip(measured["low"], measured["high"])
    ]
    out["within δ?"] = measured["decision"]
    names = {"fraction": "top-ranked share", "threshold": "threshold t", "layer": "layers 0..l"}
    return out.rename(columns=names).set_index([names.get(k, k) for k in keys])


def cka_stats(stats: pd.DataFrame) -> pd.DataFrame:
    """Chapter 2's measurement for people: per model and sample, the mean CKA of adjacent
    layers and of layers three or more apart with their bounds, and the debiased means."""
    out = pd.DataFrame(
        {
            "model": stats["model"],
            "sample": stats["sample"],
            "adjacent": stats["adjacent"].round(3),
            "adjacent: bounds": [
                f"{a:.3f}-{b:.3f}" for a, b in zip(stats["adjacent_low"], stats["adjacent_high"])
            ],
            "3+ apart": stats["far"].round(3),
            "3+ apart: bounds": [
                f"{a:.3f}-{b:.3f}" for a, b in zip(stats["far_low"], stats["far_high"])
            ],
            "debiased: adjacent": stats["debiased_adjacent"].round(3),
            "debiased: 3+ apart": stats["debiased_far"].round(3),
        }
    )
    return out.set_index(["model", "sample"])


def verdict_rows(verdict) -> pd.DataFrame:
    """The judged parts of a verdict: headline rows (by task kind) first, then each task."""
    df = verdict.table()
    pct = verdict.unit in ("fraction", "share of the oracle")
    scale = 100 if pct else 1
    return pd.DataFrame(
        {
            "": df["scope"],
            "verdict": df["level"],
            "measured": [
                ("" if pd.isna(v) else f"{scale * v:.1f}%" if pct else f"{v:.2f}")
                for v in df["value"]
            ],
            "interval": [
                interval_text(lo, hi) if pct else f"{lo:.2f}-{hi:.2f}"
                for lo, hi in zip(df["low"], df["high"])
            ],
            "what decides": df["text"],
        }
    ).set_index("")


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
            "removable (%)": _span(1 - recs["fraction"], digits=2),
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
                "after CC (%)": _span(part["n_cc"] / part["n_all"], digits=2),
                "kept (%)": _span(part["fraction_kept"], digits=2),
                "score kept (%)": _span(part["score_kept"]),
            }
        )
    return pd.DataFrame(rows)


def transfer_steps(measured: pd.DataFrame) -> pd.DataFrame:
    """The paper's transfer table: per (model, task, branch, δ pair), the test score after
    each step (oracle, LayerSelector, clustering, feature selection) with the neurons left
    (means over seeds), the score kept with its paired-bootstrap interval and the decision.
    Clustering columns are blank for the branch without it."""
    rows = []
    for _, r in measured.iterrows():
        cc = r["branch"] != "LS+FS"
        row = {
            "model / task": f"{r['model']} / {r['task']}",
            "branch": r["branch"],
            "δ (LS, FS)": f"({r['delta_ls']:g}, {r['delta_fs']:g})",
            "oracle: test (%)": f"{100 * r['test_oracle']:.1f}",
            "neurons": f"{r['n_all']:,}",
            "LS: test (%)": f"{100 * r['test_ls']:.1f}",
            "LS: neurons": f"{r['n_ls']:,.0f}",
            "CC: test (%)": f"{100 * r['test_cc']:.1f}" if cc else "",
            "CC: neurons": f"{r['n_cc']:,.0f}" if cc else "",
            "FS: test (%)": f"{100 * r['test_fs']:.1f}",
            "FS: neurons": f"{r['n_fs']:,.0f}",
            "kept (% of neurons)": f"{100 * r['fraction_kept']:.2f}",
            "score kept (%)": f"{100 * r['ratio']:.1f}",
            "interval (%)": interval_text(r["low"], r["high"]),
            "within the claim?": r["decision"],
        }
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model / task", "branch", "δ (LS, FS)"])


def summary_markdown(found: pd.DataFrame) -> str:
    """The summary as a Markdown table whose chapter names link to the chapters: one row per
    chapter and headline part, its verdict, the measured value with its interval and the
    paper's number where the paper gives one."""
    table = summary_table(found).reset_index()
    lines = [
        "| chapter | part | verdict | measured | interval | the paper |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in table.itertuples():
        name = str(r.chapter)
        title = name.split("-", 1)[-1].replace("-", " ")
        lines.append(
            f"| [{name[:2].lstrip('0')}. {title}]({name}) | {r.part} | *{r.verdict}* | "
            f"{r.measured} | {r.interval} | {r.paper} |"
        )
    return "\n".join(lines)


def summary_table(found: pd.DataFrame) -> pd.DataFrame:
    """One row per chapter and judged part: the headline rows (token tasks, sentence tasks)
    and, under them, every task, each with its verdict, measured value and interval, and the
    paper's number where it gives one."""
    rows = []
    for r in found.itertuples():
        judged = list(r.rows or [])
        heads = [p for p in judged if p.get("headline")]
        parts = (heads + [p for p in judged if not p.get("headline")]) if heads else [None]
        pct = r.unit in ("fraction", "share of the oracle")
        for part in parts:
            value = r.value if part is None else part["value"]
            low = r.low if part is None else part["low"]
            high = r.high if part is None else part["high"]
            rows.append(
                {
                    "chapter": r.chapter,
                    "part": ""
                    if part is None
                    else part["scope"]
                    if part.get("headline")
                    else f"· {part['scope']}",
                    "verdict": r.level if part is None else part["level"],
                    "measured": ""
                    if value is None or pd.isna(value)
                    else (
                        f"{100 * value:.1f}%"
                        if pct
                        else f"{value:,.0f}"
                        if float(value).is_integer()
                        else f"{value:,.2f}"
                    ),
                    "interval": ""
                    if low is None or pd.isna(low)
                    else (interval_text(low, high) if pct else f"{low:.2f}-{high:.2f}"),
                    "paper": ""
                    if r.paper_value is None or pd.isna(r.paper_value)
                    else (f"{100 * r.paper_value:g}%" if pct else f"{r.paper_value:,g}"),
                }
            )
    return pd.DataFrame(rows).set_index(["chapter", "part"])


def selectivity_table(minimal: dict, scores: dict) -> pd.DataFrame:
    """Selectivity reported for the sets chosen by accuracy, per (model, task) with control
    tasks (token tasks): the oracle's selectivity and that of the top-ranked probes at the
    grid's shares (first seed), in points of dev score. Selectivity is never the removal
    criterion: it says how much of a set's score a probe could reach by memorising word
    types.

    ``minimal``: ``{(model, task): minimal_sets result}``; ``scores``: ``{(model, task):
    layer_probe_scores table}``.
    """
    rows = []
    for key, res in minimal.items():
        sel = res.get("selectivity")
        if not sel or key not in scores:
            continue
        df = scores[key]
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
        row = {
            "model": key[0],
            "task": key[1],
            "oracle": f"{100 * float(at[at['target'] == 'task']['dev'].iloc[0] - ctrl['dev'].iloc[0]):.1f}",
        }
        shares = res.get("grid", {}).get("share", sel["fraction"])
        for share, task, control in zip(shares, sel["task_dev"], sel["control_dev"]):
            row[f"top {100 * share:g}%"] = f"{100 * (task - control):.1f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "task"]) if rows else pd.DataFrame()


def speed_table(speed: pd.DataFrame) -> pd.DataFrame:
    """Forward-pass time at each selected layer against the full model, with the speed-up's
    range over the timed rounds."""
    return pd.DataFrame(
        {
            "model / task": speed["model"] + " / " + speed["task"],
            "stopped after layer": speed["layer"],
            "stopped (ms per instance)": [f"{v:.2f}" for v in speed["ms_per_instance"]],
            "full model (ms per instance)": [f"{v:.2f}" for v in speed["full_ms_per_instance"]],
            "speed-up (range over rounds)": [
                f"{m:.2f}× ({lo:.2f}-{hi:.2f})"
                for m, lo, hi in zip(speed["speedup"], speed["speedup_low"], speed["speedup_high"])
            ],
        }
    )


def probe_timing_table(probe: pd.DataFrame, *, scale: float = 1.0, instances=None) -> pd.DataFrame:
    """Probe training time per feature count, as the chapter's figure shows it: the median
    and range over the timed rounds multiplied by ``scale`` (measured on
    ``instances / scale`` instances, scaled linearly to ``instances``), and the time against
    the smallest feature count (a ratio, which scaling leaves unchanged).

    ``probe``: :func:`redundancy.analysis.timing.summarize_probe` (``n_features``,
    ``seconds``, ``seconds_low``, ``seconds_high``, ``vs_smallest``).
    """
    s = probe.sort_values("n_features")
    what = f"scaled to {instances:,} instances" if instances else "as measured"
    return pd.DataFrame(
        {
            "features": [f"{int(n):,}" for n in s["n_features"]],
            f"training time, {what} (s)": [f"{scale * v:.2f}" for v in s["seconds"]],
            "range over rounds (s)": [
                f"{scale * lo:.2f}-{scale * hi:.2f}"
                for lo, hi in zip(s["seconds_low"], s["seconds_high"])
            ],
            "time against the fewest features": [f"{v:.2f}×" for v in s["vs_smallest"]],
        }
    )


def extraction_summary(extraction: pd.DataFrame) -> pd.DataFrame:
    """The extraction table for people: model, task, split, where the features come from,
    instances, layers × hidden size, and the time the extraction took when it ran (seconds,
    one decimal; blank when the store did not record it)."""
    seconds = extraction["extraction_seconds"]
    return pd.DataFrame(
        {
            "model": extraction["model"],
            "task": extraction["task"],
            "split": extraction["split"],
            "features from": extraction["features from"],
            "instances": [f"{int(n):,}" for n in extraction["instances"]],
            "features (layers × hidden)": [
                f"{int(a) * int(b):,} ({int(a)} × {int(b)})"
                for a, b in zip(extraction["layers"], extraction["hidden"])
            ],
            "extraction time (s)": ["" if pd.isna(v) else f"{v:,.1f}" for v in seconds],
        }
    )


def selection_table(selected: pd.DataFrame) -> pd.DataFrame:
    """LayerSelector's choice per (model, task, seed): the selected layer of how many, and
    the dev and test scores (percent, one decimal) of the probe on layers 0..l against the
    oracle's. ``selected``: :func:`redundancy.report.steps.selected_layers` rows with
    ``model`` and ``task`` columns."""
    out = pd.DataFrame(
        {
            "model": selected["model"],
            "task": selected["task"],
            "seed": selected["seed"],
            "selected layer": [
                f"{int(a)} of 0..{int(b)}"
                for a, b in zip(selected["layer"], selected["last_layer"])
            ],
            "dev (%)": [f"{100 * v:.1f}" for v in selected["dev"]],
            "oracle dev (%)": [f"{100 * v:.1f}" for v in selected["oracle_dev"]],
            "test (%)": [f"{100 * v:.1f}" for v in selected["test"]],
            "oracle test (%)": [f"{100 * v:.1f}" for v in selected["oracle_test"]],
        }
    )
    return out.set_index(["model", "task", "seed"])


# Parameters a reader needs, in reading order, with the words the page uses; the result
# folder and the recompute switch describe the machine, not the run, and are left out.
_PARAMETER_NAMES = {
    "models": "models",
    "token_tasks": "token tasks",
    "sentence_tasks": "sentence tasks",
    "task_options": "split sizes",
    "data_dir": "data folders",
    "aggregation": "sub-word aggregation",
    "pooling": "sentence pooling",
    "dtype": "activation precision",
    "max_length": "longest input (tokens)",
    "batch_size": "extraction batch",
    "finetune": "fine-tune on sentence tasks",
    "finetune_max_train_sentences": "fine-tuning sentences (cap)",
    "finetune_epochs": "fine-tuning epochs",
    "probe_epochs": "probe epochs",
    "probe_lr": "probe learning rate",
    "probe_l1": "probe λ1 (L1)",
    "probe_l2": "probe λ2 (L2)",
    "probe_batch_size": "probe batch",
    "probe_dtype": "probe precision",
    "thresholds": "clustering thresholds",
    "cc_threshold": "clustering threshold of the transfer pipeline",
    "delta": "δ (% of the oracle's score)",
    "delta_pairs": "(δ_LS, δ_FS) pairs",
    "representative": "cluster representative",
    "random_state": "first seed",
    "n_seeds": "seeds",
    "control_tasks": "control tasks",
    "n_bootstrap": "bootstrap resamples",
    "confidence": "interval level",
    "device": "device",
    "timing_instances": "timed sentences (forward pass)",
    "timing_repeats": "timed rounds",
    "timing_features": "feature counts (probe timing)",
    "timing_probe_instances": "instances (probe timing)",
}


def _value_text(name: str, value) -> str:
    from pathlib import PurePath

    if value is None:
        return {
            "max_length": "the model's",
            "finetune_max_train_sentences": "none",
            "device": "GPU when there is one",
        }.get(name, "none")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "task_options":
        return (
            "; ".join(
                f"{task}: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in opts.items())
                for task, opts in value.items()
            )
            or "the tasks' defaults"
        )
    if name == "data_dir":  # folder names only: where they lie is the machine's business
        return "; ".join(f"{t}: {PurePath(p).name}" for t, p in value.items()) or "none"
    if name == "delta_pairs":
        return ", ".join(f"({a:g}, {b:g})" for a, b in value)
    if isinstance(value, (list, tuple)):
        return (
            ", ".join(
                f"{v:,}" if isinstance(v, int) else f"{v:g}" if isinstance(v, float) else str(v)
                for v in value
            )
            or "none"
        )
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parameter_label(name: str) -> str:
    """The words the book uses for a parameter (``"probe_epochs"`` -> ``"probe epochs"``), so
    that prose never shows a code name; unknown names are returned with spaces."""
    return _PARAMETER_NAMES.get(name, name.replace("_", " "))


def parameter_table(cfg) -> pd.DataFrame:
    """The run's parameters for people: one row each, a readable name, the value as the
    book writes it, and the name to use in a parameter file (``params/*.yaml``). Machine
    settings (the result folder, the recompute switch) are not shown, and data folders by
    name only."""
    values = cfg.to_dict()
    rows = [
        {"parameter": label, "value": _value_text(name, values[name]), "in params/*.yaml": name}
        for name, label in _PARAMETER_NAMES.items()
        if name in values
    ]
    return pd.DataFrame(rows).set_index("parameter")
