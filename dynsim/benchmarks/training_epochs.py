"""Benchmark of what a user waits for: whole training epochs through the scenarios, beside PyTorch, pcx and Laborieux.

What is measured
----------------
Each setting runs the scenario a user runs (``scenarios/mnist_ep.py`` or
``scenarios/mnist_pc.py``: :func:`dynsim.training.loop` with its rule,
optimizer, evaluation, HDF5 log and checkpoint) as a subprocess for one
epoch, and reads the training seconds of epoch 1 from the ``seconds``
column of the log it writes (the minibatch loop only); the whole process's
wall time (imports, data, evaluations, log, checkpoint, figures) and peak
resident memory (``os.wait4``) are measured from outside. Settings:

- ``ep-laborieux``: ``mnist_ep.py --preset lab-mlp``, centered EP
  784-512-10, 30 free / 10 + 10 nudged projected-Euler steps of 1 (the
  update s <- clip(field) of Laborieux et al., their hard sigmoid), beta
  0.1, minibatch 50, Adam 5e-4, free phase from zero, weights at their
  code's scale (Laborieux et al. 2021's MNIST run with Adam);
- ``sb-1h`` and ``dhn-1h``: the presets of ``mnist_ep.py``;
- ``pc-pcx``: strict PC 784-128-128-128-10, GELU, 5 Euler inference steps
  of 0.05, minibatch 128, Adam at a constant 3e-4 (the scenario's default
  warm-up-cosine schedule is off, so that every contender runs the same
  algorithm), all 60,000 training images (pcx's benchmark network).

Beside them, in the same rounds: the PyTorch versions of
:mod:`dynsim.benchmarks.torch_reference` (float32, explicit formulas, in
place; for ``ep-laborieux`` and ``pc-pcx``; skipped when torch is not
installed), pcx (``--pcx-python``, ``pc-pcx``; one epoch of 60,000 / 128
minibatches and the test predictions, through
:mod:`dynsim.benchmarks.pcx_runner`) and Laborieux et al.'s own code
(``--laborieux``, a checkout of their repository; ``ep-laborieux``; it
always trains a whole epoch on its own MNIST copy, and its time is read
from its last progress line, else the process's wall time; with
``--laborieux-steps N`` their training step is timed instead, N minibatches
through their model code by :mod:`dynsim.benchmarks.laborieux_runner`, and
scaled to an epoch: no torchvision, no download). PyTorch and pcx
train on the same images as dynsim (real MNIST from ``--data-dir``, else
random images of MNIST's shape, and the output says which).

Every run is a fresh process, so loading compiled code (Numba's cache,
JAX's jit) is part of the wall time; an untimed short run of each dynsim
setting first fills Numba's cache, as a user's first run does; pcx's first minibatch (its compilation) is
left out of its training seconds and reported apart. The implementations
alternate within each of ``--rounds`` rounds; medians are reported.
Training times are scaled to an epoch of 60,000 images (the EP scenarios
train on 50,000: their time is scaled by 60,000 / 50,000). The ratios
(other / dynsim; above 1, dynsim is faster) are printed first, then each
implementation's epoch: training seconds, wall seconds, efficiency against
the float64 and float32 matrix-product rates measured at the start of the
same run (FLOPs from :mod:`dynsim.benchmarks.flops`), and peak memory.

This is a measurement, not a test: nothing is asserted. A full run takes
long (an epoch per setting and implementation, times the rounds): run it on
a quiet machine. ::

    python -m dynsim.benchmarks.training_epochs --data-dir /path/to/data          # full, 3 rounds
    python -m dynsim.benchmarks.training_epochs --pcx-python .venv-pcx/bin/python \\
        --laborieux ~/src/Equilibrium-Propagation                                   # with the comparisons
    python -m dynsim.benchmarks.training_epochs --train-size 2000 --eval-size 500   # quick: part of an epoch
    python -m dynsim.benchmarks.training_epochs --train-size 200 --eval-size 100 --rounds 1   # smoke run

References
----------
.. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep
       ConvNets by Drastically Reducing its Gradient Estimator Bias",
       Front. Neurosci. 15 (2021).
.. [2] L. Pinchetti et al., "Benchmarking Predictive Coding Networks -- Made
       Simple", ICLR (2025) (pcx).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dynsim._threads import THREAD_VARIABLES, thread_environment
from dynsim.benchmarks import pcx_runner
from dynsim.benchmarks.flops import ep_flops, pc_flops

EPOCH_IMAGES = 60_000
"""Every training time is scaled to an epoch of this many images."""
REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"
TORCH_REFERENCE = Path(__file__).resolve().parent / "torch_reference.py"


class Setting(NamedTuple):
    """One benchmarked training setting and how each implementation runs it."""

    key: str
    title: str
    family: str           # 'ep' or 'pc'
    scenario: str         # file in scenarios/
    args: tuple           # the scenario's options (besides epochs, data, sizes, output)
    table: str            # the log's table of epoch rows
    sizes: tuple
    batch: int
    free_steps: int       # EP free iterations; PC inference steps
    nudged_steps: int = 0
    nudged_phases: int = 0
    split_images: int = 50_000   # training images of a whole epoch of the scenario
    dt: float = 0.0
    beta: float = 0.0
    lr: float = 0.0
    init_gain: float | None = None  # the EP preset's initial scale, given to the PyTorch version
    comparisons: tuple = ()      # of 'pytorch', 'pcx', 'laborieux'

    def flops_per_image(self):
        if self.family == "ep":
            f = ep_flops(self.sizes, self.batch, self.free_steps, self.nudged_steps, self.nudged_phases)
        else:
            f = pc_flops(self.sizes, self.batch, self.free_steps)
        return f["total"] / self.batch


SETTINGS = {
    "ep-laborieux": Setting(
        "ep-laborieux", "mnist_ep.py --preset lab-mlp (centered EP 784-512-10, 30 / 10+10 steps, batch 50, Adam 5e-4)",
        "ep", "mnist_ep.py", ("--preset", "lab-mlp"), "epochs", (784, 512, 10), 50, 30, 10, 2, dt=1.0, beta=0.1,
        lr=5e-4, init_gain=1.0, comparisons=("pytorch", "laborieux")),
    "sb-1h": Setting("sb-1h", "mnist_ep.py --preset sb-1h (EP 784-500-10, 20 / 4, batch 20, SGD)", "ep",
                     "mnist_ep.py", ("--preset", "sb-1h"), "epochs", (784, 500, 10), 20, 20, 4, 1),
    "dhn-1h": Setting("dhn-1h", "mnist_ep.py --preset dhn-1h (centered EP 784-1024-10, 15 / 15+15 block, batch 16)",
                      "ep", "mnist_ep.py", ("--preset", "dhn-1h"), "epochs", (784, 1024, 10), 16, 15, 15, 2),
    "pc-pcx": Setting(
        "pc-pcx", "strict PC 784-128-128-128-10, GELU, 5 steps of 0.05, batch 128, Adam 3e-4", "pc", "mnist_pc.py",
        ("--rules", "pc-strict", "--activation", "gelu", "--inference-steps", "5", "--dt", "0.05",
         "--batch-size", "128", "--optimizer", "adam", "--lr", "3e-4", "--validation-size", "0",
         "--schedule", "constant"),  # Adam at a constant rate, as pcx's runner and the PyTorch version train
        "epochs_pc-strict", (784, 128, 128, 128, 10), 128, 5, split_images=60_000, dt=0.05, lr=3e-4,
        comparisons=("pytorch", "pcx")),
}


class Run(NamedTuple):
    """One process: training seconds scaled to :data:`EPOCH_IMAGES`, wall seconds, peak memory; or why not."""

    train: float | None
    wall: float | None
    peak_mb: float | None
    note: str = ""
    test_error: float | None = None  # after the epoch: every implementation learns, not only runs
    eval_10k: float | None = None    # seconds to evaluate 10,000 held-out images (the free phase or prediction)


# ----------------------------------------------------------------------------- processes
def core_set(cores):
    """The first ``cores`` CPUs this process may run on (Linux affinity), as a sorted list."""
    available = sorted(os.sched_getaffinity(0))
    if not 1 <= cores <= len(available):
        raise ValueError(f"cores must be between 1 and {len(available)} (the CPUs this process may use), "
                         f"got {cores}")
    return available[:cores]


def run_measured(cmd, timeout, cwd=None, env=None, cores=None):
    """Run ``cmd``; return (exit code, stdout, stderr, wall seconds, peak resident MB of that process tree).

    ``os.wait4`` gives the rusage of this child alone (with the children it
    waited for), unlike ``RUSAGE_CHILDREN``, which keeps the largest child
    so far.

    ``cores`` (a list of CPU numbers, :func:`core_set`) pins the process and
    its threads to those CPUs and sets :data:`THREAD_VARIABLES` to their
    number, so that contenders that size their thread pools from the
    machine (JAX's, PyTorch's) and those that read the variables (OpenBLAS,
    Numba) get the same hardware.
    """
    preexec = None
    if cores is not None:
        env = dict(os.environ if env is None else env, **thread_environment(len(cores)))
        preexec = lambda: os.sched_setaffinity(0, cores)  # noqa: E731 (runs in the child before exec)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env=env, preexec_fn=preexec)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), wall,
                usage.ru_maxrss / 1024.0)


def _last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else "no output"


def run_dynsim(setting, args, work):
    """The scenario for one epoch in a fresh output folder; training seconds read from its log."""
    from dynsim.io.log import read_log

    out = Path(tempfile.mkdtemp(prefix=f"{setting.key}-", dir=work))
    cmd = [sys.executable, str(SCENARIOS / setting.scenario), *setting.args, "--epochs", "1", "--out", str(out),
           "--data-dir", str(args.data_dir), "--no-download", "--quiet"]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]  # else the scenario's own default seed, as a user's run has
    if args.train_size is not None:
        cmd += ["--train-size", str(args.train_size)]
    if args.eval_size is not None:
        cmd += ["--eval-size", str(args.eval_size)]
    code, stdout, stderr, wall, peak = run_measured(cmd, args.timeout, cores=args.core_set)
    try:
        if code != 0:
            return Run(None, None, None, f"failed (exit {code}): {_last_line(stderr or stdout)}")
        with read_log(out / "log.h5") as reader:
            table = reader.table(setting.table)
            config = reader.config
        epoch = np.asarray(table["epoch"]).astype(int)
        seconds = float(np.asarray(table["seconds"])[epoch == 1][0])
        test_error = float(np.asarray(table["test_error"])[epoch == 1][0])
        evaluated = int(config.get("n_validation", 0)) + int(config["n_test"])
        eval_10k = float(np.asarray(table["eval_seconds"])[epoch == 1][0]) * 10_000 / evaluated
        images = int(config["n_train"])
        if config.get("max_batches"):
            images = min(images, int(config["max_batches"]) * setting.batch)
        return Run(seconds * EPOCH_IMAGES / images, wall, peak, test_error=test_error, eval_10k=eval_10k)
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)


def run_torch(setting, args, data_file):
    """:mod:`dynsim.benchmarks.torch_reference` for one epoch, in its own process (run by its path)."""
    kwargs = dict(algorithm=setting.family, data=str(data_file), sizes=list(setting.sizes), batch=setting.batch,
                  lr=setting.lr, dt=setting.dt, steps=setting.free_steps, nudged_steps=setting.nudged_steps,
                  beta=setting.beta, activation="gelu", seed=args.seed or 0, init_gain=setting.init_gain,
                  threads=args.torch_threads if args.torch_threads is not None else len(args.core_set),
                  # The images the scenario trains on (its split), so that the test errors after the epoch compare.
                  n_train=setting.split_images if args.train_size is None else None)
    code, stdout, stderr, wall, peak = run_measured(
        [sys.executable, str(TORCH_REFERENCE), "epoch", json.dumps(kwargs)], args.timeout, cores=args.core_set)
    if code != 0:
        return Run(None, None, None, f"failed (exit {code}): {_last_line(stderr or stdout)}")
    result = json.loads(_last_line(stdout))
    return Run(result["seconds"] * EPOCH_IMAGES / result["images"], wall, peak,
               f"torch {result['torch']}, float32, {result['threads']} threads", 1.0 - result["test_accuracy"],
               result["eval_seconds"] * 10_000 / result["n_test"])


def run_pcx(setting, args, data_file):
    """One pcx epoch in the interpreter of ``--pcx-python`` (:mod:`dynsim.benchmarks.pcx_runner` by its path)."""
    kwargs = dict(data=str(data_file), sizes=list(setting.sizes), batch=setting.batch, steps=setting.free_steps,
                  dt=setting.dt, lr=setting.lr, activation="gelu", seed=args.seed or 0)
    code, stdout, stderr, wall, peak = run_measured(
        [args.pcx_python, str(Path(pcx_runner.__file__).resolve()), "epoch", json.dumps(kwargs)], args.timeout,
        cores=args.core_set)
    if code != 0:
        return Run(None, None, None, f"failed (exit {code}): {_last_line(stderr or stdout)}")
    result = json.loads(_last_line(stdout))
    return Run(result["seconds"] * EPOCH_IMAGES / result["images"], wall, peak,
               f"JAX {result['jax']}, float32, compile {result['compile_seconds']:.1f} s", 1.0 - result["test_accuracy"])


def laborieux_command(setting, python):
    """The command line of Laborieux et al.'s ``main.py`` for ``setting`` (one epoch, CPU when no GPU)."""
    return [python, "main.py", "--model", "MLP", "--task", "MNIST", "--archi", *map(str, setting.sizes),
            "--optim", "adam", "--lrs", *[str(setting.lr)] * (len(setting.sizes) - 1), "--epochs", "1",
            "--act", "hard_sigmoid", "--todo", "train", "--betas", "0.0", str(setting.beta), "--T1",
            str(setting.free_steps), "--T2", str(setting.nudged_steps), "--mbs", str(setting.batch), "--thirdphase",
            "--device", "0"]


def run_laborieux_steps(setting, args):
    """Laborieux et al.'s training step, timed over ``--laborieux-steps`` minibatches by their own model code.

    :mod:`dynsim.benchmarks.laborieux_runner` in a pinned process: their
    ``P_MLP``, optimizer and centered EP step, with their hard sigmoid (the
    algorithm dynsim runs), on random data of MNIST's shape; no torchvision,
    no download. Seconds per epoch = 1,200 minibatches x the median; their
    data loader and their evaluation are not counted, so this favours them.
    """
    cmd = [sys.executable, "-m", "dynsim.benchmarks.laborieux_runner", "--checkout", str(args.laborieux),
           "--setting", "mnist-mlp", "--act", args.laborieux_act, "--device", "cpu", "--batches",
           str(args.laborieux_steps), "--warmup", "2", "--threads", str(len(args.core_set)), "--eval-images", "10000",
           "--json"]
    code, stdout, stderr, wall, peak = run_measured(cmd, args.timeout, cores=args.core_set)
    if code != 0:
        return Run(None, None, None, f"failed (exit {code}): {_last_line(stderr or stdout)}")
    result = json.loads(_last_line(stdout))
    batches = math.ceil(EPOCH_IMAGES / setting.batch)
    return Run(batches * result["ms_per_minibatch"] / 1e3, wall, peak,
               f"their training step, median of {result['n_batches']} minibatches x {batches}, act "
               f"{result['act']}, random data, torch {result['torch']}, {result['threads']} threads",
               eval_10k=result["eval_seconds"] * 10_000 / result["eval_images"])


def run_laborieux(setting, args):
    """Laborieux et al.'s code for one epoch in its checkout; seconds from its last progress line, else wall."""
    if args.laborieux_steps is not None:
        return run_laborieux_steps(setting, args)
    cmd = laborieux_command(setting, args.laborieux_python)
    code, stdout, stderr, wall, peak = run_measured(cmd, args.timeout, cwd=args.laborieux, cores=args.core_set)
    if code != 0:
        return Run(None, None, None, f"failed (exit {code}): {_last_line(stderr or stdout)}")
    progress = [line for line in stdout.splitlines() if line.startswith("Epoch :")]
    found = re.search(r"(\d+)m (\d+)s", progress[-1]) if progress else None
    accuracy = re.findall(r"Test accuracy :\s*([0-9.]+)", stdout)
    test_error = None
    if accuracy:
        acc = float(accuracy[-1])
        test_error = 1.0 - (acc if acc <= 1.0 else acc / 100.0)  # a fraction or a percentage
    if found:
        return Run(60.0 * int(found.group(1)) + int(found.group(2)), wall, peak, "seconds from its progress line",
                   test_error)
    return Run(wall, wall, peak, "no progress line: its wall time", test_error)


# ----------------------------------------------------------------------------- data
def write_data(args, work):
    """The training and test images of the PyTorch and pcx runs as float32 arrays in an .npz; and their origin."""
    from dynsim.datasets.idx import DatasetError, load

    n_train = EPOCH_IMAGES if args.train_size is None else args.train_size
    n_test = 10_000 if args.eval_size is None else args.eval_size
    try:
        splits = load("mnist", data_dir=args.data_dir, download=False, validation_size=0, dtype=np.float32)
        x, targets = splits.train.x[:n_train], splits.train.targets[:n_train]
        x_test, labels = splits.test.x[:n_test], splits.test.labels[:n_test]
        origin = f"MNIST from {args.data_dir}"
        real = True
    except DatasetError:
        rng = np.random.default_rng(args.seed or 0)
        x = rng.random((n_train, 784), dtype=np.float32)
        targets = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n_train)]
        x_test, labels = rng.random((n_test, 784), dtype=np.float32), rng.integers(0, 10, n_test)
        origin = f"random images of MNIST's shape (no MNIST in {args.data_dir})"
        real = False
    path = Path(work) / "data.npz"
    np.savez(path, x_train=x, y_train=targets, x_test=x_test, labels_test=labels)
    return path, origin, real


# ----------------------------------------------------------------------------- report
def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _percent(fraction):
    return None if fraction is None else 100.0 * fraction


def _fmt(value, digits=1):
    return "—" if value is None else f"{value:.{digits}f}"


def build_parser():
    """The command line: every option with its type, default and help."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help=f"comma-separated settings among {', '.join(SETTINGS)} (default all)")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds; medians are reported (default 3)")
    p.add_argument("--train-size", type=int, default=None,
                   help="train on the first N images only (quick runs; times are scaled to 60,000 images); "
                        "default a whole epoch")
    p.add_argument("--eval-size", type=int, default=None,
                   help="evaluate on the first N validation and test images (default all)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder whose 'mnist' subfolder holds the IDX files (default $DYNSIM_DATA, else data/)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch versions")
    p.add_argument("--cores", type=int, default=1,
                   help="CPUs given to every timed process alike: each contender is pinned to the first N CPUs "
                        "of this process and its BLAS, OpenMP and Numba thread counts are N (default 1). JAX "
                        "sizes its thread pool from the CPUs it may use, so without pinning pcx took both cores "
                        "of a 2-core machine while the others took one")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads of the PyTorch versions (default --cores)")
    p.add_argument("--pcx-python", default=None,
                   help="python of a separate environment with pcx==0.6.3 (default: pcx not run)")
    p.add_argument("--laborieux", type=Path, default=None,
                   help="checkout of Laborieux et al.'s Equilibrium-Propagation repository (default: not run)")
    p.add_argument("--laborieux-python", default=sys.executable,
                   help="python that runs it (needs torch and torchvision; default this one)")
    p.add_argument("--laborieux-steps", type=int, default=None,
                   help="instead of their main.py (which needs torchvision and downloads MNIST), time this many "
                        "minibatches of their training step through their model code "
                        "(dynsim.benchmarks.laborieux_runner, random data) and scale to an epoch")
    p.add_argument("--laborieux-act", default="hard_sigmoid", choices=["hard_sigmoid", "mysig"],
                   help="with --laborieux-steps: their activation; 'hard_sigmoid' is the algorithm dynsim runs, "
                        "'mysig' (a smooth sigmoid) the one of their MNIST script (default hard_sigmoid)")
    p.add_argument("--matmul-size", type=int, default=2048,
                   help="n of the n x n matrix products that measure the machine's rates (default 2048)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds one process may run (default 3600)")
    p.add_argument("--seed", type=int, default=None,
                   help="initial weights and minibatch order of every contender's run but the authors' (default: "
                        "the dynsim scenarios' own default seed, 0 for PyTorch and pcx)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="folder for the runs' outputs (default a temporary folder, removed at the end)")
    p.add_argument("--no-warm-up", action="store_true",
                   help="skip the untimed run per setting that fills Numba's cache (smoke runs)")
    p.add_argument("--keep", action="store_true", help="keep the scenarios' outputs in --work-dir")
    return p


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    keys = [k.strip() for k in args.settings.split(",") if k.strip()]
    bad = [k for k in keys if k not in SETTINGS]
    if bad or not keys:
        p.error(f"--settings: unknown {bad}; choose among {list(SETTINGS)}")
    args.settings = keys
    for name in ("rounds", "matmul_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    need = max(SETTINGS[k].batch for k in keys)
    for name in ("train_size", "eval_size"):
        value = getattr(args, name)
        if value is not None and value < (2 * need if name == "train_size" else 1):
            p.error(f"--{name.replace('_', '-')} must be >= {2 * need if name == 'train_size' else 1} "
                    f"(train: two of the largest minibatches), got {value}")
    if args.torch_threads is not None and args.torch_threads < 1:
        p.error(f"--torch-threads must be >= 1, got {args.torch_threads}")
    try:
        args.core_set = core_set(args.cores)
    except ValueError as exc:
        p.error(f"--{exc}")
    if args.timeout <= 0:
        p.error(f"--timeout must be > 0, got {args.timeout}")
    if args.laborieux is not None and not (args.laborieux / "main.py").exists():
        p.error(f"--laborieux: {args.laborieux} holds no main.py (give the checkout of Equilibrium-Propagation)")
    if args.laborieux_steps is not None and (args.laborieux is None or args.laborieux_steps < 1):
        p.error(f"--laborieux-steps must be >= 1 and needs --laborieux, got {args.laborieux_steps}")
    if args.data_dir is None:
        args.data_dir = Path(os.environ.get("DYNSIM_DATA", "data"))
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch  # noqa: F401 (only whether it imports)
        have_torch = True
    except ImportError:
        have_torch = False
    work = Path(tempfile.mkdtemp(prefix="dynsim-epochs-")) if args.work_dir is None else args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _benchmark(args, work, have_torch)
    finally:
        if args.work_dir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def pinned_matmul_rates(size, cores, timeout):
    """numpy's float64 and float32 matrix-product rates (GFLOP/s) in a process pinned as the contenders are."""
    code = ("import json, numpy as np; from dynsim.benchmarks.flops import matmul_rate; "
            f"print(json.dumps([matmul_rate({int(size)}, 5, np.float64), matmul_rate({int(size)}, 5, np.float32)]))")
    status, stdout, stderr, _, _ = run_measured([sys.executable, "-c", code], timeout, cwd=REPO, cores=cores)
    if status != 0:
        raise RuntimeError(f"the matmul-rate process failed (exit {status}): {_last_line(stderr or stdout)}")
    return tuple(json.loads(_last_line(stdout)))


def _benchmark(args, work, have_torch):
    size = args.matmul_size
    rate64, rate32 = pinned_matmul_rates(size, args.core_set, args.timeout)
    data_file, origin, real = write_data(args, work)
    print(f"machine: {os.cpu_count()} CPUs; every timed process pinned to CPUs {args.core_set} with "
          f"{', '.join(THREAD_VARIABLES)}={len(args.core_set)}; numpy {np.__version__}")
    print(f"matmul rate (numpy, {size}x{size}, median, same CPUs): float64 {rate64:.1f} GFLOP/s, "
          f"float32 {rate32:.1f} GFLOP/s")
    part = "whole epochs" if args.train_size is None else f"the first {args.train_size} training images"
    print(f"data: {origin}; {part} per run, training times scaled to {EPOCH_IMAGES:,} images; "
          f"evaluation on {'all' if args.eval_size is None else args.eval_size} held-out images; "
          f"{args.rounds} alternated rounds, medians")
    if not real:
        print("    (the dynsim scenarios need real MNIST: their rows are not run)")
    sys.stdout.flush()

    if real and not args.no_warm_up:
        # Numba compiles a kernel on first use and caches it on disk: one short untimed run per setting fills the
        # cache, so that the timed epochs measure training, as every run after a user's first one does.
        for key in args.settings:
            warm = run_dynsim(SETTINGS[key], argparse.Namespace(**{**vars(args), "train_size": 256, "eval_size": 64}),
                              work)
            print(f"warm-up {key} (fills the kernel cache; not timed): "
                  + ("done" if warm.train is not None else warm.note), flush=True)

    runs = {}  # (setting, implementation) -> list of Run
    notes = {}
    for r in range(args.rounds):
        for key in args.settings:
            setting = SETTINGS[key]
            todo = [("dynsim", lambda s=setting: run_dynsim(s, args, work)) if real else
                    ("dynsim", lambda: Run(None, None, None, "not run: the scenarios need real MNIST"))]
            if "pytorch" in setting.comparisons:
                if args.no_torch:
                    notes[(key, "pytorch")] = "skipped (--no-torch)"
                elif not have_torch:
                    notes[(key, "pytorch")] = "skipped: torch is not installed (pip install torch)"
                else:
                    todo.append(("pytorch", lambda s=setting: run_torch(s, args, data_file)))
            if "pcx" in setting.comparisons:
                if args.pcx_python is None:
                    notes[(key, "pcx")] = "skipped (no --pcx-python)"
                else:
                    todo.append(("pcx", lambda s=setting: run_pcx(s, args, data_file)))
            if "laborieux" in setting.comparisons and args.laborieux is not None:
                todo.append(("laborieux", lambda s=setting: run_laborieux(s, args)))
            # Alternate who goes first from round to round, so that a drift of the machine hits each alike.
            shift = r % len(todo)
            for name, fn in todo[shift:] + todo[:shift]:
                result = fn()
                runs.setdefault((key, name), []).append(result)
                print(f"round {r + 1}/{args.rounds} {key} {name}: "
                      + (f"{result.train:.2f} s per epoch, wall {result.wall:.1f} s, {result.peak_mb:.0f} MB, "
                         f"test error {_fmt(_percent(result.test_error), 2)} %"
                         if result.train is not None else result.note), flush=True)

    medians = {k: Run(_median([v.train for v in vs]), _median([v.wall for v in vs]), _median([v.peak_mb for v in vs]),
                      next((v.note for v in vs if v.note), ""), _median([v.test_error for v in vs]),
                      _median([v.eval_10k for v in vs]))
               for k, vs in runs.items()}
    print()
    print("ratios (medians; other / dynsim: above 1, dynsim is faster)")
    print("| setting | compared | training time ratio | wall time ratio |")
    print("|---|---|---|---|")
    any_ratio = False
    for key in args.settings:
        base = medians.get((key, "dynsim"))
        for name in ("pytorch", "pcx", "laborieux"):
            other = medians.get((key, name))
            if base is None or other is None or base.train is None or other.train is None:
                continue
            any_ratio = True
            label = {"pytorch": "pytorch (float32)", "pcx": "pcx (JAX float32)", "laborieux": "laborieux"}[name]
            print(f"| {key} | {label} | {other.train / base.train:.3f} | {other.wall / base.wall:.3f} |")
    if not any_ratio:
        print("ratios: none (no comparison ran)")
    print()
    print(f"epochs (medians of {args.rounds} rounds; training seconds per {EPOCH_IMAGES:,} images; efficiency = "
          f"FLOPs at the float64 / float32 matmul rate / training time; test error after the epoch; seconds to "
          f"evaluate 10,000 held-out images)")
    print("| setting | implementation | training s | wall s | eff. f64 | eff. f32 | peak MB | test error % | "
          "eval s per 10k | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in args.settings:
        setting = SETTINGS[key]
        flops = setting.flops_per_image() * EPOCH_IMAGES
        for name in ("dynsim", "pytorch", "pcx", "laborieux"):
            if (key, name) in medians:
                m = medians[(key, name)]
                if m.train is None:
                    print(f"| {key} | {name} | {m.note} |")
                    continue
                e64 = 100 * flops / (rate64 * 1e9) / m.train
                e32 = 100 * flops / (rate32 * 1e9) / m.train
                print(f"| {key} | {name} | {m.train:.2f} | {m.wall:.1f} | {e64:.1f} % | {e32:.1f} % | "
                      f"{m.peak_mb:.0f} | {_fmt(_percent(m.test_error), 2)} | {_fmt(m.eval_10k, 2)} | {m.note} |")
            elif (key, name) in notes:
                print(f"| {key} | {name} | {notes[(key, name)]} |")
    print()
    for key in args.settings:
        setting = SETTINGS[key]
        print(f"{key}: {setting.title}; {setting.flops_per_image() * EPOCH_IMAGES / 1e9:.0f} GFLOP per epoch; "
              f"scenario: python scenarios/{setting.scenario} {' '.join(setting.args)}")
    if args.laborieux is not None and args.laborieux_steps is None:
        print("laborieux command (in its checkout): "
              + " ".join(laborieux_command(SETTINGS["ep-laborieux"], args.laborieux_python)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
