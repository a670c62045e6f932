"""Activation files (NeuroX HDF5/JSON, safetensors) and activation sets: round trips on files
the tests write, files written by independent minimal writers following NeuroX's documented
layout, and the error cases."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import make_sentence_task, make_token_task

from redundancy.data.base import Task
from redundancy.data.formats import read_word_label
from redundancy.encoders.extract import Activations
from redundancy.encoders.interop import (
    MANIFEST,
    export_activation_set,
    infer_format,
    is_activation_set,
    open_activation_set,
    read_activations,
    read_neurox_hdf5,
    read_neurox_json,
    read_safetensors,
    write_activations,
    write_neurox_hdf5,
    write_neurox_json,
    write_safetensors,
    write_word_label,
)

N_LAYERS, N_HIDDEN = 3, 5


def fake_acts(task: Task, split: str = "train", *, dtype=np.float32, seed=0) -> Activations:
    """Random activations with the right number of rows for a split (one per word or sentence)."""
    sp = task.split(split)
    counts = [len(s) if task.level == "token" else 1 for s in sp.sentences]
    rng = np.random.default_rng(seed)
    acts = rng.standard_normal((sum(counts), N_LAYERS, N_HIDDEN)).astype(dtype)
    acts[0, 0, :] = [1e-9, -3e-7, 123.456789, 0.0, -0.5]  # tiny, large and exact values
    return Activations(
        acts=acts,
        labels=task.encode(split),
        label_names=tuple(task.label_names),
        sentence_index=np.repeat(np.arange(len(counts), dtype=np.int32), counts),
        model="tiny-model",
        task=task.name,
        split=split,
        meta={"level": task.level},
    )


def rows_of(acts: Activations, i: int) -> np.ndarray:
    return np.asarray(acts.acts)[np.asarray(acts.sentence_index) == i]


# ---- independent minimal writers, following NeuroX 1.0.9's documented layout -------------------
def neurox_hdf5(path, sentences, words):
    """``sentences``: list of (n_layers, n_words, n_hidden) arrays; ``words``: their texts."""
    with h5py.File(path, "w") as f:
        for i, block in enumerate(sentences):
            f.create_dataset(str(i), block.shape, dtype="float32", data=block)
        index = f.create_dataset("sentence_to_index", (1,), dtype=h5py.special_dtype(vlen=str))
        index[0] = json.dumps({" ".join(w): str(i) for i, w in enumerate(words)})
    return path


def neurox_json(path, sentences, words):
    with open(path, "w") as fp:
        for i, (block, ws) in enumerate(zip(sentences, words)):
            feats = []
            for k, w in enumerate(ws):
                layers = [
                    {"index": layer, "values": [round(float(x), 8) for x in block[layer, k]]}
                    for layer in range(block.shape[0])
                ]
                feats.append({"token": w, "layers": layers})
            fp.write(json.dumps({"linex_index": i, "features": feats}) + "\n")
    return path


def blocks_for(task, split="train", *, seed=1, extra=None):
    """Per-sentence NeuroX arrays (layers, words, hidden) for a split; ``extra`` adds a word."""
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(task.split(split).sentences):
        n = (len(s) if task.level == "token" else 1) + (1 if i == extra else 0)
        out.append(rng.standard_normal((N_LAYERS, n, N_HIDDEN)).astype(np.float32))
    return out


@pytest.fixture
def task():
    t = make_token_task(6, lengths=[4, 7, 3, 4, 9, 2])
    # plant a repeated sentence: NeuroX's sentence_to_index must keep both
    t.train.sentences[3] = t.train.sentences[0]
    t.train.labels[3] = t.train.labels[0]
    return t


# ---- round trips -----------------------------------------------------------------------------
def test_hdf5_round_trip_is_exact(task, tmp_path):
    ours = fake_acts(task)
    path = write_neurox_hdf5(ours, tmp_path / "a.hdf5", sentences=task.train.sentences)
    back = read_neurox_hdf5(path, task, "train")
    assert back.acts.dtype == np.float32 and back.acts.shape == ours.acts.shape
    np.testing.assert_array_equal(back.acts, ours.acts)
    np.testing.assert_array_equal(back.sentence_index, ours.sentence_index)
    np.testing.assert_array_equal(back.labels, task.encode("train"))
    assert back.label_names == task.label_names
    assert (back.task, back.split, back.model) == (task.name, "train", "a.hdf5")
    assert back.meta["format"] == "neurox-hdf5" and back.meta["n_sentences_in_file"] == 6


def test_hdf5_layout_is_neurox(task, tmp_path):
    ours = fake_acts(task)
    path = write_neurox_hdf5(ours, tmp_path / "a.hdf5", sentences=task.train.sentences)
    with h5py.File(path, "r") as f:
        index = json.loads(f["sentence_to_index"][0])
        assert sorted(k for k in f.keys() if k != "sentence_to_index") == [str(i) for i in range(6)]
        for i in range(6):
            assert f[str(i)].dtype == np.float32
            np.testing.assert_array_equal(f[str(i)][()], rows_of(ours, i).transpose(1, 0, 2))
    first = " ".join(task.train.sentences[0])
    assert list(index.values()) == [str(i) for i in range(6)]  # corpus order
    assert index[first] == "0" and index[f"{first} (Occurrence 2)"] == "3"


def test_json_round_trip_keeps_eight_decimals(task, tmp_path):
    ours = fake_acts(task)
    path = write_neurox_json(ours, tmp_path / "a.json", sentences=task.train.sentences)
    back = read_neurox_json(path, task, "train")
    expected = np.round(ours.acts.astype(np.float64), 8).astype(np.float32)
    np.testing.assert_array_equal(back.acts, expected)
    assert back.acts[0, 0, 0] == 0.0  # 1e-9 is below NeuroX's precision
    np.testing.assert_allclose(back.acts, ours.acts, rtol=1e-6, atol=5e-9)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["linex_index"] for x in lines] == list(range(6))
    assert [f["token"] for f in lines[1]["features"]] == list(task.train.sentences[1])
    assert [layer["index"] for layer in lines[1]["features"][0]["layers"]] == [0, 1, 2]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_safetensors_round_trip_is_bit_equal(task, tmp_path, dtype):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    ours = fake_acts(task, dtype=dtype)
    path = write_safetensors(ours, tmp_path / "a.safetensors", task=task)
    back = read_safetensors(path, task, "train")
    assert isinstance(back.acts, np.memmap) and back.acts.dtype == dtype
    assert back.acts.tobytes() == ours.acts.tobytes()
    assert back.model == "tiny-model"
    # the reference implementation reads our file
    ref = load_file(str(path))
    assert ref["acts"].tobytes() == ours.acts.tobytes()
    np.testing.assert_array_equal(ref["sentence_index"], ours.sentence_index)
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    assert meta["model"] == "tiny-model" and meta["task"] == task.name and meta["split"] == "train"
    assert (meta["n_layers"], meta["n_hidden"]) == (str(N_LAYERS), str(N_HIDDEN))


def test_safetensors_written_by_the_reference_library_is_read(task, tmp_path):
    from safetensors.numpy import save_file

    ours = fake_acts(task)
    path = tmp_path / "ref.safetensors"
    tensors = {"sentence_index": ours.sentence_index.astype(np.int64), "acts": ours.acts}
    save_file(tensors, str(path), metadata={"model": "elsewhere"})
    back = read_activations(path, task, "train")
    np.testing.assert_array_equal(back.acts, ours.acts)
    assert back.model == "elsewhere"


def test_safetensors_refuses_other_text_with_same_counts(task, tmp_path):
    path = write_safetensors(fake_acts(task), tmp_path / "a.safetensors", task=task)
    other = make_token_task(6, lengths=[4, 7, 3, 4, 9, 2], random_state=5)
    with pytest.raises(ValueError, match=r"a\.safetensors was written for other sentences"):
        read_safetensors(path, other, "train")


def test_sentence_task_round_trips_with_one_vector_per_sentence(tmp_path):
    task = make_sentence_task(6)
    ours = fake_acts(task)
    assert ours.n_instances == 6
    for name in ("a.hdf5", "a.json", "a.safetensors"):
        path = write_activations(ours, tmp_path / name, task=task)
        back = read_activations(path, task, "train")
        np.testing.assert_allclose(back.acts, ours.acts, rtol=1e-6, atol=5e-9)
        np.testing.assert_array_equal(back.labels, task.encode("train"))
    lines = (tmp_path / "a.json").read_text().splitlines()
    assert json.loads(lines[0])["features"][0]["token"] == task.train.sentences[0][0]


# ---- files written by the independent NeuroX writer -----------------------------------------
@pytest.mark.parametrize("kind", ["hdf5", "json"])
def test_neurox_file_is_read(task, tmp_path, kind):
    blocks = blocks_for(task)
    writer = neurox_hdf5 if kind == "hdf5" else neurox_json
    path = writer(tmp_path / f"n.{kind}", blocks, task.train.sentences)
    back = read_activations(path, task, "train", out_dir=tmp_path / "out")
    expected = np.concatenate([b.transpose(1, 0, 2) for b in blocks])
    if kind == "json":
        expected = np.round(expected.astype(np.float64), 8).astype(np.float32)
    np.testing.assert_array_equal(back.acts, expected)
    assert isinstance(back.acts, np.memmap)
    assert back.meta["path"] == str(tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["acts.npy"]
    # the rows of sentence 4 are its words, in order
    np.testing.assert_array_equal(rows_of(back, 4)[:, 2], expected[task_rows(task, 4), 2])


def task_rows(task, i):
    starts = np.cumsum([0] + [len(s) for s in task.train.sentences])
    return slice(starts[i], starts[i + 1])


def test_extra_sentences_in_the_file_give_the_first_ones(task, tmp_path):
    blocks = blocks_for(task) + blocks_for(task, seed=9)[:2]
    words = list(task.train.sentences) + list(task.train.sentences[:2])
    back = read_neurox_hdf5(neurox_hdf5(tmp_path / "n.hdf5", blocks, words), task, "train")
    assert back.n_instances == sum(len(s) for s in task.train.sentences)
    assert back.meta["n_sentences_in_file"] == 8
    np.testing.assert_array_equal(rows_of(back, 5), blocks[5].transpose(1, 0, 2))


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["hdf5", "json"])
def test_sub_word_file_is_refused_naming_file_sentence_and_counts(task, tmp_path, kind):
    writer = neurox_hdf5 if kind == "hdf5" else neurox_json
    words = [list(s) for s in task.train.sentences]
    words[4] = words[4] + ["##piece"]
    path = writer(tmp_path / f"sub.{kind}", blocks_for(task, extra=4), words)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"sub\.\w+: sentence 4 .* holds 10 vectors.* has 9 words"):
        read_activations(path, task, "train", out_dir=out)
    assert not out.exists() or not list(out.iterdir())  # no half-written array left behind


def test_sentence_task_refuses_word_vectors(tmp_path):
    task = make_sentence_task(4)
    blocks = [np.zeros((N_LAYERS, 3, N_HIDDEN), np.float32) for _ in range(4)]
    path = neurox_hdf5(tmp_path / "w.hdf5", blocks, [("a", "b", str(i)) for i in range(4)])
    with pytest.raises(ValueError, match=r"sentence 0 .* holds 3 vectors.* has 1 vector"):
        read_neurox_hdf5(path, task, "train")


def test_missing_sentence_is_refused(task, tmp_path):
    blocks = blocks_for(task)
    path = neurox_hdf5(tmp_path / "gap.hdf5", blocks, task.train.sentences)
    with h5py.File(path, "a") as f:
        del f["2"]
    with pytest.raises(ValueError, match=r"gap\.hdf5: sentence 2 is missing \(no dataset '2'\)"):
        read_neurox_hdf5(path, task, "train")
    lines = neurox_json(tmp_path / "gap.json", blocks, task.train.sentences).read_text()
    (tmp_path / "gap.json").write_text("\n".join(lines.splitlines()[:2] + lines.splitlines()[3:]))
    with pytest.raises(ValueError, match=r"gap\.json: sentence 2 is missing .*linex_index 3"):
        read_neurox_json(tmp_path / "gap.json", task, "train")
    short = neurox_json(tmp_path / "short.json", blocks[:5], task.train.sentences[:5])
    with pytest.raises(ValueError, match=r"short\.json: sentence 5 is missing .*ends"):
        read_neurox_json(short, task, "train")
    path = write_safetensors(fake_acts(task), tmp_path / "a.safetensors")
    longer = make_token_task(7, lengths=[4, 7, 3, 4, 9, 2, 5])
    with pytest.raises(ValueError, match=r"a\.safetensors: sentence 6 is missing .*ends"):
        read_safetensors(path, longer, "train")
    with pytest.raises(
        ValueError, match=r"a\.safetensors: sentence 3 .* holds 4 vectors.* has 1 words"
    ):
        read_safetensors(path, make_token_task(6, lengths=[4, 7, 3, 1, 4, 9]), "train")


def test_unknown_format_and_missing_file(task, tmp_path):
    with pytest.raises(ValueError, match=r"'format' parameter of read_activations must be one of"):
        read_activations(tmp_path / "a.hdf5", task, "train", format="pickle")
    with pytest.raises(ValueError, match=r"Cannot tell the format of .*a\.pt"):
        infer_format(tmp_path / "a.pt")
    assert infer_format("x/y.H5") == "neurox-hdf5" and infer_format("y.jsonl") == "neurox-json"
    with pytest.raises(FileNotFoundError, match=r"nothere\.hdf5: no such file"):
        read_activations(tmp_path / "nothere.hdf5", task, "train")
    with pytest.raises(FileNotFoundError, match=r"nothere\.safetensors"):
        read_activations(tmp_path / "nothere.safetensors", task, "train")


def test_files_that_are_not_neurox_are_refused(task, tmp_path):
    with h5py.File(tmp_path / "plain.hdf5", "w") as f:
        f.create_dataset("0", data=np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match=r"plain\.hdf5 has no 'sentence_to_index'"):
        read_neurox_hdf5(tmp_path / "plain.hdf5", task, "train")
    (tmp_path / "text.hdf5").write_text("hello")
    with pytest.raises(ValueError, match=r"text\.hdf5 is not an HDF5 file"):
        read_neurox_hdf5(tmp_path / "text.hdf5", task, "train")
    (tmp_path / "bad.json").write_text('{"linex_index": 0, "features": [{"token": "a"}]}\n')
    with pytest.raises(ValueError, match=r"bad\.json, line 1: expected features"):
        read_neurox_json(tmp_path / "bad.json", task, "train")
    (tmp_path / "x.safetensors").write_bytes(b"\x05" + b"\x00" * 20)
    with pytest.raises(ValueError, match=r"x\.safetensors is not a safetensors file"):
        read_safetensors(tmp_path / "x.safetensors", task, "train")
    with pytest.raises(TypeError, match="'task' parameter of read_neurox_hdf5"):
        read_neurox_hdf5(tmp_path / "plain.hdf5", "pos", "train")
    with pytest.raises(ValueError, match="'split' parameter"):
        read_neurox_hdf5(tmp_path / "plain.hdf5", task, "validation")


def test_write_word_label_round_trips_through_the_reader(task, tmp_path):
    words, labels = write_word_label(task, "train", tmp_path / "train")
    sentences, tags = read_word_label(words, labels)
    assert sentences == list(task.train.sentences) and tags == list(task.train.labels)
    bad = make_token_task(2)
    bad.train.sentences[0] = ("a b",) + bad.train.sentences[0][1:]
    with pytest.raises(ValueError, match="Sentence 0 .* word 'a b'"):
        write_word_label(bad, "train", tmp_path / "bad")


# ---- activation sets -------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["safetensors", "neurox-hdf5", "neurox-json"])
def test_activation_set_round_trip(task, tmp_path, fmt):
    sent = make_sentence_task(6)
    ours = {(task.name, s): fake_acts(task, s, seed=i) for i, s in enumerate(("train", "dev"))}
    ours[(sent.name, "test")] = fake_acts(sent, "test")
    folder = tmp_path / "set"
    aset = export_activation_set(folder, ours, format=fmt, tasks=[task, sent], model="tiny")
    assert is_activation_set(folder) and is_activation_set(folder / MANIFEST)
    again = open_activation_set(folder, cache_dir=tmp_path / "cache")
    assert aset.identity == again.identity
    assert (again.name, again.model, again.n_layers, again.n_hidden) == (
        "tiny-model",
        "tiny",
        N_LAYERS,
        N_HIDDEN,
    )
    assert again.tasks == (task.name, sent.name) and again.splits(task.name) == ("train", "dev")
    for (name, split), acts in ours.items():
        back = again.get(task if name == task.name else sent, split)
        if fmt == "neurox-json":
            expected = np.round(acts.acts.astype(np.float64), 8).astype(np.float32)
            np.testing.assert_array_equal(back.acts, expected)
        else:
            assert back.acts.tobytes() == acts.acts.tobytes()
        assert isinstance(back.acts, np.memmap)
        np.testing.assert_array_equal(back.labels, acts.labels)
        assert back.model == "tiny-model" and back.meta["activation_set"] == str(folder)
    if fmt != "safetensors":
        sentences, _ = read_word_label(
            folder / task.name / "dev.word", folder / task.name / "dev.label"
        )
        assert sentences == list(task.dev.sentences)


def test_converted_neurox_arrays_are_cached_and_verified(task, tmp_path):
    folder, cache = tmp_path / "set", tmp_path / "cache"
    ours = fake_acts(task)
    export_activation_set(folder, {(task.name, "train"): ours}, format="neurox-hdf5")
    aset = open_activation_set(folder, cache_dir=cache)
    first = aset.get(task, "train")
    [npy] = list(cache.rglob("acts.npy"))
    assert Path(first.acts.filename) == npy
    stamp = npy.stat().st_mtime_ns
    second = open_activation_set(folder, cache_dir=cache).get(task, "train")
    assert npy.stat().st_mtime_ns == stamp  # read from the cache, not converted again
    np.testing.assert_array_equal(second.acts, ours.acts)
    # damage the cached array: it is noticed and rebuilt
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF
    npy.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="damaged or stale"):
        third = open_activation_set(folder, cache_dir=cache).get(task, "train")
    np.testing.assert_array_equal(third.acts, ours.acts)  # `first` maps the damaged file


def test_hand_written_manifest_and_identity(task, tmp_path):
    folder = tmp_path / "bert"
    (folder / "pos").mkdir(parents=True)
    blocks = blocks_for(task)
    neurox_hdf5(folder / "pos" / "train.hdf5", blocks, task.train.sentences)
    neurox_json(folder / "dev.json", blocks_for(task, "dev"), task.dev.sentences)
    manifest = {
        "name": "BERT via NeuroX",
        "n_layers": N_LAYERS,
        "n_hidden": N_HIDDEN,
        "embedding_layer": False,
        "activations": {task.name: {"train": "pos/train.hdf5", "dev": {"file": "dev.json"}}},
    }
    (folder / MANIFEST).write_text(yaml.safe_dump(manifest))
    aset = open_activation_set(folder, cache_dir=tmp_path / "cache")
    assert aset.files[task.name]["dev"][1] == "neurox-json" and not aset.embedding_layer
    acts = aset.get(task, "train")
    assert acts.model == "BERT via NeuroX" and acts.meta["embedding_layer"] is False
    np.testing.assert_array_equal(rows_of(acts, 1), blocks[1].transpose(1, 0, 2))
    before = aset.identity
    neurox_hdf5(folder / "pos" / "train.hdf5", blocks_for(task, seed=3), task.train.sentences)
    assert open_activation_set(folder).identity != before
    with pytest.raises(
        ValueError,
        match=r"no activations for task .*'test'.* holds: tiny-pos/dev, tiny-pos/train\.$",
    ):
        aset.get(task, "test")


def write_manifest(folder, **changes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.hdf5").touch()
    doc = {"n_layers": 3, "n_hidden": 5, "activations": {"pos": {"train": "a.hdf5"}}}
    doc.update(changes)
    (folder / MANIFEST).write_text(yaml.safe_dump(doc))
    return folder


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"layers": 3}, ValueError, r"unknown key\(s\) 'layers'"),
        ({"n_layers": 0}, ValueError, r"'n_layers' must be a positive int. Got 0"),
        ({"version": 2}, ValueError, r"'version' must be 1"),
        (
            {"activations": {"pos": {"train": {"file": "a.hdf5", "format": "pickle"}}}},
            ValueError,
            r"'activations.pos.train.format' must be one of .*Got 'pickle'",
        ),
        ({"activations": {"pos": {"train": "a.pt"}}}, ValueError, r"Cannot tell the format"),
        ({"activations": {"pos": {"valid": "a.hdf5"}}}, ValueError, r"'activations.pos'"),
        (
            {"activations": {"pos": {"train": "gone.hdf5"}}},
            FileNotFoundError,
            r"activations.pos.train names .*gone\.hdf5, which does not exist",
        ),
    ],
)
def test_bad_manifests_are_refused_naming_the_file(tmp_path, changes, error, match):
    folder = write_manifest(tmp_path / "set", **changes)
    with pytest.raises(error, match=match) as info:
        open_activation_set(folder)
    assert str(folder / MANIFEST) in str(info.value)


def test_layer_layout_mismatch_and_non_sets(task, tmp_path):
    export_activation_set(tmp_path / "s", {(task.name, "train"): fake_acts(task)})
    doc = yaml.safe_load((tmp_path / "s" / MANIFEST).read_text())
    doc["n_hidden"] = 768
    (tmp_path / "s" / MANIFEST).write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match=r"train\.safetensors: expected 3 layers of 768 values"):
        open_activation_set(tmp_path / "s").get(task, "train")
    assert not is_activation_set(tmp_path / "nowhere")
    assert not is_activation_set("minilm")
    assert not is_activation_set(tmp_path / "s" / "tiny-pos" / "train.safetensors")
    with pytest.raises(FileNotFoundError, match="activations.yaml: no such file"):
        open_activation_set(tmp_path)


def test_export_refuses_mixed_layouts(task, tmp_path):
    a = fake_acts(task)
    b = fake_acts(task, "dev")
    b.acts = b.acts[:, :2]
    with pytest.raises(ValueError, match="share one layer layout"):
        export_activation_set(tmp_path, {(task.name, "train"): a, (task.name, "dev"): b})


# ---- NeuroX itself, when installed (make bench) ----------------------------------------------
@pytest.mark.parametrize("fmt", ["hdf5", "json"])
def test_neurox_loader_reads_our_files(task, tmp_path, fmt):
    loader = pytest.importorskip("neurox.data.loader")
    ours = fake_acts(task)
    path = write_activations(ours, tmp_path / f"a.{fmt}", task=task)
    sentences, n_layers = loader.load_activations(str(path))
    assert n_layers == N_LAYERS and len(sentences) == 6
    for i, got in enumerate(sentences):
        flat = rows_of(ours, i).reshape(-1, N_LAYERS * N_HIDDEN)
        np.testing.assert_allclose(np.asarray(got), flat, rtol=1e-6, atol=5e-9)
        if fmt == "hdf5":
            np.testing.assert_array_equal(np.asarray(got), flat)


def test_neurox_extractor_output_matches_our_extract(request, tmp_path):
    """NeuroX 1.0.9's own extractor, run on the corpus we write, gives files our reader turns
    into the activations :func:`extract` computes (same model, last-piece aggregation)."""
    extractor = pytest.importorskip("neurox.data.extraction.transformers_extractor")
    from redundancy.encoders.extract import extract

    tiny_bert = request.getfixturevalue("tiny_bert")  # built only when NeuroX is there

    task = make_token_task(6)
    words, _ = write_word_label(task, "train", tmp_path / "train")
    ours = extract(
        tiny_bert, task, "train", aggregation="last", cache_dir=tmp_path / "cache", progress=False
    )
    for fmt in ("hdf5", "json"):
        path = tmp_path / f"neurox.{fmt}"
        extractor.extract_representations(tiny_bert, str(words), str(path), aggregation="last")
        theirs = read_activations(path, task, "train")
        assert theirs.acts.shape == ours.acts.shape
        np.testing.assert_allclose(theirs.acts, ours.acts, atol=1e-5)


def test_neurox_load_data_reads_an_exported_set(task, tmp_path):
    """NeuroX pairs our activations with our .word/.label files word for word."""
    loader = pytest.importorskip("neurox.data.loader")
    ours = fake_acts(task)
    export_activation_set(
        tmp_path, {(task.name, "train"): ours}, format="neurox-hdf5", tasks=[task]
    )
    stem = tmp_path / task.name / "train"
    activations, _ = loader.load_activations(f"{stem}.hdf5")
    tokens = loader.load_data(f"{stem}.word", f"{stem}.label", activations, 512)
    assert tokens["source"] == [list(s) for s in task.train.sentences]
    assert tokens["target"] == [list(y) for y in task.train.labels]
    np.testing.assert_array_equal(np.concatenate(activations), ours.X)


def test_writers_refuse_what_readers_cannot_take(task, tmp_path):
    ours = fake_acts(task)
    with pytest.raises(ValueError, match=r"a\.h5: NeuroX reads HDF5 activations from files ending"):
        write_neurox_hdf5(ours, tmp_path / "a.h5")
    with pytest.raises(ValueError, match=r"a\.jsonl: NeuroX reads JSON activations"):
        write_neurox_json(ours, tmp_path / "a.jsonl")
    with pytest.raises(ValueError, match="Sentence 0 has 4 vectors but 3 words"):
        write_neurox_json(ours, tmp_path / "a.json", sentences=[("a", "b", "c")] * 6)
    wide = fake_acts(task, dtype=np.float64)
    with pytest.raises(ValueError, match="Got dtype float64"):
        write_safetensors(wide, tmp_path / "a.safetensors")
    assert not list(tmp_path.iterdir())  # nothing half-written


# ---- files that are damaged, or hold other sentences: the library's own error ----------------
def other_text(task):
    """The same word counts as ``task`` (same lengths), other words."""
    other = make_token_task(6, lengths=[4, 7, 3, 4, 9, 2], random_state=5)
    assert [len(s) for s in other.train.sentences] == [len(s) for s in task.train.sentences]
    assert other.train.sentences[1] != task.train.sentences[1]
    return other


@pytest.mark.parametrize("kind", ["hdf5", "json"])
def test_neurox_file_of_other_sentences_with_same_counts_is_refused(task, tmp_path, kind):
    other = other_text(task)
    writer = neurox_hdf5 if kind == "hdf5" else neurox_json
    path = writer(tmp_path / f"a.{kind}", blocks_for(task), other.train.sentences)
    with pytest.raises(ValueError, match=rf"a\.{kind}: sentence 0 \(line 1 of the corpus\) is"):
        read_activations(path, task, "train")
    # the same file with the task's own text is read (the check compares text, not counts)
    good = writer(tmp_path / f"b.{kind}", blocks_for(task), task.train.sentences)
    assert read_activations(good, task, "train").acts.shape[0] == 29


def test_files_written_without_text_are_still_read(task, tmp_path):
    # write_neurox_* without sentences store placeholders ("sentence 0", "w0 w1"): nothing to compare
    ours = fake_acts(task)
    for path in (
        write_neurox_hdf5(ours, tmp_path / "a.hdf5"),
        write_neurox_json(ours, tmp_path / "a.json"),
    ):
        np.testing.assert_allclose(read_activations(path, task, "train").acts, ours.acts, atol=1e-8)


def test_hdf5_with_a_damaged_header_is_refused_naming_the_file(task, tmp_path):
    path = neurox_hdf5(tmp_path / "a.hdf5", blocks_for(task), task.train.sentences)
    data = bytearray(path.read_bytes())
    # the superblock is intact, the root group's header after it is not: h5py opens the file,
    # then raises RuntimeError ("addr undefined") at the first lookup
    data[128:192] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"a\.hdf5 is damaged \(RuntimeError: .*re-export it"):
        read_neurox_hdf5(path, task, "train")


def test_hdf5_whose_object_lookup_fails_is_refused(task, tmp_path, monkeypatch):
    # h5py raises KeyError/RuntimeError from a damaged symbol table while looking up a name
    import h5py

    path = neurox_hdf5(tmp_path / "a.hdf5", blocks_for(task), task.train.sentences)
    real = h5py.Group.__getitem__

    def broken(self, name):
        if name == "3":
            raise KeyError("Unable to synchronously open object (bad symbol table node signature)")
        return real(self, name)

    monkeypatch.setattr(h5py.Group, "__getitem__", broken)
    with pytest.raises(ValueError, match=r"a\.hdf5 is damaged \(KeyError: .*symbol table"):
        read_neurox_hdf5(path, task, "train")


def test_hdf5_sentence_stored_as_a_group_is_refused(task, tmp_path):
    path = neurox_hdf5(tmp_path / "a.hdf5", blocks_for(task), task.train.sentences)
    with h5py.File(path, "a") as f:
        del f["2"]
        f.create_group("2").create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match=r"a\.hdf5: sentence 2 is a Group, not a dataset"):
        read_neurox_hdf5(path, task, "train")


def test_hdf5_index_that_is_not_json_is_refused(task, tmp_path):
    path = neurox_hdf5(tmp_path / "a.hdf5", blocks_for(task), task.train.sentences)
    with h5py.File(path, "a") as f:
        f["sentence_to_index"][0] = "not json {"
    with pytest.raises(ValueError, match=r"'sentence_to_index' is not a JSON object"):
        read_neurox_hdf5(path, task, "train")


def test_json_with_latin1_bytes_is_refused_naming_the_line(task, tmp_path):
    path = neurox_json(tmp_path / "a.json", blocks_for(task), task.train.sentences)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"token": "', b'"token": "caf\xe9', 1)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=r"a\.json, line 3: not UTF-8 text .*b'\\xe9'"):
        read_neurox_json(path, task, "train")


@pytest.mark.parametrize("bad", [None, [None, 1.0, 2.0, 3.0, 4.0], [float("nan")] * 5])
def test_json_null_or_nan_activations_are_refused(task, tmp_path, bad):
    path = neurox_json(tmp_path / "a.json", blocks_for(task), task.train.sentences)
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["features"][2]["layers"][1]["values"] = bad
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"a\.json, line 2: token 2"):
        read_neurox_json(path, task, "train")


def test_manifest_with_latin1_bytes_is_refused_naming_the_line(task, tmp_path):
    export_activation_set(tmp_path, {(task.name, "train"): fake_acts(task)}, tasks=[task])
    manifest = tmp_path / MANIFEST
    manifest.write_bytes(manifest.read_bytes() + b"description: caf\xe9\n")
    n_lines = manifest.read_bytes().count(b"\n")
    with pytest.raises(ValueError, match=rf"activations\.yaml, line {n_lines}: .* must be UTF-8"):
        open_activation_set(tmp_path)


def test_manifest_with_a_duplicated_key_is_refused(task, tmp_path):
    export_activation_set(tmp_path, {(task.name, "train"): fake_acts(task)}, tasks=[task])
    manifest = tmp_path / MANIFEST
    manifest.write_text(manifest.read_text() + "n_hidden: 7\n")
    with pytest.raises(ValueError, match=r"'n_hidden' appears twice, on line \d+ and on line \d+"):
        open_activation_set(tmp_path)


def test_exporting_a_second_task_into_a_folder_keeps_the_first(task, tmp_path):
    sentence = make_sentence_task(6)
    export_activation_set(tmp_path, {(task.name, "train"): fake_acts(task)}, tasks=[task], name="m")
    aset = export_activation_set(
        tmp_path,
        {(sentence.name, s): fake_acts(sentence, s) for s in ("train", "dev")},
        tasks=[sentence],
    )
    assert aset.name == "m"
    assert {t: aset.splits(t) for t in aset.tasks} == {
        task.name: ("train",),
        sentence.name: ("train", "dev"),
    }
    np.testing.assert_array_equal(aset.get(task, "train").acts, fake_acts(task).acts)
    # the same task and split again replaces its entry; another layout is refused
    again = export_activation_set(
        tmp_path, {(task.name, "train"): fake_acts(task, seed=3)}, tasks=[task]
    )
    np.testing.assert_array_equal(again.get(task, "train").acts, fake_acts(task, seed=3).acts)
    narrow = fake_acts(task)
    narrow.acts = narrow.acts[:, :, :2]
    with pytest.raises(ValueError, match=r"already describes activations of 3 layers x 5 values"):
        export_activation_set(tmp_path, {(task.name, "dev"): narrow})


def test_sentence_task_json_labelled_by_a_special_token_is_read(tmp_path):
    task = make_sentence_task(6)
    blocks = blocks_for(task)
    path = neurox_json(tmp_path / "a.json", blocks, [["[CLS]"]] * 6)
    assert read_neurox_json(path, task, "train").acts.shape == (6, N_LAYERS, N_HIDDEN)
    # the text of another sentence is refused
    texts = [[" ".join(s)] for s in task.train.sentences]
    texts[2] = ["a different sentence entirely"]
    with pytest.raises(ValueError, match=r"sentence 2 .* is 'a different sentence entirely'"):
        read_neurox_json(neurox_json(tmp_path / "b.json", blocks, texts), task, "train")
