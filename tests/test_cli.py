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
    for command in ("fetch-data", "fetch-model", "tasks", "extract", "book", "info"):
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


def test_bad_option_syntax_is_refused():
    with pytest.raises(SystemExit, match="key=value"):
        main(["tasks", "brown-pos", "-o", "train_tokens"])
