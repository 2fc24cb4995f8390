"""Train Laborieux et al.'s networks with centered EP on the torch backend (CPU or CUDA GPU), or time them.

Presets (see :mod:`dynsim.benchmarks.device_epochs`): ``cifar-lab`` (their
CIFAR-10 network 3-128-256-512-512-10, 250 free / 30 + 30 nudged iterations,
batch 128; CIFAR-10 when its files are in ``--data-dir``, else random
CIFAR-shaped data, and the output says which), ``mnist-conv-lab`` (their
MNIST conv net, 200 / 10 + 10), ``lab-conv`` (the same net with dynsim's
30 / 10 + 10 block sweeps) and ``mnist-mlp-lab`` (784-512-10, 30 / 10 + 10,
batch 50). ::

    python scenarios/torch_ep.py --preset lab-conv --device cuda --epochs 3 --data-dir ../shared/data
    python scenarios/torch_ep.py --preset cifar-lab --device cuda --time-batches 5 --rounds 2 \\
        --authors-checkout PATH/TO/Equilibrium-Propagation

Training prints one line per epoch (training error of the free phases, test
error, seconds, ms per minibatch) and writes ``--out/results.json`` when
``--out`` is given. ``--time-batches N`` instead times N training
minibatches per round, alternating dynsim (eager and, on a GPU, replayed as
a CUDA graph) with the authors' own code when ``--authors-checkout`` names
a checkout of their repository, and prints ms per minibatch, seconds per
epoch and the ratios (medians over ``--rounds``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dynsim.benchmarks.device_epochs import DEVICE_PRESETS, compare, load_data, train
from dynsim.validation import UsageExit, ValidationError, fail, writable_folder


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="lab-conv", choices=sorted(DEVICE_PRESETS),
                   help="network, iteration counts, batch and optimizer (see the docstring)")
    p.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'cuda:<index>'")
    p.add_argument("--epochs", type=int, default=1, help="training epochs")
    p.add_argument("--train-size", type=int, default=None, help="first training images only")
    p.add_argument("--eval-size", type=int, default=None, help="first test images only")
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ (and cifar10/) data files")
    p.add_argument("--seed", type=int, default=0, help="initial parameters, minibatch order, random data")
    p.add_argument("--cuda-graph", action="store_true", help="replay each training step as a CUDA graph")
    p.add_argument("--time-batches", type=int, default=0, help="time this many minibatches per round instead")
    p.add_argument("--rounds", type=int, default=2, help="alternated timing rounds (medians)")
    p.add_argument("--authors-checkout", default=None, help="checkout of Laborieux et al.'s code to time beside")
    p.add_argument("--out", default=None, help="folder for results.json")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        for name in ("epochs", "rounds"):
            if getattr(args, name) < 1:
                raise ValidationError(f"--{name} must be >= 1, got {getattr(args, name)}")
        if args.time_batches < 0:
            raise ValidationError(f"--time-batches must be >= 0, got {args.time_batches}")
        if args.authors_checkout is not None and not Path(args.authors_checkout).is_dir():
            raise ValidationError(f"--authors-checkout {args.authors_checkout!r} is not a folder")
        if args.out is not None:
            writable_folder("--out", args.out)
        from dynsim.backends.torch._torch import resolve_device

        device = resolve_device(args.device)
        data = load_data(args.preset, device, args.data_dir, args.train_size, args.eval_size, np.float32, args.seed)
    except (ValidationError, ImportError) as err:
        fail(str(err))
    print(f"preset {args.preset} on {device}: {data[4]}", flush=True)
    if args.time_batches:
        result = compare(args.preset, data[0], data[1], n_batches=args.time_batches, rounds=args.rounds,
                         authors_checkout=args.authors_checkout, seed=args.seed)
        for name, r in result.items():
            if isinstance(r, dict) and "error" in r:
                print(f"{name:14s} failed: {r['error']}")
            elif isinstance(r, dict) and "ms_per_minibatch" in r:
                print(f"{name:14s} {r['ms_per_minibatch']:9.1f} ms per minibatch  {r['seconds_per_epoch']:8.1f} s "
                      "per epoch")
        for name, ratio in result.get("ratios", {}).items():
            print(f"authors' time / {name}: {ratio:.2f}")
        result["data"] = data[4]
    else:
        def show(row):
            print(f"epoch {row['epoch']:3d}  train {100 * row['train_error']:6.2f} %  test "
                  f"{100 * row['test_error']:6.2f} %  {row['seconds']:8.1f} s  {row['ms_per_batch']:7.1f} ms per "
                  "minibatch", flush=True)
        rows, _ = train(args.preset, device, data, args.epochs, seed=args.seed, cuda_graph=args.cuda_graph,
                        on_epoch=show)
        result = {"epochs": rows, "data": data[4]}
    if args.out is not None:
        path = Path(args.out) / "results.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"preset": args.preset, "device": str(device), **result}, indent=1))
        tmp.replace(path)  # never a half-written results file
    return result


if __name__ == "__main__":
    try:
        main()
    except UsageExit as err:
        sys.exit(err.code)
