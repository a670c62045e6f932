"""Parameters, result cache, verdicts and the small table helpers of redundancy.report.experiments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from redundancy.report import experiments
from redundancy.report.experiments import Config

ROOT = Path(__file__).resolve().parent.parent
PARAMS = sorted((ROOT / "params").glob("*.yaml"))


# ------------------------------------------------------------------ Config
def test_defaults_are_the_papers_hyper_parameters():
    cfg = Config()
    assert (cfg.probe_epochs, cfg.probe_lr, cfg.probe_l1, cfg.probe_l2, cfg.probe_batch_size) == (
        10,
        1e-3,
        1e-5,
        1e-5,
        128,
    )
    assert cfg.thresholds == tuple(round(0.1 * i, 1) for i in range(1, 10))
    assert cfg.cc_threshold == 0.3 and cfg.delta == 1.0
    assert cfg.delta_pairs == ((3.0, 1.0), (2.0, 1.0), (1.0, 1.0))
    assert cfg.finetune and cfg.finetune_epochs == 3 and cfg.finetune_max_train_sentences is None
    assert cfg.representative == "random"


@pytest.mark.parametrize("path", PARAMS, ids=lambda p: p.name)
def test_every_params_file_validates_and_round_trips(path):
    cfg = Config.from_yaml(path)
    raw = yaml.safe_load(path.read_text())
    assert list(raw) == list(Config.parameter_names()), "keep every file complete and in order"
    again = Config.from_dict(cfg.to_dict())
    assert again == cfg and again.fingerprint() == cfg.fingerprint()


def test_mistyped_parameter_is_refused_with_the_valid_list():
    with pytest.raises(ValueError) as err:
        Config.from_dict({"probe_epoch": 2, "modles": ["minilm"]}, source="params/x.yaml")
    msg = str(err.value)
    assert "'probe_epoch' (did you mean 'probe_epochs'?)" in msg
    assert "'modles' (did you mean 'models'?)" in msg
    assert "params/x.yaml" in msg
    for name in Config.parameter_names():
        assert name in msg


def test_from_namespace_ignores_modules_functions_and_ipython_names():
    ns = {
        "models": ["minilm"],
        "probe_epochs": 2,
        "np": np,
        "display": print,
        "Config": Config,
        "In": [],
        "Out": {},
        "_": None,
        "_i1": "x",
        "get_ipython": lambda: None,
    }
    cfg = Config.from_namespace(ns)
    assert cfg.probe_epochs == 2
    ns["probe_epoch"] = 3  # what `papermill -p probe_epoch 3` injects
    with pytest.raises(ValueError, match="did you mean 'probe_epochs'"):
        Config.from_namespace(ns)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"probe_epochs": 0}, "'probe_epochs' parameter of Config must be an int >= 1. Got 0"),
        ({"probe_lr": -1}, "'probe_lr' parameter of Config must be a number > 0"),
        (
            {"thresholds": [0.3, 1.5]},
            "'thresholds' parameter of Config must be a number > 0 and <= 1",
        ),
        ({"aggregation": "avg"}, "one of {'first', 'last', 'mean'}. Got 'avg'"),
        ({"delta_pairs": [[3, 1, 2]]}, "'delta_pairs' parameter of Config must be a list of"),
        ({"finetune": "yes"}, "'finetune' parameter of Config must be a bool"),
        ({"models": []}, "'models' parameter of Config must be a list of non-empty strings"),
        ({"token_tasks": [], "sentence_tasks": []}, "at least one task"),
        ({"token_tasks": ["x"], "sentence_tasks": ["x"]}, "disjoint"),
        ({"task_options": {"brown-pos": 3}}, "'task_options' parameter of Config"),
    ],
)
def test_bad_values_are_refused_in_scikit_learn_style(params, match):
    with pytest.raises(
        ValueError,
        match=match.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{").replace("}", r"\}"),
    ):
        Config(**params)


def test_scalar_for_a_list_is_accepted():
    # papermill -p models mpnet injects a string
    assert Config(models="mpnet").models == ("mpnet",)
    assert Config(thresholds=0.3).thresholds == (0.3,)


def test_paper_params_report_every_missing_input_at_once(tmp_path):
    cfg = Config.from_yaml(ROOT / "params" / "paper.yaml")
    with pytest.raises(FileNotFoundError) as err:
        cfg.check_inputs()
    msg = str(err.value)
    n_expected = 0
    for task in cfg.tasks:
        assert f"task {task!r}" in msg
        n_expected += 1
    for model in cfg.models:
        if f"model {model!r}" in msg:
            n_expected += 1
    assert msg.startswith(f"{n_expected} input(s)")
    assert "gluebenchmark.com" in msg and "LDC99T42" in msg
    # the same configuration with real folders is complete (models aside)
    folders = {task: str(tmp_path) for task in cfg.tasks}
    ok = Config(**{**cfg.to_dict(), "data_dir": folders, "models": ["minilm"]})
    assert ok.missing_inputs() == []


def test_missing_local_model_folder(tmp_path):
    cfg = Config(models=[str(tmp_path / "nowhere")])
    assert "folder does not exist" in cfg.missing_inputs()[0]
    (tmp_path / "m").mkdir()
    assert "no config.json" in Config(models=[str(tmp_path / "m")]).missing_inputs()[0]


# ------------------------------------------------------------------ cache
def test_cached_json_computes_once_and_recomputes_on_a_new_key(tmp_path, monkeypatch):
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"value": np.float32(0.5), "n": np.int64(3), "arr": np.arange(2)}

    key = experiments._key("test", ("probes",), x=1)
    first = experiments._cached_json("test", key, compute)
    second = experiments._cached_json("test", key, compute)
    assert first == second == {"value": 0.5, "n": 3, "arr": [0, 1]} and len(calls) == 1
    other = experiments._key("test", ("probes",), x=2)
    assert other != key
    experiments._cached_json("test", other, compute)
    assert len(calls) == 2
    assert (tmp_path / "results" / "test" / f"{key}.json").is_file()


def test_cached_npz_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path))
    sim = np.random.default_rng(0).random((3, 3))
    out = experiments._cached_npz("t", "k", lambda: {"sim": sim})
    again = experiments._cached_npz("t", "k", lambda: pytest.fail("should be cached"))
    np.testing.assert_array_equal(out["sim"], again["sim"])


# ------------------------------------------------------------------ verdicts
@pytest.mark.parametrize(
    ("value", "higher", "expected"),
    [
        (90, True, "reproduced"),
        (85, True, "reproduced"),
        (60, True, "partly reproduced"),
        (10, True, "not reproduced"),
        (5, False, "reproduced"),
        (15, False, "partly reproduced"),
        (50, False, "not reproduced"),
    ],
)
def test_judge(value, higher, expected):
    if higher:
        assert experiments.judge(value, reproduced=85, partly=50) == expected
    else:
        assert experiments.judge(value, reproduced=8, partly=20, higher_is_better=False) == expected


def test_record_and_load_verdicts(tmp_path):
    cfg = Config(results_dir=str(tmp_path))
    experiments.record_verdict(
        cfg, "02-b", claim="c2", measured="m2", verdict="partly reproduced", rule="r2"
    )
    experiments.record_verdict(
        cfg,
        "01-a",
        claim="c1",
        measured="m1",
        verdict="reproduced",
        rule="r1",
        details={"x": np.float64(1)},
    )
    df = experiments.load_verdicts(cfg)
    assert list(df["chapter"]) == ["01-a", "02-b"]
    assert list(df["verdict"]) == ["reproduced", "partly reproduced"]
    assert json.loads((tmp_path / "01-a.json").read_text())["details"] == {"x": 1.0}
    # verdicts of another parameter set are not mixed in
    other = Config(results_dir=str(tmp_path), probe_epochs=1)
    assert experiments.load_verdicts(other).empty
    with pytest.raises(ValueError, match="'verdict' parameter of record_verdict"):
        experiments.record_verdict(cfg, "x", claim="", measured="", verdict="yes", rule="")


def test_deviations_name_model_sizes_and_changed_hyper_parameters():
    cfg = Config.from_yaml(ROOT / "params" / "default.yaml")
    text = experiments.deviations(cfg)
    assert "2,688 features" in text and "sentence-embedding fine-tune" in text
    assert "first 20,000 training tokens instead of 150,000" in text
    assert "probe_epochs" not in text  # the paper's value
    tiny = Config(
        probe_epochs=1,
        models=["bert-base-cased"],
        token_tasks=["pos"],
        sentence_tasks=[],
        task_options={"pos": {"train_tokens": 150_000}},
        timing_probe_instances=100_000,
    )
    assert experiments.deviations(tiny) == "- `probe_epochs` = 1 (paper: 10)."
    paper = Config(
        models=["bert-base-cased"],
        token_tasks=["pos"],
        sentence_tasks=[],
        timing_probe_instances=100_000,
    )
    assert experiments.deviations(paper) == "This run uses the paper's setup."


def test_selected_layers_applies_layer_selector_per_model_and_task():
    rows = []
    for model, dev in (("a", [0.5, 0.975, 0.99, 1.0]), ("b", [0.2, 0.3, 0.5, 0.9])):
        for layer, d in enumerate(dev):
            rows.append(
                {
                    "model": model,
                    "task": "t",
                    "kind": "incremental",
                    "layer": layer,
                    "dev": d,
                    "test": d - 0.01,
                }
            )
        rows.append(
            {
                "model": model,
                "task": "t",
                "kind": "oracle",
                "layer": 3,
                "dev": dev[-1],
                "test": dev[-1] - 0.01,
            }
        )
    out = experiments.selected_layers(pd.DataFrame(rows), delta=3.0)
    # smallest layer with dev > oracle * 0.97
    assert out.loc[("a", "t"), "selected layer"] == 1
    assert out.loc[("b", "t"), "selected layer"] == 3
    assert out.loc[("a", "t"), "test at selected"] == pytest.approx(0.965)
    assert (out["last layer"] == 3).all()
