"""The data loaders: built-in sets, folders and zips of images, and their errors."""

import os
import shutil
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import torch
from PIL import Image

from xception_common import train_keras, train_torch
from xception_common.data import DataError, ImageReader, check_source, load
from xception_common.epoch_plan import EpochPlan, crop_padding

# Class folders are created out of order; files too, to check that both get sorted.
FILES = {
    "train": {"zebra": ["a.png"], "ant": ["c.png", "a.png", "b.png"], "moose": ["b.png", "a.png"]},
    "test": {"zebra": ["x.png", "y.png"], "ant": ["x.png"], "moose": ["x.png"]},
}
CLASSES = ("ant", "moose", "zebra")
HEIGHT, WIDTH = 6, 8
MARKER = (1, 5)  # (row, column) of a white pixel: catches a transposed image


def colour(split, label, rank):
    """The colour of a class's rank-th file by name: each pixel says where it came from."""
    return (40 + 50 * label, 10 + 30 * rank, 200 if split == "train" else 100)


def write_images(root, files=FILES, size=(WIDTH, HEIGHT)):
    for split, classes in files.items():
        for class_name, names in classes.items():
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for rank, name in enumerate(sorted(names)):
                image = Image.new("RGB", size, colour(split, CLASSES.index(class_name), rank))
                image.putpixel(MARKER[::-1], (255, 255, 255))
                image.save(folder / name)
    return root


def zip_folder(folder, zip_path, inside="", folder_entries=True):
    """Zip ``folder``'s contents, under ``inside/`` when given, with some macOS clutter.
    Members go in reverse order: the loader must sort them itself. Without
    ``folder_entries`` the zip holds files only, and its folders are implied by their names."""
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*"), reverse=True):
            if folder_entries or path.is_file():
                archive.write(path, os.path.join(inside, path.relative_to(folder)))
        archive.writestr("__MACOSX/train/ant/._a.png", b"not an image")
        archive.writestr(os.path.join(inside, "train/ant/._a.png"), b"not an image")
        archive.writestr(os.path.join(inside, "train/ant/.DS_Store"), b"not an image")
    return zip_path


@pytest.fixture
def folder(tmp_path):
    root = write_images(tmp_path / "my-images")
    (root / "train" / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    (root / "train" / "ant" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(params=["folder", "zip", "nested zip", "zip of files only", "nested zip of files only"])
def source(request, folder, tmp_path):
    """The same images as a folder, a zip, and a zip with one top-level folder; each zip
    also without entries for its folders."""
    if request.param == "folder":
        return str(folder)
    inside = "cifar-like" if "nested" in request.param else ""
    folder_entries = "files only" not in request.param
    zip_path = zip_folder(folder, tmp_path / "my-images.zip", inside, folder_entries)
    with zipfile.ZipFile(zip_path) as archive:  # the fixture makes what it says
        assert any(name.endswith("/") for name in archive.namelist()) == folder_entries
    return str(zip_path)


def expected_order(split):
    """(label, rank) in round-robin order: first file of each class, then the second, …"""
    counts = [len(FILES[split][name]) for name in CLASSES]
    return [(lab, rank) for rank in range(max(counts)) for lab in range(3) if rank < counts[lab]]


def test_image_folders_load_in_round_robin_order(source):
    data = load(source)
    assert data.name == "my-images"
    assert data.source == source
    assert data.class_names == CLASSES
    assert data.flip is True
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        order = expected_order(split)
        assert x.dtype == np.uint8 and y.dtype == np.int64
        assert x.shape == (len(order), HEIGHT, WIDTH, 3)
        assert y.tolist() == [label for label, _ in order]
        assert x[:, 0, 0].tolist() == [list(colour(split, lab, rank)) for lab, rank in order]
        assert (x[:, MARKER[0], MARKER[1]] == 255).all()
    assert expected_order("train") == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (0, 2)]


def test_check_source_accepts_good_sources(source):
    check_source(source)


@pytest.mark.parametrize("name", ["cifar10", "digits"])
def test_check_source_accepts_the_built_in_sets_without_opening_anything(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).mkdir()  # a folder of that name beside the run, which is not what the name means
    check_source(name)


def test_subset_keeps_the_first_images_balanced(source):
    data = load(source, subset=2)
    assert data.y_train.tolist() == [0, 1]
    assert data.y_test.tolist() == [0, 1]
    assert data.x_train[:, 0, 0].tolist() == [list(colour("train", lab, 0)) for lab in (0, 1)]
    assert load(source, subset=1000).x_train.shape[0] == 6


def test_subset_decodes_only_the_images_it_keeps(folder):
    (folder / "train" / "ant" / "c.png").write_bytes(b"broken")  # the 6th training image
    assert load(str(folder), subset=5).x_train.shape == (5, HEIGHT, WIDTH, 3)
    with pytest.raises(DataError, match="c.png"):
        load(str(folder), subset=6)


def test_images_of_different_sizes_need_resize_to(tmp_path):
    root = write_images(tmp_path / "mixed")
    Image.new("RGB", (5, 7), (1, 2, 3)).save(root / "test" / "moose" / "x.png")
    message = r"differ in size \(train/ant/a.png is 8×6, test/moose/x.png is 5×7\); pass resize"
    with pytest.raises(DataError, match=message):
        load(str(root))
    data = load(str(root), resize_to=4)
    assert data.x_train.shape == (6, 4, 4, 3) and data.x_test.shape == (4, 4, 4, 3)
    assert data.x_test[1].tolist() == np.full((4, 4, 3), (1, 2, 3)).tolist()  # uniform stays so


def test_resize_mixed_to_resizes_only_images_that_differ(tmp_path, folder, monkeypatch):
    from xception_common import data as data_module

    decoded = []
    decode = data_module._ImageReader.decode
    monkeypatch.setattr(data_module._ImageReader, "decode",
                        lambda self, path, file: decoded.append(path) or decode(self, path, file))
    assert load(str(folder), resize_mixed_to=4).x_train.shape == (6, HEIGHT, WIDTH, 3)  # one size: kept
    root = write_images(tmp_path / "mixed")
    Image.new("RGB", (5, 7), (1, 2, 3)).save(root / "test" / "moose" / "x.png")
    decoded.clear()
    data = load(str(root), resize_mixed_to=4)
    assert data.x_train.shape == (6, 4, 4, 3) and data.x_test.shape == (4, 4, 4, 3)
    assert len(decoded) == 10  # each image once
    assert data.x_test[1].tolist() == np.full((4, 4, 3), (1, 2, 3)).tolist()
    assert np.array_equal(data.x_train, load(str(root), resize_to=4).x_train)


def test_resize_to_applies_to_images_of_one_size(source):
    data = load(source, resize_to=16)
    assert data.x_train.shape == (6, 16, 16, 3)
    colours = [list(colour("test", lab, rank)) for lab, rank in expected_order("test")]
    assert data.x_test[:, 15, 0].tolist() == colours  # far from the marker: the class colour


def empty_folders(folder):
    for path in folder.iterdir():
        path.unlink()


def non_image_files(folder):
    for path in folder.iterdir():
        path.rename(path.with_suffix(".txt"))


SPLITS = ("train", "test")
MALFORMED = {
    "missing test": (
        lambda root: shutil.rmtree(root / "test"),
        r"has no test/ folder; expected train/<class>/ and test/<class>/ image folders",
    ),
    "missing train": (lambda root: shutil.rmtree(root / "train"), "has no train/ folder"),
    "no classes": (
        lambda root: [shutil.rmtree(path) for path in (root / "train").iterdir()],
        "train/ has no class sub-folders",
    ),
    "one class": (
        lambda root: [shutil.rmtree(path) for split in SPLITS for path in sorted((root / split).iterdir())[1:]],
        "train/ has one class folder, ant/; a classifier needs two or more",
    ),
    "different classes": (
        lambda root: (root / "test" / "moose").rename(root / "test" / "elk"),
        r"different class folders \(only in train/: \['moose'\]; only in test/: \['elk'\]\)",
    ),
    "empty class": (
        lambda root: empty_folders(root / "test" / "ant"),
        r"test/ant/ has no image files \(.jpg, .jpeg, .png, .bmp, .gif, .webp\)",
    ),
    "only non-images": (
        lambda root: non_image_files(root / "train" / "zebra"),
        "train/zebra/ has no image files",
    ),
}


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_layouts_are_rejected(tmp_path, case, as_zip):
    change, message = MALFORMED[case]
    source = write_images(tmp_path / "data")
    change(source)
    if as_zip:
        source = zip_folder(source, tmp_path / "data.zip")
    for call in (check_source, load):
        with pytest.raises(DataError, match=message):
            call(str(source))


def test_nested_zip_errors_say_where_they_looked(tmp_path):
    root = write_images(tmp_path / "data")
    shutil.rmtree(root / "test" / "ant")
    source = zip_folder(root, tmp_path / "data.zip", inside="cifar")
    message = r"data.zip \(inside cifar/\): train/ and test/ hold different class"
    with pytest.raises(DataError, match=message):
        check_source(str(source))


@pytest.mark.parametrize(
    "name, message",
    [
        ("cifar100", r"'cifar100' is not an existing file or folder; allowed: cifar10, digits, or"),
        ("no/such/folder", r"'no/such/folder' is not an existing file or folder; allowed: cifar10"),
        ("missing.zip", r"'missing.zip' is not an existing .*folder/.zip path"),
    ],
)
def test_unknown_sources_list_what_is_allowed(name, message):
    for call in (check_source, load):
        with pytest.raises(DataError, match=message):
            call(name)


def test_files_that_are_not_zips_are_rejected(tmp_path):
    (tmp_path / "data.tar").write_bytes(b"tar")
    (tmp_path / "data.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="data.tar is neither a folder nor a .zip file; allowed:"):
        check_source(str(tmp_path / "data.tar"))
    with pytest.raises(DataError, match=r"data.zip is not a readable .zip file \(File is not a zip file\); allowed: "
                       "cifar10, digits, or a folder/.zip path"):
        load(str(tmp_path / "data.zip"))


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_corrupt_image_names_the_file(tmp_path, as_zip):
    root = write_images(tmp_path / "data")
    png = (root / "test" / "zebra" / "y.png").read_bytes()
    (root / "test" / "zebra" / "y.png").write_bytes(png[: len(png) // 2])  # truncated
    source = zip_folder(root, tmp_path / "data.zip") if as_zip else root
    check_source(str(source))  # listing only: the damage shows when decoding
    with pytest.raises(DataError, match=r"cannot read image test/zebra/y.png \(.*\); remove or"):
        load(str(source))


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_a_streamed_image_that_is_not_an_image_names_the_file(tmp_path, as_zip):
    root = write_images(tmp_path / "data")
    (root / "test" / "zebra" / "y.png").write_bytes(b"broken")
    source = str(zip_folder(root, tmp_path / "data.zip") if as_zip else root)
    reader = ImageReader(source)
    assert reader.read("test/zebra/x.png", 8).shape == (8, 8, 3)
    message = r"cannot read image test/zebra/y.png \(UnidentifiedImageError: .*\); remove or replace"
    with pytest.raises(DataError, match=message) as error:
        reader.read("test/zebra/y.png", 8)
    assert "BytesIO" not in str(error.value)  # the decoder read bytes; the message names the file
    with pytest.raises(DataError, match=message):
        reader.first_size("test/zebra/y.png")


def test_a_zip_is_opened_once_and_closed_when_loading_ends(tmp_path, monkeypatch):
    root = write_images(tmp_path / "data")
    good = str(zip_folder(root, tmp_path / "good.zip"))
    (root / "test" / "zebra" / "y.png").write_bytes(b"broken")  # the last test image
    broken = str(zip_folder(root, tmp_path / "broken.zip"))
    opened, closed = [], []
    init, close = zipfile.ZipFile.__init__, zipfile.ZipFile.close

    def recording_init(self, *args, **kwargs):
        opened.append(self)
        init(self, *args, **kwargs)

    def recording_close(self):
        closed.append(self)
        close(self)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", recording_init)
    monkeypatch.setattr(zipfile.ZipFile, "close", recording_close)
    load(good)
    check_source(good)
    with pytest.raises(DataError, match="cannot read image test/zebra/y.png"):
        load(broken)
    assert len(opened) == 3  # one per call
    assert all(archive in closed for archive in opened)  # all still referenced: closed by the loader


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "10"])
def test_subset_and_resize_to_must_be_positive_whole_numbers(folder, value):
    message = f"subset must be a whole number >= 1 or None, got {value!r}"
    with pytest.raises(DataError, match=message):
        load(str(folder), subset=value)
    with pytest.raises(DataError, match="resize_to must be a whole number >= 1"):
        load("digits", resize_to=value)


def test_digits():
    data = load("digits")
    assert (data.name, data.source, data.flip) == ("digits", "scikit-learn load_digits", False)
    assert data.class_names == tuple("0123456789")
    assert data.x_train.shape == (1437, 8, 8, 3) and data.x_test.shape == (360, 8, 8, 3)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    x = np.concatenate([data.x_train, data.x_test])
    assert x.min() == 0 and x.max() == 255
    assert set(np.unique(x)) <= {round(v * 255 / 16) for v in range(17)}
    assert (x[..., 0] == x[..., 1]).all() and (x[..., 0] == x[..., 2]).all()
    per_class = np.bincount(data.y_test)
    assert per_class.min() >= 35 and per_class.max() <= 37  # stratified: 36 ± 1 of each digit
    again = load("digits", subset=5)
    assert np.array_equal(again.x_train, data.x_train[:5])  # the same split every time
    assert np.array_equal(again.y_test, data.y_test[:5])


def test_digits_resize_to():
    data = load("digits", subset=3, resize_to=16)
    assert data.x_train.shape == (3, 16, 16, 3) and data.x_test.shape == (3, 16, 16, 3)


def test_cifar10_download_failure_names_the_alternatives(monkeypatch):
    def offline():
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(DataError) as error:
        load("cifar10")
    message = str(error.value)
    assert "CIFAR-10 could not be downloaded (OSError: [Errno -3] Temporary failure" in message
    assert "--data digits" in message and "--data PATH" in message
    assert "train/<class>/ and test/<class>/" in message


def test_cifar10_labels_are_flattened(monkeypatch):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (5, 32, 32, 3), np.uint8)
    x_test = rng.integers(0, 256, (4, 32, 32, 3), np.uint8)
    y_train = np.array([[3], [1], [4], [1], [5]], np.uint8)
    y_test = np.array([[9], [2], [6], [5]], np.uint8)
    fake = lambda: ((x_train, y_train), (x_test, y_test))  # noqa: E731
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", fake)
    data = load("cifar10", subset=3)
    assert (data.name, data.source, data.flip) == ("cifar10", "keras.datasets.cifar10", True)
    # CIFAR-10's classes in the order of its labels, as its authors list them.
    assert data.class_names == ("airplane", "automobile", "bird", "cat", "deer",
                                "dog", "frog", "horse", "ship", "truck")
    assert data.y_train.tolist() == [3, 1, 4] and data.y_train.dtype == np.int64
    assert data.y_test.tolist() == [9, 2, 6] and data.y_test.shape == (3,)
    assert np.array_equal(data.x_train, x_train[:3]) and np.array_equal(data.x_test, x_test[:3])
    assert load("cifar10").x_test.shape == (4, 32, 32, 3)


def test_cifar10_channels_first_is_made_channels_last(monkeypatch):
    x = np.arange(2 * 3 * 32 * 32, dtype=np.uint32).reshape(2, 3, 32, 32).astype(np.uint8)
    y = np.array([[0], [1]], np.uint8)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((x, y), (x, y)))
    data = load("cifar10")
    assert data.x_train.shape == (2, 32, 32, 3)
    assert np.array_equal(data.x_train[1, 4, 7], x[1, :, 4, 7])


def test_folder_and_digits_need_no_keras(folder):
    script = (
        "import sys; from xception_common.data import load, check_source; "
        f"load({str(folder)!r}); load('digits', subset=2); check_source('cifar10'); "
        "assert not {'keras', 'tensorflow'} & set(sys.modules), 'imported keras'"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    # Without Keras at all, cifar10 (which downloads through Keras) says so.
    script = (
        "import sys; sys.modules['keras'] = None; from xception_common.data import DataError, load\n"
        "try:\n    load('cifar10')\nexcept DataError as error:\n    print(error)"
    )
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert "--data cifar10 downloads through Keras, which is not installed" in done.stdout


def test_both_pipelines_scale_images_as_keras_xception_preprocessing():
    # Images at the model's input size, cropped at the centre of their padding (the original
    # image) and not flipped: what remains of the pipeline is the scaling, which must be
    # Keras' own for Xception (preprocess_input, mode "tf": x / 127.5 - 1).
    size, padding = 8, crop_padding(8)
    images = np.random.default_rng(0).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    images[0, 0, 0] = 0
    images[1, 2, 3] = 255
    labels = np.arange(4, dtype=np.int64)
    order = np.array([[2, 0, 3, 1]])  # not 0, 1, 2, 3: the batch is gathered in the plan's order
    centre = np.full(order.shape, padding, dtype=np.int64)
    plan = EpochPlan(order, centre, centre.copy(), np.zeros(order.shape, dtype=bool))
    expected = keras.applications.xception.preprocess_input(images[order[0]].astype("float32"))
    assert expected.min() == -1.0 and expected.max() == 1.0  # the reference's own ends

    nchw = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    torch_batch, torch_labels = train_torch.training_batch(nchw, torch.from_numpy(labels), plan, 0, padding, size)
    torch_batch = torch_batch.permute(0, 2, 3, 1).numpy()
    (keras_batch, keras_labels), = train_keras.training_batches(images, labels, [plan], padding, size)
    keras_batch = keras_batch.numpy()

    for batch, batch_labels in ((torch_batch, torch_labels), (keras_batch, keras_labels)):
        assert batch.shape == (4, size, size, 3)
        np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-6)
        assert np.asarray(batch_labels).tolist() == [2, 0, 3, 1]
        source = images[order[0]]
        assert (batch[source == 0] == -1.0).all() and (batch[source == 255] == 1.0).all()  # exactly


DATA = os.environ.get("XCEPTION_DATA", "")


@pytest.mark.skipif(not os.path.exists(DATA), reason="XCEPTION_DATA: a CIFAR-10 folder or .zip")
def test_real_image_folders():
    data = load(DATA, subset=50)
    assert len(data.class_names) == 10
    assert data.x_train.shape == (50, 32, 32, 3) and data.x_test.shape == (50, 32, 32, 3)
    assert np.bincount(data.y_train).tolist() == [5] * 10
