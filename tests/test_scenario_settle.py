"""The first scenario, end to end, in a subprocess: its log and figures are opened and checked."""
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynsim.io.log import read_log

SCRIPT = Path(__file__).resolve().parents[1] / "scenarios" / "settle_hopfield.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("integrator", ["projected_euler", "dopri5"])
def test_scenario_writes_a_log_and_figures(tmp_path, integrator):
    out = tmp_path / integrator
    proc = run("--out", str(out), "--integrator", integrator, "--batch", "5", "--record-samples", "2")
    assert proc.returncode == 0, proc.stderr
    assert "free" in proc.stdout and "nudged" in proc.stdout and "converged" in proc.stdout

    with read_log(out / "settle.h5") as log:
        assert log.config["integrator"] == integrator
        assert log.config["beta"] == 0.5 and log.config["seed"] == 0
        assert len(log) == 1
        relax = log.relaxation(0)
        free, nudged = relax["free"], relax["nudged"]
        assert free.attrs["status_name"] == nudged.attrs["status_name"] == "converged"
        assert set(free.states) == {"hidden_1", "hidden_2", "output"}
        assert free.states["hidden_1"].shape[1:] == (2, 24)
        # The nudged phase starts where the free phase ended.
        for layer in free.states:
            np.testing.assert_array_equal(nudged.states[layer][0], free.states[layer][-1])
        # Free-phase energy decreases from start to end; residuals reach the tolerance.
        assert np.all(free.energy[-1] < free.energy[0])
        assert free.residual[-1].max() <= 1e-6 * (1 + np.abs(free.final_state).sum())
    for name in ("settling.png", "energy.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_scenario_never_overwrites_a_log_unless_asked(tmp_path):
    assert run("--out", str(tmp_path), "--batch", "2").returncode == 0
    log = tmp_path / "settle.h5"
    before = hashlib.sha256(log.read_bytes()).hexdigest()
    proc = run("--out", str(tmp_path), "--batch", "2", "--seed", "1")
    assert proc.returncode != 0
    assert "overwrite" in proc.stderr
    assert hashlib.sha256(log.read_bytes()).hexdigest() == before
    proc = run("--out", str(tmp_path), "--batch", "2", "--seed", "1", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    with read_log(log) as reader:
        assert reader.config["seed"] == 1


@pytest.mark.parametrize("args,match", [
    (["--integrator", "leapfrog"], "invalid choice"),
    (["--sizes", "8-x-4"], "sizes must look like"),
    (["--beta", "0"], "beta must be nonzero"),
    (["--atol", "-1"], "atol must be finite"),
])
def test_scenario_rejects_bad_options(tmp_path, args, match):
    proc = run("--out", str(tmp_path), *args)
    assert proc.returncode != 0 and match in proc.stderr
    assert not (tmp_path / "settle.h5").exists()
