"""One seed for every random number generator a run or a notebook draws from."""

import importlib
import random

import numpy as np

from .architecture import check_whole

FRAMEWORKS = ("keras", "torch")
MAX_SEED = 2**32 - 1  # NumPy's global generator takes seeds up to this


def seed_all(seed: int, frameworks=FRAMEWORKS) -> None:
    """Seed Python's and NumPy's global generators and those of ``frameworks``:
    PyTorch's (CPU and every GPU) for ``"torch"``, Keras' and TensorFlow's for
    ``"keras"``. Only the frameworks named are imported."""
    check_whole("seed", seed, 0, MAX_SEED)
    if isinstance(frameworks, str):
        frameworks = (frameworks,)
    unknown = set(frameworks) - set(FRAMEWORKS)
    if unknown:
        raise ValueError(f"cannot seed {sorted(unknown)}; the frameworks are {list(FRAMEWORKS)}")
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in frameworks:
        importlib.import_module("torch").manual_seed(seed)
    if "keras" in frameworks:
        importlib.import_module("keras").utils.set_random_seed(seed)
