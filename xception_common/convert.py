"""Copy weights between the Keras and the PyTorch Xception, both ways.

Layers are paired by position, not by name: the weighted layers of the Keras
model in ``model.layers`` order against the PyTorch model's modules in
registration order. That is what lets ``keras.applications.Xception``, whose
shortcut layers carry auto-generated names, hand its ImageNet weights to
PyTorch. Every pair is checked before anything is written, so a mismatch leaves
both models as they were.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .torch_xception import SeparableConv2d

# Keras layout -> PyTorch layout, one permutation per weight (None: same layout).
# Conv kernels: (kh, kw, in, out) -> (out, in, kh, kw); depthwise kernels:
# (kh, kw, in, 1) -> (in, 1, kh, kw); Dense kernels: (in, out) -> (out, in).
CONV = (3, 2, 0, 1)
DEPTHWISE = (2, 3, 0, 1)
LAYOUTS = {
    "separable": (DEPTHWISE, CONV),
    "conv": (CONV,),
    "batchnorm": (None, None, None, None),  # gamma/weight, beta/bias, mean, variance
    "dense": ((1, 0), None),
}
KERAS_KINDS = {
    "SeparableConv2D": "separable",
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


def keras_units(keras_model) -> list:
    """The Keras layers that hold weights, in model order."""
    units = []
    for layer in keras_model.layers:
        if not layer.weights:
            continue
        if type(layer).__name__ not in KERAS_KINDS:
            raise ValueError(
                f"Keras layer {layer.name!r} is a {type(layer).__name__}; only "
                f"{', '.join(KERAS_KINDS)} layers can be converted"
            )
        units.append(layer)
    return units


def torch_units(torch_model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """The PyTorch modules that hold weights, in registration order; a
    separable convolution counts as one unit, like Keras' SeparableConv2D."""
    units, inside = [], ()
    for name, module in torch_model.named_modules():
        if inside and name.startswith(inside):
            continue
        if isinstance(module, SeparableConv2d):
            units.append((name, module, "separable"))
            inside = name + "."
        elif isinstance(module, nn.Conv2d):
            units.append((name, module, "conv"))
        elif isinstance(module, nn.BatchNorm2d):
            units.append((name, module, "batchnorm"))
        elif isinstance(module, nn.Linear):
            units.append((name, module, "dense"))
    return units


def pair_layers(keras_model, torch_model: nn.Module) -> list[Pair]:
    """Pair the two models' weighted layers and check every shape, or raise
    ``ValueError`` naming the first layer that does not match."""
    keras_list, torch_list = keras_units(keras_model), torch_units(torch_model)
    pairs = []
    for i in range(max(len(keras_list), len(torch_list))):
        if i >= len(keras_list):
            name = torch_list[i][0]
            raise ValueError(
                f"PyTorch module {name!r} has no counterpart in the Keras model "
                f"({len(keras_list)} weighted layers against {len(torch_list)}); nothing was copied"
            )
        if i >= len(torch_list):
            raise ValueError(
                f"Keras layer {keras_list[i].name!r} has no counterpart in the PyTorch model "
                f"({len(keras_list)} weighted layers against {len(torch_list)}); nothing was copied"
            )
        keras_layer, (name, module, kind) = keras_list[i], torch_list[i]
        pair = Pair(keras_layer, name, module, kind)
        if KERAS_KINDS[type(keras_layer).__name__] != kind or not _shapes_match(pair):
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
