"""What the paper reports and how it was set up: the one place its numbers are written.

Dalvi, Sajjad, Durrani, Belinkov. *Analyzing Redundancy in Pretrained Transformer Models.*
EMNLP 2020 (arXiv 2004.04010). The headline claims come from the abstract; the protocol
from the authors' code and README (see ``shared/PAPER.md`` in the project's workspace).
Fractions are fractions (0.85), never percents. The verdict rules that compare a run with
these numbers are in :mod:`redundancy.report.verdicts`; the defaults of
:class:`redundancy.report.config.Config` are taken from here.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["PAPER"]


class _Facts:
    """Read-only attribute bag (``PAPER.redundant_neurons``)."""

    def __init__(self, **facts):
        self.__dict__.update(facts)

    def __setattr__(self, name, value):  # pragma: no cover - guard against edits
        raise AttributeError("the paper's facts are read-only")


PAPER = _Facts(
    citation="Dalvi, Sajjad, Durrani and Belinkov, Analyzing Redundancy in Pretrained "
    "Transformer Models, EMNLP 2020",
    # --- headline claims (abstract)
    redundant_neurons=0.85,  # general neuron-level redundancy
    removable_for_task=0.92,  # at least this share removable for a downstream task
    transfer_score_kept=0.97,  # LayerSelector + CC + FS keeps this share of performance ...
    transfer_neurons_kept=0.10,  # ... with at most this share of the neurons
    # --- models and features
    models=("bert-base-cased", "xlnet-base-cased"),
    n_layers=13,  # embeddings + 12 blocks
    n_hidden=768,
    n_features=9984,
    # --- data protocol
    train_tokens=150_000,  # token tasks: first 150,000 training tokens
    # "standard dev and test": for WSJ POS the usual split is sections 22 and 23
    dev_tokens=40_117,
    test_tokens=56_684,
    glue_dev_fraction=0.1,  # GLUE: official train split 90/10 into train/dev
    glue_seed=7361,
    # --- probe (elastic-net logistic regression)
    probe=MappingProxyType({"epochs": 10, "lr": 1e-3, "l1": 1e-5, "l2": 1e-5, "batch_size": 128}),
    # --- fine-tuning of sentence-task models (transformers run_glue defaults)
    finetune=MappingProxyType({"lr": 5e-5, "epochs": 3, "batch_size": 8, "max_length": 128}),
    # --- analyses
    thresholds=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    cc_threshold=0.3,
    delta=1.0,
    delta_pairs=((3.0, 1.0), (2.0, 1.0), (1.0, 1.0)),
    representative="random",
    # --- timing (GTX TITAN X)
    forward_ms=MappingProxyType({"BERT": 0.715, "XLNet": 1.246}),
    timing_device="GTX TITAN X",
    probe_seconds=48.48,
    probe_timing=MappingProxyType(
        {"features": 9984, "instances": 100_000, "epochs": 10, "classes": 2}
    ),
)
"""The paper's reported numbers and protocol."""


def substitutions() -> dict[str, str]:
    """The paper's numbers as text for the book's Markdown pages (MyST substitutions:
    ``{{ redundant_neurons }}`` in ``book/intro.md``)."""

    def pct(x: float) -> str:
        return f"{100 * x:g}%"

    probe = PAPER.probe
    return {
        "redundant_neurons": pct(PAPER.redundant_neurons),
        "removable_for_task": pct(PAPER.removable_for_task),
        "transfer_score_kept": pct(PAPER.transfer_score_kept),
        "transfer_neurons_kept": pct(PAPER.transfer_neurons_kept),
        "n_features": f"{PAPER.n_features:,}",
        "train_tokens": f"{PAPER.train_tokens:,}",
        "probe": (
            f"λ1 = λ2 = {probe['l1']:g}, learning rate {probe['lr']:g}, batches of "
            f"{probe['batch_size']}, {probe['epochs']} epochs"
        ),
    }
