"""The kernel speed benchmark runs end to end in a tiny mode and prints every figure; its FLOP counts add up."""
import re
import subprocess
import sys

MODULE = "dynsim.benchmarks.kernels"


def load_script():
    from dynsim.benchmarks import kernels

    return kernels


def test_flop_counts_follow_the_written_formulas():
    bench = load_script()
    a = bench.config_flops(bench.CONFIGS["a"])
    assert a["projection"] == 2 * 20 * 784 * 500
    assert a["iterations"] == (20 + 4) * 2 * 2 * 20 * 500 * 10
    assert a["update"] == 2 * 20 * 784 * 500 + 2 * 2 * 20 * 500 * 10 + 2 * (784 * 500 + 500 * 10 + 510)
    b = bench.config_flops(bench.CONFIGS["b"])
    assert b["iterations"] == (30 + 2 * 10) * 2 * 2 * 50 * 512 * 10
    c = bench.config_flops(bench.CONFIGS["c"])
    upper = 2 * 128 * (128 * 128 * 2 + 128 * 10)
    assert c["iterations"] == 5 * 2 * upper
    assert c["projection"] == 2 * 128 * 784 * 128 + upper
    for flops in (a, b, c):
        assert flops["total"] == flops["projection"] + flops["iterations"] + flops["update"]


def test_benchmark_prints_every_figure_in_a_tiny_run():
    proc = subprocess.run(
        [sys.executable, "-m", MODULE, "--minibatches", "2", "--repeats", "1", "--no-torch", "--no-pcx",
         "--matmul-size", "128", "--examples", "256"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"matmul rate \(numpy float64, 128x128 GEMM, median\): [\d.]+ GFLOP/s", out), out
    for key in "abc":
        assert f"[{key}] " in out, out
    assert len(re.findall(r"FLOPs per minibatch: [\d.]+ M", out)) == 3
    assert len(re.findall(r"time per minibatch: [\d.e+]+ ms \(gradient estimate", out)) == 3
    assert len(re.findall(r"examples/s: \d+; time per epoch of 50,000 examples: [\d.]+ s", out)) == 3
    assert len(re.findall(r"efficiency: [\d.]+ %", out)) == 3
    assert len(re.findall(r"peak memory \(process max RSS so far\): \d+ MB", out)) == 3
    assert out.count("PyTorch: skipped (--no-torch)") == 3
    assert "pcx: skipped (--no-pcx)" in out


def test_benchmark_refuses_unknown_configurations():
    proc = subprocess.run([sys.executable, "-m", MODULE, "--configs", "a,z"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "--configs" in proc.stderr
