"""The book's steps as a task graph: :func:`plan` lists them, :func:`run` computes them.

:func:`plan` lists every result one parameter set needs, exactly as the chapters ask for
them (the same step, the same arguments), with what each needs first:

* fine-tuning per (model, sentence task) -> extraction per (model, task, split);
* layer probes per (model, task) -> correlation-clustering sweep, minimal neuron sets and
  transfer per (model, task);
* CKA per model on the training and test samples, pretrained against fine-tuned and
  between two models (chapter 2); cluster windows (chapter 3);
* forward timing per model and probe timing (chapter 7), last.

:func:`run` computes them, in this process in dependency order (what the chapters would do
one after the other), or on a ``dask.distributed`` cluster. Each job calls the step function
with the run's :class:`~redundancy.report.config.Config`, so results go to the shared
result cache (:mod:`redundancy.report.cache`) under the keys the chapters compute, behind
its per-key locks and atomic writes; after a run the book renders from the cache without
computing anything. The workers therefore need the cache folder (``REDUNDANCY_CACHE``) on
a filesystem they all see, and the same library source; every job checks both.

Timing jobs run alone. Each depends on every other job of the run and on the timing job
before it, so no job of the run runs while one is measured; by default a Dask run measures
them in the client process once the cluster's jobs are done (``timing_on="client"``: the
machine and thread count the book would measure with in-process; Dask starts its workers
with one BLAS thread each), or on a worker (``"cluster"``, for a client on a login node).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .._utils import check_choice
from .config import Config

logger = logging.getLogger(__name__)

__all__ = ["Job", "PipelineError", "plan", "run"]

_STEPS = "redundancy.report.steps"
_ENV_PASSED = (
    "REDUNDANCY_RECOMPUTE_SINCE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "NLTK_DATA",
)
"""Variables of the client's environment that jobs on workers run with (those set), besides
``REDUNDANCY_CACHE``; ``REDUNDANCY_RECOMPUTE_SINCE`` is also unset there when unset here."""
_WORKER_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}
"""What jobs on Dask workers run with: no progress bars on the workers' terminals."""
_TABLE = ["job", "step", "status", "seconds", "computed", "worker", "result", "started", "finished"]


class PipelineError(RuntimeError):
    """Some jobs failed; ``table`` is the run's table (statuses ``failed`` and ``skipped``)."""

    def __init__(self, message: str, table: pd.DataFrame):
        super().__init__(message)
        self.table = table


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One step call of the book: ``target(*args, cfg, **kwargs)``.

    Attributes
    ----------
    name : str
        Unique within a plan, e.g. ``"layer_probes minilm / brown-pos"``.
    step : str
        The stage: ``finetune``, ``extract``, ``cka``, ``cross_cka``, ``layer_probes``,
        ``cc_sweep``, ``windows``, ``minimal_sets``, ``transfer``, ``forward_timing``,
        ``probe_timing``.
    target : str
        ``"module:function"`` of the step function.
    args : tuple
        Arguments before the Config.
    kwargs : tuple of (name, value)
        Keyword arguments.
    deps : tuple of str
        Names of the jobs that must finish first.
    gpu : bool
        Worth a GPU: asks for a ``GPU`` resource when some worker declares one.
    exclusive : bool
        A measurement: runs when no other job of the run does.
    """

    name: str
    step: str
    target: str
    args: tuple = ()
    kwargs: tuple = ()
    deps: tuple = ()
    gpu: bool = False
    exclusive: bool = False

    def call(self, cfg: Config):
        """Run the step function with ``cfg``; returns what it returns."""
        module, _, function = self.target.partition(":")
        fn = getattr(importlib.import_module(module), function)
        return fn(*self.args, cfg, **dict(self.kwargs))


@dataclass
class _Planner:
    cfg: Config
    jobs: dict = field(default_factory=dict)

    def add(self, name, step, target, args=(), kwargs=None, deps=(), gpu=False) -> str:
        if name not in self.jobs:
            kw = tuple(sorted((kwargs or {}).items()))
            self.jobs[name] = Job(name, step, target, tuple(args), kw, tuple(deps), gpu)
        return name

    def finetune(self, model: str, task: str) -> str:
        return self.add(
            f"finetune {model} / {task}",
            "finetune",
            "redundancy.report.features:finetuned_model",
            (model, task),
            {"progress": False},
            gpu=True,
        )

    def extract(self, model: str, task: str, split: str, finetuned: bool | None = None) -> str:
        """The extraction of the features ``(model, task)`` of a chapter's call, by source."""
        from .features import source_of

        source = source_of(model, task, self.cfg, finetuned)
        deps = (self.finetune(model, task),) if source.finetuned_on else ()
        return self.add(
            f"extract {source.label} / {task} / {split}",
            "extract",
            "redundancy.report.features:get_activations",
            (model, task, split),
            {"finetuned": source.finetuned_on is not None, "progress": False},
            deps,
            gpu=True,
        )

    def splits(self, model: str, task: str) -> tuple:
        return tuple(self.extract(model, task, s) for s in ("train", "dev", "test"))

    def cka(self, model: str, task: str, split: str = "train", finetuned: bool = False) -> str:
        tag = "fine-tuned" if finetuned else "pretrained"
        return self.add(
            f"cka {model} ({tag}) / {task} / {split}",
            "cka",
            f"{_STEPS}.layers:layer_cka",
            (model, task),
            {"finetuned": finetuned, "split": split},
            (self.extract(model, task, split, finetuned),),
        )

    def per_task(self, step: str, target: str, model: str, task: str, deps) -> str:
        return self.add(f"{step} {model} / {task}", step, target, (model, task), {}, deps, True)

    def layer_probes(self, model: str, task: str) -> str:
        return self.per_task(
            "layer_probes",
            f"{_STEPS}.layers:layer_probe_scores",
            model,
            task,
            self.splits(model, task),
        )

    def call(self, c) -> str | None:
        """Add a chapter's :class:`~redundancy.report.chapters.Call` with what it needs
        first, derived from its stage; timing calls are left to :func:`_timing`."""
        kw = dict(c.kwargs)
        if c.step == "extract":
            model, task, split = c.args
            return self.extract(model, task, split)
        if c.step in ("forward_timing", "probe_timing"):
            return None
        if c.step == "layer_probes":
            return self.layer_probes(*c.args)
        if c.step in ("cc_sweep", "minimal_sets", "transfer"):
            model, task = c.args
            return self.per_task(c.step, c.target, model, task, (self.layer_probes(model, task),))
        if c.step in ("cka", "cka_uncertainty"):
            model, task = c.args
            finetuned, split = bool(kw.get("finetuned", False)), kw.get("split", "train")
            if c.step == "cka":
                return self.cka(model, task, split, finetuned)
            tag = "fine-tuned" if finetuned else "pretrained"
            return self.add(
                f"cka_uncertainty {model} ({tag}) / {task} / {split}",
                c.step,
                c.target,
                (model, task),
                kw,
                (self.extract(model, task, split, finetuned),),
            )
        if c.step == "cross_cka":
            a, b, task = c.args
            deps = (self.extract(a, task, "train", False), self.extract(b, task, "train", False))
            return self.add(f"cross_cka {a} vs {b} / {task}", c.step, c.target, c.args, kw, deps)
        if c.step == "windows":
            model, task = c.args
            deps = (self.extract(model, task, "train"),)
            return self.add(f"windows {model} / {task}", c.step, c.target, c.args, kw, deps)
        if c.step == "removal":  # loads its model and the Brown text itself
            function = c.target.rpartition(":")[2]
            name = f"{function} {' / '.join(map(str, c.args))}"
            deps = ()
            if function == "encoder_removal":  # a sentence task's fine-tuned model first
                from .features import source_of

                model, task = c.args
                if source_of(model, task, self.cfg).finetuned_on:
                    deps = (self.finetune(model, task),)
            return self.add(name, c.step, c.target, c.args, kw, deps)
        raise ValueError(f"The pipeline does not know the stage {c.step!r} of a chapter's call.")


def _timing(p: _Planner, cfg: Config) -> None:
    """Chapter 7's calls, after everything else and one after another (see the module
    docstring)."""
    from .chapters import chapter

    before = tuple(p.jobs)
    for c in chapter("07-timing").calls(cfg):
        name = " ".join([c.step, *map(str, c.args)])
        p.jobs[name] = Job(name, c.step, c.target, c.args, c.kwargs, before, True, True)
        before = (name,)


def plan(cfg: Config) -> list[Job]:
    """Every result the book's chapters ask for with these parameters, as jobs: the calls
    each chapter declares (:data:`redundancy.report.chapters.CHAPTERS`), flattened, with
    what each needs first.

    Cheap and free of side effects beyond hashing model files: nothing is trained,
    extracted or computed.

    Parameters
    ----------
    cfg : Config

    Returns
    -------
    list of Job
        In dependency order: every job comes after the jobs it names in ``deps``; the
        timing jobs come last, each depending on everything before it.
    """
    from .chapters import CHAPTERS

    p = _Planner(cfg)
    for ch in CHAPTERS.values():
        for c in ch.calls(cfg):
            p.call(c)
    _timing(p, cfg)
    return list(p.jobs.values())


# --------------------------------------------------------------------------------------------
# running one job (in this process or on a worker)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    """What every job of one run checks and sets before calling its step."""

    token: str
    cache: str
    env: tuple
    library: str


_COUNTED = {
    "redundancy.report.cache": "computed %s",
    "redundancy.encoders.extract": "extracted %s",
    "redundancy.encoders.finetune": "fine-tuned %s on",
}
"""Loggers and the message each logs (at INFO) when it computes rather than reads a result."""


class _ComputedCounter(logging.Filter):
    """Counts, per thread, the results computed (not read from a cache) while it is on."""

    def __init__(self):
        super().__init__()
        self.counts: dict[int, int] = {}
        self.users = 0
        self.levels: dict[str, tuple] = {}  # logger -> (effective level, own level) before

    def filter(self, record) -> bool:
        if str(record.msg).startswith(_COUNTED.get(record.name, "\0")):
            key = threading.get_ident()
            self.counts[key] = self.counts.get(key, 0) + 1
        return record.levelno >= self.levels.get(record.name, (0,))[0]


_COUNTER = _ComputedCounter()
_COUNTER_LOCK = threading.Lock()


def _counter_on(on: bool) -> None:
    """Attach the counter to the loggers of :data:`_COUNTED` (lowered to INFO; records below
    the level they had are counted, then dropped), or detach it and restore the levels."""
    for name in _COUNTED:
        log = logging.getLogger(name)
        if on:
            _COUNTER.levels[name] = (log.getEffectiveLevel(), log.level)
            log.setLevel(min(logging.INFO, log.getEffectiveLevel()))
            log.addFilter(_COUNTER)
        else:
            log.removeFilter(_COUNTER)
            log.setLevel(_COUNTER.levels.pop(name)[1])


@contextlib.contextmanager
def _counting():
    """``{thread id: results computed}`` for the duration of the block."""
    with _COUNTER_LOCK:
        if _COUNTER.users == 0:
            _counter_on(True)
        _COUNTER.users += 1
    _COUNTER.counts[threading.get_ident()] = 0
    try:
        yield _COUNTER.counts
    finally:
        with _COUNTER_LOCK:
            _COUNTER.users -= 1
            if _COUNTER.users == 0:
                _counter_on(False)


def _set_environment(env: dict) -> None:
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_ENV_LOCK = threading.Lock()
_ENV_SAVED: dict = {}  # what the process had before the first job that is still running
_ENV_USERS = [0]


@contextlib.contextmanager
def _environment(env: dict):
    """Set ``env`` (None unsets) while jobs run; the process's own values come back when the
    last running job ends (jobs of one run set the same values, in any of a worker's threads)."""
    with _ENV_LOCK:
        for key in env:
            _ENV_SAVED.setdefault(key, os.environ.get(key))
        _ENV_USERS[0] += 1
        _set_environment(env)
    try:
        yield
    finally:
        with _ENV_LOCK:
            _ENV_USERS[0] -= 1
            if _ENV_USERS[0] == 0:
                _set_environment(_ENV_SAVED)
                _ENV_SAVED.clear()


def _describe(value) -> str:
    """A few words on a step's result for the run's table."""
    if isinstance(value, pd.DataFrame):
        return f"{len(value)} rows"
    if hasattr(value, "acts") and hasattr(value, "n_instances"):
        return "x".join(str(s) for s in value.acts.shape)
    if hasattr(value, "shape"):
        return "x".join(str(s) for s in value.shape)
    if isinstance(value, dict):
        return f"{len(value)} entries"
    if isinstance(value, (str, os.PathLike)):
        return Path(value).name
    return type(value).__name__


def _check_worker(context: _Context) -> None:
    """Refuse to compute where the cache or the library differs from the client's."""
    from .book import library_source_hash

    where = f"{socket.gethostname()} (pid {os.getpid()})"
    marker = Path(context.cache) / "pipeline" / f"{context.token}.run"
    if not marker.is_file():
        raise RuntimeError(
            f"The worker on {where} does not see the run's cache folder {context.cache} "
            f"(REDUNDANCY_CACHE): put the cache on a filesystem every worker mounts at the "
            "same path."
        )
    if library_source_hash() != context.library:
        import redundancy

        raise RuntimeError(
            f"The worker on {where} imports another version of the redundancy library "
            f"({Path(redundancy.__file__).parent}) than the client: its results would have "
            "other cache keys. Start the workers from the same checkout or installation."
        )


def _execute(job: Job, cfg: Config, context: _Context | None = None, _after=()) -> dict:
    """Run one job; returns its row of the run's table (the result stays in the cache)."""
    env = {} if context is None else {"REDUNDANCY_CACHE": context.cache, **dict(context.env)}
    started, wall = time.perf_counter(), time.time()
    with _environment(env), _counting() as counts:
        if context is not None:
            _check_worker(context)
        value = job.call(cfg)
        computed = counts.get(threading.get_ident(), 0)
    return {
        "job": job.name,
        "step": job.step,
        "status": "done",
        "seconds": round(time.perf_counter() - started, 2),
        "computed": computed,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "result": _describe(value),
        "started": wall,
        "finished": time.time(),
    }


def _failed_row(job: Job, status: str, exc: BaseException | None) -> dict:
    """The row of a job that failed (``exc`` says why) or was skipped (a dependency failed)."""
    reason = "" if exc is None else f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    row = dict.fromkeys(_TABLE)
    row.update(job=job.name, step=job.step, status=status, worker="", result=reason)
    return row


# --------------------------------------------------------------------------------------------
# running the plan
# --------------------------------------------------------------------------------------------
def _reporter(n: int, progress: bool) -> Callable[[dict], None]:
    """One line per finished job on stderr (``progress``), and in the log; under the lines an
    overall bar of the jobs with the time elapsed and left (closed with the last job)."""
    done = [0]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="run", unit="job", file=sys.stderr, dynamic_ncols=True)

    def report(row: dict) -> None:
        done[0] += 1
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.1f} s"
        computed = "" if row["computed"] is None else f"computed {row['computed']}"
        line = (
            f"[{done[0]:>{len(str(n))}}/{n}] {row['status']:<7} {seconds:>9} {computed:<11} "
            f"{row['job']}  {row['result']}  {row['worker']}"
        ).rstrip()
        if bar is not None:
            bar.write(line, file=sys.stderr)
            bar.update(1)
            if done[0] >= n:
                bar.close()
        else:
            logger.info(line)

    return report


def _run_here(jobs: list[Job], cfg: Config, report, status: dict | None = None) -> list[dict]:
    """Every job in this process, in the plan's (dependency) order; ``status`` holds the
    status of jobs run before (elsewhere) that these may depend on."""
    status, rows = dict(status or {}), []
    for job in jobs:
        if any(status[d] != "done" for d in job.deps):
            row = _failed_row(job, "skipped", None)
        else:
            try:
                row = _execute(job, cfg)
            except Exception as exc:  # reported in the table; the other jobs go on
                logger.exception("job %r failed", job.name)
                row = _failed_row(job, "failed", exc)
        status[job.name] = row["status"]
        rows.append(row)
        report(row)
    return rows


def _context() -> _Context:
    """The run's context: the cache folder (absolute, marked for the workers to find), the
    environment jobs need and the library's source hash."""
    from .._utils import cache_root
    from .book import library_source_hash

    cache = str(cache_root().expanduser().resolve())
    token = uuid.uuid4().hex[:12]
    marker = Path(cache) / "pipeline" / f"{token}.run"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{socket.gethostname()} pid {os.getpid()}\n")
    env = {key: os.environ[key] for key in _ENV_PASSED if key in os.environ}
    env.setdefault("REDUNDANCY_RECOMPUTE_SINCE", None)  # unset on the workers too
    env.update(_WORKER_ENV)
    return _Context(token, cache, tuple(sorted(env.items())), library_source_hash())


def _has_gpu_workers(client) -> bool:
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # older distributed: every worker, no argument
        info = client.scheduler_info()
    return any(w.get("resources", {}).get("GPU", 0) >= 1 for w in info["workers"].values())


_WAIT_FOR_WORKERS = 120
"""Seconds a run on a scheduler's address waits for a first worker."""


@contextlib.contextmanager
def _client(scheduler, workers: int | None):
    """A ``distributed.Client``: on a new local cluster of ``workers`` processes, on the
    scheduler at an address (or a Cluster object), or the Client given."""
    from distributed import Client, LocalCluster

    if workers is not None:
        # the local scheduler's and nannies' INFO records reach the root logger's handlers;
        # show them only when the root logger shows INFO (``python -m redundancy -v``)
        quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
        log, level = logging.getLogger("distributed"), logging.getLogger("distributed").level
        if quiet:
            log.setLevel(logging.ERROR)
        try:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR if quiet else False,
            )
            with cluster, Client(cluster) as client:
                yield client
        finally:
            log.setLevel(level)
        return
    if isinstance(scheduler, Client):
        yield scheduler
        return
    with Client(scheduler) as client:
        try:
            client.wait_for_workers(1, timeout=_WAIT_FOR_WORKERS)
        except TimeoutError:
            raise RuntimeError(
                f"No Dask worker joined the scheduler {scheduler} within "
                f"{_WAIT_FOR_WORKERS} s: start some with `dask worker {scheduler}`."
            ) from None
        yield client


def _run_dask(jobs, cfg, client, gpu: bool | None, report) -> list[dict]:
    """Submit every job with its dependencies as futures; collect rows as they finish."""
    from distributed import as_completed

    context = _context()
    try:
        use_gpu = _has_gpu_workers(client) if gpu is None else bool(gpu)
        logger.info("running %d jobs on %s (GPU resource: %s)", len(jobs), client, use_gpu)
        futures, by_key = {}, {}
        for i, job in enumerate(jobs):
            future = client.submit(
                _execute,
                job,
                cfg,
                context,
                [futures[d] for d in job.deps],
                key=f"{job.step}-{context.token}-{i}",
                pure=False,
                resources={"GPU": 1} if use_gpu and job.gpu else None,
            )
            futures[job.name], by_key[future.key] = future, job
        rows = {}
        for future in as_completed(list(futures.values())):
            job = by_key[future.key]
            if future.status == "finished":
                row = future.result()
            elif any(futures[d].status != "finished" for d in job.deps):
                row = _failed_row(job, "skipped", None)
            else:
                row = _failed_row(job, "failed", future.exception())
                logger.error("job %r failed: %s", job.name, row["result"])
            rows[job.name] = row
            report(row)
        return [rows[job.name] for job in jobs]
    finally:
        (Path(context.cache) / "pipeline" / f"{context.token}.run").unlink(missing_ok=True)


def run(
    cfg: Config,
    *,
    scheduler=None,
    workers: int | None = None,
    progress: bool = True,
    gpu: bool | None = None,
    timing_on: str = "client",
) -> pd.DataFrame:
    """Compute every result of :func:`plan` into the result cache.

    Parameters
    ----------
    cfg : Config
        The run's parameters; every model and data folder must exist.
    scheduler : str, distributed.Client or Cluster, optional
        A Dask scheduler's address (``"tcp://host:8786"``), a Client, or a cluster object
        (``dask_jobqueue.SLURMCluster``). None (and no ``workers``): in this process.
    workers : int, optional
        Start a local cluster of this many worker processes, one thread each.
    progress : bool, default=True
        One line per finished job on stderr.
    gpu : bool, optional
        Whether jobs that gain from a GPU ask for a ``GPU`` resource; default: when some
        worker declares one (``dask worker ADDRESS --resources GPU=1``).
    timing_on : {"client", "cluster"}, default="client"
        Where a Dask run measures the timing jobs, alone in both cases: in this process
        after every other job, or on a worker (one that declares a GPU when there is one).

    Returns
    -------
    pandas.DataFrame
        One row per job: ``job``, ``step``, ``status`` (``done``), ``seconds``,
        ``computed`` (results computed rather than read from a cache), ``worker``
        (``host:pid``), ``result`` (a few words on it), ``started`` and ``finished``
        (seconds since the epoch); ``attrs["seconds"]`` is the run's wall time.

    Raises
    ------
    PipelineError
        When jobs failed, after every other job has run; ``.table`` holds the table.
    """
    if scheduler is not None and workers is not None:
        raise ValueError(
            "run takes either 'scheduler' (an address or a Client) or 'workers' (a local "
            f"cluster), not both. Got scheduler={scheduler!r}, workers={workers!r}."
        )
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"The 'workers' parameter of run must be an int >= 1. Got {workers!r}.")
    check_choice(timing_on, ("client", "cluster"), name="timing_on", caller="run")
    cfg.check_inputs()
    if cfg.recompute:
        from .cache import recompute_from_now

        recompute_from_now()
    jobs = plan(cfg)
    report = _reporter(len(jobs), progress)
    started = time.perf_counter()
    if scheduler is None and workers is None:
        rows = _run_here(jobs, cfg, report)
    else:
        from ..analysis.distributed import require_dask

        require_dask("run on Dask", distributed=True)
        here = [j for j in jobs if j.exclusive and timing_on == "client"]
        with _client(scheduler, workers) as client:
            rows = _run_dask([j for j in jobs if j not in here], cfg, client, gpu, report)
        rows += _run_here(here, cfg, report, {r["job"]: r["status"] for r in rows})
    table = pd.DataFrame(rows, columns=_TABLE)
    table.attrs["seconds"] = round(time.perf_counter() - started, 1)
    bad = table[table["status"] != "done"]
    if len(bad):
        first = bad[bad["status"] == "failed"].head(1)
        why = (
            f" First failure: {first['job'].iloc[0]}: {first['result'].iloc[0]}"
            if len(first)
            else ""
        )
        raise PipelineError(f"{len(bad)} of {len(table)} jobs did not finish.{why}", table)
    return table
