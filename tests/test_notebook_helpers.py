"""The helpers the notebooks call: setup, source display, summaries, figures."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from xception_common import costs, notebook, plots, results  # noqa: E402
from xception_common.costs import parameters_by_flow  # noqa: E402
from xception_common.keras_xception import build_xception, separable_conv  # noqa: E402
from xception_common.torch_xception import SeparableConv2d, Xception  # noqa: E402


def test_source_is_the_package_code():
    text = notebook.source(separable_conv, SeparableConv2d)
    assert text.startswith("def separable_conv(")
    assert "class SeparableConv2d(nn.Module):" in text
    assert "groups=in_channels" in text


def test_side_by_side_escapes_and_titles_both_columns():
    shown = notebook.side_by_side("a < b", "x & y", titles=("left", "right"))
    table = shown._repr_html_()
    assert table.count("<td") == 2
    assert "a &lt; b" in table and "x &amp; y" in table
    assert "<th style='text-align:left'>left</th>" in table
    # Where only text is shown, both blocks appear whole, each under its title.
    assert repr(shown) == "left\n----\na < b\n\nright\n-----\nx & y"


def test_keras_summary_is_plain_text_of_fixed_width():
    text = notebook.keras_summary(build_xception(input_shape=(71, 71, 3)), line_length=88)
    lines = text.splitlines()
    assert lines[0] == 'Model: "xception"'
    assert "Trainable params: 22,855,952 " in lines[-2]  # Table 3
    assert max(len(line) for line in lines) == 88


def test_setup_seeds_both_frameworks():
    import numpy as np
    import torch

    notebook.setup(seed=3)
    first = (np.random.rand(), torch.rand(1).item(), float(keras.random.uniform(())))
    notebook.setup(seed=3)
    assert (np.random.rand(), torch.rand(1).item(), float(keras.random.uniform(()))) == first


def test_cost_figure_stacks_each_flows_parameters():
    model = Xception()
    fig = plots.plot_costs_by_flow(costs.torch_layer_costs(model, image_size=71))
    params_axis, _ = fig.axes
    # Each flow's stack reaches its parameter count, counted on the model itself.
    tops = {}
    for bar in params_axis.patches:
        flow = params_axis.get_xticklabels()[round(bar.get_x() + bar.get_width() / 2)].get_text()
        tops[flow] = max(tops.get(flow, 0.0), bar.get_y() + bar.get_height())
    expected = {flow: count / 1e6 for flow, count in parameters_by_flow(model).items()}
    assert tops == pytest.approx(expected, rel=1e-12)
    assert [t.get_text() for t in params_axis.get_legend().get_texts()] == list(costs.KINDS)
    plt.close(fig)


def test_accuracy_against_time_draws_one_line_per_run_at_each_epochs_end():
    fast = [{"epoch": 0, "seconds": 10.0, "val_accuracy": 0.3}, {"epoch": 1, "seconds": 5.0, "val_accuracy": 0.5}]
    slow = [{"epoch": 0, "seconds": 40.0, "val_accuracy": 0.4}]
    fig = plots.plot_accuracy_against_time({"fast": fast, "slow": slow})
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["fast", "slow"]
    assert list(lines[0].get_xdata()) == [10.0, 15.0] and list(lines[0].get_ydata()) == [0.3, 0.5]
    assert list(lines[1].get_xdata()) == [40.0]
    plt.close(fig)


def test_every_run_gets_a_line_and_neighbours_differ_in_colour():
    histories = {f"run {i}": [{"epoch": 0, "seconds": 1.0 + i, "val_accuracy": 0.1 * i}] for i in range(5)}
    fig = plots.plot_accuracy_against_time(histories)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == list(histories)
    colors = [matplotlib.colors.to_hex(line.get_color()) for line in lines]
    assert len(set(colors)) == 5
    plt.close(fig)


def test_confusion_matrix_counts_true_classes_by_row():
    labels, predicted = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])  # row: true class, column: predicted
    np.testing.assert_array_equal(results.confusion_matrix(labels, predicted, 3), expected)
    # A prediction of class 3 for class 0 would be counted in row 1, column 0 (0 · 3 + 3): refused.
    with pytest.raises(ValueError, match="predictions must be classes 0 to 2, got 0 to 3"):
        results.confusion_matrix([0, 1], [3, 0], 3)
    with pytest.raises(ValueError, match="labels must be classes 0 to 2, got -1 to 0"):
        results.confusion_matrix([-1, 0], [0, 0], 3)
    with pytest.raises(ValueError, match="one prediction per label"):
        results.confusion_matrix([0, 1], [0], 3)


def test_confusion_figure_shows_fractions_of_each_true_class_and_counts():
    matrix = np.array([[3, 1], [0, 4]])
    fig = plots.plot_confusion_matrix(matrix, ["cat", "dog"])
    axis = fig.axes[0]
    np.testing.assert_allclose(axis.images[0].get_array(), [[0.75, 0.25], [0.0, 1.0]])
    assert [text.get_text() for text in axis.texts] == ["3", "1", "0", "4"]
    assert [label.get_text() for label in axis.get_yticklabels()] == ["cat", "dog"]
    plt.close(fig)


def test_mistakes_are_titled_with_true_and_predicted_class_and_probability():
    images = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    probabilities = np.array([[0.1, 0.9], [0.7, 0.3], [0.4, 0.6]])
    fig = plots.show_mistakes(images, [0, 1, 0], probabilities, ["cat", "dog"], columns=2)
    titles = [axis.get_title() for axis in fig.axes]
    assert titles == ["cat →\ndog (0.90)", "dog →\ncat (0.70)", "cat →\ndog (0.60)", ""]
    assert sum(bool(axis.images) for axis in fig.axes) == 3  # the fourth cell of the 2 × 2 grid stays empty
    plt.close(fig)


@pytest.mark.parametrize("first, second, expected", [
    ([0.8, 0.9], [0.5, 0.7], "higher"), ([0.5, 0.7], [0.8, 0.9], "lower"), ([0.5, 0.9], [0.6, 0.7], "overlapping"),
    ([0.7, 0.8], [0.6, 0.7], "overlapping"),  # a tie between seeds is not a separation
])
def test_ordering_separates_groups_only_beyond_the_seeds_spread(first, second, expected):
    assert results.ordering(first, second) == expected


def test_seed_spread_draws_each_groups_mean_and_its_range():
    runs = [[{"val_accuracy": a} for a in accuracies] for accuracies in ([0.2, 0.4], [0.4, 0.8], [0.3, 0.6])]
    fig = plots.plot_seed_spread({"xception": runs})
    axis = fig.axes[0]
    np.testing.assert_allclose(axis.lines[0].get_ydata(), [0.3, 0.6])
    band = axis.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.2) and band.max() == pytest.approx(0.8)
    assert axis.get_legend().get_texts()[0].get_text() == "xception (3 seeds)"
    plt.close(fig)
