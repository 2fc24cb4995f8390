"""Sweeps on a Dask LocalCluster: a failing point is reported, completed points are skipped on a re-run."""
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynsim.cli.scenarios import ScenarioError
from dynsim.cli.sweep import parse_grid
from dynsim.io.log import read_log


def dynsim(*args):
    return subprocess.run([sys.executable, "-m", "dynsim.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=900)


def test_grid_syntax():
    assert parse_grid(["beta=0.1,0.5", "seed=0..2"]) == {"beta": ["0.1", "0.5"], "seed": ["0", "1", "2"]}
    for bad, message in ((["beta"], "key=v1,v2"), (["seed=3..1"], "is empty"), (["beta=1,,2"], "empty value"),
                         (["beta=1", "beta=2"], "given twice"), ([], "grid is empty")):
        with pytest.raises(ScenarioError, match=message):
            parse_grid(bad)


def read_summary(folder):
    with open(folder / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_sweep_on_two_local_workers_with_a_failing_point_then_a_rerun(tmp_path):
    # batch=0 passes the parser's type check but the scenario refuses it when it runs: an injected failure.
    args = ("sweep", "settle_hopfield", "--grid", "beta=0.5,-0.5", "batch=3,0", "--workers", 2, "--out", tmp_path)
    first = dynsim(*args)
    assert first.returncode == 1, first.stderr  # a failed point makes the sweep's status non-zero
    assert "4 points: 2 completed (0 skipped as complete), 2 failed" in first.stdout
    assert "--batch must be >= 1" in first.stdout
    rows = read_summary(tmp_path)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok", "failed"]
    for row in rows:
        if row["status"] == "ok":
            # A negative nudge on outputs pinned at their bound may leave the nudged phase at rest: >= 0.
            assert float(row["free_steps"]) > 0 and float(row["nudged_steps"]) >= 0
            with read_log(tmp_path / "points" / row["point"] / "settle.h5") as log:
                assert log.config["beta"] == float(row["beta"])
        else:
            assert "batch" in row["error"]
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"
    with read_log(tmp_path / "summary.h5") as summary:
        assert list(summary.table("summary")["status"]) == ["ok", "failed", "ok", "failed"]

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "points").glob("*/settle.h5")}
    second = dynsim(*args)
    assert "4 points: 2 completed (2 skipped as complete), 2 failed" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "completed points must not run again"


def test_bad_sweeps_exit_with_a_message_and_write_nothing(tmp_path):
    for args, message in ((["--grid", "beta=abc"], "rejected by settle_hopfield's parameters"),
                          (["--grid", "betta=1"], "has no parameter 'betta'"),
                          (["--grid", "out=x"], "cannot set 'out'"),
                          (["--grid", "beta=1", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler")):
        proc = dynsim("sweep", "settle_hopfield", *args, "--out", tmp_path / "s")
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert not (tmp_path / "s" / "summary.csv").exists()


def test_a_point_is_read_from_its_log_not_from_another_hdf5_file(tmp_path):
    # A training point holds checkpoint.h5 (sorted first, not a log) beside log.h5.
    from dynsim.cli.sweep import _log_numbers
    from dynsim.io.log import TrajectoryLog
    from dynsim.training.checkpoint import Checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "checkpoint.h5", Checkpoint(epoch=1, theta=np.zeros(3), optimizer={},
                                                           rng_state={}))
    with TrajectoryLog(tmp_path / "log.h5", {"scenario": "x"}) as log:
        for epoch, error in enumerate([0.9, 0.4]):
            log.append_row("epochs", {"epoch": epoch, "test_error": error})
    numbers = _log_numbers(tmp_path)
    assert numbers["final_test_error"] == 0.4 and numbers["final_epoch"] == 1


def test_a_point_whose_worker_dies_is_reported_and_the_others_finish(tmp_path):
    import importlib

    import dask

    importlib.import_module("distributed")  # its defaults in dask's config first: set() would drop them on exit

    from dynsim.cli.sweep import run_sweep

    scenario = str(Path(__file__).with_name("dying_scenario.py"))
    grid = {"value": ["1", "2"], "die": ["0", "1"]}
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        table = run_sweep(scenario, grid, tmp_path, workers=1, metric="summary_double", quiet=True)
    status = dict(zip(table["point"], table["status"]))
    errors = dict(zip(table["point"], table["error"]))
    dead = [p for p in status if "die=1" in p]
    assert len(dead) == 2 and all(status[p] == "failed" for p in dead)
    assert all("the worker running this point died each time it was tried (2 tries" in errors[p] for p in dead)
    assert [table["summary_double"][i] for i, p in enumerate(table["point"]) if "die=0" in p] == [2.0, 4.0]
    with open(tmp_path / "summary.csv") as handle:
        assert len(list(csv.reader(handle))) == 5  # header and every point, the failed ones too
    assert (tmp_path / "summary.h5").exists() and (tmp_path / "summary.png").exists()


def test_a_bogus_metric_or_a_repeated_value_is_refused_before_anything_runs(tmp_path):
    from dynsim.cli.sweep import run_sweep

    scenario = str(Path(__file__).with_name("dying_scenario.py"))
    with pytest.raises(ScenarioError, match="metric must name a summary column"):
        run_sweep(scenario, {"value": ["1"]}, tmp_path, workers=1, metric="nonsense", quiet=True)
    with pytest.raises(ScenarioError, match=r"grid\['value'\] repeats 1: give each value once"):
        run_sweep(scenario, {"value": ["1", "2", "1"]}, tmp_path, workers=1, quiet=True)
    assert not any(tmp_path.iterdir())


def test_local_workers_share_the_cores_among_their_thread_pools():
    # Each worker's BLAS, OpenMP and Numba pools get cores // workers threads, not the whole machine each.
    import os

    from dynsim._threads import THREAD_VARIABLES
    from dynsim.cli.sweep import _cluster

    cores = len(os.sched_getaffinity(0))
    with _cluster(None, 2) as client:
        seen = client.run(lambda: [os.environ.get(name) for name in THREAD_VARIABLES])
    assert len(seen) == 2
    for values in seen.values():
        assert values == [str(max(1, cores // 2))] * len(THREAD_VARIABLES)
