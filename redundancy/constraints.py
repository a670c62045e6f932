"""One declarative source of parameter constraints.

Every bound a parameter has (``delta`` in [0, 100), a clustering ``threshold`` in (0, 1], a
``max_length`` of at least 8 tokens, ...) is written once here, as a small object that both
checks a value and words the error. The library functions check their arguments with
:func:`check`; :class:`redundancy.report.config.Config` and the command line check the same
names with the same objects, so a parameter file is refused *before* any work for exactly
the values a function deep inside the pipeline would refuse later. The model is
scikit-learn's ``validate_params`` with ``Interval`` and ``StrOptions``.

Errors follow scikit-learn's wording::

    The 'delta' parameter of minimal_set must be a number in [0, 100). Got 100 instead.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "PARAMS",
    "Boolean",
    "Constraint",
    "Integer",
    "ListOf",
    "Options",
    "Real",
    "Text",
    "check",
    "check_choice",
    "check_device",
    "check_seeds",
    "cuda_problem",
    "load_yaml",
    "parse_list",
    "parse_yaml",
]


def _fail(name: str, caller: str, wanted: str, value) -> None:
    raise ValueError(f"The {name!r} parameter of {caller} must be {wanted}. Got {value!r} instead.")


class Constraint:
    """A rule a parameter value must follow; :meth:`validate` returns the normalised value."""

    optional = False

    def describe(self) -> str:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _check(self, value):  # returns the normalised value or raises _Bad
        raise NotImplementedError  # pragma: no cover

    def validate(self, value, name: str, caller: str):
        """The normalised value, or a ValueError naming ``name``, ``caller`` and the rule."""
        if value is None and self.optional:
            return None
        try:
            return self._check(value)
        except _Bad:
            _fail(name, caller, self.wording(), value)

    def wording(self) -> str:
        return self.describe() + (" or None" if self.optional else "")

    def invalid_examples(self) -> list:
        """Values this constraint refuses (used by the tests to prove that the configuration
        and the library refuse the same values)."""
        return [] if self.optional else [None]


class _Bad(Exception):
    pass


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Integer(Constraint):
    """An int in ``[low, high]`` (either bound may be None)."""

    low: int | None = None
    high: int | None = None
    optional: bool = False

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"an int in [{self.low}, {self.high}]"
        if self.low is not None:
            return f"an int >= {self.low}"
        if self.high is not None:
            return f"an int <= {self.high}"
        return "an int"

    def _check(self, value):
        if not _is_int(value):
            raise _Bad
        value = int(value)
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise _Bad
        return value

    def invalid_examples(self) -> list:
        out = super().invalid_examples() + ["1", 1.5, True]
        if self.low is not None:
            out.append(self.low - 1)
        if self.high is not None:
            out.append(self.high + 1)
        return out


@dataclass(frozen=True)
class Real(Constraint):
    """A finite number in an interval; ``closed`` says which ends belong to it."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"  # "both", "left", "right", "neither"
    optional: bool = False

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        if self.low is not None and self.high is not None:
            return f"a number in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"a number {'>=' if left == '[' else '>'} {self.low:g}"
        if self.high is not None:
            return f"a number {'<=' if right == ']' else '<'} {self.high:g}"
        return "a finite number"

    def _check(self, value):
        if not _is_real(value) or not math.isfinite(float(value)):
            raise _Bad
        value = float(value)
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            raise _Bad
        if self.high is not None and (value > self.high or (value == self.high and not right)):
            raise _Bad
        return value

    def invalid_examples(self) -> list:
        out = super().invalid_examples() + ["0.5", float("nan"), True]
        if self.low is not None:
            out.append(self.low - 1)
            if self.closed in ("right", "neither"):
                out.append(self.low)
        if self.high is not None:
            out.append(self.high + 1)
            if self.closed in ("left", "neither"):
                out.append(self.high)
        return out


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed set of values."""

    choices: tuple = ()
    optional: bool = False

    def describe(self) -> str:
        return "one of {" + ", ".join(repr(c) for c in self.choices) + "}"

    def _check(self, value):
        if isinstance(value, bool) or value not in self.choices:
            raise _Bad
        return value

    def invalid_examples(self) -> list:
        return super().invalid_examples() + ["not-an-option", 3]


@dataclass(frozen=True)
class Boolean(Constraint):
    """``True`` or ``False`` (not 0/1, not a string)."""

    optional: bool = False

    def describe(self) -> str:
        return "a bool (true or false)"

    def _check(self, value):
        if type(value).__name__ not in ("bool", "bool_"):
            raise _Bad
        return bool(value)

    def invalid_examples(self) -> list:
        return super().invalid_examples() + ["yes", 1]


@dataclass(frozen=True)
class Text(Constraint):
    """A non-empty string."""

    optional: bool = False

    def describe(self) -> str:
        return "a non-empty string"

    def _check(self, value):
        if not isinstance(value, str) or not value.strip():
            raise _Bad
        return value

    def invalid_examples(self) -> list:
        return super().invalid_examples() + ["", 3]


def parse_list(value):
    """A list from what people pass for a list parameter.

    Lists and tuples are taken as they are; a string that holds a JSON or YAML list
    (``'["minilm", "mpnet"]'``, what ``papermill -p models '[...]'`` injects) is parsed; any
    other scalar becomes a one-element list (``papermill -p models minilm``).
    """
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            import yaml

            try:
                parsed = yaml.load(value, Loader=_loader())  # noqa: S506 - a SafeLoader
            except yaml.YAMLError:
                parsed = None
        if not isinstance(parsed, list):
            raise _Bad
        return parsed
    return [value]


@dataclass(frozen=True)
class ListOf(Constraint):
    """A list of values that each follow ``item``; see :func:`parse_list` for what is accepted."""

    item: Constraint = Text()
    min_len: int = 0
    unique: bool = True
    optional: bool = False

    def describe(self) -> str:
        size = f" (at least {self.min_len})" if self.min_len else ""
        distinct = " without duplicates" if self.unique else ""
        return f"a list{distinct}{size} of {_plural(self.item.describe())}"

    def _check(self, value):
        if isinstance(value, (Mapping, set)):
            raise _Bad
        items = parse_list(value)
        out = []
        for item in items:
            try:
                out.append(self.item._check(item))
            except _Bad:
                raise _Bad from None
        if len(out) < self.min_len:
            raise _Bad
        if self.unique and len({json.dumps(x, sort_keys=True, default=str) for x in out}) != len(
            out
        ):
            raise _Bad
        return tuple(out)

    def invalid_examples(self) -> list:
        bad_item = next((v for v in self.item.invalid_examples() if v is not None), None)
        out = super().invalid_examples() + [{"a": 1}]
        if bad_item is not None:
            out.append([bad_item])
        if self.min_len:
            out.append([])
        return out


@dataclass(frozen=True)
class Pair(Constraint):
    """A two-element list, each element following ``item`` (e.g. ``[delta_LS, delta_FS]``)."""

    item: Constraint = Real()

    def describe(self) -> str:
        return f"a pair [a, b] of {_plural(self.item.describe())}"

    def _check(self, value):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise _Bad
        return tuple(self.item._check(v) for v in value)

    def invalid_examples(self) -> list:
        return [[1.0], [1.0, 2.0, 3.0], "1, 1"]


def _plural(description: str) -> str:
    for article in ("an ", "a "):
        if description.startswith(article):
            word, _, rest = description[len(article) :].partition(" ")
            return f"{word}s {rest}".strip()
    return description


DELTA = Real(0, 100, closed="left")
THRESHOLD = Real(0, 1, closed="right")

PARAMS: dict[str, Constraint] = {
    # data
    "train_tokens": Integer(1, optional=True),
    "dev_tokens": Integer(1, optional=True),
    "test_tokens": Integer(1, optional=True),
    "train_sentences": Integer(1, optional=True),
    "dev_sentences": Integer(1, optional=True),
    "test_sentences": Integer(1, optional=True),
    "random_state": Integer(0, 2**63 - 1),
    # extraction
    "aggregation": Options(("first", "last", "mean")),
    "pooling": Options(("auto", "first", "last", "mean")),
    "dtype": Options(("float32", "float16")),
    # 8 tokens leave room for up to 6 special tokens and 2 word pieces: every tokenizer
    # the library knows; anything shorter cannot hold a word with its special tokens
    "max_length": Integer(8, 100_000, optional=True),
    "batch_size": Integer(1),
    # fine-tuning and probes
    "epochs": Integer(1),
    "learning_rate": Real(0, closed="neither"),
    "l1": Real(0),
    "l2": Real(0),
    "max_train_sentences": Integer(1, optional=True),
    "compute_dtype": Options(("float32", "bfloat16")),
    # analyses
    "threshold": THRESHOLD,
    "delta": DELTA,
    "delta_pair": Pair(DELTA),
    "representative": Options(("random", "central")),
    "n_seeds": Integer(1, 100),
    "n_bootstrap": Integer(0, 1_000_000),
    "confidence": Real(0, 1, closed="neither"),
    "device": Text(optional=True),
    "instances": Integer(1),
    # one probe's input width: more than any encoder's n_layers * n_hidden (see MAX_FEATURES)
    "n_features": Integer(1, 1_000_000),
    "repeats": Integer(1, 1000),
}
"""Every constrained parameter of the library, by the name the functions use."""


def check(name: str, value, caller: str, *, param: str | None = None):
    """Check ``value`` against ``PARAMS[param or name]``; return it normalised.

    Parameters
    ----------
    name : str
        The parameter's name as the caller spells it (shown in the error).
    value
        The value to check.
    caller : str
        The function or object whose parameter it is (shown in the error).
    param : str, optional
        Key of :data:`PARAMS` when it differs from ``name`` (``probe_lr`` -> ``learning_rate``).
    """
    return PARAMS[param or name].validate(value, name, caller)


def check_sequence(name: str, values: Sequence, caller: str, *, param: str | None = None):
    """Check every element of ``values`` against one constraint; return a tuple."""
    return tuple(check(name, v, caller, param=param) for v in values)


def check_choice(value, choices, *, name: str, caller: str):
    """``value`` when it is one of ``choices``, else a scikit-learn style ValueError (the
    :class:`Options` rule for a parameter that is not in :data:`PARAMS`)."""
    return Options(tuple(choices)).validate(value, name, caller)


# --------------------------------------------------------------------------------------------
# bounds that depend on the machine or on other values
# --------------------------------------------------------------------------------------------
SEED_MAX = 2**63 - 1
"""Largest seed numpy and torch both take (a signed 64-bit integer); ``random_state + i``
must stay below it for every seed of a run."""
MAX_FEATURES = 1_000_000
"""Largest feature count of the probe-timing measurement: wider than any encoder's
``n_layers * n_hidden`` (BERT-large: 25 x 1024), and a probe this wide still fits in memory."""


def check_seeds(random_state: int, n_seeds: int, caller: str) -> None:
    """Refuse a first seed whose last seed ``random_state + n_seeds - 1`` overflows 64 bits."""
    if random_state + n_seeds - 1 > SEED_MAX:
        raise ValueError(
            f"The 'random_state' parameter of {caller} must leave room for {n_seeds} seeds "
            f"below 2**63 (numpy and torch take signed 64-bit seeds): at most "
            f"{SEED_MAX - n_seeds + 1}. Got {random_state} instead."
        )


def cuda_problem(device, *, option: str = "device") -> str | None:
    """Why ``device`` cannot be used on this machine (None when it can, or when it is None or
    ``cpu``). Checked before any work, so a run does not fail deep inside a step. ``option``
    is how the user sets it (``device`` in a parameter file, ``--device`` on the command line)."""
    fix = (
        "Use --device cpu, or leave --device out to pick the GPU only when there is one."
        if option.startswith("--")
        else "Use device: cpu, or leave device out (null) to pick the GPU only when there is one."
    )
    if device is None or str(device) == "cpu":
        return None
    device = str(device)
    if not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        return f"{option} must be 'cpu', 'cuda' or 'cuda:N'. Got {device!r} instead."
    import torch

    if not torch.cuda.is_available():
        return (
            f"{option} {device!r}: no CUDA device is available on this machine (torch "
            f"{torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA). "
            + fix
        )
    index = int(device[5:]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        return (
            f"{option} {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"numbered from 0. Use cuda:0 ... cuda:{torch.cuda.device_count() - 1}."
        )
    return None


def check_device(device, caller: str):
    """``device`` when this machine can run on it; else a ValueError saying the fix."""
    problem = cuda_problem(device)
    if problem:
        raise ValueError(f"The 'device' parameter of {caller}: {problem}")
    return device


# --------------------------------------------------------------------------------------------
# YAML files: one loader for parameter files and activation-set manifests
# --------------------------------------------------------------------------------------------
_FLOAT = r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$"""


@functools.lru_cache(maxsize=1)
def _loader():
    """A safe YAML loader that refuses duplicate keys and reads ``1e-3`` as a number.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-3``), so ``1e-3`` would be the
    string "1e-3"; YAML 1.2 and every person writing a parameter file read it as 0.001.
    """
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(_FLOAT, re.X), list("-+0123456789.")
    )

    def mapping(loader, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: let PyYAML word the error
                break
            line = key_node.start_mark.line + 1
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"the key {key!r} appears twice, on line {first} and on line {line} "
                    "(the second would silently win): keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return loader.construct_mapping(node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return Loader


def parse_yaml(text: str, source: str = "<text>"):
    """Parse YAML text with :func:`load_yaml`'s rules; errors name ``source`` and the line."""
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context = getattr(e, "context", None)
        detail = f"{problem} ({context})" if context and "twice" not in problem else problem
        raise ValueError(f"{source}{where}: invalid YAML: {detail}.") from None


def load_yaml(path, *, what: str = "a YAML file"):
    """Read a YAML file: UTF-8, no duplicate keys, YAML-1.2 numbers; errors name the file,
    the line and the fix."""
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}, line {line}: {what} must be UTF-8 text; byte {e.start} is not "
            "(Latin-1?). Save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None
    return parse_yaml(text, str(path))
