"""Rewrite the `parameters` cell of every notebook from a parameter file (default: params/default.yaml).

The notebooks' parameters cells must hold the embedded defaults (tests/test_book.py checks it);
after editing params/default.yaml run:

    .venv/bin/python tools/sync_parameters.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

from redundancy.report.config import Config

ROOT = Path(__file__).resolve().parents[1]
HEADER = "# Parameters (papermill injects its own values after this cell; defaults = params/default.yaml)"


def parameters_source(params: dict) -> str:
    lines = [HEADER] + [f"{name} = {value!r}" for name, value in params.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, default=ROOT / "params" / "default.yaml")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    args = parser.parse_args(argv)
    Config.from_yaml(args.params)  # refuses unknown or invalid parameters
    params = yaml.safe_load(args.params.read_text())
    source = parameters_source(params)
    for path in sorted(args.notebooks.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        if len(cells) != 1:
            print(
                f"{path}: expected one cell tagged 'parameters', found {len(cells)}",
                file=sys.stderr,
            )
            return 1
        if cells[0].source != source:
            cells[0].source = source
            nbformat.write(nb, path)
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
