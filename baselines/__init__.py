"""Selection methods (real subsets): the random floor, the full-data ceiling, coreset selectors."""

# graphs registers random_graphs, herding_graphs and full_graphs.
from baselines import ccs, dq, graphs, herding, kcenter, moderate, rs2, scores, tdds  # noqa: F401 - register the selectors
from baselines.reference import FullDataset, RandomSelection
from baselines.selection import Selection, Selector, class_balanced_random

__all__ = ["FullDataset", "RandomSelection", "Selection", "Selector", "class_balanced_random"]
