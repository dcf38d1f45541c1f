"""Training either Xception with the paper's recipe, from Python.

``train(config, out)`` runs (or continues) a run in the folder ``out``, in
the framework ``config`` names (``train_keras`` or ``train_torch``); ``runs``
says what the folder holds. ``python -m xception_common.train`` is the same
from the command line.
"""

import importlib
import json
import os
import re
from pathlib import Path

from . import distributed, runs
from .data import BUILT_IN
from .epoch_plan import steps_per_epoch
from .runs import CHECKPOINTS, TrainConfig, check_run_dir

STREAM_ABOVE = 0.25  # "auto" streams data whose decoded images would take more of the memory than this


def load_data(config: TrainConfig):
    """The data set of ``config``: a ``data.Dataset`` in memory, at its own
    size when its images share one (the pipelines resize each batch), else
    resized to ``image_size``; or, when it ``streams``, its ``data.ImageFiles``."""
    from . import data

    data.check_source(config.data)
    if config.data_loading != "memory" and config.data not in data.BUILT_IN:
        files = data.list_images(config.data, subset=config.subset)
        if streams(config, data.decoded_bytes(files)):
            return files
    return data.load(config.data, subset=config.subset, resize_mixed_to=config.image_size)


def streams(config: TrainConfig, decoded_bytes: int, memory_bytes: int | None = None) -> bool:
    """Whether a run streams its folder or zip of images: with
    ``data_loading`` "stream", or with "auto" when the decoded images would
    take more than ``STREAM_ABOVE`` of this machine's memory (``memory_bytes``,
    by default its physical memory)."""
    if config.data_loading != "auto":
        return config.data_loading == "stream"
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return decoded_bytes > STREAM_ABOVE * memory_bytes


def worker_data_error(error: Exception):
    """The ``data.DataError`` that a process or thread decoding streamed
    images raised (a DataLoader worker, a tf.data function), as a DataError
    of its own message; the framework re-raises it in the training loop
    wrapped in its own error, with the worker's traceback as text. None when
    ``error`` carries none."""
    from .data import DataError

    found = re.findall(r"xception_common\.data\.DataError: (.+)", str(error))
    return DataError(found[-1].strip()) if found else None


def check_fits(config: TrainConfig, dataset) -> None:
    """DataError, before a run writes anything, when its training images
    cannot fill one batch."""
    from .data import DataError

    count = len(dataset.y_train)
    if steps_per_epoch(count, config.batch_size) == 0:
        raise DataError(f"batch size {config.batch_size} is larger than the {count} training images of {config.data}"
                        f"{f' (subset {config.subset})' if config.subset else ''}; use a batch size of at most {count}")


def check_workers(config: TrainConfig, workers: int | None) -> None:
    """ValueError unless ``workers`` is None or, for PyTorch, a whole number >= 0
    for data that may be streamed (not a built-in set, not ``data_loading`` memory)."""
    if workers is not None and (config.framework != "torch" or isinstance(workers, bool)
                                or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"--workers is a whole number >= 0 for the torch framework's streamed data, "
                         f"got {workers!r} for {config.framework}")
    if workers is not None and (config.data in BUILT_IN or config.data_loading == "memory"):
        why = f"{config.data} is loaded whole" if config.data in BUILT_IN else "--data-loading memory loads it whole"
        raise ValueError(f"--workers is for streamed data, and {why}: no worker would start")


def check_device(config: TrainConfig, device=None):
    """The trainer module of ``config``'s framework, once it has checked that
    this process can train ``config`` on ``device`` (None: its default);
    ValueError, saying what is allowed, when not."""
    framework = importlib.import_module(f".train_{config.framework}", __package__)
    framework.check_device(config, device)
    return framework


def train(config: TrainConfig, out=None, resume: bool = False, dataset=None, progress: bool = True,
          device=None, workers: int | None = None) -> list[dict]:
    """Run (or continue) a training run and return its history.

    ``dataset`` is a ``data.Dataset`` already loaded (or ``data.ImageFiles``
    to stream); by default ``load_data`` loads it from ``config.data``. A
    streamed PyTorch run decodes its images in ``workers`` processes. With
    ``out=None`` nothing is written. The framework's ``fit`` keeps the history
    in its checkpoint and reports it after each save.
    On several PyTorch processes (``config.replicas``, started by torchrun),
    each one calls this, and the first one alone checks and writes ``out``.
    """
    config.check()
    check_workers(config, workers)
    place = distributed.place_for(config.framework, config.replicas)
    framework = check_device(config, device)  # a device it cannot use is refused before anything is written
    out = Path(out) if out is not None else None
    writes = out is not None and place.writes  # on several processes, the first one alone writes
    if writes:
        finished = check_run_dir(config, out, resume)
    if dataset is None:
        dataset = load_data(config)
    check_fits(config, dataset)
    if writes:
        out.mkdir(parents=True, exist_ok=True)
        runs.write_json(out / "config.json", runs.config_record(config))
    checkpoint = out / CHECKPOINTS[config.framework] if out is not None else None

    def saved(history):
        if writes:
            runs.write_json(out / "history.json", history)

    earlier = []  # checkpoints of earlier versions of this package kept no history
    if out is not None and resume and (out / "history.json").exists():
        earlier = json.loads((out / "history.json").read_text())
    if writes and finished < config.epochs:  # its predictions are of weights that training further replaces
        (out / runs.PREDICTIONS).unlink(missing_ok=True)
    options = {"workers": workers} if workers is not None else {}
    try:
        history = framework.fit(config, dataset, checkpoint, saved, earlier, progress=progress, device=device,
                                **options)
    except Exception as error:
        raised = worker_data_error(error)
        if raised is None:
            raise
        raise raised from None
    saved(history)  # also when a resumed run had nothing left to do
    return history
