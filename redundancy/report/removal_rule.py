"""The removal chapter's rule: does the book's redundancy predict what can be removed?

The book calls layers redundant when their representations are similar (CKA between
adjacent layers, correlation clusters across layers). If that redundancy is real in the
sense that matters for using a model, removing the blocks it points at should hurt less
than removing random blocks, and at least as little as the field's cheap score, Block
Influence (ShortGPT). :class:`RemovalRule` judges a :func:`removal_sweep` table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .rules import _Rule
from .verdicts import LEVELS, Verdict


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


@dataclass(frozen=True)
class RemovalRule(_Rule):
    """Removal chapter: the book's measure against random blocks and Block Influence.

    For each number of removed blocks ``k`` the book's ordering **beats** a reference when
    its perplexity interval lies wholly below it, **loses** when wholly above, and is
    **undecided** when they overlap (noise decides). The random reference is the median
    perplexity over the random seeds (a typical random choice); Block Influence's is its
    bootstrap interval.
    """

    chapter: str = "removal"
    book: str = "adjacent_cka"
    against: tuple = ("random", "block_influence")

    @property
    def claim(self) -> str:
        return (
            "blocks the book calls redundant (highest CKA between adjacent layers) can be "
            "removed at lower cost in perplexity than random blocks and than blocks ranked "
            "by Block Influence"
        )

    def describe(self) -> str:
        return (
            f"for every k, the `{self.book}` ordering's perplexity interval (bootstrap over "
            "evaluation windows) is compared with the median over random seeds and with "
            "Block Influence's interval: wholly below beats, wholly above loses, overlapping "
            "is undecided. **reproduced** when it beats both at every k; **not reproduced** "
            "when at every k it loses to one of them, or loses at some k and beats both at "
            "none; **partly reproduced** when it beats both at some k and loses at another, "
            "or beats at some k and is undecided at the rest; **inconclusive** when no k is "
            "decided."
        )

    @staticmethod
    def _compare(low: float, high: float, ref_low: float, ref_high: float) -> str:
        if high < ref_low:
            return "beats"
        if low > ref_high:
            return "loses"
        return "undecided"

    def outcomes(self, table: pd.DataFrame) -> pd.DataFrame:
        """One row per ``k``: the book's ordering, each reference and the comparisons."""
        rows = []
        for k in sorted(set(table.loc[table["k"] > 0, "k"])):
            at = table[table["k"] == k]
            book = at[at["ordering"] == self.book]
            if book.empty:
                raise ValueError(f"The table has no '{self.book}' row at k={k}.")
            b = book.iloc[0]
            row = {
                "k": int(k),
                "book": b["perplexity"],
                "book_low": b["low"],
                "book_high": b["high"],
            }
            for ref in self.against:
                r = at[at["ordering"] == ref]
                if r.empty:
                    raise ValueError(f"The table has no '{ref}' rows at k={k}.")
                if ref == "random":
                    med = float(np.median(r["perplexity"]))
                    lo = hi = med
                else:
                    med, lo, hi = (float(r.iloc[0][c]) for c in ("perplexity", "low", "high"))
                row[ref] = med
                row[f"vs_{ref}"] = self._compare(b["low"], b["high"], lo, hi)
            results = [row[f"vs_{ref}"] for ref in self.against]
            if "loses" in results:
                row["outcome"] = "worse"
            elif all(x == "beats" for x in results):
                row["outcome"] = "better"
            else:
                row["outcome"] = "undecided"
            rows.append(row)
        return pd.DataFrame(rows)

    def judge(self, table: pd.DataFrame) -> Verdict:
        """``table``: :func:`redundancy.report.steps.removal.removal_sweep`'s rows
        (``ordering``, ``k``, ``seed``, ``perplexity``, ``low``, ``high``)."""
        out = self.outcomes(table)
        got = set(out["outcome"])
        if got == {"better"}:
            level = LEVELS[0]
        elif got == {"undecided"}:
            level = LEVELS[3]
        elif "better" in got:
            level = LEVELS[1]
        else:  # worse somewhere and better nowhere
            level = LEVELS[2]
        parts = []
        for r in out.itertuples():
            refs = ", ".join(
                f"{ref} {_num(getattr(r, ref))} ({getattr(r, 'vs_' + ref)})" for ref in self.against
            )
            parts.append(
                f"k={r.k}: {self.book} {_num(r.book)} [{_num(r.book_low)}, {_num(r.book_high)}] vs {refs}"
            )
        last = out.iloc[-1]
        base = table[table["ordering"] == "none"]
        details = {"outcomes": out.to_dict("records")}
        if not base.empty:
            details["baseline"] = float(base["perplexity"].iloc[0])
        word = {"better": LEVELS[0], "worse": LEVELS[2], "undecided": LEVELS[3]}
        rows = [
            {
                "scope": f"{r.k} blocks removed",
                "headline": False,
                "kind": "removal",
                "level": word.get(r.outcome, LEVELS[3]),
                "value": float(r.book),
                "low": float(r.book_low),
                "high": float(r.book_high),
                "text": text,
            }
            for r, text in zip(out.itertuples(), parts)
        ]
        return Verdict(
            self.chapter,
            self.claim,
            level,
            "perplexity with k blocks removed: " + "; ".join(parts),
            self.describe(),
            value=float(last["book"]),
            low=float(last["book_low"]),
            high=float(last["book_high"]),
            unit="perplexity",
            rows=rows,
            details=details,
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
