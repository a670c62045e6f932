"""The result cache of the report layer: a result is served only if it matches its inputs
*and* the code that made it, and only after it has been checked.

Each cached result is a file ``<cache>/results/<step>/<key>.json`` (plus ``<key>.npz`` for
arrays). The key hashes the step's name, its inputs (features, parameters, ...) and the
source digest of the module that computes it together with everything that module imports
from the library (:func:`redundancy._utils.source_digest`), so changing a step's body, or any
library function it calls, recomputes its results. On load the envelope is parsed, its key
compared, the SHA-256 of the payload (the values themselves: an edited number or a dropped
row shows) and of the array file checked, and the payload validated by the step's own
check; a damaged or incomplete result is reported with a warning naming the file and
rebuilt. A lock per key makes concurrent processes (book kernels, Dask workers) build an
entry once: the second one waits and then reads it.

Recomputing on purpose: ``REDUNDANCY_RECOMPUTE_SINCE`` (seconds since the epoch, set by
``python -m redundancy book --force``) makes every result written before that moment be
recomputed once; :func:`recompute_from_now` does the same for the current process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .._utils import (
    announce,
    atomic_write_text,
    cache_dir,
    entry_lock,
    json_default,
    source_digest,
    stable_hash,
)

logger = logging.getLogger(__name__)

__all__ = ["RESULT_FORMAT", "cached", "result_key", "recompute_from_now"]

RESULT_FORMAT = 3
"""Version of the envelope written around every result."""

KINDS = ("json", "table", "arrays")
_ENV_RECOMPUTE = "REDUNDANCY_RECOMPUTE_SINCE"


class DamagedResult(Exception):
    """A cached result that cannot be trusted."""


def recompute_from_now() -> None:
    """Recompute every result this process (and processes it starts) asks for once."""
    os.environ[_ENV_RECOMPUTE] = repr(time.time())


def _recompute_since() -> float | None:
    value = os.environ.get(_ENV_RECOMPUTE)
    try:
        return float(value) if value else None
    except ValueError:
        return None


def result_key(step: str, inputs: dict, code: str) -> str:
    """The key of a result: its step, inputs and the source digest of ``code`` (a module)."""
    return stable_hash(
        {"step": step, "inputs": inputs, "code": source_digest(code), "format": RESULT_FORMAT},
        length=20,
    )


def cached(
    step: str,
    inputs: dict,
    compute: Callable[[], object],
    *,
    code: str,
    kind: str = "json",
    check: Callable[[object], None] | None = None,
    label: str = "",
):
    """The result of ``compute()``, cached under a key of ``step``, ``inputs`` and ``code``.

    Parameters
    ----------
    step : str
        Name of the step (a sub-folder of the cache).
    inputs : dict
        JSON-serialisable description of everything the result depends on besides code:
        feature identities, parameters, ... Never computed by training or extracting.
    compute : callable
        Returns the result: a JSON-serialisable value (``kind="json"``), a DataFrame
        (``"table"``) or a dict of numpy arrays (``"arrays"``).
    code : str
        The module that computes the result (``__name__`` of the caller); its import
        closure's source is part of the key.
    kind : {"json", "table", "arrays"}
    check : callable, optional
        Raises ``ValueError`` when a loaded payload is not what the step produces (wrong
        columns, shapes, empty rows): the result is then rebuilt.
    label : str
        What the result is about (``"minilm / brown-pos"``), announced when it is computed.
    """
    if kind not in KINDS:
        raise ValueError(f"The 'kind' parameter of cached must be one of {KINDS}. Got {kind!r}.")
    key = result_key(step, inputs, code)
    path = cache_dir("results") / step / f"{key}.json"
    with entry_lock(path.with_suffix(".lock")):
        try:
            return _load(path, key, kind, check)
        except FileNotFoundError:
            pass
        except DamagedResult as e:
            warnings.warn(f"Cached result {path} is damaged ({e}); rebuilding it.", stacklevel=2)
        announce(f"{step} {label}".strip())
        started = time.perf_counter()
        value = compute()
        logger.info("computed %s %s in %.1f s", step, label, time.perf_counter() - started)
        _store(path, key, step, inputs, kind, value)
        if check is not None:
            check(value)
        return _load(path, key, kind, None)


def _load(path: Path, key: str, kind: str, check):
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        envelope = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DamagedResult(f"unreadable JSON: {e}") from e
    if not isinstance(envelope, dict) or envelope.get("key") != key:
        raise DamagedResult("its key does not match")
    if envelope.get("format") != RESULT_FORMAT or envelope.get("kind") != kind:
        raise DamagedResult("written in another format")
    since = _recompute_since()
    if since is not None and float(envelope.get("created", 0)) < since:
        raise FileNotFoundError(path)  # asked to recompute: treat as absent, no warning
    value = _decode(path, envelope, kind)
    if check is not None:
        try:
            check(value)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise DamagedResult(f"unexpected content: {e}") from e
    return value


def _payload_digest(payload) -> str:
    """SHA-256 of a payload as parsed from JSON (keys sorted): what the envelope seals."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def _decode(path: Path, envelope: dict, kind: str):
    if "payload" not in envelope:
        raise DamagedResult("no payload")
    payload = envelope["payload"]
    if envelope.get("sha256") != _payload_digest(payload):
        raise DamagedResult("its values do not match their checksum")
    if kind == "json":
        return payload
    if kind == "table":
        try:
            df = pd.DataFrame(payload["rows"], columns=payload["columns"])
        except (KeyError, TypeError, ValueError) as e:
            raise DamagedResult(f"not a table: {e}") from e
        df.attrs.update(payload.get("attrs", {}))
        return df
    npz = path.with_suffix(".npz")
    try:
        digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    except OSError as e:
        raise DamagedResult(f"array file missing ({e})") from e
    if digest != payload.get("sha256"):
        raise DamagedResult(f"{npz.name} does not match its checksum")
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    shapes = {k: list(v.shape) for k, v in arrays.items()}
    if shapes != payload.get("shapes"):
        raise DamagedResult("array shapes differ from the envelope")
    return arrays


def _store(path: Path, key: str, step: str, inputs: dict, kind: str, value) -> None:
    if kind == "table":
        if not isinstance(value, pd.DataFrame):
            raise TypeError(f"step {step!r} must return a DataFrame, got {type(value).__name__}")
        payload = {
            "columns": [str(c) for c in value.columns],
            "rows": value.to_numpy(dtype=object).tolist(),
            "attrs": dict(value.attrs),
        }
    elif kind == "arrays":
        npz = path.with_suffix(".npz")
        tmp = npz.with_name(f".{npz.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **value)
        os.replace(tmp, npz)
        payload = {
            "sha256": hashlib.sha256(npz.read_bytes()).hexdigest(),
            "shapes": {k: list(np.shape(v)) for k, v in value.items()},
        }
    else:
        payload = value
    # sealed as a reader will parse it back (numpy scalars, tuples and int keys become JSON)
    payload = json.loads(json.dumps(payload, default=json_default))
    envelope = {
        "format": RESULT_FORMAT,
        "key": key,
        "step": step,
        "kind": kind,
        "created": time.time(),
        "inputs": inputs,
        "sha256": _payload_digest(payload),
        "payload": payload,
    }
    atomic_write_text(path, json.dumps(envelope, default=json_default))


def check_table(*columns: str, min_rows: int = 1) -> Callable[[pd.DataFrame], None]:
    """A ``check`` for tables: these columns, at least ``min_rows`` rows, no empty table."""

    def check(df) -> None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"missing columns {missing}")
        if len(df) < min_rows:
            raise ValueError(f"{len(df)} rows, expected at least {min_rows}")

    return check


def check_keys(*keys: str) -> Callable[[dict], None]:
    """A ``check`` for dicts (JSON objects or arrays): these keys must be present."""

    def check(value) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {type(value).__name__}")
        missing = [k for k in keys if k not in value]
        if missing:
            raise ValueError(f"missing {missing}")

    return check
