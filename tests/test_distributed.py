"""Dask: the book's steps on a scheduler with two worker processes on 127.0.0.1, a worker
killed in the middle of a run, GPU jobs on the worker that declares a GPU, and the moments
reduction over blocks of rows read by several workers.

Runs are compared through the result files they leave in their caches (payloads, not
timings). The in-process reference runs in a subprocess with the thread settings Dask gives
its workers: fine-tuning on a CPU gives other float32 roundings with another number of
threads (about 6e-7 in the weights), in one process as on a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_token_task

from redundancy.analysis import similarity
from redundancy.report import pipeline
from redundancy.report.config import Config

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("forward_timing", "probe_timing")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _fresh_cache(root: Path) -> Path:
    """An empty cache holding only the Brown corpus (copied from the usual cache)."""
    from redundancy.data.brown import fetch_brown

    shutil.copytree(fetch_brown(), root / "corpora" / "brown")
    return root


def _thread_env() -> dict:
    """The thread settings Dask's nanny gives every worker process."""
    import dask

    spawn = dask.config.get("distributed.nanny.pre-spawn-environ", {})
    return {k: str(v) for k, v in spawn.items() if k.endswith("_NUM_THREADS")}


def _in_process(cache: Path, argv: list[str]) -> subprocess.Popen:
    """Start ``python ARGV`` on ``cache`` with the workers' thread settings; its output goes
    to ``cache/out.txt`` and ``cache/err.txt``."""
    env = dict(os.environ, REDUNDANCY_CACHE=str(cache), TQDM_DISABLE="1", **_thread_env())
    env.pop("REDUNDANCY_RECOMPUTE_SINCE", None)
    with open(cache / "out.txt", "wb") as out, open(cache / "err.txt", "wb") as err:
        return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=out, stderr=err)


def _finish(proc: subprocess.Popen, cache: Path, timeout: float = 300) -> str:
    proc.wait(timeout=timeout)
    assert proc.returncode == 0, (cache / "err.txt").read_text()[-3000:]
    return (cache / "out.txt").read_text()


def _results(cache: Path) -> dict:
    """``{result file: (step, payload)}`` of a cache, arrays read from their .npz files."""
    out = {}
    for path in sorted((cache / "results").rglob("*.json")):
        envelope = json.loads(path.read_text())
        payload = envelope["payload"]
        if envelope["kind"] == "arrays":  # the npz itself holds zip time stamps
            with np.load(path.with_suffix(".npz")) as data:
                payload = {k: data[k] for k in data.files}
        out[str(path.relative_to(cache))] = (envelope["step"], payload)
    return out


def _assert_same_results(here: Path, there: Path) -> int:
    """Same result files (keys) and equal payloads (float arrays to float64 rounding), timings
    aside; returns how many."""
    a = {k: v for k, v in _results(here).items() if v[0] not in TIMING}
    b = {k: v for k, v in _results(there).items() if v[0] not in TIMING}
    assert sorted(a) == sorted(b)
    for name, (_step, payload) in a.items():
        other = b[name][1]
        if isinstance(payload, dict) and any(isinstance(v, np.ndarray) for v in payload.values()):
            assert payload.keys() == other.keys(), name
            for key in payload:
                if np.issubdtype(np.asarray(payload[key]).dtype, np.floating):
                    # a worker's BLAS may sum in another order: float64 rounding, nothing more
                    np.testing.assert_allclose(
                        payload[key], other[key], rtol=1e-7, atol=1e-9, err_msg=name
                    )
                else:
                    np.testing.assert_array_equal(payload[key], other[key], err_msg=name)
        else:
            assert json.dumps(_untimed(payload), sort_keys=True) == json.dumps(
                _untimed(other), sort_keys=True
            ), name
    return len(a)


def _untimed(payload):
    """A table's payload without the seconds it took (a measurement, like the timings)."""
    if isinstance(payload, dict) and isinstance(payload.get("attrs"), dict):
        return {**payload, "attrs": {k: v for k, v in payload["attrs"].items() if k != "seconds"}}
    return payload


def _assert_alone(table) -> None:
    """The timing jobs started after every other job had finished, one after the other."""
    timing, others = table[table["step"].isin(TIMING)], table[~table["step"].isin(TIMING)]
    assert len(timing) == 2
    assert timing["started"].min() >= others["finished"].max()
    assert timing["started"].iloc[1] >= timing["finished"].iloc[0]


def _files(cache: Path) -> dict:
    return {
        str(p.relative_to(cache)): p.stat().st_mtime_ns
        for sub in ("results", "activations", "finetuned")
        for p in (cache / sub).rglob("*")
        if p.is_file() and not p.name.endswith(".lock")  # lock files are touched by readers
    }


def _render_chapters(cfg: Config, results_dir: Path) -> int:
    """Execute the code cells of chapters 1-7 as the book would; the results computed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with pipeline._counting() as counts, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the chapters' own (constant layers, ...)
        for nb in sorted((ROOT / "notebooks").glob("0[1-7]-*.ipynb")):
            namespace = dict(cfg.to_dict(), results_dir=str(results_dir))
            for cell in json.loads(nb.read_text())["cells"]:
                if cell["cell_type"] == "code" and "parameters" not in cell["metadata"].get(
                    "tags", []
                ):
                    exec("".join(cell["source"]), namespace)
            plt.close("all")
        return counts[threading.get_ident()]


@pytest.fixture(scope="module")
def client():
    """A scheduler and two worker processes (one thread each) on 127.0.0.1."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------
def _steps_called_by_chapters() -> set[str]:
    import re

    called = set()
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                called |= set(re.findall(r"steps\.(\w+)\(", "".join(cell["source"])))
    return called


# step functions the chapters call -> the job step that computes their result; the others
# read no cache (tables of the inputs) or only arrange results already computed
_COMPUTED_BY = {
    "extraction_table": "extract",
    "layer_cka": "cka",
    "cross_model_cka": "cross_cka",
    "layer_probe_scores": "layer_probes",
    "cc_sweep": "cc_sweep",
    "cluster_windows_for": "windows",
    "cka_uncertainty": "cka_uncertainty",
    "block_scores": "removal",
    "removal_sweep": "removal",
    "neuron_replacement": "removal",
    "encoder_removal": "removal",
    "cluster_replacement": "removal",
    "minimal_sets": "minimal_sets",
    "transfer_table": "transfer",
    "forward_timing": "forward_timing",
    "probe_timing": "probe_timing",
}
_READ_ONLY = {"model_table", "task_table", "label_table", "baseline_table", "selected_layers"}


def test_plan_has_a_job_for_every_step_the_chapters_call_in_dependency_order():
    called = _steps_called_by_chapters()
    assert called - set(_COMPUTED_BY) <= _READ_ONLY, called - set(_COMPUTED_BY) - _READ_ONLY
    cfg = Config.from_yaml(ROOT / "params" / "tiny.yaml")
    two = Config.from_dict({**cfg.to_dict(), "models": ["minilm", "mpnet"]})
    for c in (cfg, two):
        jobs = pipeline.plan(c)
        names = [j.name for j in jobs]
        assert len(set(names)) == len(names)
        steps = {j.step for j in jobs}
        wanted = {_COMPUTED_BY[s] for s in called if s in _COMPUTED_BY}
        assert wanted - {"cross_cka"} <= steps
        assert ("cross_cka" in steps) == (len(c.models) >= 2)
        seen = set()
        for job in jobs:
            assert set(job.deps) <= seen, job.name
            seen.add(job.name)
        timing = [j for j in jobs if j.step in TIMING]
        assert jobs[-len(timing) :] == timing and all(j.exclusive for j in timing)
        others = {j.name for j in jobs if j.step not in TIMING}
        assert set(timing[0].deps) == others
        assert all(t.deps == (prev.name,) for prev, t in zip(timing, timing[1:]))
    # tiny: 1 model x (1 token + 1 fine-tuned sentence task) x 3 splits, plus the pretrained
    # features of the sentence task that chapter 2 compares with the fine-tuned ones
    jobs = pipeline.plan(cfg)
    assert sum(j.step == "extract" for j in jobs) == 7
    assert sum(j.step == "finetune" for j in jobs) == 1
    assert sum(j.step == "cka" for j in jobs) == 4


def test_without_dask_the_error_says_how_to_install(tmp_path, monkeypatch):
    from redundancy.analysis import distributed as dd

    np.save(tmp_path / "acts.npy", np.zeros((4, 2, 3), np.float32))
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"pip install -e \.\[distributed\]"):
        dd.from_npy(tmp_path / "acts.npy")
    with pytest.raises(ImportError, match=r"pip install -e \.\[distributed\]"):
        pipeline.run(Config.from_yaml(ROOT / "params" / "tiny.yaml"), workers=2)


def test_run_refuses_both_a_scheduler_and_workers():
    cfg = Config.from_yaml(ROOT / "params" / "tiny.yaml")
    with pytest.raises(ValueError, match="either 'scheduler'"):
        pipeline.run(cfg, scheduler="tcp://127.0.0.1:1", workers=2)
    with pytest.raises(ValueError, match="'workers' parameter of run must be an int >= 1"):
        pipeline.run(cfg, workers=0)


def test_run_command_lists_missing_inputs_and_takes_one_place_to_run(capsys, tmp_path):
    from redundancy.cli import main

    params = tmp_path / "p.yaml"
    params.write_text("models: [/nonexistent/model-folder]\n")
    assert main(["run", "--params", str(params), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "/nonexistent/model-folder" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["run", "--params", str(params), "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_worker_without_the_cache_or_with_other_code_is_refused(tmp_path):
    from redundancy.report.book import library_source_hash

    context = pipeline._Context("abc", str(tmp_path / "elsewhere"), (), library_source_hash())
    with pytest.raises(RuntimeError, match="does not see the run's cache folder .*elsewhere"):
        pipeline._check_worker(context)
    (tmp_path / "elsewhere" / "pipeline").mkdir(parents=True)
    (tmp_path / "elsewhere" / "pipeline" / "abc.run").write_text("")
    pipeline._check_worker(context)  # sees it
    other = pipeline._Context("abc", context.cache, (), "0" * 16)
    with pytest.raises(RuntimeError, match="another version of the redundancy library"):
        pipeline._check_worker(other)


# --------------------------------------------------------------------------------------------
# statistics over activations split across workers
# --------------------------------------------------------------------------------------------
def _planted(n=9000, layers=3, hidden=24, seed=0) -> np.ndarray:
    """Activations with a few large-mean "outlier" neurons (where an unshifted float32 pass
    loses its digits) and correlated layers."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, hidden)).astype(np.float32)
    X = np.stack([base * (1 + k) + rng.standard_normal((n, hidden)) for k in range(layers)], 1)
    X[:, :, :3] += np.float32(300.0)
    return X.astype(np.float32)


def test_moments_on_two_workers_equal_the_in_process_pass(client, tmp_path):
    from redundancy.analysis import distributed as dd

    X = _planted()
    np.save(tmp_path / "acts.npy", X)
    x = dd.from_npy(tmp_path / "acts.npy", block_rows=1024)
    assert x.numblocks[0] == 9
    from distributed import get_task_stream

    with get_task_stream(client) as stream:
        m = dd.moments(x, chunk_size=512)
    workers = {t["worker"] for t in stream.data if "_partial" in str(t["key"])}
    assert len(workers) == 2  # the blocks were read and reduced on both workers
    # the workers' BLAS runs one thread (Dask sets it so): the same thread count here, since
    # a multi-threaded product may sum in another order when the cores are busy
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        ref = similarity.moments(X, chunk_size=512, device="cpu", progress=False)
    scale = np.abs(ref.cov).max()
    assert m.n == ref.n
    np.testing.assert_allclose(m.mean, ref.mean, rtol=1e-13, atol=0)
    assert np.abs(m.cov - ref.cov).max() <= 1e-12 * scale
    assert (m.cov == m.cov.T).all()
    # the agreement is the in-process chunks and shift reproduced: other chunks (other
    # float32 products) differ a million times more
    other = similarity.moments(X, chunk_size=500, device="cpu", progress=False)
    assert np.abs(other.cov - ref.cov).max() > 1e-9 * scale
    corr = dd.correlation(x, chunk_size=512)
    np.testing.assert_allclose(corr, similarity.correlation_from_moments(ref), rtol=0, atol=1e-7)
    cka = dd.layer_cka(x, chunk_size=512)
    np.testing.assert_allclose(cka, similarity.cka_from_moments(ref, 3), rtol=0, atol=1e-12)
    # and the textbook definition of linear CKA, on the exact data
    exact = similarity.linear_cka(X[:, 0], X[:, 2])
    assert cka[0, 2] == pytest.approx(exact, abs=1e-6)


def _fake_activations(task, dtype=np.float32):
    from redundancy.encoders.store import Activations

    counts = [len(s) for s in task.train.sentences]
    n = sum(counts)
    acts = np.random.default_rng(3).standard_normal((n, 3, 5)).astype(dtype)
    index = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    labels = task.encode("train")
    return Activations(acts, labels, task.label_names, index, "m", task.name, "train", {})


def test_readers_give_every_row_of_npy_safetensors_and_neurox_files(tmp_path):
    pytest.importorskip("dask")
    from redundancy.analysis import distributed as dd
    from redundancy.encoders.interop import read_safetensors, write_neurox_hdf5, write_safetensors

    task = make_token_task(6, lengths=[4, 7, 3, 4, 9, 2])
    acts = _fake_activations(task)
    np.save(tmp_path / "acts.npy", acts.acts)
    st = write_safetensors(acts, tmp_path / "a.safetensors", task=task)
    h5 = write_neurox_hdf5(acts, tmp_path / "a.hdf5")
    arrays = {
        "npy": dd.from_npy(tmp_path / "acts.npy", block_rows=4),
        "safetensors": dd.from_safetensors(st, block_rows=4),
        "neurox": dd.from_neurox_hdf5(h5, block_rows=4),
        "activations": dd.from_activations(read_safetensors(st, task, "train"), block_rows=4),
    }
    for name, x in arrays.items():
        assert x.shape == (29, 3, 5) and x.numblocks[0] == 8, name
        np.testing.assert_array_equal(x.compute(scheduler="threads"), acts.acts, err_msg=name)
    # a slice inside one sentence, one across three sentences, one layer
    neurox = dd.from_neurox_hdf5(h5, block_rows=5)
    np.testing.assert_array_equal(neurox[5:8].compute(scheduler="threads"), acts.acts[5:8])
    np.testing.assert_array_equal(neurox[3:17, 1].compute(scheduler="threads"), acts.acts[3:17, 1])
    half = _fake_activations(task, np.float16)
    st16 = write_safetensors(half, tmp_path / "h.safetensors")
    x16 = dd.from_safetensors(st16, rows=11)
    assert x16.dtype == np.float16
    np.testing.assert_array_equal(x16.compute(scheduler="threads"), half.acts[:11])
    # an extraction that never finished (no manifest) is refused
    (tmp_path / "store").mkdir()
    np.save(tmp_path / "store" / "acts.npy", acts.acts)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        dd.from_store(tmp_path / "store")


# --------------------------------------------------------------------------------------------
# the book's steps on two worker processes
# --------------------------------------------------------------------------------------------
_REFERENCE = (
    "import sys; from redundancy.report.config import Config; "
    "from redundancy.report import pipeline as p; cfg = Config.from_yaml(sys.argv[1]); "
    "[p._execute(j, cfg) for j in p.plan(cfg) if not j.exclusive]"
)


@pytest.mark.slow
def test_tiny_params_on_two_workers_give_the_in_process_results(client, tmp_path, monkeypatch):
    params = ROOT / "params" / "tiny.yaml"
    here, there = _fresh_cache(tmp_path / "in-process"), _fresh_cache(tmp_path / "dask")
    # the reference (timings aside, which are measurements) runs meanwhile, in its own process
    reference = _in_process(here, ["-c", _REFERENCE, str(params)])
    monkeypatch.setenv("REDUNDANCY_CACHE", str(there))
    monkeypatch.delenv("REDUNDANCY_RECOMPUTE_SINCE", raising=False)
    cfg = Config.from_yaml(params)
    table = pipeline.run(cfg, scheduler=client, progress=False)
    _finish(reference, here)
    assert (table["status"] == "done").all()
    assert table.set_index("step")["computed"].loc[["finetune", "layer_probes"]].min() >= 1
    timing, others = table[table["step"].isin(TIMING)], table[~table["step"].isin(TIMING)]
    assert others["worker"].nunique() == 2
    # timings are measured here, alone: after every other job, one after the other
    assert set(timing["worker"]) == {f"{socket.gethostname()}:{os.getpid()}"}
    _assert_alone(table)
    assert _assert_same_results(here, there) == 26
    # the book then renders from the cache: no chapter computes, extracts or fine-tunes
    before = _files(there)
    assert _render_chapters(cfg, tmp_path / "verdicts") == 0
    assert _files(there) == before


def _small_params(model: str) -> dict:
    return dict(
        models=[model],
        token_tasks=["brown-pos"],
        sentence_tasks=["brown-next"],
        task_options={
            "brown-pos": {"train_tokens": 400, "dev_tokens": 150, "test_tokens": 150},
            "brown-next": {"train_sentences": 40, "dev_sentences": 20, "test_sentences": 20},
        },
        finetune_max_train_sentences=16,
        finetune_epochs=1,
        probe_epochs=2,
        thresholds=[0.3, 0.7],
        delta_pairs=[[3.0, 1.0]],
        n_seeds=2,
        n_bootstrap=50,
        timing_instances=4,
        timing_repeats=1,
        timing_features=[10],
        timing_probe_instances=100,
    )


_PROBE_STEPS = ("layer_probes", "cc_sweep", "minimal_sets", "transfer")


def _kill_a_worker_midway(client, cache: Path, found: dict, stop: threading.Event) -> None:
    """Wait until a probe job (:data:`_PROBE_STEPS`) runs on a worker inside the result
    cache (its lock file is there), then SIGKILL that worker process (its nanny starts a
    new one)."""

    def executing(dask_worker):
        return os.getpid(), [str(ts.key) for ts in dask_worker.state.executing]

    while not found and not stop.is_set():
        try:
            running = client.run(executing)
        except Exception:  # a worker coming or going
            running = {}
        for address, (pid, keys) in running.items():
            mine = [
                k
                for k in keys
                for step in _PROBE_STEPS
                if k.startswith(f"{step}-") and list((cache / "results" / step).glob("*.lock"))
            ]
            if mine:
                os.kill(pid, signal.SIGKILL)
                found.update(pid=pid, key=mine[0], address=address)
                return
        time.sleep(0.02)


@pytest.mark.slow
def test_a_worker_killed_midway_changes_no_result(client, tiny_bert, tmp_path, monkeypatch):
    params = tmp_path / "small.yaml"
    params.write_text(yaml.safe_dump(_small_params(tiny_bert)))
    here, there = _fresh_cache(tmp_path / "in-process"), _fresh_cache(tmp_path / "dask")
    reference = _in_process(here, ["-m", "redundancy", "run", "--params", str(params)])
    monkeypatch.setenv("REDUNDANCY_CACHE", str(there))
    monkeypatch.delenv("REDUNDANCY_RECOMPUTE_SINCE", raising=False)
    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_worker_midway, args=(client, there, killed, stop))
    killer.start()
    cfg = Config.from_yaml(params)
    try:
        table = pipeline.run(cfg, scheduler=client, progress=False, timing_on="cluster")
    finally:
        stop.set()
        killer.join()
    out = _finish(reference, here)
    assert killed, "no probe job was seen running"
    assert (table["status"] == "done").all()
    row = table.iloc[int(killed["key"].rsplit("-", 1)[1])]  # keys end in the job's index
    assert row["step"] in _PROBE_STEPS and row["status"] == "done"
    if row["worker"] == f"{socket.gethostname()}:{killed['pid']}":
        # the job had reported its result just before the SIGKILL landed (the worker still
        # listed it as executing): nothing ran twice, and the results below must still agree
        assert row["status"] == "done"
    else:
        assert row["worker"] != f"{socket.gethostname()}:{killed['pid']}"  # it ran elsewhere
    assert "jobs done in" in out and "layer_probes" in out  # the CLI's table and summary
    # timings measured on the cluster, alone there too
    assert f"{socket.gethostname()}:{os.getpid()}" not in set(table["worker"])
    _assert_alone(table)
    assert _assert_same_results(here, there) == 26
    # the dead process left no lock held and no half-written result behind
    import fcntl

    for lock in (there / "results").rglob("*.lock"):
        with open(lock) as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises when held
    assert not list((there / "results").rglob("*.tmp*"))


def test_gpu_jobs_go_to_the_worker_that_declares_a_gpu(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    jobs = [pipeline.Job(f"job {i}", "probe", "builtins:repr", gpu=i % 2 == 0) for i in range(8)]
    # what a job sees of the environment: os.getenv(NAME, cfg) gives the value, or the Config
    jobs += [
        pipeline.Job(f"sees {v}", "env", "os:getenv", (v,), gpu=True)
        for v in ("REDUNDANCY_CACHE", "REDUNDANCY_RECOMPUTE_SINCE")
    ]
    cfg = Config.from_yaml(ROOT / "params" / "tiny.yaml")
    report = pipeline._reporter(len(jobs), False)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1", protocol="tcp://",
            dashboard_address=":0", silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):  # fmt: skip
        # without a GPU worker nothing waits for one
        rows = pipeline._run_dask(jobs, cfg, c, None, report)
        assert all(r["status"] == "done" for r in rows)
        gpu_worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
             "--nthreads", "1", "--resources", "GPU=1", "--no-dashboard", "--no-nanny"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**{k: v for k, v in os.environ.items() if k != "REDUNDANCY_CACHE"},
                 "REDUNDANCY_RECOMPUTE_SINCE": "1"},
        )  # fmt: skip
        try:
            c.wait_for_workers(2, timeout=60)
            rows = pipeline._run_dask(jobs, cfg, c, None, report)
        finally:
            gpu_worker.terminate()
            gpu_worker.wait(timeout=30)
    where = {r["job"]: r["worker"].rsplit(":", 1)[1] for r in rows}
    assert {where[j.name] for j in jobs if j.gpu} == {str(gpu_worker.pid)}
    assert all(r["status"] == "done" for r in rows)
    # that worker's own environment lacks the cache and holds a stale recompute mark; jobs
    # run with the client's: its cache folder, no recompute mark
    seen = {r["job"]: r["result"] for r in rows}
    assert seen["sees REDUNDANCY_CACHE"] == "cache"
    assert seen["sees REDUNDANCY_RECOMPUTE_SINCE"] == "Config"
