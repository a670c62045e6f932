"""The book: notebooks are clean and agree with the parameters and the table of contents, the
runner's helpers behave, and every notebook runs through papermill into a built book."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from redundancy.report import book, verdicts
from redundancy.report.config import Config

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = book.list_notebooks(ROOT / "notebooks")
DEFAULT = yaml.safe_load((ROOT / "params" / "default.yaml").read_text())


def _read(path):
    return nbformat.read(str(path), as_version=4)


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0]


def _assignments(source: str) -> dict:
    values = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, "only NAME = literal lines"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def test_there_are_nine_chapters():
    assert [nb.stem[:2] for nb in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 10)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_equals_default_params_and_validates(path):
    nb = _read(path)
    cell = _parameters_cell(nb)
    values = _assignments(cell.source)
    assert values == DEFAULT
    assert list(values) == list(Config.parameter_names())
    Config.from_dict(values)
    # the next code cell validates the notebook's globals
    code = [c for c in nb.cells if c.cell_type == "code"]
    following = code[code.index(cell) + 1].source
    assert "Config.from_namespace(globals())" in following


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_thin(path):
    """No function or class definitions: the analysis lives in the library."""
    for cell in _read(path).cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        defs = [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))
        ]
        assert not defs, f"{path.name}: definitions in a cell: {cell.source[:80]}"


@pytest.mark.parametrize("path", NOTEBOOKS[:-1], ids=lambda p: p.stem)
def test_chapter_states_claim_and_rule_from_the_library_and_records_a_verdict(path):
    """The claim, the rule and the verdict come from the chapter's declaration
    (redundancy.report.chapters): no number of the paper is typed in a chapter's text, and no
    chapter computes its verdict's input in a cell."""
    nb = _read(path)
    text = "\n".join(c.source for c in nb.cells)
    assert f'ch = chapters.chapter("{path.stem}")' in text and "rule = ch.rule" in text
    assert "tables.claim(rule" in text and "tables.rule_text(ch, cfg)" in text
    assert "ch.verdict(cfg" in text and "verdicts.record(cfg, verdict)" in text
    assert "rule.judge(" not in text and "triu_indices_from(s, 3)" not in text
    assert "## Verdict" in text and "verdicts.deviations(cfg, " in text
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for number in ("85%", "92%", "97%", "9,984", "0.715", "1.246", "48.48"):
        assert number not in prose, f"{path.name} types the paper's {number} in its text"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_code_is_hidden_and_figures_have_captions(path):
    nb = _read(path)
    code = [
        c
        for c in nb.cells
        if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
    ]
    assert code, path
    for cell in code:
        tags = cell.metadata.get("tags", [])
        assert {"remove-cell", "remove-input", "hide-input"} & set(tags), (
            path.name,
            cell.source[:60],
        )
        if "Config.from_namespace" in cell.source:
            assert "remove-cell" in tags
        figure = cell.metadata.get("mystnb", {}).get("figure")
        if "plt.show()" in cell.source:
            assert figure and figure["caption"] and figure["name"].startswith("fig-"), cell.source[
                :60
            ]
            # a figure cell draws and nothing else (one output per figure)
            assert "display(" not in cell.source and "steps." not in cell.source


def test_toc_lists_intro_and_every_notebook_once():
    files = book.toc_files(ROOT / "book" / "_toc.yml")
    assert files[0] == "intro"
    assert files[1:-1] == [nb.stem for nb in NOTEBOOKS]
    assert files[-1] == "discussion" and (ROOT / "book" / "discussion.md").is_file()
    assert (ROOT / "book" / "intro.md").is_file()
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"


def test_select_notebooks_by_number_name_or_topic():
    pick = book.select_notebooks
    assert [p.stem for p in pick(NOTEBOOKS, ["3", "05-neurons-ranking", "transfer"])] == [
        "03-neurons-clustering",
        "05-neurons-ranking",
        "06-transfer",
    ]
    assert pick(NOTEBOOKS, None) == NOTEBOOKS
    with pytest.raises(ValueError, match="'only' parameter of build_book.*'99'"):
        pick(NOTEBOOKS, ["99"])


def test_ensure_kernel_binds_this_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", "")
    name = book.ensure_kernel(tmp_path)
    spec = json.loads((tmp_path / "kernels" / name / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    from jupyter_client.kernelspec import KernelSpecManager

    assert Path(KernelSpecManager().find_kernel_specs()[name]) == tmp_path / "kernels" / name


def test_digest_changes_with_notebook_and_parameters(tmp_path):
    nb = tmp_path / "01-x.ipynb"
    nb.write_text("{}")
    a = book.notebook_digest(nb, {"p": 1})
    assert a == book.notebook_digest(nb, {"p": 1})
    assert a != book.notebook_digest(nb, {"p": 2})
    nb.write_text('{"cells": []}')
    assert a != book.notebook_digest(nb, {"p": 1})


def test_runner_refuses_unknown_parameters_before_running(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**DEFAULT, "probe_epoch": 1}))
    with pytest.raises(ValueError, match="did you mean 'probe_epochs'"):
        book.build_book(bad, build_dir=tmp_path, build_html=False)
    assert not (tmp_path / "bad").exists()


def test_runner_lists_missing_inputs_before_running(tmp_path):
    with pytest.raises(FileNotFoundError, match="glue-rte"):
        book.build_book(ROOT / "params" / "paper.yaml", build_dir=tmp_path, build_html=False)
    assert not (tmp_path / "paper").exists()


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory):
    """The book of params/tiny.yaml, built once for this module with an empty result cache:
    ``(build folder, HTML folder)``."""
    from redundancy._utils import cache_root

    tmp_path = tmp_path_factory.mktemp("tiny-book")
    cache = tmp_path / "cache"
    cache.mkdir()
    corpora = cache_root() / "corpora"
    if corpora.is_dir():  # the corpus is input data, not a result: share it
        (cache / "corpora").symlink_to(corpora)
    with pytest.MonkeyPatch.context() as mp:  # the cache is this build's alone
        mp.setenv("REDUNDANCY_CACHE", str(cache))
        html = book.build_book(
            ROOT / "params" / "tiny.yaml",
            build_dir=tmp_path,
            html_dir=tmp_path / "html",
            progress=False,
        )
    return tmp_path, html


@pytest.mark.slow
def test_every_notebook_runs_and_the_book_builds(tiny_book):
    """End to end on params/tiny.yaml with an empty result cache: papermill runs all
    chapters, jupyter-book builds, a second run reuses everything, and a mistyped papermill
    parameter is refused."""
    tmp_path, html = tiny_book
    assert (html / "index.html").is_file()
    for nb in NOTEBOOKS:
        page = html / f"{nb.stem}.html"
        assert page.is_file(), page
    assert "Verdict:" in (html / "03-neurons-clustering.html").read_text()
    results = tmp_path / "tiny" / "results"
    recorded = sorted(p.stem for p in results.glob("*.json"))
    # every result chapter records its verdict (the removal chapter's: minilm's blocks)
    assert recorded == [nb.stem for nb in NOTEBOOKS[:-1]]
    for path in results.glob("*.json"):
        assert json.loads(path.read_text())["level"] in verdicts.LEVELS + verdicts.SETUP_LEVELS
    summary = _read(tmp_path / "tiny" / "09-summary.ipynb")
    shown = json.dumps([c.get("outputs", []) for c in summary.cells])
    assert "06-transfer" in shown
    # the chapters hold results, not progress-bar updates (fine-tuning, extraction, probes):
    # those went to the runner's progress file
    for nb in NOTEBOOKS:
        done = _read(tmp_path / "tiny" / nb.name)
        streams = [
            o for c in done.cells for o in c.get("outputs", []) if o.get("output_type") == "stream"
        ]
        assert not [o for o in streams if "it/s" in o["text"] or "%|" in o["text"]], nb.name
    log = (tmp_path / "tiny" / "progress.log").read_text()
    assert ">> layer_probes" in log and "fine-tune" in log and "%|" in log

    timings = book.execute_notebooks(
        NOTEBOOKS,
        {**Config.from_yaml(ROOT / "params" / "tiny.yaml").to_dict(), "results_dir": str(results)},
        tmp_path / "tiny",
        progress=False,
    )
    assert {t["status"] for t in timings.values()} == {"cached"}

    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="did you mean 'probe_epochs'"):
        pm.execute_notebook(
            str(NOTEBOOKS[-1]),
            str(tmp_path / "bad.ipynb"),
            parameters={"probe_epoch": 1},
            kernel_name=book.ensure_kernel(tmp_path / "jupyter"),
            progress_bar=False,
        )


# What a reader must not meet on a page: the build machine, template and code names, and
# boxes that open on nothing.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:tmp|work|home|root|Users|var|private|opt|mnt)/")
_SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")
_PLURAL_HACK = re.compile(r"\w\(s\)")


def page_problems(page: Path) -> list[str]:
    """Everything on one rendered page of the book that shows the machinery: absolute paths,
    ``{{`` template variables, parameter names in code type in the prose, "(s)" plurals,
    snake_case table headers, code boxes whose output is empty, and figures wider than the
    text column (they would shrink, and their text with them)."""
    from bs4 import BeautifulSoup
    from PIL import Image

    from redundancy.report import plots

    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    main = soup.find("main") or soup.body
    problems = []
    text = main.get_text(" ")
    for hit in _ABSOLUTE_PATH.finditer(text):
        problems.append(f"absolute path: {text[hit.start() : hit.start() + 60]!r}")
    if "{{" in text:
        problems.append(f"template variable: {text[text.index('{{') :][:40]!r}")
    for hit in _PLURAL_HACK.finditer(text):
        problems.append(f"(s) plural: {text[max(0, hit.start() - 20) : hit.end()]!r}")
    names = set(Config.parameter_names())
    for code in main.find_all("code"):
        if code.find_parent("div", class_="cell_input") or code.find_parent("pre"):
            continue
        if code.get_text().strip() in names:
            problems.append(f"parameter name in the prose: {code.get_text().strip()!r}")
    for th in main.find_all("th"):
        header = th.get_text(" ").strip()
        if _SNAKE_CASE.match(header):
            problems.append(f"code name as a table header: {header!r}")
    for cell in main.find_all("div", class_="cell"):
        classes = set(cell.get("class", []))
        folded = {"tag_hide-input", "tag_hide-cell", "tag_hide-output"} & classes
        output = cell.find("div", class_="cell_output")
        shown = output is not None and (output.get_text().strip() or output.find("img"))
        if folded and not shown:
            first = cell.get_text(" ").strip()[:50]
            problems.append(f"a folded code box with nothing under it: {first!r}")
    for img in main.select(".cell_output img"):
        path = page.parent / img["src"]
        width = Image.open(path).size[0]
        if width > plots.CONTENT_WIDTH_PX:
            problems.append(
                f"figure {img['src']} is {width} px wide, the text column "
                f"{plots.CONTENT_WIDTH_PX} px: it would shrink"
            )
    return problems


def test_page_problems_finds_what_it_looks_for(tmp_path):
    """The scan can fail: a planted page with each problem once, and a clean one."""
    from PIL import Image

    Image.new("RGB", (2000, 10)).save(tmp_path / "wide.png")
    Image.new("RGB", (300, 10)).save(tmp_path / "narrow.png")
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><main>"
        "<p>results in /tmp/build/tiny/results and /work/main/x</p>"
        "<p>the paper's {{ redundant_neurons }}, with δ = <code>delta</code>, 3 seed(s)</p>"
        "<table><tr><th>n_features</th><th>features</th></tr></table>"
        '<div class="cell tag_hide-input"><div class="cell_input">x = 1</div></div>'
        '<div class="cell tag_hide-input"><div class="cell_output"><img src="wide.png"></div></div>'
        "</main></body></html>"
    )
    found = page_problems(bad)
    for what in (
        "/tmp/build",
        "/work/main",
        "template variable",
        "'delta'",
        "seed(s)",
        "'n_features'",
        "nothing under it",
        "wide.png",
    ):
        assert any(what in p for p in found), (what, found)
    assert len(found) == 8, found
    good = tmp_path / "good.html"
    good.write_text(
        "<html><body><main><p>run with <code>params/tiny.yaml</code>, 3 seeds</p>"
        "<table><tr><th>features</th><th>training time (s)</th></tr></table>"
        '<div class="cell tag_hide-input"><div class="cell_output"><img src="narrow.png"></div></div>'
        '<div class="cell tag_remove-input"><div class="cell_output"><p>text</p></div></div>'
        "</main></body></html>"
    )
    assert page_problems(good) == []


@pytest.mark.slow
def test_the_rendered_book_shows_no_machinery(tiny_book):
    """Every page of the tiny book, as a reader gets it: no path of the build machine, no
    template or parameter names, no code names as headers, no empty code boxes, and every
    figure at most as wide as the text column."""
    _, html = tiny_book
    pages = [html / "intro.html"] + [html / f"{nb.stem}.html" for nb in NOTEBOOKS]
    found = {page.name: page_problems(page) for page in pages}
    assert not {k: v for k, v in found.items() if v}, found
    # the parameters are on the page once, as a table in chapter 1
    assert "Parameters of this run" in (html / "01-setup.html").read_text()


def test_a_failing_notebook_stops_the_build_naming_notebook_cell_and_error(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in DEFAULT.items()))
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("x = 1\nraise RuntimeError('planted failure')")]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "language": "python",
        "display_name": "Python 3",
    }
    nbformat.write(nb, str(folder / "01-fails.ipynb"))
    nbformat.write(nb, str(folder / "02-never-runs.ipynb"))
    with pytest.raises(book.NotebookExecutionError) as err:
        book.build_book(
            ROOT / "params" / "default.yaml",
            notebooks_dir=folder,
            build_dir=tmp_path / "build",
            build_html=False,
            progress=False,
        )
    msg = str(err.value)
    assert "01-fails.ipynb failed in cell" in msg and "RuntimeError: planted failure" in msg
    assert "raise RuntimeError" in msg
    out = tmp_path / "build" / "default"
    assert not (out / "01-fails.hash").exists() and not (out / "02-never-runs.ipynb").exists()


def test_runner_bar_survives_chapter_weights_that_round_down():
    """Timings of a previous run are floats; a bar total rounded below their sum broke the
    bar's last refresh (tqdm drops a total the count exceeds) on every second run."""
    from redundancy.report.book import _book_bar

    # 858.5 in all: round() gives 858, which the count would exceed by half a second
    weights = {"01": 355.5, "02": 40.0, "03": 185.0, "04": 6.0, "05": 137.0, "06": 135.0}
    bar = _book_bar(weights, progress=True)
    try:
        for w in weights.values():
            bar.update(w)
        assert str(bar).endswith("]") and "858/858 s of work" in str(bar)
    finally:
        bar.close()


def test_first_run_estimates_come_from_units_of_work(tmp_path):
    """A parameter set run for the first time is estimated from its own size: the default's
    units at the reference run's cost give its measured chapter seconds, tiny's give seconds,
    not the 600 s the default's chapter shares gave every set."""
    from redundancy.report import book
    from redundancy.report.config import Config

    notebooks = book.list_notebooks()
    default = book._weights(
        notebooks, tmp_path / "default", book.chapter_units(Config.from_yaml("params/default.yaml"))
    )
    for nb in notebooks:
        reference = book._REFERENCE_SECONDS[nb.stem[:2]]
        assert default[nb.stem] == pytest.approx(max(reference, book._CHAPTER_OVERHEAD))
    tiny_units = book.chapter_units(Config.from_yaml("params/tiny.yaml"))
    tiny = book._weights(notebooks, tmp_path / "tiny", tiny_units)
    assert 8 * book._CHAPTER_OVERHEAD <= sum(tiny.values()) < 150
    # a chapter measured on this machine (another parameter set's timings.json) sets its cost
    other = tmp_path / "other"
    other.mkdir()
    setup = next(nb.stem for nb in notebooks if nb.stem.startswith("01"))
    units = tiny_units["01"] * 10
    (other / "timings.json").write_text(
        json.dumps({setup: {"status": "executed", "seconds": 1008.0, "units": units}})
    )
    again = book._weights(notebooks, tmp_path / "tiny", tiny_units)
    assert again[setup] == pytest.approx(book._CHAPTER_OVERHEAD + 100.0)
    # but a run a hundred times smaller than the set asked about says nothing of its cost:
    # the default book is still estimated from the reference run, not from tiny's overheads
    big = {k: v * 1000 for k, v in tiny_units.items()}
    far = book._weights(notebooks, tmp_path / "big", big)
    reference = book._reference_costs()["01"]
    assert far[setup] == pytest.approx(book._CHAPTER_OVERHEAD + reference * big["01"])
    # and this set's own last timing wins over any estimate
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "timings.json").write_text(
        json.dumps({setup: {"status": "executed", "seconds": 33.0}})
    )
    assert book._weights(notebooks, tmp_path / "tiny", tiny_units)[setup] == 33.0


def test_the_bar_moves_while_a_chapter_runs(tmp_path):
    """`--only NN`: the bar follows the chapter's running time up to 95% of its estimate."""
    from redundancy.report.book import _book_bar, _Monitor

    bar = _book_bar({"01": 20.0, "02": 80.0}, progress=True)
    monitor = _Monitor(tmp_path / "progress.log", bar, "02", span=(20.0, 80.0))
    monitor.t0 -= 30.0  # the chapter has run 30 s
    monitor.advance()
    assert bar.n == pytest.approx(50.0, abs=0.5)
    monitor.t0 -= 1000.0  # far past the estimate: held at 95% until it ends
    monitor.advance()
    assert bar.n == pytest.approx(20.0 + 0.95 * 80.0)
    bar.close()


def test_the_bar_shows_an_announced_step_until_it_is_over(tmp_path, monkeypatch):
    """A kernel's announcement shows beside the chapter until an empty one ends it; the
    kernel's own progress bar shows after it."""
    from redundancy import _utils
    from redundancy.report.book import _book_bar, _Monitor

    shown = []
    bar = _book_bar({"01": 20.0}, progress=False)
    monkeypatch.setattr(bar, "set_postfix_str", lambda text, refresh=True: shown.append(text))
    log = tmp_path / "progress.log"
    monitor = _Monitor(log, bar, "01-setup", span=(0.0, 20.0))
    monkeypatch.setenv(_utils.PROGRESS_ENV, str(log))
    _utils.announce("dequantising x.gguf once")
    monitor._show(log.read_text())
    assert shown[-1] == "01-setup | dequantising x.gguf once"
    _utils.announce("")
    monitor._show(log.read_text() + "minilm/brown-upos/train:  40%|####  | 4/10\n")
    assert shown[-1] == "01-setup | minilm/brown-upos/train:  40%|####  | 4/10"
    bar.close()


def test_runner_removes_parameter_cells_and_folded_cells_that_show_nothing(tmp_path):
    """The page holds no parameter cell (papermill's injected one names this machine's
    result folder) and no "Show code cell" box that opens on nothing; cells with output and
    visible cells stay as they are."""

    def cell(source, tags, outputs=()):
        c = nbformat.v4.new_code_cell(source)
        c.metadata["tags"] = list(tags)
        c.outputs = [nbformat.from_dict(o) for o in outputs]
        return c

    markdown = {"output_type": "display_data", "metadata": {}}
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        cell("models = ['minilm']", ["parameters"]),
        cell("results_dir = '/tmp/build/tiny/results'", ["injected-parameters"]),
        cell("scores = steps.layer_probe_scores(...)", ["hide-input"]),
        cell("Markdown('')", ["hide-input"], [{**markdown, "data": {"text/markdown": " "}}]),
        cell("tables.show(x)", ["hide-input"], [{**markdown, "data": {"text/html": "<table/>"}}]),
        cell("plt.show()", ["hide-input"], [{**markdown, "data": {"image/png": "iVBOR"}}]),
        cell("Markdown(verdict)", ["remove-input"], [{**markdown, "data": {"text/plain": "x"}}]),
        cell("x = 1", []),
    ]
    nbformat.write(nb, str(tmp_path / "in.ipynb"))
    book._tag_cells(tmp_path / "in.ipynb", tmp_path / "out.ipynb")
    out = _read(tmp_path / "out.ipynb")
    removed = ["remove-cell" in c.metadata.get("tags", []) for c in out.cells]
    assert removed == [True, True, True, True, False, False, False, False]
