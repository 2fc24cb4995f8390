"""End to end: ``scenarios/torch_ep.py`` run as a user runs it (a subprocess), on real MNIST, on the CPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from conftest import real_data_root  # noqa: E402

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "torch_ep.py"


def _run(*args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCENARIO), *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_trains_an_epoch_on_mnist_and_writes_results(tmp_path):
    root = real_data_root("mnist")
    if root is None:
        pytest.skip("the MNIST IDX files are not present")
    out = tmp_path / "run"
    done = _run("--preset", "mnist-mlp-lab", "--data-dir", str(root), "--train-size", "1000", "--eval-size", "500",
                "--epochs", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "mnist (1000 training, 500 test images)" in done.stdout
    results = json.loads((out / "results.json").read_text())
    rows = results["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2] and results["device"] == "cpu"
    # 40 Adam steps of centered EP take the test error well below chance (90 %) on these 500 images.
    assert rows[-1]["test_error"] < 0.6
    assert f"{100 * rows[-1]['test_error']:6.2f} %" in done.stdout


@pytest.mark.parametrize("args,message", [
    (["--rounds", "0"], "--rounds must be >= 1, got 0"),
    (["--time-batches", "-1"], "--time-batches must be >= 0"),
    (["--device", "tpu"], "device must be 'cpu', 'cuda'"),
    (["--authors-checkout", "no/such/folder"], "--authors-checkout 'no/such/folder' is not a folder"),
])
def test_bad_arguments_exit_2_with_one_line(args, message):
    done = _run("--preset", "mnist-mlp-lab", *args, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
