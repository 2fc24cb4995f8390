"""The predictive coding training scenario end to end, in a subprocess: log, tables, relaxations, figures.

Moons (100 points, inputs in [-1, 1]) on a 2-16-16-2 tanh network, Adam
lr 0.02, minibatch 20, 15 epochs. 'pc-fixed-prediction' and 'pc-zil' update
with backprop's exact gradient, so their histories equal 'bp''s to rounding;
'pc-strict' (output variance 1000, 100 Euler inference steps) comes close.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynsim.io.log import read_log

SCRIPT = Path(__file__).resolve().parents[1] / "scenarios" / "train_pc.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EPOCHS = 15
RULES = ("pc-strict", "pc-fixed-prediction", "pc-zil", "bp")
SETTINGS = ("--task", "moons", "--n-samples", "100", "--sizes", "2-16-16-2", "--epochs", str(EPOCHS),
            "--lr", "0.02", "--batch-size", "20", "--inference-steps", "100", "--output-variance", "1000")


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_pc") / "moons"
    proc = run(*SETTINGS, "--rules", ",".join(RULES), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_summary_is_printed(moons_run):
    _, proc = moons_run
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()}
    for rule in RULES:
        assert rule in lines
        loss, acc, test_acc, rel, cos = (float(v) for v in lines[rule][1:6])
        assert acc >= 0.8 and test_acc >= 0.8
    assert float(lines["bp"][4]) == 0.0 and float(lines["bp"][5]) == pytest.approx(1.0)
    # Relative error of the last update against backprop: Z-IL is exact after L - 1 steps; fixed prediction is
    # exact at the equilibrium, which 100 Euler steps of 0.1 approach to ~1e-4.
    assert float(lines["pc-zil"][4]) < 1e-10
    assert float(lines["pc-fixed-prediction"][4]) < 1e-3


def test_history_tables(moons_run):
    out, _ = moons_run
    with read_log(out / "train_pc.h5") as log:
        assert log.config["task"] == "moons" and log.config["rules"] == list(RULES)
        assert log.config["inputs"] == "symmetric" and log.config["output_variance"] == 1000
        assert {f"history_{r}" for r in RULES} | {"summary"} <= set(log.tables)
        histories = {r: log.table(f"history_{r}") for r in RULES}
        for rule, table in histories.items():
            np.testing.assert_array_equal(table["epoch"], np.arange(EPOCHS + 1))
            assert table["loss"][-1] < table["loss"][0]
        # Same initial parameters: epoch 0 is the same network for every rule.
        assert len({float(t["loss"][0]) for t in histories.values()}) == 1
        for rule in ("pc-fixed-prediction", "pc-zil"):
            np.testing.assert_allclose(histories[rule]["loss"], histories["bp"]["loss"], rtol=1e-6, atol=1e-9)
            np.testing.assert_array_equal(histories[rule]["accuracy"], histories["bp"]["accuracy"])
        # Only the inference rules settle a clamped phase.
        assert np.all(histories["pc-strict"]["nudged_steps"][1:] == 100)
        np.testing.assert_array_equal(histories["bp"]["nudged_steps"], 0.0)
        # pc-strict with a large output variance follows backprop closely on this short run.
        assert abs(histories["pc-strict"]["accuracy"][-1] - histories["bp"]["accuracy"][-1]) <= 0.05
        summary = log.table("summary")
        assert list(summary["rule"]) == list(RULES)
        assert np.all(summary["test_accuracy"] >= 0.8)
        assert summary["update_cosine"][0] > 0.99


def test_inference_relaxations(moons_run):
    out, _ = moons_run
    with read_log(out / "train_pc.h5") as log:
        assert [log.relaxation(k).label for k in range(len(log))] == [f"{r} after" for r in RULES]
        strict = log.relaxation(0)
        assert list(strict.phases) == ["inference"] and strict.has_trajectory
        errors = log.table("errors_pc-strict")
        # The hidden errors start at zero (feedforward start) and grow to their equilibrium values.
        assert errors["error_layer_1"][0] == 0.0 and errors["error_layer_1"][-1] > 0.0
        assert len(errors["t"]) == 101
        zil = log.table("errors_pc-zil")
        assert len(zil["t"]) == 3  # steps 0..L-1 of a 3-layer network (W_l is read at step L - l)


def test_figures(moons_run):
    out, _ = moons_run
    for name in ("curves.png", "decision.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 20_000


def test_refuses_to_overwrite(moons_run):
    out, _ = moons_run
    before = (out / "train_pc.h5").stat().st_mtime_ns
    proc = run(*SETTINGS, "--epochs", "1", "--out", str(out))
    assert proc.returncode != 0 and "already exists" in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "train_pc.h5").stat().st_mtime_ns == before


@pytest.mark.parametrize("option, message", [(("--sizes", "3-8-2"), "does not fit the task"),
                                             (("--lr", "-1"), "--lr"),
                                             (("--rules", "pc-strict,ep-centered"), "unknown rule")])
def test_bad_options_write_nothing(tmp_path, option, message):
    out = tmp_path / "bad"
    proc = run(*option, "--epochs", "1", "--out", str(out))
    assert proc.returncode != 0 and message in proc.stderr
    assert not out.exists()
