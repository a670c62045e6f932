"""The result cache never lies: keys follow the code, damaged entries are rebuilt, concurrent
builders build once, a moved library gives the same keys."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import redundancy._utils as utils
from redundancy.report import cache


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("REDUNDANCY_RECOMPUTE_SINCE", raising=False)


def _counter():
    calls = []

    def compute():
        calls.append(1)
        return {"value": np.float32(0.5), "n": np.int64(3), "arr": np.arange(2), "ok": np.bool_(1)}

    return calls, compute


CODE = "redundancy.report.steps.neurons"


def test_computes_once_and_recomputes_on_new_inputs(tmp_path):
    calls, compute = _counter()
    first = cache.cached("t", {"x": 1}, compute, code=CODE)
    second = cache.cached("t", {"x": 1}, compute, code=CODE)
    assert first == second == {"value": 0.5, "n": 3, "arr": [0, 1], "ok": True}
    assert len(calls) == 1
    cache.cached("t", {"x": 2}, compute, code=CODE)
    assert len(calls) == 2
    (path,) = (tmp_path / "cache" / "results" / "t").glob(
        f"{cache.result_key('t', {'x': 1}, CODE)}.json"
    )
    envelope = json.loads(path.read_text())
    assert envelope["inputs"] == {"x": 1} and envelope["kind"] == "json"


def test_tables_and_arrays_round_trip():
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.25, 0.5]})
    df.attrs["metric"] = "accuracy"
    out = cache.cached("tab", {}, lambda: df, code=CODE, kind="table")
    again = cache.cached("tab", {}, lambda: pytest.fail("cached"), code=CODE, kind="table")
    pd.testing.assert_frame_equal(out, again)
    assert list(again["b"]) == ["x", "y"] and again.attrs["metric"] == "accuracy"
    sim = np.random.default_rng(0).random((3, 3))
    arr = cache.cached("arr", {}, lambda: {"sim": sim}, code=CODE, kind="arrays")
    back = cache.cached("arr", {}, lambda: pytest.fail("cached"), code=CODE, kind="arrays")
    np.testing.assert_array_equal(arr["sim"], back["sim"])


def _path(step, inputs, suffix=".json"):
    key = cache.result_key(step, inputs, CODE)
    return utils.cache_dir("results") / step / f"{key}{suffix}"


@pytest.mark.parametrize(
    "damage", ["truncated-npz", "flipped-npz", "missing-npz", "bad-json", "other-key", "no-payload"]
)
def test_damaged_arrays_are_rebuilt_with_a_warning_naming_the_file(damage):
    sim = np.arange(12.0).reshape(3, 4)
    cache.cached("arr", {"d": 1}, lambda: {"sim": sim}, code=CODE, kind="arrays")
    npz, env = _path("arr", {"d": 1}, ".npz"), _path("arr", {"d": 1})
    if damage == "truncated-npz":
        npz.write_bytes(npz.read_bytes()[:-40])
    elif damage == "flipped-npz":
        raw = bytearray(npz.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        npz.write_bytes(bytes(raw))
    elif damage == "missing-npz":
        npz.unlink()
    elif damage == "bad-json":
        env.write_text(env.read_text()[:20])
    elif damage == "other-key":
        data = json.loads(env.read_text())
        data["key"] = "0" * 20
        env.write_text(json.dumps(data))
    else:
        data = json.loads(env.read_text())
        del data["payload"]
        env.write_text(json.dumps(data))
    calls = []
    with pytest.warns(UserWarning, match=f"Cached result {env}"):
        out = cache.cached(
            "arr", {"d": 1}, lambda: calls.append(1) or {"sim": sim}, code=CODE, kind="arrays"
        )
    assert calls == [1]
    np.testing.assert_array_equal(out["sim"], sim)


def test_a_table_that_fails_its_check_is_rebuilt():
    good = pd.DataFrame({"threshold": [0.3], "dev": [0.9]})
    check = cache.check_table("threshold", "dev")
    cache.cached("t", {}, lambda: good, code=CODE, kind="table", check=check)
    env = _path("t", {})
    data = json.loads(env.read_text())
    data["payload"]["rows"] = []  # valid JSON with an empty table, sealed as if written so
    data["sha256"] = cache._payload_digest(data["payload"])
    env.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="damaged.*0 rows"):
        out = cache.cached("t", {}, lambda: good, code=CODE, kind="table", check=check)
    pd.testing.assert_frame_equal(out, good)


def test_recompute_since_recomputes_each_result_once(monkeypatch):
    calls, compute = _counter()
    cache.cached("t", {}, compute, code=CODE)
    cache.recompute_from_now()
    time.sleep(0.01)
    cache.cached("t", {}, compute, code=CODE)
    cache.cached("t", {}, compute, code=CODE)  # written after the moment: kept
    assert len(calls) == 2


def _copy_package(tmp_path) -> Path:
    target = tmp_path / "elsewhere" / "redundancy"
    shutil.copytree(utils.PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _digest_in(package: Path, monkeypatch, module: str) -> str:
    monkeypatch.setattr(utils, "PACKAGE_DIR", package)
    utils.source_digest.cache_clear()
    utils.module_closure.cache_clear()
    try:
        return utils.source_digest(module)
    finally:
        monkeypatch.undo()
        utils.source_digest.cache_clear()
        utils.module_closure.cache_clear()


def test_the_key_follows_the_code_of_the_step_and_what_it_imports(tmp_path, monkeypatch):
    original = utils.source_digest(CODE)
    copy = _copy_package(tmp_path)
    # a moved library (another clone, a rebuilt .venv) has the same digest
    assert _digest_in(copy, monkeypatch, CODE) == original
    # a changed step body changes it
    steps = copy / "report" / "steps" / "neurons.py"
    text = steps.read_text()
    steps.write_text(
        text.replace(
            '"fraction_redundant": float(row["fraction_redundant"])',
            '"fraction_redundant": 2 * float(row["fraction_redundant"])',
        )
    )
    assert steps.read_text() != text
    assert _digest_in(copy, monkeypatch, CODE) != original
    steps.write_text(text)
    # so does a library function the step calls (through its imports) ...
    clustering = copy / "analysis" / "clustering.py"
    clustering.write_text(clustering.read_text() + "\n# changed\n")
    assert _digest_in(copy, monkeypatch, CODE) != original
    shutil.copy(utils.PACKAGE_DIR / "analysis" / "clustering.py", clustering)
    # ... but not a module the step never imports (the figures)
    plots = copy / "report" / "plots.py"
    plots.write_text(plots.read_text() + "\n# changed\n")
    assert _digest_in(copy, monkeypatch, CODE) == original
    assert "redundancy.report.plots" not in utils.module_closure(CODE)
    assert "redundancy.analysis.clustering" in utils.module_closure(CODE)
    assert "redundancy.encoders.extract" in utils.module_closure(CODE)


def _build(args):
    root, marker = args
    import os

    os.environ["REDUNDANCY_CACHE"] = root
    from redundancy.report import cache as c

    def compute():
        with open(marker, "a") as f:
            f.write("x")
        time.sleep(0.5)
        return {"done": True}

    return c.cached("race", {}, compute, code=CODE)


def test_two_processes_build_one_entry_once(tmp_path):
    root = str(tmp_path / "shared")
    marker = tmp_path / "computed.txt"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_build, [(root, str(marker))] * 2)
    assert results == [{"done": True}] * 2
    assert marker.read_text() == "x"
