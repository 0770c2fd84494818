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

FORMAT_NAME = "condense-bench/synthetic-set"
FORMAT_VERSION = 1
#: The header metadata key holding the set's JSON metadata.
METADATA_KEY = "condense_bench"
#: Tensors every set file holds.
REQUIRED_TENSORS = ("images", "labels")


def encode_set_file(tensors: dict[str, Tensor], metadata: dict[str, Any]) -> bytes:
    """The bytes of a set file holding ``tensors`` (CPU, contiguous) and ``metadata``."""
    return save_safetensors_bytes(tensors, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def check_metadata(raw: dict[str, str] | None, source: str | os.PathLike[str]) -> dict[str, Any]:
    """The set metadata of a safetensors header's ``__metadata__``, refused unless it is this format.

    Raises:
        ValueError: no set metadata, not a JSON object, another format, or a newer version.
    """
    text = (raw or {}).get(METADATA_KEY)
    if text is None:
        raise ValueError(f"{source} is a safetensors file without synthetic-set metadata ('{METADATA_KEY}')")
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: the '{METADATA_KEY}' metadata is not JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{source}: the '{METADATA_KEY}' metadata is not a JSON object")
    if metadata.get("format") != FORMAT_NAME:
        raise ValueError(f"{source}: unknown format {metadata.get('format')!r}")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise ValueError(f"{source}: format version {version!r} is not one this suite reads (<= {FORMAT_VERSION})")
    return metadata


def _check_tensors(names: set[str], source: str | os.PathLike[str]) -> None:
    missing = [name for name in REQUIRED_TENSORS if name not in names]
    if missing:
        raise ValueError(f"{source}: missing tensor(s) {', '.join(missing)} (found {sorted(names)})")


def decode_set_file(raw: bytes, source: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and the checked metadata of a set file's bytes.

    Raises:
        ValueError: not a safetensors file, or not a set file of this format.
    """
    try:
        tensors = load_safetensors_bytes(raw)
        header = _header(raw)
    except (SafetensorError, ValueError, OverflowError) as error:
        raise ValueError(f"{source} is not a safetensors synthetic set: {error}") from None
    metadata = check_metadata(header.get("__metadata__"), source)
    _check_tensors(set(tensors), source)
    return tensors, metadata


def _header(raw: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors buffer (read without code)."""
    if len(raw) < 8:
        raise ValueError("file too short")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len <= 0 or 8 + header_len > len(raw):
        raise ValueError("bad header length")
    header = json.loads(raw[8 : 8 + header_len])
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
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
        ValueError: not a set file of this format.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no set file at {source}")
    with safe_open(str(source), framework="numpy") as handle:
        metadata = check_metadata(handle.metadata(), source)
        _check_tensors(set(handle.keys()), source)
        yield SetFileReader(metadata, handle)
