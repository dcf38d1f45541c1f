"""A run's folder and options: what is refused before anything is written, and
what a run stopped in its first epoch leaves behind."""

import dataclasses
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from xception_common import runs
from xception_common.runs import CHECKPOINTS, PREDICTIONS, RunError, TrainConfig, check_run_dir
from xception_common.seeding import seed_all
from xception_common.train import main

TRAIN = ["--framework", "torch", "--epochs", "1", "--image-size", "71", "--batch-size", "2"]


def exit_code(argv):
    """main's exit code, returned or raised (argparse's errors exit 2 through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(epochs=1.5), "epochs must be a whole number >= 1, got 1.5"),
        (dict(epochs=None), "epochs must be a whole number >= 1, got None"),
        (dict(batch_size=4.0), "batch size must be a whole number >= 1, got 4.0"),
        (dict(image_size="128"), r"image size must be a whole number >= 71 \(Xception's minimum\), got '128'"),
        (dict(image_size=71.5), "image size must be a whole number >= 71"),
        (dict(subset=2.5), "subset must be a whole number >= 1, got 2.5"),
        (dict(seed=2**32), "seed must be a whole number from 0 to 4294967295, got 4294967296"),
        (dict(seed=True), "seed must be a whole number"),
        (dict(ema_decay="0.9"), r"ema_decay must be a number in \[0, 1\), got '0.9'"),
        (dict(ema_decay=1.0), r"ema_decay must be a number in \[0, 1\), got 1.0"),
        (dict(data=Path("cifar10")), r"data must be a string: a name \(cifar10, digits\) or a path, got PosixPath"),
    ],
)
def test_options_of_the_wrong_type_or_range_are_refused_saying_what_is_allowed(options, message):
    config = TrainConfig(**{"framework": "torch", "data": "digits", "epochs": 1} | options)
    with pytest.raises(ValueError, match=message):
        config.check()


def test_seeds_are_checked_and_one_framework_may_be_named_alone():
    with pytest.raises(ValueError, match="seed must be a whole number from 0 to 4294967295, got -1"):
        seed_all(-1)
    seed_all(0, "torch")  # a name, not its letters
    with pytest.raises(ValueError, match=r"cannot seed \['jax'\]"):
        seed_all(0, "jax")


def test_a_batch_larger_than_the_training_set_exits_2_and_writes_nothing(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    argv = TRAIN[:-1] + ["8", "--data", str(image_folder), "--out", str(out)]
    assert exit_code(argv) == 2
    # image_folder holds 2 classes of 2 training images
    assert "batch size 8 is larger than the 4 training images" in capsys.readouterr().err
    assert not out.exists()
    assert exit_code(TRAIN + ["--data", str(image_folder), "--out", str(out)]) == 0  # the corrected command runs


def test_a_folder_left_by_a_run_stopped_in_its_first_epoch_starts_again(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    argv = TRAIN + ["--data", str(image_folder), "--out", str(out)]
    config = TrainConfig("torch", str(image_folder), 1, 71, 2)
    for resume in ([], ["--resume"]):  # "continue it" or "run it": it starts, either way
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        runs.write_json(out / "config.json", runs.config_record(config))  # what a run writes before its first epoch
        assert exit_code(argv + resume) == 0
        assert len(json.loads((out / "history.json").read_text())) == 1 and (out / CHECKPOINTS["torch"]).exists()
    shutil.rmtree(out)
    out.mkdir()
    runs.write_json(out / "config.json", runs.config_record(dataclasses.replace(config, batch_size=4)))
    assert exit_code(argv + ["--resume"]) == 2
    assert "was started with other options: batch_size=4 (now 2)" in capsys.readouterr().err


def test_predictions_in_the_folder_mark_a_run_and_are_kept(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / PREDICTIONS).write_bytes(b"someone's predictions")
    assert exit_code(TRAIN + ["--data", str(image_folder), "--out", str(out)]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert (out / PREDICTIONS).read_bytes() == b"someone's predictions"


def test_an_out_folder_below_a_file_is_refused_before_the_data_is_read(tmp_path, capsys):
    (tmp_path / "a_file").write_text("kept")
    assert exit_code(TRAIN + ["--data", "no/such/data", "--out", str(tmp_path / "a_file" / "run")]) == 2
    assert f"{tmp_path / 'a_file'} exists and is not a folder" in capsys.readouterr().err
    assert (tmp_path / "a_file").read_text() == "kept"


def write_checkpoint(path: Path, framework: str, epochs: int | None) -> None:
    """A checkpoint as each framework's ``fit`` saves it, holding only what
    ``check_run_dir`` reads of it: the epochs it finished (``None``: a Keras
    checkpoint from before checkpoints kept their history)."""
    history = [{"epoch": e} for e in range(epochs or 0)]
    if framework == "torch":
        torch.save({"epochs_done": epochs, "history": history}, path)
        return
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.weights.h5", b"")
        if epochs is not None:
            archive.writestr(runs.KERAS_HISTORY_MEMBER, json.dumps(history))


def finished_run(out: Path, framework: str, epochs: int) -> TrainConfig:
    """A folder as a finished run of ``epochs`` leaves it."""
    config = TrainConfig(framework, "digits", epochs)
    out.mkdir()
    runs.write_json(out / "config.json", runs.config_record(config))
    runs.write_json(out / "history.json", [{"epoch": e} for e in range(epochs)])
    write_checkpoint(out / CHECKPOINTS[framework], framework, epochs)
    return config


def test_a_run_is_not_resumed_to_fewer_epochs_than_it_finished(tmp_path):
    config = finished_run(tmp_path / "run", "torch", 2)
    with pytest.raises(RunError, match="has finished 2 epochs; resume it with --epochs 2 or more"):
        check_run_dir(TrainConfig("torch", "digits", 1), tmp_path / "run", resume=True)
    check_run_dir(config, tmp_path / "run", resume=True)  # the same length: accepted (predictions written again)
    check_run_dir(TrainConfig("torch", "digits", 3), tmp_path / "run", resume=True)


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_the_epochs_finished_are_read_from_the_checkpoint_which_history_json_can_lag(framework, tmp_path):
    # Stopped between writing the checkpoint of epoch 2 and history.json: the folder's history says 1.
    finished_run(tmp_path / "run", framework, 2)
    runs.write_json(tmp_path / "run" / "history.json", [{"epoch": 0}])
    with pytest.raises(RunError, match="has finished 2 epochs; resume it with --epochs 2 or more"):
        check_run_dir(TrainConfig(framework, "digits", 1), tmp_path / "run", resume=True)
    check_run_dir(TrainConfig(framework, "digits", 2), tmp_path / "run", resume=True)


def test_a_keras_checkpoint_without_its_history_counts_the_epochs_of_history_json(tmp_path):
    finished_run(tmp_path / "run", "keras", 2)
    write_checkpoint(tmp_path / "run" / CHECKPOINTS["keras"], "keras", None)
    with pytest.raises(RunError, match="has finished 2 epochs"):
        check_run_dir(TrainConfig("keras", "digits", 1), tmp_path / "run", resume=True)


def damage(checkpoint: Path, how: str) -> None:
    if how == "not a zip":
        checkpoint.write_bytes(b"not a checkpoint")
    elif how == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    else:  # a zip archive, but not what the framework wrote
        with zipfile.ZipFile(checkpoint, "w") as archive:
            archive.writestr(runs.KERAS_HISTORY_MEMBER, "{not json")


@pytest.mark.parametrize(
    "framework, how, message",
    [
        ("torch", "not a zip", "it is not a zip archive"),
        ("keras", "not a zip", "it is not a zip archive"),
        ("torch", "truncated", "it is not a zip archive"),
        ("torch", "another zip", r"\(RuntimeError: [^\n]*\)"),
        ("keras", "another zip", r"\(JSONDecodeError: [^\n]*\)"),
    ],
)
def test_a_damaged_checkpoint_is_named_in_one_line_and_left_as_it_is(framework, how, message, tmp_path):
    config = finished_run(tmp_path / "run", framework, 2)
    checkpoint = tmp_path / "run" / CHECKPOINTS[framework]
    damage(checkpoint, how)
    before = checkpoint.read_bytes()
    expected = rf"cannot read {checkpoint}.*{message}.*; it is damaged or not a checkpoint"
    with pytest.raises(RunError, match=expected) as raised:
        check_run_dir(config, tmp_path / "run", resume=True)
    assert "\n" not in str(raised.value)
    assert checkpoint.read_bytes() == before


def test_resuming_another_frameworks_run_names_that_framework(tmp_path):
    finished_run(tmp_path / "run", "torch", 1)
    with pytest.raises(RunError, match="nothing to resume with keras: .* holds a torch run"):
        check_run_dir(TrainConfig("keras", "digits", 2), tmp_path / "run", resume=True)


def test_a_run_without_its_checkpoint_is_not_started_over_on_resume(tmp_path):
    # A finished run whose checkpoint was deleted (say, to save space once exported).
    config = finished_run(tmp_path / "run", "torch", 2)
    (tmp_path / "run" / CHECKPOINTS["torch"]).unlink()
    (tmp_path / "run" / PREDICTIONS).write_bytes(b"kept")
    with pytest.raises(RunError, match=r"nothing to resume: .* holds history.json, predictions.npz but no checkpoint"):
        check_run_dir(config, tmp_path / "run", resume=True)



NOT_A_RUNS_CONFIG = {
    "not JSON": (b"{my settings", "it is not JSON"),
    "a list": (b"[1, 2]", "it has no framework, data, epochs"),
    "other settings": (b'{"my": "settings"}', "it has no framework, data, epochs"),
    "another framework": (b'{"framework": "jax", "data": "digits", "epochs": 1}', "its framework is 'jax'"),
}


@pytest.mark.parametrize("resume", [[], ["--resume"]], ids=["new run", "resume"])
@pytest.mark.parametrize("content, message", NOT_A_RUNS_CONFIG.values(), ids=NOT_A_RUNS_CONFIG)
def test_a_config_json_that_no_run_wrote_is_refused_in_a_line_and_kept(content, message, resume, image_folder,
                                                                       tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_bytes(content)
    assert exit_code(TRAIN + ["--data", str(image_folder), "--out", str(out), *resume]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{out / 'config.json'} is not a training run's config.json: {message}" in error
    assert error.endswith("choose another --out") if not resume else "error: nothing to resume: " in error
    assert (out / "config.json").read_bytes() == content
    assert [path.name for path in out.iterdir()] == ["config.json"]


def test_a_folder_named_config_json_is_refused_in_a_line(image_folder, tmp_path, capsys):
    (tmp_path / "mine" / "config.json").mkdir(parents=True)
    for resume in ([], ["--resume"]):
        assert exit_code(TRAIN + ["--data", str(image_folder), "--out", str(tmp_path / "mine"), *resume]) == 2
        assert f"cannot read {tmp_path / 'mine' / 'config.json'} (IsADirectoryError" in capsys.readouterr().err
    assert [path.name for path in (tmp_path / "mine").iterdir()] == ["config.json"]


def test_an_empty_out_is_refused_rather_than_taken_for_the_current_folder(image_folder, tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text("kept")
    assert exit_code(TRAIN + ["--data", str(image_folder), "--out", ""]) == 2
    assert "argument --out: must name a folder, got an empty path" in capsys.readouterr().err
    assert (tmp_path / "config.json").read_text() == "kept"


def test_training_a_finished_run_further_first_removes_its_predictions(tmp_path, monkeypatch):
    """predictions.npz belongs to the weights a run finished with: once it
    trains on, they are gone, and a run stopped before its new end must not
    keep predictions that its history and checkpoint no longer match."""
    from conftest import tiny_dataset

    from xception_common import train_torch
    from xception_common.training import train

    out, dataset = tmp_path / "run", tiny_dataset(n=8)
    config = TrainConfig("torch", "tiny", 1, image_size=71, batch_size=4, precision="float32")
    train(config, out, dataset=dataset, progress=False)
    assert (out / PREDICTIONS).exists()

    def stopped(*args, **kwargs):  # the process stops before its next epoch ends
        raise KeyboardInterrupt

    monkeypatch.setattr(train_torch, "fit", stopped)
    with pytest.raises(KeyboardInterrupt):  # the same length: nothing to train, the predictions stay
        train(config, out, resume=True, dataset=dataset, progress=False)
    assert (out / PREDICTIONS).exists()
    with pytest.raises(KeyboardInterrupt):
        train(dataclasses.replace(config, epochs=2), out, resume=True, dataset=dataset, progress=False)
    assert not (out / PREDICTIONS).exists()
    assert runs.load_run(out)[1][0]["epoch"] == 0 and (out / CHECKPOINTS["torch"]).exists()


def test_a_run_resumes_with_its_data_named_by_another_path_to_the_same_file(tmp_path, monkeypatch):
    (tmp_path / "images.zip").write_bytes(b"")
    (tmp_path / "other.zip").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    config = TrainConfig("torch", "images.zip", 2)  # started with a path relative to where it ran
    runs.write_json(out / "config.json", runs.config_record(config))
    write_checkpoint(out / CHECKPOINTS["torch"], "torch", 1)
    for path in (str(tmp_path / "images.zip"), "./images.zip", "../" + tmp_path.name + "/images.zip"):
        assert check_run_dir(dataclasses.replace(config, data=path), out, resume=True) == 1
    with pytest.raises(RunError, match=r"data='images.zip' \(now 'other.zip'\); only --epochs may change on "
                                       r"--resume$"):
        check_run_dir(dataclasses.replace(config, data="other.zip"), out, resume=True)
    (tmp_path / "images.zip").rename(tmp_path / "moved.zip")
    with pytest.raises(RunError, match=r"--resume \('images.zip' is not there any more: put it, or a link to it, "
                                       r"back at that path\)$"):
        check_run_dir(dataclasses.replace(config, data="moved.zip"), out, resume=True)
    (tmp_path / "images.zip").symlink_to(tmp_path / "moved.zip")  # as the message says
    assert check_run_dir(dataclasses.replace(config, data="moved.zip"), out, resume=True) == 1
