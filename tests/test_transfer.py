"""Tests for redundancy.analysis.transfer: LayerSelector rule, JSON round-trip, and the whole
LayerSelector + CC + FS pipeline on a planted task whose answer is three neurons of layer 2."""

from __future__ import annotations

import numpy as np
import pytest

from redundancy.analysis.probes import evaluate
from redundancy.analysis.transfer import (
    IncrementalScores,
    LayerSelector,
    TransferResult,
    ccfs,
    ccfs_sweep,
    select_layer,
)

L, H = 4, 32
RULE = (2 * H + 3, 2 * H + 10, 2 * H + 20)  # three neurons of layer 2


def test_select_layer_rule():
    scores = [0.50, 0.80, 0.955, 0.97, 0.99]
    assert select_layer(scores, 0.99, delta=3) == 3  # threshold 0.9603
    assert select_layer(scores, 0.99, delta=5) == 2  # threshold 0.9405
    assert select_layer(scores, 0.99, delta=3.6) == 2  # threshold 0.95436
    assert select_layer(scores, delta=2) == 4  # threshold 0.9702: 0.97 is not above it
    assert select_layer(scores, delta=0) == 4  # nothing strictly above the oracle: last layer
    sel = LayerSelector(delta=20).fit(scores)
    assert sel.layer_ == 1 and sel.threshold_ == pytest.approx(0.792)
    np.testing.assert_array_equal(sel.neurons(10), np.arange(20))
    assert sel.transform(np.zeros((3, 50)), 10).shape == (3, 20)
    with pytest.raises(ValueError, match="'delta' parameter of select_layer"):
        select_layer(scores, delta=-1)
    with pytest.raises(RuntimeError, match="not fitted"):
        LayerSelector().neurons(10)


def test_select_layer_threshold_includes_equality():
    # within_delta: score >= (1 - delta) * oracle, equality inside
    assert select_layer([0.95, 0.9604, 0.99], 0.99, delta=3) == 1
    assert select_layer([0.95, 0.9602, 0.99], 0.99, delta=3) == 2
    assert select_layer([0.9, 0.9, 0.9], 0.9, delta=0) == 0
    assert select_layer([0.5, 0.75, 1.0], 1.0, delta=25) == 1


def _planted(n, rng):
    X = rng.standard_normal((n, L * H)).astype(np.float32)
    # Layer 3 holds noisy copies of layer 2: the oracle gains nothing over layers 0..2.
    X[:, 3 * H :] = X[:, 2 * H : 3 * H] + 0.05 * rng.standard_normal((n, H)).astype(np.float32)
    X[:, list(RULE)] *= 3.0
    y = (X[:, list(RULE)].sum(axis=1) > 0).astype(np.int64)
    return X, y


@pytest.fixture(scope="module")
def splits():
    rng = np.random.default_rng(0)
    return [_planted(n, rng) for n in (3000, 800, 800)]


@pytest.fixture(scope="module")
def sweep(splits):
    pytest.importorskip("redundancy.analysis.clustering")
    (Xtr, ytr), (Xdv, ydv), (Xte, yte) = splits
    cache = {}
    results = ccfs_sweep(
        Xtr, ytr, Xdv, ydv, Xte, yte, n_layers=L, n_hidden=H, lr=0.01, cache=cache,
        progress=False,
    )  # fmt: skip
    return results, cache


def test_ccfs_finds_planted_layer_and_neurons(sweep):
    results, _ = sweep
    for res in results:
        assert res.layer == 2, res.as_row()
        assert res.n_ls == 3 * H and res.n_all == L * H
        # Noise neurons are uncorrelated: clustering of layers 0..2 keeps them all.
        assert res.n_cc == 3 * H
        assert set(res.neurons) == set(RULE)
        assert res.n_fs == 3 and res.fraction_kept == pytest.approx(3 / 128)
        assert res.test["fs"] > 0.97 and res.dev["fs"] > res.dev["cc"] * 0.99


def test_ccfs_sweep_shares_work(sweep):
    results, cache = sweep
    assert [(r.delta_ls, r.delta_fs) for r in results] == [(3, 1), (2, 1), (1, 1)]
    kinds = [k[0] for k in cache]
    assert kinds.count("incremental") == 1
    assert kinds.count("cc") == len({r.layer for r in results})


def test_ccfs_reuses_given_incremental_scores(splits, sweep):
    pytest.importorskip("redundancy.analysis.clustering")
    (Xtr, ytr), (Xdv, ydv), (Xte, yte) = splits
    # Planted incremental scores make LayerSelector keep layers 0..3; CC then merges copies.
    inc = IncrementalScores(dev=[0.5, 0.5, 0.6, 0.99], test=[0.5, 0.5, 0.6, 0.98])
    res = ccfs(
        Xtr, ytr, Xdv, ydv, Xte, yte, n_layers=L, n_hidden=H, incremental=inc, lr=0.01,
        progress=False,
    )  # fmt: skip
    assert res.layer == 3 and res.dev["oracle"] == 0.99 and res.test["ls"] == 0.98
    assert res.n_cc == 3 * H  # each layer-3 neuron joins its layer-2 original
    assert res.n_fs == 3
    assert {i - H if i >= 3 * H else i for i in res.neurons} == set(RULE)


def test_transfer_result_json_round_trip(sweep):
    res = sweep[0][0]
    back = TransferResult.from_json(res.to_json())
    assert back == res and back.probe is None and "probe" not in res.to_json()
    row = back.as_row()
    assert row["layer"] == 2 and row["n_fs"] == 3 and (row["delta_ls"], row["delta_fs"]) == (3, 1)
    assert row["branch"] == "LS+CC+FS"
    assert row["score_kept"] == pytest.approx(res.test["fs"] / res.test["oracle"])


def test_transfer_result_keeps_the_final_probe(splits, sweep):
    """The FS probe the search trained is on the result: it reads exactly the chosen
    neurons and scores the result's FS dev and test scores."""
    (_, _), (Xdv, ydv), (Xte, yte) = splits
    for res in sweep[0]:
        assert sorted(res.probe.neurons.tolist()) == sorted(res.neurons)
        assert evaluate(res.probe, Xdv, ydv) == pytest.approx(res.dev["fs"])
        assert evaluate(res.probe, Xte, yte) == pytest.approx(res.test["fs"])


def test_ls_fs_branch_skips_clustering(splits):
    """threshold=None is the authors' second branch: LayerSelector + FS, no clustering."""
    (Xtr, ytr), (Xdv, ydv), (Xte, yte) = splits
    res = ccfs(Xtr, ytr, Xdv, ydv, Xte, yte, n_layers=4, n_hidden=H, threshold=None, epochs=3)
    assert res.branch == "LS+FS" and res.threshold is None
    assert res.n_cc == res.n_ls == (res.layer + 1) * H
    assert res.cc_neurons == list(range(res.n_ls))


def test_ccfs_checks_layout(splits):
    (Xtr, ytr), (Xdv, ydv), (Xte, yte) = splits
    with pytest.raises(ValueError, match="n_layers \\* n_hidden"):
        ccfs(Xtr, ytr, Xdv, ydv, Xte, yte, n_layers=3, n_hidden=H)


def test_ccfs_seeds_equals_each_sweep_alone(splits, monkeypatch):
    """Several seeds and both branches with shared passes give what each sweep gives alone
    (CC probes trained jointly, FS searches in shared rounds)."""
    pytest.importorskip("redundancy.analysis.clustering")
    from redundancy.analysis import transfer

    (Xtr, ytr), (Xdv, ydv), (Xte, yte) = splits
    inc = {
        0: IncrementalScores(dev=[0.5, 0.5, 0.6, 0.99], test=[0.5, 0.5, 0.6, 0.98]),
        5: IncrementalScores(dev=[0.5, 0.7, 0.98, 0.99], test=[0.5, 0.7, 0.97, 0.98]),
    }
    kw = dict(n_layers=L, n_hidden=H, lr=0.01, epochs=4, progress=False)
    # the sweeps find every CC probe and FS search in the shared passes' cache entries
    solo = []
    for name in ("train_probe", "minimal_set"):
        real = getattr(transfer, name)
        monkeypatch.setattr(transfer, name, lambda *a, _f=real, **k: solo.append(1) or _f(*a, **k))
    together = transfer.ccfs_seeds(Xtr, ytr, Xdv, ydv, Xte, yte, incremental=inc, **kw)
    assert solo == []
    monkeypatch.undo()
    assert list(together) == [(0, 0.3), (0, None), (5, 0.3), (5, None)]
    for (seed, threshold), runs in together.items():
        alone = ccfs_sweep(
            Xtr, ytr, Xdv, ydv, Xte, yte, incremental=inc[seed], threshold=threshold,
            random_state=seed, probe_random_state=seed, **kw,
        )  # fmt: skip
        assert len(runs) == len(alone) == 3
        for a, b in zip(runs, alone):
            assert (a.layer, a.n_cc, a.n_fs, a.branch) == (b.layer, b.n_cc, b.n_fs, b.branch)
            assert a.neurons == b.neurons and a.cc_neurons == b.cc_neurons
            for step in ("cc", "fs"):
                assert a.dev[step] == pytest.approx(b.dev[step], abs=2 / len(ydv))
                assert a.test[step] == pytest.approx(b.test[step], abs=2 / len(yte))
