"""Xception in Keras 3, built with the functional API from ``architecture``.

Layer for layer the network of ``keras.applications.Xception``: the same layers
in the same order, so ``model.set_weights(reference.get_weights())`` works and
the official ImageNet weights load into it. Unlike the original, the projection
shortcuts are named too (``block2_shortcut``), and dropout can precede the
classifier.
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
) -> keras.Model:
    """Xception for channels-last input of ``input_shape`` (height, width, 3).

    With ``include_top=False`` the model returns the 2048-channel feature map
    before pooling.
    """
    arch.check_options(num_classes, dropout)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape!r}")
    arch.check_image_size(*input_shape)

    inputs = keras.Input(shape=input_shape, name="input_layer")
    x = entry_flow(inputs)
    x = middle_flow(x)
    x = exit_flow(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name="xception")


def entry_flow(x):
    for conv in arch.ENTRY_STEM:
        x = layers.Conv2D(conv.filters, 3, strides=conv.stride, use_bias=False, name=conv.name)(x)
        x = batch_norm(conv.name + "_bn")(x)
        x = layers.Activation("relu", name=conv.name + "_act")(x)
    for module in arch.ENTRY_MODULES:
        x = residual_module(x, module)
    return x


def middle_flow(x):
    for module in arch.MIDDLE_MODULES:
        shortcut = x
        for i in range(1, module.convs + 1):
            x = relu_separable_bn(x, module.filters, f"{module.name}_sepconv{i}")
        x = layers.Add(name=f"{module.name}_add")([x, shortcut])
    return x


def exit_flow(x):
    x = residual_module(x, arch.EXIT_MODULE)
    for conv in arch.EXIT_CONVS:
        x = separable_conv(conv.filters, conv.name)(x)
        x = batch_norm(conv.name + "_bn")(x)
        x = layers.Activation("relu", name=conv.name + "_act")(x)
    return x


def residual_module(x, module: arch.ResidualModule):
    """Main path: [ReLU] → sep → BN → ReLU → sep → BN → max pool; plus a
    1×1 stride-2 projection (conv → BN) of the module's own input."""
    shortcut = layers.Conv2D(
        module.filters[1], 1, strides=2, padding="same", use_bias=False,
        name=f"{module.name}_shortcut",
    )(x)
    shortcut = batch_norm(f"{module.name}_shortcut_bn")(shortcut)

    for i, filters in enumerate(module.filters, start=1):
        relu = module.start_with_relu or i > 1
        x = relu_separable_bn(x, filters, f"{module.name}_sepconv{i}", relu=relu)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{module.name}_pool")(x)
    return layers.Add(name=f"{module.name}_add")([x, shortcut])


def relu_separable_bn(x, filters: int, name: str, relu: bool = True):
    if relu:
        x = layers.Activation("relu", name=name + "_act")(x)
    x = separable_conv(filters, name)(x)
    return batch_norm(name + "_bn")(x)


def separable_conv(filters: int, name: str):
    """Depthwise 3×3 then pointwise 1×1, nothing in between."""
    return layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=name)


def batch_norm(name: str):
    return layers.BatchNormalization(
        epsilon=arch.BN_EPSILON, momentum=arch.BN_MOMENTUM_KERAS, name=name
    )


def parameters_by_flow(model: keras.Model) -> dict[str, int]:
    """Trainable parameters of each flow of a model built here, in the order
    entry flow, middle flow, exit flow, head."""
    counts = dict.fromkeys(arch.FLOWS, 0)
    for layer in model.layers:
        if layer.trainable_weights:
            flow = arch.flow_of(layer.name)
            counts[flow] += sum(int(w.numpy().size) for w in layer.trainable_weights)
    return {flow: n for flow, n in counts.items() if n}
