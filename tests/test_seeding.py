"""One seed for Python, NumPy and both frameworks."""

import random
import subprocess
import sys

import numpy as np
import pytest

from xception_common.seeding import seed_all


def draws():
    import keras
    import torch

    return (random.random(), np.random.rand(), torch.rand(1).item(), float(keras.random.uniform(())))


def test_the_same_seed_repeats_every_generator_and_another_seed_does_not():
    seed_all(3)
    first = draws()
    seed_all(3)
    assert draws() == first
    seed_all(4)
    assert all(a != b for a, b in zip(draws(), first))


def test_seeding_one_framework_imports_only_that_one():
    code = (
        "import sys; from xception_common.seeding import seed_all; seed_all(0, ['torch']); "
        "print('torch' in sys.modules, 'keras' in sys.modules, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]


def test_an_unknown_framework_is_refused_by_name():
    with pytest.raises(ValueError, match=r"cannot seed \['jax'\]; the frameworks are \['keras', 'torch'\]"):
        seed_all(0, ["torch", "jax"])
