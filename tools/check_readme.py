"""Run the commands the README shows, so that none of them is broken.

    .venv/bin/python tools/check_readme.py            # every runnable command (long: builds books)
    .venv/bin/python tools/check_readme.py --quick    # only those marked quick (the test suite's)

Commands are the lines of the README's ```bash blocks and its ```python blocks (run whole,
quick unless they say ``# slow``). A line ending in ``# quick`` is cheap enough for the test suite; ``make ...`` lines and lines ending in ``# not run`` (they need a
GPU, a cluster or data this machine cannot have) are listed but skipped. Each command runs
from the checkout's root with ``.venv/bin`` first on ``PATH``, in a scratch folder for its
outputs; a non-zero exit status fails the check.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands(text: str) -> list[tuple[str, str]]:
    """``(command, mark)`` for every command line of the README's bash blocks; ``mark`` is
    ``"quick"``, ``"skip"`` or ``""``."""
    out = []
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        out.append((f"python -c {shlex.quote(block)}", "skip" if "# slow" in block else "quick"))
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for raw in block.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            command, _, comment = line.partition("  #")
            comment = comment.strip()
            mark = "quick" if comment.startswith("quick") else ""
            if command.startswith(("make ", "conda ", "cd ", "git ")) or "not run" in comment:
                mark = "skip"
            out.append((command.strip(), mark))
    return out


def run(command: str, scratch: Path) -> int:
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    args = [a.replace("out.ipynb", str(scratch / "out.ipynb")) for a in shlex.split(command)]
    print(f"$ {command}", flush=True)
    return subprocess.run(args, cwd=ROOT, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="only the commands marked quick")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for command, mark in readme_commands(args.readme.read_text()):
            if mark == "skip" or (args.quick and mark != "quick"):
                print(f"- skipped: {command}")
                continue
            if run(command, Path(tmp)) != 0:
                failed.append(command)
    for command in failed:
        print(f"FAILED: {command}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
