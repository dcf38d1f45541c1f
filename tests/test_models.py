"""Both models against the paper (Figure 5, Table 3) and against each other."""

import inspect

import keras
import numpy as np
import pytest
import torch
from torch import nn

from xception_common import architecture as arch
from xception_common import keras_xception, torch_xception
from xception_common.costs import parameters_by_flow
from xception_common.keras_xception import build_xception
from xception_common.torch_xception import (
    MaxPoolSame,
    SeparableConv2d,
    Xception,
)

PAPER_TRAINABLE = 22_855_952  # Table 3
SEPARABLE_CONVS = 3 * 2 + 8 * 3 + 2 + 2


@pytest.fixture(scope="module")
def keras_model():
    return build_xception()


@pytest.fixture(scope="module")
def torch_model():
    return Xception().eval()


def test_parameter_counts_match_the_paper(keras_model, torch_model):
    keras_trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    torch_trainable = sum(p.numel() for p in torch_model.parameters() if p.requires_grad)
    assert keras_trainable == PAPER_TRAINABLE
    assert torch_trainable == PAPER_TRAINABLE
    # Keras also counts each BN's moving mean and variance: two per channel.
    bn_channels = sum(m.num_features for m in torch_model.modules() if isinstance(m, nn.BatchNorm2d))
    assert keras_model.count_params() == PAPER_TRAINABLE + 2 * bn_channels == 22_910_480


def test_parameters_per_flow_are_equal(keras_model, torch_model):
    keras_counts, torch_counts = parameters_by_flow(keras_model), parameters_by_flow(torch_model)
    assert keras_counts == torch_counts
    assert list(keras_counts) == ["entry_flow", "middle_flow", "exit_flow", "head"]
    assert sum(keras_counts.values()) == PAPER_TRAINABLE
    assert torch_counts["head"] == 2048 * 1000 + 1000
    assert torch_counts["middle_flow"] == 8 * 3 * (728 * 9 + 728 * 728 + 2 * 728)


def test_keras_shapes_at_299(keras_model):
    assert keras_model.get_layer("block4_add").output.shape == (None, 19, 19, 728)
    assert keras_model.get_layer("block14_sepconv2_act").output.shape == (None, 10, 10, 2048)
    assert keras_model.output.shape == (None, 1000)
    features = build_xception(include_top=False)
    assert features.output.shape == (None, 10, 10, 2048)


def test_torch_shapes_at_299(torch_model):
    x = torch.zeros(1, 3, 299, 299)
    with torch.no_grad():
        entry = torch_model.entry_flow(x)
        middle = torch_model.middle_flow(entry)
        exit_ = torch_model.exit_flow(middle)
        logits = torch_model(x)
    assert entry.shape == (1, 728, 19, 19)
    assert middle.shape == (1, 728, 19, 19)
    assert exit_.shape == (1, 2048, 10, 10)
    assert logits.shape == (1, 1000)
    assert Xception(include_top=False).eval()(x).shape == (1, 2048, 10, 10)


def test_head_of_a_backbone_pools_and_a_new_classifier_classifies():
    """timm's fine-tuning interface: features, head, reset_classifier."""
    backbone = Xception(include_top=False).eval()
    x = torch.randn(2, 3, 71, 71)
    with torch.no_grad():
        features = backbone.forward_features(x)
        pooled = backbone.forward_head(features)
    assert features.shape == (2, 2048, 3, 3)
    torch.testing.assert_close(pooled, features.mean(dim=(2, 3)))
    weights = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone.reset_classifier(10)
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in weights.items())  # backbone kept
    with torch.no_grad():
        logits = backbone.eval()(x)
        torch.testing.assert_close(backbone.forward_head(features, pre_logits=True), pooled)
    assert logits.shape == (2, 10)
    torch.testing.assert_close(logits, pooled @ backbone.predictions.weight.T + backbone.predictions.bias)
    with pytest.raises(ValueError, match="num_classes must be a whole number >= 1, got 0"):
        backbone.reset_classifier(0)


def test_a_reset_classifier_converts_like_a_built_one():
    """A backbone with a new classifier has the layers of a model built with one."""
    reference = Xception(num_classes=10)
    backbone = Xception(include_top=False)
    backbone.reset_classifier(10)
    assert [(k, v.shape) for k, v in backbone.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()]


def test_keras_model_is_keras_applications_xception(keras_model):
    reference = keras.applications.Xception(weights=None)
    assert len(keras_model.layers) == len(reference.layers) == 134
    assert [type(a) for a in keras_model.layers] == [type(b) for b in reference.layers]
    assert [w.shape for w in keras_model.get_weights()] == [
        w.shape for w in reference.get_weights()
    ]
    model = build_xception()
    model.set_weights(reference.get_weights())
    x = np.random.default_rng(0).uniform(-1, 1, (2, 299, 299, 3)).astype("float32")
    ours = np.asarray(model(x, training=False))
    theirs = np.asarray(reference(x, training=False))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)


def test_the_models_carry_no_training_recipe(keras_model):
    """Weight decay belongs to training (train_keras), not to the model."""
    assert keras_model.losses == []
    assert all(getattr(layer, "kernel_regularizer", None) is None for layer in keras_model.layers)


def test_no_convolution_has_a_bias(keras_model, torch_model):
    keras_convs = [
        layer
        for layer in keras_model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D))
    ]
    assert len(keras_convs) == 2 + 4 + SEPARABLE_CONVS  # stem, shortcuts, separables
    assert all(not layer.use_bias for layer in keras_convs)
    torch_convs = [m for m in torch_model.modules() if isinstance(m, nn.Conv2d)]
    assert len(torch_convs) == 2 + 4 + 2 * SEPARABLE_CONVS
    assert all(m.bias is None for m in torch_convs)


def test_every_depthwise_convolution_is_grouped(torch_model):
    separables = [m for m in torch_model.modules() if isinstance(m, SeparableConv2d)]
    assert len(separables) == SEPARABLE_CONVS
    for m in separables:
        assert m.depthwise.groups == m.depthwise.in_channels == m.depthwise.out_channels
        assert m.depthwise.kernel_size == (3, 3)
        assert m.pointwise.kernel_size == (1, 1) and m.pointwise.groups == 1


def test_batch_norm_uses_keras_epsilon_and_momentum(keras_model, torch_model):
    keras_bns = [layer for layer in keras_model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    torch_bns = [m for m in torch_model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(keras_bns) == len(torch_bns) == 2 + 4 + SEPARABLE_CONVS
    assert {(bn.epsilon, bn.momentum) for bn in keras_bns} == {(1e-3, 0.99)}
    assert {(m.eps, round(m.momentum, 12)) for m in torch_bns} == {(1e-3, 0.01)}


@pytest.mark.parametrize("height, width", [(74, 74), (37, 37), (10, 11), (147, 6)])
def test_max_pool_matches_tensorflow_same_padding(height, width):
    x = np.random.default_rng(0).normal(size=(2, height, width, 5)).astype("float32")
    expected = np.asarray(keras.layers.MaxPooling2D(3, strides=2, padding="same")(x))
    actual = MaxPoolSame()(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def test_only_block3s_pool_would_differ_with_symmetric_padding_at_299(torch_model):
    """Why MaxPoolSame exists: at 299 one of the model's pools sees an even
    map, and there PyTorch's symmetric padding takes other windows."""
    inputs = {}

    def keep_input(name):
        def hook(module, args):
            inputs[name] = args[0].clone()
        return hook

    hooks = [module.register_forward_pre_hook(keep_input(name))
             for name, module in torch_model.named_modules() if isinstance(module, MaxPoolSame)]
    with torch.no_grad():
        torch_model(torch.randn(1, 3, 299, 299))
    for hook in hooks:
        hook.remove()
    sides = {name.split(".")[1]: x.shape[-1] for name, x in inputs.items()}
    assert sides == {"block2": 147, "block3": 74, "block4": 37, "block13": 19}
    differs = {
        name.split(".")[1]
        for name, x in inputs.items()
        if not torch.equal(nn.MaxPool2d(3, 2, padding=1)(x), MaxPoolSame()(x))
    }
    assert differs == {"block3"}


def test_flow_of_names_every_layer(keras_model):
    flows = {arch.flow_of(layer.name) for layer in keras_model.layers if layer.weights}
    assert flows == {"entry_flow", "middle_flow", "exit_flow", "head"}
    with pytest.raises(ValueError, match="block name"):
        arch.flow_of("conv2d_3")


def test_in_place_relus_leave_inputs_and_gradients_intact():
    """In-place ReLUs are used only where no shortcut needs the tensor: every
    residual module's input is unchanged after its forward pass (its shortcut
    reads it), and the gradients are those of out-of-place ReLUs."""
    from xception_common.torch_xception import Residual

    model = Xception(num_classes=5).train()
    inputs, changed = {}, []

    def keep_input(module, args):
        inputs[module] = (args[0], args[0].detach().clone())

    def check_input(module, args, output):
        tensor, copy = inputs[module]
        if not torch.equal(tensor.detach(), copy):
            changed.append(module)

    residuals = [m for m in model.modules() if isinstance(m, Residual)]
    for module in residuals:
        module.register_forward_pre_hook(keep_input)
        module.register_forward_hook(check_input)
    x = torch.randn(2, 3, 71, 71, requires_grad=True)
    before = x.detach().clone()
    model(x).sum().backward()
    assert len(inputs) == len(residuals) == 12 and changed == []  # Figure 5: 3 + 8 + 1 residual modules

    reference = Xception(num_classes=5).train()
    reference.load_state_dict(model.state_dict())
    for module in reference.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    x_ref = before.clone().requires_grad_(True)
    reference(x_ref).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-7)


def test_figure_5_channels_chain_from_one_part_to_the_next():
    parts = [*arch.ENTRY_STEM.convs, *arch.ENTRY_MODULES, *arch.MIDDLE_MODULES, arch.EXIT_MODULE,
             *arch.EXIT_CONVS.convs]
    for before, after in zip(parts, parts[1:]):
        assert after.in_channels == before.filters, (before, after)
    for module in (*arch.ENTRY_MODULES, *arch.MIDDLE_MODULES, arch.EXIT_MODULE):
        for before, after in zip(module.convs, module.convs[1:]):
            assert after.in_channels == before.filters, (module.name, before, after)
        if module.shortcut:
            assert (module.shortcut.in_channels, module.shortcut.filters) == (module.in_channels, module.filters)
    assert [conv.relu for conv in arch.ENTRY_MODULES[0].convs] == [False, True]


def test_the_builders_define_the_same_helpers_in_the_same_order():
    def helpers(module):
        return [name for name, value in vars(module).items()
                if inspect.isfunction(value) and value.__module__ == module.__name__]

    keras_helpers = helpers(keras_xception)
    torch_helpers = helpers(torch_xception)
    assert keras_helpers[0] == "build_xception" and torch_helpers[-1] == "init_like_keras"
    assert keras_helpers[1:] == torch_helpers[:-1]


# The paper's experiments as model options (architecture.Variant).
PROJECTIONS = [(64, 128), (128, 256), (256, 728), (728, 1024)]  # Figure 5's four 1×1 shortcuts, with their BN
SEPARABLE_INPUTS = [64, 128, 128, 256, 256, 728] + [728] * 24 + [728, 728] + [1024, 1536]


def test_without_residual_connections_the_projections_are_gone_in_both_frameworks():
    projections = sum(c_in * c_out + 2 * c_out for c_in, c_out in PROJECTIONS)
    for model in (build_xception(input_shape=(71, 71, 3), residual=False), Xception(residual=False)):
        assert sum(parameters_by_flow(model).values()) == PAPER_TRAINABLE - projections == 21_878_880
    keras_names = [layer.name for layer in build_xception(input_shape=(71, 71, 3), residual=False).layers]
    assert not any(name.endswith(("_add", "_shortcut")) for name in keras_names)


@pytest.mark.parametrize("segment_size", [2, 8])
def test_larger_segments_multiply_the_spatial_steps_parameters(segment_size):
    extra = 9 * sum(SEPARABLE_INPUTS) * (segment_size - 1)
    for model in (build_xception(input_shape=(71, 71, 3), segment_size=segment_size),
                  Xception(segment_size=segment_size)):
        assert sum(parameters_by_flow(model).values()) == PAPER_TRAINABLE + extra


def test_the_segment_sizes_allowed_divide_every_width_of_figure_5():
    assert arch.SEPARABLE_WIDTHS == (64, 128, 256, 728, 1024, 1536)
    assert arch.SEGMENT_SIZES == (1, 2, 4, 8)  # the divisors of gcd(...) = 8, since 728 = 8 · 91


def test_an_intermediate_activation_changes_the_function_not_the_parameters():
    x = torch.randn(1, 3, 71, 71)
    torch.manual_seed(0)
    plain = Xception(num_classes=10).eval()
    torch.manual_seed(0)
    with_elu = Xception(num_classes=10, intermediate_activation="elu").eval()
    assert sum(parameters_by_flow(with_elu).values()) == sum(parameters_by_flow(plain).values())
    assert sum(isinstance(m, nn.ELU) for m in with_elu.modules()) == len(SEPARABLE_INPUTS)
    with torch.no_grad():
        assert not torch.allclose(plain(x), with_elu(x))


@pytest.mark.parametrize("option, value, message", [
    ("residual", "yes", r"residual must be True or False, got 'yes'"),
    ("intermediate_activation", "gelu", r"intermediate_activation must be one of \(None, 'relu', 'elu'\), got 'gelu'"),
    ("segment_size", 3, r"segment_size must be one of \(1, 2, 4, 8\).*got 3"),
])
def test_bad_variant_options_are_refused_by_both_builders(option, value, message):
    with pytest.raises(ValueError, match=message):
        build_xception(input_shape=(71, 71, 3), **{option: value})
    with pytest.raises(ValueError, match=message):
        Xception(**{option: value})
