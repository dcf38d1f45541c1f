"""Parameters and multiply-adds of every layer, counted in each framework.

PyTorch's numbers come from torchinfo. Keras has no multiply-add counter, so
its numbers come from the formulas below applied to Keras' own layer shapes;
that the two agree is the check. A separable convolution is split into its
depthwise and pointwise parts in both, to show where the cost lies.

Multiply-adds per image, for an output map of h × w:

* convolution k × k, C_in → C_out: h · w · k² · C_in · C_out
* depthwise k × k over C channels:  h · w · k² · C
* pointwise 1 × 1, C_in → C_out:    h · w · C_in · C_out
* dense, C_in → C_out:              (C_in + 1) · C_out, the bias add counted as
  torchinfo does

BatchNorm is counted for its parameters only; its per-pixel work, like ReLU's,
is not a multiply-add in this sense.
"""

from dataclasses import dataclass
from math import prod

from . import architecture as arch

KINDS = ("conv", "depthwise", "pointwise", "dense", "batchnorm")


@dataclass(frozen=True)
class LayerCost:
    name: str
    flow: str
    kind: str
    params: int
    mult_adds: int


def keras_layer_costs(model, flow_of=arch.flow_of) -> list[LayerCost]:
    """One row per weighted layer of a Keras Xception (two per separable conv).

    Another Keras model of these layer kinds (``keras.applications.InceptionV3``)
    is counted too, with ``flow_of`` naming each layer's group."""
    rows = []
    for layer in model.layers:
        kind = type(layer).__name__
        if not layer.trainable_weights:
            continue
        flow = flow_of(layer.name)
        pixels = prod(layer.output.shape[1:3]) if len(layer.output.shape) == 4 else 1
        if kind == "SeparableConv2D":
            depthwise, pointwise = layer.depthwise_kernel.shape, layer.pointwise_kernel.shape
            rows.append(LayerCost(layer.name + ".depthwise", flow, "depthwise",
                                  prod(depthwise), pixels * prod(depthwise)))
            rows.append(LayerCost(layer.name + ".pointwise", flow, "pointwise",
                                  prod(pointwise), pixels * prod(pointwise)))
        elif kind in ("Conv2D", "DepthwiseConv2D"):
            params = sum(prod(w.shape) for w in layer.trainable_weights)
            role = "depthwise" if layer.name.endswith("_depthwise") else "pointwise" if layer.name.endswith(
                "_pointwise") else "conv"
            rows.append(LayerCost(layer.name, flow, role, params, pixels * prod(layer.kernel.shape)))
        elif kind == "Dense":
            params = layer.count_params()
            rows.append(LayerCost(layer.name, flow, "dense", params, params))
        elif kind == "BatchNormalization":
            rows.append(LayerCost(layer.name, flow, "batchnorm",
                                  sum(prod(w.shape) for w in layer.trainable_weights), 0))
        else:
            raise ValueError(f"no cost formula for Keras layer {layer.name!r} ({kind})")
    return rows


def torch_layer_costs(model, image_size: int = arch.DEFAULT_INPUT_SIZE) -> list[LayerCost]:
    """One row per weighted leaf module of the PyTorch Xception, with
    torchinfo's parameter and multiply-add counts for one image."""
    import torchinfo
    from torch import nn

    arch.check_image_size(image_size, image_size, arch.INPUT_CHANNELS)
    stats = torchinfo.summary(
        model, input_size=(1, arch.INPUT_CHANNELS, image_size, image_size),
        device="cpu", verbose=0, col_names=("num_params", "mult_adds"),
    )
    names = {id(module): name for name, module in model.named_modules()}
    rows = []
    for info in stats.summary_list:
        module = info.module
        if not info.is_leaf_layer or not info.trainable_params:
            continue
        name = names[id(module)]
        flow = torch_flow_of(name)
        if isinstance(module, nn.Conv2d):
            kind = "depthwise" if module.groups > 1 else "pointwise" if name.endswith(".pointwise") else "conv"
            rows.append(LayerCost(name, flow, kind, info.trainable_params, info.macs))
        elif isinstance(module, nn.Linear):
            rows.append(LayerCost(name, flow, "dense", info.trainable_params, info.macs))
        elif isinstance(module, nn.BatchNorm2d):
            rows.append(LayerCost(name, flow, "batchnorm", info.trainable_params, 0))
        else:
            raise ValueError(f"no cost rule for PyTorch module {name!r} ({type(module).__name__})")
    return rows


def parameters_by_flow(model) -> dict[str, int]:
    """Trainable parameters of each flow of either framework's Xception, in
    Figure 5's order (entry, middle, exit flow, head)."""
    counts = dict.fromkeys(arch.FLOWS, 0)
    if hasattr(model, "named_parameters"):  # PyTorch
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                counts[torch_flow_of(name)] += parameter.numel()
    else:
        for layer in model.layers:
            if layer.trainable_weights:
                counts[arch.flow_of(layer.name)] += sum(prod(w.shape) for w in layer.trainable_weights)
    return {flow: n for flow, n in counts.items() if n}


def torch_flow_of(name: str) -> str:
    """The flow of a PyTorch module or parameter: its first name part, or
    'head' for the classifier (``predictions``)."""
    first = name.split(".")[0]
    return "head" if first == "predictions" else first


def totals_by(rows: list[LayerCost], key: str) -> dict[str, tuple[int, int]]:
    """(parameters, multiply-adds) summed per ``flow`` or per ``kind``, in
    Figure 5's order."""
    order = list(arch.FLOWS) if key == "flow" else list(KINDS)
    totals = {group: [0, 0] for group in order}
    for row in rows:
        group = totals[getattr(row, key)]
        group[0] += row.params
        group[1] += row.mult_adds
    return {group: tuple(t) for group, t in totals.items() if t != [0, 0]}
