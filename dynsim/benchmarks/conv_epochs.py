"""The MNIST conv net's training on the CPU: dynsim (Numba), dynsim's torch backend, and the authors' code, side by side.

Each round runs, one after the other and each in a fresh process, the same
partial epoch (the first ``--train-size`` training images, minibatch 100):

- ``dynsim``: ``scenarios/mnist_ep.py --preset lab-conv`` (Numba, float32,
  centered EP, 30 free / 10 + 10 nudged block sweeps, Adam), the training
  seconds of its epoch row;
- ``dynsim-torch``: ``scenarios/torch_ep.py --preset lab-conv`` (the torch
  backend on the CPU: a competent PyTorch version of the same relaxation),
  the training seconds of its epoch;
- ``authors``: Laborieux et al.'s own training step for their MNIST conv net
  (200 free / 10 + 10 nudged synchronous iterations, their protocol; on
  random images of MNIST's shape) through
  :mod:`dynsim.benchmarks.laborieux_runner`, ms per minibatch times the
  minibatches of the partial epoch.

A short untimed run of dynsim first fills Numba's kernel cache. Every
contender runs on ``--cores`` CPUs (default 1): its process pinned to
them, the BLAS, OpenMP and Numba thread counts and torch's threads set to
their number (:func:`dynsim.benchmarks.training_epochs.run_measured`). The
medians over ``--rounds`` alternated rounds and the ratios to dynsim are
printed, with seconds per 60,000-image epoch extrapolated from the partial
one. dynsim's protocol takes 30 sweeps where the authors' takes 200; on an
H200 both reached the same test error after two epochs
(``README.md``, "Fewer sweeps").

References
----------
.. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
       Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from dynsim.benchmarks.training_epochs import core_set, run_measured

ROOT = Path(__file__).resolve().parents[2]
BATCH = 100
EPOCH_IMAGES = 60_000


@contextlib.contextmanager
def pinned(cores):
    """Run this process on the CPUs ``cores`` inside the block (for a contender timed in this process)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def time_dynsim(data_dir, train_size, work, cores):
    """Training seconds of the partial epoch through scenarios/mnist_ep.py (Numba)."""
    from dynsim.io.log import read_log

    out = Path(tempfile.mkdtemp(dir=work))
    # A constant rate, as the other contenders train: the preset's schedule changes the rates, not the work.
    code, _, err, _, _ = run_measured(
        [sys.executable, str(ROOT / "scenarios" / "mnist_ep.py"), "--preset", "lab-conv", "--data-dir",
         str(data_dir), "--train-size", str(train_size), "--eval-size", "100", "--epochs", "1", "--out", str(out),
         "--schedule", "constant", "--quiet", "--no-download"], timeout=3600, cores=cores)
    if code != 0:
        raise RuntimeError(f"mnist_ep.py failed: {err[-500:]}")
    table = read_log(out / "log.h5").table("epochs")
    return float(table["seconds"][-1])


def time_torch(data_dir, train_size, work, cores):
    """Training seconds of the partial epoch through scenarios/torch_ep.py (torch backend, CPU)."""
    out = Path(tempfile.mkdtemp(dir=work))
    code, _, err, _, _ = run_measured(
        [sys.executable, "-c", f"import torch; torch.set_num_threads({len(cores)}); import runpy, sys; "
         "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
         str(ROOT / "scenarios" / "torch_ep.py"), "--preset", "lab-conv", "--data-dir", str(data_dir),
         "--train-size", str(train_size), "--eval-size", "100", "--epochs", "1", "--out", str(out),
         "--record-every", "1"], timeout=3600, cores=cores)
    if code != 0:
        raise RuntimeError(f"torch_ep.py failed: {err[-500:]}")
    return float(json.loads((out / "results.json").read_text())["epochs"][-1]["seconds"])


def time_authors(checkout, train_size, cores):
    """Seconds of the authors' steps for the partial epoch (their per-minibatch median, in this process, pinned)."""
    from dynsim.benchmarks.laborieux_runner import time_minibatches

    n = -(-train_size // BATCH)
    with pinned(cores):
        r = time_minibatches(checkout, "mnist-conv", "cpu", min(n, 5), 1, threads=len(cores))
    return r["ms_per_minibatch"] * n / 1e3


def summarize(samples, scale, epoch_label):
    """Medians of each contender's rounds, extrapolated by ``scale`` to an epoch, and their ratios to the first.

    Prints one line per contender and the JSON of the result; returns it (dict of name to figures).
    """
    names = list(samples)
    base = statistics.median(samples[names[0]])
    result = {}
    for name, v in samples.items():
        m = statistics.median(v)
        result[name] = {"seconds": m, "rounds": v, "seconds_per_epoch": m * scale, "ratio_to_first": m / base}
        print(f"  {name:13s} {m:8.1f} s  ({m * scale:7.0f} s per {epoch_label} images)  {m / base:5.2f}x "
              f"{names[0]}'s time")
    print(json.dumps(result))
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--train-size", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--authors-checkout", default=None)
    p.add_argument("--cores", type=int, default=1, help="CPUs (and threads) of every contender (default 1)")
    args = p.parse_args(argv)
    cores = core_set(args.cores)
    samples = {"dynsim": [], "dynsim-torch": []}
    if args.authors_checkout:
        samples["authors"] = []
    with tempfile.TemporaryDirectory() as work:
        # Numba compiles a kernel on first use and caches it on disk: one short untimed run fills the cache.
        time_dynsim(args.data_dir, BATCH, work, cores)
        for r in range(args.rounds):
            samples["dynsim"].append(time_dynsim(args.data_dir, args.train_size, work, cores))
            samples["dynsim-torch"].append(time_torch(args.data_dir, args.train_size, work, cores))
            if args.authors_checkout:
                samples["authors"].append(time_authors(args.authors_checkout, args.train_size, cores))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in samples.items()), flush=True)
    print(f"partial epoch of {args.train_size} images, minibatch {BATCH}, {args.cores} core(s) each; medians of "
          f"{args.rounds} rounds:")
    result = summarize(samples, EPOCH_IMAGES / args.train_size, f"{EPOCH_IMAGES:,}")
    return result


if __name__ == "__main__":
    main()
