"""Removing blocks of an encoder and measuring what a task loses.

A decoder's loss is its perplexity (:mod:`redundancy.analysis.removal`); an encoder such as
MiniLM or MPNet has no language-model head, so what removing blocks costs is read from a
task: the accuracy of a probe retrained on the pruned model's last layer, or of a
fine-tuned model's own classifier with no retraining at all.

* :func:`encoder_blocks` finds the block list of a BERT-like model (``encoder.layer``) or
  any model whose base holds a ``layers``/``layer`` ModuleList.
* :class:`EncoderRuns` passes fixed batches through the model once, records the input of
  every block, and then answers "what does the model output without blocks ``R``?" by
  restarting from the recorded input of block ``min(R)``, or, closer still, from the
  stream of the setting run just before where the two removed sets agree: blocks are
  never run twice for the same prefix (tests check the result equals the pruned model run
  from its embeddings, in any order of settings).
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
    "run_order",
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


def _checked(removed: Sequence[int], total: int) -> list[int]:
    """The block numbers, sorted and distinct, after checking them against ``total``."""
    removed = sorted({int(b) for b in removed})
    if any(not 0 <= b < total for b in removed) or len(removed) >= total:
        raise ValueError(
            f"Cannot remove blocks {removed} of {total}: numbers must be in [0, {total}) "
            "and at least one block must stay."
        )
    return removed


def restart_plan(removed: Sequence[int], total: int) -> tuple[int, list[int]]:
    """Where a pruned model restarts and what it then runs: ``(start, run)``.

    ``start`` is a block whose recorded input (in the whole model) equals the pruned
    model's input to ``run[0]``; ``run`` are the kept blocks from there on. Normally
    ``start = min(removed)``; when every block after it is removed too, the pruned model
    restarts from its last kept block instead.
    """
    removed = _checked(removed, total)
    if not removed:
        return 0, list(range(total))
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
    batch, kept in memory). Each :meth:`run` also keeps the stream of the pruned model it
    ran (the *base*: what enters every block position), and the next one restarts at the
    first block where its removed set and the base's differ, from the base's stream there;
    where that is no later than its own first removed block, or the base cannot serve (its
    blocks from there on are all removed), it restarts from the whole model's recorded
    input of that first removed block. Settings run in :func:`run_order` therefore share
    the blocks their removed sets agree on.
    """

    def __init__(self, model, batches: list[dict], readout: Callable):
        self.model = model
        self.batches = list(batches)
        self.readout = readout
        self.total = _n_blocks(model)
        self.inputs: list = []
        self.full = self._record()
        self.base: list[int] = []
        self.stream = [list(x) for x in self.inputs]  # per batch, per block position
        self.blocks_run = 0  # blocks run by :meth:`run` (times batches), for the record

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

    def _plan(self, removed: list[int]) -> tuple[int, list[int], bool]:
        """``(start, run, from_base)``: the stream position to restart at, the blocks to
        run from there, and whether the start state comes from the base (else from the
        whole model)."""
        kept = [b for b in range(self.total) if b not in removed]
        differ = set(removed) ^ set(self.base)
        start = min(differ) if differ else self.total
        # the base serves only where it restarts later than the whole model would (at the
        # first removed block), and where its stream at ``start`` exists: the input of a
        # block it keeps at or after ``start``
        from_base = start > removed[0] and any(
            b >= start and b not in self.base for b in range(self.total)
        )
        if not from_base:
            start = removed[0]
        run = [b for b in kept if b >= start]
        if not run:  # everything from ``start`` on is removed: rerun the last kept block
            start = kept[-1]
            run = [start]
        return start, run, from_base

    def run(self, removed: Sequence[int] = ()) -> list:
        """The readout of every batch with blocks ``removed`` taken out (no repair)."""
        import torch

        if not len(removed):
            return self.full
        removed = _checked(removed, self.total)
        start, run, from_base = self._plan(removed)
        owner, name = encoder_blocks(self.model)
        blocks = getattr(owner, name)
        seen: list = []

        def grab(module, args, kwargs):
            seen.append((args[0] if args else kwargs["hidden_states"]).detach().clone())

        # position p takes the input of the first run block at or after p (None: none left)
        source = [next((j for j, b in enumerate(run) if b >= p), None) for p in range(self.total)]
        outs, streams = [], []
        with torch.inference_mode():
            for i, batch in enumerate(self.batches):
                old = self.stream[i] if from_base else list(self.inputs[i])
                seen.clear()
                with _restarted(self.model, run, old[start]):
                    hooks = [
                        blocks[b].register_forward_pre_hook(grab, with_kwargs=True) for b in run
                    ]
                    try:
                        outs.append(self.readout(self.model(**batch), i))
                    finally:
                        for h in hooks:
                            h.remove()
                streams.append(
                    old[:start]
                    + [seen[source[p]] if source[p] is not None else None for p in range(start, self.total)]
                )  # fmt: skip
        self.stream, self.base = streams, removed
        self.blocks_run += len(run) * len(self.batches)
        return outs


def run_order(sets, total: int) -> list[list[int]]:
    """Distinct removal sets in the order :meth:`EncoderRuns.run` shares most blocks in:
    as binary numbers read from block 0 (kept before removed), so that sets agreeing on
    their first blocks come together and each restarts late from the one before (for
    every set of 1-3 of 6 blocks, 66 blocks run instead of 103 restarting each set alone
    at its first removed block)."""
    distinct = {tuple(sorted({int(b) for b in r})) for r in sets if len(r)}
    return [list(r) for r in sorted(distinct, key=lambda r: [int(b in r) for b in range(total)])]


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
