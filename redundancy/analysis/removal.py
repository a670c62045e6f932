"""Removing blocks and neurons of a decoder, and the orderings that choose what to remove.

What the book calls redundant can be tested by taking it out: drop whole transformer blocks
(or replace single neurons) and measure how much worse the model predicts held-out text,
with no repair (no fine-tuning after the removal). This module holds the maths:

* **Pruning.** :func:`drop_blocks` returns a shorter copy of a causal LM; :func:`skipping`
  runs a model without some blocks, in place and without copying weights.
* **Block states.** :func:`block_states` records the residual stream at every block
  boundary: ``states[l]`` is the input of block ``l`` and ``states[L]`` the output of the
  last block (before the final norm).
* **Scores and orderings.** Block Influence (ShortGPT: ``1 - cos(input, output)``, lowest
  first), linear CKA of a block's input and output (highest first), the angular distance
  over a span of ``n`` blocks (Gromov et al.: ``arccos(cos(h_l, h_{l+n})) / pi``), the
  book's adjacent-layer CKA, a greedy search by calibration loss (SLEB), last blocks first,
  random, and a recomputed CKA ordering (:func:`iterative_order`).
* **Perplexity.** :class:`WindowLoss` scores windows of text, caching the residual stream so
  that a setting which removes blocks from ``b`` on only runs the model from block ``b``;
  :func:`perplexity_interval` gives a bootstrap interval over the windows.
* **Neurons.** :func:`fit_replacement` fits every chosen neuron as ``w * representative + b``
  by least squares; :func:`replaced_neurons` substitutes the fit inside the forward pass.
  For the residual stream across one block, :func:`carry_correlation` finds the dimensions
  carried through it, :func:`fit_carry` fits each from its value at the block's input and
  :func:`replaced_carry` substitutes that fit for the block's output.

Everything works on Hugging Face causal LMs whose blocks are ``model.model.layers`` (Llama,
Mistral, Qwen, Gemma, SmolLM2...); the tests build a tiny random Llama from a config.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Callable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "ORDERINGS",
    "WindowLoss",
    "angular_distance",
    "best_span",
    "block_influence",
    "block_states",
    "carry_correlation",
    "cka_in_out",
    "drop_blocks",
    "final_norm",
    "fit_carry",
    "fit_replacement",
    "greedy_order",
    "iterative_order",
    "linear_cka_torch",
    "mean_replacement",
    "n_blocks",
    "perplexity",
    "perplexity_interval",
    "rank_blocks",
    "replaced_carry",
    "replaced_neurons",
    "site_activations",
    "skipping",
    "text_windows",
]

ORDERINGS = (
    "block_influence",
    "cka_in_out",
    "adjacent_cka",
    "angular_span",
    "greedy_loss",
    "last_first",
    "random",
    "cka_recomputed",
)
"""Names of the block orderings the removal steps compare."""


# --------------------------------------------------------------------- the block stack
def _stack(model):
    """The module holding the ``layers`` ModuleList (``model.model`` for a causal LM)."""
    import torch

    for owner in (getattr(model, "model", None), model):
        if owner is not None and isinstance(getattr(owner, "layers", None), torch.nn.ModuleList):
            return owner
    raise ValueError(
        f"Cannot find the decoder blocks of a {type(model).__name__}: expected a ModuleList at "
        "model.model.layers or model.layers (Llama, Mistral, Qwen, Gemma, SmolLM2...)."
    )


def final_norm(model):
    """The norm a causal LM applies after its last block (``model.model.norm``)."""
    return _stack(model).norm


def n_blocks(model) -> int:
    """Number of transformer blocks of a decoder."""
    return len(_stack(model).layers)


def _check_blocks(blocks, total: int, caller: str) -> list[int]:
    blocks = sorted({int(b) for b in blocks})
    if any(not 0 <= b < total for b in blocks):
        raise ValueError(
            f"The 'blocks' parameter of {caller} must hold block numbers in [0, {total}). "
            f"Got {blocks} instead."
        )
    if len(blocks) >= total:
        raise ValueError(
            f"The 'blocks' parameter of {caller} would remove all {total} blocks; keep at least one."
        )
    return blocks


def _set_layer_index(block, index: int) -> None:
    """Tell a block (and its attention) its position, which the KV cache is indexed by."""
    for module in (block, getattr(block, "self_attn", None)):
        if module is not None and hasattr(module, "layer_idx"):
            module.layer_idx = index


def _shrink_config(config, keep: list[int]) -> None:
    config.num_hidden_layers = len(keep)
    types = getattr(config, "layer_types", None)
    if types is not None and len(types) >= max(keep) + 1:
        config.layer_types = [types[i] for i in keep]


def drop_blocks(model, blocks):
    """A copy of a causal LM without the given blocks.

    The copy's ``config.num_hidden_layers`` counts the blocks kept, every kept block (and
    its attention) gets its new position as ``layer_idx`` so a KV cache is indexed right,
    and ``config.layer_types`` (Gemma: sliding or full attention per block) keeps the
    entries of the kept blocks. The original model is untouched.

    Parameters
    ----------
    model : transformers causal LM
    blocks : iterable of int
        Blocks to remove, numbered from 0.
    """
    import torch

    total = n_blocks(model)
    removed = set(_check_blocks(blocks, total, "drop_blocks"))
    pruned = copy.deepcopy(model)
    stack = _stack(pruned)
    keep = [i for i in range(total) if i not in removed]
    stack.layers = torch.nn.ModuleList([stack.layers[i] for i in keep])
    for new, block in enumerate(stack.layers):
        _set_layer_index(block, new)
    for config in {
        id(c): c for c in (pruned.config, getattr(stack, "config", None)) if c is not None
    }.values():
        _shrink_config(config, keep)
    return pruned


@contextlib.contextmanager
def skipping(model, run: Sequence[int]):
    """Within the block, ``model`` runs only the blocks ``run`` (in that order), in place.

    No weight is copied; the block list, the block positions and the config are restored
    on exit. Meant for forward passes without a KV cache (``use_cache=False``).
    """
    import torch

    stack = _stack(model)
    layers = stack.layers
    run = [int(i) for i in run]
    configs = {id(c): c for c in (model.config, getattr(stack, "config", None)) if c is not None}
    saved = [(c, c.num_hidden_layers, getattr(c, "layer_types", None)) for c in configs.values()]
    stack.layers = torch.nn.ModuleList([layers[i] for i in run])
    for c in configs.values():
        _shrink_config(c, run) if run else setattr(c, "num_hidden_layers", 0)
    try:
        yield model
    finally:
        stack.layers = layers
        for c, n, types in saved:
            c.num_hidden_layers = n
            if types is not None:
                c.layer_types = types


# ------------------------------------------------------------------ residual stream
def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


def block_states(model, input_ids, attention_mask=None, *, batch_size: int = 8, positions=None):
    """The residual stream at every block boundary, ``(L + 1, n_rows, hidden)`` float32.

    ``states[l]`` is the input of block ``l`` (``states[0]`` the embedding output) and
    ``states[L]`` the output of the last block, before the final norm. Rows are the tokens
    selected by ``positions``: ``None`` keeps every real token but the first of each
    sequence (the start token, an attention sink whose state is far larger than the
    others), ``"last"`` the last real token of each sequence.
    """
    import torch

    stack = _stack(model)
    blocks = list(stack.layers)
    input_ids = torch.as_tensor(input_ids)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    captured: list = []
    hooks = [
        b.register_forward_pre_hook(_capture_input(captured), with_kwargs=True) for b in blocks
    ]
    hooks.append(blocks[-1].register_forward_hook(lambda m, a, out: captured.append(_first(out))))
    out = []
    try:
        with torch.inference_mode():
            for a in range(0, len(input_ids), batch_size):
                ids, mask = input_ids[a : a + batch_size], attention_mask[a : a + batch_size]
                captured.clear()
                model(input_ids=ids, attention_mask=mask, use_cache=False)
                sel = _rows(mask, positions)
                out.append(torch.stack([h[sel].float() for h in captured]))
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(out, dim=1)


def _capture_input(store: list):
    def hook(module, args, kwargs):
        store.append(args[0] if args else kwargs["hidden_states"])

    return hook


def _rows(mask, positions):
    import torch

    mask = mask.bool().clone()
    if positions == "last":
        last = mask.long().cumsum(1).argmax(1)
        sel = torch.zeros_like(mask)
        sel[torch.arange(len(mask)), last] = True
        return sel
    mask[:, 0] = False
    return mask


def _cos_rows(a, b):
    import torch

    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def block_influence(states) -> np.ndarray:
    """Block Influence of every block (ShortGPT): ``1 - mean cos(input, output)`` over rows.

    ``states`` is :func:`block_states`' ``(L + 1, n, hidden)``; returns ``(L,)``. A block
    that barely turns its input scores near 0 and is removed first.
    """
    import torch

    states = torch.as_tensor(states)
    return np.array(
        [1 - float(_cos_rows(states[i], states[i + 1]).mean()) for i in range(len(states) - 1)]
    )


def angular_distance(states, n: int) -> np.ndarray:
    """Angular distance between the input of block ``l`` and of block ``l + n`` (Gromov et
    al.): ``arccos(cos) / pi`` averaged over rows, for every start ``l``; ``(L - n + 1,)``.

    Pass the last tokens' states (``block_states(..., positions="last")``) for the paper's
    version, every token's for the averaged one.
    """
    import torch

    states = torch.as_tensor(states)
    L = len(states) - 1
    if not 1 <= n <= L:
        raise ValueError(
            f"The 'n' parameter of angular_distance must be in [1, {L}]. Got {n} instead."
        )
    return np.array(
        [
            float((torch.arccos(_cos_rows(states[i], states[i + n]).clamp(-1, 1)) / math.pi).mean())
            for i in range(L - n + 1)
        ]
    )


def best_span(states, n: int) -> list[int]:
    """The ``n`` consecutive blocks whose input and output are closest in angle."""
    start = int(np.argmin(angular_distance(states, n)))
    return list(range(start, start + n))


def linear_cka_torch(X, Y) -> float:
    """Linear CKA of two row-aligned matrices, in float64 with torch (columns centred)."""
    import torch

    X = torch.as_tensor(X).double()
    Y = torch.as_tensor(Y).double()
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    cross = torch.linalg.matrix_norm(Y.T @ X) ** 2
    return float(cross / (torch.linalg.matrix_norm(X.T @ X) * torch.linalg.matrix_norm(Y.T @ Y)))


def cka_in_out(states) -> np.ndarray:
    """Linear CKA between every block's input and output over the rows, ``(L,)``."""
    return np.array([linear_cka_torch(states[i], states[i + 1]) for i in range(len(states) - 1)])


def rank_blocks(scores, *, highest_first: bool, protect: Sequence[int] = ()) -> list[int]:
    """Blocks in removal order by a score (ties by block number), ``protect`` left out."""
    scores = np.asarray(scores, dtype=np.float64)
    keys = -scores if highest_first else scores
    order = np.lexsort((np.arange(len(scores)), keys))
    return [int(i) for i in order if int(i) not in set(protect)]


def greedy_order(
    loss: Callable[[list[int]], float],
    total: int,
    k: int,
    *,
    chosen: Callable[[list[int]], None] | None = None,
) -> tuple[list[int], list[float]]:
    """Greedy removal (SLEB): at each step remove the block whose removal, on top of those
    already removed, gives the lowest ``loss(removed)``; recomputed after every removal.

    ``chosen(removed)`` is called after each step with the blocks removed so far (sorted):
    :meth:`WindowLoss.rebase` there caches the pruned model's stream, so that each next
    candidate ``b`` only runs the blocks after ``b``. Ties go to the lowest block.
    Returns the blocks in removal order and the loss after each step.
    """
    removed: list[int] = []
    losses: list[float] = []
    for _ in range(k):
        best = min((loss(sorted([*removed, b])), b) for b in range(total) if b not in removed)
        removed.append(best[1])
        losses.append(float(best[0]))
        logger.info("greedy removal: block %d, loss %.4f", best[1], best[0])
        if chosen is not None and len(removed) < k:
            chosen(sorted(removed))
    return removed, losses


def iterative_order(
    states_of: Callable[[list[int]], object], score: Callable, k: int, *, highest_first: bool
) -> list[int]:
    """Remove one block at a time by a score recomputed on the pruned model.

    ``states_of(removed)`` gives the block states of the model without ``removed`` (rows
    for its ``L - len(removed)`` remaining blocks); ``score(states)`` a value per remaining
    block. Returns original block numbers in removal order.
    """
    removed: list[int] = []
    total = None
    for _ in range(k):
        states = states_of(sorted(removed))
        if total is None:
            total = len(states) - 1
        kept = [b for b in range(total) if b not in removed]
        values = np.asarray(score(states))
        removed.append(kept[rank_blocks(values, highest_first=highest_first)[0]])
    return removed


# ---------------------------------------------------------------------- perplexity
def text_windows(tokenizer, texts: Sequence[str], window: int, n_windows: int | None = None):
    """Token windows of running text, ``(n, window + 1)`` int64: the start token (BOS, else
    EOS) then ``window`` text tokens. The texts are tokenised one by one and concatenated,
    then cut into consecutive windows; the last, incomplete window is dropped."""
    import torch

    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    n = len(ids) // window
    if n_windows is not None:
        if n < n_windows:
            raise ValueError(
                f"The text gives {n} windows of {window} tokens but {n_windows} were asked for; "
                "use more text or fewer windows."
            )
        n = n_windows
    body = torch.tensor(ids[: n * window], dtype=torch.long).view(n, window)
    if start is None:
        return body
    return torch.cat([torch.full((n, 1), int(start), dtype=torch.long), body], dim=1)


class WindowLoss:
    """Next-token loss of a causal LM on fixed windows, with any blocks removed.

    The residual stream at every block boundary is recorded once, on the whole model (or,
    after :meth:`rebase`, on the model without some blocks: the *base*); a setting that
    removes blocks ``R`` restarts from the stream before the first block where ``R`` and
    the base differ (as ``inputs_embeds``) and runs only the kept blocks from there, so the
    blocks before it are never recomputed. ``use_cache=False`` (tests check that the result
    equals a full forward pass of :func:`drop_blocks`' copy).

    Parameters
    ----------
    model : transformers causal LM (eval mode)
    windows : LongTensor ``(n, T)``
        From :func:`text_windows`; every position but the first is predicted.
    batch_size : int
    cache : bool, default=True
        Record the residual stream (``(L + 1, n, T, hidden)`` float32 in memory: entry
        ``p`` is the stream entering position ``p``, entry ``L`` the input of the final
        norm); ``False`` runs every setting from the embeddings.
    """

    def __init__(self, model, windows, *, batch_size: int = 8, cache: bool = True):
        import torch

        self.model = model
        self.windows = torch.as_tensor(windows)
        self.batch_size = int(batch_size)
        self.total = n_blocks(model)
        self.base: list[int] = []
        self.cached = None
        if cache:
            self.cached = self._record([], 0)

    def _check(self, removed, caller: str) -> list[int]:
        return _check_blocks(removed, self.total, caller) if len(removed) else []

    def _start(self, removed: list[int], changed_from: int | None) -> int:
        """First block whose input may differ from the cached stream (0: from the tokens)."""
        if self.cached is None:
            return 0
        differ = set(removed) ^ set(self.base)
        if changed_from is not None:
            differ.add(int(changed_from))
        return min(differ) if differ else 0

    def _logits(self, a: int, start: int):
        """Logits of windows ``a : a + batch_size`` restarted at block ``start`` (inside
        :func:`skipping`)."""
        if start == 0:
            return self.model(input_ids=self.windows[a : a + self.batch_size], use_cache=False)
        h = self.cached[start, a : a + self.batch_size]
        return self.model(inputs_embeds=h, use_cache=False)

    def _record(self, removed: list[int], start: int):
        """The stream of the model without ``removed``, entries before ``start`` reused."""
        import torch

        layers = list(_stack(self.model).layers)
        run = [b for b in range(start, self.total) if b not in removed]
        captured: list = []
        hooks = [
            layers[b].register_forward_pre_hook(_capture_input(captured), with_kwargs=True)
            for b in run
        ]
        hooks.append(
            final_norm(self.model).register_forward_pre_hook(
                lambda m, args: captured.append(args[0])
            )
        )
        # position p takes the input of the first run block at or after p (else the norm's)
        source = [
            next((j for j, b in enumerate(run) if b >= p), len(run)) for p in range(self.total + 1)
        ]
        parts = []
        try:
            with torch.inference_mode(), skipping(self.model, run):
                for a in range(0, len(self.windows), self.batch_size):
                    captured.clear()
                    self._logits(a, start)
                    new = [captured[source[p]] for p in range(start, self.total + 1)]
                    if start:
                        new = [*self.cached[:start, a : a + self.batch_size], *new]
                    parts.append(torch.stack(new))
        finally:
            for h in hooks:
                h.remove()
        return torch.cat(parts, dim=1)  # (L + 1, n, T, hidden)

    def rebase(self, removed: Sequence[int]) -> None:
        """Cache the stream of the model without ``removed`` (one forward pass from the
        first block where it differs from the current base); later settings close to it
        (the greedy search's next candidates) restart later."""
        removed = self._check(removed, "WindowLoss.rebase")
        if self.cached is not None:
            self.cached = self._record(removed, self._start(removed, None))
        self.base = removed

    def nll(self, removed: Sequence[int] = (), *, changed_from: int | None = None) -> np.ndarray:
        """Summed negative log-likelihood of each window, ``(n,)`` float64 (nats).

        ``changed_from``: the first block whose computation was changed outside (a hook
        installed on it or after it, e.g. :func:`replaced_neurons`); the run restarts at or
        before it.
        """
        import torch

        removed = self._check(removed, "WindowLoss.nll")
        start = self._start(removed, changed_from)
        run = [b for b in range(start, self.total) if b not in removed]
        out = []
        with torch.inference_mode(), skipping(self.model, run):
            for a in range(0, len(self.windows), self.batch_size):
                ids = self.windows[a : a + self.batch_size]
                logits = self._logits(a, start).logits[:, :-1]
                nll = torch.nn.functional.cross_entropy(  # rows of classes: contiguous
                    logits.reshape(-1, logits.shape[-1]).float(),
                    ids[:, 1:].reshape(-1),
                    reduction="none",
                )
                out.append(nll.view(len(ids), -1).double().sum(1))
        return torch.cat(out).cpu().numpy()

    def states(self):
        """Block states of the base model read from the cached stream, as
        :func:`block_states` gives them (every token but the first of each window):
        ``(L - len(base) + 1, n_rows, hidden)`` float32."""
        if self.cached is None:
            raise ValueError("WindowLoss.states needs the cached stream (cache=True).")
        keep = [p for p in range(self.total) if p not in self.base] + [self.total]
        picked = self.cached[keep][:, :, 1:]
        return picked.reshape(len(keep), -1, picked.shape[-1]).float()

    @property
    def n_tokens(self) -> int:
        """Tokens predicted per window."""
        return int(self.windows.shape[1] - 1)

    def perplexity(self, removed: Sequence[int] = (), **kwargs) -> float:
        return perplexity(self.nll(removed, **kwargs), self.n_tokens)


def perplexity(nll, n_tokens) -> float:
    """``exp(total NLL / total tokens)`` of windows' summed NLL (``n_tokens`` per window or
    an array)."""
    nll = np.asarray(nll, dtype=np.float64)
    counts = np.broadcast_to(np.asarray(n_tokens, dtype=np.float64), nll.shape)
    return float(np.exp(nll.sum() / counts.sum()))


def perplexity_interval(
    nll, n_tokens, *, n_bootstrap: int = 1000, confidence: float = 0.95, random_state: int = 0
):
    """Perplexity and a percentile bootstrap interval over the windows: ``(value, low, high)``."""
    nll = np.asarray(nll, dtype=np.float64)
    counts = np.broadcast_to(np.asarray(n_tokens, dtype=np.float64), nll.shape)
    rng = np.random.default_rng(random_state)
    idx = rng.integers(0, len(nll), size=(n_bootstrap, len(nll)))
    boot = np.exp(nll[idx].sum(1) / counts[idx].sum(1))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return perplexity(nll, counts), float(low), float(high)


# ----------------------------------------------------------------------- neurons
def _site_module(model, site: str, layer: int):
    """Module whose output (``residual``) or input (``mlp``) holds a site's neurons.

    ``site="residual"``: layer ``l`` is the residual stream after block ``l - 1`` (layer 0:
    the embedding output), the book's numbering. ``site="mlp"``: the MLP neurons of block
    ``layer`` (the input of its down projection).
    """
    stack = _stack(model)
    total = len(stack.layers)
    if site == "residual":
        if not 0 <= layer <= total:
            raise ValueError(
                f"The 'layer' parameter must be in [0, {total}] for residual neurons. Got {layer}."
            )
        return stack.embed_tokens if layer == 0 else stack.layers[layer - 1]
    if site == "mlp":
        if not 0 <= layer < total:
            raise ValueError(
                f"The 'layer' parameter must be in [0, {total}) for MLP neurons. Got {layer}."
            )
        return stack.layers[layer].mlp.down_proj
    raise ValueError(f"The 'site' parameter must be 'residual' or 'mlp'. Got {site!r} instead.")


def site_activations(model, windows, site: str, layer: int, *, batch_size: int = 8):
    """Activations of every neuron of a site on the windows, ``(n_tokens, width)`` float32
    (the first position of each window, the start token, left out)."""
    import torch

    module = _site_module(model, site, layer)
    got: list = []
    if site == "mlp":
        hook = module.register_forward_pre_hook(lambda m, args: got.append(args[0]))
    else:
        hook = module.register_forward_hook(lambda m, a, out: got.append(_first(out)))
    parts = []
    try:
        with torch.inference_mode():
            for a in range(0, len(windows), batch_size):
                got.clear()
                model(input_ids=windows[a : a + batch_size], use_cache=False)
                parts.append(got[0][:, 1:].reshape(-1, got[0].shape[-1]).float().clone())
    finally:
        hook.remove()
    return torch.cat(parts)


def fit_replacement(acts, neurons, representatives):
    """Least-squares fit of each neuron from its representative: ``a_j ~ w_j a_r + b_j``.

    Parameters
    ----------
    acts : array ``(n_rows, width)``
        Calibration activations of the site.
    neurons, representatives : sequences of int, same length
        Neuron ``neurons[i]`` is fitted from ``representatives[i]``.

    Returns
    -------
    weight, bias : float64 arrays ``(len(neurons),)``
        A representative with no variance gives weight 0 and the neuron's mean.
    """
    import torch

    A = torch.as_tensor(acts).double()
    j = torch.as_tensor(np.asarray(neurons, dtype=np.int64))
    r = torch.as_tensor(np.asarray(representatives, dtype=np.int64))
    if j.shape != r.shape:
        raise ValueError(
            "The 'neurons' and 'representatives' parameters of fit_replacement must have the same length."
        )
    y, x = A[:, j], A[:, r]
    xm, ym = x.mean(0), y.mean(0)
    var = ((x - xm) ** 2).sum(0)
    cov = ((x - xm) * (y - ym)).sum(0)
    w = torch.where(var > 0, cov / torch.where(var > 0, var, 1.0), torch.zeros_like(var))
    b = ym - w * xm
    return w.numpy(), b.numpy()


def mean_replacement(acts, neurons):
    """Weights 0 and the neurons' calibration means: the baseline that keeps no information."""
    import torch

    A = torch.as_tensor(acts).double()
    j = torch.as_tensor(np.asarray(neurons, dtype=np.int64))
    return np.zeros(len(j)), A[:, j].mean(0).numpy()


def _replace_columns(x, j, value, first: bool):
    """``x`` with columns ``j`` of its last axis set to ``value`` (all positions, or all
    but the first of each sequence when ``first`` is false)."""
    x = x.clone()
    if first:
        x[..., j] = value.to(x.dtype)
    else:
        x[:, 1:, j] = value[:, 1:].to(x.dtype)
    return x


@contextlib.contextmanager
def replaced_neurons(
    model, site: str, layer: int, neurons, representatives, weight, bias, *, first: bool = True
):
    """Within the block, neuron ``neurons[i]`` of the site is computed as
    ``weight[i] * representatives[i] + bias[i]`` in every forward pass (from the
    representatives' values before any replacement). ``first=False`` leaves the first
    position of every sequence (the start token, which the calibration leaves out) as is."""
    import torch

    module = _site_module(model, site, layer)
    j = torch.as_tensor(np.asarray(neurons, dtype=np.int64))
    r = torch.as_tensor(np.asarray(representatives, dtype=np.int64))
    w = torch.as_tensor(np.asarray(weight, dtype=np.float64))
    b = torch.as_tensor(np.asarray(bias, dtype=np.float64))

    def replace(x):
        return _replace_columns(x, j, w.to(x.dtype) * x[..., r] + b.to(x.dtype), first)

    if site == "mlp":
        hook = module.register_forward_pre_hook(lambda m, args: (replace(args[0]), *args[1:]))
    else:

        def after(m, args, out):
            if isinstance(out, tuple):
                return (replace(out[0]), *out[1:])
            return replace(out)

        hook = module.register_forward_hook(after)
    try:
        yield model
    finally:
        hook.remove()


# ------------------------------------------------------------------ residual carry
def carry_correlation(before, after) -> np.ndarray:
    """Pearson correlation of every dimension with itself across a block, ``(width,)``.

    ``before`` and ``after`` are row-aligned ``(n_rows, width)`` states: the input and the
    output of one block (:func:`block_states`' ``states[b]`` and ``states[b + 1]``, the
    book's layers ``b`` and ``b + 1``). A dimension with no variance on either side gets 0.
    The book's across-layer clustering puts dimension ``d`` of the two layers in one cluster
    (a hidden dimension *carried* across the block) when ``|rho_d| >= 1 - threshold``.
    """
    import torch

    x = torch.as_tensor(before).double()
    y = torch.as_tensor(after).double()
    x = x - x.mean(0)
    y = y - y.mean(0)
    norm = x.norm(dim=0) * y.norm(dim=0)
    rho = torch.where(norm > 0, (x * y).sum(0) / torch.where(norm > 0, norm, 1.0), 0.0)
    return rho.clamp(-1, 1).numpy()


def fit_carry(before, after, dims):
    """Least squares ``after_d ~ w_d * before_d + b_d`` for each dimension of ``dims``:
    ``(weight, bias)`` float64 arrays (see :func:`fit_replacement`)."""
    import torch

    before = torch.as_tensor(before)
    dims = np.asarray(dims, dtype=np.int64)
    both = torch.cat([before.double(), torch.as_tensor(after).double()], dim=1)
    return fit_replacement(both, dims + before.shape[1], dims)


@contextlib.contextmanager
def replaced_carry(model, block: int, dims, weight, bias, *, first: bool = True):
    """Within the block, dimension ``dims[i]`` of the output of ``block`` (the residual
    stream after it) is ``weight[i] * input[dims[i]] + bias[i]``, from the same dimension of
    the block's input: the block's write to that dimension is replaced by a linear function
    of what came in. ``weight=0`` and ``bias`` the calibration means: the output dimension
    is replaced by its mean. ``first=False`` leaves the first position (start token) as is.
    """
    import torch

    layers = _stack(model).layers
    if not 0 <= block < len(layers):
        raise ValueError(
            f"The 'block' parameter of replaced_carry must be in [0, {len(layers)}). Got {block}."
        )
    j = torch.as_tensor(np.asarray(dims, dtype=np.int64))
    w = torch.as_tensor(np.asarray(weight, dtype=np.float64))
    b = torch.as_tensor(np.asarray(bias, dtype=np.float64))

    def after(m, args, kwargs, out):
        x = args[0] if args else kwargs["hidden_states"]
        y = _first(out)
        y = _replace_columns(y, j, w.to(x.dtype) * x[..., j] + b.to(x.dtype), first)
        return (y, *out[1:]) if isinstance(out, tuple) else y

    hook = layers[block].register_forward_hook(after, with_kwargs=True)
    try:
        yield model
    finally:
        hook.remove()
