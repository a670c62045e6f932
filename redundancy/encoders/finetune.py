"""Fine-tune an encoder on a sentence task, as the paper does before extracting sentence features.

The recipe is the ``transformers`` default the authors used: AdamW with lr 5e-5, betas
(0.9, 0.999), eps 1e-8, no weight decay, a linear decay to 0 without warm-up, gradient norm
clipped at 1.0, 3 epochs, batch 8, max length 128, seed 42. The result is a model folder
that :func:`redundancy.extract.extract` accepts as ``model`` (it reads the encoder's hidden
states and ignores the classification head).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from .._utils import cache_dir as _cache_dir
from .._utils import (
    entry_lock,
    intact_folder,
    progress_bar,
    resolve_device,
    save_model_folder,
    source_digest,
    stable_hash,
)
from ..constraints import check
from ..data.base import Task

logger = logging.getLogger(__name__)

FINETUNE_FORMAT = 2
RECORD = "finetune.json"
"""The record written last into a fine-tuned folder: options, losses and the SHA-256 of every
other file, checked before the folder is used."""


def finetune_options(
    *,
    lr: float = 5e-5,
    epochs: int = 3,
    batch_size: int = 8,
    max_length: int = 128,
    random_state: int = 42,
    max_train_sentences: int | None = None,
) -> dict:
    """The checked hyper-parameters of :func:`finetune` as a plain dict (part of its key)."""
    caller = "finetune"
    return {
        "lr": check("lr", lr, caller, param="learning_rate"),
        "epochs": check("epochs", epochs, caller),
        "batch_size": check("batch_size", batch_size, caller),
        "max_length": check("max_length", max_length, caller),
        "random_state": check("random_state", random_state, caller),
        "max_train_sentences": check("max_train_sentences", max_train_sentences, caller),
    }


def _check_task(task) -> None:
    if not isinstance(task, Task) or task.level != "sentence":
        raise ValueError(
            "The 'task' parameter of finetune must be a sentence-level Task. "
            f"Got {getattr(task, 'level', type(task).__name__)!r} instead."
        )


def finetune_key(model: str, task: Task, options: dict) -> str:
    """Identity of a fine-tuned model *before* it exists.

    It is what the model is trained from: the base model's content, the task's training
    data, the hyper-parameters (:func:`finetune_options`) and the source of this module.
    Computing it never trains anything; :func:`finetune` stores its result under this key,
    and the cache keys of results built on fine-tuned features use it.
    """
    from .models import model_identity

    _check_task(task)
    return stable_hash(
        {
            "model": model_identity(model),
            "data": task.fingerprint("train"),
            "options": options,
            "format": FINETUNE_FORMAT,
            "code": source_digest(__name__),
        }
    )


def finetune(
    model: str,
    task: Task,
    *,
    lr: float = 5e-5,
    epochs: int = 3,
    batch_size: int = 8,
    max_length: int = 128,
    random_state: int = 42,
    max_train_sentences: int | None = None,
    device: str | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Fine-tune ``model`` on the training split of a sentence task; return the saved folder.

    Parameters
    ----------
    model : str
        ``"minilm"``, ``"mpnet"``, a hub id or a local folder (see
        :func:`redundancy.models.resolve_model`).
    task : Task
        A sentence-level task (``task.level == "sentence"``) from
        :func:`redundancy.data.load_task`; pairs are encoded as pairs. Classification uses
        ``task.n_classes`` outputs and cross-entropy, regression one output and MSE.
    lr, epochs, batch_size, max_length : paper (``transformers``) defaults
    random_state : int, default=42
        Seeds the classification head, dropout and the shuffling of the training set.
    max_train_sentences : int, optional
        Train on a seeded random subset of this many sentences (for CPU runs).
    device : str, optional
        ``None`` picks the GPU when there is one.
    progress : bool, default=True
    cache_dir : path, optional
        Default ``cache_dir("finetuned")``.

    Returns
    -------
    pathlib.Path
        Folder with the model, its tokenizer and ``finetune.json`` (options, per-step losses).
        It is keyed by model identity, task fingerprint and hyper-parameters and reused when
        present; it is written to a temporary folder and renamed, so it is complete or absent.
        Before reuse its files are checked against the checksums recorded at save (hashed
        again when a file's size or modification time changed, or always with
        ``REDUNDANCY_VERIFY=1``); a missing, truncated or changed file makes it train again,
        with a warning naming the file.
    """
    from .models import resolve_model

    options = finetune_options(
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        max_length=max_length,
        random_state=random_state,
        max_train_sentences=max_train_sentences,
    )
    key = finetune_key(model, task, options)
    path = resolve_model(model)
    root = Path(cache_dir) if cache_dir is not None else _cache_dir("finetuned")
    root.mkdir(parents=True, exist_ok=True)
    name = model if model in ("minilm", "mpnet") else Path(path).name
    target = root / f"{name}-{task.name}-{key}"
    with entry_lock(root / f".{key}.lock"):  # one process trains a key; the others wait
        done = _finished(root, target, key)
        if done is not None:
            logger.info("fine-tuned model found in %s", done)
            return done
        record = _train(path, task, options, resolve_device(device), progress)
        _save(
            record,
            target,
            {"model": str(model), "task": task.name, "key": key, "options": options},
        )
    logger.info("fine-tuned %s on %s in %.0fs -> %s", model, task.name, record["seconds"], target)
    return target


def _finished(root: Path, target: Path, key: str) -> Path | None:
    """A complete, intact fine-tuned folder of ``key`` (the name only helps people: the same
    base model in another folder has the same key), or None. A folder whose files differ
    from its record is removed with a warning (the caller holds the key's lock)."""
    for folder in dict.fromkeys([target, *sorted(root.glob(f"*-{key}"))]):
        if intact_folder(folder, RECORD, "fine-tuned model", "training it again"):
            return folder
    return None


def _save(record: dict, target: Path, info: dict) -> None:
    """The model, its tokenizer and ``finetune.json`` (with every file's SHA-256), written
    whole or not at all."""
    model_obj, tokenizer = record.pop("model"), record.pop("tokenizer")
    save_model_folder(model_obj, tokenizer, target, RECORD, {**record, **info})


def _training_data(path: str, task: Task, options: dict):
    """The (capped, seeded) training sentences tokenised once, and their labels."""
    from transformers import AutoConfig, AutoTokenizer

    from ..data.base import UNSEEN_LABEL
    from .alignment import default_max_length

    sp = task.train
    y = task.encode("train")
    index = np.arange(len(sp))
    cap = options["max_train_sentences"]
    if cap is not None and cap < len(sp):
        index = np.sort(np.random.default_rng(options["random_state"]).permutation(len(sp))[:cap])
    sentences = [sp.sentences[i] for i in index]
    tokenizer = AutoTokenizer.from_pretrained(path)
    # never longer than the model accepts (a model with a short position table)
    limit = default_max_length(tokenizer, AutoConfig.from_pretrained(path))
    enc = tokenizer(
        [s[0] for s in sentences],
        [s[1] for s in sentences] if len(sentences[0]) == 2 else None,
        truncation=True,
        max_length=min(options["max_length"], limit),
    )
    # the classification head has one output per training label (not the unseen placeholder)
    n_labels = 1 if task.kind == "regression" else len(set(task.label_names) - {UNSEEN_LABEL})
    return tokenizer, enc, y[index], n_labels


def _optimiser(net, options: dict, total: int):
    """run_glue's defaults: AdamW without weight decay, linear decay to 0, no warm-up.

    The update runs as one fused kernel on the CPU and on CUDA (the same arithmetic as
    torch's per-tensor loop, to float32 rounding): for MiniLM on 2 CPU cores the loop took
    95 ms of a 375 ms step, the fused kernel 15 ms."""
    import torch

    device = next(net.parameters()).device.type
    optimizer = torch.optim.AdamW(
        net.parameters(),
        lr=options["lr"],
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        fused=device in ("cpu", "cuda") or None,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, (total - step) / total)
    )
    return optimizer, scheduler


def _train(path: str, task: Task, options: dict, device: str, progress: bool) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification

    from .models import quiet_loading

    tokenizer, enc, y, n_labels = _training_data(path, task, options)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    regression = task.kind == "regression"
    labels = torch.as_tensor(y, dtype=torch.float32 if regression else torch.long)
    bs, n = options["batch_size"], len(y)
    total = -(-n // bs) * options["epochs"]
    t0, losses = time.perf_counter(), []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options["random_state"])
        with quiet_loading(progress):
            net = AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=n_labels,
                problem_type="regression" if regression else "single_label_classification",
            ).to(device)
        net.train()
        optimizer, scheduler = _optimiser(net, options, total)
        generator = torch.Generator().manual_seed(options["random_state"])
        bar = progress_bar(
            total=total, desc=f"fine-tune {task.name}", unit="batch", progress=progress
        )
        with bar:
            for _ in range(options["epochs"]):
                order = torch.randperm(n, generator=generator).numpy()
                for start in range(0, n, bs):
                    idx = order[start : start + bs]
                    batch = tokenizer.pad(
                        [{k: enc[k][i] for k in keys} for i in idx],
                        padding=True,
                        return_tensors="pt",
                    )
                    out = net(
                        **{k: v.to(device) for k, v in batch.items()}, labels=labels[idx].to(device)
                    )
                    out.loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(float(out.loss.detach()))
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.4f}")
    net.eval()
    net.to("cpu")
    return {
        "model": net,
        "tokenizer": tokenizer,
        "losses": losses,
        "n_train": n,
        "seconds": round(time.perf_counter() - t0, 3),
        "device": device,
    }
