"""The Keras trainer: the evaluation of its Polyak averages, and the device it trains on."""

import functools
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_dataset

from xception_common import train_keras
from xception_common.epoch_plan import crop_padding, epoch_plan
from xception_common.runs import PREDICTIONS, TrainConfig, load_predictions


def config(epochs, precision="float32", bn_batches=0):
    # ema_decay 0.5 over two steps an epoch (16 images, batches of 8): the
    # average after the epoch is (w1 + w2) / 2 of the weights after each step,
    # as Keras' average starts at the weights after the first step.
    return TrainConfig("keras", "tiny", epochs, image_size=71, batch_size=8, ema_decay=0.5, precision=precision,
                       bn_batches=bn_batches)


def trainable_weights(model):
    return [variable.numpy() for variable in model.trainable_variables]


def assert_weights_close(actual, expected):
    # Keras' average and (w1 + w2) / 2 round differently in the last bit.
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)


def assert_weights_equal(actual, expected):
    # Weights put back after an evaluation are the trained ones, bit for bit:
    # training goes on exactly as without the evaluation.
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)


def differ(actual, expected):
    return max(float(np.abs(a - e).max()) for a, e in zip(actual, expected)) > 1e-4


@pytest.fixture
def seen(monkeypatch):
    """The model's trainable weights after each training step, and at the
    start of each evaluation, after its callbacks have swapped in what they
    swap (fit's validation and every ``evaluate`` call both start there)."""
    steps, evaluations = [], []
    on_train_batch_end = keras.callbacks.CallbackList.on_train_batch_end
    on_test_begin = keras.callbacks.CallbackList.on_test_begin

    def after_step(self, batch, logs=None):
        on_train_batch_end(self, batch, logs)
        steps.append(trainable_weights(self.model))

    def evaluating(self, logs=None):
        on_test_begin(self, logs)
        evaluations.append(trainable_weights(self.model))

    monkeypatch.setattr(keras.callbacks.CallbackList, "on_train_batch_end", after_step)
    monkeypatch.setattr(keras.callbacks.CallbackList, "on_test_begin", evaluating)
    return steps, evaluations


@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_val_accuracy_ema_is_the_averaged_models_and_the_trained_weights_stay(precision, seen, tmp_path):
    # float16 trains through a LossScaleOptimizer: the averages are its inner optimizer's.
    steps, evaluations = seen
    dataset, checkpoint = tiny_dataset(), tmp_path / "checkpoint.keras"
    history = train_keras.fit(config(1, precision), dataset, checkpoint, lambda history: None, progress=False)
    (first, second), (validation, averaged) = steps, evaluations
    average = [(a + b) / 2 for a, b in zip(first, second)]
    assert differ(average, second)  # so that the weights tell the two apart
    assert_weights_equal(validation, second)  # fit's own val_accuracy: the trained model
    assert_weights_close(averaged, average)  # val_accuracy_ema: the averaged model
    model = keras.saving.load_model(checkpoint)
    assert_weights_equal(trainable_weights(model), second)  # the checkpoint saves the trained weights
    for variable, value in zip(model.trainable_variables, average):
        variable.assign(value)
    test_data = train_keras.test_dataset(dataset, config(1, precision))
    assert history[0]["val_accuracy_ema"] == model.evaluate(test_data, verbose=0, return_dict=True)["accuracy"]


def test_the_trained_weights_and_statistics_come_back_when_the_averaged_evaluation_fails(seen):
    steps, evaluations = seen
    dataset = tiny_dataset()
    model = train_keras.build_model(dataset, config(1), steps=2, gpu=False)

    class FailingWithTheAverages(train_keras.EvaluateWithOwnStatistics):
        def evaluate(self, epoch):
            result = super().evaluate(epoch)
            if len(evaluations) == 2:  # the averaged model's, after it has run
                raise RuntimeError("the averaged model's evaluation failed")
            return result

    statistics_batches = functools.partial(train_keras.statistics_batches, dataset, config(1, bn_batches=1))
    callback = FailingWithTheAverages(train_keras.test_dataset(dataset, config(1)), statistics_batches, bn_batches=1)
    kept = []
    with pytest.raises(RuntimeError, match="the averaged model's evaluation failed"):
        model.fit(train_keras.train_dataset(dataset, config(1), 0), epochs=1, steps_per_epoch=2, shuffle=False,
                  callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: kept.extend(
                      v.numpy() for v in train_keras.moving_statistics(model))), callback], verbose=0)
    (first, second), (live, averaged) = steps, evaluations
    average = [(a + b) / 2 for a, b in zip(first, second)]
    assert differ(average, second)
    assert_weights_equal(live, second)
    assert_weights_close(averaged, average)  # it failed with the averages in
    assert_weights_equal(trainable_weights(model), second)  # and the trained weights are back
    assert_weights_equal([v.numpy() for v in train_keras.moving_statistics(model)], kept)  # the statistics too


@pytest.mark.parametrize("device, name", [(None, None), ("cpu", "/device:CPU:0"), ("CPU:0", "/device:CPU:0")])
def test_devices_name_resolve_devices(device, name):
    assert train_keras.resolve_device(device) == name


@pytest.mark.parametrize("device", ["tpu", "", "cpu:", "cpu:x", "cpu0", "cpu:-1", "cuda:0:1", 0])
def test_other_devices_are_refused_saying_what_is_allowed(device):
    with pytest.raises(ValueError, match=r"device must be None, 'cpu', 'gpu' or 'cuda', optionally followed by ':N'"):
        train_keras.resolve_device(device)


def test_a_device_tensorflow_lacks_is_refused():
    with pytest.raises(ValueError, match="TensorFlow has no /device:CPU:7; its CPU devices are /device:CPU:0"):
        train_keras.resolve_device("cpu:7")


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="for a machine without a GPU")
def test_a_gpu_is_refused_where_there_is_none():
    with pytest.raises(ValueError, match="TensorFlow has no /device:GPU:0; its GPU devices are none"):
        train_keras.resolve_device("cuda")


def test_fit_refuses_a_device_before_it_does_anything(tmp_path):
    def saved(history):
        raise AssertionError("nothing was to be saved")

    with pytest.raises(ValueError, match="device must be"):
        train_keras.fit(config(1), None, tmp_path / "checkpoint.keras", saved, device="tpu")
    assert list(tmp_path.iterdir()) == []


PLACEMENT = textwrap.dedent("""
    import json
    import sys
    from pathlib import Path

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np

    from xception_common import train_keras
    from xception_common.data import Dataset
    from xception_common.runs import PREDICTIONS, TrainConfig, load_predictions

    images = np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(8) % 3
    dataset = Dataset("tiny", "generated", ("a", "b", "c"), images, labels, images, labels, flip=True)
    trained = []
    fit = keras.Model.fit

    def keep(model, *args, **kwargs):
        trained.append(model)
        return fit(model, *args, **kwargs)

    keras.Model.fit = keep
    checkpoint = Path(sys.argv[1])
    placed = []
    for epochs, device in [(1, "cpu:1"), (2, None)]:  # built on CPU:1, then resumed where TensorFlow puts it
        config = TrainConfig("keras", "tiny", epochs, image_size=71, batch_size=8)
        train_keras.fit(config, dataset, checkpoint, lambda history: None, progress=False, device=device)
        model = trained[-1]
        variables = model.variables + model.optimizer.variables + model.metrics_variables
        placed.append(sorted({variable.value.device for variable in variables}))
    print(json.dumps(placed))
""")


def test_fit_builds_and_trains_the_model_on_the_device_asked_for(tmp_path):
    # Two logical CPUs: the second stands for a device TensorFlow would not
    # choose by itself (it places its work on the first).
    done = subprocess.run([sys.executable, "-c", PLACEMENT, str(tmp_path / "checkpoint.keras")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    on_second, by_default = json.loads(done.stdout.strip().splitlines()[-1])
    assert on_second and all(device.endswith("/device:CPU:1") for device in on_second)
    assert by_default and all(device.endswith("/device:CPU:0") for device in by_default)


def test_each_evaluated_model_has_batchnorm_statistics_of_its_own(monkeypatch):
    """At each evaluation the first BN's moving mean is the mean of its input,
    the first convolution's output, over the statistics batches, computed with
    the weights being evaluated: the trained ones, then the averaged ones."""
    dataset, run = tiny_dataset(), config(1, bn_batches=2)
    # The first two batches of epoch 0's plan: 16 images in batches of 8, padded by 1 (8×8 images), seed 0.
    plan = epoch_plan(16, 8, crop_padding(8), True, 0, 0)
    batches = [x for x, _ in train_keras.training_batches(dataset.x_train, dataset.y_train, [plan],
                                                          crop_padding(8), 71)]
    records = []
    on_test_begin = keras.callbacks.CallbackList.on_test_begin

    def evaluating(self, logs=None):
        on_test_begin(self, logs)
        conv = keras.Model(self.model.input, self.model.get_layer("block1_conv1").output)
        means = [np.asarray(conv(x)).mean(axis=(0, 1, 2)) for x in batches]
        records.append((self.model.get_layer("block1_conv1_bn").moving_mean.numpy(), np.mean(means, axis=0)))

    monkeypatch.setattr(keras.callbacks.CallbackList, "on_test_begin", evaluating)
    train_keras.fit(run, dataset, None, lambda history: None, progress=False)
    (live_statistics, live_mean), (averaged_statistics, averaged_mean) = records
    np.testing.assert_allclose(live_statistics, live_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(averaged_statistics, averaged_mean, rtol=1e-4, atol=1e-6)
    assert np.abs(live_mean - averaged_mean).max() > 1e-3  # two sets of weights, two sets of statistics


def test_the_final_predictions_are_those_of_the_trained_and_of_the_averaged_weights(tmp_path):
    """Keras' fit ends by writing the Polyak averages into the model; the live
    predictions saved after it are still the trained weights', as the
    checkpoint holds them."""
    dataset, checkpoint, options = tiny_dataset(), tmp_path / "checkpoint.keras", config(1, bn_batches=2)
    history = train_keras.fit(options, dataset, checkpoint, lambda history: None, progress=False)
    saved = load_predictions(checkpoint.with_name(PREDICTIONS))
    again = train_keras.predictions(keras.saving.load_model(checkpoint), dataset, options, epoch=0)
    for name in ("live", "live_flipped", "averaged", "averaged_flipped"):
        np.testing.assert_allclose(saved[name], again[name], atol=1e-6)
    assert np.abs(saved["live"] - saved["averaged"]).max() > 1e-4  # two models, told apart
    # And they are the models the epoch's evaluation (Keras' evaluate, another path) scored.
    for name, key in (("live", "val_accuracy"), ("averaged", "val_accuracy_ema")):
        assert np.mean(saved[name].argmax(1) == dataset.y_test) == pytest.approx(history[-1][key], abs=1e-6)
