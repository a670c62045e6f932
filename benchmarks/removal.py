"""Time the removal chapter's steps end to end on a decoder, and the cached residual stream.

Default: every step of chapter 8 as the book calls it
(:func:`redundancy.report.chapters._removal_calls`, default arguments), recomputed (the
result cache is bypassed for this process), one after the other in one process; records the
seconds of loading the model and text, of each step (wall and CPU), the per-part seconds
the tables keep in their ``attrs``, and a reference forward pass before and after (how
loaded the machine was: 3.7 s on the idle 2-core machine). The entry goes to ``benchmarks/results.json`` under
``removal[--name]`` (default ``chapter-<model>``); run it on an idle machine::

    .venv/bin/python benchmarks/removal.py --model smollm2 --params params/decoder.yaml

``--settings``: the time of one block-removal setting with and without the cached residual
stream (:class:`redundancy.analysis.removal.WindowLoss`), for settings whose first removed
block is early, middle or late, on the evaluation text; writes ``benchmarks/removal.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "benchmarks" / "removal.json"
RESULTS = ROOT / "benchmarks" / "results.json"


def _environment() -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }


def chapter(model: str, params: Path) -> dict:
    """Seconds of every removal step of the book, recomputed, on ``model``."""
    from redundancy.report import chapters
    from redundancy.report.cache import recompute_from_now
    from redundancy.report.config import Config
    from redundancy.report.steps import removal as steps

    cfg = Config.from_yaml(params)
    load_avg = os.getloadavg()
    t0 = time.perf_counter()
    net, _, ev, _ = steps._setup(model, 128, 16, 8)  # the steps' defaults: one load per process
    out = {"load_s": round(time.perf_counter() - t0, 1), "steps": {}}
    out["reference_pass_s"] = [_reference(net, ev)]
    recompute_from_now()
    for call in chapters._removal_calls(cfg):
        module, name = call.target.split(":")
        step = getattr(__import__(module, fromlist=[name]), name)
        t0, c0 = time.perf_counter(), time.process_time()
        table = step(model, cfg, *call.args[1:], **dict(call.kwargs))
        seconds = round(time.perf_counter() - t0, 1)
        cpu = round(time.process_time() - c0, 1)
        attrs = {k: v for k, v in table.attrs.items() if "second" in k}
        out["steps"][name] = {"seconds": seconds, "cpu_s": cpu, "rows": len(table), **attrs}
        print(name, out["steps"][name], flush=True)
    out["steps_s"] = round(sum(s["seconds"] for s in out["steps"].values()), 1)
    out["reference_pass_s"].append(_reference(net, ev))
    out["load_average_before"] = [round(x, 2) for x in load_avg]
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _reference(net, windows) -> float:
    """Seconds of one full forward pass with the loss over the evaluation windows: the
    yardstick of how loaded the machine was (3.7 s on the idle 2-core machine)."""
    from redundancy.analysis import removal as rm

    t0 = time.perf_counter()
    rm.WindowLoss(net, windows, cache=False).nll([])
    return round(time.perf_counter() - t0, 2)


def settings(model: str, n_windows: int, window: int) -> dict:
    """Seconds of early, middle and late removals with and without the cached stream."""
    from redundancy.analysis import removal as rm
    from redundancy.encoders.decoders import load_decoder
    from redundancy.encoders.models import resolve_model
    from redundancy.report.steps.removal import EVAL_FILES, brown_texts

    t0 = time.perf_counter()
    net, tok = load_decoder(resolve_model(model), device="cpu", lm_head=True)
    load_s = time.perf_counter() - t0
    windows = rm.text_windows(tok, brown_texts(EVAL_FILES), window, n_windows)
    L = rm.n_blocks(net)
    t0 = time.perf_counter()
    cached = rm.WindowLoss(net, windows)
    record_s = time.perf_counter() - t0
    plain = rm.WindowLoss(net, windows, cache=False)
    cases = {"early": [1, 2], "middle": [L // 2, L // 2 + 1], "late": [L - 3, L - 2]}
    rows = {}
    for name, removed in cases.items():
        t0 = time.perf_counter()
        a = cached.nll(removed)
        with_cache = time.perf_counter() - t0
        t0 = time.perf_counter()
        b = plain.nll(removed)
        without = time.perf_counter() - t0
        rows[name] = {
            "removed": removed,
            "with_cache_s": round(with_cache, 2),
            "without_cache_s": round(without, 2),
            "speedup": round(without / with_cache, 2),
            "max_relative_difference": float(np.max(np.abs(a - b) / np.abs(b))),
            "perplexity": rm.perplexity(a, cached.n_tokens),
        }
        print(name, rows[name], flush=True)
    return {
        "model": model,
        "n_blocks": L,
        "tokens": int(len(windows) * cached.n_tokens),
        "load_s": round(load_s, 1),
        "record_s": round(record_s, 2),
        "baseline_perplexity": cached.perplexity([]),
        "settings": rows,
        "environment": _environment(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="smollm2")
    p.add_argument("--params", type=Path, default=ROOT / "params" / "decoder.yaml")
    p.add_argument("--name", help="entry name in results.json (default: chapter-<model>)")
    p.add_argument("--settings", action="store_true", help="time single settings instead")
    p.add_argument("--windows", type=int, default=16, help="--settings: evaluation windows")
    p.add_argument("--window", type=int, default=128, help="--settings: tokens per window")
    p.add_argument(
        "--output", type=Path, help="default: results.json (removal.json with --settings)"
    )
    args = p.parse_args(argv)

    if args.settings:
        result = settings(args.model, args.windows, args.window)
        output = args.output or OUTPUT
        output.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return 0
    entry = {
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model,
        "params": str(args.params.relative_to(ROOT) if args.params.is_absolute() else args.params),
        **chapter(args.model, args.params),
        "environment": _environment(),
    }
    output = args.output or RESULTS
    data = json.loads(output.read_text()) if output.is_file() else {}
    data.setdefault("removal", {})[args.name or f"chapter-{args.model}"] = entry
    output.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(entry, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
