"""Fault injection: a training run killed with SIGKILL at random moments, resumed each time, ends exactly
like an uninterrupted run (weights, optimizer state, particles and the logged epoch table)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dynsim.io.log import read_log
from dynsim.training.checkpoint import checkpoint_exists, load_checkpoint

SCRIPT = Path(__file__).with_name("train_for_kill.py")
EPOCHS = 30
KILLS = 4
KILL_AFTER_S = (0.0, 0.4)


def start(out):
    return subprocess.Popen([sys.executable, str(SCRIPT), str(out), str(EPOCHS)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def finish(out):
    proc = start(out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()


def test_killed_and_resumed_runs_equal_the_uninterrupted_run(tmp_path):
    finish(tmp_path / "whole")
    reference = load_checkpoint(tmp_path / "whole" / "checkpoint.h5")
    with read_log(tmp_path / "whole" / "log.h5") as log:
        ref_table = log.table("epochs")
    assert reference.epoch == EPOCHS

    rng = np.random.default_rng(5)
    out = tmp_path / "killed"
    ckpt = out / "checkpoint.h5"
    kills = mid_epoch = 0
    for attempt in range(KILLS):
        done = load_checkpoint(ckpt).epoch if checkpoint_exists(ckpt) else -1
        proc = start(out)
        if attempt > 0:
            # Past the start-up (imports take seconds on a loaded machine): wait for a new epoch, then kill
            # at a random moment within the next ones. The first attempt is killed at a random moment from
            # its start, possibly before its first checkpoint.
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline and \
                    (not ckpt.exists() or load_checkpoint(ckpt).epoch <= done):
                time.sleep(0.02)
        time.sleep(rng.uniform(*KILL_AFTER_S))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += proc.wait(timeout=30) == -signal.SIGKILL
            mid_epoch += checkpoint_exists(ckpt) and load_checkpoint(ckpt).partial is not None
        else:
            assert proc.returncode == 0, proc.stderr.read().decode()
        proc.stderr.close()
        if checkpoint_exists(ckpt) and load_checkpoint(ckpt).epoch == EPOCHS:
            break
    finish(out)
    assert kills >= 2, "the run finished before it could be killed: lengthen EPOCHS"
    resumed = load_checkpoint(out / "checkpoint.h5")
    assert np.array_equal(resumed.theta, reference.theta)
    assert np.array_equal(resumed.particles, reference.particles)
    for key, value in reference.optimizer.items():
        assert np.array_equal(resumed.optimizer[key], value)
    with read_log(out / "log.h5") as log:
        table = log.table("epochs")
    assert table["epoch"].tolist() == list(range(EPOCHS + 1))
    for column in ("train_error", "train_loss", "test_error", "free_steps"):
        assert np.array_equal(table[column], ref_table[column], equal_nan=True), column
    print(f"\n{kills} kills ({mid_epoch} resumed from a mid-epoch checkpoint), resumed each time; weights, "
          "particles, optimizer and log identical")
