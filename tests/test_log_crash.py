"""Crash safety of the HDF5 log: SIGKILLed writers, a reader beside a running writer, damaged files.

The writer is ``tests/crash_writer.py`` in a subprocess; it reports each
completed record in a side file with one unbuffered write, which a SIGKILL
cannot lose. Every record the writer reported must read back byte for byte,
and no record beyond the last reported one but the one whose report the kill
cut off may be visible.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import crash_writer as W
import numpy as np
import pytest

from dynsim.io.log import LogBusyError, LogFormatError, TrajectoryLog, read_log
from dynsim.validation import ValidationError

WRITER = Path(__file__).with_name("crash_writer.py")
KILLS = 5
KILL_AFTER_S = (0.2, 2.0)
START_TIMEOUT_S = 60.0


def start_writer(path, progress):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(WRITER.parent),
                                                                     os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, str(WRITER), str(path), str(progress)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (progress.exists() and progress.read_text().startswith("ready")):
        if proc.poll() is not None:
            raise AssertionError(f"writer exited with {proc.returncode}: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("writer did not start")
        time.sleep(0.01)
    return proc


def reported(progress):
    """What the writer reported complete: (relaxations, rows of 'epochs', sweep tables)."""
    n_rel = n_rows = 0
    sweeps = set()
    for line in progress.read_text().splitlines()[1:]:
        kind, value = line.split()
        if kind == "R":
            n_rel = int(value)
        elif kind == "T":
            n_rows = int(value)
        elif kind == "S":
            sweeps.add(f"sweep_{value}")
    return n_rel, n_rows, sweeps


def check_relaxation(rel, k):
    assert rel.label == f"batch {k}"
    assert list(rel.phases) == ["free", "nudged"]
    np.testing.assert_array_equal(rel.x, np.full((W.BATCH, 2), float(k)))
    for name in ("free", "nudged"):
        want, rec = W.phase(k, name), rel[name]
        traj = want.integration.trajectory
        np.testing.assert_array_equal(rec.t, traj.t)
        np.testing.assert_array_equal(rec.state, traj.y)
        np.testing.assert_array_equal(rec.energy, want.trajectory_energy)
        np.testing.assert_array_equal(rec.cost, want.trajectory_cost)
        np.testing.assert_array_equal(rec.residual, traj.residual)
        np.testing.assert_array_equal(rec.final_state, want.state)
        np.testing.assert_array_equal(rec.final_cost, want.cost)
        assert rec.attrs["message"] == f"relaxation {k}"


def check_log(reader, n_rel=0, n_rows=0, sweeps=()):
    """Every visible record is whole and right, and every reported one is visible; returns the visible counts."""
    visible = len(reader)
    assert n_rel <= visible <= n_rel + 1, (n_rel, visible)
    for k in range(visible):
        check_relaxation(reader.relaxation(k), k)
    rows = 0
    if "epochs" in reader.tables:
        epochs = reader.table("epochs")
        rows = len(epochs["epoch"])
        np.testing.assert_array_equal(epochs["epoch"], np.arange(rows))
        np.testing.assert_array_equal(epochs["loss"], [W.row(k)["loss"] for k in range(rows)])
        assert list(epochs["note"]) == [W.row(k)["note"] for k in range(rows)]
    assert n_rows <= rows <= n_rows + 1, (n_rows, rows)
    listed = {t for t in reader.tables if t.startswith("sweep_")}
    assert set(sweeps) <= listed and len(listed - set(sweeps)) <= 1
    for name in listed:
        k = int(name.split("_")[1])
        table = reader.table(name)
        np.testing.assert_array_equal(table["beta"], W.sweep(k)["beta"])
        assert list(table["variant"]) == W.sweep(k)["variant"]
        assert table["__attrs__"]["k"] == k
    return visible, rows


def test_sigkill_at_random_moments_keeps_every_completed_record(tmp_path):
    rng = np.random.default_rng(2024)
    survived, checked = 0, {"relaxations": 0, "rows": 0, "tables": 0}
    for kill in range(KILLS):
        path, progress = tmp_path / f"run{kill}.h5", tmp_path / f"progress{kill}.txt"
        proc = start_writer(path, progress)
        time.sleep(rng.uniform(*KILL_AFTER_S))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        proc.stderr.close()
        n_rel, n_rows, sweeps = reported(progress)
        assert n_rel > 0, "killed before the first relaxation: lengthen KILL_AFTER_S"
        reader = read_log(path)
        assert reader.live  # still marked as held by a SWMR writer
        visible, rows = check_log(reader, n_rel, n_rows, sweeps)
        survived += 1
        checked["relaxations"] += visible
        checked["rows"] += rows
        checked["tables"] += len(reader.tables)
    print(f"\n{survived}/{KILLS} kills survived; checked {checked}")
    assert survived == KILLS


FOLLOW_S = 4.0
"""Seconds the stress test's reader follows a writer at full speed."""
READ_LIMIT_S = 10.0
"""Longest one read may take in the stress test; a torn metadata read once hung HDF5 for hours."""


def test_reader_follows_a_running_writer(tmp_path):
    # A writer at full speed and a reader in a second process: every read must be whole (never torn) and
    # bounded in time. Each iteration checks the newest records in full, and every record once in a while.
    path, progress = tmp_path / "run.h5", tmp_path / "progress.txt"
    proc = start_writer(path, progress)
    iterations, worst, seen = 0, 0.0, []
    try:
        reader = read_log(path, timeout=READ_LIMIT_S)
        assert reader.live
        deadline = time.monotonic() + FOLLOW_S
        while time.monotonic() < deadline:
            start = time.monotonic()
            n_rel, n_rows, sweeps = reported(progress)  # before reading: all of it must be visible
            reader.refresh()
            visible = len(reader)
            assert n_rel <= visible <= n_rel + 1, (n_rel, visible)
            for k in range(max(0, visible - 2), visible):
                check_relaxation(reader.relaxation(k), k)
            if iterations % 10 == 0:
                seen.append(check_log(reader, n_rel, n_rows, sweeps)[1])
            elif "epochs" in reader.tables:
                seen.append(len(reader.table("epochs")["epoch"]))
            worst = max(worst, time.monotonic() - start)
            iterations += 1
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    print(f"\n{iterations} reader iterations beside a full-speed writer, {n_rel} records written, "
          f"no torn read, slowest iteration {worst:.2f} s")
    assert seen == sorted(seen)
    assert len(set(seen)) >= 3, seen  # the reader saw the table grow while the writer wrote
    assert iterations >= 5, iterations


def test_a_read_waits_for_the_record_being_written_and_is_bounded(tmp_path):
    # A writer in the middle of a record holds the log's lock: a reader waits for it, at most its timeout,
    # and then says which file and what to do.
    path = tmp_path / "held.h5"
    with TrajectoryLog(path, {"seed": 0}) as log:
        log.append_row("epochs", W.row(0))
        with log._lock.held():  # as during a record
            start = time.monotonic()
            with pytest.raises(LogBusyError, match=r"held\.h5.*did not finish a record within 0\.3 s"):
                read_log(path, timeout=0.3)
            assert 0.3 <= time.monotonic() - start < 5
    assert read_log(path, timeout=0.3).table("epochs")["loss"][0] == W.row(0)["loss"]


def test_read_timeout_is_validated(closed_log):
    for bad in (0, -1.0, float("nan"), "5", True):
        with pytest.raises(ValidationError, match="timeout must be a positive number"):
            read_log(closed_log, timeout=bad)
    assert len(read_log(closed_log, timeout=None)) == 3


@pytest.fixture
def closed_log(tmp_path):
    path = tmp_path / "closed.h5"
    with TrajectoryLog(path, {"seed": 0}) as log:
        for k in range(3):
            log.record_relaxation([W.phase(k, "free"), W.phase(k, "nudged")], label=f"batch {k}",
                                  x=np.full((W.BATCH, 2), float(k)))
            log.append_row("epochs", W.row(k))
    return path


def read_everything(path):
    reader = read_log(path)
    for k in range(len(reader)):
        reader.relaxation(k)
    for name in reader.tables:
        reader.table(name)
    return reader


def test_closed_log_is_plain_hdf5_and_continues(closed_log):
    reader = read_everything(closed_log)
    assert not reader.live
    check_log(reader, 3, 3)
    with TrajectoryLog.reopen(closed_log) as log:
        assert log.n_relaxations == 3
        log.record_relaxation([W.phase(3, "free"), W.phase(3, "nudged")], label="batch 3",
                              x=np.full((W.BATCH, 2), 3.0))
        log.append_row("epochs", W.row(3))
    check_log(read_log(closed_log), 4, 4)


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1, 0.002])
def test_truncated_log_is_a_format_error(closed_log, keep):
    data = closed_log.read_bytes()
    cut = closed_log.with_name(f"cut_{int(keep * 1000)}.h5")
    cut.write_bytes(data[:max(8, int(len(data) * keep))])
    with pytest.raises(LogFormatError, match=cut.name) as err:
        read_everything(cut)
    assert any(word in str(err.value) for word in ("truncated", "damaged", "not an HDF5 file"))


def test_truncated_log_of_a_killed_writer_is_a_format_error(tmp_path):
    path, progress = tmp_path / "killed.h5", tmp_path / "progress.txt"
    proc = start_writer(path, progress)
    deadline = time.monotonic() + START_TIMEOUT_S
    while reported(progress)[0] < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "the writer stopped before 3 relaxations"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    data = path.read_bytes()
    cut = tmp_path / "killed_cut.h5"
    # Cut into the bytes the log holds, not into its length: a writer killed between the space check of a record
    # (posix_fallocate past the end) and its undoing (ftruncate) leaves up to RESERVE_BYTES of zeros after the
    # last record. A third of that length can then hold every record, a complete log that reads without error
    # (the cause of this test's rare failures).
    used = len(data.rstrip(b"\x00"))
    cut.write_bytes(data[:used // 3])
    with pytest.raises(LogFormatError, match="killed_cut.h5"):
        read_everything(cut)


def test_garbage_is_a_format_error(tmp_path):
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.h5"
    noise.write_bytes(rng.bytes(4096))
    with pytest.raises(LogFormatError, match="noise.h5.*not an HDF5 file"):
        read_log(noise)
    # An HDF5 signature followed by noise: HDF5 itself has to reject it.
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"\x89HDF\r\n\x1a\n" + rng.bytes(4096))
    with pytest.raises(LogFormatError, match="fake.h5"):
        read_log(fake)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(LogFormatError, match="empty.h5"):
        read_log(empty)


def test_log_of_a_killed_writer_is_recovered_and_continued(tmp_path):
    # The resume path of a training run killed mid-epoch: reopen the log, append after the committed records.
    rng = np.random.default_rng(7)
    for kill in range(2):
        path, progress = tmp_path / f"run{kill}.h5", tmp_path / f"progress{kill}.txt"
        proc = start_writer(path, progress)
        time.sleep(rng.uniform(*KILL_AFTER_S))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        proc.stderr.close()
        n_rel, n_rows, sweeps = reported(progress)
        # The kill may fall between a record's commit and the writer's report of it: the log then holds one
        # record more than reported, and the run continues after what the log holds (appending after the
        # reported count instead once duplicated the last row, 1 run in 12).
        with read_log(path) as before:
            held_rows = len(before.table("epochs")["epoch"]) if "epochs" in before.tables else 0
        assert n_rows <= held_rows <= n_rows + 1
        with TrajectoryLog.reopen(path) as log:
            held_rel = log.n_relaxations
            assert n_rel <= held_rel <= n_rel + 1
            log.record_relaxation([W.phase(held_rel, "free"), W.phase(held_rel, "nudged")],
                                  label=f"batch {held_rel}", x=np.full((W.BATCH, 2), float(held_rel)))
            log.append_row("epochs", W.row(held_rows))
        with read_log(path) as reader:
            assert not reader.live
            check_log(reader, held_rel + 1, held_rows + 1, sweeps)
        assert not list(tmp_path.glob(".*.tmp"))


def test_reader_follows_a_training_run_in_a_second_process(tmp_path):
    # The log of a real training loop (tests/train_for_kill.py, the fit() of the dataset scenarios) is read
    # while the run goes on: the epoch table grows under the reader's eyes.
    script = Path(__file__).with_name("train_for_kill.py")
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), "200"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    seen = []
    try:
        deadline = time.monotonic() + 120
        while len(set(seen)) < 3 and time.monotonic() < deadline and proc.poll() is None:
            if (tmp_path / "log.h5").exists():
                try:
                    with read_log(tmp_path / "log.h5") as reader:
                        if "epochs" in reader.tables:
                            seen.append(len(reader.table("epochs")["epoch"]))
                except LogFormatError:
                    pass  # created but its header not yet committed
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    assert len(set(seen)) >= 3, seen
    assert seen == sorted(seen)
