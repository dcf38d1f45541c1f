"""Histories of finished training runs, kept as files beside the notebooks.

A result file is JSON with two keys: ``run``, which names the framework,
machine, data, image size, batch size, epochs, averaging rate and command, and
``history``, the run's ``history.json``: one record per finished epoch.

``export`` makes one from a run folder, with everything its ``config.json``
holds in ``run`` too (its ``data`` as ``data_source``, a file's name without its
folder, ``data`` being words), and, when the run kept its test predictions, a second
file beside it with the same name and ``.npz``: the test labels, the class
each final model predicts for each test image (``PREDICTED_CLASSES``), the
class names, and the first ``EXAMPLES`` test images the live model gets
wrong with its probabilities for them, so that a notebook can show its
mistakes without the data set. Classes rather than probabilities keep the
file small: about 100 KB for CIFAR-10's 10,000 test images, most of it the
example images.

    python -m xception_common.results RUN_DIR RESULT.json --machine M --data D --command C --title T [--images P]
"""

import argparse
import dataclasses
import json
from itertools import accumulate
from pathlib import Path

import numpy as np

from . import runs
from .runs import PREDICTIONS, RECORD_KEYS

FRAMEWORK_NAMES = {"keras": "Keras", "torch": "PyTorch"}
EXAMPLES = 32  # misclassified test images kept with the predictions
# The predicted classes an exported run keeps: each model on the test images as
# they are, and with test-time flipping (the mean of the probabilities of the
# image and its mirror image).
PREDICTED_CLASSES = ("live", "averaged", "live_with_flip", "averaged_with_flip")

RUN_KEYS = ("framework", "machine", "data", "image_size", "batch_size", "epochs", "ema_decay", "command", "title")


def load(path: str | Path) -> dict:
    """A result file, checked to hold every key above."""
    result = json.loads(Path(path).read_text())
    missing = [key for key in RUN_KEYS if key not in result.get("run", {})]
    missing += [f"history[{i}].{key}" for i, record in enumerate(result.get("history", []))
                for key in RECORD_KEYS if key not in record]
    if missing or not result.get("history"):
        raise ValueError(f"{path} is not a result file: it lacks {', '.join(missing) or 'a history'}")
    return result


def elapsed(history: list[dict]) -> list[float]:
    """Seconds from the start of the run to the end of each epoch."""
    return list(accumulate(record["seconds"] for record in history))


def last_within(history: list[dict], seconds: float) -> dict | None:
    """The last epoch finished within ``seconds`` of the start, or None."""
    finished = [record for record, end in zip(history, elapsed(history)) if end <= seconds]
    return finished[-1] if finished else None


def export(run_dir, path, machine: str, data: str, command: str, title: str, dataset=None,
           images: str | None = None) -> dict:
    """Write the result file ``path`` for the run in ``run_dir`` and, if the
    run kept predictions, ``path`` with suffix ``.npz`` (module docstring);
    ``dataset`` (a ``data.Dataset``, or ``data.ImageFiles`` streamed) gives
    the test images, by default loaded as the run loaded them, from
    ``images`` when given (where they are now). Returns the result. Refuses
    to replace a file."""
    run_dir, path = Path(run_dir), Path(path)
    if path.suffix != ".json":
        raise ValueError(f"a result file's name ends in .json (its .npz goes beside it), got {path}")
    predictions = run_dir / PREDICTIONS
    for target in (path, path.with_suffix(".npz")):
        if target.exists():
            raise FileExistsError(f"{target} exists; choose another name or remove it first")
    history = runs.load_run(run_dir)[1]  # RunError, naming the file, unless run_dir holds a run's history
    config = runs.saved_record(run_dir)
    result = {"run": config | {"framework": FRAMEWORK_NAMES[config["framework"]], "machine": machine, "data": data,
                               "data_source": Path(config["data"]).name, "epochs": len(history), "command": command,
                               "title": title},
              "history": history}
    if predictions.exists():
        saved = runs.load_predictions(predictions)
        if dataset is None:
            dataset = run_data(run_dir, images)
        if not np.array_equal(saved["labels"], dataset.y_test):
            raise ValueError(f"the test labels of {dataset.source} are not those {run_dir} was evaluated on")
        classes = {}
        for model in ("live", "averaged"):
            classes[model] = saved[model].argmax(1)
            classes[f"{model}_with_flip"] = (saved[model] + saved[f"{model}_flipped"]).argmax(1)
        wrong = np.flatnonzero(classes["live"] != saved["labels"])[:EXAMPLES]
        examples = examples_of(dataset, wrong, config["image_size"])
        path.parent.mkdir(parents=True, exist_ok=True)
        runs.atomic_write(path.with_suffix(".npz"), lambda partial: np.savez_compressed(
            partial, labels=saved["labels"].astype(np.int16), class_names=np.array(dataset.class_names),
            **{name: classes[name].astype(np.int16) for name in PREDICTED_CLASSES}, example_index=wrong,
            example_images=examples, example_probabilities=saved["live"][wrong].astype(np.float16)))
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.write_json(path, result)
    return result


def run_data(run_dir: Path, images: str | None = None):
    """The data of the run in ``run_dir`` as the run loaded it (in memory or
    streamed), from ``images`` when given; DataError saying how to point at
    the images when its recorded path no longer reaches them."""
    from .data import DataError
    from .training import load_data

    config = runs.load_run(run_dir)[0]
    try:
        return load_data(config if images is None else dataclasses.replace(config, data=images))
    except DataError as error:
        if images is not None:
            raise
        raise DataError(f"{error} (the data {run_dir / 'config.json'} records); give the images where they "
                        "are now (--images, or images=)") from error


def examples_of(dataset, indices, image_size: int) -> np.ndarray:
    """The test images at ``indices``: as held in memory, or read from a
    streamed data set's files at ``image_size``."""
    from . import data

    if not isinstance(dataset, data.ImageFiles):
        return dataset.x_test[indices]
    reader = data.ImageReader(dataset.source)
    images = [reader.read(dataset.test[i], image_size) for i in indices]
    return np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8)


def confusion_matrix(labels, predicted, classes: int) -> np.ndarray:
    """Counts of test images by true class (rows) and predicted class (columns)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    if labels.shape != predicted.shape:
        raise ValueError(f"one prediction per label: got {labels.shape} labels and {predicted.shape} predictions")
    for name, values in (("labels", labels), ("predictions", predicted)):
        if values.size and not (0 <= values.min() and values.max() < classes):
            raise ValueError(f"{name} must be classes 0 to {classes - 1}, got {values.min()} to {values.max()}")
    return np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def ordering(first, second) -> str:
    """How two groups of scores (one per seed) compare: "higher" when every
    score of ``first`` is above every score of ``second``, "lower" when every
    one is below, "overlapping" otherwise: the seeds' spread is larger than
    the difference."""
    if min(first) > max(second):
        return "higher"
    if max(first) < min(second):
        return "lower"
    return "overlapping"


def load_predictions(path) -> dict:
    """The ``.npz`` beside the result file ``path``: ``labels``, the classes of
    ``PREDICTED_CLASSES``, ``class_names``, ``example_index``,
    ``example_images`` and ``example_probabilities`` (of the live model)."""
    with np.load(Path(path).with_suffix(".npz")) as saved:
        kept = {name: saved[name].astype(np.int64) for name in ("labels", *PREDICTED_CLASSES, "example_index")}
        return kept | {"class_names": [str(name) for name in saved["class_names"]],
                       "example_images": saved["example_images"],
                       "example_probabilities": saved["example_probabilities"].astype(np.float32)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xception_common.results",
                                     description="Make a result file for the notebooks from a finished run's folder.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("path", type=Path, help="the result file to write (.json); its .npz goes beside it")
    for name, text in (("machine", "the machine the run trained on"), ("data", "the data, in words"),
                       ("command", "the command that trained it"), ("title", "a title for plots")):
        parser.add_argument(f"--{name}", required=True, help=text)
    parser.add_argument("--images", help="where the run's images are now, when the path its config.json "
                        "records (as it was typed, maybe relative) does not reach them from here")
    args = parser.parse_args(argv)
    try:
        export(args.run_dir, args.path, args.machine, args.data, args.command, args.title, images=args.images)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
