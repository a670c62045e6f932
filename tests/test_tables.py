"""Tables as readers get them: human headers with units, one number format per quantity,
no code names, and the same numbers as the figures beside them."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from redundancy.report import tables
from redundancy.report.config import Config

SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")


def _headers(df: pd.DataFrame) -> list[str]:
    names = [c[-1] if isinstance(c, tuple) else c for c in df.columns]
    return [str(n) for n in names] + [str(n) for n in df.index.names if n]


def test_percent_columns_carry_the_unit_in_the_header_not_the_cells():
    df = pd.DataFrame({"dev": [0.239], "δ in score points": [0.01], "n": [3]})
    html = tables.show(df, percent=["dev", "δ in score points"]).to_html()
    assert "dev (%)" in html and "23.9<" in html and "23.9%" not in html
    assert "δ in score points" in html and "δ in score points (%)" not in html
    assert ">1.0<" in html


def test_floats_keep_their_columns_narrow():
    assert [tables._float_text(v) for v in (0.76123, -3.5, 179.57, 88292.7, 9515590358.2)] == [
        "0.761", "-3.500", "179.6", "88,293", "9.52 × 10⁹",
    ]  # fmt: skip
    assert tables._float_text(float("nan")) == "" and tables._float_text(-2.5e-7) == "-0.000"
    html = tables.show(pd.DataFrame({"perplexity": [72.75, 9515590358.2]})).to_html()
    assert ">72.750<" in html and ">9.52 × 10⁹<" in html


def test_probe_timing_table_is_scaled_like_the_figure():
    probe = pd.DataFrame(
        {
            "n_features": [100, 2688],
            "seconds": [0.117, 0.395],
            "seconds_low": [0.11, 0.38],
            "seconds_high": [0.12, 0.41],
            "vs_smallest": [1.0, 3.376],
        }
    )
    out = tables.probe_timing_table(probe, scale=5.0, instances=100_000)
    column = "training time, scaled to 100,000 instances (s)"
    assert list(out[column]) == ["0.59", "1.98"]  # 5 x the measured seconds, as plotted
    assert list(out["range over rounds (s)"]) == ["0.55-0.60", "1.90-2.05"]
    assert list(out["features"]) == ["100", "2,688"]
    assert list(out["time against the fewest features"]) == ["1.00×", "3.38×"]
    assert not [h for h in _headers(out) if SNAKE.match(h)]
    unscaled = tables.probe_timing_table(probe)
    assert "training time, as measured (s)" in unscaled.columns


def test_extraction_and_selection_tables_have_human_headers_and_one_format():
    extraction = pd.DataFrame(
        {
            "model": ["minilm"],
            "task": ["brown-upos"],
            "split": ["train"],
            "features from": ["pretrained"],
            "instances": [150_016],
            "layers": [7],
            "hidden": [384],
            "seconds": [0.01],
            "extraction_seconds": [123.456],
        }
    )
    out = tables.extraction_summary(extraction)
    assert out["extraction time (s)"].iloc[0] == "123.5"
    assert out["instances"].iloc[0] == "150,016"
    assert out["features (layers × hidden)"].iloc[0] == "2,688 (7 × 384)"
    selected = pd.DataFrame(
        {
            "seed": [42],
            "layer": [2],
            "last_layer": [6],
            "oracle_dev": [0.97],
            "dev": [0.962],
            "test": [0.95],
            "oracle_test": [0.96],
            "model": ["minilm"],
            "task": ["brown-upos"],
        }
    )
    sel = tables.selection_table(selected)
    assert sel["selected layer"].iloc[0] == "2 of 0..6"
    assert sel["dev (%)"].iloc[0] == "96.2" and "%" not in sel["dev (%)"].iloc[0]
    for df in (out, sel):
        assert not [h for h in _headers(df) if SNAKE.match(h)], _headers(df)


def test_speed_table_headers_say_the_unit():
    speed = pd.DataFrame(
        {
            "model": ["minilm"],
            "task": ["brown-upos"],
            "layer": [2],
            "ms_per_instance": [1.234],
            "full_ms_per_instance": [3.5],
            "speedup": [2.91],
            "speedup_low": [2.8],
            "speedup_high": [3.24],
        }
    )
    out = tables.speed_table(speed)
    assert list(out.iloc[0]) == ["minilm / brown-upos", 2, "1.23", "3.50", "2.91× (2.80-3.24)"]
    assert all("ms" in h for h in out.columns if "instance" in h)


@pytest.mark.parametrize("params", ["default", "tiny", "paper"])
def test_parameter_table_shows_every_parameter_of_the_run_but_the_machine(params):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cfg = Config.from_yaml(root / "params" / f"{params}.yaml")
    cfg.results_dir = "/tmp/somewhere/results"
    table = tables.parameter_table(cfg)
    names = set(table["in params/*.yaml"])
    assert names == set(Config.parameter_names()) - {"results_dir", "recompute"}
    values = " ".join(table["value"])
    assert "/tmp/" not in values and "/work/" not in values
    assert not [p for p in table.index if SNAKE.match(p)]
    assert table.loc["seeds", "value"] == f"{cfg.n_seeds:,}"
    assert tables.parameter_label("probe_epochs") == "probe epochs"
    assert tables.parameter_label("no_such_thing") == "no such thing"


def test_neuron_shares_read_with_the_same_decimals_in_one_table():
    res = {
        ("minilm", "brown-upos"): {
            "seeds": [
                {"fraction": 0.02, "test": 0.95, "k": 54},
                {"fraction": 0.03, "test": 0.96, "k": 81},
            ],
            "interval": [0.94, 0.97],
        }
    }
    row = tables.minimal_table(res).iloc[0]
    decimals = {
        len(v.split(" ")[0].split(".")[1])
        for v in (row["minimal set (% of neurons)"], row["removable (%)"])
    }
    assert decimals == {2}
    assert np.isclose(float(row["removable (%)"].split(" ")[0]), 97.5)
