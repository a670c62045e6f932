"""The removal steps on a tiny random Llama and planted text: tables, cache, orderings."""

from __future__ import annotations

import numpy as np
import pytest
from decoder_fixtures import CORPUS, save_tiny_llama

from redundancy.report.config import Config
from redundancy.report.steps import removal as steps


@pytest.fixture
def tiny_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(steps, "_eval_texts", lambda: [" ".join(CORPUS)] * 3)
    monkeypatch.setattr(steps, "_calibration_texts", lambda: [" ".join(reversed(CORPUS))] * 3)
    monkeypatch.setattr(steps, "_MODELS", {})
    folder = save_tiny_llama(tmp_path / "llama", n_layers=5)
    cfg = Config(models=(folder,), token_tasks=("brown-upos",), sentence_tasks=(), n_bootstrap=50)
    return folder, cfg


def test_removal_sweep_table(tiny_setup):
    folder, cfg = tiny_setup
    opts = dict(ks=(1, 2), n_random=3, window=8, n_eval=4, n_calibration=3, n_greedy=2)
    table = steps.removal_sweep(folder, cfg, **opts)
    assert set(table["ordering"]) == {
        "none", "block_influence", "cka_in_out", "adjacent_cka", "angular_span",
        "greedy_loss", "last_first", "random", "cka_recomputed",
    }  # fmt: skip
    assert len(table) == 1 + 2 * (7 + 3)
    assert (table["low"] <= table["perplexity"]).all() and (
        table["perplexity"] <= table["high"]
    ).all()
    assert table.attrs["n_blocks"] == 5 and table.attrs["eval_tokens"] == 32
    last = table[table["ordering"] == "last_first"].set_index("k")["blocks"]
    assert last[1] == "4" and last[2] == "3,4"
    span = table[(table["ordering"] == "angular_span") & (table["k"] == 2)]["blocks"].item()
    a, b = map(int, span.split(","))
    assert b == a + 1
    for k, n in table[table["k"] > 0].groupby("k")["blocks"]:
        assert all(len(x.split(",")) == k for x in n)
    # random seeds differ from each other, and the cache serves the same table
    assert table[(table["ordering"] == "random") & (table["k"] == 2)]["blocks"].nunique() > 1
    again = steps.removal_sweep(folder, cfg, **opts)
    np.testing.assert_allclose(again["perplexity"], table["perplexity"])


def test_block_scores_and_neuron_replacement(tiny_setup):
    folder, cfg = tiny_setup
    scores = steps.block_scores(folder, cfg, window=8, n_eval=4, n_calibration=3)
    assert len(scores) == 5
    assert ((scores["cka_in_out"] > 0) & (scores["cka_in_out"] <= 1 + 1e-9)).all()
    # the book's adjacent CKA differs from CKA(in, out) only at the last block (final norm)
    np.testing.assert_allclose(scores["adjacent_cka"][:4], scores["cka_in_out"][:4])
    table = steps.neuron_replacement(
        folder, cfg, block=2, site="mlp", n_neurons=8, window=8, n_eval=4, n_calibration=3
    )
    assert list(table["method"]) == ["none", "mean", "representative"]
    assert table["perplexity"].nunique() == 3


def test_cluster_replacement_replaces_non_representatives(tiny_setup):
    from redundancy.report.steps.removal_neurons import cluster_replacement

    folder, cfg = tiny_setup
    opts = dict(block=1, site="mlp", window=8, n_eval=4, n_calibration=3)
    table = cluster_replacement(folder, cfg, threshold=0.8, **opts)
    n, k = table.attrs["n_neurons"], table.attrs["n_clusters"]
    assert n == 64 and 1 < k < n
    assert list(table["method"][:3]) == ["none", "cluster", "cluster-mean"]
    assert (table["n_replaced"][1:] == n - k).all()
    assert list(table.loc[table["method"] == "random-mean", "seed"]) == list(cfg.seeds)
    # a threshold of 0 groups nothing: only the unchanged model is measured
    alone = cluster_replacement(folder, cfg, threshold=0.0, **opts)
    assert list(alone["method"]) == ["none"] and alone.attrs["n_multi"] == 0
