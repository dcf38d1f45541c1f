"""A training run: its options and its folder.

A run's folder holds three files while it trains, and a fourth at its end:

* ``config.json``: the options (``TrainConfig``);
* the framework's checkpoint (``CHECKPOINTS``): weights, optimizer, schedule,
  averaged weights, random state, and the run's history, one record per
  finished epoch (``RECORD_KEYS``). It is the run's one source of truth;
* ``history.json``: the history again, as plain JSON for people and plots,
  written from the checkpoint's after every epoch;
* ``predictions.npz``: the test labels and the class probabilities the
  finished run gives them (``PREDICTED``), for confusion matrices and
  test-time flipping without the weights (``write_predictions``). Resuming a
  finished run writes it again; training it for more epochs removes it first,
  since those weights are then gone.

A folder is taken for a run's by its ``config.json`` (``saved_record``): a
``config.json`` that no run wrote is refused, never replaced.

Every file is written whole or not at all (``atomic_write``). The checkpoint
is replaced first, so a run stopped between the two writes still has its whole
history in the checkpoint, and resuming writes ``history.json`` anew from it;
the epochs a run has finished are read from its checkpoint
(``checkpoint_epochs``).
"""

import json
import os
import pickle
import zipfile
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np

from . import architecture as arch
from . import distributed, recipe
from .data import BUILT_IN
from .recipe import Recipe
from .seeding import FRAMEWORKS, MAX_SEED

DEFAULT_IMAGE_SIZE = 128
DEFAULT_BATCH_SIZE = 64
CHECKPOINTS = {"torch": "checkpoint.pt", "keras": "checkpoint.keras"}
KERAS_HISTORY_MEMBER = "history.json"  # the member of a .keras checkpoint that keeps the run's history
PREDICTIONS = "predictions.npz"
# The models whose test probabilities a finished run keeps, each with BatchNorm
# statistics of its own: the live and the averaged weights, on the test images
# as they are and mirrored left to right.
PREDICTED = ("live", "live_flipped", "averaged", "averaged_flipped")
RECORD_KEYS = ("epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy", "val_accuracy_ema", "seconds")
# Mixed precision computes in the named type and keeps float32 weights.
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
# How a folder or zip of images is read: whole into memory, streamed from
# its files as training needs them, or either, by its size (``training.streams``).
DATA_LOADINGS = ("auto", "memory", "stream")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
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
    bn_batches: int = recipe.BN_BATCHES
    # The paper's experimental variants of the model (architecture.Variant).
    residual: bool = True
    intermediate_activation: str | None = None
    segment_size: int = 1
    recipe: str = "paper"  # a name in recipe.RECIPES
    compile_mode: str | None = None  # PyTorch only: train through torch.compile in this mode; None: eagerly
    # Data parallelism (``distributed``): the copies of the model that train
    # on shares of each batch (PyTorch: the processes torchrun started; Keras:
    # the devices of a MirroredStrategy), and whether their BatchNorm layers
    # normalise over the whole global batch.
    replicas: int = 1
    sync_batch_norm: bool = False
    data_loading: str = "auto"  # one of DATA_LOADINGS

    def compute_dtype(self, capability: tuple[int, int] | None) -> str:
        """The precision to train in on a GPU of this compute capability
        (None: a CPU); ``auto`` follows ``auto_precision``."""
        return auto_precision(capability) if self.precision == "auto" else self.precision

    def variant(self) -> arch.Variant:
        """The model variant to train; the defaults are Xception."""
        return arch.Variant(self.residual, self.intermediate_activation, self.segment_size)

    def model_options(self) -> dict:
        """The variant as the keyword arguments both builders take (they are named as its fields)."""
        return asdict(self.variant())

    def training_recipe(self) -> Recipe:
        return recipe.RECIPES[self.recipe]

    def check(self) -> None:
        """Raise ValueError, saying what is allowed, for an impossible option."""
        if self.framework not in FRAMEWORKS:
            raise ValueError(f"framework must be one of {', '.join(FRAMEWORKS)}, got {self.framework!r}")
        if not isinstance(self.data, str):
            raise ValueError(f"data must be a string: a name ({', '.join(BUILT_IN)}) or a path, got {self.data!r}")
        arch.check_whole("epochs", self.epochs, 1)
        arch.check_whole("image size", self.image_size, arch.MIN_INPUT_SIZE, why="Xception's minimum")
        arch.check_whole("batch size", self.batch_size, 1)
        if self.subset is not None:
            arch.check_whole("subset", self.subset, 1)
        arch.check_whole("seed", self.seed, 0, MAX_SEED)
        arch.check_fraction("ema_decay", self.ema_decay)
        arch.check_whole("bn_batches", self.bn_batches, 0)
        self.variant()  # ValueError for a variant that cannot be built
        if self.recipe not in recipe.RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(recipe.RECIPES)}, got {self.recipe!r}")
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be None or one of {', '.join(COMPILE_MODES)}, "
                             f"got {self.compile_mode!r}")
        if self.compile_mode is not None and self.framework != "torch":
            raise ValueError(f"compile_mode is for the torch framework (torch.compile), not {self.framework}; "
                             "Keras compiles its steps with XLA on a GPU already")
        arch.check_whole("replicas", self.replicas, 1)
        distributed.per_replica_batch(self.batch_size, self.replicas)
        if self.sync_batch_norm and self.replicas == 1:
            raise ValueError("sync_batch_norm needs several replicas (torchrun --nproc_per_node N, or --replicas N "
                             "for Keras, with N > 1); one replica normalises over the whole batch already")
        if self.data_loading not in DATA_LOADINGS:
            raise ValueError(f"data_loading must be one of {', '.join(DATA_LOADINGS)}, got {self.data_loading!r}")
        if self.data_loading == "stream" and self.data in BUILT_IN:
            raise ValueError(f"{self.data} is loaded whole; data_loading 'stream' reads a folder or .zip of images")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


class RunError(ValueError):
    """The output folder cannot take this run (exists, or nothing to resume)."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(partial)`` on a sibling file, then rename it to ``path``:
    a process stopped while writing leaves the old ``path`` as it was."""
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    write(partial)
    os.replace(partial, path)


def config_record(config: TrainConfig) -> dict:
    """What config.json holds: the options, and what the run's recipe sets
    otherwise than the paper's."""
    return asdict(config) | {"recipe_deviations_from_the_paper": recipe.deviations(config.training_recipe())}


def write_json(path: Path, value) -> None:
    atomic_write(path, lambda partial: partial.write_text(json.dumps(value, indent=1) + "\n"))


def saved_record(out: Path) -> dict:
    """What ``out/config.json`` holds, checked to be a run's record
    (``config_record``); RunError, naming the file, for one that cannot be
    read or that no run wrote."""
    path = Path(out) / "config.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(f"cannot read {path} ({first_line(error)})") from None
    except json.JSONDecodeError as error:
        raise RunError(f"{path} is not a training run's config.json: it is not JSON ({error})") from None
    required = [f.name for f in fields(TrainConfig) if f.default is MISSING]
    missing = required if not isinstance(record, dict) else [name for name in required if name not in record]
    if missing:
        raise RunError(f"{path} is not a training run's config.json: it has no {', '.join(missing)}")
    if record["framework"] not in FRAMEWORKS:
        raise RunError(f"{path} is not a training run's config.json: its framework is {record['framework']!r}, "
                       f"not one of {', '.join(FRAMEWORKS)}")
    return record


def check_run_dir(config: TrainConfig, out: Path, resume: bool) -> int:
    """Refuse to overwrite a run or a ``config.json`` that no run wrote, or
    to resume a run that is not there, was started with other options or has
    run further than ``config.epochs``. A folder holding only the
    ``config.json`` of a run that finished no epoch (stopped, or failed, in
    its first) starts again, with or without ``resume``. Returns the epochs
    the run in ``out`` has finished (0 for one that starts)."""
    out = Path(out)
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                raise RunError(f"{parent} exists and is not a folder; --out must be a folder")
            break
    files = ("history.json", PREDICTIONS, *CHECKPOINTS.values())
    holds_run = out.is_dir() and any((out / name).exists() for name in files)
    if not resume:
        if holds_run:
            raise RunError(f"{out} already holds a training run; pass --resume to continue it, or choose another --out")
        if (out / "config.json").exists():
            try:  # a stopped run's, which starts again; anything else stays
                saved_record(out)
            except RunError as error:
                raise RunError(f"{error}; choose another --out") from None
        return 0
    checkpoint = out / CHECKPOINTS[config.framework]
    others = [name for name, other in CHECKPOINTS.items() if name != config.framework and (out / other).exists()]
    if others:
        raise RunError(f"nothing to resume with {config.framework}: {out} holds a {others[0]} run")
    if not (out / "config.json").exists():
        missing = " and no ".join(path.name for path in (out / "config.json", checkpoint) if not path.exists())
        raise RunError(f"nothing to resume: {out} has no {missing} from an earlier run")
    try:
        record = saved_record(out)
    except RunError as error:
        raise RunError(f"nothing to resume: {error}") from None
    saved = {f.name: f.default for f in fields(config)} | record
    differing = [f.name for f in fields(config) if f.name != "epochs" and saved[f.name] != getattr(config, f.name)
                 and not (f.name == "data" and same_data(saved["data"], config.data))]
    if differing:
        details = ", ".join(f"{name}={saved.get(name)!r} (now {getattr(config, name)!r})" for name in differing)
        moved = "data" in differing and not Path(str(saved["data"])).exists() and saved["data"] not in BUILT_IN
        hint = (f" ({saved['data']!r} is not there any more: put it, or a link to it, back at that path)"
                if moved else "")
        raise RunError(f"{out} was started with other options: {details}; only --epochs may change on --resume"
                       f"{hint}")
    if not checkpoint.exists():
        if holds_run:  # a run's history or predictions without its checkpoint: it would start over
            found = ", ".join(name for name in files if (out / name).exists())
            raise RunError(f"nothing to resume: {out} holds {found} but no {checkpoint.name}; choose another --out")
        return 0  # its run finished no epoch (stopped in its first): resuming it starts it
    if config.training_recipe().schedule == "cosine" and saved["epochs"] != config.epochs:
        raise RunError(f"{out} was started for {saved['epochs']} epochs, and the {config.recipe} recipe's learning "
                       f"rate anneals over exactly those; resume it with --epochs {saved['epochs']}")
    finished = checkpoint_epochs(checkpoint)
    if finished is None:  # a Keras checkpoint from before checkpoints kept their history
        history = out / "history.json"
        finished = len(json.loads(history.read_text())) if history.exists() else 0
    if finished > config.epochs:
        raise RunError(f"{out} has finished {finished} epochs; resume it with --epochs {finished} or more")
    return finished


def same_data(saved, now) -> bool:
    """Whether two ``--data`` values name the same data: equal, or two paths
    to one file or folder (relative and absolute, say)."""
    try:
        return saved == now or os.path.samefile(saved, now)
    except (OSError, TypeError, ValueError):
        return False


def checkpoint_epochs(checkpoint: Path) -> int | None:
    """The epochs that the run whose checkpoint this is has finished, read
    from the checkpoint: ``history.json`` is written after it, so a run
    stopped between the two writes has one epoch more in its checkpoint.
    None for a Keras checkpoint from before checkpoints kept their history."""
    damaged = "it is damaged or not a checkpoint of this package: choose another --out"
    if not zipfile.is_zipfile(checkpoint):  # both frameworks' checkpoints are zip archives
        raise RunError(f"cannot read {checkpoint}: it is not a zip archive; {damaged}")
    if checkpoint.suffix == ".keras":
        try:
            history = keras_checkpoint_history(checkpoint)
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise RunError(f"cannot read {checkpoint} ({first_line(error)}); {damaged}") from None
        return None if history is None else len(history)
    import torch

    try:  # mapped rather than read: only the record of what it holds is loaded
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["epochs_done"])
    except (OSError, EOFError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as error:
        raise RunError(f"cannot read {checkpoint} ({first_line(error)}); {damaged}") from None


def first_line(error: Exception) -> str:
    """An error's type and the first line of its message (PyTorch's run to paragraphs)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def keras_checkpoint_history(checkpoint: Path) -> list[dict] | None:
    """The history kept in a ``.keras`` checkpoint; None in one from before they kept it."""
    with zipfile.ZipFile(checkpoint) as archive:
        if KERAS_HISTORY_MEMBER not in archive.namelist():
            return None
        return json.loads(archive.read(KERAS_HISTORY_MEMBER))


def load_run(out) -> tuple[TrainConfig, list[dict]]:
    """The options and the history of the run in folder ``out``; RunError,
    naming the file, where ``out`` is no run folder or its files are not a
    run's."""
    out = Path(out)
    if not out.is_dir():
        raise RunError(f"{out} is not a run's folder: {'it is not a folder' if out.exists() else 'it does not exist'}")
    saved = saved_record(out)
    config = TrainConfig(**{f.name: saved[f.name] for f in fields(TrainConfig) if f.name in saved})
    path = out / "history.json"
    if not path.exists():
        raise RunError(f"{out} has no history.json: its run has finished no epoch")
    try:
        history = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"cannot read {path} ({first_line(error)})") from None
    records = history if isinstance(history, list) else []
    missing = [key for key in RECORD_KEYS if any(not isinstance(record, dict) or key not in record
                                                 for record in records)]
    if not records or missing:
        raise RunError(f"{path} is not a run's history: it should be a list of epochs, each with "
                       f"{', '.join(RECORD_KEYS)}" + (f"; missing: {', '.join(missing)}" if missing else ""))
    return config, history


def write_predictions(path: Path, labels, probabilities: dict) -> None:
    """Save the test ``labels`` and each model's class ``probabilities``
    ({name in ``PREDICTED``: array of images × classes}), compressed, as int32
    labels and the float32 probabilities the evaluation gave (a result file
    keeps only the predicted classes: ``results.export``)."""
    if set(probabilities) != set(PREDICTED):
        raise ValueError(f"probabilities must be given for {', '.join(PREDICTED)}, got {', '.join(probabilities)}")
    labels = np.asarray(labels)
    arrays = {name: np.asarray(probabilities[name], dtype=np.float32) for name in PREDICTED}
    if any(array.shape != (len(labels), arrays["live"].shape[1]) for array in arrays.values()):
        raise ValueError(f"each model needs one row of probabilities per test label ({len(labels)}), got shapes "
                         f"{', '.join(str(array.shape) for array in arrays.values())}")
    atomic_write(path, lambda partial: np.savez_compressed(partial, labels=labels.astype(np.int32), **arrays))


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    """What ``write_predictions`` saved: ``labels`` and one float32 array of
    probabilities per name in ``PREDICTED``."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {"labels": saved["labels"].astype(np.int64)} | {name: saved[name].astype(np.float32)
                                                                    for name in PREDICTED}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise RunError(f"cannot read {path} ({first_line(error)}): it is damaged, or not the predictions "
                       f"that a finished run writes ({', '.join(('labels', *PREDICTED))})") from None
