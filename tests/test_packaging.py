"""The conda route installs what pip does: environment.yml and pyproject.toml name the same
dependencies with the same lower bounds, and both register the notebooks' kernel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PYPI = {"pytorch": "torch"}  # conda-forge names that differ from PyPI's


def _split(requirement: str) -> tuple[str, str]:
    """``"torch>=2.4  # comment"`` -> ``("torch", ">=2.4")`` (name lower-cased, extras dropped)."""
    text = requirement.split("#")[0].strip()
    m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)$", text)
    assert m, requirement
    return m.group(1).lower().replace("_", "-"), m.group(3).replace(" ", "")


def _environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def test_environment_names_the_dependencies_of_pyproject_with_the_same_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"])
    conda, pip = {}, []
    for item in _environment()["dependencies"]:
        if isinstance(item, dict):
            pip += item["pip"]
        else:
            name, spec = _split(item.replace("=", "==", 1) if re.match(r"^\w+=\d", item) else item)
            conda[CONDA_TO_PYPI.get(name, name)] = spec
    named = dict(conda)
    named.update(_split(p) for p in pip if not p.startswith("-e"))
    named.pop("python"), named.pop("pip")
    assert named == wanted
    # the library itself comes from the checkout with the extras `make install` uses
    make = (ROOT / "Makefile").read_text()
    extras = re.search(r'pip install --quiet -e "\.\[([a-z,]+)\]"', make).group(1)
    assert f"-e .[{extras}]" in pip
    assert set(extras.split(",")) <= set(project["optional-dependencies"])


def test_environment_python_satisfies_requires_python():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = tuple(int(x) for x in project["requires-python"].lstrip(">=").split("."))
    python = next(d for d in _environment()["dependencies"] if str(d).startswith("python="))
    assert tuple(int(x) for x in python.split("=")[1].split(".")) >= floor


def test_conda_and_make_register_the_kernel_the_notebooks_name():
    import json

    from redundancy.report.book import KERNEL_NAME

    names = {
        json.loads(p.read_text())["metadata"]["kernelspec"]["name"]
        for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")
    }
    assert names == {KERNEL_NAME}
    one_liner = "python -m redundancy kernel"
    assert one_liner in (ROOT / "environment.yml").read_text()
    assert "-m redundancy kernel" in (ROOT / "Makefile").read_text()
    assert one_liner in (ROOT / "README.md").read_text()
