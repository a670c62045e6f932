"""The report steps on a tiny randomly initialised model: keys are free of side effects,
results are consistent across steps, a moved model folder hits every cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from redundancy.report import steps
from redundancy.report.config import Config
from redundancy.report.features import features_identity


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("REDUNDANCY_CACHE", str(root))
    monkeypatch.delenv("REDUNDANCY_RECOMPUTE_SINCE", raising=False)
    return root


def _config(model, **extra):
    params = dict(
        models=[str(model)],
        token_tasks=["brown-pos"],
        sentence_tasks=["brown-next"],
        task_options={
            "brown-pos": {"train_tokens": 400, "dev_tokens": 150, "test_tokens": 150},
            "brown-next": {"train_sentences": 40, "dev_sentences": 20, "test_sentences": 20},
        },
        finetune_max_train_sentences=16,
        finetune_epochs=1,
        probe_epochs=2,
        thresholds=[0.3, 0.7],
        delta_pairs=[[3.0, 1.0]],
        n_seeds=2,
        n_bootstrap=50,
    )
    params.update(extra)
    return Config(**params)


def test_computing_keys_never_trains_or_extracts(tiny_bert, cache):
    cfg = _config(tiny_bert)
    ids = {t: features_identity(tiny_bert, t, cfg) for t in cfg.tasks}
    assert "finetuned" in ids["brown-next"]["model"] and "pretrained" in ids["brown-pos"]["model"]
    made = _files(cache)
    assert not [f for f in made if f.startswith(("finetuned", "activations", "results"))], made
    # the same identity once the model is fine-tuned and the features extracted
    steps.extraction_table(cfg, progress=False)
    assert any(f.startswith("finetuned") for f in _files(cache))
    assert features_identity(tiny_bert, "brown-next", cfg) == ids["brown-next"]


def test_steps_agree_with_each_other_on_a_tiny_model(tiny_bert, cache):
    cfg = _config(tiny_bert)
    scores = steps.layer_probe_scores(tiny_bert, "brown-pos", cfg)
    L = 3  # embeddings + 2 blocks
    task = scores[scores["target"] == "task"]
    assert len(task) == 2 * L * 2 and set(task["seed"]) == set(cfg.seeds)
    assert len(scores[scores["target"] == "control"]) == 2 * L  # controls: first seed
    assert ((scores["dev"] >= 0) & (scores["dev"] <= 1)).all()
    lo, hi = scores.attrs["oracle_interval"]
    assert 0 <= lo <= hi <= 1
    # the stored oracle probes are the ones the table scored
    from redundancy.analysis.probes import evaluate
    from redundancy.report.features import get_activations

    test = get_activations(tiny_bert, "brown-pos", "test", cfg)
    oracles = steps.oracle_probes(tiny_bert, "brown-pos", cfg)
    table = steps.oracle_scores(scores).set_index("seed")["test"]
    for seed, probe in oracles.items():
        assert evaluate(probe, test.X, test.labels) == pytest.approx(table[seed])
    sweep = steps.cc_sweep(tiny_bert, "brown-pos", cfg)
    assert sorted(sweep["threshold"].unique()) == [0.3, 0.7]
    one = sweep[sweep["seed"] == cfg.seeds[0]].set_index("threshold")
    assert one.loc[0.7, "fraction_redundant"] >= one.loc[0.3, "fraction_redundant"]
    np.testing.assert_allclose(sweep["dev_vs_oracle"], sweep["dev"] / sweep["oracle_dev"])
    minimal = steps.minimal_sets(tiny_bert, "brown-pos", cfg)
    assert [r["seed"] for r in minimal["seeds"]] == list(cfg.seeds)
    for rec in minimal["seeds"]:
        assert rec["k"] == round(rec["fraction"] * rec["n_total"]) and rec["n_total"] == L * 32
    runs = steps.transfer_table(tiny_bert, "brown-pos", cfg)
    assert set(runs["branch"]) == {"LS+CC+FS", "LS+FS"} and len(runs) == 2 * 2
    ls_fs = runs[runs["branch"] == "LS+FS"]
    assert (ls_fs["n_cc"] == ls_fs["n_ls"]).all()
    selected = steps.selected_layers(scores, 3.0).set_index("seed")["layer"]
    for seed, layer in selected.items():
        assert set(runs[runs["seed"] == seed]["layer"]) == {layer}


def test_a_moved_model_folder_hits_every_cache(tiny_bert, cache, tmp_path):
    """A new clone or a rebuilt .venv puts the same model at another path: nothing is
    extracted, fine-tuned or computed again."""
    cfg = _config(tiny_bert, thresholds=[0.3], n_seeds=1, control_tasks=False)
    first = {t: steps.layer_probe_scores(tiny_bert, t, cfg) for t in cfg.tasks}
    sweep = steps.cc_sweep(tiny_bert, "brown-pos", cfg)
    before = _files(cache)
    moved = tmp_path / "new-venv" / "lib" / "model"
    shutil.copytree(tiny_bert, moved)
    cfg2 = _config(moved, thresholds=[0.3], n_seeds=1, control_tasks=False)
    again = {t: steps.layer_probe_scores(str(moved), t, cfg2) for t in cfg2.tasks}
    sweep2 = steps.cc_sweep(str(moved), "brown-pos", cfg2)
    after = [f for f in _files(cache) if not f.startswith("identity")]
    assert after == [f for f in before if not f.startswith("identity")]
    for t in cfg.tasks:
        np.testing.assert_array_equal(first[t]["test"], again[t]["test"])
    np.testing.assert_array_equal(sweep["dev"], sweep2["dev"])
