"""Each plot function draws what it promises on small planted tables (Agg backend)."""

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


def test_plot_cka_heat_map_has_colour_bar_ticks_and_values():
    sim = np.array([[1.0, 0.8, 0.2], [0.8, 1.0, 0.5], [0.2, 0.5, 1.0]])
    ax = plots.plot_cka(sim, title="toy CKA")
    image = ax.get_images()[0]
    np.testing.assert_allclose(image.get_array(), sim)
    assert image.get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.texts] == [f"{v:.2f}" for v in sim.ravel()]
    colorbars = [a for a in ax.figure.axes if a is not ax]
    assert len(colorbars) == 1 and colorbars[0].get_ylabel() == "linear CKA"
    with pytest.raises(ValueError, match="'sim' parameter of plot_cka"):
        plots.plot_cka(np.ones(3))


def _scores():
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        for layer in range(3):
            rows.append(
                {
                    "target": "task",
                    "kind": "layer",
                    "layer": layer,
                    "seed": seed,
                    "dev": 0.5 + layer / 10 + shift,
                    "test": 0.4 + layer / 10 + shift,
                }
            )
            rows.append(
                {
                    "target": "task",
                    "kind": "incremental",
                    "layer": layer,
                    "seed": seed,
                    "dev": 0.6 + layer / 10 + shift,
                    "test": 0.6 + layer / 10 + shift,
                }
            )
    for layer in range(3):
        rows.append(
            {
                "target": "control",
                "kind": "layer",
                "layer": layer,
                "seed": 0,
                "dev": 0.3,
                "test": 0.25,
            }
        )
    df = pd.DataFrame(rows)
    df.attrs["majority"] = {"dev": 0.2, "test": 0.15}
    return df


def test_plot_layer_scores_draws_seed_means_in_percent_with_bands_control_and_baseline():
    ax = plots.plot_layer_scores(_scores(), split="test")
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["layer l alone"].get_ydata(), [41, 51, 61])
    np.testing.assert_allclose(lines["layers 0..l"].get_ydata(), [61, 71, 81])
    np.testing.assert_allclose(lines["control task, layer l"].get_ydata(), [25, 25, 25])
    np.testing.assert_allclose(lines["majority class"].get_ydata(), [15, 15])
    assert len(ax.collections) == 2  # min-max bands of the two task curves (two seeds)
    with pytest.raises(ValueError, match="'split' parameter of plot_layer_scores"):
        plots.plot_layer_scores(_scores(), split="train")


def test_plot_cc_sweep_one_line_per_run():
    rows = [
        {"run": r, "threshold": t, "seed": s, "fraction_redundant": t, "dev_vs_oracle": 1 - t / 10}
        for r in ("a", "b")
        for t in (0.3, 0.6)
        for s in (0, 1)
    ]
    ax = plots.plot_cc_sweep(pd.DataFrame(rows))
    assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [30, 60])
    ax2 = plots.plot_cc_sweep(pd.DataFrame(rows), y="dev_vs_oracle")
    np.testing.assert_allclose(ax2.get_lines()[0].get_ydata(), [97, 94])
    assert "oracle" in ax2.get_ylabel()


def test_plot_window_hist_bars_are_percentages_of_clusters():
    ax = plots.plot_window_hist([1, 1, 2, 3], n_layers=4)
    assert [p.get_height() for p in ax.patches] == [50.0, 25.0, 25.0, 0.0]


def test_plot_ranking_curves_and_selectivity():
    result = {
        "seeds": [
            {
                "seed": 0,
                "n_total": 100,
                "fraction": 0.05,
                "oracle_dev": 0.9,
                "curve": {"k": [1, 5], "dev": [0.5, 0.9]},
            }
        ]
    }
    ax = plots.plot_ranking_curves(result, delta=1.0)
    curve = ax.get_lines()[0]
    np.testing.assert_allclose(curve.get_xdata(), [1, 5])
    np.testing.assert_allclose(curve.get_ydata(), [50, 90])
    assert ax.get_xscale() == "log"
    sel = {"fraction": [0.01, 0.1], "task_dev": [0.6, 0.9], "control_dev": [0.5, 0.4]}
    ax = plots.plot_selectivity(sel)
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["selectivity"].get_ydata(), [10, 50])


def test_plot_transfer_means_with_seed_ranges():
    runs = pd.DataFrame(
        [
            {
                "run": "m / t",
                "branch": "LS+CC+FS",
                "delta_ls": 3.0,
                "delta_fs": 1.0,
                "seed": s,
                "fraction_kept": f,
                "score_kept": k,
            }
            for s, f, k in ((0, 0.02, 0.98), (1, 0.04, 0.96))
        ]
    )
    ax = plots.plot_transfer(runs, score_kept=0.97, neurons_kept=0.1)
    (container,) = ax.containers
    x, y = container.lines[0].get_data()
    np.testing.assert_allclose([x[0], y[0]], [3.0, 97.0])


def test_timing_plots_and_verdict_summary():
    summary = pd.DataFrame(
        {
            "model": "m",
            "layer": [0, 1],
            "ms_per_instance": [1.0, 2.0],
            "ms_low": [0.9, 1.8],
            "ms_high": [1.2, 2.1],
        }
    )
    ax = plots.plot_forward_timing(summary, reference={"paper": 0.7})
    assert ax.get_yscale() == "log" and "paper" in [t.get_text() for t in ax.get_legend().texts]
    probe = pd.DataFrame(
        {
            "n_features": [10, 100],
            "seconds": [1.0, 4.0],
            "seconds_low": [0.9, 3.5],
            "seconds_high": [1.1, 4.5],
        }
    )
    ax = plots.plot_probe_timing(probe, scale=10)
    np.testing.assert_allclose(np.asarray(ax.containers[0].lines[0].get_ydata(), float), [10, 40])
    verdicts = pd.DataFrame(
        [
            {
                "chapter": "03",
                "level": "reproduced",
                "value": 0.9,
                "low": 0.88,
                "high": 0.92,
                "paper_value": 0.85,
                "unit": "fraction",
            },
            {
                "chapter": "01",
                "level": "partly reproduced",
                "value": None,
                "low": None,
                "high": None,
                "paper_value": None,
                "unit": "features",
            },
        ]
    )
    axes = plots.plot_verdicts(verdicts)
    assert len(axes) == 1 and "03: reproduced" in axes[0].get_title(loc="left")
