"""Image classification data for the notebooks, as uint8 arrays.

``load(source)`` returns a ``Dataset`` (train and test images, channels last,
with integer labels and class names) from one of three sources:

* ``"cifar10"``: CIFAR-10 through ``keras.datasets`` (downloads it once);
* ``"digits"``: scikit-learn's bundled 8×8 handwritten digits, no internet needed;
* a folder or a ``.zip`` path holding ``train/<class>/`` and ``test/<class>/``
  image folders (the zip may also hold them inside one top-level folder).

``check_source(source)`` validates a source cheaply, without decoding images.
Bad sources raise ``DataError``, whose message says what is wrong and what is
allowed. Keras is imported only for CIFAR-10, scikit-learn only for digits.
"""

import io
import os
import posixpath
import re
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import zip_longest
from pathlib import Path

import numpy as np
from PIL import Image

BUILT_IN = ("cifar10", "digits")
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
SPLITS = ("train", "test")
EXPECTED_LAYOUT = "expected train/<class>/ and test/<class>/ image folders"
ALLOWED_SOURCES = (
    "cifar10, digits, or a folder/.zip path holding train/<class>/ and test/<class>/ images"
)


class DataError(ValueError):
    """A data source that cannot be loaded; the message says what is allowed."""


class MixedSizesError(DataError):
    """The images of a folder or zip differ in size and no ``resize_to`` was given."""


@dataclass(frozen=True)
class Dataset:
    """Train and test images (uint8, N×H×W×3) with int64 labels into ``class_names``."""

    name: str
    source: str
    class_names: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    flip: bool  # whether a horizontal flip is a sensible augmentation


def check_source(source: str) -> None:
    """Raise ``DataError`` unless ``source`` names a built-in data set or a
    folder/.zip with a valid layout. Lists files; decodes no image."""
    source = os.fspath(source)
    if source in BUILT_IN:
        return
    with _open_source(source) as top:
        _find_layout(top, source)


def load(source: str, subset: int | None = None, resize_to: int | None = None,
         resize_mixed_to: int | None = None) -> Dataset:
    """Load ``source`` ("cifar10", "digits", or a folder/.zip path).

    ``subset=N`` keeps the first N training and the first N test images (in a
    folder or zip, classes take turns, so the first N are balanced). ``resize_to=S``
    resizes every image to S×S. Images of different sizes need one of the two:
    ``resize_mixed_to=S`` resizes every image to S×S only when they turn out
    to differ, and keeps images of one size as they are (each image is
    decoded once either way).
    """
    source = os.fspath(source)
    _check_positive("subset", subset)
    _check_positive("resize_to", resize_to)
    _check_positive("resize_mixed_to", resize_mixed_to)
    if source == "cifar10":
        return _resized(_load_cifar10(subset), resize_to)
    if source == "digits":
        return _resized(_load_digits(subset), resize_to)
    return _load_image_folders(source, subset, resize_to, resize_mixed_to)


def _check_positive(name, value):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{name} must be a whole number >= 1 or None, got {value!r}")


# --- Built-in data sets -------------------------------------------------------


def _load_cifar10(subset):
    try:
        import keras
    except ImportError as error:
        raise DataError(
            "--data cifar10 downloads through Keras, which is not installed: pip install tensorflow (or the "
            "package's [keras] extra); or --data digits, or --data PATH to a folder or .zip of images"
        ) from error
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as error:
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise DataError(
            f"CIFAR-10 could not be downloaded ({type(error).__name__}: {reason}). "
            "Alternatives: --data digits (scikit-learn's bundled 8×8 digits, no internet "
            "needed), or --data PATH to a folder or .zip holding train/<class>/ and "
            "test/<class>/ images (for example CIFAR-10 as JPEGs)."
        ) from error
    return Dataset(
        name="cifar10",
        source="keras.datasets.cifar10",
        class_names=CIFAR10_CLASSES,
        x_train=_channels_last(x_train[:subset]),
        y_train=np.asarray(y_train[:subset], dtype=np.int64).reshape(-1),
        x_test=_channels_last(x_test[:subset]),
        y_test=np.asarray(y_test[:subset], dtype=np.int64).reshape(-1),
        flip=True,
    )


def _channels_last(images):
    """A copy in N×H×W×3 order (Keras gives N×3×H×W under image_data_format
    'channels_first')."""
    if images.shape[-1] != 3 and images.shape[1] == 3:
        images = images.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images, dtype=np.uint8).copy()


def _load_digits(subset):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    gray = np.round(digits.images * 255 / 16).astype(np.uint8)  # 0–16 → 0–255
    rgb = np.repeat(gray[..., np.newaxis], 3, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        rgb, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    return Dataset(
        name="digits",
        source="scikit-learn load_digits",
        class_names=tuple(str(d) for d in range(10)),
        x_train=x_train[:subset],
        y_train=y_train[:subset].astype(np.int64),
        x_test=x_test[:subset],
        y_test=y_test[:subset].astype(np.int64),
        flip=False,  # a mirrored digit is a different symbol (or none)
    )


def _resized(dataset, size):
    if size is None or dataset.x_train.shape[1:3] == (size, size):
        return dataset
    x_train, x_test = _resize_all(dataset.x_train, size), _resize_all(dataset.x_test, size)
    return replace(dataset, x_train=x_train, x_test=x_test)


def _resize_all(images, size):
    return np.stack([np.asarray(_resize(Image.fromarray(image), size)) for image in images])


def _resize(image, size):
    return image.resize((size, size), Image.Resampling.BILINEAR)


# --- Folders and zips of images ---------------------------------------------


@contextmanager
def _open_source(source):
    """``with _open_source(source) as top``: the top of a folder as a ``pathlib.Path``, or
    of a .zip as a ``zipfile.Path`` (the zip is opened once, closed when the ``with`` ends),
    else DataError. The functions below read both alike, through what the two share:
    ``iterdir``, ``name``, ``is_file``, ``is_dir`` and ``read_bytes``."""
    if not os.path.exists(source):
        raise DataError(f"{source!r} is not an existing file or folder; allowed: {ALLOWED_SOURCES}")
    if os.path.isdir(source):
        yield Path(source)
    elif source.lower().endswith(".zip"):
        with _open_zip(source) as archive:
            yield _zip_top(archive)
    else:
        raise DataError(f"{source} is neither a folder nor a .zip file; allowed: {ALLOWED_SOURCES}")


def _open_zip(path):
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{path} is not a readable .zip file ({error}); allowed: {ALLOWED_SOURCES}") from error


def _zip_top(archive):
    """The top of ``archive`` as a ``zipfile.Path`` that answers ``iterdir`` and ``exists``
    from an index of the archive's visible entries, made here once. An index, because
    ``zipfile.Path.iterdir`` scans every name in the archive on each call (60,000 in
    CIFAR-10); visible entries only, so that a folder which only hidden entries imply
    (``train/ant/._a.png``) is not there, as a real folder holding only those is empty."""
    entries = {}  # folder ('at' without its trailing '/', '' for the top) -> its entries' 'at'
    for info in archive.infolist():
        parts = info.filename.rstrip("/").split("/")
        if all(part and _visible(part) for part in parts):
            _index(entries, info.filename)

    class IndexedZipPath(zipfile.Path):  # the paths it makes (``iterdir``, ``/``) are of its class
        def iterdir(self):
            if not self.is_dir():
                raise ValueError(f"{self} is not a folder")
            return (IndexedZipPath(self.root, at) for at in entries.get(self.at.rstrip("/"), ()))

        def exists(self):  # from the index too: zipfile.Path's first makes a set of every name
            return not self.at or self.at in entries.get(posixpath.dirname(self.at.rstrip("/")), ())

        @property
        def name(self):  # as zipfile.Path's, without making a PurePosixPath for each of 60,000 files
            return posixpath.basename(self.at.rstrip("/"))

    return IndexedZipPath(archive)


def _index(entries, at):
    """Add ``at`` to its folder's entries in ``entries``, and each folder above it that is new."""
    folder = posixpath.dirname(at.rstrip("/"))
    if folder not in entries:
        entries[folder] = {}
        if folder:
            _index(entries, folder + "/")
    entries[folder][at] = None


def _list(folder):
    """The visible sub-folders and files of ``folder`` (a ``Path`` or ``zipfile.Path``):
    two dicts from name to path, each in order of name."""
    try:
        named = {entry.name: entry for entry in folder.iterdir()}
    except OSError as error:
        raise DataError(f"cannot list {folder}: {error}") from error
    folders, files = {}, {}
    for name in sorted(filter(_visible, named)):
        entry = named[name]
        if entry.is_file():  # asked first: one stat for each file of a folder (Path)
            files[name] = entry
        elif entry.is_dir():
            folders[name] = entry
    return folders, files


def _visible(name):
    return not name.startswith(".") and name != "__MACOSX"


def _join(*parts):
    return "/".join(p for p in parts if p)


@dataclass(frozen=True)
class _Layout:
    class_names: tuple[str, ...]
    # split -> per class, a list of (path, file) in order of name: the path '/'-separated
    # from the top of the source, for messages; the file a Path or zipfile.Path, to read
    files: dict


def _find_layout(top, source):
    """Class names and image files of both splits, or DataError saying what is off."""
    root, root_folder = _find_root(top)
    where = f"{source} (inside {root}/)" if root else source
    split_folders = _list(root_folder)[0]
    for split in SPLITS:
        if split not in split_folders:
            raise DataError(f"{where} has no {split}/ folder; {EXPECTED_LAYOUT}")
    classes = {split: _list(split_folders[split])[0] for split in SPLITS}
    if not classes["train"]:
        raise DataError(f"{where}: train/ has no class sub-folders; {EXPECTED_LAYOUT}")
    if len(classes["train"]) == 1:
        raise DataError(f"{where}: train/ has one class folder, {next(iter(classes['train']))}/; a classifier "
                        f"needs two or more; {EXPECTED_LAYOUT}")
    if list(classes["train"]) != list(classes["test"]):
        raise DataError(_class_mismatch(where, *map(set, classes.values())))
    files = {
        split: [_image_files(where, root, split, name, folder) for name, folder in classes[split].items()]
        for split in SPLITS
    }
    return _Layout(tuple(classes["train"]), files)


def _find_root(top):
    """``('', top)`` when train/ or test/ sit at the top, else the name and path of the
    one top-level folder holding them."""
    folders = _list(top)[0]
    if len(folders) == 1 and not set(SPLITS) & set(folders):
        ((name, folder),) = folders.items()
        if set(SPLITS) & set(_list(folder)[0]):
            return name, folder
    return "", top


def _class_mismatch(where, train, test):
    return (
        f"{where}: train/ and test/ hold different class folders "
        f"(only in train/: {sorted(train - test)}; only in test/: {sorted(test - train)}); "
        "both need the same class sub-folders"
    )


def _image_files(where, root, split, class_name, folder):
    """(path, file) of each image in ``folder``, the class folder ``[root/]split/class_name``."""
    files = {name: file for name, file in _list(folder)[1].items() if name.lower().endswith(IMAGE_EXTENSIONS)}
    if not files:
        raise DataError(
            f"{where}: {split}/{class_name}/ has no image files "
            f"({', '.join(IMAGE_EXTENSIONS)}); "
            "every class needs at least one image in train/ and in test/"
        )
    folder_path = _join(root, split, class_name)
    return [(f"{folder_path}/{name}", file) for name, file in files.items()]


def _round_robin(files_per_class):
    """(image, label) pairs: the first image of each class, then the second of each, …"""
    labelled = [[(image, label) for image in files] for label, files in enumerate(files_per_class)]
    ranks = zip_longest(*labelled)
    return [item for rank in ranks for item in rank if item is not None]


def _load_image_folders(source, subset, resize_to, resize_mixed_to):
    with _open_source(source) as top:
        layout = _find_layout(top, source)
        reader = _ImageReader(source, resize_to, resize_mixed_to)
        decoded = {}
        for split in SPLITS:
            items = _round_robin(layout.files[split])[:subset]
            labels = np.array([label for _, label in items], dtype=np.int64)
            decoded[split] = [reader.read(path, file) for (path, file), _ in items], labels
        splits = {split: (reader.to_array(images), labels) for split, (images, labels) in decoded.items()}
    path = Path(source)
    return Dataset(
        name=path.stem if path.is_file() else path.resolve().name,
        source=source,
        class_names=layout.class_names,
        x_train=splits["train"][0],
        y_train=splits["train"][1],
        x_test=splits["test"][0],
        y_test=splits["test"][1],
        flip=True,
    )


@contextmanager
def _opened(source, path, read_bytes):
    """The PIL image whose bytes ``read_bytes()`` gives, open for the block;
    DataError naming ``path`` when it cannot be read or decoded."""
    try:
        with Image.open(io.BytesIO(read_bytes())) as image:
            yield image
    except _UNREADABLE as error:
        reason = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(error))  # the bytes, not a file
        raise DataError(
            f"{source}: cannot read image {path} ({type(error).__name__}: {reason}); remove or replace the file"
        ) from error


def _decode(source, path, read_bytes):
    """The RGB image whose bytes ``read_bytes()`` gives (see ``_opened``)."""
    with _opened(source, path, read_bytes) as image:
        return image.convert("RGB")


# What PIL and zipfile raise on a damaged, truncated, encrypted or oversized file.
_UNREADABLE = (
    OSError, ValueError, SyntaxError, EOFError, zipfile.BadZipFile, zlib.error,
    NotImplementedError, RuntimeError, Image.DecompressionBombError,
)  # fmt: skip


class _ImageReader:
    """Decodes images, each once. Every image must match the first one's size
    unless ``resize_to`` is given (each image is resized as it is read) or
    ``resize_mixed_to`` (all are resized once a size differs)."""

    def __init__(self, source, resize_to, resize_mixed_to):
        self.source = source
        self.resize_to, self.resize_mixed_to = resize_to, resize_mixed_to
        self.first = None  # (path, (width, height)) of the first image read
        self.mixed = False

    def read(self, path, file):
        """The image in ``file`` (a Path or zipfile.Path); ``path`` names it in messages."""
        image = self.decode(path, file)
        if self.resize_to is not None:
            image = _resize(image, self.resize_to)
        if self.first is None:
            self.first = path, image.size
        elif image.size != self.first[1] and not self.mixed:
            if self.resize_mixed_to is None:
                raise MixedSizesError(self.size_mismatch(path, image.size))
            self.mixed = True
        return image

    def to_array(self, images):
        """One uint8 N×H×W×3 array of the images read."""
        if self.mixed:
            images = [_resize(image, self.resize_mixed_to) for image in images]
        return np.stack([np.asarray(image) for image in images])

    def decode(self, path, file):
        return _decode(self.source, path, file.read_bytes)

    def size_mismatch(self, path, size):
        (first_path, (w0, h0)), (w, h) = self.first, size
        return (
            f"{self.source}: images differ in size "
            f"({first_path} is {w0}×{h0}, {path} is {w}×{h}); "
            "pass resize_to=S to resize every image to S×S"
        )


# --- Streaming: images listed now, read one by one later ----------------------


@dataclass(frozen=True)
class ImageFiles:
    """The images of a folder or zip, listed but not decoded, for a pipeline
    that reads them one by one (``ImageReader``) as training needs them, so
    that memory does not grow with their number. Paths are '/'-separated from
    the top of the source; labels index ``class_names``."""

    name: str
    source: str
    class_names: tuple[str, ...]
    train: tuple[str, ...]
    y_train: np.ndarray
    test: tuple[str, ...]
    y_test: np.ndarray
    flip: bool = True


def list_images(source: str, subset: int | None = None) -> ImageFiles:
    """The images of ``source`` (a folder or .zip), in the order ``load``
    gives them, without decoding any; ``subset`` as in ``load``."""
    source = os.fspath(source)
    _check_positive("subset", subset)
    if source in BUILT_IN:
        raise DataError(f"{source} is loaded into memory whole; only a folder or .zip of images is read one by one")
    with _open_source(source) as top:
        layout = _find_layout(top, source)
    splits = {}
    for split in SPLITS:
        items = _round_robin(layout.files[split])[:subset]
        splits[split] = tuple(path for (path, _), _ in items), np.array([label for _, label in items], dtype=np.int64)
    path = Path(source)
    return ImageFiles(path.stem if path.is_file() else path.resolve().name, source, layout.class_names,
                      *splits["train"], *splits["test"])


class ImageReader:
    """Reads one image of a folder or zip at a time, by its path in
    ``ImageFiles``. A zip is opened once in each process that reads from it:
    a copy sent to a worker process opens its own."""

    def __init__(self, source: str):
        self.source = os.fspath(source)
        self._archive = None

    def __getstate__(self):
        return {"source": self.source, "_archive": None}

    def read(self, path: str, size: int) -> np.ndarray:
        """The image at ``path``, decoded and resized to ``size``×``size``
        (bilinear, as ``load``'s ``resize_to``): uint8, height × width × 3."""
        return np.array(_resize(_decode(self.source, path, lambda: self._bytes(path)), size))

    def first_size(self, path: str) -> tuple[int, int]:
        """Width and height of the image at ``path``, from its header alone."""
        with _opened(self.source, path, lambda: self._bytes(path)) as image:
            return image.size

    def _bytes(self, path: str) -> bytes:
        if os.path.isdir(self.source):
            return (Path(self.source) / path).read_bytes()
        if self._archive is None:
            self._archive = _open_zip(self.source)
        return self._archive.read(path)


def decoded_bytes(files: ImageFiles) -> int:
    """What ``load`` would hold decoded: every image at the size of the
    first (``load`` decodes all of them before resizing any)."""
    width, height = ImageReader(files.source).first_size(files.train[0])
    return (len(files.train) + len(files.test)) * width * height * 3
