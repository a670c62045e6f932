"""Small helpers shared across the library: cache location, device choice, hashing, atomic writes."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

from .constraints import check_choice  # noqa: F401 - the rule lives in constraints

logger = logging.getLogger(__name__)


PACKAGE_DIR = Path(__file__).resolve().parent
"""The folder of the ``redundancy`` package."""


def checkout_root() -> Path | None:
    """The git checkout the package runs from (its ``pyproject.toml`` names this project), or
    None for an installed copy."""
    root = PACKAGE_DIR.parent
    marker = root / "pyproject.toml"
    try:
        if marker.is_file() and 'name = "redundancy"' in marker.read_text(errors="replace"):
            return root
    except OSError:  # pragma: no cover - unreadable file
        pass
    return None


def cache_root() -> Path:
    """Where every cache lives: ``$REDUNDANCY_CACHE`` if set, else ``.cache/`` of the checkout
    the library runs from, else ``~/.cache/redundancy`` (an installed copy).

    ``make``, ``python -m redundancy`` and a notebook started from the checkout therefore
    share one cache.
    """
    env = os.environ.get("REDUNDANCY_CACHE")
    if env:
        return Path(env).expanduser()
    checkout = checkout_root()
    if checkout is not None:
        return checkout / ".cache"
    return Path.home() / ".cache" / "redundancy"


def cache_dir(sub: str | None = None, root: str | os.PathLike | None = None) -> Path:
    """Return (and create) the cache folder, or one of its sub-folders.

    The root is ``root`` if given, else :func:`cache_root`.
    """
    base = Path(root) if root else cache_root()
    path = base / sub if sub else base
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_device(device: str | None = None) -> str:
    """``None``/``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; a ``"cuda"``
    device this machine lacks is refused here, before any work, saying the fix."""
    if device not in (None, "auto"):
        if str(device).startswith("cuda"):
            from .constraints import cuda_problem

            problem = cuda_problem(str(device))
            if problem:
                raise ValueError(problem)
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def stable_hash(obj, length: int = 16) -> str:
    """SHA-256 of a JSON-serialisable object (keys sorted), truncated to ``length`` hex digits."""
    payload = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(payload).hexdigest()[:length]


def hash_strings(items: Iterable[str], length: int = 16) -> str:
    """SHA-256 over a sequence of strings, separated unambiguously."""
    h = hashlib.sha256()
    for item in items:
        b = item.encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:length]


def json_default(obj):
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays, paths."""
    import numpy as np

    if isinstance(obj, np.generic):  # numpy scalars: bool_, integer, floating
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def shared_mode() -> int:
    """The permissions a new file gets under the process's umask (``0o644`` under ``022``)."""
    try:  # Linux tells the umask without changing it (no window for other threads)
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def share(path: str | os.PathLike) -> None:
    """Give a file made by :func:`tempfile.mkstemp` (always ``0600``) the mode any other new
    file would get, so files people share follow their umask."""
    os.chmod(path, shared_mode())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never
    see half a file; the file ends with the umask's mode, like any other new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        share(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode())


@contextlib.contextmanager
def entry_lock(path: str | os.PathLike, *, shared: bool = False, wait: bool = True):
    """Hold an advisory lock (POSIX ``flock``) on the lock file ``path`` (created).

    One lock per cache entry makes concurrent processes (book kernels, Dask workers, two
    commands) build an entry once: the first builds it, the others wait and then find it.
    ``shared=True`` takes a reader's lock (many readers, no builder); ``wait=False`` raises
    :class:`BlockingIOError` at once when another process holds the lock. The lock dies
    with its process, so a killed builder never leaves it held. A no-op without ``fcntl``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no cross-process lock
        yield
        return
    flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    with open(path, "a") as handle:
        fcntl.flock(handle, flags)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


VERIFY_ENV = "REDUNDANCY_VERIFY"
"""Set to 1 to hash every cached file on every load instead of trusting the memo of its
digest while its size and modification time are unchanged."""


def verify_always() -> bool:
    """Whether ``$REDUNDANCY_VERIFY`` asks for a full check of every cached file."""
    return os.environ.get(VERIFY_ENV, "").lower() in ("1", "true", "yes")


PROGRESS_ENV = "REDUNDANCY_PROGRESS"
"""Environment variable naming a file that receives progress output instead of the terminal
or the notebook (the book runner sets it for its kernels and shows the file's tail)."""


def progress_disabled(progress: bool) -> bool:
    """Whether to hide a progress bar: ``progress=False``, or ``$TQDM_DISABLE`` set to a true
    value."""
    return not progress or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")


_CHANNEL: dict[str, object] = {}


def _channel():
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return None
    if path not in _CHANNEL:
        _CHANNEL[path] = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    return _CHANNEL[path]


def progress_bar(iterable=None, *, progress: bool = True, **kwargs):
    """A tqdm progress bar: in the notebook or terminal as usual, or written to the book
    runner's progress file when ``$REDUNDANCY_PROGRESS`` is set (so rendered chapters hold
    results, not bar updates, while the terminal still shows what runs)."""
    channel = _channel()
    if channel is not None and progress:
        from tqdm import tqdm as plain_tqdm

        return plain_tqdm(
            iterable, file=channel, mininterval=1.0, ncols=110, ascii=True, disable=False, **kwargs
        )
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=progress_disabled(progress), **kwargs)


def announce(text: str) -> None:
    """Say what long work starts now: on the book runner's progress file when there is one,
    else in the log. An empty ``text`` says the announced work is over (the runner's bar
    stops showing it)."""
    channel = _channel()
    if channel is not None:
        channel.write(f"\n>> {text}\n")
        channel.flush()
    elif text:
        logger.info(text)


# --------------------------------------------------------------------------------------------
# what a cached result depends on: the source of the code that made it
# --------------------------------------------------------------------------------------------
def _module_file(name: str) -> Path | None:
    """Source file of a ``redundancy`` module (``redundancy.analysis.probes``), or None."""
    parts = name.split(".")
    if parts[0] != "redundancy":
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, module: str) -> set[str]:
    """``redundancy`` modules imported anywhere in a file (top level or inside functions)."""
    import ast

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from pkg import name` may name a sub-module
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] == "redundancy"}


@functools.cache
def module_closure(module: str) -> tuple[str, ...]:
    """Every ``redundancy`` module ``module`` depends on through its imports, itself included
    (imports inside functions count; parent packages' ``__init__`` files count too)."""
    todo, seen = [module], {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            seen[name] = None
            continue
        seen[name] = path
        todo.extend(_imported_modules(path, name))
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
    return tuple(sorted(n for n, p in seen.items() if p is not None))


@functools.cache
def source_digest(*modules: str) -> str:
    """Digest of the source of ``modules`` and of everything they import from the library.

    Part of every cache key, so that a cached result or activation made by other code is
    rebuilt, never trusted. Computed from the files' bytes: a moved checkout or a rebuilt
    virtual environment gives the same digest.
    """
    names = sorted({m for module in modules for m in module_closure(module)})
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0")
        h.update(_module_file(name).read_bytes())
    return h.hexdigest()[:16]


def file_digest(path: str | os.PathLike, *, verify: bool | None = None) -> str:
    """SHA-256 of a file's bytes, memoised on disk by (absolute path, size, mtime).

    Hashing a 400 MB weight file takes about a second; the memo (``<cache>/identity``) makes
    the second call free, while a moved or re-installed file is simply hashed again and
    gives the same digest. A file changed in place keeps its digest only while its size and
    modification time are unchanged: ``verify=True`` (default: ``$REDUNDANCY_VERIFY``)
    hashes the bytes whatever the memo says, which catches bit rot under the same mtime.
    """
    path = Path(path).resolve()
    st = path.stat()
    memo_key = stable_hash([str(path), st.st_size, st.st_mtime_ns], length=24)
    memo = cache_dir("identity") / f"{memo_key}.sha256"
    trust = not (verify_always() if verify is None else verify)
    if trust and (digest := _read_memo(memo)):
        return digest
    # concurrent callers hash a file once (one lock per file, whatever its versions)
    with entry_lock(memo.parent / f"{stable_hash(str(path), length=24)}.lock"):
        if trust and (digest := _read_memo(memo)):
            return digest
        digest = sha256_file(path)
        atomic_write_text(memo, digest + "\n")
    return digest


def _read_memo(memo: Path) -> str | None:
    try:
        digest = memo.read_text().strip()
    except OSError:
        return None
    return digest if len(digest) == 64 else None


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 4 MiB blocks (no memo)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def folder_damage(folder: str | os.PathLike, record: str) -> str | None:
    """What is wrong with a saved folder whose JSON file ``record`` lists every file's
    SHA-256 under ``"files"``, or None when every recorded file is there with its digest."""
    folder = Path(folder)
    try:
        files = json.loads((folder / record).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{record} is unreadable or lacks the files' checksums ({e})"
    if not isinstance(files, dict) or not files:
        return f"{record} records no files"
    for name, digest in sorted(files.items()):
        path = folder / name
        try:
            if file_digest(path) != digest:
                return f"{path} does not match its checksum"
        except OSError:
            return f"{path} is missing"
    return None


def intact_folder(
    folder: str | os.PathLike, record: str, what: str, redo: str, *, repair: bool = True
) -> bool:
    """Whether a saved folder (see :func:`folder_damage`) is there, complete and intact.
    With ``repair`` a damaged one is removed with a warning ("The {what} {folder} is damaged
    (...); {redo}.") so that it is made again, and the caller must hold the folder's lock;
    without, it is only reported as not intact."""
    folder = Path(folder)
    if not (folder / record).is_file():
        return False
    problem = folder_damage(folder, record)
    if problem is None:
        return True
    if not repair:
        return False
    warnings.warn(f"The {what} {folder} is damaged ({problem}); {redo}.", stacklevel=3)
    shutil.rmtree(folder, ignore_errors=True)
    return False


def save_model_folder(model, tokenizer, target: str | os.PathLike, record: str, info: dict) -> None:
    """Write a model, its tokenizer and the JSON file ``record`` (``info`` plus every file's
    SHA-256 under ``"files"``) into a temporary folder beside ``target``, then rename it:
    ``target`` is complete or absent, never half written."""
    target = Path(target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".saving-") as tmp:
        out = Path(tmp) / "model"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        files = {f.name: sha256_file(f) for f in sorted(out.iterdir()) if f.is_file()}
        (out / record).write_text(json.dumps({**info, "files": files}, indent=1))
        if target.exists():  # a damaged folder removed too late, or left by a crash
            shutil.rmtree(target)
        os.replace(out, target)
