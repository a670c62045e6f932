"""Chapter declarations: the rule text comes from the declaration, the pipeline plans
exactly the calls the chapters declare, and the paired-bootstrap decision cannot be made by
noise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from redundancy.report import chapters, pipeline, verdicts
from redundancy.report.config import Config


def test_rule_text_is_generated_from_the_declaration():
    ch = chapters.chapter("03")
    assert ch is chapters.CHAPTERS["03-neurons-clustering"]
    text = ch.rule_text(Config())
    assert "85%" in text and "δ = 1% of the oracle" in text and "1,000 resamples" in text
    # changing the declaration changes the text
    stricter = dataclasses.replace(ch, rule=verdicts.ClusteringRule(ch.name, reproduced_at=0.9))
    assert "90%" in stricter.rule_text() and "85%" not in stricter.rule_text()
    assert "δ = 2% of the oracle" in ch.rule_text(Config(delta=2.0))
    assert "500 resamples" in ch.rule_text(Config(n_bootstrap=500))
    other = dataclasses.replace(ch, decides="Decided by {confidence} intervals.")
    assert other.rule_text(Config(confidence=0.9)).endswith("Decided by 90% intervals.")
    with pytest.raises(ValueError, match="No chapter"):
        chapters.chapter("99")


def test_the_cka_null_of_deep_models_costs_what_13_layers_cost():
    # up to 13 layers every model gets the full count; deeper ones (13 / L)^2 of it
    assert [chapters.cka_permutations(n) for n in (2, 7, 13)] == [200, 200, 200]
    assert chapters.cka_permutations(20) == 84  # 200 * 169 / 400 = 84.5, rounded down
    assert chapters.cka_permutations(31) == 50  # 35 by the formula, raised to the floor
    assert chapters.cka_permutations(25) == 54
    # the cost (permutations x pairs) never exceeds the 13-layer cost by more than the floor
    for n in range(14, 60):
        k = chapters.cka_permutations(n)
        assert k * n**2 <= 200 * 13**2 or k == chapters.CKA_MIN_PERMUTATIONS
    text = chapters.chapter("02").rule_text(Config())
    assert "200 permutations" in text and "deeper than 13 layers, at least 50" in text


def test_the_pipeline_plans_exactly_what_the_chapters_declare():
    cfg = Config.from_yaml("params/tiny.yaml")
    jobs = pipeline.plan(cfg)
    declared = {
        (c.step, c.args, c.kwargs)
        for ch in chapters.CHAPTERS.values()
        for c in ch.calls(cfg)
        if c.step != "extract"
    }
    planned = {(j.step, j.args, j.kwargs) for j in jobs if j.step not in ("extract", "finetune")}
    assert declared == planned
    names = [j.name for j in jobs]
    for j in jobs:  # dependencies come first
        assert all(names.index(d) < names.index(j.name) for d in j.deps)
    assert [j.step for j in jobs][-len(cfg.models) - 1 :] == ["forward_timing"] * len(
        cfg.models
    ) + ["probe_timing"]


def _planted(n_sentences, accuracy, rng, n=3):
    y = rng.integers(0, 2, size=n_sentences)
    oracle = np.where(rng.random((n, n_sentences)) < accuracy, y, 1 - y)
    return y, oracle


def test_paired_decisions_on_planted_predictions():
    rng = np.random.default_rng(0)
    cfg = Config(n_bootstrap=500, n_seeds=3)
    y, oracle = _planted(2000, 0.9, rng)
    groups = np.arange(y.size)
    # the same predictions: exactly the oracle
    same = chapters.decide(y, oracle, oracle, groups, "accuracy", cfg, 0.01)
    assert same["decision"] == "within" and same["low"] == same["high"] == 1.0
    # a subset that loses a tenth of the oracle's correct answers: clearly outside 1%
    worse = oracle.copy()
    hit = (worse == y) & (rng.random(worse.shape) < 0.1)
    worse[hit] = 1 - worse[hit]
    d = chapters.decide(y, worse, oracle, groups, "accuracy", cfg, 0.01)
    assert d["decision"] == "outside" and d["high"] < 0.99


def test_noise_that_would_cross_delta_makes_the_verdict_inconclusive():
    """A subset whose point estimate lands just under the line because of which 300 dev
    sentences were drawn: a point-estimate rule would call it outside (or within, on
    another draw); the paired interval contains the line, and the rule says inconclusive."""
    rng = np.random.default_rng(3)
    cfg = Config(n_bootstrap=1000, n_seeds=3)
    y, oracle = _planted(300, 0.85, rng)
    sub = oracle.copy()
    # flip about 1% of the answers each way: no systematic loss, only noise
    flip = rng.random(sub.shape) < 0.01
    sub[flip] = 1 - sub[flip]
    d = chapters.decide(y, sub, oracle, np.arange(y.size), "accuracy", cfg, 0.01)
    assert d["low"] < 0.99 <= d["high"]
    assert d["decision"] == "inconclusive"
    table = _sweep_table([("within", 0.7), (d["decision"], 0.86), ("outside", 0.95)])
    assert verdicts.RULES["03-neurons-clustering"].judge(table).level == "inconclusive"


def _sweep_table(rows):
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "model": "m",
                "task": "t",
                "kind": "token",
                "threshold": share,
                "fraction_redundant": share,
                "decision": d,
            }
            for d, share in rows
        ]
    )
