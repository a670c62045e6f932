"""Block removal in encoders: restarting from recorded block inputs equals running the
pruned model, the orderings' sets, and the step's table on a tiny random BERT."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from redundancy.analysis import encoder_removal as er


def _tiny(n_layers=4, classifier=False):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    config = BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=n_layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = (BertForSequenceClassification if classifier else BertModel)(config)
    return net.eval()


def _batches():
    import torch

    g = torch.Generator().manual_seed(1)
    out = []
    for lengths in ([7, 4, 9], [5, 5]):
        n, T = len(lengths), max(lengths)
        ids = torch.randint(5, 120, (n, T), generator=g)
        mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
        out.append({"input_ids": ids * mask, "attention_mask": mask})
    return out


def _pruned_output(net, removed, batch, attr):
    """The model with ``removed`` blocks physically taken out, run from its embeddings."""
    import copy

    import torch

    pruned = copy.deepcopy(net)
    owner, name = er.encoder_blocks(pruned)
    blocks = getattr(owner, name)
    keep = [b for i, b in enumerate(blocks) if i not in set(removed)]
    setattr(owner, name, torch.nn.ModuleList(keep))
    with torch.inference_mode():
        return getattr(pruned(**batch), attr)


@pytest.mark.parametrize("classifier", [False, True])
@pytest.mark.parametrize("removed", [[], [0], [1], [2], [3], [1, 2], [0, 3], [2, 3], [1, 2, 3]])
def test_restarting_from_recorded_inputs_equals_the_pruned_model(removed, classifier):
    net = _tiny(classifier=classifier)
    attr = "logits" if classifier else "last_hidden_state"
    batches = _batches()
    runs = er.EncoderRuns(net, batches, lambda out, i: getattr(out, attr).clone())
    got = runs.run(removed)
    for batch, value in zip(batches, got):
        want = _pruned_output(net, removed, batch, attr)
        mask = batch["attention_mask"].bool()
        if not classifier:  # padding positions carry no meaning
            value, want = value[mask], want[mask]
        np.testing.assert_allclose(value.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    # the model is left whole
    assert len(getattr(*er.encoder_blocks(net))) == 4


def test_settings_in_any_order_equal_the_pruned_models():
    """Each run restarts from the previous setting's stream where the removed sets agree
    (or from the whole model's when that stream cannot serve); every order of settings
    gives the pruned models' outputs, and :func:`run_order` runs fewer blocks."""
    import itertools

    net = _tiny()
    batches = _batches()
    settings = [list(c) for k in (1, 2, 3) for c in itertools.combinations(range(4), k)]
    want = {
        tuple(r): [_pruned_output(net, r, b, "last_hidden_state") for b in batches]
        for r in settings
    }
    counts = {}
    for name, order in (
        ("sorted", er.run_order(settings, 4)),
        ("shuffled", [settings[i] for i in np.random.default_rng(0).permutation(len(settings))]),
        ("reversed", sorted(settings)[::-1]),
    ):
        runs = er.EncoderRuns(net, batches, lambda out, i: out.last_hidden_state.clone())
        for removed in order:
            for batch, got, ref in zip(batches, runs.run(removed), want[tuple(removed)]):
                mask = batch["attention_mask"].bool()
                np.testing.assert_allclose(got[mask].numpy(), ref[mask].numpy(), atol=1e-5)
        counts[name] = runs.blocks_run
    # restarting at each set's first removed block alone: sum over sets of its run length
    alone = sum(len(er.restart_plan(r, 4)[1]) for r in settings) * len(batches)
    assert counts["sorted"] == 18 * len(batches) and alone == 20 * len(batches)
    assert max(counts.values()) <= alone


def test_run_order_reads_sets_as_binary_numbers_from_block_0():
    sets = [[2, 0], [1], [0, 1], [3], [0], [1], []]
    assert er.run_order(sets, 4) == [[3], [1], [0], [0, 2], [0, 1]]


def test_restart_plan():
    assert er.restart_plan([], 4) == (0, [0, 1, 2, 3])
    assert er.restart_plan([2], 4) == (2, [3])
    assert er.restart_plan([1, 3], 4) == (1, [2])
    # every block after the first removed one is gone: restart from the last kept block
    assert er.restart_plan([2, 3], 4) == (1, [1])
    assert er.restart_plan([3], 4) == (2, [2])
    with pytest.raises(ValueError, match="at least one block"):
        er.restart_plan([0, 1, 2, 3], 4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        er.restart_plan([4], 4)


def test_removal_sets_are_exhaustive_when_few_and_seeded_otherwise():
    sets, how = er.removal_sets(6, 3)
    assert how == "exhaustive" and len(sets) == math.comb(6, 3) == 20
    assert len({tuple(s) for s in sets}) == 20
    draws, how = er.removal_sets(12, 3, n_random=10, random_state=5)
    assert how == "seeds" and len(draws) == 10 and len({tuple(s) for s in draws}) == 10
    assert all(len(s) == 3 and s == sorted(s) for s in draws)
    assert draws == er.removal_sets(12, 3, n_random=10, random_state=5)[0]
    assert draws != er.removal_sets(12, 3, n_random=10, random_state=6)[0]
    with pytest.raises(ValueError, match="k must be"):
        er.removal_sets(6, 6)


def test_output_change():
    a = np.random.default_rng(0).normal(size=(50, 8))
    assert er.output_change(a, a) == pytest.approx(0, abs=1e-12)
    assert er.output_change(a, -a) == pytest.approx(2)
    assert er.output_change(a, 3 * a) == pytest.approx(0, abs=1e-12)  # direction only


def test_encoder_blocks_refuses_a_model_without_blocks():
    import torch

    with pytest.raises(ValueError, match="Cannot find the blocks"):
        er.encoder_blocks(torch.nn.Linear(2, 2))


def test_encoder_removal_step_on_a_tiny_bert(tiny_bert, tmp_path, monkeypatch):
    from conftest import make_token_task

    from redundancy.report import features
    from redundancy.report.config import Config
    from redundancy.report.steps import removal_encoder as step

    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    task = make_token_task(40, name="brown-upos")
    monkeypatch.setattr(features, "get_task", lambda name, cfg: task)
    words = [list(s) for s in task.train.sentences]
    monkeypatch.setattr(step, "_calibration", lambda n: words[:n])
    cfg = Config(
        models=(tiny_bert,), token_tasks=("brown-upos",), sentence_tasks=(), n_bootstrap=50,
        probe_epochs=2,
    )  # fmt: skip
    opts = dict(n_test=20, n_token_sentences=25, n_calibration=12)
    table = step.encoder_removal(tiny_bert, "brown-upos", cfg, **opts)
    assert table.attrs["n_blocks"] == 2 and table.attrs["random"] == "exhaustive"
    assert table.attrs["readout"] == "probe"
    # removing block 1 reruns block 0 alone, removing block 0 runs block 1 alone: half of
    # the two whole passes
    assert table.attrs["blocks_run_share"] == 0.5
    # the reference a flat line is read against: the test subset's most frequent label
    _, y, _ = step._instances(task, "test", opts["n_token_sentences"], cfg.random_state)
    assert table.attrs["majority"] == pytest.approx(np.bincount(y).max() / len(y))
    assert 0 < table.attrs["majority"] <= 1
    assert set(table["ordering"]) == {
        "none", "block_influence", "adjacent_cka", "last_first", "greedy_output",
        "angular_span", "random",
    }  # fmt: skip
    # 2 blocks: k = 1 only, and the random sets are both blocks
    assert set(table["k"]) == {0, 1}
    assert sorted(table.loc[table["ordering"] == "random", "blocks"]) == ["0", "1"]
    assert table.loc[table["ordering"] == "last_first", "blocks"].item() == "1"
    assert ((table["low"] <= table["score"]) & (table["score"] <= table["high"])).all()
    assert table.loc[table["ordering"] == "none", "ratio"].item() == 1.0
    # equal sets give equal scores (each set is evaluated once)
    by_set = table[table["k"] == 1].groupby("blocks")["score"].nunique()
    assert (by_set == 1).all()
    again = step.encoder_removal(tiny_bert, "brown-upos", cfg, **opts)
    pd.testing.assert_frame_equal(again, table)


def test_removal_ks():
    from redundancy.report.steps.removal_encoder import removal_ks

    assert removal_ks(6) == [1, 2, 3]
    assert removal_ks(12) == [1, 2, 3, 6]
    assert removal_ks(2) == [1]
