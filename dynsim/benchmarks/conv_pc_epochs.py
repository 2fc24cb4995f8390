"""The convolutional PC net's training on the CPU: dynsim (Numba) beside a plain PyTorch version, side by side.

Each round runs, one after the other and each in a fresh process on
``--cores`` CPUs (default 1, with as many threads), the same partial epoch
(the first ``--train-size`` Fashion-MNIST training images, minibatch 128,
Adam 3e-4 at a constant rate):

- ``dynsim``: ``scenarios/mnist_pc.py --conv 32,64 --rules pc-strict``
  (:class:`~dynsim.networks.conv_pc.ConvPCNetwork`, float32, 5 Euler
  inference steps of 0.05 with the output clamped), the training seconds of
  its epoch row;
- ``torch``: the same network, inference and update written as a PyTorch
  user would (:func:`torch_epoch`): the feedforward pass, then 5 steps of
  ``x -= dt dF/dx`` with ``dF/dx`` from autograd, then ``dF/dtheta`` from
  autograd at the settled state and an Adam step; float32, no per-step
  allocation beyond autograd's.

A short untimed run of dynsim first fills Numba's kernel cache. The medians
over ``--rounds`` alternated rounds and the ratio to dynsim are printed,
with seconds per 50,000-image epoch extrapolated.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dynsim.benchmarks.conv_epochs import summarize
from dynsim.benchmarks.training_epochs import core_set, run_measured

ROOT = Path(__file__).resolve().parents[2]
BATCH = 128
EPOCH_IMAGES = 50_000
STEPS, DT, LR = 5, 0.05, 3e-4


def time_dynsim(data_dir, train_size, work, cores):
    """Training seconds of the partial epoch through scenarios/mnist_pc.py --conv (Numba)."""
    from dynsim.io.log import read_log

    out = Path(tempfile.mkdtemp(dir=work))
    code, _, err, _, _ = run_measured(
        [sys.executable, str(ROOT / "scenarios" / "mnist_pc.py"), "--dataset", "fashion-mnist", "--conv", "32,64",
         "--rules", "pc-strict", "--data-dir", str(data_dir), "--train-size", str(train_size), "--eval-size", "100",
         "--epochs", "1", "--schedule", "constant", "--out", str(out), "--quiet", "--no-download"],
        timeout=3600, cores=cores)
    if code != 0:
        raise RuntimeError(f"mnist_pc.py failed: {err[-500:]}")
    return float(read_log(out / "log.h5").table("epochs_pc-strict")["seconds"][-1])


def torch_pc_gradients(conv1, conv2, dense, xb, yb):
    """One minibatch of strict PC in plain PyTorch: leaves dF/dtheta (batch mean) in the modules' ``.grad``.

    The feedforward pass, then ``STEPS`` steps of ``h -= DT dF/dh`` with
    ``dF/dh`` from autograd and the output clamped to ``yb``, then autograd
    of F with respect to the parameters at the settled state. Returns F there.
    """
    import torch

    F = torch.nn.functional

    def predictions(h1, h2):
        return (F.max_pool2d(conv1(torch.tanh(xb)), 2), F.max_pool2d(conv2(torch.tanh(h1)), 2),
                dense(torch.tanh(h2).flatten(1)))

    def energy(h1, h2):
        p1, p2, p3 = predictions(h1, h2)
        return 0.5 * (((h1 - p1) ** 2).sum() + ((h2 - p2) ** 2).sum() + ((yb - p3) ** 2).sum())

    with torch.no_grad():
        mu1 = F.max_pool2d(conv1(torch.tanh(xb)), 2)
        mu2 = F.max_pool2d(conv2(torch.tanh(mu1)), 2)
    h1, h2 = mu1.clone().requires_grad_(True), mu2.clone().requires_grad_(True)
    for _ in range(STEPS):  # inference: the hidden states descend F with the output clamped to the target
        g1, g2 = torch.autograd.grad(energy(h1, h2), (h1, h2))
        with torch.no_grad():
            h1 -= DT * g1
            h2 -= DT * g2
    for module in (conv1, conv2, dense):
        module.zero_grad()
    settled = energy(h1.detach(), h2.detach()) / xb.shape[0]
    settled.backward()
    return float(settled.detach())


def torch_epoch(x, targets, seed=0, threads=1):
    """Seconds of one epoch of strict PC on the 1-32-64 conv net in plain PyTorch (``threads``), and its last F.

    Parameters
    ----------
    x : ndarray, shape (n, 784)
    targets : ndarray, shape (n, 10)
    """
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    conv1, conv2 = torch.nn.Conv2d(1, 32, 5), torch.nn.Conv2d(32, 64, 5)
    dense = torch.nn.Linear(64 * 4 * 4, 10)
    optimizer = torch.optim.Adam([*conv1.parameters(), *conv2.parameters(), *dense.parameters()], lr=LR)
    xs = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 28, 28)
    ys = torch.tensor(targets, dtype=torch.float32)
    start = time.perf_counter()
    loss = float("nan")
    for b0 in range(0, xs.shape[0], BATCH):
        loss = torch_pc_gradients(conv1, conv2, dense, xs[b0:b0 + BATCH], ys[b0:b0 + BATCH])
        optimizer.step()
    return time.perf_counter() - start, loss


def time_torch(data_dir, train_size, cores):
    """Seconds of the PyTorch version's partial epoch, in a fresh process on the CPUs ``cores``."""
    code, out, err, _, _ = run_measured(
        [sys.executable, "-m", "dynsim.benchmarks.conv_pc_epochs", "--torch-only", "--data-dir", str(data_dir),
         "--train-size", str(train_size), "--cores", str(len(cores))], timeout=3600, cores=cores)
    if code != 0:
        raise RuntimeError(f"the PyTorch version failed: {err[-500:]}")
    return float(json.loads(out.strip().splitlines()[-1])["seconds"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cores", type=int, default=1, help="CPUs (and threads) of every contender (default 1)")
    p.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_only:
        from dynsim.datasets.idx import load

        train = load("fashion-mnist", data_dir=args.data_dir, download=False, dtype=np.float32).as_dict(
            args.train_size, 100)["train"]
        seconds, loss = torch_epoch(train.x, train.targets, threads=args.cores)
        print(json.dumps({"seconds": seconds, "loss": loss}))
        return {"seconds": seconds, "loss": loss}
    cores = core_set(args.cores)
    samples = {"dynsim": [], "torch": []}
    with tempfile.TemporaryDirectory() as work:
        # Numba compiles a kernel on first use and caches it on disk: one short untimed run fills the cache.
        time_dynsim(args.data_dir, BATCH, work, cores)
        for r in range(args.rounds):
            samples["dynsim"].append(time_dynsim(args.data_dir, args.train_size, work, cores))
            samples["torch"].append(time_torch(args.data_dir, args.train_size, cores))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in samples.items()), flush=True)
    print(f"partial epoch of {args.train_size} Fashion-MNIST images, minibatch {BATCH}, {args.cores} core(s) each; "
          f"medians of {args.rounds} alternated rounds:")
    result = summarize(samples, EPOCH_IMAGES / args.train_size, f"{EPOCH_IMAGES:,}")
    return result


if __name__ == "__main__":
    main()
