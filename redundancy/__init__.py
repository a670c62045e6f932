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
    "resolve_model": "redundancy.encoders.models",
    "load_model": "redundancy.encoders.models",
    "extract": "redundancy.encoders.extract",
    "Activations": "redundancy.encoders.extract",
    "finetune": "redundancy.encoders.finetune",
    # general redundancy
    "moments": "redundancy.analysis.similarity",
    "correlation": "redundancy.analysis.similarity",
    "layer_cka": "redundancy.analysis.similarity",
    "cross_cka": "redundancy.analysis.similarity",
    "linear_cka": "redundancy.analysis.similarity",
    "correlation_clustering": "redundancy.analysis.clustering",
    "cluster_neurons": "redundancy.analysis.clustering",
    "correlation_linkage": "redundancy.analysis.clustering",
    "threshold_sweep": "redundancy.analysis.clustering",
    "cluster_windows": "redundancy.analysis.clustering",
    "select_representatives": "redundancy.analysis.clustering",
    # task-specific redundancy
    "train_probe": "redundancy.analysis.probes",
    "train_probes": "redundancy.analysis.probes",
    "evaluate": "redundancy.analysis.probes",
    "evaluate_probes": "redundancy.analysis.probes",
    "layer_subsets": "redundancy.analysis.probes",
    "incremental_subsets": "redundancy.analysis.probes",
    "LinearProbe": "redundancy.analysis.probes",
    "lca_ranking": "redundancy.analysis.ranking",
    "rank_neurons": "redundancy.analysis.ranking",
    "minimal_set": "redundancy.analysis.ranking",
    "LayerSelector": "redundancy.analysis.transfer",
    "select_layer": "redundancy.analysis.transfer",
    "ccfs": "redundancy.analysis.transfer",
    "ccfs_sweep": "redundancy.analysis.transfer",
    "TransferResult": "redundancy.analysis.transfer",
    # baselines, intervals, control tasks
    "majority_baseline": "redundancy.analysis.metrics",
    "bootstrap_interval": "redundancy.analysis.metrics",
    "control_labels": "redundancy.analysis.controls",
    "selectivity": "redundancy.analysis.controls",
    # activations made elsewhere
    "open_activation_set": "redundancy.encoders.interop",
    "read_activations": "redundancy.encoders.interop",
    "write_activations": "redundancy.encoders.interop",
    # the book's parameters
    "Config": "redundancy.report.config",
    # timing
    "time_forward": "redundancy.analysis.timing",
    "time_probe": "redundancy.analysis.timing",
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
