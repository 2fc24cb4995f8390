"""The PC-against-backprop scenario end to end, and the sweep it uses."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynsim.experiments.estimator_sweep import sweep_pc_updates
from dynsim.io.log import read_log
from dynsim.networks.pc import PCNetwork
from dynsim.validation import ValidationError

SCRIPT = Path(__file__).resolve().parents[1] / "scenarios" / "pc_vs_backprop.py"


def test_scenario_measures_the_distance_to_backprop(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--sizes", "6-8-8-8-4",
                           "--batch", "4", "--steps", "2,600", "--output-variances", "1,100,1000",
                           "--euler-steps", "0.1,5"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    log = read_log(tmp_path / "pc.h5")
    assert set(log.tables) == {"iterations", "zil", "output_variance", "stability", "adaptive", "error_settling"}
    it = log.table("iterations")
    rel = {(v, float(o), int(s)): e[-1] for v, o, s, e in
           zip(it["variant"], it["output_variance"], it["inference_steps"], it["relative_error"])}
    assert rel[("fixed_prediction", 1.0, 600)] <= 1e-6 < rel[("fixed_prediction", 1.0, 2)]
    assert rel[("strict", 1.0, 600)] > 0.3 and rel[("strict", 100.0, 600)] < rel[("strict", 1.0, 600)]
    assert log.table("zil")["relative_error"][0][-1] <= 1e-6
    ov = log.table("output_variance")["relative_error"][:, -1]
    assert ov[0] > ov[1] > ov[2] and 5 < ov[1] / ov[2] < 20  # ~1/sigma_L^2
    st = log.table("stability")
    assert list(st["status"]) == ["converged", "diverged"] and np.isnan(st["relative_error"][1]).all()
    assert log.table("adaptive")["status"][0] == "converged"
    assert log.relaxation(0)["inference"].attrs["status_name"] == "converged"
    for name in ("relative_error_vs_steps.png", "relative_error_vs_output_variance.png", "relative_error_vs_dt.png",
                 "error_settling.png", "energy.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_sweep_rejects_bad_grids(rng):
    net = PCNetwork([3, 4, 2], seed=0)
    x, y = rng.uniform(size=(2, 3)), np.eye(2)
    with pytest.raises(ValidationError, match="unknown keys"):
        sweep_pc_updates(net, x, y, {"steps": [1]})
    with pytest.raises(ValidationError, match="variant"):
        sweep_pc_updates(net, x, y, {"variant": ["loose"]})
    with pytest.raises(ValidationError, match="PCNetwork"):
        sweep_pc_updates(object(), x, y, {})


def test_scenario_refuses_bad_options(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "a"), "--steps", "0"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "must be positive" in proc.stderr and not (tmp_path / "a").exists()
