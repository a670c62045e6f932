"""Open notebooks in JupyterLab in headless Chromium, run all cells, fail on any error.

What `make lab-check` runs; it checks the README's "jupyter lab notebooks/ and Run All" path.
For each notebook it

1. copies it into a scratch folder (JupyterLab saves outputs there, never into notebooks/),
   with the parameters of --params / -p injected by papermill after its `parameters` cell;
2. starts JupyterLab on 127.0.0.1 (free port, random token, fresh settings, the cache of
   REDUNDANCY_CACHE, default <repo>/.cache as in the Makefile, and this checkout's library
   first on PYTHONPATH);
3. opens the copy in headless Chromium, checks that JupyterLab starts the kernel named in the
   notebook's metadata without asking, clicks Run > Run All Cells and waits until every cell
   has run and the kernel is idle;
4. fails if an output area shows an error (an error output, or a traceback on stderr) or a
   cell did not run, and saves a screenshot, the executed copy and a JSON report.

Chromium comes from the system (Debian: apt-get install chromium) and is driven by the
`playwright` package (pip install -e ".[browser]"); no browser is ever downloaded.

    .venv/bin/python tools/check_lab.py                                   # chapter 02, defaults
    .venv/bin/python tools/check_lab.py notebooks/04-layers-probes.ipynb --params params/tiny.yaml
    .venv/bin/python tools/check_lab.py notebooks/01-setup.ipynb -p probe_epochs 1 --out /tmp/lab
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The fastest chapter that goes through the library (cached activations, CKA, a figure, tables).
# (chapter 02 on the default parameters: about 20 s of Run All on a 2-core CPU, cache warm)
DEFAULT_NOTEBOOK = next(
    iter(sorted((ROOT / "notebooks").glob("02-*.ipynb"))),
    ROOT / "notebooks" / "02-layers-cka.ipynb",
)
DEFAULT_OUT = ROOT / "build" / "lab"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# Flags that work in containers and offline machines; the profile folder is a fresh temporary
# one (Playwright passes it as --user-data-dir).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# JupyterLab user settings for the check: every cell in the DOM (no windowing), no blank space
# after the last cell, no news or update pop-ups.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
STDERR_MIME = "application/vnd.jupyter.stderr"
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on show
# A traceback as IPython prints it, or the last line of one (SyntaxError has no "Traceback").
TRACEBACK_RE = re.compile(
    r"Traceback \(most recent call last\)|^\s*(?:\w+\.)*\w*(?:Error|Exception)\b:", re.MULTILINE
)
MAX_SCREENSHOT_HEIGHT = 16_000

# One entry per code cell: its prompt and what its output areas show.
_CELLS_JS = """(panel) => Array.from(document.querySelectorAll(panel + ' .jp-Cell')).map((c, i) => ({
  index: i,
  code: c.classList.contains('jp-CodeCell'),
  prompt: ((c.querySelector('.jp-InputArea-prompt') || {}).textContent || '').trim(),
  outputs: Array.from(c.querySelectorAll('.jp-OutputArea-output')).map(o => ({
    mime: o.getAttribute('data-mime-type') || '',
    text: (o.textContent || '').slice(0, 4000),
  })),
}))"""


def launch_chromium(pw, executable: str | os.PathLike, profile: str | os.PathLike, **options):
    """A Playwright persistent context of the system Chromium on a fresh profile folder.

    Parameters
    ----------
    pw : playwright.sync_api.Playwright
        From ``sync_playwright()``.
    executable : path
        The Chromium binary, usually ``/usr/bin/chromium``.
    profile : path
        An empty folder, the browser's ``--user-data-dir``.
    **options
        Passed to ``launch_persistent_context`` (``viewport``, ...).
    """
    return pw.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(executable),
        headless=True,
        args=list(CHROMIUM_FLAGS),
        **options,
    )


def browser_missing(chromium: str | os.PathLike = DEFAULT_CHROMIUM) -> str | None:
    """Why the browser check cannot run here (None when Chromium and playwright are present)."""
    if not (Path(chromium).is_file() and os.access(chromium, os.X_OK)):
        return f"no Chromium at {chromium} (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'the playwright package is missing (pip install -e ".[browser]")'
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_notebook(source: Path, target: Path, parameters: dict) -> dict:
    """Copy ``source`` to ``target``, injecting ``parameters`` with papermill; return the
    notebook's kernelspec metadata."""
    import nbformat

    if parameters:
        from papermill.iorw import load_notebook_node
        from papermill.parameterize import parameterize_notebook

        nb = parameterize_notebook(load_notebook_node(str(source)), parameters, report_mode=False)
    else:
        nb = nbformat.read(str(source), as_version=4)
    nbformat.write(nb, str(target))
    return dict(nb.metadata.get("kernelspec", {}))


def load_parameters(params_file: Path | None, pairs: list[list[str]] | None) -> dict:
    """Parameters to inject: a params YAML validated by the library's Config, then ``-p``
    pairs (values parsed as YAML, checked by the notebook itself)."""
    from redundancy.constraints import parse_yaml

    parameters: dict = {}
    if params_file is not None:
        from redundancy.report import Config

        parameters.update(Config.from_yaml(params_file).to_dict())
    for name, value in pairs or []:
        # a syntax error names the option and the problem, not a bare caret under the value
        parameters[name] = parse_yaml(value, f"-p {name} {value!r}")
    return parameters


def bind_kernel(folder: Path, name: str) -> Path:
    """Write a kernelspec ``name`` bound to this interpreter under ``folder/kernels``."""
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({name}, bound by check_lab)",
        "language": "python",
    }
    spec_dir = folder / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return folder


class LabServer:
    """A JupyterLab server on 127.0.0.1 with a random token, fresh settings and workspaces."""

    def __init__(self, root: Path, scratch: Path, *, jupyter_path: Path | None = None):
        self.root, self.scratch = root, scratch
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = scratch / "jupyterlab.log"
        settings = scratch / "settings"
        for plugin, values in LAB_SETTINGS.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.env = dict(os.environ, JUPYTER_CONFIG_DIR=str(scratch / "config"))
        self.env["JUPYTER_RUNTIME_DIR"] = str(scratch / "runtime")
        self.env.setdefault("REDUNDANCY_CACHE", str(ROOT / ".cache"))
        self.env.setdefault("PYTHONHASHSEED", "0")
        self.env.setdefault("TOKENIZERS_PARALLELISM", "false")
        # the kernel imports the library of this checkout, whichever one .venv has installed
        paths = [str(ROOT), *filter(None, self.env.get("PYTHONPATH", "").split(os.pathsep))]
        self.env["PYTHONPATH"] = os.pathsep.join(paths)
        if jupyter_path is not None:
            old = self.env.get("JUPYTER_PATH", "").split(os.pathsep)
            paths = [str(jupyter_path), *filter(None, old)]
            self.env["JUPYTER_PATH"] = os.pathsep.join(paths)
        self.command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={scratch / 'workspaces'}",
            "--LabApp.extension_manager=readonly",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            self.command.append("--allow-root")
        self.process: subprocess.Popen | None = None

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 30) -> str:
        lines = (
            self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        )
        return "\n".join(lines[-n:])

    def __enter__(self) -> LabServer:
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root
        )
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited at start-up:\n{self.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                self.api("/api/status")
                return self
            time.sleep(0.3)
        self.__exit__()
        raise RuntimeError(f"JupyterLab did not answer on {self.url} in 120 s:\n{self.log_tail()}")

    def __exit__(self, *exc) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(OSError, urllib.error.URLError):
            self.api("/api/shutdown", method="POST")  # also shuts the kernels down
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def kernel_state(self, path: str) -> tuple[str | None, str | None]:
        """(kernel name, execution state) of the session of notebook ``path``."""
        for session in self.api("/api/sessions"):
            if session.get("path") == path and session.get("kernel"):
                return session["kernel"]["name"], session["kernel"]["execution_state"]
        return None, None

    def close_session(self, path: str) -> None:
        """Shut down the kernel of notebook ``path`` (one kernel at a time, not all at the end)."""
        for session in self.api("/api/sessions"):
            if session.get("path") == path:
                self.api(f"/api/sessions/{session['id']}", method="DELETE")


def classify_outputs(cells: list[dict]) -> tuple[list[dict], int]:
    """Errors shown in the output areas (error outputs and stderr tracebacks), and the number
    of other stderr outputs (warnings, progress bars)."""
    errors, notes = [], 0
    for cell in cells:
        for out in cell["outputs"]:
            if out["mime"] != STDERR_MIME:
                continue
            if TRACEBACK_RE.search(out["text"]):
                last = [line for line in out["text"].strip().splitlines() if line.strip()]
                errors.append(
                    {"cell": cell["index"] + 1, "prompt": cell["prompt"], "error": last[-1][:300]}
                )
            else:
                notes += 1
    return errors, notes


def _wait_for(condition, timeout: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"{what} (waited {timeout:.0f} s)")


def _dialog_text(page) -> str | None:
    dialogs = page.locator(".jp-Dialog")
    return dialogs.first.inner_text().strip() if dialogs.count() else None


def _open_notebook(page, server: LabServer, name: str, timeout: float) -> dict:
    """Open notebook ``name`` alone in a fresh workspace and wait for its kernel to be idle;
    refuse a kernel dialog."""
    workspace = "check-" + re.sub(r"[^A-Za-z0-9]+", "-", name)
    path = urllib.parse.quote(name)
    page.goto(f"{server.url}/lab/workspaces/{workspace}/tree/{path}?token={server.token}")
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", timeout=timeout * 1000)

    def kernel_ready():
        dialog = _dialog_text(page)
        if dialog:
            raise RuntimeError(f"JupyterLab asked instead of starting the kernel: {dialog!r}")
        kernel, state = server.kernel_state(name)
        return (kernel, state) if state == "idle" else None

    kernel, _ = _wait_for(kernel_ready, timeout, "the notebook's kernel did not become idle")
    shown = (
        page.locator(f"{PANEL} .jp-NotebookPanel-toolbar .jp-KernelName").first.inner_text().strip()
    )
    return {"kernel": kernel, "kernel_display_name": shown}


def _run_all(page, server: LabServer, name: str, timeout: float) -> list[dict]:
    """Run > Run All Cells; wait until no cell is queued and the kernel stays idle."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).first.click()
    settled = []

    def finished():
        dialog = _dialog_text(page)  # "Kernel Restarting", "Kernel Dead", ...
        if dialog:
            raise RuntimeError(f"JupyterLab showed a dialog while running: {dialog!r}")
        state = server.kernel_state(name)[1]
        if state in (None, "dead"):
            raise RuntimeError(f"the kernel is gone (state {state!r})")
        cells = page.evaluate(_CELLS_JS, PANEL)
        prompts = [c["prompt"] for c in cells if c["code"]]
        ran = any(re.match(r"^\[\d+\]", p) for p in prompts) or not prompts
        quiet = ran and not any("*" in p for p in prompts)
        settled.append(quiet and state == "idle")
        return cells if settled[-2:] == [True, True] else None

    return _wait_for(finished, timeout, "Run All Cells did not finish")


def _save_and_read(page, target: Path) -> list[dict]:
    """Save the notebook (Ctrl+S) and return its error outputs as stored on disk."""
    import nbformat

    page.keyboard.press("Control+s")
    _wait_for(
        lambda: page.locator(".lm-TabBar-tab.jp-mod-dirty").count() == 0, 30, "save timed out"
    )
    nb = nbformat.read(str(target), as_version=4)
    return [
        {"cell": i + 1, "error": f"{out.get('ename')}: {out.get('evalue')}"[:300]}
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def _screenshot(page, path: Path) -> dict:
    """Screenshot of the whole notebook panel: the viewport is stretched to its height."""
    outer = f"{PANEL} .jp-WindowedPanel-outer"
    extra = page.evaluate(
        f"() => {{ const e = document.querySelector({outer!r}); "
        "return e ? e.scrollHeight - e.clientHeight : 0; }"
    )
    size = page.viewport_size
    height = min(size["height"] + max(extra, 0), MAX_SCREENSHOT_HEIGHT)
    page.set_viewport_size({"width": size["width"], "height": height})
    page.wait_for_timeout(800)
    page.locator(PANEL).first.screenshot(path=str(path))
    page.set_viewport_size(size)
    return {"height": height, "truncated": size["height"] + extra > MAX_SCREENSHOT_HEIGHT}


def check_notebook(context, server: LabServer, name: str, out_dir: Path, timeout: float) -> dict:
    """Open, run and inspect notebook ``name`` (relative to the server's root) in one page."""
    record: dict = {"notebook": name, "ok": False, "errors": [], "problems": []}
    page = context.new_page()
    console = []
    page.on("pageerror", lambda exc: console.append(str(exc)[:300]))
    started = time.perf_counter()
    try:
        record.update(_open_notebook(page, server, name, timeout=180))
        record["open_s"] = round(time.perf_counter() - started, 1)
        page.keyboard.press("Control+b")  # fold the file browser away: a wider notebook
        run_start = time.perf_counter()
        cells = _run_all(page, server, name, timeout)
        record["run_s"] = round(time.perf_counter() - run_start, 1)
        code = [c for c in cells if c["code"]]
        not_run = [c["index"] + 1 for c in code if not re.match(r"^\[\d+\]", c["prompt"])]
        record["errors"], record["stderr_notes"] = classify_outputs(cells)
        record.update(code_cells=len(code), cells_run=len(code) - len(not_run))
        if not_run:
            record["problems"].append(f"cells not run: {not_run}")
        try:
            record["saved_errors"] = _save_and_read(page, server.root / name)
        except Exception as exc:  # the check stands on what the page showed
            record["save_failed"] = f"{type(exc).__name__}: {exc}"
        if record.get("saved_errors") and not record["errors"]:
            record["problems"].append(
                f"error outputs in the saved notebook: {record['saved_errors']}"
            )
    except Exception as exc:  # a failed check is reported, not raised: the others still run
        record["problems"].append(f"{type(exc).__name__}: {exc}")
    finally:
        stem = Path(name).stem
        shot = out_dir / f"{stem}.png"
        with contextlib.suppress(Exception):
            record["screenshot_info"] = _screenshot(page, shot)
            record["screenshot"] = str(shot)
        if "saved_errors" in record:
            shutil.copyfile(server.root / name, out_dir / f"{stem}.ipynb")
            record["executed_copy"] = str(out_dir / f"{stem}.ipynb")
        record["page_errors"] = console
        record["seconds"] = round(time.perf_counter() - started, 1)
        page.close()
        with contextlib.suppress(OSError, urllib.error.URLError):
            server.close_session(name)
    record["ok"] = not record["errors"] and not record["problems"]
    return record


def _describe(rec: dict) -> str:
    status = "ok" if rec["ok"] else "FAILED"
    lines = [
        f"{rec['notebook']}: {status} - {rec.get('cells_run', 0)}/{rec.get('code_cells', '?')} "
        f"code cells run in {rec.get('run_s', '?')} s (opened with kernel "
        f"{rec.get('kernel_display_name', '?')!r} in {rec.get('open_s', '?')} s), "
        f"{len(rec['errors'])} errors, {rec.get('stderr_notes', 0)} other stderr outputs"
    ]
    lines += [
        f"  error in cell {e['cell']} (prompt {e['prompt'].rstrip(':')}): {e['error']}"
        for e in rec["errors"]
    ]
    lines += [f"  problem: {p}" for p in rec["problems"]]
    for key in ("screenshot", "executed_copy"):
        if key in rec:
            lines.append(f"  {key.replace('_', ' ')}: {rec[key]}")
    return "\n".join(lines)


def run_checks(args: argparse.Namespace) -> dict:
    """Start one JupyterLab and one Chromium, check every notebook, return the report."""
    from playwright.sync_api import sync_playwright

    parameters = load_parameters(args.params, args.parameter)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"parameters": parameters, "notebooks": []}
    with tempfile.TemporaryDirectory(prefix="check-lab-") as tmp:
        scratch = Path(tmp)
        root = scratch / "notebooks"
        root.mkdir()
        kernels = {}
        for source in args.notebooks:
            spec = prepare_notebook(source, root / source.name, parameters)
            kernels[source.name] = spec.get("name")
        names = sorted({k for k in kernels.values() if k})
        jupyter_path = None
        if args.bind_kernel:
            jupyter_path = scratch / "jupyter"
            for name in names:
                bind_kernel(jupyter_path, name)
        started = time.perf_counter()
        with LabServer(root, scratch, jupyter_path=jupyter_path) as server:
            report["server_start_s"] = round(time.perf_counter() - started, 1)
            report["cache"] = server.env["REDUNDANCY_CACHE"]
            specs = server.api("/api/kernelspecs")["kernelspecs"]
            report["kernels"] = {k: v["spec"]["argv"][0] for k, v in specs.items()}
            with sync_playwright() as pw:
                context = launch_chromium(
                    pw, args.chromium, scratch / "profile", viewport={"width": 1280, "height": 900}
                )
                try:
                    for source in args.notebooks:
                        kernel = kernels[source.name]
                        if kernel not in specs:
                            report["notebooks"].append(_unregistered(source.name, kernel, specs))
                            continue
                        rec = check_notebook(context, server, source.name, args.out, args.timeout)
                        report["notebooks"].append(rec)
                finally:
                    context.close()
        report["seconds"] = round(time.perf_counter() - started, 1)
    report["ok"] = all(rec["ok"] for rec in report["notebooks"])
    return report


def _unregistered(name: str, kernel: str | None, specs: dict) -> dict:
    problem = (
        f"JupyterLab has no kernel {kernel!r} (the notebook's metadata.kernelspec.name), so it "
        f"would ask for one; it has {sorted(specs)}. Register it with `make install` or pass "
        "--bind-kernel."
    )
    return {"notebook": name, "ok": False, "errors": [], "problems": [problem]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=Path,
        default=[DEFAULT_NOTEBOOK],
        help=f"notebooks to check (default: {DEFAULT_NOTEBOOK.relative_to(ROOT)})",
    )
    parser.add_argument("--params", type=Path, help="params YAML to inject (papermill)")
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="one parameter to inject, VALUE parsed as YAML (repeatable)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="screenshots, executed copies, report.json"
    )
    parser.add_argument("--chromium", default=DEFAULT_CHROMIUM, help="the Chromium binary")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds allowed for Run All per notebook"
    )
    parser.add_argument(
        "--bind-kernel",
        action="store_true",
        help="serve the notebooks' kernel bound to this interpreter instead of the registered one",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        print(f"check_lab: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    if len({p.name for p in args.notebooks}) != len(args.notebooks):
        print("check_lab: two notebooks share a file name", file=sys.stderr)
        return 2
    reason = browser_missing(args.chromium)
    if reason:
        print(f"check_lab: cannot run: {reason}", file=sys.stderr)
        return 2
    report = run_checks(args)
    report_path = args.out / "report.json"
    report_path.write_text(json.dumps(report, indent=1))
    for rec in report["notebooks"]:
        print(_describe(rec))
    print(
        f"JupyterLab started in {report['server_start_s']} s; total {report['seconds']} s; "
        f"cache {report['cache']}; report: {report_path}"
    )
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
