"""Xception in Keras 3, built with the functional API from ``architecture``.

Layer for layer the network of ``keras.applications.Xception``: the same layers
in the same order, so ``model.set_weights(reference.get_weights())`` works and
the official ImageNet weights load into it. Unlike the original, the projection
shortcuts are named too (``block2_shortcut``), and dropout can precede the
classifier. ``torch_xception`` builds the same network with the same helpers,
in the same order.
"""

import keras
from keras import layers

from . import architecture as arch


def build_xception(
    num_classes: int = 1000,
    input_shape: tuple = (arch.DEFAULT_INPUT_SIZE, arch.DEFAULT_INPUT_SIZE, arch.INPUT_CHANNELS),
    include_top: bool = True,
    dropout: float = 0.0,
    classifier_activation="softmax",
    residual: bool = True,
    intermediate_activation: str | None = None,
    segment_size: int = 1,
) -> keras.Model:
    """Xception for channels-last input of ``input_shape`` (height, width, 3).

    With ``include_top=False`` the model returns the 2048-channel feature map
    before pooling. ``residual``, ``intermediate_activation`` and
    ``segment_size`` build the paper's experimental variants
    (``architecture.Variant``); the defaults build Xception.
    """
    variant = arch.Variant(residual, intermediate_activation, segment_size)
    arch.check_options(num_classes, dropout)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape!r}")
    arch.check_image_size(*input_shape)

    inputs = keras.Input(shape=input_shape, name="input_layer")
    x = entry_flow(inputs, variant)
    x = middle_flow(x, variant)
    x = exit_flow(x, variant)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name="xception")


def entry_flow(x, variant: arch.Variant = arch.XCEPTION):
    x = stem(x, arch.ENTRY_STEM)
    for module in arch.ENTRY_MODULES:
        x = residual_module(x, module, variant)
    return x


def middle_flow(x, variant: arch.Variant = arch.XCEPTION):
    for module in arch.MIDDLE_MODULES:
        x = residual_module(x, module, variant)
    return x


def exit_flow(x, variant: arch.Variant = arch.XCEPTION):
    x = residual_module(x, arch.EXIT_MODULE, variant)
    x = exit_convs(x, arch.EXIT_CONVS, variant)
    return x


def stem(x, block: arch.Block):
    for conv in block.convs:
        x = conv_bn_relu(x, conv, f"{block.name}_{conv.name}")
    return x


def residual_module(x, module: arch.ResidualModule, variant: arch.Variant = arch.XCEPTION):
    """[ReLU] → separable conv → BN, repeated, then max pool where the module
    has one; added to its shortcut: a 1×1 stride-2 projection (conv → BN) of
    the module's input, or the input itself. Without ``variant.residual``,
    no shortcut."""
    shortcut = x
    if module.shortcut and variant.residual:
        shortcut = conv_bn(x, module.shortcut, f"{module.name}_{module.shortcut.name}")
    for conv in module.convs:
        x = relu_separable_bn(x, conv, f"{module.name}_{conv.name}", variant)
    if module.pool:
        x = max_pool(f"{module.name}_pool")(x)
    if not variant.residual:
        return x
    return layers.Add(name=f"{module.name}_add")([x, shortcut])


def exit_convs(x, block: arch.Block, variant: arch.Variant = arch.XCEPTION):
    for conv in block.convs:
        x = separable_bn_relu(x, conv, f"{block.name}_{conv.name}", variant)
    return x


def conv_bn_relu(x, conv: arch.Conv, name: str):
    x = conv_bn(x, conv, name)
    return layers.Activation("relu", name=name + "_act")(x)


def conv_bn(x, conv: arch.Conv, name: str):
    x = layers.Conv2D(conv.filters, conv.kernel_size, strides=conv.stride, use_bias=False, name=name)(x)
    return batch_norm(name + "_bn")(x)


def relu_separable_bn(x, conv: arch.SeparableConv, name: str, variant: arch.Variant = arch.XCEPTION):
    if conv.relu:
        x = layers.Activation("relu", name=name + "_act")(x)
    x = separable_conv(x, conv, name, variant)
    return batch_norm(name + "_bn")(x)


def separable_bn_relu(x, conv: arch.SeparableConv, name: str, variant: arch.Variant = arch.XCEPTION):
    x = separable_conv(x, conv, name, variant)
    x = batch_norm(name + "_bn")(x)
    return layers.Activation("relu", name=name + "_act")(x)


def separable_conv(x, conv: arch.SeparableConv, name: str, variant: arch.Variant = arch.XCEPTION):
    """Depthwise 3×3 then pointwise 1×1, nothing in between: one
    SeparableConv2D. A variant with an intermediate activation or larger
    segments gets the two steps as layers of their own, ``name_depthwise``
    (a grouped Conv2D for segments of more than one channel) and
    ``name_pointwise``."""
    if variant.separable:
        return layers.SeparableConv2D(conv.filters, 3, padding="same", use_bias=False, name=name)(x)
    groups = conv.in_channels // variant.segment_size
    if groups == conv.in_channels:
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=name + "_depthwise")(x)
    else:
        x = layers.Conv2D(conv.in_channels, 3, padding="same", groups=groups, use_bias=False,
                          name=name + "_depthwise")(x)
    if variant.intermediate_activation:
        x = layers.Activation(variant.intermediate_activation, name=name + "_depthwise_act")(x)
    return layers.Conv2D(conv.filters, 1, use_bias=False, name=name + "_pointwise")(x)


def batch_norm(name: str):
    return layers.BatchNormalization(epsilon=arch.BN_EPSILON, momentum=arch.BN_MOMENTUM_KERAS, name=name)


def max_pool(name: str):
    return layers.MaxPooling2D(3, strides=2, padding="same", name=name)
