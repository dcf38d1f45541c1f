"""The epoch plan both frameworks read: which images make each batch, where
each is cropped after padding, whether it is flipped, and each replica's share."""

import re

import numpy as np
import pytest
from conftest import tiny_dataset

from xception_common import data
from xception_common.epoch_plan import EpochPlan, crop_padding, epoch_plan, padding_of, steps_per_epoch

FIELDS = ("order", "rows", "cols", "flips")


def test_an_epoch_is_the_full_batches_and_leaves_the_rest_out():
    # 10 images in batches of 3: three full batches hold 9, the tenth waits for another epoch.
    assert steps_per_epoch(10, 3) == 3
    plan = epoch_plan(10, 3, padding=1, flip=True, seed=0, epoch=0)
    assert plan.steps == 3
    for name in FIELDS:
        assert getattr(plan, name).shape == (3, 3)
    assert len(set(range(10)) - set(plan.order.ravel().tolist())) == 1
    # A batch of the whole set is one step; one image more than the set is none.
    assert steps_per_epoch(10, 10) == 1 and epoch_plan(10, 10, 1, False, 0, 0).steps == 1
    assert steps_per_epoch(10, 11) == 0


def test_no_image_comes_twice_in_an_epoch_and_every_index_is_an_image():
    for seed, epoch in ((0, 0), (1, 5), (7, 2)):
        order = epoch_plan(50, 8, padding=2, flip=True, seed=seed, epoch=epoch).order.ravel()
        assert len(order) == 48  # 6 full batches of 8
        assert len(set(order.tolist())) == len(order)
        assert order.min() >= 0 and order.max() < 50
        assert np.issubdtype(order.dtype, np.integer)


@pytest.mark.parametrize("padding", [1, 4])
def test_crop_offsets_lie_in_the_padded_image_and_reach_both_edges(padding):
    # A crop of the image's own size in an image padded by p on each side starts at 0 … 2p:
    # 0 is the top (left) edge of the padding, 2p the bottom (right), p the original image.
    plan = epoch_plan(400, 20, padding, flip=True, seed=0, epoch=0)
    for offsets in (plan.rows, plan.cols):
        assert offsets.min() >= 0 and offsets.max() <= 2 * padding
        # 400 draws of 2p + 1 values: missing a given one has a chance of at most (8/9)^400, about 3e-21.
        assert set(offsets.ravel().tolist()) == set(range(2 * padding + 1))


def test_flips_are_off_without_flip_and_a_mix_with_it():
    assert not epoch_plan(100, 10, 4, flip=False, seed=0, epoch=0).flips.any()
    flips = epoch_plan(100, 10, 4, flip=True, seed=0, epoch=0).flips
    assert flips.dtype == bool
    # A fair coin over 100 images: between 20 and 80 heads but for a chance of about 1e-9.
    assert 20 <= flips.sum() <= 80


def test_the_plan_depends_only_on_seed_and_epoch():
    def plan(seed, epoch):
        return epoch_plan(60, 6, padding=4, flip=True, seed=seed, epoch=epoch)

    first, again = plan(3, 2), plan(3, 2)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    # 60! orders: two independent draws agree by chance with a probability of 1/60!.
    assert not np.array_equal(plan(3, 3).order, first.order)  # the next epoch
    assert not np.array_equal(plan(4, 2).order, first.order)  # another seed
    assert not np.array_equal(plan(2, 3).order, first.order)  # seed and epoch swapped


def test_a_batch_larger_than_the_set_names_both_numbers():
    with pytest.raises(ValueError) as error:
        epoch_plan(5, 8, padding=1, flip=False, seed=0, epoch=0)
    message = str(error.value)
    assert re.search(r"\b8\b", message) and re.search(r"\b5\b", message), message


def test_crop_padding_is_an_eighth_of_the_side_and_at_least_a_pixel():
    # CIFAR's convention: 32×32 images padded by 4 pixels, then cropped back to 32×32.
    assert crop_padding(32) == 4
    assert crop_padding(8) == 1  # the 8×8 digits, in the same proportion
    assert crop_padding(4) == 1  # with no padding, a crop of the image's own size could not move


def test_padding_of_follows_the_size_the_images_are_cropped_at():
    # In memory, images are cropped at their own size (32 px here), whatever the model's input size.
    assert padding_of(tiny_dataset(size=32), image_size=299) == crop_padding(32) == 4
    # Streamed files are resized to the image size as they are read, so are cropped at 64 px.
    files = data.ImageFiles("files", "folder", ("a",), ("train/a/x.png",), np.zeros(1, np.int64), (), np.zeros(0))
    assert padding_of(files, image_size=64) == crop_padding(64)
    assert crop_padding(64) == 2 * crop_padding(32)  # the CIFAR proportion, twice the side


@pytest.mark.parametrize("replicas", [1, 2, 3, 6])
def test_replicas_share_each_batch_in_contiguous_equal_parts(replicas):
    plan = epoch_plan(30, 6, padding=4, flip=True, seed=1, epoch=0)
    shares = [plan.share(replica, replicas) for replica in range(replicas)]
    for part in shares:
        assert isinstance(part, EpochPlan) and part.steps == plan.steps
        for name in FIELDS:
            assert getattr(part, name).shape == (plan.steps, 6 // replicas)
    # Laid side by side in replica order, the shares are each whole batch, every image
    # with its own crop and flip: no image is dropped, repeated, or given another's augmentation.
    for name in FIELDS:
        whole = np.concatenate([getattr(part, name) for part in shares], axis=1)
        np.testing.assert_array_equal(whole, getattr(plan, name))


def test_a_batch_that_does_not_split_evenly_over_the_replicas_is_refused():
    plan = epoch_plan(30, 6, padding=4, flip=True, seed=1, epoch=0)
    with pytest.raises(ValueError, match="batch size 6 does not split evenly over 4 replicas; use a multiple of 4"):
        plan.share(0, 4)


def test_the_second_of_two_replicas_takes_the_second_half_of_each_batch():
    order = np.array([[2, 0], [1, 3]])
    plan = EpochPlan(order, np.zeros((2, 2), int), np.ones((2, 2), int), np.zeros((2, 2), bool))
    assert plan.steps == 2
    np.testing.assert_array_equal(plan.share(1, 2).order, [[0], [3]])  # the second of two halves of each batch
