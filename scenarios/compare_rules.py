"""Every learning rule of dynsim on one network size and one data set: distance to backprop, and accuracy.

For a 784-H-10 network on MNIST (or Fashion-MNIST) each rule trains its own
network of its family from the same data, minibatches and optimiser (Adam):

- EP (positive, negative, centered) and CHL: a layered Hopfield network
  (hard sigmoid), block sweeps; reference: recurrent backprop at the
  converged free state;
- PC (strict, fixed prediction, Z-IL), FA and DFA: a predictive coding
  network's feedforward pass (tanh); reference: backprop;
- DTP: the same network with learned inverses; reference: backprop;
- vector-field EP: a Hopfield network whose feedback weights are separate
  and random; reference: recurrent backprop with its non-symmetric Jacobian;
- the dendritic error microcircuit: logistic hidden layer, linear output,
  started in the self-predicting state with B = W^T; reference: backprop
  through the feedforward pass it settles to.

Two measurements, written to one HDF5 table (``log.h5``, table ``rules``:
rule, kind, x, cosine, relative error, test error) and one figure
(``rules.png``):

1. **against iterations**: on one minibatch at the start, each settling rule
   runs its phases for each count of ``--iterations`` and its update (the
   weight matrices) is compared with its family's exact gradient: cosine
   and relative error ('iterations' rows; Z-IL has its own fixed count);
2. **against training time**: after every epoch, the same comparison on
   that minibatch for the network as trained (every rule, FA, DFA and DTP
   included: they have no iterations), and the test error ('epoch' rows).

Relative errors compare scales too: EP's estimate has backprop's scale,
PC strict's does not at equal variances, DTP reports its local updates over
its target step; the cosine is the comparison every rule supports. ::

    python scenarios/compare_rules.py --out runs/rules

References
----------
.. [1] B. Scellier, Y. Bengio, Front. Comput. Neurosci. 11:24 (2017) (EP).
.. [2] J. R. Movellan, Connectionist Models Summer School (1991) (CHL).
.. [3] J. C. R. Whittington, R. Bogacz, Neural Computation 29(5) (2017) (PC).
.. [4] T. P. Lillicrap et al., Nature Communications 7:13276 (2016) (FA).
.. [5] D.-H. Lee et al., ECML PKDD (2015) (DTP).
.. [6] B. Scellier et al., arXiv:1808.04873 (2018) (vector-field EP).
.. [7] J. Sacramento et al., NeurIPS (2018) (the dendritic microcircuit).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dynsim.cli.argtypes import choice_list, number_list
from dynsim.datasets.idx import DATASETS, DatasetError, load
from dynsim.experiments.estimator_sweep import reference_gradient
from dynsim.learning import gradient_estimate
from dynsim.networks import DendriticMicrocircuit, DTPNetwork, HopfieldNetwork, PCNetwork, VectorFieldHopfieldNetwork
from dynsim.plots.rules import plot_rule_comparison
from dynsim.references.vector_field import vf_implicit_gradient
from dynsim.relax.phases import SettleOptions, free_phase
from dynsim.training.loop import TrainingDivergedError, fit
from dynsim.training.optimizers import Adam
from dynsim.training.run_folder import RunFolderError, open_run_log
from dynsim.validation import (DivergenceError, ValidationError, fail, positive_int, real_scalar, reports_write_errors,
                               writable_folder)

RULES = ("ep-positive", "ep-negative", "ep-centered", "chl", "pc-strict", "pc-fixed-prediction", "pc-zil", "fa",
         "dfa", "dtp", "vf-ep", "microcircuit")
SETTLING = {"ep-positive", "ep-negative", "ep-centered", "chl", "pc-strict", "pc-fixed-prediction", "vf-ep",
            "microcircuit"}
"""Rules whose update depends on how many iterations their phases run."""
FAMILY = {**{r: "hopfield" for r in ("ep-positive", "ep-negative", "ep-centered", "chl")},
          **{r: "pc" for r in ("pc-strict", "pc-fixed-prediction", "pc-zil", "fa", "dfa")},
          "dtp": "dtp", "vf-ep": "vf", "microcircuit": "microcircuit"}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=sorted(DATASETS), help="data set")
    p.add_argument("--data-dir", type=Path, default=None, help="folder of the IDX files (default: $DYNSIM_DATA)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.add_argument("--rules", type=choice_list(RULES, "rule"), default=list(RULES), help="comma-separated rules")
    p.add_argument("--hidden", type=int, default=64, help="hidden units (784-H-10)")
    p.add_argument("--iterations", type=number_list(int, 1, None, "--iterations", "5,20,80"),
                   default=[2, 5, 10, 20, 50, 100], help="iteration counts of the phases for the distance study")
    p.add_argument("--probe", type=int, default=32, help="training images of the distance minibatch")
    p.add_argument("--train-size", type=int, default=2000, help="training images")
    p.add_argument("--eval-size", type=int, default=500, help="test images")
    p.add_argument("--epochs", type=int, default=3, help="training epochs per rule")
    p.add_argument("--batch-size", type=int, default=32, help="minibatch size")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's rate, every rule")
    p.add_argument("--beta", type=float, default=0.1, help="EP's nudging and the microcircuit's teaching conductance")
    p.add_argument("--train-steps", type=int, default=20,
                   help="iterations of the free phase (and of PC's inference) during training; nudged phases half")
    p.add_argument("--seed", type=int, default=0, help="initial weights and minibatch order")
    p.add_argument("--out", type=Path, default=Path("runs/rules"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    return p


def check(args):
    for name in ("hidden", "probe", "train_size", "eval_size", "batch_size", "train_steps"):
        positive_int("--" + name.replace("_", "-"), getattr(args, name))
    positive_int("--epochs", args.epochs, minimum=0)
    positive_int("--seed", args.seed, minimum=0)
    real_scalar("--lr", args.lr, 0.0, np.inf, low_open=True, high_open=True)
    real_scalar("--beta", args.beta, 0.0, np.inf, low_open=True, high_open=True)
    n_train = DATASETS[args.dataset].n_train - 10000
    if args.train_size > n_train:
        raise ValidationError(f"--train-size must be at most {n_train}, got {args.train_size}")
    if args.probe > args.train_size:
        raise ValidationError(f"--probe must be at most --train-size ({args.train_size}), got {args.probe}")
    if args.eval_size > 10000:
        raise ValidationError(f"--eval-size must be at most 10000, got {args.eval_size}")


def make_network(rule, sizes, seed):
    family = FAMILY[rule]
    if family == "hopfield":
        return HopfieldNetwork.layered(sizes, seed=seed)
    if family == "pc":
        return PCNetwork(sizes, activation="tanh", seed=seed, init="fan-in")
    if family == "dtp":
        return DTPNetwork(sizes, activation="tanh", seed=seed, init="fan-in")
    if family == "vf":
        return VectorFieldHopfieldNetwork(sizes, feedback="random", seed=seed)
    return DendriticMicrocircuit(sizes, activation="logistic", output_activation="linear", top_down="transpose",
                                 seed=seed).self_predicting()


def phase_options(rule, steps):
    """The phases' settings for ``steps`` iterations: (free or inference, nudged or clamped)."""
    family = FAMILY[rule]
    if family in ("hopfield", "vf"):
        return (SettleOptions(integrator="block", max_steps=steps, stop_at_steady_state=False),
                SettleOptions(integrator="block", max_steps=max(1, steps // 2), stop_at_steady_state=False))
    if family == "microcircuit":
        opts = SettleOptions(integrator="euler", dt=0.2, max_steps=steps, stop_at_steady_state=False)
        return opts, opts
    opts = SettleOptions(integrator="euler", dt=0.1, max_steps=steps, stop_at_steady_state=False)
    return opts, None


def estimate(rule, net, x, y, steps, beta, seed):
    """The rule's update on (x, y) with its phases run ``steps`` iterations (a gradient estimate)."""
    free_opts, nudged_opts = phase_options(rule, steps)
    return gradient_estimate({"vf-ep": "ep-centered"}.get(rule, rule), net, x, y, beta=beta, options=free_opts,
                             nudged_options=nudged_opts, rng=np.random.default_rng(seed), feedback_seed=seed).gradient


def reference(rule, net, x, y):
    """The family's exact gradient on (x, y): backprop, or recurrent backprop at the converged free state."""
    family = FAMILY[rule]
    if family == "hopfield":
        return reference_gradient(net, x, y)[0]
    if family == "vf":
        tight = SettleOptions(integrator="block", atol=1e-11, rtol=1e-11, max_steps=200_000)
        free = free_phase(net, x, target=y, options=tight)
        if not free.converged:
            raise DivergenceError(f"the vector-field network's reference free phase did not settle: "
                                  f"{free.integration.message}")
        return vf_implicit_gradient(net, x, y, free).gradient
    return net.backprop_gradient(x, y)


def distance(net, est, ref):
    """Cosine and relative error over the weight matrices (blocks ``W_*``) only: every family has them."""
    blocks = [sl for name, sl in net.parameter_blocks().items() if name.startswith("W_")]
    a = np.concatenate([est[sl] for sl in blocks]).astype(np.float64)
    b = np.concatenate([ref[sl] for sl in blocks]).astype(np.float64)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / norm) if norm > 0 else float("nan")
    return cosine, float(np.linalg.norm(a - b) / np.linalg.norm(b))


@reports_write_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        check(args)
        writable_folder("--out", args.out)
        splits = load(args.dataset, data_dir=args.data_dir, download=not args.no_download)
        data = splits.as_dict(args.train_size, args.eval_size)
    except (ValidationError, DatasetError) as exc:
        fail(f"{exc}")
    data = {"train": data["train"], "test": data["test"]}
    sizes = [784, args.hidden, 10]
    probe_x, probe_y = data["train"].x[:args.probe], data["train"].targets[:args.probe]
    config = {"scenario": "compare_rules", "dataset": args.dataset, "sizes": sizes, "rules": args.rules,
              "iterations": args.iterations, "probe": args.probe, "train_size": args.train_size,
              "eval_size": args.eval_size, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "beta": args.beta, "train_steps": args.train_steps, "seed": args.seed}
    try:
        log, _, _ = open_run_log(args.out, config, overwrite=args.overwrite)
    except (FileExistsError, RunFolderError) as exc:
        fail(f"{exc}")
    rows = []
    with log:
        for rule in args.rules:
            start = time.perf_counter()
            net = make_network(rule, sizes, args.seed)
            try:
                ref = reference(rule, net, probe_x, probe_y)
                counts = [1] if rule == "pc-zil" else (args.iterations if rule in SETTLING else [])
                for steps in counts:
                    cosine, rel = distance(net, estimate(rule, net, probe_x, probe_y, steps, args.beta, args.seed),
                                           ref)
                    rows.append({"rule": rule, "kind": "iterations", "x": float(steps), "cosine": cosine,
                                 "relative_error": rel, "test_error": float("nan")})

                def on_epoch(epoch, test_error, net=net, rule=rule):
                    ref = reference(rule, net, probe_x, probe_y)
                    cosine, rel = distance(net, estimate(rule, net, probe_x, probe_y, args.train_steps, args.beta,
                                                         args.seed), ref)
                    rows.append({"rule": rule, "kind": "epoch", "x": float(epoch), "cosine": cosine,
                                 "relative_error": rel, "test_error": test_error})
                    print(f"{rule:<20} epoch {epoch:2d}  test error {100 * test_error:6.2f} %  cosine to the exact "
                          f"gradient {cosine:6.3f}", flush=True)

                free_opts, nudged_opts = phase_options(rule, args.train_steps)
                # The microcircuit is evaluated at its settled free state (the training's 20 Euler steps from rest
                # stop short of it); the other families with their training's own free phase.
                evaluation = (SettleOptions(integrator="euler", dt=0.2, max_steps=5000, atol=1e-6, rtol=1e-6)
                              if rule == "microcircuit" else None)
                fit(net, data, {"vf-ep": "ep-centered"}.get(rule, rule), Adam(net, args.lr), args.epochs,
                    args.batch_size, beta=args.beta, options=free_opts, nudged_options=nudged_opts,
                    eval_options=evaluation, seed=args.seed, progress=False,
                    on_epoch=lambda row, on_epoch=on_epoch: on_epoch(int(row["epoch"]), float(row["test_error"])))
            except (DivergenceError, TrainingDivergedError) as exc:
                fail(f"rule {rule!r}: {exc}")
            print(f"{rule:<20} done in {time.perf_counter() - start:.1f} s", flush=True)
        columns = {key: [r[key] for r in rows] for key in ("rule", "kind", "x", "cosine", "relative_error",
                                                           "test_error")}
        columns = {k: (np.asarray(v, dtype=str) if k in ("rule", "kind") else np.asarray(v, dtype=float))
                   for k, v in columns.items()}
        log.record_table("rules", columns)
    title = (f"{args.dataset}: 784-{args.hidden}-10, {args.train_size} images, {args.epochs} epochs, Adam "
             f"{args.lr:g}, {args.train_steps} iterations in training")
    figure = plot_rule_comparison(columns, args.out / "rules.png", title)
    print(f"\n{'rule':<20}{'cos @ ' + str(max(args.iterations)):>12}{'cos end':>9}{'test error':>12}")
    for rule in args.rules:
        it = [r for r in rows if r["rule"] == rule and r["kind"] == "iterations"]
        ep = [r for r in rows if r["rule"] == rule and r["kind"] == "epoch"]
        print(f"{rule:<20}{(it[-1]['cosine'] if it else float('nan')):>12.3f}{ep[-1]['cosine']:>9.3f}"
              f"{100 * ep[-1]['test_error']:>11.2f}%")
    print(f"log: {args.out / 'log.h5'}\nfigure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
