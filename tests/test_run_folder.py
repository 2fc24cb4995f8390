"""A run folder after kills and restarts: what starts, what continues, what is refused, what is cleaned."""
import os
import subprocess
import sys

import numpy as np
import pytest

from dynsim.io.log import TrajectoryLog, read_log
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax.phases import SettleOptions, free_phase, nudged_phase
from dynsim.training.run_folder import RunFolderError, open_run_log, remove_stale_temporaries

NET = HopfieldNetwork.layered([3, 5, 2], activation="hard_sigmoid", seed=0)


def dead_pid():
    # A process that has ended: its id is free (and reused only after the kernel wraps around).
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def relaxation(log):
    x = np.full((2, 3), 0.5)
    options = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=5, stop_at_steady_state=False,
                            record_every=1)
    free = free_phase(NET, x, options=options)
    nudged = nudged_phase(NET, x, np.eye(2), 0.5, free.state, options=options)
    log.record_relaxation([free, nudged], label="r")


def test_a_run_stopped_before_its_first_checkpoint_starts_again(tmp_path):
    lines = []
    log, logged, resume = open_run_log(tmp_path, {"run": 1}, network=NET, say=lines.append)
    log.close()  # as if killed during the evaluation before the first checkpoint: a log without epochs
    for ask_resume in (False, True):
        log, logged, resume = open_run_log(tmp_path, {"run": 2}, network=NET, resume=ask_resume,
                                           say=lines.append)
        log.close()
        assert not resume and logged == set()
        assert read_log(tmp_path / "log.h5").config == {"run": 2}
    assert "replacing the log of a run stopped before its first checkpoint" in lines[0]
    assert "stopped before its first checkpoint; starting it again" in lines[1]


def test_a_folder_with_a_run_is_refused_or_continued_and_keeps_its_group_names(tmp_path):
    log, _, _ = open_run_log(tmp_path, {"run": 1}, network=NET)
    with log:
        log.append_row("epochs", {"epoch": 0, "loss": 1.0})
        relaxation(log)
    (tmp_path / "checkpoint.h5").write_bytes(b"stand-in")  # open_run_log only looks whether it is there
    with pytest.raises(RunFolderError, match="holds a run.*--resume.*--overwrite"):
        open_run_log(tmp_path, {"run": 2}, network=NET)
    log, logged, resume = open_run_log(tmp_path, {"run": 2}, network=NET, resume=True)
    with log:
        relaxation(log)
    assert resume and logged == {0}
    with read_log(tmp_path / "log.h5") as reader:
        names = [sorted(reader.relaxation(k)["free"].states) for k in range(2)]
    assert names[0] == names[1] == ["hidden_1", "output"]  # a resumed run records as the first one did
    log, logged, resume = open_run_log(tmp_path, {"run": 3}, network=NET, overwrite=True)
    log.close()
    assert not (tmp_path / "checkpoint.h5").exists() and logged == set()


def test_resume_without_a_run_and_a_log_without_checkpoint_are_refused(tmp_path):
    with pytest.raises(RunFolderError, match="no run to continue"):
        open_run_log(tmp_path, {}, resume=True)
    with TrajectoryLog(tmp_path / "log.h5", {}) as log:
        log.append_row("epochs", {"epoch": 0, "loss": 1.0})
    with pytest.raises(RunFolderError, match="log with epochs but no checkpoint.h5"):
        open_run_log(tmp_path, {})


def test_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead, alive = dead_pid(), os.getpid()
    stale = [tmp_path / f".log.h5.{dead}.tmp", tmp_path / f".checkpoint.h5.{dead}.k2j_x9.tmp"]
    kept = [tmp_path / f".checkpoint.h5.{alive}.abc.tmp", tmp_path / f".other.h5.{dead}.tmp",
            tmp_path / "log.h5"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


def test_a_kill_between_the_two_renames_of_a_checkpoint_write_leaves_a_run_to_continue(tmp_path):
    # save_checkpoint moves the old checkpoint to .prev, then the new one into place: killed in between, only
    # checkpoint.h5.prev is there, and it is the run's checkpoint.
    log, _, _ = open_run_log(tmp_path, {"run": 1}, network=NET)
    with log:
        log.append_row("epochs", {"epoch": 0, "loss": 1.0})
    (tmp_path / "checkpoint.h5.prev").write_bytes(b"stand-in")
    with pytest.raises(RunFolderError, match="holds a run"):
        open_run_log(tmp_path, {"run": 2}, network=NET)
    log, logged, resume = open_run_log(tmp_path, {"run": 2}, network=NET, resume=True)
    log.close()
    assert resume and logged == {0}
