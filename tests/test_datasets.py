"""MNIST / Fashion-MNIST readers: IDX format, checksums, folder resolution, download fallback; Task images.

No test touches the network: every download goes through a patched ``urlopen``.
Tests on the real data run when ``shared/data`` lies beside the repository,
and skip otherwise.
"""
import gzip
import io
import os
from pathlib import Path
from urllib.error import HTTPError, URLError

import numpy as np
import pytest

from dynsim.datasets import idx as datasets
from dynsim.datasets.idx import (DATASETS, FILES, Dataset, DatasetError, Splits, data_root, dataset_folder,
                                 default_data_dir, download_files, file_md5, load, load_folder, read_idx, write_idx)
from dynsim.datasets.tasks import Task, moons, xor
from dynsim.validation import DynsimError, ValidationError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

N_TRAIN, N_TEST = 30, 10


def tiny_arrays(seed=0):
    """30 training and 10 test 28x28 uint8 images with every class in both sets."""
    rng = np.random.default_rng(seed)
    train_images = rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8)
    test_images = rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8)
    train_images[0, 0, 0], train_images[0, 0, 1] = 0, 255  # both ends of the pixel range
    train_labels = (np.arange(N_TRAIN) * 7 % 10).astype(np.uint8)
    test_labels = np.arange(N_TEST)[::-1].astype(np.uint8)
    return {datasets.TRAIN_IMAGES: train_images, datasets.TRAIN_LABELS: train_labels,
            datasets.TEST_IMAGES: test_images, datasets.TEST_LABELS: test_labels}


def write_tiny(folder):
    """Write the tiny data set into ``folder``; returns its arrays and its MD5 table."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = tiny_arrays()
    for fname, arr in arrays.items():
        write_idx(folder / fname, arr)
    return arrays, {fname: file_md5(folder / fname) for fname in FILES}


@pytest.fixture
def tiny(tmp_path):
    folder = tmp_path / "tiny"
    arrays, md5 = write_tiny(folder)
    return folder, arrays, md5


@pytest.fixture
def offline(monkeypatch):
    """Every download attempt fails as without a network; records the URLs tried."""
    tried = []

    def no_network(request, timeout=None):
        tried.append(request.full_url)
        raise URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(datasets, "urlopen", no_network)
    return tried


# --------------------------------------------------------------------------- IDX format

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_read_idx_round_trip(tmp_path, rng, dtype):
    arr = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.gz", arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, arr)
    back[0, 0, 0] = 1  # writable


def test_write_idx_is_the_published_layout(tmp_path):
    """Header bytes as in the MNIST description: magic 0x00000803, then big-endian dimensions."""
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = gzip.decompress((write_idx(tmp_path / "a.gz", arr)).read_bytes())
    assert raw[:4] == bytes.fromhex("00000803")
    assert raw[4:16] == bytes.fromhex("00000002 00000003 00000004")
    assert raw[16:] == arr.tobytes()
    # No time stamp in the gzip header: the same array always has the same MD5 sum.
    assert file_md5(write_idx(tmp_path / "b.gz", arr)) == file_md5(tmp_path / "a.gz")


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValidationError, match="IDX dtypes"):
        write_idx(tmp_path / "a.gz", np.zeros(3, np.int64))


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="missing") as err:
        read_idx(tmp_path / "nothing.gz")
    assert "nothing.gz" in str(err.value)


def test_read_idx_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "images.gz", np.full((50, 28, 28), 7, np.uint8))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DatasetError, match="truncated") as err:
        read_idx(path)
    assert str(path) in str(err.value) and "download it again" in str(err.value)


def test_read_idx_not_gzip(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x05")  # an uncompressed IDX file
    with pytest.raises(DatasetError, match="not a gzip file") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_wrong_magic(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(b"\x12\x34\x08\x01\x00\x00\x00\x01\x05"))
    with pytest.raises(DatasetError, match="wrong magic number 0x12340801") as err:
        read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("extra", [-1, +1])
def test_read_idx_size_mismatch(tmp_path, extra):
    body = bytes(2 * 3 + extra)
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03" + body))
    with pytest.raises(DatasetError, match=r"shape \(2, 3\)") as err:
        read_idx(path)
    assert str(path) in str(err.value) and f"{12 + 6 + extra} bytes" in str(err.value)


def test_read_idx_header_shorter_than_its_dimensions(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03\x00\x00\x00\x02"))
    with pytest.raises(DatasetError, match="3 dimensions"):
        read_idx(path)


# --------------------------------------------------------------------------- loading a folder

def test_load_folder_tiny(tiny):
    folder, arrays, md5 = tiny
    splits = load_folder(folder, md5, name="tiny", validation_size=5)
    assert isinstance(splits, Splits)
    train_images, train_labels = arrays[datasets.TRAIN_IMAGES], arrays[datasets.TRAIN_LABELS]
    parts = {"train": (train_images[:25], train_labels[:25]),
             "validation": (train_images[25:], train_labels[25:]),
             "test": (arrays[datasets.TEST_IMAGES], arrays[datasets.TEST_LABELS])}
    for split, (images, labels) in parts.items():
        task = getattr(splits, split)
        n = len(labels)
        assert task.name == f"tiny-{split}"
        assert task.x.shape == (n, 784) and task.x.dtype == np.float64 and task.x.flags.c_contiguous
        np.testing.assert_array_equal(task.x, images.reshape(n, 784) / 255.0)
        assert task.labels.dtype == np.int64
        np.testing.assert_array_equal(task.labels, labels)
        assert task.targets.shape == (n, 10)
        np.testing.assert_array_equal(task.targets, np.eye(10)[labels])
    assert splits.train.x.min() == 0.0 and splits.train.x.max() == 1.0


def test_load_folder_without_validation_and_float32(tiny):
    folder, arrays, md5 = tiny
    splits = load_folder(folder, md5, validation_size=0, dtype=np.float32)
    assert splits.train.x.shape == (N_TRAIN, 784)
    assert splits.validation.x.shape == (0, 784) and splits.validation.targets.shape == (0, 10)
    assert splits.validation.labels.shape == (0,)
    assert splits.train.x.dtype == np.float32 and splits.train.targets.dtype == np.float32
    np.testing.assert_allclose(splits.test.x, arrays[datasets.TEST_IMAGES].reshape(N_TEST, 784) / 255.0, rtol=1e-7)


def test_load_folder_skips_checksums_when_md5_is_none(tiny):
    folder, _, _ = tiny
    assert load_folder(folder, None, validation_size=0).train.x.shape == (N_TRAIN, 784)


def test_load_folder_wrong_md5_names_the_file(tiny):
    folder, _, md5 = tiny
    bad = dict(md5, **{datasets.TEST_LABELS: "0" * 32})
    with pytest.raises(DatasetError) as err:
        load_folder(folder, bad, validation_size=5)
    msg = str(err.value)
    assert str(folder / datasets.TEST_LABELS) in msg
    assert "0" * 32 in msg and md5[datasets.TEST_LABELS] in msg  # expected and found
    assert "Delete it and download it again" in msg


def test_md5_mismatch_recognises_the_other_dataset(tmp_path, monkeypatch):
    """Both data sets share file names; a file of the wrong one gets named as such."""
    path = write_idx(tmp_path / datasets.TRAIN_LABELS, np.zeros(3, np.uint8))
    monkeypatch.setitem(datasets._KNOWN_MD5, file_md5(path), ("mnist", datasets.TRAIN_LABELS))
    with pytest.raises(DatasetError, match="It is mnist's train-labels-idx1-ubyte.gz"):
        datasets.verify_md5(path, DATASETS["fashion-mnist"].md5[datasets.TRAIN_LABELS])


def test_load_folder_truncated_file_is_named(tiny):
    folder, _, _ = tiny
    path = folder / datasets.TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="truncated") as err:
        load_folder(folder, None)
    assert str(path) in str(err.value)


def test_load_folder_inconsistent_counts(tiny):
    folder, _, _ = tiny
    write_idx(folder / datasets.TEST_LABELS, np.zeros(N_TEST + 1, np.uint8))
    with pytest.raises(DatasetError, match="10 images but .* 11 labels"):
        load_folder(folder, None, validation_size=0)


def test_load_folder_label_out_of_range(tiny):
    folder, _, _ = tiny
    write_idx(folder / datasets.TEST_LABELS, np.full(N_TEST, 10, np.uint8))
    with pytest.raises(DatasetError, match="label 10"):
        load_folder(folder, None, validation_size=0)


def test_load_folder_missing_files(tmp_path):
    write_idx(tmp_path / datasets.TRAIN_IMAGES, np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DatasetError) as err:
        load_folder(tmp_path, None)
    msg = str(err.value)
    assert str(tmp_path) in msg
    assert all(f in msg for f in FILES[1:]) and datasets.TRAIN_IMAGES not in msg


def test_load_folder_validation_size_range(tiny):
    folder, _, md5 = tiny
    with pytest.raises(ValidationError, match=r"validation_size must be an integer in \[0, 29\]"):
        load_folder(folder, md5, validation_size=N_TRAIN)


def test_load_folder_gives_images_in_row_major_order(tmp_path):
    """Pixel (r, c) of an IDX image is x[r * 28 + c]; images() shows it at [0, r, c], without a copy."""
    arrays = tiny_arrays()
    train_images = arrays[datasets.TRAIN_IMAGES]
    train_images[:] = 0
    r, c = 3, 17  # off the diagonal: a transposed layout would put it at (17, 3)
    train_images[0, r, c] = 255
    train_images[1, c, r] = 51
    for fname, arr in arrays.items():
        write_idx(tmp_path / fname, arr)
    task = load_folder(tmp_path, None, validation_size=0).train
    assert task.image_shape == (1, 28, 28)
    assert task.x[0, r * 28 + c] == 1.0 and task.x[0].sum() == 1.0
    assert task.x[1, c * 28 + r] == 51 / 255
    images = task.images()
    assert images.shape == (N_TRAIN, 1, 28, 28)
    assert images[0, 0, r, c] == 1.0 and images[0, 0, c, r] == 0.0
    np.testing.assert_array_equal(images[:, 0], train_images / 255.0)
    assert np.shares_memory(images, task.x)
    images[2, 0, 0, 0] = 0.5  # a view: writes go to x
    assert task.x[2, 0] == 0.5


def test_every_split_carries_the_image_shape(tiny):
    folder, _, md5 = tiny
    splits = load_folder(folder, md5, validation_size=0, dtype=np.float32)
    assert {splits.train.image_shape, splits.validation.image_shape, splits.test.image_shape} == {(1, 28, 28)}
    assert splits.validation.images().shape == (0, 1, 28, 28)  # empty split: no error
    parts = splits.as_dict(train_size=4, eval_size=3)
    assert parts["train"].image_shape == parts["test"].image_shape == (1, 28, 28)
    assert parts["train"].images().shape == (4, 1, 28, 28)
    assert parts["test"].images().shape == (3, 1, 28, 28)


# --------------------------------------------------------------------------- Task.image_shape and images()

def test_task_positional_construction_has_no_image_shape():
    task = Task("t", np.zeros((2, 3)), np.array([0, 1]), np.eye(2))
    assert task.image_shape is None
    assert xor().image_shape is None and moons(n=10).image_shape is None


def test_images_without_image_shape_names_the_task():
    with pytest.raises(ValidationError, match=r"task 'moons' has no image shape"):
        moons(n=10).images()


def test_astype_keeps_the_image_shape():
    x = np.arange(2 * 12, dtype=np.float64).reshape(2, 12) / 24
    task = Task("img", x, np.array([0, 1]), np.eye(2), (3, 2, 2))
    single = task.astype(np.float32)
    assert single is not task and single.x.dtype == np.float32 and single.image_shape == (3, 2, 2)
    np.testing.assert_array_equal(single.images(), x.reshape(2, 3, 2, 2).astype(np.float32))
    assert task.astype(np.float64) is task


def test_image_shape_is_normalised_and_checked():
    x = np.zeros((4, 12))
    labels, targets = np.zeros(4, np.int64), np.zeros((4, 2))
    assert Task("t", x, labels, targets, [np.int64(3), 2, 2]).image_shape == (3, 2, 2)
    with pytest.raises(ValidationError, match=r"task 't': image_shape \(3, 2, 3\) holds 18 values per example, "
                                              r"but x has shape \(4, 12\); expected \(n, 18\)"):
        Task("t", x, labels, targets, (3, 2, 3))
    for bad in [(12,), (1, 3, 4, 1), (0, 3, 4), (1, 3, 4.0), (True, 3, 4), "abc", 12]:
        with pytest.raises(ValidationError, match=r"task 't': image_shape must be None or 3 positive integers"):
            Task("t", x, labels, targets, bad)


def test_images_checks_x_again_and_never_copies():
    x = np.arange(48.0).reshape(4, 12)
    task = Task("t", x, np.zeros(4, np.int64), np.zeros((4, 2)), (3, 2, 2))
    assert np.shares_memory(task.images(), x)
    task.x = np.zeros((4, 13))  # replaced after construction
    with pytest.raises(ValidationError, match=r"image_shape \(3, 2, 2\) holds 12 values"):
        task.images()
    # Fortran order and strided rows: still views, with the values in (C, H, W) order.
    for other in (np.asfortranarray(x), np.repeat(x, 2, axis=0)[::2]):
        task.x = other
        images = task.images()
        assert np.shares_memory(images, other)
        np.testing.assert_array_equal(images, x.reshape(4, 3, 2, 2))


# --------------------------------------------------------------------------- argument checks of load

@pytest.mark.parametrize("bad", [60000, -1, 2.5, True, "10"])
def test_load_validation_size_range(tmp_path, offline, bad):
    with pytest.raises(ValidationError, match=r"validation_size must be an integer in \[0, 59999\]"):
        load("mnist", data_dir=tmp_path, validation_size=bad)
    assert offline == [] and list(tmp_path.iterdir()) == []  # checked before any file is touched


def test_load_unknown_name_lists_the_datasets(tmp_path):
    with pytest.raises(ValidationError, match="'cifar10', 'fashion-mnist', 'mnist'; got 'cifar100'"):
        load("cifar100", data_dir=tmp_path)
    with pytest.raises(ValidationError, match="name must be one of"):
        dataset_folder("svhn", tmp_path)


@pytest.mark.parametrize("bad", [None, 1, "yes"])
def test_load_rejects_a_non_bool_download(tmp_path, offline, bad):
    with pytest.raises(ValidationError, match=r"download must be True or False"):
        load("mnist", data_dir=tmp_path, download=bad)
    assert offline == []


def test_load_rejects_a_bad_data_dir(offline):
    with pytest.raises(ValidationError, match=r"data_dir must be None, a str or a path-like object; got 3"):
        load("mnist", data_dir=3)
    with pytest.raises(ValidationError, match=r"data_dir must be"):
        data_root(["data"])


def test_the_idx_registry_holds_only_the_idx_datasets():
    """The MNIST scenarios offer DATASETS as --dataset choices; CIFAR-10 is in NAMES only."""
    assert sorted(DATASETS) == ["fashion-mnist", "mnist"]
    assert datasets.NAMES == ("cifar10", "fashion-mnist", "mnist")


def test_load_rejects_integer_dtype(tmp_path):
    with pytest.raises(ValidationError, match=r"dtype must be numpy.float32 or numpy.float64"):
        load("mnist", data_dir=tmp_path, dtype=np.uint8)


def test_dataset_error_is_a_dynsim_error():
    assert issubclass(DatasetError, DynsimError)


# --------------------------------------------------------------------------- where the files are

def test_resolution_order(tmp_path, monkeypatch):
    arg, env, checkout = tmp_path / "arg", tmp_path / "env", tmp_path / "checkout"
    (checkout / "data").mkdir(parents=True)
    (checkout / "setup.cfg").write_text("")
    monkeypatch.setattr(datasets, "_PACKAGE_PARENT", checkout)
    monkeypatch.setenv("DYNSIM_DATA", str(env))
    assert data_root(arg) == arg  # argument first
    assert data_root() == env  # then the environment variable
    assert dataset_folder("mnist") == env / "mnist"
    monkeypatch.setenv("DYNSIM_DATA", "")  # empty counts as unset
    assert data_root() == checkout / "data"
    monkeypatch.delenv("DYNSIM_DATA")
    assert data_root() == default_data_dir() == checkout / "data"  # then the checkout's data/
    assert dataset_folder("fashion-mnist") == checkout / "data" / "fashion-mnist"


def test_default_outside_a_checkout_is_the_user_cache(tmp_path, monkeypatch):
    installed = tmp_path / "site-packages"
    (installed / "data").mkdir(parents=True)  # an unrelated data/ folder, no setup.cfg
    monkeypatch.setattr(datasets, "_PACKAGE_PARENT", installed)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DYNSIM_DATA", raising=False)
    assert data_root() == tmp_path / "home" / ".cache" / "dynsim" / "data"


def test_the_checkouts_data_folder_is_the_default():
    """Run from this checkout, the default is its top-level data/ folder."""
    repo = Path(__file__).resolve().parents[1]
    assert default_data_dir() == repo / "data"


def test_flat_layout_accepted_when_no_subfolder(tiny, tmp_path):
    folder, _, _ = tiny  # the four files directly in tmp_path/tiny
    assert dataset_folder("mnist", folder) == folder
    (folder / "mnist").mkdir()
    assert dataset_folder("mnist", folder) == folder / "mnist"  # the subfolder wins once it exists
    assert dataset_folder("mnist", tmp_path) == tmp_path / "mnist"


def test_load_uses_the_registry_checksums(tiny, monkeypatch):
    """load() checks the files against the published sums, so tiny files are refused by name."""
    folder, _, _ = tiny
    monkeypatch.setenv("DYNSIM_DATA", str(folder))  # flat layout through the environment variable
    with pytest.raises(DatasetError, match="MD5 sum") as err:
        load("mnist", download=False)
    assert str(folder / FILES[0]) in str(err.value)
    assert DATASETS["mnist"].md5[FILES[0]] in str(err.value)


# --------------------------------------------------------------------------- download

def test_missing_files_without_network(tmp_path, offline):
    with pytest.raises(DatasetError) as err:
        load("fashion-mnist", data_dir=tmp_path)
    msg = str(err.value)
    folder = tmp_path / "fashion-mnist"
    assert "no network" in msg
    assert str(folder) in msg and all(f in msg for f in FILES)
    assert "DYNSIM_DATA" in msg and "data_dir" in msg and "'fashion-mnist/' subfolder" in msg
    assert offline == [DATASETS["fashion-mnist"].mirrors[0] + FILES[0]]  # stops at the first file
    assert list(folder.iterdir()) == []  # no partial file left


def test_every_mirror_is_tried(tmp_path, offline):
    with pytest.raises(DatasetError, match="no network"):
        load("mnist", data_dir=tmp_path)
    assert offline == [base + FILES[0] for base in DATASETS["mnist"].mirrors]
    assert offline[0].startswith("https://ossci-datasets.s3.amazonaws.com/mnist/")


def test_missing_files_with_download_false(tmp_path, offline):
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(1, np.uint8))  # a decompressed copy does not count
    with pytest.raises(DatasetError) as err:
        load("mnist", data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert str(folder) in msg and all(f in msg for f in FILES) and "download=True" in msg
    assert "found decompressed" in msg
    assert offline == []


class FakeMirror:
    """Serves the tiny files from memory; ``corrupt`` names files served with one byte changed."""

    def __init__(self, folder, corrupt=(), http_error=False):
        self.files = {f: (folder / f).read_bytes() for f in FILES}
        self.corrupt, self.http_error, self.requests = set(corrupt), http_error, []

    def __call__(self, request, timeout=None):
        assert timeout is not None and timeout > 0
        url = request.full_url
        self.requests.append(url)
        if self.http_error:
            raise HTTPError(url, 404, "Not Found", None, None)
        fname = url.rsplit("/", 1)[1]
        data = self.files[fname]
        if fname in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 1])
        return io.BytesIO(data)


def tiny_dataset(md5):
    return Dataset("tiny", md5, ("http://mirror-a.invalid/", "http://mirror-b.invalid/"), tuple("0123456789"))


def test_download_checks_and_moves_into_place(tiny, tmp_path, monkeypatch):
    source, arrays, md5 = tiny
    mirror = FakeMirror(source)
    monkeypatch.setattr(datasets, "urlopen", mirror)
    target = tmp_path / "new" / "tiny"
    paths = download_files(tiny_dataset(md5), target)
    assert paths == [target / f for f in FILES]
    assert sorted(os.listdir(target)) == sorted(FILES)  # no temporary file left
    assert all(file_md5(target / f) == md5[f] for f in FILES)
    assert mirror.requests == ["http://mirror-a.invalid/" + f for f in FILES]
    splits = load_folder(target, md5, validation_size=5)
    np.testing.assert_array_equal(splits.test.labels, arrays[datasets.TEST_LABELS])


def test_download_with_wrong_checksum_leaves_nothing(tiny, tmp_path, monkeypatch):
    source, _, md5 = tiny
    mirror = FakeMirror(source, corrupt={datasets.TRAIN_LABELS})
    monkeypatch.setattr(datasets, "urlopen", mirror)
    target = tmp_path / "target"
    with pytest.raises(DatasetError, match="no mirror delivered the published file") as err:
        download_files(tiny_dataset(md5), target)
    assert "mirror-b.invalid/train-labels-idx1-ubyte.gz" in str(err.value)
    assert sorted(os.listdir(target)) == [datasets.TRAIN_IMAGES]  # only the good file before it


def test_download_http_error_is_not_called_offline(tiny, tmp_path, monkeypatch):
    source, _, md5 = tiny
    monkeypatch.setattr(datasets, "urlopen", FakeMirror(source, http_error=True))
    with pytest.raises(DatasetError, match="HTTP 404") as err:
        download_files(tiny_dataset(md5), tmp_path)
    assert "no network" not in str(err.value)


# --------------------------------------------------------------------------- the real data

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # shared/data/README.md


@pytest.fixture(scope="module", params=[("mnist", np.float64), ("fashion-mnist", np.float32)],
                ids=["mnist", "fashion-mnist"])
def real(request):
    name, dtype = request.param
    if not (SHARED_DATA / name).is_dir():
        pytest.skip(f"no {name} in {SHARED_DATA}")
    return name, dtype, load(name, data_dir=SHARED_DATA, download=False, dtype=dtype)


def test_real_data_shapes_and_ranges(real):
    name, dtype, splits = real
    for task, n in ((splits.train, 50000), (splits.validation, 10000), (splits.test, 10000)):
        assert task.name.startswith(name)
        assert task.x.shape == (n, 784) and task.x.dtype == dtype
        assert task.labels.shape == (n,) and task.labels.dtype == np.int64
        assert task.targets.shape == (n, 10)
        assert 0.0 <= task.x.min() and task.x.max() <= 1.0
        assert task.x.max() == 1.0  # scaled by 255, not by the per-set maximum or not at all
        np.testing.assert_array_equal(np.unique(task.labels), np.arange(10))
        np.testing.assert_array_equal(task.targets.argmax(1), task.labels)
        assert (task.targets.sum(1) == 1).all()


def test_real_data_label_counts(real):
    name, _, splits = real
    train_counts = np.bincount(np.r_[splits.train.labels, splits.validation.labels], minlength=10)
    if name == "mnist":
        np.testing.assert_array_equal(train_counts, MNIST_TRAIN_COUNTS)
    else:
        np.testing.assert_array_equal(train_counts, np.full(10, 6000))
        np.testing.assert_array_equal(np.bincount(splits.test.labels), np.full(10, 1000))


def raw_idx_images(path):
    """The images of a gzip IDX file parsed here from the bytes, independently of read_idx."""
    raw = gzip.decompress(path.read_bytes())
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)


def test_real_data_images_are_the_idx_images(real):
    """images() shows each digit as the IDX file stores it; x is that image row-major (pixel (r, c) at r*28 + c)."""
    name, dtype, splits = real
    train = raw_idx_images(SHARED_DATA / name / datasets.TRAIN_IMAGES)
    test = raw_idx_images(SHARED_DATA / name / datasets.TEST_IMAGES)
    for task in (splits.train, splits.validation, splits.test):
        assert task.image_shape == (1, 28, 28)
        assert np.shares_memory(task.images(), task.x)
    for k in (0, 1, 49999):
        np.testing.assert_array_equal(splits.train.images()[k, 0], (train[k] / 255).astype(dtype))
    np.testing.assert_array_equal(splits.validation.images()[-1, 0], (train[-1] / 255).astype(dtype))
    np.testing.assert_array_equal(splits.test.images()[:, 0], (test / 255).astype(dtype))
    # One off-diagonal inked pixel of the first training image, found in the raw bytes.
    rows, cols = np.nonzero((train[0] > 0) & ~np.eye(28, dtype=bool))
    r, c = int(rows[0]), int(cols[0])
    assert train[0, r, c] != train[0, c, r]  # so a transposed layout would fail
    assert splits.train.x[0, r * 28 + c] == dtype(train[0, r, c] / 255)


def test_real_data_validation_is_the_last_10000_training_images(real):
    name, dtype, splits = real
    images = read_idx(SHARED_DATA / name / datasets.TRAIN_IMAGES)
    np.testing.assert_array_equal(splits.validation.x[-1], (images[-1].reshape(784) / 255).astype(dtype))
    np.testing.assert_array_equal(splits.train.x[0], (images[0].reshape(784) / 255).astype(dtype))
    np.testing.assert_array_equal(splits.validation.x[0], (images[50000].reshape(784) / 255).astype(dtype))


def test_as_dict_leaves_out_an_empty_validation_split(tiny):
    folder, arrays, md5 = tiny
    everything = load_folder(folder, md5, validation_size=0).as_dict()
    assert sorted(everything) == ["test", "train"]
    assert everything["train"].x.shape[0] == N_TRAIN
    held = load_folder(folder, md5, validation_size=5).as_dict()
    assert sorted(held) == ["test", "train", "validation"] and held["validation"].x.shape[0] == 5
