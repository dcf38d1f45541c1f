"""What the setup cell of every notebook does, so that each notebook runs the
same in JupyterLab, in Colab and under ``pytest --nbval``."""

import contextlib
import html
import inspect
import logging
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
    """Silence TensorFlow's C++ logs and the warnings a CUDA build of torch
    gives on a machine without a GPU driver, select Keras' TensorFlow backend,
    and seed Python, NumPy, TensorFlow and PyTorch.

    Call it before anything imports TensorFlow: the log level is read once,
    at import.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message="CUDA initialization", category=UserWarning)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found"
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


class SideBySide:
    """Two blocks of text in two columns where HTML shows (JupyterLab, Colab,
    GitHub), one after the other, under their titles, where only text does."""

    def __init__(self, left: str, right: str, titles=("Keras", "PyTorch")):
        self.blocks = tuple(zip(titles, (left, right)))

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(title)}</th>" for title, _ in self.blocks)
        cells = "".join(
            f"<td style='text-align:left; vertical-align:top'><pre>{html.escape(text)}</pre></td>"
            for _, text in self.blocks
        )
        return f"<table><tr>{head}</tr><tr>{cells}</tr></table>"

    def __repr__(self) -> str:
        return "\n\n".join(f"{title}\n{'-' * len(title)}\n{text}" for title, text in self.blocks)


def side_by_side(left: str, right: str, titles=("Keras", "PyTorch")) -> SideBySide:
    """Code or summaries that mirror each other, for display in a notebook."""
    return SideBySide(left, right, titles)


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
