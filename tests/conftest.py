import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

try:
    import keras
except ImportError:  # a machine with PyTorch alone: tests/test_gpu.py runs there, the Keras tests cannot
    keras = None


@pytest.fixture(autouse=True)
def seed():
    if keras is not None:
        keras.utils.set_random_seed(0)
    torch.manual_seed(0)


def config(framework, epochs, **kwargs):
    """A run's options for the tests: 71 px, batches of 8, a quick Polyak average."""
    from xception_common.runs import TrainConfig

    options = dict(image_size=71, batch_size=8, ema_decay=0.5)
    options.update(kwargs)
    return TrainConfig(framework, "tiny", epochs, **options)


def randomize_keras_batch_norm(model, seed=0):
    """Random scale, offset and moving statistics: BN's identity
    initialisation would hide a transposed or misplaced statistic."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(0.0, 0.1, n),
                    rng.normal(0.0, 0.1, n),
                    rng.uniform(0.5, 1.5, n),
                ]
            )
    return model


def randomize_torch_batch_norm(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return model


def images(size, n=2, seed=1):
    """A channels-last batch in [-1, 1], as Xception's preprocessing gives."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


def torch_forward(model, x_nhwc):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)).numpy()


def relative_max_difference(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def tiny_dataset(n=16, size=8, classes=3, seed=0):
    """A few random images with a learnable cue in their red channel."""
    from xception_common.data import Dataset

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    images[..., 0] = (labels * 100)[:, None, None].astype(np.uint8)  # a learnable cue
    return Dataset("tiny", "generated", tuple("abc"[:classes]), images, labels.astype(np.int64),
                   images[::-1].copy(), labels[::-1].astype(np.int64).copy(), flip=True)


@pytest.fixture
def image_folder(tmp_path):
    """Two classes of two 8×8 images each in train/ and test/."""
    from PIL import Image

    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(tmp_path / "data" / split / name / f"{i}.png")
    return tmp_path / "data"
