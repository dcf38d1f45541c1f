"""The paper's recipe in both frameworks: schedule, pipeline, training, resume, CLI."""

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest
import torch
from conftest import config, tiny_dataset
from torch.optim.swa_utils import AveragedModel

from xception_common import recipe, train_keras, train_torch
from xception_common import results as results_module
from xception_common import runs as run_folder
from xception_common.epoch_plan import crop_padding, epoch_plan
from xception_common.runs import CHECKPOINTS, RECORD_KEYS
from xception_common.train import main
from xception_common.training import train

# Epochs 0-10 of the paper's schedule: 0.045, × 0.94 every 2 epochs.
PAPER_SCHEDULE = [0.045, 0.045, 0.0423, 0.0423, 0.039762, 0.039762, 0.03737628, 0.03737628,
                  0.0351337032, 0.0351337032, 0.033025681008]


def test_recipe_schedule():
    assert [recipe.learning_rate(e) for e in range(11)] == pytest.approx(PAPER_SCHEDULE, rel=1e-12)


def test_keras_schedule_matches_the_paper():
    steps = 7
    schedule = train_keras.learning_rate_schedule(steps)
    for epoch in range(11):
        for step in (epoch * steps, epoch * steps + steps - 1):  # first and last step of the epoch
            assert float(schedule(step)) == pytest.approx(PAPER_SCHEDULE[epoch], rel=1e-6)


def test_torch_schedule_matches_the_paper():
    optimizer = train_torch.make_optimizer(torch.nn.Linear(2, 2))
    scheduler = train_torch.make_scheduler(optimizer)
    rates = []
    for _ in range(11):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx(PAPER_SCHEDULE, rel=1e-12)
    assert optimizer.param_groups[0]["momentum"] == 0.9


def test_both_frameworks_read_every_field_of_a_staircase_recipe():
    # A recipe unlike the paper's in every field the optimizers and schedules take:
    # 0.2 · 64 / 32 = 0.4 at first, halved every 3 epochs.
    odd = recipe.Recipe("odd", 0.2, "staircase", learning_rate_decay=0.5, epochs_per_decay=3, reference_batch=32,
                        momentum=0.8, nesterov=True, weight_decay=1e-3)
    expected = [0.4, 0.4, 0.4, 0.2, 0.2, 0.2, 0.1]
    optimizer = train_torch.make_optimizer(torch.nn.Linear(2, 2), odd, batch_size=64)
    scheduler = train_torch.make_scheduler(optimizer, odd)
    rates = []
    for _ in expected:
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx(expected, rel=1e-12)
    kernels, others = optimizer.param_groups
    assert (kernels["momentum"], kernels["nesterov"], kernels["weight_decay"], others["weight_decay"]) == (
        0.8, True, 1e-3, 0.0)
    steps = 5
    sgd = train_keras.make_optimizer(steps, training_recipe=odd, batch_size=64)
    keras_rates = []
    for epoch in range(len(expected)):
        sgd.iterations.assign(epoch * steps)  # the rate Keras' SGD takes at the first step of each epoch
        keras_rates.append(float(sgd.learning_rate))
    assert keras_rates == pytest.approx(expected, rel=1e-6)
    assert (sgd.momentum, sgd.nesterov) == (0.8, True)
    with pytest.raises(ValueError, match="the cifar recipe's cosine schedule is make_cosine_scheduler's"):
        train_torch.make_scheduler(optimizer, recipe.CIFAR)


def test_the_papers_rate_at_each_step_is_its_epochs_rate_whatever_the_batch():
    steps = 5
    for batch_size in (32, 512):
        formula = [recipe.PAPER.learning_rate_at(step, steps, 11, batch_size) for step in range(steps * 11)]
        assert formula == pytest.approx([rate for rate in PAPER_SCHEDULE for _ in range(steps)], rel=1e-12)


def cifar_rates(steps_per_epoch, epochs, batch_size):
    """The CIFAR recipe's rate at every step, from its own definition written out:
    0.1 · batch / 128 at the peak, a linear warm-up over 2 epochs from a tenth
    of it, then half a cosine period down to zero at the last step."""
    peak, warmup = 0.1 * batch_size / 128, 2 * steps_per_epoch
    decay = (epochs - 2) * steps_per_epoch
    return [peak * (0.1 + 0.9 * step / warmup) if step < warmup
            else peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / decay))
            for step in range(steps_per_epoch * epochs)]


def test_both_frameworks_follow_the_cifar_recipes_schedule():
    steps, epochs, batch_size = 7, 6, 64
    expected = cifar_rates(steps, epochs, batch_size)
    # The formula notebook 05 plots, against the definition written out.
    formula = [recipe.CIFAR.learning_rate_at(step, steps, epochs, batch_size) for step in range(steps * epochs)]
    assert formula == pytest.approx(expected, rel=1e-12)
    keras_schedule = train_keras.learning_rate_schedule(steps, recipe.CIFAR, epochs, batch_size)
    keras_rates = [float(keras_schedule(step)) for step in range(steps * epochs)]
    assert keras_rates == pytest.approx(expected, rel=1e-5, abs=1e-9)
    optimizer = train_torch.make_optimizer(torch.nn.Linear(2, 2), recipe.CIFAR, batch_size)
    assert optimizer.param_groups[0]["nesterov"] and optimizer.param_groups[0]["weight_decay"] == 5e-4
    scheduler = train_torch.make_cosine_scheduler(optimizer, recipe.CIFAR, steps, epochs)
    rates = []
    for _ in range(steps * epochs):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert expected[-1] < 0.01 * max(expected)  # annealed to near zero by the last step
    assert recipe.deviations(recipe.CIFAR) == {"peak_learning_rate": 0.1, "schedule": "cosine", "warmup_epochs": 2,
                                               "reference_batch": 128, "nesterov": True, "weight_decay": 5e-4}
    assert recipe.deviations(recipe.PAPER) == {}


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_cifar_recipe_run_records_its_deviations_and_resumes_only_to_its_length(framework, tmp_path):
    out, dataset = tmp_path / "run", tiny_dataset(n=8)
    history = train(config(framework, 2, recipe="cifar", batch_size=4), out, dataset=dataset, progress=False)
    saved = json.loads((out / "config.json").read_text())
    assert saved["recipe"] == "cifar" and saved["recipe_deviations_from_the_paper"]["schedule"] == "cosine"
    assert run_folder.load_run(out)[0].recipe == "cifar"
    # Two steps an epoch at batch 4: the rate at the start of epoch 1 is the peak's, after the first epoch of warm-up.
    assert history[1]["lr"] == pytest.approx(0.1 * 4 / 128 * (0.1 + 0.9 * 2 / 4), rel=1e-5)
    with pytest.raises(run_folder.RunError, match="anneals over exactly those; resume it with --epochs 2"):
        train(config(framework, 3, recipe="cifar", batch_size=4), out, resume=True, dataset=dataset, progress=False)


def test_weight_decay_only_on_kernels_in_both():
    model = train_torch.Xception(3)
    kernels, others = train_torch.make_optimizer(model).param_groups
    assert kernels["weight_decay"] == 1e-5 and others["weight_decay"] == 0.0
    assert len(kernels["params"]) == 2 + 4 + 2 * 34 + 1  # stem, shortcuts, separables, dense
    squares = sum(float(p.detach().double().pow(2).sum()) for p in kernels["params"])
    # One fused float32 norm over 22 million weights: about 1e-5 relative off on a CPU.
    assert float(train_torch.l2_penalty(model)) == pytest.approx(1e-5 / 2 * squares, rel=1e-4)
    keras_model = train_keras.build_model(tiny_dataset(), config("keras", 1), steps=1, gpu=False)
    assert len(keras_model.losses) == 2 + 4 + 2 * 34 + 1
    penalty = sum(float(loss) for loss in keras_model.losses)
    kernels = [w for w in keras_model.trainable_weights if len(w.shape) > 1]
    expected = 1e-5 / 2 * sum(float(np.sum(np.square(w.numpy()))) for w in kernels)
    assert penalty == pytest.approx(expected, rel=1e-5)


def test_both_pipelines_make_the_same_batch():
    dataset = tiny_dataset(size=32)
    padding = crop_padding(32)
    plan = epoch_plan(16, 8, padding, True, seed=3, epoch=1)
    assert plan.flips.any() and (plan.rows != padding).any()
    order = plan.order[0]
    nhwc = dataset.x_train[order]
    keras_batch = train_keras.to_model_input(
        train_keras.augment(nhwc, plan.rows[0], plan.cols[0], plan.flips[0], padding), 75
    ).numpy()
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    torch_batch = train_torch.to_model_input(
        train_torch.augment(nchw, plan.rows[0], plan.cols[0], plan.flips[0], padding), 75
    ).permute(0, 2, 3, 1).numpy()
    assert keras_batch.shape == torch_batch.shape == (8, 75, 75, 3)
    assert keras_batch.min() >= -1 and keras_batch.max() <= 1
    np.testing.assert_allclose(keras_batch, torch_batch, atol=1e-5)


def test_augmentation_crops_and_flips_as_planned():
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(1, 4, 4, 3)
    batch = torch.from_numpy(image).permute(0, 3, 1, 2)
    shifted = train_torch.augment(batch, [2], [0], [False], padding=1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(shifted[0, :3, 1:], image[0, 1:, :3])  # one row up, one column right
    assert (shifted[0, 3] == 0).all() and (shifted[0, :, 0] == 0).all()  # zero padding shows
    flipped = train_keras.augment(image, np.array([1]), np.array([1]), np.array([True]), 1).numpy()
    np.testing.assert_array_equal(flipped[0], image[0, :, ::-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three-epoch runs, made once per (framework, precision) and shared:
    one uninterrupted, one stopped after its first epoch and resumed."""
    made = {}

    def get(framework, precision="float32"):
        if (framework, precision) not in made:
            root = tmp_path_factory.mktemp(f"{framework}-{precision}")
            dataset = tiny_dataset(n=8)  # one step an epoch
            whole = train(config(framework, 3, precision=precision), root / "whole", dataset=dataset, progress=False)
            train(config(framework, 1, precision=precision), root / "split", dataset=dataset, progress=False)
            resumed = train(config(framework, 3, precision=precision), root / "split", resume=True,
                            dataset=dataset, progress=False)
            made[framework, precision] = Runs(root / "whole", whole, root / "split", resumed)
        return made[framework, precision]

    return get


@dataclass
class Runs:
    whole_dir: Path
    whole: list
    split_dir: Path
    resumed: list


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_few_epochs_reduce_the_training_loss(framework, runs):
    # One step an epoch at the paper's learning rate; tiny batches make
    # longer runs jumpy, but the first steps on this easy cue are downhill.
    history = runs(framework).whole
    assert [r["epoch"] for r in history] == [0, 1, 2]
    assert [r["lr"] for r in history] == pytest.approx(PAPER_SCHEDULE[:3], rel=1e-6)
    assert history[1]["loss"] < 0.8 * history[0]["loss"]
    assert all(tuple(r) == RECORD_KEYS for r in history)


def without_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


@pytest.mark.parametrize("framework, precision", [("torch", "float32"), ("keras", "float32"), ("keras", "float16")])
def test_stop_and_resume_equals_an_uninterrupted_run(framework, precision, runs):
    run = runs(framework, precision)
    assert without_seconds(run.resumed) == without_seconds(run.whole)
    assert run.resumed[2]["lr"] == pytest.approx(0.0423, rel=1e-6)  # the schedule carried over
    saved = json.loads((run.split_dir / "history.json").read_text())
    assert without_seconds(saved) == without_seconds(run.whole)
    # The checkpoint is renamed into place: no partial file is left behind.
    assert sorted(p.name for p in run.split_dir.iterdir()) == sorted(
        ["config.json", "history.json", CHECKPOINTS[framework], run_folder.PREDICTIONS])


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs."""


def test_a_run_killed_between_checkpoint_and_history_loses_no_epoch(runs, monkeypatch, tmp_path):
    # scripts/gpu_results.sh stops runs with `timeout`; the kill can fall
    # after the second epoch's checkpoint and before its history.json.
    write_json = run_folder.write_json

    def dies_writing_the_second_history(path, value):
        if path.name == "history.json" and len(value) == 2:
            raise Killed
        write_json(path, value)

    monkeypatch.setattr(run_folder, "write_json", dies_writing_the_second_history)
    dataset = tiny_dataset(n=8)
    with pytest.raises(Killed):
        train(config("torch", 2, precision="float32"), tmp_path, dataset=dataset, progress=False)
    assert len(json.loads((tmp_path / "history.json").read_text())) == 1  # the second record never got there
    monkeypatch.setattr(run_folder, "write_json", write_json)
    # Both epochs are done: resuming only reads the checkpoint and rewrites history.json.
    resumed = train(config("torch", 2, precision="float32"), tmp_path, resume=True, dataset=dataset, progress=False)
    assert without_seconds(resumed) == without_seconds(runs("torch").whole[:2])
    assert json.loads((tmp_path / "history.json").read_text()) == resumed


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_the_checkpoints_history_wins_over_a_lagging_history_file(framework, runs, tmp_path):
    # What a kill between the two writes leaves: history.json an epoch behind.
    run = tmp_path / "run"
    shutil.copytree(runs(framework).whole_dir, run)
    (run / "history.json").write_text(json.dumps(runs(framework).whole[:2]))
    resumed = train(config(framework, 3, precision="float32"), run, resume=True, dataset=tiny_dataset(n=8),
                    progress=False)
    assert resumed == runs(framework).whole
    assert json.loads((run / "history.json").read_text()) == resumed


def test_a_checkpoint_without_a_history_keeps_the_history_file(runs, tmp_path):
    # Checkpoints written before they kept the history: history.json has it.
    shutil.copytree(runs("torch").whole_dir, tmp_path / "run")
    checkpoint = tmp_path / "run" / CHECKPOINTS["torch"]
    state = torch.load(checkpoint, weights_only=True)
    del state["history"]
    torch.save(state, checkpoint)
    history = train(config("torch", 4, precision="float32"), tmp_path / "run", resume=True,
                    dataset=tiny_dataset(n=8), progress=False)
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    assert history[:3] == runs("torch").whole


@pytest.mark.parametrize("framework, precision", [("torch", "float32"), ("keras", "float32"), ("keras", "float16")])
def test_a_finished_run_keeps_the_test_predictions_it_was_evaluated_with(framework, precision, runs):
    """The saved probabilities give the last epoch's test accuracies of the
    live and the averaged model, computed by the evaluation, and a resumed run
    saves the same ones as an uninterrupted run."""
    run = runs(framework, precision)
    saved = run_folder.load_predictions(run.whole_dir / run_folder.PREDICTIONS)
    labels = tiny_dataset(n=8).y_test
    np.testing.assert_array_equal(saved["labels"], labels)
    last = run.whole[-1]
    for name, accuracy in (("live", last["val_accuracy"]), ("averaged", last["val_accuracy_ema"])):
        for probabilities in (saved[name], saved[f"{name}_flipped"]):
            assert probabilities.shape == (8, 3)
            np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
        assert np.mean(saved[name].argmax(1) == labels) == pytest.approx(accuracy, abs=1e-6)
    resumed = run_folder.load_predictions(run.split_dir / run_folder.PREDICTIONS)
    for name in run_folder.PREDICTED:
        np.testing.assert_array_equal(resumed[name], saved[name])  # as the histories are equal, bit for bit


def mirrored_test_images(dataset):
    """``dataset`` with test images whose right half mirrors their left."""
    half = dataset.x_test[:, :, : dataset.x_test.shape[2] // 2]
    x_test = np.concatenate([half, half[:, :, ::-1]], axis=2)
    return dataclasses.replace(dataset, x_test=x_test)


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_the_flipped_predictions_mirror_the_test_images_left_to_right(framework, runs):
    """On images equal to their mirror image the flipped predictions are the
    plain ones; on the random ones they are not."""
    dataset = tiny_dataset(n=8)
    options = config(framework, 3, precision="float32")
    if framework == "torch":
        trainer = train_torch.Trainer(dataset, options, progress=False)
        trainer.train_epoch()

        def predict(data):
            trainer.test = train_torch.ImagesInMemory(data.x_test, data.y_test, trainer.device)
            return trainer.predictions()
    else:
        model = keras.saving.load_model(runs("keras").whole_dir / CHECKPOINTS["keras"])

        def predict(data):
            return train_keras.predictions(model, data, options, epoch=2)
    plain = predict(dataset)
    mirrored = predict(mirrored_test_images(dataset))
    for name in ("live", "averaged"):
        assert np.abs(plain[f"{name}_flipped"] - plain[name]).max() > 1e-4
        np.testing.assert_allclose(mirrored[f"{name}_flipped"], mirrored[name], atol=1e-5)


def test_predictions_are_refused_without_every_model_or_with_a_row_per_image_missing(tmp_path):
    probabilities = {name: np.full((4, 2), 0.5) for name in run_folder.PREDICTED}
    with pytest.raises(ValueError, match="probabilities must be given for live, live_flipped, averaged"):
        run_folder.write_predictions(tmp_path / "p.npz", [0, 1, 0, 1], {"live": probabilities["live"]})
    with pytest.raises(ValueError, match=r"one row of probabilities per test label \(5\)"):
        run_folder.write_predictions(tmp_path / "p.npz", [0, 1, 0, 1, 1], probabilities)
    assert not list(tmp_path.iterdir())


def test_a_compiled_run_trains_as_the_eager_one(runs, tmp_path, monkeypatch):
    """torch.compile (inductor, on the CPU here) changes how the step runs,
    not what it computes: the first epoch's record of the shared eager run,
    within float32 rounding, and the same checkpoint layout. Inductor draws
    dropout's masks from a random stream of its own (the first epoch's loss
    then differs by about 1%) unless asked to draw them as eager PyTorch does."""
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    history = train(config("torch", 1, precision="float32", compile_mode="default"), tmp_path,
                    dataset=tiny_dataset(n=8), progress=False)
    compiled, eager = history[0], runs("torch").whole[0]
    assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-4)  # the forward pass, before any step
    # After the step the compiled backward's rounding shows: 0.17% in this test loss when measured.
    assert compiled["val_loss"] == pytest.approx(eager["val_loss"], rel=5e-3)
    for key in ("lr", "accuracy", "val_accuracy", "val_accuracy_ema"):
        assert compiled[key] == pytest.approx(eager[key], abs=1e-6), key
    state = torch.load(tmp_path / CHECKPOINTS["torch"], weights_only=True)
    assert not any(name.startswith("_orig_mod") for name in state["model"])  # the plain model's names
    assert json.loads((tmp_path / "config.json").read_text())["compile_mode"] == "default"


def test_load_run_gives_the_options_and_the_history(runs):
    options, history = run_folder.load_run(runs("keras").whole_dir)
    assert options == config("keras", 3, precision="float32")
    assert history == runs("keras").whole


def test_precision_auto_follows_the_device():
    auto = config("torch", 1)
    assert auto.compute_dtype(None) == "float32"  # a CPU
    assert auto.compute_dtype((7, 5)) == "float16"  # T4: bfloat16 only emulated
    assert auto.compute_dtype((8, 0)) == auto.compute_dtype((9, 0)) == "bfloat16"  # A100, H100/H200
    assert config("torch", 1, precision="bfloat16").compute_dtype(None) == "bfloat16"
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16, float16"):
        config("torch", 1, precision="fp8").check()


@pytest.mark.parametrize("capability, expected", [((7, 5), "float16"), ((8, 0), "bfloat16")])
def test_torch_takes_its_precision_from_the_gpus_capability(capability, expected, monkeypatch):
    """A Trainer on a pretend GPU of that compute capability trains in its
    precision, with gradient scaling for float16 only. (bfloat16 is emulated
    on a T4, 7.5, so only the capability tells it apart.)"""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert train_torch.gpu_capability(torch.device("cuda")) == capability
    assert train_torch.gpu_capability(torch.device("cpu")) is None
    monkeypatch.setattr(train_torch, "gpu_capability", lambda device: capability)
    trainer = train_torch.Trainer(tiny_dataset(), config("torch", 1), progress=False)
    assert trainer.precision == expected and trainer.scaler.is_enabled() == (expected == "float16")
    assert train_torch.Trainer(tiny_dataset(), config("torch", 1, precision="float32"), progress=False).precision \
        == "float32"


@pytest.fixture(scope="module")
def mixed_trainers():
    """A trainer per mixed precision after two epochs, with its records."""
    made = {}

    def get(precision):
        if precision not in made:
            trainer = train_torch.Trainer(tiny_dataset(n=8), config("torch", 2, precision=precision), progress=False)
            made[precision] = trainer, [trainer.run_epoch() for _ in range(2)]
        return made[precision]

    return get


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_torch_trains_in_mixed_precision(precision, mixed_trainers):
    # The GPU's mixed precision paths, run on the CPU: autocast, and for
    # float16 a gradient scaler whose scale is saved with the checkpoint.
    trainer, records = mixed_trainers(precision)
    with trainer._autocast():
        logits = trainer.model(train_torch.to_model_input(trainer.test.images[:2], 71))
    assert logits.dtype == getattr(torch, precision)
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_loss"]) for r in records)
    assert records[1]["loss"] < records[0]["loss"]
    assert (trainer.state_dict()["scaler"] != {}) == (precision == "float16")


def assert_states_equal(actual, expected):
    """Nested checkpoint dicts hold equal tensors and values."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key in expected:
            assert_states_equal(actual[key], expected[key])
    elif isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected)
    else:
        assert actual == expected


@pytest.mark.parametrize("before, after", [("float32", "float16"), ("float16", "float32"), ("float16", "bfloat16")])
def test_torch_resume_across_precisions(before, after, runs, mixed_trainers, tmp_path):
    # "auto" differs between a CPU, a T4 and an A100: a run may move between them.
    if before == "float32":
        checkpoint = runs("torch").whole_dir / CHECKPOINTS["torch"]
    else:
        checkpoint = tmp_path / CHECKPOINTS["torch"]
        torch.save(mixed_trainers(before)[0].state_dict(), checkpoint)
    saved = torch.load(checkpoint, weights_only=True)
    resumed = train_torch.Trainer(tiny_dataset(n=8), config("torch", 4, precision=after), progress=False)
    resumed.load_state_dict(torch.load(checkpoint, weights_only=True))
    state = resumed.state_dict()
    for part in ("model", "optimizer", "scheduler", "ema", "rng", "epochs_done"):
        assert_states_equal(state[part], saved[part])
    assert resumed.scaler.is_enabled() == (after == "float16")
    if before == after == "float16":
        assert_states_equal(state["scaler"], saved["scaler"])
    record = resumed.run_epoch()
    assert record["epoch"] == saved["epochs_done"] and np.isfinite(record["loss"])


def test_torch_resume_restores_the_random_state(runs, tmp_path):
    # The random state is what makes the dropout masks of a resumed run those of
    # an uninterrupted one. (On a GPU, torch.set_rng_state takes only a CPU tensor:
    # test_torch_resumes_on_a_gpu resumes there.)
    saved = torch.load(runs("torch").whole_dir / CHECKPOINTS["torch"], weights_only=True)
    torch.manual_seed(12345)  # anything but the saved state
    trainer = train_torch.Trainer(tiny_dataset(), config("torch", 4), progress=False)
    assert not torch.equal(torch.get_rng_state(), saved["rng"])
    trainer.load_state_dict(saved)
    assert torch.equal(torch.get_rng_state(), saved["rng"])


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 2))


def test_the_polyak_average_is_an_exponential_moving_average_of_the_weights():
    """After updates with weights w0, w1, w2, w3 the average is
    w0 · d³ + Σ wt · (1 - d) · d^(3-t), computed here in float64; the
    BatchNorm buffers are the live model's, and the state dict is
    ``AveragedModel``'s (it loads into one, strictly)."""
    decay, model = 0.8, small_model()
    average = train_torch.PolyakAverage(model, decay)
    snapshots = []
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(2, 3, 8, 8))  # training mode: the BatchNorm buffers move
        snapshots.append([p.detach().double().clone() for p in model.parameters()])
        average.update_parameters(model)
    for i, averaged in enumerate(average.module.parameters()):
        expected = snapshots[0][i] * decay ** 3 + sum(
            snapshots[t][i] * (1 - decay) * decay ** (3 - t) for t in (1, 2, 3))
        torch.testing.assert_close(averaged.double(), expected, rtol=1e-6, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(average.module.buffers(), model.buffers(), strict=True))
    assert average.n_averaged.item() == 4
    AveragedModel(small_model()).load_state_dict(average.state_dict(), strict=True)


def test_the_polyak_update_moves_nothing_between_host_and_device():
    """On the meta device (shapes only), every op of an update touches either
    the host's counter or the model's tensors, never both: nothing is copied
    from host memory. The control: ``AveragedModel``'s own update copies its
    counter to the device, and this check sees it."""
    from torch.optim.swa_utils import get_ema_multi_avg_fn
    from torch.utils._python_dispatch import TorchDispatchMode

    class DevicesOfEachOp(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.mixed = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
            if len({t.device.type for t in tensors}) > 1:
                self.mixed.append(str(func))
            return out

    def mixed_ops(average, model):
        average.update_parameters(model)  # the first update copies
        with DevicesOfEachOp() as recorder:
            average.update_parameters(model)
        return recorder.mixed

    model = small_model().to("meta")
    assert mixed_ops(train_torch.PolyakAverage(model, 0.9), model) == []
    control = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    assert mixed_ops(control, model) == ["aten._to_copy.default"]


def test_keras_trains_in_mixed_float16(runs):
    import keras

    run = runs("keras", "float16")
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_loss"]) for r in run.whole)
    assert run.whole[1]["loss"] < run.whole[0]["loss"]
    model = keras.saving.load_model(run.whole_dir / CHECKPOINTS["keras"])
    assert model.get_layer("block1_conv1").dtype_policy.name == "mixed_float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert keras.mixed_precision.global_policy().name == "float32"  # left as it was


def test_keras_skipped_float16_steps_keep_the_schedule_and_the_scale_across_a_resume(monkeypatch, tmp_path):
    import keras

    # Every step overflows: the loss scaler skips them all and halves its
    # scale each time. Stopped after one epoch and resumed, the run must
    # carry the halved scale and whole epochs of the schedule over.
    monkeypatch.setattr(keras.optimizers.LossScaleOptimizer, "check_finite",
                        lambda self, grads: keras.ops.convert_to_tensor(False))
    dataset = tiny_dataset(n=8)  # one step an epoch
    train(config("keras", 1, precision="float16"), tmp_path, dataset=dataset, progress=False)
    history = train(config("keras", 3, precision="float16"), tmp_path, resume=True, dataset=dataset, progress=False)
    assert [r["lr"] for r in history] == pytest.approx(PAPER_SCHEDULE[:3], rel=1e-6)
    optimizer = keras.saving.load_model(tmp_path / CHECKPOINTS["keras"]).optimizer
    initial_scale = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()).initial_scale
    assert float(optimizer.dynamic_scale.numpy()) == initial_scale / 2**3
    assert int(optimizer.iterations.numpy()) == 3


def test_torch_checkpoint_loads_with_weights_only(runs):
    state = torch.load(runs("torch").whole_dir / CHECKPOINTS["torch"], weights_only=True)
    assert state["epochs_done"] == 3
    assert set(state) >= {"model", "optimizer", "scheduler", "ema", "rng"}


@pytest.mark.parametrize(
    "options, message",
    [
        (["--image-size", "70"], "image size must be a whole number >= 71 (Xception's minimum), got 70"),
        (["--batch-size", "0"], "batch size must be a whole number >= 1, got 0"),
        (["--framework", "jax"], "invalid choice: 'jax'"),
        (["--data", "no/such/folder"], "not an existing file or folder"),
        (["--data", "MALFORMED"], "has no test/ folder"),
        (["--resume"], "nothing to resume"),
        (["--subset", "0"], "subset must be a whole number >= 1, got 0"),
        (["--seed", "-1"], "seed must be a whole number from 0 to 4294967295, got -1"),
        (["--precision", "fp8"], "invalid choice: 'fp8'"),
        (["--segment-size", "3"], "segment_size must be one of (1, 2, 4, 8)"),
        (["--intermediate-activation", "gelu"], "invalid choice: 'gelu'"),
        (["--recipe", "adam"], "invalid choice: 'adam'"),
        (["--compile-mode", "fast"], "invalid choice: 'fast'"),
        (["--framework", "keras", "--compile-mode", "default"], "compile_mode is for the torch framework"),
    ],
)
def test_bad_options_exit_2_and_write_nothing(options, message, image_folder, tmp_path, capsys):
    malformed = tmp_path / "malformed"
    (malformed / "train" / "cat").mkdir(parents=True)
    args = {"--framework": "torch", "--data": str(image_folder), "--epochs": "1", "--out": str(tmp_path / "run")}
    for flag, value in zip(options[::2], options[1::2] + [None] * len(options)):
        if flag != "--resume":
            args[flag] = str(malformed) if value == "MALFORMED" else value
    argv = [item for pair in args.items() for item in pair] + (["--resume"] if "--resume" in options else [])
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_existing_run_is_never_overwritten(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.json").write_text("[]")
    with pytest.raises(SystemExit) as exit_:
        main(["--framework", "torch", "--data", str(image_folder), "--epochs", "1", "--out", str(out)])
    assert exit_.value.code == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert (out / "history.json").read_text() == "[]" and sorted(p.name for p in out.iterdir()) == ["history.json"]


def test_resume_with_other_options_is_refused(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--framework", "torch", "--data", str(image_folder), "--image-size", "71", "--batch-size", "2",
            "--out", str(out)]
    assert main(base + ["--epochs", "1"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and history[0]["epoch"] == 0
    with pytest.raises(SystemExit):
        main(base[:-4] + ["--batch-size", "4", "--out", str(out), "--epochs", "2", "--resume"])
    assert "batch_size=2 (now 4)" in capsys.readouterr().err
    assert json.loads((out / "history.json").read_text()) == history


def test_data_that_fails_to_load_exits_2_and_writes_nothing(monkeypatch, tmp_path, capsys):
    from xception_common import data

    def no_internet(source, **options):  # as data.load fails offline, with a message of this test's own
        raise data.DataError("CIFAR-10 could not be downloaded (test: no network 7f3a). Alternatives: --data digits")

    monkeypatch.setattr(data, "load", no_internet)
    code = main(["--framework", "keras", "--data", "cifar10", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "CIFAR-10 could not be downloaded (test: no network 7f3a). Alternatives: --data digits" in \
        capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def run_script(name, args, tmp_path, **env):
    script = Path(__file__).resolve().parents[1] / "scripts" / name
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "RUNS": str(tmp_path / "runs"), **env}
    return subprocess.run(["bash", str(script), *map(str, args)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)


def run_gpu_results(args, tmp_path, **env):
    return run_script("gpu_results.sh", args, tmp_path, **{"BENCH": "", "SIZES": "71", **env})


def test_gpu_results_script_keeps_each_runs_history_and_resumes(image_folder, tmp_path):
    # The script behind the README's GPU figures, without the benchmark, at one size.
    results = tmp_path / "results"
    for epochs in (1, 2):  # run again with more epochs: it resumes
        done = run_gpu_results([image_folder, results, epochs, "--batch-size", "2"], tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        result = results_module.load(results / "torch-71px.json")  # a result file, as notebook 04 reads
        assert [r["epoch"] for r in result["history"]] == list(range(epochs))
        assert result["run"]["command"].endswith(f"--epochs {epochs} --image-size 71 --batch-size 128 --batch-size 2")
        assert results_module.load_predictions(results / "torch-71px.json")["labels"].shape == (4,)
    assert (results / "log.txt").read_text().count("torch-71px: exit 0") == 2
    assert (tmp_path / "runs" / "torch-71px" / "checkpoint.pt").exists()


def test_gpu_results_script_reports_a_failed_run(image_folder, tmp_path):
    done = run_gpu_results([image_folder, tmp_path / "results"], tmp_path, SIZES="70 71", RUN_TIMEOUT="1")
    assert done.returncode == 1
    log = (tmp_path / "results" / "log.txt").read_text()
    assert "torch-70px: exit 2" in log and "image size must be a whole number >= 71" in log
    assert "torch-71px: exit 124" in log  # cut short as asked: not a failure by itself
    assert not list((tmp_path / "results").glob("*.json"))  # neither finished an epoch


@pytest.mark.parametrize("framework", ["torch", "keras"])
@pytest.mark.parametrize("device", ["tpu", "cuda:9", "cpu:x"])
def test_a_device_the_framework_cannot_use_is_refused_before_the_run_folder_is_written(framework, device, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="device"):
        train(config(framework, 1), out, dataset=tiny_dataset(n=8), device=device, progress=False)
    assert not out.exists()


def test_each_evaluated_torch_model_has_batchnorm_statistics_of_its_own(monkeypatch):
    """During each evaluation the first BN's running mean is the mean of its
    input, the first convolution's output, over the statistics batches,
    computed with the weights being evaluated; afterwards the models' own
    statistics are back."""
    trainer = train_torch.Trainer(tiny_dataset(), config("torch", 1, bn_batches=2), progress=False)
    trainer.train_epoch()
    before = {id(m): {n: b.clone() for n, b in m.named_buffers()} for m in (trainer.model, trainer.ema.module)}
    seen = []
    monkeypatch.setattr(train_torch.Trainer, "evaluate", lambda self, model: seen.append(
        (model, model.entry_flow.block1.conv1.bn.running_mean.clone())) or (0.0, 0.0))
    trainer.evaluate_live_and_averaged()
    plan = epoch_plan(16, 8, crop_padding(8), True, 0, 0)
    means = {}
    for model, running_mean in seen:
        with torch.no_grad():
            outputs = [model.entry_flow.block1.conv1.conv(train_torch.training_batch(
                trainer.train.images, trainer.train.labels, plan, step, crop_padding(8), 71)[0])
                for step in range(2)]
        means[id(model)] = torch.stack([out.mean(dim=(0, 2, 3)) for out in outputs]).mean(0)
        torch.testing.assert_close(running_mean, means[id(model)], rtol=1e-4, atol=1e-6)
    assert [model for model, _ in seen] == [trainer.model, trainer.ema.module]
    assert (means[id(trainer.model)] - means[id(trainer.ema.module)]).abs().max() > 1e-3
    for model in (trainer.model, trainer.ema.module):
        assert all(torch.equal(b, before[id(model)][n]) for n, b in model.named_buffers())


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_a_short_run_is_evaluated_far_above_chance(framework):
    """Four epochs on 48 images with a learnable cue (the test images are the
    training images, unaugmented). Evaluated with the live model's running
    BatchNorm statistics (``bn_batches=0``), the live model scores exactly
    chance, 1/3, in every epoch of this run in both frameworks; with
    statistics of their own both models score at least twice that, and no
    less than the training accuracy (taken with dropout and augmentation)
    minus 0.05."""
    with_running = train(config(framework, 4, ema_decay=0.9, bn_batches=0, precision="float32"),
                         dataset=tiny_dataset(n=48), progress=False)
    # Exactly chance, 16 of the 48 (the mean is a float32, hence the tolerance).
    assert [record["val_accuracy"] for record in with_running] == pytest.approx([1 / 3] * 4, abs=1e-6)
    history = train(config(framework, 4, ema_decay=0.9, bn_batches=20, precision="float32"),
                    dataset=tiny_dataset(n=48), progress=False)
    last = history[-1]
    assert last["val_accuracy"] >= 2 / 3 and last["val_accuracy_ema"] >= 2 / 3, last
    assert min(last["val_accuracy"], last["val_accuracy_ema"]) >= last["accuracy"] - 0.05, last


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_the_command_line_trains_a_variant_and_records_it(framework, image_folder, tmp_path):
    out = tmp_path / "run"
    assert main(["--framework", framework, "--data", str(image_folder), "--epochs", "1", "--image-size", "71",
                 "--batch-size", "2", "--no-residual", "--intermediate-activation", "elu", "--segment-size", "4",
                 "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["residual"], saved["intermediate_activation"], saved["segment_size"]) == (False, "elu", 4)
    assert len(json.loads((out / "history.json").read_text())) == 1
    if framework == "torch":
        weights = torch.load(out / CHECKPOINTS["torch"], map_location="cpu", weights_only=True)["model"]
        names = list(weights)
        depthwise = weights["middle_flow.block5.sepconv1.conv.depthwise.weight"]
    else:
        import keras

        model = keras.saving.load_model(out / CHECKPOINTS["keras"])
        names = [layer.name for layer in model.layers]
        depthwise = model.get_layer("block5_sepconv1_depthwise").kernel
        # ELU between each depthwise and pointwise step (PyTorch's checkpoint holds weights only).
        assert keras.activations.serialize(model.get_layer("block5_sepconv1_depthwise_act").activation) == "elu"
    assert not any("shortcut" in name for name in names)
    assert tuple(depthwise.shape) in {(728, 4, 3, 3), (3, 3, 4, 728)}  # groups of 4 channels


def test_paper_experiments_script_runs_every_variant_and_seed_at_once(image_folder, tmp_path):
    results, options = tmp_path / "results", ["--image-size", "71", "--batch-size", "2"]
    done = run_script("paper_experiments.sh", [image_folder, results, 1, *options], tmp_path,
                      VARIANTS="xception no-residual", SEEDS="0 1")
    assert done.returncode == 0, done.stdout + done.stderr
    names = ["xception-seed0", "xception-seed1", "no-residual-seed0", "no-residual-seed1"]
    log = (results / "log.txt").read_text()
    assert all(f"{name}: exit 0" in log for name in names)
    for name in names:
        config = json.loads((tmp_path / "runs" / name / "config.json").read_text())
        assert (config["residual"], config["seed"]) == (name.startswith("xception"), int(name[-1]))
        assert len(results_module.load(results / f"{name}.json")["history"]) == 1  # as notebook 06 reads
        assert results_module.load_predictions(results / f"{name}.json")["labels"].shape == (4,)
    # A run made beside three others equals the same run made alone.
    alone = run_script("paper_experiments.sh", [image_folder, tmp_path / "alone", 1, *options], tmp_path,
                       VARIANTS="xception", SEEDS="0", RUNS=str(tmp_path / "alone-runs"))
    assert alone.returncode == 0, alone.stdout + alone.stderr

    def without_time(path):
        return [{k: v for k, v in record.items() if k != "seconds"} for record in results_module.load(path)["history"]]

    assert without_time(tmp_path / "alone" / "xception-seed0.json") == without_time(results / "xception-seed0.json")


def test_convergence_script_makes_a_result_file_for_each_recipe_and_seed(image_folder, tmp_path):
    results, options = tmp_path / "results", ["--image-size", "71", "--batch-size", "2"]
    for _ in range(2):  # run again: the finished runs resume to no more epochs and are exported anew
        done = run_script("convergence.sh", [image_folder, results, 1, *options], tmp_path, BENCH="",
                          RUNS_TO_MAKE="cifar:0 paper:1", MACHINE="a CPU", DATA_LABEL="four images")
        assert done.returncode == 0, done.stdout + done.stderr
    for name, recipe_name, seed in (("cifar-seed0", "cifar", 0), ("paper-seed1", "paper", 1)):
        result = results_module.load(results / f"{name}.json")
        run = result["run"]
        assert (run["recipe"], run["seed"], run["machine"], run["data"]) == (recipe_name, seed, "a CPU", "four images")
        assert run["command"].endswith(f"--recipe {recipe_name} --seed {seed} --image-size 71 --batch-size 2")
        assert len(result["history"]) == 1
        assert results_module.load_predictions(results / f"{name}.json")["labels"].shape == (4,)
    assert (results / "log.txt").read_text().count("cifar-seed0: exit 0") == 2


def test_paper_experiments_script_refuses_an_unknown_variant(image_folder, tmp_path):
    done = run_script("paper_experiments.sh", [image_folder, tmp_path / "results"], tmp_path, VARIANTS="gelu")
    assert done.returncode == 2 and "unknown variant gelu" in done.stdout + done.stderr


def test_a_refused_run_leaves_its_command_and_a_failed_export_its_earlier_result(image_folder, tmp_path):
    results, runs_dir = tmp_path / "results", tmp_path / "runs"
    assert run_gpu_results([image_folder, results, 1, "--batch-size", "2"], tmp_path).returncode == 0
    command = (runs_dir / "torch-71px.command").read_text()
    before = {name: (results / name).read_bytes() for name in ("torch-71px.json", "torch-71px.npz")}
    # Other options: train refuses them (exit 2), and the run, its command and its result stay as they were.
    refused = run_gpu_results([image_folder, results, 1, "--batch-size", "4"], tmp_path)
    assert refused.returncode == 1 and "torch-71px: exit 2" in refused.stdout
    assert (runs_dir / "torch-71px.command").read_text() == command
    progress = (runs_dir / "torch-71px.progress").read_text()
    assert progress.count("== ") == 2 and "was started with other options: batch_size=2 (now 4)" in progress
    # The run resumes, but its export fails: the earlier result files stay.
    failing = tmp_path / "python"
    failing.write_text(f'#!/bin/sh\n[ "$2" = xception_common.results ] && exit 1\nexec {sys.executable} "$@"\n')
    failing.chmod(0o755)
    failed = run_gpu_results([image_folder, results, 1, "--batch-size", "2"], tmp_path, PYTHON=str(failing))
    assert failed.returncode == 1 and "torch-71px: exit 0" in failed.stdout
    assert {name: (results / name).read_bytes() for name in before} == before
    assert sorted(path.name for path in results.iterdir()) == ["log.txt", "torch-71px.json", "torch-71px.npz"]


def test_the_scripts_refuse_results_that_are_a_file(image_folder, tmp_path):
    (tmp_path / "a_file").write_text("kept")
    done = run_gpu_results([image_folder, tmp_path / "a_file"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"cannot make the folders {tmp_path / 'a_file'} and {tmp_path / 'runs'}: "
                                   "RESULTS (and RUNS) must be folders or new paths")
    assert (tmp_path / "a_file").read_text() == "kept"


def bench_in_script(tmp_path, pairs, profile, *models):
    """common.sh's run_bench, as the scripts call it, with RESULTS and RUNS in tmp_path."""
    common = Path(__file__).resolve().parents[1] / "scripts" / "common.sh"
    program = (f'source "{common}"; begin digits "{tmp_path / "results"}"; '
               f'run_bench "{pairs}" {profile} {" ".join(models)}; exit "$failed"')
    env = {**os.environ, "RUNS": str(tmp_path / "runs"), "PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(["bash", "-c", program], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)


def test_the_scripts_benchmark_replaces_bench_md_only_when_whole_and_profiles_into_new_folders(tmp_path):
    bench_md = tmp_path / "results" / "bench.md"
    bench_md.parent.mkdir()
    bench_md.write_text("an earlier table\n")
    failed = bench_in_script(tmp_path, "64:2", "profile", "torch")  # 64 px is below Xception's minimum
    assert failed.returncode == 1 and "the benchmark failed" in failed.stdout
    assert bench_md.read_text() == "an earlier table\n"
    assert "--image-size must be at least 71" in failed.stdout  # begin sends stderr to the log and stdout
    for _ in range(2):
        done = bench_in_script(tmp_path, "71:2", "profile", "torch")
        assert done.returncode == 0, done.stdout + done.stderr
        assert bench_md.read_text().count("| torch |") == 1
    assert bench_in_script(tmp_path, "71:2", "no", "torch").returncode == 0  # not profiled: no folder
    # One folder per profiled run, the second beside the first.
    folders = sorted(path.name for path in (tmp_path / "runs").iterdir())
    assert folders == ["profile-71px-batch2", "profile-71px-batch2-2"]
    assert all((tmp_path / "runs" / folder / "torch.txt").exists() for folder in folders)
