"""CIFAR-10 from the pickled batches of its official "CIFAR-10 python version".

The data set is the folder that ``cifar-10-python.tar.gz`` unpacks to
(``cifar-10-batches-py/``), kept byte for byte: seven files,

- ``data_batch_1`` ... ``data_batch_5``: the 50,000 training images, 10,000 a file;
- ``test_batch``: the 10,000 test images;
- ``batches.meta``: the class names.

Each batch is a pickled dict with byte-string keys: ``b'data'``, a uint8
array of shape (10000, 3072), one image a row, stored as the red plane, then
the green plane, then the blue plane, each plane row-major 32 x 32 (so a row
is the image in (C, H, W) order); and ``b'labels'``, a list of 10,000 ints in
0..9. ``batches.meta`` holds ``b'label_names'``, the ten class names [1]_.

Pickles run code when they are read
-----------------------------------
Unpickling a file can run any code its author put in it, so only the
official files may be read: every file is checked against its published MD5
sum before any file is unpickled, and no function here unpickles a file
whose sum has not been checked.

Where the files are looked for
------------------------------
In the same data folder as MNIST and Fashion-MNIST (see
:func:`dynsim.datasets.idx.data_root`: the ``data_dir`` argument, else
``$DYNSIM_DATA``, else the checkout's ``data/``, else
``~/.cache/dynsim/data``), in its subfolder ``cifar10/`` (the name
:func:`dynsim.datasets.idx.load` takes), which holds the seven files
directly. As with the IDX data sets, the files may also lie directly in the
data folder when it has no ``cifar10/`` subfolder: ``data_dir`` may then be
the unpacked ``cifar-10-batches-py/`` folder itself.

dynsim does not download CIFAR-10: without its files, the error names the
missing ones, the folder where they were looked for, and where to get them.

Splits
------
The official split is 50,000 training images and 10,000 test images [1]_.
The loader holds out the last ``validation_size`` training images (the end
of ``data_batch_5``) for validation, by default 5,000: training, validation
and test sets of 45,000, 5,000 and 10,000 images, the 45k/5k split of the
training images on which He et al. chose their training schedule [2]_.
``validation_size=0`` trains on all 50,000.

References
----------
.. [1] A. Krizhevsky, "Learning Multiple Layers of Features from Tiny
       Images", technical report, University of Toronto (2009).
       https://www.cs.toronto.edu/~kriz/cifar.html
.. [2] K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image
       Recognition", CVPR (2016), section 4.2.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from dynsim.datasets.idx import ENV_VAR, DatasetError, Splits, _as_task, _check_validation_size, data_root, verify_md5
from dynsim.validation import ValidationError, float_dtype

__all__ = ["NAME", "TRAIN_BATCHES", "TEST_BATCH", "META", "FILES", "MD5", "CLASSES", "IMAGE_SHAPE", "N_TRAIN",
           "VALIDATION_SIZE", "URL", "TARBALL", "TARBALL_FOLDER", "cifar10_folder", "load_batches", "load_cifar10"]

NAME = "cifar10"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
FILES = (*TRAIN_BATCHES, TEST_BATCH, META)

# The published MD5 sums of the seven files of cifar-10-python.tar.gz, as
# torchvision's CIFAR10 dataset class lists them (its train_list, test_list
# and meta attributes), the public reference for these files. They are what
# makes unpickling safe: a file is opened only once its sum matches.
MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (3, 32, 32)
N_TRAIN = 50000
VALIDATION_SIZE = 5000

URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
TARBALL = "cifar-10-python.tar.gz"
TARBALL_FOLDER = "cifar-10-batches-py"

_N_VALUES = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]


def _check_folder_arg(name, value):
    if not isinstance(value, (str, os.PathLike)):
        raise ValidationError(f"{name} must be a str or a path-like object; got {value!r}")
    return Path(value).expanduser()


def cifar10_folder(data_dir=None):
    """The folder holding (or to hold) the seven CIFAR-10 files.

    Parameters
    ----------
    data_dir : str or Path, optional
        Data folder; default ``$DYNSIM_DATA``, else the checkout's ``data/``,
        else ``~/.cache/dynsim/data`` (see :func:`dynsim.datasets.idx.data_root`).

    Returns
    -------
    Path
        ``<data folder>/cifar10``, or the data folder itself when that
        subfolder does not exist and all seven :data:`FILES` lie in the data
        folder (``data_dir`` pointing at the unpacked ``cifar-10-batches-py/``).

    Raises
    ------
    ValidationError
        ``data_dir`` is neither None, a str nor a path-like object.
    """
    root = data_root(data_dir)
    sub = root / NAME
    if not sub.is_dir() and all((root / f).is_file() for f in FILES):
        return root
    return sub


def _where_to_get(folder):
    """The fix for missing files: where to get them and where to put them."""
    hints = []
    if (folder / TARBALL).is_file():
        hints.append(f"{folder / TARBALL} is there but not unpacked")
    if (folder / TARBALL_FOLDER).is_dir():
        hints.append(f"{folder / TARBALL_FOLDER} is there: move its files up into {folder}")
    if folder.name == NAME and (folder.parent / TARBALL_FOLDER).is_dir():
        hints.append(f"{folder.parent / TARBALL_FOLDER} is there: rename it to {folder}")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return (f"dynsim does not download CIFAR-10{hint}. Get the 'CIFAR-10 python version' ({TARBALL}) from {URL}, "
            f"unpack it (tar -xzf {TARBALL}) and put the files of the {TARBALL_FOLDER}/ folder it creates in "
            f"{folder}; or set the environment variable {ENV_VAR}, or pass data_dir, to a folder holding a "
            f"'{NAME}/' subfolder with the seven files, or pass the unpacked {TARBALL_FOLDER}/ folder itself "
            f"as data_dir")


def _unpickle(path):
    """The dict pickled in ``path``, byte-string keys; call only on a file whose MD5 sum was checked."""
    try:
        with open(path, "rb") as f:
            # encoding="bytes": the batches were pickled by Python 2, whose str
            # keys come back as bytes (b'data'), the official page's recipe.
            obj = pickle.load(f, encoding="bytes")
    except Exception as exc:  # unpickling fails in many ways (EOFError, UnpicklingError, ValueError, ...)
        raise DatasetError(f"{path} could not be unpickled ({type(exc).__name__}: {exc}): it is not a batch "
                           f"of the CIFAR-10 python version; " + _where_to_get(path.parent)) from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path} holds a pickled {type(obj).__name__}, not the dict of a CIFAR-10 batch")
    return obj


def _read_batch(path, n_classes):
    """Images (n, 3072) uint8 and labels (n,) int64 of one batch file, checked against the official format."""
    batch = _unpickle(path)
    absent = [repr(k) for k in (b"data", b"labels") if k not in batch]
    if absent:
        keys = ", ".join(repr(k) for k in batch)
        raise DatasetError(f"{path} lacks the key(s) {', '.join(absent)} of a CIFAR-10 batch; it has {keys}")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _N_VALUES \
            or data.shape[0] == 0:
        got = f"{data.dtype} of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: b'data' must be a uint8 array of shape (n, {_N_VALUES}), n >= 1; got {got}")
    try:
        labels = np.asarray(labels)
    except Exception as exc:
        raise DatasetError(f"{path}: b'labels' is not a list of integers ({exc})") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
        raise DatasetError(f"{path}: b'labels' must be a list of integers; got {labels.dtype} of shape "
                           f"{labels.shape}")
    if labels.shape[0] != data.shape[0]:
        raise DatasetError(f"{path} holds {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.min() < 0 or labels.max() >= n_classes:
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise DatasetError(f"{path} holds label {int(bad)}; expected 0 to {n_classes - 1}")
    return data, labels.astype(np.int64)


def _read_meta(path):
    """The class names of ``batches.meta``, which must be CIFAR-10's ten."""
    meta = _unpickle(path)
    names = meta.get(b"label_names")
    if not isinstance(names, (list, tuple)):
        raise DatasetError(f"{path} lacks b'label_names', the list of class names of the CIFAR-10 batches")
    names = tuple(n.decode("ascii", "replace") if isinstance(n, bytes) else str(n) for n in names)
    if names != CLASSES:
        raise DatasetError(f"{path} names the classes {list(names)}; CIFAR-10's are {list(CLASSES)} "
                           f"(is it the meta file of another data set?)")
    return names


def load_batches(folder, md5, *, name=NAME, validation_size=VALIDATION_SIZE, dtype=np.float64):
    """Load the seven CIFAR-10 files of ``folder`` as training, validation and test sets.

    Every file is checked against its MD5 sum before any is unpickled, and
    every batch against the official format before anything is returned: no
    partly loaded data set.

    Parameters
    ----------
    folder : str or Path
        Holds the seven :data:`FILES`.
    md5 : dict
        Expected MD5 sum (hex) of each of the seven files; :data:`MD5` for
        the official ones. Required, as the checks are what makes
        unpickling safe: a pickle runs code when it is read.
    name : str
        Prefix of the task names (``<name>-train``, ``<name>-validation``, ``<name>-test``).
    validation_size : int
        The last ``validation_size`` training images (the end of
        ``data_batch_5``) form the validation set; in [0, n_train - 1],
        n_train the number of images in the five training batches.
    dtype : floating dtype
        dtype of ``x`` and ``targets``.

    Returns
    -------
    Splits
        ``x`` ndarray, shape (n, 3072), values ``pixel / 255`` in [0, 1],
        each row one image flat in (C, H, W) order (the order of the
        files: red, green, blue planes, each row-major 32 x 32), with
        ``image_shape == (3, 32, 32)`` (:meth:`Task.images` gives the
        (n, 3, 32, 32) view); ``labels`` int64 ndarray, shape (n,);
        ``targets`` one-hot ndarray, shape (n, 10).

    Raises
    ------
    DatasetError
        A missing file (the message names the missing files, the folder and
        where to get them), a sum that differs (the file, the expected and
        the found sum), or a file not in the official format.
    ValidationError
        A bad argument.

    References
    ----------
    .. [1] A. Krizhevsky, "Learning Multiple Layers of Features from Tiny
           Images", technical report, University of Toronto (2009).
    """
    folder = _check_folder_arg("folder", folder)
    if not isinstance(md5, dict):
        raise ValidationError(f"md5 must be a dict of the MD5 sum of each of {', '.join(FILES)} (the batches are "
                              f"pickles, which run code when read: they are read only once their sums match); "
                              f"got {md5!r}")
    absent = [f for f in FILES if not isinstance(md5.get(f), str)]
    if absent:
        raise ValidationError(f"md5 must give a sum (a hex str) for each of {', '.join(FILES)}; missing "
                              f"{', '.join(absent)}")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"name must be a non-empty str; got {name!r}")
    # The range needs the number of training images, known once the files are
    # read; the type is checked now, before any file is touched.
    if isinstance(validation_size, (bool, np.bool_)) or not isinstance(validation_size, (int, np.integer)) \
            or validation_size < 0:
        raise ValidationError(f"validation_size must be an integer >= 0 (and below the number of training "
                              f"images); got {validation_size!r}")
    dtype = float_dtype(dtype)

    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise DatasetError(f"CIFAR-10: missing {', '.join(missing)} in {folder}. " + _where_to_get(folder))
    for fname in FILES:
        try:
            verify_md5(folder / fname, md5[fname])
        except DatasetError as exc:
            raise DatasetError(f"{exc} (CIFAR-10: get {TARBALL} again from {URL})") from None

    n_classes = len(_read_meta(folder / META))
    train = [_read_batch(folder / f, n_classes) for f in TRAIN_BATCHES]
    test_images, test_labels = _read_batch(folder / TEST_BATCH, n_classes)
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    n_train = train_images.shape[0]
    validation_size = _check_validation_size(validation_size, n_train)

    cut = n_train - validation_size
    # The rows are already (C, H, W) order: the flat x needs no transpose.
    return Splits(
        train=_as_task(f"{name}-train", train_images[:cut], train_labels[:cut], dtype, n_classes, IMAGE_SHAPE),
        validation=_as_task(f"{name}-validation", train_images[cut:], train_labels[cut:], dtype, n_classes,
                            IMAGE_SHAPE),
        test=_as_task(f"{name}-test", test_images, test_labels, dtype, n_classes, IMAGE_SHAPE),
    )


def load_cifar10(data_dir=None, validation_size=VALIDATION_SIZE, dtype=np.float64):
    """CIFAR-10 as training, validation and test sets; also ``dynsim.datasets.idx.load("cifar10", ...)``.

    Parameters
    ----------
    data_dir : str or Path, optional
        Data folder; default ``$DYNSIM_DATA``, else the checkout's ``data/``,
        else ``~/.cache/dynsim/data``. The files are looked for in its
        subfolder ``cifar10/`` (see :func:`cifar10_folder`).
    validation_size : int
        Last training images held out for validation, in [0, 49999];
        5,000 by default (45,000 / 5,000 / 10,000 images), 0 for the
        official 50,000 / 10,000 split with an empty validation set.
    dtype : floating dtype
        dtype of ``x`` and ``targets``; float32 halves the memory (the
        60,000 images take 1.5 GB in float64).

    Returns
    -------
    Splits
        ``train`` (the first 50,000 - ``validation_size`` training images),
        ``validation`` (the rest of them) and ``test`` (the 10,000 test
        images). ``x`` ndarray, shape (n, 3072), pixel / 255 in [0, 1], flat
        in (C, H, W) order with ``image_shape == (3, 32, 32)``; ``labels``
        int64 ndarray, shape (n,), class names in :data:`CLASSES`;
        ``targets`` one-hot ndarray, shape (n, 10).

    Raises
    ------
    ValidationError
        ``validation_size`` out of range, a non-float ``dtype`` or a bad ``data_dir``.
    DatasetError
        Files missing (the message names them, the folder, and where to get
        them: nothing is downloaded), corrupt or not the published ones
        (every file is checked against its published MD5 sum before it is
        unpickled, since a pickle runs code when it is read).

    References
    ----------
    .. [1] A. Krizhevsky, "Learning Multiple Layers of Features from Tiny
           Images", technical report, University of Toronto (2009).
    .. [2] K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image
           Recognition", CVPR (2016). (A 45k/5k split of the training images.)
    """
    # Arguments are checked before any file is touched.
    validation_size = _check_validation_size(validation_size, N_TRAIN)
    dtype = float_dtype(dtype)
    folder = cifar10_folder(data_dir)
    return load_batches(folder, MD5, name=NAME, validation_size=validation_size, dtype=dtype)
