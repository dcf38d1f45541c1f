"""Xception in PyTorch, built from ``architecture`` like the Keras model.

The helpers mirror ``keras_xception``'s: same names, same order, same loops,
each returning a module where Keras' returns a tensor. Modules are named after
the Keras layers (``entry_flow.block2.sepconv1.bn`` is Keras'
``block2_sepconv1_bn``), which is how ``convert`` pairs them. Two details keep
the numbers equal to TensorFlow's: BatchNorm uses Keras' epsilon and momentum,
and max pooling reproduces TensorFlow's 'same' padding at every input size.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from . import architecture as arch


def entry_flow(variant: arch.Variant = arch.XCEPTION) -> nn.Sequential:
    blocks = OrderedDict({arch.ENTRY_STEM.name: stem(arch.ENTRY_STEM)})
    for module in arch.ENTRY_MODULES:
        blocks[module.name] = residual_module(module, variant)
    return nn.Sequential(blocks)


def middle_flow(variant: arch.Variant = arch.XCEPTION) -> nn.Sequential:
    blocks = OrderedDict()
    for module in arch.MIDDLE_MODULES:
        blocks[module.name] = residual_module(module, variant)
    return nn.Sequential(blocks)


def exit_flow(variant: arch.Variant = arch.XCEPTION) -> nn.Sequential:
    blocks = OrderedDict({arch.EXIT_MODULE.name: residual_module(arch.EXIT_MODULE, variant)})
    blocks[arch.EXIT_CONVS.name] = exit_convs(arch.EXIT_CONVS, variant)
    return nn.Sequential(blocks)


def stem(block: arch.Block) -> nn.Sequential:
    layers = OrderedDict()
    for conv in block.convs:
        layers[conv.name] = conv_bn_relu(conv)
    return nn.Sequential(layers)


def residual_module(module: arch.ResidualModule, variant: arch.Variant = arch.XCEPTION) -> nn.Module:
    """[ReLU] → separable conv → BN, repeated, then max pool where the module
    has one; added to its shortcut: a 1×1 stride-2 projection (conv → BN) of
    the module's input, or the input itself. Without ``variant.residual``,
    no shortcut."""
    shortcut, layers = nn.Identity(), OrderedDict()
    if module.shortcut and variant.residual:
        shortcut = conv_bn(module.shortcut)
    for i, conv in enumerate(module.convs):  # the first ReLU keeps the input: the shortcut reads it
        layers[conv.name] = relu_separable_bn(conv, variant, inplace=i > 0)
    if module.pool:
        layers["pool"] = max_pool()
    if not variant.residual:
        return nn.Sequential(layers)
    return Residual(shortcut, layers)


def exit_convs(block: arch.Block, variant: arch.Variant = arch.XCEPTION) -> nn.Sequential:
    layers = OrderedDict()
    for conv in block.convs:
        layers[conv.name] = separable_bn_relu(conv, variant)
    return nn.Sequential(layers)


class Residual(nn.Module):
    """``layers(x) + shortcut(x)``, Keras' ``Add`` of a module's two paths.

    The shortcut is registered last: Keras lists the shortcut's layers after
    the main path's, so both models report their layers in one order."""

    def __init__(self, shortcut: nn.Module, layers: OrderedDict):
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.shortcut = shortcut

    def forward(self, x):
        *layers, shortcut = self.children()
        out = x
        for layer in layers:
            out = layer(out)
        return out + shortcut(x)


def conv_bn_relu(conv: arch.Conv) -> nn.Sequential:
    layers = conv_bn(conv)
    layers.add_module("act", nn.ReLU(inplace=True))
    return layers


def conv_bn(conv: arch.Conv) -> nn.Sequential:
    layer = nn.Conv2d(conv.in_channels, conv.filters, conv.kernel_size, stride=conv.stride, bias=False)
    return nn.Sequential(OrderedDict(conv=layer, bn=batch_norm(conv.filters)))


def relu_separable_bn(conv: arch.SeparableConv, variant: arch.Variant = arch.XCEPTION,
                      inplace: bool = True) -> nn.Sequential:
    layers = OrderedDict()
    if conv.relu:
        layers["act"] = nn.ReLU(inplace=inplace)
    layers["conv"] = separable_conv(conv, variant)
    layers["bn"] = batch_norm(conv.filters)
    return nn.Sequential(layers)


def separable_bn_relu(conv: arch.SeparableConv, variant: arch.Variant = arch.XCEPTION) -> nn.Sequential:
    layers = OrderedDict()
    layers["conv"] = separable_conv(conv, variant)
    layers["bn"] = batch_norm(conv.filters)
    layers["act"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


def separable_conv(conv: arch.SeparableConv, variant: arch.Variant = arch.XCEPTION) -> "SeparableConv2d":
    """Depthwise 3×3 then pointwise 1×1, nothing in between; a variant may
    put an activation in between, or group the 3×3 in larger segments."""
    return SeparableConv2d(conv.in_channels, conv.filters, variant.segment_size, variant.intermediate_activation)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=arch.BN_EPSILON, momentum=arch.BN_MOMENTUM_TORCH)


def max_pool() -> "MaxPoolSame":
    return MaxPoolSame()


class SeparableConv2d(nn.Module):
    """Keras' ``SeparableConv2D`` without bias: a depthwise 3×3 convolution
    (one filter per input channel, ``groups=in_channels``), then a pointwise
    1×1 that mixes the channels. ``segment_size`` channels per group make
    the 3×3 a grouped convolution of fewer segments; ``activation`` ("relu",
    "elu") goes between the two steps."""

    def __init__(self, in_channels: int, out_channels: int, segment_size: int = 1, activation: str | None = None):
        super().__init__()
        groups = in_channels // segment_size
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=groups, bias=False)
        if activation:
            self.act = {"relu": nn.ReLU, "elu": nn.ELU}[activation]()
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        x = self.depthwise(x)
        if hasattr(self, "act"):
            x = self.act(x)
        return self.pointwise(x)


class MaxPoolSame(nn.Module):
    """3×3 stride-2 max pool with TensorFlow's 'same' padding.

    TensorFlow pads an odd side by one pixel on both ends but an even side by
    one pixel at the bottom/right only. An odd side therefore gets
    ``padding=1``; an even side gets none, and ``ceil_mode`` lets the last
    window hang one pixel over the far edge.
    """

    def forward(self, x):
        padding = tuple(side % 2 for side in x.shape[-2:])
        return F.max_pool2d(x, 3, stride=2, padding=padding, ceil_mode=True)


def init_like_keras(module: nn.Module) -> None:
    """Keras' defaults, so both frameworks start from the same distribution:
    Glorot-uniform kernels (depthwise ones included: PyTorch's and Keras' fan
    computations give the same limit), zero biases, BN at scale 1 and shift 0."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class Xception(nn.Module):
    """Xception for NCHW float input of at least 71×71 pixels.

    ``forward`` returns logits of shape (N, num_classes), or with
    ``include_top=False`` the (N, 2048, h, w) feature map before pooling. For
    fine-tuning, as in timm: ``forward_features`` gives that map,
    ``forward_head`` pools it (and classifies, when there is a classifier and
    ``pre_logits`` is False), and ``reset_classifier`` puts a new classifier
    on the backbone. ``residual``, ``intermediate_activation`` and
    ``segment_size`` build the paper's experimental variants
    (``architecture.Variant``); the defaults build Xception.
    """

    def __init__(self, num_classes: int = 1000, include_top: bool = True, dropout: float = 0.0,
                 residual: bool = True, intermediate_activation: str | None = None, segment_size: int = 1):
        variant = arch.Variant(residual, intermediate_activation, segment_size)
        arch.check_options(num_classes, dropout)
        super().__init__()
        self.entry_flow = entry_flow(variant)
        self.middle_flow = middle_flow(variant)
        self.exit_flow = exit_flow(variant)
        self.include_top = False
        if include_top:
            self._add_classifier(num_classes, dropout)
        self.apply(init_like_keras)

    def _add_classifier(self, num_classes: int, dropout: float) -> None:
        self.dropout = nn.Dropout(dropout)
        self.predictions = nn.Linear(arch.FEATURE_CHANNELS, num_classes)
        self.include_top = True

    def reset_classifier(self, num_classes: int, dropout: float = 0.0) -> None:
        """A new, freshly initialised classifier for ``num_classes``; the
        backbone keeps its weights. From then on ``forward`` returns logits."""
        arch.check_options(num_classes, dropout)
        self._add_classifier(num_classes, dropout)
        init_like_keras(self.predictions)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a batch of images (N, 3, H, W), got shape {tuple(x.shape)}")
        arch.check_image_size(x.shape[2], x.shape[3], x.shape[1])
        if not x.is_floating_point():
            raise TypeError(f"expected floating-point images scaled to [-1, 1] (x / 127.5 - 1 for 8-bit pixels), "
                            f"got {x.dtype}")
        return self.exit_flow(self.middle_flow(self.entry_flow(x)))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling of the (N, 2048, h, w) features, then the
        classifier: logits (N, num_classes), or the pooled (N, 2048) features
        with ``pre_logits=True`` or on a model without a classifier."""
        pooled = features.mean(dim=(2, 3))
        if pre_logits or not self.include_top:
            return pooled
        return self.predictions(self.dropout(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)
        return self.forward_head(features) if self.include_top else features
