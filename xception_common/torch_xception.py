"""Xception in PyTorch, built from ``architecture`` like the Keras model.

Modules are named after the Keras layers (``entry_flow.block2.sepconv1.bn`` is
Keras' ``block2_sepconv1_bn``) and registered in Keras' layer order, so weights
move between the two by position (see ``convert``). Two details keep the numbers equal to TensorFlow's:
BatchNorm uses Keras' epsilon and momentum, and max pooling reproduces
TensorFlow's 'same' padding at every input size.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from . import architecture as arch


class SeparableConv2d(nn.Module):
    """Depthwise 3×3 (one filter per input channel) then pointwise 1×1."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


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


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=arch.BN_EPSILON, momentum=arch.BN_MOMENTUM_TORCH)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int, **act) -> nn.Sequential:
    """A plain convolution and its BN, optionally followed by ``act=module``."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, bias=False)
    return nn.Sequential(OrderedDict(conv=conv, bn=batch_norm(out_channels), **act))


class ReLUSeparableBN(nn.Sequential):
    """[ReLU] → separable conv → BN, the unit of the entry and middle flows.

    The first unit of a module must not apply its ReLU in place: the module's
    input is also its shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, relu: bool = True, inplace: bool = True):
        super().__init__(
            OrderedDict(
                [
                    *([("act", nn.ReLU(inplace=inplace))] if relu else []),
                    ("conv", SeparableConv2d(in_channels, out_channels)),
                    ("bn", batch_norm(out_channels)),
                ]
            )
        )


class Stem(nn.Sequential):
    """block1: two plain 3×3 convolutions with 'valid' padding, BN, ReLU."""

    def __init__(self):
        layers = OrderedDict()
        in_channels = arch.INPUT_CHANNELS
        for conv in arch.ENTRY_STEM:
            layers[conv.name.removeprefix("block1_")] = conv_bn(
                in_channels, conv.filters, 3, conv.stride, act=nn.ReLU(inplace=True)
            )
            in_channels = conv.filters
        super().__init__(layers)


class ResidualModule(nn.Module):
    """Two separable convs and a 'same' max pool, plus a 1×1 stride-2
    projection shortcut taken from this module's own input."""

    def __init__(self, in_channels: int, module: arch.ResidualModule):
        super().__init__()
        first, second = module.filters
        self.sepconv1 = ReLUSeparableBN(in_channels, first, relu=module.start_with_relu, inplace=False)
        self.sepconv2 = ReLUSeparableBN(first, second)
        self.pool = MaxPoolSame()
        self.shortcut = conv_bn(in_channels, second, 1, stride=2)

    def forward(self, x):
        out = self.pool(self.sepconv2(self.sepconv1(x)))
        out += self.shortcut(x)
        return out


class MiddleModule(nn.Sequential):
    """Three ReLU → separable conv → BN units with an identity shortcut."""

    def __init__(self, module: arch.MiddleModule):
        super().__init__(
            OrderedDict(
                (f"sepconv{i}", ReLUSeparableBN(module.filters, module.filters, inplace=i > 1))
                for i in range(1, module.convs + 1)
            )
        )

    def forward(self, x):
        out = super().forward(x)
        out += x
        return out


class ExitConv(nn.Sequential):
    """Separable conv → BN → ReLU (block14)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            OrderedDict(
                conv=SeparableConv2d(in_channels, out_channels),
                bn=batch_norm(out_channels),
                act=nn.ReLU(inplace=True),
            )
        )


def entry_flow() -> nn.Sequential:
    blocks = OrderedDict(block1=Stem())
    in_channels = arch.ENTRY_STEM[-1].filters
    for module in arch.ENTRY_MODULES:
        blocks[module.name] = ResidualModule(in_channels, module)
        in_channels = module.filters[-1]
    return nn.Sequential(blocks)


def middle_flow() -> nn.Sequential:
    return nn.Sequential(OrderedDict((m.name, MiddleModule(m)) for m in arch.MIDDLE_MODULES))


def exit_flow() -> nn.Sequential:
    module = arch.EXIT_MODULE
    in_channels = arch.MIDDLE_MODULES[-1].filters
    block14 = OrderedDict()
    channels = module.filters[-1]
    for conv in arch.EXIT_CONVS:
        block14[conv.name.removeprefix("block14_")] = ExitConv(channels, conv.filters)
        channels = conv.filters
    return nn.Sequential(
        OrderedDict(
            block13=ResidualModule(in_channels, module),
            block14=nn.Sequential(block14),
        )
    )


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
    on the backbone.
    """

    def __init__(self, num_classes: int = 1000, include_top: bool = True, dropout: float = 0.0):
        arch.check_options(num_classes, dropout)
        super().__init__()
        self.entry_flow = entry_flow()
        self.middle_flow = middle_flow()
        self.exit_flow = exit_flow()
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


def parameters_by_flow(model: Xception) -> dict[str, int]:
    """Trainable parameters of each flow, named as in ``architecture.FLOWS``."""
    parts = {"entry_flow": model.entry_flow, "middle_flow": model.middle_flow, "exit_flow": model.exit_flow}
    if model.include_top:
        parts["head"] = model.predictions
    return {
        flow: sum(p.numel() for p in part.parameters() if p.requires_grad)
        for flow, part in parts.items()
    }
