"""Removing blocks of an encoder and measuring what a task loses.

A decoder's loss is its perplexity (:mod:`redundancy.analysis.removal`); an encoder such as
MiniLM or MPNet has no language-model head, so what removing blocks costs is read from a
task: the accuracy of a probe retrained on the pruned model's last layer, or of a
fine-tuned model's own classifier with no retraining at all.

* :func:`encoder_blocks` finds the block list of a BERT-like model (``encoder.layer``) or
  any model whose base holds a ``layers``/``layer`` ModuleList.
* :class:`EncoderRuns` passes fixed batches through the model once, records the input of
  every block, and then answers "what does the model output without blocks ``R``?" by
  restarting from the recorded input of block ``min(R)``: the blocks before the first
  removed one are never run again (a test checks the result equals the pruned model run
  from its embeddings).
* :func:`greedy_order`-style search for encoders: :func:`output_change` is the calibration
  loss (how far the pruned model's last layer moves from the whole model's), the analogue
  of SLEB's language-model loss for a model without a language-model head.
* :func:`removal_sets` enumerates every set of ``k`` blocks when there are few (the exact
  distribution of a random choice) and draws seeded random sets otherwise.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "EncoderRuns",
    "encoder_blocks",
    "output_change",
    "removal_sets",
    "restart_plan",
]


def encoder_blocks(model):
    """``(owner, name)``: the module holding an encoder's block list and the attribute name.

    Looks in ``model.base_model.encoder`` (BERT, MPNet, RoBERTa...), then the base model
    itself, for a ``torch.nn.ModuleList`` called ``layer`` or ``layers``.
    """
    import torch

    base = getattr(model, "base_model", model)
    for owner in (getattr(base, "encoder", None), base):
        for name in ("layer", "layers"):
            if owner is not None and isinstance(getattr(owner, name, None), torch.nn.ModuleList):
                return owner, name
    raise ValueError(
        f"Cannot find the blocks of a {type(model).__name__}: expected a ModuleList at "
        "base_model.encoder.layer (BERT, MPNet, RoBERTa...) or base_model.layers."
    )


def _n_blocks(model) -> int:
    owner, name = encoder_blocks(model)
    return len(getattr(owner, name))


def restart_plan(removed: Sequence[int], total: int) -> tuple[int, list[int]]:
    """Where a pruned model restarts and what it then runs: ``(start, run)``.

    ``start`` is a block whose recorded input (in the whole model) equals the pruned
    model's input to ``run[0]``; ``run`` are the kept blocks from there on. Normally
    ``start = min(removed)``; when every block after it is removed too, the pruned model
    restarts from its last kept block instead.
    """
    removed = sorted({int(b) for b in removed})
    if not removed:
        return 0, list(range(total))
    if any(not 0 <= b < total for b in removed) or len(removed) >= total:
        raise ValueError(
            f"Cannot remove blocks {removed} of {total}: numbers must be in [0, {total}) "
            "and at least one block must stay."
        )
    kept = [b for b in range(total) if b not in removed]
    run = [b for b in kept if b > removed[0]]
    if run:
        return removed[0], run
    return kept[-1], [kept[-1]]


@contextlib.contextmanager
def _restarted(model, run: list[int], state):
    """Within the block, the model runs only blocks ``run`` and the first of them reads
    ``state`` instead of what the embeddings (and earlier blocks) produce."""
    import torch

    owner, name = encoder_blocks(model)
    blocks = getattr(owner, name)

    def swap_input(module, args, kwargs):
        if args:
            return (state, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": state}

    hook = blocks[run[0]].register_forward_pre_hook(swap_input, with_kwargs=True)
    setattr(owner, name, torch.nn.ModuleList([blocks[i] for i in run]))
    try:
        yield model
    finally:
        setattr(owner, name, blocks)
        hook.remove()


class EncoderRuns:
    """Fixed batches through an encoder, with any set of blocks removed.

    Parameters
    ----------
    model : transformers encoder (``AutoModel`` or ``AutoModelFor...``) in eval mode
    batches : list of dict
        Model inputs (``input_ids``, ``attention_mask``...), one dict per batch.
    readout : callable ``(output, i) -> anything``
        What to keep of the model's output for batch ``i`` (the last layer's word vectors,
        a classifier's logits...).

    The input of every block is recorded once (``(L, batch, seq, hidden)`` float32 per
    batch, kept in memory); :meth:`run` restarts each batch from the input of the first
    removed block.
    """

    def __init__(self, model, batches: list[dict], readout: Callable):
        self.model = model
        self.batches = list(batches)
        self.readout = readout
        self.total = _n_blocks(model)
        self.inputs: list = []
        self.full = self._record()

    def _record(self) -> list:
        import torch

        owner, name = encoder_blocks(self.model)
        seen: list = []

        def grab(module, args, kwargs):
            seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

        hooks = [b.register_forward_pre_hook(grab, with_kwargs=True) for b in getattr(owner, name)]
        outs = []
        try:
            with torch.inference_mode():
                for i, batch in enumerate(self.batches):
                    seen.clear()
                    outs.append(self.readout(self.model(**batch), i))
                    self.inputs.append(torch.stack(seen))
        finally:
            for h in hooks:
                h.remove()
        return outs

    def run(self, removed: Sequence[int] = ()) -> list:
        """The readout of every batch with blocks ``removed`` taken out (no repair)."""
        import torch

        if not len(removed):
            return self.full
        start, run = restart_plan(removed, self.total)
        outs = []
        with torch.inference_mode():
            for i, batch in enumerate(self.batches):
                with _restarted(self.model, run, self.inputs[i][start]):
                    outs.append(self.readout(self.model(**batch), i))
        return outs


def output_change(full, pruned) -> float:
    """Mean ``1 - cos`` between rows of the whole model's and the pruned model's last layer
    (float64); 0 when nothing moved."""
    import torch

    a = torch.as_tensor(full).double()
    b = torch.as_tensor(pruned).double()
    return float((1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)).mean())


def removal_sets(
    total: int, k: int, *, max_exhaustive: int = 20, n_random: int = 10, random_state: int = 0
) -> tuple[list[list[int]], str]:
    """Sets of ``k`` blocks standing for a random choice: ``(sets, how)``.

    Every one of the ``C(total, k)`` sets when there are at most ``max_exhaustive``
    (``how="exhaustive"``: the exact distribution of a random choice, and its best and
    worst members), else ``n_random`` distinct seeded draws (``how="seeds"``; draw ``i``
    uses seed ``random_state + i``, repeated sets drawn again).
    """
    if not 1 <= k < total:
        raise ValueError(f"Cannot remove {k} of {total} blocks: k must be in [1, {total}).")
    if math.comb(total, k) <= max_exhaustive:
        return [list(c) for c in itertools.combinations(range(total), k)], "exhaustive"
    sets: list[list[int]] = []
    seed = random_state
    while len(sets) < min(n_random, math.comb(total, k)):
        pick = sorted(int(b) for b in np.random.default_rng(seed).choice(total, k, replace=False))
        seed += 1
        if pick not in sets:
            sets.append(pick)
    return sets, "seeds"
