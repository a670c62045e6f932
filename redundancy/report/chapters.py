"""The book's chapters, each declared once: the step calls it needs, how it turns their
results into its rule's tidy table (``measure``), and the rule that judges that table.

The notebooks call :meth:`Chapter.measure` and :meth:`Chapter.verdict`; the pipeline
(:func:`redundancy.report.pipeline.plan`) flattens the same :meth:`Chapter.calls`, so what a
chapter computes is written in one place. The rule's text (:meth:`Chapter.rule_text`) is
produced from the rule's own fields and from how the measurement decides (δ, resamples,
confidence), so changing a declaration changes the text the book prints.

Decisions "within δ of the oracle" are made by a paired bootstrap over the sentences of the
deciding split (:func:`redundancy.analysis.metrics.paired_bootstrap`): the subset's and the
oracle's predictions on the same resample, every seed on the same resamples, pooled, so the
interval carries sampling noise and seed spread together
(:func:`redundancy.analysis.metrics.decide_within`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .config import Config
from .paper import PAPER
from .verdicts import RULES, Verdict

__all__ = ["CHAPTERS", "Call", "Chapter", "chapter"]

_STEPS = "redundancy.report.steps"
CKA_INSTANCES = 2000
"""Instances drawn for chapter 2's intervals and null (debiased CKA needs n x n Grams)."""
CKA_RESAMPLES = 200
"""Bootstrap resamples behind chapter 2's intervals, and its permutations for models of up
to :data:`CKA_FULL_DEPTH` layers."""
CKA_FULL_DEPTH = 13
CKA_MIN_PERMUTATIONS = 50


def cka_permutations(n_layers: int) -> int:
    """Permutations of chapter 2's null for a model of ``n_layers`` layers.

    A permutation touches every entry of every layer's Gram matrix and pairs every layer
    with every other, so its cost grows as ``n_layers**2`` (0.7 s for 31 layers on 2
    cores, against 0.04 s for 7). Up to :data:`CKA_FULL_DEPTH` layers (BERT-base and
    smaller) the null takes :data:`CKA_RESAMPLES`; deeper models take
    ``CKA_RESAMPLES * (CKA_FULL_DEPTH / n_layers)**2`` rounded down, at least
    :data:`CKA_MIN_PERMUTATIONS` (each gives two draws a pair: 100 draws behind a 95th
    percentile), so the null costs about what it costs at full depth.
    """
    n_layers = int(n_layers)
    if n_layers <= CKA_FULL_DEPTH:
        return CKA_RESAMPLES
    scaled = CKA_RESAMPLES * CKA_FULL_DEPTH**2 // n_layers**2  # rounded down
    return max(CKA_MIN_PERMUTATIONS, min(CKA_RESAMPLES, scaled))


@dataclass(frozen=True)
class Call:
    """One cached step a chapter needs: ``target(*args, cfg, **kwargs)``.

    ``step`` names the stage for the pipeline (``"layer_probes"``, ``"cka"``, ...), which
    derives what must run first (extraction, fine-tuning, the layer probes).
    """

    step: str
    target: str
    args: tuple = ()
    kwargs: tuple = ()


@dataclass(frozen=True)
class Chapter:
    """A chapter: its notebook name, title, rule, step calls and measurement."""

    name: str
    title: str
    calls: Callable[[Config], list[Call]]
    measure: Callable[[Config, object], object] | None = None
    decides: str = ""
    """How the measurement decides, in words (with ``{delta}``, ``{resamples}``,
    ``{confidence}`` filled from the run's parameters)."""
    rule: object = None
    """The rule that judges the measurement (:mod:`redundancy.report.verdicts`)."""

    def measured(self, cfg: Config):
        """The rule's tidy table for this run (computes or reads the steps' results)."""
        if self.measure is None:
            raise ValueError(f"Chapter {self.name} has no measurement.")
        return self.measure(cfg, self.rule)

    def verdict(self, cfg: Config, measured=None) -> Verdict:
        """The rule applied to :meth:`measured` (or to a table already measured)."""
        table = self.measured(cfg) if measured is None else measured
        if isinstance(table, tuple):
            return self.rule.judge(*table)
        return self.rule.judge(table)

    def rule_text(self, cfg: Config | None = None) -> str:
        """The rule as the book prints it: the rule's text, then how it decides."""
        text = self.rule.describe() if self.rule is not None else ""
        if self.decides:
            cfg = cfg or Config()
            text += " " + self.decides.format(
                delta=f"{cfg.delta:g}%",
                resamples=f"{cfg.n_bootstrap:,}" if cfg.n_bootstrap else "no",
                confidence=f"{100 * cfg.confidence:g}%",
                cka_resamples=f"{CKA_RESAMPLES:,}",
                cka_instances=f"{CKA_INSTANCES:,}",
                cka_deep=f"{CKA_RESAMPLES:,} x ({CKA_FULL_DEPTH} / layers)²",
                cka_full_depth=CKA_FULL_DEPTH,
                cka_min=CKA_MIN_PERMUTATIONS,
            )
        return text


# --------------------------------------------------------------------------------------------
# shared pieces of the measurements
# --------------------------------------------------------------------------------------------
def _kind(task: str) -> str:
    from ..data.tasks import task_level

    return task_level(task)


def _delta(cfg: Config) -> float:
    """δ as a fraction (the parameter is in percent, as the paper writes it)."""
    return cfg.delta / 100


def _split_truth(model: str, task: str, cfg: Config, split: str):
    """Labels, sentence groups and metric of one split (the features' cache; only that
    split is opened: each opening loads a tokenizer and checks the arrays' checksums, about
    2.4 s of a chapter's verdict when all three splits were opened)."""
    from .features import get_activations, get_task

    acts = get_activations(model, task, split, cfg)
    return acts.labels, acts.sentence_index, get_task(task, cfg).metric


def _point_ratios(y, preds, reference, metric) -> np.ndarray:
    from ..analysis.metrics import score

    preds = np.atleast_2d(preds)
    reference = np.broadcast_to(np.atleast_2d(reference), preds.shape)
    out = []
    for p, r in zip(preds, reference):
        base = score(y, r, metric)
        out.append(score(y, p, metric) / base if base else float("nan"))
    return np.asarray(out, dtype=np.float64)


def decide(y, preds, reference, groups, metric, cfg: Config, delta: float) -> dict:
    """Paired-bootstrap decision of "score >= (1 - delta) x reference" for one setting:
    ``ratio`` (mean over seeds of score / reference on the whole split), ``low``, ``high``
    (interval over resamples and seeds) and ``decision``. With ``n_bootstrap: 0`` the
    interval is the range over seeds alone."""
    from ..analysis.metrics import decide_within, paired_bootstrap

    point = _point_ratios(y, preds, reference, metric)
    if cfg.n_bootstrap:
        ratios = paired_bootstrap(
            y,
            preds,
            reference,
            groups,
            n_resamples=cfg.n_bootstrap,
            random_state=cfg.random_state,
            metric=metric,
        )
    else:
        ratios = point[None, :]
    d = decide_within(ratios, delta, confidence=cfg.confidence)
    return {
        "ratio": float(np.mean(point)),
        "low": float(d["low"]),
        "high": float(d["high"]),
        "decision": d["decision"],
    }


def _seed_rows(table: pd.DataFrame, cfg: Config) -> np.ndarray:
    """Row positions of a step table's rows ordered as ``cfg.seeds``."""
    order = {s: i for i, s in enumerate(cfg.seeds)}
    return np.asarray(sorted(table.index, key=lambda i: order[int(table.at[i, "seed"])]))


def noise_table(cfg: Config) -> pd.DataFrame:
    """Per model and task: the bootstrap standard deviation of one dev score of the oracle
    (first seed) next to δ in score points, and whether noise is below δ."""
    from ..analysis.metrics import score, score_noise
    from .steps import incremental_predictions

    rows = []
    for m in cfg.models:
        for t in cfg.tasks:
            y, groups, metric = _split_truth(m, t, cfg, "dev")
            oracle = incremental_predictions(m, t, cfg)[0, -1]
            noise = score_noise(
                y,
                oracle,
                groups,
                n_resamples=max(cfg.n_bootstrap, 200),
                random_state=cfg.random_state,
            )
            delta_points = _delta(cfg) * score(y, oracle, metric)
            rows.append(
                {
                    "model": m,
                    "task": t,
                    "kind": _kind(t),
                    "dev sentences": int(np.unique(groups).size),
                    "noise of one dev score": noise,
                    "δ in score points": delta_points,
                    "noise below δ": bool(noise < delta_points),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# 1 setup
# --------------------------------------------------------------------------------------------
_PAPER_TASKS = ("pos", "sem", "ccg", "chunking")


def measure_setup(cfg: Config, rule=None) -> pd.DataFrame:
    """Rows per model (``model``, ``features``, ``paper_model``); ``attrs``:
    ``train_tokens`` per token task and ``paper_data`` (every task is one of the paper's)."""
    from .steps import model_table, task_table

    models = model_table(cfg).reset_index()
    table = pd.DataFrame(
        {
            "model": models["model"],
            "features": models["features"].astype(int),
            "paper_model": models["model"].isin(PAPER.models),
        }
    )
    tasks = task_table(cfg)
    tokens = {}
    for t in cfg.token_tasks:
        col = "tokens" if "tokens" in tasks else "instances"
        tokens[t] = int(tasks.loc[(t, "train"), col])
    table.attrs["train_tokens"] = tokens
    table.attrs["paper_data"] = all(t in _PAPER_TASKS or t.startswith("glue-") for t in cfg.tasks)
    return table


def _setup_calls(cfg: Config) -> list[Call]:
    return [
        Call("extract", "", (m, t, s))
        for m in cfg.models
        for t in cfg.tasks
        for s in ("train", "dev", "test")
    ]


# --------------------------------------------------------------------------------------------
# 2 CKA
# --------------------------------------------------------------------------------------------
def cka_task(cfg: Config) -> str:
    """The task whose instances the CKA chapter compares layers on."""
    return cfg.token_tasks[0] if cfg.token_tasks else cfg.sentence_tasks[0]


def _adjacent_far(sim: np.ndarray) -> tuple[float, float]:
    n = sim.shape[0]
    adjacent = float(np.diag(sim, 1).mean()) if n > 1 else float("nan")
    far = sim[np.triu_indices(n, 3)]
    return adjacent, float(far.mean()) if far.size else float("nan")


def measure_cka(cfg: Config, rule=None) -> pd.DataFrame:
    """Rows per model and sample (train, test words): mean linear CKA of adjacent layers and
    of layers three or more apart on every instance, with bootstrap bounds over instances
    (the subsample's interval shifted to the full sample's value: the mean of the pairs'
    lower and upper bounds, wider than the mean's own interval), and the same two means in
    debiased CKA."""
    from .steps import cka_uncertainty, layer_cka

    task = cka_task(cfg)
    rows = []
    for m in cfg.models:
        for split in ("train", "test"):
            sim = layer_cka(m, task, cfg, split=split)
            unc = cka_uncertainty(m, task, cfg, split=split)
            adjacent, far = _adjacent_far(sim)
            sub_adj, sub_far = _adjacent_far(unc["linear"])
            lo_adj, lo_far = _adjacent_far(unc["linear_low"])
            hi_adj, hi_far = _adjacent_far(unc["linear_high"])
            deb_adj, deb_far = _adjacent_far(unc["debiased"])
            rows.append(
                {
                    "model": m,
                    "sample": split,
                    "adjacent": adjacent,
                    "adjacent_low": adjacent + lo_adj - sub_adj,
                    "adjacent_high": adjacent + hi_adj - sub_adj,
                    "far": far,
                    "far_low": far + lo_far - sub_far,
                    "far_high": far + hi_far - sub_far,
                    "debiased_adjacent": deb_adj,
                    "debiased_far": deb_far,
                }
            )
    return pd.DataFrame(rows)


def _cka_calls(cfg: Config) -> list[Call]:
    task = cka_task(cfg)
    calls = []
    for m in cfg.models:
        for split in ("train", "test"):
            kw = (("finetuned", False), ("split", split))
            calls.append(Call("cka", f"{_STEPS}.layers:layer_cka", (m, task), kw))
            calls.append(Call("cka_uncertainty", f"{_STEPS}.layers:cka_uncertainty", (m, task), kw))
    if cfg.sentence_tasks and cfg.finetune:
        for finetuned in (False, True):
            kw = (("finetuned", finetuned), ("split", "train"))
            calls.append(
                Call(
                    "cka", f"{_STEPS}.layers:layer_cka", (cfg.models[0], cfg.sentence_tasks[0]), kw
                )
            )
    if len(cfg.models) >= 2:
        a, b = cfg.models[:2]
        calls.append(Call("cross_cka", f"{_STEPS}.layers:cross_model_cka", (a, b, task)))
    return calls


# --------------------------------------------------------------------------------------------
# 3-6 probe chapters
# --------------------------------------------------------------------------------------------
def _pairs(cfg: Config):
    return [(m, t) for m in cfg.models for t in cfg.tasks]


def _per_task(step: str, function: str) -> Callable[[Config], list[Call]]:
    def calls(cfg: Config) -> list[Call]:
        return [Call(step, f"{_STEPS}.{function}", (m, t)) for m, t in _pairs(cfg)]

    return calls


def measure_clustering(cfg: Config, rule=None) -> pd.DataFrame:
    """Rows per model, task and threshold: ``kind`` (token or sentence task),
    ``threshold``, ``fraction_redundant`` and its split into residual carry, clusters
    within one layer and the rest, ``dev`` (mean over seeds), and the paired-bootstrap
    ``ratio``, ``low``, ``high``, ``decision`` of the kept neurons' probe against the oracle
    on dev."""
    from .steps import cc_sweep, cc_sweep_predictions, incremental_predictions

    rows = []
    for m, t in _pairs(cfg):
        sweep = cc_sweep(m, t, cfg)
        preds = cc_sweep_predictions(m, t, cfg)
        oracle = incremental_predictions(m, t, cfg)[:, -1]
        y, groups, metric = _split_truth(m, t, cfg, "dev")
        for threshold, part in sweep.groupby("threshold", sort=True):
            idx = _seed_rows(part, cfg)
            first = part.iloc[0]
            row = {
                "model": m,
                "task": t,
                "kind": _kind(t),
                "threshold": float(threshold),
                "fraction_redundant": float(first["fraction_redundant"]),
                "n_clusters": int(first["n_clusters"]),
                "dev": float(part["dev"].mean()),
            }
            for split in ("carry", "within_layer", "mixed"):
                column = f"redundant_{split}"
                if column in part:
                    row[column] = float(first[column])
            row.update(decide(y, preds[idx], oracle, groups, metric, cfg, _delta(cfg)))
            rows.append(row)
    return pd.DataFrame(rows)


def measure_layers(cfg: Config, rule=None) -> pd.DataFrame:
    """Rows per model, task and layer l: the incremental probe on layers 0..l against the
    oracle on dev (paired bootstrap, seeds pooled): ``ratio``, ``low``, ``high``,
    ``decision``; ``n_layers``; ``dev`` and ``test`` means over seeds."""
    from .steps import incremental_predictions, layer_probe_scores

    rows = []
    for m, t in _pairs(cfg):
        scores = layer_probe_scores(m, t, cfg)
        inc = scores[(scores["target"] == "task") & (scores["kind"] == "incremental")]
        preds = incremental_predictions(m, t, cfg)
        y, groups, metric = _split_truth(m, t, cfg, "dev")
        n_layers = preds.shape[1]
        for layer in range(n_layers):
            at = inc[inc["layer"] == layer]
            rows.append(
                {
                    "model": m,
                    "task": t,
                    "kind": _kind(t),
                    "layer": layer,
                    "n_layers": n_layers,
                    "dev": float(at["dev"].mean()),
                    "test": float(at["test"].mean()),
                    **decide(y, preds[:, layer], preds[:, -1], groups, metric, cfg, _delta(cfg)),
                }
            )
    return pd.DataFrame(rows)


def measure_ranking(cfg: Config, rule=None) -> pd.DataFrame:
    """Rows per model, task and share of all neurons of
    :data:`~redundancy.report.steps.neurons.RANK_GRID`: the probe on each seed's top-ranked
    neurons against that seed's oracle on dev (paired bootstrap, seeds pooled); ``k``,
    ``fraction`` (the grid's nominal share; ``k`` is its rounding), ``dev``, ``test`` (means over seeds), ``ratio``, ``low``, ``high``,
    ``decision``, and the minimal sets the paper's search found (``minimal_fraction``: mean
    over seeds)."""
    from .steps import incremental_predictions, minimal_set_predictions, minimal_sets

    rows = []
    for m, t in _pairs(cfg):
        res = minimal_sets(m, t, cfg)
        grid = res["grid"]
        preds = minimal_set_predictions(m, t, cfg)["grid"]
        oracle = incremental_predictions(m, t, cfg)[:, -1]
        y, groups, metric = _split_truth(m, t, cfg, "dev")
        minimal = float(np.mean([r["fraction"] for r in res["seeds"]]))
        for j, (k, share) in enumerate(zip(grid["k"], grid["share"])):
            rows.append(
                {
                    "model": m,
                    "task": t,
                    "kind": _kind(t),
                    "k": int(k),
                    "fraction": float(share),
                    "dev": float(np.mean([d[j] for d in grid["dev"]])),
                    "test": float(np.mean([d[j] for d in grid["test"]])),
                    "minimal_fraction": minimal,
                    **decide(y, preds[:, j], oracle, groups, metric, cfg, _delta(cfg)),
                }
            )
    return pd.DataFrame(rows)


def measure_transfer(cfg: Config, rule=None) -> pd.DataFrame:
    """Rows per model, task, branch and δ pair: the final probe against the oracle on test
    (paired bootstrap, seeds pooled, line at the claim's score kept): ``ratio``, ``low``,
    ``high``, ``decision``; neurons kept (``fraction_kept`` mean, ``_min``, ``_max`` over
    seeds); test scores after each step (means over seeds) and neuron counts."""
    from .steps import oracle_test_predictions, transfer_predictions, transfer_table

    rule = rule or RULES["06-transfer"]
    line = 1 - rule.score_kept
    rows = []
    for m, t in _pairs(cfg):
        runs = transfer_table(m, t, cfg).reset_index(drop=True)
        preds = transfer_predictions(m, t, cfg, "test")
        oracle = oracle_test_predictions(m, t, cfg)
        y, groups, metric = _split_truth(m, t, cfg, "test")
        for (branch, dl, dfs), part in runs.groupby(["branch", "delta_ls", "delta_fs"], sort=False):
            idx = _seed_rows(part, cfg)
            row = {
                "model": m,
                "task": t,
                "kind": _kind(t),
                "branch": branch,
                "delta_ls": float(dl),
                "delta_fs": float(dfs),
                "layer_min": int(part["layer"].min()),
                "layer_max": int(part["layer"].max()),
                "n_all": int(part["n_all"].iloc[0]),
                "fraction_kept": float(part["fraction_kept"].mean()),
                "fraction_kept_min": float(part["fraction_kept"].min()),
                "fraction_kept_max": float(part["fraction_kept"].max()),
            }
            for step in ("ls", "cc", "fs"):
                if f"n_{step}" in part:
                    row[f"n_{step}"] = float(part[f"n_{step}"].mean())
            for column in [c for c in part if c.startswith("test_")]:
                row[column] = float(part[column].mean())
            row.update(decide(y, preds[idx], oracle, groups, metric, cfg, line))
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# 7 timing
# --------------------------------------------------------------------------------------------
def measure_timing(cfg: Config, rule=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(speed, probe)``: the forward speed-up at each layer LayerSelector picked (LS+CC+FS,
    smallest δ_LS) per model and task, and the probe-timing summary."""
    from ..analysis.timing import summarize_forward, summarize_probe
    from .steps import forward_timing, probe_timing, transfer_table
    from .steps.timing import ls_picks

    forward = pd.concat(
        [summarize_forward(forward_timing(m, cfg)).assign(model=m) for m in cfg.models],
        ignore_index=True,
    )
    runs = pd.concat(
        [transfer_table(m, t, cfg).assign(model=m, task=t) for m, t in _pairs(cfg)],
        ignore_index=True,
    )
    speed = ls_picks(runs).merge(forward, on=["model", "layer"], how="left")
    speed["last_layer"] = speed["model"].map(forward.groupby("model")["layer"].max())
    return speed, summarize_probe(probe_timing(cfg))


def _timing_calls(cfg: Config) -> list[Call]:
    calls = [Call("forward_timing", f"{_STEPS}.timing:forward_timing", (m,)) for m in cfg.models]
    return [*calls, Call("probe_timing", f"{_STEPS}.timing:probe_timing")]


def _windows_calls(cfg: Config) -> list[Call]:
    pairs = []
    if cfg.sentence_tasks and cfg.finetune:
        pairs += [(m, t) for m in cfg.models for t in cfg.sentence_tasks]
    if cfg.token_tasks:
        pairs += [(m, cfg.token_tasks[0]) for m in cfg.models]
    return [Call("windows", f"{_STEPS}.neurons:cluster_windows_for", p) for p in pairs]


def _clustering_calls(cfg: Config) -> list[Call]:
    return _per_task("cc_sweep", "neurons:cc_sweep")(cfg) + _windows_calls(cfg)


def _nothing(cfg: Config) -> list[Call]:
    return []


def decoders(cfg: Config) -> list[str]:
    """The run's models that are causal LMs (the removal chapter measures their perplexity)."""
    from ..encoders.decoders import is_decoder
    from ..encoders.models import model_problem, resolve_model

    return [m for m in cfg.models if model_problem(m) is None and is_decoder(resolve_model(m))]


def removal_encoders(cfg: Config) -> list[str]:
    """The run's encoders with weights (not activation folders): the removal chapter
    measures their tasks' accuracy with blocks removed."""
    from ..encoders.models import model_problem
    from .features import _is_activation_set

    found = set(decoders(cfg))
    return [
        m
        for m in cfg.models
        if m not in found and not _is_activation_set(m) and model_problem(m) is None
    ]


def _removal_calls(cfg: Config) -> list[Call]:
    calls = [
        Call("removal", f"{_STEPS}.removal_encoder:encoder_removal", (m, t))
        for m in removal_encoders(cfg)
        for t in cfg.tasks
    ]
    for model in decoders(cfg):
        calls += [
            Call("removal", f"{_STEPS}.removal:block_scores", (model,)),
            Call("removal", f"{_STEPS}.removal:removal_sweep", (model,)),
            Call("removal", f"{_STEPS}.removal_neurons:cluster_replacement", (model,)),
        ]
    return calls


def measure_removal(cfg: Config, rule=None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``(blocks, neurons)`` for :class:`~redundancy.report.removal_rule.RemovalRule`:
    every removal sweep of the run (encoders: a task's ``score``, higher is better;
    decoders: ``perplexity`` on Brown news, lower is better) with ``model`` and ``task``,
    and the decoders' cluster replacements with ``model`` (None without a decoder)."""
    from .removal_rule import scored
    from .steps.removal import removal_sweep
    from .steps.removal_encoder import encoder_removal
    from .steps.removal_neurons import cluster_replacement

    parts = [
        scored(encoder_removal(m, t, cfg)).assign(model=m)
        for m in removal_encoders(cfg)
        for t in cfg.tasks
    ]
    parts += [
        scored(removal_sweep(m, cfg)).assign(model=m, task="Brown news perplexity")
        for m in decoders(cfg)
    ]
    neurons = [cluster_replacement(m, cfg).assign(model=m) for m in decoders(cfg)]
    blocks = pd.concat(parts, ignore_index=True) if parts else None
    return blocks, (pd.concat(neurons, ignore_index=True) if neurons else None)


def _removal_rule():
    from .removal_rule import RemovalRule

    return RemovalRule("08-removal")


_DECIDES = (
    "Decisions use δ = {delta} of the oracle and a paired bootstrap of {resamples} resamples "
    "of the {split}'s sentences at {confidence} (the subset's and the oracle's predictions on "
    "the same resample, every seed on the same resamples, pooled)."
)

CHAPTERS = {
    c.name: c
    for c in (
        Chapter("01-setup", "Setup", _setup_calls, measure_setup, rule=RULES["01-setup"]),
        Chapter(
            "02-layers-cka",
            "Layer-level general redundancy: CKA",
            _cka_calls,
            measure_cka,
            "Intervals: {cka_resamples} bootstrap resamples of {cka_instances} instances drawn "
            "from the sample, at {confidence}; the null: {cka_resamples} permutations of the "
            "instances of one layer against the other ({cka_deep} for models deeper than "
            "{cka_full_depth} layers, at least {cka_min}, so that it costs what {cka_full_depth} "
            "layers cost).",
            rule=RULES["02-layers-cka"],
        ),
        Chapter(
            "03-neurons-clustering",
            "Neuron-level general redundancy: correlation clustering",
            _clustering_calls,
            measure_clustering,
            _DECIDES.replace("{split}", "dev split"),
            rule=RULES["03-neurons-clustering"],
        ),
        Chapter(
            "04-layers-probes",
            "Layer-level task-specific redundancy: probes",
            _per_task("layer_probes", "layers:layer_probe_scores"),
            measure_layers,
            _DECIDES.replace("{split}", "dev split"),
            rule=RULES["04-layers-probes"],
        ),
        Chapter(
            "05-neurons-ranking",
            "Neuron-level task-specific redundancy: ranking",
            _per_task("minimal_sets", "neurons:minimal_sets"),
            measure_ranking,
            _DECIDES.replace("{split}", "dev split"),
            rule=RULES["05-neurons-ranking"],
        ),
        Chapter(
            "06-transfer",
            "Efficient feature-based transfer",
            _per_task("transfer", "transfer:transfer_table"),
            measure_transfer,
            _DECIDES.replace("δ = {delta} of the oracle and ", "").replace("{split}", "test split"),
            rule=RULES["06-transfer"],
        ),
        Chapter("07-timing", "Timing", _timing_calls, measure_timing, rule=RULES["07-timing"]),
        Chapter(
            "08-removal",
            "Removing what is redundant",
            _removal_calls,
            measure_removal,
            rule=_removal_rule(),
        ),
        Chapter("09-summary", "Summary", _nothing),
    )
}
"""Every chapter of the book, by notebook name, in book order."""


def chapter(name: str) -> Chapter:
    """The declaration of chapter ``name`` (``"03-neurons-clustering"`` or ``"03"``)."""
    for key, value in CHAPTERS.items():
        if name in (key, key[:2]):
            return value
    raise ValueError(f"No chapter {name!r}; the chapters are {', '.join(CHAPTERS)}.")


def few_layers(n_layers: int) -> int:
    """Chapter 4's "a few lower layers": the highest layer index that still counts."""
    return RULES["04-layers-probes"].few_layers(n_layers)
