"""The file format of a saved :class:`~data.synthetic.SyntheticSet`, read and written in one place.

A set file is one safetensors file: the tensors ``images`` (N x C x H x W, normalized),
``labels`` (N class ids, or N x K soft labels) and ``extras.<name>``, and in the header metadata
under ``condense_bench`` a JSON object: ``format`` and ``format_version``, ``num_classes``, the
per-channel ``mean`` and ``std``, the budget, provenance, sampler and decoder. The safetensors
header is JSON and the tensors are raw arrays, so reading a set never runs code from the file.

:func:`decode_set_file` reads a whole file (the set's own loader); :func:`open_set_file` opens one
lazily, reading only the tensors asked for (the report's image grids).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor

from data.untrusted import BadFileError, parse_json, refusing

FORMAT_NAME = "condense-bench/synthetic-set"
FORMAT_VERSION = 1
#: The header metadata key holding the set's JSON metadata.
METADATA_KEY = "condense_bench"
#: Tensors every set file holds.
REQUIRED_TENSORS = ("images", "labels")
#: The file suffix of a saved image set (graph sets have their own format and suffix).
SET_FILE_SUFFIX = ".safetensors"


def encode_set_file(tensors: dict[str, Tensor], metadata: dict[str, Any]) -> bytes:
    """The bytes of a set file holding ``tensors`` (CPU, contiguous) and ``metadata``."""
    return save_safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def check_metadata(raw: dict[str, str] | None, source: str | os.PathLike[str]) -> dict[str, Any]:
    """The set metadata of a safetensors header's ``__metadata__``, refused unless it is this format.

    Raises:
        BadFileError: no set metadata, not a JSON object, another format, or a newer version.
    """
    text = (raw or {}).get(METADATA_KEY) if isinstance(raw, dict) else None
    if not isinstance(text, str):
        raise BadFileError(source, f"a safetensors file without synthetic-set metadata ('{METADATA_KEY}')")
    metadata = parse_json(text, source)
    if not isinstance(metadata, dict):
        raise BadFileError(source, f"the '{METADATA_KEY}' metadata is not a JSON object")
    if metadata.get("format") != FORMAT_NAME:
        raise BadFileError(source, f"unknown format {str(metadata.get('format'))[:80]!r}")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise BadFileError(source, f"format version {version!r} is not one this suite reads (1 to {FORMAT_VERSION})")
    return metadata


def _check_tensors(names: set[str], source: str | os.PathLike[str]) -> None:
    missing = [name for name in REQUIRED_TENSORS if name not in names]
    if missing:
        raise BadFileError(source, f"missing tensor(s) {', '.join(missing)} (found {sorted(names)[:10]})")


def decode_set_file(raw: bytes, source: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and the checked metadata of a set file's bytes.

    Raises:
        BadFileError: not a safetensors file, or not a set file of this format.
    """
    header = _header(raw, source)
    try:
        with refusing(source, "safetensors synthetic set"):
            tensors = load_safetensors_bytes(raw)
    except SafetensorError as error:
        raise BadFileError(source, f"not a safetensors synthetic set: {error}") from None
    metadata = check_metadata(header.get("__metadata__"), source)
    _check_tensors(set(tensors), source)
    return tensors, metadata


def _header(raw: bytes, source: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a safetensors buffer (read without code)."""
    if len(raw) < 8:
        raise BadFileError(source, f"{len(raw)} bytes, too short for a safetensors synthetic set")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len <= 0 or 8 + header_len > len(raw):
        raise BadFileError(source, f"not a safetensors synthetic set (header length {header_len} of {len(raw)} bytes)")
    header = parse_json(raw[8 : 8 + header_len], source)
    if not isinstance(header, dict):
        raise BadFileError(source, "not a safetensors synthetic set (the header is not a JSON object)")
    return header


@dataclass(frozen=True)
class SetFileReader:
    """An open set file: its checked metadata and lazy access to its tensors (numpy arrays)."""

    metadata: dict[str, Any]
    _handle: Any

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of tensor ``name`` (nothing is read)."""
        return tuple(self._handle.get_slice(name).get_shape())

    def rows(self, name: str, start: int, stop: int) -> Any:
        """Rows ``start:stop`` of tensor ``name`` (only those are read)."""
        return self._handle.get_slice(name)[start:stop]

    def tensor(self, name: str) -> Any:
        """The whole tensor ``name``."""
        return self._handle.get_tensor(name)


@contextlib.contextmanager
def open_set_file(path: str | os.PathLike[str]) -> Iterator[SetFileReader]:
    """Open a set file lazily (numpy arrays); its metadata and tensors are checked first.

    Raises:
        FileNotFoundError: no file at ``path``.
        BadFileError: not a set file of this format.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no set file at {source}")
    try:
        handle_context = safe_open(str(source), framework="numpy")
    except (SafetensorError, OSError, ValueError) as error:
        raise BadFileError(source, f"not a safetensors synthetic set: {error}") from None
    with handle_context as handle:
        metadata = check_metadata(handle.metadata(), source)
        _check_tensors(set(handle.keys()), source)
        yield SetFileReader(metadata, handle)
