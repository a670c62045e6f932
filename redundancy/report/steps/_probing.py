"""Shared by the probe steps: the three splits of a (model, task), control labels, probes
over several seeds, scores and test predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..features import get_activations, get_task

SPLITS = ("train", "dev", "test")


@dataclass
class ProbeData:
    """Activations and labels of the three splits of one (model, task)."""

    task: object
    acts: dict  # split -> Activations

    @property
    def train(self):
        return self.acts["train"]

    @property
    def n_classes(self) -> int | None:
        return self.task.n_classes if self.task.kind == "classification" else None

    def labels(self, split: str, control: bool = False, seed: int = 0) -> np.ndarray:
        """Task labels of a split, or its control-task labels (Hewitt & Liang)."""
        if not control:
            return self.acts[split].labels
        from ...analysis.controls import (
            control_labels,
            label_distribution,
            sentence_control_labels,
            task_types,
        )

        dist = label_distribution(self.acts["train"].labels, self.task.n_classes)
        if self.task.level == "sentence":
            # a per-sentence random label cannot generalise (every sentence is its own
            # type); this control is a fixed function of the words, so it can
            return sentence_control_labels(
                _words(self.task.split(split).sentences),
                dist,
                reference=_words(self.task.split("train").sentences),
                random_state=seed,
            )
        return control_labels(task_types(self.task, split), dist, random_state=seed)


def _words(instances) -> list[list[str]]:
    """The words of each sentence-task instance: its text (both texts of a pair) split on
    whitespace, or its tokens when already split."""
    out = []
    for inst in instances:
        parts = [inst] if isinstance(inst, str) else list(inst)
        out.append([w for p in parts for w in (p.split() if isinstance(p, str) else [p])])
    return out


def controls_apply(data: ProbeData, cfg: Config) -> bool:
    """Whether the run trains control-task probes for this task: asked for and a
    classification task. Token tasks use Hewitt and Liang's per-word-type control; sentence
    tasks a control that is a fixed random function of the sentence's words
    (:func:`redundancy.analysis.controls.sentence_control_labels`), which can generalise to
    unseen sentences as a per-sentence label cannot."""
    return bool(cfg.control_tasks and data.task.kind == "classification")


def probe_data(model: str, task_name: str, cfg: Config) -> ProbeData:
    """The three splits' activations of ``(model, task_name)`` (extracted once, cached)."""
    acts = {s: get_activations(model, task_name, s, cfg) for s in SPLITS}
    return ProbeData(get_task(task_name, cfg), acts)


def train_seeds(data: ProbeData, subsets: dict, cfg: Config, seeds, *, control=False) -> dict:
    """Probes on every subset for every seed: ``{(name, seed): LinearProbe}``, all seeds in
    one pass over X, each probe as if trained alone.

    ``control`` trains on the control task (its labels drawn with the first seed of the run).
    """
    return _train(data, subsets, cfg, [int(s) for s in seeds], control)


def train_keyed(data: ProbeData, subsets: dict, seeds: dict, cfg: Config) -> dict:
    """Probes on subsets that each have their own seed (``seeds[key]``), in one pass:
    ``{key: LinearProbe}`` (e.g. clusters' representatives drawn per seed)."""
    return _train(data, subsets, cfg, {k: int(s) for k, s in seeds.items()}, False)


def _train(data, subsets, cfg, random_state, control) -> dict:
    from ...analysis.probes import train_probes

    y = data.labels("train", control, cfg.random_state)
    kind = "classification" if control else data.task.kind
    n_classes = data.task.n_classes if kind == "classification" else None
    return train_probes(
        data.train.X,
        y,
        subsets,
        kind=kind,
        n_classes=n_classes,
        random_state=random_state,
        progress=True,
        **cfg.probe_options(),
    )


def evaluate(data: ProbeData, probes: dict, split: str, *, control=False, cfg=None) -> dict:
    """Scores of many probes on one split (one pass over the split's activations)."""
    from ...analysis.probes import evaluate_probes

    metric = "accuracy" if control else data.task.metric
    seed = cfg.random_state if cfg is not None else 0
    y = data.labels(split, control, seed)
    device = cfg.device if cfg is not None else None
    return evaluate_probes(probes, data.acts[split].X, y, metric, device=device)


def predictions(data: ProbeData, probes, split: str = "test", cfg=None) -> np.ndarray:
    """``(n_probes, n)`` predictions of several probes on a split."""
    device = cfg.device if cfg is not None else None
    return np.stack([p.predict(data.acts[split].X, device=device) for p in probes])


def stored_predictions(data: ProbeData, probes, cfg: Config, split: str = "dev") -> np.ndarray:
    """Predictions of ``probes`` on ``split`` in the form the result cache keeps them:
    class indices as int16 (int32 beyond 32,767 classes), regression outputs as float32.
    The paired bootstrap of the verdicts resamples these against the oracle's."""
    pred = predictions(data, list(probes), split, cfg)
    if data.task.kind != "classification":
        return pred.astype(np.float32)
    return pred.astype(np.int16 if (data.n_classes or 0) < 32_767 else np.int32)


def interval(data: ProbeData, probes, cfg: Config, split: str = "test") -> list[float]:
    """Bootstrap interval (over sentences) of the seed-averaged score of ``probes`` (the same
    probe trained with several seeds); ``[nan, nan]`` when ``cfg.n_bootstrap`` is 0."""
    from ...analysis.metrics import bootstrap_interval

    if cfg.n_bootstrap == 0:
        return [float("nan"), float("nan")]
    acts = data.acts[split]
    low, high = bootstrap_interval(
        acts.labels,
        predictions(data, probes, split, cfg),
        metric=data.task.metric,
        groups=acts.sentence_index,
        n_bootstrap=cfg.n_bootstrap,
        confidence=cfg.confidence,
        random_state=cfg.random_state,
    )
    return [low, high]


def majority(data: ProbeData) -> dict:
    """Majority-class (or mean) baseline on dev and test."""
    from ...analysis.metrics import majority_baseline

    regression = data.task.kind == "regression"
    return {
        split: majority_baseline(
            data.train.labels, data.acts[split].labels, data.task.metric, regression=regression
        )
        for split in ("dev", "test")
    }
