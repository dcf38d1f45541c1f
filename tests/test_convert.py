"""Weights moved Keras → PyTorch → Keras give the same network."""

from collections import OrderedDict

import keras
import numpy as np
import pytest
import torch
from conftest import (
    images,
    randomize_keras_batch_norm,
    randomize_torch_batch_norm,
    relative_max_difference,
    torch_forward,
)

from xception_common.convert import keras_to_torch, torch_to_keras
from xception_common.keras_xception import build_xception
from xception_common.torch_xception import Xception

TOLERANCE = 1e-5  # relative max difference, float32


def keras_forward(model, x):
    return np.asarray(model(x, training=False))


def keras_flows(model, x):
    """Outputs of the entry and middle flows, channels-last."""
    ends = [model.get_layer(name).output for name in ("block4_add", "block12_add")]
    return [np.asarray(y) for y in keras.Model(model.input, ends)(x, training=False)]


def torch_flows(model, x):
    with torch.no_grad():
        entry = model.entry_flow(torch.from_numpy(x).permute(0, 3, 1, 2))
        middle = model.middle_flow(entry)
    return [to_nhwc(y.numpy()) for y in (entry, middle)]


def to_nhwc(features):
    return features.transpose(0, 2, 3, 1)


# One size per property: 299, the paper's, where block3's pool sees an even
# map and pads as TensorFlow does; 71, the smallest, where every map is odd
# and the exit flow ends on 3×3; 128, the training default, without the head.
@pytest.mark.parametrize("size, include_top", [(299, True), (71, True), (128, False)],
                         ids=["299-top", "71-top", "128-features"])
def test_round_trip_agrees(size, include_top):
    shape = (size, size, 3)
    source = build_xception(input_shape=shape, include_top=include_top, num_classes=10,
                            classifier_activation=None)
    randomize_keras_batch_norm(source)
    x = images(size)
    expected = keras_forward(source, x)

    torch_model = keras_to_torch(source, Xception(num_classes=10, include_top=include_top))
    actual = torch_forward(torch_model, x)
    if not include_top:
        actual = to_nhwc(actual)
    assert actual.shape == expected.shape
    assert relative_max_difference(actual, expected) <= TOLERANCE
    # Averaging over the final map can hide a local error (a pooling window
    # shifted by one pixel): compare after each flow too.
    for ours, theirs in zip(torch_flows(torch_model, x), keras_flows(source, x)):
        assert relative_max_difference(ours, theirs) <= TOLERANCE

    back = torch_to_keras(torch_model, build_xception(
        input_shape=shape, include_top=include_top, num_classes=10, classifier_activation=None))
    for a, b in zip(back.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert relative_max_difference(keras_forward(back, x), expected) <= TOLERANCE


def test_torch_to_keras_agrees():
    torch_model = randomize_torch_batch_norm(Xception(num_classes=7)).eval()
    x = images(96)
    expected = torch_forward(torch_model, x)
    keras_model = torch_to_keras(torch_model, build_xception(
        num_classes=7, input_shape=(96, 96, 3), classifier_activation=None))
    assert relative_max_difference(keras_forward(keras_model, x), expected) <= TOLERANCE


def test_keras_applications_xception_reaches_pytorch_through_our_keras_model():
    reference = keras.applications.Xception(weights=None, classifier_activation=None)
    randomize_keras_batch_norm(reference)
    torch_model = Xception()
    before = state(torch_model)
    # Its shortcut layers carry generated names, which no PyTorch module has.
    with pytest.raises(ValueError, match=r"Keras layer 'conv2d(_\d+)?' has no counterpart.*nothing was copied"):
        keras_to_torch(reference, torch_model)
    assert_unchanged(before, torch_model)

    ours = build_xception(classifier_activation=None)
    ours.set_weights(reference.get_weights())
    keras_to_torch(ours, torch_model)
    x = images(299, n=1)
    assert relative_max_difference(torch_forward(torch_model, x), keras_forward(reference, x)) <= TOLERANCE


def test_layers_are_paired_by_name_not_by_order():
    source = randomize_keras_batch_norm(build_xception(input_shape=(71, 71, 3), num_classes=10,
                                                       classifier_activation=None))
    torch_model = Xception(num_classes=10)
    # Registered in reverse, the flows come out of named_modules() head first.
    torch_model._modules = OrderedDict(reversed(torch_model._modules.items()))
    assert next(iter(torch_model.named_children()))[0] == "predictions"
    keras_to_torch(source, torch_model)
    x = images(71)
    assert relative_max_difference(torch_forward(torch_model, x), keras_forward(source, x)) <= TOLERANCE


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(before, model):
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "keras_kwargs, torch_kwargs",
    [
        ({"num_classes": 10}, {"num_classes": 1000}),
        ({"include_top": False}, {"include_top": True}),
        ({"include_top": True}, {"include_top": False}),
    ],
)
def test_mismatched_models_raise_and_copy_nothing(keras_kwargs, torch_kwargs):
    # Each pair differs only in the classifier, the last layer: everything
    # before it would copy, so a partial copy would show.
    keras_model = randomize_keras_batch_norm(build_xception(input_shape=(71, 71, 3), **keras_kwargs))
    torch_model = Xception(**torch_kwargs)
    torch_before = state(torch_model)
    keras_before = keras_model.get_weights()

    with pytest.raises(ValueError, match="'predictions'.*nothing was copied"):
        keras_to_torch(keras_model, torch_model)
    assert_unchanged(torch_before, torch_model)

    with pytest.raises(ValueError, match="'predictions'.*nothing was copied"):
        torch_to_keras(torch_model, keras_model)
    for a, b in zip(keras_model.get_weights(), keras_before):
        np.testing.assert_array_equal(a, b)


def test_a_model_of_another_structure_is_refused():
    inputs = keras.Input((71, 71, 3))
    outputs = keras.layers.Conv2D(32, 3, strides=2, use_bias=False, name="stem")(inputs)
    outputs = keras.layers.LayerNormalization(name="norm")(outputs)
    other = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match="'norm' is a LayerNormalization"):
        keras_to_torch(other, Xception())


@pytest.mark.parametrize("variant", [dict(residual=False), dict(intermediate_activation="elu"),
                                     dict(intermediate_activation="relu", segment_size=4)],
                         ids=["no-residual", "elu", "relu-segments-4"])
def test_every_variant_converts_and_agrees(variant):
    source = randomize_keras_batch_norm(build_xception(input_shape=(71, 71, 3), num_classes=10,
                                                       classifier_activation=None, **variant))
    torch_model = keras_to_torch(source, Xception(num_classes=10, **variant))
    x = images(71)
    assert relative_max_difference(torch_forward(torch_model, x), keras_forward(source, x)) <= TOLERANCE
    with pytest.raises(ValueError, match="nothing was copied"):  # another variant does not fit
        keras_to_torch(source, Xception(num_classes=10))
