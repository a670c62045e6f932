"""What the numbers mean: each chapter's closing paragraph, written from its own measurement
and verdict, and the book's discussion of what a run cannot show.

Every sentence here is conditional on the numbers it states, so a rerun with other
parameters reads correctly: nothing is written for the default run only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .paper import PAPER

__all__ = ["discussion", "meaning"]


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _pct_range(values, digits: int = 1) -> str:
    """``a%-b%`` over ``values``, or one number when both ends read the same."""
    lo, hi = _pct(np.min(values), digits), _pct(np.max(values), digits)
    return lo if lo == hi else f"{lo}-{hi}"


def _names(items) -> str:
    items = [f"`{i}`" for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _cka(measured: pd.DataFrame, verdict) -> list[str]:
    out = []
    for m, part in measured.groupby("model", sort=False):
        adj, far = part["adjacent"].mean(), part["far"].mean()
        deb = part["debiased_adjacent"].mean() if "debiased_adjacent" in part else np.nan
        text = (
            f"In `{m}`, neighbouring layers have a linear CKA of {adj:.2f} on average against "
            f"{far:.2f} for layers three or more apart"
        )
        if not np.isnan(deb):
            text += (
                f"; the debiased estimate of the neighbours' similarity is {deb:.2f}, so the "
                "high values are "
                + (
                    "not an artefact of the estimator."
                    if deb >= adj - 0.1
                    else "partly the estimator's upward bias."
                )
            )
        else:
            text += "."
        out.append(text)
    return out


def _clustering(measured: pd.DataFrame, verdict) -> list[str]:
    out = []
    for r in [r for r in verdict.rows if not r["headline"]]:
        model, task = r["scope"].split(" / ")
        part = measured[(measured["model"] == model) & (measured["task"] == task)]
        sure = part[part["decision"] == "within"]
        if sure.empty:
            out.append(
                f"For `{task}` no clustering threshold keeps the oracle within δ once noise is "
                "counted: even the mildest clustering loses accuracy, or the dev set is too "
                "small to show that it does not."
            )
            continue
        best = sure.sort_values("fraction_redundant").iloc[-1]
        text = (
            f"For `{task}` ({r['kind']} task), clustering at t = {best['threshold']:g} removes "
            f"{_pct(best['fraction_redundant'])} of the neurons within δ"
        )
        if "redundant_carry" in best and best["fraction_redundant"] > 0:
            carry = best["redundant_carry"] / best["fraction_redundant"]
            within = best["redundant_within_layer"] / best["fraction_redundant"]
            text += (
                f"; {_pct(carry, 0)} of that redundancy is one hidden dimension carried "
                f"across adjacent layers by the residual stream, {_pct(within, 0)} is "
                "duplication inside one layer"
            )
        out.append(text + ".")
    kinds = {r["kind"]: r for r in verdict.rows if r["headline"]}
    if len(kinds) == 2 and kinds["token"]["level"] != kinds["sentence"]["level"]:
        out.append(
            "Token and sentence tasks disagree: an average over both, as one headline "
            "number, would describe neither."
        )
    return out


def _layers(measured: pd.DataFrame, verdict, cfg) -> list[str]:
    from .steps import layer_probe_scores

    flat = []
    for (m, t), part in measured.groupby(["model", "task"], sort=False):
        scores = layer_probe_scores(m, t, cfg)
        majority = scores.attrs.get("majority", {}).get("dev")
        if majority is None:
            continue
        lower = part[part["layer"] < part["n_layers"] - 1]
        if len(lower) and (lower["dev"] <= majority + 0.01).all():
            flat.append(t)
    out = []
    if flat:
        out.append(
            f"The probes on the lower layers of {_names(flat)} score at the majority class "
            "(within a point of it): nothing below the last layer carries the task, so "
            "LayerSelector can only pick the last layer and the transfer chapter cannot save "
            "any forward computation there. The sentence representation is built in the last "
            "block (a first-token vector sees the sentence only through attention)."
        )
    reached = [r for r in verdict.rows if not r["headline"] and r["level"] == "reproduced"]
    if reached:
        out.append(
            f"For {_names([r['scope'].split(' / ')[1] for r in reached])} the lower third of "
            "the layers already reaches the oracle: the upper layers are redundant for them."
        )
    return out


def _ranking(measured: pd.DataFrame, verdict) -> list[str]:
    out = []
    for r in [r for r in verdict.rows if not r["headline"]]:
        task = r["scope"].split(" / ")[1]
        out.append(
            f"For `{task}`, {_pct(r['low'])}"
            + (f" to {_pct(r['high'])}" if r["high"] > r["low"] + 1e-9 else "")
            + f" of the neurons can be removed within δ (paper: at least "
            f"{_pct(PAPER.removable_for_task, 0)})."
        )
    return out


def _transfer(measured: pd.DataFrame, verdict) -> list[str]:
    out = []
    for (_, t), part in measured.groupby(["model", "task"], sort=False):
        cc = part[part["branch"] == "LS+CC+FS"]
        fs = part[part["branch"] == "LS+FS"]
        if cc.empty:
            continue
        text = (
            f"For `{t}` the full recipe keeps {_pct_range(cc['ratio'])} of the oracle's test "
            f"score with {_pct_range(cc['fraction_kept'], 2)} of the neurons"
        )
        if len(fs):
            gain = fs["ratio"].mean() - cc["ratio"].mean()
            text += "; skipping the clustering step " + (
                f"keeps {_pct(abs(gain))} more of the score"
                if gain > 0.005
                else f"loses {_pct(abs(gain))} of the score"
                if gain < -0.005
                else "changes the score by less than half a point"
            )
        out.append(text + ".")
    return out


def _timing(measured, verdict) -> list[str]:
    out = []
    for r in verdict.rows:
        out.append(
            f"{r['scope'][0].upper()}{r['scope'][1:]}: the measured speed-up is "
            f"{_pct(r['value'], 0)} of what the arithmetic predicts."
        )
    probe = [r for r in verdict.rows if r["kind"] == "probe"]
    if probe and probe[0]["value"] < 0.5:
        out.append(
            "Probe training time grows much more slowly than the number of features here: "
            "each step's fixed costs (reading the instances, the optimiser) dominate at these "
            "sizes, so feature selection saves less training time than its feature count "
            "suggests."
        )
    return out


_BOOK_ORDERINGS = {
    "adjacent_cka": "the book's CKA",
    "last_first": "LayerSelector (last blocks first)",
    "block_influence": "Block Influence",
}


def _beats_share(value: float, random: pd.Series, higher: bool) -> float:
    """Fraction of the random sets a choice does strictly better than."""
    return float((random < value).mean() if higher else (random > value).mean())


def _removal(measured, verdict) -> list[str]:
    blocks, neurons = measured
    out = []
    if blocks is not None and len(blocks):
        for (model, task), g in blocks.groupby(["model", "task"], sort=False):
            higher = bool(g["higher_better"].iloc[0])
            k = int(g["k"].max())
            at = g[g["k"] == k]
            rnd = at.loc[at["ordering"] == "random", "score"]
            shares = [
                f"{label} {_pct(_beats_share(float(row['score'].iloc[0]), rnd, higher), 0)}"
                for name, label in _BOOK_ORDERINGS.items()
                if not (row := at[at["ordering"] == name]).empty
            ]
            fixed = at[at["ordering"] != "random"]
            top = fixed["score"].max() if higher else fixed["score"].min()
            tied = list(dict.fromkeys(fixed.loc[fixed["score"] == top, "ordering"]))
            if len(tied) == len(set(fixed["ordering"])):
                best = "every ordering scored the same"
            elif len(tied) > 1:
                best = "the best orderings (tied) were " + ", ".join(tied)
            else:
                row = fixed[fixed["ordering"] == tied[0]].iloc[0]
                blocks = f" (blocks {row['blocks']})" if "blocks" in row else ""
                best = f"the best ordering was {tied[0]}{blocks}"
            if shares:
                first, *rest = shares
                label, share = first.rsplit(" ", 1)
                out.append(
                    f"{model} / {task}, {k} blocks removed: {label} did better than {share} of "
                    f"the {len(rnd)} random sets" + "".join(f", {r}" for r in rest) + f"; {best}."
                )
    if neurons is not None and len(neurons):
        part = [r for r in verdict.rows if r["kind"] == "clustering" and not r["headline"]]
        for r in part:
            out.append(f"Clustering's replacement, {r['scope'].split(': ', 1)[1]}: {r['level']}.")
    return out


def meaning(name: str, cfg, measured, verdict) -> str:
    """The closing paragraph of chapter ``name`` (Markdown), from its measurement and
    verdict."""
    key = name[:2]
    if key == "02":
        parts = _cka(measured, verdict)
    elif key == "03":
        parts = _clustering(measured, verdict)
    elif key == "04":
        parts = _layers(measured, verdict, cfg)
    elif key == "05":
        parts = _ranking(measured, verdict)
    elif key == "06":
        parts = _transfer(measured, verdict)
    elif key == "07":
        parts = _timing(measured, verdict)
    elif key == "08":
        parts = _removal(measured, verdict)
    else:
        parts = []
    if not parts:
        return ""
    return "**What this means.** " + " ".join(parts)


def discussion(cfg, found: pd.DataFrame) -> str:
    """The book's discussion and limitations (Markdown) for this run's parameters and
    verdicts (:func:`redundancy.report.verdicts.load`)."""
    from ..data.tasks import task_level

    paragraphs = []
    results = found[~found["chapter"].astype(str).str.startswith("01-")]
    inconclusive = list(results.loc[results["level"] == "inconclusive", "chapter"])
    other_models = [m for m in cfg.models if m not in PAPER.models]
    if other_models:
        paragraphs.append(
            f"**Models.** This run uses {_names(other_models)} instead of the paper's BERT and "
            "XLNet. Sentence-embedding fine-tunes are trained to pool their last layer into "
            "sentence vectors, so their upper layers may be less redundant for sentence tasks, "
            "and a smaller width means fewer neurons to share each feature: the redundancy "
            "measured here speaks for these models, not for the paper's."
        )
    if any(t.startswith("brown-") for t in cfg.tasks):
        paragraphs.append(
            "**Corpus.** The tasks come from the Brown corpus, one million words with gold "
            "tags, instead of the paper's WSJ, PMB, CCGbank, CoNLL and GLUE data, which "
            "cannot be had here. Brown's universal POS tags are comparable to the paper's POS "
            "task; its two sentence tasks are stand-ins of the paper's GLUE tasks, smaller "
            "and easier to memorise."
        )
    sentence = [t for t in cfg.tasks if task_level(t) == "sentence"]
    if sentence:
        paragraphs.append(
            f"**Noise.** The sentence tasks ({_names(sentence)}) are judged on a few thousand "
            "dev and test sentences at most, where one score moves by about a point from "
            "sampling alone, while δ is 1% of the oracle. Every decision therefore uses a "
            "paired bootstrap; where the line lies inside the interval the verdict says "
            "*inconclusive* rather than guessing"
            + (f" ({_names(inconclusive)})" if inconclusive else "")
            + ". More dev sentences, not more seeds, would decide them."
        )
    if cfg.finetune and cfg.finetune_max_train_sentences:
        paragraphs.append(
            f"**Fine-tuning budget.** The sentence-task models are fine-tuned on "
            f"{cfg.finetune_max_train_sentences:,} sentences for {cfg.finetune_epochs} "
            f"epoch{'' if cfg.finetune_epochs == 1 else 's'} "
            "on a CPU; the paper fine-tunes on whole GLUE training sets. Weakly fine-tuned "
            "models carry less task information in their upper layers, which bears on "
            "chapters 4 to 6."
        )
    paragraphs.append(
        "**Hardware.** Timing ratios, not times, are compared with the paper's (a TITAN X "
        "GPU); on a CPU the fixed costs of each step weigh more, which lowers speed-ups."
    )
    paragraphs.append(
        "**What no chapter shows.** Every redundancy here is correlational: similar layers, "
        "correlated neurons, probes that need few neurons. None of it says that removing "
        "those parts from the model would leave its behaviour unchanged; that is a "
        "different experiment (removing blocks or neurons and measuring the loss)."
    )
    return "\n\n".join(paragraphs)
