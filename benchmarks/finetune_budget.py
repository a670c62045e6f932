"""How much fine-tuning does each sentence task need before its oracle means something?

For each Brown sentence task and fine-tuning budget (training sentences x epochs), this
fine-tunes the model, extracts the sentence vectors of every layer and trains the paper's
oracle probe (all layers, one seed), then prints and saves the oracle's dev and test scores
beside the majority-class baseline and the seconds each stage took. The default book's
budget was chosen from its output (see ``benchmarks/README.md``).

    .venv/bin/python benchmarks/finetune_budget.py --model minilm --sizes 250 500 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

TASKS = ("brown-fiction", "brown-register", "brown-next", "brown-genre")


def measure(model: str, task: str, n_train: int, epochs: int, *, probe_train: int) -> dict:
    from redundancy.analysis.metrics import majority_baseline
    from redundancy.analysis.probes import evaluate_probes, train_probes
    from redundancy.data.tasks import load_task
    from redundancy.encoders.extract import extract
    from redundancy.encoders.finetune import finetune

    t = load_task(task, train_sentences=probe_train, dev_sentences=600, test_sentences=1000)
    t0 = time.perf_counter()
    folder = finetune(model, t, epochs=epochs, max_train_sentences=n_train, progress=False)
    t_ft = time.perf_counter() - t0
    acts = {s: extract(str(folder), t, s, progress=False) for s in ("train", "dev", "test")}
    t1 = time.perf_counter()
    probe = train_probes(
        acts["train"].X,
        acts["train"].labels,
        {"oracle": None},
        n_classes=t.n_classes,
        progress=False,
    )
    scores = {
        s: evaluate_probes(probe, acts[s].X, acts[s].labels)["oracle"] for s in ("dev", "test")
    }
    y = acts["train"].labels
    return {
        "model": model,
        "task": task,
        "finetune_sentences": n_train,
        "epochs": epochs,
        "oracle_dev": scores["dev"],
        "oracle_test": scores["test"],
        "majority_dev": majority_baseline(y, acts["dev"].labels),
        "majority_test": majority_baseline(y, acts["test"].labels),
        "finetune_s": round(t_ft, 1),
        "probe_s": round(time.perf_counter() - t1, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[250, 500, 1000])
    parser.add_argument("--epochs", nargs="+", type=int, default=[3])
    parser.add_argument("--probe-train", type=int, default=3000, help="probe training sentences")
    parser.add_argument("--output", default="benchmarks/finetune_budget.json")
    args = parser.parse_args(argv)
    rows = []
    for task in args.tasks:
        for n in args.sizes:
            for epochs in args.epochs:
                row = measure(args.model, task, n, epochs, probe_train=args.probe_train)
                rows.append(row)
                print(json.dumps(row), flush=True)
                Path(args.output).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
