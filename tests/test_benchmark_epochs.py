"""The epoch benchmark runs in its tiniest mode and prints its tables; its PyTorch versions compute dynsim's algorithm."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynsim.datasets.idx import FILES


def mnist_dir():
    """The folder whose ``mnist`` subfolder holds the IDX files, or None (the scenarios need real MNIST)."""
    # $DYNSIM_DATA, the checkout's data/, then shared/data beside the checkout (as in CI).
    for root in (os.environ.get("DYNSIM_DATA"), Path(__file__).resolve().parents[1] / "data",
                 Path(__file__).resolve().parents[2] / "shared" / "data"):
        if root and all((Path(root) / "mnist" / f).exists() for f in FILES):
            return str(root)
    return None


def test_epoch_benchmark_tiny_run_prints_rows_and_finite_ratios(tmp_path):
    data = mnist_dir()
    if data is None:
        pytest.skip("MNIST IDX files not found (the scenarios train on real MNIST)")
    proc = subprocess.run(
        [sys.executable, "-m", "dynsim.benchmarks.training_epochs", "--train-size", "256", "--eval-size", "100", "--torch-threads", "1",
         "--rounds", "1", "--no-warm-up", "--matmul-size", "128", "--data-dir", data, "--settings", "pc-pcx",
         "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"matmul rate \(numpy, 128x128, median, same CPUs\): float64 [\d.]+ GFLOP/s, "
                     r"float32 [\d.]+ GFLOP/s", out)
    first_cpu = min(os.sched_getaffinity(0))
    assert f"every timed process pinned to CPUs [{first_cpu}] with OMP_NUM_THREADS" in out  # --cores 1 by default
    for key in ("pc-pcx",):  # one setting keeps the suite short; the EP scenarios run in test_scenario_mnist
        row = re.search(rf"^\| {key} \| dynsim \| ([\d.]+) \| ([\d.]+) \| [\d.]+ % \| [\d.]+ % \| \d+ \| "
                        rf"([\d.]+) \| ([\d.]+) \|", out, re.M)
        assert row, out
        assert float(row.group(1)) > 0 and float(row.group(2)) > 0
        assert 0.0 <= float(row.group(3)) <= 100.0  # the test error after the epoch, read from the scenario's log
        assert float(row.group(4)) > 0  # seconds per 10,000 evaluated images, from the log's eval_seconds
    try:
        import torch  # noqa: F401
    except ImportError:
        assert out.count("| pytorch | skipped: torch is not installed") == 1, out
        assert "ratios: none" in out
        return
    torch_row = re.search(r"^\| pc-pcx \| pytorch \| [\d.]+ \| [\d.]+ \| [\d.]+ % \| [\d.]+ % \| \d+ \| ([\d.]+) \| "
                          r"([\d.]+) \|", out, re.M)
    assert torch_row and 0.0 <= float(torch_row.group(1)) <= 100.0 and float(torch_row.group(2)) > 0, out
    ratios = re.findall(r"^\| (ep-laborieux|pc-pcx) \| pytorch[^|]*\| ([^|]+) \| ([^|]+) \|$", out, re.M)
    assert {r[0] for r in ratios} == {"pc-pcx"}, out
    for _, train_ratio, wall_ratio in ratios:
        assert math.isfinite(float(train_ratio)) and math.isfinite(float(wall_ratio))
    assert out.index("ratios") < out.index("epochs (medians")  # the ratios come first


def test_laborieux_setting_is_the_scenario_preset_and_its_pytorch_version_starts_alike():
    # The PyTorch version of 'ep-laborieux' must start where the scenario's preset starts: at Glorot's scale instead
    # of the preset's +-1/sqrt(fan-in), the first epoch ends at 60 % test error instead of 4 % (measured).
    import importlib.util

    from dynsim.benchmarks.torch_reference import scaled_fan_in
    from dynsim.benchmarks.training_epochs import SETTINGS
    from dynsim.networks.hopfield import HopfieldNetwork

    spec = importlib.util.spec_from_file_location("mnist_ep_presets", Path(__file__).resolve().parents[1]
                                                  / "scenarios" / "mnist_ep.py")
    scenario = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenario)
    setting = SETTINGS["ep-laborieux"]
    assert setting.args == ("--preset", "lab-mlp")
    preset = scenario.PRESETS["lab-mlp"]
    assert setting.init_gain == preset["init_gain"]
    assert (list(setting.sizes), setting.batch, setting.free_steps, setting.nudged_steps, setting.beta) == (
        [784, *preset["hidden"], 10], preset["batch_size"], preset["free_steps"], preset["nudged_steps"],
        preset["beta"])
    net = HopfieldNetwork.layered(list(setting.sizes), seed=0, init_gain=setting.init_gain)
    weights, biases = scaled_fan_in(list(setting.sizes), np.random.default_rng(0), setting.init_gain)
    for c, w in enumerate(weights):
        limit = setting.init_gain / math.sqrt(w.shape[0])
        # Both uniform on the same interval: the same bound, and spread over it alike.
        for m in (np.abs(net.weights(c)), np.abs(w)):
            assert m.max() <= limit and m.max() > 0.99 * limit and abs(m.mean() - limit / 2) < 0.02 * limit
    assert all(np.all(b == 0) for b in biases)
    assert all(np.all(net.biases(g) == 0) for g in range(1, len(setting.sizes)))


def test_every_contender_runs_on_the_same_pinned_cores():
    # JAX and PyTorch size their thread pools from the CPUs a process may use: the pin is what makes them equal.
    from dynsim.benchmarks.training_epochs import THREAD_VARIABLES, core_set, run_measured
    cores = core_set(1)
    code = "import os, json; print(json.dumps([sorted(os.sched_getaffinity(0)), [os.environ[k] for k in %r]]))" % (
        THREAD_VARIABLES,)
    status, out, err, _, _ = run_measured([sys.executable, "-c", code], 60, cores=cores)
    assert status == 0, err
    import json
    affinity, threads = json.loads(out.strip().splitlines()[-1])
    assert affinity == cores and threads == ["1"] * len(THREAD_VARIABLES)
    with pytest.raises(ValueError, match="cores must be between 1 and"):
        core_set(len(os.sched_getaffinity(0)) + 1)


@pytest.mark.parametrize("cores", ["0", "999"])
def test_epoch_benchmark_refuses_cores_it_does_not_have(cores):
    proc = subprocess.run([sys.executable, "-m", "dynsim.benchmarks.training_epochs", "--cores", cores],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--cores must be between 1 and" in proc.stderr, proc.stderr


def test_epoch_benchmark_refuses_laborieux_steps_without_their_checkout():
    proc = subprocess.run([sys.executable, "-m", "dynsim.benchmarks.training_epochs", "--laborieux-steps", "5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--laborieux-steps must be >= 1 and needs --laborieux" in proc.stderr


def test_epoch_benchmark_refuses_unknown_settings():
    proc = subprocess.run([sys.executable, "-m", "dynsim.benchmarks.training_epochs", "--settings", "ep-laborieux,zz"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--settings" in proc.stderr


def _views(net, flat):
    """(weights, biases) of ``net``'s layout read from the flat vector ``flat``."""
    saved = net.theta.copy()
    net.theta = flat
    try:
        n = len(net.group_sizes) - 1
        if hasattr(net, "connections"):
            weights = [net.weights(c).copy() for c in range(n)]
        else:
            weights = [net.weights(l).copy() for l in range(1, n + 1)]
        biases = [net.biases(g).copy() for g in range(1, n + 1)]
    finally:
        net.theta = saved
    return weights, biases


def _close(torch_values, dynsim_values, rtol=1e-9):
    """Every block within ``rtol`` times its largest entry (float64 on both sides: the same formulas)."""
    for t, d in zip(torch_values, dynsim_values):
        scale = max(float(np.max(np.abs(d))), 1e-300)
        assert np.max(np.abs(t.numpy() - d)) <= rtol * scale, (np.max(np.abs(t.numpy() - d)), scale)


def test_torch_centered_ep_matches_dynsim_gradient_and_adam_step():
    torch = pytest.importorskip("torch")
    from dynsim.benchmarks.torch_reference import TorchEP
    from dynsim.learning.rules import gradient_estimate
    from dynsim.networks.hopfield import HopfieldNetwork
    from dynsim.relax.phases import SettleOptions
    from dynsim.training.optimizers import Adam

    rng = np.random.default_rng(3)
    net = HopfieldNetwork.layered([784, 64, 10], activation="hard_sigmoid", seed=2)
    x = rng.random((12, 784))
    y = np.eye(10)[rng.integers(0, 10, 12)]
    free = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=30, stop_at_steady_state=False)
    nudged = SettleOptions(integrator="projected_euler", dt=0.5, max_steps=10, stop_at_steady_state=False)
    weights, biases = _views(net, net.theta)
    ref = TorchEP(weights, biases, batch=16, free_steps=30, nudged_steps=10, dt=0.5, beta=0.5, lr=1e-3,
                  dtype=torch.float64)
    xt, yt = torch.tensor(x), torch.tensor(y)
    ref.gradient(xt, yt)
    grad = gradient_estimate("ep-centered", net, x, y, 0.5, free, nudged).gradient
    gw, gb = _views(net, grad)
    _close([w.grad for w in ref.W], gw)
    _close([v.grad for v in ref.b], gb)
    # Adam's first step is lr * g / (|g| + eps): where the gradient is within rounding of zero, rounding decides
    # its sign, so the steps are compared where the gradient is clearly non-zero.
    before = [p.clone() for p in ref.W + ref.b]
    ref.optimizer.step()
    theta0 = net.theta.copy()
    Adam(net, 1e-3).step(net.theta, grad)
    dw, db = _views(net, net.theta - theta0)
    for p, p0, d, g in zip(ref.W + ref.b, before, dw + db, gw + gb):
        clear = np.abs(g) > 1e-9
        assert clear.mean() > 0.5
        assert np.allclose((p - p0).numpy()[clear], d[clear], rtol=1e-6, atol=1e-12)
    # The timed version (float32) differs by float32 rounding only.
    ref32 = TorchEP(weights, biases, batch=16, free_steps=30, nudged_steps=10, dt=0.5, beta=0.5, lr=1e-3)
    ref32.gradient(xt.float(), yt.float())
    _close([w.grad.double() for w in ref32.W], gw, rtol=1e-3)


def test_torch_strict_pc_matches_dynsim_gradient():
    torch = pytest.importorskip("torch")
    from dynsim.benchmarks.torch_reference import TorchPC
    from dynsim.learning.predictive_coding import pc_gradient
    from dynsim.networks.pc import PCNetwork
    from dynsim.relax.phases import SettleOptions

    rng = np.random.default_rng(4)
    net = PCNetwork([784, 32, 32, 32, 10], activation="gelu", seed=1, init="fan-in")
    x = rng.random((9, 784))
    y = np.eye(10)[rng.integers(0, 10, 9)]
    weights, biases = _views(net, net.theta)
    ref = TorchPC(weights, biases, batch=16, steps=5, dt=0.05, lr=3e-4, activation="gelu", dtype=torch.float64)
    ref.gradient(torch.tensor(x), torch.tensor(y))
    options = SettleOptions(integrator="euler", dt=0.05, max_steps=5, stop_at_steady_state=False)
    grad = pc_gradient(net, x, y, "strict", options=options).gradient
    gw, gb = _views(net, grad)
    _close([w.grad for w in ref.W], gw)
    _close([v.grad for v in ref.b], gb)
    # In float32 the first layer's error x_1 - mu_1 is a small difference of O(1) numbers after 5 small steps:
    # float32 cancellation leaves about 1e-2 of it, the upper layers agree to about 1e-5.
    ref32 = TorchPC(weights, biases, batch=16, steps=5, dt=0.05, lr=3e-4, activation="gelu")
    ref32.gradient(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    _close([w.grad.double() for w in ref32.W[1:]], gw[1:], rtol=1e-3)
    _close([ref32.W[0].grad.double()], gw[:1], rtol=5e-2)
