"""The steps the chapters call, one module per stage of the paper.

Every step returns a cached result (see :mod:`redundancy.report.cache`); the analysis maths
lives in :mod:`redundancy.analysis`, and these functions only fetch features, call it over
the run's seeds and arrange the results.

========================  ==========================================================
module                    steps
========================  ==========================================================
``inputs`` (ch. 1)        ``model_table``, ``task_table``, ``label_table``,
                          ``baseline_table``, ``extraction_table``
``layers`` (ch. 2, 4)     ``layer_cka``, ``cka_uncertainty``, ``cross_model_cka``,
                          ``layer_probe_scores``, ``oracle_probes``, ``oracle_scores``,
                          ``selected_layers``, ``incremental_predictions``,
                          ``oracle_test_predictions``
``neurons`` (ch. 3, 5)    ``neuron_correlation``, ``cc_sweep``, ``cc_sweep_predictions``,
                          ``cluster_labels``, ``cluster_windows_for``, ``minimal_sets``,
                          ``minimal_set_predictions``
``transfer`` (ch. 6)      ``transfer_table``, ``transfer_predictions``
``timing`` (ch. 7)        ``forward_timing``, ``probe_timing``
========================  ==========================================================
"""

from .inputs import baseline_table, extraction_table, label_table, model_table, task_table
from .layers import (
    cka_uncertainty,
    cross_model_cka,
    incremental_predictions,
    layer_cka,
    layer_probe_scores,
    oracle_probes,
    oracle_scores,
    oracle_test_predictions,
    selected_layers,
    subsets_of_layers,
)
from .neurons import (
    RANK_GRID,
    cc_sweep,
    cc_sweep_predictions,
    cluster_labels,
    cluster_windows_for,
    minimal_set_predictions,
    minimal_sets,
    neuron_correlation,
)
from .timing import forward_timing, probe_timing
from .transfer import transfer_predictions, transfer_table

__all__ = [
    "RANK_GRID",
    "baseline_table",
    "cc_sweep",
    "cc_sweep_predictions",
    "cka_uncertainty",
    "cluster_labels",
    "incremental_predictions",
    "minimal_set_predictions",
    "oracle_test_predictions",
    "transfer_predictions",
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
