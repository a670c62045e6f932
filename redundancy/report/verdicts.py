"""Every chapter's verdict rule, as code: the rule that judges a run and the text that
states it are the same object, so they cannot drift apart.

A rule takes a small tidy table of measurements (one row per model, task and seed, built
from the steps' results by the rule's ``measure`` helper) and returns a :class:`Verdict`:
one of :data:`LEVELS`, what was measured (with the spread over seeds or the interval behind
it), and whether the outcome is *settled*: a verdict whose deciding threshold falls inside
its interval says so. Numbers are fractions; the text shows percents.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .._utils import atomic_write_text, json_default
from .paper import PAPER

logger = logging.getLogger(__name__)

LEVELS = ("reproduced", "partly reproduced", "not reproduced", "inconclusive")
"""Verdict levels; ``inconclusive`` when the measurements cannot decide (timing noise)."""


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _span(lo: float, hi: float, digits: int = 2) -> str:
    """``lo-hi``, or one number when both read the same at ``digits`` decimals."""
    a, b = f"{lo:.{digits}f}", f"{hi:.{digits}f}"
    return a if a == b else f"{a}-{b}"


@dataclass
class Verdict:
    """A chapter's verdict.

    Attributes
    ----------
    chapter : str
    claim : str
        The paper's claim, with its number.
    level : str
        One of :data:`LEVELS`.
    measured : str
        What the run measured, with the spread behind it.
    rule : str
        The rule's text (:meth:`Rule.describe`).
    settled : bool
        False when the deciding threshold lies inside the measured interval.
    paper_value, value, low, high : float or None
        The paper's number and the run's estimate with its interval (for the summary figure).
    unit : str
        ``"fraction"`` or another unit of the numbers above.
    details : dict
        The measurements behind the verdict.
    """

    chapter: str
    claim: str
    level: str
    measured: str
    rule: str
    settled: bool = True
    paper_value: float | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None
    unit: str = "fraction"
    details: dict = field(default_factory=dict)

    def markdown(self) -> str:
        """``**Verdict: ….** measured …`` plus a warning when the outcome is not settled."""
        text = f"**Verdict: {self.level}.** {self.measured}."
        if not self.settled:
            text += " *Not settled: the deciding threshold lies inside the interval of this run.*"
        return text


@dataclass(frozen=True)
class _Rule:
    chapter: str

    @property
    def claim(self) -> str:  # pragma: no cover - every rule defines it
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover
        raise NotImplementedError


def _straddles(low, high, cut) -> bool:
    return low is not None and high is not None and low < cut <= high


def _level_all_some(meets: pd.Series) -> str:
    if len(meets) and meets.all():
        return LEVELS[0]
    return LEVELS[1] if meets.any() else LEVELS[2]


# ----------------------------------------------------------------------------- 1
@dataclass(frozen=True)
class SetupRule(_Rule):
    """Chapter 1: the paper's feature size and data size."""

    n_features: int = PAPER.n_features
    train_tokens: int = PAPER.train_tokens

    @property
    def claim(self) -> str:
        return (
            f"13 x 768 = {self.n_features:,} features per instance; "
            f"{self.train_tokens:,} training tokens per token task"
        )

    def describe(self) -> str:
        return (
            f"**reproduced** when every model has {self.n_features:,} features per instance and "
            f"every token task trains on at least {self.train_tokens:,} tokens; **partly "
            "reproduced** otherwise (the protocol is the paper's, the sizes are not). A setup "
            "cannot be *not reproduced*."
        )

    def judge(self, features: pd.Series, train_tokens: pd.Series) -> Verdict:
        """``features``: per model; ``train_tokens``: per token task."""
        size_ok = bool((features == self.n_features).all())
        data_ok = bool((train_tokens >= self.train_tokens).all())
        level = LEVELS[0] if size_ok and data_ok else LEVELS[1]
        measured = "features per instance: " + ", ".join(f"{m} {f:,}" for m, f in features.items())
        measured += "; training tokens: " + (
            ", ".join(f"{t} {n:,}" for t, n in train_tokens.items()) or "no token task"
        )
        return Verdict(
            self.chapter,
            self.claim,
            level,
            measured,
            self.describe(),
            paper_value=float(self.n_features),
            value=float(features.min()),
            unit="features",
        )


# ----------------------------------------------------------------------------- 2
@dataclass(frozen=True)
class CKARule(_Rule):
    """Chapter 2: adjacent layers are highly similar (linear CKA)."""

    high: float = 0.8

    @property
    def claim(self) -> str:
        return "adjacent layers are highly similar (CKA), more than distant ones"

    def describe(self) -> str:
        return (
            f"for every model and sample of instances, (a) the mean linear CKA of adjacent "
            f"layers is at least {self.high:g} and (b) it exceeds the mean CKA of layers three "
            "or more apart. **reproduced** when (a) and (b) hold everywhere; **partly "
            "reproduced** when one of them does; **not reproduced** otherwise. Not settled when "
            "the samples disagree."
        )

    def judge(self, stats: pd.DataFrame) -> Verdict:
        """``stats``: rows (model, sample) with columns ``adjacent`` and ``far``."""
        high = stats["adjacent"] >= self.high
        falls = stats["adjacent"] > stats["far"]
        level = (
            LEVELS[0]
            if high.all() and falls.all()
            else LEVELS[1]
            if high.all() or falls.all()
            else LEVELS[2]
        )
        per_sample = [(high[m] & falls[m]).all() for m in stats.index.get_level_values(0).unique()]
        settled = bool(
            (high.groupby(level=0).nunique() == 1).all()
            and (falls.groupby(level=0).nunique() == 1).all()
        )
        lo, hi = float(stats["adjacent"].min()), float(stats["adjacent"].max())
        measured = (
            "; ".join(
                f"{m}: adjacent {_span(part['adjacent'].min(), part['adjacent'].max())}, "
                f">= 3 apart {_span(part['far'].min(), part['far'].max())}"
                for m, part in stats.groupby(level=0)
            )
            + f" (ranges over {stats.index.get_level_values(1).nunique()} samples)"
        )
        return Verdict(
            self.chapter,
            self.claim,
            level,
            "mean CKA " + measured,
            self.describe(),
            settled,
            self.high,
            float(stats["adjacent"].mean()),
            lo,
            hi,
            "CKA",
            {"all_models_hold": per_sample},
        )


# ----------------------------------------------------------------------------- 3
@dataclass(frozen=True)
class ClusteringRule(_Rule):
    """Chapter 3: 85% of the neurons are redundant (correlation clustering)."""

    reproduced_at: float = PAPER.redundant_neurons
    partly_at: float = 0.5

    @property
    def claim(self) -> str:
        return (
            f"{_pct(self.reproduced_at, 0)} of the neurons are redundant (correlation clustering)"
        )

    def describe(self) -> str:
        return (
            "for each model, task and seed, take the largest share of neurons that "
            "clustering makes redundant at a threshold whose probe keeps at least (100 - δ)% "
            "of that seed's oracle dev score; average over models and tasks. "
            f"**reproduced** when the mean over seeds is at least {_pct(self.reproduced_at, 0)}, "
            f"**partly reproduced** at {_pct(self.partly_at, 0)} or more, **not reproduced** "
            "below. The interval is the range over seeds."
        )

    @staticmethod
    def measure(sweeps: pd.DataFrame, delta: float) -> pd.DataFrame:
        """Per (model, task, seed) the largest ``fraction_redundant`` within δ of the oracle
        (0 when no threshold keeps the score), from :func:`~redundancy.report.steps.cc_sweep`
        tables with ``model`` and ``task`` columns."""
        keep = sweeps["dev_vs_oracle"] >= 1 - delta / 100
        best = sweeps[keep].groupby(["model", "task", "seed"])["fraction_redundant"].max()
        full = sweeps.groupby(["model", "task", "seed"])["fraction_redundant"].max() * 0
        return best.reindex(full.index, fill_value=0.0).rename("fraction").reset_index()

    def judge(self, measured: pd.DataFrame) -> Verdict:
        """``measured``: :meth:`measure`'s table (``model``, ``task``, ``seed``, ``fraction``)."""
        per_seed = measured.groupby("seed")["fraction"].mean()
        value, lo, hi = float(per_seed.mean()), float(per_seed.min()), float(per_seed.max())
        level = (
            LEVELS[0]
            if value >= self.reproduced_at
            else LEVELS[1]
            if value >= self.partly_at
            else LEVELS[2]
        )
        settled = not any(_straddles(lo, hi, c) for c in (self.reproduced_at, self.partly_at))
        text = (
            f"on average {_pct(value)} of the neurons are redundant without losing more than "
            f"δ of the oracle's dev score (seeds: {_pct(lo)}-{_pct(hi)})"
        )
        return Verdict(
            self.chapter,
            self.claim,
            level,
            text,
            self.describe(),
            settled,
            self.reproduced_at,
            value,
            lo,
            hi,
        )


# ----------------------------------------------------------------------------- 4
@dataclass(frozen=True)
class LayerRule(_Rule):
    """Chapter 4: a few lower layers reach the oracle."""

    @property
    def claim(self) -> str:
        return "a few lower layers reach the oracle: the rest are redundant for the task"

    def describe(self) -> str:
        return (
            "LayerSelector picks, for each model, task and seed, the smallest l whose probe on "
            "layers 0..l has a dev score above oracle x (1 - δ/100). A (model, task) pair "
            "meets the claim when l is below the last layer for every seed. **reproduced** "
            "when every pair meets it, **partly reproduced** when some do, **not reproduced** "
            "when none does. Not settled when the seeds of a pair disagree."
        )

    def judge(self, selected: pd.DataFrame) -> Verdict:
        """``selected``: rows (``model``, ``task``, ``seed``, ``layer``, ``last_layer``)."""
        early = selected["layer"] < selected["last_layer"]
        by_pair = early.groupby([selected["model"], selected["task"]])
        meets, mixed = by_pair.all(), by_pair.any() & ~by_pair.all()
        level = _level_all_some(meets)
        text = "; ".join(
            f"{m} / {t}: layers 0..{part['layer'].min()}"
            + (f"-{part['layer'].max()}" if part["layer"].nunique() > 1 else "")
            + f" of 0..{part['last_layer'].iloc[0]}"
            for (m, t), part in selected.groupby(["model", "task"], sort=False)
        )
        return Verdict(
            self.chapter,
            self.claim,
            level,
            f"incremental probe within δ of the oracle at {text}",
            self.describe(),
            not bool(mixed.any()),
            1.0,
            float(meets.mean()),
            unit="pairs meeting",
        )


# ----------------------------------------------------------------------------- 5
@dataclass(frozen=True)
class RankingRule(_Rule):
    """Chapter 5: at least 92% of the neurons can be removed for a task."""

    removable: float = PAPER.removable_for_task

    @property
    def claim(self) -> str:
        return f"at least {_pct(self.removable, 0)} of the neurons can be removed for a task"

    def describe(self) -> str:
        return (
            "for each model, task and seed, the minimal set is the smallest top-ranked set "
            "whose probe keeps the oracle's dev score within δ; a pair meets the claim when the "
            f"mean removable share over seeds is at least {_pct(self.removable, 0)}. "
            "**reproduced** when every pair meets it, **partly reproduced** when some do, "
            "**not reproduced** when none does. Not settled when a pair's seeds straddle "
            f"{_pct(self.removable, 0)}."
        )

    def judge(self, minimal: pd.DataFrame) -> Verdict:
        """``minimal``: rows (``model``, ``task``, ``seed``, ``fraction``: minimal-set share)."""
        removable = 1 - minimal["fraction"]
        grouped = removable.groupby([minimal["model"], minimal["task"]], sort=False)
        mean, lo, hi = grouped.mean(), grouped.min(), grouped.max()
        level = _level_all_some(mean >= self.removable)
        settled = not any(_straddles(a, b, self.removable) for a, b in zip(lo, hi))
        text = "; ".join(
            f"{m} / {t}: {_pct(mean[(m, t)])} removable (seeds {_pct(lo[(m, t)])}-"
            f"{_pct(hi[(m, t)])})"
            for m, t in mean.index
        )
        return Verdict(
            self.chapter,
            self.claim,
            level,
            text,
            self.describe(),
            settled,
            self.removable,
            float(mean.mean()),
            float(lo.min()),
            float(hi.max()),
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
            f"a {self.branch} run (model, task, δ pair) meets the claim when, averaged over "
            f"seeds, its final test score is at least {_pct(self.score_kept, 0)} of the "
            f"oracle's and it keeps at most {_pct(self.neurons_kept, 0)} of the neurons. "
            "**reproduced** when every run meets it, **partly reproduced** when some do, "
            "**not reproduced** when none does. Not settled when a run's seeds fall on both "
            "sides."
        )

    def judge(self, runs: pd.DataFrame) -> Verdict:
        """``runs``: rows (``model``, ``task``, ``branch``, ``delta_ls``, ``delta_fs``,
        ``seed``, ``score_kept``, ``fraction_kept``)."""
        runs = runs[runs["branch"] == self.branch]
        ok = (runs["score_kept"] >= self.score_kept) & (runs["fraction_kept"] <= self.neurons_kept)
        keys = [runs[c] for c in ("model", "task", "delta_ls", "delta_fs")]
        mean = runs.groupby(keys)[["score_kept", "fraction_kept"]].mean()
        meets = (mean["score_kept"] >= self.score_kept) & (
            mean["fraction_kept"] <= self.neurons_kept
        )
        by_run = ok.groupby(keys)
        settled = not bool((by_run.any() & ~by_run.all()).any())
        text = (
            f"{int(meets.sum())} of {len(meets)} runs keep >= {_pct(self.score_kept, 0)} of the "
            f"oracle's score with <= {_pct(self.neurons_kept, 0)} of the neurons (score kept "
            f"{_pct(mean['score_kept'].min())}-{_pct(mean['score_kept'].max())}, neurons kept "
            f"{_pct(mean['fraction_kept'].min(), 2)}-{_pct(mean['fraction_kept'].max(), 2)})"
        )
        return Verdict(
            self.chapter,
            self.claim,
            _level_all_some(meets),
            text,
            self.describe(),
            settled,
            self.score_kept,
            float(mean["score_kept"].median()),
            float(runs["score_kept"].min()),
            float(runs["score_kept"].max()),
        )


# ----------------------------------------------------------------------------- 7
@dataclass(frozen=True)
class TimingRule(_Rule):
    """Chapter 7: stopping early and probing fewer features save time."""

    @property
    def claim(self) -> str:
        return (
            "stopping at the selected layer and probing fewer features save time (paper: "
            f"{PAPER.forward_ms['BERT']} ms BERT, {PAPER.forward_ms['XLNet']} ms XLNet per "
            f"instance; {PAPER.probe_seconds} s for a probe on {PAPER.n_features:,} features)"
        )

    def describe(self) -> str:
        return (
            "two comparisons, each decided only when its whole range over the timed rounds "
            "lies on one side of 1 (ratios paired within a round): (a) the forward pass "
            "stopped at each selected layer below the last is faster than the full model; "
            "(b) training a probe on the most features is slower than on the fewest. "
            "**reproduced** when both are decided yes, **partly reproduced** when one is yes "
            "and the other no, **not reproduced** when both are no, **inconclusive** when "
            "either cannot be decided."
        )

    def judge(self, forward: pd.DataFrame, probe: pd.DataFrame) -> Verdict:
        """``forward``: rows (``model``, ``task``, ``layer``, ``last_layer``, ``speedup``,
        ``speedup_low``, ``speedup_high``); ``probe``: rows (``n_features``, ``vs_smallest``,
        ``vs_smallest_low``, ``vs_smallest_high``)."""
        from ..analysis.timing import clear_difference

        below = forward[forward["layer"] < forward["last_layer"]]
        fw = [clear_difference(a, b) for a, b in zip(below["speedup_low"], below["speedup_high"])]
        top = probe.sort_values("n_features").iloc[-1]
        parts = {
            "forward": None if not fw else (1 if min(fw) == 1 else -1 if -1 in fw else 0),
            "probe": clear_difference(top["vs_smallest_low"], top["vs_smallest_high"]),
        }
        decided = [v for v in parts.values() if v is not None]
        level = (
            LEVELS[3]
            if 0 in decided or not decided
            else LEVELS[0]
            if all(v == 1 for v in decided)
            else LEVELS[2]
            if all(v == -1 for v in decided)
            else LEVELS[1]
        )
        text = (
            f"forward speed-up at the selected layers "
            f"{_span(below['speedup'].min(), below['speedup'].max())}x (ranges "
            f"{_span(below['speedup_low'].min(), below['speedup_high'].max())}x)"
            if len(below)
            else "no selected layer below the last (nothing to speed up)"
        )
        text += (
            f"; probe on {int(top['n_features']):,} features {top['vs_smallest']:.1f}x the time "
            f"of the smallest (range {top['vs_smallest_low']:.1f}-{top['vs_smallest_high']:.1f}x)"
        )
        return Verdict(
            self.chapter,
            self.claim,
            level,
            text,
            self.describe(),
            level != LEVELS[3],
            1.0,
            float(below["speedup"].median()) if len(below) else None,
            unit="speed-up",
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
"""The rule of every chapter, by notebook name."""


# ------------------------------------------------------------------- recording
def record(cfg, verdict: Verdict) -> dict:
    """Write a chapter's verdict to ``<results_dir>/<chapter>.json`` for the summary page."""
    if verdict.level not in LEVELS:
        raise ValueError(
            f"The 'level' of a Verdict must be one of {LEVELS}. Got {verdict.level!r} instead."
        )
    data = {
        **asdict(verdict),
        "params": cfg.fingerprint(),
        "models": list(cfg.models),
        "tasks": list(cfg.tasks),
    }
    atomic_write_text(
        cfg.results_path() / f"{verdict.chapter}.json",
        json.dumps(data, indent=1, default=json_default),
    )
    return data


def load(cfg) -> pd.DataFrame:
    """Every verdict recorded for this run, one row per chapter in chapter order."""
    columns = [f.name for f in Verdict.__dataclass_fields__.values()]
    rows = []
    for path in sorted(cfg.results_path().glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("params") not in (None, cfg.fingerprint()):
            logger.warning("Skipping %s: recorded with other parameters", path)
            continue
        rows.append({k: data.get(k) for k in columns})
    return pd.DataFrame(rows, columns=columns)


def summary_counts(verdicts: pd.DataFrame) -> dict:
    """Number of chapters per level (every level listed)."""
    counts = verdicts["level"].value_counts()
    return {level: int(counts.get(level, 0)) for level in LEVELS}


def nan_to_none(x):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else x


# ------------------------------------------------------------------ deviations
MODEL_NOTES = {
    "minilm": "all-MiniLM-L6-v2 (BERT architecture, 6 layers x 384: 7 x 384 = 2,688 features), "
    "a sentence-embedding fine-tune distilled from MiniLM, not a raw pretrained checkpoint",
    "mpnet": "all-mpnet-base-v2 (MPNet, 12 layers x 768: 13 x 768 = 9,984 features, the "
    "paper's size), a sentence-embedding fine-tune of MPNet, not a raw pretrained checkpoint",
}


def _size_notes(cfg) -> list[str]:
    items = []
    for task in cfg.token_tasks:
        opts = cfg.task_options.get(task, {})
        train = opts.get("train_tokens", PAPER.train_tokens)
        if train is not None and train < PAPER.train_tokens:
            items.append(
                f"`{task}`: first {train:,} training tokens instead of {PAPER.train_tokens:,}."
            )
        for split, paper in (("dev", PAPER.dev_tokens), ("test", PAPER.test_tokens)):
            cap = opts.get(f"{split}_tokens")
            if cap is not None and not 0.8 * paper <= cap <= 1.25 * paper:
                items.append(
                    f"`{task}`: {split} capped at {cap:,} tokens (paper: a standard {split} "
                    f"split, WSJ POS: {paper:,} tokens)."
                )
    for task in cfg.sentence_tasks:
        caps = {
            k: v
            for k, v in cfg.task_options.get(task, {}).items()
            if k.endswith("_sentences") and v
        }
        if caps:
            items.append(
                f"`{task}`: splits capped ({', '.join(f'{k} = {v:,}' for k, v in caps.items())})."
            )
    return items


def _finetune_notes(cfg) -> list[str]:
    if not cfg.sentence_tasks:
        return []
    if not cfg.finetune:
        return [
            "Sentence-task features come from the pretrained models; the paper fine-tunes first."
        ]
    items = []
    if cfg.finetune_max_train_sentences:
        items.append(
            f"Fine-tuning uses at most {cfg.finetune_max_train_sentences:,} training sentences "
            "(paper: the whole training set)."
        )
    if cfg.finetune_epochs != PAPER.finetune["epochs"]:
        items.append(f"Fine-tuning runs {cfg.finetune_epochs} epoch(s) (paper: 3).")
    return items


def deviations(cfg) -> str:
    """Markdown list of every way this run differs from the paper's setup."""
    from .config import Config

    items = []
    other = [m for m in cfg.models if m not in PAPER.models]
    if other:
        notes = "; ".join(
            f"`{m}`: {MODEL_NOTES.get(m, 'a model the paper did not use')}" for m in other
        )
        items.append(
            f"**Models** differ from the paper's bert-base-cased and xlnet-base-cased: {notes}."
        )
    brown = [t for t in cfg.tasks if t.startswith("brown-")]
    if brown:
        items.append(
            f"**Tasks** {', '.join(f'`{t}`' for t in brown)} come from the Brown corpus "
            "(document-disjoint train/dev/test files), standing in for the paper's POS (WSJ), "
            "SEM, CCG, chunking and GLUE tasks, none of which can be downloaded here."
        )
    items += _size_notes(cfg) + _finetune_notes(cfg)
    paper = Config()
    for name in (
        "probe_epochs",
        "probe_lr",
        "probe_l1",
        "probe_l2",
        "probe_batch_size",
        "thresholds",
        "cc_threshold",
        "delta",
        "delta_pairs",
        "representative",
        "aggregation",
    ):
        if getattr(cfg, name) != getattr(paper, name):
            items.append(f"`{name}` = {getattr(cfg, name)!r} (paper: {getattr(paper, name)!r}).")
    if cfg.probe_dtype != "float32":
        items.append(f"Probe products in {cfg.probe_dtype} (paper: float32).")
    if cfg.timing_probe_instances < PAPER.probe_timing["instances"]:
        items.append(
            f"Probe timing on {cfg.timing_probe_instances:,} instances, scaled linearly to the "
            f"paper's {PAPER.probe_timing['instances']:,}."
        )
    items.append(
        f"Beyond the paper: {cfg.n_seeds} seed(s) per headline number (the paper reports single "
        "unseeded runs)"
        + (", control tasks and selectivity" if cfg.control_tasks else "")
        + (
            f", {cfg.n_bootstrap:,} bootstrap resamples of the test sentences"
            if cfg.n_bootstrap
            else ""
        )
        + "."
    )
    return "\n".join(f"- {item}" for item in items)
