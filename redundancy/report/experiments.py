"""Cached, high-level experiment steps shared by the book's notebooks.

The notebooks stay thin: each chapter validates its parameters into a :class:`Config`, then
calls the steps below (``get_activations``, ``layer_probe_scores``, ``cc_sweep``,
``minimal_set_for``, ``transfer_table``, ...). Every step only orchestrates library calls
(:mod:`redundancy.extract`, :mod:`redundancy.probes`, :mod:`redundancy.clustering`, ...); no
analysis maths lives here. Results are cached as JSON or ``.npz`` under
``cache_dir("results")``, keyed by a hash of every input: model identity, task fingerprint,
the parameters the step reads, the library version and the source of the modules it calls.
A changed input gives a new key, so a stale result is never reused; an unchanged one is read
back, which is what makes a second build of the book fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from .._utils import atomic_write_text, cache_dir, json_default, stable_hash

logger = logging.getLogger(__name__)

BUILTIN_MODELS = ("minilm", "mpnet")
"""Model names resolved by :func:`redundancy.models.resolve_model` to embedded checkpoints."""

BROWN_TASKS = ("brown-pos", "brown-upos", "brown-genre", "brown-fiction")
"""Tasks built from the Brown corpus, which the library fetches itself."""

PAPER_TASK_SOURCES = {
    "pos": "Penn Treebank WSJ (LDC99T42): parallel train/dev/test *.word and *.label files",
    "sem": "Parallel Meaning Bank semantic tags (https://pmb.let.rug.nl): *.word / *.label files",
    "ccg": "CCGbank supertags (LDC2005T13): *.word / *.label files",
    "chunking": "CoNLL-2000 chunking (https://www.clips.uantwerpen.be/conll2000/chunking/)",
    "conll": "CoNLL-style column files (train/dev/test)",
}
"""Where the paper's token-task data comes from (none of it can be downloaded here)."""

PAPER_HINT_GLUE = (
    "the GLUE task folder with train.tsv and dev.tsv "
    "(https://gluebenchmark.com/tasks, or the datasets library's 'glue' configurations saved as TSV)"
)

PAPER_DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PAPER_DELTA_PAIRS = ((3.0, 1.0), (2.0, 1.0), (1.0, 1.0))


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------
def _fail(name: str, constraint: str, value) -> None:
    raise ValueError(
        f"The {name!r} parameter of Config must be {constraint}. Got {value!r} instead."
    )


def _as_list(value) -> list:
    """Accept a scalar where a list is expected (``papermill -p models mpnet``)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _check_str_list(name, value, *, allow_empty=True):
    items = _as_list(value)
    if not all(isinstance(v, str) and v for v in items) or (not allow_empty and not items):
        _fail(
            name, "a list of non-empty strings" + ("" if allow_empty else " (at least one)"), value
        )
    if len(set(items)) != len(items):
        _fail(name, "a list without duplicates", value)
    return tuple(items)


def _check_int(name, value, *, low=None, optional=False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _fail(
            name,
            "an int" + (f" >= {low}" if low is not None else "") + (" or None" if optional else ""),
            value,
        )
    if low is not None and value < low:
        _fail(name, f"an int >= {low}" + (" or None" if optional else ""), value)
    return int(value)


def _check_float(name, value, *, low=None, high=None, strict_low=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        _fail(name, "a number", value)
    value = float(value)
    bad_low = low is not None and (value <= low if strict_low else value < low)
    bad_high = high is not None and value > high
    if bad_low or bad_high:
        lo = "" if low is None else f"{'>' if strict_low else '>='} {low}"
        hi = "" if high is None else f"<= {high}"
        _fail(name, "a number " + " and ".join(p for p in (lo, hi) if p), value)
    return value


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, "a bool (true or false)", value)
    return bool(value)


def _check_choice(name, value, choices):
    if value not in choices:
        opts = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The {name!r} parameter of Config must be one of {{{opts}}}. Got {value!r} instead."
        )
    return value


def _check_mapping(name, value, *, optional=True):
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        _fail(
            name,
            "a mapping from task name to "
            + ("options" if name == "task_options" else "folder")
            + " or None",
            value,
        )
    return dict(value)


@dataclass
class Config:
    """Validated parameters of one run of the book; one flat set shared by every notebook.

    The defaults are the paper's hyper-parameters (probe: Adam lr 1e-3, batch 128, 10 epochs,
    λ1 = λ2 = 1e-5; correlation clustering at t = 0.3, sweep 0.1 … 0.9; δ = 1; LayerSelector +
    CC + FS with (δ_LS, δ_FS) ∈ {(3, 1), (2, 1), (1, 1)}; fine-tuning on the whole training
    set). ``params/default.yaml`` shrinks the sizes so the whole book runs in minutes on a CPU.

    Parameters
    ----------
    models : list of str
        Model names: ``"minilm"``, ``"mpnet"``, a local folder or a Hugging Face id.
    token_tasks, sentence_tasks : list of str
        Task names (see ``python -m redundancy tasks``). Token tasks use pretrained
        activations; sentence tasks use activations of a model fine-tuned on the task when
        ``finetune`` is true.
    task_options : dict
        Per task, keyword options of :func:`redundancy.data.tasks.load_task` (size caps such
        as ``train_tokens``, ``dev_tokens``, ``train_sentences``, ...).
    data_dir : dict or None
        Per task, the folder holding its files (the paper's tasks); Brown needs none.
    aggregation, pooling, dtype, max_length, batch_size : extraction options
        Passed to :func:`redundancy.extract.extract`.
    finetune : bool
        Fine-tune each model on each sentence task before extracting (the paper does).
    finetune_max_train_sentences : int or None
        Cap on fine-tuning sentences (None: the whole training split, as in the paper).
    finetune_epochs : int
        Fine-tuning epochs (paper: 3).
    probe_epochs, probe_lr, probe_l1, probe_l2, probe_batch_size : probe hyper-parameters
        The paper's elastic-net logistic-regression probe.
    thresholds : list of float
        Distance thresholds of the correlation-clustering sweep.
    cc_threshold : float
        Threshold of correlation clustering used by the transfer pipeline (paper: 0.3).
    delta : float
        Tolerated loss in percent for the minimal neuron set (paper: 1).
    delta_pairs : list of [δ_LS, δ_FS]
        Tolerances of LayerSelector and feature selection in the transfer pipeline.
    representative : {"random", "central"}
        How one neuron per cluster is kept (paper: random).
    random_state : int
        Seed of every random step (probes, representatives, subsampling).
    device : str or None
        ``"cpu"``, ``"cuda"``; None picks the GPU when there is one.
    timing_instances : int
        Sentences timed in the forward-pass benchmark.
    timing_features : list of int
        Feature counts of the probe-training benchmark.
    timing_probe_instances : int
        Instances of the probe-training benchmark (paper: 100,000).
    results_dir : str or None
        Folder where chapters record their verdicts; None: a folder in the cache named after
        the parameters. The book runner sets it to ``build/<params>/results``.
    """

    models: tuple = ("minilm",)
    token_tasks: tuple = ("brown-pos", "brown-upos")
    sentence_tasks: tuple = ("brown-fiction",)
    task_options: dict = field(default_factory=dict)
    data_dir: dict = field(default_factory=dict)
    aggregation: str = "last"
    pooling: str = "auto"
    dtype: str = "float32"
    max_length: int | None = None
    batch_size: int = 32
    finetune: bool = True
    finetune_max_train_sentences: int | None = None
    finetune_epochs: int = 3
    probe_epochs: int = 10
    probe_lr: float = 1e-3
    probe_l1: float = 1e-5
    probe_l2: float = 1e-5
    probe_batch_size: int = 128
    thresholds: tuple = PAPER_DEFAULT_THRESHOLDS
    cc_threshold: float = 0.3
    delta: float = 1.0
    delta_pairs: tuple = PAPER_DELTA_PAIRS
    representative: str = "random"
    random_state: int = 42
    device: str | None = None
    timing_instances: int = 1000
    timing_features: tuple = (100, 1000, 9984)
    timing_probe_instances: int = 100_000
    results_dir: str | None = None

    def __post_init__(self):
        self.models = _check_str_list("models", self.models, allow_empty=False)
        self.token_tasks = _check_str_list("token_tasks", self.token_tasks)
        self.sentence_tasks = _check_str_list("sentence_tasks", self.sentence_tasks)
        if not (self.token_tasks or self.sentence_tasks):
            raise ValueError(
                "Config needs at least one task: 'token_tasks' and 'sentence_tasks' are both "
                "empty. Add e.g. token_tasks: [brown-pos]."
            )
        both = set(self.token_tasks) & set(self.sentence_tasks)
        if both:
            _fail("sentence_tasks", "disjoint from 'token_tasks'", sorted(both))
        self.task_options = _check_mapping("task_options", self.task_options)
        for task, options in self.task_options.items():
            if not isinstance(options, Mapping):
                _fail("task_options", f"a mapping of option -> value for task {task!r}", options)
        self.task_options = {k: dict(v) for k, v in self.task_options.items()}
        self.data_dir = _check_mapping("data_dir", self.data_dir)
        self.aggregation = _check_choice("aggregation", self.aggregation, ("first", "last", "mean"))
        self.pooling = _check_choice("pooling", self.pooling, ("auto", "first", "last", "mean"))
        self.dtype = _check_choice("dtype", self.dtype, ("float32", "float16"))
        self.max_length = _check_int("max_length", self.max_length, low=2, optional=True)
        self.batch_size = _check_int("batch_size", self.batch_size, low=1)
        self.finetune = _check_bool("finetune", self.finetune)
        self.finetune_max_train_sentences = _check_int(
            "finetune_max_train_sentences", self.finetune_max_train_sentences, low=1, optional=True
        )
        self.finetune_epochs = _check_int("finetune_epochs", self.finetune_epochs, low=1)
        self.probe_epochs = _check_int("probe_epochs", self.probe_epochs, low=1)
        self.probe_lr = _check_float("probe_lr", self.probe_lr, low=0, strict_low=True)
        self.probe_l1 = _check_float("probe_l1", self.probe_l1, low=0)
        self.probe_l2 = _check_float("probe_l2", self.probe_l2, low=0)
        self.probe_batch_size = _check_int("probe_batch_size", self.probe_batch_size, low=1)
        ths = _as_list(self.thresholds)
        if not ths:
            _fail("thresholds", "a non-empty list of numbers in (0, 1]", self.thresholds)
        self.thresholds = tuple(
            sorted(_check_float("thresholds", t, low=0, high=1, strict_low=True) for t in ths)
        )
        self.cc_threshold = _check_float(
            "cc_threshold", self.cc_threshold, low=0, high=1, strict_low=True
        )
        self.delta = _check_float("delta", self.delta, low=0, high=100)
        pairs = []
        for pair in _as_list(self.delta_pairs):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                _fail("delta_pairs", "a list of [delta_LS, delta_FS] pairs", self.delta_pairs)
            pairs.append(tuple(_check_float("delta_pairs", d, low=0, high=100) for d in pair))
        if not pairs:
            _fail("delta_pairs", "a non-empty list of [delta_LS, delta_FS] pairs", self.delta_pairs)
        self.delta_pairs = tuple(pairs)
        self.representative = _check_choice(
            "representative", self.representative, ("random", "central")
        )
        self.random_state = _check_int("random_state", self.random_state, low=0)
        if self.device is not None and not isinstance(self.device, str):
            _fail("device", "a string such as 'cpu' or 'cuda', or None", self.device)
        self.timing_instances = _check_int("timing_instances", self.timing_instances, low=1)
        feats = _as_list(self.timing_features)
        self.timing_features = tuple(_check_int("timing_features", f, low=1) for f in feats)
        self.timing_probe_instances = _check_int(
            "timing_probe_instances", self.timing_probe_instances, low=1
        )
        if self.results_dir is not None and not isinstance(self.results_dir, (str, os.PathLike)):
            _fail("results_dir", "a folder path or None", self.results_dir)
        if self.results_dir is not None:
            self.results_dir = str(self.results_dir)

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """Every valid parameter name, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, params: Mapping, *, source: str = "parameters") -> Config:
        """Build from a mapping, refusing unknown keys with the list of valid ones.

        ``source`` names where the mapping came from (a file, a notebook) in error messages.
        """
        if not isinstance(params, Mapping):
            raise ValueError(
                f"{source} must be a mapping of parameter -> value. Got {type(params).__name__} instead."
            )
        valid = cls.parameter_names()
        unknown = [k for k in params if k not in valid]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), valid, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(
                f"Unknown parameter(s) in {source}: {', '.join(hints)}. "
                f"Valid parameters are: {', '.join(valid)}."
            )
        return cls(**dict(params))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> Config:
        """Read a ``params/NAME.yaml`` file (a flat mapping of parameter -> value)."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Parameter file {str(path)!r} does not exist; see the params/ folder."
            )
        data = yaml.safe_load(path.read_text()) or {}
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_namespace(cls, namespace: Mapping) -> Config:
        """Validate the parameters a notebook holds as globals (after papermill injected its own).

        Call it in the cell right after the ``parameters`` cell, with ``globals()``: every
        global holding a plain value (None, bool, number, str, list, tuple, dict) that is not
        private or IPython's own is taken as a parameter, so a mistyped
        ``papermill -p probe_epoch 1`` is refused here. Modules, functions, classes and
        objects such as DataFrames are ignored.
        """
        ignore = {"In", "Out", "get_ipython", "exit", "quit", "open"}
        plain = (type(None), bool, int, float, str, list, tuple, dict)
        params = {
            k: v
            for k, v in namespace.items()
            if not k.startswith("_") and k not in ignore and isinstance(v, plain)
        }
        try:
            return cls.from_dict(params, source="the notebook's parameters")
        except ValueError as exc:
            if "Unknown parameter" not in str(exc):
                raise
            raise ValueError(
                f"{exc} (Re-running this cell after later cells in JupyterLab also triggers this: "
                "restart the kernel and run the notebook from the top.)"
            ) from None

    def to_dict(self) -> dict:
        """Plain JSON/YAML-friendly dict (tuples become lists); round-trips through from_dict."""

        def plain(v):
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def fingerprint(self) -> str:
        """Hash of every parameter except ``results_dir``."""
        d = self.to_dict()
        d.pop("results_dir")
        return stable_hash(d)

    # ---- helpers used by the steps -------------------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        """Token tasks, then sentence tasks."""
        return tuple(self.token_tasks) + tuple(self.sentence_tasks)

    def results_path(self) -> Path:
        """Folder of this run's verdicts (created)."""
        path = (
            Path(self.results_dir) if self.results_dir else cache_dir("runs") / self.fingerprint()
        )
        path.mkdir(parents=True, exist_ok=True)
        return path

    def probe_options(self) -> dict:
        """Keyword arguments of :func:`redundancy.probes.train_probes`."""
        return {
            "epochs": self.probe_epochs,
            "lr": self.probe_lr,
            "l1": self.probe_l1,
            "l2": self.probe_l2,
            "batch_size": self.probe_batch_size,
            "random_state": self.random_state,
            "device": self.device,
        }

    def extract_options(self) -> dict:
        """Keyword arguments of :func:`redundancy.extract.extract`."""
        return {
            "aggregation": self.aggregation,
            "pooling": self.pooling,
            "dtype": self.dtype,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "device": self.device,
        }

    def missing_inputs(self) -> list[str]:
        """One line per model or data folder this configuration needs but cannot find.

        Lines say how to obtain the missing item. An empty list means every input is there.
        """
        missing = []
        for model in self.models:
            problem = _model_problem(model)
            if problem:
                missing.append(problem)
        for task in self.tasks:
            if task in BROWN_TASKS:
                continue
            folder = self.data_dir.get(task)
            if task.startswith("glue-"):
                how = PAPER_HINT_GLUE
            else:
                how = PAPER_TASK_SOURCES.get(task, "the task's files")
            if not folder:
                missing.append(
                    f"task {task!r}: no data_dir given; set data_dir: {{{task}: FOLDER}} to {how}"
                )
            elif not Path(os.path.expanduser(str(folder))).exists():
                missing.append(
                    f"task {task!r}: data_dir {str(folder)!r} does not exist; it must hold {how}"
                )
        return missing

    def check_inputs(self) -> None:
        """Raise one FileNotFoundError naming every missing model and data folder."""
        missing = self.missing_inputs()
        if missing:
            lines = "\n  - ".join(missing)
            raise FileNotFoundError(
                f"{len(missing)} input(s) of this configuration are missing:\n  - {lines}\n"
                "Fix the paths in the parameter file (or pass them with papermill -p / -y) and rerun."
            )


def _model_problem(model: str) -> str | None:
    """Why ``model`` cannot be loaded offline, or None when it can."""
    if model in BUILTIN_MODELS:
        try:
            from ..encoders.models import resolve_model

            resolve_model(model)
        except Exception as exc:  # the library's message says how to get it
            return f"model {model!r}: {exc}"
        return None
    path = Path(os.path.expanduser(model))
    if path.is_dir():
        return (
            None
            if (path / "config.json").is_file()
            else f"model {model!r}: folder has no config.json"
        )
    if model.startswith((".", "/", "~")):
        return f"model {model!r}: folder does not exist"
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception:
        cached = None
    if isinstance(cached, str) and Path(cached).is_file():
        return None
    return (
        f"model {model!r}: not a local folder and not in the Hugging Face cache; download it on a "
        f"machine with internet (`hf download {model}` or `huggingface-cli download {model}`), "
        "copy the cache or the folder here, and name the folder in 'models'"
    )


# --------------------------------------------------------------------------------------------
# Result cache
# --------------------------------------------------------------------------------------------
@functools.cache
def _source_hash(*modules: str) -> str:
    """Hash of the source of the whole library (transitional: every step depends on it)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _key(step: str, modules: tuple[str, ...], **inputs) -> str:
    return stable_hash(
        {"step": step, "version": __version__, "source": _source_hash(*modules), **inputs}
    )


def _cached_json(step: str, key: str, compute: Callable[[], object], *, force: bool = False):
    """Return the JSON result of ``compute`` cached under ``results/<step>/<key>.json``."""
    path = cache_dir("results") / step / f"{key}.json"
    if path.is_file() and not force:
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            logger.warning("Ignoring unreadable cached result %s", path)
    result = compute()
    atomic_write_text(path, json.dumps(result, indent=1, default=json_default))
    return json.loads(path.read_text())


def _cached_npz(step: str, key: str, compute: Callable[[], dict], *, force: bool = False) -> dict:
    """Return the arrays of ``compute`` cached under ``results/<step>/<key>.npz``."""
    path = cache_dir("results") / step / f"{key}.npz"
    if path.is_file() and not force:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return dict(arrays)


# --------------------------------------------------------------------------------------------
# Models, tasks and activations
# --------------------------------------------------------------------------------------------
_TASKS: dict[str, object] = {}


def get_task(name: str, cfg: Config):
    """Load a task with the run's options and data folder (memoised in the process).

    Parameters
    ----------
    name : str
        A task of ``cfg.tasks``.
    cfg : Config

    Returns
    -------
    redundancy.data.base.Task
    """
    from ..data.tasks import load_task

    options = dict(cfg.task_options.get(name, {}))
    data_dir = cfg.data_dir.get(name)
    key = stable_hash({"name": name, "options": options, "data_dir": data_dir})
    if key not in _TASKS:
        _TASKS[key] = load_task(name, data_dir=data_dir, **options)
    return _TASKS[key]


def is_sentence_task(task_name: str, cfg: Config) -> bool:
    """Whether ``task_name`` is one of the run's sentence tasks."""
    return task_name in cfg.sentence_tasks


def model_table(cfg: Config) -> pd.DataFrame:
    """Layers (embeddings included), hidden size and features of every model of the run."""
    from transformers import AutoConfig

    from ..encoders.models import resolve_model

    rows = []
    for model in cfg.models:
        path = resolve_model(model)
        mc = AutoConfig.from_pretrained(path)
        n_layers = int(getattr(mc, "num_hidden_layers", getattr(mc, "n_layer", 0))) + 1
        hidden = int(getattr(mc, "hidden_size", getattr(mc, "d_model", 0)))
        rows.append(
            {
                "model": model,
                "architecture": mc.model_type,
                "layers (with embeddings)": n_layers,
                "hidden": hidden,
                "features": n_layers * hidden,
                "path": str(path),
            }
        )
    return pd.DataFrame(rows).set_index("model")


def task_table(cfg: Config) -> pd.DataFrame:
    """Per task and split: sentences, tokens, instances, labels (:func:`task_summary`)."""
    from ..data.tasks import task_summary

    frames = []
    for name in cfg.tasks:
        df = task_summary(get_task(name, cfg))
        df.insert(0, "level", "token" if name in cfg.token_tasks else "sentence")
        df.index.name = "split"
        frames.append(df.reset_index().assign(task=name))
    out = pd.concat(frames, ignore_index=True)
    return out.set_index(["task", "split"])


def finetuned_model(model: str, task_name: str, cfg: Config, *, progress: bool = True) -> str:
    """Folder of ``model`` fine-tuned on a sentence task (cached by the library)."""
    from ..encoders.finetune import finetune

    path = finetune(
        model,
        get_task(task_name, cfg),
        epochs=cfg.finetune_epochs,
        max_train_sentences=cfg.finetune_max_train_sentences,
        random_state=cfg.random_state,
        device=cfg.device,
        progress=progress,
    )
    return str(path)


def features_model(
    model: str, task_name: str, cfg: Config, *, finetuned: bool | None = None
) -> str:
    """The model whose activations represent ``task_name``: fine-tuned for sentence tasks
    (when ``cfg.finetune``), pretrained otherwise. ``finetuned`` forces one or the other."""
    if finetuned is None:
        finetuned = cfg.finetune and is_sentence_task(task_name, cfg)
    return finetuned_model(model, task_name, cfg) if finetuned else model


def get_activations(
    model: str,
    task_name: str,
    split: str,
    cfg: Config,
    *,
    finetuned: bool | None = None,
    progress: bool = True,
):
    """Activations of one split (extracted once, then read from the library's cache).

    Sentence tasks use the model fine-tuned on the task when ``cfg.finetune`` (as in the
    paper); token tasks the pretrained model. ``finetuned`` overrides the choice (chapter 2
    compares both).

    Returns
    -------
    redundancy.extract.Activations
    """
    from ..encoders.extract import extract

    source = features_model(model, task_name, cfg, finetuned=finetuned)
    acts = extract(
        source, get_task(task_name, cfg), split, progress=progress, **cfg.extract_options()
    )
    acts.model = model if source == model else f"{model} (fine-tuned on {task_name})"
    return acts


def extraction_table(cfg: Config, *, progress: bool = True) -> pd.DataFrame:
    """Extract every model x task x split of the run; one row each with shape and seconds.

    ``seconds`` is the wall time of this call (close to zero when the cache answered);
    ``extraction_seconds`` the time the extraction took when it ran, as the library recorded.
    """
    rows = []
    for model in cfg.models:
        for task in cfg.tasks:
            for split in ("train", "dev", "test"):
                start = time.perf_counter()
                acts = get_activations(model, task, split, cfg, progress=progress)
                timings = acts.meta.get("timings") or {}
                recorded = (
                    timings.get("total_s", timings.get("seconds"))
                    if isinstance(timings, dict)
                    else None
                )
                rows.append(
                    {
                        "model": model,
                        "task": task,
                        "split": split,
                        "features from": "fine-tuned"
                        if "fine-tuned" in acts.model
                        else "pretrained",
                        "instances": acts.n_instances,
                        "layers": acts.n_layers,
                        "hidden": acts.n_hidden,
                        "seconds": round(time.perf_counter() - start, 2),
                        "extraction_seconds": recorded,
                    }
                )
    return pd.DataFrame(rows)


def _model_key(model: str, task_name: str, cfg: Config, finetuned: bool | None = None) -> dict:
    """Identity of the features: model identity + task fingerprints + extraction options."""
    from ..encoders.models import model_identity

    task = get_task(task_name, cfg)
    source = features_model(model, task_name, cfg, finetuned=finetuned)
    return {
        "model": model_identity(source),
        "task": [task.fingerprint(s) for s in ("train", "dev", "test")],
        "extract": {
            k: v for k, v in cfg.extract_options().items() if k not in ("batch_size", "device")
        },
    }


# --------------------------------------------------------------------------------------------
# Layer-level analyses
# --------------------------------------------------------------------------------------------
def layer_cka(
    model: str, task_name: str, cfg: Config, *, finetuned: bool | None = False
) -> np.ndarray:
    """Linear CKA between every pair of layers on the training split, cached.

    ``finetuned=False`` (default) uses the pretrained model, as the paper's general analysis.
    """
    from ..analysis import similarity

    key = _key("cka", ("similarity",), features=_model_key(model, task_name, cfg, finetuned))

    def compute():
        acts = get_activations(model, task_name, "train", cfg, finetuned=finetuned)
        return {"sim": similarity.layer_cka(acts.acts, device=cfg.device)}

    return _cached_npz("cka", key, compute)["sim"]


def cross_model_cka(model_a: str, model_b: str, task_name: str, cfg: Config) -> np.ndarray:
    """Linear CKA between every layer of ``model_a`` and every layer of ``model_b`` (pretrained,
    same training instances), cached."""
    from ..analysis import similarity

    key = _key(
        "cross_cka",
        ("similarity",),
        a=_model_key(model_a, task_name, cfg, False),
        b=_model_key(model_b, task_name, cfg, False),
    )

    def compute():
        a = get_activations(model_a, task_name, "train", cfg, finetuned=False)
        b = get_activations(model_b, task_name, "train", cfg, finetuned=False)
        return {"sim": similarity.cross_cka(a.acts, b.acts, device=cfg.device)}

    return _cached_npz("cross_cka", key, compute)["sim"]


def _probe_data(model, task_name, cfg):
    task = get_task(task_name, cfg)
    splits = {s: get_activations(model, task_name, s, cfg) for s in ("train", "dev", "test")}
    return task, splits


def _train_and_score(task, splits, subsets, cfg, *, progress=True):
    """Train probes on ``subsets`` jointly, score them on dev and test: (probes, dev, test)."""
    from ..analysis import probes

    train = splits["train"]
    trained = probes.train_probes(
        train.X,
        train.labels,
        subsets,
        kind=task.kind,
        n_classes=task.n_classes if task.kind == "classification" else None,
        progress=progress,
        **cfg.probe_options(),
    )
    metric = task.metric
    dev = probes.evaluate_probes(
        trained, splits["dev"].X, splits["dev"].labels, metric, device=cfg.device
    )
    test = probes.evaluate_probes(
        trained, splits["test"].X, splits["test"].labels, metric, device=cfg.device
    )
    return trained, dev, test


def _probe_key(step, model, task_name, cfg, modules=("probes",), **extra):
    return _key(
        step,
        modules,
        features=_model_key(model, task_name, cfg),
        probe=cfg.probe_options(),
        **extra,
    )


def layer_probe_scores(
    model: str, task_name: str, cfg: Config, *, progress: bool = True
) -> pd.DataFrame:
    """Probe scores of every layer alone, of layers 0..l, and of the oracle (all layers).

    All ``2 L`` probes are trained together (:func:`redundancy.probes.train_probes` reads each
    batch once); the oracle's weights are cached too (:func:`oracle_probe`).

    Returns
    -------
    DataFrame
        Columns ``kind`` (``"layer"``, ``"incremental"``, ``"oracle"``), ``layer``,
        ``n_neurons``, ``dev``, ``test``; scores are fractions (accuracy) or the task metric.
    """
    from ..analysis import probes

    key = _probe_key("layer_probes", model, task_name, cfg)

    def compute():
        task, splits = _probe_data(model, task_name, cfg)
        L, H = splits["train"].n_layers, splits["train"].n_hidden
        subsets = {**probes.layer_subsets(L, H), **probes.incremental_subsets(L, H)}
        trained, dev, test = _train_and_score(task, splits, subsets, cfg, progress=progress)
        rows = []
        for layer in range(L):
            name = f"layer {layer}"
            rows.append(
                {
                    "kind": "layer",
                    "layer": layer,
                    "n_neurons": H,
                    "dev": dev[name],
                    "test": test[name],
                }
            )
        for layer in range(L):
            name = f"layers 0-{layer}"
            rows.append(
                {
                    "kind": "incremental",
                    "layer": layer,
                    "n_neurons": (layer + 1) * H,
                    "dev": dev[name],
                    "test": test[name],
                }
            )
        last = f"layers 0-{L - 1}"
        rows.append(
            {
                "kind": "oracle",
                "layer": L - 1,
                "n_neurons": L * H,
                "dev": dev[last],
                "test": test[last],
            }
        )
        _store_oracle(key, trained[last])
        return {"rows": rows, "metric": task.metric}

    result = _cached_json("layer_probes", key, compute)
    df = pd.DataFrame(result["rows"])
    df.attrs["metric"] = result["metric"]
    return df


def _store_oracle(key: str, probe) -> None:
    path = cache_dir("results") / "oracle" / f"{key}.json"
    atomic_write_text(path, json.dumps(probe.to_dict()))


def oracle_probe(model: str, task_name: str, cfg: Config):
    """The probe on all layers (the paper's oracle), trained by :func:`layer_probe_scores`.

    Returns
    -------
    redundancy.probes.LinearProbe
    """
    from ..analysis.probes import LinearProbe

    key = _probe_key("layer_probes", model, task_name, cfg)
    path = cache_dir("results") / "oracle" / f"{key}.json"
    if not path.is_file():
        # the scores may be cached without the weights (e.g. deleted): recompute both
        (cache_dir("results") / "layer_probes" / f"{key}.json").unlink(missing_ok=True)
        layer_probe_scores(model, task_name, cfg)
    return LinearProbe.from_dict(json.loads(path.read_text()))


def oracle_scores(model: str, task_name: str, cfg: Config) -> dict:
    """``{"dev": ..., "test": ...}`` of the oracle probe."""
    df = layer_probe_scores(model, task_name, cfg)
    row = df[df["kind"] == "oracle"].iloc[0]
    return {"dev": float(row["dev"]), "test": float(row["test"])}


# --------------------------------------------------------------------------------------------
# Neuron-level analyses
# --------------------------------------------------------------------------------------------
_CORR: dict[str, np.ndarray] = {}


def neuron_correlation(model: str, task_name: str, cfg: Config) -> np.ndarray:
    """Pearson correlation between every pair of neurons on the training split.

    Kept in memory for the last (model, task) only: at 9,984 neurons it takes 400 MB.
    """
    from ..analysis import similarity

    key = stable_hash(_model_key(model, task_name, cfg))
    if key not in _CORR:
        _CORR.clear()
        acts = get_activations(model, task_name, "train", cfg)
        _CORR[key] = similarity.correlation(acts.X, device=cfg.device)
    return _CORR[key]


# --------------------------------------------------------------------------------------------
# Verdicts and deviations
# --------------------------------------------------------------------------------------------
VERDICTS = ("reproduced", "partly reproduced", "not reproduced")
PAPER_MODELS = ("bert-base-cased", "xlnet-base-cased")
PAPER_TASKS = (
    "pos",
    "sem",
    "ccg",
    "chunking",
    "glue-sst2",
    "glue-mrpc",
    "glue-mnli",
    "glue-qnli",
    "glue-qqp",
    "glue-rte",
    "glue-stsb",
)
MODEL_NOTES = {
    "minilm": "all-MiniLM-L6-v2 (BERT architecture, 6 layers x 384: 7 x 384 = 2,688 features), a sentence-embedding fine-tune distilled from MiniLM, not a raw pretrained checkpoint",
    "mpnet": "all-mpnet-base-v2 (MPNet, 12 layers x 768: 13 x 768 = 9,984 features, the paper's size), a sentence-embedding fine-tune of MPNet, not a raw pretrained checkpoint",
}


def judge(value: float, *, reproduced: float, partly: float, higher_is_better: bool = True) -> str:
    """Verdict from one number and two cut-offs (the rule each chapter states).

    ``"reproduced"`` when ``value`` reaches ``reproduced``, ``"partly reproduced"`` when it
    reaches ``partly``, else ``"not reproduced"`` (reversed when lower is better).
    """
    value = float(value)
    if not higher_is_better:
        value, reproduced, partly = -value, -reproduced, -partly
    if value >= reproduced:
        return VERDICTS[0]
    if value >= partly:
        return VERDICTS[1]
    return VERDICTS[2]


def record_verdict(
    cfg: Config,
    chapter: str,
    *,
    claim: str,
    measured: str,
    verdict: str,
    rule: str,
    details=None,
) -> dict:
    """Write a chapter's verdict to ``<results_dir>/<chapter>.json`` for the summary.

    Parameters
    ----------
    cfg : Config
    chapter : str
        The notebook's name, e.g. ``"03-neurons-clustering"``.
    claim : str
        The paper's claim, in a sentence.
    measured : str
        What this run measured, in a sentence with the numbers.
    verdict : {"reproduced", "partly reproduced", "not reproduced"}
    rule : str
        The rule that turned the numbers into the verdict.
    details : dict or list, optional
        Numbers behind the verdict (JSON-serialisable).

    Returns
    -------
    dict
        The record written.
    """
    if verdict not in VERDICTS:
        raise ValueError(
            f"The 'verdict' parameter of record_verdict must be one of {VERDICTS}. Got {verdict!r} instead."
        )
    record = {
        "chapter": chapter,
        "claim": claim,
        "measured": measured,
        "verdict": verdict,
        "rule": rule,
        "details": details if details is not None else {},
        "params": cfg.fingerprint(),
        "models": list(cfg.models),
        "tasks": list(cfg.tasks),
    }
    atomic_write_text(
        cfg.results_path() / f"{chapter}.json", json.dumps(record, indent=1, default=json_default)
    )
    return record


def load_verdicts(cfg: Config) -> pd.DataFrame:
    """Every verdict recorded for this run (one row per chapter, in chapter order)."""
    rows = []
    for path in sorted(cfg.results_path().glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("params") not in (None, cfg.fingerprint()):
            logger.warning("Skipping %s: recorded with other parameters", path)
            continue
        rows.append({k: record.get(k) for k in ("chapter", "claim", "measured", "verdict", "rule")})
    return pd.DataFrame(rows, columns=["chapter", "claim", "measured", "verdict", "rule"])


def deviations(cfg: Config) -> str:
    """Markdown list of every way this run differs from the paper's setup."""
    items = []
    other = [m for m in cfg.models if m not in PAPER_MODELS]
    if other:
        notes = "; ".join(
            f"`{m}`: {MODEL_NOTES.get(m, 'a model the paper did not use')}" for m in other
        )
        items.append(
            f"**Models** differ from the paper's bert-base-cased and xlnet-base-cased: {notes}."
        )
    brown = [t for t in cfg.tasks if t in BROWN_TASKS]
    if brown:
        items.append(
            f"**Tasks** {', '.join(f'`{t}`' for t in brown)} come from the Brown corpus (gold POS tags "
            "and genres; document-disjoint train/dev/test files), standing in for the paper's POS (WSJ), "
            "SEM, CCG, chunking and GLUE tasks, none of which can be downloaded here."
        )
    for task in cfg.token_tasks:
        opts = cfg.task_options.get(task, {})
        train = opts.get("train_tokens", 150_000)
        if train is not None and train < 150_000:
            items.append(f"`{task}`: first {train:,} training tokens instead of 150,000.")
        caps = {k: v for k, v in opts.items() if k in ("dev_tokens", "test_tokens") and v}
        if caps:
            items.append(
                f"`{task}`: dev/test capped ({', '.join(f'{k} = {v:,}' for k, v in caps.items())}) instead of the whole splits."
            )
    for task in cfg.sentence_tasks:
        caps = {
            k: v
            for k, v in cfg.task_options.get(task, {}).items()
            if k.endswith("_sentences") and v
        }
        if caps:
            items.append(
                f"`{task}`: splits capped ({', '.join(f'{k} = {v:,}' for k, v in caps.items())})."
            )
    if cfg.sentence_tasks:
        if not cfg.finetune:
            items.append(
                "Sentence-task features come from the pretrained models; the paper fine-tunes first."
            )
        else:
            if cfg.finetune_max_train_sentences:
                items.append(
                    f"Fine-tuning uses at most {cfg.finetune_max_train_sentences:,} training sentences (paper: the whole training set)."
                )
            if cfg.finetune_epochs != 3:
                items.append(f"Fine-tuning runs {cfg.finetune_epochs} epoch(s) (paper: 3).")
    paper = Config()
    for name in (
        "probe_epochs",
        "probe_lr",
        "probe_l1",
        "probe_l2",
        "probe_batch_size",
        "thresholds",
        "cc_threshold",
        "delta",
        "delta_pairs",
        "representative",
        "aggregation",
    ):
        if getattr(cfg, name) != getattr(paper, name):
            items.append(f"`{name}` = {getattr(cfg, name)!r} (paper: {getattr(paper, name)!r}).")
    if cfg.timing_probe_instances < 100_000:
        items.append(
            f"Probe timing on {cfg.timing_probe_instances:,} instances, scaled linearly to the paper's 100,000."
        )
    if not items:
        return "This run uses the paper's setup."
    return "\n".join(f"- {item}" for item in items)


def cc_sweep(model: str, task_name: str, cfg: Config, *, progress: bool = True) -> pd.DataFrame:
    """Correlation clustering at every threshold of ``cfg.thresholds``, with probe scores.

    For each threshold: clusters, one representative per cluster
    (``cfg.representative``, seeded by ``cfg.random_state``), and the paper's probe trained
    on the kept neurons (all thresholds together).

    Returns
    -------
    DataFrame
        One row per threshold: ``threshold``, ``n_clusters``, ``n_kept``, ``n_neurons``,
        ``percent_removed``, ``largest_cluster``, ``dev``, ``test``.
    """
    from ..analysis import clustering

    key = _probe_key(
        "cc_sweep",
        model,
        task_name,
        cfg,
        modules=("probes", "similarity", "clustering"),
        thresholds=list(cfg.thresholds),
        representative=cfg.representative,
    )

    def compute():
        task, splits = _probe_data(model, task_name, cfg)
        corr = neuron_correlation(model, task_name, cfg)
        Z = clustering.correlation_linkage(corr)
        d = corr.shape[0]
        rows, subsets = [], {}
        for t in cfg.thresholds:
            labels = clustering.cluster_neurons(None, t, Z=Z)
            kept = clustering.select_representatives(
                labels, method=cfg.representative, random_state=cfg.random_state, corr=corr
            )
            subsets[f"t={t:g}"] = kept
            sizes = np.bincount(labels)
            rows.append(
                {
                    "threshold": t,
                    "n_clusters": int((sizes > 0).sum()),
                    "n_kept": int(kept.size),
                    "n_neurons": d,
                    "percent_removed": 100.0 * (1 - kept.size / d),
                    "largest_cluster": int(sizes.max()),
                }
            )
        _, dev, test = _train_and_score(task, splits, subsets, cfg, progress=progress)
        for row, name in zip(rows, subsets):
            row["dev"], row["test"] = dev[name], test[name]
        return rows

    return pd.DataFrame(_cached_json("cc_sweep", key, compute))


def cluster_windows_for(
    model: str, task_name: str, cfg: Config, threshold: float | None = None
) -> pd.DataFrame:
    """Window (layers spanned) and size of every cluster at ``threshold`` (default
    ``cfg.cc_threshold``), from :func:`redundancy.clustering.cluster_windows`.

    Returns
    -------
    DataFrame
        One row per cluster: ``window``, ``size``; column ``n_layers`` repeats the model's
        number of layers (the largest possible window).
    """
    from ..analysis import clustering

    threshold = cfg.cc_threshold if threshold is None else float(threshold)
    key = _key(
        "windows",
        ("similarity", "clustering"),
        features=_model_key(model, task_name, cfg),
        threshold=threshold,
    )

    def compute():
        acts = get_activations(model, task_name, "train", cfg)
        labels = clustering.cluster_neurons(neuron_correlation(model, task_name, cfg), threshold)
        return {
            "window": clustering.cluster_windows(labels, acts.n_hidden),
            "size": np.unique(labels, return_counts=True)[1],
            "n_layers": np.array(acts.n_layers),
        }

    arrays = _cached_npz("windows", key, compute)
    return pd.DataFrame(
        {"window": arrays["window"], "size": arrays["size"], "n_layers": int(arrays["n_layers"])}
    )


def selected_layers(scores: pd.DataFrame, delta: float) -> pd.DataFrame:
    """LayerSelector on :func:`layer_probe_scores` tables (with ``model`` and ``task`` columns).

    Returns
    -------
    DataFrame
        Indexed by (model, task): ``selected layer`` (:func:`redundancy.transfer.select_layer`
        on the incremental dev scores), ``last layer``, ``oracle dev``, ``dev at selected``,
        ``test at selected``, ``oracle test``.
    """
    from ..analysis.transfer import select_layer

    rows = []
    for (model, task), part in scores.groupby(["model", "task"], sort=False):
        inc = part[part["kind"] == "incremental"].sort_values("layer")
        oracle = part[part["kind"] == "oracle"].iloc[0]
        layer = select_layer(inc["dev"].to_numpy(), float(oracle["dev"]), delta)
        at = inc[inc["layer"] == layer].iloc[0]
        rows.append(
            {
                "model": model,
                "task": task,
                "selected layer": int(layer),
                "last layer": int(inc["layer"].max()),
                "oracle dev": float(oracle["dev"]),
                "dev at selected": float(at["dev"]),
                "oracle test": float(oracle["test"]),
                "test at selected": float(at["test"]),
            }
        )
    return pd.DataFrame(rows).set_index(["model", "task"])


def neuron_ranking(model: str, task_name: str, cfg: Config) -> np.ndarray:
    """Global neuron ids in LCA order of the oracle probe's weights (most important first)."""
    from ..analysis.ranking import rank_neurons

    return rank_neurons(oracle_probe(model, task_name, cfg))


def minimal_set_for(model: str, task_name: str, cfg: Config, *, progress: bool = True) -> dict:
    """Minimal set of top-ranked neurons keeping the oracle's dev score within ``cfg.delta``.

    Returns
    -------
    dict
        ``n_neurons``, ``n_total``, ``percent`` (of all neurons), ``passed``, ``dev``,
        ``test`` (of the minimal-set probe), ``oracle_dev``, ``oracle_test``, ``curve``
        (DataFrame ``percent``, ``k``, ``dev`` for every size tried) and ``layer_share``
        (fraction of the set in each layer).
    """
    from ..analysis import probes, ranking

    key = _probe_key(
        "minimal_set", model, task_name, cfg, modules=("probes", "ranking"), delta=cfg.delta
    )

    def compute():
        task, splits = _probe_data(model, task_name, cfg)
        oracle = oracle_scores(model, task_name, cfg)
        order = neuron_ranking(model, task_name, cfg)
        train = splits["train"]
        pk = cfg.probe_options()
        res = ranking.minimal_set(
            train.X,
            train.labels,
            splits["dev"].X,
            splits["dev"].labels,
            order,
            base_score=oracle["dev"],
            delta=cfg.delta,
            metric=task.metric,
            progress=progress,
            kind=task.kind,
            **pk,
        )
        test = probes.evaluate(
            res.probe, splits["test"].X, splits["test"].labels, task.metric, device=cfg.device
        )
        share = np.bincount(
            np.asarray(res.neurons) // train.n_hidden, minlength=train.n_layers
        ) / max(res.k, 1)
        return {
            "n_neurons": res.k,
            "n_total": train.n_neurons,
            "percent": 100.0 * res.k / train.n_neurons,
            "grid_percent": res.percent,
            "passed": res.passed,
            "dev": res.dev_score,
            "test": test,
            "oracle_dev": oracle["dev"],
            "oracle_test": oracle["test"],
            "curve": res.curve.rename(columns={"dev_score": "dev"}).to_dict(orient="list"),
            "layer_share": share.tolist(),
        }

    result = _cached_json("minimal_set", key, compute)
    result["curve"] = pd.DataFrame(result["curve"])
    result["layer_share"] = pd.Series(result["layer_share"], name="share")
    return result


def transfer_table(
    model: str, task_name: str, cfg: Config, *, progress: bool = True
) -> pd.DataFrame:
    """LayerSelector + CC + FS for every pair of ``cfg.delta_pairs`` (shared work).

    The incremental probes are those of :func:`layer_probe_scores`.

    Returns
    -------
    DataFrame
        One row per pair: ``delta_ls``, ``delta_fs``, ``layer``, ``n_all``, ``n_ls``,
        ``n_cc``, ``n_fs``, test and dev scores per step (``test_oracle``, ``test_ls``,
        ``test_cc``, ``test_fs``, ``dev_...``), ``reduction`` (% of neurons removed),
        ``percent_kept`` and ``score_kept`` (final test score, % of the oracle's).
    """
    from ..analysis.transfer import IncrementalScores, TransferResult, ccfs_sweep

    key = _probe_key(
        "transfer",
        model,
        task_name,
        cfg,
        modules=("probes", "similarity", "clustering", "ranking", "transfer"),
        pairs=[list(p) for p in cfg.delta_pairs],
        threshold=cfg.cc_threshold,
        representative=cfg.representative,
    )

    def compute():
        task, splits = _probe_data(model, task_name, cfg)
        scores = layer_probe_scores(model, task_name, cfg)
        inc = scores[scores["kind"] == "incremental"].sort_values("layer")
        incremental = IncrementalScores(
            dev=inc["dev"].tolist(), test=inc["test"].tolist(), metric=task.metric
        )
        pk = cfg.probe_options()
        pk["probe_random_state"] = pk.pop("random_state")
        train = splits["train"]
        results = ccfs_sweep(
            train.X,
            train.labels,
            splits["dev"].X,
            splits["dev"].labels,
            splits["test"].X,
            splits["test"].labels,
            deltas=cfg.delta_pairs,
            incremental=incremental,
            n_layers=train.n_layers,
            n_hidden=train.n_hidden,
            threshold=cfg.cc_threshold,
            representative=cfg.representative,
            random_state=cfg.random_state,
            metric=task.metric,
            kind=task.kind,
            progress=progress,
            **pk,
        )
        return [r.to_json() for r in results]

    rows = []
    for text in _cached_json("transfer", key, compute):
        r = TransferResult.from_json(text)
        row = {
            "delta_ls": r.delta_ls,
            "delta_fs": r.delta_fs,
            "layer": r.layer,
            "n_all": r.n_all,
            "n_ls": r.n_ls,
            "n_cc": r.n_cc,
            "n_fs": r.n_fs,
        }
        row.update({f"test_{step}": r.test[step] for step in ("oracle", "ls", "cc", "fs")})
        row.update({f"dev_{step}": r.dev[step] for step in ("oracle", "ls", "cc", "fs")})
        row["reduction"] = r.reduction
        row["percent_kept"] = 100.0 * r.n_fs / r.n_all
        row["score_kept"] = (
            100.0 * r.test["fs"] / r.test["oracle"] if r.test["oracle"] else float("nan")
        )
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
def forward_timing(model: str, cfg: Config, *, progress: bool = True) -> pd.DataFrame:
    """Per-instance forward-pass time when stopping after each layer (cached measurement).

    Times ``cfg.timing_instances`` test sentences of the first task with
    :func:`redundancy.timing.time_forward`. Delete ``cache_dir("results")/timing`` (or change
    a parameter) to measure again.

    Returns
    -------
    DataFrame
        ``layer``, ``ms_per_instance``, ``full_ms_per_instance``, ``speedup``, ``device``, ...
    """
    from .._utils import resolve_device
    from ..analysis.timing import time_forward
    from ..encoders.models import model_identity

    task_name = cfg.tasks[0]
    task = get_task(task_name, cfg)
    sentences = list(task.test.sentences)[: cfg.timing_instances]
    key = _key(
        "forward_timing",
        ("timing",),
        model=model_identity(model),
        task=task.fingerprint("test"),
        n=cfg.timing_instances,
        batch_size=cfg.batch_size,
        device=resolve_device(cfg.device),
    )

    def compute():
        df = time_forward(
            model, sentences, batch_size=cfg.batch_size, device=cfg.device, progress=progress
        )
        return df.to_dict(orient="records")

    df = pd.DataFrame(_cached_json("timing", key, compute))
    df["sentences from"] = f"{task_name} test"
    return df


def probe_timing(cfg: Config, *, progress: bool = True) -> pd.DataFrame:
    """Seconds to train the paper's probe (``cfg.probe_epochs`` epochs, 2 classes) on
    ``cfg.timing_probe_instances`` synthetic instances for each of ``cfg.timing_features``
    feature counts (:func:`redundancy.timing.time_probe`; cached measurement).

    Returns
    -------
    DataFrame
        ``n_features``, ``seconds``, ``n_instances``, ``n_classes``, ``epochs``, ``device``.
    """
    from .._utils import resolve_device
    from ..analysis.timing import time_probe

    key = _key(
        "probe_timing",
        ("timing", "probes"),
        features=list(cfg.timing_features),
        n=cfg.timing_probe_instances,
        epochs=cfg.probe_epochs,
        device=resolve_device(cfg.device),
    )

    def compute():
        df = time_probe(
            cfg.timing_features,
            n_instances=cfg.timing_probe_instances,
            epochs=cfg.probe_epochs,
            random_state=cfg.random_state,
            device=cfg.device,
            progress=progress,
        )
        return df.to_dict(orient="records")

    return pd.DataFrame(_cached_json("timing", key, compute))
