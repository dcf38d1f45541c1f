"""Figures shared by the notebooks."""

import matplotlib.pyplot as plt

from . import costs

KIND_COLORS = {
    "conv": "#7f7f7f",
    "depthwise": "#ff7f0e",
    "pointwise": "#1f77b4",
    "dense": "#2ca02c",
    "batchnorm": "#d62728",
}


def plot_costs_by_flow(rows: list[costs.LayerCost], title: str = ""):
    """Parameters and multiply-adds of each flow, stacked by kind of layer."""
    flows = list(costs.totals_by(rows, "flow"))
    kinds = list(costs.totals_by(rows, "kind"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, (index, label, scale) in zip(axes, [(0, "parameters (millions)", 1e6),
                                                  (1, "multiply-adds per image (billions)", 1e9)]):
        bottom = [0.0] * len(flows)
        for kind in kinds:
            per_flow = costs.totals_by([r for r in rows if r.kind == kind], "flow")
            heights = [per_flow.get(flow, (0, 0))[index] / scale for flow in flows]
            axis.bar(flows, heights, bottom=bottom, label=kind, color=KIND_COLORS[kind])
            bottom = [b + h for b, h in zip(bottom, heights)]
        axis.set_ylabel(label)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(title="layer kind")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
