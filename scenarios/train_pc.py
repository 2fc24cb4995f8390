"""Train a predictive coding network on a small task with each PC rule and the backprop baseline.

For every rule asked for ('pc-strict', 'pc-fixed-prediction', 'pc-zil' and
the exact-backprop baseline 'bp') a fresh network is built from the same
initial parameters and trained with the same minibatch order, so the rules
differ only in their gradient estimate. 'pc-strict' uses the output variance
``--output-variance`` (other layers 1) and multiplies its update by it
(Whittington & Bogacz 2017); the other rules use unit variances. Predictions
are read off the feedforward pass (the free equilibrium of a PC network).
Written to the output folder:

- ``train_pc.h5``: the HDF5 log: a table ``history_<rule>`` per rule (epoch,
  loss, accuracy, mean free and inference steps, seconds; epoch 0 is before
  training; each row written as its epoch ends), a ``summary`` table, and per
  rule one inference relaxation of a few fixed samples after training
  (label ``"<rule> after"``; for 'bp' the free phase only) with a table
  ``errors_<rule>`` of the mean prediction-error norm of each layer along it;
- ``curves.png``: loss and accuracy against epoch, one line per rule;
- ``decision.png`` (moons, two spirals): the decision regions of each
  trained network.

It prints one summary line per rule: final loss and accuracy, the accuracy
on a second draw of the data set (seed + 1000; none for XOR), and how far
the rule's update on the last minibatch lies from the backprop gradient at
the same parameters (relative error, cosine). Nothing is downloaded. ::

    python scenarios/train_pc.py --out runs/pc_moons                          # ~25 s
    python scenarios/train_pc.py --integrator dopri5 --inference-steps 5000 \\
        --output-variance 1000 --out runs/pc_moons_dopri5                    # ~1 minute

'pc-fixed-prediction' and 'pc-zil' compute backprop's gradient exactly (Z-IL
after L - 1 steps, fixed prediction at the inference equilibrium), so their
histories equal 'bp''s to rounding. 'pc-strict' is close to backprop only
with a large output variance *and* a settled inference, and training makes
the inference slower: on moons (defaults: 2-32-32-2 tanh, Adam 0.01, 100
epochs; bp 97 % train / 98 % test) 200 Euler steps with variance 100 give
83 %, its last update 0.87 relative error from backprop; variance 1000 with
dopri5 to 1e-6 (or 1000 Euler steps) gives 98 %, ~1 % relative error.

Run ``python scenarios/train_pc.py --help`` for the options.

References
----------
.. [1] J. C. R. Whittington, R. Bogacz, Neural Computation 29(5) (2017).
.. [2] B. Millidge, A. Tschantz, C. L. Buckley, Neural Computation 34(6) (2022).
.. [3] Y. Song, T. Lukasiewicz, Z. Xu, R. Bogacz, NeurIPS (2020).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from dynsim.cli.argtypes import choice_list, layer_sizes
from dynsim.datasets.tasks import TASKS, Task
from dynsim.io.log import TrajectoryLog
from dynsim.learning.rules import PC_RULES, gradient_estimate
from dynsim.networks.pc import PCNetwork
from dynsim.plots.training import plot_decision_regions, plot_training_curves
from dynsim.references.compare import gradient_metrics
from dynsim.relax.phases import SettleOptions, free_phase
from dynsim.training.loop import evaluate, train
from dynsim.training.optimizers import SGD, Adam
from dynsim.validation import (ValidationError, check_memory, fail, layered_bytes, positive_int, real_scalar,
                               reports_write_errors, writable_folder)
from integrators import METHODS

OPTIMIZERS = {"sgd": SGD, "adam": Adam}
ACTIVATIONS = ("tanh", "logistic", "relu", "hard_sigmoid")
RECORDED_SAMPLES = 4
"""Samples whose inference relaxation is logged after training (spread over the data set)."""
DEFAULT_TOLERANCE = 1e-6
"""Steady-state tolerance of the adaptive integrator when --tol is not given."""


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", default="moons", choices=sorted(TASKS), help="task generated in code")
    p.add_argument("--n-samples", type=int, default=200, help="points of the moons / two-spirals data set")
    p.add_argument("--inputs", default="auto", choices=["auto", "unit", "symmetric"],
                   help="input range: [0, 1] ('unit') or [-1, 1] ('symmetric'); 'auto': symmetric for tanh")
    p.add_argument("--rules", type=choice_list(PC_RULES, "rule"), default=list(PC_RULES), help="comma-separated learning rules")
    p.add_argument("--sizes", type=layer_sizes(3, "sizes", "2-32-32-2"), default=[2, 32, 32, 2],
                   help="units per layer, input first (the task fixes the first and the last)")
    p.add_argument("--activation", default="tanh", choices=ACTIVATIONS, help="f in mu_l = f(x_{l-1}) W_l + b_l")
    p.add_argument("--output-variance", type=float, default=100.0,
                   help="sigma_L^2 of 'pc-strict' (other layers 1); its update is multiplied by it")
    p.add_argument("--epochs", type=int, default=100, help="passes over the training set (0: evaluate only)")
    p.add_argument("--batch-size", type=int, default=20, help="minibatch size")
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="parameter update rule")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (all layers)")
    p.add_argument("--integrator", default="euler", choices=sorted(METHODS), help="inference integrator")
    p.add_argument("--dt", type=float, default=0.1, help="step of the fixed-step integrators")
    p.add_argument("--inference-steps", type=int, default=200,
                   help="inference steps (the cap of the adaptive integrator)")
    p.add_argument("--tol", type=float, default=None,
                   help="stop the inference at the steady state ||ds/dt|| <= tol (1 + ||s||); by default "
                        f"fixed-step inference runs exactly --inference-steps steps and dopri5 uses "
                        f"{DEFAULT_TOLERANCE:g}")
    p.add_argument("--seed", type=int, default=0, help="initial weights, data set and minibatch order")
    p.add_argument("--out", type=Path, default=Path("runs/train_pc"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing train_pc.h5 in --out")
    return p


def check_options(args):
    """Every option checked before anything is written (a bad one leaves no file behind)."""
    positive_int("--epochs", args.epochs, minimum=0)
    positive_int("--batch-size", args.batch_size)
    positive_int("--n-samples", args.n_samples, minimum=2)
    positive_int("--inference-steps", args.inference_steps)
    real_scalar("--lr", args.lr, 0.0, np.inf, low_open=True, high_open=True)
    real_scalar("--dt", args.dt, 0.0, np.inf, low_open=True, high_open=True)
    real_scalar("--output-variance", args.output_variance, 0.0, np.inf, low_open=True, high_open=True)
    if args.tol is not None:
        real_scalar("--tol", args.tol, 0.0, np.inf, low_open=True, high_open=True)
    if args.integrator == "projected_euler":
        raise ValidationError("--integrator projected_euler needs a box; predictive coding states are unbounded")
    check_memory("--sizes and --batch-size", layered_bytes(args.sizes, args.batch_size),
                 f"a {'-'.join(map(str, args.sizes))} network with minibatches of {args.batch_size}")


def make_task(name, n_samples, seed, symmetric):
    task = TASKS["xor"]() if name == "xor" else TASKS[name](n_samples, seed=seed)
    if symmetric:
        # tanh is odd: inputs centred on 0 use both halves of its range from the first layer on.
        task = Task(task.name, np.ascontiguousarray(2.0 * task.x - 1.0), task.labels, task.targets)
    return task


def inference_options(args):
    stop = args.tol is not None or args.integrator == "dopri5"
    tol = DEFAULT_TOLERANCE if args.tol is None else args.tol
    return SettleOptions(integrator=args.integrator, dt=args.dt, max_steps=args.inference_steps,
                         stop_at_steady_state=stop, atol=tol, rtol=tol)


def make_network(rule, sizes, activation, theta, output_variance):
    variances = [1.0] * (len(sizes) - 2) + [output_variance] if rule == "pc-strict" else None
    # The fixed-prediction network carries the flag so that its logged prediction errors are the ones it
    # learns from (pc_gradient sets it during inference either way; the feedforward pass ignores it).
    return PCNetwork(sizes, activation=activation, variances=variances, fixed_prediction=rule == "pc-fixed-prediction",
                     theta=theta.copy())


class LastStep:
    """Remembers the minibatch, the parameters and the gradient estimate of the last training step."""

    def __init__(self, net):
        self.net = net
        self.indices = self.theta = self.gradient = None

    def __call__(self, indices, gradient):
        self.indices, self.theta, self.gradient = indices.copy(), self.net.theta.copy(), gradient.copy()


def update_vs_backprop(rule, net, last, task):
    """Relative error and cosine of the last update against the backprop gradient at the same parameters."""
    if last.gradient is None:
        return float("nan"), float("nan")
    before = make_network(rule, net.group_sizes, net.activation, last.theta, net.variances[-1])
    before.variances = net.variances
    x, y = task.x[last.indices], task.targets[last.indices]
    metrics = gradient_metrics(before, last.gradient, before.backprop_gradient(x, y))["all"]
    return metrics["relative_error"], metrics["cosine"]


def record_inference(log, rule, net, task, idx, options):
    """Log the inference of ``rule`` on samples ``idx`` and the mean error norm per layer along it."""
    recording = dataclasses.replace(options, record_every=1)
    x, y = task.x[idx], task.targets[idx]
    if rule == "bp":
        phases = [free_phase(net, x, target=y, options=dataclasses.replace(recording, max_steps=1))]
    else:
        # The free phase returned here is the feedforward pass, unrecorded: keep the inference only.
        extra = gradient_estimate(rule, net, x, y, options=recording).phases
        phases = [extra["inference"]]
    index = log.record_relaxation(phases, label=f"{rule} after", x=x, target=y)
    traj = phases[-1].integration.trajectory
    m = len(traj.t)
    xs = np.repeat(x[traj.samples][None], m, axis=0).reshape(m * len(traj.samples), -1)
    errors = net.errors(xs, traj.y.reshape(m * len(traj.samples), -1))
    columns = {"t": np.asarray(traj.t)}
    for name, eps in errors.items():
        columns[f"error_{name}"] = np.linalg.norm(eps, axis=1).reshape(m, -1).mean(axis=1)
    log.record_table(f"errors_{rule}", columns, attrs={"relaxation": index,
                                                       "meaning": "mean over samples of ||eps_l|| per step"})
    return index


def print_summary(title, summary):
    print(title)
    print(f"{'rule':<21}{'final loss':>12}{'acc':>7}{'test acc':>10}{'rel err':>10}{'cosine':>9}{'wall s':>8}")
    for k, rule in enumerate(summary["rule"]):
        print(f"{rule:<21}{summary['final_loss'][k]:>12.4e}{summary['final_accuracy'][k]:>7.3f}"
              f"{summary['test_accuracy'][k]:>10.3f}{summary['update_relative_error'][k]:>10.2e}"
              f"{summary['update_cosine'][k]:>9.5f}{summary['seconds'][k]:>8.2f}")
    print("rel err, cosine: the last minibatch's update against the backprop gradient at the same parameters")


@reports_write_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        check_options(args)
        symmetric = args.inputs == "symmetric" or (args.inputs == "auto" and args.activation == "tanh")
        task = make_task(args.task, args.n_samples, args.seed, symmetric)
        n_in, n_out = task.x.shape[1], task.targets.shape[1]
        if args.sizes[0] != n_in or args.sizes[-1] != n_out:
            raise ValidationError(f"--sizes {'-'.join(map(str, args.sizes))} does not fit the task {args.task!r}: "
                                  f"it needs {n_in} inputs and {n_out} outputs, e.g. {n_in}-32-32-{n_out}")
        template = PCNetwork(args.sizes, activation=args.activation, seed=args.seed)
        theta0 = template.theta.copy()
        options = inference_options(args)
        # The learning rate is checked here, by building the optimizer once, not after train_pc.h5 exists.
        OPTIMIZERS[args.optimizer](template, args.lr)
        idx = np.unique(np.linspace(0, len(task.x) - 1, min(RECORDED_SAMPLES, len(task.x))).round().astype(int))
    except ValidationError as exc:
        fail(f"{exc}")

    config = {"scenario": "train_pc", "task": args.task, "n_samples": len(task.x),
              "inputs": "symmetric" if symmetric else "unit", "sizes": args.sizes, "activation": args.activation,
              "rules": args.rules, "output_variance": args.output_variance, "epochs": args.epochs,
              "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr, "seed": args.seed,
              "recorded_samples": idx, **options.describe()}
    log_path = args.out / "train_pc.h5"
    try:
        writable_folder("--out", args.out)
        log = TrajectoryLog(log_path, config, network=template, overwrite=args.overwrite)
    except (FileExistsError, ValidationError) as exc:
        fail(f"{exc}")

    # A second draw of the same distribution: the training accuracy alone cannot show overfitting.
    test = None if args.task == "xor" else make_task(args.task, args.n_samples, args.seed + 1000, symmetric)
    histories, networks = {}, {}
    summary = {"rule": [], "final_loss": [], "final_accuracy": [], "test_accuracy": [],
               "update_relative_error": [], "update_cosine": [], "seconds": []}
    with log:
        for rule in args.rules:
            net = make_network(rule, args.sizes, args.activation, theta0, args.output_variance)
            last = LastStep(net)
            start = time.perf_counter()
            history = train(net, task, rule, OPTIMIZERS[args.optimizer](net, args.lr), args.epochs, args.batch_size,
                            options=options, seed=args.seed, step_callback=last,
                            callback=lambda epoch, row, rule=rule: log.append_row(f"history_{rule}", row))
            seconds = time.perf_counter() - start
            rel, cos = update_vs_backprop(rule, net, last, task)
            record_inference(log, rule, net, task, idx, options)
            histories[rule], networks[rule] = history, net
            summary["rule"].append(rule)
            summary["final_loss"].append(history.loss[-1])
            summary["final_accuracy"].append(history.accuracy[-1])
            summary["test_accuracy"].append(float("nan") if test is None else
                                            evaluate(net, test.x, test.labels, test.targets, options)["accuracy"])
            summary["update_relative_error"].append(rel)
            summary["update_cosine"].append(cos)
            summary["seconds"].append(seconds)
        log.record_table("summary", summary, attrs={"test_accuracy": "NaN: no test set (XOR)",
                                                    "update_relative_error": "NaN: no update (0 epochs)"})

    stop = f"tol {options.atol:g}" if options.stop_at_steady_state else "no early stop"
    title = (f"{args.task}: {'-'.join(map(str, args.sizes))} {args.activation}, "
             f"{args.optimizer} lr={args.lr:g}, batch {args.batch_size}; inference {args.integrator}"
             f"{'' if options.step() is None else f' dt={options.step():g}'}, ≤{args.inference_steps} steps, "
             f"{stop}; pc-strict σ_L²={args.output_variance:g}")
    figures = [plot_training_curves(histories, args.out / "curves.png", title=title)]
    if args.task != "xor":
        predictors = {rule: (lambda x, net=net: net.feedforward(x)[:, net.output_slice])
                      for rule, net in networks.items()}
        figures.append(plot_decision_regions(predictors, task.x, task.labels, args.out / "decision.png",
                                             title=f"decision regions after training — {title}"))

    print_summary(title, summary)
    print(f"log: {log_path}\nfigures: {', '.join(str(f) for f in figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
