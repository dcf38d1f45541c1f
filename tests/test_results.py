"""The committed histories of real runs, and the helpers that read them."""

import json
from pathlib import Path

import pytest

from xception_common import recipe, results
from xception_common.runs import RECORD_KEYS

RESULT_FILES = sorted((Path(__file__).parent.parent / "notebooks" / "results").glob("*.json"))


def test_the_results_folder_holds_the_runs_the_notebook_shows():
    names = {path.name for path in RESULT_FILES}
    assert {"keras_cifar10-jpeg_71px.json", "torch_cifar10-jpeg_71px.json",
            "torch_cifar10-jpeg_128px.json", "torch_cifar10-jpeg_299px.json"} <= names


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda path: path.name)
def test_each_result_is_a_whole_run_with_the_papers_schedule(path):
    result = results.load(path)
    run, history = result["run"], result["history"]
    assert {"Keras": "keras", "PyTorch": "torch"}[run["framework"]] == path.name.split("_")[0]
    assert path.name.endswith(f"_{run['image_size']}px.json") and run["image_size"] >= 71
    assert run["epochs"] == len(history)
    assert [record["epoch"] for record in history] == list(range(len(history)))
    for record in history:
        assert record["lr"] == pytest.approx(recipe.learning_rate(record["epoch"]), rel=1e-6)
        for key in ("accuracy", "val_accuracy", "val_accuracy_ema"):
            assert 0.0 <= record[key] <= 1.0
        assert record["seconds"] > 0


def test_load_names_what_a_result_file_lacks(tmp_path):
    path = tmp_path / "run.json"
    run = {key: 1 for key in results.RUN_KEYS if key != "machine"}
    record = {key: 0.5 for key in RECORD_KEYS if key != "seconds"}
    path.write_text(json.dumps({"run": run, "history": [record]}))
    with pytest.raises(ValueError, match=r"lacks machine, history\[0\]\.seconds"):
        results.load(path)
    path.write_text(json.dumps({"run": {**run, "machine": "cpu"}, "history": []}))
    with pytest.raises(ValueError, match="lacks a history"):
        results.load(path)


def test_elapsed_and_last_within_follow_the_epoch_times():
    history = [{"epoch": 0, "seconds": 30.0}, {"epoch": 1, "seconds": 12.5}, {"epoch": 2, "seconds": 12.5}]
    assert results.elapsed(history) == [30.0, 42.5, 55.0]
    assert results.last_within(history, 29.9) is None
    assert results.last_within(history, 42.5)["epoch"] == 1
    assert results.last_within(history, 1e9)["epoch"] == 2
