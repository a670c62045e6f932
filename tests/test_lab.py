"""JupyterLab out of the box: the notebooks name the kernel `make install` registers, and the
browser checks (tools/check_lab.py, tools/screenshot_book.py) find what they claim to find.

The browser tests drive the system Chromium through playwright; they are skipped, with the
reason, where either is missing (`make lab-check` installs both)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import check_lab  # noqa: E402
import screenshot_book  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
MISSING = check_lab.browser_missing()
needs_browser = pytest.mark.skipif(MISSING is not None, reason=f"browser check: {MISSING}")


def _make_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile has no '{name} ?=' line"
    return match.group(1)


def _dry_run(*targets: str, **variables: str) -> str:
    """What `make -n -B` would run for ``targets`` (nothing is executed)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    assigns = [f"{k}={v}" for k, v in variables.items()]
    cmd = ["make", "-n", "-B", "-C", str(ROOT), *assigns, *targets]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


# --- the kernel JupyterLab picks ---------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_names_the_project_kernel(path):
    spec = nbformat.read(str(path), as_version=4).metadata.kernelspec
    assert spec["name"] == _make_variable("KERNEL")
    assert spec["language"] == "python"


def test_book_runner_and_jupyterlab_use_one_kernel_name():
    from redundancy.report import book

    assert book.KERNEL_NAME == _make_variable("KERNEL")


def test_install_registers_the_kernel_inside_the_venv_and_lab_serves_notebooks(tmp_path):
    venv = tmp_path / "venv"
    install = _dry_run("install", VENV=str(venv))
    kernel = _make_variable("KERNEL")
    # the same one-liner conda users run (python -m redundancy kernel, environment.yml)
    assert f"{venv}/bin/python -m redundancy kernel --name {kernel}" in install
    assert install.index("pip install --quiet -e") < install.index("-m redundancy kernel")
    lab = _dry_run("lab", VENV=str(venv), REDUNDANCY_CACHE="/somewhere/cache")
    assert f"{venv}/bin/jupyter lab notebooks/" in lab


def test_registered_kernel_runs_this_interpreter():
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    name = _make_variable("KERNEL")
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        pytest.skip(f"kernel {name!r} is not registered here (make install registers it)")
    assert Path(spec.argv[0]).resolve() == Path(sys.executable).resolve(), spec.resource_dir


# --- pure helpers --------------------------------------------------------------------------


def test_classify_outputs_finds_tracebacks_not_warnings():
    stderr = check_lab.STDERR_MIME
    cells = [
        {"index": 0, "prompt": "[1]:", "outputs": [{"mime": "text/plain", "text": "Error: 3"}]},
        {
            "index": 1,
            "prompt": "[2]:",
            "outputs": [
                {"mime": stderr, "text": "x.py:1: UserWarning: careful\n  warn()"},
                {"mime": stderr, "text": "100%|####| 10/10 [00:01<00:00]"},
            ],
        },
        {
            "index": 2,
            "prompt": "[3]:",
            "outputs": [
                {
                    "mime": stderr,
                    "text": "-----\nKeyError    Traceback (most recent call last)\nCell In[3]\n"
                    "KeyError: 'x'\n",
                }
            ],
        },
        {
            "index": 4,
            "prompt": "[4]:",
            "outputs": [
                {
                    "mime": stderr,
                    "text": "  Cell In[4], line 1\n    (\nSyntaxError: '(' was never closed",
                }
            ],
        },
    ]
    errors, notes = check_lab.classify_outputs(cells)
    assert errors == [
        {"cell": 3, "prompt": "[3]:", "error": "KeyError: 'x'"},
        {"cell": 5, "prompt": "[4]:", "error": "SyntaxError: '(' was never closed"},
    ]
    assert notes == 2


def test_load_parameters_reads_yaml_values():
    params = check_lab.load_parameters(None, [["probe_epochs", "2"], ["models", "[minilm, mpnet]"]])
    assert params == {"probe_epochs": 2, "models": ["minilm", "mpnet"]}


def test_load_parameters_validates_a_params_file(tmp_path):
    tiny = ROOT / "params" / "tiny.yaml"
    params = check_lab.load_parameters(tiny, [["probe_epochs", "3"]])
    expected = yaml.safe_load(tiny.read_text())
    assert params["token_tasks"] == expected["token_tasks"] and params["probe_epochs"] == 3
    typo = tmp_path / "typo.yaml"
    typo.write_text(tiny.read_text() + "probe_epochz: 3\n")
    with pytest.raises(ValueError, match="probe_epochz"):
        check_lab.load_parameters(typo, None)


def test_prepare_notebook_injects_parameters_after_the_parameters_cell(tmp_path):
    target = tmp_path / "nb.ipynb"
    spec = check_lab.prepare_notebook(NOTEBOOKS[0], target, {"probe_epochs": 7})
    nb = nbformat.read(str(target), as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    at = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert "injected-parameters" in tags[at + 1]
    assert "probe_epochs = 7" in nb.cells[at + 1].source
    assert spec["name"] == _make_variable("KERNEL")


def test_summarise_counts_the_findings():
    raw = {
        "title": "t",
        "height": 900,
        "scroll_width": 1300,
        "viewport_width": 1280,
        "tables": [{"status": "fits"}, {"status": "scrolls"}, {"status": "clipped"}],
        "cells": [{"input": "visible"}, {"input": "collapsed"}, {"input": "removed"}],
        "images": [
            {"visible": True, "caption": "Fig. 1", "broken": False},
            {"visible": True, "caption": "", "broken": True},
            {"visible": False, "caption": "", "broken": False},
        ],
        "code_blocks_in_text": 0,
        "other_images": 1,
    }
    s = screenshot_book.summarise(raw)
    assert s["findings"] == {
        "wide-tables": 2,
        "visible-code": 1,
        "uncaptioned-figures": 1,
        "broken-images": 1,
        "page-overflow": 1,
    }
    assert (s["figures"]["captioned"], s["figures"]["visible"]) == (1, 2)
    assert (s["code_cells"]["collapsed"], s["code_cells"]["removed"]) == (1, 1)


def test_resolve_pages_names_and_refuses(tmp_path):
    for rel in ["intro.html", "search.html", "genindex.html", "ch/02-cka.html", "_static/x.html"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("<html></html>")
    all_pages = screenshot_book.resolve_pages(tmp_path, [])
    assert [p.relative_to(tmp_path).as_posix() for p in all_pages] == [
        "ch/02-cka.html",
        "intro.html",
    ]
    assert screenshot_book.resolve_pages(tmp_path, ["02-cka"]) == [tmp_path / "ch" / "02-cka.html"]
    with pytest.raises(FileNotFoundError, match=r"No page \['nope'\].*intro.html"):
        screenshot_book.resolve_pages(tmp_path, ["nope"])
    assert screenshot_book.main(["--html", str(tmp_path / "absent")]) == 2


# --- in the browser ------------------------------------------------------------------------

GOOD_CELLS = [
    "import numpy as np\nimport redundancy\nfrom redundancy.analysis.similarity import linear_cka",
    "print('library:', redundancy.__file__)",
    # linear CKA is invariant to rotations and isotropic scaling: exactly 1 for X vs 3 X Q
    "rng = np.random.default_rng(0)\nX = rng.normal(size=(60, 5))\n"
    "Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))\n"
    "print(f'cka_rotated={linear_cka(X, 3 * X @ Q):.6f}')",
    "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()",
]
BAD_CELLS = ["x = 1", "raise ValueError('planted failure')", "print('never runs')"]


def _notebook(path: Path, cells: list[str], kernel: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": kernel, "display_name": kernel, "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A check")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, str(path))
    return path


@pytest.mark.slow
@needs_browser
def test_check_lab_runs_notebooks_in_jupyterlab_and_reports_errors(tmp_path, capsys):
    from jupyter_client.kernelspec import KernelSpecManager

    kernel = _make_variable("KERNEL")
    notebooks = [
        _notebook(tmp_path / "good.ipynb", GOOD_CELLS, kernel),
        _notebook(tmp_path / "bad.ipynb", BAD_CELLS, kernel),
        _notebook(tmp_path / "orphan.ipynb", ["x = 1"], "no-such-kernel"),
        _notebook(tmp_path / "dies.ipynb", ["import os\nos._exit(1)", "x = 2"], kernel),
    ]
    out = tmp_path / "out"
    registered = kernel in KernelSpecManager().find_kernel_specs()
    argv = [*map(str, notebooks), "--out", str(out), "--timeout", "300"]
    assert check_lab.main(argv + ([] if registered else ["--bind-kernel"])) == 1

    report = json.loads((out / "report.json").read_text())
    good, bad, orphan, dies = report["notebooks"]
    assert good["ok"], good
    assert (good["code_cells"], good["cells_run"], good["errors"]) == (4, 4, [])
    assert good["kernel"] == kernel
    executed = nbformat.read(str(out / "good.ipynb"), as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells[1:] for o in c.get("outputs", []))
    assert "cka_rotated=1.000000" in text
    assert f"library: {ROOT / 'redundancy' / '__init__.py'}" in text  # this checkout's library
    assert any("image/png" in o.get("data", {}) for o in executed.cells[4].outputs)
    width, height = _png_size(Path(good["screenshot"]))
    assert width > 800 and height > 300

    assert not bad["ok"]
    assert [(e["cell"], e["error"]) for e in bad["errors"]] == [(3, "ValueError: planted failure")]
    assert bad["problems"] == ["cells not run: [4]"]
    assert bad["saved_errors"] == [{"cell": 3, "error": "ValueError: planted failure"}]
    assert Path(bad["screenshot"]).is_file()

    assert not orphan["ok"] and "no-such-kernel" in orphan["problems"][0]
    assert not dies["ok"] and re.search(r"died|kernel is gone", dies["problems"][0]), dies
    printed = capsys.readouterr().out
    assert "good.ipynb: ok" in printed and "bad.ipynb: FAILED" in printed


def _png(width: int, height: int) -> bytes:
    """A valid grey PNG, written by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PIXEL = base64.b64encode(_png(4, 4)).decode()
PAGE = f"""<!doctype html><html><head><title>hand-written</title><style>
body {{ margin: 0; font: 14px sans-serif; }} article {{ width: 500px; margin: 20px; }}
.scroll {{ overflow-x: auto; width: 300px; }} .clip {{ overflow: hidden; width: 300px; }}
td {{ white-space: nowrap; padding: 0 4px; }} img {{ width: 40px; height: 40px; }}
</style></head><body><article>
<div class="cell tag_parameters"><details class="hide above-input"><summary>Show code</summary>
  <div class="cell_input"><div class="highlight"><pre>x = 1</pre></div></div></details></div>
<div class="cell"><div class="cell_input"><div class="highlight"><pre>plot(x)</pre></div></div>
  <div class="cell_output"><figure><img src="data:image/png;base64,{PIXEL}">
    <figcaption>Figure 1: a pixel</figcaption></figure></div></div>
<div class="cell tag_remove-input"><div class="cell_output">
  <img src="data:image/png;base64,{PIXEL}"><img src="missing.png"></div></div>
<div class="highlight"><pre>text code block</pre></div>
<div class="scroll"><table><tr><td>{"wide " * 40}</td></tr></table></div>
<div class="clip"><table><tr><td>{"clipped " * 40}</td></tr></table></div>
<table><tr><td>{"spills " * 30}</td></tr></table>
<table><tr><td>fits</td></tr></table>
</article><img src="https://example.invalid/logo.png"></body></html>"""


@pytest.mark.slow
@needs_browser
def test_screenshot_book_measures_a_hand_written_page(tmp_path, capsys):
    html, out = tmp_path / "html", tmp_path / "shots"
    html.mkdir()
    (html / "page.html").write_text(PAGE)
    assert screenshot_book.main(["page", "--html", str(html), "--out", str(out), "--strict"]) == 1

    report = json.loads((out / "report.json").read_text())
    (page,) = report["pages"]
    assert page["title"] == "hand-written"
    assert [t["status"] for t in page["tables"]["items"]] == [
        "scrolls",
        "clipped",
        "overflows",
        "fits",
    ]
    assert page["tables"]["items"][0]["container_width"] == 300
    assert [c["input"] for c in page["code_cells"]["items"]] == ["collapsed", "visible", "removed"]
    assert page["code_cells"]["items"][0]["tags"] == ["parameters"]
    assert page["code_cells"]["code_blocks_in_text"] == 1
    figures = page["figures"]
    assert (figures["count"], figures["captioned"], figures["uncaptioned"]) == (3, 1, 2)
    assert figures["broken"] == 1 and figures["items"][0]["caption"] == "Figure 1: a pixel"
    assert page["blocked_requests"] == ["https://example.invalid/logo.png"]
    assert not page["page_scrolls_horizontally"]
    assert report["failed"] == {
        "page": ["wide-tables", "visible-code", "uncaptioned-figures", "broken-images"]
    }
    assert _png_size(Path(page["screenshot"]))[0] == 1280
    assert "tables: 4, too wide: 3" in capsys.readouterr().out


def test_a_parameter_value_with_a_yaml_syntax_error_names_it():
    with pytest.raises(ValueError) as e:
        check_lab.load_parameters(None, [["thresholds", "[0.1, 0.3"]])
    message = str(e.value)
    assert message.startswith(
        "-p thresholds '[0.1, 0.3', line 1, column 10: invalid YAML: expected"
    )
    assert "^" not in message
    assert check_lab.load_parameters(None, [["probe_lr", "1e-3"]]) == {"probe_lr": 0.001}
