"""DSA as the synthesizers use it: the strategy of a dataset and siamese augmentation of two batches."""

from __future__ import annotations

from torch import Tensor

from data.seeding import make_generator
from evaluation.augment import DSAParams, dsa_augment, strategy_for


def resolve_strategy(dsa_strategy: str, flip: bool) -> str | None:
    """The DSA strategy to use (``None`` for no augmentation); ``auto`` follows the dataset's flip policy."""
    if dsa_strategy == "none":
        return None
    if dsa_strategy == "auto":
        return strategy_for(flip)
    return dsa_strategy


def siamese_augment(
    real: Tensor, synthetic: Tensor, strategy: str | None, seed: int, params: DSAParams = DSAParams()
) -> tuple[Tensor, Tensor]:
    """DSA with the same op and the same parameters on both batches (and on every image).

    Two CPU generators seeded alike drive the two :func:`~evaluation.augment.dsa_augment` calls,
    so the transforms are identical; gradients flow through the op into ``synthetic``.
    ``strategy=None`` returns the batches unchanged.
    """
    if strategy is None:
        return real, synthetic
    real_out = dsa_augment(real, strategy, make_generator(seed, "cpu"), shared=True, params=params)
    synthetic_out = dsa_augment(synthetic, strategy, make_generator(seed, "cpu"), shared=True, params=params)
    return real_out, synthetic_out
