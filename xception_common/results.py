"""Histories of finished training runs, kept as files beside the notebooks.

A result file is JSON with two keys: ``run``, which names the framework,
machine, data, image size, batch size, epochs, averaging rate and command, and
``history``, the run's ``history.json``: one record per finished epoch.
"""

import json
from itertools import accumulate
from pathlib import Path

from .runs import RECORD_KEYS

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
