"""The committed histories of real runs, and the helpers that read them."""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from xception_common import recipe, results, runs
from xception_common.runs import RECORD_KEYS, TrainConfig

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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from conftest import tiny_dataset

    from xception_common.training import train

    out = tmp_path_factory.mktemp("run") / "run"
    dataset = tiny_dataset(n=12)
    train(TrainConfig("torch", "tiny", 1, image_size=71, batch_size=4, ema_decay=0.5, precision="float32",
                      recipe="cifar", seed=3), out, dataset=dataset, progress=False)
    return out, dataset


def test_export_writes_a_result_file_with_the_runs_options(finished_run, tmp_path):
    out, dataset = finished_run
    path = tmp_path / "results" / "tiny.json"
    results.export(out, path, "a 2-core CPU", "generated", "python -m ...", "tiny run", dataset=dataset)
    result = results.load(path)
    assert result["history"] == json.loads((out / "history.json").read_text())
    run = result["run"]
    assert (run["framework"], run["machine"], run["epochs"], run["recipe"], run["seed"]) == (
        "PyTorch", "a 2-core CPU", 1, "cifar", 3)
    assert run["recipe_deviations_from_the_paper"]["schedule"] == "cosine"
    assert (run["data"], run["data_source"]) == ("generated", "tiny")


def test_export_keeps_the_predicted_classes_and_the_images_the_live_model_gets_wrong(finished_run, tmp_path):
    out, dataset = finished_run
    path = tmp_path / "tiny.json"
    results.export(out, path, "cpu", "generated", "cmd", "tiny", dataset=dataset)
    kept = results.load_predictions(path)
    run = runs.load_predictions(out / runs.PREDICTIONS)  # the run's own probabilities
    np.testing.assert_array_equal(kept["labels"], dataset.y_test)
    assert kept["class_names"] == list(dataset.class_names)
    for model in ("live", "averaged"):
        np.testing.assert_array_equal(kept[model], run[model].argmax(1))
        with_flip = [np.argmax(a + b) for a, b in zip(run[model], run[f"{model}_flipped"])]
        np.testing.assert_array_equal(kept[f"{model}_with_flip"], with_flip)
    wrong = [i for i in range(len(dataset.y_test)) if run["live"][i].argmax() != dataset.y_test[i]]
    assert list(kept["example_index"]) == wrong[: results.EXAMPLES] and wrong  # an epoch leaves some wrong
    np.testing.assert_array_equal(kept["example_images"], dataset.x_test[wrong])
    np.testing.assert_allclose(kept["example_probabilities"], run["live"][wrong], atol=1e-3)


def test_export_replaces_nothing_and_refuses_other_test_labels(finished_run, tmp_path):
    out, dataset = finished_run
    path = tmp_path / "tiny.json"
    path.write_text("kept")
    with pytest.raises(FileExistsError, match="tiny.json exists"):
        results.export(out, path, "cpu", "generated", "cmd", "tiny", dataset=dataset)
    assert path.read_text() == "kept"
    other = dataclasses.replace(dataset, y_test=dataset.y_test[::-1].copy())
    with pytest.raises(ValueError, match="are not those .* was evaluated on"):
        results.export(out, tmp_path / "other.json", "cpu", "generated", "cmd", "tiny", dataset=other)
    assert not (tmp_path / "other.json").exists()


def test_export_takes_a_json_name_only_and_writes_nothing_otherwise(finished_run, tmp_path):
    out, dataset = finished_run
    with pytest.raises(ValueError, match=r"a result file's name ends in \.json .* got .*tiny\.npz"):
        results.export(out, tmp_path / "tiny.npz", "cpu", "generated", "cmd", "tiny", dataset=dataset)
    assert not list(tmp_path.iterdir())


def test_the_command_finds_images_that_moved_and_says_a_bad_run_folder_in_a_line(image_folder, tmp_path, capsys):
    from xception_common.training import train

    run = tmp_path / "run"
    train(TrainConfig("torch", str(image_folder), 1, image_size=71, batch_size=2, precision="float32"), run,
          progress=False)
    moved = image_folder.rename(tmp_path / "moved")
    argv = [str(run), str(tmp_path / "out" / "r.json"), "--machine", "cpu", "--data", "four images",
            "--command", "cmd", "--title", "t"]
    with pytest.raises(SystemExit) as exit_:
        results.main(argv)
    assert exit_.value.code == 2
    assert "give the images where they are now (--images" in capsys.readouterr().err
    assert results.main(argv + ["--images", str(moved)]) == 0
    labels = results.load_predictions(tmp_path / "out" / "r.json")["labels"]
    assert labels.tolist() == [0, 1, 0, 1]  # taken in turn from each class
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as exit_:
        results.main([str(tmp_path / "a_file"), str(tmp_path / "s.json")] + argv[2:])
    assert exit_.value.code == 2 and "a_file" in capsys.readouterr().err


def test_a_streamed_run_exports_its_mistakes_read_from_the_files(image_folder, tmp_path):
    from xception_common.training import train

    run = tmp_path / "run"
    train(TrainConfig("torch", str(image_folder), 1, image_size=71, batch_size=2, precision="float32",
                      data_loading="stream"), run, progress=False, workers=0)
    results.export(run, tmp_path / "r.json", "cpu", "four images", "cmd", "t")
    kept = results.load_predictions(tmp_path / "r.json")
    wrong = kept["example_index"]
    assert len(wrong) > 0  # one epoch on four images leaves mistakes to show
    assert kept["example_images"].shape == (len(wrong), 71, 71, 3) and kept["example_images"].dtype == np.uint8
    # image_folder's test images are plain colours (i · 50, 0, 0) in turn from each class: 0, 0, 50, 50.
    for index, image in zip(wrong, kept["example_images"]):
        assert (image == [(index // 2) * 50, 0, 0]).all()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda out: shutil.rmtree(out), "{out} is not a run's folder: it does not exist"),
        (lambda out: (out / "history.json").unlink(), "{out} has no history.json: its run has finished no epoch"),
        (lambda out: (out / "history.json").write_text('{"a": 1}'),
         "{out}/history.json is not a run's history: it should be a list of epochs, each with epoch, lr,"),
        (lambda out: (out / "history.json").write_text('[{"epoch": 0}]'),
         "{out}/history.json is not a run's history: .*; missing: lr, loss, accuracy, val_loss, val_accuracy,"),
        (lambda out: (out / "config.json").write_text('{"framework": "torch"}'),
         "{out}/config.json is not a training run's config.json: it has no data, epochs"),
        (lambda out: (out / runs.PREDICTIONS).write_bytes(b"not predictions"),
         r"cannot read {out}/predictions.npz \(.*\): it is damaged, or not the predictions that a finished run"),
    ],
    ids=["no folder", "no history", "history not a list", "history without its keys", "config of no run",
         "damaged predictions"],
)
def test_the_command_says_in_a_line_what_is_wrong_with_a_run_folder(finished_run, damage, message, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run[0], out)
    damage(out)
    argv = [str(out), str(tmp_path / "r.json"), "--machine", "cpu", "--data", "d", "--command", "c", "--title", "t"]
    with pytest.raises(SystemExit) as exit_:
        results.main(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(message.format(out=re.escape(str(out))), error), error
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.npz").exists()
