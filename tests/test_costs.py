"""Parameters and multiply-adds per layer: Keras formulas against torchinfo."""

import pytest

from xception_common import costs
from xception_common.keras_xception import build_xception
from xception_common.torch_xception import Xception


@pytest.fixture(scope="module")
def rows():
    return costs.keras_layer_costs(build_xception()), costs.torch_layer_costs(Xception())


def test_every_layer_costs_the_same_in_both_frameworks(rows):
    keras_rows, torch_rows = rows
    assert len(keras_rows) == len(torch_rows) == 2 + 4 + 2 * 34 + 1 + (2 + 4 + 34)
    for k, t in zip(keras_rows, torch_rows):
        assert (k.flow, k.kind, k.params, k.mult_adds) == (t.flow, t.kind, t.params, t.mult_adds), (k, t)


def test_flow_totals(rows):
    keras_rows, torch_rows = rows
    flows = costs.totals_by(keras_rows, "flow")
    assert flows == costs.totals_by(torch_rows, "flow")
    assert sum(params for params, _ in flows.values()) == 22_855_952
    # Middle flow: 24 separable convs 728 -> 728 at 19x19 (and their BNs).
    assert flows["middle_flow"] == (24 * (9 * 728 + 728 * 728 + 2 * 728), 24 * 19 * 19 * (9 * 728 + 728 * 728))


def test_separable_conv_split(rows):
    keras_rows, _ = rows
    by_name = {row.name: row for row in keras_rows}
    depthwise = by_name["block5_sepconv1.depthwise"]
    pointwise = by_name["block5_sepconv1.pointwise"]
    assert (depthwise.params, depthwise.mult_adds) == (3 * 3 * 728, 19 * 19 * 3 * 3 * 728)
    assert (pointwise.params, pointwise.mult_adds) == (728 * 728, 19 * 19 * 728 * 728)


def test_torchinfo_total_differs_only_by_its_batch_norm_entries(rows):
    import torchinfo

    _, torch_rows = rows
    stats = torchinfo.summary(Xception(), input_size=(1, 3, 299, 299), device="cpu", verbose=0)
    bn_params = costs.totals_by(torch_rows, "kind")["batchnorm"][0]
    assert stats.total_mult_adds == sum(row.mult_adds for row in torch_rows) + bn_params


def test_another_keras_model_is_counted_with_its_own_groups():
    import keras

    inception = keras.applications.InceptionV3(weights=None)
    rows = costs.keras_layer_costs(inception, flow_of=lambda name: "inception")
    trainable = sum(int(w.numpy().size) for w in inception.trainable_weights)
    assert sum(row.params for row in rows) == trainable
    first = rows[0]  # 3×3 stride 2 'valid', 3 → 32 channels: 299 → 149
    assert (first.kind, first.params, first.mult_adds) == ("conv", 3 * 3 * 3 * 32, 149 * 149 * 3 * 3 * 3 * 32)
    assert {row.flow for row in rows} == {"inception"}


def test_a_variant_costs_the_same_in_both_frameworks():
    keras_model = build_xception(input_shape=(71, 71, 3), intermediate_activation="relu", segment_size=4)
    keras_rows = costs.keras_layer_costs(keras_model)
    torch_rows = costs.torch_layer_costs(Xception(intermediate_activation="relu", segment_size=4), image_size=71)
    assert [(r.flow, r.kind, r.params, r.mult_adds) for r in keras_rows] == [
        (r.flow, r.kind, r.params, r.mult_adds) for r in torch_rows]
    depthwise = next(row for row in keras_rows if row.name == "block5_sepconv1_depthwise")
    assert (depthwise.params, depthwise.mult_adds) == (9 * 4 * 728, 5 * 5 * 9 * 4 * 728)  # 5×5 maps at 71
