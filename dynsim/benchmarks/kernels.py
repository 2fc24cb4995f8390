"""Benchmark of the kernels: minibatch gradient estimate + optimizer step of EP and PC, against the machine and PyTorch.

What is measured
----------------
Three configurations run a fixed number of minibatches through the path
:func:`dynsim.training.loop` takes (:func:`dynsim.learning.rules.gradient_estimate`
then the optimizer step):

(a) Scellier & Bengio (2017): Hopfield 784-500-10, hard sigmoid, 20 free and
    4 nudged projected-Euler iterations of step 0.5, beta = 1 with a random
    sign (rule ``ep-random``), minibatch 20, persistent particles, SGD with
    learning rates 0.1 / 0.05;
(b) centered EP (Laborieux et al. 2021): Hopfield 784-512-10, 30 free and 10
    nudged iterations in each of the two nudged phases, minibatch 50;
(c) predictive coding 784-128-128-128-10 (tanh), 5 Euler inference steps of
    0.1 with the output clamped (rule ``pc-strict``), minibatch 128.

For each it prints the floating-point operations a minibatch needs (matrix
products and the weight update; the formulas are in :func:`ep_flops` and
:func:`pc_flops`), the median time per minibatch over ``--repeats`` repeats
(split into the gradient estimate and the optimizer step), examples per
second, the time of an epoch of 50,000 examples, and the efficiency

    efficiency = (FLOPs / matrix-product rate) / measured time,

where the matrix-product rate is numpy's float64 GEMM rate measured at the
start of the same run (so a slower or busier machine lowers both). The peak
resident memory of the process is printed after each configuration.

When ``import torch`` works, the same algorithm written the way research code
usually is (autograd of the energy at every relaxation step, as in the code
of Ernoult et al. and Laborieux et al.; autograd of the PC energy for the
inference steps and the weight gradients) is timed on the CPU, and the ratio
printed. For (c), pcx (a JAX library, PyPI ``pcx``) is timed on the same
network and step count when it can be imported here, or in the interpreter
given by ``--pcx-python`` (pcx pins its own JAX: install it in a separate
environment). A pcx step that leaves the weights unchanged (wiring that does
not match the installed pcx version: XLA then drops most of the work) is
reported as not timed instead of giving a meaningless figure.

The data are random inputs in [0, 1] with random labels, MNIST's shape, so
nothing is downloaded; ``--data-dir`` uses real MNIST images instead (the
speed does not depend on the pixel values, except through how many hard
sigmoid units saturate).

This is a measurement, not a test: nothing is asserted. It times kernels on
random data; what a user waits for (whole epochs through the scenarios,
with evaluation, logging and checkpoints) is timed by
:mod:`dynsim.benchmarks.training_epochs`.

Command lines::

    python -m dynsim.benchmarks.kernels
    python -m dynsim.benchmarks.kernels --configs a,b --minibatches 100 --repeats 7
    python -m dynsim.benchmarks.kernels --data-dir data            # real MNIST (files already there)
    python -m venv .venv-pcx && .venv-pcx/bin/pip install pcx==0.6.3
    python -m dynsim.benchmarks.kernels --configs c --pcx-python .venv-pcx/bin/python
    python -m dynsim.benchmarks.kernels --minibatches 2 --repeats 1 --no-torch --no-pcx   # smoke run

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput.
       Neurosci. 11:24 (2017).
.. [2] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets
       by Drastically Reducing its Gradient Estimator Bias", Front. Neurosci.
       (2021).
.. [3] J. C. R. Whittington, R. Bogacz, Neural Computation 29(5) (2017).
.. [4] L. Pinchetti et al., "Benchmarking Predictive Coding Networks -- Made
       Simple", ICLR (2025) (pcx).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dynsim.benchmarks import pcx_runner
from dynsim.benchmarks.flops import ep_flops, matmul_rate, pc_flops, peak_memory_mb  # noqa: F401 (public here too)

EPOCH_EXAMPLES = 50_000


class Config(NamedTuple):
    """One benchmarked configuration."""

    key: str
    title: str
    model: str  # 'ep' or 'pc'
    sizes: tuple
    activation: str
    rule: str
    batch: int
    free_steps: int
    nudged_steps: int  # EP: per nudged phase; PC: unused
    dt: float
    beta: float
    lr: tuple
    persistent: bool

    @property
    def nudged_phases(self):
        return 2 if self.rule == "ep-centered" else 1


CONFIGS = {
    "a": Config("a", "EP 784-500-10 (Scellier & Bengio), ep-random", "ep", (784, 500, 10), "hard_sigmoid",
                "ep-random", 20, 20, 4, 0.5, 1.0, (0.1, 0.05), True),
    "b": Config("b", "centered EP 784-512-10", "ep", (784, 512, 10), "hard_sigmoid",
                "ep-centered", 50, 30, 10, 0.5, 0.5, (0.1, 0.05), False),
    "c": Config("c", "PC 784-128-128-128-10 (tanh), pc-strict", "pc", (784, 128, 128, 128, 10), "tanh",
                "pc-strict", 128, 5, 0, 0.1, 0.0, (0.01,), False),
}


# ----------------------------------------------------------------------------- FLOP counts
def config_flops(cfg):
    if cfg.model == "ep":
        return ep_flops(cfg.sizes, cfg.batch, cfg.free_steps, cfg.nudged_steps, cfg.nudged_phases)
    return pc_flops(cfg.sizes, cfg.batch, cfg.free_steps)


# ----------------------------------------------------------------------------- data
def make_data(n, n_input, n_classes, data_dir, seed):
    """Inputs (n, 784) in [0, 1] and one-hot targets: random, or the first n MNIST training images."""
    if data_dir is not None:
        from dynsim.datasets.idx import load

        train = load("mnist", data_dir=data_dir, download=False, validation_size=0).train
        return train.x[:n], train.targets[:n]
    rng = np.random.default_rng(seed)
    x = rng.random((n, n_input))
    targets = np.eye(n_classes)[rng.integers(0, n_classes, n)]
    return x, targets


# ----------------------------------------------------------------------------- dynsim
def build_dynsim(cfg, seed):
    """Network, optimizer and settle options of ``cfg``."""
    from dynsim.networks.hopfield import HopfieldNetwork
    from dynsim.networks.pc import PCNetwork
    from dynsim.relax.phases import SettleOptions
    from dynsim.training.optimizers import SGD

    if cfg.model == "ep":
        net = HopfieldNetwork.layered(list(cfg.sizes), activation=cfg.activation, seed=seed)
        method = "projected_euler"
    else:
        net = PCNetwork(list(cfg.sizes), activation=cfg.activation, seed=seed)
        method = "euler"
    lr = list(cfg.lr) if len(cfg.lr) > 1 else cfg.lr[0]
    opt = SGD(net, lr)
    free = SettleOptions(integrator=method, dt=cfg.dt, max_steps=cfg.free_steps, stop_at_steady_state=False)
    nudged = None
    if cfg.model == "ep":
        nudged = SettleOptions(integrator=method, dt=cfg.dt, max_steps=cfg.nudged_steps, stop_at_steady_state=False)
    return net, opt, free, nudged


def time_dynsim(cfg, x, targets, minibatches, repeats, seed):
    """Median seconds per minibatch (total, gradient estimate, optimizer step) over ``repeats`` runs."""
    from dynsim.learning.rules import gradient_estimate
    from dynsim.training.loop import ParticleStore

    net, opt, free_opts, nudged_opts = build_dynsim(cfg, seed)
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    particles = ParticleStore(n, net.n_free) if cfg.persistent else None

    def run(count, start):
        t_est = t_opt = 0.0
        for k in range(count):
            lo = ((start + k) * cfg.batch) % (n - cfg.batch + 1)
            idx = np.arange(lo, lo + cfg.batch)
            s0 = particles.get(idx) if particles is not None else None
            t0 = time.perf_counter()
            est = gradient_estimate(cfg.rule, net, x[idx], targets[idx], cfg.beta, free_opts,
                                    nudged_opts, s0=s0, rng=rng)
            grad, free = est.gradient, est.free
            t1 = time.perf_counter()
            opt.step(net.theta, grad)
            t2 = time.perf_counter()
            if particles is not None:
                particles.put(idx, free.state)
            t_est += t1 - t0
            t_opt += t2 - t1
        return t_est / count, t_opt / count

    run(2, 0)  # warm-up: compiled kernels loaded, caches touched
    est, upd = [], []
    for r in range(repeats):
        e, o = run(minibatches, 2 + r * minibatches)
        est.append(e)
        upd.append(o)
    total = [e + o for e, o in zip(est, upd)]
    return float(np.median(total)), float(np.median(est)), float(np.median(upd))


# ----------------------------------------------------------------------------- PyTorch
def _torch_ep(cfg, torch, dtype):
    """EP minibatch written the usual research way: autograd of the energy at every step."""
    sizes = cfg.sizes
    g = torch.Generator().manual_seed(0)
    Ws = [((torch.rand(a, b, generator=g, dtype=dtype) * 2 - 1) * (6.0 / (a + b)) ** 0.5).requires_grad_()
          for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [torch.zeros(n, dtype=dtype, requires_grad=True) for n in sizes[1:]]
    lrs = list(cfg.lr)

    def rho(s):
        return s.clamp(0.0, 1.0)

    def phi(x, layers):
        # -E summed over the batch (Laborieux et al.'s Phi): the input term is recomputed at every call.
        units = [x] + layers
        total = 0.0
        for k, W in enumerate(Ws):
            total = total + (rho(units[k]) @ W * rho(units[k + 1])).sum()
        for k, b in enumerate(bs):
            total = total + (rho(layers[k]) @ b).sum() - 0.5 * (layers[k] ** 2).sum()
        return total

    def relax(x, y, layers, steps, beta):
        for _ in range(steps):
            layers = [s.detach().requires_grad_() for s in layers]
            p = phi(x, layers)
            if beta != 0.0:
                p = p - beta * 0.5 * ((layers[-1] - y) ** 2).sum()
            grads = torch.autograd.grad(p, layers)
            with torch.no_grad():
                layers = [(s + cfg.dt * gr).clamp(0.0, 1.0) for s, gr in zip(layers, grads)]
        return [s.detach() for s in layers]

    def minibatch(x, y, s0, sign):
        free = relax(x, y, s0, cfg.free_steps, 0.0)
        if cfg.rule == "ep-centered":
            lo = relax(x, y, free, cfg.nudged_steps, -cfg.beta)
            hi = relax(x, y, free, cfg.nudged_steps, cfg.beta)
            span = 2 * cfg.beta
        else:
            lo, hi, span = free, relax(x, y, free, cfg.nudged_steps, sign * cfg.beta), sign * cfg.beta
        delta = (phi(x, hi) - phi(x, lo)) / (span * x.shape[0])
        for p in Ws + bs:
            p.grad = None
        delta.backward()
        with torch.no_grad():
            for k, (W, b) in enumerate(zip(Ws, bs)):
                W += lrs[k] * W.grad  # ascent of Phi = descent of E
                b += lrs[k] * b.grad
        return free

    return minibatch


def _torch_pc(cfg, torch, dtype):
    """PC minibatch: autograd of the PC energy for the inference steps and for the weight gradients."""
    sizes = cfg.sizes
    g = torch.Generator().manual_seed(0)
    Ws = [((torch.rand(a, b, generator=g, dtype=dtype) * 2 - 1) * (6.0 / (a + b)) ** 0.5).requires_grad_()
          for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [torch.zeros(n, dtype=dtype, requires_grad=True) for n in sizes[1:]]

    def energy(x, hidden, y):
        units = [x] + hidden + [y]
        total = 0.0
        for k, (W, b) in enumerate(zip(Ws, bs)):
            mu = torch.tanh(units[k]) @ W + b
            total = total + 0.5 * ((units[k + 1] - mu) ** 2).sum()
        return total

    def minibatch(x, y, s0, sign):
        with torch.no_grad():
            hidden, a = [], x
            for W, b in zip(Ws[:-1], bs[:-1]):
                a = torch.tanh(a) @ W + b
                hidden.append(a)
        for _ in range(cfg.free_steps):
            hidden = [h.detach().requires_grad_() for h in hidden]
            grads = torch.autograd.grad(energy(x, hidden, y), hidden)
            with torch.no_grad():
                hidden = [h - cfg.dt * gr for h, gr in zip(hidden, grads)]
        hidden = [h.detach() for h in hidden]
        for p in Ws + bs:
            p.grad = None
        (energy(x, hidden, y) / x.shape[0]).backward()
        with torch.no_grad():
            for p in Ws + bs:
                p -= cfg.lr[0] * p.grad
        return None

    return minibatch


def time_torch(cfg, x, targets, minibatches, repeats, dtype_name):
    """Median seconds per minibatch of the PyTorch version, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    dtype = getattr(torch, dtype_name)
    fn = _torch_ep(cfg, torch, dtype) if cfg.model == "ep" else _torch_pc(cfg, torch, dtype)
    xt = torch.as_tensor(x, dtype=dtype)
    yt = torch.as_tensor(targets, dtype=dtype)
    n = x.shape[0]
    particles = torch.zeros((n, sum(cfg.sizes[1:])), dtype=dtype)
    rng = np.random.default_rng(0)

    def run(count, start):
        t = time.perf_counter()
        for k in range(count):
            lo = ((start + k) * cfg.batch) % (n - cfg.batch + 1)
            sl = slice(lo, lo + cfg.batch)
            s0 = list(torch.split(particles[sl] if cfg.persistent else torch.zeros_like(particles[sl]),
                                  list(cfg.sizes[1:]), dim=1))
            sign = 1.0 if rng.random() < 0.5 else -1.0
            free = fn(xt[sl], yt[sl], s0, sign)
            if cfg.persistent and free is not None:
                particles[sl] = torch.cat(free, dim=1)
        return (time.perf_counter() - t) / count

    run(2, 0)
    return float(np.median([run(minibatches, 2 + r * minibatches) for r in range(repeats)])), torch


# ----------------------------------------------------------------------------- pcx
def time_pcx(cfg, minibatches, repeats, pcx_python):
    """(seconds per minibatch, description) of pcx, or (None, why not).

    pcx runs in this process when it imports here, else in the interpreter
    ``pcx_python`` (a separate environment: pcx pins its own JAX), which
    runs :mod:`dynsim.benchmarks.pcx_runner` by its path.
    """
    kwargs = dict(sizes=list(cfg.sizes), batch=cfg.batch, steps=cfg.free_steps, dt=cfg.dt, lr=cfg.lr[0],
                  minibatches=minibatches, repeats=repeats, activation=cfg.activation)
    if pcx_python is None:
        try:
            import pcx  # noqa: F401
        except ImportError:
            return None, ("not installed; pcx pins its own JAX, so put it in a separate environment: "
                          "python -m venv .venv-pcx && .venv-pcx/bin/pip install pcx==0.6.3, then pass "
                          "--pcx-python .venv-pcx/bin/python")
        try:
            result = pcx_runner.time_minibatches(**kwargs)
        except RuntimeError as exc:
            return None, f"not timed: {exc}"
        return result["seconds"], f"JAX {result['jax']}, float32, in this process"
    proc = subprocess.run([pcx_python, str(Path(pcx_runner.__file__).resolve()), "minibatches", json.dumps(kwargs)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"not timed in {pcx_python}: {tail[0]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["seconds"], f"JAX {result['jax']}, float32, {pcx_python}"


# ----------------------------------------------------------------------------- report
def _ms(seconds):
    return f"{seconds * 1e3:.3g} ms"


def build_parser():
    """The command line: every option with its type, default and help."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="a,b,c",
                   help="comma-separated configurations to run: a (EP 784-500-10), b (centered EP 784-512-10), "
                        "c (PC 784-128-128-128-10); default all")
    p.add_argument("--minibatches", type=int, default=50, help="minibatches timed per repeat (default 50)")
    p.add_argument("--repeats", type=int, default=5, help="repeats; the median is reported (default 5)")
    p.add_argument("--examples", type=int, default=2000,
                   help="examples the minibatches cycle through (random data, or the first MNIST images)")
    p.add_argument("--data-dir", default=None,
                   help="folder holding MNIST (its 'mnist' subfolder, see dynsim.datasets.idx.load); default: "
                        "random data of MNIST's shape, nothing downloaded")
    p.add_argument("--matmul-size", type=int, default=2048,
                   help="n of the n x n float64 matrix product that measures the machine's rate (default 2048)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--torch-dtype", default="float32", choices=["float32", "float64"],
                   help="dtype of the PyTorch versions (default float32, what research code uses; dynsim "
                        "computes in float64)")
    p.add_argument("--no-pcx", action="store_true", help="skip the pcx comparison")
    p.add_argument("--pcx-python", default=None,
                   help="python interpreter of a separate environment with pcx installed (default: try "
                        "'import pcx' here)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the initial weights")
    return p


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    keys = [k.strip() for k in args.configs.split(",") if k.strip()]
    bad = [k for k in keys if k not in CONFIGS]
    if bad or not keys:
        p.error(f"--configs: unknown {bad}; choose among {sorted(CONFIGS)}")
    args.configs = keys
    for name in ("minibatches", "repeats", "matmul_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    need = max(CONFIGS[k].batch for k in keys)
    if args.examples < need:
        p.error(f"--examples must be >= {need} (the largest minibatch)")
    return args


def main(argv=None):
    args = parse_args(argv)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"machine: {os.cpu_count()} CPUs, OPENBLAS_NUM_THREADS={threads}, numpy {np.__version__}")
    rate = matmul_rate(args.matmul_size, max(3, args.repeats))
    print(f"matmul rate (numpy float64, {args.matmul_size}x{args.matmul_size} GEMM, median): {rate:.1f} GFLOP/s")
    x, targets = make_data(args.examples, 784, 10, args.data_dir, args.seed)
    print(f"data: {'MNIST from ' + str(args.data_dir) if args.data_dir else 'random, MNIST shape'}, "
          f"{x.shape[0]} examples; {args.repeats} repeats x {args.minibatches} minibatches, medians")
    for key in args.configs:
        cfg = CONFIGS[key]
        flops = config_flops(cfg)
        steps = (f"{cfg.free_steps} free / {cfg.nudged_steps} nudged x {cfg.nudged_phases} iterations, "
                 f"projected Euler dt {cfg.dt}" if cfg.model == "ep" else
                 f"{cfg.free_steps} Euler inference steps dt {cfg.dt}")
        print(f"[{key}] {cfg.title}: batch {cfg.batch}, {steps}"
              f"{', persistent particles' if cfg.persistent else ''}")
        print(f"    FLOPs per minibatch: {flops['total'] / 1e6:.1f} M (input projection {flops['projection'] / 1e6:.1f} M, "
              f"iterations {flops['iterations'] / 1e6:.1f} M, weight update {flops['update'] / 1e6:.1f} M)")
        total, est, upd = time_dynsim(cfg, x, targets, args.minibatches, args.repeats, args.seed)
        print(f"    time per minibatch: {_ms(total)} (gradient estimate {_ms(est)}, optimizer step {_ms(upd)})")
        print(f"    examples/s: {cfg.batch / total:.0f}; time per epoch of {EPOCH_EXAMPLES:,} examples: "
              f"{EPOCH_EXAMPLES / cfg.batch * total:.2f} s")
        print(f"    efficiency: {100 * flops['total'] / (rate * 1e9) / total:.1f} % "
              f"(ideal time at the matmul rate {_ms(flops['total'] / (rate * 1e9))})")
        print(f"    peak memory (process max RSS so far): {peak_memory_mb():.0f} MB")
        if args.no_torch:
            print("    PyTorch: skipped (--no-torch)")
        else:
            out = time_torch(cfg, x, targets, args.minibatches, args.repeats, args.torch_dtype)
            if out is None:
                print("    PyTorch: not installed (pip install torch to compare)")
            else:
                seconds, torch = out
                print(f"    PyTorch {torch.__version__} autograd ({args.torch_dtype}, threads: {torch.get_num_threads()}): "
                      f"{_ms(seconds)} per minibatch; PyTorch time / dynsim time = {seconds / total:.2f}")
        if cfg.model == "pc":
            if args.no_pcx:
                print("    pcx: skipped (--no-pcx)")
            else:
                seconds, what = time_pcx(cfg, args.minibatches, args.repeats, args.pcx_python)
                if seconds is None:
                    print(f"    pcx: {what}")
                else:
                    print(f"    pcx ({what}): {_ms(seconds)} per minibatch; dynsim time / pcx time = "
                          f"{total / seconds:.2f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
