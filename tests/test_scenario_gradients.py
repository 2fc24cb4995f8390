"""The gradient-against-iterations scenario end to end, and the estimator sweep it uses."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynsim.experiments.estimator_sweep import sweep_ep_estimates
from dynsim.io.log import read_log
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.validation import ValidationError

SCRIPT = Path(__file__).resolve().parents[1] / "scenarios" / "gradient_vs_iterations.py"


def test_scenario_sweeps_iterations_and_checks_gdu(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--free-steps", "5,120",
                           "--variants", "positive,centered", "--integrators", "euler",
                           "--gdu-free-steps", "600", "--gdu-nudged-steps", "20"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "GDU" in proc.stdout
    log = read_log(tmp_path / "gradients.h5")
    assert log.tables == ["gdu", "sweep"]
    sweep = log.table("sweep")
    blocks = sweep["__attrs__"]["blocks"].split(",")
    assert blocks[-1] == "all" and sweep["cosine"].shape == (4, len(blocks))
    row = {(v, int(f)): i for i, (v, f) in enumerate(zip(sweep["variant"], sweep["free_steps"]))}
    converged = sweep["cosine"][row[("centered", 120)]]
    assert np.all(converged >= 0.999)
    # A short, unconverged free phase spoils the one-sided estimate far more than the centered one.
    assert sweep["cosine"][row[("positive", 5)]][-1] < 0.9 < sweep["cosine"][row[("centered", 5)]][-1]
    assert sweep["free_residual"][row[("positive", 5)]] > 1e3 * sweep["free_residual"][row[("positive", 120)]]
    gdu = log.table("gdu")
    assert gdu["ep_per_step"].shape == gdu["bptt_per_step"].shape == (20, len(blocks) and gdu["ep_per_step"].shape[1])
    assert all(gdu["__attrs__"][f"rmse_{b}"] <= 0.05 for b in blocks)
    assert [r.label for r in log][0].startswith("reference")
    for name in ("cosine_vs_free_steps.png", "relative_error_vs_free_steps.png", "gdu.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_sweep_rejects_unknown_grid_keys_and_values(rng):
    net = HopfieldNetwork.layered([3, 4, 2], activation="logistic", seed=0)
    x = rng.uniform(size=(2, 3))
    y = np.eye(2)
    with pytest.raises(ValidationError, match="unknown keys"):
        sweep_ep_estimates(net, x, y, {"free_step": [5]}, reference=np.zeros(net.n_params))
    with pytest.raises(ValidationError, match="variant"):
        sweep_ep_estimates(net, x, y, {"variant": ["sideways"]}, reference=np.zeros(net.n_params))
    with pytest.raises(ValidationError, match="non-empty list"):
        sweep_ep_estimates(net, x, y, {"beta": []}, reference=np.zeros(net.n_params))


def test_scenario_refuses_to_overwrite(tmp_path):
    args = [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--free-steps", "5", "--variants", "centered",
            "--integrators", "euler", "--gdu-free-steps", "50", "--gdu-nudged-steps", "5"]
    assert subprocess.run(args, capture_output=True, text=True, timeout=600).returncode == 0
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "already exists" in proc.stderr


def test_sweep_runs_the_relaxation_schemes_beside_the_integrators(rng):
    net = HopfieldNetwork.layered([6, 10, 8, 3], activation="logistic", seed=1)
    x = rng.uniform(size=(4, 6))
    y = np.eye(3)[rng.integers(0, 3, 4)]
    table = sweep_ep_estimates(net, x, y, {"integrator": ["euler", "fixed_point", "block"], "free_steps": [3, 60],
                                           "variant": ["centered"], "nudged_steps": [20]})
    assert sorted(set(table["integrator"])) == ["block", "euler", "fixed_point"]
    assert len(table["integrator"]) == 6 and np.all(table["free_steps_taken"] == table["free_steps"])
    row = {(str(i), int(f)): k for k, (i, f) in enumerate(zip(table["integrator"], table["free_steps"]))}
    for scheme in ("fixed_point", "block"):
        assert table["cosine"][row[(scheme, 60)]][-1] >= 0.999
    # Three block sweeps settle further than three synchronous ones.
    assert table["free_residual"][row[("block", 3)]] < table["free_residual"][row[("fixed_point", 3)]]


def test_scenario_on_a_conv_net_sweeps_schemes_against_recurrent_backprop(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--conv", "4,6", "--image", "12",
                           "--sizes", "144-5", "--activation", "hard_sigmoid", "--batch", "3", "--free-steps", "2,60",
                           "--nudged-steps", "40", "--betas", "0.01", "--variants", "positive,centered",
                           "--integrators", "block", "--gdu-beta", "0.001", "--gdu-free-steps", "200",
                           "--gdu-nudged-steps", "10"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "GDU (fixed_point" in proc.stdout
    log = read_log(tmp_path / "gradients.h5")
    assert log.tables == ["gdu", "sweep"] and log.config["sizes"] == [144, 100, 6, 5]
    gdu = log.table("gdu")
    assert gdu["__attrs__"]["rmse_all"] < 0.01
    sweep = log.table("sweep")
    row = {(v, int(f)): i for i, (v, f) in enumerate(zip(sweep["variant"], sweep["free_steps"]))}
    assert np.all(sweep["cosine"][row[("centered", 60)]] >= 0.999)
    assert sweep["cosine"][row[("positive", 2)]][-1] < sweep["cosine"][row[("positive", 60)]][-1]
    assert (tmp_path / "cosine_vs_free_steps.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "gdu.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "bad"), "--conv", "4",
                          "--integrators", "euler"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--integrators: a conv network relaxes with" in bad.stderr
