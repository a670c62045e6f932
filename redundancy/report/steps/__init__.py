"""The steps the chapters call, one module per stage of the paper.

Every step returns a cached result (see :mod:`redundancy.report.cache`); the analysis maths
lives in :mod:`redundancy.analysis`, and these functions only fetch features, call it over
the run's seeds and arrange the results.

========================  ==========================================================
module                    steps
========================  ==========================================================
``inputs`` (ch. 1)        ``model_table``, ``task_table``, ``label_table``,
                          ``baseline_table``, ``extraction_table``
``layers`` (ch. 2, 4)     ``layer_cka``, ``cross_model_cka``, ``layer_probe_scores``,
                          ``oracle_probes``, ``oracle_scores``, ``selected_layers``
``neurons`` (ch. 3, 5)    ``neuron_correlation``, ``cc_sweep``, ``cluster_windows_for``,
                          ``minimal_sets``
``transfer`` (ch. 6)      ``transfer_table``
``timing`` (ch. 7)        ``forward_timing``, ``probe_timing``
========================  ==========================================================
"""

from .inputs import baseline_table, extraction_table, label_table, model_table, task_table
from .layers import (
    cross_model_cka,
    layer_cka,
    layer_probe_scores,
    oracle_probes,
    oracle_scores,
    selected_layers,
    subsets_of_layers,
)
from .neurons import cc_sweep, cluster_windows_for, minimal_sets, neuron_correlation
from .timing import forward_timing, probe_timing
from .transfer import transfer_table

__all__ = [
    "baseline_table",
    "cc_sweep",
    "cluster_windows_for",
    "cross_model_cka",
    "extraction_table",
    "forward_timing",
    "label_table",
    "layer_cka",
    "layer_probe_scores",
    "minimal_sets",
    "model_table",
    "neuron_correlation",
    "oracle_probes",
    "oracle_scores",
    "probe_timing",
    "selected_layers",
    "subsets_of_layers",
    "task_table",
    "transfer_table",
]
