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


def test_multiclass_data_follows_the_planted_rule(bench):
    X, y, rule = bench.make_multiclass_probe_data(20000, 4, 16, 8, random_state=2)
    assert X.shape == (20000, 64) and X.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(np.bincount(y, minlength=8) / 20000, rule["prior"], atol=0.01)
    assert rule["prior"][0] > 4 * rule["prior"][-1]  # Zipf-like, some classes rare
    # The class mean is written into the fresh noise of its neurons, then mixed like the
    # noise (x_l = 0.7 x_(l-1) + 0.71 e_l): the conditional means follow that recursion.
    S = rule["support"]
    assert S.min() >= 16 and S.max() < 48  # middle layers
    fresh = np.sqrt(1 - 0.7**2)
    for c in (0, 1):
        expected = np.zeros(64)
        expected[S] = rule["means"][c]
        expected = expected.reshape(4, 16)
        for layer in range(1, 4):
            expected[layer] = fresh * expected[layer] + 0.7 * expected[layer - 1]
        got = X[y == c].mean(axis=0)
        np.testing.assert_allclose(got, expected.ravel(), atol=0.12)
    rho = np.corrcoef(X[:, 0], X[:, 16])[0, 1]  # the same layered mixing as the binary data
    assert 0.6 < rho < 0.8


def test_flop_count_counts_distinct_probes_once(bench):
    from redundancy.analysis import probes

    subsets = bench._layer_and_incremental_subsets(13, 768, probes)
    assert len(subsets) == 25 and "layers 0-12" in subsets and "layers 0-0" not in subsets
    # 13 layers alone + layers 0..l for l = 1..12 = 13 + (2 + ... + 13) = 103 layer blocks
    assert bench._distinct_weights(subsets, 13 * 768, 150) == 150 * 768 * 103
    assert bench._distinct_weights({"a": slice(0, 4), "b": [0, 1, 2, 3]}, 8, 2) == 8


def test_precision_variants_compare_against_float32(bench, tmp_path):
    from redundancy.analysis import probes

    X, y, _ = bench.make_multiclass_probe_data(1500, 3, 8, 5, random_state=4)
    subsets = bench._layer_and_incremental_subsets(3, 8, probes)
    out = bench.compare_precisions(
        (X[:1000], y[:1000]), (X[1000:], y[1000:]), subsets, 5, 1, 0, 1, str(tmp_path)
    )
    assert list(out) == list(bench.PRECISIONS)
    assert out["float32"]["max_gap"] == 0.0
    for name, res in out.items():
        assert (res["storage"], res["compute"], res["seed"]) == bench.PRECISIONS[name]
        assert set(res["accuracies"]) == set(subsets)
        gaps = [abs(res["accuracies"][k] - out["float32"]["accuracies"][k]) for k in subsets]
        assert res["max_gap"] == pytest.approx(max(gaps))
    assert out[bench.SEED_VARIANT]["max_gap"] > 0  # another start, other probes
    row = bench._variant_rows("case", {"variants": out, "score": "acc"})
    assert len(row) == 5 and "[storage-float16]" in row[2] and row[4].endswith("reference |")
    summary = bench._gap_summary(out)
    assert summary["seed_gap"] == out[bench.SEED_VARIANT]["max_gap"]
    assert summary["max_accuracy_gap"] == max(out[k]["max_gap"] for k in list(out)[:4])


def test_update_merges_into_earlier_results(bench, tmp_path):
    out = tmp_path / "results.json"
    earlier = json.loads((RUN_PY.parent / "results.json").read_text())["cases"]["clustering"]
    out.write_text(json.dumps({"quick": False, "cases": {"clustering": earlier}}))
    rc = bench.main(["--quick", "--cases", "probe-threads", "--update", "--output", str(out)])
    merged = json.loads(out.read_text())
    assert rc == 0
    assert merged["cases"]["clustering"] == earlier  # kept
    rows = merged["cases"]["probe-threads"]["rows"]
    assert {(r["threads"], r["one_core_busy"]) for r in rows} >= {(1, False), (1, True)}
    assert merged["updated"]["cases"] == ["probe-threads"] and merged["quick"] is False


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
    many = results["cases"]["probe-many-classes"]
    assert many["neurox_scaled"] and many["neurox_s"] == pytest.approx(
        many["neurox_measured_s"] * many["neurox_scale_factor"]
    )
    assert set(many["variants"]) == set(bench.PRECISIONS)
    peak = many["matmul_peak_gflop_s"]
    for dtype in ("float32", "bfloat16"):
        assert peak[dtype] == max(v for k, v in peak.items() if k.startswith(dtype + "_")) > 0
    for variant in many["variants"].values():
        assert variant["gflop_s"] == pytest.approx(many["flop"] / variant["seconds"] / 1e9)
    assert "[compute-bfloat16]" in printed
    clus = results["cases"]["clustering"]
    assert clus["neurox_ari_vs_planted"] == 1.0
    if "identical_partition" in clus:
        assert clus["identical_partition"] and clus["adjusted_rand"] == 1.0
    ext = results["cases"]["extraction"]
    if ext.get("max_abs_diff") is not None:
        assert ext["shape"] == ext["neurox_shape"]
        assert ext["max_abs_diff"] < 1e-3


def test_book_run_attributes_memory_to_chapters_in_the_order_they_ran():
    """The runner's timings file may list chapters out of order (keys kept from an earlier
    run); samples are attributed by running order, which is the chapters' name order."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "book_run.py"
    spec = importlib.util.spec_from_file_location("benchmarks_book_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    timings = {  # as a timings.json rewritten over an older one can hold them
        "08-removal": {"seconds": 10.0, "status": "executed"},
        "01-setup": {"seconds": 100.0, "status": "executed"},
        "02-layers-cka": {"seconds": 20.0, "status": "executed"},
    }
    # 01 runs 0-100 s at 2 GiB, 02 100-120 s at 1 GiB, 08 120-130 s at 3 GiB (KiB values)
    samples = [(t, {"kernel": 2 * 2**20}) for t in range(0, 100, 5)]
    samples += [(t, {"kernel": 2**20}) for t in range(101, 120, 5)]
    samples += [(t, {"kernel": 3 * 2**20}) for t in range(122, 130, 2)]
    rows = module.per_chapter({"timings": timings, "samples": samples})
    assert [r["chapter"] for r in rows] == ["01-setup", "02-layers-cka", "08-removal"]
    assert [r["peak_private_gib"] for r in rows] == [2.0, 1.0, 3.0]
