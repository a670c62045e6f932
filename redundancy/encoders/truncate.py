"""Forward passes stopped after a given transformer block.

:func:`truncated` makes a model run its embeddings and only its first ``n`` blocks, without
copying weights: what a feature-based transfer that keeps layers ``0..n`` (the paper's
LayerSelector) has to compute per instance. Used by :mod:`redundancy.analysis.timing`.
"""

from __future__ import annotations

import contextlib

_BLOCK_PATHS = (
    ("encoder", "layer"),  # BERT, RoBERTa, MPNet, ELECTRA
    ("layer",),  # XLNet
    ("transformer", "layer"),  # DistilBERT
    ("layers",),
    ("h",),  # GPT-2
)


def block_list(model):
    """The ``ModuleList`` of transformer blocks of an encoder and its owner.

    Returns
    -------
    (owner, attribute)
        ``getattr(owner, attribute)`` is the ``torch.nn.ModuleList``.
    """
    import torch

    for path in _BLOCK_PATHS:
        owner = model
        for name in path[:-1]:
            owner = getattr(owner, name, None)
        blocks = getattr(owner, path[-1], None) if owner is not None else None
        if isinstance(blocks, torch.nn.ModuleList):
            return owner, path[-1]
    raise ValueError(
        f"Cannot find the transformer blocks of a {type(model).__name__}: looked for "
        f"{['.'.join(p) for p in _BLOCK_PATHS]}. Supported: BERT-like models, MPNet, XLNet."
    )


@contextlib.contextmanager
def truncated(model, n_blocks: int):
    """Within the block, ``model`` runs the embeddings and only its first ``n_blocks`` blocks.

    The block list is swapped for a slice of itself (the weights are shared, nothing is
    copied) and the pooler, if any, is switched off; both are restored on exit.
    """
    import torch

    owner, attr = block_list(model)
    blocks = getattr(owner, attr)
    if not 0 <= n_blocks <= len(blocks):
        raise ValueError(
            f"The 'layers' parameter of time_forward must hold layers in [0, {len(blocks)}]. "
            f"Got {n_blocks} instead."
        )
    pooler = getattr(model, "pooler", None)
    setattr(owner, attr, torch.nn.ModuleList(list(blocks)[:n_blocks]))
    if pooler is not None:
        model.pooler = None
    try:
        yield model
    finally:
        setattr(owner, attr, blocks)
        if pooler is not None:
            model.pooler = pooler
