"""Chapter 1's steps: the models, the tasks with their sizes and baselines, the activations."""

from __future__ import annotations

import time

import pandas as pd

from ..config import Config
from ..features import activation_set, get_activations, get_task, source_of

__all__ = ["baseline_table", "extraction_table", "label_table", "model_table", "task_table"]


def model_table(cfg: Config) -> pd.DataFrame:
    """Layers (embeddings included), hidden size and features of every model of the run."""
    rows = []
    for model in cfg.models:
        source = source_of(model, cfg.tasks[0], cfg, finetuned=False)
        if source.imported:
            aset = activation_set(model)
            arch, n_layers, hidden = "imported activations", aset.n_layers, aset.n_hidden
        else:
            from ...encoders.decoders import load_config
            from ...encoders.models import resolve_model

            mc = load_config(resolve_model(model))  # a folder or a GGUF file
            arch = mc.model_type
            n_layers = int(getattr(mc, "num_hidden_layers", getattr(mc, "n_layer", 0))) + 1
            hidden = int(getattr(mc, "hidden_size", getattr(mc, "d_model", 0)))
        rows.append(
            {
                "model": model,
                "architecture": arch,
                "layers": n_layers,
                "hidden": hidden,
                "features": n_layers * hidden,
            }
        )
    return pd.DataFrame(rows).set_index("model")


def task_table(cfg: Config) -> pd.DataFrame:
    """Per task and split: level, sentences, tokens, instances, labels, unseen labels and
    (for corpora that have them) documents (:func:`redundancy.data.tasks.task_summary`)."""
    from ...data.tasks import task_summary

    frames = []
    for name in cfg.tasks:
        df = task_summary(get_task(name, cfg))
        df.insert(0, "level", "token" if name in cfg.token_tasks else "sentence")
        df.index.name = "split"
        frames.append(df.reset_index().assign(task=name))
    out = pd.concat(frames, ignore_index=True).set_index(["task", "split"])
    if "documents" in out:
        # formats without documents (GLUE, .word/.label files) show no count, not 0
        none = out.groupby(level="task")["documents"].transform("sum") == 0
        out["documents"] = out["documents"].astype("Int64").mask(none)
        if none.all():
            out = out.drop(columns="documents")
    return out


def label_table(cfg: Config, top: int = 12) -> pd.DataFrame:
    """Share of each label in every task's training split (the ``top`` most frequent; the
    rest summed as ``other``): the data figure of chapter 1."""
    rows = []
    for name in cfg.tasks:
        task = get_task(name, cfg)
        if task.kind != "classification":
            continue
        y = pd.Series(task.encode("train")).map(dict(enumerate(task.label_names)))
        share = y.value_counts(normalize=True)
        head = share.iloc[:top]
        if len(share) > top:
            head = pd.concat([head, pd.Series({"other": share.iloc[top:].sum()})])
        rows += [{"task": name, "label": k, "share": float(v)} for k, v in head.items()]
    return pd.DataFrame(rows, columns=["task", "label", "share"])


def extraction_table(cfg: Config, *, progress: bool = True) -> pd.DataFrame:
    """Extract every model x task x split of the run; one row each with shape and seconds.

    ``seconds`` is the wall time of this call (close to zero when the cache answered);
    ``extraction_seconds`` the time the extraction took when it ran, as recorded.
    """
    rows = []
    for model in cfg.models:
        for task in cfg.tasks:
            for split in ("train", "dev", "test"):
                start = time.perf_counter()
                acts = get_activations(model, task, split, cfg, progress=progress)
                timings = acts.meta.get("timings") or {}
                rows.append(
                    {
                        "model": model,
                        "task": task,
                        "split": split,
                        "features from": "fine-tuned"
                        if acts.meta["source"].finetuned_on
                        else "imported"
                        if acts.meta["source"].imported
                        else "pretrained",
                        "instances": acts.n_instances,
                        "layers": acts.n_layers,
                        "hidden": acts.n_hidden,
                        "seconds": round(time.perf_counter() - start, 2),
                        "extraction_seconds": timings.get("total_s"),
                    }
                )
    return pd.DataFrame(rows)


def baseline_table(cfg: Config) -> pd.DataFrame:
    """Majority-class baseline of every task (the training split's most frequent label, or
    its mean for regression) on dev and test, in the task's metric."""
    from ...analysis.metrics import majority_baseline

    rows = []
    for name in cfg.tasks:
        task = get_task(name, cfg)
        y = task.encode("train")
        row = {"task": name, "metric": task.metric}
        for split in ("dev", "test"):
            row[split] = majority_baseline(
                y, task.encode(split), task.metric, regression=task.kind == "regression"
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("task")
