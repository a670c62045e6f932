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
    out = RemovalRule().outcomes(_table([70, 108, 185], [80, 110, 190], RANDOM))
    assert list(out["outcome"]) == ["better", "undecided", "undecided"]
    assert "undecided" in some_noise.measured


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


def _accuracy_table(book, lf, bi, random, *, width=0.01, task="upos", model="minilm"):
    """An encoder sweep: accuracy (higher is better) of the book's ordering, last blocks
    first and Block Influence per k = 1, 2, 3; ``random`` a list per k."""
    rows = [dict(ordering="none", k=0, seed=-1, score=0.9, low=0.89, high=0.91)]
    for i, k in enumerate((1, 2, 3)):
        for name, v in (
            ("adjacent_cka", book[i]),
            ("last_first", lf[i]),
            ("block_influence", bi[i]),
        ):
            rows.append(dict(ordering=name, k=k, seed=-1, score=v, low=v - width, high=v + width))
        for s, v in enumerate(random[i]):
            rows.append(
                dict(ordering="random", k=k, seed=s, score=v, low=v - width, high=v + width)
            )
    t = pd.DataFrame(rows)
    t["task"], t["model"] = task, model
    return t


ACC_RANDOM = [[0.7, 0.8, 0.85], [0.5, 0.7, 0.8], [0.4, 0.5, 0.7]]


def test_accuracy_higher_is_better():
    good = _accuracy_table([0.89, 0.88, 0.86], [0.6, 0.5, 0.4], [0.85, 0.8, 0.75], ACC_RANDOM)
    v = RemovalRule().judge(good)
    parts = {r["scope"]: r["level"] for r in v.rows}
    # CKA beats both references at every k; the last blocks lose to random at every k
    assert parts["CKA: minilm / upos"] == "reproduced"
    assert parts["probes: minilm / upos"] == "not reproduced"
    assert parts["CKA"] == "reproduced" and parts["probes"] == "not reproduced"
    assert v.level == "partly reproduced" and v.unit == "score"
    # the same numbers read as perplexities (lower is better) flip every comparison
    as_ppl = good.drop(columns=["score"]).assign(perplexity=good["score"])
    flipped = RemovalRule().outcomes(as_ppl.drop(columns=["task", "model"]))
    assert set(flipped["vs_block_influence"]) == {"loses"}


def test_parts_combine_over_tasks():
    a = _accuracy_table([0.89, 0.88, 0.86], [0.89, 0.88, 0.86], [0.8, 0.7, 0.6], ACC_RANDOM)
    b = _accuracy_table(
        [0.7, 0.6, 0.5], [0.89, 0.88, 0.86], [0.8, 0.7, 0.6], ACC_RANDOM, task="fiction"
    )
    v = RemovalRule().judge(pd.concat([a, b]))
    heads = {r["scope"]: r["level"] for r in v.rows if r["headline"]}
    assert heads == {"CKA": "partly reproduced", "probes": "reproduced"}
    assert v.value is None  # several parts in different units: no single number


def _neurons(cluster, random, *, width=2.0):
    rows = [
        dict(
            kind="none",
            threshold=float("nan"),
            method="none",
            seed=-1,
            n_replaced=0,
            perplexity=60.0,
            low=58.0,
            high=62.0,
        )
    ]
    for i, t in enumerate((0.1, 0.3, 0.5)):
        n = 0 if cluster[i] is None else 10 * (i + 1)
        if n:
            rows.append(
                dict(
                    kind="within-layer",
                    threshold=t,
                    method="cluster",
                    seed=-1,
                    n_replaced=n,
                    perplexity=cluster[i],
                    low=cluster[i] - width,
                    high=cluster[i] + width,
                )
            )
            rows += [
                dict(
                    kind="within-layer",
                    threshold=t,
                    method="random-mean",
                    seed=s,
                    n_replaced=n,
                    perplexity=v,
                    low=v - width,
                    high=v + width,
                )
                for s, v in enumerate(random[i])
            ]
        else:
            rows.append(
                dict(
                    kind="within-layer",
                    threshold=t,
                    method="cluster",
                    seed=-1,
                    n_replaced=0,
                    perplexity=60.0,
                    low=58.0,
                    high=62.0,
                )
            )
    t = pd.DataFrame(rows)
    t["model"] = "smollm2"
    return t


def test_clustering_evidence():
    blocks = _table([70, 80, 100], [80, 110, 190], RANDOM).assign(model="smollm2")
    holds = RemovalRule().judge(blocks, _neurons([61, 63, None], [[70, 72], [80, 90], []]))
    parts = {r["scope"]: r for r in holds.rows}
    assert parts["clustering: smollm2 / within-layer"]["level"] == "reproduced"
    # threshold 0.5 replaced nothing: not a setting
    assert "t=0.5" not in parts["clustering: smollm2 / within-layer"]["text"]
    fails = RemovalRule().judge(blocks, _neurons([75, 95, None], [[70, 72], [80, 90], []]))
    assert {r["scope"]: r["level"] for r in fails.rows}["clustering"] == "not reproduced"
    noise = RemovalRule().judge(blocks, _neurons([70, 84, None], [[70, 72], [80, 90], []]))
    assert {r["scope"]: r["level"] for r in noise.rows}["clustering"] == "inconclusive"
    assert noise.level == "inconclusive"


def test_meaning_names_the_share_of_random_sets_each_choice_beats():
    from redundancy.report import interpret
    from redundancy.report.removal_rule import scored

    t = scored(_accuracy_table([0.89, 0.88, 0.86], [0.6, 0.5, 0.45], [0.85, 0.8, 0.75], ACC_RANDOM))
    v = RemovalRule().judge(t)
    text = interpret.meaning("08-removal", None, (t, None), v)
    # k = 3: random sets 0.4, 0.5, 0.7; CKA 0.86 beats all three, LayerSelector 0.45 one
    assert "the book's CKA did better than 100% of the 3 random sets" in text
    assert "LayerSelector (last blocks first) 33%" in text
    assert "best ordering was adjacent_cka" in text


def test_nothing_removed_is_inconclusive_and_says_why():
    v = RemovalRule().judge(None)
    assert v.level == "inconclusive" and "activation folders" in v.measured


def test_readable_names_columns_and_index_levels():
    """Plain and multi-level indexes alike (the decoder's block-score table has a plain one)."""
    from redundancy.report import removal_view

    plain = pd.DataFrame({"block_influence": [0.1, 0.2]}, index=pd.Index([0, 1], name="block"))
    out = removal_view.readable(plain)
    assert list(out.columns) == [removal_view.SHORT["block_influence"]]
    assert out.index.name == removal_view.SHORT.get("block", "block")
    multi = pd.DataFrame(
        {"score": [0.9, 0.8]},
        index=pd.MultiIndex.from_tuples(
            [("last_first", 1), ("random", 1)], names=["ordering", "k"]
        ),
    )
    out = removal_view.readable(multi)
    assert list(out.index.get_level_values(0)) == [
        removal_view.SHORT.get("last_first", "last_first"),
        removal_view.SHORT.get("random", "random"),
    ]
    assert list(out.index.names) == [removal_view.SHORT.get(n, n) for n in ("ordering", "k")]


def test_transfer_meaning_gives_one_number_when_the_range_is_one_value():
    import pandas as pd

    from redundancy.report import interpret

    rows = [
        {"model": "m", "task": "a", "branch": "LS+CC+FS", "ratio": r, "fraction_kept": f}
        for r, f in ((0.998, 0.13), (0.998, 0.13), (0.9981, 0.1300))
    ] + [
        {"model": "m", "task": "b", "branch": "LS+CC+FS", "ratio": r, "fraction_kept": f}
        for r, f in ((0.936, 0.0301), (0.994, 0.1019))
    ]
    a, b = interpret._transfer(pd.DataFrame(rows), None)
    assert "keeps 99.8% of the oracle's test score with 13.00% of the neurons" in a
    assert "keeps 93.6%-99.4% of the oracle's test score with 3.01%-10.19% of the neurons" in b
