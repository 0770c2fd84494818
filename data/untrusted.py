"""The one way the suite reads files it did not just write: set files, graph sets, records, cache
entries, teacher weights.

Such a file may be truncated by a killed writer, come from another version or another program,
or be crafted. Every reader checks it here, and every refusal is a :class:`BadFileError` naming
the file and the reason, never a ``KeyError`` or a ``RecursionError`` from deep inside a parser:

* :func:`read_limited` reads a regular file of at most ``max_bytes``;
* :func:`parse_json` parses JSON text no larger and no deeper than its limits, refusing ``NaN``,
  ``Infinity`` and repeated keys (which ``json.loads`` accepts silently);
* the ``field`` helpers check one metadata field each, with the field's name in the message;
* :func:`refusing` turns whatever a decoder raises on malformed input into a :class:`BadFileError`.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Largest JSON text the suite parses from a file (records and metadata are a few KiB).
MAX_JSON_BYTES = 16 * 2**20
#: Deepest nesting of arrays and objects in such JSON (records nest about 5 levels).
MAX_JSON_DEPTH = 64
#: Errors a decoder raises on malformed input; :func:`refusing` turns them into ``BadFileError``.
DECODING_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
    StopIteration,
    UnicodeError,
    RuntimeError,
    MemoryError,
    EOFError,
)

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPENING = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSING = np.frombuffer(b"]}", dtype=np.uint8)


class InputError(ValueError):
    """Something the user gave the suite (a file, an option, a path) is refused before any work."""


class BadFileError(InputError):
    """A file the suite was asked to read is not what it should be.

    Attributes:
        path: the file.
        reason: what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer, ``True``/``False`` excluded (JSON and YAML give bools)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def read_limited(path: str | os.PathLike[str], *, max_bytes: int | None = None, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        BadFileError: ``path`` is not a regular file, is larger than ``max_bytes``, or cannot be read.
    """
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"no {what} at {source}")
    if not source.is_file():
        raise BadFileError(source, f"not a regular file (a {what} was expected)")
    try:
        size = source.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise BadFileError(source, f"{size} bytes, more than the {max_bytes} a {what} may have")
        return source.read_bytes()
    except OSError as error:
        raise BadFileError(source, f"cannot be read ({error.strerror or error})") from None


def parse_json(
    raw: str | bytes,
    source: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """Parse untrusted JSON text; every refusal is a :class:`BadFileError` for ``source``.

    Raises:
        BadFileError: larger than ``max_bytes``, nested deeper than ``max_depth``, not UTF-8, not
            JSON, or holding ``NaN``/``Infinity`` or an object with a repeated key.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(data) > max_bytes:
        raise BadFileError(source, f"{len(data)} bytes of JSON, more than the {max_bytes} allowed")
    depth = json_depth(data)
    if depth > max_depth:
        raise BadFileError(source, f"JSON nested {depth} levels deep, more than the {max_depth} allowed")
    try:
        text = data.decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as error:
        raise BadFileError(source, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise BadFileError(
            source, f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    except _JsonRefusal as error:
        raise BadFileError(source, str(error)) from None
    except RecursionError:  # pragma: no cover - json_depth bounds the nesting first
        raise BadFileError(source, "JSON nested too deeply") from None


def json_depth(data: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in JSON bytes, strings skipped (no recursion, linear time)."""
    codes = np.frombuffer(_JSON_STRING.sub(b'""', data), dtype=np.uint8)
    steps = np.isin(codes, _OPENING).astype(np.int64) - np.isin(codes, _CLOSING).astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


class _JsonRefusal(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _JsonRefusal(f"JSON holds {name}, which is not a number the suite accepts")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonRefusal(f"JSON object has the key {key!r} twice")
        result[key] = value
    return result


@contextlib.contextmanager
def refusing(source: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Turn a decoder's failure on malformed input into a :class:`BadFileError` for ``source``."""
    try:
        yield
    except BadFileError:
        raise
    except DECODING_ERRORS as error:
        reason = str(error) or type(error).__name__
        raise BadFileError(source, f"not a valid {what}: {reason}") from None


# -- metadata fields ----------------------------------------------------------------------------


def mapping_field(
    meta: Mapping[str, Any], name: str, source: str | os.PathLike[str], *, optional: bool = False
) -> dict:
    """Field ``name`` of ``meta`` as a JSON object (``{}`` when optional and absent or null)."""
    value = meta.get(name)
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        raise BadFileError(source, f"'{name}' must be a JSON object, got {_shown(value)}")
    return dict(value)


def int_field(
    meta: Mapping[str, Any],
    name: str,
    source: str | os.PathLike[str],
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    optional: bool = False,
) -> int | None:
    """Field ``name`` of ``meta`` as an integer in ``[minimum, maximum]`` (``None`` when optional)."""
    value = meta.get(name)
    if value is None and optional:
        return None
    if not is_integer(value):
        raise BadFileError(source, f"'{name}' must be an integer, got {_shown(value)}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise BadFileError(source, f"'{name}' must be in [{minimum}, {maximum}], got {value}")
    return int(value)


def number_field(
    meta: Mapping[str, Any],
    name: str,
    source: str | os.PathLike[str],
    *,
    positive: bool = False,
    optional: bool = False,
) -> float | None:
    """Field ``name`` of ``meta`` as a finite number (``> 0`` with ``positive``; ``None`` when optional)."""
    value = meta.get(name)
    if value is None and optional:
        return None
    return finite_number(value, name, source, positive=positive)


def finite_number(value: Any, name: str, source: str | os.PathLike[str], *, positive: bool = False) -> float:
    """``value`` as a finite float (``> 0`` with ``positive``), else :class:`BadFileError` naming ``name``."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(float(value)):
        raise BadFileError(source, f"'{name}' must be a finite number, got {_shown(value)}")
    if positive and not float(value) > 0:
        raise BadFileError(source, f"'{name}' must be > 0, got {value}")
    return float(value)


def number_list_field(
    meta: Mapping[str, Any],
    name: str,
    source: str | os.PathLike[str],
    *,
    positive: bool = False,
    max_length: int = 1024,
) -> tuple[float, ...]:
    """Field ``name`` of ``meta`` as a non-empty list of finite numbers (each ``> 0`` with ``positive``)."""
    value = meta.get(name)
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or not 0 < len(value) <= max_length:
        raise BadFileError(source, f"'{name}' must be a list of 1 to {max_length} numbers, got {_shown(value)}")
    return tuple(finite_number(item, f"{name}[{i}]", source, positive=positive) for i, item in enumerate(value))


def string_list_field(meta: Mapping[str, Any], name: str, source: str | os.PathLike[str]) -> list[str]:
    """Field ``name`` of ``meta`` as a list of strings (``[]`` when absent)."""
    value = meta.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadFileError(source, f"'{name}' must be a list of strings, got {_shown(value)}")
    return list(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
