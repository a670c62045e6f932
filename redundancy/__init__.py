"""redundancy: analyses of redundancy in pretrained transformers (Dalvi et al., EMNLP 2020).

The curated API is importable from the package itself; the names resolve lazily, so
``import redundancy`` stays cheap (torch and transformers load on first use). The module map
is in ``docs/DESIGN.md``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    # data
    "load_task": "redundancy.data.tasks",
    "list_tasks": "redundancy.data.tasks",
    "task_summary": "redundancy.data.tasks",
    "Task": "redundancy.data.base",
    "Split": "redundancy.data.base",
    # models and activations
    "resolve_model": "redundancy.models",
    "load_model": "redundancy.models",
    "extract": "redundancy.extract",
    "Activations": "redundancy.extract",
    "finetune": "redundancy.finetune",
    # general redundancy
    "moments": "redundancy.similarity",
    "correlation": "redundancy.similarity",
    "layer_cka": "redundancy.similarity",
    "cross_cka": "redundancy.similarity",
    "linear_cka": "redundancy.similarity",
    "correlation_clustering": "redundancy.clustering",
    "cluster_neurons": "redundancy.clustering",
    "correlation_linkage": "redundancy.clustering",
    "threshold_sweep": "redundancy.clustering",
    "cluster_windows": "redundancy.clustering",
    "select_representatives": "redundancy.clustering",
    # task-specific redundancy
    "train_probe": "redundancy.probes",
    "train_probes": "redundancy.probes",
    "evaluate": "redundancy.probes",
    "evaluate_probes": "redundancy.probes",
    "layer_subsets": "redundancy.probes",
    "incremental_subsets": "redundancy.probes",
    "LinearProbe": "redundancy.probes",
    "lca_ranking": "redundancy.ranking",
    "rank_neurons": "redundancy.ranking",
    "minimal_set": "redundancy.ranking",
    "LayerSelector": "redundancy.transfer",
    "select_layer": "redundancy.transfer",
    "ccfs": "redundancy.transfer",
    "ccfs_sweep": "redundancy.transfer",
    "TransferResult": "redundancy.transfer",
    # timing
    "time_forward": "redundancy.timing",
    "time_probe": "redundancy.timing",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'redundancy' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
