"""Typed dataclasses from plain data (YAML, JSON, keyword options), every error naming the option.

Methods, protocols and the benchmark's own options are dataclasses whose annotations are the
schema. :func:`build_typed` turns a mapping into one, checking each value against its field's
annotation (``int``, ``float``, ``bool``, ``str``, ``Literal``, optionals, tuples, nested
dataclasses) and raising :class:`OptionError` with the dotted option name (``method.iterations``)
for an unknown option, a missing one or a value of the wrong type. It never coerces across kinds:
``1.5`` is not an ``int``, ``true`` is not a number, ``"3"`` is not a number (an ``int`` is a
``float``). Tuples arrive as lists from YAML and become tuples.

Numbers are also checked against the range their option's name implies (:data:`NAME_RANGES`):
floats are finite, integers fit in 64 bits, learning rates are positive, momenta lie in
``[0, 1)``, counts (``num_*``, batch sizes, ``hidden``, ``layers``) are at least 1, and every other
number is non-negative, unless the dataclass lists the option in ``SIGNED_OPTIONS``. A class's own
``__post_init__`` checks what a name cannot say.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

from data.untrusted import InputError, is_integer

T = TypeVar("T")


class OptionError(InputError):
    """An option is unknown, missing, or has a value of the wrong type or out of range."""


#: ``(name pattern, low, low is allowed, high)``: the range a numeric option's name implies (the
#: first match wins; ``high`` is excluded, ``None`` is unbounded). Other numbers are ``>= 0``.
NAME_RANGES: tuple[tuple[re.Pattern[str], float, bool, float | None], ...] = (
    (re.compile(r"momentum"), 0.0, True, 1.0),
    (re.compile(r"(^|_)lr($|_)|learning_rate"), 0.0, False, None),
    (re.compile(r"^num_|(^|_)batch(_size)?$|_batch$|^hidden$|^layers$"), 1.0, True, None),
)
_INT64_MAX = 2**63 - 1


def check_range(name: str, value: float, *, path: str) -> None:
    """Raise :class:`OptionError` unless ``value`` lies in the range option ``name`` implies."""
    low, low_allowed, high = 0.0, True, None
    for pattern, pattern_low, pattern_low_allowed, pattern_high in NAME_RANGES:
        if pattern.search(name):
            low, low_allowed, high = pattern_low, pattern_low_allowed, pattern_high
            break
    if value < low or (value == low and not low_allowed) or (high is not None and value >= high):
        bounds = f"{'[' if low_allowed else '('}{low:g}, {'inf' if high is None else f'{high:g}'})"
        raise OptionError(f"{path} must be in {bounds}, got {value!r}")


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every init field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def required_fields(cls: type) -> list[str]:
    """Init fields of ``cls`` without a default."""
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def build_typed(cls: type[T], values: Mapping[str, Any], *, path: str, owner: str | None = None) -> T:
    """``cls(**values)`` after checking every value against its field's annotation.

    Args:
        cls: a dataclass.
        values: option name -> value (plain data; nested dataclasses as mappings).
        path: the dotted prefix naming these options in messages (``method``, ``protocol.soft``).
        owner: who owns the options, for the unknown-option message (``method 'dm'``); defaults
            to ``path``.

    Raises:
        OptionError: an unknown or missing option, or a value of the wrong type.
    """
    if not isinstance(values, Mapping):
        raise OptionError(f"{path} must be a mapping of options, got {values!r}")
    types_of = field_types(cls)
    unknown = sorted(str(key) for key in values if key not in types_of)
    if unknown:
        valid = ", ".join(sorted(types_of)) or "(none)"
        raise OptionError(f"{owner or path} has no option(s) {', '.join(unknown)}; valid options: {valid}")
    missing = [name for name in required_fields(cls) if name not in values]
    if missing:
        raise OptionError(f"{owner or path} needs option(s) {', '.join(f'{path}.{m}' for m in missing)}")
    converted = {name: convert(types_of[name], value, path=f"{path}.{name}") for name, value in values.items()}
    signed = frozenset(getattr(cls, "SIGNED_OPTIONS", ()))
    for name, value in converted.items():
        if name not in signed:
            _check_numbers(name, value, path=f"{path}.{name}")
    try:
        return cls(**converted)
    except InputError:
        raise
    except (ValueError, TypeError) as error:  # the class's own checks (``__post_init__``)
        raise OptionError(f"{owner or path}: {error}") from None


def _check_numbers(name: str, value: Any, *, path: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        check_range(name, value, path=path)
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            _check_numbers(name, item, path=f"{path}[{index}]")


def convert(annotation: Any, value: Any, *, path: str) -> Any:
    """``value`` as ``annotation`` wants it (lists to tuples, ints to floats), or :class:`OptionError`."""
    if annotation is Any or annotation is object:
        return value
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in arguments:
                return None
            raise OptionError(f"{path} must not be null")
        errors = []
        for choice in (a for a in arguments if a is not type(None)):
            try:
                return convert(choice, value, path=path)
            except OptionError as error:
                errors.append(str(error))
        raise OptionError(errors[0] if len(errors) == 1 else f"{path}: {value!r} fits none of {describe(annotation)}")
    if origin is Literal:
        if value in arguments and not isinstance(value, bool):
            return value
        raise OptionError(f"{path} must be one of {', '.join(map(repr, arguments))}, got {value!r}")
    if value is None:
        raise OptionError(f"{path} must be {describe(annotation)}, got null")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise OptionError(f"{path} must be true or false, got {value!r}")
    if annotation is int:
        if is_integer(value):
            if abs(int(value)) > _INT64_MAX:
                raise OptionError(f"{path} must fit in 64 bits, got {value!r}")
            return int(value)
        raise OptionError(f"{path} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not math.isfinite(float(value)):
                raise OptionError(f"{path} must be a finite number, got {value!r}")
            return float(value)
        raise OptionError(f"{path} must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise OptionError(f"{path} must be a string, got {value!r}")
    if origin in (tuple, list, Sequence):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise OptionError(f"{path} must be a list, got {value!r}")
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            if len(value) != len(arguments):
                raise OptionError(f"{path} must be a list of {len(arguments)} values, got {value!r}")
            pairs = enumerate(zip(arguments, value, strict=True))
            return tuple(convert(a, v, path=f"{path}[{i}]") for i, (a, v) in pairs)
        element = arguments[0] if arguments else Any
        items = [convert(element, v, path=f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise OptionError(f"{path} must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        return build_typed(annotation, value, path=path)
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise OptionError(f"{path} must be {describe(annotation)}, got {value!r}")


def describe(annotation: Any) -> str:
    """A short human name of an annotation (``an integer or null``)."""
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in typing.get_args(annotation))
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(annotation)))
    if origin in (tuple, list):
        return "a list"
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))
