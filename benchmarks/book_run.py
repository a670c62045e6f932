"""Time a whole book run, chapter by chapter, with its peak private memory.

    .venv/bin/python benchmarks/book_run.py --params params/default.yaml --name book-default
    .venv/bin/python benchmarks/book_run.py --params params/mpnet.yaml --name paper-scale

Runs ``python -m redundancy book`` as a child process on an empty (or given) cache and, while
it runs, samples every 0.5 s the private memory of the runner and of each notebook kernel:
anonymous resident memory (``RssAnon`` in ``/proc/PID/status``), which leaves out the page
cache of the memory-mapped activation files. It records per chapter the seconds (from the
runner's ``timings.json``) and the peak private memory of any one process while the chapter
ran, plus the verdicts, and stores the entry under ``--name`` in ``benchmarks/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        # children started by any thread of p (a kernel is launched from a worker thread)
        for task in Path(f"/proc/{p}").glob("task/*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                continue
    return out


def _anon_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(params: Path, cache: Path | None, force: bool) -> dict:
    env = dict(os.environ)
    if cache is not None:
        env["REDUNDANCY_CACHE"] = str(cache.resolve())  # kernels run in the build folder
    cmd = [sys.executable, "-m", "redundancy", "book", "--params", str(params)]
    if force:
        cmd.append("--force")
    build = ROOT / "build" / params.stem
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    samples = []  # (seconds since start, {pid: anonymous resident KiB})
    while proc.poll() is None:
        now = {p: _anon_kib(p) for p in _descendants(proc.pid)}
        samples.append((time.time() - start, now))
        time.sleep(0.5)
    wall = time.time() - start
    timings = (
        json.loads((build / "timings.json").read_text())
        if (build / "timings.json").is_file()
        else {}
    )
    return {
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "timings": timings,
        "samples": samples,
    }


def per_chapter(result: dict) -> list[dict]:
    """Attribute memory samples to chapters by the chapters' order and durations (chapters
    run in the order of their names, whatever order the runner's timings file keeps)."""
    rows, t = [], 0.0
    samples = result["samples"]
    for chapter, info in sorted(result["timings"].items()):
        seconds = info.get("seconds", 0.0)
        window = [s for s in samples if t <= s[0] < t + seconds + 1]
        peak = max((max(m.values(), default=0) for _, m in window), default=0)
        rows.append(
            {
                "chapter": chapter,
                "seconds": seconds,
                "status": info.get("status"),
                "peak_private_gib": round(peak / 2**20, 2),
            }
        )
        t += seconds
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, default=ROOT / "params" / "default.yaml")
    parser.add_argument("--name", default="book-default")
    parser.add_argument("--cache", type=Path, help="cache folder (default: the checkout's)")
    parser.add_argument("--force", action="store_true", help="recompute every cached result")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results.json")
    args = parser.parse_args(argv)
    result = run(args.params, args.cache, args.force)
    overall = max((max(m.values(), default=0) for _, m in result["samples"]), default=0)
    build = ROOT / "build" / args.params.stem / "results"
    verdicts = {
        p.stem: json.loads(p.read_text()).get("level") for p in sorted(build.glob("*.json"))
    }
    entry = {
        "date": time.strftime("%Y-%m-%d"),
        "params": str(args.params.relative_to(ROOT) if args.params.is_absolute() else args.params),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "returncode": result["returncode"],
        "wall_s": result["wall_s"],
        "peak_private_gib": round(overall / 2**20, 2),
        "chapters": per_chapter(result),
        "verdicts": verdicts,
    }
    data = json.loads(args.output.read_text()) if args.output.is_file() else {}
    data.setdefault("book", {})[args.name] = entry
    args.output.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(entry, indent=1))
    return result["returncode"]


if __name__ == "__main__":
    sys.exit(main())
