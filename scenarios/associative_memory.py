"""Associative memory: a fully connected Hopfield network learns to recall binary patterns from corrupted cues.

A few random binary patterns are stored in a network of three groups, the
clamped ``cue``, ``hidden`` units and the ``memory`` units, with every pair
of groups coupled, including the symmetric blocks within ``hidden`` and
within ``memory`` (Hopfield 1984). A local rule (equilibrium propagation,
Scellier & Bengio 2017, or contrastive Hebbian learning, Movellan 1991)
trains the memory units towards the clean pattern while a corrupted copy
(some bits flipped) is clamped as the cue; every epoch draws fresh
corruptions. Recall settles the free phase from zero and reads each memory
unit as bit 1 above 1/2. It is scored on fresh corruptions at several
levels against two baselines: the cue itself, and the stored pattern
nearest to the cue in Hamming distance.

Writes to the output folder:

- ``memory.h5``: the HDF5 log with the configuration, the tables
  ``recall`` (accuracy per corruption level), ``training`` (per epoch) and
  ``parameters`` (the learned weight blocks and biases), and one recall
  relaxation (one corrupted cue per pattern) with its trajectory;
- ``recall.png``: each stored pattern, its corrupted cue, the recalled
  memory and the memory units while settling.

Run ``python scenarios/associative_memory.py --help`` for the options.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from dynsim.cli.argtypes import number_list
from dynsim.experiments.memory import (MAX_CORRUPTION, corrupt, flipped_bits, memory_network, random_patterns, recall,
                                       recall_table, train_memory)
from dynsim.io.log import TrajectoryLog
from dynsim.learning.rules import RULES
from dynsim.plots.relaxation import plot_recall
from dynsim.relax.phases import SettleOptions
from dynsim.training.optimizers import SGD, Adam
from dynsim.validation import (ValidationError, check_memory, fail, positive_int, real_scalar, reports_write_errors,
                               writable_folder)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rule", default="ep-positive", choices=RULES, help="learning rule ('rbp': backprop baseline)")
    p.add_argument("--patterns", type=int, default=5, help="number of stored patterns")
    p.add_argument("--units", type=int, default=16, help="bits per pattern (a square number draws as a square)")
    p.add_argument("--hidden", type=int, default=32, help="hidden units (0: cue and memory only)")
    p.add_argument("--epochs", type=int, default=300, help="training epochs")
    p.add_argument("--per-pattern", type=int, default=20, help="fresh corrupted cues per pattern and epoch")
    p.add_argument("--batch-size", type=int, default=10, help="cues per minibatch")
    p.add_argument("--corruption", type=float, default=0.25,
                   help="training cues flip up to this fraction of bits; the figure's cues flip exactly this")
    p.add_argument("--levels", type=number_list(float, 0.0, MAX_CORRUPTION, name="levels", example="0,0.1,0.2"), default=[0.0, 0.1, 0.2, 0.3],
                   help="corruption levels of the recall test")
    p.add_argument("--trials", type=int, default=100, help="test cues per pattern and level")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help="optimizer of the weights")
    p.add_argument("--lr", type=float, default=0.003, help="learning rate")
    p.add_argument("--beta", type=float, default=2.0,
                   help="nudging strength of the EP rules (> 0, and < 2/dt - 1 for a stable nudged phase)")
    p.add_argument("--dt", type=float, default=0.25,
                   help="step of projected Euler (0.5 lets learned couplings make the nudged phase oscillate)")
    p.add_argument("--max-steps", type=int, default=1000, help="step limit of each phase")
    p.add_argument("--seed", type=int, default=0, help="seed of patterns, weights and corruptions")
    p.add_argument("--out", type=Path, default=Path("runs/associative_memory"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing log in --out")
    return p


def print_summary(table):
    print(f"{'flipped':>12}{'':3}{'bit accuracy':^30}{'':3}{'exact recall':^30}")
    print(f"{'bits':>12}{'':3}" + f"{'network':>10}{'cue':>10}{'nearest':>10}{'':3}" * 2 + f"{'unsettled':>10}")
    for k in range(len(table["corruption"])):
        head = f"{table['flipped_bits'][k]:>3} ({table['corruption'][k]:4.0%})"
        bits = "".join(f"{table[f'{w}_bit_accuracy'][k]:>10.3f}" for w in ("network", "cue", "nearest"))
        exact = "".join(f"{table[f'{w}_exact_recall'][k]:>10.3f}" for w in ("network", "cue", "nearest"))
        print(f"{head:>12}{'':3}{bits}{'':3}{exact}{'':3}{table['unsettled'][k]:>7d}/{table['cues'][k]}")


@reports_write_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    log_path = args.out / "memory.h5"
    try:
        positive_int("--seed", args.seed, minimum=0)
        real_scalar("--lr", args.lr, 0.0, np.inf, low_open=True, high_open=True)
        real_scalar("--dt", args.dt, 0.0, np.inf, low_open=True, high_open=True)
        for name in ("patterns", "units", "epochs", "per_pattern", "batch_size", "trials"):
            if getattr(args, name) < (0 if name == "epochs" else 1):
                raise ValidationError(f"--{name.replace('_', '-')} must be >= {0 if name == 'epochs' else 1}, "
                                      f"got {getattr(args, name)}")
        if not 0.0 <= args.corruption <= MAX_CORRUPTION:
            raise ValidationError(f"--corruption must lie in [0, {MAX_CORRUPTION}], got {args.corruption}")
        if not args.beta > 0:
            raise ValidationError(f"--beta must be > 0 (the EP variant sets the signs), got {args.beta}")
        if args.rule.startswith("ep-") and not args.dt * (1 + args.beta) < 2:
            # A nudged output unit relaxes at rate 1 + beta at least: explicit Euler needs dt (1 + beta) < 2.
            raise ValidationError(f"--beta {args.beta:g} with --dt {args.dt:g}: the nudged phase is unstable "
                                  f"unless dt (1 + beta) < 2; lower --beta or --dt")
        options = SettleOptions(integrator="projected_euler", dt=args.dt, atol=1e-4, rtol=1e-4,
                                max_steps=args.max_steps)
        # Every pair of groups is coupled: about n^2 weights for n = 2 units + hidden, in 4 copies (weights,
        # gradient, optimizer moments), and 8 states per cue of a minibatch.
        n = 2 * args.units + max(args.hidden, 0)
        check_memory("--units and --hidden", (4 * n * n + 8 * args.batch_size * n) * 8,
                     f"a fully coupled network of {n} units")
        rng = np.random.default_rng(args.seed)
        net = memory_network(args.units, args.hidden, seed=rng)
        optimizer = (Adam if args.optimizer == "adam" else SGD)(net, args.lr)
        patterns = random_patterns(args.patterns, args.units, rng)
    except ValidationError as exc:
        fail(f"{exc}")
    if log_path.exists() and not args.overwrite:
        # Checked before training: the log is written only at the end.
        fail(f"log file {str(log_path)!r} already exists; pass --overwrite to replace it")
    try:
        writable_folder("--out", args.out)  # before training, as the log's existence: it is written at the end
    except ValidationError as exc:
        fail(f"{exc}")

    if args.rule in ("ep-negative", "ep-centered", "ep-random") and args.beta >= 1:
        # Nudged by -beta, an output unit obeys ds/dt = rho'(s) h + (beta - 1) s - beta y.
        print(f"note: with beta {args.beta:g} >= 1 the negative nudge cancels or outweighs the leak of the output "
              "units, pushing them to the bound opposite their target: far from the small-beta regime of EP")
    start = time.perf_counter()
    history = train_memory(net, patterns, args.rule, optimizer, args.epochs, args.corruption,
                           per_pattern=args.per_pattern, batch_size=args.batch_size, beta=args.beta,
                           options=options, rng=rng)
    train_seconds = time.perf_counter() - start
    table = recall_table(net, patterns, args.levels, args.trials, rng, options)

    config = {"scenario": "associative_memory", "rule": args.rule, "patterns": args.patterns,
              "units": args.units, "hidden": args.hidden, "epochs": args.epochs, "per_pattern": args.per_pattern,
              "batch_size": args.batch_size, "corruption": args.corruption, "levels": args.levels,
              "trials": args.trials, "optimizer": args.optimizer, "lr": args.lr, "beta": args.beta,
              "seed": args.seed, "activation": net.activation, **options.describe()}
    traced = dataclasses.replace(options, record_every=1)
    cues = corrupt(patterns, flipped_bits(args.corruption, args.units), rng)
    with TrajectoryLog(log_path, config, network=net, overwrite=args.overwrite) as log:
        _, free = recall(net, cues, traced)
        log.record_relaxation([free], label=f"recall, {flipped_bits(args.corruption, args.units)} bits flipped",
                              x=cues, target=patterns)
        log.record_table("recall", table, attrs={
            "bit_accuracy": "fraction of bits right (memory state above 1/2 read as 1)",
            "exact_recall": "fraction of cues with every bit right",
            "cue": "baseline: the corrupted cue itself", "nearest": "baseline: the stored pattern nearest "
            "to the cue in Hamming distance (ties: the lower index)"})
        log.record_table("training", history, attrs={"validation": f"{args.per_pattern} cues per pattern "
                                                                   f"with {args.corruption:g} of bits flipped"})
        # One row: the stored patterns and the learned blocks, named as in net.parameter_blocks().
        names = list(net.parameter_blocks())
        learned = {names[c]: net.weights(c)[None] for c in range(len(net.connections))}
        learned.update({f"b_{net.group_names[g]}": net.biases(g)[None] for g in range(1, len(net.group_sizes))})
        log.record_table("parameters", {"patterns": patterns[None], "theta": net.theta[None], **learned})
    figure = plot_recall(log_path, args.out / "recall.png")

    print(f"associative memory: {args.patterns} patterns of {args.units} bits, {args.hidden} hidden units, "
          f"rule {args.rule}, {args.epochs} epochs ({train_seconds:.1f} s of training)")
    print(f"validation at {args.corruption:g} corruption: bit accuracy {history['bit_accuracy'][0]:.3f} -> "
          f"{history['bit_accuracy'][-1]:.3f}, exact recall {history['exact_recall'][0]:.3f} -> "
          f"{history['exact_recall'][-1]:.3f}")
    print(f"phases stopped before the steady state in training: {history['unsettled_free'].sum()} free, "
          f"{history['unsettled_second'].sum()} nudged/clamped")
    print(f"recall on fresh cues ({args.trials} per pattern and level):")
    print_summary(table)
    print(f"log: {log_path}\nfigure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
