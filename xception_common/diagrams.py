"""Block diagrams of the modules that lead from a regular convolution to a
depthwise separable one (the paper's Figures 2-4), and of data-parallel
training, drawn with matplotlib.

Data flows upwards, as in the paper. Every box is a ``FancyBboxPatch`` with its
label as a text artist at its centre, so a test can count what a panel shows.
"""

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

BOX_HEIGHT = 0.13
NARROW = 0.34  # width of an input, output or concat box
WIDE = 0.84  # width of a convolution that sees every channel
ROWS = (0.08, 0.36, 0.64, 0.92)  # heights of the four levels a panel can have
COLORS = {
    "data": "#e0e0e0",  # input, output, concat
    "pointwise": "#9ecae1",  # 1×1 convolutions: channels only
    "spatial": "#fdae6b",  # 3×3 convolutions: space (and channels if not depthwise)
    "replica": "#c7e9c0",  # a copy of the whole model (data parallelism)
    "reduce": "#fdd0a2",  # the gradients averaged over the replicas
}


def box(ax, x, y, label, kind, width=NARROW):
    """A rounded box centred on (x, y) with its label inside."""
    corner = (x - width / 2, y - BOX_HEIGHT / 2)
    ax.add_patch(
        FancyBboxPatch(corner, width, BOX_HEIGHT, boxstyle="round,pad=0.008",
                       facecolor=COLORS[kind], edgecolor="black", linewidth=0.8)
    )
    ax.text(x, y, label, ha="center", va="center", fontsize=8)


def row(ax, y, labels, kind, width=None):
    """Boxes side by side across the panel; returns their centres."""
    n = len(labels)
    xs = [0.5 + (i - (n - 1) / 2) * WIDE / n for i in range(n)]
    for x, label in zip(xs, labels):
        box(ax, x, y, label, kind, width or 0.9 * WIDE / n)
    return xs


def connect(ax, xs_from, y_from, xs_to, y_to, straight=False):
    """Arrows from the boxes of one level to those of the next: straight up
    (one wide box split into, or gathered from, channel segments), pairwise
    (towers), or every box to every box (a fan in or out)."""
    if straight:
        pairs = [(x, x) for x in (xs_to if len(xs_to) > 1 else xs_from)]
    elif len(xs_from) == len(xs_to):
        pairs = list(zip(xs_from, xs_to))
    else:
        pairs = [(a, b) for a in xs_from for b in xs_to]
    for a, b in pairs:
        ax.add_patch(
            FancyArrowPatch((a, y_from + BOX_HEIGHT / 2), (b, y_to - BOX_HEIGHT / 2),
                            arrowstyle="-|>", mutation_scale=7, linewidth=0.7, color="black")
        )


def draw_regular(ax):
    """One 3×3 convolution over all channels at once."""
    connect(ax, row(ax, ROWS[0], ["Input"], "data", NARROW), ROWS[0],
            row(ax, 0.5, ["3×3 conv\n(all channels)"], "spatial", WIDE), 0.5)
    connect(ax, [0.5], 0.5, row(ax, ROWS[3], ["Output"], "data", NARROW), ROWS[3])


def draw_inception(ax, towers=3):
    """Figure 2: towers of 1×1 then 3×3, ReLU after each, concatenated."""
    inputs = row(ax, ROWS[0], ["Input"], "data", NARROW)
    pointwise = row(ax, ROWS[1], ["1×1\nReLU"] * towers, "pointwise")
    spatial = row(ax, ROWS[2], ["3×3\nReLU"] * towers, "spatial")
    concat = row(ax, ROWS[3], ["Concat"], "data", NARROW)
    connect(ax, inputs, ROWS[0], pointwise, ROWS[1])
    connect(ax, pointwise, ROWS[1], spatial, ROWS[2])
    connect(ax, spatial, ROWS[2], concat, ROWS[3])


def draw_grouped(ax, segments=3):
    """Figure 3 (and Figure 4 with one segment per channel): one 1×1
    convolution, its output split into segments, a 3×3 conv per segment."""
    inputs = row(ax, ROWS[0], ["Input"], "data", NARROW)
    pointwise = row(ax, ROWS[1], ["1×1 conv, ReLU"], "pointwise", WIDE)
    spatial = row(ax, ROWS[2], ["3×3\nReLU"] * segments, "spatial")
    concat = row(ax, ROWS[3], ["Concat"], "data", NARROW)
    connect(ax, inputs, ROWS[0], pointwise, ROWS[1])
    connect(ax, pointwise, ROWS[1], spatial, ROWS[2], straight=True)
    connect(ax, spatial, ROWS[2], concat, ROWS[3])


def draw_separable(ax, channels=6):
    """Depthwise 3×3 (one filter per input channel), then a 1×1 conv; no
    nonlinearity in between."""
    inputs = row(ax, ROWS[0], ["Input"], "data", WIDE)
    depthwise = row(ax, ROWS[1], ["3×3"] * channels, "spatial")
    pointwise = row(ax, ROWS[2], ["1×1 conv (no ReLU before)"], "pointwise", WIDE)
    output = row(ax, ROWS[3], ["Output"], "data", NARROW)
    connect(ax, inputs, ROWS[0], depthwise, ROWS[1], straight=True)
    connect(ax, depthwise, ROWS[1], pointwise, ROWS[2], straight=True)
    connect(ax, pointwise, ROWS[2], output, ROWS[3])


def module_diagrams(towers=3, channels=6):
    """The five panels side by side, from a regular convolution to a
    depthwise separable one. Returns the figure."""
    fig, axes = plt.subplots(1, 5, figsize=(16, 4.2))
    panels = [
        ("Regular convolution", draw_regular, {}),
        ("Simplified Inception\n(Figure 2)", draw_inception, {"towers": towers}),
        (f"1×1 + grouped 3×3, {towers} segments\n(Figure 3)", draw_grouped, {"segments": towers}),
        ("Extreme Inception: 1 segment\nper channel (Figure 4)", draw_grouped, {"segments": channels}),
        ("Depthwise separable conv\n(depthwise first, no ReLU)", draw_separable, {"channels": channels}),
    ]
    for ax, (title, draw, options) in zip(axes, panels):
        draw(ax, **options)
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.axis("off")
    fig.tight_layout()
    return fig


def data_parallel_diagram(replicas=4, batch_size=256):
    """One step of synchronous data-parallel SGD, bottom to top: the global
    batch, split into a share per replica; each replica, a copy of the whole
    model, computes the gradient of its share; the gradients are averaged
    (an all-reduce), and every replica takes the same step. Returns the figure."""
    share = batch_size // replicas
    fig, ax = plt.subplots(figsize=(9, 4.6))
    levels = (0.06, 0.28, 0.5, 0.72, 0.94)
    batch = row(ax, levels[0], [f"global batch: {batch_size} images"], "data", WIDE)
    shares = row(ax, levels[1], [f"images {r * share}–{(r + 1) * share - 1}" for r in range(replicas)], "data")
    models = row(ax, levels[2], [f"replica {r}\ngradient $g_{r}$" for r in range(replicas)], "replica")
    mean = row(ax, levels[3], [f"all-reduce: g = mean of $g_0$ … $g_{{{replicas - 1}}}$"], "reduce", WIDE)
    step = row(ax, levels[4], ["every replica: w ← w − η·g (the same weights)"], "replica", WIDE)
    connect(ax, batch, levels[0], shares, levels[1])
    connect(ax, shares, levels[1], models, levels[2])
    connect(ax, models, levels[2], mean, levels[3])
    connect(ax, mean, levels[3], step, levels[4])
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.axis("off")
    ax.set_title(f"One step of data-parallel SGD on {replicas} replicas", fontsize=10)
    fig.tight_layout()
    return fig
