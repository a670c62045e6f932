"""Tasks and features of a run: which model's activations stand for a (model, task) pair,
what identifies them, and getting them.

Token tasks use the pretrained model; sentence tasks the model fine-tuned on the task (when
``cfg.finetune``, as in the paper). A features *identity* names them without producing them:
the base model's content digest, the fine-tuning recipe (never the fine-tuned weights, which
may not exist yet), the task's data and the extraction options. Result keys are built from
it, so computing a key never trains, fine-tunes or extracts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .._utils import stable_hash
from .config import Config

logger = logging.getLogger(__name__)

__all__ = [
    "FeatureSource",
    "features_identity",
    "get_activations",
    "get_task",
    "source_of",
]

_TASKS: dict[str, object] = {}


def get_task(name: str, cfg: Config):
    """Load a task with the run's options and data folder (memoised in the process).

    Returns
    -------
    redundancy.data.base.Task
    """
    from ..data.tasks import load_task

    options = dict(cfg.task_options.get(name, {}))
    data_dir = cfg.data_dir.get(name)
    key = stable_hash({"name": name, "options": options, "data_dir": data_dir})
    if key not in _TASKS:
        _TASKS[key] = load_task(name, data_dir=data_dir, **options)
    return _TASKS[key]


@dataclass(frozen=True)
class FeatureSource:
    """Where the features of a (model, task) pair come from.

    Attributes
    ----------
    model : str
        The model as the run names it (``"minilm"``, a folder, a hub id, an activation set).
    finetuned_on : str or None
        The sentence task the model is fine-tuned on first, or None (pretrained features).
    imported : bool
        True when ``model`` is a folder of activations extracted elsewhere.
    """

    model: str
    finetuned_on: str | None = None
    imported: bool = False

    @property
    def label(self) -> str:
        """How tables and figures name these features."""
        return self.model if self.finetuned_on is None else f"{self.model} (fine-tuned)"


def source_of(model: str, task_name: str, cfg: Config, finetuned: bool | None = None):
    """The :class:`FeatureSource` of ``task_name``: fine-tuned for sentence tasks when
    ``cfg.finetune``, pretrained otherwise; ``finetuned`` forces one or the other."""
    if _is_activation_set(model):
        return FeatureSource(model, imported=True)
    if finetuned is None:
        finetuned = cfg.finetune and task_name in cfg.sentence_tasks
    return FeatureSource(model, task_name if finetuned else None)


def _is_activation_set(model: str) -> bool:
    from ..encoders.interop import is_activation_set

    return is_activation_set(model)


_SETS: dict[str, object] = {}


def activation_set(model: str):
    """The :class:`~redundancy.encoders.interop.ActivationSet` of a folder (one per process,
    so its file digests are computed once)."""
    from pathlib import Path

    from ..encoders.interop import open_activation_set

    key = str(Path(model).resolve())
    if key not in _SETS:
        _SETS[key] = open_activation_set(model)
    return _SETS[key]


def _finetune_options(cfg: Config) -> dict:
    from ..encoders.finetune import finetune_options

    return finetune_options(
        epochs=cfg.finetune_epochs,
        max_train_sentences=cfg.finetune_max_train_sentences,
        random_state=cfg.random_state,
    )


def features_identity(
    model: str, task_name: str, cfg: Config, finetuned: bool | None = None
) -> dict:
    """What identifies the features of ``(model, task_name)``: content, recipe, data, options.

    Cheap and free of side effects: model files are hashed (memoised), nothing is trained
    or extracted.
    """
    from ..encoders.models import model_identity

    source = source_of(model, task_name, cfg, finetuned)
    task = get_task(task_name, cfg)
    if source.imported:
        model_id = {"imported": activation_set(model).identity}
    elif source.finetuned_on:
        from ..encoders.finetune import finetune_key

        model_id = {"finetuned": finetune_key(model, task, _finetune_options(cfg))}
    else:
        model_id = {"pretrained": model_identity(model)["digest" if _is_local(model) else "hub_id"]}
    options = {k: v for k, v in cfg.extract_options().items() if k not in ("batch_size", "device")}
    return {
        "model": model_id,
        "task": [task.fingerprint(s) for s in ("train", "dev", "test")],
        "extract": options,
    }


def _is_local(model: str) -> bool:
    from ..encoders.models import model_identity

    return "digest" in model_identity(model)


def finetuned_model(model: str, task_name: str, cfg: Config, *, progress: bool = True) -> str:
    """Folder of ``model`` fine-tuned on a sentence task (trained once, then cached)."""
    from ..encoders.finetune import finetune

    options = _finetune_options(cfg)
    path = finetune(
        model,
        get_task(task_name, cfg),
        lr=options["lr"],
        epochs=options["epochs"],
        max_train_sentences=options["max_train_sentences"],
        random_state=options["random_state"],
        device=cfg.device,
        progress=progress,
    )
    return str(path)


def get_activations(
    model: str,
    task_name: str,
    split: str,
    cfg: Config,
    *,
    finetuned: bool | None = None,
    progress: bool = True,
):
    """Activations of one split (extracted once, then read from the library's cache).

    Returns
    -------
    redundancy.encoders.extract.Activations
        ``meta["source"]`` holds the :class:`FeatureSource` (``acts.model`` stays the model
        name given).
    """
    source = source_of(model, task_name, cfg, finetuned)
    task = get_task(task_name, cfg)
    if source.imported:
        acts = activation_set(model).get(task, split)
    else:
        from ..encoders.extract import extract

        path = finetuned_model(model, task_name, cfg) if source.finetuned_on else model
        acts = extract(path, task, split, progress=progress, **cfg.extract_options())
        acts.model = model
    acts.meta["source"] = source
    return acts
