"""Training the Keras Xception with the paper's recipe, or the CIFAR one.

Keras' own pieces do the work: ``SGD(use_ema=True)`` keeps the Polyak
average, ``ExponentialDecay(staircase=True)`` the schedule, kernel
regularizers the weight decay, ``model.save`` the model with its optimizer,
and ``fit`` shows its progress bar; on several replicas, a
``tf.distribute.MirroredStrategy`` splits each batch over them and averages
their gradients (``distributed``). A ``tf.data`` pipeline applies the shared
epoch plan (``epoch_plan``) on the fly, to images in memory or to files it
decodes as it goes. The checkpoint is the ``.keras`` file with the run's
history added to it as one more member, ``history.json``.
"""

import contextlib
import functools
import json
import os
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from . import data, recipe  # noqa: E402
from .epoch_plan import padding_of, plan_of, steps_per_epoch  # noqa: E402
from .keras_xception import build_xception  # noqa: E402
from .runs import (  # noqa: E402
    KERAS_HISTORY_MEMBER,
    PREDICTIONS,
    RECORD_KEYS,
    atomic_write,
    keras_checkpoint_history,
    write_predictions,
)
from .seeding import seed_all  # noqa: E402


def learning_rate_schedule(steps: int, training_recipe: recipe.Recipe = recipe.PAPER, epochs: int = 1,
                           batch_size: int = 1) -> keras.optimizers.schedules.LearningRateSchedule:
    """The recipe's rate by optimizer step, ``steps`` per epoch. The paper's:
    × 0.94 every 2 epochs (``epochs`` and ``batch_size`` do not matter); the
    CIFAR recipe's: a linear warm-up, then a cosine to zero at the last step
    of ``epochs``."""
    peak = training_recipe.peak(batch_size)
    if training_recipe.schedule == "staircase":
        return keras.optimizers.schedules.ExponentialDecay(
            peak,
            decay_steps=training_recipe.epochs_per_decay * steps,
            decay_rate=training_recipe.learning_rate_decay,
            staircase=True,
        )
    warmup = training_recipe.warmup_epochs * steps
    return keras.optimizers.schedules.CosineDecay(
        recipe.WARMUP_START * peak if warmup else peak,
        decay_steps=training_recipe.decay_steps(steps, epochs),
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(steps: int, ema_decay: float = recipe.EMA_DECAY, loss_scaling: bool = False,
                   training_recipe: recipe.Recipe = recipe.PAPER, epochs: int = 1,
                   batch_size: int = 1) -> keras.optimizers.Optimizer:
    """SGD with momentum and Polyak averaging; for float16, wrapped in a
    ``LossScaleOptimizer`` here rather than by ``compile``, so that the
    wrapper is saved with the model and a resumed run gets it back."""
    sgd = keras.optimizers.SGD(
        learning_rate=learning_rate_schedule(steps, training_recipe, epochs, batch_size),
        momentum=training_recipe.momentum,
        nesterov=training_recipe.nesterov,
        use_ema=True,
        ema_momentum=ema_decay,
    )
    return keras.optimizers.LossScaleOptimizer(sgd) if loss_scaling else sgd


def to_model_input(images, image_size: int):
    """uint8 NHWC → float in [-1, 1] at ``image_size`` (bilinear)."""
    x = tf.cast(images, tf.float32)
    if images.shape[1] != image_size or images.shape[2] != image_size:
        x = tf.image.resize(x, (image_size, image_size), method="bilinear")
    return x / 127.5 - 1.0


def augment(images, rows, cols, flips, padding: int):
    """Zero-pad a uint8 NHWC batch, crop each image at its own offset, and
    mirror the flagged ones."""
    height, width = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    y = rows[:, None] + tf.range(height, dtype=rows.dtype)
    x = cols[:, None] + tf.range(width, dtype=cols.dtype)
    cropped = tf.gather(tf.gather(padded, y, axis=1, batch_dims=1), x, axis=2, batch_dims=1)
    return tf.where(flips[:, None, None, None], tf.reverse(cropped, axis=[2]), cropped)


class ImageFileBatches:
    """A split's image files, read by index inside a ``tf.data`` pipeline:
    each batch's files decoded and resized to ``size`` as ``data.load`` does
    (PIL, in ``tf.numpy_function``), several batches at once on tf.data's
    threads, so memory holds only the batches in flight."""

    def __init__(self, files: data.ImageFiles, split: str, size: int):
        self.reader = data.ImageReader(files.source)
        self.paths = files.train if split == "train" else files.test
        self.size = size

    def __call__(self, indices):
        """The uint8 NHWC images at ``indices`` (a tensor)."""
        images = tf.numpy_function(self.read, [indices], tf.uint8, stateful=False)
        images.set_shape([None, self.size, self.size, 3])
        return images

    def read(self, indices: np.ndarray) -> np.ndarray:
        return np.stack([self.reader.read(self.paths[index], self.size) for index in indices])


def split_images(dataset, split: str, image_size: int):
    """What a split's batches are gathered from, and its labels: for a
    ``data.Dataset``, its uint8 images in memory; for ``data.ImageFiles``,
    an ``ImageFileBatches`` that reads them as they are needed."""
    if isinstance(dataset, data.ImageFiles):
        return ImageFileBatches(dataset, split, image_size), (dataset.y_train if split == "train" else dataset.y_test)
    return (dataset.x_train, dataset.y_train) if split == "train" else (dataset.x_test, dataset.y_test)


def gather_from(images):
    """A function from a vector of indices to those uint8 NHWC images."""
    if callable(images):  # an ImageFileBatches
        return images
    images = tf.constant(images)
    return lambda indices: tf.gather(images, indices)


def training_batches(images, labels, plans, padding: int, image_size: int) -> tf.data.Dataset:
    """The batches of ``plans`` (epoch plans, one after another) over uint8
    NHWC ``images`` (an array, or an ``ImageFileBatches``): augmented, resized
    to ``image_size`` and scaled, with their labels, several made at once in
    the order of the plans. The trainer and the benchmark both read their
    batches from here."""
    columns = [np.concatenate([getattr(p, name) for p in plans]) for name in ("order", "rows", "cols", "flips")]
    gather, labels = gather_from(images), tf.constant(labels)

    def batch(order, rows, cols, flips):
        crops = augment(gather(order), rows, cols, flips, padding)
        return to_model_input(crops, image_size), tf.gather(labels, order)

    return (tf.data.Dataset.from_tensor_slices(tuple(columns))
            .map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


def train_dataset(dataset, config, first_epoch: int) -> tf.data.Dataset:
    """Every remaining epoch's batches, in the order the plan gives them."""
    padding = padding_of(dataset, config.image_size)
    plans = [plan_of(dataset, config, epoch) for epoch in range(first_epoch, config.epochs)]
    return training_batches(*split_images(dataset, "train", config.image_size), plans, padding, config.image_size)


def test_dataset(dataset, config) -> tf.data.Dataset:
    """The test split in order, in batches of ``batch_size`` (the last one
    shorter), resized and scaled, with its labels."""
    images, labels = split_images(dataset, "test", config.image_size)
    gather, labels = gather_from(images), tf.constant(labels)
    return (
        tf.data.Dataset.range(len(dataset.y_test))
        .batch(config.batch_size)
        .map(lambda indices: (to_model_input(gather(indices), config.image_size), tf.gather(labels, indices)),
             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def add_weight_decay(model: keras.Model, weight_decay: float) -> None:
    """Put an L2 penalty of ``weight_decay / 2`` on every kernel, so that its
    gradient is ``weight_decay · w``, as with PyTorch's SGD ``weight_decay``.

    Set on the layers too, so that a saved model keeps it."""
    for layer in model.layers:
        for kernel, attribute in REGULARIZED_KERNELS.items():
            if hasattr(layer, kernel):
                penalty = keras.regularizers.L2(weight_decay / 2)
                setattr(layer, attribute, penalty)
                getattr(layer, kernel).regularizer = penalty


REGULARIZED_KERNELS = {
    "kernel": "kernel_regularizer",
    "depthwise_kernel": "depthwise_regularizer",
    "pointwise_kernel": "pointwise_regularizer",
}


def build_model(dataset, config, steps: int, gpu: bool) -> keras.Model:
    """The model, compiled; a mixed precision policy holds only while its
    layers are made (they keep it)."""
    seed_all(config.seed, ["keras"])
    precision = config.compute_dtype(gpu_capability() if gpu else None)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32" if precision == "float32" else f"mixed_{precision}")
    try:
        model = build_xception(
            len(dataset.class_names),
            (config.image_size, config.image_size, 3),
            dropout=recipe.DROPOUT,
            classifier_activation=None,
            **config.model_options(),
        )
    finally:
        keras.mixed_precision.set_global_policy(previous)
    if config.sync_batch_norm:  # statistics over the whole batch, from every replica (saved with the model)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
    chosen = config.training_recipe()
    add_weight_decay(model, chosen.weight_decay)
    model.compile(
        optimizer=make_optimizer(steps, config.ema_decay, precision == "float16", chosen, config.epochs,
                                 config.batch_size),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=gpu,
    )
    return model


def gpu_capability() -> tuple[int, int]:
    """The CUDA compute capability of TensorFlow's first GPU."""
    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    return tuple(details.get("compute_capability", (0, 0)))


class SeedDropout(keras.callbacks.Callback):
    """At each epoch's start, seeds every dropout layer's generator from
    (seed, epoch), so that a resumed run draws the masks an uninterrupted one
    would."""

    def __init__(self, seed: int, steps: int):
        super().__init__()
        self.seed, self.steps = seed, steps

    def on_epoch_begin(self, epoch, logs=None):
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.Dropout):
                layer.seed_generator.state.assign(np.array([self.seed, epoch * self.steps]))


class CountWholeEpochs(keras.callbacks.Callback):
    """At each epoch's end, sets the optimizer's step count to the epochs done
    times ``steps``. A LossScaleOptimizer skips the steps whose float16
    gradients overflow and does not count them; counting whole epochs keeps the
    learning rate schedule, and a run resumed from the count, on the epoch they
    are in."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def on_epoch_end(self, epoch, logs=None):
        self.model.optimizer.iterations.assign((epoch + 1) * self.steps)


class EvaluateWithOwnStatistics(keras.callbacks.Callback):
    """At each epoch's end, logs the test loss and accuracy of the trained
    weights (``val_loss``, ``val_accuracy``) and the accuracy of the
    optimizer's Polyak averages (``val_accuracy_ema``), each evaluated with
    BatchNorm statistics of its own: averaged over ``statistics_batches(epoch)``
    in training mode (``recompute_statistics``). The trained weights and
    moving statistics are put back after (``trained_state_put_back``), so
    training and its checkpoint are as without the evaluation. With
    ``bn_batches`` 0, both use the trained model's moving statistics."""

    def __init__(self, test_data, statistics_batches, bn_batches: int):
        super().__init__()
        self.test_data, self.statistics_batches, self.bn_batches = test_data, statistics_batches, bn_batches

    def on_epoch_end(self, epoch, logs=None):
        with trained_state_put_back(self.model) as use_averages:
            logs["val_loss"], logs["val_accuracy"] = self.evaluate(epoch)
            use_averages()
            logs["val_accuracy_ema"] = self.evaluate(epoch)[1]

    def evaluate(self, epoch) -> tuple[float, float]:
        if self.bn_batches:
            recompute_statistics(self.model, self.statistics_batches(epoch))
        result = self.model.evaluate(self.test_data, verbose=0, return_dict=True)
        return result["loss"], result["accuracy"]


@contextlib.contextmanager
def trained_state_put_back(model):
    """Within the block, ``model`` may have its averaged weights put in (call
    the function it yields) and its moving statistics recomputed; after it,
    also when it fails, the trained weights and moving statistics are back,
    bit for bit, so that training goes on as without the block.

    The averages come in through the optimizer's ``finalize_variable_values``
    (a LossScaleOptimizer passes it to its inner optimizer), and the trained
    values go back from copies. Keras' ``SwapEMAWeights`` would swap the two
    by addition and subtraction in TensorFlow, which rounds: the weights it
    swaps back differ in their last bits, and training drifts from there."""
    kept = [variable.numpy() for variable in (*model.trainable_variables, *moving_statistics(model))]
    try:
        yield lambda: model.optimizer.finalize_variable_values(model.trainable_variables)
    finally:
        for variable, value in zip((*model.trainable_variables, *moving_statistics(model)), kept):
            variable.assign(value)


def statistics_batches(dataset, config, epoch: int):
    """The model inputs of the first ``bn_batches`` training batches of ``epoch``."""
    padding = padding_of(dataset, config.image_size)
    batches = training_batches(*split_images(dataset, "train", config.image_size), [plan_of(dataset, config, epoch)],
                               padding, config.image_size)
    return (x for x, _ in batches.take(config.bn_batches))


def moving_statistics(model) -> list:
    """The moving mean and variance of every BatchNormalization layer."""
    return [variable for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
            for variable in (layer.moving_mean, layer.moving_variance)]


def recompute_statistics(model, batches) -> None:
    """Set every BatchNormalization layer's moving mean and variance to their
    average over ``batches`` (model inputs), run in training mode: the k-th
    batch (from 0) gets momentum k / (k + 1), which makes the moving value a
    cumulative average. The weights do not change."""
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    try:
        for k, x in enumerate(batches):
            for layer in layers:
                layer.momentum = k / (k + 1)
            model(x, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def images_only(images, labels):
    return images


def mirrored_images(images, labels):
    """The images mirrored left to right (NHWC)."""
    return tf.reverse(images, axis=[2])


def predictions(model, dataset, config, epoch: int) -> dict[str, np.ndarray]:
    """Class probabilities on the test split of the trained and the averaged
    weights, each with BatchNorm statistics of its own (from the batches of
    ``epoch``, the last one trained), for the images as they are and mirrored
    (``runs.PREDICTED`` names them). The weights and moving statistics are
    put back after."""
    test = test_dataset(dataset, config)
    views = {"": test.map(images_only), "_flipped": test.map(mirrored_images)}
    probabilities = {}
    with trained_state_put_back(model) as use_averages:
        for name in ("live", "averaged"):
            if name == "averaged":
                use_averages()
            if config.bn_batches:
                recompute_statistics(model, statistics_batches(dataset, config, epoch))
            for suffix, images in views.items():
                logits = keras.ops.cast(model.predict(images, verbose=0), "float32")
                probabilities[name + suffix] = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    return probabilities


class LogRateAndTime(keras.callbacks.Callback):
    """Logs ``lr``, the learning rate of the epoch (read at its start: the step
    count moves on during it), and ``seconds``, the time from the epoch's start
    to this callback's turn at its end."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        self.learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        logs["lr"] = self.learning_rate
        logs["seconds"] = time.perf_counter() - self.started


class KeepTrainedWeights(keras.callbacks.Callback):
    """Puts the trained weights back at the end of training: Keras' fit ends
    by writing the optimizer's Polyak averages into the model
    (``finalize_variable_values``, with ``use_ema``), so that without this
    the final predictions' live model would be the averaged one."""

    def __init__(self):
        super().__init__()
        self.kept = []

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.params["epochs"] - 1:
            self.kept = [variable.numpy() for variable in self.model.trainable_variables]

    def on_train_end(self, logs=None):
        for variable, value in zip(self.model.trainable_variables, self.kept):
            variable.assign(value)


class RunCheckpoint(keras.callbacks.Callback):
    """After each epoch: its record joins the history; the model (with its
    optimizer) and the history are saved as one file, replaced whole, when
    there is a ``path``; then ``saved(history)``."""

    def __init__(self, path: Path | None, history: list[dict], saved):
        super().__init__()
        self.path, self.history, self.saved = path, history, saved

    def on_epoch_end(self, epoch, logs=None):
        self.history.append({"epoch": epoch, **{key: float(logs[key]) for key in RECORD_KEYS if key != "epoch"}})
        if self.path is not None:
            atomic_write(self.path, self.save)
        self.saved(self.history)

    def save(self, path: Path) -> None:
        self.model.save(path)
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(KERAS_HISTORY_MEMBER, json.dumps(self.history))


def resolve_device(device: str | None) -> str | None:
    """The TensorFlow device that ``device`` names, as ``/device:CPU:0``.

    ``device`` is None, which leaves the placement to TensorFlow (its first GPU
    when it has one, else the CPU), or ``"cpu"``, ``"gpu"`` or ``"cuda"``
    (PyTorch's name for a GPU, so that one string serves both frameworks), each
    optionally followed by ``":N"``, the N-th such device (default 0), in any
    case. Raises ValueError, saying what is allowed, for anything else or for a
    device TensorFlow does not have."""
    if device is None:
        return None
    kind, colon, index = device.lower().partition(":") if isinstance(device, str) else ("", "", "")
    if kind not in DEVICE_TYPES or colon and not index.isdigit():
        raise ValueError(f"device must be None, 'cpu', 'gpu' or 'cuda', optionally followed by ':N' "
                         f"(the N-th such device), got {device!r}")
    name = f"/device:{DEVICE_TYPES[kind]}:{int(index or 0)}"
    present = [logical.name for logical in tf.config.list_logical_devices(DEVICE_TYPES[kind])]
    if name not in present:
        raise ValueError(f"device {device!r}: TensorFlow has no {name}; its {DEVICE_TYPES[kind]} devices are "
                         f"{', '.join(present) or 'none'}")
    return name


DEVICE_TYPES = {"cpu": "CPU", "gpu": "GPU", "cuda": "GPU"}


def replica_devices(replicas: int) -> list[str]:
    """The devices a run on ``replicas`` mirrors its model over: TensorFlow's
    first ``replicas`` GPUs, or where it has none, its first CPU devices (one
    per machine, unless split with ``tf.config.set_logical_device_configuration``).
    ValueError when it has fewer."""
    kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    devices = [logical.name for logical in tf.config.list_logical_devices(kind)]
    if len(devices) < replicas:
        raise ValueError(f"{replicas} replicas need {replicas} {kind} devices; TensorFlow has {len(devices)} "
                         f"({', '.join(devices)})")
    return devices[:replicas]


@functools.cache
def mirrored_strategy(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    """One strategy per set of devices for the whole process: two that mirror
    over the same devices mix up their collective operations."""
    return tf.distribute.MirroredStrategy(list(devices))


def check_device(config, device: str | None) -> str | None:
    """The device ``fit`` trains ``config`` on (``resolve_device``), checked
    before a run's folder is written; None for a run on several replicas,
    which take ``replica_devices``."""
    if config.replicas == 1:
        return resolve_device(device)
    if device is not None:
        raise ValueError(f"a run on {config.replicas} replicas takes TensorFlow's first {config.replicas} GPUs "
                         f"(or CPUs where it has none); pass no device, not {device!r}")
    replica_devices(config.replicas)
    return None


def fit(config, dataset, checkpoint: Path | None, saved, earlier=(), progress=True, device=None) -> list[dict]:
    """Train to ``config.epochs``, resuming from ``checkpoint`` when it exists;
    after every epoch, save the checkpoint (with the history), then call
    ``saved(history)``. Returns the history. ``earlier`` is the history of a
    checkpoint from before checkpoints kept theirs.

    The model is built or loaded, trained and evaluated on ``device``
    (``resolve_device`` says what it takes; None: TensorFlow's choice), or
    with ``config.replicas`` above 1 in the scope of a ``MirroredStrategy``
    over ``replica_devices``; the input pipeline runs on the CPU. Mixed
    precision and XLA are for a GPU."""
    placement = check_device(config, device)
    if config.replicas > 1:
        devices = replica_devices(config.replicas)
        on_device = mirrored_strategy(tuple(devices)).scope
        gpu = tf.DeviceSpec.from_string(devices[0]).device_type == "GPU"
    elif placement is None:
        on_device = contextlib.nullcontext
        gpu = bool(tf.config.list_physical_devices("GPU"))
    else:
        on_device = functools.partial(keras.device, placement)
        gpu = tf.DeviceSpec.from_string(placement).device_type == "GPU"
    steps = steps_per_epoch(len(dataset.y_train), config.batch_size)
    with on_device():
        if checkpoint and checkpoint.exists():
            model = keras.saving.load_model(checkpoint)
            first_epoch = int(model.optimizer.iterations.numpy()) // steps
            history = keras_checkpoint_history(checkpoint)
            history = list(earlier[:first_epoch]) if history is None else history
        else:
            model = build_model(dataset, config, steps, gpu)
            first_epoch, history = 0, []
    if first_epoch < config.epochs:
        test_data = test_dataset(dataset, config)
        # Each epoch's end runs them in this order: RunCheckpoint records the logs
        # the others add and saves the step count CountWholeEpochs has set.
        callbacks = [
            SeedDropout(config.seed, steps),
            CountWholeEpochs(steps),
            EvaluateWithOwnStatistics(test_data, functools.partial(statistics_batches, dataset, config),
                                      config.bn_batches),
            LogRateAndTime(),
            RunCheckpoint(checkpoint, history, saved),
            KeepTrainedWeights(),
        ]
        batches = train_dataset(dataset, config, first_epoch)
        with on_device():
            model.fit(
                batches,
                epochs=config.epochs,
                initial_epoch=first_epoch,
                steps_per_epoch=steps,
                callbacks=callbacks,
                shuffle=False,  # the epoch plan has shuffled already
                verbose=1 if progress else 0,
            )
    epochs_done = int(model.optimizer.iterations.numpy()) // steps
    if checkpoint and epochs_done:
        with on_device():
            probabilities = predictions(model, dataset, config, epochs_done - 1)
        write_predictions(checkpoint.with_name(PREDICTIONS), dataset.y_test, probabilities)
    return history
