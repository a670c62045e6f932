"""Every chapter's verdict rule, as code: the rule that judges a run and the text that
states it are the same object, so they cannot drift apart.

A rule takes the tidy table its chapter's ``measure`` builds (:mod:`redundancy.report.
chapters`: one row per model, task and setting, with the decision each row's interval
allows) and returns a :class:`Verdict`. The paper's claims are about each task, so the
probe chapters judge every task on its own, then report token tasks and sentence tasks as
separate headline rows; the chapter's level combines them. A claim whose deciding line lies
inside the interval of the run is **inconclusive**: noise decides it, not the rule. Numbers
are fractions; the text shows percents.
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
"""Verdict levels of the result chapters; ``inconclusive`` when the claim's line lies inside
the interval of the measurement (sampling noise and seed spread together)."""
SETUP_LEVELS = ("reproduced", "comparable setup", "smaller setup")
"""Levels of the setup chapter, which describes the run rather than testing a claim."""
TASK_KINDS = ("token", "sentence")


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _span(lo: float, hi: float, digits: int = 2) -> str:
    """``lo-hi``, or one number when both read the same at ``digits`` decimals."""
    a, b = f"{lo:.{digits}f}", f"{hi:.{digits}f}"
    return a if a == b else f"{a}-{b}"


def _pct_span(lo: float, hi: float, digits: int = 1) -> str:
    a, b = _pct(lo, digits), _pct(hi, digits)
    return a if a == b else f"{a}-{b}"


def at_least(low: float, high: float, line: float) -> str:
    """Where an interval ``[low, high]`` lies against ``line`` for a claim "value >= line":
    ``"yes"`` when all of it reaches the line, ``"no"`` when none does, ``"undecided"``
    when the line lies inside. The one comparison of every band rule below."""
    if low >= line:
        return "yes"
    if not high >= line:
        return "no"
    return "undecided"


def combine(levels) -> str:
    """One level for several judged parts (tasks, samples): all alike -> that level; any
    inconclusive part -> inconclusive; a mix of decided parts -> partly reproduced."""
    levels = list(levels)
    if not levels:
        return LEVELS[3]
    if all(lv == levels[0] for lv in levels):
        return levels[0]
    if LEVELS[3] in levels:
        return LEVELS[3]
    return LEVELS[1]


@dataclass
class Verdict:
    """A chapter's verdict.

    Attributes
    ----------
    chapter : str
    claim : str
        The paper's claim, with its number.
    level : str
        One of :data:`LEVELS` (:data:`SETUP_LEVELS` for the setup chapter).
    measured : str
        What the run measured, in one sentence.
    rule : str
        The rule's text (:meth:`describe`).
    paper_value : float or None
        The paper's number, where the paper gives one.
    threshold : float or None
        The book's own line where the paper gives none (drawn differently in the summary).
    value, low, high : float or None
        The run's headline estimate and its interval (for the summary figure).
    unit : str
        ``"fraction"`` or another unit of the numbers above.
    rows : list of dict
        The judged parts: ``scope`` (``"token tasks"``, ``"minilm / brown-upos"``, ...),
        ``headline`` (bool), ``level``, ``value``, ``low``, ``high``, ``text``.
    details : dict
        The measurements behind the verdict.
    """

    chapter: str
    claim: str
    level: str
    measured: str
    rule: str
    paper_value: float | None = None
    threshold: float | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None
    unit: str = "fraction"
    rows: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def markdown(self) -> str:
        """``**Verdict: ….**`` with one line per headline row and per task."""
        if not self.rows:
            return f"**Verdict: {self.level}.** {self.measured}."
        text = f"**Verdict: {self.level}.**"
        lines = [
            f"- {'**' + r['scope'] + '**' if r.get('headline') else r['scope']}: "
            f"*{r['level']}* — {r['text']}"
            for r in self.rows
        ]
        return text + ("\n\n" + "\n".join(lines) if lines else "")

    def table(self) -> pd.DataFrame:
        """The judged parts as a table (headline rows first)."""
        df = pd.DataFrame(
            self.rows, columns=["scope", "headline", "level", "value", "low", "high", "text"]
        )
        return df.sort_values("headline", ascending=False, kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------- recording
def record(cfg, verdict: Verdict) -> dict:
    """Write a chapter's verdict to ``<results_dir>/<chapter>.json`` for the summary page."""
    allowed = SETUP_LEVELS if verdict.chapter.startswith("01-") else LEVELS
    if verdict.level not in allowed:
        raise ValueError(
            f"The 'level' of a Verdict of {verdict.chapter} must be one of {allowed}. "
            f"Got {verdict.level!r} instead."
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
    """Number of result chapters per level (every level listed); the setup chapter, which
    describes the run rather than testing a claim, is not counted."""
    results = verdicts[~verdicts["chapter"].astype(str).str.startswith("01-")]
    counts = results["level"].value_counts()
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
            parts = [
                f"{caps[k]:,} {k.split('_')[0].replace('train', 'training')}"
                for k in ("train_sentences", "dev_sentences", "test_sentences")
                if k in caps
            ]
            items.append(f"`{task}`: splits capped at {', '.join(parts)} sentences.")
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
        epochs = "epoch" if cfg.finetune_epochs == 1 else "epochs"
        items.append(f"Fine-tuning runs {cfg.finetune_epochs} {epochs} (paper: 3).")
    return items


_APPLIES = {
    "models": None,  # every chapter
    "tasks": ("01", "02", "03", "04", "05", "06", "08", "09"),
    "sizes": ("01", "03", "04", "05", "06", "09"),
    "finetune": ("01", "02", "03", "04", "05", "06", "08", "09"),
    "probe_epochs": ("03", "04", "05", "06", "07", "08", "09"),
    "probe_lr": ("03", "04", "05", "06", "08", "09"),
    "probe_l1": ("03", "04", "05", "06", "08", "09"),
    "probe_l2": ("03", "04", "05", "06", "08", "09"),
    "probe_batch_size": ("03", "04", "05", "06", "07", "08", "09"),
    "thresholds": ("03", "08", "09"),
    "cc_threshold": ("03", "06", "09"),
    "delta": ("03", "04", "05", "06", "09"),
    "delta_pairs": ("06", "07", "09"),
    "representative": ("03", "06", "08", "09"),
    "aggregation": ("01", "02", "03", "04", "05", "06", "08", "09"),
    "probe_dtype": ("03", "04", "05", "06", "07", "09"),
    "timing": ("07", "09"),
    "seeds": ("03", "04", "05", "06", "09"),
    "controls": ("04", "05", "09"),
    "bootstrap": ("02", "03", "04", "05", "06", "08", "09"),
}
"""Which chapters (by number) each kind of deviation concerns; None: all of them."""


def _label(name: str) -> str:
    from .tables import parameter_label

    return parameter_label(name)


def _value(value) -> str:
    """A parameter's value as prose: lists without brackets' code look, numbers as written."""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (list, tuple)) for v in value):
            return ", ".join("(" + ", ".join(_value(x) for x in v) + ")" for v in value)
        return ", ".join(_value(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _applies(what: str, chapter: str | None) -> bool:
    chapters = _APPLIES.get(what)
    return chapter is None or chapters is None or chapter[:2] in chapters


def deviations(cfg, chapter: str | None = None) -> str:
    """Markdown list of the ways this run differs from the paper's setup that concern
    ``chapter`` (``"03-neurons-clustering"`` or ``"03"``; every way when None)."""
    from .config import Config

    items = []
    other = [m for m in cfg.models if m not in PAPER.models]
    if other and _applies("models", chapter):
        notes = "; ".join(
            f"`{m}`: {MODEL_NOTES.get(m, 'a model the paper did not use')}" for m in other
        )
        items.append(
            f"**Models** differ from the paper's bert-base-cased and xlnet-base-cased: {notes}."
        )
    brown = [t for t in cfg.tasks if t.startswith("brown-")]
    if brown and _applies("tasks", chapter):
        items.append(
            f"**Tasks** {', '.join(f'`{t}`' for t in brown)} come from the Brown corpus "
            "(document-disjoint train/dev/test files), standing in for the paper's POS (WSJ), "
            "SEM, CCG, chunking and GLUE tasks, none of which can be downloaded here."
        )
    if _applies("sizes", chapter):
        items += _size_notes(cfg)
    if _applies("finetune", chapter):
        items += _finetune_notes(cfg)
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
        if getattr(cfg, name) != getattr(paper, name) and _applies(name, chapter):
            items.append(
                f"{_label(name)[0].upper()}{_label(name)[1:]}: {_value(getattr(cfg, name))} "
                f"(paper: {_value(getattr(paper, name))})."
            )
    if cfg.probe_dtype != "float32" and _applies("probe_dtype", chapter):
        items.append(f"Probe products in {cfg.probe_dtype} (paper: float32).")
    if cfg.timing_probe_instances < PAPER.probe_timing["instances"] and _applies("timing", chapter):
        items.append(
            f"Probe timing on {cfg.timing_probe_instances:,} instances, scaled linearly to the "
            f"paper's {PAPER.probe_timing['instances']:,}."
        )
    beyond = []
    if _applies("seeds", chapter):
        seeds = "one seed" if cfg.n_seeds == 1 else f"{cfg.n_seeds} seeds"
        beyond.append(f"{seeds} per headline number (the paper reports single unseeded runs)")
    if cfg.control_tasks and _applies("controls", chapter):
        beyond.append("control tasks and selectivity")
    if cfg.n_bootstrap and _applies("bootstrap", chapter):
        beyond.append(
            f"{cfg.n_bootstrap:,} bootstrap resamples of the evaluation sentences behind every "
            "interval and decision"
        )
    if beyond:
        items.append("Beyond the paper: " + ", ".join(beyond) + ".")
    if not items:
        return "- Nothing: this chapter runs as the paper did."
    return "\n".join(f"- {item}" for item in items)


# the rules live in their own module (which imports this one); they stay reachable here
_RULE_NAMES = (
    "RULES",
    "CKARule",
    "ClusteringRule",
    "LayerRule",
    "RankingRule",
    "SetupRule",
    "TimingRule",
    "TransferRule",
)


def __getattr__(name: str):
    if name in _RULE_NAMES:
        from . import rules

        return getattr(rules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
