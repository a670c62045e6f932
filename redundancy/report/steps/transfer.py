"""Feature-based transfer steps (chapter 6): LayerSelector + CC + FS and LayerSelector + FS
(the authors' two branches), for every δ pair and seed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cache import cached, check_keys, check_table
from ..config import Config
from ._probing import probe_data, stored_predictions
from .layers import _probe_inputs, layer_probe_scores

__all__ = ["transfer_predictions", "transfer_table"]


def _run(model: str, task_name: str, cfg: Config) -> pd.DataFrame:
    from ...analysis.transfer import IncrementalScores, ccfs_seeds

    data = probe_data(model, task_name, cfg)
    scores = layer_probe_scores(model, task_name, cfg)
    inc = scores[(scores["target"] == "task") & (scores["kind"] == "incremental")]
    incremental = {}
    for seed in cfg.seeds:
        part = inc[inc["seed"] == seed].sort_values("layer")
        incremental[seed] = IncrementalScores(
            dev=part["dev"].tolist(), test=part["test"].tolist(), metric=data.task.metric
        )
    split = [a for s in ("train", "dev", "test") for a in (data.acts[s].X, data.acts[s].labels)]
    results = ccfs_seeds(
        *split,
        incremental=incremental,
        n_layers=data.train.n_layers,
        n_hidden=data.train.n_hidden,
        deltas=cfg.delta_pairs,
        thresholds=(cfg.cc_threshold, None),
        representative=cfg.representative,
        metric=data.task.metric,
        kind=data.task.kind,
        progress=True,
        **cfg.probe_options(),
    )
    flat = [(seed, r) for (seed, _), runs in results.items() for r in runs]
    table = pd.DataFrame([{"seed": seed, **r.as_row()} for seed, r in flat])
    # the final probes' predictions, for the paired bootstrap of the verdict, in the
    # table's row order (the probes the searches trained: no second pass over the data)
    final = [r.probe for _, r in flat]
    arrays = {
        "dev": stored_predictions(data, final, cfg),
        "test": stored_predictions(data, final, cfg, "test"),
    }
    return table, arrays


def _inputs(model, task_name, cfg) -> dict:
    return {
        **_probe_inputs(model, task_name, cfg),
        "pairs": [list(p) for p in cfg.delta_pairs],
        "threshold": cfg.cc_threshold,
        "representative": cfg.representative,
    }


def transfer_predictions(
    model: str, task_name: str, cfg: Config, split: str = "test"
) -> np.ndarray:
    """Predictions on ``split`` (``"dev"`` or ``"test"``) of the final (FS) probe of every
    row of :func:`transfer_table`, ``(n_rows, n)`` (kept beside the table; rebuilt with it
    when missing)."""
    arrays = cached(
        "transfer_predictions",
        _inputs(model, task_name, cfg),
        lambda: _run(model, task_name, cfg)[1],
        code=__name__,
        kind="arrays",
        check=check_keys("dev", "test"),
        label=f"{model} / {task_name}",
    )
    return arrays[split]


def transfer_table(model: str, task_name: str, cfg: Config) -> pd.DataFrame:
    """LayerSelector + CC + FS and LayerSelector + FS for every δ pair and seed.

    The incremental probes are those of :func:`redundancy.report.steps.layers.
    layer_probe_scores` (same seeds); the clustering representatives and the probes of the
    later steps use the same seed.

    Returns
    -------
    DataFrame
        One row per seed, branch (``"LS+CC+FS"``, ``"LS+FS"``) and δ pair: the columns of
        :meth:`redundancy.analysis.transfer.TransferResult.as_row` plus ``seed``
        (``fraction_kept`` and ``score_kept`` are fractions).
    """
    inputs = _inputs(model, task_name, cfg)
    check = check_table("seed", "branch", "delta_ls", "layer", "n_fs", "score_kept")

    def compute():
        table, arrays = _run(model, task_name, cfg)
        cached("transfer_predictions", inputs, lambda: arrays, code=__name__, kind="arrays")
        return table

    return cached(
        "transfer",
        inputs,
        compute,
        code=__name__,
        kind="table",
        check=check,
        label=f"{model} / {task_name}",
    )
