"""PyTorch training on a CUDA GPU; skipped without one.

Nothing here imports TensorFlow, so these run on a machine with PyTorch
alone, as the rest of the suite cannot:

    python -m pytest -o addopts="" tests/test_gpu.py
"""

import warnings

import numpy as np
import pytest
import torch
from conftest import config, tiny_dataset

from xception_common import train_torch
from xception_common.training import train


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_training_step_does_not_wait_for_the_gpu():
    """Under ``torch.cuda.set_sync_debug_mode("warn")`` an epoch of 6 steps
    warns of as many synchronising calls as an epoch of 2: those of the
    epoch's start and end, none at each step. Each trainer's first epoch,
    which chooses cuDNN's kernels, is not counted."""
    warned = {}
    for n in (16, 48):
        trainer = train_torch.Trainer(tiny_dataset(n=n), config("torch", 2), progress=False, device="cuda")
        trainer.train_epoch()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trainer.train_epoch()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        warned[n // 8] = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    assert len(warned[6]) == len(warned[2]), warned


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_resumes_on_a_gpu(tmp_path):
    for epochs in (1, 2):
        history = train(config("torch", epochs, precision="float16"), tmp_path, resume=epochs > 1,
                        dataset=tiny_dataset(), progress=False, device="cuda")
    assert [r["epoch"] for r in history] == [0, 1] and np.isfinite(history[1]["loss"])
