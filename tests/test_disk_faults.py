"""Full disks and read-only folders: one clear error naming the file, nothing lost, never a crash.

A full disk is simulated two ways. In this process the failure is injected
where the operating system would report it (``os.fsync`` of a checkpoint,
HDF5's flush of a log record) with ``errno.ENOSPC``. In a child process the
writes really fail inside HDF5: a file-size limit (``RLIMIT_FSIZE``, with
``SIGXFSZ`` ignored) makes ``write(2)`` return ``EFBIG`` past a given size,
as a full disk makes it return ``ENOSPC``; this is where HDF5 used to crash
the process (segmentation fault) after a failed write.

A read-only folder is made with ``chmod``; where that does not stop this
process (root), the creation of files and folders inside it is refused by
patching ``os.open`` and ``os.mkdir`` instead, with the error the kernel gives.
"""
import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from dynsim.cli.main import main as dynsim_main
from dynsim.io.log import TrajectoryLog, read_log
from dynsim.training.checkpoint import (Checkpoint, CheckpointError, CheckpointWriteError, load_checkpoint,
                                        save_checkpoint)
from dynsim.training.run_folder import RunFolderError, open_run_log
from dynsim.validation import WriteError, writable_folder

ROOT = Path(__file__).resolve().parents[1]


def checkpoint(epoch, n=5):
    return Checkpoint(epoch=epoch, theta=np.full(n, float(epoch)), optimizer={"step": np.array(epoch)},
                      rng_state={"seed": 0}, history={"epoch": np.arange(epoch + 1.0)})


def temporaries(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ----------------------------------------------------------------------------- full disk, injected here


def test_a_checkpoint_write_on_a_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.h5"
    save_checkpoint(path, checkpoint(1))
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(CheckpointWriteError, match="No space left on device") as info:
        save_checkpoint(path, checkpoint(2))
    message = str(info.value)
    assert str(path) in message and "the previous checkpoint checkpoint.h5 is kept" in message
    assert isinstance(info.value, OSError) and isinstance(info.value, CheckpointError)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert load_checkpoint(path).epoch == 1 and np.all(load_checkpoint(path).theta == 1.0)
    assert temporaries(tmp_path) == []


def test_a_log_flush_on_a_full_disk_names_the_file_and_keeps_the_committed_rows(tmp_path, monkeypatch):
    path = tmp_path / "log.h5"
    log = TrajectoryLog(path, {"run": 1})
    for epoch in range(3):
        log.append_row("epochs", {"epoch": epoch, "loss": 1.0 / (epoch + 1)})
    flush = h5py.File.flush

    def full(self):  # HDF5's own words for a failed write
        raise RuntimeError("Unable to synchronously flush file (file write failed: time = now, filename = "
                           f"'{path}', file descriptor = 4, errno = 28, error message = 'No space left on device', "
                           "buf = 0x0, total write size = 346, bytes this sub-write = 346, offset = 12397)")

    monkeypatch.setattr(h5py.File, "flush", full)
    with pytest.raises(WriteError, match="No space left on device") as info:
        log.append_row("epochs", {"epoch": 3, "loss": 0.25})
    monkeypatch.setattr(h5py.File, "flush", flush)
    assert repr(str(path)) in str(info.value) and info.value.errno == errno.ENOSPC
    assert "\n" not in str(info.value)
    with pytest.raises(WriteError, match="closed after a failed write"):  # later records are refused, clearly
        log.append_row("epochs", {"epoch": 4, "loss": 0.2})
    log.close()  # nothing left to close: no second error
    with read_log(path) as reader:
        assert list(reader.table("epochs")["epoch"]) == [0, 1, 2]
    assert temporaries(tmp_path) == []
    with TrajectoryLog.reopen(path) as again:  # the run continues once there is space
        again.append_row("epochs", {"epoch": 3, "loss": 0.25})
    with read_log(path) as reader:
        assert list(reader.table("epochs")["epoch"]) == [0, 1, 2, 3]


def test_a_nearly_full_file_system_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    real = os.statvfs

    def tiny(path):
        st = real(path)
        return os.statvfs_result((st.f_bsize, st.f_frsize, st.f_blocks, 10, 10, st.f_files, st.f_ffree,
                                  st.f_favail, st.f_flag, st.f_namemax))

    monkeypatch.setattr(os, "statvfs", tiny)
    with pytest.raises(WriteError, match=r"--out .*run: its file system is full \(.* free\)"):
        writable_folder("--out", tmp_path / "run")


def test_a_figure_that_cannot_be_written_leaves_no_partial_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from dynsim.plots._figure import save_figure

    fig = Figure()
    fig.subplots().plot([0, 1])
    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(WriteError, match=r"cannot write the figure .*f\.png: No space left on device"):
        save_figure(fig, tmp_path / "f.png")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- failed writes inside HDF5, for real

CHILD = textwrap.dedent("""
    import os, resource, signal, sys
    import numpy as np
    import dynsim.io.log
    from dynsim.io.log import TrajectoryLog
    from dynsim.training.checkpoint import Checkpoint, save_checkpoint
    from dynsim.validation import WriteError
    folder, width, reserve = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "reserve"
    if not reserve:  # no space allocated ahead: the writes fail inside HDF5, as on a file system without fallocate
        dynsim.io.log._allocate = lambda fd, offset, length: False
    log = TrajectoryLog(os.path.join(folder, "log.h5"), {"run": 1})
    for epoch in range(5):
        log.append_row("epochs", {"epoch": epoch, "x": float(epoch)})
    ckpt = os.path.join(folder, "checkpoint.h5")
    save_checkpoint(ckpt, Checkpoint(epoch=1, theta=np.zeros(10), optimizer={}, rng_state={}))
    # From here every write past 64 KiB beyond the log's end fails, as on a full disk.
    limit = dynsim.io.log._recorded_end(os.path.join(folder, "log.h5")) + 65536
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        save_checkpoint(ckpt, Checkpoint(epoch=2, theta=np.zeros(100000), optimizer={}, rng_state={}))
    except WriteError as exc:
        print("checkpoint:", exc, flush=True)
    try:
        for epoch in range(5, 100000):
            log.append_row("epochs", {"epoch": epoch, "x": float(epoch)})
            log.append_row(f"table_{epoch}", {"epoch": epoch, "x": np.random.rand(width)})
    except WriteError as exc:
        print("log:", exc, flush=True)
    log.close()
    print("exited normally", flush=True)
""")


def run_child(folder, width, reserve):
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(width), reserve], capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])  # not 139: no segmentation fault
    assert "exited normally" in proc.stdout
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    assert str(folder / "checkpoint.h5") in lines["checkpoint"] and "File too large" in lines["checkpoint"]
    assert "the previous checkpoint checkpoint.h5 is kept" in lines["checkpoint"]
    assert load_checkpoint(folder / "checkpoint.h5").epoch == 1
    assert repr(str(folder / "log.h5")) in lines["log"] and "File too large" in lines["log"]
    assert temporaries(folder) == []
    return lines


LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")


@LINUX
@pytest.mark.parametrize("width", [10, 30000])
def test_a_record_that_would_not_fit_is_refused_before_hdf5_writes_it(tmp_path, width):
    lines = run_child(tmp_path, width, "reserve")
    assert "no room for the next record" in lines["log"]
    with read_log(tmp_path / "log.h5") as reader:  # readable as it is: every record up to the refused one
        epochs = reader.table("epochs")["epoch"]
    assert list(epochs[:5]) == [0, 1, 2, 3, 4] and list(epochs) == list(range(len(epochs)))


@LINUX
@pytest.mark.parametrize("width", [10, 1000, 30000])
def test_writes_that_fail_inside_hdf5_end_in_one_error_not_a_crash(tmp_path, width):
    # Before: a traceback, or two chained tracebacks and a segmentation fault (widths 1000 and 30000). Without the
    # space allocated ahead, HDF5 may have rewritten shared metadata halfway: the log is not always readable then.
    run_child(tmp_path, width, "no-reserve")


# ----------------------------------------------------------------------------- read-only folders


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder nothing can be created in: by chmod, or (as root, whom chmod does not stop) by patching."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root: refuse creations inside it as the kernel would for another user
        inside = str(folder) + os.sep
        real_open, real_mkdir = os.open, os.mkdir

        def refuse(path):
            if os.fspath(path).startswith(inside) or os.fspath(path) == str(folder):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

        def guarded_open(path, flags, *args, **kwargs):
            if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
                refuse(path)
            return real_open(path, flags, *args, **kwargs)

        def guarded_mkdir(path, *args, **kwargs):
            if os.path.exists(path):  # the kernel says so first
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(path))
            refuse(path)
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", guarded_open)
        monkeypatch.setattr(os, "mkdir", guarded_mkdir)
    yield folder
    folder.chmod(0o755)


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_run_folder_in_a_read_only_folder_is_refused_naming_it(read_only):
    with pytest.raises(RunFolderError, match=r"--out .*read_only/run cannot be written: Permission denied"):
        open_run_log(read_only / "run", {"run": 1})
    with pytest.raises(RunFolderError, match=r"--out .*read_only cannot be written: Permission denied"):
        open_run_log(read_only, {"run": 1})


def test_mnist_pc_refuses_a_read_only_out_before_loading_data(read_only, capsys, monkeypatch):
    from dynsim.cli.scenarios import find_scenario

    monkeypatch.setenv("DYNSIM_DATA", str(read_only.parent / "no_data_here"))  # it must not get that far
    scenario = find_scenario("mnist_pc").module()
    with pytest.raises(SystemExit) as info:
        scenario.main(["--out", str(read_only / "run"), "--no-download"])
    assert info.value.code == 2
    line = one_error_line(capsys)
    assert f"--out {read_only / 'run'} cannot be written: Permission denied" in line


def test_plot_to_a_read_only_folder_is_refused_naming_it(read_only, tmp_path, capsys):
    with TrajectoryLog(tmp_path / "train.h5", {"run": 1}) as log:
        for epoch in range(3):
            log.append_row("epochs", {"epoch": epoch, "train_error": 0.5, "test_error": 0.4, "train_loss": 1.0})
    code = dynsim_main(["plot", str(tmp_path / "train.h5"), "--kind", "training", "--out",
                        str(read_only / "training.png")])
    assert code == 2
    assert f"--out {read_only} cannot be written: Permission denied" in one_error_line(capsys)
    assert not (read_only / "training.png").exists()


def test_a_sweep_into_a_read_only_folder_is_refused_before_any_point_runs(read_only, capsys):
    code = dynsim_main(["--quiet", "sweep", "settle_hopfield", "--grid", "beta=0.5,1", "--out",
                        str(read_only / "sweep")])
    assert code == 2
    assert f"--out {read_only / 'sweep'} cannot be written: Permission denied" in one_error_line(capsys)
    assert not (read_only / "sweep").exists()
