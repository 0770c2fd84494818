"""SelMatch: the difficulty window, the score files, frozen selected images and a digits run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from condense import create_method, method_options
from condense.selmatch import read_scores, window_indices
from data.synthetic import Budget
from data.untrusted import BadFileError


def test_the_window_keeps_the_harder_part_real_and_distills_the_easier_part() -> None:
    members = torch.arange(100, 110)
    scores = torch.zeros(120, dtype=torch.float64)
    scores[members] = torch.tensor([5.0, 9, 1, 7, 3, 8, 0, 6, 2, 4], dtype=torch.float64)  # forgetting: high is hard
    selected, distilled = window_indices(scores, members, ipc=4, alpha=0.5, beta=0.5, hardest_first="high")
    # Hardest first: 101 (9), 105 (8), 103 (7), 107 (6), 100 (5), 109 (4), ...; the window starts at int(4 * 0.5) = 2.
    assert selected.tolist() == [103, 107] and distilled.tolist() == [100, 109]
    # C-scores: low is hard; alpha 0.25 distills int(4 * 0.25) = 1 image.
    selected, distilled = window_indices(scores, members, ipc=4, alpha=0.25, beta=0.0, hardest_first="low")
    assert selected.tolist() == [106, 102, 108] and distilled.tolist() == [104]
    with pytest.raises(ValueError, match="does not fit a class of 10 images"):
        window_indices(scores, members, ipc=8, alpha=0.5, beta=0.5, hardest_first="high")


def test_score_files_are_read_without_pickles_and_checked(tmp_path) -> None:
    np.save(tmp_path / "scores.npy", np.arange(5.0))
    np.savez(tmp_path / "cscores.npz", scores=np.arange(5.0) / 10)
    assert read_scores(tmp_path / "scores.npy", 5).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert read_scores(tmp_path / "cscores.npz", 5)[1] == pytest.approx(0.1)
    with pytest.raises(BadFileError, match="needs 6 finite scores"):
        read_scores(tmp_path / "scores.npy", 6)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BadFileError, match="not a .npy array"):
        read_scores(tmp_path / "objects.npy", 1)
    with pytest.raises(ValueError, match="needs difficulty_path"):
        create_method("selmatch", difficulty="file")


def test_selmatch_on_digits_keeps_the_selected_images_real_and_distills_the_rest(digits, tmp_path) -> None:
    train, _, _ = digits
    scores = torch.rand(len(train), generator=torch.Generator().manual_seed(0)).numpy()
    np.save(tmp_path / "difficulty.npy", scores)
    name, options = method_options("digits/selmatch")
    options = {
        **options,
        "iterations": 20,
        "difficulty": "file",
        "difficulty_path": str(tmp_path / "difficulty.npy"),
        "expert_cache_dir": str(tmp_path / "experts"),
    }
    synthetic = create_method(name, **options).condense(train, Budget(ipc=10), seed=0)
    block = synthetic.provenance["selmatch"]
    assert (block["selected_per_class"], block["distilled_per_class"], block["window_start"]) == (5, 5, 5)
    assert synthetic.learned_lr is None and block["learned_lr"] != pytest.approx(0.01)
    selected = torch.tensor(block["selected_indices"]).view(10, 5)
    images = synthetic.images.view(10, 10, *train.image_shape)
    for label in range(10):
        expected_selected, expected_distilled = window_indices(
            torch.from_numpy(scores).double(), train.class_indices(label), 10, 0.5, 0.5, "high"
        )
        assert torch.equal(selected[label], expected_selected)
        # The selected half is the real images, untouched; the distilled half moved off its real start.
        assert torch.equal(images[label, :5], train.images[expected_selected])
        assert not torch.allclose(images[label, 5:], train.images[expected_distilled])
    assert synthetic.labels.tolist() == [c for c in range(10) for _ in range(10)]
