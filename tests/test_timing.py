"""Tests of redundancy.analysis.timing: truncated models compute the right thing; tables are well formed.

No assertion is made on the measured times themselves (the machine is shared).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from redundancy.analysis.timing import block_list, time_forward, time_probe, truncated


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_xlnet"])
def test_truncated_model_equals_hidden_state_of_full_model(fixture, request):
    folder = request.getfixturevalue(fixture)
    model = AutoModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(["the cat sat on the mat"], return_tensors="pt")
    owner, attr = block_list(model)
    blocks = getattr(owner, attr)
    with torch.inference_mode():
        full = model(**enc, output_hidden_states=True).hidden_states
        for n in range(len(blocks) + 1):
            with truncated(model, n) as short:
                assert len(getattr(owner, attr)) == n
                out = short(**enc).last_hidden_state
            np.testing.assert_allclose(out, full[n], atol=1e-5)
    assert getattr(owner, attr) is blocks  # restored
    if hasattr(model, "pooler"):
        assert model.pooler is not None


def test_time_forward_table(tiny_bert):
    sentences = ["the cat sat on the mat", "a quick brown fox", "dogs"] * 3
    table = time_forward(tiny_bert, sentences, batch_size=4, repeats=2, progress=False)
    assert list(table["layer"]) == [0, 1, 2]
    assert (table["ms_per_instance"] > 0).all() and table["n_instances"].eq(9).all()
    np.testing.assert_allclose(table["speedup"].iloc[-1], 1.0)
    np.testing.assert_allclose(
        table["speedup"], table["full_ms_per_instance"] / table["ms_per_instance"]
    )
    words = [("the", "cat"), ("a", "quick", "fox")]
    one = time_forward(tiny_bert, words, layers=[1], repeats=1, progress=False)
    assert list(one["layer"]) == [1]
    with pytest.raises(ValueError, match="'layers' parameter of time_forward"):
        time_forward(tiny_bert, words, layers=[5], repeats=1, progress=False)


def test_time_probe_table():
    table = time_probe([4, 16], n_instances=256, epochs=1, progress=False)
    assert list(table["n_features"]) == [4, 16]
    assert (table["seconds"] > 0).all() and table["n_instances"].eq(256).all()
    with pytest.raises(ValueError, match="n_features_list"):
        time_probe([], n_instances=10)
