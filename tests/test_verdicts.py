"""Every chapter's rule on planted tables, one per verdict level; the rule text comes from the
same object; verdicts are recorded and read back."""

from __future__ import annotations

import json

import numpy as np
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


def test_setup_rule():
    rule = RULES["01-setup"]
    full = rule.judge(pd.Series({"mpnet": 9984}), pd.Series({"pos": 150_001}))
    assert full.level == R
    small = rule.judge(pd.Series({"minilm": 2688}), pd.Series({"pos": 150_001}))
    assert small.level == P and "minilm 2,688" in small.measured
    assert rule.judge(pd.Series({"mpnet": 9984}), pd.Series({"pos": 20_000})).level == P


def _cka(adjacent, far, samples=("train", "test")):
    rows = [
        {"model": "m", "sample": s, "adjacent": a, "far": f}
        for s, a, f in zip(samples, adjacent, far)
    ]
    return pd.DataFrame(rows).set_index(["model", "sample"])


@pytest.mark.parametrize(
    ("adjacent", "far", "level", "settled"),
    [
        ((0.9, 0.85), (0.5, 0.6), R, True),
        ((0.7, 0.75), (0.5, 0.6), P, True),  # not high, but falls off
        ((0.9, 0.85), (0.95, 0.9), P, True),  # high, but does not fall off
        ((0.5, 0.5), (0.6, 0.6), N, True),
        ((0.9, 0.75), (0.5, 0.6), P, False),  # the samples disagree on (a)
    ],
)
def test_cka_rule(adjacent, far, level, settled):
    v = RULES["02-layers-cka"].judge(_cka(adjacent, far))
    assert (v.level, v.settled) == (level, settled)


def _sweeps(fractions_by_seed, dev_vs_oracle):
    rows = []
    for seed, fractions in fractions_by_seed.items():
        for t, (f, d) in enumerate(zip(fractions, dev_vs_oracle[seed])):
            rows.append(
                {
                    "model": "m",
                    "task": "t",
                    "seed": seed,
                    "threshold": 0.1 * (t + 1),
                    "fraction_redundant": f,
                    "dev_vs_oracle": d,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("best", "level", "settled"),
    [
        ({0: 0.9, 1: 0.88}, R, True),
        ({0: 0.6, 1: 0.7}, P, True),
        ({0: 0.2, 1: 0.3}, N, True),
        ({0: 0.8, 1: 0.9}, R, False),  # mean 85%, but a seed lies below it
    ],
)
def test_clustering_rule_measures_the_largest_share_within_delta(best, level, settled):
    # thresholds: the first keeps the oracle (share `best`), the second loses 5% (share 0.99)
    sweeps = _sweeps({s: [b, 0.99] for s, b in best.items()}, {s: [1.0, 0.95] for s in best})
    measured = RULES["03-neurons-clustering"].measure(sweeps, delta=1.0)
    assert measured["fraction"].tolist() == list(best.values())
    v = RULES["03-neurons-clustering"].judge(measured)
    assert (v.level, v.settled) == (level, settled)
    assert v.value == pytest.approx(np.mean(list(best.values())))


def test_clustering_rule_counts_zero_when_nothing_keeps_the_score():
    sweeps = _sweeps({0: [0.5, 0.9]}, {0: [0.9, 0.8]})
    assert RULES["03-neurons-clustering"].measure(sweeps, 1.0)["fraction"].tolist() == [0.0]


def _selected(layers_by_task, last=6):
    return pd.DataFrame(
        [
            {"model": "m", "task": t, "seed": s, "layer": layer, "last_layer": last}
            for t, ls in layers_by_task.items()
            for s, layer in enumerate(ls)
        ]
    )


@pytest.mark.parametrize(
    ("layers", "level", "settled"),
    [
        ({"a": [2, 3], "b": [4, 4]}, R, True),
        ({"a": [2, 3], "b": [6, 6]}, P, True),
        ({"a": [6, 6], "b": [6, 6]}, N, True),
        ({"a": [2, 6], "b": [6, 6]}, N, False),  # the seeds of "a" disagree
    ],
)
def test_layer_rule(layers, level, settled):
    v = RULES["04-layers-probes"].judge(_selected(layers))
    assert (v.level, v.settled) == (level, settled)


def _minimal(fractions_by_task):
    return pd.DataFrame(
        [
            {"model": "m", "task": t, "seed": s, "fraction": f}
            for t, fs in fractions_by_task.items()
            for s, f in enumerate(fs)
        ]
    )


@pytest.mark.parametrize(
    ("fractions", "level", "settled"),
    [
        ({"a": [0.05, 0.06], "b": [0.01, 0.02]}, R, True),
        ({"a": [0.05, 0.06], "b": [0.2, 0.25]}, P, True),
        ({"a": [0.3, 0.2], "b": [0.2, 0.25]}, N, True),
        ({"a": [0.05, 0.10], "b": [0.01, 0.02]}, R, False),  # a seed of "a" keeps 10% > 8%
    ],
)
def test_ranking_rule(fractions, level, settled):
    v = RULES["05-neurons-ranking"].judge(_minimal(fractions))
    assert (v.level, v.settled) == (level, settled)


def _runs(values, branch="LS+CC+FS"):
    rows = []
    for i, pairs in enumerate(values):
        for seed, (score, kept) in enumerate(pairs):
            rows.append(
                {
                    "model": "m",
                    "task": "t",
                    "branch": branch,
                    "delta_ls": float(i),
                    "delta_fs": 1.0,
                    "seed": seed,
                    "score_kept": score,
                    "fraction_kept": kept,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("values", "level", "settled"),
    [
        ([[(0.99, 0.05), (0.98, 0.06)], [(0.975, 0.02), (0.98, 0.03)]], R, True),
        ([[(0.99, 0.05), (0.98, 0.06)], [(0.9, 0.02), (0.91, 0.03)]], P, True),
        ([[(0.99, 0.2), (0.98, 0.3)], [(0.9, 0.02), (0.91, 0.03)]], N, True),
        ([[(0.99, 0.05), (0.96, 0.06)]], R, False),  # mean 97.5%, one seed below 97%
    ],
)
def test_transfer_rule(values, level, settled):
    runs = pd.concat([_runs(values), _runs([[(0.1, 0.9)]], branch="LS+FS")])
    v = RULES["06-transfer"].judge(runs)  # the LS+FS branch does not count
    assert (v.level, v.settled) == (level, settled)


def _forward(low, high):
    return pd.DataFrame(
        [
            {
                "model": "m",
                "task": "t",
                "layer": 2,
                "last_layer": 6,
                "speedup": (low + high) / 2,
                "speedup_low": low,
                "speedup_high": high,
            }
        ]
    )


def _probe(low, high):
    return pd.DataFrame(
        [
            {"n_features": 10, "vs_smallest": 1.0, "vs_smallest_low": 1.0, "vs_smallest_high": 1.0},
            {
                "n_features": 1000,
                "vs_smallest": (low + high) / 2,
                "vs_smallest_low": low,
                "vs_smallest_high": high,
            },
        ]
    )


@pytest.mark.parametrize(
    ("forward", "probe", "level"),
    [
        ((1.5, 2.0), (3.0, 4.0), R),
        ((1.5, 2.0), (0.5, 0.8), P),
        ((0.5, 0.8), (0.5, 0.8), N),
        ((0.9, 2.0), (3.0, 4.0), UNDECIDED),  # the forward ratios straddle 1: noise, no verdict
    ],
)
def test_timing_rule_decides_only_outside_the_spread(forward, probe, level):
    v = RULES["07-timing"].judge(_forward(*forward), _probe(*probe))
    assert v.level == level
    assert v.settled == (level != UNDECIDED)


def test_record_and_load(tmp_path):
    cfg = Config(results_dir=str(tmp_path))
    rule = RULES["05-neurons-ranking"]
    v = rule.judge(_minimal({"a": [0.05, np.float64(0.06)]}))
    record = verdicts.record(cfg, v)
    assert record["rule"] == rule.describe() and record["level"] == R
    loaded = verdicts.load(cfg)
    assert list(loaded["chapter"]) == ["05-neurons-ranking"]
    assert loaded.iloc[0]["value"] == pytest.approx(0.945)
    assert json.loads((tmp_path / "05-neurons-ranking.json").read_text())["settled"] is True
    other = Config(results_dir=str(tmp_path), probe_epochs=1)
    assert verdicts.load(other).empty  # verdicts of other parameters are not mixed in
    bad = verdicts.Verdict("x", "c", "yes", "m", "r")
    with pytest.raises(ValueError, match="'level' of a Verdict"):
        verdicts.record(cfg, bad)


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
    assert "- `probe_epochs` = 1 (paper: 10)." in verdicts.deviations(tiny)
