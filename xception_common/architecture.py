"""Xception as drawn in Figure 5 of the paper, once, for both frameworks.

Blocks are numbered as in Keras' own application (``block1`` … ``block14``) so
that layer names in either framework point back to the same place in the figure:

* entry flow: ``block1`` is the two-convolution stem, ``block2``–``block4`` are
  residual modules that halve the resolution;
* middle flow: ``block5``–``block12``, eight identical modules with an identity
  shortcut;
* exit flow: ``block13`` is the last residual module, ``block14`` the two wide
  separable convolutions before global average pooling.

Every part names its input channels as well as its output channels: Keras
infers the first, PyTorch reads them here.
"""

from dataclasses import dataclass
from math import gcd

INPUT_CHANNELS = 3
MIN_INPUT_SIZE = 71
DEFAULT_INPUT_SIZE = 299

# Keras' BatchNormalization defaults, kept in both frameworks. PyTorch's momentum
# weighs the new batch, Keras' the running value: 1 - 0.99 = 0.01.
BN_EPSILON = 1e-3
BN_MOMENTUM_KERAS = 0.99
BN_MOMENTUM_TORCH = 1.0 - BN_MOMENTUM_KERAS


@dataclass(frozen=True)
class Conv:
    """A plain convolution without padding, then BN. For the 1×1 projection
    shortcuts no padding is the same as Keras' 'same'."""

    name: str
    in_channels: int
    filters: int
    kernel_size: int
    stride: int


@dataclass(frozen=True)
class SeparableConv:
    """A separable 3×3 convolution (depthwise, then pointwise, nothing in
    between) and its BN, with a ReLU when ``relu`` is True: before it inside
    the residual modules, after it in block14."""

    name: str
    in_channels: int
    filters: int
    relu: bool = True


@dataclass(frozen=True)
class Block:
    """Convolutions in a row: the stem (block1) and the exit convolutions (block14)."""

    name: str
    convs: tuple


@dataclass(frozen=True)
class ResidualModule:
    """Separable convolutions in a row, then (``pool``) a 3×3 stride-2 max
    pool, added to a shortcut of the module's own input: a 1×1 stride-2
    projection, or the input itself when ``shortcut`` is None."""

    name: str
    convs: tuple[SeparableConv, ...]
    shortcut: Conv | None
    pool: bool

    @property
    def in_channels(self) -> int:
        return self.convs[0].in_channels

    @property
    def filters(self) -> int:
        return self.convs[-1].filters


def downsampling_module(name: str, in_channels: int, filters: tuple[int, ...], first_relu: bool = True):
    """A module of the entry and exit flows: it halves the resolution, so its
    shortcut is a projection. Only block2 starts without a ReLU: its input has
    just passed the stem's."""
    channels = (in_channels, *filters)
    convs = tuple(
        SeparableConv(f"sepconv{i}", channels[i - 1], channels[i], relu=first_relu or i > 1)
        for i in range(1, len(channels))
    )
    return ResidualModule(name, convs, Conv("shortcut", in_channels, filters[-1], 1, 2), pool=True)


def middle_module(name: str, channels: int = 728, repeats: int = 3):
    """A module of the middle flow: same size in and out, identity shortcut."""
    convs = tuple(SeparableConv(f"sepconv{i}", channels, channels) for i in range(1, repeats + 1))
    return ResidualModule(name, convs, shortcut=None, pool=False)


ENTRY_STEM = Block("block1", (Conv("conv1", INPUT_CHANNELS, 32, 3, 2), Conv("conv2", 32, 64, 3, 1)))
ENTRY_MODULES = (
    downsampling_module("block2", 64, (128, 128), first_relu=False),
    downsampling_module("block3", 128, (256, 256)),
    downsampling_module("block4", 256, (728, 728)),
)
MIDDLE_MODULES = tuple(middle_module(f"block{i}") for i in range(5, 13))
EXIT_MODULE = downsampling_module("block13", 728, (728, 1024))
EXIT_CONVS = Block("block14", (SeparableConv("sepconv1", 1024, 1536), SeparableConv("sepconv2", 1536, 2048)))
FEATURE_CHANNELS = EXIT_CONVS.convs[-1].filters

# The widths a separable convolution takes in, in Figure 5; a segment of the
# spatial step must divide every one of them.
SEPARABLE_WIDTHS = tuple(sorted({
    conv.in_channels
    for block in (*ENTRY_MODULES, *MIDDLE_MODULES, EXIT_MODULE, EXIT_CONVS)
    for conv in block.convs
}))
SEGMENT_SIZES = tuple(d for d in range(1, gcd(*SEPARABLE_WIDTHS) + 1) if gcd(*SEPARABLE_WIDTHS) % d == 0)
INTERMEDIATE_ACTIVATIONS = (None, "relu", "elu")


@dataclass(frozen=True)
class Variant:
    """The paper's experiments on the network (defaults: Xception itself).

    * ``residual``: without it, no module has a shortcut (Figure 9's variant);
    * ``intermediate_activation``: an activation between the depthwise and
      the pointwise step of every separable convolution (Figure 10);
    * ``segment_size``: channels per segment of the separable convolutions'
      spatial step (section 1.2's spectrum): 1 is depthwise, larger values make
      a grouped 3×3 of fewer, larger segments before the pointwise 1×1.
    """

    residual: bool = True
    intermediate_activation: str | None = None
    segment_size: int = 1

    def __post_init__(self):
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be True or False, got {self.residual!r}")
        if self.intermediate_activation not in INTERMEDIATE_ACTIVATIONS:
            raise ValueError(f"intermediate_activation must be one of {INTERMEDIATE_ACTIVATIONS}, "
                             f"got {self.intermediate_activation!r}")
        if isinstance(self.segment_size, bool) or self.segment_size not in SEGMENT_SIZES:
            raise ValueError(f"segment_size must be one of {SEGMENT_SIZES} (a divisor of every width a separable "
                             f"convolution takes, {SEPARABLE_WIDTHS}), got {self.segment_size!r}")

    @property
    def separable(self) -> bool:
        """True when every separable convolution is the plain one: depthwise,
        then pointwise, nothing in between (one Keras SeparableConv2D)."""
        return self.intermediate_activation is None and self.segment_size == 1


XCEPTION = Variant()

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


def check_whole(name: str, value, minimum: int, maximum: int | None = None, why: str = "") -> None:
    """ValueError, saying what is allowed (and ``why``), unless ``value`` is a
    whole number (an ``int``, not a ``bool``) from ``minimum`` to ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        allowed = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be a whole number {allowed}{f' ({why})' if why else ''}, got {value!r}")


def check_fraction(name: str, value) -> None:
    """ValueError unless ``value`` is a real number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


def check_options(num_classes: int, dropout: float) -> None:
    """Reject options that no Xception can have, before anything is built."""
    check_whole("num_classes", num_classes, 1)
    check_fraction("dropout", dropout)


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
