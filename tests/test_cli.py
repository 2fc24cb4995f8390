"""The dynsim command line, end to end in subprocesses; the files it writes are opened and checked."""
import subprocess
import sys
from pathlib import Path

import pytest

from dynsim.cli.scenarios import list_scenarios
from dynsim.io.log import read_log


def dynsim(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dynsim.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def settled(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = dynsim("--quiet", "run", "settle_hopfield", "--set", "integrator=rk4", "--set", "batch=3",
                  "--set", "beta=-0.5", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_list_names_every_scenario_with_a_description():
    proc = dynsim("list")
    assert proc.returncode == 0
    for name in ("settle_hopfield", "train_hopfield", "gradient_vs_iterations", "associative_memory",
                 "pc_vs_backprop"):
        line = next(l for l in proc.stdout.splitlines() if l.startswith(name))
        assert len(line.split(None, 1)[1]) > 20


def test_every_scenario_parameter_has_a_type_a_default_and_help():
    for scenario in list_scenarios():
        for p in scenario.parameters():
            assert p.help.strip(), (scenario.name, p.name)
            assert p.type, (scenario.name, p.name)


def test_run_applies_settings_and_writes_the_log(settled):
    with read_log(settled / "settle.h5") as log:
        assert log.config["integrator"] == "rk4" and log.config["batch"] == 3 and log.config["beta"] == -0.5
        assert log.relaxation(0)["nudged"].attrs["status_name"] == "converged"
    assert (settled / "settling.png").read_bytes()[:4] == b"\x89PNG"


def test_show_prints_configuration_relaxations_and_tables(settled):
    proc = dynsim("show", settled / "settle.h5")
    assert proc.returncode == 0, proc.stderr
    assert "integrator: rk4" in proc.stdout
    assert "free converged after" in proc.stdout and "nudged converged after" in proc.stdout
    assert "network: 16-24-12-4 (hard_sigmoid)" in proc.stdout


@pytest.mark.parametrize("kind", ["settling", "energy"])
def test_plot_writes_a_png(settled, kind, tmp_path):
    out = tmp_path / f"{kind}.png"
    proc = dynsim("plot", settled / "settle.h5", "--kind", kind, "--out", out)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_plot_of_a_kind_the_log_does_not_hold_is_a_clear_error(settled, tmp_path):
    proc = dynsim("plot", settled / "settle.h5", "--kind", "training", "--out", tmp_path / "t.png")
    assert proc.returncode == 2 and "no training history" in proc.stderr
    assert not (tmp_path / "t.png").exists()


def test_run_by_path_and_the_installed_entry_point(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scenarios" / "settle_hopfield.py"
    entry = Path(sys.executable).with_name("dynsim")
    command = [str(entry)] if entry.exists() else [sys.executable, "-m", "dynsim.cli.main"]
    proc = subprocess.run(command + ["run", str(script), "--set", "batch=2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "settle.h5").exists()


@pytest.mark.parametrize("args,message", [
    (["run", "no_such_scenario"], "unknown scenario 'no_such_scenario'; the scenarios are: "),
    (["run", "settle_hopfield", "--set", "betta=1"], "has no parameter 'betta'; its parameters are: "),
    (["run", "settle_hopfield", "--set", "beta"], "must look like key=value"),
    (["run", "settle_hopfield", "--set", "overwrite=maybe"], "is a switch"),
    (["run", "settle_hopfield", "--set", "integrator=leapfrog"], "invalid choice: 'leapfrog'"),
    (["show", "missing.h5"], "no such log file"),
])
def test_bad_input_exits_non_zero_with_a_message_and_writes_nothing(tmp_path, args, message):
    proc = dynsim(*args, "--out", tmp_path / "out") if args[0] == "run" else dynsim(*args, cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "out").exists()


def test_show_refuses_a_file_that_is_not_a_log(tmp_path):
    (tmp_path / "notes.h5").write_text("not hdf5")
    proc = dynsim("show", tmp_path / "notes.h5")
    assert proc.returncode == 2 and "not an HDF5 file" in proc.stderr


@pytest.mark.parametrize("scenario,settings,kind,log_name", [
    ("gradient_vs_iterations", ["free_steps=5,40", "variants=centered", "integrators=euler", "gdu_free_steps=100",
                                "gdu_nudged_steps=5"], "gradients", "gradients.h5"),
    ("train_hopfield", ["epochs=5", "rules=chl,ep-positive"], "training", "train.h5"),
])
def test_plot_gradients_and_training_from_scenario_logs(tmp_path, scenario, settings, kind, log_name):
    run = dynsim("--quiet", "run", scenario, *[a for s in settings for a in ("--set", s)], "--out", tmp_path)
    assert run.returncode == 0, run.stderr
    out = tmp_path / f"{kind}.png"
    proc = dynsim("plot", tmp_path / log_name, "--kind", kind, "--out", out)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.fixture(scope="module")
def training_log(tmp_path_factory):
    # A dataset-style training run (fit, epochs table, checkpoint) as the MNIST scenarios write it.
    out = tmp_path_factory.mktemp("training")
    script = Path(__file__).with_name("train_for_kill.py")
    proc = subprocess.run([sys.executable, str(script), str(out), "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out / "log.h5"


def test_show_prints_the_tables_of_a_training_log(training_log):
    proc = dynsim("show", training_log, "--tables")
    assert proc.returncode == 0, proc.stderr
    assert "epochs: 3 rows" in proc.stdout
    line = next(l for l in proc.stdout.splitlines() if l.strip().startswith("epoch:"))
    assert line.strip() == "epoch: [0, 1, 2]"
    assert "train_error: [nan, " in proc.stdout  # no training-split evaluation before training


def test_plot_training_draws_the_epochs_table_and_never_overwrites(training_log, tmp_path):
    out = tmp_path / "training.png"
    proc = dynsim("plot", training_log, "--kind", "training", "--out", out)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    again = dynsim("plot", training_log, "--kind", "training", "--out", out)
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stderr
    assert out.read_bytes() == data
    assert dynsim("plot", training_log, "--kind", "training", "--out", out, "--overwrite").returncode == 0


@pytest.mark.parametrize("args,message", [
    (["run", "settle_hopfield", "--set", "batch=0"], "--batch must be >= 1"),
    (["run", "train_hopfield", "--set", "epochs=-1"], "error: "),
])
def test_bad_values_exit_with_status_2_and_one_line(tmp_path, args, message):
    proc = dynsim(*args, "--out", tmp_path / "out")
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_plot_training_refuses_per_epoch_tables_without_errors_in_one_line(tmp_path):
    from dynsim.io.log import TrajectoryLog

    path = tmp_path / "log.h5"
    with TrajectoryLog(path, {"scenario": "custom"}) as log:
        log.record_table("epochs_custom", {"epoch": [0, 1], "loss": [1.0, 0.5]})
    proc = dynsim("plot", path, "--kind", "training", "--out", tmp_path / "t.png")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot draw its per-epoch tables ['epochs_custom']" in proc.stderr
    assert "must hold 'epoch' and '<split>_error' columns" in proc.stderr
    assert not (tmp_path / "t.png").exists()
