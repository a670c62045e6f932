"""Time of one block-removal setting, with and without the cached residual stream.

:class:`redundancy.analysis.removal.WindowLoss` records the input of every block once and
restarts a setting from its first removed block; this measures what that saves on the
removal chapter's evaluation text (Brown news ca01-ca10, windows of 128 tokens) for
settings whose first removed block is early, middle or late, and checks that both paths
give the same loss. Writes ``benchmarks/removal.json``::

    python benchmarks/removal.py --model smollm2 --windows 16
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

OUTPUT = Path(__file__).resolve().parent / "removal.json"


def main(argv=None) -> int:
    import torch

    from redundancy.analysis import removal as rm
    from redundancy.encoders.decoders import load_decoder
    from redundancy.encoders.models import resolve_model
    from redundancy.report.steps.removal import EVAL_FILES, brown_texts

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--windows", type=int, default=16)
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--output", type=Path, default=OUTPUT)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    net, tok = load_decoder(resolve_model(args.model), device="cpu", lm_head=True)
    load_s = time.perf_counter() - t0
    windows = rm.text_windows(tok, brown_texts(EVAL_FILES), args.window, args.windows)
    L = rm.n_blocks(net)
    t0 = time.perf_counter()
    cached = rm.WindowLoss(net, windows)
    record_s = time.perf_counter() - t0
    plain = rm.WindowLoss(net, windows, cache=False)
    settings = {"early": [1, 2], "middle": [L // 2, L // 2 + 1], "late": [L - 3, L - 2]}
    rows = {}
    for name, removed in settings.items():
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
    result = {
        "model": args.model,
        "n_blocks": L,
        "tokens": int(len(windows) * cached.n_tokens),
        "load_s": round(load_s, 1),
        "record_s": round(record_s, 2),
        "baseline_perplexity": cached.perplexity([]),
        "settings": rows,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
