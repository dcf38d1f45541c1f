"""Training on several replicas: PyTorch processes under torchrun (gloo on
the CPU) and Keras replicas on logical CPU devices, against data-parallel
SGD computed by its definition in one process."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_dataset
from PIL import Image

from xception_common import data, distributed, train_keras, train_torch
from xception_common.epoch_plan import EpochPlan, crop_padding, epoch_plan
from xception_common.runs import TrainConfig
from xception_common.train import main
from xception_common.training import train

PROCESSES = 2
OPTIONS = ["--framework", "torch", "--image-size", "71", "--batch-size", "8", "--bn-batches", "2"]


def torchrun(folder, out, epochs, *extra):
    """``torchrun --standalone --nproc_per_node N -m xception_common.train``, one thread per process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={PROCESSES}",
               "-m", "xception_common.train", *OPTIONS, "--data", str(folder), "--epochs", str(epochs),
               "--out", str(out), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})


def write_image_folder(root, dataset):
    """The data set as PNG files in train/<class>/ and test/<class>/, in the
    order ``data.load`` reads them back."""
    for split, images, labels in (("train", dataset.x_train, dataset.y_train), ("test", dataset.x_test,
                                                                              dataset.y_test)):
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / dataset.class_names[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory):
    """Two epochs on two processes, whole and stopped after the first then resumed."""
    root = tmp_path_factory.mktemp("distributed")
    folder = write_image_folder(root / "data", tiny_dataset(n=16))
    runs = {}
    for name, steps in (("whole", [2]), ("split", [1, 2])):
        for epochs in steps:
            finished = torchrun(folder, root / name, epochs, *(["--resume"] if epochs != steps[0] else []))
            assert finished.returncode == 0, finished.stderr[-3000:]
        runs[name] = root / name
    return folder, runs


def data_parallel_sgd(dataset, config, epochs):
    """The model after ``epochs`` of data parallel SGD, computed in one
    process by its definition: at each step, process r of N takes the r-th of
    N equal slices of the global batch, with BatchNorm over its slice and
    dropout masks from its own generator; the step follows the mean of their
    gradients."""
    trainer = train_torch.Trainer(dataset, dataclasses.replace(config, replicas=1), progress=False)
    states = []
    for rank in range(config.replicas):
        torch.manual_seed(distributed.replica_seed(config.seed, rank))
        states.append(torch.get_rng_state())
    share = config.batch_size // config.replicas
    padding = crop_padding(dataset.x_train.shape[1])
    trainer.model.train()
    for epoch in range(epochs):
        plan = epoch_plan(len(dataset.y_train), config.batch_size, padding, dataset.flip, config.seed, epoch)
        for step in range(plan.steps):
            trainer.optimizer.zero_grad()
            for rank in range(config.replicas):
                columns = slice(rank * share, (rank + 1) * share)
                own = EpochPlan(plan.order[:, columns], plan.rows[:, columns], plan.cols[:, columns],
                                plan.flips[:, columns])
                x, labels = train_torch.training_batch(trainer.train.images, trainer.train.labels, own, step,
                                                       padding, config.image_size)
                torch.set_rng_state(states[rank])
                (F.cross_entropy(trainer.model(x), labels) / config.replicas).backward()
                states[rank] = torch.get_rng_state()
            trainer.optimizer.step()
        trainer.scheduler.step()
    return trainer.model


def test_two_processes_take_the_steps_of_data_parallel_sgd(distributed_runs):
    folder, runs = distributed_runs
    saved = torch.load(runs["whole"] / "checkpoint.pt", weights_only=True)
    config = TrainConfig("torch", str(folder), 2, image_size=71, batch_size=8, bn_batches=2, replicas=PROCESSES)
    assert json.loads((runs["whole"] / "config.json").read_text())["replicas"] == PROCESSES
    # On one thread, as each process ran: CPU kernels split their sums by
    # the threads they have, and this tiny run amplifies such differences.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = data_parallel_sgd(data.load(str(folder)), config, epochs=2)
    finally:
        torch.set_num_threads(threads)
    for name, parameter in expected.named_parameters():
        # Float32 sums in another order: the all-reduce adds two whole
        # gradients and halves them, the reference accumulates halved ones.
        torch.testing.assert_close(saved["model"][name], parameter.detach(), rtol=1e-5, atol=1e-6)
    assert len(saved["rng"]) == PROCESSES and not torch.equal(*saved["rng"])  # each process's own state


def test_a_stopped_distributed_run_resumes_as_if_uninterrupted(distributed_runs):
    _, runs = distributed_runs
    whole, split = (json.loads((runs[name] / "history.json").read_text()) for name in ("whole", "split"))
    assert len(whole) == 2
    assert [without_seconds(r) for r in split] == [without_seconds(r) for r in whole]
    whole, split = (torch.load(runs[name] / "checkpoint.pt", weights_only=True) for name in ("whole", "split"))
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, split["model"][name]), name
    assert sorted(p.name for p in runs["split"].iterdir()) == [
        "checkpoint.pt", "config.json", "history.json", "predictions.npz"]


def without_seconds(record):
    return {key: value for key, value in record.items() if key != "seconds"}


def test_a_distributed_run_resumes_only_on_as_many_processes(distributed_runs, capsys):
    folder, runs = distributed_runs
    with pytest.raises(SystemExit) as exit_:
        main([*OPTIONS, "--data", str(folder), "--epochs", "3", "--out", str(runs["whole"]), "--resume"])
    assert exit_.value.code == 2
    assert "replicas=2 (now 1)" in capsys.readouterr().err


def test_each_process_takes_its_slice_of_every_batch():
    plan = epoch_plan(24, 8, padding=1, flip=True, seed=3, epoch=5)
    shares = [plan.share(rank, 4) for rank in range(4)]
    for name in ("order", "rows", "cols", "flips"):
        assert all(getattr(s, name).shape == (3, 2) for s in shares)
        np.testing.assert_array_equal(np.concatenate([getattr(s, name) for s in shares], axis=1),
                                      getattr(plan, name))
    with pytest.raises(ValueError, match="does not split evenly over 3 replicas; use a multiple of 3"):
        plan.share(0, 3)


def test_the_place_comes_from_torchruns_environment():
    assert distributed.place({}) == distributed.Place(0, 1, 0)
    rendezvous = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert distributed.place({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", **rendezvous}) == \
        distributed.Place(3, 4, 1)
    assert distributed.place({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) == distributed.Place(0, 1, 0)
    with pytest.raises(ValueError, match="WORLD_SIZE=2 makes this one of 2 processes, but MASTER_PORT is not set: "
                                         "start the processes with torchrun"):
        distributed.place({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"})
    assert distributed.Place(0, 4, 0).writes and not distributed.Place(3, 4, 1).writes
    with pytest.raises(ValueError, match="must be whole numbers"):
        distributed.place({"RANK": "one", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match=r"RANK must be in \[0, WORLD_SIZE\)"):
        distributed.place({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match="configured for 2 replica"):
        distributed.place_for("torch", 2, {})
    assert distributed.place_for("keras", 2, {}) == distributed.Place()
    with pytest.raises(ValueError, match="Keras one process for all"):
        distributed.place_for("keras", 2, {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", **rendezvous})


def test_every_process_draws_dropout_masks_of_its_own():
    """Each replica's seed (four of a run, one of another run) gives dropout
    masks of its own; the same replica of the same run gives the same ones."""

    def mask(seed, rank):
        torch.manual_seed(distributed.replica_seed(seed, rank))
        return torch.nn.functional.dropout(torch.ones(1000), 0.5) > 0

    masks = [mask(0, rank) for rank in range(4)] + [mask(1, 0)]
    assert all(not torch.equal(a, b) for i, a in enumerate(masks) for b in masks[i + 1:])
    assert torch.equal(mask(0, 1), masks[1])


@pytest.mark.parametrize("changes, message", [
    (dict(batch_size=10, replicas=4), "batch size 10 does not split evenly over 4 replicas"),
    (dict(replicas=0), "replicas must be a whole number >= 1"),
    (dict(sync_batch_norm=True), "sync_batch_norm needs several replicas"),
])
def test_impossible_distributed_options_are_refused(changes, message):
    config = dataclasses.replace(TrainConfig("torch", "digits", 1, batch_size=8), **changes)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.check()


def test_sync_batch_norm_is_refused_on_a_cpu_before_the_run_folder_is_written(monkeypatch, tmp_path):
    for name, value in zip(distributed.ENVIRONMENT + distributed.RENDEZVOUS, ("0", "2", "0", "127.0.0.1", "29500")):
        monkeypatch.setenv(name, value)  # as torchrun sets them for the first of two processes
    config = TrainConfig("torch", "digits", 1, batch_size=8, replicas=2, sync_batch_norm=True)
    with pytest.raises(ValueError, match="SyncBatchNorm runs on CUDA devices only"):
        train(config, tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def keras_replicas(tmp_path_factory):
    """What tests/keras_replicas.py measures: Keras on two logical CPU devices."""
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("keras_replicas.py")),
                           str(tmp_path_factory.mktemp("keras-replicas"))],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_keras_replicas_take_the_steps_of_data_parallel_sgd(keras_replicas):
    assert keras_replicas["config"]["replicas"] == 2
    assert keras_replicas["from_data_parallel_sgd"] <= 1e-6  # float32 rounding; measured 0.0
    # Two epochs of two steps: the dropout generator's state, which the
    # replicas share, advances once a step and is set again at each epoch.
    assert keras_replicas["four_steps_from_data_parallel_sgd"] <= 1e-6  # measured 0.0
    # ... which one device on the whole batch does not take: the replicas
    # normalise over their halves of it.
    assert keras_replicas["from_one_device"] > 1e-3


def test_keras_synchronized_batch_norm_normalises_over_the_whole_batch(keras_replicas):
    # After one step the moving variances hold the first batch's variances:
    # with synchronized BatchNormalization those of the whole batch, as on
    # one device; without, those of each replica's half, which differ.
    assert keras_replicas["synchronized"] == [True]
    assert keras_replicas["sync_variance_from_one_device"] <= 1e-5
    assert keras_replicas["variance_from_one_device"] > 1e-3


def test_a_stopped_keras_run_on_replicas_resumes_as_if_uninterrupted(keras_replicas):
    assert len(keras_replicas["whole"]) == 2
    assert [without_seconds(r) for r in keras_replicas["resumed"]] == [
        without_seconds(r) for r in keras_replicas["whole"]]
    assert keras_replicas["resumed_from_whole"] == 0.0


@pytest.mark.parametrize("options, message", [
    (["--framework", "torch", "--replicas", "2"], "--replicas is for Keras; PyTorch runs one process per replica"),
    (["--framework", "keras", "--replicas", "3"], "3 replicas need 3 CPU devices; TensorFlow has 1"),
    (["--framework", "keras", "--replicas", "0"], "replicas must be a whole number >= 1"),
    (["--framework", "keras", "--sync-batch-norm"], "sync_batch_norm needs several replicas"),
])
def test_impossible_replicas_exit_2_and_write_nothing(options, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*options, "--data", "digits", "--epochs", "1", "--batch-size", "6", "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_keras_replicas_take_no_device_of_their_own():
    config = TrainConfig("keras", "digits", 1, batch_size=8, replicas=2)
    with pytest.raises(ValueError, match="takes TensorFlow's first 2 GPUs"):
        train_keras.check_device(config, "cpu:0")
