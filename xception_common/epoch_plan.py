"""The order and augmentation of every training epoch, drawn once in NumPy.

Both frameworks read the same plan: which images go into each batch, where
each one is cropped after padding, and whether it is flipped. So the Keras and
the PyTorch model see the same data stream, and a resumed run sees exactly the
epochs an uninterrupted run would have seen (the plan depends only on the seed
and the epoch). Each framework then applies the plan with its own ops, PyTorch
on the device that trains, Keras in a prefetching ``tf.data`` pipeline that
runs beside the training steps:

    uint8 image → zero-pad, random crop, flip → resize to image_size → [-1, 1]

The scaling is Keras' Xception preprocessing (``x / 127.5 - 1``).
"""

from dataclasses import dataclass, fields

import numpy as np

from . import data, distributed


@dataclass(frozen=True)
class EpochPlan:
    order: np.ndarray  # (steps, batch) image indices
    rows: np.ndarray  # (steps, batch) top of the crop in the padded image
    cols: np.ndarray  # (steps, batch) left of the crop
    flips: np.ndarray  # (steps, batch) bool

    @property
    def steps(self) -> int:
        return len(self.order)

    def map(self, function) -> "EpochPlan":
        """The plan with ``function`` applied to each of its arrays."""
        return EpochPlan(*(function(getattr(self, field.name)) for field in fields(self)))

    def share(self, replica: int, replicas: int) -> "EpochPlan":
        """The part of every batch that replica ``replica`` of ``replicas``
        trains on (``distributed.share``)."""
        return self.map(lambda array: distributed.share(array, replica, replicas))


def crop_padding(native_size: int) -> int:
    """Pixels of zero padding before the random crop: 4 for CIFAR's 32×32,
    1 for the 8×8 digits."""
    return max(1, native_size // 8)


def padding_of(dataset, image_size: int) -> int:
    """The crop padding of a data set's training images: at their own size
    when they are held in memory, at ``image_size`` when streamed
    (``data.ImageFiles``: resized as they are read)."""
    return crop_padding(image_size if isinstance(dataset, data.ImageFiles) else dataset.x_train.shape[1])


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Full batches only: the last partial batch of an epoch is dropped."""
    return num_images // batch_size


def epoch_plan(num_images: int, batch_size: int, padding: int, flip: bool, seed: int, epoch: int) -> EpochPlan:
    steps = steps_per_epoch(num_images, batch_size)
    if steps == 0:
        raise ValueError(
            f"batch size {batch_size} is larger than the {num_images} training images; "
            f"use a batch size of at most {num_images}"
        )
    rng = np.random.default_rng([seed, epoch])
    shape = (steps, batch_size)
    order = rng.permutation(num_images)[: steps * batch_size].reshape(shape)
    rows = rng.integers(0, 2 * padding + 1, size=shape)
    cols = rng.integers(0, 2 * padding + 1, size=shape)
    flips = rng.random(shape) < 0.5 if flip else np.zeros(shape, dtype=bool)
    return EpochPlan(order, rows, cols, flips)


def plan_of(dataset, config, epoch: int) -> EpochPlan:
    """The plan of epoch ``epoch`` of a run of ``config`` (a ``runs.TrainConfig``:
    its batch, image size and seed) on ``dataset``'s training images."""
    return epoch_plan(len(dataset.y_train), config.batch_size, padding_of(dataset, config.image_size), dataset.flip,
                      config.seed, epoch)
