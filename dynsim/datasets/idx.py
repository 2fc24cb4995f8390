"""MNIST and Fashion-MNIST from their original IDX gzip files; :func:`load`, the entry point for every data set.

Each data set is the four files its publisher distributes
(``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``), kept byte for
byte: every file is checked against its published MD5 sum before it is read.

Where the files are looked for
------------------------------
The data folder is, in this order:

1. the ``data_dir`` argument;
2. the environment variable ``DYNSIM_DATA``;
3. the ``data/`` folder at the top of the dynsim checkout, when dynsim runs
   from one (the folder exists beside ``setup.cfg``);
4. ``~/.cache/dynsim/data``.

Within the data folder a data set lives in a subfolder named after it
(``<data folder>/mnist/``, ``<data folder>/fashion-mnist/``). The four files
may also lie directly in the data folder (point ``data_dir`` at a folder
holding one data set); that layout is used only when the subfolder does not
exist and all four files are there.

Missing files are downloaded from the publishers' mirrors into the
subfolder unless ``download=False``; without a network, the error names the
files to place by hand and the folder to place them in.

The loader returns Scellier & Bengio's split [3]_: the first 50,000 training
images for training, the last 10,000 for validation, and the 10,000 test
images, each as a :class:`dynsim.datasets.tasks.Task` with pixels scaled to [0, 1]
(the range of the clamped hard-sigmoid input units), kept flat (n, 784) in
row-major order (pixel (r, c) at index ``r * 28 + c``), with
``image_shape == (1, 28, 28)``.

:func:`load` also takes ``"cifar10"``, which it hands to
:func:`dynsim.datasets.cifar.load_cifar10` (that module reuses the folder
look-up and checksum helpers of this one).

References
----------
.. [1] Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning
       applied to document recognition", Proc. IEEE 86(11):2278-2324 (1998).
.. [2] H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset
       for Benchmarking Machine Learning Algorithms", arXiv:1708.07747 (2017).
.. [3] B. Scellier, Y. Bengio, "Equilibrium Propagation: Bridging the Gap
       between Energy-Based Models and Backpropagation", Front. Comput.
       Neurosci. 11:24 (2017).
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import socket
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import numpy as np

from dynsim._version import __version__
from dynsim.datasets.tasks import Task
from dynsim.validation import DynsimError, ValidationError, check_memory, float_dtype, positive_int

__all__ = ["Dataset", "DATASETS", "NAMES", "DatasetError", "Splits", "FILES", "ENV_VAR", "default_data_dir",
           "data_root", "dataset_folder", "file_md5", "verify_md5", "read_idx", "write_idx",
           "download_files", "load_folder", "load"]

log = logging.getLogger(__name__)

ENV_VAR = "DYNSIM_DATA"

# The publishers' file names, shared by both data sets (which is why each
# data set gets its own subfolder).
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# Seconds a single socket operation may block; a stalled mirror then fails
# over to the next one instead of hanging the run.
DOWNLOAD_TIMEOUT = 30.0
_CHUNK = 1 << 20

# The package's parent folder: the checkout when dynsim runs from one.
# Module-level so tests can point it elsewhere.
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]


class DatasetError(DynsimError):
    """A data file is missing, corrupt or cannot be downloaded; the message names the file and the fix."""


@dataclass(frozen=True)
class Dataset:
    """A registered data set: its published checksums and where to download it.

    Attributes
    ----------
    name : str
        Registry key, also the name of its subfolder in the data folder.
    md5 : dict
        Published MD5 sum (lowercase hex) of each of the four :data:`FILES`.
    mirrors : tuple of str
        Base URLs tried in order; a file's URL is the base plus its name.
    classes : tuple of str
        The ten class names, indexed by label.
    n_train : int
        Number of training images (validation ones included).
    """

    name: str
    md5: dict
    mirrors: tuple
    classes: tuple
    n_train: int = 60000


DATASETS = {
    "mnist": Dataset(
        name="mnist",
        md5={TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
             TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
             TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
             TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c"},
        # The S3 copy torchvision uses first: the original site has been
        # intermittently unavailable or refusing scripted downloads.
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        classes=tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": Dataset(
        name="fashion-mnist",
        md5={TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
             TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
             TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
             TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310"},
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
    ),
}

# Every name load() takes. DATASETS holds only the IDX data sets: the MNIST
# scenarios offer its keys as --dataset choices and build 784-input networks.
CIFAR10 = "cifar10"
NAMES = tuple(sorted((*DATASETS, CIFAR10)))

# Checksum -> (data set, file): lets a mismatch say "this is MNIST's file",
# the likely mistake since both data sets use the same file names.
_KNOWN_MD5 = {md5: (ds.name, fname) for ds in DATASETS.values() for fname, md5 in ds.md5.items()}


@dataclass
class Splits:
    """Training, validation and test sets of one data set.

    Attributes
    ----------
    train, validation, test : Task
        ``x`` ndarray, shape (n, C * H * W) in [0, 1] (784 for MNIST and
        Fashion-MNIST, 3072 for CIFAR-10); ``labels`` int64 ndarray, shape
        (n,); ``targets`` one-hot ndarray, shape (n, 10); ``image_shape``
        ``(C, H, W)``: (1, 28, 28) or (3, 32, 32).
    """

    train: Task
    validation: Task
    test: Task

    def as_dict(self, train_size=None, eval_size=None):
        """``{'train', 'validation', 'test'}`` as :func:`dynsim.training.loop` takes them, optionally cut short.

        An empty validation split (``validation_size=0``) is left out.

        Parameters
        ----------
        train_size, eval_size : int, optional
            Keep only the first examples of the training split, and of the
            validation and test splits (smoke runs); at most the split's
            size (a larger one is refused, not silently cut).
        """
        def first(task, n):
            if n is None:
                return task
            name = "train_size" if task is self.train else "eval_size"
            n = positive_int(name, n)
            if n > task.x.shape[0] and (task is self.train or task.x.shape[0] > 0):
                raise ValidationError(f"{name} must be at most {task.x.shape[0]} (the {task.name!r} split's "
                                      f"size), got {n}")
            # replace() keeps the other fields, image_shape among them.
            return dataclasses.replace(task, x=task.x[:n], labels=task.labels[:n], targets=task.targets[:n])

        out = {"train": first(self.train, train_size), "validation": first(self.validation, eval_size),
               "test": first(self.test, eval_size)}
        if self.validation.x.shape[0] == 0:
            del out["validation"]  # validation_size=0: every training image trains, nothing to evaluate there
        return out


# ---------------------------------------------------------------------------
# Where the files are
# ---------------------------------------------------------------------------

def default_data_dir():
    """The data folder used when neither ``data_dir`` nor ``$DYNSIM_DATA`` is given.

    Returns
    -------
    Path
        The checkout's ``data/`` folder when dynsim runs from a checkout,
        else ``~/.cache/dynsim/data``.
    """
    checkout_data = _PACKAGE_PARENT / "data"
    # setup.cfg beside it tells a checkout from an installed package, whose
    # parent (site-packages) might hold some unrelated "data" folder.
    if checkout_data.is_dir() and (_PACKAGE_PARENT / "setup.cfg").is_file():
        return checkout_data
    return Path.home() / ".cache" / "dynsim" / "data"


def data_root(data_dir=None):
    """The data folder: ``data_dir``, else ``$DYNSIM_DATA``, else :func:`default_data_dir`.

    Parameters
    ----------
    data_dir : str or Path, optional
        Explicit folder; ``~`` is expanded. An empty ``$DYNSIM_DATA`` counts as unset.

    Returns
    -------
    Path

    Raises
    ------
    ValidationError
        ``data_dir`` is neither None, a str nor a path-like object, or names a file.
    """
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise ValidationError(f"data_dir must be None, a str or a path-like object; got {data_dir!r}")
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if root.exists() and not root.is_dir():
            raise ValidationError(f"data_dir {str(root)!r} is a file; name the folder that holds the data sets")
        return root
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return default_data_dir()


def _check_name(name, names=DATASETS):
    if not isinstance(name, str) or name not in names:
        known = ", ".join(repr(k) for k in sorted(names))
        raise ValidationError(f"name must be one of {known}; got {name!r}")
    return DATASETS.get(name)


def dataset_folder(name, data_dir=None):
    """The folder holding (or to hold) the files of data set ``name``.

    Parameters
    ----------
    name : str
        One of :data:`NAMES`: a key of :data:`DATASETS`, or ``"cifar10"``
        (see :func:`dynsim.datasets.cifar.cifar10_folder`).
    data_dir : str or Path, optional
        Data folder; see :func:`data_root`.

    Returns
    -------
    Path
        ``<data folder>/<name>``, or the data folder itself when that
        subfolder does not exist and all the data set's files (the four
        :data:`FILES` for an IDX data set) lie in the data folder.
    """
    _check_name(name, NAMES)
    if name == CIFAR10:
        from dynsim.datasets import cifar  # here, not at the top: cifar imports this module

        return cifar.cifar10_folder(data_dir)
    root = data_root(data_dir)
    sub = root / name
    if not sub.is_dir() and all((root / f).is_file() for f in FILES):
        return root
    return sub


# ---------------------------------------------------------------------------
# Checksums and the IDX format
# ---------------------------------------------------------------------------

def file_md5(path):
    """MD5 of a file as lowercase hex, read in 1 MiB chunks (constant memory)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_md5(path, expected):
    """Raise :class:`DatasetError` unless the file's MD5 sum is ``expected``.

    Parameters
    ----------
    path : str or Path
    expected : str
        Lowercase hex MD5 sum.

    Raises
    ------
    DatasetError
        Missing file, or a sum that differs; the message gives both sums and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} is missing: place the original file there")
    found = file_md5(path)
    if found == expected.lower():
        return
    msg = (f"{path} is corrupt or not the published file: its MD5 sum is {found} "
           f"({path.stat().st_size} bytes), expected {expected.lower()}.")
    other = _KNOWN_MD5.get(found)
    if other is not None:
        msg += f" It is {other[0]}'s {other[1]}: is it in the wrong folder?"
    msg += " Delete it and download it again (or place the original file there)."
    raise DatasetError(msg)


# IDX type codes (third byte of the magic number) and their big-endian dtypes.
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}


def read_idx(path):
    """Read a gzip-compressed IDX file.

    Parameters
    ----------
    path : str or Path
        File whose decompressed content is an IDX file: magic number
        ``0x0000TTDD`` (``TT`` the type code, 0x08 for unsigned bytes;
        ``DD`` the number of dimensions), the dimensions as 32-bit
        big-endian integers, then the values in row-major order.

    Returns
    -------
    ndarray, shape given by the header
        Native byte order, writable; uint8 for the image and label files of
        MNIST and Fashion-MNIST.

    Raises
    ------
    DatasetError
        Missing file, not gzip, truncated or corrupt gzip stream, wrong
        magic number, or a size that disagrees with the header. The message
        names the file.

    References
    ----------
    .. [1] Y. LeCun et al. (1998); the format is described on the MNIST page
           and in ``shared/data/README.md``.
    """
    path = Path(path)
    fix = "delete it and download it again (or place the original file there)"
    if not path.is_file():
        raise DatasetError(f"{path} is missing: place the original gzip IDX file there")
    try:
        with gzip.open(path, "rb") as f:
            # bytearray, not bytes: frombuffer then gives a writable array without a copy.
            raw = bytearray(f.read())
    except EOFError:
        raise DatasetError(f"{path} is truncated (the gzip stream ends early, e.g. an interrupted "
                           f"download): {fix}") from None
    except gzip.BadGzipFile as exc:
        raise DatasetError(f"{path} is not a gzip file ({exc}); dynsim reads the original .gz files, "
                           f"not decompressed ones: {fix}") from None
    except (zlib.error, OSError) as exc:
        raise DatasetError(f"{path} could not be decompressed ({exc}): {fix}") from None

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        magic = raw[:4].hex() if len(raw) >= 4 else f"only {len(raw)} bytes"
        raise DatasetError(f"{path} is not an IDX file: wrong magic number 0x{magic} (expected 0x0000TTDD "
                           f"with type code TT in {{08, 09, 0b, 0c, 0d, 0e}} and DD >= 1 dimensions): {fix}")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: the IDX header announces {ndim} dimensions but the file holds only "
                           f"{len(raw)} bytes: {fix}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(f"{path}: the IDX header announces shape {shape} of {dtype.newbyteorder('=').name}, "
                           f"{expected} bytes in all, but the decompressed file has {len(raw)} bytes: {fix}")
    arr = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def write_idx(path, array):
    """Write ``array`` as a gzip-compressed IDX file (the inverse of :func:`read_idx`).

    Parameters
    ----------
    path : str or Path
    array : array_like, 1 to 255 dimensions
        dtype uint8, int8, int16, int32, float32 or float64.

    Returns
    -------
    Path
        ``path``. The gzip header carries no time stamp or name, so the same
        array always gives the same bytes (and the same MD5 sum).
    """
    arr = np.asarray(array)
    native = arr.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        names = ", ".join(sorted(dt.name for dt in _IDX_CODES))
        raise ValidationError(f"array must have one of the IDX dtypes {names}; got {arr.dtype}")
    if not 1 <= arr.ndim <= 255 or any(d >= 2 ** 32 for d in arr.shape):
        raise ValidationError(f"array must have 1 to 255 dimensions, each < 2**32; got shape {arr.shape}")
    code = _IDX_CODES[native]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    body = np.ascontiguousarray(arr, dtype=_IDX_DTYPES[code]).tobytes()
    path = Path(path)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(header)
        f.write(body)
    return path


# ---------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------

def _where_to_put(folder, files, name=None):
    sub = f"a '{name}/' subfolder" if name in DATASETS else "a subfolder named after the data set"
    return (f"place {', '.join(files)} in {folder} (or set the environment variable {ENV_VAR}, or pass "
            f"data_dir, to a folder holding {sub} with the four files)")


def _fetch_one(url, folder, fname, expected, timeout):
    """Download ``url`` to a temporary file in ``folder``; move it to ``fname`` once its MD5 matches."""
    # Same folder as the target so os.replace is an atomic rename: no reader
    # ever sees a half-written file under the real name.
    fd, tmp = tempfile.mkstemp(prefix=f".{fname}.", suffix=".part", dir=folder)
    try:
        h = hashlib.md5()
        req = Request(url, headers={"User-Agent": f"dynsim/{__version__}"})
        with os.fdopen(fd, "wb") as out, urlopen(req, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != expected:
            raise DatasetError(f"{url} served a file with MD5 sum {h.hexdigest()}, expected {expected}")
        os.replace(tmp, folder / fname)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def download_files(dataset, folder, files=None, timeout=DOWNLOAD_TIMEOUT):
    """Download files of ``dataset`` into ``folder``, each checked against its MD5 sum.

    Each file is tried from every mirror in turn. It is written to a
    temporary file in ``folder`` and renamed to its real name only after its
    MD5 sum matches, so an interrupted download leaves nothing behind.

    Parameters
    ----------
    dataset : str or Dataset
        A key of :data:`DATASETS`, or a :class:`Dataset`.
    folder : str or Path
        Created if needed.
    files : sequence of str, optional
        Names among :data:`FILES`; all four by default.
    timeout : float
        Seconds one socket operation may block before the mirror is given up.

    Returns
    -------
    list of Path
        The downloaded files.

    Raises
    ------
    DatasetError
        The folder cannot be created, or no mirror delivered a file with the
        right sum (without a network: the message says so and lists the
        files to place by hand and where).
    """
    ds = dataset if isinstance(dataset, Dataset) else _check_name(dataset)
    folder = Path(folder)
    files = list(FILES if files is None else files)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create {folder} to download {ds.name} into ({exc}): "
                           + _where_to_put(folder, files, ds.name)) from None
    done = []
    for fname in files:
        failures, offline = [], True
        for base in ds.mirrors:
            url = base + fname
            log.info("downloading %s to %s", url, folder)
            try:
                _fetch_one(url, folder, fname, ds.md5[fname], timeout)
                break
            except HTTPError as exc:  # the server answered: the network is up
                offline = False
                failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
            except (URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
            except DatasetError as exc:  # wrong checksum
                offline = False
                failures.append(str(exc))
            except OSError as exc:  # e.g. disk full while writing
                raise DatasetError(f"downloading {url} into {folder} failed ({exc}): "
                                   + _where_to_put(folder, files, ds.name)) from None
        else:
            missing = [f for f in files if not (folder / f).is_file()]
            cause = ("there is no network (or no mirror can be reached)" if offline
                     else "no mirror delivered the published file")
            raise DatasetError(f"cannot download {ds.name}: {cause}; tried " + "; ".join(failures)
                               + ". To use the data set without downloading, "
                               + _where_to_put(folder, missing, ds.name))
        done.append(folder / fname)
    return done


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

def _check_validation_size(value, n_train):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= n_train - 1:
        raise ValidationError(f"validation_size must be an integer in [0, {n_train - 1}] (the {n_train} "
                              f"training images keep at least one for training); got {value!r}")
    return int(value)


def _as_task(name, images, labels, dtype, n_classes, image_shape):
    """A Task from uint8 ``images`` (n, ...) holding n * prod(image_shape) values in (C, H, W) order."""
    n = images.shape[0]
    # Explicit width: reshape(0, -1) is ambiguous and fails for an empty validation set.
    x = images.reshape(n, int(np.prod(image_shape))).astype(dtype)
    x /= 255  # in place: the float copy is the big array (376 MB for MNIST in float64)
    targets = np.zeros((n, n_classes), dtype)
    targets[np.arange(n), labels] = 1
    return Task(name, x, labels.astype(np.int64), targets, tuple(image_shape))


def load_folder(folder, md5=None, *, name="idx", validation_size=10000, dtype=np.float64, n_classes=10):
    """Load the four IDX files of ``folder`` as training, validation and test sets.

    Everything is checked (checksums, headers, shapes, labels) before
    anything is returned: no partly loaded data set.

    Parameters
    ----------
    folder : str or Path
        Holds the four :data:`FILES`.
    md5 : dict or None
        Expected MD5 sum of each of the four files; ``None`` skips the checks.
    name : str
        Prefix of the task names (``<name>-train``, ``<name>-validation``, ``<name>-test``).
    validation_size : int
        The last ``validation_size`` training images form the validation
        set; in [0, n_train - 1].
    dtype : floating dtype
        dtype of ``x`` and ``targets``.
    n_classes : int
        Labels must lie in [0, n_classes).

    Returns
    -------
    Splits
        ``x`` ndarray, shape (n, rows * cols), values ``pixel / 255``, each
        image flat in row-major order (pixel (r, c) at ``r * cols + c``);
        ``image_shape`` (1, rows, cols); ``labels`` int64 ndarray, shape
        (n,); ``targets`` one-hot ndarray, shape (n, n_classes).

    Raises
    ------
    DatasetError
        A missing, corrupt or inconsistent file; the message names it.
    ValidationError
        A bad argument.

    References
    ----------
    .. [1] B. Scellier, Y. Bengio (2017): the split into the first 50,000
           training images and the last 10,000 as validation set.
    """
    folder = Path(folder)
    dtype = float_dtype(dtype)
    if md5 is not None:
        absent = [f for f in FILES if f not in md5]
        if absent:
            raise ValidationError(f"md5 must give a sum for each of {', '.join(FILES)}; missing {', '.join(absent)}")
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise DatasetError(f"{name}: missing " + ", ".join(missing) + " in " + str(folder) + ": "
                           + _where_to_put(folder, missing, name))
    if md5 is not None:
        for fname in FILES:
            verify_md5(folder / fname, md5[fname])
    arrays = {fname: read_idx(folder / fname) for fname in FILES}

    sets = {}
    for split, img_name, lab_name in (("train", TRAIN_IMAGES, TRAIN_LABELS), ("test", TEST_IMAGES, TEST_LABELS)):
        images, labels = arrays[img_name], arrays[lab_name]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DatasetError(f"{folder / img_name} must hold uint8 images of shape (n, rows, cols); got "
                               f"{images.dtype} of shape {images.shape}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise DatasetError(f"{folder / lab_name} must hold uint8 labels of shape (n,); got "
                               f"{labels.dtype} of shape {labels.shape}")
        if images.shape[0] != labels.shape[0]:
            raise DatasetError(f"{folder / img_name} holds {images.shape[0]} images but {folder / lab_name} "
                               f"{labels.shape[0]} labels: they belong to different sets")
        if labels.size and labels.max() >= n_classes:
            raise DatasetError(f"{folder / lab_name} holds label {int(labels.max())}; expected 0 to {n_classes - 1}")
        sets[split] = (images, labels)
    if arrays[TRAIN_IMAGES].shape[1:] != arrays[TEST_IMAGES].shape[1:]:
        raise DatasetError(f"training images in {folder} are {arrays[TRAIN_IMAGES].shape[1:]} but test images "
                           f"{arrays[TEST_IMAGES].shape[1:]}")
    n_train = arrays[TRAIN_IMAGES].shape[0]
    validation_size = _check_validation_size(validation_size, n_train)

    train_images, train_labels = sets["train"]
    cut = n_train - validation_size
    n_all = n_train + arrays[TEST_IMAGES].shape[0]
    width = int(np.prod(train_images.shape[1:]))
    check_memory("dtype", n_all * (width + n_classes) * np.dtype(dtype).itemsize,
                 f"{n_all} images of {width} pixels in {np.dtype(dtype).name}")
    # One grey channel; the IDX array is row-major (n, rows, cols), so the flat
    # rows of x are the images in (C, H, W) order as they are.
    shape = (1, *train_images.shape[1:])
    return Splits(
        train=_as_task(f"{name}-train", train_images[:cut], train_labels[:cut], dtype, n_classes, shape),
        validation=_as_task(f"{name}-validation", train_images[cut:], train_labels[cut:], dtype, n_classes, shape),
        test=_as_task(f"{name}-test", *sets["test"], dtype, n_classes, shape),
    )


def load(name, data_dir=None, download=True, validation_size=None, dtype=np.float64):
    """MNIST, Fashion-MNIST or CIFAR-10 as training, validation and test sets.

    Parameters
    ----------
    name : {'mnist', 'fashion-mnist', 'cifar10'}
        One of :data:`NAMES`. ``'cifar10'`` is handed to
        :func:`dynsim.datasets.cifar.load_cifar10`.
    data_dir : str or Path, optional
        Data folder; default ``$DYNSIM_DATA``, else the checkout's ``data/``,
        else ``~/.cache/dynsim/data``. The files are looked for in its
        subfolder ``name`` (see :func:`dataset_folder`).
    download : bool
        Download missing files from the publishers' mirrors. Files already
        there are never replaced. CIFAR-10 is never downloaded: without its
        files the error says where to get them, whatever ``download`` says.
    validation_size : int, optional
        Last training images held out for validation: by default 10,000 for
        MNIST and Fashion-MNIST (Scellier & Bengio's split), in [0, 59999];
        5,000 for CIFAR-10, in [0, 49999]. 0 gives an empty validation set.
    dtype : floating dtype
        dtype of ``x`` and ``targets``; float32 halves the memory (MNIST's
        70,000 images take 439 MB in float64, CIFAR-10's 60,000 take 1.5 GB).

    Returns
    -------
    Splits
        ``train`` (the first n_train - ``validation_size`` training images),
        ``validation`` (the rest of them) and ``test`` (the 10,000 test
        images). ``x`` ndarray, shape (n, C * H * W), pixel / 255 in [0, 1],
        flat in (C, H, W) order: (n, 784) with ``image_shape == (1, 28, 28)``
        for MNIST and Fashion-MNIST (n_train 60,000), (n, 3072) with
        ``image_shape == (3, 32, 32)`` for CIFAR-10 (n_train 50,000);
        ``labels`` int64 ndarray, shape (n,); ``targets`` one-hot ndarray,
        shape (n, 10).

    Raises
    ------
    ValidationError
        Unknown ``name``, a non-bool ``download``, ``validation_size`` out of
        range, a non-float ``dtype`` or a bad ``data_dir``.
    DatasetError
        Files missing (and not downloadable), corrupt or not the published
        ones; the message names the file and the fix.

    References
    ----------
    .. [1] Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based
           learning applied to document recognition", Proc. IEEE 86(11):
           2278-2324 (1998). (MNIST)
    .. [2] H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image
           Dataset for Benchmarking Machine Learning Algorithms",
           arXiv:1708.07747 (2017).
    .. [3] B. Scellier, Y. Bengio, "Equilibrium Propagation: Bridging the Gap
           between Energy-Based Models and Backpropagation", Front. Comput.
           Neurosci. 11:24 (2017). (The 50,000 / 10,000 / 10,000 split.)
    .. [4] A. Krizhevsky, "Learning Multiple Layers of Features from Tiny
           Images", technical report, University of Toronto (2009). (CIFAR-10)
    """
    _check_name(name, NAMES)
    if not isinstance(download, (bool, np.bool_)):
        raise ValidationError(f"download must be True or False; got {download!r}")
    if name == CIFAR10:
        from dynsim.datasets import cifar  # here, not at the top: cifar imports this module

        if validation_size is None:
            return cifar.load_cifar10(data_dir, dtype=dtype)
        return cifar.load_cifar10(data_dir, validation_size=validation_size, dtype=dtype)
    ds = DATASETS[name]
    # Arguments are checked before any file is touched or downloaded.
    validation_size = _check_validation_size(10000 if validation_size is None else validation_size, ds.n_train)
    float_dtype(dtype)
    folder = dataset_folder(name, data_dir)
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        if not download:
            hint = ""
            unzipped = [f for f in missing if (folder / f[:-3]).is_file()]
            if unzipped:
                hint = f" ({', '.join(f[:-3] for f in unzipped)} found decompressed: dynsim reads the original .gz)"
            raise DatasetError(f"{name}: missing {', '.join(missing)} in {folder}{hint}. Pass download=True to "
                               f"download them, or " + _where_to_put(folder, missing, name))
        download_files(ds, folder, missing)
    return load_folder(folder, ds.md5, name=name, validation_size=validation_size, dtype=dtype)
