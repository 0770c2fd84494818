"""Intermediate activations by module path, through forward hooks (no model rewrites).

A path is what ``model.get_submodule`` takes (``"features.1"``, ``"classifier"``); the suffix
``":input"`` captures the module's first input instead of its output, so ``"classifier:input"``
is the penultimate feature vector of every registry model::

    with FeatureHooks(model, ["features.1", "classifier:input"]) as hooks:
        logits = model(images)
    hooks.features["features.1"]  # the second conv block's output for ``images``
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from torch import Tensor, nn

INPUT_SUFFIX = ":input"


def resolve_module(model: nn.Module, path: str) -> tuple[nn.Module, bool]:
    """The module a path names and whether its input (not output) is wanted.

    Raises:
        ValueError: no such module (the message lists the model's module paths).
    """
    wants_input = path.endswith(INPUT_SUFFIX)
    name = path.removesuffix(INPUT_SUFFIX)
    try:
        return model.get_submodule(name), wants_input
    except AttributeError:
        valid = ", ".join(n for n, _ in model.named_modules() if n) or "(no submodules)"
        raise ValueError(
            f"no module {name!r} in {type(model).__name__}; valid paths (add ':input' for a module's input): {valid}"
        ) from None


class FeatureHooks:
    """Capture the outputs (or inputs) of named modules on every forward pass.

    Args:
        model: the network.
        paths: module paths, optionally ending in ``":input"``.

    ``features`` maps each path to the activation of the latest forward pass. Hooks are removed
    when the ``with`` block ends (or by :meth:`remove`).
    """

    def __init__(self, model: nn.Module, paths: Sequence[str]) -> None:
        self.model = model
        self.paths = tuple(dict.fromkeys(paths))
        self.features: dict[str, Tensor] = {}
        self._handles: list[Any] = []
        self._targets = [(path, *resolve_module(model, path)) for path in self.paths]

    def __enter__(self) -> FeatureHooks:
        for path, module, wants_input in self._targets:
            if wants_input:
                self._handles.append(module.register_forward_pre_hook(self._input_hook(path)))
            else:
                self._handles.append(module.register_forward_hook(self._output_hook(path)))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Detach every hook."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _output_hook(self, path: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
            self.features[path] = output

        return hook

    def _input_hook(self, path: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            self.features[path] = inputs[0]

        return hook
