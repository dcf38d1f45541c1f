"""The diagrams show what the notebooks say they show."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from xception_common.diagrams import COLORS, data_parallel_diagram, module_diagrams  # noqa: E402


@pytest.fixture
def figure():
    fig = module_diagrams(towers=3, channels=6)
    yield fig
    plt.close(fig)


def boxes(ax):
    return [p for p in ax.patches if isinstance(p, FancyBboxPatch)]


def box_centres_y(ax, kind):
    return [b.get_y() + b.get_height() / 2 for b in boxes(ax) if to_hex(b.get_facecolor()) == COLORS[kind]]


def test_five_panels_with_titles_naming_the_paper_figures(figure):
    titles = [ax.get_title() for ax in figure.axes]
    assert len(titles) == 5
    for number, title in zip((2, 3, 4), titles[1:4]):
        assert f"Figure {number}" in title


def test_one_labelled_box_per_layer(figure):
    # regular: input, conv, output; Inception: input, 3 + 3 towers, concat;
    # grouped: input, 1×1, 3 segments, concat; extreme: input, 1×1, 6, concat;
    # separable: input, 6 depthwise, 1×1, output.
    assert [len(boxes(ax)) for ax in figure.axes] == [3, 8, 6, 9, 9]
    assert [len(ax.texts) for ax in figure.axes] == [3, 8, 6, 9, 9]


def test_counts_follow_the_arguments():
    fig = module_diagrams(towers=4, channels=8)
    assert [len(boxes(ax)) for ax in fig.axes] == [3, 10, 7, 11, 11]
    plt.close(fig)


def test_relu_after_every_inception_conv_and_none_in_the_separable_conv(figure):
    relus = [sum(t.get_text().endswith("ReLU") for t in ax.texts) for ax in figure.axes]
    assert relus == [0, 6, 4, 7, 0]


def test_order_pointwise_first_in_inception_depthwise_first_in_separable(figure):
    for ax in figure.axes[1:4]:
        assert max(box_centres_y(ax, "pointwise")) < min(box_centres_y(ax, "spatial"))
    separable = figure.axes[4]
    assert max(box_centres_y(separable, "spatial")) < min(box_centres_y(separable, "pointwise"))


def test_data_parallel_step_splits_the_batch_into_a_share_per_replica():
    fig = data_parallel_diagram(replicas=3, batch_size=96)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.texts]
    # batch, 3 shares, 3 replicas, the all-reduce and the step, bottom to top
    assert len(boxes(ax)) == len(labels) == 9
    assert [label for label in labels if label.startswith("images")] == ["images 0–31", "images 32–63", "images 64–95"]
    assert max(box_centres_y(ax, "data")) < min(box_centres_y(ax, "replica"))
    assert len(box_centres_y(ax, "reduce")) == 1
    # every share feeds its replica alone; the three gradients all meet in the mean
    assert len(ax.patches) - len(boxes(ax)) == 3 + 3 + 3 + 1
    plt.close(fig)
