"""Image folders larger than memory: streamed through DataLoader workers
(PyTorch) or tf.data's threads (Keras), batch for batch as if loaded whole,
with memory that does not grow with them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from xception_common import data, train_torch
from xception_common.epoch_plan import crop_padding, epoch_plan, padding_of
from xception_common.runs import TrainConfig
from xception_common.train import main
from xception_common.training import load_data, streams, train


def write_jpegs(root, sizes, per_class, classes=("cat", "dog", "eel"), seed=0):
    """JPEG files in train/<class>/ and test/<class>/, each of one of
    ``sizes`` (width, height) in turn: smooth colour ramps with a little
    noise, so that each is different and compresses well."""
    rng = np.random.default_rng(seed)
    index = 0
    for split, count in (("train", per_class), ("test", max(1, per_class // 4))):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                width, height = sizes[index % len(sizes)]
                ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
                image = np.broadcast_to(ramp, (height, width, 3)).copy()
                image[..., label] = 255 - image[..., label]  # the class's cue
                image += rng.normal(0, 8, (1, 1, 3))
                Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"{i:04d}.jpg", quality=90)
                index += 1
    return root


def without_seconds(history):
    return [{key: value for key, value in record.items() if key != "seconds"} for record in history]


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory):
    """Images of three sizes: loading them whole resizes each to the image
    size, as streaming does, so the two must give the same batches."""
    return write_jpegs(tmp_path_factory.mktemp("mixed") / "data", [(96, 64), (80, 80), (60, 90)], per_class=8)


def test_streamed_batches_are_the_in_memory_batches_of_the_same_plan(mixed_sizes):
    config = TrainConfig("torch", str(mixed_sizes), 1, image_size=71, batch_size=6)
    whole, files = data.load(config.data, resize_mixed_to=71), data.list_images(config.data)
    assert whole.x_train.shape == (24, 71, 71, 3) and len(files.train) == 24
    np.testing.assert_array_equal(files.y_train, whole.y_train)
    device = torch.device("cpu")
    in_memory = train_torch.ImagesInMemory(whole.x_train, whole.y_train, device)
    streamed = train_torch.StreamedImages(files, "train", 71, device, workers=2)
    plan = epoch_plan(24, 6, crop_padding(71), True, seed=0, epoch=0)
    pairs = list(zip(in_memory.batches(plan.order), streamed.batches(plan.order), strict=True))
    assert len(pairs) == plan.steps == 4
    padding = crop_padding(71)
    for step, ((images, labels), (streamed_images, streamed_labels)) in enumerate(pairs):
        assert torch.equal(streamed_images, images) and torch.equal(streamed_labels, labels)
        assert torch.equal(labels, torch.from_numpy(whole.y_train[plan.order[step]]))
        # The model input, made in NumPy from the whole arrays: pad, crop at the plan's offsets, flip, scale.
        padded = np.pad(whole.x_train[plan.order[step]], ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        crops = np.stack([image[row:row + 71, col:col + 71] for image, row, col
                          in zip(padded, plan.rows[step], plan.cols[step], strict=True)])
        crops = np.where(plan.flips[step][:, None, None, None], crops[:, :, ::-1], crops)
        expected = torch.from_numpy(crops.transpose(0, 3, 1, 2) / 127.5 - 1).float()
        torch.testing.assert_close(train_torch.planned_batch(streamed_images, plan, step, padding, 71),
                                   expected, rtol=0, atol=1e-6)


def test_a_plan_placed_on_the_device_makes_the_batches_of_the_plan_in_host_memory(mixed_sizes):
    whole = data.load(str(mixed_sizes), resize_mixed_to=71)
    in_memory = train_torch.ImagesInMemory(whole.x_train, whole.y_train, torch.device("cpu"))
    plan = epoch_plan(24, 6, crop_padding(71), True, seed=0, epoch=0)
    placed = in_memory.placed(plan)
    for name in ("order", "rows", "cols", "flips"):
        array, tensor = getattr(plan, name), getattr(placed, name)
        assert isinstance(tensor, torch.Tensor) and tensor.device == in_memory.images.device
        np.testing.assert_array_equal(tensor.numpy(), array)
    pairs = zip(in_memory.batches(plan.order), in_memory.batches(placed.order), strict=True)
    for step, ((images, labels), (placed_images, placed_labels)) in enumerate(pairs):
        assert torch.equal(placed_images, images) and torch.equal(placed_labels, labels)
        assert torch.equal(train_torch.planned_batch(placed_images, placed, step, crop_padding(71), 71),
                           train_torch.planned_batch(images, plan, step, crop_padding(71), 71))
    # Streamed, the order stays in host memory for the DataLoader; crops and flips go to the device.
    files = data.list_images(str(mixed_sizes))
    streamed = train_torch.StreamedImages(files, "train", 71, torch.device("cpu"), workers=0).placed(plan)
    assert streamed.order is plan.order
    for name in ("rows", "cols", "flips"):
        assert isinstance(getattr(streamed, name), torch.Tensor)
        np.testing.assert_array_equal(getattr(streamed, name).numpy(), getattr(plan, name))


def test_a_plan_is_placed_on_the_images_device():
    # The meta device holds no data: a plan left in host memory, or placed on the CPU, would show.
    images, labels = np.zeros((8, 32, 32, 3), np.uint8), np.arange(8) % 2
    plan = epoch_plan(8, 4, crop_padding(32), True, seed=0, epoch=0).share(1, 2)
    placed = train_torch.ImagesInMemory(images, labels, torch.device("meta")).placed(plan)
    assert all(getattr(placed, name).device.type == "meta" for name in ("order", "rows", "cols", "flips"))


def test_streamed_images_are_padded_for_the_size_they_are_read_at(mixed_sizes):
    # In memory, images keep their own size until the crop: 96 px pads by 12.
    assert padding_of(data.load(str(mixed_sizes), resize_mixed_to=96), image_size=299) == 96 // 8
    # Streamed, they are resized to the image size as they are read.
    assert padding_of(data.list_images(str(mixed_sizes)), image_size=299) == 299 // 8
    assert padding_of(data.load("digits"), image_size=71) == 1  # 8 px: at least one pixel


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_streamed_run_trains_as_the_run_loaded_whole(framework, mixed_sizes, tmp_path):
    histories = {}
    for loading in ("memory", "stream"):
        config = TrainConfig(framework, str(mixed_sizes), 2, image_size=71, batch_size=6, bn_batches=2,
                             data_loading=loading)
        # Keras reads on tf.data's threads; loaded whole, nothing needs workers.
        workers = {"workers": 2} if framework == "torch" and loading == "stream" else {}
        histories[loading] = train(config, tmp_path / loading, progress=False, **workers)
    assert without_seconds(histories["stream"]) == without_seconds(histories["memory"])
    assert json.loads((tmp_path / "stream" / "config.json").read_text())["data_loading"] == "stream"
    predictions = [np.load(tmp_path / loading / "predictions.npz") for loading in ("memory", "stream")]
    for name in ("live", "averaged_flipped"):
        np.testing.assert_array_equal(predictions[1][name], predictions[0][name])


def test_auto_streams_what_would_take_over_a_quarter_of_the_memory(mixed_sizes):
    torch_auto, keras_auto = (TrainConfig(framework, "data", 1) for framework in ("torch", "keras"))
    # A quarter of 4000 bytes is 1000: exactly a quarter stays in memory, one byte more streams.
    for auto in (torch_auto, keras_auto):
        assert not streams(auto, decoded_bytes=1_000, memory_bytes=4_000)
        assert streams(auto, decoded_bytes=1_001, memory_bytes=4_000)
        assert streams(auto, decoded_bytes=2_000, memory_bytes=4_000)
        assert not streams(auto, decoded_bytes=999, memory_bytes=4_000)
    assert streams(TrainConfig("torch", "data", 1, data_loading="stream"), 1, 4_000)
    assert not streams(TrainConfig("torch", "data", 1, data_loading="memory"), 2_000, 4_000)
    # The first image (96×64) stands for all 24 + 6 of them.
    assert data.decoded_bytes(data.list_images(mixed_sizes)) == 30 * 96 * 64 * 3
    assert isinstance(load_data(TrainConfig("torch", str(mixed_sizes), 1, data_loading="stream")), data.ImageFiles)
    assert isinstance(load_data(TrainConfig("torch", str(mixed_sizes), 1)), data.Dataset)  # 553 KB: memory


PEAK = """
import resource, sys
from xception_common.train import main
code = main(sys.argv[1:])
peaks = (resource.getrusage(who).ru_maxrss * 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(*peaks)
sys.exit(code)
"""


def peak_memory(framework, folder, out) -> tuple[int, int]:
    """Peak resident bytes of a streamed one-epoch run on ``folder``: of the
    training process, and of the largest of its decoding workers (PyTorch;
    Keras decodes on threads of the training process)."""
    workers = ["--workers", "2"] if framework == "torch" else []
    command = [sys.executable, "-c", PEAK, "--framework", framework, "--data", str(folder), "--epochs", "1",
               "--image-size", "71", "--batch-size", "16", "--bn-batches", "1", "--data-loading", "stream",
               *workers, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env=os.environ | {"OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(json.loads((out / "history.json").read_text())) == 1
    trainer, worker = map(int, done.stdout.strip().splitlines()[-1].split())
    return trainer, worker


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_streamed_run_holds_no_more_for_images_that_take_gigabytes(framework, tmp_path):
    # 240 JPEGs of 2000×1500 pixels, 2.16 GB decoded, which loading them
    # whole would hold at once, against as many of 64×48 pixels (2.2 MB).
    large = write_jpegs(tmp_path / "large", [(2000, 1500)], per_class=64)
    small = write_jpegs(tmp_path / "small", [(64, 48)], per_class=64)
    decoded = data.decoded_bytes(data.list_images(large))
    assert decoded == 240 * 2000 * 1500 * 3
    peaks = {name: peak_memory(framework, folder, tmp_path / f"run-{name}") for name, folder in (("large", large),
                                                                                                  ("small", small))}
    print(f"{framework}: decoded {decoded / 1e9:.2f} GB; peak resident (trainer, largest worker): "
          + "; ".join(f"{name} images {t / 1e9:.2f}, {w / 1e9:.2f} GB" for name, (t, w) in peaks.items()))
    # What the large images add: a few batches in flight, each decoded one
    # image at a time (18 MB at full size) before it is resized to 71 px.
    for large_peak, small_peak in zip(peaks["large"], peaks["small"]):
        assert large_peak - small_peak < decoded / 4


@pytest.mark.parametrize("options, message", [
    (["--framework", "keras", "--workers", "2"], "--workers is a whole number >= 0 for the torch framework"),
    (["--framework", "torch", "--workers", "-1"], "--workers is a whole number >= 0 for the torch framework"),
    (["--framework", "torch", "--workers", "2", "--data", "digits"],
     "--workers is for streamed data, and digits is loaded whole: no worker would start"),
    (["--framework", "torch", "--workers", "2", "--data-loading", "memory"],
     "--workers is for streamed data, and --data-loading memory loads it whole: no worker would start"),
])
def test_impossible_streaming_options_exit_2_and_write_nothing(options, message, image_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(image_folder), *options, "--epochs", "1", "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_built_in_data_is_never_streamed():
    with pytest.raises(data.DataError, match="only a folder or .zip of images is read one by one"):
        data.list_images("digits")
    with pytest.raises(ValueError, match="digits is loaded whole"):
        TrainConfig("torch", "digits", 1, data_loading="stream").check()


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_an_unreadable_image_found_while_streaming_exits_2_in_a_line(framework, image_folder, tmp_path, capsys):
    # Found by a DataLoader worker process (PyTorch) or a tf.data function (Keras), each of
    # which hands the error to the training loop wrapped, with the worker's traceback as text.
    (image_folder / "train" / "cat" / "1.png").write_bytes(b"not an image")
    workers = ["--workers", "1"] if framework == "torch" else []
    code = main(["--framework", framework, "--data", str(image_folder), "--epochs", "1", "--image-size", "71",
                 "--batch-size", "2", "--data-loading", "stream", "--out", str(tmp_path / "run"), *workers])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("python -m xception_common.train: error: ")
    assert error.endswith("cannot read image train/cat/1.png (UnidentifiedImageError: cannot identify image file); "
                          "remove or replace the file")
    assert "Traceback" not in error
