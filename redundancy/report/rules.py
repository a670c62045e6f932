"""Every chapter's rule, as code: each rule takes the tidy table its chapter measures
(:mod:`redundancy.report.chapters`) and returns a :class:`~redundancy.report.verdicts.
Verdict`; its text (:meth:`describe`) is produced from the same fields that decide, so the
two cannot drift apart. Rules are tested on planted tables where the claim holds, where it
fails and where noise decides (``tests/test_verdicts.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .paper import PAPER
from .verdicts import (
    LEVELS,
    SETUP_LEVELS,
    TASK_KINDS,
    Verdict,
    _pct,
    _pct_span,
    _span,
    at_least,
    combine,
)

__all__ = [
    "RULES",
    "CKARule",
    "ClusteringRule",
    "LayerRule",
    "RankingRule",
    "SetupRule",
    "TimingRule",
    "TransferRule",
]


@dataclass(frozen=True)
class _Rule:
    chapter: str

    @property
    def claim(self) -> str:  # pragma: no cover - every rule defines it
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover
        raise NotImplementedError


def _task_verdict(rule, per_task: list[dict], unit_text, **extra) -> Verdict:
    """The verdict of a rule that judges each task: headline rows by task kind
    (:func:`_by_kind`), the chapter's level from them, every task's row after them."""
    heads = _by_kind(per_task, unit_text)
    level, value, low, high = _headline(heads)
    return Verdict(
        rule.chapter,
        rule.claim,
        level,
        "; ".join(f"{h['scope']}: {h['text']}" for h in heads),
        rule.describe(),
        value=value,
        low=low,
        high=high,
        rows=heads + per_task,
        **extra,
    )


def _by_kind(per_task: list[dict], unit_text) -> list[dict]:
    """Headline rows, one per task kind present, from per-task rows (``kind``, ``level``,
    ``value``, ``low``, ``high``)."""
    rows = []
    for kind in TASK_KINDS:
        part = [r for r in per_task if r["kind"] == kind]
        if not part:
            continue
        value = float(np.mean([r["value"] for r in part]))
        low = float(min(r["low"] for r in part))
        high = float(max(r["high"] for r in part))
        rows.append(
            {
                "scope": f"{kind} tasks",
                "headline": True,
                "kind": kind,
                "level": combine(r["level"] for r in part),
                "value": value,
                "low": low,
                "high": high,
                "text": f"{len(part)} {'task' if len(part) == 1 else 'tasks'}: "
                + unit_text(value, low, high),
            }
        )
    return rows


def _headline(rows: list[dict]) -> tuple[str, float | None, float | None, float | None]:
    heads = [r for r in rows if r.get("headline")] or rows
    if not heads:
        return LEVELS[3], None, None, None
    level = combine(r["level"] for r in heads)
    values = [r["value"] for r in heads if r["value"] is not None]
    lows = [r["low"] for r in heads if r["low"] is not None]
    highs = [r["high"] for r in heads if r["high"] is not None]
    return (
        level,
        float(np.mean(values)) if values else None,
        float(min(lows)) if lows else None,
        float(max(highs)) if highs else None,
    )


def _sure_and_possible(value: float, low: float, high: float, word: str) -> str:
    """Headline of tasks judged by what is surely and what is possibly ``word`` (redundant,
    removable): the mean of the sure shares, and the range from the smallest sure share
    to the largest possible one."""
    if high - low < 5e-4:  # every task's share decided, and all equal
        return f"{_pct(value)} {word}"
    return (
        f"{_pct(value)} surely {word} on average; across tasks from {_pct(low)} surely "
        f"to {_pct(high)} possibly (where noise decides)"
    )


def _task_row(model, task, kind, level, value, low, high, text) -> dict:
    return {
        "scope": f"{model} / {task}",
        "headline": False,
        "kind": kind,
        "level": level,
        "value": float(value),
        "low": float(low),
        "high": float(high),
        "text": text,
    }


DECISIONS = ("within", "inconclusive", "outside")
"""What a paired-bootstrap interval says of "score >= (1 - δ) x oracle"
(:func:`redundancy.analysis.metrics.decide_within`)."""


# ----------------------------------------------------------------------------- 1
@dataclass(frozen=True)
class SetupRule(_Rule):
    """Chapter 1: the paper's models, data and sizes."""

    n_features: int = PAPER.n_features
    train_tokens: int = PAPER.train_tokens
    models: tuple = PAPER.models

    @property
    def claim(self) -> str:
        return (
            f"{', '.join(self.models)}: 13 x 768 = {self.n_features:,} features per instance; "
            f"{self.train_tokens:,} training tokens per token task; the paper's tasks"
        )

    def describe(self) -> str:
        return (
            f"**reproduced** only with the paper's models ({', '.join(self.models)}) and "
            f"data (its POS, SEM, CCG, chunking and GLUE files), {self.n_features:,} features "
            f"and at least {self.train_tokens:,} training tokens per token task; **comparable "
            "setup** with the paper's sizes but another model or corpus; **smaller setup** "
            "when a model has fewer features or a token task fewer training tokens. The setup "
            "describes the run: it is not counted among the results."
        )

    def judge(self, table: pd.DataFrame) -> Verdict:
        """``table``: :func:`redundancy.report.chapters.measure_setup` (rows per model with
        ``model``, ``features``, ``paper_model``; ``attrs``: ``train_tokens`` per token
        task, ``paper_data``)."""
        tokens = pd.Series(table.attrs.get("train_tokens", {}), dtype=float)
        sizes_ok = bool((table["features"] == self.n_features).all()) and bool(
            (tokens >= self.train_tokens).all()
        )
        paper = bool(table["paper_model"].all()) and bool(table.attrs.get("paper_data", False))
        level = (
            SETUP_LEVELS[0]
            if sizes_ok and paper
            else SETUP_LEVELS[1]
            if sizes_ok
            else SETUP_LEVELS[2]
        )
        measured = "features per instance: " + ", ".join(
            f"{m} {int(f):,}" for m, f in zip(table["model"], table["features"])
        )
        measured += "; training tokens: " + (
            ", ".join(f"{t} {int(n):,}" for t, n in tokens.items()) or "no token task"
        )
        if not paper:
            measured += "; models or corpus other than the paper's"
        return Verdict(
            self.chapter,
            self.claim,
            level,
            measured,
            self.describe(),
            paper_value=float(self.n_features),
            value=float(table["features"].min()),
            unit="features",
        )


# ----------------------------------------------------------------------------- 2
@dataclass(frozen=True)
class CKARule(_Rule):
    """Chapter 2: adjacent layers are highly similar (linear CKA); the 0.8 is the book's."""

    high: float = 0.8

    @property
    def claim(self) -> str:
        return "adjacent layers are highly similar (CKA), more than distant ones"

    def describe(self) -> str:
        return (
            "for every model and sample of instances, on linear CKA (the paper's variant is "
            "not stated; the chapter shows debiased CKA beside it): (a) the mean CKA of "
            f"adjacent layers is at least {self.high:g} (the book's line: the paper gives no "
            "number) and (b) it exceeds the mean CKA of layers three or more apart. Each is "
            "decided on the bootstrap interval over instances: yes when the whole interval "
            "is on the claim's side, no when none of it is, undecided otherwise. "
            "**reproduced** when (a) and (b) are yes everywhere, **partly reproduced** when "
            "one is, **not reproduced** when neither is, **inconclusive** when one is "
            "undecided."
        )

    def judge(self, stats: pd.DataFrame) -> Verdict:
        """``stats``: rows (``model``, ``sample``, ``adjacent``, ``adjacent_low``,
        ``adjacent_high``, ``far``, ``far_low``, ``far_high``)."""
        rows = []
        for _, r in stats.iterrows():
            a = at_least(r["adjacent_low"], r["adjacent_high"], self.high)
            gap_low = r["adjacent_low"] - r["far_high"]
            gap_high = r["adjacent_high"] - r["far_low"]
            b = "yes" if gap_low > 0 else "no" if gap_high <= 0 else "undecided"
            parts = (a, b)
            level = (
                LEVELS[3]
                if "undecided" in parts
                else LEVELS[0]
                if parts == ("yes", "yes")
                else LEVELS[2]
                if parts == ("no", "no")
                else LEVELS[1]
            )
            rows.append(
                {
                    "scope": f"{r['model']} / {r['sample']}",
                    "headline": False,
                    "kind": "all",
                    "level": level,
                    "value": float(r["adjacent"]),
                    "low": float(r["adjacent_low"]),
                    "high": float(r["adjacent_high"]),
                    "text": f"adjacent {r['adjacent']:.2f} ({_span(r['adjacent_low'], r['adjacent_high'])}), "
                    f">= 3 apart {r['far']:.2f} ({_span(r['far_low'], r['far_high'])}): (a) {a}, (b) {b}",
                }
            )
        level, value, low, high = _headline(rows)
        measured = (
            f"mean CKA of adjacent layers {_span(stats['adjacent'].min(), stats['adjacent'].max())} "
            f"against {_span(stats['far'].min(), stats['far'].max())} for layers three or more apart "
            f"({len(stats)} model x sample rows)"
        )
        return Verdict(
            self.chapter,
            self.claim,
            level,
            measured,
            self.describe(),
            threshold=self.high,
            value=value,
            low=low,
            high=high,
            unit="CKA",
            rows=rows,
        )


# ----------------------------------------------------------------------------- 3
@dataclass(frozen=True)
class ClusteringRule(_Rule):
    """Chapter 3: 85% of the neurons are redundant (correlation clustering)."""

    reproduced_at: float = PAPER.redundant_neurons
    partly_band: float = 0.10

    @property
    def claim(self) -> str:
        return (
            f"{_pct(self.reproduced_at, 0)} of the neurons are redundant (correlation clustering)"
        )

    @property
    def partly_at(self) -> float:
        return round(self.reproduced_at - self.partly_band, 6)

    def describe(self) -> str:
        return (
            "for each model and task, a threshold counts when the paired bootstrap says its "
            "probe on the kept neurons is within δ of the oracle (decided on dev, seeds "
            "pooled); the task's share of redundant neurons runs from the largest share at a "
            "threshold that counts (sure) to the largest share at a threshold not ruled out "
            f"(possible). **reproduced** when the sure share is at least "
            f"{_pct(self.reproduced_at, 0)} (the paper's number); **partly reproduced** when "
            f"it is at least {_pct(self.partly_at, 0)} ({100 * self.partly_band:g} points "
            "under the paper's); **not reproduced** when even the possible share is below "
            f"{_pct(self.partly_at, 0)}; **inconclusive** when one of these lines lies "
            "between the sure and the possible share. Token and sentence tasks are headline "
            "rows of their own."
        )

    def _level(self, sure: float, possible: float) -> str:
        for line, level in ((self.reproduced_at, LEVELS[0]), (self.partly_at, LEVELS[1])):
            side = at_least(sure, possible, line)
            if side == "yes":
                return level
            if side == "undecided":
                return LEVELS[3]
        return LEVELS[2]

    def judge(self, table: pd.DataFrame) -> Verdict:
        """``table``: :func:`redundancy.report.chapters.measure_clustering` (rows per model,
        task and threshold: ``kind``, ``fraction_redundant``, ``decision``, ...)."""
        per_task = []
        for (m, t), part in table.groupby(["model", "task"], sort=False):
            sure = part.loc[part["decision"] == "within", "fraction_redundant"].max()
            possible = part.loc[part["decision"] != "outside", "fraction_redundant"].max()
            sure = 0.0 if pd.isna(sure) else float(sure)
            possible = max(sure, 0.0 if pd.isna(possible) else float(possible))
            per_task.append(
                _task_row(
                    m,
                    t,
                    part["kind"].iloc[0],
                    self._level(sure, possible),
                    sure,
                    sure,
                    possible,
                    f"{_pct_span(sure, possible)} of the neurons redundant within δ",
                )
            )
        return _task_verdict(
            self,
            per_task,
            lambda v, lo, hi: _sure_and_possible(v, lo, hi, "redundant"),
            paper_value=self.reproduced_at,
        )


# ----------------------------------------------------------------------------- 4
@dataclass(frozen=True)
class LayerRule(_Rule):
    """Chapter 4: a few lower layers reach the oracle."""

    few_share: float = 1 / 3

    @property
    def claim(self) -> str:
        return "a few lower layers reach the oracle: the rest are redundant for the task"

    def few_layers(self, n_layers: int) -> int:
        """The highest layer index still counted as "a few lower layers": layers 0..l with
        l + 1 = ceil(share x n_layers)."""
        return max(int(math.ceil(self.few_share * n_layers - 1e-9)) - 1, 0)

    def describe(self) -> str:
        return (
            f'"a few lower layers" means at most {self.few_share:.0%} of the layers '
            "(layers 0..l with l + 1 = ceil(n_layers / 3): 0..2 of 7, 0..4 of 13). For each "
            "model and task the incremental probe on those layers is compared with the oracle "
            "by a paired bootstrap on dev, seeds pooled. **reproduced** when it is within δ; "
            "**partly reproduced** when it is not, but some probe below the last layer is; "
            "**not reproduced** when no probe below the last layer is within δ; "
            "**inconclusive** when the deciding interval contains the line."
        )

    def judge(self, table: pd.DataFrame) -> Verdict:
        """``table``: :func:`redundancy.report.chapters.measure_layers` (rows per model, task
        and layer: ``kind``, ``layer``, ``n_layers``, ``ratio``, ``low``, ``high``,
        ``decision``)."""
        per_task = []
        for (m, t), part in table.groupby(["model", "task"], sort=False):
            part = part.sort_values("layer")
            n_layers = int(part["n_layers"].iloc[0])
            few = self.few_layers(n_layers)
            at = part[part["layer"] == few].iloc[0]
            below = part[part["layer"] < n_layers - 1]
            first = below.loc[below["decision"] == "within", "layer"]
            if at["decision"] == "within":
                level = LEVELS[0]
            elif at["decision"] == "inconclusive":
                level = LEVELS[3]
            elif len(first):
                level = LEVELS[1]
            else:
                level = LEVELS[3] if (below["decision"] == "inconclusive").any() else LEVELS[2]
            reach = f"layers 0..{int(first.iloc[0])}" if len(first) else "no layer below the last"
            per_task.append(
                _task_row(
                    m,
                    t,
                    part["kind"].iloc[0],
                    level,
                    at["ratio"],
                    at["low"],
                    at["high"],
                    f"layers 0..{few} of 0..{n_layers - 1} keep {_pct(at['ratio'])} of the oracle "
                    f"({_pct_span(at['low'], at['high'])}); first within δ: {reach}",
                )
            )
        return _task_verdict(
            self,
            per_task,
            lambda v, lo, hi: (
                f"the lower third keeps {_pct(v)} of the oracle ({_pct_span(lo, hi)})"
            ),
            unit="share of the oracle",
        )


# ----------------------------------------------------------------------------- 5
@dataclass(frozen=True)
class RankingRule(_Rule):
    """Chapter 5: at least 92% of the neurons can be removed for a task."""

    removable: float = PAPER.removable_for_task
    partly_removable: float = 0.80

    @property
    def claim(self) -> str:
        return f"at least {_pct(self.removable, 0)} of the neurons can be removed for a task"

    def describe(self) -> str:
        keep = 1 - self.removable
        return (
            f"for each model and task, the probe on the top-ranked {_pct(keep, 0)} of the "
            f"neurons (so {_pct(self.removable, 0)} removed) (each seed ranks from its own oracle) is compared with the oracle by a "
            "paired bootstrap on dev, seeds pooled. **reproduced** when it is within δ; "
            f"**partly reproduced** when it is not but the top {_pct(1 - self.partly_removable, 0)} "
            f"are (at least {_pct(self.partly_removable, 0)} removable); **not reproduced** "
            "when neither is; **inconclusive** when the deciding interval contains the line. "
            "Selection is by accuracy, as in the paper; selectivity is reported beside it, "
            "never used to remove neurons."
        )

    def _at(self, part: pd.DataFrame, share: float) -> pd.Series | None:
        ok = part[part["fraction"] <= share + 1e-9]
        return ok.sort_values("fraction").iloc[-1] if len(ok) else None

    def judge(self, table: pd.DataFrame) -> Verdict:
        """``table``: :func:`redundancy.report.chapters.measure_ranking` (rows per model,
        task and share of :data:`~redundancy.report.steps.neurons.RANK_GRID`: ``kind``,
        ``fraction``, ``ratio``, ``low``, ``high``, ``decision``)."""
        per_task = []
        for (m, t), part in table.groupby(["model", "task"], sort=False):
            claim = self._at(part, 1 - self.removable)
            partly = self._at(part, 1 - self.partly_removable)
            decisions = [r["decision"] if r is not None else "outside" for r in (claim, partly)]
            if decisions[0] == "within":
                level = LEVELS[0]
            elif decisions[0] == "inconclusive":
                level = LEVELS[3]
            else:
                level = {"within": LEVELS[1], "inconclusive": LEVELS[3]}.get(
                    decisions[1], LEVELS[2]
                )
            within = part.loc[part["decision"] == "within", "fraction"]
            possible = part.loc[part["decision"] != "outside", "fraction"]
            sure = 1 - float(within.min()) if len(within) else 0.0
            maybe = max(sure, 1 - float(possible.min()) if len(possible) else 0.0)
            shown = claim if claim is not None else part.iloc[0]
            per_task.append(
                _task_row(
                    m,
                    t,
                    part["kind"].iloc[0],
                    level,
                    sure,
                    sure,
                    maybe,
                    f"top {_pct(shown['fraction'], 1)} keep {_pct(shown['ratio'])} of the oracle "
                    f"({_pct_span(shown['low'], shown['high'])}); removable within δ: "
                    f"{_pct_span(sure, maybe)}",
                )
            )
        return _task_verdict(
            self,
            per_task,
            lambda v, lo, hi: _sure_and_possible(v, lo, hi, "removable"),
            paper_value=self.removable,
        )


# ----------------------------------------------------------------------------- 6
@dataclass(frozen=True)
class TransferRule(_Rule):
    """Chapter 6: 97% of the performance with at most 10% of the neurons."""

    score_kept: float = PAPER.transfer_score_kept
    neurons_kept: float = PAPER.transfer_neurons_kept
    branch: str = "LS+CC+FS"

    @property
    def claim(self) -> str:
        return (
            f"{_pct(self.score_kept, 0)} of the performance with at most "
            f"{_pct(self.neurons_kept, 0)} of the neurons (LayerSelector + CC + FS)"
        )

    def describe(self) -> str:
        return (
            f"a {self.branch} run (model, task, δ pair) meets the claim when the paired "
            "bootstrap of its final probe against the oracle on test (seeds pooled) puts the "
            f"score kept at {_pct(self.score_kept, 0)} or more, and every seed keeps at most "
            f"{_pct(self.neurons_kept, 0)} of the neurons; it fails when the interval lies "
            "below the line or every seed keeps more; otherwise it is undecided. Per task: "
            "**reproduced** when every run meets the claim, **partly reproduced** when some "
            "do, **not reproduced** when none does and none is undecided, **inconclusive** "
            "otherwise."
        )

    def judge(self, table: pd.DataFrame) -> Verdict:
        """``table``: :func:`redundancy.report.chapters.measure_transfer` (rows per model,
        task, branch and δ pair: ``kind``, ``ratio``, ``low``, ``high``, ``decision``,
        ``fraction_kept``, ``fraction_kept_min``, ``fraction_kept_max``)."""
        table = table[table["branch"] == self.branch]
        per_task = []
        for (m, t), part in table.groupby(["model", "task"], sort=False):
            neurons = [
                "yes"
                if hi <= self.neurons_kept
                else "no"
                if lo > self.neurons_kept
                else "undecided"
                for lo, hi in zip(part["fraction_kept_min"], part["fraction_kept_max"])
            ]
            status = [
                "meets"
                if d == "within" and n == "yes"
                else "fails"
                if d == "outside" or n == "no"
                else "undecided"
                for d, n in zip(part["decision"], neurons)
            ]
            if all(s == "meets" for s in status):
                level = LEVELS[0]
            elif "meets" in status:
                level = LEVELS[1]
            elif "undecided" in status:
                level = LEVELS[3]
            else:
                level = LEVELS[2]
            per_task.append(
                _task_row(
                    m,
                    t,
                    part["kind"].iloc[0],
                    level,
                    part["ratio"].median(),
                    part["low"].min(),
                    part["high"].max(),
                    f"{status.count('meets')} of {len(status)} δ pairs meet the claim; score kept "
                    f"{_pct_span(part['ratio'].min(), part['ratio'].max())} (intervals "
                    f"{_pct_span(part['low'].min(), part['high'].max())}) with "
                    f"{_pct_span(part['fraction_kept_min'].min(), part['fraction_kept_max'].max(), 2)} "
                    "of the neurons",
                )
            )
        return _task_verdict(
            self,
            per_task,
            lambda v, lo, hi: f"score kept {_pct(v)} (intervals {_pct_span(lo, hi)})",
            paper_value=self.score_kept,
        )


# ----------------------------------------------------------------------------- 7
@dataclass(frozen=True)
class TimingRule(_Rule):
    """Chapter 7: stopping early and probing fewer features save time, in proportion."""

    efficiency: float = 0.5

    @property
    def claim(self) -> str:
        return (
            "stopping at the selected layer and probing fewer features save time (paper: "
            f"{PAPER.forward_ms['BERT']} ms BERT, {PAPER.forward_ms['XLNet']} ms XLNet per "
            f"instance for the full model; {PAPER.probe_seconds} s for a probe on "
            f"{PAPER.n_features:,} features)"
        )

    def describe(self) -> str:
        return (
            "absolute times are not compared across hardware; ratios are. The paper's timings "
            "imply that cost follows what is computed, so the reference speed-up is the "
            "arithmetic one: (a) a forward pass stopped after block l of L blocks should be "
            "L / l times faster than the full model; (b) a probe on n_max features should take "
            "n_max / n_min times as long as one on n_min. A part is **met** when the measured "
            f"speed-up is at least {self.efficiency:.0%} of its reference over the whole range "
            "of the timed rounds, **missed** when the whole range is below, undecided otherwise. "
            "**reproduced** when both parts are met, **partly reproduced** when one is, **not "
            "reproduced** when neither is, **inconclusive** when a part is undecided."
        )

    def _part(self, low: float, high: float, reference: float) -> str:
        return at_least(low, high, self.efficiency * reference)

    def _rows(self, forward: pd.DataFrame, probe: pd.DataFrame) -> list[dict]:
        """One judged part per selected layer below the last, and one for the probe."""
        rows = []
        below = forward[(forward["layer"] < forward["last_layer"]) & (forward["layer"] > 0)]
        below = below.drop_duplicates(["model", "layer"])
        for _, r in below.iterrows():
            ref = r["last_layer"] / r["layer"]
            part = self._part(r["speedup_low"], r["speedup_high"], ref)
            rows.append(
                {
                    "scope": f"forward {r['model']}, block {int(r['layer'])} of {int(r['last_layer'])}",
                    "headline": False,
                    "kind": "forward",
                    "part": part,
                    "value": float(r["speedup"] / ref),
                    "low": float(r["speedup_low"] / ref),
                    "high": float(r["speedup_high"] / ref),
                    "text": f"{r['speedup']:.2f}x ({_span(r['speedup_low'], r['speedup_high'])}x) "
                    f"against {ref:.2f}x by block count",
                }
            )
        ordered = probe.sort_values("n_features")
        top, small = ordered.iloc[-1], ordered.iloc[0]
        ref = top["n_features"] / small["n_features"]
        part = self._part(top["vs_smallest_low"], top["vs_smallest_high"], ref)
        rows.append(
            {
                "scope": f"probe {int(top['n_features']):,} vs {int(small['n_features']):,} features",
                "headline": False,
                "kind": "probe",
                "part": part,
                "value": float(top["vs_smallest"] / ref),
                "low": float(top["vs_smallest_low"] / ref),
                "high": float(top["vs_smallest_high"] / ref),
                "text": f"{top['vs_smallest']:.2f}x ({_span(top['vs_smallest_low'], top['vs_smallest_high'])}x) "
                f"against {ref:.1f}x by feature count",
            }
        )
        return rows

    def judge(self, forward: pd.DataFrame, probe: pd.DataFrame) -> Verdict:
        """``forward``: rows (``model``, ``task``, ``layer``, ``last_layer``, ``speedup``,
        ``speedup_low``, ``speedup_high``) at the selected layers; ``probe``: rows
        (``n_features``, ``vs_smallest``, ``vs_smallest_low``, ``vs_smallest_high``)."""
        rows = self._rows(forward, probe)
        word = {"yes": "met", "no": "missed", "undecided": "undecided"}
        for r in rows:
            r["level"] = {"yes": LEVELS[0], "no": LEVELS[2], "undecided": LEVELS[3]}[r["part"]]
            r["text"] += f": {word[r['part']]}"
        parts = {}
        for kind in ("forward", "probe"):
            got = [r["part"] for r in rows if r["kind"] == kind]
            parts[kind] = (
                None
                if not got
                else "undecided"
                if "undecided" in got
                else "yes"
                if all(g == "yes" for g in got)
                else "no"
            )
        decided = [v for v in parts.values() if v is not None]
        level = (
            LEVELS[3]
            if "undecided" in decided or not decided
            else LEVELS[0]
            if all(v == "yes" for v in decided)
            else LEVELS[2]
            if all(v == "no" for v in decided)
            else LEVELS[1]
        )
        effs = [r["value"] for r in rows]
        measured = (
            "measured speed-ups reach "
            + ", ".join(f"{_pct(r['value'], 0)} ({r['scope']})" for r in rows)
            + f" of the arithmetic reference (line: {self.efficiency:.0%})"
        )
        return Verdict(
            self.chapter,
            self.claim,
            level,
            measured,
            self.describe(),
            threshold=self.efficiency,
            value=float(np.median(effs)),
            low=float(min(r["low"] for r in rows)),
            high=float(max(r["high"] for r in rows)),
            unit="share of the reference speed-up",
            rows=rows,
            details={"parts": parts},
        )


RULES = {
    "01-setup": SetupRule("01-setup"),
    "02-layers-cka": CKARule("02-layers-cka"),
    "03-neurons-clustering": ClusteringRule("03-neurons-clustering"),
    "04-layers-probes": LayerRule("04-layers-probes"),
    "05-neurons-ranking": RankingRule("05-neurons-ranking"),
    "06-transfer": TransferRule("06-transfer"),
    "07-timing": TimingRule("07-timing"),
}
"""The rule of every chapter, by notebook name (declared with its measurement in
:mod:`redundancy.report.chapters`)."""
