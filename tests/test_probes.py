"""Tests for redundancy.analysis.probes: the paper probe against an autograd reference, joint training,
planted rules, metrics against scikit-learn / scipy, float16 memory maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef

from redundancy.analysis.probes import (
    LayerSet,
    LinearProbe,
    evaluate,
    evaluate_probes,
    incremental_subsets,
    init_probe_parameters,
    layer_subsets,
    per_class_accuracy,
    score,
    train_probe,
    train_probes,
)


def reference_probe(X, y, neurons, n_out, *, epochs=1, l1=1e-5, l2=1e-5, kind="classification"):
    """The paper's probe written the plain autograd way (nn.Linear + torch.optim.Adam)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problem: faster on one thread
    try:
        return _reference(X, y, neurons, n_out, epochs, l1, l2, kind)
    finally:
        torch.set_num_threads(threads)


def _reference(X, y, neurons, n_out, epochs, l1, l2, kind):
    torch.manual_seed(42)
    lin = torch.nn.Linear(len(neurons), n_out)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-3)
    Xs, yt = torch.from_numpy(np.ascontiguousarray(X[:, neurons])), torch.from_numpy(y)
    for _ in range(epochs):
        for i in range(0, len(Xs), 128):
            opt.zero_grad()
            out = lin(Xs[i : i + 128])
            if kind == "classification":
                loss = torch.nn.functional.cross_entropy(out, yt[i : i + 128])
            else:
                loss = torch.nn.functional.mse_loss(out[:, 0], yt[i : i + 128])
            W = lin.weight  # the bias is not penalised
            loss = loss + l1 * W.abs().sum() + l2 * torch.sqrt((W**2).sum())
            loss.backward()
            opt.step()
    return lin.weight.detach().numpy(), lin.bias.detach().numpy()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((700, 40), dtype=np.float32)
    y = ((X[:, 3] + X[:, 17] > 0).astype(np.int64) + (X[:, 25] > 1)).astype(np.int64)
    return X, y


SUBSETS = {
    "all": None,
    "first": slice(0, 20),
    "tail": np.arange(10, 40),
    "scattered": [30, 3, 25, 17],
    "second": slice(20, 40),
}


def test_init_is_nn_linear_default_after_manual_seed():
    w, b = init_probe_parameters(37, 5, random_state=7)
    torch.manual_seed(7)
    lin = torch.nn.Linear(37, 5)
    np.testing.assert_array_equal(w, lin.weight.detach().numpy())
    np.testing.assert_array_equal(b, lin.bias.detach().numpy())


@pytest.mark.parametrize(("l1", "l2"), [(1e-5, 1e-5), (3e-2, 0.5), (0.0, 0.0)])
def test_matches_autograd_reference(data, l1, l2):
    X, y = data
    probes = train_probes(X, y, SUBSETS, epochs=2, l1=l1, l2=l2, progress=False)
    for name, probe in probes.items():
        w, b = reference_probe(X, y, probe.neurons, 3, epochs=2, l1=l1, l2=l2)
        np.testing.assert_allclose(probe.weight, w, atol=2e-6, err_msg=name)
        np.testing.assert_allclose(probe.bias, b, atol=2e-6, err_msg=name)


def test_strong_l1_shrinks_weights(data):
    # The bias-unpenalised part is covered by the reference test with large l1/l2 above.
    X, y = data
    weak = train_probe(X, y, epochs=5, l1=0.0, l2=0.0, lr=0.05, progress=False)
    strong = train_probe(X, y, epochs=5, l1=1.0, l2=0.0, lr=0.05, progress=False)
    assert np.abs(strong.weight).sum() < 0.5 * np.abs(weak.weight).sum()


def test_joint_training_equals_training_alone(data):
    X, y = data
    joint = train_probes(X, y, SUBSETS, epochs=3, progress=False)
    for name, sub in SUBSETS.items():
        alone = train_probe(X, y, sub, epochs=3, progress=False)
        np.testing.assert_array_equal(alone.neurons, joint[name].neurons)
        np.testing.assert_allclose(alone.weight, joint[name].weight, atol=1e-6)
        np.testing.assert_allclose(alone.bias, joint[name].bias, atol=1e-6)


def test_duplicate_subsets_share_result(data):
    X, y = data
    subs = {**layer_subsets(4, 10), **incremental_subsets(4, 10)}
    probes = train_probes(X, y, subs, epochs=1, progress=False)
    assert list(probes) == [LayerSet("layer", i) for i in range(4)] + [
        LayerSet("incremental", i) for i in range(4)
    ]
    np.testing.assert_array_equal(
        probes[LayerSet("layer", 0)].weight, probes[LayerSet("incremental", 0)].weight
    )
    assert probes[LayerSet("incremental", 3)].weight.shape == (3, 40)
    assert probes[LayerSet("layer", 2)].neurons.tolist() == list(range(20, 30))


def test_recovers_planted_rule():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((12000, 24), dtype=np.float32)
    y = (X[:, 5] - 2 * X[:, 20] > 0).astype(np.int64)
    probe = train_probe(X[:10000], y[:10000], lr=0.01, progress=False)
    assert evaluate(probe, X[10000:], y[10000:]) > 0.97
    top = np.argsort(-np.abs(probe.weight).max(axis=0))[:2]
    assert set(probe.neurons[top]) == {5, 20}


def test_regression_recovers_planted_target():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((2500, 30), dtype=np.float32)
    t = (X[:, 2] - 0.5 * X[:, 11]).astype(np.float32)
    probe = train_probe(X[:2000], t[:2000], kind="regression", epochs=3, progress=False)
    w, b = reference_probe(X[:2000], t[:2000], np.arange(30), 1, epochs=3, kind="regression")
    np.testing.assert_allclose(probe.weight, w, atol=2e-6)
    np.testing.assert_allclose(probe.bias, b, atol=2e-6)
    assert probe.weight.shape == (1, 30) and probe.n_classes is None
    better = train_probe(X[:2000], t[:2000], kind="regression", lr=0.01, progress=False)
    assert evaluate(better, X[2000:], t[2000:]) > 0.95  # pearson by default
    assert evaluate(better, X[2000:], t[2000:], "spearman") > 0.9


def test_float16_memmap_input(tmp_path, data):
    X, y = data
    X16 = X.astype(np.float16)
    np.save(tmp_path / "X.npy", X16)
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    from_mm = train_probes(mm, y, SUBSETS, epochs=1, progress=False)
    from_f32 = train_probes(X16.astype(np.float32), y, SUBSETS, epochs=1, progress=False)
    for name in SUBSETS:
        np.testing.assert_allclose(from_mm[name].weight, from_f32[name].weight, atol=1e-6)
        np.testing.assert_array_equal(from_mm[name].predict(mm), from_f32[name].predict(X16))


def test_predict_selects_columns_from_full_X(data):
    X, y = data
    probe = train_probe(X, y, [30, 3, 25, 17], epochs=1, progress=False)
    expected = X[:, probe.neurons] @ probe.weight.T + probe.bias
    np.testing.assert_allclose(probe.decision_function(X, batch_size=64), expected, rtol=1e-5)
    np.testing.assert_array_equal(probe.predict(X), expected.argmax(1))
    back = LinearProbe.from_dict(probe.to_dict())
    np.testing.assert_array_equal(back.weight, probe.weight)
    np.testing.assert_array_equal(back.neurons, probe.neurons)
    assert back.kind == probe.kind and back.n_classes == 3


def test_evaluate_probes_one_pass_matches_single(data):
    X, y = data
    probes = train_probes(X, y, SUBSETS, epochs=1, progress=False)
    many = evaluate_probes(probes, X, y, "f1")
    for name, p in probes.items():
        assert many[name] == pytest.approx(evaluate(p, X, y, "f1"))


def test_metrics_against_sklearn_and_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert score(a, b, "accuracy") == pytest.approx(np.mean(a == b))
    assert score(a, b, "f1") == pytest.approx(f1_score(a, b, average="macro"))
    assert score(a, b, "matthews") == pytest.approx(matthews_corrcoef(a, b))
    u, v = rng.standard_normal(100), rng.standard_normal(100)
    assert score(u, v, "pearson") == pytest.approx(stats.pearsonr(u, v)[0])
    assert score(u, v, "spearman") == pytest.approx(stats.spearmanr(u, v)[0])
    acc = per_class_accuracy(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), n_classes=3)
    np.testing.assert_allclose(acc, [0.5, 2 / 3, np.nan])


def test_subset_helpers():
    assert layer_subsets(3, 4) == {
        LayerSet("layer", 0): slice(0, 4),
        LayerSet("layer", 1): slice(4, 8),
        LayerSet("layer", 2): slice(8, 12),
    }
    assert incremental_subsets(2, 5) == {
        LayerSet("incremental", 0): slice(0, 5),
        LayerSet("incremental", 1): slice(0, 10),
    }
    key = next(iter(incremental_subsets(4, 3).keys() - {LayerSet("incremental", 0)}))
    assert key.kind == "incremental" and isinstance(key.layer, int)
    assert [str(k) for k in layer_subsets(2, 1)] == ["layer 0", "layer 1"]
    assert str(LayerSet("incremental", 3)) == "layers 0-3"
    assert LayerSet("layer", 3) != LayerSet("incremental", 3)


def test_errors(data):
    X, y = data
    with pytest.raises(ValueError, match="'kind' parameter of train_probes"):
        train_probes(X, y, [None], kind="svm")
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        train_probe(X, y[:-1])
    with pytest.raises(ValueError, match="outside"):
        train_probe(X, y, [0, 99])
    with pytest.raises(ValueError, match="float32 or float16"):
        train_probe(X.astype(np.float64), y)
    with pytest.raises(ValueError, match="'metric' parameter of score"):
        score(y, y, "auc")


# ------------------------------------------------------------------ engines
def _engine_data(n_out, n=701, d=40, seed=5):
    """701 rows: five full batches, then 61 rows (15 groups of four and a single row)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    if n_out == 1:
        return X, (X[:, 1] - 0.7 * X[:, 8] + 0.1 * rng.standard_normal(n)).astype(np.float32)
    return X, np.digitize(X[:, 4] + X[:, 9], np.linspace(-1.5, 1.5, n_out - 1)).astype(np.int64)


@pytest.mark.parametrize(
    ("n_out", "neurons"),
    [(2, None), (5, None), (1, None), (2, slice(10, 31)), (5, slice(3, 40))],
)
def test_numba_engine_matches_torch_engine(n_out, neurons):
    pytest.importorskip("numba")
    X, y = _engine_data(n_out)
    kind = "regression" if n_out == 1 else "classification"
    kw = dict(kind=kind, epochs=3, lr=0.01, l1=1e-3, l2=1e-2, progress=False)
    fast = train_probe(X, y, neurons, engine="numba", **kw)
    slow = train_probe(X, y, neurons, engine="torch", **kw)
    np.testing.assert_array_equal(fast.neurons, slow.neurons)
    np.testing.assert_allclose(fast.weight, slow.weight, atol=1e-5)
    np.testing.assert_allclose(fast.bias, slow.bias, atol=1e-5)
    np.testing.assert_allclose(fast.decision_function(X), slow.decision_function(X), atol=1e-4)
    if kind == "classification":
        assert np.mean(fast.predict(X) == slow.predict(X)) > 0.99
    # ... and both follow the plain autograd probe.
    w, b = reference_probe(X, y, fast.neurons, n_out, epochs=1, l1=1e-3, l2=1e-2, kind=kind)
    one = train_probe(X, y, neurons, engine="numba", **{**kw, "epochs": 1, "lr": 1e-3})
    np.testing.assert_allclose(one.weight, w, atol=2e-6)
    np.testing.assert_allclose(one.bias, b, atol=2e-6)


def test_numba_engine_reads_float32_memmap(tmp_path):
    pytest.importorskip("numba")
    X, y = _engine_data(3)
    np.save(tmp_path / "X.npy", X)
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    from_mm = train_probe(mm, y, slice(5, 25), epochs=2, engine="numba", progress=False)
    ref = train_probe(X, y, slice(5, 25), epochs=2, engine="torch", progress=False)
    np.testing.assert_allclose(from_mm.weight, ref.weight, atol=1e-5)
    np.testing.assert_array_equal(from_mm.predict(mm), ref.predict(X))


def test_engine_choice_and_errors(data):
    from redundancy.analysis import probes as mod

    X, y = data
    have_numba = mod._probe_kernel() is not None
    one = _joint([np.arange(5, 20)], [42], 3)
    scattered = _joint([np.array([1, 7, 30])], [42], 3)
    two_seeds = _joint([np.arange(5, 20)] * 2, [1, 2], 3)
    assert mod._pick_engine("auto", one, X, "cpu", "f") == ("numba" if have_numba else "torch")
    assert mod._pick_engine("auto", scattered, X, "cpu", "f") == "torch"
    assert mod._pick_engine("auto", one, X.astype(np.float16), "cpu", "f") == "torch"
    assert mod._pick_engine("auto", one, np.asfortranarray(X), "cpu", "f") == "torch"
    assert mod._pick_engine("torch", one, X, "cpu", "f") == "torch"
    assert mod._pick_engine("auto", two_seeds, X, "cpu", "f") == "torch"
    assert mod._pick_engine("auto", one, X, "cpu", "f", "bfloat16") == "torch"
    with pytest.raises(ValueError, match="'engine' parameter of train_probes"):
        train_probe(X, y, engine="fast")
    if have_numba:
        with pytest.raises(ValueError, match="contiguous range of columns"):
            train_probe(X, y, [30, 3, 25], engine="numba")
        with pytest.raises(ValueError, match="float32"):
            train_probe(X.astype(np.float16), y, engine="numba")
        with pytest.raises(ValueError, match="computes in float32 only"):
            train_probe(X, y, engine="numba", compute_dtype="bfloat16")


def test_numba_engine_result_does_not_depend_on_the_thread_count():
    pytest.importorskip("numba")
    X, y = _engine_data(5)
    kw = dict(epochs=2, lr=0.01, progress=False, engine="numba")
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = train_probe(X, y, **kw)
        torch.set_num_threads(2)
        two = train_probe(X, y, **kw)
    finally:
        torch.set_num_threads(old)
    np.testing.assert_array_equal(one.weight, two.weight)
    np.testing.assert_array_equal(one.bias, two.bias)


# ------------------------------------------------------ joint engine: seeds, dtypes, threads
def _joint(sets, seeds, n_out, *, compute_dtype="float32", fused=True):
    from redundancy.analysis._probe_joint import JointProbes

    return JointProbes(sets, seeds, init_probe_parameters, n_out, "cpu", compute_dtype, fused=fused)


def test_several_seeds_equal_training_alone(data):
    X, y = data
    seeds = [0, 1, 7]
    joint = train_probes(X, y, SUBSETS, epochs=2, random_state=seeds, progress=False)
    assert list(joint) == [(name, s) for name in SUBSETS for s in seeds]
    for name, sub in SUBSETS.items():
        for s in seeds:
            alone = train_probes(X, y, {name: sub}, epochs=2, random_state=s, progress=False)
            np.testing.assert_allclose(joint[name, s].weight, alone[name].weight, atol=1e-6)
            np.testing.assert_allclose(joint[name, s].bias, alone[name].bias, atol=1e-6)
            assert joint[name, s].meta["random_state"] == s
    # ... and each follows the autograd reference seeded the same way
    w0, _ = init_probe_parameters(40, 3, random_state=7)
    assert not np.allclose(joint["all", 0].weight, joint["all", 7].weight, atol=1e-3)
    torch_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(7)
        np.testing.assert_array_equal(torch.nn.Linear(40, 3).weight.detach().numpy(), w0)
    finally:
        torch.random.set_rng_state(torch_state)


def test_seed_errors(data):
    X, y = data
    for bad in ([], [1, 1], [-1], "1", 1.5):
        with pytest.raises(ValueError, match="'random_state' parameter of train_probes"):
            train_probes(X, y, [None], random_state=bad, epochs=1, progress=False)
    with pytest.raises(ValueError, match="'compute_dtype' parameter of train_probes"):
        train_probe(X, y, compute_dtype="float16")
    with pytest.raises(ValueError, match="'num_threads' parameter of train_probes"):
        train_probe(X, y, num_threads=0)


def test_fused_step_matches_torch_step(data):
    """The compiled penalty + Adam pass (CPU) and the torch kernels (GPU path) agree."""
    pytest.importorskip("numba")
    from redundancy.analysis._probe_joint import fit

    X, y = data
    sets = [np.arange(40), np.arange(20), np.arange(10, 40), np.array([3, 17, 25, 30])]
    for dtype, tol in (("float32", 1e-6), ("bfloat16", 1e-6)):
        res = []
        for fused in (True, False):
            model = _joint(sets, [42, 1, 2, 3], 3, compute_dtype=dtype, fused=fused)
            fit(model, X, y, "classification", 3, 3e-2, 0.5, 1e-3, 128, 2, "cpu", False)
            res.append((model.theta.numpy().copy(), model.bias.numpy().copy()))
            if dtype == "bfloat16":  # the bfloat16 weights are the rounded master weights
                expect = model.theta.to(torch.bfloat16).view(torch.int16)
                assert torch.equal(model.theta16.view(torch.int16), expect)
        np.testing.assert_allclose(res[0][0], res[1][0], atol=tol, err_msg=dtype)
        np.testing.assert_allclose(res[0][1], res[1][1], atol=tol, err_msg=dtype)


def test_bfloat16_conversions_match_torch():
    pytest.importorskip("numba")
    from redundancy.analysis import _probe_kernel as kernel

    rng = np.random.default_rng(4)
    x = (rng.standard_normal(4096) * 10.0 ** rng.integers(-6, 6, 4096)).astype(np.float32)
    # exact ties of the rounding (low 16 bits 0x8000), both parities, and signed zeros
    ties = (rng.integers(0, 2**15, 64, dtype=np.uint32) << 16 | 0x8000).view(np.float32)
    x = np.concatenate([x, ties, np.float32([0.0, -0.0, 1.0, -3.5])])
    got = np.empty(x.size, dtype=np.uint16)
    kernel._narrow_bf16(x, got)
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(got, want)
    back = np.empty(x.size, dtype=np.float32)
    kernel._widen_bf16(got, back)
    np.testing.assert_array_equal(
        back, torch.from_numpy(want.view(np.int16)).view(torch.bfloat16).float().numpy()
    )


def _bf16_reference(X, y, n_out, epochs, l1, l2):
    """One probe with bfloat16 products, written step by step: the documented arithmetic."""
    torch.manual_seed(42)
    lin = torch.nn.Linear(X.shape[1], n_out)
    W, b = lin.weight.detach().clone(), lin.bias.detach().clone()
    W.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.Adam([W, b], lr=1e-3)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(epochs):
        for i in range(0, len(Xt), 128):
            xb, B = Xt[i : i + 128].to(torch.bfloat16), min(128, len(Xt) - i)
            with torch.no_grad():
                Z = torch.mm(W.to(torch.bfloat16), xb.T).float() + b[:, None]
                G = torch.softmax(Z, dim=0)
                G[yt[i : i + 128], torch.arange(B)] -= 1.0
                G /= B
                gW = torch.mm(G.to(torch.bfloat16), xb).float()
                W.grad = gW + l1 * torch.sign(W) + l2 * W / torch.linalg.vector_norm(W)
                b.grad = G.sum(dim=1)
            opt.step()
    return W.detach().numpy(), b.detach().numpy()


def test_bfloat16_follows_its_reference_and_stays_close_to_float32():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((6000, 48), dtype=np.float32)
    y = np.argmax(X[:, :12] @ rng.standard_normal((12, 6), dtype=np.float32), axis=1)
    kw = dict(n_classes=6, epochs=2, l1=1e-3, l2=1e-2, progress=False)
    half = train_probe(X, y, compute_dtype="bfloat16", **kw)
    w, b = _bf16_reference(X, y, 6, 2, 1e-3, 1e-2)
    np.testing.assert_allclose(half.weight, w, atol=2e-5)
    np.testing.assert_allclose(half.bias, b, atol=2e-5)
    full = train_probe(X, y, **kw)
    assert half.meta["compute_dtype"] == "bfloat16" and full.meta["compute_dtype"] == "float32"
    gap = np.abs(half.weight - full.weight).max()
    assert 1e-6 < gap < 1e-3  # it does round, and only a little (weights up to ~0.2)
    assert abs(evaluate(half, X, y) - evaluate(full, X, y)) < 0.005


def test_work_sharing_runs_every_task_once():
    from redundancy.analysis._probe_joint import WorkSharing

    done = []
    team = WorkSharing(3)
    try:
        team.run([lambda i=i: done.append(i) for i in range(50)])
        assert sorted(done) == list(range(50))
        with pytest.raises(ZeroDivisionError):
            team.run([lambda: 1 / 0])
    finally:
        team.close()


def test_threads_are_chosen_by_work_per_step_and_do_not_change_results():
    from redundancy.analysis._probe_joint import PARALLEL_MACS, choose_threads

    small = _joint([np.arange(40)], [42], 3)
    assert choose_threads(small, 128, "cpu") == 1
    wide = int(PARALLEL_MACS // (2 * 128 * 100)) + 1  # 100 classes over `wide` neurons
    big = _joint([np.arange(wide)], [42], 100)
    assert big.macs_per_step(128) >= PARALLEL_MACS
    assert choose_threads(big, 128, "cpu") == torch.get_num_threads()
    assert choose_threads(big, 128, "cuda") is None

    rng = np.random.default_rng(8)
    X = rng.standard_normal((900, 64), dtype=np.float32)
    y = rng.integers(0, 20, 900)
    subs = {**layer_subsets(4, 16), **incremental_subsets(4, 16)}
    runs = [train_probes(X, y, subs, epochs=1, num_threads=t, progress=False) for t in (1, 2, 2)]
    assert runs[0][LayerSet("layer", 1)].meta["num_threads"] == 1
    assert runs[1][LayerSet("layer", 1)].meta["num_threads"] == 2
    for key in subs:  # every product runs on one thread, whoever runs it: same bits
        np.testing.assert_array_equal(runs[0][key].weight, runs[1][key].weight)
        np.testing.assert_array_equal(runs[1][key].weight, runs[2][key].weight)
        np.testing.assert_array_equal(runs[0][key].bias, runs[2][key].bias)


def test_pooled_small_atoms_train_each_probe_as_alone():
    """Independently drawn subsets (cluster representatives) and the prefixes of a ranking
    (a minimal-set search) make one atom per column; their columns are pooled into one
    masked block per chain of nested subsets, and every probe still trains as it would
    alone."""
    from redundancy.analysis._probe_joint import fit

    rng = np.random.default_rng(11)
    X = rng.standard_normal((700, 120), dtype=np.float32)
    y = np.argmax(X[:, :9] @ rng.standard_normal((9, 4), dtype=np.float32), axis=1)
    order = rng.permutation(120)
    sets = {f"top{k}": np.sort(order[:k]) for k in range(3, 33, 3)}
    sets.update({f"r{n}": np.sort(rng.choice(120, n, replace=False)) for n in (50, 40, 30, 9)})
    keys = list(sets)
    seeds = {k: i for i, k in enumerate(keys)}
    model = _joint(list(sets.values()), list(seeds.values()), 4)
    blocks = [set(probes.tolist()) for _, _, probes, *_ in model.atoms]
    assert len(blocks) == 5  # the ranking's chain and the four lone subsets
    assert {keys.index(k) for k in keys if k.startswith("top")} in blocks
    kw = dict(epochs=2, l1=1e-3, l2=1e-2, lr=1e-2, progress=False)
    joint = train_probes(X, y, sets, random_state=seeds, **kw)
    for k, sub in sets.items():
        alone = train_probes(X, y, {k: sub}, random_state=seeds[k], **kw)[k]
        np.testing.assert_allclose(joint[k].weight, alone.weight, atol=2e-6, err_msg=k)
        np.testing.assert_allclose(joint[k].bias, alone.bias, atol=2e-6, err_msg=k)
    # the weights a probe does not own are exactly zero after training
    fit(model, X, y, "classification", 4, 1e-3, 1e-2, 1e-2, 128, 2, "cpu", False)
    a = next(i for i, m in enumerate(model.masks) if m is not None)
    a0, a1, probes, r0, r1, off = model.atoms[a]
    blk = model.theta.numpy()[off : off + (r1 - r0) * (a1 - a0)].reshape(r1 - r0, a1 - a0)
    owned = np.repeat(model.masks[a], 4, axis=0)
    assert np.all(blk[~owned] == 0.0) and np.all(blk[owned] != 0.0)


def test_overlapping_subsets_share_one_pooled_block():
    """Large independently drawn subsets overlap so much that gathering each one's columns
    would cost more than one block over all of them: one masked block, same probes."""
    rng = np.random.default_rng(12)
    X = rng.standard_normal((600, 100), dtype=np.float32)
    y = np.argmax(X[:, :9] @ rng.standard_normal((9, 3), dtype=np.float32), axis=1)
    sets = {f"r{i}": np.sort(rng.choice(100, n, replace=False)) for i, n in
            enumerate([90, 80, 75, 70, 60, 50])}  # fmt: skip
    seeds = {k: 3 * i for i, k in enumerate(sets)}
    model = _joint(list(sets.values()), list(seeds.values()), 3)
    assert len(model.atoms) == 1 and model.masks[0] is not None
    kw = dict(epochs=2, l1=1e-3, l2=1e-2, lr=1e-2, progress=False)
    joint = train_probes(X, y, sets, random_state=seeds, **kw)
    for k, sub in sets.items():
        alone = train_probes(X, y, {k: sub}, random_state=seeds[k], **kw)[k]
        np.testing.assert_allclose(joint[k].weight, alone.weight, atol=2e-6, err_msg=k)
        np.testing.assert_allclose(joint[k].bias, alone.bias, atol=2e-6, err_msg=k)
