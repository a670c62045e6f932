"""Run every chapter notebook with papermill, then build the jupyter-book.

``python -m redundancy book --params params/NAME.yaml`` (and ``make book``) calls
:func:`build_book`, which

1. validates the parameter file (:class:`redundancy.report.config.Config`) and checks, before
   running anything, that every model and data folder it names exists;
2. executes ``notebooks/NN-*.ipynb`` in order with papermill on a kernel bound to the
   current interpreter, injecting the parameters, and writes the executed copies to
   ``build/<NAME>/``; a notebook whose source, parameters and library source are unchanged
   since its last successful run is not executed again (a hash sits next to the copy);
3. assembles the executed copies with the pages of ``book/`` into ``build/<NAME>/book/``
   and runs ``jupyter-book build`` (notebooks are not re-executed there), then copies the
   HTML to ``book/_build/html``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .._utils import atomic_write_text, entry_lock, stable_hash

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
BOOK_DIR = REPO_ROOT / "book"
BUILD_DIR = REPO_ROOT / "build"
KERNEL_NAME = "redundancy-python"
_NOTEBOOK_RE = re.compile(r"^(\d\d)-[a-z0-9-]+\.ipynb$")


class NotebookExecutionError(RuntimeError):
    """A chapter failed: names the notebook, the cell and the error (``summary``: one line)."""

    summary = ""


def list_notebooks(notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """The chapter notebooks ``NN-topic.ipynb`` of ``notebooks_dir``, in order."""
    folder = Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR
    found = sorted(p for p in folder.glob("*.ipynb") if _NOTEBOOK_RE.match(p.name))
    if not found:
        raise FileNotFoundError(f"No chapter notebooks (NN-topic.ipynb) in {str(folder)!r}.")
    return found


def select_notebooks(notebooks: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    """Keep the notebooks named in ``only`` (``"3"``, ``"03"``, ``"03-neurons-clustering"``,
    ``"neurons-clustering"`` or the file name); None keeps all."""
    if not only:
        return list(notebooks)
    chosen, unknown = [], []
    for item in only:
        item = str(item).removesuffix(".ipynb")
        hits = [
            nb
            for nb in notebooks
            if item in (nb.stem, nb.stem[:2], nb.stem[3:])
            or (item.isdigit() and int(item) == int(nb.stem[:2]))
        ]
        (chosen.extend(hits) if hits else unknown.append(item))
    if unknown:
        names = ", ".join(nb.stem for nb in notebooks)
        raise ValueError(
            f"The 'only' parameter of build_book must name chapter notebooks. Got {unknown!r}, "
            f"which match none of: {names}."
        )
    return [nb for nb in notebooks if nb in chosen]


def ensure_kernel(folder: str | os.PathLike) -> str:
    """Write a kernelspec bound to this interpreter under ``folder`` and put it on JUPYTER_PATH.

    Works on a clean machine: nothing has to be registered by hand, and the notebooks always
    run in the environment that runs the book (a ``python3`` kernel of another environment
    found first on the Jupyter path would not see the library).
    """
    spec_dir = Path(folder) / "kernels" / KERNEL_NAME
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({Path(sys.prefix).name})",
        "language": "python",
        "metadata": {"debugger": False},
    }
    atomic_write_text(spec_dir / "kernel.json", json.dumps(spec, indent=1))
    paths = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    if str(Path(folder)) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(Path(folder)), *paths])
    return KERNEL_NAME


def library_source_hash() -> str:
    """Hash of every Python file of the library (a changed library re-executes the notebooks)."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def notebook_digest(notebook: Path, parameters: dict, extra: str = "") -> str:
    """Hash of what an executed copy depends on: notebook source, parameters, library source."""
    nb_hash = hashlib.sha256(notebook.read_bytes()).hexdigest()
    return stable_hash(
        {"nb": nb_hash, "params": parameters, "lib": library_source_hash(), "extra": extra}
    )


def _results_hash(results_dir: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(results_dir.glob("*.json")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def execute_notebooks(
    notebooks: Sequence[Path],
    parameters: dict,
    out_dir: Path,
    *,
    force: bool = False,
    progress: bool = True,
) -> dict[str, dict]:
    """Execute ``notebooks`` in order with papermill, skipping unchanged ones.

    Parameters
    ----------
    notebooks : list of Path
        Chapter notebooks, usually :func:`list_notebooks`.
    parameters : dict
        Injected into each notebook's ``parameters`` cell (a :meth:`Config.to_dict`).
    out_dir : Path
        Where the executed copies, their hashes and ``timings.json`` go.
    force : bool
        Execute even when the stored hash says nothing changed, and recompute every cached
        result the chapters ask for (once per build, not once per chapter).
    progress : bool
        Show the chapters and the step running, with its own progress, in the terminal.

    Returns
    -------
    dict
        Per notebook stem: ``{"status": "executed"|"cached", "seconds": float}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    kernel = ensure_kernel(out_dir / "jupyter")
    env = dict(_KERNEL_ENV, REDUNDANCY_PROGRESS=str(out_dir / "progress.log"))
    if force:
        env["REDUNDANCY_RECOMPUTE_SINCE"] = repr(time.time())
    with _environment(env):
        return _execute(notebooks, parameters, out_dir, kernel, force=force, progress=progress)


# Environment of the kernels the runner starts: the book shows results, not the model-loading
# reports transformers prints; progress bars go to a file the runner shows in the terminal
# (a reader in JupyterLab still gets them in the notebook).
_KERNEL_ENV = {
    # idle OpenMP threads sleep instead of spinning: with a core shared with any other work,
    # spinning threads made a fine-tuning step 20x slower (6.4 s instead of 0.3 s, measured)
    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONWARNINGS": "ignore:IProgress not found",
}

# Seconds each chapter took in the reference run of params/default.yaml (benchmarks/README.md,
# `book-default` of 2026-12-06, a 2-core CPU, empty cache). With the units of work of that
# run they give a cost per unit for each chapter, so a parameter set run for the first time
# is estimated from its own size.
_REFERENCE_SECONDS = {
    "01": 347.3,
    "02": 61.7,
    "03": 80.5,
    "04": 9.6,
    "05": 69.7,
    "06": 59.3,
    "07": 28.6,
    "08": 145.8,
    "09": 3.1,
}
_CHAPTER_OVERHEAD = 8.0
"""Seconds a chapter costs whatever its size (kernel start, imports, tables and figures)."""
_WIDTH = {"minilm": (7, 384), "mpnet": (13, 768), "smollm2": (31, 576)}
_WORDS_PER_SENTENCE = 25  # Brown sentences average about 21 words, plus special tokens


def _instances(cfg, task: str, split: str) -> tuple[int, int]:
    """(instances, words) of a split as the parameters cap it (a rough size for uncapped ones)."""
    from ..data.tasks import task_level, task_pairs

    options = cfg.task_options.get(task, {})
    if task_level(task) == "token":
        n = options.get(f"{split}_tokens") or (1_000_000 if split == "train" else 100_000)
        return int(n), int(n)
    n = options.get(f"{split}_sentences") or (40_000 if split == "train" else 5_000)
    return int(n), int(n) * _WORDS_PER_SENTENCE * (2 if task_pairs(task) else 1)


def chapter_units(cfg) -> dict[str, float]:
    """Units of work of each chapter of a parameter set: words through the encoders (setup),
    instance x feature x epoch products of the probes, instance x feature^2 of correlations.

    Only ratios between two parameter sets matter: a chapter's seconds are its units times a
    cost per unit measured on an earlier run (this machine's, or the reference run's).
    """
    width = encoder = 0.0
    for model in cfg.models:
        n_layers, n_hidden = _WIDTH.get(str(model), (13, 768))
        width += n_layers * n_hidden
        encoder += n_layers * n_hidden**1.5
    words = train = 0.0
    for task in cfg.tasks:
        for split in ("train", "dev", "test"):
            n, w = _instances(cfg, task, split)
            words += w
            train += n if split == "train" else 0
    finetune = 0.0
    if cfg.finetune:
        for task in cfg.sentence_tasks:
            n, w = _instances(cfg, task, "train")
            cap = cfg.finetune_max_train_sentences
            kept = min(n, cap) if cap else n
            finetune += 3 * kept * (w / max(n, 1)) * cfg.finetune_epochs  # forward + backward
    # exponents fitted to the two reference books (minilm and mpnet, benchmarks/README.md): a
    # forward pass grows with layers x hidden^1.5 here, correlations with width^1.25, and the
    # joint probes, bound by their per-step overheads, with about the root of the width
    probe = train * width**0.5 * cfg.probe_epochs * cfg.n_seeds * (2 if cfg.control_tasks else 1)
    correlation = train * width**1.25
    timing = cfg.timing_instances * cfg.timing_repeats * _WORDS_PER_SENTENCE * encoder / 1e4 + (
        cfg.timing_probe_instances * sum(cfg.timing_features) * 10 * cfg.timing_repeats
    )
    return {
        "01": (words + finetune) * encoder,
        "02": correlation,
        "03": correlation + probe * len(cfg.thresholds),
        "04": probe,
        "05": probe * 4,
        "06": probe * 3 * len(cfg.delta_pairs),
        "07": timing,
        "08": 1.0 + _removal_units(cfg),
        "09": 1.0,
    }


def _removal_units(cfg) -> float:
    """The removal chapter's work, in seconds of the reference machine, roughly
    (:func:`redundancy.report.steps.removal_encoder.reference_seconds`; 600 s per decoder)."""
    from .chapters import decoders, removal_encoders
    from .steps.removal_encoder import reference_seconds

    try:
        return 600.0 * len(decoders(cfg)) + sum(
            reference_seconds(m, _WIDTH.get(str(m), (13, 768)), cfg) for m in removal_encoders(cfg)
        )
    except Exception:  # noqa: BLE001 - an estimate must never stop a run
        return 0.0


def _reference_costs() -> dict[str, float]:
    from .config import Config, resolve_params

    try:
        units = chapter_units(Config.from_yaml(resolve_params("params/default.yaml")))
    except (OSError, ValueError):  # an installed copy without params/: the defaults
        units = chapter_units(Config())
    return {
        k: max(seconds - _CHAPTER_OVERHEAD, 0.0) / max(units[k], 1e-9)
        for k, seconds in _REFERENCE_SECONDS.items()
    }


def _measured_costs(build_root: Path, units: dict | None = None) -> dict[str, float]:
    """Cost per unit of each chapter from every parameter set executed on this machine (their
    ``timings.json`` keep each executed chapter's seconds and units): the median over runs
    of a comparable size. A run with less than a tenth of the units asked about is left
    out: at that size fixed costs (loading models, starting fine-tuning) swamp the cost per
    unit, and a tiny run would predict hours for the default book."""
    costs: dict[str, list[float]] = {}
    for path in build_root.glob("*/timings.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for stem, t in record.items() if isinstance(record, dict) else ():
            if isinstance(t, dict) and t.get("status") == "executed" and t.get("units"):
                key, done = stem[:2], float(t["units"])
                if units and key in units and done < 0.1 * float(units[key]):
                    continue
                seconds = max(float(t["seconds"]) - _CHAPTER_OVERHEAD, 0.0)
                costs.setdefault(key, []).append(seconds / done)
    return {k: sorted(v)[len(v) // 2] for k, v in costs.items()}


@contextlib.contextmanager
def _environment(env: dict):
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _kernel_manager_class():
    """Kernels talk to the runner over local IPC sockets (no TCP, so no encryption warning)."""
    from jupyter_client.manager import KernelManager

    class LocalKernelManager(KernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

    return LocalKernelManager


class _Monitor(threading.Thread):
    """Shows, on the runner's bar, the step a kernel announced and its own progress bar."""

    def __init__(self, path: Path, bar, chapter: str, span=(0.0, 0.0)):
        super().__init__(daemon=True)
        self.path, self.bar, self.chapter = path, bar, chapter
        self.step, self.stop = "", threading.Event()
        self.base, self.expected = span
        self.t0 = time.perf_counter()

    def advance(self) -> None:
        """Move the bar with the time the chapter has run, up to 95% of its expected seconds
        (the rest when it ends), so a long chapter, or one run alone with --only, shows
        progress and time left before it finishes."""
        elapsed = time.perf_counter() - self.t0
        _move_bar(self.bar, self.base + min(elapsed, 0.95 * self.expected))

    def run(self) -> None:
        offset = self.path.stat().st_size if self.path.is_file() else 0
        while not self.stop.wait(0.5):
            self.advance()
            if not self.path.is_file():
                continue
            with open(self.path, encoding="utf-8", errors="replace") as f:
                f.seek(offset)
                text = f.read()
                offset = f.tell()
            if text:
                self._show(text)

    def _show(self, text: str) -> None:
        lines = [x for x in text.replace("\r", "\n").split("\n") if x.strip()]
        for line in lines:
            if line.startswith(">> "):
                self.step = line[3:].strip()
        bar_text = next((x.strip() for x in reversed(lines) if not x.startswith(">> ")), "")
        status = " | ".join(x for x in (self.chapter, self.step, bar_text) if x)
        self.bar.set_postfix_str(status[:150], refresh=True)


def _weights(notebooks, out_dir: Path, units: dict | None = None) -> dict[str, float]:
    """Expected seconds per chapter: this parameter set's last timing of it; else its units of
    work (:func:`chapter_units`) times the cost per unit measured on this machine (any
    parameter set run before), else the reference run's cost per unit."""
    tpath = out_dir / "timings.json"
    try:
        previous = json.loads(tpath.read_text()) if tpath.is_file() else {}
    except (OSError, ValueError):
        previous = {}
    known = {k: v["seconds"] for k, v in previous.items() if v.get("status") == "executed"}
    costs = {**_reference_costs(), **_measured_costs(out_dir.parent, units)} if units else {}
    out = {}
    for nb in notebooks:
        key = nb.stem[:2]
        if nb.stem in known:
            out[nb.stem] = max(float(known[nb.stem]), 1.0)
        elif units and key in units and key in costs:
            out[nb.stem] = _CHAPTER_OVERHEAD + costs[key] * units[key]
        else:
            out[nb.stem] = 60.0
    return out


def _book_bar(weights: dict, progress: bool):
    """The runner's bar, in expected seconds of work. Its total stays the exact float sum:
    tqdm drops a total that the count exceeds by half a unit, and a rounded total could be."""
    from tqdm.auto import tqdm

    return tqdm(
        total=sum(weights.values()),
        desc="book",
        unit="s",
        disable=not progress,
        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of work [{elapsed}<{remaining}{postfix}]",
    )


def _units(parameters: dict) -> dict[str, float]:
    from .config import Config

    try:
        return chapter_units(Config.from_dict(parameters))
    except (ValueError, TypeError, KeyError):  # parameters not of a Config: no estimate
        return {}


def _execute(notebooks, parameters, out_dir, kernel, *, force, progress):
    from tqdm.auto import tqdm

    results_dir = Path(parameters["results_dir"])
    timings: dict[str, dict] = {}
    units = _units(parameters)
    weights = _weights(notebooks, out_dir, units)
    bar = _book_bar(weights, progress)
    done = 0.0
    for nb in notebooks:
        target = out_dir / nb.name
        stamp = out_dir / f"{nb.stem}.hash"
        extra = _results_hash(results_dir) if "summary" in nb.stem else ""
        digest = notebook_digest(nb, parameters, extra)
        if (
            not force
            and target.is_file()
            and stamp.is_file()
            and stamp.read_text().strip() == digest
        ):
            timings[nb.stem] = {"status": "cached", "seconds": 0.0}
            tqdm.write(f"  {nb.stem:28s} unchanged, kept {target}")
            done += weights[nb.stem]
            _move_bar(bar, done)
            continue
        stamp.unlink(missing_ok=True)
        start = time.perf_counter()
        _run_one(nb, target, parameters, kernel, out_dir, bar, progress, (done, weights[nb.stem]))
        seconds = time.perf_counter() - start
        atomic_write_text(stamp, digest + "\n")
        timings[nb.stem] = {"status": "executed", "seconds": round(seconds, 1)}
        if nb.stem[:2] in units:
            timings[nb.stem]["units"] = units[nb.stem[:2]]
        tqdm.write(f"  {nb.stem:28s} executed in {seconds:7.1f} s")
        done += weights[nb.stem]
        _move_bar(bar, done)
    bar.close()
    previous = {}
    tpath = out_dir / "timings.json"
    if tpath.is_file():
        previous = json.loads(tpath.read_text())
    previous.update(
        {k: v for k, v in timings.items() if v["status"] == "executed" or k not in previous}
    )
    atomic_write_text(tpath, json.dumps(previous, indent=1))
    return timings


def _move_bar(bar, n: float) -> None:
    """Set the runner's bar to ``n`` seconds of work (never past its total, never back)."""
    n = min(n, bar.total or n)
    if n > bar.n:
        bar.update(n - bar.n)


def _run_one(nb, target, parameters, kernel, out_dir, bar, progress, span=(0.0, 0.0)) -> None:
    import papermill as pm

    monitor = _Monitor(out_dir / "progress.log", bar, nb.stem, span)
    if progress:
        monitor.start()
    try:
        pm.execute_notebook(
            str(nb),
            str(target),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(out_dir),
            progress_bar=False,
            log_output=False,
            kernel_manager_class=_kernel_manager_class(),
        )
    except pm.PapermillExecutionError as exc:
        source = "\n    ".join(str(exc.source).splitlines()[:12])
        error = NotebookExecutionError(
            f"Notebook {nb.name} failed in cell {exc.exec_count} (cell index {exc.cell_index}):\n"
            f"    {source}\n{exc.ename}: {exc.evalue}\n"
            f"The executed copy, with the full traceback, is {target}."
        )
        error.summary = (
            f"notebook {nb.name} failed in cell {exc.exec_count}: {exc.ename}: "
            f"{' '.join(str(exc.evalue).split())} (full traceback in {target})"
        )
        raise error from None
    finally:
        monitor.stop.set()


def toc_files(toc_path: Path) -> list[str]:
    """Every page named in a jupyter-book ``_toc.yml`` (root first), without suffix."""
    import yaml

    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [
        str(Path(f).with_suffix("")) if Path(f).suffix in (".md", ".ipynb") else f for f in files
    ]


def _output_is_blank(output) -> bool:
    """An output a reader would see as an empty box (an empty Markdown or HTML display)."""
    if output.get("output_type") == "stream":
        return not str(output.get("text", "")).strip()
    if output.get("output_type") == "error":
        return False
    data = output.get("data", {})
    for mime in ("text/markdown", "text/html"):
        if mime in data:
            return not str(data[mime]).strip()
    return not data or set(data) == {"text/plain"} and not str(data["text/plain"]).strip()


def _shows_nothing(cell) -> bool:
    """A code cell whose input is folded away and whose outputs are empty: on the page it
    is a "Show code cell" box with nothing under it."""
    tags = cell.metadata.get("tags", [])
    hidden = {"hide-input", "hide-cell", "remove-input"} & set(tags)
    return bool(hidden) and all(_output_is_blank(o) for o in cell.get("outputs", []))


def _tag_cells(src: Path, dst: Path) -> None:
    """Copy an executed notebook, removing from the page what only concerns the machine:
    the parameter cells (papermill's injected cell holds this machine's result folder; the
    parameters are shown once, as a table, in chapter 1) and hidden code cells that
    produced nothing."""
    import nbformat

    nb = nbformat.read(str(src), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        machine = "parameters" in tags or "injected-parameters" in tags
        if (machine or _shows_nothing(cell)) and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, str(dst))


def _add_substitutions(config_path: Path, extra: dict | None = None) -> None:
    """Give the book's Markdown pages the paper's numbers from :mod:`redundancy.report.paper`
    (MyST substitutions), so no page types them, and ``extra`` ones (the run's results)."""
    import yaml

    from .paper import substitutions

    config = yaml.safe_load(config_path.read_text())
    parse = config.setdefault("parse", {})
    extensions = parse.setdefault("myst_enable_extensions", [])
    if "substitution" not in extensions:
        extensions.append("substitution")
    parse["myst_substitutions"] = {
        **substitutions(),
        **parse.get("myst_substitutions", {}),
        **(extra or {}),
    }
    config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def results_summary(cfg) -> str:
    """One paragraph for the introduction: every result chapter's verdict for this run, by
    task kind where the chapter judges tasks (from the recorded verdicts)."""
    from . import verdicts

    found = verdicts.load(cfg)
    if found.empty:
        return "This build has not recorded its verdicts yet."
    parts = []
    for r in found.itertuples():
        if str(r.chapter).startswith(("01-", "09-")):
            continue
        heads = [p for p in (r.rows or []) if p.get("headline") and p.get("kind") != "all"]
        link = f"[{str(r.chapter)[:2].lstrip('0')}]({r.chapter})"
        if heads and len({p["level"] for p in heads}) > 1:
            text = "; ".join(f"{p['scope']} *{p['level']}*" for p in heads)
        else:
            text = f"*{r.level}*"
        parts.append(f"chapter {link}: {text}")
    counts = verdicts.summary_counts(found)
    lead = ", ".join(f"{n} {level}" for level, n in counts.items() if n)
    return (
        f"For the parameters of this build ({', '.join(cfg.models)} on "
        f"{', '.join(cfg.tasks)}), the result chapters read: {lead}. "
        + "; ".join(parts)
        + ". The summary chapter gathers them with their intervals."
    )


def discussion_text(cfg) -> str:
    """The closing page's text for this run (:func:`redundancy.report.interpret.discussion`
    of its recorded verdicts)."""
    from . import verdicts
    from .interpret import discussion

    return discussion(cfg, verdicts.load(cfg))


def assemble_book(
    executed_dir: Path,
    book_src: Path,
    target: Path,
    notebooks: Sequence[Path],
    substitutions: dict | None = None,
) -> Path:
    """Copy the book pages and the executed notebooks into ``target`` (a jupyter-book source);
    ``substitutions`` are added to the pages' MyST substitutions."""
    missing = [nb.name for nb in notebooks if not (executed_dir / nb.name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Cannot build the book: no executed copy of {', '.join(missing)} in {executed_dir}. "
            "Run the book once without --only (or run those chapters) first."
        )
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(book_src, target, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    for nb in notebooks:
        _tag_cells(executed_dir / nb.name, target / nb.name)
    _add_substitutions(target / "_config.yml", substitutions)
    pages = {p.with_suffix("").name for p in target.iterdir() if p.suffix in (".md", ".ipynb")}
    toc = toc_files(target / "_toc.yml")
    absent = [f for f in toc if f not in pages]
    unlisted = sorted(p for p in pages if p not in toc)
    if absent or unlisted:
        raise ValueError(
            f"book/_toc.yml and the pages disagree: listed but missing {absent}, present but not "
            f"listed {unlisted}. Edit book/_toc.yml so it lists every notebook and page once."
        )
    return target


def run_jupyter_book(source: Path, *, strict: bool = True) -> Path:
    """``jupyter-book build`` of ``source``; returns ``source/_build/html``.

    With ``strict`` warnings are errors (``-W -n --keep-going``), reported with the build log.
    """
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe)] if exe.is_file() else [shutil.which("jupyter-book") or "jupyter-book"]
    cmd += ["build", str(source), "--all"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    logger.info("Running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        log = (proc.stdout + "\n" + proc.stderr).strip().splitlines()
        tail = "\n".join(log[-40:])
        raise RuntimeError(
            f"jupyter-book build of {source} failed (exit {proc.returncode}):\n{tail}"
        )
    html = source / "_build" / "html"
    if not (html / "index.html").is_file():
        raise RuntimeError(f"jupyter-book build finished but {html / 'index.html'} is missing.")
    return html


def build_book(
    params_path: str | os.PathLike,
    *,
    only: Sequence[str] | None = None,
    build_html: bool = True,
    force: bool = False,
    build_dir: str | os.PathLike | None = None,
    html_dir: str | os.PathLike | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    book_dir: str | os.PathLike | None = None,
    strict: bool = True,
    progress: bool = True,
) -> Path:
    """Execute the chapter notebooks on a parameter file and build the HTML book.

    Parameters
    ----------
    params_path : path
        A ``params/NAME.yaml`` file; validated, and every model/data folder it names is
        checked before anything runs.
    only : list of str, optional
        Execute only these chapters (``"03"``, ``"neurons-clustering"``, ...); the book is
        still built from every executed copy present.
    build_html : bool
        Build the jupyter-book after executing (``--no-html`` turns it off).
    force : bool
        Re-execute notebooks even when notebook, parameters and library are unchanged.
    build_dir : path, optional
        Root of the executed copies (default ``build/``); they go to ``build_dir/NAME/``.
    html_dir : path, optional
        Where the HTML ends (default ``book/_build/html``).
    notebooks_dir, book_dir : path, optional
        Sources (default the checkout's ``notebooks/`` and ``book/``).
    strict : bool
        Treat jupyter-book warnings as errors.
    progress : bool
        Show progress bars.

    Returns
    -------
    Path
        The HTML folder (or the executed-notebook folder when ``build_html`` is false).

    Raises
    ------
    NotebookExecutionError
        When a notebook fails: names the notebook, the cell and the error.
    """
    from .config import Config, resolve_params

    params_path = resolve_params(params_path)
    cfg = Config.from_yaml(params_path)
    cfg.check_inputs()
    out_dir = Path(build_dir or BUILD_DIR).resolve() / params_path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:  # a second book on the same parameters is refused, not run on top of the first
            stack.enter_context(entry_lock(out_dir / ".book.lock", wait=False))
        except BlockingIOError:
            raise RuntimeError(
                f"Another book on {params_path.name} is being built from this checkout (it "
                f"holds {out_dir / '.book.lock'}); wait for it to end, or pass another build "
                "folder."
            ) from None
        return _build_locked(
            cfg, out_dir, only, build_html, force, html_dir, notebooks_dir, book_dir, strict,
            progress,
        )  # fmt: skip


def _build_locked(
    cfg, out_dir, only, build_html, force, html_dir, notebooks_dir, book_dir, strict, progress
) -> Path:
    """:func:`build_book` once it holds the lock of its build folder."""
    results_dir = out_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    parameters = cfg.to_dict()
    parameters["results_dir"] = str(results_dir)
    all_notebooks = list_notebooks(notebooks_dir)
    chosen = select_notebooks(all_notebooks, only)
    start = time.perf_counter()
    timings = execute_notebooks(chosen, parameters, out_dir, force=force, progress=progress)
    ran = sum(t["seconds"] for t in timings.values())
    logger.info(
        "Notebooks done in %.1f s (%d executed)",
        ran,
        sum(t["status"] == "executed" for t in timings.values()),
    )
    if not build_html:
        return out_dir
    source = assemble_book(
        out_dir,
        Path(book_dir or BOOK_DIR),
        out_dir / "book",
        all_notebooks,
        {"results_summary": results_summary(cfg), "discussion": discussion_text(cfg)},
    )
    html = run_jupyter_book(source, strict=strict)
    final = Path(html_dir) if html_dir else Path(book_dir or BOOK_DIR) / "_build" / "html"
    if final.resolve() != html.resolve():
        final.parent.mkdir(parents=True, exist_ok=True)
        # books on other parameter files share this folder: one copies at a time
        with entry_lock(final.parent / f".{final.name}.lock"):
            if final.exists():
                shutil.rmtree(final)
            shutil.copytree(html, final)
    print(f"Book built in {time.perf_counter() - start:.1f} s: {final / 'index.html'}")
    return final
