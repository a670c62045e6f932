"""Every chapter's rule on planted tables, one per verdict level; the rule text comes from the
same object; verdicts are recorded and read back."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from redundancy.report import verdicts
from redundancy.report.config import Config
from redundancy.report.paper import PAPER
from redundancy.report.verdicts import LEVELS, RULES

R, P, N, UNDECIDED = LEVELS  # reproduced, partly, not, inconclusive


def test_every_chapter_has_a_rule_whose_text_uses_its_own_numbers():
    assert set(RULES) == {
        f"0{i}-{n}"
        for i, n in enumerate(
            [
                "setup",
                "layers-cka",
                "neurons-clustering",
                "layers-probes",
                "neurons-ranking",
                "transfer",
                "timing",
            ],
            start=1,
        )
    }
    assert "85%" in RULES["03-neurons-clustering"].describe()
    assert "85%" in RULES["03-neurons-clustering"].claim
    assert "92%" in RULES["05-neurons-ranking"].describe()
    assert "97%" in RULES["06-transfer"].describe() and "10%" in RULES["06-transfer"].describe()
    stricter = verdicts.ClusteringRule("03", reproduced_at=0.8)
    assert "80%" in stricter.describe() and "85%" not in stricter.describe()
    assert RULES["03-neurons-clustering"].reproduced_at == PAPER.redundant_neurons


def _setup(features, models, tokens, paper_data):
    table = pd.DataFrame(
        {"model": models, "features": features, "paper_model": [m in PAPER.models for m in models]}
    )
    table.attrs.update(train_tokens=tokens, paper_data=paper_data)
    return table


def test_setup_rule_says_reproduced_only_with_the_papers_models_and_data():
    rule = RULES["01-setup"]
    paper = rule.judge(_setup([9984], ["bert-base-cased"], {"pos": 150_001}, True))
    assert paper.level == "reproduced"
    mpnet = rule.judge(_setup([9984], ["mpnet"], {"brown-upos": 150_001}, False))
    assert mpnet.level == "comparable setup"
    small = rule.judge(_setup([2688], ["minilm"], {"brown-upos": 150_001}, False))
    assert small.level == "smaller setup" and "minilm 2,688" in small.measured
    assert rule.judge(_setup([9984], ["bert-base-cased"], {"pos": 20_000}, True)).level == (
        "smaller setup"
    )


def _cka(adjacent, far, width=0.02, samples=("train", "test")):
    rows = [
        {
            "model": "m",
            "sample": s,
            "adjacent": a,
            "adjacent_low": a - width,
            "adjacent_high": a + width,
            "far": f,
            "far_low": f - width,
            "far_high": f + width,
        }
        for s, a, f in zip(samples, adjacent, far)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("adjacent", "far", "level"),
    [
        ((0.9, 0.85), (0.5, 0.6), R),
        ((0.7, 0.75), (0.5, 0.6), P),  # not high, but falls off
        ((0.9, 0.85), (0.95, 0.9), P),  # high, but does not fall off
        ((0.5, 0.5), (0.6, 0.6), N),
        ((0.81, 0.9), (0.5, 0.6), UNDECIDED),  # 0.8 inside a sample's interval: noise decides
    ],
)
def test_cka_rule(adjacent, far, level):
    v = RULES["02-layers-cka"].judge(_cka(adjacent, far))
    assert v.level == level
    assert v.threshold == 0.8 and v.paper_value is None  # the book's line, not the paper's


def _clustering(decisions_by_task, shares=(0.5, 0.7, 0.8, 0.86, 0.95)):
    rows = []
    for task, decisions in decisions_by_task.items():
        kind = "sentence" if task.startswith("s") else "token"
        for share, d in zip(shares, decisions):
            rows.append(
                {
                    "model": "m",
                    "task": task,
                    "kind": kind,
                    "threshold": share,
                    "fraction_redundant": share,
                    "decision": d,
                }
            )
    return pd.DataFrame(rows)


WITHIN, UNSURE, OUTSIDE = "within", "inconclusive", "outside"


@pytest.mark.parametrize(
    ("decisions", "level"),
    [
        ([WITHIN, WITHIN, WITHIN, WITHIN, OUTSIDE], R),  # 86% surely within delta
        ([WITHIN, WITHIN, WITHIN, OUTSIDE, OUTSIDE], P),  # 80%: within 10 points of 85%
        ([WITHIN, OUTSIDE, OUTSIDE, OUTSIDE, OUTSIDE], N),  # 50%
        (
            [WITHIN, WITHIN, WITHIN, UNSURE, OUTSIDE],
            UNDECIDED,
        ),  # 85% lies between the sure 80% and the possible 86%
        ([WITHIN, WITHIN, UNSURE, OUTSIDE, OUTSIDE], UNDECIDED),  # 75% lies between 70% and 80%
    ],
)
def test_clustering_rule_per_task(decisions, level):
    v = RULES["03-neurons-clustering"].judge(_clustering({"tok": decisions}))
    assert v.level == level
    task = [r for r in v.rows if not r["headline"]][0]
    assert task["level"] == level


def test_clustering_rule_judges_token_and_sentence_tasks_apart():
    table = _clustering(
        {
            "tok": [WITHIN, WITHIN, WITHIN, WITHIN, OUTSIDE],
            "sent": [WITHIN, OUTSIDE, OUTSIDE, OUTSIDE, OUTSIDE],
        }
    )
    v = RULES["03-neurons-clustering"].judge(table)
    heads = {r["scope"]: r["level"] for r in v.rows if r["headline"]}
    assert heads == {"token tasks": R, "sentence tasks": N}
    assert v.level == P  # the chapter: some parts reproduce, some do not
    # an equal-weight average over unlike tasks would have read (86 + 50) / 2 = 68%
    assert "86.0%" in v.markdown() and "50.0%" in v.markdown()
    assert "1 task: 86.0% redundant" in v.markdown()  # decided: nothing left to noise


def test_partly_band_is_named_from_the_papers_number():
    rule = verdicts.ClusteringRule("03", reproduced_at=0.9, partly_band=0.05)
    assert rule.partly_at == pytest.approx(0.85)
    assert "85%" in rule.describe() and "90%" in rule.describe() and "50%" not in rule.describe()


def _layers(decisions, n_layers=7, task="tok"):
    return pd.DataFrame(
        [
            {
                "model": "m",
                "task": task,
                "kind": "token",
                "layer": layer,
                "n_layers": n_layers,
                "ratio": 1.0,
                "low": 0.99,
                "high": 1.01,
                "decision": d,
            }
            for layer, d in enumerate(decisions)
        ]
    )


@pytest.mark.parametrize(
    ("decisions", "level"),
    [
        (
            [OUTSIDE, OUTSIDE, WITHIN, WITHIN, WITHIN, WITHIN, WITHIN],
            R,
        ),  # layers 0..2 of 0..6: a third of 7 layers
        (
            [OUTSIDE, OUTSIDE, OUTSIDE, WITHIN, WITHIN, WITHIN, WITHIN],
            P,
        ),  # reached, but only at layer 3
        (
            [OUTSIDE, OUTSIDE, OUTSIDE, OUTSIDE, OUTSIDE, OUTSIDE, WITHIN],
            N,
        ),  # only the oracle itself
        ([OUTSIDE, OUTSIDE, UNSURE, WITHIN, WITHIN, WITHIN, WITHIN], UNDECIDED),
    ],
)
def test_layer_rule_counts_a_third_of_the_layers(decisions, level):
    assert RULES["04-layers-probes"].few_layers(7) == 2
    assert RULES["04-layers-probes"].few_layers(13) == 4
    assert RULES["04-layers-probes"].judge(_layers(decisions)).level == level


def _ranking(decisions, shares=(0.01, 0.02, 0.05, 0.08, 0.2, 0.5)):
    return pd.DataFrame(
        [
            {
                "model": "m",
                "task": "tok",
                "kind": "token",
                "fraction": f,
                "ratio": 0.99,
                "low": 0.98,
                "high": 1.0,
                "decision": d,
            }
            for f, d in zip(shares, decisions)
        ]
    )


@pytest.mark.parametrize(
    ("decisions", "level", "removable"),
    [
        ([OUTSIDE, OUTSIDE, WITHIN, WITHIN, WITHIN, WITHIN], R, 0.95),
        ([OUTSIDE, OUTSIDE, OUTSIDE, OUTSIDE, WITHIN, WITHIN], P, 0.80),
        ([OUTSIDE, OUTSIDE, OUTSIDE, OUTSIDE, OUTSIDE, WITHIN], N, 0.50),
        (
            [OUTSIDE, OUTSIDE, OUTSIDE, UNSURE, WITHIN, WITHIN],
            UNDECIDED,
            0.80,
        ),  # the 8% set's interval straddles the line
    ],
)
def test_ranking_rule_tests_the_claims_size(decisions, level, removable):
    v = RULES["05-neurons-ranking"].judge(_ranking(decisions))
    assert v.level == level
    task = [r for r in v.rows if not r["headline"]][0]
    assert task["low"] == pytest.approx(removable)
    # the headline says what is sure and what noise leaves possible, not one average
    (head,) = [r for r in v.rows if r["headline"]]
    if task["high"] > task["low"]:
        assert f"{100 * removable:.1f}% surely removable on average" in head["text"]
        assert f"to {100 * task['high']:.1f}% possibly (where noise decides)" in head["text"]
    else:
        assert head["text"] == f"1 task: {100 * removable:.1f}% removable"


def _transfer(runs):
    rows = []
    for i, (decision, kept_min, kept_max) in enumerate(runs):
        for branch in ("LS+CC+FS", "LS+FS"):
            rows.append(
                {
                    "model": "m",
                    "task": "t",
                    "kind": "token",
                    "branch": branch,
                    "delta_ls": float(i),
                    "delta_fs": 1.0,
                    "ratio": 0.98,
                    "low": 0.96,
                    "high": 1.0,
                    # the LS+FS branch fails everywhere: it must not count
                    "decision": decision if branch == "LS+CC+FS" else OUTSIDE,
                    "fraction_kept": (kept_min + kept_max) / 2,
                    "fraction_kept_min": kept_min,
                    "fraction_kept_max": kept_max,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("runs", "level"),
    [
        ([(WITHIN, 0.02, 0.05), (WITHIN, 0.03, 0.04)], R),
        ([(WITHIN, 0.02, 0.05), (OUTSIDE, 0.03, 0.04)], P),
        ([(OUTSIDE, 0.02, 0.05), (WITHIN, 0.2, 0.3)], N),  # the second keeps too many neurons
        ([(UNSURE, 0.02, 0.05), (OUTSIDE, 0.03, 0.04)], UNDECIDED),
        ([(WITHIN, 0.08, 0.12), (OUTSIDE, 0.03, 0.04)], UNDECIDED),  # seeds straddle 10%
    ],
)
def test_transfer_rule(runs, level):
    assert RULES["06-transfer"].judge(_transfer(runs)).level == level


def _forward(low, high, layer=2, last=6):
    return pd.DataFrame(
        [
            {
                "model": "m",
                "task": "t",
                "layer": layer,
                "last_layer": last,
                "speedup": (low + high) / 2,
                "speedup_low": low,
                "speedup_high": high,
            }
        ]
    )


def _probe(low, high, n_max=1000):
    return pd.DataFrame(
        [
            {"n_features": 10, "vs_smallest": 1.0, "vs_smallest_low": 1.0, "vs_smallest_high": 1.0},
            {
                "n_features": n_max,
                "vs_smallest": (low + high) / 2,
                "vs_smallest_low": low,
                "vs_smallest_high": high,
            },
        ]
    )


@pytest.mark.parametrize(
    ("forward", "probe", "level"),
    [
        # block 2 of 6: 3x by block count; 1000 vs 10 features: 100x
        ((2.8, 3.1), (60.0, 70.0), R),
        ((2.8, 3.1), (3.0, 4.0), P),  # faster, but far less than the features predict
        ((1.1, 1.2), (3.0, 4.0), N),  # faster than 1, still not what the ratio implies
        ((1.2, 2.0), (60.0, 70.0), UNDECIDED),  # 1.5x (half of 3x) inside the rounds' range
    ],
)
def test_timing_rule_compares_ratios_with_the_arithmetic_reference(forward, probe, level):
    v = RULES["07-timing"].judge(_forward(*forward), _probe(*probe))
    assert v.level == level
    # always-faster is not enough: a 1.15x speed-up where 3x is expected misses
    assert RULES["07-timing"].judge(_forward(1.1, 1.2), _probe(60, 70)).level == P


def test_no_verdict_reads_reproduced_but_not_settled():
    assert "settled" not in verdicts.Verdict.__dataclass_fields__
    for rule in RULES.values():
        assert "not settled" not in rule.describe()


def test_record_and_load(tmp_path):
    cfg = Config(results_dir=str(tmp_path))
    rule = RULES["05-neurons-ranking"]
    v = rule.judge(_ranking([OUTSIDE, OUTSIDE, WITHIN, WITHIN, WITHIN, WITHIN]))
    record = verdicts.record(cfg, v)
    assert record["rule"] == rule.describe() and record["level"] == R
    loaded = verdicts.load(cfg)
    assert list(loaded["chapter"]) == ["05-neurons-ranking"]
    assert loaded.iloc[0]["value"] == pytest.approx(0.95)
    saved = json.loads((tmp_path / "05-neurons-ranking.json").read_text())
    assert [r["scope"] for r in saved["rows"]] == ["token tasks", "m / tok"]
    other = Config(results_dir=str(tmp_path), probe_epochs=1)
    assert verdicts.load(other).empty  # verdicts of other parameters are not mixed in
    bad = verdicts.Verdict("05-x", "c", "yes", "m", "r")
    with pytest.raises(ValueError, match="'level' of a Verdict"):
        verdicts.record(cfg, bad)
    setup = verdicts.Verdict("01-setup", "c", "comparable setup", "m", "r")
    verdicts.record(cfg, setup)
    counts = verdicts.summary_counts(verdicts.load(cfg))
    assert sum(counts.values()) == 1  # the setup chapter is not a result


def test_deviations_name_model_sizes_and_changed_hyper_parameters():
    cfg = Config(
        models=["minilm"],
        token_tasks=["brown-pos"],
        sentence_tasks=[],
        task_options={"brown-pos": {"train_tokens": 20000, "dev_tokens": 5000}},
    )
    text = verdicts.deviations(cfg)
    assert "2,688 features" in text and "sentence-embedding fine-tune" in text
    assert "first 20,000 training tokens instead of 150,000" in text
    assert "dev capped at 5,000 tokens" in text
    assert "probe_epochs" not in text  # the paper's value
    tiny = Config(
        probe_epochs=1,
        models=["bert-base-cased"],
        token_tasks=["pos"],
        sentence_tasks=[],
        n_seeds=1,
        control_tasks=False,
        n_bootstrap=0,
    )
    assert "- Probe epochs: 1 (paper: 10)." in verdicts.deviations(tiny)
    assert "Probe epochs" not in verdicts.deviations(tiny, "02")  # not a CKA matter
    assert "Probe timing" not in verdicts.deviations(cfg, "03")
