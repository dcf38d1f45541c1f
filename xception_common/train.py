"""Train either Xception with the paper's recipe, or the CIFAR one, from the command line.

    python -m xception_common.train --framework {keras,torch} --data {cifar10,digits,PATH}
        --epochs N --image-size S --batch-size B [--recipe {paper,cifar}] [--subset N] [--seed N]
        [--ema-decay D] [--bn-batches N] [--precision P] [--compile-mode M] [--replicas N]
        [--sync-batch-norm] [--data-loading L] [--workers N]
        [--no-residual] [--intermediate-activation A] [--segment-size S] --out DIR [--resume]
    torchrun --nproc_per_node N -m xception_common.train --framework torch ...   (N processes, ``distributed``)

DIR receives ``config.json`` (the options), the framework's checkpoint and
``history.json``, both written after every epoch (``runs`` says what they
hold). ``--resume`` continues after the last finished epoch with the weights,
optimizer, schedule, averaged weights, random state and history it had; only
``--epochs`` may change. A DIR that already holds a run is never overwritten.
The Python interface is ``training.train``.
"""

import argparse
import sys
from pathlib import Path

from . import architecture as arch
from . import distributed, recipe
from .runs import (
    COMPILE_MODES,
    DATA_LOADINGS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_IMAGE_SIZE,
    FRAMEWORKS,
    PRECISIONS,
    TrainConfig,
    check_run_dir,
)
from .seeding import MAX_SEED
from .training import check_device, check_workers, train


def folder(text: str) -> Path:
    """``--out``'s value: a folder's path; an empty one would name the current folder unseen."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty path")
    return Path(text)


def parse_args(argv=None) -> tuple[TrainConfig, Path, bool, int | None]:
    parser = argparse.ArgumentParser(
        prog="python -m xception_common.train",
        description="Train Xception with the paper's recipe: SGD, momentum 0.9, "
        "learning rate 0.045 x 0.94 every 2 epochs, weight decay 1e-5, dropout 0.5, Polyak averaging.",
    )
    parser.add_argument("--framework", required=True, choices=FRAMEWORKS)
    parser.add_argument("--data", required=True, help="cifar10 (downloads), digits (bundled), "
                        "or a folder/.zip with train/<class>/ and test/<class>/ images")
    parser.add_argument("--epochs", required=True, type=int)
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                        help=f"side in pixels, >= {arch.MIN_INPUT_SIZE} (default {DEFAULT_IMAGE_SIZE})")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"the global batch, split evenly over the replicas (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--data-loading", choices=DATA_LOADINGS, default="auto",
                        help="a folder or .zip of images: memory (decode all first), stream (decode each batch as "
                        "training needs it: in DataLoader worker processes for PyTorch, on tf.data's threads for "
                        "Keras) or auto (default: stream when the decoded "
                        "images would take more than a quarter of this machine's memory)")
    parser.add_argument("--workers", type=int,
                        help="PyTorch, streamed data: processes that decode images (default: the cores but one, "
                        "at most 8)")
    parser.add_argument("--subset", type=int, help="use only the first N training and N test images (from a "
                        "folder or .zip, taken in turn from each class)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the initial weights, the batches' order and augmentation, and dropout: "
                        f"0 to {MAX_SEED} (default 0)")
    parser.add_argument("--ema-decay", type=float, default=recipe.EMA_DECAY,
                        help=f"Polyak averaging rate (default {recipe.EMA_DECAY})")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="mixed precision to compute in (default auto: bfloat16 on a GPU that has it, "
                        "else float16 on a GPU, float32 on a CPU)")
    parser.add_argument("--bn-batches", type=int, default=recipe.BN_BATCHES,
                        help="training batches over which each evaluated model gets BatchNorm statistics of its own "
                        f"(default {recipe.BN_BATCHES}; 0: the live model's running statistics)")
    parser.add_argument("--recipe", choices=list(recipe.RECIPES), default="paper",
                        help="paper (default): the paper's ImageNet recipe; cifar: warm-up and cosine to zero, "
                        "for short runs on small data (config.json lists what it changes)")
    parser.add_argument("--no-residual", dest="residual", action="store_false",
                        help="train the variant without residual connections (the paper's Figure 9)")
    parser.add_argument("--intermediate-activation", choices=[a for a in arch.INTERMEDIATE_ACTIVATIONS if a],
                        help="an activation between depthwise and pointwise steps (the paper's Figure 10)")
    parser.add_argument("--segment-size", type=int, default=1,
                        help=f"channels per segment of the separable 3×3 step, one of {arch.SEGMENT_SIZES} "
                        "(default 1: depthwise)")
    parser.add_argument("--compile-mode", choices=COMPILE_MODES,
                        help="PyTorch: train through torch.compile in this mode (reduce-overhead replays each step "
                        "as CUDA graphs on a GPU); default: eagerly")
    parser.add_argument("--replicas", type=int,
                        help="Keras: train on this many replicas of the model, one per GPU (or CPU device where "
                        "there is no GPU), through tf.distribute.MirroredStrategy; PyTorch takes its replicas from "
                        "torchrun --nproc_per_node")
    parser.add_argument("--sync-batch-norm", action="store_true",
                        help="with several replicas: BatchNorm over the whole global batch rather than over each "
                        "replica's share (PyTorch's SyncBatchNorm, on GPUs only; Keras' synchronized "
                        "BatchNormalization)")
    parser.add_argument("--out", required=True, type=folder,
                        help="folder for config.json, history.json and checkpoints")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out after its last finished epoch")
    args = parser.parse_args(argv)
    try:
        place = distributed.place()  # torchrun's processes, or this one alone
        if args.replicas is not None and args.framework == "torch":
            raise ValueError("--replicas is for Keras; PyTorch runs one process per replica, started by "
                             "torchrun --nproc_per_node N")
        replicas = place.world_size if args.framework == "torch" else 1 if args.replicas is None else args.replicas
        config = TrainConfig(
            args.framework, args.data, args.epochs, args.image_size, args.batch_size,
            args.subset, args.seed, args.ema_decay, args.precision, args.bn_batches,
            args.residual, args.intermediate_activation, args.segment_size, args.recipe, args.compile_mode,
            replicas, args.sync_batch_norm, args.data_loading,
        )
        config.check()
        check_workers(config, args.workers)
        if place.writes:  # the others would find the folder it has begun to write
            check_run_dir(config, args.out, args.resume)
        check_device(config)
        from . import data

        data.check_source(config.data)
    except ValueError as error:
        parser.error(str(error))
    return config, args.out, args.resume, args.workers


def main(argv=None) -> int:
    from .data import DataError

    config, out, resume, workers = parse_args(argv)
    try:
        history = train(config, out, resume=resume, workers=workers)
    except DataError as error:  # found only on loading, e.g. no internet for cifar10
        print(f"python -m xception_common.train: error: {error}", file=sys.stderr)
        return 2
    last = history[-1]
    if distributed.place().writes:
        print(
            f"{config.framework}: {len(history)} epochs in {out}; test accuracy {last['val_accuracy']:.4f}, "
            f"with Polyak averaging {last['val_accuracy_ema']:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
