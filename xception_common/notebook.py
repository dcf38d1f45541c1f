"""What the setup cell of every notebook does, so that each notebook runs the
same in JupyterLab, in Colab and under ``pytest --nbval``."""

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stderr_fd():
    """Send what C++ code writes to file descriptor 2 to /dev/null.

    TensorFlow prints a few lines at import time before its log level applies
    ("All log messages before absl::InitializeLog() ..."); Python's own
    ``sys.stderr`` and any exception are untouched.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def setup(seed: int = 0) -> None:
    """Silence TensorFlow's C++ logs, select Keras' TensorFlow backend, and seed
    Python, NumPy, TensorFlow and PyTorch.

    Call it before anything imports TensorFlow: the log level is read once,
    at import.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with quiet_stderr_fd():
        import keras
    import numpy as np
    import torch

    keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow, not PyTorch
    torch.manual_seed(seed)
    np.set_printoptions(precision=4, suppress=True)
