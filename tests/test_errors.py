"""Bad input gets a ValueError that says what is allowed."""

import pytest
import torch

from xception_common.keras_xception import build_xception
from xception_common.torch_xception import Xception


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (70, 70, 3)}, "height must be at least 71 pixels, got 70"),
        ({"input_shape": (299, 64, 3)}, "width must be at least 71 pixels, got 64"),
        ({"input_shape": (299, 299, 1)}, "3-channel .* got 1 channels"),
        ({"input_shape": (299, 299)}, r"input_shape must be \(height, width, 3\)"),
        ({"num_classes": 0}, "num_classes must be a whole number >= 1, got 0"),
        ({"num_classes": 2.5}, "num_classes must be a whole number >= 1"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, r"dropout must be a number in \[0, 1\)"),
    ],
)
def test_keras_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_xception(**kwargs)


def test_keras_accepts_any_size_when_unknown():
    model = build_xception(input_shape=(None, None, 3), include_top=False)
    assert model.output.shape == (None, None, None, 2048)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 0}, "num_classes must be a whole number >= 1, got 0"),
        ({"dropout": 1.5}, r"dropout must be a number in \[0, 1\), got 1.5"),
    ],
)
def test_torch_rejects_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Xception(**kwargs)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 3, 70, 299), "height must be at least 71 pixels, got 70"),
        ((1, 3, 299, 32), "width must be at least 71 pixels, got 32"),
        ((1, 1, 299, 299), "3-channel .* got 1 channels"),
        ((1, 299, 299, 3), "3-channel .* got 299 channels"),
        ((3, 299, 299), r"expected a batch of images \(N, 3, H, W\), got shape \(3, 299, 299\)"),
    ],
)
def test_torch_rejects_inputs(shape, message):
    with pytest.raises(ValueError, match=message):
        Xception().eval()(torch.zeros(shape))


def test_torch_rejects_pixels_that_are_not_scaled():
    with pytest.raises(TypeError, match=r"expected floating-point images scaled to \[-1, 1\] .* got torch.uint8"):
        Xception().eval()(torch.zeros((1, 3, 71, 71), dtype=torch.uint8))


def test_smallest_input_works_in_both():
    assert build_xception(input_shape=(71, 71, 3), include_top=False).output.shape == (None, 3, 3, 2048)
    with torch.no_grad():
        assert Xception(include_top=False).eval()(torch.zeros(1, 3, 71, 71)).shape == (1, 2048, 3, 3)


def test_costs_refuse_an_image_smaller_than_xception_takes():
    from xception_common.costs import torch_layer_costs

    with pytest.raises(ValueError, match="input height must be at least 71 pixels, got 50"):
        torch_layer_costs(Xception(), 50)
