"""Smoke tests of the benchmark harness (benchmarks/run.py) on tiny sizes; no timing checks."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

RUN_PY = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmarks_run"] = module
    spec.loader.exec_module(module)
    return module


def _neurox_ready() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("neurox", "imblearn", "h5py"))


def test_same_partition_ignores_label_names(bench):
    a = np.array([3, 3, 1, 2, 1])
    assert bench._same_partition(a, np.array([0, 0, 7, 5, 7]))
    assert not bench._same_partition(a, np.array([0, 0, 7, 7, 7]))
    assert not bench._same_partition(a, a[:4])


def test_cluster_data_plants_the_clusters_found_at_threshold(bench):
    X, planted = bench.make_cluster_data(3000, 60, random_state=1)
    assert X.dtype == np.float32 and X.shape == (3000, 60)
    corr = np.corrcoef(X.T)
    dist = 1 - np.abs(corr)
    np.fill_diagonal(dist, 0)
    labels = fcluster(linkage(squareform(dist, checks=False), "average"), 0.3, "distance")
    assert bench._same_partition(labels, planted)
    assert 1 < planted.max() + 1 < 60  # both groups and singletons exist


def test_probe_data_follows_the_planted_rule(bench):
    X, y, rule = bench.make_probe_data(4000, 4, 16, random_state=3)
    assert X.shape == (4000, 64) and X.dtype == np.float32 and y.dtype == np.int64
    noiseless = (X[:, rule["support"]] @ rule["weights"] > 0).astype(np.int64)
    assert np.mean(noiseless == y) > 0.8
    assert 0.3 < y.mean() < 0.7
    # layers are mixed like a residual stream: neighbouring layers correlate at ~0.7
    rho = np.corrcoef(X[:, 16], X[:, 32])[0, 1]
    assert 0.6 < rho < 0.8


def test_sentences_are_tagged_and_reproducible(bench):
    a = bench.make_sentences(20, random_state=5)
    assert a == bench.make_sentences(20, random_state=5)
    assert all(len(words) == len(tags) >= 5 for words, tags in a)
    assert all(" " not in w for words, _ in a for w in words)


def test_unknown_case_is_rejected(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--cases", "probe-oracle,fast-food"])
    assert "fast-food" in capsys.readouterr().err


@pytest.mark.skipif(not _neurox_ready(), reason="needs neurox==1.0.9, imbalanced-learn, h5py")
def test_quick_run_writes_results_and_table(bench, tmp_path, capsys):
    out = tmp_path / "results.json"
    rc = bench.main(["--quick", "--output", str(out)])
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert rc == 0, printed
    assert set(results["cases"]) == set(bench.CASES)
    for case, res in results["cases"].items():
        assert res["neurox_s"] > 0 and case in printed
        if res.get("ours_s") is not None:
            assert res["speedup"] == pytest.approx(res["neurox_s"] / res["ours_s"])
    clus = results["cases"]["clustering"]
    assert clus["neurox_ari_vs_planted"] == 1.0
    if "identical_partition" in clus:
        assert clus["identical_partition"] and clus["adjusted_rand"] == 1.0
    ext = results["cases"]["extraction"]
    if ext.get("max_abs_diff") is not None:
        assert ext["shape"] == ext["neurox_shape"]
        assert ext["max_abs_diff"] < 1e-3
