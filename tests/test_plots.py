"""Each plot function draws what it promises on small inputs (Agg backend, no display)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from redundancy.report import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    plots.set_style()
    yield
    plt.close("all")


def test_set_style_applies_the_book_style():
    plots.set_style()
    assert matplotlib.rcParams["axes.grid"] is True
    assert matplotlib.rcParams["image.cmap"] == plots.HEATMAP_CMAP


def test_plot_cka_heat_map_has_colour_bar_ticks_and_values():
    sim = np.array([[1.0, 0.8, 0.2], [0.8, 1.0, 0.5], [0.2, 0.5, 1.0]])
    ax = plots.plot_cka(sim, title="toy CKA")
    assert isinstance(ax, matplotlib.axes.Axes)
    image = ax.get_images()[0]
    np.testing.assert_allclose(image.get_array(), sim)
    assert image.get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.texts] == [f"{v:.2f}" for v in sim.ravel()]
    assert list(ax.get_xticks()) == [0, 1, 2]
    assert ax.get_title() == "toy CKA" and ax.get_xlabel() == "layer"
    colorbars = [a for a in ax.figure.axes if a is not ax]
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == "linear CKA"


def test_plot_cka_rectangular_without_annotations_on_given_axes():
    fig, (a, b) = plt.subplots(1, 2)
    sim = np.random.default_rng(0).random((14, 8))
    ax = plots.plot_cka(sim, ax=b, xlabel="mpnet layer", ylabel="minilm layer", colorbar=False)
    assert ax is b and not ax.texts  # more than 13 rows: no numbers written
    assert ax.get_images()[0].get_array().shape == (14, 8)
    assert ax.get_xlabel() == "mpnet layer" and len(fig.axes) == 2


def test_plot_cka_refuses_a_vector():
    with pytest.raises(ValueError, match="'sim' parameter of plot_cka"):
        plots.plot_cka(np.ones(3))


def _layer_df(L=4):
    rows = [
        {"kind": "layer", "layer": i, "dev": 0.5 + i / 20, "test": 0.4 + i / 20} for i in range(L)
    ]
    rows += [
        {"kind": "incremental", "layer": i, "dev": 0.6 + i / 20, "test": 0.55 + i / 20}
        for i in range(L)
    ]
    rows.append({"kind": "oracle", "layer": L - 1, "dev": 0.75, "test": 0.7})
    return pd.DataFrame(rows)


def test_plot_layer_scores_lines_in_percent_and_oracle():
    ax = plots.plot_layer_scores(_layer_df(), title="toy")
    lines = ax.get_lines()
    assert len(lines) == 3  # layer alone, layers 0..l, oracle
    np.testing.assert_allclose(lines[0].get_ydata(), [40, 45, 50, 55])
    np.testing.assert_allclose(lines[2].get_ydata(), [70, 70])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["layer l alone", "layers 0..l", "oracle (all layers)"]
    assert ax.get_ylabel() == "test score (%)" and "layer" in ax.get_xlabel()


def test_plot_layer_scores_unknown_split():
    with pytest.raises(ValueError, match="'split' parameter of plot_layer_scores"):
        plots.plot_layer_scores(_layer_df(), split="train")


def test_plot_cc_sweep_one_line_per_hue_and_references():
    sweep = pd.DataFrame(
        {
            "threshold": [0.1, 0.3, 0.1, 0.3],
            "percent_removed": [10.0, 60.0, 5.0, 50.0],
            "dev": [0.9, 0.85, 0.8, 0.7],
            "model": ["a", "a", "b", "b"],
        }
    )
    ax = plots.plot_cc_sweep(sweep)
    assert len(ax.get_lines()) == 2 and ax.get_ylim() == (0, 100)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [10, 60])
    assert ax.get_ylabel() == "redundant neurons (% of all)"
    ax = plots.plot_cc_sweep(
        sweep, y="dev", reference={"a": 0.95, "b": 0.9}, reference_label="oracle"
    )
    lines = ax.get_lines()
    assert len(lines) == 4
    np.testing.assert_allclose(lines[1].get_ydata(), [80, 70])  # scores drawn in percent
    np.testing.assert_allclose(lines[2].get_ydata(), [95, 95])
    assert "oracle (a)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_window_hist_bars_are_percentages_of_clusters():
    ax = plots.plot_window_hist([1, 1, 1, 2], n_layers=3, title="windows")
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [75, 25, 0])
    assert ax.get_ylabel() == "clusters (%)" and ax.get_title() == "windows"


def test_plot_ranking_curve_lines():
    curve = pd.DataFrame({"percent": [0.1, 1.0, 10.0], "dev": [0.3, 0.8, 0.9]})
    ax = plots.plot_ranking_curve(curve, oracle=0.9, delta=1, minimal=1.0)
    lines = ax.get_lines()
    assert len(lines) == 4  # curve, oracle, oracle - delta, minimal set
    np.testing.assert_allclose(lines[2].get_ydata(), [89.1, 89.1])
    np.testing.assert_allclose(lines[3].get_xdata(), [1.0, 1.0])
    assert ax.get_xscale() == "log"


def test_plot_timing_with_reference():
    df = pd.DataFrame(
        {
            "layer": [0, 1, 2, 0, 1, 2],
            "ms_per_instance": [1, 2, 3, 2, 4, 6],
            "model": list("aaabbb"),
        }
    )
    ax = plots.plot_timing(df, hue="model", reference={"paper": 0.715})
    assert len(ax.get_lines()) == 3
    assert ax.get_ylabel() == "time per instance (ms)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "paper"]
    ax = plots.plot_timing(df[df["model"] == "a"], reference=0.715)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["this run", "paper"]
