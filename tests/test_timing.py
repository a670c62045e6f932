"""Tests of redundancy.analysis.timing: truncated models compute the right thing; tables are well formed.

No assertion is made on the measured times themselves (the machine is shared).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from redundancy.analysis.timing import (
    block_list,
    clear_difference,
    round_robin,
    stopping_points,
    summarize_forward,
    summarize_probe,
    time_forward,
    time_probe,
    truncated,
)


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_xlnet"])
def test_truncated_model_equals_hidden_state_of_full_model(fixture, request):
    folder = request.getfixturevalue(fixture)
    model = AutoModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(["the cat sat on the mat"], return_tensors="pt")
    owner, attr = block_list(model)
    blocks = getattr(owner, attr)
    with torch.inference_mode():
        full = model(**enc, output_hidden_states=True).hidden_states
        for n in range(len(blocks) + 1):
            with truncated(model, n) as short:
                assert len(getattr(owner, attr)) == n
                out = short(**enc).last_hidden_state
            np.testing.assert_allclose(out, full[n], atol=1e-5)
    assert getattr(owner, attr) is blocks  # restored
    if hasattr(model, "pooler"):
        assert model.pooler is not None


def test_round_robin_interleaves_and_rotates():
    order = round_robin([0, 1, 2], 3)
    assert order == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (1, 0), (2, 2), (2, 0), (2, 1)]


def test_time_forward_is_round_robin_on_a_tiny_model(tiny_bert):
    """Every layer is timed once per round, rounds never overlap, and the summary's speed-ups
    are the paired within-round ratios."""
    sentences = ["the cat sat on the mat", "a quick brown fox", "dogs"] * 3
    raw = time_forward(tiny_bert, sentences, batch_size=4, repeats=3, progress=False)
    assert sorted(raw["layer"].unique()) == [0, 1, 2] and len(raw) == 9
    assert list(raw["order"]) == list(range(9))
    for r in range(3):  # round r holds all layers, between rounds r-1 and r+1
        part = raw[raw["repeat"] == r]
        assert sorted(part["layer"]) == [0, 1, 2]
        assert part["order"].min() == 3 * r and part["order"].max() == 3 * r + 2
    assert (raw["ms_per_instance"] > 0).all() and raw["n_instances"].eq(9).all()
    summary = summarize_forward(raw)
    wide = raw.pivot_table(index="repeat", columns="layer", values="ms_per_instance")
    np.testing.assert_allclose(summary["speedup"], [np.median(wide[2] / wide[k]) for k in range(3)])
    np.testing.assert_allclose(summary.loc[summary["layer"] == 2, "speedup"], 1.0)
    assert (summary["speedup_low"] <= summary["speedup"]).all()
    assert (summary["speedup"] <= summary["speedup_high"]).all()
    words = [("the", "cat"), ("a", "quick", "fox")]
    one = time_forward(tiny_bert, words, layers=[1], repeats=1, progress=False)
    assert sorted(one["layer"]) == [1, 2]  # the full model is always timed too
    with pytest.raises(ValueError, match="'layers' parameter of time_forward"):
        time_forward(tiny_bert, words, layers=[5], repeats=1, progress=False)


def test_stopping_points_of_deep_models_are_evenly_spaced_and_keep_the_picks():
    assert stopping_points(6, max_points=13) == list(range(7))  # shallow: every layer
    assert stopping_points(12, max_points=13) == list(range(13))
    # 30 blocks, 13 points: linspace(0, 30, 13) = 0, 2.5, 5, ... rounded to the nearest layer
    assert stopping_points(30, max_points=13) == [0, 2, 5, 8, 10, 12, 15, 18, 20, 22, 25, 28, 30]
    spaced_and_kept = [0, 2, 5, 7, 8, 10, 12, 15, 18, 20, 22, 25, 28, 30]
    assert stopping_points(30, keep=[7, 30], max_points=13) == spaced_and_kept
    assert stopping_points(4) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"must lie in \[0, 30\]"):
        stopping_points(30, keep=[31], max_points=13)
    with pytest.raises(ValueError, match="at least 2"):
        stopping_points(30, max_points=1)


def test_time_forward_stops_at_the_kept_and_spaced_layers(tiny_bert):
    words = [("the", "cat"), ("a", "quick", "fox")]
    # 2 blocks, 2 points: the ends, plus the kept layer 1
    raw = time_forward(tiny_bert, words, [1], max_points=2, repeats=1, progress=False)
    assert sorted(raw["layer"]) == [0, 1, 2]
    raw = time_forward(tiny_bert, words, max_points=2, repeats=1, progress=False)
    assert sorted(raw["layer"]) == [0, 2]


def test_time_probe_table():
    raw = time_probe([16, 4], n_instances=256, epochs=1, repeats=2, progress=False)
    assert list(raw["n_features"]) == [4, 16, 16, 4]
    assert (raw["seconds"] > 0).all() and raw["n_instances"].eq(256).all()
    summary = summarize_probe(raw)
    assert list(summary["n_features"]) == [4, 16]
    np.testing.assert_allclose(summary["vs_smallest"].iloc[0], 1.0)
    with pytest.raises(ValueError, match="n_features_list"):
        time_probe([], n_instances=10)


@pytest.mark.parametrize(
    ("low", "high", "expected"), [(1.1, 2.0, 1), (0.5, 0.9, -1), (0.9, 1.2, 0)]
)
def test_clear_difference_only_outside_the_spread(low, high, expected):
    assert clear_difference(low, high) == expected
