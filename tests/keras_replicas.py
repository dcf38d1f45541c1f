"""Keras on two replicas over two logical CPU devices, measured against
data-parallel SGD computed by its definition on one device. TensorFlow
splits its CPU only before it starts, so test_distributed.py runs this in a
process of its own:

    python tests/keras_replicas.py OUT    # prints one line of JSON
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from conftest import tiny_dataset  # noqa: E402  (this script's folder, tests/, comes first on sys.path)

from xception_common import train_keras  # noqa: E402
from xception_common.epoch_plan import steps_per_epoch  # noqa: E402
from xception_common.runs import TrainConfig  # noqa: E402
from xception_common.training import train  # noqa: E402

REPLICAS = 2


def data_parallel_sgd(dataset, config) -> list[np.ndarray]:
    """The trainable weights after ``config.epochs`` of data-parallel SGD,
    computed by its definition on one device: replica r takes the r-th of N
    equal slices of each batch and normalises over its slice, every replica
    draws the same dropout masks (Keras' replicas share their generator's
    state: SeedDropout sets it at each epoch's start, and it advances by one
    a step), and each step follows the mean of their gradients."""
    steps = steps_per_epoch(len(dataset.y_train), config.batch_size)  # the schedule counts them
    model = train_keras.build_model(dataset, replace(config, replicas=1), steps, gpu=False)
    dropout = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    batches = iter(train_keras.train_dataset(dataset, replace(config, replicas=1), 0))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function  # as Keras' own training step: eager execution rounds differently
    def gradients(images, labels):
        with tf.GradientTape() as tape:
            value = (loss(labels, model(images, training=True)) + tf.add_n(model.losses)) / REPLICAS
        return tape.gradient(value, model.trainable_variables)

    share = config.batch_size // REPLICAS
    for step in range(config.epochs * steps):
        images, labels = next(batches)
        total = None
        for replica in range(REPLICAS):
            for layer in dropout:
                layer.seed_generator.state.assign(np.array([config.seed, step]))  # epoch × steps + step
            rows = slice(replica * share, (replica + 1) * share)
            part = gradients(images[rows], labels[rows])
            total = part if total is None else [a + b for a, b in zip(total, part)]
        model.optimizer.apply(total, model.trainable_variables)
    return [variable.numpy() for variable in model.trainable_variables]


def saved(run: Path) -> keras.Model:
    return keras.saving.load_model(run / "checkpoint.keras")


def trainable(model) -> list[np.ndarray]:
    return [variable.numpy() for variable in model.trainable_variables]


def moving_variances(model) -> list[np.ndarray]:
    return [layer.moving_variance.numpy() for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def largest_difference(first, second, relative=False) -> float:
    return max(float(np.abs(a - b).max() / (np.abs(b).max() if relative else 1)) for a, b in zip(first, second))


def main(out: Path) -> dict:
    one_step = tiny_dataset(n=8)  # an epoch of one step: the replicas against one device
    dataset = tiny_dataset(n=16)  # epochs of two steps: against data-parallel SGD, and resumed
    config = TrainConfig("keras", "tiny", 1, image_size=71, batch_size=8, bn_batches=2, replicas=REPLICAS)

    def run(name, data, **changes):
        return train(replace(config, **changes), out / name, resume=(out / name).exists(), dataset=data,
                     progress=False)

    run("one-device", one_step, replicas=1)
    run("sync", one_step, sync_batch_norm=True)
    run("one-step", one_step)
    run("split", dataset)
    resumed = run("split", dataset, epochs=2)
    whole = run("whole", dataset, epochs=2)
    first, one_device, sync = saved(out / "one-step"), saved(out / "one-device"), saved(out / "sync")
    return {
        "config": json.loads((out / "whole" / "config.json").read_text()),
        "from_data_parallel_sgd": largest_difference(trainable(first), data_parallel_sgd(one_step, config)),
        "four_steps_from_data_parallel_sgd": largest_difference(trainable(saved(out / "whole")),
                                                                data_parallel_sgd(dataset, replace(config, epochs=2))),
        "from_one_device": largest_difference(trainable(first), trainable(one_device)),
        "sync_variance_from_one_device": largest_difference(moving_variances(sync), moving_variances(one_device),
                                                            relative=True),
        "variance_from_one_device": largest_difference(moving_variances(first), moving_variances(one_device),
                                                       relative=True),
        "synchronized": sorted({layer.synchronized for layer in sync.layers
                                if isinstance(layer, keras.layers.BatchNormalization)}),
        "whole": whole,
        "resumed": resumed,
        "resumed_from_whole": largest_difference(trainable(saved(out / "split")), trainable(saved(out / "whole"))),
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
