"""The command line and the package's curated API."""

from __future__ import annotations

import subprocess
import sys

import pytest

import redundancy
from redundancy.cli import build_parser, main


def test_every_curated_name_resolves():
    for name in redundancy.__all__:
        assert getattr(redundancy, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        redundancy.nope  # noqa: B018


def test_import_is_cheap():
    code = "import sys, redundancy; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for command in (
        "fetch-data",
        "fetch-model",
        "tasks",
        "extract",
        "export",
        "book",
        "run",
        "info",
    ):
        assert command in text
    # each sub-command has its own help
    parser = build_parser()
    for command in ("fetch-model", "tasks", "extract", "book"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        assert "usage" in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "redundancy", "--help"], capture_output=True, text=True, check=True
    )
    assert "redundancy" in out.stdout and "extract" in out.stdout


def test_tasks_lists_the_brown_tasks(capsys):
    assert main(["tasks"]) == 0
    text = capsys.readouterr().out
    for name in ("brown-pos", "brown-upos", "brown-genre", "brown-fiction", "glue-sst2", "pos"):
        assert name in text


def test_unknown_task_is_refused_with_the_known_names(capsys):
    assert main(["tasks", "brown-pso"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "brown-pso" in err and "brown-pos" in err
    with pytest.raises(ValueError, match="brown-pos"):  # --verbose shows the traceback
        main(["--verbose", "tasks", "brown-pso"])


def test_missing_inputs_are_listed_without_a_traceback(capsys, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("models: [/nonexistent/model-folder]\n")
    assert main(["book", "--params", str(params), "--no-html"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/model-folder" in err and "Traceback" not in err


def test_bad_option_syntax_is_refused(capsys):
    assert main(["tasks", "brown-pos", "-o", "train_tokens"]) == 2
    assert "--option expects key=value" in capsys.readouterr().err


def _run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["fetch-model", "/nonexistent/model"], "does not exist"),
        (
            ["fetch-model", "no-such-org/no-such-model"],
            "neither a local folder nor in the Hugging Face cache",
        ),
        (["tasks", "pos", "--data-dir", "/nonexistent/pos"], "/nonexistent/pos"),
        (["extract", "--model", "/nonexistent/model", "--task", "brown-pos"], "does not exist"),
        (["export", "--model", "/nonexistent/model", "--out", "x"], "does not exist"),
        (["book", "--params", "/nonexistent/params.yaml"], "does not exist"),
        (["extract", "--device", "gpu"], "--device must be"),
    ],
)
def test_every_command_gives_one_line_for_a_missing_or_wrong_path(
    capsys, monkeypatch, argv, expected
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an offline machine: fail at once, no retries
    code, err = _run(capsys, *argv)
    assert code == 2
    assert expected in _one_error_line(err)


def test_an_empty_model_folder_says_what_is_missing(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, err = _run(capsys, "extract", "--model", str(tmp_path / "empty"))
    line = _one_error_line(err)
    assert code == 2 and "lacks config.json" in line and "sentencepiece" not in line


def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err = _run(capsys, "extract", "--device", "cuda")
    assert code == 2 and "no CUDA device is available" in _one_error_line(err)


def test_parameter_file_errors_are_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [minilm\n")
    code, err = _run(capsys, "book", "--params", str(bad))
    assert code == 2 and "line 2, column 1: invalid YAML" in _one_error_line(err)


def test_a_data_file_with_a_bad_encoding_is_one_line(capsys, tmp_path):
    folder = tmp_path / "pos"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        (folder / f"{split}.word").write_bytes("caf\xe9 noir\n".encode("latin-1"))
        (folder / f"{split}.label").write_text("NN JJ\n")
    code, err = _run(capsys, "tasks", "pos", "--data-dir", str(folder))
    line = _one_error_line(err)
    assert code == 2 and "train.word" in line and "iconv" in line


def test_info_and_help_show_the_cache(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "c"))
    assert main(["info"]) == 0
    assert f"cache: {tmp_path / 'c'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert f"Cache: {tmp_path / 'c'}" in capsys.readouterr().out


def test_the_checkout_cache_is_the_default_everywhere(monkeypatch):
    """`make`, `python -m redundancy` and a notebook started in the checkout share .cache/."""
    from pathlib import Path

    from redundancy._utils import cache_root, checkout_root

    monkeypatch.delenv("REDUNDANCY_CACHE", raising=False)
    root = Path(__file__).resolve().parents[1]
    assert checkout_root() == root and cache_root() == root / ".cache"


def test_gpu_check_says_no_cuda_clearly_on_a_cpu_machine():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: make gpu-check runs the real checks")
    out = subprocess.run(
        [sys.executable, "tools/gpu_check.py"],
        capture_output=True,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]),
    )
    assert out.returncode == 1
    assert "no CUDA device" in out.stderr and "nothing was checked" in out.stderr


def test_verbose_works_after_the_command_too(capsys):
    # without --verbose: one line; with it, before or after the command: the traceback
    code, err = _run(capsys, "book", "--params", "/nonexistent/params.yaml")
    assert code == 2 and "Traceback" not in err
    for argv in (
        ["--verbose", "book", "--params", "/nonexistent/params.yaml"],
        ["book", "--params", "/nonexistent/params.yaml", "-v"],
    ):
        with pytest.raises(FileNotFoundError, match="does not exist: looked at"):
            main(argv)
    assert build_parser().parse_args(["tasks", "--verbose"]).verbose is True
    assert build_parser().parse_args(["tasks"]).verbose is False


def test_export_prints_the_folder_not_a_repr(capsys, monkeypatch, tmp_path):
    from conftest import make_token_task
    from test_interop import fake_acts

    from redundancy import cli

    task = make_token_task(6, lengths=[4, 7, 3, 4, 9, 2])
    acts = {s: fake_acts(task, s) for s in ("train", "dev")}
    monkeypatch.setattr(cli, "_extract_all", lambda args: (task, acts))
    assert main(["export", "--out", str(tmp_path / "set"), "--format", "neurox-json"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (
        f"activation set written to {tmp_path / 'set'} (format neurox-json; holds "
        f"{task.name} (train/dev))"
    )
    assert "ActivationSet(" not in out
    # a second task exported into the same folder joins the first, under the first's name
    other = make_token_task(6, lengths=[4, 7, 3, 4, 9, 2], name="other-pos")
    monkeypatch.setattr(
        cli, "_extract_all", lambda args: (other, {"test": fake_acts(other, "test")})
    )
    assert main(["export", "--out", str(tmp_path / "set"), "--format", "neurox-json"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.endswith(f"holds {task.name} (train/dev), other-pos (test))")
    from redundancy.encoders.interop import open_activation_set

    assert open_activation_set(tmp_path / "set").name == f"minilm ({task.name})"


def test_warnings_are_logged_once_without_source_lines(capsys, caplog, monkeypatch):
    import logging
    import warnings

    from redundancy import cli

    def noisy(args):
        for _ in range(3):
            warnings.warn("CKA of a constant column is undefined", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cli, "_cmd_info", noisy)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        assert main(["info"]) == 0
    shown = [r for r in caplog.records if "constant column" in r.getMessage()]
    assert [(r.name, r.levelname, r.getMessage()) for r in shown] == [
        ("redundancy", "WARNING", "CKA of a constant column is undefined")
    ]
    assert "UserWarning" not in capsys.readouterr().err


def test_an_error_after_a_progress_bar_starts_its_own_line(capsys, monkeypatch):
    from tqdm import tqdm

    from redundancy import cli

    def fails(args):
        bar = tqdm(total=10, desc="extract", file=sys.stderr, leave=True)
        bar.update(3)
        raise ValueError("something the user can fix")

    monkeypatch.setattr(cli, "_cmd_info", fails)
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").rstrip("\n").split("\n")[-1]
    assert last == "redundancy info: error: something the user can fix"
    assert "3/10" in err  # the bar was closed where it stood


def test_run_reporter_shows_an_overall_bar_with_time_left(capsys):
    from redundancy.report import pipeline

    report = pipeline._reporter(3, True)
    row = {"status": "done", "seconds": 1.5, "computed": 1, "job": "layers/cka", "result": "r"}
    for _ in range(3):
        report({**row, "worker": "w1"})
    err = capsys.readouterr().err
    assert err.count("layers/cka") == 3 and "[3/3] done" in err
    assert "run: 100%" in err and "3/3 [" in err  # the bar, with elapsed<left


def test_kernel_command_registers_the_notebooks_kernel_in_this_environment(capsys, monkeypatch):
    import subprocess as sp

    from redundancy.report.book import KERNEL_NAME

    calls = []
    monkeypatch.setattr(
        sp, "run", lambda cmd, **kw: calls.append(cmd) or sp.CompletedProcess(cmd, 0)
    )
    assert main(["kernel"]) == 0
    assert calls == [
        [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME]
        + ["--display-name", "Python (redundancy)"]
    ]
    assert f"kernel {KERNEL_NAME!r} registered for {sys.prefix}" in capsys.readouterr().out
    monkeypatch.setattr(sp, "run", lambda cmd, **kw: sp.CompletedProcess(cmd, 1))
    code, err = _run(capsys, "kernel")
    assert code == 2 and "install ipykernel" in _one_error_line(err)


def test_cuda_error_words_the_command_line_fix(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = _run(capsys, "extract", "--device", "cuda:0")
    line = _one_error_line(err)
    assert code == 2
    assert "--device 'cuda:0': no CUDA device is available" in line
    assert line.endswith(
        "Use --device cpu, or leave --device out to pick the GPU only when there is one."
    )


def test_verify_anywhere_on_the_line_asks_for_full_checks(monkeypatch):
    """`--verify` before or after the command sets REDUNDANCY_VERIFY for everything the
    command starts (kernels, Dask jobs), so damage that kept a file's size and time is
    found; without it nothing is set."""
    import os

    from redundancy import cli
    from redundancy._utils import VERIFY_ENV, verify_always

    for argv in (["--verify", "tasks"], ["tasks", "--verify"]):
        monkeypatch.delenv(VERIFY_ENV, raising=False)
        assert cli.main(argv) == 0
        assert os.environ.get(VERIFY_ENV) == "1" and verify_always()
    monkeypatch.delenv(VERIFY_ENV, raising=False)
    assert cli.main(["tasks"]) == 0
    assert VERIFY_ENV not in os.environ


def test_a_relative_cache_is_made_absolute_for_child_processes(capsys, monkeypatch, tmp_path):
    """Book kernels start in the build folder: a relative REDUNDANCY_CACHE must not point
    them at another cache than the runner's."""
    import os

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDUNDANCY_CACHE", "rel/cache")
    assert main(["info"]) == 0
    assert os.environ["REDUNDANCY_CACHE"] == str(tmp_path / "rel" / "cache")
    assert f"cache: {tmp_path / 'rel' / 'cache'}" in capsys.readouterr().out
