"""Xception as drawn in Figure 5 of the paper, once, for both frameworks.

Blocks are numbered as in Keras' own application (``block1`` … ``block14``) so
that layer names in either framework point back to the same place in the figure:

* entry flow: ``block1`` is the two-convolution stem, ``block2``–``block4`` are
  residual modules that halve the resolution;
* middle flow: ``block5``–``block12``, eight identical modules with an identity
  shortcut;
* exit flow: ``block13`` is the last residual module, ``block14`` the two wide
  separable convolutions before global average pooling.
"""

from dataclasses import dataclass

INPUT_CHANNELS = 3
MIN_INPUT_SIZE = 71
DEFAULT_INPUT_SIZE = 299

# Keras' BatchNormalization defaults, kept in both frameworks. PyTorch's momentum
# weighs the new batch, Keras' the running value: 1 - 0.99 = 0.01.
BN_EPSILON = 1e-3
BN_MOMENTUM_KERAS = 0.99
BN_MOMENTUM_TORCH = 1.0 - BN_MOMENTUM_KERAS


@dataclass(frozen=True)
class StemConv:
    """A plain 3×3 convolution with 'valid' padding, then BN and ReLU."""

    name: str
    filters: int
    stride: int


@dataclass(frozen=True)
class ResidualModule:
    """Two separable convolutions and a 3×3 stride-2 max pool, added to a
    1×1 stride-2 projection of the module's own input.

    ``start_with_relu`` is False only for the first module, whose input has just
    passed the stem's ReLU.
    """

    name: str
    filters: tuple[int, int]
    start_with_relu: bool = True


@dataclass(frozen=True)
class MiddleModule:
    """Three times ReLU → separable conv → BN, added to the module's input."""

    name: str
    filters: int = 728
    convs: int = 3


@dataclass(frozen=True)
class ExitConv:
    """Separable convolution → BN → ReLU (ReLU after, unlike the modules)."""

    name: str
    filters: int


ENTRY_STEM = (StemConv("block1_conv1", 32, stride=2), StemConv("block1_conv2", 64, stride=1))
ENTRY_MODULES = (
    ResidualModule("block2", (128, 128), start_with_relu=False),
    ResidualModule("block3", (256, 256)),
    ResidualModule("block4", (728, 728)),
)
MIDDLE_MODULES = tuple(MiddleModule(f"block{i}") for i in range(5, 13))
EXIT_MODULE = ResidualModule("block13", (728, 1024))
EXIT_CONVS = (ExitConv("block14_sepconv1", 1536), ExitConv("block14_sepconv2", 2048))
FEATURE_CHANNELS = EXIT_CONVS[-1].filters

FLOWS = {
    "entry_flow": ("block1", "block2", "block3", "block4"),
    "middle_flow": tuple(m.name for m in MIDDLE_MODULES),
    "exit_flow": ("block13", "block14"),
    "head": ("predictions",),
}


def flow_of(layer_name: str) -> str:
    """The flow ('entry_flow', 'middle_flow', 'exit_flow' or 'head') a layer
    named after its block (``block4_sepconv1_bn``, ``predictions``) belongs to."""
    block = layer_name.split("_")[0]
    for flow, blocks in FLOWS.items():
        if block in blocks:
            return flow
    raise ValueError(
        f"layer {layer_name!r} does not start with a block name; "
        f"expected one of {[b for blocks in FLOWS.values() for b in blocks]}"
    )


def check_options(num_classes: int, dropout: float) -> None:
    """Reject options that no Xception can have, before anything is built."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a whole number >= 1, got {num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


def check_image_size(height, width, channels) -> None:
    """Reject an input the network cannot take. ``None`` means 'any size'."""
    if channels != INPUT_CHANNELS:
        raise ValueError(
            f"Xception takes {INPUT_CHANNELS}-channel (RGB) images, got {channels} channels"
        )
    for side, value in (("height", height), ("width", width)):
        if value is not None and value < MIN_INPUT_SIZE:
            raise ValueError(
                f"input {side} must be at least {MIN_INPUT_SIZE} pixels, got {value} "
                f"(at {MIN_INPUT_SIZE} the exit flow ends on a 3×3 map)"
            )
