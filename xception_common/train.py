"""Train either Xception with the paper's recipe, from Python or the command line.

    python -m xception_common.train --framework {keras,torch} --data {cifar10,digits,PATH}
        --epochs N --image-size S --batch-size B [--subset N] [--seed N] [--precision P]
        --out DIR [--resume]

DIR receives ``config.json`` (the options), ``history.json`` (one record per
finished epoch: epoch, lr, loss, accuracy, val_loss, val_accuracy,
val_accuracy_ema, seconds) and the framework's checkpoint, written after every
epoch. ``--resume`` continues after the last finished epoch with the weights,
optimizer, schedule, averaged weights and random state it had; only
``--epochs`` may change. A DIR that already holds a run is never overwritten.
"""

import argparse
import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from . import architecture as arch
from . import recipe

FRAMEWORKS = ("keras", "torch")
DEFAULT_IMAGE_SIZE = 128
DEFAULT_BATCH_SIZE = 64
CHECKPOINTS = {"torch": "checkpoint.pt", "keras": "checkpoint.keras"}
# Mixed precision computes in the named type and keeps float32 weights.
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
NATIVE_BFLOAT16 = (8, 0)  # compute capability from which NVIDIA GPUs run bfloat16 (Ampere)


def auto_precision(capability: tuple[int, int] | None) -> str:
    """float32 on a CPU (``capability`` None), bfloat16 on a GPU that runs it
    natively, float16 (with loss scaling) on an older GPU such as the T4."""
    if capability is None:
        return "float32"
    return "bfloat16" if tuple(capability) >= NATIVE_BFLOAT16 else "float16"


@dataclass(frozen=True)
class TrainConfig:
    framework: str
    data: str
    epochs: int
    image_size: int = DEFAULT_IMAGE_SIZE
    batch_size: int = DEFAULT_BATCH_SIZE
    subset: int | None = None
    seed: int = 0
    ema_decay: float = recipe.EMA_DECAY
    precision: str = "auto"

    def compute_dtype(self, capability: tuple[int, int] | None) -> str:
        """The precision to train in on a GPU of this compute capability
        (None: a CPU); ``auto`` follows ``auto_precision``."""
        return auto_precision(capability) if self.precision == "auto" else self.precision

    def check(self) -> None:
        """Raise ValueError, saying what is allowed, for an impossible option."""
        if self.framework not in FRAMEWORKS:
            raise ValueError(f"framework must be one of {', '.join(FRAMEWORKS)}, got {self.framework!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.image_size < arch.MIN_INPUT_SIZE:
            raise ValueError(f"image size must be at least {arch.MIN_INPUT_SIZE} (Xception's minimum), got {self.image_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.subset is not None and self.subset < 1:
            raise ValueError(f"subset must be >= 1 images, got {self.subset}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


class RunError(ValueError):
    """The output folder cannot take this run (exists, or nothing to resume)."""


def read_history(out: Path) -> list[dict]:
    path = out / "history.json"
    return json.loads(path.read_text()) if path.exists() else []


def write_json(path: Path, value) -> None:
    """Write a whole file or nothing: a run stopped mid-write keeps the old one."""
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(value, indent=1) + "\n")
    partial.replace(path)


def check_run_dir(config: TrainConfig, out: Path, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one that is not there or was
    started with other options."""
    holds_run = out.is_dir() and any((out / name).exists() for name in ("history.json", "config.json", *CHECKPOINTS.values()))
    if not resume:
        if holds_run:
            raise RunError(f"{out} already holds a training run; pass --resume to continue it, or choose another --out")
        if out.exists() and not out.is_dir():
            raise RunError(f"{out} exists and is not a folder")
        return
    checkpoint = out / CHECKPOINTS[config.framework]
    if not checkpoint.exists() or not (out / "config.json").exists():
        raise RunError(f"nothing to resume: {out} has no {checkpoint.name} and config.json from an earlier run")
    saved = {f.name: f.default for f in fields(config)} | json.loads((out / "config.json").read_text())
    differing = [f.name for f in fields(config) if f.name != "epochs" and saved[f.name] != getattr(config, f.name)]
    if differing:
        details = ", ".join(f"{name}={saved.get(name)!r} (now {getattr(config, name)!r})" for name in differing)
        raise RunError(f"{out} was started with other options: {details}; only --epochs may change on --resume")


def load_data(config: TrainConfig):
    """The data set of ``config``, at its own size when its images share one
    (the pipelines resize each batch), else resized to ``image_size``."""
    from . import data

    data.check_source(config.data)
    try:
        return data.load(config.data, subset=config.subset)
    except data.MixedSizesError:
        return data.load(config.data, subset=config.subset, resize_to=config.image_size)


def train(config: TrainConfig, out=None, resume: bool = False, dataset=None, progress: bool = True, device=None) -> list[dict]:
    """Run (or continue) a training run and return its history.

    ``dataset`` is a ``data.Dataset`` already loaded; by default it is loaded
    from ``config.data``. With ``out=None`` nothing is written.
    """
    config.check()
    out = Path(out) if out is not None else None
    if out is not None:
        check_run_dir(config, out, resume)
    if dataset is None:
        dataset = load_data(config)
    history = read_history(out) if (out is not None and resume) else []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", asdict(config))

    def on_epoch_end(record):
        del history[record["epoch"]:]  # records after the checkpoint's epoch are redone
        history.append(record)
        if out is not None:
            write_json(out / "history.json", history)

    if config.framework == "torch":
        from . import train_torch as framework
    else:
        from . import train_keras as framework
    checkpoint = out / CHECKPOINTS[config.framework] if out is not None else None
    framework.fit(config, dataset, checkpoint, on_epoch_end, progress=progress, device=device)
    return history


def parse_args(argv=None) -> tuple[TrainConfig, Path, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m xception_common.train",
        description="Train Xception with the paper's recipe: SGD, momentum 0.9, "
        "learning rate 0.045 x 0.94 every 2 epochs, weight decay 1e-5, dropout 0.5, Polyak averaging.",
    )
    parser.add_argument("--framework", required=True, choices=FRAMEWORKS)
    parser.add_argument("--data", required=True, help="cifar10 (downloads), digits (bundled), or a folder/.zip with train/<class>/ and test/<class>/ images")
    parser.add_argument("--epochs", required=True, type=int)
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help=f"side in pixels, >= {arch.MIN_INPUT_SIZE} (default {DEFAULT_IMAGE_SIZE})")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--subset", type=int, help="use only the first N training and N test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ema-decay", type=float, default=recipe.EMA_DECAY, help=f"Polyak averaging rate (default {recipe.EMA_DECAY})")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="mixed precision to compute in (default auto: bfloat16 on a GPU that has it, "
                        "else float16 on a GPU, float32 on a CPU)")
    parser.add_argument("--out", required=True, type=Path, help="folder for config.json, history.json and checkpoints")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out after its last finished epoch")
    args = parser.parse_args(argv)
    config = TrainConfig(
        args.framework, args.data, args.epochs, args.image_size, args.batch_size,
        args.subset, args.seed, args.ema_decay, args.precision,
    )
    try:
        config.check()
        check_run_dir(config, args.out, args.resume)
        from . import data

        data.check_source(config.data)
    except ValueError as error:
        parser.error(str(error))
    return config, args.out, args.resume


def main(argv=None) -> int:
    from .data import DataError

    config, out, resume = parse_args(argv)
    try:
        history = train(config, out, resume=resume)
    except DataError as error:  # found only on loading, e.g. no internet for cifar10
        print(f"python -m xception_common.train: error: {error}", file=sys.stderr)
        return 2
    last = history[-1]
    print(
        f"{config.framework}: {len(history)} epochs in {out}; test accuracy {last['val_accuracy']:.4f}, "
        f"with Polyak averaging {last['val_accuracy_ema']:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
