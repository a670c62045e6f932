"""The README's quick commands run as written (tools/check_readme.py runs all of them)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from check_readme import readme_commands, run  # noqa: E402

COMMANDS = readme_commands((ROOT / "README.md").read_text())


def test_the_readme_shows_commands_and_marks_some_quick():
    assert any(c.startswith("papermill") for c, _ in COMMANDS)
    assert sum(mark == "quick" for _, mark in COMMANDS) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c, m in COMMANDS if m == "quick"])
def test_quick_readme_command_runs(command, tmp_path):
    assert run(command, tmp_path) == 0, command
