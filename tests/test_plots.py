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
    # the search's sizes, then the oracle at 100% of the neurons
    np.testing.assert_allclose(curve.get_xdata(), [1, 5, 100])
    np.testing.assert_allclose(curve.get_ydata(), [50, 90, 90])
    assert ax.get_xscale() == "log" and ax.get_xlim()[1] >= 100
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
    # three seeds with equal values: their mean rounds above the maximum (0.1 * 3 / 3);
    # the bars are then of length 0, not refused as negative
    same = pd.concat([runs.iloc[:1]] * 3, ignore_index=True).assign(seed=[0, 1, 2])
    same["fraction_kept"] = same["score_kept"] = 0.1
    assert same["fraction_kept"].mean() > same["fraction_kept"].max()
    ax = plots.plot_transfer(same, score_kept=0.97, neurons_kept=0.5)
    (container,) = ax.containers
    np.testing.assert_allclose(
        np.asarray(container.lines[0].get_data(), dtype=float), [[10.0], [10.0]]
    )


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
    (legend,) = ax.figure.legends  # under the axes, outside the data
    assert ax.get_yscale() == "log" and "paper" in [t.get_text() for t in legend.texts]
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


# ----------------------------------------------------------------- reading size in the book
# The book shows a figure as the notebook backend saved it (PNG at the figure's dpi, cropped
# to what is drawn, as IPython's ``bbox_inches="tight"``), one image pixel per CSS pixel,
# shrunk to the text column when wider. A text of s points is then s * dpi / 72 * shrink CSS
# pixels, and a reader's 9 pt is 12 CSS pixels.
def _as_displayed(fig):
    """The figure's width in CSS pixels as the book shows it, and every visible text with
    its displayed size in points."""
    import io

    from matplotlib.text import Text
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    png_width = Image.open(io.BytesIO(buf.getvalue())).size[0]
    shown = min(png_width, plots.CONTENT_WIDTH_PX)
    shrink = shown / png_width
    texts = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip():
            continue
        if t.axes is not None and not t.axes.get_visible():
            continue
        px = t.get_fontsize() * fig.dpi / 72 * shrink
        texts.append((t.get_text(), px * 72 / 96))
    return png_width, texts


def _assert_readable(fig, what):
    width, texts = _as_displayed(fig)
    assert width <= plots.CONTENT_WIDTH_PX, (
        f"{what}: {width} px wide, wider than the book's {plots.CONTENT_WIDTH_PX} px column"
    )
    small = [(text, round(pt, 1)) for text, pt in texts if pt < plots.MIN_TEXT_PT - 1e-6]
    assert not small, f"{what}: text under {plots.MIN_TEXT_PT} pt as displayed: {small[:5]}"
    assert texts, what


def _ranking_result(n=2688, seeds=(42, 43)):
    return {
        "seeds": [
            {
                "seed": s,
                "n_total": n,
                "fraction": 0.02 + 0.01 * i,
                "oracle_dev": 0.95,
                "curve": {"k": [3, 27, 54, 81], "dev": [0.5, 0.8, 0.94, 0.95]},
                "layer_share": [0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1],
            }
            for i, s in enumerate(seeds)
        ],
        "grid": {
            "k": [13, 27, 54, 134, 215, 538, 1344],
            "fraction": [k / n for k in (13, 27, 54, 134, 215, 538, 1344)],
            "dev": [[0.7, 0.8, 0.94, 0.95, 0.95, 0.95, 0.95]] * len(seeds),
            "test": [[0.7, 0.8, 0.94, 0.95, 0.95, 0.95, 0.95]] * len(seeds),
        },
    }


def _sweeps():
    return pd.DataFrame(
        [
            {
                "run": r,
                "threshold": t,
                "seed": s,
                "fraction_redundant": t,
                "dev_vs_oracle": 1 - t / 10,
            }
            for r in ("minilm / brown-upos", "minilm / brown-fiction", "minilm / brown-next")
            for t in (0.1, 0.3, 0.5, 0.7, 0.9)
            for s in (0, 1, 2)
        ]
    )


def _figures():
    """Every kind of figure the chapters draw, on planted data, laid out as they lay it out
    (three tasks, the default book; 13 layers, the paper's size)."""
    rng = np.random.default_rng(0)
    three = ("minilm / brown-upos", "minilm / brown-fiction", "minilm / brown-next")
    sim7 = np.clip(1 - np.abs(np.subtract.outer(range(7), range(7))) / 7, 0, 1)
    sim13 = np.clip(1 - np.abs(np.subtract.outer(range(13), range(13))) / 13, 0, 1)
    labels = pd.DataFrame({"label": [f"TAG{i}" for i in range(12)], "share": np.full(12, 1 / 12)})
    yield (
        "labels",
        lambda: plots.small_multiples(
            plots.plot_labels, {t: labels for t in three}, min_width=3.3, height=3.4, legend=False
        ),
    )
    yield (
        "CKA, one model",
        lambda: plots.small_multiples(
            plots.plot_cka, {"minilm (pretrained)": sim7}, min_width=4.5, height=4.4
        ),
    )
    yield "CKA, 13 layers", lambda: plots.plot_cka(sim13, title="mpnet").figure

    def finetuned():
        fig, axes = plots.panels(3, min_width=4.5, height=4.2)
        plots.plot_cka(sim7, ax=axes[0], title="minilm pretrained, brown-fiction")
        plots.plot_cka(sim7 * 0.5, ax=axes[1], title="fine-tuned on brown-fiction")
        plots.plot_cka(
            sim7 * -0.5,
            ax=axes[2],
            vmin=None,
            vmax=None,
            cmap=plots.DIVERGING_CMAP,
            colorbar_label="CKA difference",
            title="fine-tuned minus pretrained",
        )
        return fig

    yield "CKA, pretrained against fine-tuned", finetuned
    yield (
        "CKA across models",
        lambda: (
            plots.plot_cka(
                sim13[:, :7], xlabel="minilm layer", ylabel="mpnet layer", title="mpnet vs minilm"
            ).figure
        ),
    )

    def sweep():
        fig, (a, b) = plots.panels(2, min_width=3.3, height=3.3)
        plots.plot_cc_sweep(_sweeps(), ax=a, title="Neurons made redundant", legend=False)
        plots.plot_cc_sweep(_sweeps(), ax=b, y="dev_vs_oracle", title="Probe", legend=False)
        plots.figure_legend(fig, a)
        return fig

    yield "clustering sweep", sweep
    decomposition = pd.DataFrame(
        {
            "task": "brown-upos",
            "threshold": [0.1, 0.3, 0.5],
            "redundant_carry": [0.1, 0.2, 0.3],
            "redundant_within_layer": [0.05, 0.1, 0.1],
            "redundant_mixed": [0.0, 0.1, 0.2],
            "fraction_redundant": [0.15, 0.4, 0.6],
        }
    )
    yield (
        "decomposition",
        lambda: plots.small_multiples(
            plots.plot_decomposition, {"minilm": decomposition}, min_width=4.5, height=3.4
        ),
    )

    def windows():
        fig, ax = plots.figure(height=3.4)
        for i, name in enumerate(("sentence tasks (fine-tuned)", "token tasks (pretrained)")):
            plots.plot_window_hist(
                rng.integers(1, 8, 50),
                ax=ax,
                n_layers=7,
                label=name,
                width=0.4,
                offset=(i - 0.5) * 0.4,
            )
        return fig

    yield "cluster windows", windows
    yield (
        "layer probes",
        lambda: plots.small_multiples(
            plots.plot_layer_scores,
            {t: _scores() for t in three},
            split="test",
            min_width=3.3,
            height=3.1,
        ),
    )
    yield (
        "ranking curves",
        lambda: plots.small_multiples(
            plots.plot_ranking_curves,
            {t: _ranking_result() for t in three},
            delta=1.0,
            min_width=3.3,
            height=3.1,
        ),
    )
    sel = {
        "fraction": [0.005, 0.01, 0.05, 0.5],
        "task_dev": [0.6, 0.7, 0.9, 0.95],
        "control_dev": [0.3, 0.4, 0.5, 0.6],
    }
    yield (
        "selectivity",
        lambda: plots.small_multiples(
            plots.plot_selectivity, {three[0]: sel}, min_width=3.3, height=3.1
        ),
    )
    shares = pd.DataFrame({t: [0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1] for t in three})
    yield "minimal sets per layer", lambda: plots.plot_layer_shares(shares).figure
    yield (
        "minimal sets per layer, two depths",
        lambda: plots.plot_minimal_layer_shares(_two_depths()),
    )
    runs = pd.DataFrame(
        [
            {
                "run": t,
                "branch": b,
                "delta_ls": d,
                "delta_fs": 1.0,
                "seed": s,
                "fraction_kept": 0.02 + s / 100,
                "score_kept": 0.98,
            }
            for t in three
            for b in ("LS+CC+FS", "LS+FS")
            for d in (3.0, 2.0, 1.0)
            for s in (0, 1, 2)
        ]
    )
    yield "transfer", lambda: plots.plot_transfer(runs, score_kept=0.97, neurons_kept=0.1).figure
    forward = pd.DataFrame(
        {
            "model": "minilm",
            "layer": range(7),
            "ms_per_instance": np.arange(1.0, 8.0),
            "ms_low": np.arange(0.9, 7.9),
            "ms_high": np.arange(1.1, 8.1),
        }
    )
    reference = {
        "paper: bert-base-cased, full model (GTX TITAN X)": 0.715,
        "paper: xlnet-base-cased, full model (GTX TITAN X)": 1.246,
    }
    yield (
        "forward timing",
        lambda: (
            plots.plot_forward_timing(
                forward, reference=reference, title="300 sentences, 5 rounds, cpu"
            ).figure
        ),
    )
    probe = pd.DataFrame(
        {
            "n_features": [100, 1000, 2688],
            "seconds": [0.1, 0.2, 0.4],
            "seconds_low": [0.09, 0.18, 0.35],
            "seconds_high": [0.11, 0.22, 0.45],
        }
    )
    yield (
        "probe timing",
        lambda: (
            plots.plot_probe_timing(
                probe,
                scale=5,
                reference={"paper: 9,984 features (GTX TITAN X)": 48.48},
                title="10 epochs, 2 classes, scaled to 100,000 instances",
            ).figure
        ),
    )
    found = pd.DataFrame(
        [
            {
                "chapter": c,
                "level": "reproduced",
                "value": 0.9,
                "low": 0.88,
                "high": 0.92,
                "paper_value": 0.85,
                "unit": "fraction",
            }
            for c in ("02-layers-cka", "03-neurons-clustering", "05-neurons-ranking")
        ]
        + [
            {
                "chapter": "07-timing",
                "level": "inconclusive",
                "value": 2.9,
                "low": 2.8,
                "high": 3.2,
                "paper_value": None,
                "unit": "speed-up",
            }
        ]
    )
    yield "verdict summary", lambda: plots.plot_verdicts(found)[0].figure


@pytest.mark.parametrize("what, draw", list(_figures()), ids=[w for w, _ in _figures()])
def test_every_figure_fits_the_text_column_with_text_of_at_least_nine_points(what, draw):
    _assert_readable(draw(), what)


def test_the_readability_check_catches_a_squeezed_figure():
    """The check above can fail: three heat maps side by side at the old 15-inch width."""
    import matplotlib.pyplot as plt

    sim = np.eye(7)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax in axes:
        plots.plot_cka(sim, ax=ax, annotate=True)
    with pytest.raises(AssertionError, match="wider than the book"):
        _assert_readable(fig, "squeezed")
    width, texts = _as_displayed(fig)
    assert min(pt for _, pt in texts) < plots.MIN_TEXT_PT


def test_difference_map_is_symmetric_at_the_largest_difference():
    diff = np.array([[0.0, 0.57], [-0.2, 0.67]])
    ax = plots.plot_cka(diff, vmin=None, vmax=None, cmap=plots.DIVERGING_CMAP)
    low, high = ax.get_images()[0].get_clim()
    assert high == -low and high >= 0.67 and high < 0.75  # no cell saturates


def test_layout_fills_rows_at_a_readable_panel_width():
    assert plots.layout(1) == (1, 1)
    rows, cols = plots.layout(3, min_width=3.3)
    assert cols * 3.3 <= plots.CONTENT_WIDTH_IN and rows * cols >= 3
    assert plots.layout(3, min_width=plots.CONTENT_WIDTH_IN) == (3, 1)
    fig, axes = plots.panels(3, min_width=3.3)
    assert len(axes) == 3 and len(fig.axes) == 3  # unused grid cells are gone
    with pytest.raises(ValueError, match="'n' parameter of layout"):
        plots.layout(0)


def test_ranking_curve_runs_to_all_neurons_through_the_grid():
    result = _ranking_result()
    curve = plots.ranking_curve(result["seeds"][0], result["grid"], 0)
    assert curve["k"].is_monotonic_increasing and curve["k"].is_unique
    assert curve["share"].iloc[-1] == 1.0 and curve["dev"].iloc[-1] == 0.95
    assert {13, 538, 1344} <= set(curve["k"])  # the grid's shares are on the curve
    assert curve.set_index("k").loc[27, "dev"] == 0.8  # the search's own score where both ran


def test_small_multiples_puts_one_legend_in_an_empty_cell_or_under_the_panels():
    three = {f"task {i}": _scores() for i in range(3)}
    rows, cols = plots.layout(3, min_width=3.3)
    fig = plots.small_multiples(plots.plot_layer_scores, three, min_width=3.3)
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert len(legends) == 1  # one legend for all the panels
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3 and not any(ax.get_legend() for ax in panels)
    if rows * cols > 3:  # the grid's empty cell holds it
        assert not fig.legends
    fig = plots.small_multiples(plots.plot_layer_scores, {"a": _scores()}, min_width=3.3)
    assert len(fig.legends) == 1 and len(fig.axes) == 1  # a full grid: under the panels


def _two_depths():
    deep = _ranking_result(n=17856)
    for seed in deep["seeds"]:
        seed["layer_share"] = list(np.full(31, 1 / 31))
    return {
        ("minilm", "brown-upos"): _ranking_result(),
        ("minilm", "brown-fiction"): _ranking_result(),
        ("smollm2", "brown-upos"): deep,
        ("smollm2", "brown-fiction"): deep,
    }


def test_minimal_layer_shares_give_each_depth_its_own_axis():
    """A 7-layer and a 31-layer model in one run: one panel each, one bar per layer and task."""
    fig = plots.plot_minimal_layer_shares(_two_depths())
    axes = [ax for ax in fig.axes if ax.patches]
    assert [ax.get_title() for ax in axes] == ["minilm", "smollm2"]
    assert [len(ax.patches) for ax in axes] == [2 * 7, 2 * 31]
    heights = [p.get_height() for p in axes[1].patches]
    np.testing.assert_allclose(heights, 100 / 31)
    plt.close(fig)


def test_neuron_replacement_panels_per_kind_with_a_log_axis_for_wide_ranges():
    from redundancy.report import removal_view

    rows = [dict(kind="none", threshold=np.nan, method="none", seed=-1, n_replaced=0,
                 perplexity=70.0, low=60.0, high=80.0)]  # fmt: skip
    for t in (0.4, 0.8):
        for method, within, carry in (
            ("cluster", 71.0 + t, 73.0 + t),
            ("cluster-mean", 72.0 + t, 20000.0 * t),
            ("random-mean", 70.5 + t, 160.0 * t),
        ):
            for kind, value in (("within-layer", within), ("residual-carry", carry)):
                rows.append(dict(kind=kind, threshold=t, method=method, seed=-1, n_replaced=5,
                                 perplexity=value, low=0.9 * value, high=1.1 * value))  # fmt: skip
    fig = removal_view.plot_neurons(pd.DataFrame(rows))
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["within-layer", "residual-carry"]
    # within a layer everything stays near the whole model; the residual carry reaches
    # 16,000 against 70, which a linear axis would flatten to zero
    assert [ax.get_yscale() for ax in axes] == ["linear", "log"]
    (mean_line,) = [
        c for c in axes[1].containers if c.get_label() == removal_view.METHODS["cluster-mean"]
    ]
    np.testing.assert_allclose(np.asarray(mean_line.lines[0].get_ydata(), float), [8000.0, 16000.0])
