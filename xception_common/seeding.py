"""One seed for every random number generator a run or a notebook draws from."""

import importlib
import random

import numpy as np

FRAMEWORKS = ("torch", "keras")


def seed_all(seed: int, frameworks=FRAMEWORKS) -> None:
    """Seed Python's and NumPy's global generators and those of ``frameworks``:
    PyTorch's (CPU and every GPU) for ``"torch"``, Keras' and TensorFlow's for
    ``"keras"``. Only the frameworks named are imported."""
    unknown = set(frameworks) - set(FRAMEWORKS)
    if unknown:
        raise ValueError(f"cannot seed {sorted(unknown)}; the frameworks are {list(FRAMEWORKS)}")
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in frameworks:
        importlib.import_module("torch").manual_seed(seed)
    if "keras" in frameworks:
        importlib.import_module("keras").utils.set_random_seed(seed)
