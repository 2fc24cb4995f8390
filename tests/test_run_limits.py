"""Runs that cannot be what the user asked are refused up front: a whole-run schedule extended on resume, sizes
that cannot fit in memory."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynsim.datasets.tasks import moons
from dynsim.networks.pc import PCNetwork
from dynsim.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dynsim.training.loop import ParticleStore, fit
from dynsim.training.optimizers import Adam
from dynsim.training.schedules import Constant, ExponentialPerEpoch, WarmupCosine
from dynsim.validation import ValidationError, available_memory, check_memory, layered_bytes

ROOT = Path(__file__).resolve().parents[1]
TASK = moons(40, seed=0)


def run(epochs, schedule, checkpoint, resume=False):
    net = PCNetwork([2, 4, 2], seed=0)
    history = fit(net, {"train": TASK}, "bp", Adam(net, 0.01), epochs, 10, checkpoint=checkpoint, resume=resume,
                  lr_schedule=schedule, progress=False)
    return net, history


# ----------------------------------------------------------------------------- schedules over the whole run


def test_a_whole_run_schedule_refuses_a_resume_with_another_number_of_epochs(tmp_path):
    ckpt = tmp_path / "checkpoint.h5"
    run(2, WarmupCosine(), ckpt)
    with pytest.raises(CheckpointError) as info:
        run(3, WarmupCosine(), ckpt, resume=True)
    message = str(info.value)
    assert "epochs (--epochs) 3 differs from the 2 the run" in message and str(ckpt) in message
    assert "warmup-cosine" in message and "spans the whole run" in message and "resume with --epochs 2" in message
    assert "\n" not in message
    assert load_checkpoint(ckpt).epoch == 2  # nothing was trained or written
    net, history = run(2, WarmupCosine(), ckpt, resume=True)  # the same total resumes (nothing left to do)
    assert list(history["epoch"]) == [0, 1, 2]


@pytest.mark.parametrize("schedule", [Constant(), ExponentialPerEpoch(0.9)], ids=["constant", "exponential"])
def test_a_schedule_that_ignores_the_total_extends_a_run_exactly(tmp_path, schedule):
    run(2, schedule, tmp_path / "a.h5")
    extended, history = run(3, schedule, tmp_path / "a.h5", resume=True)
    straight, _ = run(3, schedule, tmp_path / "b.h5")
    assert list(history["epoch"]) == [0, 1, 2, 3]
    assert np.array_equal(extended.theta, straight.theta)


def test_a_checkpoint_saved_before_schedules_stamped_their_total_still_resumes(tmp_path):
    ckpt = tmp_path / "checkpoint.h5"
    run(2, WarmupCosine(), ckpt)
    old = load_checkpoint(ckpt)
    del old.fingerprint["schedule_epochs"]
    save_checkpoint(ckpt, old)
    net, history = run(2, WarmupCosine(), ckpt, resume=True)
    assert list(history["epoch"]) == [0, 1, 2]


def test_mnist_pc_refuses_to_extend_its_warmup_cosine_run(tmp_path):
    from conftest import real_data_root

    root = real_data_root("mnist")
    if root is None:
        pytest.skip("the MNIST IDX files are not present")
    env = dict(os.environ, DYNSIM_DATA=str(root))
    base = [sys.executable, str(ROOT / "scenarios" / "mnist_pc.py"), "--rules", "bp", "--train-size", "64",
            "--eval-size", "32", "--max-batches", "2", "--quiet", "--no-download", "--out", str(tmp_path)]
    first = subprocess.run([*base, "--epochs", "1"], capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([*base, "--epochs", "2", "--resume"], capture_output=True, text=True, timeout=600,
                           env=env)
    assert again.returncode == 2, again.stderr
    errors = [line for line in again.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in again.stderr, again.stderr
    assert "epochs (--epochs) 2 differs from the 1 the run" in errors[0] and "resume with --epochs 1" in errors[0]


# ----------------------------------------------------------------------------- sizes that cannot fit in memory


def test_the_memory_check_names_the_argument_and_the_estimate():
    available = available_memory()
    assert available is None or available > 0
    assert check_memory("--batch-size", 1024, "a minibatch") == 1024
    with pytest.raises(ValidationError, match=r"^--batch-size: a minibatch would need about 909\.5 TiB, more than "
                                              r"the .* of memory available; choose a smaller size$"):
        check_memory("--batch-size", 10 ** 15, "a minibatch")
    # Python integers: sizes far beyond any memory give an estimate, not an overflow.
    assert layered_bytes([10 ** 9, 10 ** 9, 10], batch=10 ** 9) > 10 ** 18


def test_persistent_particles_that_cannot_fit_are_refused_before_allocation():
    with pytest.raises(ValidationError, match=r"n_examples: persistent particles of 1000000000 examples x 1000000 "
                                              r"units would need about 7\.1 PiB"):
        ParticleStore(10 ** 9, 10 ** 6)
    assert ParticleStore(3, 2, np.float32).states.shape == (3, 2)


def test_a_generated_task_that_cannot_fit_is_refused_before_allocation():
    with pytest.raises(ValidationError, match=r"^n: 10000000000000 points would need about"):
        moons(10 ** 13)
