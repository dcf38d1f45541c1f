"""Training and inference speed of our Xceptions next to the reference ones.

    python -m xception_common.bench --image-size 128 --batch-size 16

Every model runs on the same machine in the same process, on synthetic data
already on the device, so only the model is measured:

* ``torch``: our PyTorch ``Xception``; on CUDA in the mixed precision that
  training picks for the GPU (bfloat16, or float16 with gradient scaling
  before Ampere) and channels_last, on CPU in fp32 with channels_last (on a 2-core AMD EPYC a
  fifth faster to train and a third faster to infer than contiguous);
* ``torch-fp32`` (CUDA only): ours in plain fp32, like for like with timm;
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
momentum 0.9; inference is a forward pass without gradients. Warm-up steps are
not timed. A framework that is not installed gives a row that says so.
"""

import argparse
import contextlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from importlib import metadata

import numpy as np
import torch
import torch.nn.functional as F

from . import architecture as arch
from .runs import auto_precision
from .seeding import seed_all

MODELS = ("torch", "torch-fp32", "timm", "torch-input", "keras", "keras-applications", "keras-input")
REFERENCE = {"torch": "timm", "torch-fp32": "timm", "keras": "keras-applications",
             "torch-input": "torch", "keras-input": "keras"}
SEED = 0
INPUT_SIZE = 32  # CIFAR-10's images, which the pipeline pads, crops and resizes


@dataclass
class Result:
    model: str
    settings: str = ""
    status: str = "ok"
    train_images_per_s: float | None = None
    infer_images_per_s: float | None = None
    reference: str | None = None
    train_ratio: float | None = None
    infer_ratio: float | None = None


@dataclass(frozen=True)
class Options:
    image_size: int
    batch_size: int
    steps: int
    warmup: int
    num_classes: int
    device: str


# --- measurement ---------------------------------------------------------------


def images_per_second(step, options: Options, synchronize=lambda: None) -> float:
    """Run ``step`` ``warmup`` times untimed, then ``steps`` times timed."""
    for _ in range(options.warmup):
        step()
    synchronize()
    start = time.perf_counter()
    for _ in range(options.steps):
        step()
    synchronize()
    return options.batch_size * options.steps / (time.perf_counter() - start)


def measure_torch(model: torch.nn.Module, options: Options, dtype=None, channels_last=False):
    """(training, inference) images per second of a PyTorch classifier, in
    float32 or with autocast to ``dtype``."""
    device = torch.device(options.device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    generator = torch.Generator(device).manual_seed(SEED)
    shape = (options.batch_size, arch.INPUT_CHANNELS, options.image_size, options.image_size)
    x = torch.randn(shape, device=device, generator=generator).contiguous(memory_format=layout)
    y = torch.randint(0, options.num_classes, (options.batch_size,), device=device, generator=generator)
    model = model.to(device, memory_format=layout)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(x).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def infer_step():
        with autocast:
            model(x)

    model.train()
    train = images_per_second(train_step, options, synchronize)
    model.eval()
    with torch.inference_mode():
        infer = images_per_second(infer_step, options, synchronize)
    return train, infer


def measure_keras(model, options: Options):
    """(training, inference) images per second of a Keras classifier with softmax output."""
    import keras

    model.compile(optimizer=keras.optimizers.SGD(momentum=0.9), loss="sparse_categorical_crossentropy")
    shape = (options.batch_size, options.image_size, options.image_size, arch.INPUT_CHANNELS)
    x = keras.random.normal(shape, seed=SEED)
    y = keras.random.randint((options.batch_size,), 0, options.num_classes, seed=SEED)
    # Both return NumPy arrays, so every step has finished when it returns.
    train = images_per_second(lambda: model.train_on_batch(x, y), options)
    infer = images_per_second(lambda: model.predict_on_batch(x), options)
    return train, infer


# --- the models ------------------------------------------------------------------


def bench_torch(options: Options) -> Result:
    from .torch_xception import Xception

    seed_all(SEED, ["torch"])
    cuda = options.device == "cuda"
    precision = auto_precision(torch.cuda.get_device_capability() if cuda else None)
    dtype = None if precision == "float32" else getattr(torch, precision)
    model = Xception(num_classes=options.num_classes)
    train, infer = measure_torch(model, options, dtype=dtype, channels_last=True)
    settings = f"{precision} autocast, channels_last" if dtype else "fp32, channels_last"
    return Result("torch", settings, "ok", train, infer)


def bench_torch_fp32(options: Options) -> Result:
    from .torch_xception import Xception

    if options.device != "cuda":
        return Result("torch-fp32", status="CUDA only (on CPU the torch row is fp32)")
    seed_all(SEED, ["torch"])
    train, infer = measure_torch(Xception(num_classes=options.num_classes), options)
    return Result("torch-fp32", "fp32, contiguous", "ok", train, infer)


def bench_timm(options: Options) -> Result:
    try:
        import timm
    except ImportError:
        return Result("timm", status="not installed")
    seed_all(SEED, ["torch"])
    model = timm.create_model("legacy_xception", pretrained=False, num_classes=options.num_classes)
    train, infer = measure_torch(model, options)
    return Result("timm", f"legacy_xception, fp32, timm {timm.__version__}", "ok", train, infer)


def input_data(options: Options, num_images: int):
    """Random uint8 images (N×32×32×3), labels, and the epoch plan over them."""
    from .epoch_plan import crop_padding, epoch_plan

    rng = np.random.default_rng(SEED)
    images = rng.integers(0, 256, (num_images, INPUT_SIZE, INPUT_SIZE, arch.INPUT_CHANNELS), dtype=np.uint8)
    labels = rng.integers(0, options.num_classes, num_images)
    plan = epoch_plan(num_images, options.batch_size, crop_padding(INPUT_SIZE), True, SEED, 0)
    return images, labels, plan


def bench_torch_input(options: Options) -> Result:
    from .epoch_plan import crop_padding
    from .train_torch import training_batch

    device = torch.device(options.device)
    images, labels, plan = input_data(options, options.batch_size * (options.warmup + options.steps))
    images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    labels = torch.from_numpy(labels).to(device)
    cuda = device.type == "cuda"
    steps = iter(range(plan.steps))

    def make_batch():
        training_batch(images, labels, plan, next(steps), crop_padding(INPUT_SIZE), options.image_size, cuda)

    synchronize = torch.cuda.synchronize if cuda else lambda: None
    rate = images_per_second(make_batch, options, synchronize)
    return Result("torch-input", f"input only: {INPUT_SIZE}px uint8 on the device → {options.image_size}px", "ok", rate)


def bench_keras_input(options: Options) -> Result:
    if import_keras() is None:
        return Result("keras-input", status="not installed")
    from .epoch_plan import crop_padding
    from .train_keras import training_batches

    images, labels, plan = input_data(options, options.batch_size * (options.warmup + options.steps))
    batches = iter(training_batches(images, labels, [plan], crop_padding(INPUT_SIZE), options.image_size))
    rate = images_per_second(lambda: next(batches)[0].numpy(), options)
    return Result("keras-input", f"input only: {INPUT_SIZE}px uint8 in tf.data → {options.image_size}px", "ok", rate)


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


def bench_keras(name: str, options: Options) -> Result:
    keras = import_keras()
    if keras is None:
        return Result(name, status="not installed")
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
    return Result(name, settings, "ok", train, infer)


def run_model(name: str, options: Options) -> Result:
    benches = {"torch": bench_torch, "torch-fp32": bench_torch_fp32, "timm": bench_timm,
               "torch-input": bench_torch_input, "keras-input": bench_keras_input}
    try:
        if name in benches:
            return benches[name](options)
        return bench_keras(name, options)
    except torch.cuda.OutOfMemoryError:
        return Result(name, status="out of memory")
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def add_ratios(results: list[Result]) -> None:
    """Each row's speed divided by its framework's reference row, when both ran."""
    by_name = {r.model: r for r in results if r.status == "ok"}
    for result in results:
        reference = by_name.get(REFERENCE.get(result.model))
        if result.status == "ok" and reference:
            result.reference = reference.model
            result.train_ratio = result.train_images_per_s / reference.train_images_per_s
            if result.infer_images_per_s is not None:
                result.infer_ratio = result.infer_images_per_s / reference.infer_images_per_s


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
    device = f"CPU {cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    if hasattr(os, "getloadavg"):  # other work on the machine skews every number, torch's most
        device += f", load {os.getloadavg()[0]:.1f}"
    if options.device == "cuda":
        device += f"; GPU {torch.cuda.get_device_name()}"
    return (
        f"{device} | torch {torch.__version__}, tensorflow {version('tensorflow')}, "
        f"keras {version('keras')}, timm {version('timm')} | image {options.image_size}, "
        f"batch {options.batch_size}, steps {options.steps}, warm-up {options.warmup}"
    )


COLUMNS = ("model", "settings", "train img/s", "infer img/s", "vs", "train ×", "infer ×")
NUMERIC = (False, False, True, True, False, True, True)


def table_rows(results: list[Result]) -> list[tuple[str, ...]]:
    def number(value, fmt):
        return "" if value is None else format(value, fmt)

    return [
        (
            r.model,
            r.settings if r.status == "ok" else r.status,
            number(r.train_images_per_s, ".1f"),
            number(r.infer_images_per_s, ".1f"),
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
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None,
                        help="default: all (torch-fp32 on CUDA only)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    args = parser.parse_args(argv)

    for name, minimum in (("image_size", arch.MIN_INPUT_SIZE), ("batch_size", 1), ("steps", 1),
                          ("warmup", 0), ("num_classes", 1)):
        if getattr(args, name) < minimum:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be at least {minimum}, got {getattr(args, name)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA device")
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.models is None:
        args.models = [m for m in MODELS if m != "torch-fp32" or device == "cuda"]
    options = Options(args.image_size, args.batch_size, args.steps, args.warmup, args.num_classes, device)
    return args, options


def main(argv=None) -> int:
    args, options = parse_args(argv)
    if options.device == "cuda":
        torch.backends.cudnn.benchmark = True  # the warm-up steps pay for the tuning
    results = [run_model(name, options) for name in args.models]
    add_ratios(results)
    machine = machine_line(options)
    print(machine)
    print(format_table(results, markdown=args.markdown))
    if args.json:
        context = {"machine": machine, **asdict(options)}
        with open(args.json, "w") as f:
            json.dump([{**asdict(r), **context} for r in results], f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
