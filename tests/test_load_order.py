"""TensorFlow and the CUDA build of torch (with triton) in one process.

Each case runs in a fresh interpreter, so that a segmentation fault is a
failed test rather than a dead test runner. See xception_common/load_order.py.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

KERAS_SIDE = """
from xception_common.keras_xception import build_xception
build_xception(num_classes=3, input_shape=(71, 71, 3))
"""

TORCH_SIDE = """
import torch
from xception_common.torch_xception import Xception
torch.optim.SGD(Xception(num_classes=3).parameters(), lr=0.1)
"""

# Each order of use, and how the package must have loaded triton for it.
ORDERS = {
    "keras-then-torch": (KERAS_SIDE + TORCH_SIDE, "before-tensorflow"),
    "torch-then-keras": (TORCH_SIDE + KERAS_SIDE, "before-tensorflow"),
    # A reader who imports TensorFlow before anything of the package.
    "tensorflow-first": ("import tensorflow\n" + KERAS_SIDE + TORCH_SIDE, "deepbind"),
}


@pytest.fixture(scope="module")
def exits():
    """Each order in its own interpreter, all started at once: (status, stdout, stderr)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    report = "import xception_common\nprint(xception_common.triton_load)\n"
    processes = {order: subprocess.Popen([sys.executable, "-c", code + report], env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for order, (code, _) in ORDERS.items()}
    outputs = {order: process.communicate(timeout=300) for order, process in processes.items()}
    return {order: (processes[order].returncode, *outputs[order]) for order in ORDERS}


@pytest.mark.parametrize("order", ORDERS)
def test_both_frameworks_in_one_process_exit_cleanly(order, exits):
    _, expected = ORDERS[order]
    status, stdout, stderr = exits[order]
    assert status == 0, f"exit status {status}\n{stderr[-2000:]}"
    # A CPU-only torch has no triton, and then nothing needs doing.
    if importlib.util.find_spec("triton") is None:
        expected = "absent"
    assert stdout.split()[-1] == expected
