"""Block removal and neuron replacement on a tiny random Llama; orderings on planted states."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from decoder_fixtures import tiny_llama, tiny_llama_config

from redundancy.analysis import removal as rm


@pytest.fixture(scope="module")
def llama():
    return tiny_llama(n_layers=5)


@pytest.fixture(scope="module")
def windows(llama):
    _, tok = llama
    texts = ["the quick brown fox jumped over the lazy dogs and a cat sat on the mat"] * 4
    return rm.text_windows(tok, texts, window=12, n_windows=5)


def _hand_built(model, keep):
    """A shorter Llama with the kept blocks' weights copied by name."""
    from transformers import LlamaForCausalLM

    config = tiny_llama_config(model.config.vocab_size, len(keep))
    config._attn_implementation = model.config._attn_implementation
    small = LlamaForCausalLM(config).eval()
    src = model.state_dict()
    new = {}
    for name in small.state_dict():
        if name.startswith("model.layers."):
            i = int(name.split(".")[2])
            new[name] = src[name.replace(f"model.layers.{i}.", f"model.layers.{keep[i]}.", 1)]
        else:
            new[name] = src[name]
    small.load_state_dict(new)
    return small


def test_drop_blocks_equals_hand_built_model(llama, windows):
    model, _ = llama
    pruned = rm.drop_blocks(model, [1, 3])
    assert pruned.config.num_hidden_layers == 3 and rm.n_blocks(model) == 5
    assert [b.self_attn.layer_idx for b in pruned.model.layers] == [0, 1, 2]
    small = _hand_built(model, [0, 2, 4])
    with torch.inference_mode():
        a = pruned(input_ids=windows, use_cache=False).logits
        b = small(input_ids=windows, use_cache=False).logits
        full = model(input_ids=windows, use_cache=False).logits
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, full)
    # generation with a KV cache runs on the pruned model (layer indices are right)
    out = pruned.generate(windows[:1, :4], max_new_tokens=3, do_sample=False)
    ref = small.generate(windows[:1, :4], max_new_tokens=3, do_sample=False)
    assert out.tolist() == ref.tolist()


def test_drop_blocks_updates_layer_types(llama):
    model, _ = llama
    model.config.layer_types = ["a", "b", "c", "d", "e"]
    try:
        pruned = rm.drop_blocks(model, [0, 2])
        assert pruned.config.layer_types == ["b", "d", "e"]
        assert model.config.layer_types == ["a", "b", "c", "d", "e"]
    finally:
        del model.config.layer_types


def test_drop_blocks_refuses_bad_blocks(llama):
    model, _ = llama
    with pytest.raises(ValueError, match=r"in \[0, 5\)"):
        rm.drop_blocks(model, [5])
    with pytest.raises(ValueError, match="keep at least one"):
        rm.drop_blocks(model, range(5))


@pytest.mark.parametrize("removed", [[], [0], [2, 3], [1, 4], [4]])
def test_window_loss_cache_equals_full_forward(llama, windows, removed):
    model, _ = llama
    cached = rm.WindowLoss(model, windows, batch_size=2)
    plain = rm.WindowLoss(model, windows, batch_size=3, cache=False)
    pruned = rm.drop_blocks(model, removed) if removed else model
    with torch.inference_mode():
        logits = pruned(input_ids=windows, use_cache=False).logits.double()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, windows[:, 1:, None]).squeeze(-1)
    want = (-logp.sum(1)).numpy()
    np.testing.assert_allclose(cached.nll(removed), want, rtol=1e-5)  # float32 softmax
    np.testing.assert_allclose(plain.nll(removed), want, rtol=1e-5)
    assert rm.n_blocks(model) == 5 and model.config.num_hidden_layers == 5


def test_perplexity_interval():
    nll = np.array([10.0, 12.0, 11.0, 30.0])
    value, low, high = rm.perplexity_interval(nll, 10, n_bootstrap=500)
    assert value == pytest.approx(math.exp(63 / 40))
    assert low < value < high
    same = rm.perplexity_interval(np.full(6, 20.0), 10)
    assert same[1] == pytest.approx(same[2])


def test_block_states_boundaries(llama, windows):
    model, _ = llama
    states = rm.block_states(model, windows, batch_size=2)
    assert states.shape == (6, windows.shape[0] * (windows.shape[1] - 1), 32)
    with torch.inference_mode():
        hs = model(input_ids=windows, output_hidden_states=True).hidden_states
    # inputs of blocks 0..4 are hidden_states 0..4; the last output is before the final norm
    torch.testing.assert_close(states[2], hs[2][:, 1:].reshape(-1, 32))
    torch.testing.assert_close(model.model.norm(states[5]), hs[5][:, 1:].reshape(-1, 32))
    last = rm.block_states(model, windows, positions="last")
    torch.testing.assert_close(last[3], hs[3][:, -1])


def _planted_states(rng, n=200, h=16, turns=(0.9, 0.01, 0.5, 0.2)):
    """States whose block l rotates its input by an angle turns[l] * pi / 2 in a fixed plane
    (plus nothing else), so cos(in, out) and angles are known."""
    x = rng.normal(size=(n, h))
    x[:, 1] = 0  # rotation plane (0, 1): start on axis 0
    x[:, 0] = np.abs(x[:, 0]) + 5
    states = [x]
    for t in turns:
        a = t * np.pi / 2
        rot = np.eye(h)
        rot[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
        states.append(states[-1] @ rot.T)
    return torch.tensor(np.stack(states))


def test_block_influence_on_planted_states():
    states = _planted_states(np.random.default_rng(0))
    bi = rm.block_influence(states)
    assert rm.rank_blocks(bi, highest_first=False) == [1, 3, 2, 0]
    # exact for a pure rotation of vectors lying in its plane
    flat = torch.zeros(3, 5, 4)
    flat[0, :, 0] = 1
    flat[1, :, 0], flat[1, :, 1] = math.cos(0.3), math.sin(0.3)
    flat[2] = flat[1]
    np.testing.assert_allclose(rm.block_influence(flat), [1 - math.cos(0.3), 0.0], atol=1e-7)


def test_angular_distance_on_planted_states():
    flat = torch.zeros(5, 7, 3)
    angles = [0.0, 0.4, 0.45, 1.2, 1.25]  # direction of the state at each boundary
    for i, a in enumerate(angles):
        flat[i, :, 0], flat[i, :, 1] = math.cos(a), math.sin(a)
    d1 = rm.angular_distance(flat, 1)
    np.testing.assert_allclose(d1, np.abs(np.diff(angles)) / math.pi, atol=1e-6)
    d2 = rm.angular_distance(flat, 2)
    np.testing.assert_allclose(d2, [0.45 / math.pi, 0.8 / math.pi, 0.8 / math.pi], atol=1e-6)
    assert rm.best_span(flat, 1) == [3] or rm.best_span(flat, 1) == [1]
    assert rm.best_span(flat, 2) == [0, 1]
    with pytest.raises(ValueError, match="'n' parameter"):
        rm.angular_distance(flat, 5)


def test_cka_in_out_planted():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(100, 8)))
    q, _ = torch.linalg.qr(torch.tensor(rng.normal(size=(8, 8))))
    noise = torch.tensor(rng.normal(size=(100, 8)))
    states = torch.stack([x, x @ q, 3 * (x @ q), noise])
    cka = rm.cka_in_out(states)
    np.testing.assert_allclose(cka[:2], [1.0, 1.0], atol=1e-10)  # rotations and scalings
    assert cka[2] < 0.5
    assert rm.rank_blocks(cka, highest_first=True)[-1] == 2


def test_greedy_order_recomputes():
    # removing block 2 is cheap alone, but after it block 0 becomes cheapest
    costs = {(2,): 1.0, (0,): 2.0, (1,): 3.0, (0, 2): 1.5, (1, 2): 4.0, (0, 1): 9.0}
    order, losses = rm.greedy_order(lambda r: costs[tuple(r)], 3, 2)
    assert order == [2, 0] and losses == [1.0, 1.5]


def test_iterative_order_maps_back_to_original_blocks():
    # scores per remaining block of a 4-block model, recomputed after each removal
    def states_of(removed):
        return np.zeros((5 - len(removed), 1))

    calls = []

    def score(states):
        calls.append(len(states) - 1)
        return [0.1, 0.9, 0.2, 0.3][: len(states) - 1] if len(states) == 5 else [0.1, 0.2, 0.8]

    # 4 blocks; block 1 goes first, then the third remaining one (block 3)
    assert rm.iterative_order(states_of, score, 2, highest_first=True) == [1, 3]
    assert calls == [4, 3]


def test_replacement_identity_when_representative_is_itself(llama, windows):
    model, _ = llama
    with torch.inference_mode():
        ref = model(input_ids=windows, use_cache=False).logits
    for site, layer, width in (("residual", 2, 32), ("mlp", 1, 64), ("residual", 0, 32)):
        acts = rm.site_activations(model, windows, site, layer)
        assert acts.shape == (windows.shape[0] * (windows.shape[1] - 1), width)
        neurons = [0, 3, 5]
        w, b = rm.fit_replacement(acts, neurons, neurons)
        np.testing.assert_allclose(w, 1.0, atol=1e-9)
        np.testing.assert_allclose(b, 0.0, atol=1e-6)
        with (
            rm.replaced_neurons(model, site, layer, neurons, neurons, w, b),
            torch.inference_mode(),
        ):
            out = model(input_ids=windows, use_cache=False).logits
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        # the mean replacement does change the model, and the hook is gone afterwards
        w0, b0 = rm.mean_replacement(acts, neurons)
        with (
            rm.replaced_neurons(model, site, layer, neurons, neurons, w0, b0),
            torch.inference_mode(),
        ):
            moved = model(input_ids=windows, use_cache=False).logits
        assert not torch.allclose(moved, ref, atol=1e-3)
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=windows, use_cache=False).logits, ref)


def test_fit_replacement_recovers_linear_neuron():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(300, 4))
    acts[:, 2] = 2.5 * acts[:, 0] - 1.0
    acts[:, 3] = 7.0  # a constant representative: weight 0, the neuron's mean
    w, b = rm.fit_replacement(acts, [2, 1], [0, 3])
    np.testing.assert_allclose([w[0], b[0]], [2.5, -1.0], atol=1e-9)
    assert w[1] == 0 and b[1] == pytest.approx(acts[:, 1].mean())


@pytest.mark.parametrize("base", [[2], [1, 3], [4]])
def test_window_loss_rebase_restarts_from_the_first_difference(llama, windows, base):
    model, _ = llama
    loss = rm.WindowLoss(model, windows, batch_size=2)
    plain = rm.WindowLoss(model, windows, cache=False)
    loss.rebase(base)
    assert loss.base == base and loss.cached.shape[0] == 6
    # settings on top of the base, beside it and without it all equal the full forward pass
    for removed in ([*base, 4], [0, *base], [0], [], base, [3, 4]):
        np.testing.assert_allclose(loss.nll(removed), plain.nll(removed), rtol=1e-5)


def test_greedy_with_rebase_equals_uncached_search(llama, windows):
    model, _ = llama
    plain = rm.WindowLoss(model, windows, cache=False)
    cached = rm.WindowLoss(model, windows, batch_size=2)
    starts = []
    original = cached._start

    def spy(removed, changed_from):
        starts.append(original(removed, changed_from))
        return starts[-1]

    cached._start = spy
    want = rm.greedy_order(lambda r: float(plain.nll(r).sum()), 5, 3)
    got = rm.greedy_order(lambda r: float(cached.nll(r).sum()), 5, 3, chosen=cached.rebase)
    assert got[0] == want[0] and len(set(got[0])) == 3
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    # every candidate restarts at its own block: 5 + 4 + 3 candidates, 2 rebases
    assert len(starts) == 5 + 4 + 3 + 2
    assert starts[:5] == [0, 1, 2, 3, 4] and cached.base == sorted(got[0][:2])


def test_window_loss_changed_from_runs_a_hooked_block(llama, windows):
    model, _ = llama
    loss = rm.WindowLoss(model, windows, batch_size=2)
    plain = rm.WindowLoss(model, windows, cache=False)
    with rm.replaced_carry(model, 2, [0, 1], [0.0, 0.0], [0.5, -0.5]):
        want = plain.nll([])
        np.testing.assert_allclose(loss.nll([], changed_from=2), want, rtol=1e-5)
        np.testing.assert_allclose(loss.nll([4], changed_from=2), plain.nll([4]), rtol=1e-5)
    assert not np.allclose(want, plain.nll([]))


def _silent_dimension(model, block, d):
    """Make ``block`` write nothing to residual dimension ``d`` (zero rows of its output
    projections); returns the saved weights."""
    layer = model.model.layers[block]
    saved = [layer.self_attn.o_proj.weight.clone(), layer.mlp.down_proj.weight.clone()]
    with torch.no_grad():
        layer.self_attn.o_proj.weight[d] = 0
        layer.mlp.down_proj.weight[d] = 0
    return saved


def test_replaced_carry_identity_and_planted_fit(llama, windows):
    model, _ = llama
    saved = _silent_dimension(model, 2, 5)
    try:
        with torch.inference_mode():
            ref = model(input_ids=windows, use_cache=False).logits
        states = rm.block_states(model, windows)
        rho = rm.carry_correlation(states[2], states[3])
        assert rho[5] == pytest.approx(1.0) and (np.abs(rho) <= 1).all()
        w, b = rm.fit_carry(states[2], states[3], [5])
        np.testing.assert_allclose([w[0], b[0]], [1.0, 0.0], atol=1e-6)
        # the identity fit on a dimension the block does not change: the model is unchanged
        with rm.replaced_carry(model, 2, [5], [1.0], [0.0]), torch.inference_mode():
            torch.testing.assert_close(model(input_ids=windows, use_cache=False).logits, ref)
        # the same on a dimension the block writes to changes the model
        with rm.replaced_carry(model, 2, [6], [1.0], [0.0]), torch.inference_mode():
            assert not torch.allclose(model(input_ids=windows, use_cache=False).logits, ref)
        # a planted fit: the block's output dimension 6 becomes 2 * input + 1, the first
        # position (start token) left as it was
        with rm.replaced_carry(model, 2, [6], [2.0], [1.0], first=False):
            hooked = rm.block_states(model, windows)
        torch.testing.assert_close(hooked[3][:, 6], 2 * hooked[2][:, 6] + 1)
        torch.testing.assert_close(hooked[2], states[2])
    finally:
        layer = model.model.layers[2]
        with torch.no_grad():
            layer.self_attn.o_proj.weight.copy_(saved[0])
            layer.mlp.down_proj.weight.copy_(saved[1])


def test_replacement_can_leave_the_start_token(llama, windows):
    model, _ = llama
    got = []
    with rm.replaced_neurons(model, "mlp", 1, [3], [3], [0.0], [9.0], first=False):
        # registered after the replacement: sees the down projection's replaced input
        hook = model.model.layers[1].mlp.down_proj.register_forward_pre_hook(
            lambda m, args: got.append(args[0].clone())
        )
        try:
            with torch.inference_mode():
                model(input_ids=windows, use_cache=False)
        finally:
            hook.remove()
    assert (got[0][:, 1:, 3] == 9).all() and (got[0][:, 0, 3] != 9).all()
