"""Baselines, bootstrap intervals and control tasks (redundancy.analysis.metrics / controls)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_token_task

from redundancy.analysis.controls import (
    control_labels,
    label_distribution,
    selectivity,
    task_types,
)
from redundancy.analysis.metrics import (
    bootstrap_interval,
    majority_baseline,
    seed_summary,
)


def test_majority_baseline():
    assert majority_baseline([0, 1, 1, 2], [1, 1, 0, 2]) == 0.5
    assert majority_baseline([2, 2, 0, 0], [0, 0, 2]) == pytest.approx(2 / 3)  # tie: code 0
    assert majority_baseline([1.0, 3.0], [1.0, 2.0, 3.0], "pearson", regression=True) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        majority_baseline([], [1])


def _naive_bootstrap(y, preds, groups, n_boot, confidence, seed):
    """Reference: resample groups with the same generator and score the instances directly."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    counts = rng.multinomial(uniq.size, np.full(uniq.size, 1 / uniq.size), size=n_boot)
    stats = []
    for c in counts:
        idx = np.concatenate(
            [np.flatnonzero(groups == g) for g, k in zip(uniq, c) for _ in range(k)]
        )
        stats.append(np.mean([np.mean(p[idx] == y[idx]) for p in preds]))
    a = (1 - confidence) / 2
    return tuple(np.quantile(stats, [a, 1 - a]))


def test_bootstrap_equals_a_direct_resampling_of_sentences():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), rng.integers(1, 8, size=40))
    y = rng.integers(0, 3, size=groups.size)
    preds = np.where(rng.random((3, groups.size)) < 0.7, y, (y + 1) % 3)
    fast = bootstrap_interval(y, preds, groups=groups, n_bootstrap=300, random_state=5)
    slow = _naive_bootstrap(y, preds, groups, 300, 0.95, 5)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    low, high = fast
    assert low < np.mean(preds == y) < high


def test_bootstrap_planted_cases():
    y = np.array([0, 1] * 50)
    assert bootstrap_interval(y, y, n_bootstrap=50) == (1.0, 1.0)
    low, high = bootstrap_interval(y, 1 - y, n_bootstrap=50)
    assert (low, high) == (0.0, 0.0)
    # about 70% right: the interval holds 0.7 and narrows with more data
    rng = np.random.default_rng(1)
    wide = [
        bootstrap_interval(t, np.where(rng.random(t.size) < 0.7, t, 1 - t), n_bootstrap=400)
        for t in (np.tile([0, 1], 50), np.tile([0, 1], 2000))
    ]
    assert wide[0][0] < 0.7 < wide[0][1] and wide[1][0] < 0.7 < wide[1][1]
    assert wide[1][1] - wide[1][0] < (wide[0][1] - wide[0][0]) / 3


def test_bootstrap_other_metrics_and_errors():
    rng = np.random.default_rng(2)
    y = rng.standard_normal(200)
    pred = y + 0.5 * rng.standard_normal(200)
    low, high = bootstrap_interval(y, pred, metric="pearson", n_bootstrap=100)
    r = np.corrcoef(y, pred)[0, 1]
    assert low < r < high
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        bootstrap_interval(y, pred[:10])
    with pytest.raises(ValueError, match="'confidence' parameter of bootstrap_interval"):
        bootstrap_interval(y, pred, confidence=1.5)


def test_seed_summary():
    s = seed_summary([0.5, 0.7, 0.6])
    assert s == pytest.approx({"mean": 0.6, "std": 0.1, "min": 0.5, "max": 0.7, "n": 3})
    assert seed_summary([0.3])["std"] == 0.0


def test_control_labels_are_fixed_per_word_type_and_follow_the_distribution():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(5000)]
    words = list(rng.choice(vocab, size=30_000))
    dist = np.array([0.6, 0.3, 0.1])
    labels = control_labels(words, dist, random_state=7)
    # fixed per type: every occurrence of a word has the same label
    by_word = {}
    for w, y in zip(words, labels):
        assert by_word.setdefault(w, y) == y
    # per type, labels follow the distribution (5,000 types: within 2.5 points)
    per_type = np.bincount(list(by_word.values()), minlength=3) / len(by_word)
    np.testing.assert_allclose(per_type, dist, atol=0.025)
    # the same type gets the same label in another split and another call; another seed differs
    again = control_labels(["w1", "w2", "w3"], dist, random_state=7)
    assert list(again) == [by_word["w1"], by_word["w2"], by_word["w3"]]
    other = control_labels(words, dist, random_state=8)
    assert (other != labels).mean() > 0.2


def test_control_labels_of_a_task_use_its_training_distribution():
    task = make_token_task(20)
    y = task.encode("train")
    dist = label_distribution(y, task.n_classes)
    assert dist.sum() == pytest.approx(1) and dist[-1] == 0  # the unseen class never drawn
    train = control_labels(task_types(task, "train"), dist, random_state=0)
    dev = control_labels(task_types(task, "dev"), dist, random_state=0)
    assert train.shape == y.shape and set(np.unique(train)) <= set(np.flatnonzero(dist))
    seen = dict(zip(task_types(task, "train"), train))
    for w, label in zip(task_types(task, "dev"), dev):
        if w in seen:
            assert seen[w] == label
    with pytest.raises(ValueError, match="probability vector"):
        control_labels(["a"], [0.5, 0.6])


def test_selectivity_is_the_difference():
    np.testing.assert_allclose(selectivity([0.9, 0.8], [0.6, 0.8]), [0.3, 0.0])


# ---------------------------------------------------- within delta, paired bootstrap

from redundancy.analysis.metrics import (  # noqa: E402
    decide_within,
    paired_bootstrap,
    score_noise,
    within_delta,
)


def test_within_delta_is_one_comparison_with_equality_inside():
    assert within_delta(0.99, 1.0, 0.01) is True  # equality passes
    assert within_delta(0.9899, 1.0, 0.01) is False
    assert within_delta(0.5, 0.5, 0.0) is True
    np.testing.assert_array_equal(
        within_delta(np.array([0.8, 0.9, 0.95]), 1.0, 0.1), [False, True, True]
    )
    with pytest.raises(ValueError, match="fraction"):
        within_delta(0.9, 1.0, 1)  # a percent by mistake


def _naive_paired(y, P, R, groups, n_boot, seed):
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    counts = rng.multinomial(uniq.size, np.full(uniq.size, 1 / uniq.size), size=n_boot)
    out = np.empty((n_boot, P.shape[0]))
    for b, c in enumerate(counts):
        idx = np.concatenate(
            [np.flatnonzero(groups == g) for g, k in zip(uniq, c) for _ in range(k)]
        )
        for s in range(P.shape[0]):
            out[b, s] = np.mean(P[s, idx] == y[idx]) / np.mean(R[s, idx] == y[idx])
    return out


def test_paired_bootstrap_equals_a_direct_resampling():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), rng.integers(1, 6, size=30))
    y = rng.integers(0, 3, size=groups.size)
    R = np.where(rng.random((2, groups.size)) < 0.9, y, (y + 1) % 3)
    P = np.where(rng.random((2, groups.size)) < 0.8, y, (y + 2) % 3)
    fast = paired_bootstrap(y, P, R, groups, n_resamples=100, random_state=4)
    assert fast.shape == (100, 2)
    np.testing.assert_allclose(fast, _naive_paired(y, P, R, groups, 100, 4), rtol=1e-12)
    # a 1-D reference serves every seed; another metric goes the slow way to the same place
    one = paired_bootstrap(y, P, R[0], groups, n_resamples=50, random_state=4)
    np.testing.assert_allclose(one[:, 0], fast[:50, 0], rtol=1e-12)
    f1 = paired_bootstrap(y, P, R, groups, n_resamples=5, metric="f1")
    assert f1.shape == (5, 2) and np.all((f1 > 0.5) & (f1 < 1.5))
    with pytest.raises(ValueError, match="'groups' parameter of paired_bootstrap"):
        paired_bootstrap(y, P, R, groups[:-1])
    with pytest.raises(ValueError, match="one row per seed"):
        paired_bootstrap(y, P, np.vstack([R, R]))
    with pytest.raises(ValueError, match="'preds' parameter"):
        paired_bootstrap(y, P[:, :-1], R)
    with pytest.warns(RuntimeWarning, match="reference scores 0"):
        r0 = paired_bootstrap(y, P[0], (y + 1) % 3, n_resamples=3)
    assert np.all(np.isnan(r0))


def test_paired_bootstrap_pairs_the_noise():
    # the subset is the reference with 2% of instances flipped wrong: the ratio's interval is
    # narrow and near 0.98 even though each score alone varies much more
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=3000)
    R = np.where(rng.random(3000) < 0.8, y, 1 - y)
    P = R.copy()
    P[rng.choice(np.flatnonzero(R == y), 48, replace=False)] ^= 1
    ratios = paired_bootstrap(y, P, R, n_resamples=400)
    expected = np.mean(P == y) / np.mean(R == y)
    assert abs(np.median(ratios) - expected) < 0.002
    assert np.std(ratios) < 0.4 * score_noise(y, R, n_resamples=400) / np.mean(R == y)
    assert decide_within(ratios, 0.05)["decision"] == "within"
    assert decide_within(ratios, 0.005)["decision"] == "outside"


def test_decide_within_decisions_and_pooling():
    r = np.linspace(0.96, 1.00, 101)
    out = decide_within(r, 0.02)
    assert out["decision"] == "inconclusive" and out["low"] < 0.98 < out["high"]
    assert out["mean"] == pytest.approx(0.98)
    assert decide_within(r, 0.05)["decision"] == "within"
    assert decide_within(r, 0.0)["decision"] == "outside"  # high = 0.999 < 1
    assert decide_within(r + 0.01, 0.0)["decision"] == "inconclusive"
    assert decide_within(r - 0.05, 0.0)["decision"] == "outside"
    # low exactly at 1 - delta is within (within_delta's side of equality)
    assert decide_within(np.full(10, 0.99), 0.01)["decision"] == "within"
    # pooled over seeds: one bad seed widens the interval
    two = np.stack([np.full(100, 1.0), np.full(100, 0.9)], axis=1)
    assert decide_within(two, 0.05)["decision"] == "inconclusive"
    assert decide_within(np.array([np.nan, 1.0]), 0.1)["decision"] == "within"
    with pytest.raises(ValueError, match="no ratio"):
        decide_within(np.array([np.nan]), 0.1)


def test_score_noise_matches_the_binomial_standard_error():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=4000)
    p = np.where(rng.random(4000) < 0.75, y, 1 - y)
    acc = np.mean(p == y)
    se = np.sqrt(acc * (1 - acc) / y.size)
    assert score_noise(y, p, n_resamples=2000) == pytest.approx(se, rel=0.1)
    # sentences of 10 identical outcomes: the noise grows about sqrt(10)-fold
    groups = np.repeat(np.arange(400), 10)
    hit = np.repeat(rng.random(400) < 0.75, 10)
    pg = np.where(hit, y, 1 - y)
    noise = score_noise(y, pg, groups, n_resamples=2000)
    assert noise == pytest.approx(np.sqrt(0.75 * 0.25 / 400), rel=0.15)
    assert score_noise(y, y) == 0.0


def test_sentence_control_labels_follow_the_words_and_generalise():
    from sklearn.linear_model import LogisticRegression

    from redundancy.analysis.controls import sentence_control_labels

    rng = np.random.default_rng(5)
    vocab = [f"w{i}" for i in range(60)]
    make = lambda k: [list(rng.choice(vocab, size=rng.integers(3, 9))) for _ in range(k)]  # noqa: E731
    train, test = make(1500), make(500)
    p = np.array([0.5, 0.3, 0.2])
    y_train = sentence_control_labels(train, p)
    assert np.allclose(np.bincount(y_train, minlength=3) / len(train), p, atol=0.01)
    y_test = sentence_control_labels(test, p, reference=train)
    # a function of the bag of words: order does not matter, the seed does
    shuffled = [list(reversed(s)) for s in test]
    np.testing.assert_array_equal(sentence_control_labels(shuffled, p, reference=train), y_test)
    assert (
        np.mean(sentence_control_labels(test, p, reference=train, random_state=1) != y_test) > 0.3
    )
    # and it generalises: a linear probe on word counts beats the majority class on new text
    index = {w: i for i, w in enumerate(vocab)}

    def bag(sents):
        out = np.zeros((len(sents), len(vocab)))
        for r, s in enumerate(sents):
            np.add.at(out[r], [index[w] for w in s], 1.0 / len(s))
        return out

    clf = LogisticRegression(C=100.0, max_iter=2000).fit(bag(train), y_train)
    assert clf.score(bag(test), y_test) > np.mean(y_test == 0) + 0.2
    with pytest.raises(ValueError, match="probability vector"):
        sentence_control_labels(train, [0.5, 0.6])


def test_resample_counts_shared_per_seed_are_the_draws_and_read_only():
    from redundancy.analysis.metrics import _resample_counts

    expected = np.random.default_rng(3).multinomial(50, np.full(50, 1 / 50), size=20)
    first, again = _resample_counts(3, 50, 20), _resample_counts(3, 50, 20)
    assert first is again and np.array_equal(first, expected)
    assert np.array_equal(_resample_counts(np.int64(3), 50, 20), expected)
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0] = 7
    # a generator is not a seed: drawn from it every time, never shared
    gen = np.random.default_rng(3)
    assert np.array_equal(_resample_counts(gen, 50, 20), expected)
    assert not np.array_equal(_resample_counts(gen, 50, 20), expected)
