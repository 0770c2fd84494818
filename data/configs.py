"""The suite's config folder (``configs/``) and a reader of its options that needs no Hydra.

The YAML files under ``configs/`` are the single source of truth for protocols and method presets;
the benchmark app composes them with Hydra, and the library reads the same files with
:func:`read_option`, which understands the part of Hydra's defaults list these files use:

* ``_self_``: where the file's own values go (last when absent);
* ``name``: another option of the same group (``soft`` inside ``protocol/soft_stored.yaml``);
* ``/group/name@_here_``: an option of another group merged at this place
  (``/method/dm@_here_`` inside ``method/digits/dm.yaml``).

Mappings merge key by key, in order; lists and scalars are replaced.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

CONFIG_DIRNAME = "configs"

#: Resolves an option that has no file (e.g. a method's schema): ``"method_schema/dm" -> dict``.
MissingOption = Callable[[str], dict[str, Any] | None]


def config_dir() -> Path:
    """The packaged configs (``data/configs`` in a wheel) or the checkout's ``configs/``."""
    packaged = Path(__file__).resolve().parent / CONFIG_DIRNAME
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / CONFIG_DIRNAME
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"no configs found at {packaged} or {checkout}; reinstall condense-bench")


def option_names(group: str, *, root: Path | None = None) -> list[str]:
    """The options of a config group (file stems, sub-folders as ``sub/name``)."""
    folder = (root or config_dir()) / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


def read_option(
    option: str, *, root: Path | None = None, missing: MissingOption | None = None, _seen: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The merged contents of ``configs/<option>.yaml`` (``protocol/soft``), its defaults resolved.

    Args:
        option: ``group/name`` (``method/digits/dm``).
        root: the config folder (default :func:`config_dir`).
        missing: called for an option without a file; returns its contents or ``None``.

    Raises:
        FileNotFoundError: no such option (lists the group's options).
        ValueError: a defaults entry of a form this reader does not know, or a loop of defaults.
    """
    from omegaconf import OmegaConf

    root = root or config_dir()
    if option in _seen:
        raise ValueError(f"config defaults loop: {' -> '.join((*_seen, option))}")
    path = root / f"{option}.yaml"
    if not path.is_file():
        contents = missing(option) if missing is not None else None
        if contents is not None:
            return contents
        group, _, name = option.rpartition("/")
        valid = ", ".join(option_names(group, root=root)) if (root / group).is_dir() else "(none)"
        raise FileNotFoundError(f"no config {name!r} in {root / group}; valid options: {valid}")
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a mapping, got {type(raw).__name__}")
    defaults = raw.pop("defaults", [])
    own = raw
    group = option.rpartition("/")[0]
    merged: dict[str, Any] = {}
    placed_self = False
    for entry in defaults:
        if entry == "_self_":
            merged, placed_self = merge(merged, own), True
            continue
        target = _default_target(entry, group, path)
        merged = merge(merged, read_option(target, root=root, missing=missing, _seen=(*_seen, option)))
    return merged if placed_self else merge(merged, own)


def _default_target(entry: Any, group: str, path: Path) -> str:
    if isinstance(entry, str) and entry.startswith("/") and entry.endswith("@_here_"):
        return entry[1 : -len("@_here_")]
    if isinstance(entry, str) and "@" not in entry and not entry.startswith("/"):
        return f"{group}/{entry}" if group else entry
    known = "name, /group/name@_here_, _self_"
    raise ValueError(f"{path}: defaults entry {entry!r} is not one this reader knows ({known})")


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``: mappings merged key by key, everything else replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
