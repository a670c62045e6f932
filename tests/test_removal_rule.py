"""The removal rule on planted sweep tables: the claim holds, fails, or noise decides."""

from __future__ import annotations

import pandas as pd
import pytest

from redundancy.report.removal_rule import RemovalRule, moonshot, moonshot_markdown


def _table(book, bi, random, *, width=0.05, book_width=None, ks=(2, 4, 8)):
    """A sweep table: ``book``/``bi`` perplexity per k, ``random`` a list per k; intervals of
    +-``width`` (relative)."""
    bw = width if book_width is None else book_width
    rows = [dict(ordering="none", k=0, seed=-1, perplexity=60.0, low=57.0, high=63.0)]
    for i, k in enumerate(ks):
        rows.append(
            dict(
                ordering="adjacent_cka",
                k=k,
                seed=-1,
                perplexity=book[i],
                low=book[i] * (1 - bw),
                high=book[i] * (1 + bw),
            )
        )
        rows.append(
            dict(
                ordering="block_influence",
                k=k,
                seed=-1,
                perplexity=bi[i],
                low=bi[i] * (1 - width),
                high=bi[i] * (1 + width),
            )
        )
        for s, v in enumerate(random[i]):
            rows.append(
                dict(ordering="random", k=k, seed=s, perplexity=v, low=v * 0.95, high=v * 1.05)
            )
    return pd.DataFrame(rows)


RANDOM = [[100, 150, 300], [200, 900, 2000], [400, 5000, 1e5]]


def test_claim_holds():
    v = RemovalRule().judge(_table([70, 80, 100], [80, 110, 190], RANDOM))
    assert v.level == "reproduced" and all(r["level"] == "reproduced" for r in v.rows)
    assert v.value == pytest.approx(100) and v.unit == "perplexity"
    assert "k=8" in v.measured and "beats" in v.measured


def test_claim_fails_like_the_issue():
    # the issue's numbers: CKA worse than Block Influence at every k, far worse at k=8
    v = RemovalRule().judge(_table([79, 109, 2906], [75, 104, 188], RANDOM, width=0.02))
    out = RemovalRule().outcomes(_table([79, 109, 2906], [75, 104, 188], RANDOM, width=0.02))
    assert list(out["vs_block_influence"]) == ["loses", "loses", "loses"]
    assert v.level == "not reproduced"


def test_noise_decides_is_inconclusive():
    # book and Block Influence overlap at every k, and the book beats random: undecided
    v = RemovalRule().judge(_table([80, 110, 190], [79, 108, 185], RANDOM, width=0.1))
    assert v.level == "inconclusive" and {r["level"] for r in v.rows} == {"inconclusive"}
    assert "undecided" in v.measured


def test_mixed_outcomes_are_partly():
    v = RemovalRule().judge(_table([70, 80, 3000], [80, 110, 190], RANDOM))
    assert v.level == "partly reproduced"
    some_noise = RemovalRule().judge(_table([70, 108, 185], [80, 110, 190], RANDOM))
    assert some_noise.level == "partly reproduced"
    assert "inconclusive" in {r["level"] for r in some_noise.rows}


def test_random_median_is_the_reference():
    # book below Block Influence but above the median random choice at k=2: loses there
    v = RemovalRule().outcomes(_table([170, 80, 100], [200, 110, 190], RANDOM))
    assert v.loc[0, "vs_random"] == "loses" and v.loc[0, "outcome"] == "worse"


def test_missing_ordering_names_it():
    t = _table([70, 80, 100], [80, 110, 190], RANDOM)
    with pytest.raises(ValueError, match="block_influence"):
        RemovalRule().judge(t[t["ordering"] != "block_influence"])


def test_moonshot():
    t = _table([70, 80, 100], [80, 110, 190], RANDOM)
    t = pd.concat(
        [
            t,
            pd.DataFrame(
                [
                    dict(
                        ordering="cka_recomputed",
                        k=8,
                        seed=-1,
                        perplexity=110.0,
                        low=100.0,
                        high=125.0,
                    )
                ]
            ),
        ]
    )
    m = moonshot(t)
    assert m["met"] and not m["settled"] and m["bar"] == 120.0
    assert "not settled" in moonshot_markdown(m) and "**met**" in moonshot_markdown(m)
    assert not moonshot(t, ratio=1.5)["met"] and moonshot(t, ratio=1.5)["settled"]


def test_summary_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from redundancy.report import removal_view

    t = _table([70, 80, 100], [80, 110, 190], RANDOM)
    t["ratio"] = t["perplexity"] / 60.0
    t["blocks"] = ""
    s = removal_view.summary(t)
    rnd = s.loc[(8, "random")]
    assert rnd["perplexity"] == 5000 and rnd["low"] == 400 and rnd["high"] == 1e5
    assert rnd["blocks"] == "3 seeds"
    assert list(s.loc[2].index) == ["adjacent_cka", "block_influence", "random"]  # by perplexity
    fig, ax = plt.subplots()
    removal_view.plot_removal(t, ax=ax)
    assert len(ax.containers) == 3 and ax.get_yscale() == "log"
    plt.close(fig)
