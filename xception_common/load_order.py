"""TensorFlow and a CUDA build of PyTorch in one process.

The PyTorch that ``pip install torch`` gives on Linux is a CUDA build that
brings triton, and torch imports triton lazily: at the first optimizer it
builds, for example. TensorFlow 2.20 and newer loads its core library with
``RTLD_GLOBAL``, which puts TensorFlow's statically linked copy of LLVM in the
process's global symbol table. ``libtriton`` (triton 3.7 and newer) loaded
after that binds to TensorFlow's LLVM instead of its own, and the process dies
with a segmentation fault and no Python traceback
(tensorflow/tensorflow#124205). So ``import tensorflow`` followed by
``torch.optim.SGD(...)`` crashes, whichever of the two frameworks was
imported first.

The package's ``__init__`` calls :func:`load_triton_first`, so importing
anything of ``xception_common`` makes the two frameworks safe to use together
in any order.
"""

import importlib.util
import os
import sys


def load_triton_first() -> str:
    """Load triton so that it binds to its own LLVM; say what was done.

    * ``"absent"``: triton or TensorFlow is not installed, nothing to do (a
      CPU-only torch has no triton);
    * ``"loaded"``: triton was already imported, nothing to do;
    * ``"before-tensorflow"``: TensorFlow is not imported yet, so a plain
      ``import triton`` puts triton's LLVM in place first (the fix upstream
      projects use);
    * ``"deepbind"``: TensorFlow is already imported, so triton is imported
      with ``RTLD_DEEPBIND``, which makes ``libtriton`` resolve its symbols in
      itself before the global table.
    """
    if "triton" in sys.modules:
        return "loaded"
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("tensorflow") is None:
        return "absent"
    if "tensorflow" not in sys.modules:
        import triton  # noqa: F401

        return "before-tensorflow"
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        import triton  # noqa: F401
    finally:
        sys.setdlopenflags(flags)
    return "deepbind"
