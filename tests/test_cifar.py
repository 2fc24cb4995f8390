"""CIFAR-10 reader: the official pickle format, channel order, splits, checksums, folder look-up, errors.

No CIFAR-10 files exist on the test machines: every test writes small
batches (20 images each) in the official format into a temporary folder, and
points the table of checksums at them.
"""
import pickle
import struct

import numpy as np
import pytest

from dynsim.datasets import cifar, idx
from dynsim.datasets.cifar import FILES, TEST_BATCH, TRAIN_BATCHES, cifar10_folder, load_batches, load_cifar10
from dynsim.datasets.idx import DatasetError, Splits, dataset_folder, file_md5, load
from dynsim.validation import ValidationError

PER_BATCH = 20
N_TRAIN = 5 * PER_BATCH

# A marked pixel of the first training image: channel 1 (green), row 2,
# column 29. Row != column, so a transposed plane would misplace it.
MARK = (1, 2, 29)


def write_pickle(path, obj):
    # Protocol 2, the newest one Python 2 wrote, as the official files were made.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_batch(path, data, labels, title=b"batch"):
    """A batch as the official files hold it: byte-string keys, uint8 (n, 3072) data, a list of int labels."""
    write_pickle(path, {b"batch_label": title, b"labels": [int(v) for v in labels], b"data": data,
                        b"filenames": [b"img_%d.png" % i for i in range(len(labels))]})


def py2_batch(data, labels):
    """A batch pickled as the official files are: by Python 2's cPickle, protocol 2.

    Built opcode by opcode because Python 3 cannot write it: Python 2 str
    (the keys, numpy's dtype code and the pixel bytes) is SHORT_BINSTRING /
    BINSTRING, which ``encoding='bytes'`` reads back as bytes, and numpy's
    array rebuilder is ``numpy.core.multiarray._reconstruct``.
    """
    def text(b):
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def integer(v):
        return b"J" + struct.pack("<i", v)

    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + integer(0) + b"\x85" + text(b"b")
             + b"\x87R(" + integer(1) + b"(" + b"".join(integer(d) for d in data.shape) + b"t"
             + b"cnumpy\ndtype\n" + text(b"u1") + integer(0) + integer(1) + b"\x87R"
             + b"(" + integer(3) + text(b"|") + b"NNN" + integer(-1) + integer(-1) + integer(0) + b"tb"
             + b"\x89" + text(data.tobytes()) + b"tb")
    return (b"\x80\x02}(" + text(b"data") + array + text(b"labels") + b"]("
            + b"".join(integer(int(v)) for v in labels) + b"eu.")


def write_meta(path, names=cifar.CLASSES):
    write_pickle(path, {b"num_cases_per_batch": PER_BATCH, b"label_names": [n.encode() for n in names],
                        b"num_vis": 3072})


def tiny_batches(seed=0):
    """Pixel arrays and labels of the five training batches and the test batch."""
    rng = np.random.default_rng(seed)
    batches = {}
    for i, fname in enumerate((*TRAIN_BATCHES, TEST_BATCH)):
        data = rng.integers(0, 256, size=(PER_BATCH, 3072), dtype=np.uint8)
        labels = (np.arange(PER_BATCH) * 3 + i) % 10
        batches[fname] = (data, labels)
    first = batches[TRAIN_BATCHES[0]][0][0]
    # Known values per channel: the red plane 10, the green 20, the blue 30,
    # written in the file's layout: R plane, G plane, B plane, each row-major 32 x 32.
    first[:1024], first[1024:2048], first[2048:] = 10, 20, 30
    c, r, col = MARK
    first[c * 1024 + r * 32 + col] = 255
    return batches


def write_tiny(folder, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    batches = tiny_batches(seed)
    for fname, (data, labels) in batches.items():
        write_batch(folder / fname, data, labels)
    write_meta(folder / cifar.META)
    return batches


def sums(folder):
    return {f: file_md5(folder / f) for f in FILES}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Tiny CIFAR-10 in <tmp>/data/cifar10/, the checksum table pointed at its files."""
    root = tmp_path / "data"
    folder = root / "cifar10"
    batches = write_tiny(folder)
    monkeypatch.setattr(cifar, "MD5", sums(folder))
    return root, folder, batches


def train_arrays(batches):
    data = np.concatenate([batches[f][0] for f in TRAIN_BATCHES])
    labels = np.concatenate([batches[f][1] for f in TRAIN_BATCHES])
    return data, labels


# --------------------------------------------------------------------------- reading

def test_shapes_values_labels_and_targets(tiny):
    root, _, batches = tiny
    splits = load_cifar10(data_dir=root, validation_size=10)
    assert isinstance(splits, Splits)
    data, labels = train_arrays(batches)
    parts = {"train": (data[:90], labels[:90]), "validation": (data[90:], labels[90:]),
             "test": batches[TEST_BATCH]}
    for split, (pixels, lab) in parts.items():
        task = getattr(splits, split)
        n = len(lab)
        assert task.name == f"cifar10-{split}"
        assert task.x.shape == (n, 3072) and task.x.dtype == np.float64 and task.x.flags.c_contiguous
        assert task.image_shape == (3, 32, 32)
        np.testing.assert_array_equal(task.x, pixels / 255.0)
        assert 0.0 <= task.x.min() and task.x.max() <= 1.0
        assert task.labels.dtype == np.int64
        np.testing.assert_array_equal(task.labels, lab)
        assert task.targets.shape == (n, 10) and task.targets.dtype == np.float64
        np.testing.assert_array_equal(task.targets, np.eye(10)[lab])
        images = task.images()
        assert images.shape == (n, 3, 32, 32) and np.shares_memory(images, task.x)


def test_channel_order_is_channel_major(tiny):
    """The file's R, G, B planes (each row-major) are images()[i, 0], [i, 1], [i, 2]: pixel (c, r, col)."""
    root, _, _ = tiny
    images = load_cifar10(data_dir=root, validation_size=0).train.images()
    first = images[0]
    c, r, col = MARK
    assert first[c, r, col] == 1.0
    assert first[c, col, r] == 20 / 255  # the transposed place holds the plane's plain value
    for channel, value in enumerate((10, 20, 30)):
        plane = first[channel].copy()
        if channel == c:
            plane[r, col] = value / 255
        np.testing.assert_array_equal(plane, np.full((32, 32), value / 255))


def test_split_sizes_and_order(tiny):
    """The validation set is the end of data_batch_5; training keeps the batches in order."""
    root, _, batches = tiny
    data, _ = train_arrays(batches)
    for validation_size in (0, 1, 35, N_TRAIN - 1):
        splits = load_cifar10(data_dir=root, validation_size=validation_size)
        cut = N_TRAIN - validation_size
        assert splits.train.x.shape == (cut, 3072)
        assert splits.validation.x.shape == (validation_size, 3072)
        assert splits.validation.images().shape == (validation_size, 3, 32, 32)
        assert splits.test.x.shape == (PER_BATCH, 3072)
        np.testing.assert_array_equal(splits.train.x[0], data[0] / 255.0)
        np.testing.assert_array_equal(splits.train.x[-1], data[cut - 1] / 255.0)
        if validation_size:
            np.testing.assert_array_equal(splits.validation.x[-1], batches[TRAIN_BATCHES[-1]][0][-1] / 255.0)
    assert sorted(load_cifar10(data_dir=root, validation_size=0).as_dict()) == ["test", "train"]


def test_reads_a_batch_pickled_by_python_2(tiny, monkeypatch):
    """The official files come from Python 2: str keys and pixel bytes read back as bytes."""
    root, folder, batches = tiny
    data, labels = batches[TRAIN_BATCHES[0]]
    (folder / TRAIN_BATCHES[0]).write_bytes(py2_batch(data, labels))
    monkeypatch.setattr(cifar, "MD5", sums(folder))
    train = load_cifar10(data_dir=root, validation_size=0).train
    np.testing.assert_array_equal(train.x[:PER_BATCH], data / 255.0)
    np.testing.assert_array_equal(train.labels[:PER_BATCH], labels)
    assert train.images()[0, MARK[0], MARK[1], MARK[2]] == 1.0


def test_float32(tiny):
    root, _, batches = tiny
    splits = load_cifar10(data_dir=root, validation_size=5, dtype=np.float32)
    for task in (splits.train, splits.validation, splits.test):
        assert task.x.dtype == np.float32 and task.targets.dtype == np.float32
        assert task.image_shape == (3, 32, 32)
    np.testing.assert_allclose(splits.test.x, batches[TEST_BATCH][0] / 255.0, rtol=1e-7)


def test_load_takes_the_name_cifar10(tiny):
    root, _, _ = tiny
    direct = load_cifar10(data_dir=root, validation_size=7, dtype=np.float32)
    for download in (True, False):  # nothing is ever downloaded: the flag changes nothing
        through = load("cifar10", data_dir=root, download=download, validation_size=7, dtype=np.float32)
        for split in ("train", "validation", "test"):
            a, b = getattr(direct, split), getattr(through, split)
            assert a.name == b.name and a.image_shape == b.image_shape
            np.testing.assert_array_equal(a.x, b.x)
            np.testing.assert_array_equal(a.targets, b.targets)


def test_default_validation_size_is_5000(tiny):
    """load's default for cifar10 is 5,000, out of range for 100 tiny training images."""
    root, _, _ = tiny
    assert cifar.VALIDATION_SIZE == 5000
    with pytest.raises(ValidationError, match=r"validation_size must be an integer in \[0, 99\].*got 5000"):
        load("cifar10", data_dir=root)
    with pytest.raises(ValidationError, match=r"got 5000"):
        load_cifar10(data_dir=root)


def test_load_batches_with_an_explicit_table(tiny):
    _, folder, batches = tiny
    splits = load_batches(folder, sums(folder), name="tiny", validation_size=3)
    assert splits.train.name == "tiny-train" and splits.validation.x.shape == (3, 3072)
    np.testing.assert_array_equal(splits.test.labels, batches[TEST_BATCH][1])


# --------------------------------------------------------------------------- where the files are

def test_folder_lookup(tiny, tmp_path, monkeypatch):
    root, folder, _ = tiny
    assert cifar10_folder(root) == folder == dataset_folder("cifar10", root)
    monkeypatch.setenv("DYNSIM_DATA", str(root))  # then the environment variable
    assert cifar10_folder() == folder
    assert load_cifar10(validation_size=0).train.x.shape == (N_TRAIN, 3072)
    monkeypatch.delenv("DYNSIM_DATA")
    checkout = tmp_path / "checkout"  # then the checkout's data/ folder
    (checkout / "data").mkdir(parents=True)
    (checkout / "setup.cfg").write_text("")
    monkeypatch.setattr(idx, "_PACKAGE_PARENT", checkout)
    assert cifar10_folder() == checkout / "data" / "cifar10"


def test_flat_layout_accepted_when_no_subfolder(tiny, tmp_path):
    """data_dir may be the unpacked cifar-10-batches-py/ folder itself."""
    _, folder, _ = tiny
    unpacked = folder.rename(tmp_path / cifar.TARBALL_FOLDER)
    assert cifar10_folder(unpacked) == unpacked
    assert load_cifar10(data_dir=unpacked, validation_size=0).test.x.shape == (PER_BATCH, 3072)
    (unpacked / "cifar10").mkdir()
    assert cifar10_folder(unpacked) == unpacked / "cifar10"  # the subfolder wins once it exists


# --------------------------------------------------------------------------- checksums

def test_md5_mismatch_names_the_file_and_both_sums(tiny, monkeypatch):
    root, folder, _ = tiny
    path = folder / "data_batch_3"
    expected = cifar.MD5["data_batch_3"]
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 1  # one bit flipped anywhere changes the sum
    path.write_bytes(bytes(raw))
    found = file_md5(path)
    opened = []
    monkeypatch.setattr(cifar, "_unpickle", lambda p: opened.append(p))
    with pytest.raises(DatasetError) as err:
        load_cifar10(data_dir=root, validation_size=0)
    msg = str(err.value)
    assert str(path) in msg and expected in msg and found in msg and found != expected
    assert cifar.URL in msg
    assert opened == []  # no file is unpickled before every sum has matched


def test_the_published_sums_are_checked_by_default(tmp_path):
    """Without the patched table, tiny files are refused by name against the published sums."""
    folder = tmp_path / "cifar10"
    write_tiny(folder)
    assert set(cifar.MD5) == set(FILES) and all(len(s) == 32 and int(s, 16) >= 0 for s in cifar.MD5.values())
    with pytest.raises(DatasetError, match="MD5 sum") as err:
        load_cifar10(data_dir=tmp_path, validation_size=0)
    assert str(folder / "data_batch_1") in str(err.value)
    assert "c99cafc152244af753f735de768cd75f" in str(err.value)


# --------------------------------------------------------------------------- missing files

def test_missing_files_name_the_files_the_folder_and_the_source(tmp_path):
    with pytest.raises(DatasetError) as err:
        load("cifar10", data_dir=tmp_path, validation_size=0)
    msg = str(err.value)
    assert all(f in msg for f in FILES)
    assert str(tmp_path / "cifar10") in msg
    assert "does not download" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in msg and "cifar-10-python.tar.gz" in msg
    assert "tar -xzf" in msg and "DYNSIM_DATA" in msg and "data_dir" in msg
    assert not (tmp_path / "cifar10").exists()  # nothing created


def test_one_missing_file_is_named_alone(tiny):
    root, folder, _ = tiny
    (folder / TEST_BATCH).unlink()
    with pytest.raises(DatasetError) as err:
        load_cifar10(data_dir=root, validation_size=0)
    msg = str(err.value)
    assert f"missing {TEST_BATCH} in {folder}" in msg
    assert "data_batch_1" not in msg.split(". ")[0]


def test_missing_files_hint_at_a_tarball_or_an_unpacked_folder(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / cifar.TARBALL).write_bytes(b"")
    with pytest.raises(DatasetError, match="is there but not unpacked"):
        load_cifar10(data_dir=tmp_path, validation_size=0)
    (folder / cifar.TARBALL).unlink()
    folder.rmdir()
    (tmp_path / cifar.TARBALL_FOLDER).mkdir()  # unpacked in the data folder, not renamed
    with pytest.raises(DatasetError, match=r"cifar-10-batches-py is there: rename it to .*cifar10"):
        load_cifar10(data_dir=tmp_path, validation_size=0)


# --------------------------------------------------------------------------- files not in the official format

def rewrite(folder, monkeypatch, fname, obj=None, raw=None):
    """Replace one file, and point the checksum table at the new content."""
    if raw is not None:
        (folder / fname).write_bytes(raw)
    else:
        write_pickle(folder / fname, obj)
    monkeypatch.setattr(cifar, "MD5", sums(folder))


def good_batch(n=PER_BATCH):
    return {b"labels": [0] * n, b"data": np.zeros((n, 3072), np.uint8)}


@pytest.mark.parametrize("fname, obj, raw, message", [
    ("data_batch_2", None, b"not a pickle", "could not be unpickled"),
    ("data_batch_2", [1, 2], None, "holds a pickled list"),
    ("data_batch_2", {b"data": np.zeros((PER_BATCH, 3072), np.uint8)}, None, r"lacks the key\(s\) b'labels'"),
    ("data_batch_2", {"data": 0, "labels": 0}, None, r"lacks the key\(s\) b'data', b'labels'"),
    ("data_batch_2", {**good_batch(), b"data": np.zeros((PER_BATCH, 3000), np.uint8)}, None,
     r"b'data' must be a uint8 array of shape \(n, 3072\), n >= 1; got uint8 of shape \(20, 3000\)"),
    ("data_batch_2", {**good_batch(), b"data": np.zeros((PER_BATCH, 3072))}, None, "got float64"),
    ("test_batch", {**good_batch(), b"labels": [0] * (PER_BATCH + 1)}, None, "20 images but 21 labels"),
    ("test_batch", {**good_batch(), b"labels": [10] + [0] * (PER_BATCH - 1)}, None, "label 10; expected 0 to 9"),
    ("test_batch", {**good_batch(), b"labels": ["a"] * PER_BATCH}, None, "must be a list of integers"),
    ("batches.meta", {b"label_names": [b"a", b"b"]}, None, r"names the classes \['a', 'b'\]"),
    ("batches.meta", {b"num_vis": 3072}, None, "lacks b'label_names'"),
])
def test_files_not_in_the_official_format_are_named(tiny, monkeypatch, fname, obj, raw, message):
    root, folder, _ = tiny
    rewrite(folder, monkeypatch, fname, obj, raw)
    with pytest.raises(DatasetError, match=message) as err:
        load_cifar10(data_dir=root, validation_size=0)
    assert str(folder / fname) in str(err.value)


# --------------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("bad", [-1, 50000, 2.5, True, "10"])
def test_validation_size_range(tmp_path, bad):
    for call in (load_cifar10, lambda **kw: load("cifar10", **kw)):
        with pytest.raises(ValidationError, match=r"validation_size must be an integer in \[0, 49999\]"):
            call(data_dir=tmp_path, validation_size=bad)
    assert list(tmp_path.iterdir()) == []  # checked before any file is touched


def test_validation_size_none_is_refused_by_load_cifar10(tmp_path):
    """None means "the default" only to load(), which picks 5,000 for cifar10."""
    with pytest.raises(ValidationError, match=r"validation_size must be an integer in \[0, 49999\]"):
        load_cifar10(data_dir=tmp_path, validation_size=None)


def test_validation_size_range_of_the_files_read(tiny):
    _, folder, _ = tiny
    with pytest.raises(ValidationError, match=r"validation_size must be an integer in \[0, 99\] .*; got 100"):
        load_batches(folder, sums(folder), validation_size=N_TRAIN)
    with pytest.raises(ValidationError, match=r"validation_size must be an integer >= 0"):
        load_batches(folder, sums(folder), validation_size=-1)


@pytest.mark.parametrize("call, message", [
    (lambda d: load_cifar10(data_dir=d, dtype=np.uint8), r"dtype must be numpy.float32 or numpy.float64"),
    (lambda d: load("cifar10", data_dir=d, dtype="int32"), r"dtype must be"),
    (lambda d: load_cifar10(data_dir=3), r"data_dir must be None, a str or a path-like object; got 3"),
    (lambda d: load("cifar10", data_dir=d, download="no"), r"download must be True or False"),
    (lambda d: load_batches(5, {}), r"folder must be a str or a path-like object; got 5"),
    (lambda d: load_batches(d, None), r"md5 must be a dict .* pickles, which run code when read"),
    (lambda d: load_batches(d, {f: "0" * 32 for f in FILES[:-1]}),
     r"md5 must give a sum .* missing batches.meta"),
    (lambda d: load_batches(d, {f: "0" * 32 for f in FILES}, name=""), r"name must be a non-empty str"),
    (lambda d: load_batches(d, {f: "0" * 32 for f in FILES}, dtype=int), r"dtype must be"),
])
def test_bad_arguments_are_named(tmp_path, call, message):
    with pytest.raises(ValidationError, match=message):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []
