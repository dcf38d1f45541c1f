"""What the setup cell of every notebook does, so that each notebook runs the
same in JupyterLab, in Colab and under ``pytest --nbval``."""

import contextlib
import html
import inspect
import os
import sys
import warnings


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
    """Silence TensorFlow's C++ logs and the warning a CUDA build of torch
    gives on a machine without a GPU driver, select Keras' TensorFlow backend,
    and seed Python, NumPy, TensorFlow and PyTorch.

    Call it before anything imports TensorFlow: the log level is read once,
    at import.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message="CUDA initialization", category=UserWarning)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with quiet_stderr_fd():
        import keras  # noqa: F401
    import numpy as np

    from .seeding import seed_all

    seed_all(seed)
    np.set_printoptions(precision=4, suppress=True)


def source(*objects) -> str:
    """The source code of functions or classes of the package, as written."""
    return "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects)


def side_by_side(left: str, right: str, titles=("Keras", "PyTorch")):
    """Two blocks of text in two columns, for code or summaries that mirror
    each other."""
    from IPython.display import HTML

    head = "".join(f"<th style='text-align:left'>{html.escape(t)}</th>" for t in titles)
    cells = "".join(
        f"<td style='text-align:left; vertical-align:top'><pre>{html.escape(text)}</pre></td>"
        for text in (left, right)
    )
    return HTML(f"<table><tr>{head}</tr><tr>{cells}</tr></table>")


def keras_summary(model, line_length: int = 88) -> str:
    """``model.summary()`` as one plain string of a fixed width.

    Keras draws the table with rich, whose console is as wide as the terminal
    (80 columns without one, 115 in Jupyter) and, in Jupyter, also emits an
    empty display while it captures. Here the console is exactly
    ``line_length`` wide everywhere and only the text remains.
    """
    from unittest import mock

    from IPython.utils.capture import capture_output

    lines = []
    width = str(line_length)
    with capture_output(), mock.patch.dict(os.environ, COLUMNS=width, JUPYTER_COLUMNS=width):
        model.summary(line_length=line_length, print_fn=lambda line, line_break=True: lines.append(line))
    return "\n".join(lines)
