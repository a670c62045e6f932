"""Timing steps (chapter 7): forward passes stopped after each layer, probe training time
against the number of features. Both are measurements: cached like results, so a rebuilt
book shows the same numbers until a parameter, the code or the device changes."""

from __future__ import annotations

import pandas as pd

from ..cache import cached, check_table
from ..config import Config
from ..features import get_task

__all__ = ["TIMING_MAX_POINTS", "forward_timing", "ls_picks", "probe_timing"]

TIMING_MAX_POINTS = 13
"""Stopping points timed for a model deeper than 12 blocks (every layer of shallower ones):
evenly spaced, plus every layer LayerSelector picked. A pass stopped after layer ``l`` costs
``l`` blocks, so timing all 31 layers of a 30-block decoder costs 2.4 times these 13."""


def ls_picks(runs: pd.DataFrame) -> pd.DataFrame:
    """``model``, ``task``, ``layer``: the layers LayerSelector picked (LS+CC+FS at the
    smallest δ_LS, every seed) in transfer tables (:func:`.transfer.transfer_table`)."""
    strict = runs[(runs["branch"] == "LS+CC+FS") & (runs["delta_ls"] == runs["delta_ls"].min())]
    return strict[["model", "task", "layer"]].drop_duplicates()


def _picked_layers(model: str, cfg: Config) -> list[int]:
    from .transfer import transfer_table

    runs = pd.concat(
        [transfer_table(model, t, cfg).assign(model=model, task=t) for t in cfg.tasks],
        ignore_index=True,
    )
    return sorted(int(x) for x in ls_picks(runs)["layer"].unique())


def forward_timing(model: str, cfg: Config) -> pd.DataFrame:
    """Raw forward-pass timings of ``model`` stopped after each layer (round robin over
    ``cfg.timing_repeats`` rounds, after a warm-up), on the first ``cfg.timing_instances``
    test sentences of the run's first task. A model of more than :data:`TIMING_MAX_POINTS`
    layers is stopped at that many evenly spaced layers and at every layer LayerSelector
    picked for it (chapter 6's transfer tables, computed if needed).

    Returns
    -------
    DataFrame
        :func:`redundancy.analysis.timing.time_forward`'s raw table plus ``sentences_from``.
    """
    from ..._utils import resolve_device
    from ...analysis.timing import time_forward
    from ...encoders.models import model_identity

    task_name = cfg.tasks[0]
    task = get_task(task_name, cfg)
    sentences = list(task.test.sentences)[: cfg.timing_instances]
    picked = _picked_layers(model, cfg)
    inputs = {
        "model": model_identity(model),
        "task": task.fingerprint("test"),
        "n": cfg.timing_instances,
        "batch_size": cfg.batch_size,
        "repeats": cfg.timing_repeats,
        "device": resolve_device(cfg.device),
        "layers": [picked, TIMING_MAX_POINTS],
    }

    def compute():
        return time_forward(
            model,
            sentences,
            picked,
            max_points=TIMING_MAX_POINTS,
            batch_size=cfg.batch_size,
            repeats=cfg.timing_repeats,
            device=cfg.device,
            progress=True,
        ).assign(sentences_from=f"{task_name} test")

    check = check_table("layer", "repeat", "ms_per_instance", "n_blocks")
    return cached(
        "forward_timing", inputs, compute, code=__name__, kind="table", check=check, label=model
    )


def probe_timing(cfg: Config) -> pd.DataFrame:
    """Raw probe-training timings (``cfg.probe_epochs`` epochs, 2 classes, synthetic data of
    ``cfg.timing_probe_instances`` rows) for each of ``cfg.timing_features``, round robin.

    Returns
    -------
    DataFrame
        :func:`redundancy.analysis.timing.time_probe`'s raw table.
    """
    from ..._utils import resolve_device
    from ...analysis.timing import time_probe

    options = {k: v for k, v in cfg.probe_options().items() if k not in ("epochs", "device")}
    inputs = {
        "features": list(cfg.timing_features),
        "n": cfg.timing_probe_instances,
        "epochs": cfg.probe_epochs,
        "repeats": cfg.timing_repeats,
        "options": options,
        "device": resolve_device(cfg.device),
    }

    def compute():
        return time_probe(
            cfg.timing_features,
            n_instances=cfg.timing_probe_instances,
            epochs=cfg.probe_epochs,
            repeats=cfg.timing_repeats,
            random_state=cfg.random_state,
            device=cfg.device,
            progress=True,
            **{k: v for k, v in options.items() if k == "compute_dtype"},
        )

    check = check_table("n_features", "repeat", "seconds")
    return cached("probe_timing", inputs, compute, code=__name__, kind="table", check=check)
