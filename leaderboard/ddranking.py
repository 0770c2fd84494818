"""DD-Ranking's scores (Li, Zhong et al., arXiv 2505.13300) computed from records, in fractions.

* HLR, hard-label recovery: ``Acc(real, hard) - Acc(syn, hard)`` (the whole training set and
  the compressed set, both under the hard-label protocol).
* IOR, improvement over random: ``Acc(syn, soft) - Acc(random, soft)``, the random real subset
  at the same budget under the identical soft-label protocol.
* LRS, label-robust score: ``(e^a - e^-1) / (e - e^-1)`` with ``a = w IOR - (1 - w) HLR``.
* ARS, augmentation-robust score: the same normalization of
  ``b = g (syn_aug - rdm_aug) + (1 - g) (syn_noaug - rdm_noaug)``.

Accuracies are fractions in ``[0, 1]`` (the reference code feeds percentage points to ``exp``,
which puts its scores far outside ``[0, 1]``); with fractions ``a`` and ``b`` lie in
``[-1, 1]`` and the scores in ``[0, 1]``. Each accuracy is the mean, over the seeds that have a
record, of a record's mean accuracy for one evaluation model; the scores are computed from
those means.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from leaderboard.records import ResultRecord

_LOW, _HIGH = math.exp(-1.0), math.e


def _check_fraction(name: str, value: float) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be an accuracy fraction in [0, 1], got {value} (percent points?)")
    return float(value)


def normalize_score(value: float) -> float:
    """``(e^x - e^-1) / (e - e^-1)``: maps ``[-1, 1]`` onto ``[0, 1]``."""
    if not -1.0 - 1e-12 <= value <= 1.0 + 1e-12:
        raise ValueError(f"the score argument must lie in [-1, 1] (accuracy fractions), got {value}")
    return (math.exp(value) - _LOW) / (_HIGH - _LOW)


def hard_label_recovery(real_hard: float, syn_hard: float) -> float:
    """HLR: how much of the whole-data hard-label accuracy the set misses."""
    return _check_fraction("real_hard", real_hard) - _check_fraction("syn_hard", syn_hard)


def improvement_over_random(syn: float, random: float) -> float:
    """IOR: the set's accuracy minus the random subset's, same budget and protocol."""
    return _check_fraction("syn", syn) - _check_fraction("random", random)


def label_robust_score(hlr: float, ior: float, weight: float = 0.5) -> float:
    """LRS from HLR and IOR (DD-Ranking leaderboard weight 0.5)."""
    return normalize_score(weight * ior - (1.0 - weight) * hlr)


def augmentation_robust_score(
    syn_aug: float, random_aug: float, syn_noaug: float, random_noaug: float, gamma: float = 0.5
) -> float:
    """ARS from the set's and the random subset's accuracies with and without augmentation."""
    with_aug = improvement_over_random(syn_aug, random_aug)
    without_aug = improvement_over_random(syn_noaug, random_noaug)
    return normalize_score(gamma * with_aug + (1.0 - gamma) * without_aug)


@dataclass(frozen=True)
class DDRankingRow:
    """The scores of one method at one budget on one dataset (``None`` where records are missing)."""

    dataset: str
    budget: str
    method: str
    model: str
    hlr: float | None
    ior: float | None
    lrs: float | None
    ars: float | None
    accuracies: dict[str, float] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "dataset": self.dataset,
            "budget": self.budget,
            "method": self.method,
            "model": self.model,
            "hlr": self.hlr,
            "ior": self.ior,
            "lrs": self.lrs,
            "ars": self.ars,
            "accuracies": dict(self.accuracies),
            "seeds": dict(self.seeds),
            "missing": list(self.missing),
        }


def _mean_accuracies(records: Iterable[ResultRecord], model: str | None) -> dict[tuple, tuple[float, int, str]]:
    """``(dataset, budget, method, protocol) -> (mean over seeds, number of seeds, model)``."""
    grouped: dict[tuple, list[float]] = defaultdict(list)
    models: dict[tuple, str] = {}
    for record in records:
        name = model if model is not None else next(iter(record.results))
        if name not in record.results:
            continue
        key = (record.dataset, record.budget, record.method, record.protocol)
        grouped[key].append(_check_fraction(f"{record.method} accuracy", record.results[name].mean))
        models[key] = name
    return {key: (sum(values) / len(values), len(values), models[key]) for key, values in grouped.items()}


def ddranking_scores(
    records: Iterable[ResultRecord],
    *,
    soft_protocol: str = "soft",
    hard_protocol: str = "soft_hard",
    noaug_protocol: str | None = "soft_noaug",
    model: str | None = None,
    weight: float = 0.5,
    gamma: float = 0.5,
    random_method: str = "random",
    full_method: str = "full",
) -> list[DDRankingRow]:
    """HLR, IOR, LRS and ARS for every (dataset, budget, method) with a ``soft_protocol`` record.

    Args:
        records: result records (any protocols; the others are ignored).
        soft_protocol: the method's own (soft-label, augmented) evaluation: IOR and ARS "aug".
        hard_protocol: the hard-label protocol of HLR (for the set and the whole dataset).
        noaug_protocol: the same soft protocol without augmentation (ARS); ``None``: no ARS.
        model: the evaluation model (default: each record's first).
        weight: LRS weight ``w`` on IOR.
        gamma: ARS weight on the augmented gap.
        random_method: the control's method name.
        full_method: the whole-dataset method name.
    """
    records = list(records)
    means = _mean_accuracies(records, model)
    rows = []
    cells = sorted(
        {(d, b, m) for (d, b, m, p) in means if p == soft_protocol and m not in (random_method, full_method)}
    )
    for dataset, budget, method in cells:
        accuracies: dict[str, float] = {}
        seeds: dict[str, int] = {}
        missing: list[str] = []
        name = means[(dataset, budget, method, soft_protocol)][2]

        def get(label: str, key: tuple, accuracies=accuracies, seeds=seeds, missing=missing) -> float | None:
            if key not in means:
                missing.append(f"{label} ({key[2]} {key[1]} under {key[3]})")
                return None
            accuracies[label], seeds[label], _ = means[key]
            return accuracies[label]

        syn_soft = get("syn_soft", (dataset, budget, method, soft_protocol))
        random_soft = get("random_soft", (dataset, budget, random_method, soft_protocol))
        syn_hard = get("syn_hard", (dataset, budget, method, hard_protocol))
        real_hard = get("real_hard", (dataset, "full", full_method, hard_protocol))
        hlr = hard_label_recovery(real_hard, syn_hard) if real_hard is not None and syn_hard is not None else None
        ior = (
            improvement_over_random(syn_soft, random_soft) if syn_soft is not None and random_soft is not None else None
        )
        lrs = label_robust_score(hlr, ior, weight) if hlr is not None and ior is not None else None
        ars = None
        if noaug_protocol is not None:
            syn_noaug = get("syn_noaug", (dataset, budget, method, noaug_protocol))
            random_noaug = get("random_noaug", (dataset, budget, random_method, noaug_protocol))
            if None not in (syn_soft, random_soft, syn_noaug, random_noaug):
                ars = augmentation_robust_score(syn_soft, random_soft, syn_noaug, random_noaug, gamma)  # type: ignore[arg-type]
        rows.append(DDRankingRow(dataset, budget, method, name, hlr, ior, lrs, ars, accuracies, seeds, tuple(missing)))
    return rows
