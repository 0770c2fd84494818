"""NCFM: the characteristic-function discrepancy, the premodel blend, the reference init, a run on digits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from condense import create_method
from condense.ncfm import blend_parameters, cf_discrepancy
from data.synthetic import Budget
from evaluation.models import create_model


def _complex_discrepancy(real, synthetic, frequencies, alpha, beta):
    """The same quantity written with complex numbers: |Phi| and Re(Phi_r conj(Phi_s))."""
    phi_r = torch.exp(1j * (frequencies @ real.T).double()).mean(dim=1)
    phi_s = torch.exp(1j * (frequencies @ synthetic.T).double()).mean(dim=1)
    amplitude = (phi_r.abs() - phi_s.abs()) ** 2
    phase = (2 * (phi_r.abs() * phi_s.abs() - (phi_r * phi_s.conj()).real)).clamp(min=1e-12)
    return torch.sqrt(alpha * amplitude + beta * phase).mean()


def test_the_discrepancy_is_amplitude_and_phase_of_the_characteristic_functions() -> None:
    generator = torch.Generator().manual_seed(0)
    real = F.normalize(torch.randn(50, 16, generator=generator), dim=1)
    synthetic = F.normalize(torch.randn(7, 16, generator=generator), dim=1)
    frequencies = torch.randn(64, 16, generator=generator)
    for alpha, beta in ((0.5, 0.5), (0.9, 0.1), (1.0, 0.0)):
        got = cf_discrepancy(real, synthetic, frequencies, alpha, beta)
        want = _complex_discrepancy(real, synthetic, frequencies, alpha, beta)
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)
    # The same distribution (a permutation of the same features) costs nothing but the phase clamp.
    same = cf_discrepancy(real, real[torch.randperm(50, generator=generator)], frequencies, 0.5, 0.5)
    assert same < 1e-3 < float(cf_discrepancy(real, synthetic, frequencies, 0.5, 0.5))


def test_the_feature_network_blends_initial_and_trained_weights() -> None:
    nets = [create_model("convnetd1", in_channels=1, num_classes=3, image_size=(8, 8)) for _ in range(3)]
    initial = {k: v.detach().clone() for k, v in nets[0].named_parameters()}
    final = {k: v.detach().clone() for k, v in nets[1].named_parameters()}
    target = nets[2]
    for lam, expected in ((1.0, initial), (0.0, final)):
        blend_parameters(target, initial, final, lam)
        for name, parameter in target.named_parameters():
            torch.testing.assert_close(parameter.detach(), expected[name])
    blend_parameters(target, initial, final, 0.25)
    name, parameter = next(iter(target.named_parameters()))
    torch.testing.assert_close(parameter.detach(), 0.25 * initial[name] + 0.75 * final[name])


def test_the_real_init_tiles_each_classes_first_images_and_noise_stays_in_pixel_range(digits) -> None:
    train = digits[0]
    method = create_method("ncfm", model="convnetd2")
    images = method.initial_images(train, 2, torch.Generator().manual_seed(0))
    assert images.shape == (20, *train.image_shape)
    first = train.images[train.class_indices(3)[:8]]  # ipc 2 x 4 cells
    for cell, (row, col) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        expected = F.interpolate(first[cell * 2 : cell * 2 + 2], size=(4, 4), mode="nearest")
        torch.testing.assert_close(images[6:8, :, row * 4 : row * 4 + 4, col * 4 : col * 4 + 4], expected)
    noise = create_method("ncfm", init="noise").initial_images(train, 2, torch.Generator().manual_seed(0))
    pixels = noise * train.std[0] + train.mean[0]
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6 and pixels.std() > 0.1
    with pytest.raises(ValueError, match="first 800 images"):
        method.initial_images(train, 200, torch.Generator())


def test_options_are_checked_before_any_work() -> None:
    with pytest.raises(ValueError, match="optimizer must be one of 'adamw', 'sgd'"):
        create_method("ncfm", optimizer="adam")
    with pytest.raises(ValueError, match=r"num_premodels must be in \[1, inf\)"):
        create_method("ncfm", num_premodels=0)
    with pytest.raises(ValueError, match="premodel_epochs must be positive"):
        create_method("ncfm", premodel_epochs=0)
    with pytest.raises(ValueError, match="alpha and beta"):
        create_method("ncfm", alpha=0.0, beta=0.0)


def test_ncfm_on_digits_beats_random_on_the_validation_split(digits) -> None:
    from condense import method_options
    from evaluation.protocols import derive_protocol, get_protocol

    train, val, _test = digits
    name, options = method_options("digits/ncfm")
    # Fewer and shorter premodels and iterations than the digits setting, for the test's time.
    method = create_method(name, **{**options, "iterations": 40, "num_premodels": 2, "premodel_epochs": 10})
    learned = method.condense(train, Budget(ipc=1), seed=0)
    assert learned.provenance["precomputed"]["teacher"]["seconds"] > 0
    protocol = derive_protocol(get_protocol("quick"), {"num_models": 1})
    random_set = create_method("random").condense(train, Budget(ipc=1), seed=0)
    ncfm_accuracy, random_accuracy = (
        protocol.evaluate(s, val, seed=0).per_model["convnet3"].accuracies[0] for s in (learned, random_set)
    )
    assert ncfm_accuracy > random_accuracy + 0.08, (ncfm_accuracy, random_accuracy)
