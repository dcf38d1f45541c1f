"""Figures shared by the notebooks."""

import matplotlib.pyplot as plt

from . import costs, results

KIND_COLORS = {
    "conv": "#7f7f7f",
    "depthwise": "#ff7f0e",
    "pointwise": "#1f77b4",
    "dense": "#2ca02c",
    "batchnorm": "#d62728",
}


def run_colors(count: int) -> list[str]:
    """One colour per run, from matplotlib's colour cycle ("C0", "C1", …),
    which repeats after its tenth: never fewer colours than runs."""
    return [f"C{i}" for i in range(count)]


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


def show_samples(dataset, per_class: int = 4, seed: int = 0):
    """A grid of training images, one column per class, named above."""
    import numpy as np

    rng = np.random.default_rng(seed)
    classes = len(dataset.class_names)
    fig, axes = plt.subplots(per_class, classes, figsize=(1.1 * classes, 1.15 * per_class), squeeze=False)
    for label, name in enumerate(dataset.class_names):
        indices = np.flatnonzero(dataset.y_train == label)
        chosen = rng.choice(indices, size=min(per_class, len(indices)), replace=False)
        for row in range(per_class):
            axis = axes[row, label]
            axis.axis("off")
            if row < len(chosen):
                axis.imshow(dataset.x_train[chosen[row]], interpolation="nearest")
        axes[0, label].set_title(name, fontsize=9)
    fig.suptitle(f"{dataset.name}: {len(dataset.y_train):,} training images", fontsize=10)
    fig.tight_layout()
    return fig


def plot_histories(histories: dict[str, list[dict]], title: str = ""):
    """Loss, accuracy (test, with and without Polyak averaging) and learning
    rate per epoch, one line style per run."""
    fig, (loss_axis, accuracy_axis, lr_axis) = plt.subplots(1, 3, figsize=(14, 3.8))
    for (name, history), color in zip(histories.items(), run_colors(len(histories))):
        epochs = [record["epoch"] + 1 for record in history]
        loss_axis.plot(epochs, [r["loss"] for r in history], "-", color=color, label=f"{name} train")
        loss_axis.plot(epochs, [r["val_loss"] for r in history], "--", color=color, label=f"{name} test")
        accuracy_axis.plot(epochs, [r["accuracy"] for r in history], "-", color=color, label=f"{name} train")
        accuracy_axis.plot(epochs, [r["val_accuracy"] for r in history], "--", color=color, label=f"{name} test")
        accuracy_axis.plot(epochs, [r["val_accuracy_ema"] for r in history], ":", color=color,
                           label=f"{name} test, averaged")
        lr_axis.plot(epochs, [r["lr"] for r in history], "o-", color=color, label=name, alpha=0.7)
    loss_axis.set_yscale("log")  # early test losses can be orders of magnitude above the rest
    for axis, label in ((loss_axis, "loss"), (accuracy_axis, "accuracy"), (lr_axis, "learning rate")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_accuracy_against_time(histories: dict[str, list[dict]], title: str = ""):
    """Test accuracy at the end of each epoch against the seconds the run had
    taken by then, one line per run."""
    fig, axis = plt.subplots(figsize=(7, 3.6))
    for (name, history), color in zip(histories.items(), run_colors(len(histories))):
        axis.plot(results.elapsed(history), [r["val_accuracy"] for r in history], "o-", color=color, label=name)
    axis.set_xlabel("seconds of training (epochs and their evaluation)")
    axis.set_ylabel("test accuracy")
    axis.set_xlim(left=0)
    axis.grid(alpha=0.3)
    axis.legend()
    if title:
        axis.set_title(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix, class_names, title: str = ""):
    """A confusion matrix (true class by row, predicted by column) as
    fractions of each true class, with the counts written in."""
    import numpy as np

    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, axis = plt.subplots(figsize=(6.4, 5.6))
    image = axis.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center", fontsize=7,
                  color="white" if fractions[row, column] > 0.5 else "black")
    ticks = range(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(ticks, class_names, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    fig.colorbar(image, ax=axis, label="fraction of the true class")
    if title:
        axis.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_mistakes(images, labels, probabilities, class_names, columns: int = 8, title: str = ""):
    """Test images a model got wrong, each titled "true → predicted (p)", p the
    probability it gave its prediction."""
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.55 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, label, p in zip(axes.flat, images, labels, probabilities):
        predicted = int(p.argmax())
        axis.imshow(image, interpolation="nearest")
        axis.set_title(f"{class_names[label]} →\n{class_names[predicted]} ({p[predicted]:.2f})", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_seed_spread(groups: dict[str, list[list[dict]]], key: str = "val_accuracy", label: str = "test accuracy",
                     title: str = ""):
    """One line per group of runs (a history per seed): the mean of ``key`` over
    the seeds at each epoch, with a band from the lowest to the highest seed."""
    import numpy as np

    fig, axis = plt.subplots(figsize=(7.5, 3.8))
    for (name, histories), color in zip(groups.items(), run_colors(len(groups))):
        epochs = min(len(history) for history in histories)
        values = np.array([[record[key] for record in history[:epochs]] for history in histories])
        x = np.arange(1, epochs + 1)
        axis.plot(x, values.mean(axis=0), "o-", color=color, label=f"{name} ({len(histories)} seeds)")
        axis.fill_between(x, values.min(axis=0), values.max(axis=0), color=color, alpha=0.2)
        axis.set_xticks(x)
    axis.set_xlabel("epoch")
    axis.set_ylabel(label)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    if title:
        axis.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
