"""Tests of redundancy.encoders.finetune on a tiny random BERT and a planted sentence task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_sentence_task, make_token_task
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from redundancy.encoders.extract import extract
from redundancy.encoders.finetune import finetune


@torch.inference_mode()
def _train_loss(folder, task, seed=42):
    """Mean cross-entropy of a classifier on the training split (eval mode, one batch)."""
    torch.manual_seed(seed)
    # one output per training label (the unseen placeholder gets none)
    net = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=task.n_classes - 1)
    net.eval()
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok([s[0] for s in task.train.sentences], padding=True, return_tensors="pt")
    y = torch.as_tensor(task.encode("train"))
    return float(net(**enc, labels=y).loss)


def test_finetune_learns_planted_task_and_is_reused(tiny_bert, tmp_path):
    task = make_sentence_task(32)  # label "pos" iff the sentence contains "cat"
    kwargs = dict(lr=1e-3, epochs=20, batch_size=8, cache_dir=tmp_path, progress=False)
    folder = finetune(tiny_bert, task, **kwargs)
    record = json.loads((folder / "finetune.json").read_text())
    assert record["n_train"] == 32 and len(record["losses"]) == 80
    assert AutoConfig.from_pretrained(folder).num_labels == 2  # "neg", "pos"
    assert np.mean(record["losses"][-4:]) < np.mean(record["losses"][:4]) - 0.1
    # the saved classifier fits the training set better than the untrained head did
    assert _train_loss(folder, task) < _train_loss(tiny_bert, task) - 0.05
    # second call: same folder, no training (the file is not rewritten)
    mtime = (folder / "finetune.json").stat().st_mtime_ns
    assert finetune(tiny_bert, task, **kwargs) == folder
    assert (folder / "finetune.json").stat().st_mtime_ns == mtime
    # another hyper-parameter -> another folder
    other = finetune(tiny_bert, task, **{**kwargs, "epochs": 1, "max_train_sentences": 5})
    assert other != folder and json.loads((other / "finetune.json").read_text())["n_train"] == 5
    # the folder works as a model for extract: the encoder's hidden states
    acts = extract(str(folder), task, cache_dir=tmp_path / "acts", progress=False)
    base = extract(tiny_bert, task, cache_dir=tmp_path / "acts", progress=False)
    assert acts.acts.shape == base.acts.shape == (32, 3, 32)
    assert not np.allclose(acts.acts[:, -1], base.acts[:, -1])


def test_finetune_regression_and_pairs(tiny_bert, tmp_path):
    task = make_sentence_task(6, pairs=True, regression=True)
    folder = finetune(tiny_bert, task, epochs=1, batch_size=3, cache_dir=tmp_path, progress=False)
    config = AutoConfig.from_pretrained(folder)
    assert config.num_labels == 1 and config.problem_type == "regression"
    assert all(np.isfinite(json.loads((folder / "finetune.json").read_text())["losses"]))


def test_finetune_rejects_token_tasks_and_bad_values(tiny_bert, tmp_path):
    with pytest.raises(ValueError, match="sentence-level Task"):
        finetune(tiny_bert, make_token_task(2), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="'epochs' parameter of finetune"):
        finetune(tiny_bert, make_sentence_task(2), epochs=0, cache_dir=tmp_path)


def test_optimiser_is_adamw_without_decay_and_linear_schedule():
    """The fused update equals torch's per-tensor AdamW loop (lr 5e-5, no weight decay) to
    float32 rounding, and the learning rate falls linearly to 0 without warm-up."""
    from redundancy.encoders.finetune import _optimiser

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 3))
    ref = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Linear(7, 3))
    ref.load_state_dict(net.state_dict())
    start = [p.detach().clone() for p in net.parameters()]
    optimizer, scheduler = _optimiser(net, {"lr": 5e-5}, total=4)
    assert optimizer.defaults["fused"] and optimizer.defaults["weight_decay"] == 0.0
    plain = torch.optim.AdamW(ref.parameters(), lr=5e-5, eps=1e-8, weight_decay=0.0, foreach=False)
    x = torch.randn(16, 5)
    lrs = []
    for _ in range(4):
        for model, opt in ((net, optimizer), (ref, plain)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
        lrs.append(optimizer.param_groups[0]["lr"])
        for group in plain.param_groups:
            group["lr"] = lrs[-1]
        optimizer.step(), plain.step(), scheduler.step()
    assert lrs == pytest.approx([5e-5, 3.75e-5, 2.5e-5, 1.25e-5])
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    # Adam moves every weight by about lr per step: 1.25e-4 over the four steps
    moved = max(
        float((p.detach() - s).abs().max()) for p, s in zip(net.parameters(), start, strict=True)
    )
    assert 1e-4 < moved < 1.6e-4
