"""Tests for redundancy.analysis.ranking: LCA ordering against a direct loop of its definition, grids,
and the minimal set against the one-by-one search."""

from __future__ import annotations

import numpy as np
import pytest

from redundancy.analysis.probes import LinearProbe, evaluate, train_probe
from redundancy.analysis.ranking import (
    FS_GRID,
    PERCENT_GRID,
    grid_sizes,
    lca_ranking,
    minimal_set,
    rank_neurons,
)


def lca_loop(weight, step):
    """The definition, literally: raise p, let each class take its top-|w| neurons until their
    mass reaches p of its total, append newcomers (ties: larger max |w|, then lower id)."""
    A = np.abs(np.asarray(weight, dtype=np.float64))
    M = int(round(1 / step))
    order, seen = [], set()
    sorted_idx = [np.argsort(-row, kind="stable") for row in A]
    for m in range(1, M + 1):
        p = m * step
        new = set()
        for c, row in enumerate(A):
            total = np.cumsum(row[sorted_idx[c]])[-1]
            if total <= 0:
                continue
            mass = 0.0
            for j in sorted_idx[c]:
                if mass >= p * total:  # prefix already reached p: stop taking neurons
                    break
                new.add(int(j))
                mass = np.cumsum(row[sorted_idx[c]])[list(sorted_idx[c]).index(j)]
        fresh = sorted(new - seen, key=lambda j: (-A[:, j].max(), j))
        order += fresh
        seen |= set(fresh)
    rest = sorted(set(range(A.shape[1])) - seen, key=lambda j: (-A[:, j].max(), j))
    return np.array(order + rest)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("step", [0.05, 0.01])
def test_lca_vectorised_equals_definition(seed, step):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((4, 30)) * rng.exponential(1, size=30)
    W[:, 7] = 0.0  # never enters
    W[1, 3] = W[1, 4] = 2.5  # ties inside a class
    W[2] = 0.0  # a class with no mass
    np.testing.assert_array_equal(lca_ranking(W, step=step), lca_loop(W, step))


def test_lca_paper_step_equals_definition():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((3, 25)).astype(np.float32)
    np.testing.assert_array_equal(lca_ranking(W), lca_loop(W, 0.001))


def test_lca_single_output_is_abs_weight_order():
    w = np.array([[0.1, -3.0, 0.5, 2.0, -0.05]])
    np.testing.assert_array_equal(lca_ranking(w), [1, 3, 2, 0, 4])


def test_rank_neurons_maps_to_global_ids():
    probe = LinearProbe(
        neurons=np.array([10, 20, 30]),
        weight=np.array([[0.1, 0.0, -2.0], [0.2, 0.0, 1.0]], dtype=np.float32),
        bias=np.zeros(2, dtype=np.float32),
    )
    np.testing.assert_array_equal(rank_neurons(probe), [30, 10, 20])


def test_grids():
    assert len(PERCENT_GRID) == 100 + 8 + 4
    assert PERCENT_GRID[:3] == (0.1, 0.2, 0.3) and PERCENT_GRID[99] == 10.0
    assert PERCENT_GRID[100:] == (15, 20, 25, 30, 35, 40, 45, 50, 60, 70, 80, 90)
    assert FS_GRID[:6] == (0.1, 0.2, 0.3, 0.4, 0.5, 1.0) and FS_GRID[-1] == 90
    assert grid_sizes((0.1, 1, 10), 9984) == [(0.1, 10), (1.0, 100), (10.0, 998)]
    assert grid_sizes((1, 2, 50, 90), 100, n_available=30) == [(1.0, 1), (2.0, 2), (50.0, 30)]


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1500, 100), dtype=np.float32)
    y = (X[:, 11] + X[:, 42] + X[:, 77] + 0.3 * X[:, 5] > 0).astype(np.int64)
    return X[:1000], y[:1000], X[1000:], y[1000:]


def test_minimal_set_returns_first_passing_k(planted):
    Xtr, ytr, Xdv, ydv = planted
    # The three rule neurons sit at ranks 4..6 of the ordering: small k must fail.
    rest = [i for i in range(100) if i not in (11, 42, 77)]
    ordering = np.array(rest[:4] + [11, 42, 77] + rest[4:])
    base = evaluate(train_probe(Xtr, ytr, lr=0.01, progress=False), Xdv, ydv)
    grid = tuple(range(1, 13))  # k = 1..12 of 100 neurons
    kw = {"lr": 0.02, "epochs": 5}
    res = minimal_set(
        Xtr,
        ytr,
        Xdv,
        ydv,
        ordering,
        base_score=base,
        delta=5,
        grid=grid,
        round_size=3,
        progress=False,
        **kw,
    )
    # The one-by-one search.
    first = None
    for k in range(1, 13):
        s = evaluate(train_probe(Xtr, ytr, ordering[:k], progress=False, **kw), Xdv, ydv)
        assert s == pytest.approx(res.curve.set_index("k").dev_score.get(k, s), abs=1e-9)
        if s > base * 0.95:
            first = k
            break
    assert res.passed and res.k == first >= 7
    np.testing.assert_array_equal(res.neurons, ordering[:first])
    np.testing.assert_array_equal(np.sort(res.neurons), res.probe.neurons)
    assert res.dev_score > res.threshold == pytest.approx(base * 0.95)
    # Rounds change nothing.
    one = minimal_set(
        Xtr,
        ytr,
        Xdv,
        ydv,
        ordering,
        base_score=base,
        delta=5,
        grid=grid,
        round_size=1,
        progress=False,
        **kw,
    )
    assert one.k == res.k and len(one.curve) == first
    assert res.curve.k.tolist()[: len(one.curve)] == one.curve.k.tolist()
    # The default rounds (as many sizes as fit in n_total neurons) change nothing either:
    # here k = 1..12 sum to 78 <= 100, so one round tries them all.
    auto = minimal_set(
        Xtr, ytr, Xdv, ydv, ordering, base_score=base, delta=5, grid=grid, progress=False, **kw
    )
    assert auto.k == res.k and len(auto.curve) == 12
    assert auto.dev_score == pytest.approx(res.dev_score, abs=1e-6)


def test_minimal_set_nothing_passes_warns(planted):
    Xtr, ytr, Xdv, ydv = planted
    with pytest.warns(UserWarning, match="No grid size"):
        res = minimal_set(
            Xtr, ytr, Xdv, ydv, np.arange(5), base_score=2.0, grid=(1, 2), epochs=1, progress=False
        )
    assert not res.passed and res.k == 5


def test_minimal_set_errors(planted):
    Xtr, ytr, Xdv, ydv = planted
    with pytest.raises(ValueError, match="must not repeat"):
        minimal_set(Xtr, ytr, Xdv, ydv, [1, 1], base_score=0.5)
    with pytest.raises(ValueError, match="'delta' parameter of minimal_set"):
        minimal_set(Xtr, ytr, Xdv, ydv, [1, 2], base_score=0.5, delta=150)


def test_joint_searches_equal_the_searches_alone(planted):
    """Several orderings and seeds searched in shared passes give each search's own answer."""
    from redundancy.analysis.ranking import minimal_sets

    Xtr, ytr, Xdv, ydv = planted
    rest = [i for i in range(100) if i not in (11, 42, 77)]
    orders = {
        "late": np.array(rest[:4] + [11, 42, 77] + rest[4:]),
        "early": np.array([11, 42, 77] + rest),
    }
    base = evaluate(train_probe(Xtr, ytr, lr=0.01, progress=False), Xdv, ydv)
    kw = {"lr": 0.02, "epochs": 5, "delta": 5, "grid": tuple(range(1, 13)), "round_size": 3}
    joint = minimal_sets(
        Xtr,
        ytr,
        Xdv,
        ydv,
        orders,
        base_scores=dict.fromkeys(orders, base),
        seeds={"late": 3, "early": 4},
        progress=False,
        **kw,
    )
    for key, seed in (("late", 3), ("early", 4)):
        alone = minimal_set(
            Xtr,
            ytr,
            Xdv,
            ydv,
            orders[key],
            base_score=base,
            random_state=seed,
            progress=False,
            **kw,
        )
        assert joint[key].k == alone.k
        assert joint[key].dev_score == pytest.approx(alone.dev_score, abs=1e-6)
        np.testing.assert_allclose(joint[key].probe.weight, alone.probe.weight, atol=1e-5)
    assert joint["early"].k < joint["late"].k


def test_a_seed_per_subset_trains_each_probe_as_alone(planted):
    from redundancy.analysis.probes import train_probes

    Xtr, ytr, _, _ = planted
    both = train_probes(
        Xtr,
        ytr,
        {"a": [1, 2, 3], "b": [4, 5]},
        random_state={"a": 7, "b": 9},
        epochs=2,
        progress=False,
    )
    assert set(both) == {"a", "b"}
    for key, ids, seed in (("a", [1, 2, 3], 7), ("b", [4, 5], 9)):
        alone = train_probe(Xtr, ytr, ids, random_state=seed, epochs=2, progress=False)
        np.testing.assert_allclose(both[key].weight, alone.weight, atol=1e-6)
    with pytest.raises(ValueError, match="one seed per subset"):
        train_probes(Xtr, ytr, {"a": [1]}, random_state={"b": 1}, progress=False)
