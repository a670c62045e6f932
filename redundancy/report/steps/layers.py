"""Layer-level steps: CKA between layers (chapter 2) and probes per layer (chapter 4).

Every function returns a cached result (:func:`redundancy.report.cache.cached`) keyed by
the features' identity, the parameters it reads and the source of this module's imports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cache import cached, check_keys, check_table
from ..config import Config
from ..features import features_identity, get_activations
from ._probing import (
    controls_apply,
    evaluate,
    interval,
    majority,
    probe_data,
    stored_predictions,
    train_seeds,
)

__all__ = [
    "cka_uncertainty",
    "cross_model_cka",
    "layer_cka",
    "incremental_predictions",
    "layer_probe_scores",
    "oracle_probes",
    "oracle_test_predictions",
    "selected_layers",
    "subsets_of_layers",
]


# ----------------------------------------------------------------------------- CKA
def layer_cka(
    model: str, task_name: str, cfg: Config, *, finetuned: bool | None = False, split="train"
) -> np.ndarray:
    """Linear CKA between every pair of layers on one split's instances, ``(L, L)``.

    ``finetuned=False`` (default) uses the pretrained model, as the paper's general analysis.
    """
    from ...analysis import similarity

    def compute():
        acts = get_activations(model, task_name, split, cfg, finetuned=finetuned)
        return {"sim": similarity.layer_cka(acts.acts, device=cfg.device)}

    inputs = {"features": features_identity(model, task_name, cfg, finetuned), "split": split}
    label = f"{model} / {task_name} / {split}"
    result = cached(
        "cka", inputs, compute, code=__name__, kind="arrays", check=check_keys("sim"), label=label
    )
    return result["sim"]


def cka_uncertainty(
    model: str, task_name: str, cfg: Config, *, finetuned: bool | None = False, split="train"
) -> dict:
    """Linear and debiased CKA between every pair of layers on a sample of the split's
    instances, their bootstrap intervals and a permutation null
    (:func:`redundancy.analysis.similarity.cka_uncertainty`); arrays ``(L, L)``."""
    from ...analysis import similarity
    from ..chapters import CKA_INSTANCES, CKA_RESAMPLES, cka_permutations

    def compute():
        acts = get_activations(model, task_name, split, cfg, finetuned=finetuned)
        return similarity.cka_uncertainty(
            acts.X,
            acts.n_layers,
            n_instances=CKA_INSTANCES,
            n_resamples=CKA_RESAMPLES,
            n_permutations=cka_permutations(acts.n_layers),
            random_state=cfg.random_state,
        )

    inputs = {
        "features": features_identity(model, task_name, cfg, finetuned),
        "split": split,
        "n": [CKA_INSTANCES, CKA_RESAMPLES],
        "seed": cfg.random_state,
    }
    label = f"{model} / {task_name} / {split}"
    return cached(
        "cka_uncertainty",
        inputs,
        compute,
        code=__name__,
        kind="arrays",
        check=check_keys("linear", "debiased", "linear_low", "linear_high", "null_high"),
        label=label,
    )


def cross_model_cka(model_a: str, model_b: str, task_name: str, cfg: Config) -> np.ndarray:
    """Linear CKA between every layer of ``model_a`` and every layer of ``model_b``
    (pretrained, same training instances)."""
    from ...analysis import similarity

    def compute():
        a = get_activations(model_a, task_name, "train", cfg, finetuned=False)
        b = get_activations(model_b, task_name, "train", cfg, finetuned=False)
        return {"sim": similarity.cross_cka(a.acts, b.acts, device=cfg.device)}

    inputs = {
        "a": features_identity(model_a, task_name, cfg, False),
        "b": features_identity(model_b, task_name, cfg, False),
    }
    result = cached(
        "cross_cka", inputs, compute, code=__name__, kind="arrays", label=f"{model_a} vs {model_b}"
    )
    return result["sim"]


# ---------------------------------------------------------------------- probes
def subsets_of_layers(n_layers: int, n_hidden: int) -> dict:
    """``{("layer", l): columns of layer l, ("incremental", l): columns of layers 0..l}``;
    ``("incremental", L - 1)`` is the oracle."""
    H = n_hidden
    subsets = {("layer", i): slice(i * H, (i + 1) * H) for i in range(n_layers)}
    subsets.update({("incremental", i): slice(0, (i + 1) * H) for i in range(n_layers)})
    return subsets


def _probe_inputs(model, task_name, cfg) -> dict:
    return {
        "features": features_identity(model, task_name, cfg),
        "probe": {k: v for k, v in cfg.probe_options().items() if k != "device"},
        "seeds": list(cfg.seeds),
        "control": cfg.control_tasks,
        "bootstrap": [cfg.n_bootstrap, cfg.confidence],
    }


def _rows(scores_dev, scores_test, n_hidden, target) -> list[dict]:
    rows = []
    for (name, seed), dev in scores_dev.items():
        kind, layer = name
        n = n_hidden if kind == "layer" else (layer + 1) * n_hidden
        rows.append(
            {
                "target": target,
                "kind": kind,
                "layer": layer,
                "n_neurons": n,
                "seed": seed,
                "dev": dev,
                "test": scores_test[(name, seed)],
            }
        )
    return rows


def _layer_probes_run(model: str, task_name: str, cfg: Config):
    """Train the per-layer and incremental probes for every seed (and the control task):
    ``(table, oracle arrays)``."""
    data = probe_data(model, task_name, cfg)
    L, H = data.train.n_layers, data.train.n_hidden
    subsets = subsets_of_layers(L, H)
    probes = train_seeds(data, subsets, cfg, cfg.seeds)
    rows = _rows(
        evaluate(data, probes, "dev", cfg=cfg), evaluate(data, probes, "test", cfg=cfg), H, "task"
    )
    if controls_apply(data, cfg):
        ctrl = train_seeds(data, subsets, cfg, cfg.seeds[:1], control=True)
        dev = evaluate(data, ctrl, "dev", control=True, cfg=cfg)
        rows += _rows(dev, evaluate(data, ctrl, "test", control=True, cfg=cfg), H, "control")
    oracles = [probes[(("incremental", L - 1), s)] for s in cfg.seeds]
    table = pd.DataFrame(rows)
    table.attrs.update(
        metric=data.task.metric,
        majority=majority(data),
        oracle_interval=interval(data, oracles, cfg),
        n_layers=L,
        n_hidden=H,
    )
    arrays = {"neurons": oracles[0].neurons, "kind": np.array(data.task.kind)}
    for seed, probe in zip(cfg.seeds, oracles):
        arrays[f"weight_{seed}"], arrays[f"bias_{seed}"] = probe.weight, probe.bias
    incremental = [probes[(("incremental", layer), s)] for s in cfg.seeds for layer in range(L)]
    arrays["dev_incremental"] = stored_predictions(data, incremental, cfg).reshape(
        len(cfg.seeds), L, -1
    )
    arrays["test_oracle"] = stored_predictions(data, oracles, cfg, "test")
    return table, arrays


_TABLE_CHECK = check_table("target", "kind", "layer", "seed", "dev", "test")


def layer_probe_scores(model: str, task_name: str, cfg: Config) -> pd.DataFrame:
    """Probe scores of every layer alone and of layers 0..l, for every seed.

    Returns
    -------
    DataFrame
        One row per probe and seed: ``target`` (``"task"`` or ``"control"``), ``kind``
        (``"layer"`` or ``"incremental"``; incremental at the last layer is the oracle),
        ``layer``, ``n_neurons``, ``seed``, ``dev``, ``test`` (fractions or the task metric).
        ``attrs``: ``metric``, ``majority`` (baseline on dev and test), ``oracle_interval``
        (bootstrap interval of the seed-averaged oracle test score), ``n_layers``,
        ``n_hidden``.
    """
    inputs = _probe_inputs(model, task_name, cfg)

    def compute():
        table, arrays = _layer_probes_run(model, task_name, cfg)
        cached("oracle", inputs, lambda: arrays, code=__name__, kind="arrays")
        return table

    return cached(
        "layer_probes",
        inputs,
        compute,
        code=__name__,
        kind="table",
        check=_TABLE_CHECK,
        label=f"{model} / {task_name}",
    )


def _oracle_arrays(model: str, task_name: str, cfg: Config) -> dict:
    inputs = _probe_inputs(model, task_name, cfg)
    names = [f"weight_{s}" for s in cfg.seeds]
    names += ["neurons", "kind", "dev_incremental", "test_oracle"]
    return cached(
        "oracle",
        inputs,
        lambda: _layer_probes_run(model, task_name, cfg)[1],
        code=__name__,
        kind="arrays",
        check=check_keys(*names),
        label=f"{model} / {task_name}",
    )


def incremental_predictions(model: str, task_name: str, cfg: Config) -> np.ndarray:
    """Dev predictions of the incremental probes (layers 0..l), ``(n_seeds, n_layers, n_dev)``
    in the order of ``cfg.seeds``; ``[:, -1]`` is the oracle of each seed."""
    return _oracle_arrays(model, task_name, cfg)["dev_incremental"]


def oracle_test_predictions(model: str, task_name: str, cfg: Config) -> np.ndarray:
    """Test predictions of every seed's oracle, ``(n_seeds, n_test)``."""
    return _oracle_arrays(model, task_name, cfg)["test_oracle"]


def oracle_probes(model: str, task_name: str, cfg: Config) -> dict:
    """The oracle probe (all layers) of every seed: ``{seed: LinearProbe}``."""
    from ...analysis.probes import LinearProbe

    arrays = _oracle_arrays(model, task_name, cfg)
    kind = str(arrays["kind"])
    out = {}
    for seed in cfg.seeds:
        weight = arrays[f"weight_{seed}"]
        out[seed] = LinearProbe(
            neurons=arrays["neurons"],
            weight=weight,
            bias=arrays[f"bias_{seed}"],
            kind=kind,
            n_classes=weight.shape[0] if kind == "classification" else None,
        )
    return out


def oracle_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Rows of the oracle (incremental probe on all layers) of a :func:`layer_probe_scores`
    table, task target only: one per seed."""
    last = scores["layer"].max()
    mask = (scores["target"] == "task") & (scores["kind"] == "incremental")
    return scores[mask & (scores["layer"] == last)]


def selected_layers(scores: pd.DataFrame, delta: float) -> pd.DataFrame:
    """LayerSelector on a :func:`layer_probe_scores` table, for every seed.

    Returns
    -------
    DataFrame
        One row per seed: ``seed``, ``layer`` (selected), ``last_layer``, ``oracle_dev``,
        ``dev``, ``test`` (of the incremental probe at the selected layer), ``oracle_test``.
    """
    from ...analysis.transfer import LayerSelector

    rows = []
    task = scores[(scores["target"] == "task") & (scores["kind"] == "incremental")]
    for seed, part in task.groupby("seed"):
        part = part.sort_values("layer")
        selector = LayerSelector(delta).fit(part["dev"].to_numpy())
        at = part.iloc[selector.layer_]
        rows.append(
            {
                "seed": int(seed),
                "layer": selector.layer_,
                "last_layer": int(part["layer"].max()),
                "oracle_dev": float(part["dev"].iloc[-1]),
                "dev": float(at["dev"]),
                "test": float(at["test"]),
                "oracle_test": float(part["test"].iloc[-1]),
            }
        )
    return pd.DataFrame(rows)
