"""Training and inference speed of our Xceptions next to the reference ones.

    python -m xception_common.bench --image-size 128 --batch-size 16

Every model runs on the same machine in the same process, on synthetic data
already on the device, so only the model is measured:

* ``torch``: our PyTorch ``Xception``; on CUDA in the mixed precision that
  training picks for the GPU (bfloat16, or float16 with gradient scaling
  before Ampere) and channels_last, on CPU in fp32 with channels_last (on a 2-core AMD EPYC a
  fifth faster to train and a third faster to infer than contiguous);
* ``torch-fp32`` (CUDA only): ours in plain fp32, like for like with timm;
* ``torch-compiled``: the ``torch`` row through ``torch.compile`` (``--compile-mode``;
  by default ``reduce-overhead`` on CUDA, which replays the step's kernels as
  CUDA graphs, and ``default`` on CPU); its settings give the compile time, the
  first training and inference steps, which the warm-up pays;
* ``torch-trainer``: a training step as ``train`` runs it
  (``train_torch.Trainer.train_step``, CIFAR recipe), on CIFAR-sized uint8
  images on the device: the batch made from them by the epoch plan, the
  model's step in the precision and layout training uses, the Polyak
  average's update, the rate's step and the loss and accuracy summed on the
  device. Its ratio is to the ``torch`` row: what the loop around the model
  costs;
* ``timm``: ``legacy_xception`` in its default fp32 eager mode, the reference
  for the PyTorch rows;
* ``keras``: our ``build_xception``; ``keras-applications``:
  ``keras.applications.Xception``, the reference for it;
* ``torch-input``, ``keras-input``: the training input pipeline alone, as
  ``train`` runs it, on CIFAR-sized uint8 images: gather a batch, pad, crop,
  flip, resize to the image size and scale. Its ratio is to its framework's
  model row, so 20× means batches come 20 times faster than the model trains
  on them (PyTorch makes them on the device between steps; Keras in a
  prefetching ``tf.data`` pipeline beside the steps).

A training step is forward, cross-entropy, backward and an SGD step with
momentum 0.9; inference is a forward pass without gradients.

The MFU column is the model-FLOPs utilisation of training: the multiply-adds of
one image through the paper's Xception at the image size (``costs``, the same
for every model row), × 2 FLOPs each, × 3 for forward and backward, × training
images per second, ÷ the device's peak for the row's precision. The peaks
(``PEAK_TFLOPS``) are NVIDIA's dense tensor-core figures; float32 rows count
against TF32, which cuDNN uses for float32 convolutions by default on Ampere
and later GPUs. ``--peak-tflops`` gives the peak of another device, a CPU's
for instance; without one the column stays empty.

How a row is timed: ``--warmup`` steps run untimed first. Then
``torch.utils.benchmark.Timer.blocked_autorange`` times at least ``--steps``
steps and at least a second (``MIN_RUN_TIME``): a first measurement runs for a
second, further ones for the steps still missing at the pace measured so far.
Before each measurement the Timer runs untimed blocks to choose how many steps
a timed block holds: one, unless steps are so short (or so many) that reading
the clock would weigh; then 10, 100 or more. Each reading of the clock
synchronises the GPU, so queued CUDA work is inside the time; a Keras step
returns NumPy values (``train_on_batch``, ``predict_on_batch``, ``.numpy()``
of a batch), so TensorFlow's work has finished too. A figure is the batch size
over the median time per step of the timed blocks, next to the interquartile
range (IQR) of those times in percent of their median (to first order, the
IQR of the images per second in percent of theirs). Ratios to the reference
rows divide medians.

PyTorch and Keras are imported when needed, not with this module: a row whose
framework (or timm) is not installed says so and the others still run.
PyTorch, where installed, also picks the device and times every row, the Keras
ones too. Without it the device is the CPU and the Keras rows are timed with
the standard library's ``timeit``: after the warm-up, ``--steps`` steps one by
one, summarised by the same median and IQR (NumPy's percentiles, interpolated
linearly as ``torch.quantile`` does).
"""

import argparse
import contextlib
import itertools
import json
import logging
import os
import platform
import re
import time
import timeit
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from . import architecture as arch
from .runs import COMPILE_MODES, auto_precision
from .seeding import seed_all

MODELS = ("torch", "torch-fp32", "torch-compiled", "torch-trainer", "timm", "torch-input", "torch-stream", "keras",
          "keras-applications", "keras-input")
TORCH_MODELS = ("torch", "torch-fp32", "torch-compiled", "torch-trainer", "timm", "torch-input", "torch-stream")
# The PyTorch rows that train a model.
PROFILED_MODELS = ("torch", "torch-fp32", "torch-compiled", "torch-trainer", "timm")
REFERENCE = {"torch": "timm", "torch-fp32": "timm", "torch-compiled": "timm", "torch-trainer": "torch",
             "keras": "keras-applications", "torch-input": "torch", "torch-stream": "torch", "keras-input": "keras"}
# Dense peaks in TFLOPS from NVIDIA's datasheets, by a word of the device's name:
# half precision (bfloat16, float16) and float32, which cuDNN computes as TF32
# on Ampere and later (torch.backends.cudnn.allow_tf32); the T4 has no TF32.
# The H200 figures are the SXM module's; the H200 NVL's are lower.
PEAK_TFLOPS = {
    "H200": {"half": 989.4, "float32": 494.7},
    "A100": {"half": 312.0, "float32": 156.0},
    "L4": {"half": 121.0, "float32": 60.0},
    "T4": {"half": 65.0, "float32": 8.1},
}
SEED = 0
INPUT_SIZE = 32  # CIFAR-10's images, which the pipeline pads, crops and resizes
PREFETCHED = 2  # batches each DataLoader worker makes ahead (its prefetch_factor)
STREAMED_SIZE = (500, 375)  # width and height of the JPEG files the streaming row decodes: a common ImageNet size
SCHEDULED_EPOCHS = 10_000  # the torch-trainer row's run length, for its per-batch schedule
MIN_RUN_TIME = 1.0  # seconds that torch.utils.benchmark times at least, for enough blocks of short steps


@dataclass(frozen=True)
class Timing:
    """Seconds per step (median and interquartile range over the timed blocks) and the steps timed."""

    median_s: float
    iqr_s: float
    steps: int


@dataclass
class Result:
    model: str
    settings: str = ""
    status: str = "ok"
    train_images_per_s: float | None = None  # batch size / median seconds per step
    train_iqr_percent: float | None = None  # IQR of the step times, in percent of their median
    train_steps: int | None = None  # steps timed
    precision: str | None = None  # of the model rows: float32, bfloat16 or float16
    train_mfu_percent: float | None = None  # model-FLOPs utilisation of training
    infer_images_per_s: float | None = None
    infer_iqr_percent: float | None = None
    infer_steps: int | None = None
    reference: str | None = None
    train_ratio: float | None = None  # of the medians
    infer_ratio: float | None = None


@dataclass(frozen=True)
class Options:
    image_size: int
    batch_size: int
    steps: int
    warmup: int
    num_classes: int
    device: str
    compile_mode: str | None = None  # for torch-compiled; None: reduce-overhead on CUDA, default on CPU
    peak_tflops: float | None = None  # the device's peak for every row; None: PEAK_TFLOPS
    profile_dir: str | None = None  # profile the PyTorch rows' training steps into this folder
    workers: int | None = None  # decoding processes of the torch-stream row; None: train_torch.default_workers()


def measured(model: str, settings: str, options: Options, train: Timing, infer: Timing | None = None,
             precision: str | None = None) -> Result:
    """A row with the images per second and spread of its training (or input) and inference timings."""
    result = Result(model, settings, precision=precision)
    for phase, timing in (("train", train), ("infer", infer)):
        if timing is not None:
            setattr(result, f"{phase}_images_per_s", options.batch_size / timing.median_s)
            setattr(result, f"{phase}_iqr_percent", 100 * timing.iqr_s / timing.median_s)
            setattr(result, f"{phase}_steps", timing.steps)
    return result


# --- the frameworks ----------------------------------------------------------------


def import_torch():
    """PyTorch, or None where it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def import_keras():
    """Keras on TensorFlow, or None; TensorFlow's C++ logging kept quiet."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # leave GPU memory to torch too
    try:
        import keras
    except ImportError:
        return None
    return keras


def cuda_available() -> bool:
    torch = import_torch()
    return torch is not None and torch.cuda.is_available()


# --- measurement ---------------------------------------------------------------


def time_steps(step, options: Options) -> Timing:
    """Run ``step`` ``--warmup`` times untimed, then time at least ``--steps`` steps;
    with torch.utils.benchmark where PyTorch is installed, else with timeit."""
    for _ in range(options.warmup):
        step()
    if import_torch() is None:
        return time_with_timeit(step, options.steps)
    return time_with_torch(step, options.steps)


def time_with_torch(step, steps: int) -> Timing:
    """At least ``steps`` steps and ``MIN_RUN_TIME`` seconds in ``Timer.blocked_autorange``
    measurements, merged."""
    import torch
    from torch.utils.benchmark import Measurement, Timer

    timer = Timer("step()", globals={"step": step}, num_threads=torch.get_num_threads())
    measurements, timed, seconds, pace = [], 0, 0.0, 0.0
    while timed < steps or seconds < MIN_RUN_TIME:
        # The first measurement runs MIN_RUN_TIME; the next ones, the steps still missing at its pace.
        measurement = timer.blocked_autorange(min_run_time=max((steps - timed) * pace, MIN_RUN_TIME - seconds))
        measurements.append(measurement)
        timed += measurement.number_per_run * len(measurement.raw_times)
        seconds += sum(measurement.raw_times)
        pace = measurement.median  # seconds per step
    [merged] = Measurement.merge(measurements)  # seconds per step of each block
    return Timing(merged.median, merged.iqr, timed)


def time_with_timeit(step, steps: int) -> Timing:
    """``steps`` steps timed one by one with the standard library's timeit."""
    return timing_from_times(timeit.Timer(step).repeat(repeat=steps, number=1))


def timing_from_times(times) -> Timing:
    """Median and IQR of one-step times, quartiles interpolated linearly as torch.quantile does."""
    p25, median, p75 = np.percentile(times, [25, 50, 75])
    return Timing(float(median), float(p75 - p25), len(times))


def torch_steps(model, options: Options, dtype=None, channels_last=False, compile_mode: str | None = None):
    """A training and an inference step of a PyTorch classifier on one
    synthetic batch, in float32 or with autocast to ``dtype``, through
    ``torch.compile`` in ``compile_mode`` if one is given; and the model as
    placed (and compiled)."""
    import torch

    device = torch.device(options.device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    generator = torch.Generator(device).manual_seed(SEED)
    shape = (options.batch_size, arch.INPUT_CHANNELS, options.image_size, options.image_size)
    x = torch.randn(shape, device=device, generator=generator).contiguous(memory_format=layout)
    y = torch.randint(0, options.num_classes, (options.batch_size,), device=device, generator=generator)
    model = model.to(device, memory_format=layout)
    if compile_mode is not None:
        model = torch.compile(model, mode=compile_mode)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def infer_step():
        with autocast:
            model(x)

    return model, train_step, infer_step


def measure_torch(model, options: Options, dtype=None, channels_last=False, compile_mode: str | None = None,
                  label: str = "torch") -> tuple[Timing, Timing, float]:
    """Training and inference timings of a PyTorch classifier (``torch_steps``),
    and the seconds its first training and inference steps took together (for
    a compiled model, mostly compiling). With ``options.profile_dir``, a few
    more training steps are profiled after the timing (``profile_training``),
    into files named by ``label``."""
    import torch

    device = torch.device(options.device)
    model, train_step, infer_step = torch_steps(model, options, dtype, channels_last, compile_mode)
    model.train()
    first = first_step_seconds(train_step, device)
    train = time_steps(train_step, options)
    if options.profile_dir is not None:
        profile_training(train_step, options, label)
    model.eval()
    with torch.inference_mode():
        first += first_step_seconds(infer_step, device)
        infer = time_steps(infer_step, options)
    return train, infer, first


PROFILED_STEPS = 5


@dataclass(frozen=True)
class Profile:
    """What ``torch.profiler`` saw in ``steps`` training steps, per step."""

    steps: int
    wall_s: float  # seconds a step, from the host's clock
    device_busy_s: float | None  # seconds of GPU kernels a step; None on a CPU
    kernel_launches: float | None  # CUDA kernel and graph launches a step; None on a CPU
    operators: float  # aten operators called a step, nested ones included

    def summary(self, label: str) -> str:
        line = f"{label}: {1e3 * self.wall_s:.1f} ms a training step, {self.operators:.0f} aten operator calls"
        if self.device_busy_s is None:
            return line
        return (f"{line}, {self.kernel_launches:.0f} kernel launches; GPU kernels busy "
                f"{1e3 * self.device_busy_s:.1f} ms ({100 * self.device_busy_s / self.wall_s:.0f}% of the step)")


def profile_training(train_step, options: Options, label: str) -> Profile:
    """Run ``PROFILED_STEPS`` training steps under ``torch.profiler``; write
    its Chrome trace (``LABEL.trace.json``, for chrome://tracing or Perfetto)
    and its table of operators by self time (``LABEL.txt``) into
    ``options.profile_dir``; print and return the summary a step."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = options.device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    start = timeit.default_timer()
    with profile(activities=activities) as profiler:
        for _ in range(PROFILED_STEPS):
            train_step()
        if cuda:
            torch.cuda.synchronize()
    wall = (timeit.default_timer() - start) / PROFILED_STEPS
    events = profiler.key_averages()
    launches = sum(e.count for e in events if e.key.startswith(LAUNCHES))
    busy = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    result = Profile(
        PROFILED_STEPS, wall,
        busy / 1e6 / PROFILED_STEPS if cuda else None,
        launches / PROFILED_STEPS if cuda else None,
        sum(e.count for e in events if e.key.startswith("aten::")) / PROFILED_STEPS,
    )
    folder = Path(options.profile_dir)
    folder.mkdir(parents=True, exist_ok=True)
    trace, text = profile_files(label)
    profiler.export_chrome_trace(str(folder / trace))
    sort_by = "self_device_time_total" if cuda else "self_cpu_time_total"
    table = events.table(sort_by=sort_by, row_limit=25)
    (folder / text).write_text(f"{result.summary(label)}\n\n{table}\n")
    print(result.summary(label))
    return result


LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch")  # the runtime's launch calls, by prefix


def profile_files(label: str) -> tuple[str, str]:
    """The files a row's profile writes: its Chrome trace and its table."""
    return f"{label}.trace.json", f"{label}.txt"


def first_step_seconds(step, device) -> float:
    """The seconds of one step, queued GPU work included."""
    import torch

    start = timeit.default_timer()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return timeit.default_timer() - start


def keras_steps(model, options: Options):
    """A training and an inference step of a Keras classifier with softmax
    output on one synthetic batch. Both return NumPy values, so the step's
    work has finished when they return."""
    import keras

    model.compile(optimizer=keras.optimizers.SGD(momentum=0.9), loss="sparse_categorical_crossentropy")
    shape = (options.batch_size, options.image_size, options.image_size, arch.INPUT_CHANNELS)
    x = keras.random.normal(shape, seed=SEED)
    y = keras.random.randint((options.batch_size,), 0, options.num_classes, seed=SEED)
    return (lambda: model.train_on_batch(x, y)), (lambda: model.predict_on_batch(x))


def measure_keras(model, options: Options) -> tuple[Timing, Timing]:
    train_step, infer_step = keras_steps(model, options)
    return time_steps(train_step, options), time_steps(infer_step, options)


# --- the models ------------------------------------------------------------------


def bench_torch(options: Options, compiled: bool = False) -> Result:
    import torch

    from .torch_xception import Xception

    seed_all(SEED, ["torch"])
    cuda = options.device == "cuda"
    precision = auto_precision(torch.cuda.get_device_capability() if cuda else None)
    dtype = None if precision == "float32" else getattr(torch, precision)
    model = Xception(num_classes=options.num_classes)
    mode = (options.compile_mode or ("reduce-overhead" if cuda else "default")) if compiled else None
    name = "torch-compiled" if compiled else "torch"
    train, infer, first = measure_torch(model, options, dtype=dtype, channels_last=True, compile_mode=mode,
                                        label=name)
    settings = f"{precision} autocast, channels_last" if dtype else "fp32, channels_last"
    if compiled:
        settings += f", torch.compile mode={mode}, first steps {first:.0f} s"
    return measured(name, settings, options, train, infer, precision)


def bench_torch_trainer(options: Options) -> Result:
    import torch

    from .data import Dataset
    from .runs import TrainConfig
    from .train_torch import Trainer

    images, labels, _ = input_data(options, input_images(options))
    classes = tuple(str(label) for label in range(options.num_classes))
    test = slice(0, options.batch_size)  # the Trainer holds a test split too; it is not used here
    dataset = Dataset("synthetic", "random uint8 images", classes, images, labels, images[test], labels[test],
                      flip=True)
    # A run far longer than the timing, so that every timed step trains at a rate above zero: past
    # its end torch's cosine schedule is periodic, and comes back to zero.
    config = TrainConfig("torch", "synthetic", SCHEDULED_EPOCHS, image_size=options.image_size,
                         batch_size=options.batch_size, seed=SEED, recipe="cifar")
    trainer = Trainer(dataset, config, device=options.device, progress=False)
    plan = trainer.placed_plan(0)
    trainer.model.train()
    steps = itertools.cycle(range(plan.steps))

    def train_step():
        step = next(steps)
        images, labels = next(trainer.train.batches(plan.order[step : step + 1]))
        trainer.train_step(images, labels, plan, step)

    first_step_seconds(train_step, torch.device(options.device))  # cuDNN's search for kernels, as in measure_torch
    train = time_steps(train_step, options)
    if options.profile_dir is not None:
        profile_training(train_step, options, "torch-trainer")
    precision = trainer.precision
    settings = (f"Trainer.train_step, {precision}{' autocast' if precision != 'float32' else ''}, channels_last, "
                f"{INPUT_SIZE}px uint8 → {options.image_size}px, Polyak update, per-batch rate")
    return measured("torch-trainer", settings, options, train, precision=precision)


def bench_torch_fp32(options: Options) -> Result:
    from .torch_xception import Xception

    if options.device != "cuda":
        return Result("torch-fp32", status="CUDA only (on CPU the torch row is fp32)")
    seed_all(SEED, ["torch"])
    train, infer, _ = measure_torch(Xception(num_classes=options.num_classes), options, label="torch-fp32")
    return measured("torch-fp32", "fp32, contiguous", options, train, infer, "float32")


def bench_timm(options: Options) -> Result:
    try:
        import timm
    except ImportError:
        return Result("timm", status="not installed")
    seed_all(SEED, ["torch"])
    model = timm.create_model("legacy_xception", pretrained=False, num_classes=options.num_classes)
    train, infer, _ = measure_torch(model, options, label="timm")
    return measured("timm", f"legacy_xception, fp32, timm {timm.__version__}", options, train, infer, "float32")


def input_data(options: Options, num_images: int):
    """Random uint8 images (N×32×32×3), labels, and the epoch plan over them."""
    from .epoch_plan import crop_padding, epoch_plan

    rng = np.random.default_rng(SEED)
    images = rng.integers(0, 256, (num_images, INPUT_SIZE, INPUT_SIZE, arch.INPUT_CHANNELS), dtype=np.uint8)
    labels = rng.integers(0, options.num_classes, num_images)
    plan = epoch_plan(num_images, options.batch_size, crop_padding(INPUT_SIZE), True, SEED, 0)
    return images, labels, plan


def input_images(options: Options) -> int:
    """Enough images for a batch per warm-up and timed step; the Timer's extra
    steps go round the plan again."""
    return options.batch_size * (options.warmup + options.steps)


def bench_torch_input(options: Options) -> Result:
    import torch

    from .epoch_plan import crop_padding
    from .train_torch import ImagesInMemory, training_batch

    device = torch.device(options.device)
    images, labels, plan = input_data(options, input_images(options))
    memory = ImagesInMemory(images, labels, device)
    plan = memory.placed(plan)  # on the device once, as training places each epoch's plan
    steps = itertools.cycle(range(plan.steps))

    def make_batch():
        training_batch(memory.images, memory.labels, plan, next(steps), crop_padding(INPUT_SIZE), options.image_size)

    settings = f"input only: {INPUT_SIZE}px uint8 on the device → {options.image_size}px"
    return measured("torch-input", settings, options, time_steps(make_batch, options))


def time_rounds(make_batch, options: Options, per_round: int) -> Timing:
    """Seconds per batch of a pipeline whose workers make batches ahead of
    time: timed over rounds of ``per_round`` batches, as many as their
    buffers hold, once those have filled, since single batches come in bursts."""
    for _ in range((options.warmup + 2) * per_round):
        make_batch()
    times = []
    for _ in range(options.steps):
        start = time.perf_counter()
        for _ in range(per_round):
            make_batch()
        times.append((time.perf_counter() - start) / per_round)
    return timing_from_times(times)


def write_sample_jpegs(folder: Path, count: int, size: tuple[int, int] = STREAMED_SIZE) -> None:
    """``count`` JPEG files of ``size`` (two at least) in ``folder``/train/,
    in turn in the class folders a/ and b/, and one in each of test/a/ and
    test/b/: random blocks of colour, smoothed by the upsampling, at JPEG
    quality 90."""
    from PIL import Image

    rng = np.random.default_rng(SEED)
    width, height = size
    for split, number in (("train", max(count, 2)), ("test", 2)):
        for index in range(number):
            class_folder = folder / split / "ab"[index % 2]
            class_folder.mkdir(parents=True, exist_ok=True)
            blocks = Image.fromarray(rng.integers(0, 256, (height // 25, width // 25, 3), dtype=np.uint8))
            blocks.resize(size, Image.Resampling.BILINEAR).save(class_folder / f"{index:05d}.jpg", quality=90)


def bench_torch_stream(options: Options) -> Result:
    """The streaming pipeline alone: JPEG files decoded and resized by
    DataLoader workers, as training reads a folder too large for memory."""
    import tempfile

    import torch

    from . import data
    from .epoch_plan import crop_padding, epoch_plan
    from .train_torch import StreamedImages, default_workers, planned_batch

    device = torch.device(options.device)
    workers = default_workers() if options.workers is None else options.workers
    with tempfile.TemporaryDirectory() as folder:
        count = input_images(options)
        write_sample_jpegs(Path(folder), count)
        images = StreamedImages(data.list_images(folder), "train", options.image_size, device, workers)
        plan = epoch_plan(count, options.batch_size, crop_padding(options.image_size), True, SEED, 0)
        batches = images.batches(itertools.cycle(plan.order))
        steps = itertools.cycle(range(plan.steps))

        def make_batch():
            uint8, _ = next(batches)
            planned_batch(uint8, plan, next(steps), crop_padding(options.image_size), options.image_size)

        timing = time_rounds(make_batch, options, PREFETCHED * max(1, workers))
    width, height = STREAMED_SIZE
    plural = "s" if workers != 1 else ""
    settings = (f"input only: {width}×{height} JPEG files → {options.image_size}px, {workers} decoding "
                f"worker{plural} on {os.cpu_count()} cores")
    return measured("torch-stream", settings, options, timing)


def keras_input_step(options: Options):
    """The next batch of ``training_batches`` (repeated without end), as a NumPy array."""
    from .epoch_plan import crop_padding
    from .train_keras import training_batches

    images, labels, plan = input_data(options, input_images(options))
    batches = iter(training_batches(images, labels, [plan], crop_padding(INPUT_SIZE), options.image_size).repeat())
    return lambda: next(batches)[0].numpy()


def bench_keras_input(options: Options) -> Result:
    settings = f"input only: {INPUT_SIZE}px uint8 in tf.data → {options.image_size}px"
    return measured("keras-input", settings, options, time_steps(keras_input_step(options), options))


def bench_keras(name: str, options: Options) -> Result:
    import keras

    keras.backend.clear_session()
    seed_all(SEED, ["keras"])
    shape = (options.image_size, options.image_size, arch.INPUT_CHANNELS)
    on_cpu = keras.device("cpu:0") if options.device == "cpu" else contextlib.nullcontext()
    with on_cpu:
        if name == "keras":
            from .keras_xception import build_xception

            model = build_xception(num_classes=options.num_classes, input_shape=shape)
        else:
            model = keras.applications.Xception(weights=None, classes=options.num_classes, input_shape=shape)
        train, infer = measure_keras(model, options)
    settings = f"fp32, {keras.backend.backend()}, jit_compile={model.jit_compile}"
    return measured(name, settings, options, train, infer, "float32")


BENCHES = {
    "torch": bench_torch,
    "torch-fp32": bench_torch_fp32,
    "torch-compiled": lambda options: bench_torch(options, compiled=True),
    "torch-trainer": bench_torch_trainer,
    "timm": bench_timm,
    "torch-input": bench_torch_input,
    "torch-stream": bench_torch_stream,
    "keras": lambda options: bench_keras("keras", options),
    "keras-applications": lambda options: bench_keras("keras-applications", options),
    "keras-input": bench_keras_input,
}


def run_model(name: str, options: Options) -> Result:
    """One row; "not installed" where its framework is missing."""
    framework = import_torch() if name in TORCH_MODELS else import_keras()
    if framework is None:
        return Result(name, status="not installed")
    torch = import_torch()
    out_of_memory = torch.cuda.OutOfMemoryError if torch is not None else ()
    try:
        return BENCHES[name](options)
    except out_of_memory:
        return Result(name, status="out of memory")
    finally:
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def add_ratios(results: list[Result]) -> None:
    """Each row's median speed divided by its framework's reference row's, when both ran."""
    by_name = {r.model: r for r in results if r.status == "ok"}
    for result in results:
        reference = by_name.get(REFERENCE.get(result.model))
        if result.status == "ok" and reference:
            result.reference = reference.model
            result.train_ratio = result.train_images_per_s / reference.train_images_per_s
            if result.infer_images_per_s is not None:
                result.infer_ratio = result.infer_images_per_s / reference.infer_images_per_s


def peak_flops(device_name: str, precision: str) -> float | None:
    """The peak FLOPs per second of a GPU named ``device_name`` for
    ``precision``, from ``PEAK_TFLOPS``; None for a device it does not list."""
    word = peak_word(device_name)
    return None if word is None else 1e12 * PEAK_TFLOPS[word]["float32" if precision == "float32" else "half"]


def peak_word(device_name: str) -> str | None:
    """The word of ``PEAK_TFLOPS`` in ``device_name``, as a whole word: "A100"
    in "NVIDIA A100-SXM4-80GB", but not "L4" in "NVIDIA L40S"."""
    return next((word for word in PEAK_TFLOPS if re.search(rf"\b{word}\b", device_name)), None)


def training_flops_per_image(options: Options) -> float:
    """2 × 3 × the multiply-adds of one image through the paper's Xception at
    ``options.image_size``: forward and backward, two FLOPs per multiply-add."""
    from . import costs

    torch = import_torch()
    if torch is not None:
        from .torch_xception import Xception

        rows = costs.torch_layer_costs(Xception(num_classes=options.num_classes), options.image_size)
    else:
        from .keras_xception import build_xception

        shape = (options.image_size, options.image_size, arch.INPUT_CHANNELS)
        rows = costs.keras_layer_costs(build_xception(num_classes=options.num_classes, input_shape=shape))
    return 6.0 * sum(row.mult_adds for row in rows)


def add_utilisation(results: list[Result], flops_per_image: float, peak_for) -> None:
    """Each model row's training MFU in percent: ``flops_per_image`` × its
    training images per second ÷ ``peak_for(precision)`` (None: no figure)."""
    for result in results:
        peak = peak_for(result.precision) if result.status == "ok" and result.precision else None
        if peak:
            result.train_mfu_percent = 100 * flops_per_image * result.train_images_per_s / peak


# --- report ----------------------------------------------------------------------


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(options: Options) -> str:
    torch = import_torch()
    device = f"CPU {cpu_name()}, {os.cpu_count()} cores"
    if torch is not None:
        device += f", torch threads {torch.get_num_threads()}"
    if hasattr(os, "getloadavg"):  # other work on the machine skews every number, torch's most
        device += f", load {os.getloadavg()[0]:.1f}"
    if options.device == "cuda":
        device += f"; GPU {torch.cuda.get_device_name()}"
    torch_version = torch.__version__ if torch is not None else "not installed"
    timer = "torch.utils.benchmark" if torch is not None else "timeit"
    return (
        f"{device} | torch {torch_version}, tensorflow {version('tensorflow')}, "
        f"keras {version('keras')}, timm {version('timm')} | image {options.image_size}, "
        f"batch {options.batch_size}, steps {options.steps}, warm-up {options.warmup}, timed with {timer}"
    )


COLUMNS = ("model", "settings", "train img/s", "train IQR", "MFU", "infer img/s", "infer IQR", "vs", "train ×",
           "infer ×")
NUMERIC = (False, False, True, True, True, True, True, False, True, True)


def table_rows(results: list[Result]) -> list[tuple[str, ...]]:
    def number(value, fmt):
        return "" if value is None else format(value, fmt)

    def percent(value):
        return "" if value is None else f"{value:.1f}%"

    return [
        (
            r.model,
            r.settings if r.status == "ok" else r.status,
            number(r.train_images_per_s, ".1f"),
            percent(r.train_iqr_percent),
            "" if r.train_mfu_percent is None else f"{r.train_mfu_percent:.2f}%",
            number(r.infer_images_per_s, ".1f"),
            percent(r.infer_iqr_percent),
            r.reference or "",
            number(r.train_ratio, ".2f"),
            number(r.infer_ratio, ".2f"),
        )
        for r in results
    ]


def format_table(results: list[Result], markdown: bool = False) -> str:
    rows = table_rows(results)
    if markdown:
        lines = [COLUMNS, ("---",) * len(COLUMNS), *rows]
        return "\n".join("| " + " | ".join(row) + " |" for row in lines)
    widths = [max(len(row[i]) for row in (COLUMNS, *rows)) for i in range(len(COLUMNS))]

    def line(row):
        cells = (c.rjust(w) if right else c.ljust(w) for c, w, right in zip(row, widths, NUMERIC))
        return "  ".join(cells).rstrip()

    return "\n".join([line(COLUMNS), line(tuple("-" * w for w in widths)), *map(line, rows)])


# --- command line ----------------------------------------------------------------


def parse_args(argv=None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(
        prog="python -m xception_common.bench",
        description="Training and inference images per second of our Xceptions and the reference ones.",
    )
    parser.add_argument("--image-size", type=int, required=True,
                        help=f"pixels per side, at least {arch.MIN_INPUT_SIZE}")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--steps", type=int, default=10, help="timed steps, at least (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda where PyTorch sees a GPU, else cpu")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None,
                        help="default: all (torch-fp32 on CUDA only)")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES,
                        help="torch.compile mode of the torch-compiled row (default: reduce-overhead on CUDA, "
                        "default on CPU)")
    parser.add_argument("--peak-tflops", type=float,
                        help="the device's peak TFLOPS for the MFU column, for every row "
                        f"(default: NVIDIA's figures for {', '.join(PEAK_TFLOPS)}; none for a CPU)")
    parser.add_argument("--profile", metavar="DIR",
                        help=f"also profile {PROFILED_STEPS} training steps of each PyTorch row with torch.profiler "
                        "into DIR (ROW.trace.json, ROW.txt) and print a summary a step: kernel launches and GPU "
                        "busy time on CUDA")
    parser.add_argument("--workers", type=int,
                        help="decoding processes of the torch-stream row (default: the cores but one, at most 8)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    args = parser.parse_args(argv)

    if args.peak_tflops is not None and not args.peak_tflops > 0:
        parser.error(f"--peak-tflops must be a positive number, got {args.peak_tflops}")
    for name, minimum in (("image_size", arch.MIN_INPUT_SIZE), ("batch_size", 1), ("steps", 1),
                          ("warmup", 0), ("num_classes", 1), ("workers", 0)):
        if getattr(args, name) is not None and getattr(args, name) < minimum:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be at least {minimum}, got {getattr(args, name)}")
    cuda = cuda_available()
    if args.device == "cuda" and not cuda:
        why = "PyTorch sees no CUDA device" if import_torch() is not None else "PyTorch is not installed"
        parser.error(f"--device cuda: {why}; use --device cpu")
    device = args.device if args.device != "auto" else ("cuda" if cuda else "cpu")
    if args.models is None:
        args.models = [m for m in MODELS if m != "torch-fp32" or device == "cuda"]
    for flag, value, rows in (("--workers", args.workers, ("torch-stream",)),
                              ("--compile-mode", args.compile_mode, ("torch-compiled",)),
                              ("--profile", args.profile, PROFILED_MODELS)):
        if value is not None and not set(rows) & set(args.models):
            parser.error(f"{flag} is for the {' or '.join(rows)} row, which --models leaves out")
    for flag, path in (("--json", args.json), ("--profile", args.profile)):
        if path is None:
            continue
        if flag == "--json" and Path(path).exists():
            parser.error(f"--json {path} exists; choose another name or remove it first")
        above = next((p for p in (Path(path), *Path(path).parents) if p.exists()), None)
        if above is not None and not above.is_dir() and (flag == "--profile" or above != Path(path)):
            parser.error(f"{flag} {path}: {above} exists and is not a folder")
    if args.profile is not None:
        profiled = [row for row in args.models if row in PROFILED_MODELS]
        there = [name for row in profiled for name in profile_files(row) if (Path(args.profile) / name).exists()]
        if there:
            parser.error(f"--profile {args.profile} holds {', '.join(there)} already; choose another folder "
                         "or remove them first")
    options = Options(args.image_size, args.batch_size, args.steps, args.warmup, args.num_classes, device,
                      args.compile_mode, args.peak_tflops, args.profile, args.workers)
    return args, options


def utilisation_line(options: Options, flops: float) -> str:
    """Where the MFU column's figures come from; ``flops`` per training image."""
    if options.peak_tflops is not None:
        peak = f"{options.peak_tflops:g} TFLOPS (--peak-tflops)"
    else:
        name = import_torch().cuda.get_device_name()
        word = peak_word(name)
        peak = (f"{name}'s {PEAK_TFLOPS[word]['half']:g} TFLOPS in bfloat16/float16 and "
                f"{PEAK_TFLOPS[word]['float32']:g} in float32 (TF32), dense")
    return f"MFU: {flops / 1e9:.2f} GFLOP per training image ÷ {peak}"


def peak_for(options: Options):
    """The function from a row's precision to the peak FLOPs per second it is measured against."""
    if options.peak_tflops is not None:
        return lambda precision: 1e12 * options.peak_tflops
    if options.device != "cuda":
        return lambda precision: None
    name = import_torch().cuda.get_device_name()
    return lambda precision: peak_flops(name, precision)


def main(argv=None) -> int:
    args, options = parse_args(argv)
    # torch.utils.benchmark imports torch.utils.cpp_extension, which warns "No
    # CUDA runtime is found" on a CUDA build of torch without a GPU wherever a
    # CUDA toolkit is installed: a note about compiling extensions, not about
    # this benchmark.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    if options.device == "cuda":
        import_torch().backends.cudnn.benchmark = True  # the warm-up steps pay for the tuning
    # The model's FLOPs before any timing: without torchinfo, which counts
    # them, the table loses its MFU column, not its measurements.
    peak, flops, missing = peak_for(options), None, None
    if peak("float32"):
        try:
            flops = training_flops_per_image(options)
        except ModuleNotFoundError as error:
            if error.name != "torchinfo":
                raise
            missing = error.name
    results = [run_model(name, options) for name in args.models]
    add_ratios(results)
    if flops:
        add_utilisation(results, flops, peak)
    machine = machine_line(options)
    print(machine)
    print(format_table(results, markdown=args.markdown))
    if any(r.train_mfu_percent is not None for r in results):
        print(utilisation_line(options, flops))
    elif missing and any(r.precision for r in results):  # a row that trains a model
        print(f"MFU: not computed, since {missing} is not installed (pip install {missing})")
    if args.json:
        context = {"machine": machine, **asdict(options)}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump([{**asdict(r), **context} for r in results], f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
