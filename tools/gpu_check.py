"""Check the GPU paths against the CPU and time them beside the paper's GTX TITAN X figures.

    .venv/bin/python tools/gpu_check.py [--model minilm|mpnet] [--output FILE]   (make gpu-check)

On a machine with CUDA it runs, each on the GPU and on the CPU, and compares:

* extraction (a few hundred Brown sentences): word vectors within 1e-3 absolute (TF32/cuDNN
  kernels differ from the CPU's in the last bits);
* fine-tuning (a few steps): losses within 2e-2;
* moments, correlations and CKA (float32 chunk products, float64 sums): CKA within 1e-5;
* correlation clustering at t = 0.3 on those correlations: adjusted Rand index >= 0.999;
* probes (the paper's, 10 epochs): test accuracy within 0.5 points.

Then it times the paper's two efficiency figures on the GPU: the forward pass per instance
(paper: BERT 0.715 ms, XLNet 1.246 ms) and a probe on 9,984 features x 100,000 instances x
10 epochs, 2 classes (paper: 48.48 s), in float32 and bfloat16. Results go to a JSON file.
Without a CUDA device it says so and exits with status 1: nothing was checked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _cuda() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _timed(fn):
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def check_extraction(model: str, cache: Path) -> dict:
    from redundancy.data.tasks import load_task
    from redundancy.encoders.extract import extract

    task = load_task("brown-pos", train_tokens=6000, dev_tokens=100, test_tokens=100)
    cpu = extract(model, task, "train", device="cpu", cache_dir=cache / "cpu", progress=False)
    gpu, seconds = _timed(
        lambda: extract(
            model, task, "train", device="cuda", cache_dir=cache / "gpu", progress=False
        )
    )
    diff = float(np.max(np.abs(np.asarray(cpu.acts) - np.asarray(gpu.acts))))
    return {
        "max_abs_diff": diff,
        "tolerance": 1e-3,
        "ok": diff <= 1e-3,
        "gpu_words_per_s": cpu.n_instances / seconds,
    }


def check_similarity_and_clustering(X: np.ndarray) -> dict:
    from sklearn.metrics import adjusted_rand_score

    from redundancy.analysis import clustering, similarity

    cka = {
        d: similarity.layer_cka(
            X.reshape(len(X), -1, 384 if X.shape[1] % 384 == 0 else 768), device=d, progress=False
        )
        for d in ("cpu", "cuda")
    }
    corr = {d: similarity.correlation(X, device=d, progress=False) for d in ("cpu", "cuda")}
    labels = {d: clustering.cluster_neurons(corr[d], 0.3) for d in corr}
    cka_diff = float(np.max(np.abs(cka["cpu"] - cka["cuda"])))
    ari = float(adjusted_rand_score(labels["cpu"], labels["cuda"]))
    return {
        "cka_max_abs_diff": cka_diff,
        "cka_ok": cka_diff <= 1e-5,
        "clustering_ari": ari,
        "clustering_ok": ari >= 0.999,
    }


def check_probes(X, y, X_test, y_test) -> dict:
    from redundancy.analysis.probes import evaluate, train_probe

    acc = {}
    for device in ("cpu", "cuda"):
        probe = train_probe(X, y, device=device, progress=False)
        acc[device] = evaluate(probe, X_test, y_test)
    gap = abs(acc["cpu"] - acc["cuda"])
    return {"accuracy": acc, "gap_points": 100 * gap, "ok": gap <= 0.005}


def check_finetune(model: str, cache: Path) -> dict:
    import json as _json

    from redundancy.data.tasks import load_task
    from redundancy.encoders.finetune import finetune

    task = load_task("brown-fiction", train_sentences=64, dev_sentences=8, test_sentences=8)
    losses = {}
    for device in ("cpu", "cuda"):
        folder = finetune(
            model, task, epochs=1, device=device, progress=False, cache_dir=cache / f"ft-{device}"
        )
        losses[device] = _json.loads((folder / "finetune.json").read_text())["losses"]
    diff = float(np.max(np.abs(np.asarray(losses["cpu"]) - np.asarray(losses["cuda"]))))
    return {"max_loss_diff": diff, "ok": diff <= 2e-2}


def time_paper_figures(model: str) -> dict:
    from redundancy.analysis.timing import (
        summarize_forward,
        summarize_probe,
        time_forward,
        time_probe,
    )
    from redundancy.data.tasks import load_task

    task = load_task("brown-pos", train_tokens=100, dev_tokens=100, test_tokens=20_000)
    forward = summarize_forward(
        time_forward(model, task.test.sentences[:1000], device="cuda", repeats=5, progress=False)
    )
    out = {"forward_full_ms_per_instance": float(forward["full_ms_per_instance"].iloc[0])}
    for dtype in ("float32", "bfloat16"):
        extra = {} if dtype == "float32" else {"compute_dtype": dtype}
        probe = summarize_probe(
            time_probe(
                [9984], n_instances=100_000, repeats=2, device="cuda", progress=False, **extra
            )
        )
        out[f"probe_9984x100000_s_{dtype}"] = float(probe["seconds"].iloc[0])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="minilm", help="'minilm' or 'mpnet' (the paper's size)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/gpu_results.json"))
    parser.add_argument("--work", type=Path, default=Path("build/gpu-check"))
    args = parser.parse_args(argv)
    name = _cuda()
    if name is None:
        print(
            "gpu-check: no CUDA device on this machine (torch.cuda.is_available() is False): "
            "nothing was checked. Run it where `nvidia-smi` lists a GPU.",
            file=sys.stderr,
        )
        return 1
    from redundancy.encoders.models import resolve_model

    resolve_model(args.model)
    results = {"device": name, "model": args.model, "date": time.strftime("%Y-%m-%d")}
    results["extraction"] = check_extraction(args.model, args.work)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20_000, 13 * 768), dtype=np.float32)
    w = rng.standard_normal(X.shape[1]).astype(np.float32)
    y = (X @ w > 0).astype(np.int64)
    results["similarity"] = check_similarity_and_clustering(X[:, : 7 * 384])
    results["probes"] = check_probes(X[:16_000], y[:16_000], X[16_000:], y[16_000:])
    results["finetune"] = check_finetune(args.model, args.work)
    results["timing"] = time_paper_figures(args.model)
    results["paper"] = {
        "forward_ms": {"BERT": 0.715, "XLNet": 1.246},
        "probe_s": 48.48,
        "device": "GTX TITAN X",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1))
    failed = [k for k, v in results.items() if isinstance(v, dict) and v.get("ok") is False]
    print(json.dumps(results, indent=1))
    print(
        f"gpu-check on {name}: {'all checks passed' if not failed else 'FAILED: ' + ', '.join(failed)}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
