"""The run's parameters (redundancy.report.config.Config): defaults, files, refusals."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from redundancy.constraints import PARAMS as CONSTRAINT_OF
from redundancy.report.config import CONSTRAINTS, Config

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
    assert cfg.representative == "random" and cfg.probe_dtype == "float32"


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
        ({"thresholds": [0.3, 1.5]}, "'thresholds' parameter of Config must be a list"),
        ({"aggregation": "avg"}, "one of {'first', 'last', 'mean'}. Got 'avg'"),
        ({"delta_pairs": [[3, 1, 2]]}, "'delta_pairs' parameter of Config must be a list"),
        ({"delta": 100}, "'delta' parameter of Config must be a number in [0, 100)"),
        ({"max_length": 3}, "'max_length' parameter of Config must be an int in [8,"),
        ({"finetune": "yes"}, "'finetune' parameter of Config must be a bool"),
        ({"models": []}, "'models' parameter of Config must be a list"),
        ({"token_tasks": [], "sentence_tasks": []}, "at least one task"),
        ({"token_tasks": ["brown-pos"], "sentence_tasks": ["brown-pos"]}, "token-level task"),
        ({"task_options": {"brown-pos": 3}}, "'task_options' of task 'brown-pos'"),
        ({"device": "gpu"}, "'device' parameter of Config must be one of {'cpu', 'cuda'}"),
    ],
)
def test_bad_values_are_refused_in_scikit_learn_style(params, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        Config(**params)


def test_list_parameters_as_people_pass_them():
    # papermill -p models mpnet injects a string; -p models '["minilm"]' a JSON list as a string
    assert Config(models="mpnet").models == ("mpnet",)
    assert Config(models='["minilm", "mpnet"]').models == ("minilm", "mpnet")
    assert Config(models="[minilm]").models == ("minilm",)  # YAML flow list
    assert Config(thresholds=0.3).thresholds == (0.3,)
    assert Config(thresholds="[0.7, 0.3]").thresholds == (0.3, 0.7)
    with pytest.raises(ValueError, match="'models' parameter of Config must be a list"):
        Config(models='["minilm"')  # not a list
    with pytest.raises(ValueError, match="'thresholds' parameter of Config must be a list"):
        Config(thresholds={"a": 1})


def test_tasks_are_checked_against_the_kind_of_their_list():
    with pytest.raises(
        ValueError, match="'brown-fiction' is a sentence-level task: list it under 'sentence_tasks'"
    ):
        Config(token_tasks=["brown-pos", "brown-fiction"], sentence_tasks=[])
    with pytest.raises(ValueError, match="unknown task 'brown-poss'") as err:
        Config(token_tasks=["brown-poss"])
    assert "brown-upos" in str(err.value) and "glue-rte" in str(err.value)


def test_options_and_folders_for_tasks_not_in_the_run_are_refused():
    with pytest.raises(ValueError, match="entry for 'brown-pso' \\(did you mean 'brown-pos'\\?\\)"):
        Config(task_options={"brown-pso": {"train_tokens": 10}})
    with pytest.raises(ValueError, match="'data_dir' parameter of Config has an entry for 'pos'"):
        Config(data_dir={"pos": "/tmp"})
    with pytest.raises(ValueError, match="unknown option\\(s\\) 'train_token'"):
        Config(task_options={"brown-pos": {"train_token": 10}})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("models: [minilm\n", "line 2, column 1: invalid YAML"),
        ("models: [minilm]\n  token_tasks: x\n", "line 2"),
        ("", "is empty"),
        ("# only a comment\n", "is empty"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_parameter_file_errors_name_the_file_and_line(tmp_path, text, match):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        Config.from_yaml(path)
    assert str(path) in str(err.value)
    assert len(str(err.value).splitlines()) <= 2


def test_config_refuses_every_value_the_library_refuses():
    """One constraint object checks a parameter in Config and in the library function that
    takes it: for every value the constraint refuses, both refuse."""
    from redundancy.analysis.ranking import minimal_set
    from redundancy.encoders.finetune import finetune_options

    checked = 0
    for name, constraint in CONSTRAINTS.items():
        if constraint is None:
            continue
        for bad in constraint.invalid_examples():
            with pytest.raises(ValueError, match=f"'{name}' parameter of Config"):
                Config(**{name: bad})
            checked += 1
    assert checked > 60
    for bad in CONSTRAINT_OF["delta"].invalid_examples():
        with pytest.raises(ValueError):
            Config(delta=bad)
        with pytest.raises(ValueError, match="'delta' parameter of minimal_set"):
            minimal_set(
                np.zeros((4, 2), np.float32),
                np.zeros(4, int),
                np.zeros((4, 2), np.float32),
                np.zeros(4, int),
                [0, 1],
                base_score=0.5,
                delta=bad,
            )
    for bad in CONSTRAINT_OF["max_length"].invalid_examples():
        if bad is None:
            continue
        with pytest.raises(ValueError):
            Config(max_length=bad)
        with pytest.raises(ValueError, match="'max_length' parameter of finetune"):
            finetune_options(max_length=bad)


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


def test_missing_or_empty_model_folder_is_named_with_what_is_available(tmp_path):
    cfg = Config(models=[str(tmp_path / "nowhere")])
    (problem,) = cfg.missing_inputs()
    assert "does not exist" in problem and "Available here: 'minilm'" in problem
    (tmp_path / "m").mkdir()
    (problem,) = Config(models=[str(tmp_path / "m")]).missing_inputs()
    assert "lacks config.json" in problem and "sentencepiece" not in problem
