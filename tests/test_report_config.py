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


# ---- one checking mechanism: bounds, YAML rules, machine checks ------------------------------
def _yaml(tmp_path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text("models: [minilm]\ntoken_tasks: [brown-pos]\nsentence_tasks: []\n" + text)
    return path


def test_seeds_must_fit_in_a_signed_64_bit_integer():
    with pytest.raises(ValueError, match=r"'random_state' parameter of Config must be an int in"):
        Config(random_state=2**64)
    # the last seed random_state + n_seeds - 1 must fit too
    with pytest.raises(
        ValueError, match=r"room for 3 seeds below 2\*\*63.*at most 9223372036854775805"
    ):
        Config(random_state=2**63 - 2, n_seeds=3)
    assert Config(random_state=2**63 - 3, n_seeds=3).seeds[-1] == 2**63 - 1


def test_timing_features_have_a_stated_maximum(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"'timing_features' parameter of Config must be a list .* in \[1, 1000000\]",
    ):
        Config.from_yaml(_yaml(tmp_path, "timing_features: [100, 1e9]\n"))
    from redundancy.analysis.timing import time_probe

    with pytest.raises(ValueError, match=r"'n_features_list' parameter of time_probe"):
        time_probe([100, 10**9], n_instances=10)


def test_a_duplicated_key_is_refused_with_both_lines(tmp_path):
    path = _yaml(tmp_path, "probe_epochs: 2\nbatch_size: 8\nprobe_epochs: 5\n")
    with pytest.raises(
        ValueError,
        match=r"p\.yaml, line 6, column 1: invalid YAML: the key 'probe_epochs' appears twice, on line 4 and on line 6",
    ):
        Config.from_yaml(path)


def test_yaml_1_2_numbers_are_numbers(tmp_path):
    cfg = Config.from_yaml(_yaml(tmp_path, "probe_lr: 1e-3\nprobe_l1: 5E-6\nprobe_l2: 1.0e-5\n"))
    assert (cfg.probe_lr, cfg.probe_l1, cfg.probe_l2) == (0.001, 5e-6, 1e-5)
    # strings that only look like numbers stay strings, ints stay ints
    from redundancy.constraints import parse_yaml

    assert parse_yaml("a: 1e3\nb: e5\nc: 12\nd: '1e-3'\ne: 1_000.5") == {
        "a": 1000.0,
        "b": "e5",
        "c": 12,
        "d": "1e-3",
        "e": 1000.5,
    }


def test_a_yaml_syntax_error_names_file_line_and_problem(tmp_path):
    path = _yaml(tmp_path, "thresholds: [0.1, 0.3\nprobe_epochs: 2\n")
    with pytest.raises(ValueError) as e:
        Config.from_yaml(path)
    message = str(e.value)
    assert message.startswith(f"{path}, line 5, column 13: invalid YAML: expected ',' or ']'")
    assert "^" not in message


def test_data_dir_for_a_brown_task_is_refused(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"'data_dir' parameter of Config has an entry for 'brown-pos', which reads the Brown corpus",
    ):
        Config(token_tasks=["brown-pos"], sentence_tasks=[], data_dir={"brown-pos": str(tmp_path)})


def test_cuda_is_refused_before_any_work_on_a_machine_without_it(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = Config(device="cuda")  # a valid file: gpu.yaml validates anywhere
    problems = cfg.missing_inputs()
    assert problems[0].startswith("device 'cuda': no CUDA device is available on this machine")
    assert "Use device: cpu" in problems[0]
    with pytest.raises(FileNotFoundError, match="no CUDA device"):
        cfg.check_inputs()
    # a notebook run by papermill -p device cuda stops in its first cell
    with pytest.raises(ValueError, match=r"'device' parameter of the notebook: device 'cuda'"):
        Config.from_namespace({"device": "cuda"})
    assert all("device" not in p for p in Config(device="cpu").missing_inputs())


def test_a_training_label_named_like_the_placeholder_is_refused():
    from conftest import make_token_task

    from redundancy.data.base import UNSEEN_LABEL, label_vocabulary
    from redundancy.data.tasks import _token_vocabulary

    with pytest.raises(ValueError, match="literally '<unseen>'"):
        label_vocabulary(["NN", UNSEEN_LABEL, "VB"])
    task = make_token_task(4)
    tags = list(task.train.labels[1])
    tags[0] = UNSEEN_LABEL
    task.train.labels[1] = tags
    with pytest.raises(
        ValueError, match=rf"{task.train.ids[1]}: the word .* has the label '<unseen>'"
    ):
        _token_vocabulary(task.train)


def test_params_are_found_relative_to_the_checkout(tmp_path, monkeypatch):
    from redundancy.report.config import resolve_params

    monkeypatch.chdir(tmp_path)
    found = resolve_params("params/tiny.yaml")
    assert found.is_file() and found == Path(__file__).resolve().parents[1] / "params" / "tiny.yaml"
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "tiny.yaml").write_text("models: [minilm]\n")
    assert resolve_params("params/tiny.yaml") == Path(
        "params/tiny.yaml"
    )  # the current folder first
    with pytest.raises(FileNotFoundError) as e:
        resolve_params("params/nope.yaml")
    assert str(tmp_path / "params" / "nope.yaml") in str(e.value)
    assert str(Path(__file__).resolve().parents[1] / "params" / "nope.yaml") in str(e.value)
    assert "tiny.yaml" in str(e.value)


def test_library_functions_refuse_a_missing_cuda_device_at_once(monkeypatch):
    import torch

    from redundancy._utils import resolve_device
    from redundancy.analysis.probes import train_probe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == "cpu" and resolve_device(None) == "cpu"
    with pytest.raises(ValueError, match=r"device 'cuda:1': no CUDA device .* Use device: cpu"):
        resolve_device("cuda:1")
    X = np.zeros((8, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="no CUDA device is available"):
        train_probe(X, np.array([0, 1] * 4), device="cuda")
