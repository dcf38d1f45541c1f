"""TensorFlow and the CUDA build of torch (with triton) in one process.

Each case runs in a fresh interpreter, so that a segmentation fault is a
failed test rather than a dead test runner. See xception_common/load_order.py.
"""

import importlib.metadata
import importlib.util
import os
import resource
import signal
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


# The control: TensorFlow, then an optimizer built, with nothing of the package
# imported. With the versions known to conflict, this is the crash the package
# prevents (tensorflow/tensorflow#124205).
UNPROTECTED = "import tensorflow\nimport torch\ntorch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)\n"
KNOWN_TO_CONFLICT = {"tensorflow": ("2.20", "2.21"), "triton": ("3.7", "3.8")}  # major.minor seen to crash
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")


@pytest.fixture(scope="module")
def exits():
    """Each order in its own interpreter, all started at once: (status, stdout, stderr)."""
    report = "import xception_common\nprint(xception_common.triton_load)\n"
    processes = {order: subprocess.Popen([sys.executable, "-c", code + report], env=ENV, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for order, (code, _) in ORDERS.items()}
    outputs = {order: process.communicate(timeout=300) for order, process in processes.items()}
    return {order: (processes[order].returncode, *outputs[order]) for order in ORDERS}


def major_minor(package: str) -> str | None:
    try:
        return ".".join(importlib.metadata.version(package).split(".")[:2])
    except importlib.metadata.PackageNotFoundError:
        return None


def without_core_dump():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the crash is expected: leave no core file behind


def test_without_the_package_the_same_use_crashes_where_the_versions_are_known_to_conflict():
    versions = {package: major_minor(package) for package in KNOWN_TO_CONFLICT}
    if versions["triton"] is None:
        pytest.skip("no triton (a CPU-only torch): nothing conflicts")
    if any(versions[package] not in known for package, known in KNOWN_TO_CONFLICT.items()):
        pytest.skip(f"{versions}: not among the versions known to conflict, {KNOWN_TO_CONFLICT}")
    control = subprocess.run([sys.executable, "-c", UNPROTECTED], env=ENV, text=True, capture_output=True,
                             timeout=300, preexec_fn=without_core_dump)
    assert control.returncode == -signal.SIGSEGV, f"exit status {control.returncode}\n{control.stderr[-2000:]}"


@pytest.mark.parametrize("order", ORDERS)
def test_both_frameworks_in_one_process_exit_cleanly(order, exits):
    _, expected = ORDERS[order]
    status, stdout, stderr = exits[order]
    assert status == 0, f"exit status {status}\n{stderr[-2000:]}"
    # A CPU-only torch has no triton, and then nothing needs doing.
    if importlib.util.find_spec("triton") is None:
        expected = "absent"
    assert stdout.split()[-1] == expected
