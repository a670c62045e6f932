"""The parameters of one run of the book: :class:`Config`.

One flat set of parameters is shared by every chapter. Each parameter's bound is the
declarative constraint of :mod:`redundancy.constraints` that the library function using it
checks too, so a parameter file is refused before any work for exactly the values the
library would refuse later. Parameter files are YAML (``params/NAME.yaml``); notebooks hold
the same names in their ``parameters`` cell and papermill may override them.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .._utils import cache_dir, checkout_root, stable_hash
from ..constraints import (
    PARAMS,
    Boolean,
    Constraint,
    ListOf,
    Options,
    Text,
    _Bad,
    check_seeds,
    cuda_problem,
    load_yaml,
    parse_list,
)
from .paper import PAPER

__all__ = ["Config", "CONSTRAINTS", "resolve_params"]

# Parameter -> the constraint that checks it (the library's own, where a library function
# takes the value). Order = the order of the fields and of every params/*.yaml file.
CONSTRAINTS: dict[str, Constraint] = {
    "models": ListOf(Text(), min_len=1),
    "token_tasks": ListOf(Text()),
    "sentence_tasks": ListOf(Text()),
    "task_options": None,  # checked against each task's own options
    "data_dir": None,
    "aggregation": PARAMS["aggregation"],
    "pooling": PARAMS["pooling"],
    "dtype": PARAMS["dtype"],
    "max_length": PARAMS["max_length"],
    "batch_size": PARAMS["batch_size"],
    "finetune": Boolean(),
    "finetune_max_train_sentences": PARAMS["max_train_sentences"],
    "finetune_epochs": PARAMS["epochs"],
    "probe_epochs": PARAMS["epochs"],
    "probe_lr": PARAMS["learning_rate"],
    "probe_l1": PARAMS["l1"],
    "probe_l2": PARAMS["l2"],
    "probe_batch_size": PARAMS["batch_size"],
    "probe_dtype": PARAMS["compute_dtype"],
    "thresholds": ListOf(PARAMS["threshold"], min_len=1),
    "cc_threshold": PARAMS["threshold"],
    "delta": PARAMS["delta"],
    "delta_pairs": ListOf(PARAMS["delta_pair"], min_len=1),
    "representative": PARAMS["representative"],
    "random_state": PARAMS["random_state"],
    "n_seeds": PARAMS["n_seeds"],
    "control_tasks": Boolean(),
    "n_bootstrap": PARAMS["n_bootstrap"],
    "confidence": PARAMS["confidence"],
    "device": Options(("cpu", "cuda"), optional=True),
    "timing_instances": PARAMS["instances"],
    "timing_repeats": PARAMS["repeats"],
    "timing_features": ListOf(PARAMS["n_features"], min_len=1),
    "timing_probe_instances": PARAMS["instances"],
    "results_dir": Text(optional=True),
    "recompute": Boolean(),
}

_NOT_IN_FINGERPRINT = ("results_dir", "recompute")


@dataclass
class Config:
    """Validated parameters of one run of the book.

    The defaults are the paper's hyper-parameters (probe: Adam lr 1e-3, batch 128, 10 epochs,
    λ1 = λ2 = 1e-5; correlation clustering at t = 0.3, sweep 0.1 … 0.9; δ = 1; LayerSelector +
    CC + FS with (δ_LS, δ_FS) ∈ {(3, 1), (2, 1), (1, 1)}; fine-tuning on the whole training
    set) and this project's measurement protocol (3 seeds, control tasks, 1,000 bootstrap
    resamples). ``params/default.yaml`` sets the sizes the default book runs at.

    Parameters
    ----------
    models : list of str
        ``"minilm"``, ``"mpnet"``, a local model folder, a Hugging Face id, or a folder of
        activations extracted elsewhere (see ``docs/interop.md``).
    token_tasks, sentence_tasks : list of str
        Task names (``python -m redundancy tasks``); each must be of the kind of its list.
    task_options : dict
        Per task of the run, options of :func:`redundancy.data.tasks.load_task` (size caps
        such as ``train_tokens``, ``dev_tokens``, ``train_sentences``, ...).
    data_dir : dict
        Per task of the run, the folder holding its files (the paper's tasks); Brown needs none.
    aggregation, pooling, dtype, max_length, batch_size : extraction options
        Passed to :func:`redundancy.encoders.extract.extract`.
    finetune : bool
        Fine-tune each model on each sentence task before extracting (the paper does).
    finetune_max_train_sentences : int or None
        Cap on fine-tuning sentences (None: the whole training split, as in the paper).
    finetune_epochs : int
        Fine-tuning epochs (paper: 3).
    probe_epochs, probe_lr, probe_l1, probe_l2, probe_batch_size : probe hyper-parameters
        The paper's elastic-net logistic-regression probe.
    probe_dtype : {"float32", "bfloat16"}
        Precision of the probes' matrix products (float32: the paper's).
    thresholds : list of float
        Distance thresholds of the correlation-clustering sweep.
    cc_threshold : float
        Threshold of correlation clustering in the transfer pipeline (paper: 0.3).
    delta : float
        Tolerated loss in percent for the minimal neuron set (paper: 1).
    delta_pairs : list of [δ_LS, δ_FS]
        Tolerances of LayerSelector and feature selection in the transfer pipeline.
    representative : {"random", "central"}
        How one neuron per cluster is kept (paper: random).
    random_state : int
        First seed; seed ``i`` is ``random_state + i``.
    n_seeds : int
        Seeds of the headline quantities (probe initialisation, cluster representatives).
    control_tasks : bool
        Train every probe on a control task too (Hewitt & Liang, 2019) and report selectivity.
    n_bootstrap : int
        Bootstrap resamples of the test sentences for score intervals (0: none).
    confidence : float
        Level of the intervals (0.95).
    device : {"cpu", "cuda"} or None
        None picks the GPU when there is one.
    timing_instances, timing_repeats : int
        Sentences timed in the forward-pass measurement, and timed repeats per layer.
    timing_features : list of int
        Feature counts of the probe-training measurement.
    timing_probe_instances : int
        Instances of the probe-training measurement (paper: 100,000).
    results_dir : str or None
        Folder where chapters record their verdicts; the book runner sets it.
    recompute : bool
        Recompute every cached result this process asks for (once per process).
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
    finetune_epochs: int = PAPER.finetune["epochs"]
    probe_epochs: int = PAPER.probe["epochs"]
    probe_lr: float = PAPER.probe["lr"]
    probe_l1: float = PAPER.probe["l1"]
    probe_l2: float = PAPER.probe["l2"]
    probe_batch_size: int = PAPER.probe["batch_size"]
    probe_dtype: str = "float32"
    thresholds: tuple = PAPER.thresholds
    cc_threshold: float = PAPER.cc_threshold
    delta: float = PAPER.delta
    delta_pairs: tuple = PAPER.delta_pairs
    representative: str = PAPER.representative
    random_state: int = 42
    n_seeds: int = 3
    control_tasks: bool = True
    n_bootstrap: int = 1000
    confidence: float = 0.95
    device: str | None = None
    timing_instances: int = 1000
    timing_repeats: int = 5
    timing_features: tuple = (100, 1000, PAPER.n_features)
    timing_probe_instances: int = PAPER.probe_timing["instances"]
    results_dir: str | None = None
    recompute: bool = False

    def __post_init__(self):
        for name, constraint in CONSTRAINTS.items():
            if constraint is not None:
                setattr(self, name, constraint.validate(getattr(self, name), name, "Config"))
        self.thresholds = tuple(sorted(self.thresholds))
        check_seeds(self.random_state, self.n_seeds, "Config")
        self._check_tasks()
        self.task_options = self._per_task("task_options", self.task_options, dict)
        self.data_dir = self._per_task("data_dir", self.data_dir, str)
        from ..data.tasks import check_task_options

        for task, options in self.task_options.items():
            try:
                check_task_options(task, options)
            except ValueError as e:
                raise ValueError(f"The 'task_options' of task {task!r} in Config: {e}") from None

    def _check_tasks(self) -> None:
        from ..data.tasks import TASKS, task_level

        if not (self.token_tasks or self.sentence_tasks):
            raise ValueError(
                "Config needs at least one task: 'token_tasks' and 'sentence_tasks' are both "
                "empty. Add e.g. token_tasks: [brown-pos]."
            )
        for name, level in (("token_tasks", "token"), ("sentence_tasks", "sentence")):
            for task in getattr(self, name):
                if task not in TASKS:
                    raise ValueError(
                        f"The {name!r} parameter of Config names an unknown task {task!r}. "
                        f"Valid tasks: {', '.join(TASKS)}."
                    )
                if task_level(task) != level:
                    other = "sentence_tasks" if level == "token" else "token_tasks"
                    raise ValueError(
                        f"The task {task!r} is a {task_level(task)}-level task: list it under "
                        f"{other!r}, not {name!r}."
                    )

    def _per_task(self, name: str, value, kind) -> dict:
        """A mapping whose keys must be tasks of this run (a typo would be silently ignored)."""
        from ..data.tasks import TASKS

        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError(
                f"The {name!r} parameter of Config must be a mapping from task name to "
                f"{'options' if kind is dict else 'folder'}, or None. Got {value!r} instead."
            )
        out = {}
        for task, item in value.items():
            if task not in self.tasks:
                close = difflib.get_close_matches(str(task), self.tasks, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"The {name!r} parameter of Config has an entry for {task!r}{hint}, which is "
                    f"not a task of this run ({', '.join(self.tasks)})."
                )
            if kind is dict and not isinstance(item, Mapping):
                raise ValueError(
                    f"The 'task_options' of task {task!r} in Config must be a mapping of "
                    f"option -> value. Got {item!r} instead."
                )
            if kind is str and not (isinstance(item, (str, os.PathLike)) and str(item).strip()):
                raise ValueError(
                    f"The 'data_dir' of task {task!r} in Config must be a folder. Got {item!r}."
                )
            if kind is str and not TASKS[task].needs_data:
                raise ValueError(
                    f"The 'data_dir' parameter of Config has an entry for {task!r}, which reads "
                    "the Brown corpus from the cache (python -m redundancy fetch-data) and takes "
                    f"no folder: remove '{task}' from data_dir."
                )
            out[task] = dict(item) if kind is dict else str(item)
        return out

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
        try:
            return cls(**dict(params))
        except ValueError as e:
            if source == "parameters":
                raise
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> Config:
        """Read a ``params/NAME.yaml`` file (a flat mapping of parameter -> value).

        YAML syntax errors name the file, line and column; an empty file is refused (it
        would otherwise silently run the paper-scale defaults).
        """
        path = resolve_params(path)
        data = load_yaml(path, what="a parameter file")
        if data is None:
            raise ValueError(
                f"{path} is empty: a parameter file must set at least 'models' and the tasks "
                "(copy params/default.yaml and edit it)."
            )
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_namespace(cls, namespace: Mapping) -> Config:
        """Validate the parameters a notebook holds as globals (after papermill injected its own).

        Call it in the cell right after the ``parameters`` cell, with ``globals()``: every
        global holding a plain value (None, bool, number, str, list, tuple, dict) that is not
        private or IPython's own is taken as a parameter, so a mistyped
        ``papermill -p probe_epoch 1`` is refused here.
        """
        ignore = {"In", "Out", "get_ipython", "exit", "quit", "open"}
        plain = (type(None), bool, int, float, str, list, tuple, dict)
        params = {
            k: v
            for k, v in namespace.items()
            if not k.startswith("_") and k not in ignore and isinstance(v, plain)
        }
        try:
            cfg = cls.from_dict(params, source="the notebook's parameters")
        except ValueError as exc:
            if "Unknown parameter" not in str(exc):
                raise
            raise ValueError(
                f"{exc} (Re-running this cell after later cells in JupyterLab also triggers this: "
                "restart the kernel and run the notebook from the top.)"
            ) from None
        problem = cuda_problem(cfg.device)  # papermill -p device cuda on a machine without it
        if problem:
            raise ValueError(f"The 'device' parameter of the notebook: {problem}")
        if cfg.recompute:
            from .cache import recompute_from_now

            recompute_from_now()
        return cfg

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
        """Hash of every parameter that changes a result (not ``results_dir``, ``recompute``)."""
        d = self.to_dict()
        for name in _NOT_IN_FINGERPRINT:
            d.pop(name)
        return stable_hash(d)

    # ---- helpers used by the steps -------------------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        """Token tasks, then sentence tasks."""
        return tuple(self.token_tasks) + tuple(self.sentence_tasks)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds of the run: ``random_state``, ``random_state + 1``, ..."""
        return tuple(self.random_state + i for i in range(self.n_seeds))

    def results_path(self) -> Path:
        """Folder of this run's verdicts (created)."""
        path = (
            Path(self.results_dir) if self.results_dir else cache_dir("runs") / self.fingerprint()
        )
        path.mkdir(parents=True, exist_ok=True)
        return path

    def probe_options(self) -> dict:
        """Keyword arguments of :func:`redundancy.analysis.probes.train_probes` (no seed)."""
        options = {
            "epochs": self.probe_epochs,
            "lr": self.probe_lr,
            "l1": self.probe_l1,
            "l2": self.probe_l2,
            "batch_size": self.probe_batch_size,
            "device": self.device,
        }
        if self.probe_dtype != "float32":
            options["compute_dtype"] = self.probe_dtype
        return options

    def extract_options(self) -> dict:
        """Keyword arguments of :func:`redundancy.encoders.extract.extract`."""
        return {
            "aggregation": self.aggregation,
            "pooling": self.pooling,
            "dtype": self.dtype,
            "max_length": self.max_length,
            "batch_size": self.batch_size,
            "device": self.device,
        }

    def missing_inputs(self) -> list[str]:
        """One line per model or data folder this configuration needs but cannot find, and
        for a ``device`` this machine does not have.

        Lines say how to obtain the missing item. An empty list means every input is there.
        """
        from ..data.tasks import TASKS

        missing = [p for p in (self._model_problem(m) for m in self.models) if p]
        device = cuda_problem(self.device)  # this machine: checked before any work, not in Config
        if device:
            missing.insert(0, device)
        for task in self.tasks:
            if not TASKS[task].needs_data:
                continue
            folder = self.data_dir.get(task)
            how = TASKS[task].description
            if task.startswith("glue-"):
                from ..data.formats import GLUE_URL

                how += f"; get GLUE from {GLUE_URL}"
            if not folder:
                missing.append(
                    f"task {task!r}: no data_dir given; set data_dir: {{{task}: FOLDER}} with {how}"
                )
            elif not Path(os.path.expanduser(folder)).exists():
                missing.append(
                    f"task {task!r}: data_dir {folder!r} does not exist; it must hold {how}"
                )
        return missing

    def _model_problem(self, model: str) -> str | None:
        """Why a model of the run cannot be used, or None; an activation set must hold
        every split of every task of the run."""
        from ..encoders.interop import is_activation_set, open_activation_set
        from ..encoders.models import model_problem

        if not is_activation_set(model):
            return model_problem(model)
        try:
            aset = open_activation_set(model)
        except (ValueError, FileNotFoundError) as exc:
            return f"model {model!r}: {exc}"
        lacking = [
            f"{t}/{s}"
            for t in self.tasks
            for s in ("train", "dev", "test")
            if s not in aset.splits(t)
        ]
        if lacking:
            return f"activation set {model!r} has no activations for {', '.join(lacking)}"
        return None

    def check_inputs(self) -> None:
        """Raise one FileNotFoundError naming every missing model and data folder."""
        missing = self.missing_inputs()
        if missing:
            lines = "\n  - ".join(missing)
            raise FileNotFoundError(
                f"{len(missing)} input(s) of this configuration are missing:\n  - {lines}\n"
                "Fix the paths in the parameter file (or pass them with papermill -p / -y) and rerun."
            )


def resolve_params(path: str | os.PathLike) -> Path:
    """The parameter file ``path`` names: as given (relative to the current folder), else
    relative to the checkout the library runs from, so ``params/tiny.yaml`` works from any
    folder. The error names every place looked in and the files the params folder holds."""
    given = Path(path).expanduser()
    places = [given]
    root = checkout_root()
    if not given.is_absolute() and root is not None:
        places.append(root / given)
    for place in places:
        if place.is_file():
            return place
    shown = dict.fromkeys(str(p.absolute()) for p in places)  # once each, in order
    looked = " and ".join(repr(p) for p in shown)
    folder = (root / "params") if root is not None else None
    known = sorted(p.name for p in folder.glob("*.yaml")) if folder and folder.is_dir() else []
    hint = f"; {folder} holds {', '.join(known)}" if known else ""
    raise FileNotFoundError(
        f"Parameter file {str(path)!r} does not exist: looked at {looked}{hint}."
    )


def as_list(value) -> list:
    """A list parameter as people pass it (see :func:`redundancy.constraints.parse_list`)."""
    try:
        return parse_list(value)
    except _Bad:
        raise ValueError(f"Expected a list, got {value!r}.") from None
