"""The removal chapter's rule: does the book's redundancy predict what can be removed?

The book calls blocks redundant when their representations are alike (CKA between
adjacent layers), the last layers redundant for a task when a probe on the first layers
does as well (LayerSelector), and neurons redundant when they correlate with a cluster's
representative. If that redundancy matters for using a model, removing what it points at
should cost less than removing random parts, and no more than the field's cheap score,
Block Influence (ShortGPT). :class:`RemovalRule` judges each of the three kinds of
evidence on every model and task of the run:

* **blocks** (:func:`judge` 's first table): the book's ordering against the median random
  set and against Block Influence at every number of removed blocks ``k``; the score is a
  task's accuracy (encoders, higher is better) or perplexity (decoders, lower is better);
* **neurons** (optional second table): clustering's replacement (each redundant neuron
  fitted from its representative) against as many random neurons replaced by their mean,
  at every clustering threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .rules import _Rule
from .verdicts import LEVELS, Verdict, combine

EVIDENCE = {
    "CKA": ("adjacent_cka", ("random", "block_influence")),
    "probes": ("last_first", ("random", "block_influence")),
    "clustering": ("cluster", ("random-mean",)),
}
"""Per kind of evidence: the ordering that stands for the book and its references."""


def _num(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if abs(x) >= 2 else f"{x:.3f}"


def scored(table: pd.DataFrame) -> pd.DataFrame:
    """A removal table with ``score`` and ``higher_better``: a decoder's ``perplexity``
    column (lower is better) is renamed; ``model`` and ``task`` are added when absent."""
    t = table.copy()
    if "score" not in t:
        t = t.rename(columns={"perplexity": "score"})
        t["higher_better"] = False
    if "higher_better" not in t:
        t["higher_better"] = True
    for col, default in (("model", ""), ("task", "perplexity")):
        if col not in t:
            t[col] = default
    return t


@dataclass(frozen=True)
class RemovalRule(_Rule):
    """Removal chapter: the book's choices against random ones and Block Influence.

    At each setting (``k`` blocks removed, or a clustering threshold) the book's choice
    **beats** a reference when its interval lies wholly on the better side of it, **loses**
    when wholly on the worse side, and is **undecided** when they overlap (noise decides).
    The random reference is the median over the random sets (a typical random choice);
    Block Influence's is its bootstrap interval. A part (one model, task and kind of
    evidence) is *reproduced* when it beats every reference at every setting, *not
    reproduced* when it loses somewhere and beats all references nowhere, *partly* when it
    beats all at some setting and loses or is undecided at another, *inconclusive* when no
    setting is decided. Each kind of evidence combines its parts; the chapter combines the
    kinds.
    """

    chapter: str = "removal"

    @property
    def claim(self) -> str:
        return (
            "what the book calls redundant can be removed at lower cost than random choices "
            "and than Block Influence: the blocks with the most similar adjacent layers (CKA), "
            "the last blocks when probes on the first layers suffice (LayerSelector), and "
            "neurons that correlate with their cluster's representative (clustering)"
        )

    def describe(self) -> str:
        return (
            "at every k (blocks removed) the book's ordering's interval (bootstrap over the "
            "evaluation sentences or windows) is compared with the median over random sets "
            "and with Block Influence's interval; at every clustering threshold the "
            "clustering's replacement with as many random neurons replaced by their mean: "
            "wholly better beats, wholly worse loses, overlapping is undecided. A part "
            "(model, task, kind of evidence) is **reproduced** when it beats every reference "
            "everywhere; **not reproduced** when it loses somewhere and beats all references "
            "nowhere; **partly reproduced** when it beats all at some setting and not at "
            "another; **inconclusive** when no setting is decided."
        )

    @staticmethod
    def _compare(low, high, ref_low, ref_high, higher_better: bool) -> str:
        if (low > ref_high) if higher_better else (high < ref_low):
            return "beats"
        if (high < ref_low) if higher_better else (low > ref_high):
            return "loses"
        return "undecided"

    def outcomes(
        self,
        table: pd.DataFrame,
        book: str = "adjacent_cka",
        against: tuple = ("random", "block_influence"),
        setting: str = "k",
    ) -> pd.DataFrame:
        """One row per setting of one part: the book's score, each reference and the
        comparisons (``vs_<reference>``), and ``outcome`` (better, worse, undecided)."""
        t = scored(table)
        higher = bool(t["higher_better"].iloc[0])
        rows = []
        for value in sorted(set(t.loc[t[setting] > 0, setting])):
            at = t[t[setting] == value]
            mine = at[at["ordering"] == book]
            if mine.empty:
                raise ValueError(f"The table has no '{book}' row at {setting}={value}.")
            b = mine.iloc[0]
            row = {setting: value, "book": b["score"], "book_low": b["low"], "book_high": b["high"]}
            for ref in against:
                r = at[at["ordering"] == ref]
                if r.empty:
                    raise ValueError(f"The table has no '{ref}' rows at {setting}={value}.")
                if ref.startswith("random"):
                    lo = hi = med = float(np.median(r["score"]))
                else:
                    med, lo, hi = (float(r.iloc[0][c]) for c in ("score", "low", "high"))
                row[ref] = med
                row[f"vs_{ref}"] = self._compare(b["low"], b["high"], lo, hi, higher)
            results = [row[f"vs_{ref}"] for ref in against]
            if "loses" in results:
                row["outcome"] = "worse"
            elif all(x == "beats" for x in results):
                row["outcome"] = "better"
            else:
                row["outcome"] = "undecided"
            rows.append(row)
        return pd.DataFrame(rows)

    @staticmethod
    def part_level(out: pd.DataFrame) -> str:
        got = set(out["outcome"])
        if got == {"better"}:
            return LEVELS[0]
        if got == {"undecided"} or not got:
            return LEVELS[3]
        if "better" in got:
            return LEVELS[1]
        return LEVELS[2]  # worse somewhere and better nowhere

    def _part(self, table, evidence, scope, setting) -> dict | None:
        book, against = EVIDENCE[evidence]
        if book not in set(table["ordering"]):
            return None
        out = self.outcomes(table, book, against, setting)
        if out.empty:
            return None
        name = "k" if setting == "k" else "t"
        texts = []
        for r in out.to_dict("records"):
            refs = ", ".join(f"{ref} {_num(r[ref])} ({r['vs_' + ref]})" for ref in against)
            texts.append(
                f"{name}={r[setting]:g}: {book} {_num(r['book'])} "
                f"[{_num(r['book_low'])}, {_num(r['book_high'])}] vs {refs}"
            )
        last = out.iloc[-1]
        return {
            "scope": f"{evidence}: {scope}",
            "headline": False,
            "kind": evidence,
            "level": self.part_level(out),
            "value": float(last["book"]),
            "low": float(last["book_low"]),
            "high": float(last["book_high"]),
            "text": "; ".join(texts),
            "outcomes": out.to_dict("records"),
        }

    def parts(self, blocks: pd.DataFrame, neurons: pd.DataFrame | None = None) -> list[dict]:
        """Every judged part: per model and task, CKA and probes; per model and kind of
        cluster, clustering."""
        rows = []
        t = scored(blocks)
        for (model, task), g in t.groupby(["model", "task"], sort=False):
            scope = f"{model} / {task}" if model else str(task)
            for evidence in ("CKA", "probes"):
                part = self._part(g, evidence, scope, "k")
                if part is not None:
                    rows.append(part)
        if neurons is not None and len(neurons):
            n = scored(neurons.rename(columns={"method": "ordering"}))
            if "n_replaced" in n:
                n = n[(n["n_replaced"] > 0) | (n["ordering"] == "none")]
            kinds = n["kind"] if "kind" in n else pd.Series("neurons", index=n.index)
            n = n.assign(kind=kinds, threshold=n["threshold"].fillna(0))
            for (model, kind), g in n[n["ordering"] != "none"].groupby(["model", "kind"]):
                scope = f"{model} / {kind}" if model else str(kind)
                part = self._part(g, "clustering", scope, "threshold")
                if part is not None:
                    rows.append(part)
        return rows

    def judge(self, blocks: pd.DataFrame, neurons: pd.DataFrame | None = None) -> Verdict:
        """``blocks``: removal sweeps (``model``, ``task``, ``ordering``, ``k``, ``seed``,
        ``score`` with ``higher_better``, or a decoder's ``perplexity``; ``low``,
        ``high``); ``neurons``: cluster replacements (``model``, ``kind``, ``threshold``,
        ``method``, ``seed``, ``n_replaced``, ``perplexity``, ``low``, ``high``)."""
        if blocks is None or not len(blocks):
            return Verdict(
                self.chapter,
                self.claim,
                LEVELS[3],
                "nothing was removed: no model of this run has weights to remove blocks from "
                "(activation folders only)",
                self.describe(),
                unit="score",
            )
        parts = self.parts(blocks, neurons)
        heads = []
        for evidence in EVIDENCE:
            mine = [p for p in parts if p["kind"] == evidence]
            if mine:
                levels = [p["level"] for p in mine]
                heads.append(
                    {
                        "scope": evidence,
                        "headline": True,
                        "kind": evidence,
                        "level": combine(levels),
                        "value": None,
                        "low": None,
                        "high": None,
                        "text": ", ".join(
                            f"{p['scope'].split(': ', 1)[1]} {p['level']}" for p in mine
                        ),
                    }
                )
        level = combine(h["level"] for h in heads)
        single = parts[0] if len(parts) == 1 else None
        unit = "perplexity" if not bool(scored(blocks)["higher_better"].iloc[0]) else "score"
        return Verdict(
            self.chapter,
            self.claim,
            level,
            " | ".join(f"{p['scope']}: {p['text']}" for p in parts),
            self.describe(),
            value=single["value"] if single else None,
            low=single["low"] if single else None,
            high=single["high"] if single else None,
            unit=unit,
            rows=heads + [{k: v for k, v in p.items() if k != "outcomes"} for p in parts],
            details={"outcomes": {p["scope"]: p["outcomes"] for p in parts}},
        )


def moonshot(
    table: pd.DataFrame, *, ordering: str = "cka_recomputed", k: int = 8, ratio: float = 2.0
) -> dict:
    """Whether ``ordering`` removes ``k`` blocks at no more than ``ratio`` times the
    unpruned perplexity (``met``), with the interval's verdict (``settled`` when the whole
    interval is on one side of the bar)."""
    base = float(table.loc[table["ordering"] == "none", "perplexity"].iloc[0])
    row = table[(table["ordering"] == ordering) & (table["k"] == k)]
    if row.empty:
        raise ValueError(f"The table has no '{ordering}' row at k={k}.")
    r = row.iloc[0]
    bar = ratio * base
    return {
        "ordering": ordering,
        "k": k,
        "blocks": str(r["blocks"]) if "blocks" in r else "",
        "perplexity": float(r["perplexity"]),
        "low": float(r["low"]),
        "high": float(r["high"]),
        "bar": bar,
        "met": bool(r["perplexity"] <= bar),
        "settled": bool(r["high"] <= bar or r["low"] > bar),
    }


def moonshot_markdown(shot: dict) -> str:
    """One sentence on :func:`moonshot`'s outcome."""
    text = (
        f"`{shot['ordering']}` removes blocks {shot['blocks'] or '?'} (k = {shot['k']}): "
        f"perplexity {shot['perplexity']:.1f} [{shot['low']:.1f}, {shot['high']:.1f}] against "
        f"the bar {shot['bar']:.1f}: **{'met' if shot['met'] else 'not met'}**"
    )
    return text + ("." if shot["settled"] else " (the bar lies inside the interval: not settled).")
