"""Copy weights between the Keras and the PyTorch Xception, both ways.

Layers are paired by name: every PyTorch module with weights stands for the
Keras layer ``keras_name`` gives (``entry_flow.block2.sepconv1.bn`` for
``block2_sepconv1_bn``). Every pair is checked before anything is written, so
a mismatch leaves both models as they were. ``keras.applications.Xception``
names its shortcut layers ``conv2d``, ``batch_normalization``…; its weights
reach PyTorch through ``build_xception``'s model, which has its layers in the
same order: ``model.set_weights(reference.get_weights())``.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .architecture import FLOWS
from .torch_xception import SeparableConv2d

# Keras layout -> PyTorch layout, one permutation per weight (None: same layout).
# Conv kernels: (kh, kw, in, out) -> (out, in, kh, kw); depthwise kernels:
# (kh, kw, in, 1) -> (in, 1, kh, kw); Dense kernels: (in, out) -> (out, in).
CONV = (3, 2, 0, 1)
DEPTHWISE = (2, 3, 0, 1)
LAYOUTS = {
    "separable": (DEPTHWISE, CONV),
    "depthwise": (DEPTHWISE,),
    "conv": (CONV,),
    "batchnorm": (None, None, None, None),  # gamma/weight, beta/bias, mean, variance
    "dense": ((1, 0), None),
}
KERAS_KINDS = {
    "SeparableConv2D": "separable",
    "DepthwiseConv2D": "depthwise",
    "Conv2D": "conv",
    "BatchNormalization": "batchnorm",
    "Dense": "dense",
}


@dataclass
class Pair:
    keras_layer: object
    torch_name: str
    torch_module: nn.Module
    kind: str

    def torch_tensors(self) -> list[torch.Tensor]:
        m = self.torch_module
        if self.kind == "separable":
            return [m.depthwise.weight, m.pointwise.weight]
        if self.kind == "batchnorm":
            return [m.weight, m.bias, m.running_mean, m.running_var]
        return [p for p in (m.weight, m.bias) if p is not None]

    def describe(self) -> str:
        keras_shapes = [tuple(w.shape) for w in self.keras_layer.weights]
        torch_shapes = [tuple(t.shape) for t in self.torch_tensors()]
        return (
            f"Keras layer {self.keras_layer.name!r} "
            f"({type(self.keras_layer).__name__}, weights {keras_shapes}) does not match "
            f"PyTorch module {self.torch_name!r} "
            f"({type(self.torch_module).__name__}, weights {torch_shapes})"
        )


def keras_units(keras_model) -> dict[str, object]:
    """The Keras layers that hold weights, by name, in model order."""
    units = {}
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        if type(layer).__name__ not in KERAS_KINDS:
            raise ValueError(
                f"Keras layer {layer.name!r} is a {type(layer).__name__}; only "
                f"{', '.join(KERAS_KINDS)} layers can be converted"
            )
        units[layer.name] = layer
    return units


def keras_name(torch_name: str) -> str:
    """The Keras layer a PyTorch module stands for: without the flow, dots
    as underscores, and without ``conv``, the module that holds the layer
    itself (``entry_flow.block2.shortcut.conv`` → ``block2_shortcut``,
    ``…sepconv1.conv.depthwise`` → ``block2_sepconv1_depthwise``)."""
    parts = torch_name.split(".")
    if parts[0] in FLOWS:
        parts = parts[1:]
    return "_".join(part for part in parts if part != "conv") or torch_name


def torch_units(torch_model: nn.Module) -> dict[str, tuple[str, nn.Module, str]]:
    """The PyTorch modules that hold weights as (name, module, kind), by the
    Keras name they stand for; a separable convolution counts as one unit,
    like Keras' SeparableConv2D."""
    units, inside = {}, ""
    for name, module in torch_model.named_modules():
        if inside and name.startswith(inside):
            continue
        if isinstance(module, SeparableConv2d) and _is_plain(module):
            kind = "separable"
            inside = name + "."
        elif isinstance(module, SeparableConv2d):
            continue  # its two steps are Keras layers of their own
        elif isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels:
            kind = "depthwise"
        elif isinstance(module, nn.Conv2d):
            kind = "conv"
        elif isinstance(module, nn.BatchNorm2d):
            kind = "batchnorm"
        elif isinstance(module, nn.Linear):
            kind = "dense"
        else:
            continue
        units[keras_name(name)] = (name, module, kind)
    return units


def _is_plain(separable: SeparableConv2d) -> bool:
    """Depthwise, then pointwise, nothing in between: Keras' SeparableConv2D."""
    depthwise = separable.depthwise
    return depthwise.groups == depthwise.in_channels and not hasattr(separable, "act")


def pair_layers(keras_model, torch_model: nn.Module) -> list[Pair]:
    """Pair the two models' weighted layers by name and check every shape,
    or raise ``ValueError`` naming the first layer that does not match."""
    keras_layers, torch_modules = keras_units(keras_model), torch_units(torch_model)
    counts = f"{len(keras_layers)} weighted layers against {len(torch_modules)}"
    for name in keras_layers:
        if name not in torch_modules:
            raise ValueError(
                f"Keras layer {name!r} has no counterpart in the PyTorch model ({counts}; a module "
                f"'entry_flow.block2.sepconv1.bn' stands for 'block2_sepconv1_bn'); nothing was copied"
            )
    for name, (torch_name, _, _) in torch_modules.items():
        if name not in keras_layers:
            raise ValueError(
                f"PyTorch module {torch_name!r} has no counterpart {name!r} in the Keras model "
                f"({counts}); nothing was copied"
            )
    pairs = []
    for name, keras_layer in keras_layers.items():
        pair = Pair(keras_layer, *torch_modules[name])
        if KERAS_KINDS[type(keras_layer).__name__] != pair.kind or not _shapes_match(pair):
            raise ValueError(pair.describe() + "; nothing was copied")
        pairs.append(pair)
    return pairs


def _shapes_match(pair: Pair) -> bool:
    keras_shapes = [tuple(w.shape) for w in pair.keras_layer.weights]
    torch_shapes = [tuple(t.shape) for t in pair.torch_tensors()]
    layouts = LAYOUTS[pair.kind]
    if not len(keras_shapes) == len(torch_shapes) == len(layouts):
        return False
    return all(
        t == (k if perm is None else tuple(k[axis] for axis in perm))
        for k, t, perm in zip(keras_shapes, torch_shapes, layouts)
    )


def keras_to_torch(keras_model, torch_model: nn.Module) -> nn.Module:
    """Copy every weight of ``keras_model`` into ``torch_model`` in place,
    BatchNorm moving statistics included. Returns ``torch_model``."""
    pairs = pair_layers(keras_model, torch_model)
    with torch.no_grad():
        for pair in pairs:
            arrays = pair.keras_layer.get_weights()
            for array, tensor, perm in zip(arrays, pair.torch_tensors(), LAYOUTS[pair.kind]):
                if perm is not None:
                    array = np.transpose(array, perm)
                tensor.copy_(torch.from_numpy(np.ascontiguousarray(array)))
    return torch_model


def torch_to_keras(torch_model: nn.Module, keras_model):
    """Copy every weight of ``torch_model`` into ``keras_model`` in place,
    BatchNorm running statistics included. Returns ``keras_model``."""
    pairs = pair_layers(keras_model, torch_model)
    for pair in pairs:
        arrays = []
        for tensor, perm in zip(pair.torch_tensors(), LAYOUTS[pair.kind]):
            array = tensor.detach().cpu().float().numpy()
            arrays.append(array if perm is None else np.transpose(array, np.argsort(perm)))
        pair.keras_layer.set_weights(arrays)
    return keras_model
