"""The training scenario end to end, in a subprocess: its log, tables, relaxations and figures are checked.

XOR at the settings known to learn it (2-16-2 hard sigmoid, biases 0.1,
SGD lr 0.2, full batch, beta 0.5, projected Euler): EP-centered and CHL reach
100 % accuracy well within the epochs run here.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynsim.io.log import read_log

SCRIPT = Path(__file__).resolve().parents[1] / "scenarios" / "train_hopfield.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EPOCHS = 150
RULES = ("ep-centered", "chl", "rbp")
COLUMNS = {"epoch", "loss", "accuracy", "free_steps", "nudged_steps", "seconds"}


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def xor_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "xor"
    proc = run("--task", "xor", "--rules", ",".join(RULES), "--epochs", str(EPOCHS), "--settling", "ep-centered,chl",
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_summary_is_printed(xor_run):
    _, proc = xor_run
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.split()}
    for rule in RULES:
        assert rule in lines
    assert lines["ep-centered"][2] == lines["chl"][2] == "1.000"  # final accuracy
    assert lines["rbp"][3] == "never"  # the exact gradient vanishes at the pinned outputs


def test_history_tables(xor_run):
    out, _ = xor_run
    with read_log(out / "train.h5") as log:
        assert log.config["task"] == "xor" and log.config["rules"] == list(RULES)
        assert log.config["epochs"] == EPOCHS and log.config["integrator"] == "projected_euler"
        assert set(log.tables) == {f"history_{r}" for r in RULES} | {"summary"}
        for rule in RULES:
            table = log.table(f"history_{rule}")
            assert COLUMNS <= set(table)
            np.testing.assert_array_equal(table["epoch"], np.arange(EPOCHS + 1))
            assert table["free_steps"][0] == 0 and np.all(table["free_steps"][1:] > 0)
            assert np.all((table["accuracy"] >= 0) & (table["accuracy"] <= 1))
        for rule in ("ep-centered", "chl"):
            table = log.table(f"history_{rule}")
            assert table["accuracy"][-1] == 1.0
            assert table["loss"][-1] < 1e-3 < table["loss"][0]
            # The second phase moves the state at first; once the outputs sit on the targets it may not.
            assert table["nudged_steps"][1] > 0
        # rbp runs no second phase.
        np.testing.assert_array_equal(log.table("history_rbp")["nudged_steps"], 0.0)
        summary = log.table("summary")
        assert list(summary["rule"]) == list(RULES)
        # rbp ends with its outputs pinned together on every input: no decision, so no accuracy.
        assert summary["final_accuracy"].tolist() == [1.0, 1.0, 0.0]
        assert summary["first_epoch_100"][2] == -1 and 0 < summary["first_epoch_100"][0] <= EPOCHS


def test_relaxations_before_and_after(xor_run):
    out, _ = xor_run
    with read_log(out / "train.h5") as log:
        labels = [log.relaxation(k).label for k in range(len(log))]
        assert labels == [f"{r} {when}" for r in RULES for when in ("before", "after")]
        phases = {"ep-centered": ["free", "nudged-", "nudged+"], "chl": ["free", "clamped"], "rbp": ["free"]}
        for k, label in enumerate(labels):
            rel = log.relaxation(k)
            assert list(rel.phases) == phases[label.split()[0]]
            assert rel.x.shape == (4, 2) and rel.target.shape == (4, 2)
            assert rel.has_trajectory and rel["free"].attrs["status_name"] == "converged"
        # Trained: the free phase of the samples settles on the targets.
        for k in (labels.index("ep-centered after"), labels.index("chl after")):
            rel = log.relaxation(k)
            np.testing.assert_allclose(rel["free"].final_state[:, -2:], rel.target, atol=1e-3)
        # Same start for every rule: the free phases before training are identical.
        before = [log.relaxation(labels.index(f"{r} before"))["free"].final_state for r in RULES]
        for state in before[1:]:
            np.testing.assert_array_equal(state, before[0])


def test_figures(xor_run):
    out, _ = xor_run
    names = ["curves.png"] + [f"settling_{r}_{w}.png" for r in ("ep-centered", "chl") for w in ("before", "after")]
    for name in names:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 20_000, name
    assert not (out / "settling_rbp_before.png").exists()
    assert not (out / "decision.png").exists()  # XOR has only four points: no decision-region figure


def test_never_overwrites_a_log_unless_asked(xor_run):
    out, _ = xor_run
    before = (out / "train.h5").read_bytes()
    proc = run("--rules", "chl", "--epochs", "1", "--out", str(out))
    assert proc.returncode != 0 and "error:" in proc.stderr and "overwrite" in proc.stderr
    assert (out / "train.h5").read_bytes() == before


@pytest.mark.parametrize("args,match", [
    (["--rules", "ep-centered,hebb"], "unknown rule"),
    (["--epochs", "-1"], "--epochs must be an integer >= 0"),
    (["--lr", "0"], "--lr must be finite"),
    (["--settling", "chl", "--rules", "ep-centered"], "--settling names rules that are not trained"),
    (["--activation", "tanh"], "projected_euler' needs a box"),
])
def test_bad_options_leave_no_file(tmp_path, args, match):
    proc = run("--out", str(tmp_path / "bad"), *args)
    assert proc.returncode != 0
    assert match in proc.stderr, proc.stderr
    assert not (tmp_path / "bad").exists()
