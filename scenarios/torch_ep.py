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
error, seconds, ms per minibatch). With ``--out`` it writes there ``log.h5``
(the configuration, a table ``epochs``, one row per epoch, written as each
epoch ends, and every ``--record-every`` epochs the free and nudged
relaxations of 4 test images, computed by the Numba path from the trained
parameters: ``dynsim plot LOG --kind settling`` shows them), ``checkpoint.h5`` after each epoch (parameters, optimizer
state, random generator; ``--resume`` continues from it with the weights of
an uninterrupted run) and ``results.json``. ``--time-batches N`` instead times N training
minibatches per round, alternating dynsim (eager and, on a GPU, replayed as
a CUDA graph) with the authors' own code when ``--authors-checkout`` names
a checkout of their repository, and prints ms per minibatch, seconds per
epoch and the ratios (medians over ``--rounds``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from dynsim.benchmarks.device_epochs import DEVICE_PRESETS, compare, load_data, make_trainer
from dynsim.cli.argtypes import add_autocast_argument
from dynsim.relax.phases import free_phase, nudged_phase
from dynsim.training.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from dynsim.training.run_folder import RunFolderError, open_run_log
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
    add_autocast_argument(p, needs_device=False)
    p.add_argument("--time-batches", type=int, default=0, help="time this many minibatches per round instead")
    p.add_argument("--rounds", type=int, default=2, help="alternated timing rounds (medians)")
    p.add_argument("--authors-checkout", default=None, help="checkout of Laborieux et al.'s code to time beside")
    p.add_argument("--out", default=None,
                   help="run folder: log.h5 (one row per epoch), checkpoint.h5 (after each epoch), results.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--record-every", type=int, default=1,
                   help="with --out: every this many epochs, log the free and nudged relaxations of 4 test images")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    return p


RECORDED_IMAGES = 4
"""Test images whose relaxations the log keeps every ``--record-every`` epochs."""


def _show(row):
    print(f"epoch {row['epoch']:3d}  train {100 * row['train_error']:6.2f} %  test {100 * row['test_error']:6.2f} %  "
          f"{row['seconds']:8.1f} s  {row['ms_per_batch']:7.1f} ms per minibatch", flush=True)


def record_settling(log, trainer, xt, yt, epoch):
    """Log the free and one nudged relaxation of the first test images, every step, into ``log``.

    The trajectories are computed on the host by the Numba path (the
    reference) with the parameters trained on the device: only the
    parameters and these few images cross over.
    """
    net = trainer.net.to_host()
    n = min(RECORDED_IMAGES, int(xt.shape[0]))
    x = xt[:n].cpu().numpy().astype(net.dtype)
    y = np.eye(net.n_output, dtype=net.dtype)[yt[:n].cpu().numpy()]
    free = free_phase(net, x, target=y, options=dataclasses.replace(trainer.options, record_every=1))
    nudged = nudged_phase(net, x, y, trainer.beta, free.state,
                          options=dataclasses.replace(trainer.nudged_options, record_every=1))
    log.record_relaxation([free, nudged], label=f"epoch {epoch}", x=x, target=y)


def train_with_checkpoints(args, device, data):
    """Train ``args.epochs`` epochs; with ``--out`` log each epoch and checkpoint it, and resume from there.

    The device holds the run; after each epoch the host receives the
    parameters, the optimizer state and the random generator's state (the
    checkpoint) and one row of figures (the log), nothing else.
    """
    x, y, xt, yt, what = data
    trainer = make_trainer(args.preset, device=device, seed=args.seed, cuda_graph=args.cuda_graph,
                           autocast=args.autocast)
    preset = DEVICE_PRESETS[args.preset]
    fingerprint = {"preset": args.preset, "seed": args.seed, "train_size": int(x.shape[0]),
                   "batch_size": preset["batch_size"], "data": what}
    if args.autocast is not None:  # a run resumes in the precision it started in (absent: float32, as before)
        fingerprint["autocast"] = args.autocast
    log, start, logged = None, 1, set()
    if args.out is not None:
        config = {"scenario": "torch_ep", **fingerprint, "device": str(device), "epochs": args.epochs,
                  "cuda_graph": args.cuda_graph, "autocast": args.autocast, "rule": trainer.rule, "beta": trainer.beta,
                  "free": trainer.options.describe(), "nudged": trainer.nudged_options.describe()}
        try:
            log, logged, resumed = open_run_log(args.out, config, network=trainer.net.source, resume=args.resume,
                                                overwrite=args.overwrite)
            if resumed:
                ckpt = load_checkpoint(Path(args.out) / "checkpoint.h5", fingerprint)
                trainer.net.load_theta(ckpt.theta)
                trainer.optimizer.load_state_dict(ckpt.optimizer)
                trainer.rng.bit_generator.state = ckpt.rng_state
                start = ckpt.epoch + 1
                print(f"resuming after epoch {ckpt.epoch}", flush=True)
        except (RunFolderError, CheckpointError) as err:
            fail(str(err))
    rows = []
    try:
        for epoch in range(start, args.epochs + 1):
            row = trainer.train_epoch(x, y, preset["batch_size"])
            row.update(epoch=epoch, test_error=trainer.evaluate(xt, yt))
            rows.append(row)
            _show(row)
            # An epoch the log already holds (a run stopped between its row and its checkpoint) is not logged twice.
            if log is not None and epoch not in logged:
                if epoch % args.record_every == 0 or epoch == args.epochs:
                    record_settling(log, trainer, xt, yt, epoch)
                log.append_row("epochs", {k: row[k] for k in ("epoch", "train_error", "test_error", "seconds",
                                                              "ms_per_batch")})
            if log is not None:
                save_checkpoint(Path(args.out) / "checkpoint.h5", Checkpoint(
                    epoch=epoch, theta=trainer.net.host_theta(), optimizer=trainer.optimizer.state_dict(),
                    rng_state=trainer.rng.bit_generator.state, fingerprint=fingerprint))
    finally:
        if log is not None:
            log.close()
    return rows


def run(argv=None):
    """Parse ``argv``, train or time as asked, and return the figures (a dict)."""
    args = build_parser().parse_args(argv)
    try:
        for name in ("epochs", "rounds", "record_every"):
            if getattr(args, name) < 1:
                raise ValidationError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if args.time_batches < 0:
            raise ValidationError(f"--time-batches must be >= 0, got {args.time_batches}")
        if args.authors_checkout is not None and not Path(args.authors_checkout).is_dir():
            raise ValidationError(f"--authors-checkout {args.authors_checkout!r} is not a folder")
        if args.out is not None:
            writable_folder("--out", args.out)
        if args.resume and args.out is None:
            raise ValidationError("--resume continues the run in --out: give --out")
        from dynsim.backends.torch._torch import resolve_device

        device = resolve_device(args.device)
        data = load_data(args.preset, device, args.data_dir, args.train_size, args.eval_size, np.float32, args.seed)
    except (ValidationError, ImportError) as err:
        fail(str(err))
    print(f"preset {args.preset} on {device}: {data[4]}", flush=True)
    if args.time_batches:
        result = compare(args.preset, data[0], data[1], n_batches=args.time_batches, rounds=args.rounds,
                         authors_checkout=args.authors_checkout, seed=args.seed,
                         autocasts=(None,) if args.autocast is None else (None, args.autocast))
        for name, r in result.items():
            if isinstance(r, dict) and "error" in r:
                print(f"{name:21s} failed: {r['error']}")
            elif isinstance(r, dict) and "ms_per_minibatch" in r:
                print(f"{name:21s} {r['ms_per_minibatch']:9.1f} ms per minibatch  {r['seconds_per_epoch']:8.1f} s "
                      "per epoch")
        for name, ratio in result.get("ratios", {}).items():
            print(f"authors' time / {name}: {ratio:.2f}")
        result["data"] = data[4]
    else:
        result = {"epochs": train_with_checkpoints(args, device, data), "data": data[4]}
    if args.out is not None:
        path = Path(args.out) / "results.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"preset": args.preset, "device": str(device), **result}, indent=1))
        tmp.replace(path)  # never a half-written results file
    return result


def main(argv=None):
    """The command line: exit status 0 once the run is done (what ``dynsim sweep`` reads)."""
    run(argv)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UsageExit as err:
        sys.exit(err.code)
