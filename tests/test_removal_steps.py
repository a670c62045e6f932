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


def _silence(folder, block, d):
    """Rewrite the saved model so that ``block`` writes nothing to residual dimension ``d``."""
    import torch
    from transformers import LlamaForCausalLM

    net = LlamaForCausalLM.from_pretrained(folder)
    layer = net.model.layers[block]
    with torch.no_grad():
        layer.self_attn.o_proj.weight[d] = 0
        layer.mlp.down_proj.weight[d] = 0
    net.save_pretrained(folder)


def test_cluster_replacement_within_layer_and_residual_carry(tiny_setup):
    import dataclasses
    import math

    from redundancy.report.steps.removal_neurons import cluster_replacement

    folder, cfg = tiny_setup
    _silence(folder, 2, 5)  # dimension 5 is carried through block 2 unchanged (rho = 1)
    cfg = dataclasses.replace(cfg, thresholds=(0.001, 0.5, 0.95))
    table = cluster_replacement(folder, cfg, window=8, n_eval=4, n_calibration=3)
    a = table.attrs
    assert a["block"] == 2 and a["thresholds"] == [0.001, 0.5, 0.95]
    none = table.iloc[0]
    assert (none["kind"], none["method"], none["n_replaced"]) == ("none", "none", 0)
    assert math.isnan(none["threshold"]) and (table["kind"] == "none").sum() == 1
    base = none["perplexity"]
    within = table[table["kind"] == "within-layer"]
    carry = table[table["kind"] == "residual-carry"]
    # within the layer: the non-representatives of multi-member clusters, more as t grows
    w = a["within_layer"]
    assert w["n_neurons"] == 64
    assert w["n_replaced"] == [64 - c for c in w["n_clusters"]]
    assert w["n_replaced"] == sorted(w["n_replaced"]) and w["n_replaced"][-1] > 0
    for t, n in zip(a["thresholds"], w["n_replaced"], strict=True):
        rows = within[within["threshold"] == t]
        if n == 0:  # nothing to replace: one row, the unreplaced model, no forward pass
            assert list(rows["method"]) == ["cluster"] and rows["perplexity"].item() == base
        else:
            assert list(rows["method"]) == ["cluster", "cluster-mean", "random-mean"]
            assert (rows["n_replaced"] == n).all() and rows["perplexity"].nunique() == 3
    assert list(within.loc[within["method"] == "random-mean", "seed"].unique()) == [cfg.seeds[0]]
    # residual carry: at 0.001 only the planted dimension, whose fit is the identity
    c = a["residual_carry"]
    assert c["layers"] == [2, 3] and c["n_dims"] == 32 and c["n_carried"][0] == 1
    assert c["n_carried"] == sorted(c["n_carried"])
    first = carry[carry["threshold"] == 0.001].set_index("method")
    assert first.loc["cluster", "perplexity"] == pytest.approx(base, rel=1e-5)
    assert first.loc["cluster-mean", "perplexity"] != pytest.approx(base, rel=1e-3)
    assert (carry["n_replaced"] == np.repeat(c["n_carried"], 3)).all()
    assert a["n_evaluated"] <= len(table) and set(a["seconds_parts"]) == {
        "calibration", "within-layer", "residual-carry",
    }  # fmt: skip
