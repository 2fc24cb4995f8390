"""Teacher-student nonlinear regression with the dendritic error microcircuit, beside backprop on the same network.

Sacramento et al. (2018)'s first experiment: a student microcircuit learns
to reproduce the input-output map of a random teacher network of the same
form. Here the teacher is the feedforward pass u^_k = c_k phi(u^_{k-1}) W_k of
a random microcircuit (``--teacher-seed``, its weights times
``--teacher-gain``); inputs are uniform in [0, 1].

With ``--data mnist`` (or ``fashion-mnist``) the student is 784-500-10 and
learns the images' one-hot targets instead (Sacramento et al.'s MNIST
experiment), and the test error of the output's argmax is reported too.

1. **Interneurons first** (``--pretrain-steps``): without teaching, only the
   interneuron weights (IP, PI) learn, until the apical dendrites fall
   silent: the self-predicting state. The table ``pretraining`` logs the
   mean apical mismatch 1/2 ||v_A||^2 of held-out inputs.
2. **Learning** (``--epochs``): each minibatch settles free, then with the
   output nudged towards the teacher's output by the teaching conductance
   ``--beta``; the forward weights W move by the dendritic prediction error
   at the nudged state, the interneurons keep learning. The top-down
   weights B stay fixed (``--top-down random``: the forward weights must
   come to align with them, as in feedback alignment; ``transpose``: B
   starts at W^T).
3. **Backprop** trains a copy of the student's feedforward pass from the
   same weights, minibatches and rate.

After every epoch the table ``epochs`` gets the test loss 1/2 ||u_N - y||^2 of
the microcircuit (its output at the free steady state) and of backprop, the
angle between the microcircuit's update and backprop's per layer, and the
apical mismatch; ``learning.png`` plots them. One free and nudged relaxation
of a few test inputs is recorded in ``log.h5``. ::

    python scenarios/microcircuit_regression.py --out runs/microcircuit

References
----------
.. [1] J. Sacramento, R. Ponte Costa, Y. Bengio, W. Senn, "Dendritic cortical
       microcircuits approximate the backpropagation algorithm", NeurIPS (2018).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dynsim.cli.argtypes import layer_sizes
from dynsim.datasets.idx import DATASETS, DatasetError, load
from dynsim.learning.microcircuit_plasticity import microcircuit_gradient, microcircuit_updates
from dynsim.networks.microcircuit import DendriticMicrocircuit
from dynsim.plots._figure import save_figure
from dynsim.references import alignment_angles
from dynsim.relax.phases import SettleOptions, settle
from dynsim.training.optimizers import Adam
from dynsim.training.run_folder import RunFolderError, open_run_log
from dynsim.validation import (DivergenceError, ValidationError, fail, positive_int, real_scalar, reports_write_errors,
                               writable_folder)

RECORDED = 4
"""Test inputs whose free and nudged relaxations are recorded after training."""


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="teacher", choices=["teacher", *sorted(DATASETS)],
                   help="'teacher': the teacher-student regression; 'mnist' or 'fashion-mnist': the images "
                        "regressed onto one-hot targets (Sacramento et al.'s MNIST experiment), test error reported")
    p.add_argument("--data-dir", type=Path, default=None, help="folder of the IDX files (default: $DYNSIM_DATA)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.add_argument("--sizes", type=layer_sizes(3, "--sizes", "30-50-10"), default=None,
                   help="layer sizes of teacher and student, input first (default 30-50-10; 784-500-10 for images)")
    p.add_argument("--activation", default="logistic", choices=["logistic", "tanh", "gelu", "relu"],
                   help="phi of the input and hidden layers (the output is linear)")
    p.add_argument("--top-down", default="random", choices=["random", "transpose"],
                   help="the fixed top-down weights B: random, or W^T at the start")
    p.add_argument("--beta", type=float, default=0.1, help="teaching conductance of the output")
    p.add_argument("--subtract-free", action="store_true",
                   help="read the forward weights' changes as nudged minus free state (an EP-like contrast) instead "
                        "of at the nudged state alone (the paper's rule)")
    p.add_argument("--lr", type=float, default=0.1, help="rate of the forward weights (and of backprop)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"],
                   help="of the forward weights and of backprop (the interneurons keep their plasticity rule "
                        "at --lr-interneurons)")
    p.add_argument("--lr-interneurons", type=float, default=0.05, help="SGD rate of the interneuron weights")
    p.add_argument("--pretrain-steps", type=int, default=2000, help="minibatches of interneuron learning first")
    p.add_argument("--start", default="learned", choices=["learned", "exact"],
                   help="'learned': the interneurons reach the self-predicting state by their own plasticity "
                        "(--pretrain-steps); 'exact': IP and PI are set to it (IP = (g_lk + g_D) / g_D c W, PI = -B) "
                        "before that")
    p.add_argument("--epochs", type=int, default=30, help="epochs of learning with teaching")
    p.add_argument("--batch-size", type=int, default=20, help="minibatch size")
    p.add_argument("--train-size", type=int, default=1000, help="training inputs")
    p.add_argument("--test-size", type=int, default=500, help="test inputs")
    p.add_argument("--seed", type=int, default=0, help="student weights, data and minibatch order")
    p.add_argument("--teacher-seed", type=int, default=1, help="teacher weights")
    p.add_argument("--teacher-gain", type=float, default=4.0,
                   help="the teacher's weights times this: at 1 its hidden rates barely leave the linear range of "
                        "phi and the map is nearly linear")
    p.add_argument("--out", type=Path, default=Path("runs/microcircuit"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    return p


def check(args):
    if args.sizes is None:
        args.sizes = [30, 50, 10] if args.data == "teacher" else [784, 500, 10]
    if args.data != "teacher" and (args.sizes[0] != 784 or args.sizes[-1] != 10):
        raise ValidationError(f"--sizes must start with 784 and end with 10 for --data {args.data}, got "
                              f"{'-'.join(map(str, args.sizes))}")
    if args.data != "teacher" and not (args.train_size <= 50000 and args.test_size <= 10000):
        raise ValidationError(f"--train-size must be at most 50000 and --test-size at most 10000 for --data "
                              f"{args.data} (10,000 training images are held out), got {args.train_size} and "
                              f"{args.test_size}")
    for name in ("pretrain_steps", "epochs"):
        positive_int("--" + name.replace("_", "-"), getattr(args, name), minimum=0)
    for name in ("batch_size", "train_size", "test_size"):
        positive_int("--" + name.replace("_", "-"), getattr(args, name))
    for name in ("seed", "teacher_seed"):
        positive_int("--" + name.replace("_", "-"), getattr(args, name), minimum=0)
    for name in ("beta", "lr", "lr_interneurons", "teacher_gain"):
        real_scalar("--" + name.replace("_", "-"), getattr(args, name), 0.0, np.inf, low_open=True, high_open=True)
    if args.test_size < RECORDED:
        raise ValidationError(f"--test-size must be at least {RECORDED} (the recorded relaxations), "
                              f"got {args.test_size}")


def blocks_of(net, prefixes):
    return [sl for name, sl in net.parameter_blocks().items() if name.startswith(prefixes)]


def relaxed(net, x, options, what):
    """The free steady state of ``x``; a clear stop (no silent use of an unsettled state) when it is not reached."""
    free = settle(net, x, options=options)
    if not free.converged:
        raise DivergenceError(f"{what}: the free relaxation did not settle ({free.integration.message}); lower "
                              "the learning rates")
    return free


def test_loss(net, x, y, options, what, labels=None):
    """Mean 1/2 ||u_N - y||^2 at the free steady state, the mean apical mismatch there, and the error rate of the
    output's argmax against ``labels`` (NaN without)."""
    free = relaxed(net, x, options, what)
    error = float("nan") if labels is None else float(np.mean(np.argmax(net.output(free.state), 1) != labels))
    return float(np.mean(net.cost(free.state, y))), float(np.mean(free.energy)), error


def plot(pretraining, rows, out, title):
    fig = Figure(figsize=(13.0, 4.0), layout="constrained")
    ax_pre, ax_loss, ax_angle = fig.subplots(1, 3)
    ax_pre.semilogy(pretraining["step"], pretraining["apical"], color="C2")
    ax_pre.set_xlabel("interneuron learning step")
    ax_pre.set_ylabel("mean 1/2 ||v_A||^2 (held-out inputs)")
    ax_pre.set_title("1. interneurons first: the apical dendrites fall silent", fontsize=9)
    epochs = [r["epoch"] for r in rows]
    ax_loss.semilogy(epochs, [r["microcircuit_test_loss"] for r in rows], marker="o", ms=3, label="microcircuit")
    ax_loss.semilogy(epochs, [r["backprop_test_loss"] for r in rows], marker="s", ms=3, label="backprop")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("test loss 1/2 ||u_N - y||^2")
    ax_loss.set_title("2. learning with teaching", fontsize=9)
    ax_loss.legend(fontsize=8)
    for name in [k for k in rows[0] if k.startswith("angle_W_")]:
        ax_angle.plot(epochs[1:], [r[name] for r in rows[1:]], marker="o", ms=3, label=name[6:])
    ax_angle.axhline(90.0, color="k", lw=0.8, ls=":")
    ax_angle.set_xlabel("epoch")
    ax_angle.set_ylabel("angle to backprop's update (degrees)")
    ax_angle.set_ylim(0.0, 100.0)
    ax_angle.legend(fontsize=8)
    for ax in (ax_pre, ax_loss, ax_angle):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)


@reports_write_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        check(args)
        writable_folder("--out", args.out)
    except ValidationError as exc:
        fail(f"{exc}")
    rng = np.random.default_rng(args.seed)
    images = None
    if args.data != "teacher":
        try:
            splits = load(args.data, data_dir=args.data_dir, download=not args.no_download)
            images = splits.as_dict(args.train_size, args.test_size)
        except (ValidationError, DatasetError) as exc:
            fail(f"{exc}")
    teacher = DendriticMicrocircuit(args.sizes, activation=args.activation, seed=args.teacher_seed)
    for sl in blocks_of(teacher, ("W_",)):
        teacher.theta[sl] *= args.teacher_gain
    student = DendriticMicrocircuit(args.sizes, activation=args.activation, top_down=args.top_down, seed=args.seed)
    if args.start == "exact":
        student.self_predicting()
    backprop = DendriticMicrocircuit(args.sizes, activation=args.activation, theta=student.theta.copy())
    n_in = args.sizes[0]
    out_cols = teacher.output_slice
    if images is None:
        x_train = rng.uniform(0, 1, (args.train_size, n_in))
        x_test = rng.uniform(0, 1, (args.test_size, n_in))
        y_train = teacher.feedforward(x_train)[:, out_cols]
        y_test = teacher.feedforward(x_test)[:, out_cols]
        labels = None
    else:
        x_train, y_train = images["train"].x, images["train"].targets
        x_test, y_test, labels = images["test"].x, images["test"].targets, images["test"].labels
    # Euler steps well inside stability (rates up to g_lk + g_B + g_A = 1.9); a settled state to 1e-7.
    options = SettleOptions(integrator="euler", dt=0.2, max_steps=5000, atol=1e-7, rtol=1e-7)
    config = {"scenario": "microcircuit_regression", **{k: (v if not isinstance(v, Path) else str(v))
                                                         for k, v in vars(args).items() if k not in ("out",
                                                                                                     "overwrite")}}
    try:
        log, _, _ = open_run_log(args.out, config, network=student, overwrite=args.overwrite)
    except (FileExistsError, RunFolderError) as exc:
        fail(f"{exc}")
    forward = blocks_of(student, ("W_",))
    interneurons = blocks_of(student, ("IP_", "PI_"))
    pretraining = {"step": [], "apical": []}
    rows = []
    with log:
        # 1. Interneurons first, no teaching.
        start = time.perf_counter()
        for step in range(args.pretrain_steps + 1):
            if step % max(1, args.pretrain_steps // 20) == 0 or step == args.pretrain_steps:
                try:
                    apical = test_loss(student, x_test, y_test, options, f"interneuron step {step}")[1]
                except DivergenceError as exc:
                    fail(f"{exc}")
                pretraining["step"].append(step)
                pretraining["apical"].append(apical)
                log.append_row("pretraining", {"step": step, "apical": apical})
            if step == args.pretrain_steps:
                break
            xb = (rng.uniform(0, 1, (args.batch_size, n_in)) if images is None
                  else x_train[rng.integers(0, x_train.shape[0], args.batch_size)])
            try:
                update = microcircuit_updates(student, xb, relaxed(student, xb, options, f"interneuron step {step}")
                                              .state)
            except DivergenceError as exc:
                fail(f"{exc}")
            for sl in interneurons:
                student.theta[sl] += args.lr_interneurons * update[sl]
        print(f"interneurons: apical mismatch {pretraining['apical'][0]:.3e} -> {pretraining['apical'][-1]:.3e} "
              f"after {args.pretrain_steps} steps ({time.perf_counter() - start:.1f} s)", flush=True)
        # 2. and 3. Learning with teaching, and backprop on the same minibatches.
        student_opt = Adam(student, args.lr) if args.optimizer == "adam" else None
        backprop_opt = Adam(backprop, args.lr) if args.optimizer == "adam" else None

        def step_forward(optimizer, net, gradient):
            """The forward weights' step: SGD, or Adam on a gradient zero outside them (B and the interneurons)."""
            if optimizer is None:
                for sl in forward:
                    net.theta[sl] -= args.lr * gradient[sl]
            else:
                masked = np.zeros_like(gradient)
                for sl in forward:
                    masked[sl] = gradient[sl]
                optimizer.step(net.theta, masked)

        for epoch in range(args.epochs + 1):
            start = time.perf_counter()
            if epoch > 0:
                order = rng.permutation(args.train_size)
                for b0 in range(0, args.train_size, args.batch_size):
                    idx = order[b0:b0 + args.batch_size]
                    try:
                        est = microcircuit_gradient(student, x_train[idx], y_train[idx], beta=args.beta,
                                                    options=options, subtract_free=args.subtract_free)
                    except DivergenceError as exc:
                        fail(f"epoch {epoch}: {exc}")
                    step_forward(student_opt, student, est.gradient)
                    for sl in interneurons:  # the estimate holds minus the interneurons' plasticity at the nudged state
                        student.theta[sl] -= args.lr_interneurons * est.gradient[sl]
                    step_forward(backprop_opt, backprop, backprop.backprop_gradient(x_train[idx], y_train[idx]))
            try:
                mc_loss, apical, mc_error = test_loss(student, x_test, y_test, options, f"epoch {epoch}", labels)
            except DivergenceError as exc:
                fail(f"{exc}")
            bp_out = backprop.feedforward(x_test)[:, out_cols]
            bp_loss = float(np.mean(0.5 * np.sum((bp_out - y_test) ** 2, axis=1)))
            bp_error = float("nan") if labels is None else float(np.mean(np.argmax(bp_out, 1) != labels))
            probe = slice(0, min(200, args.test_size))
            angles = alignment_angles(student, microcircuit_gradient(student, x_test[probe], y_test[probe],
                                                                     beta=args.beta, options=options,
                                                                     subtract_free=args.subtract_free).gradient,
                                      student.backprop_gradient(x_test[probe], y_test[probe]))
            row = {"epoch": epoch, "microcircuit_test_loss": mc_loss, "backprop_test_loss": bp_loss,
                   "microcircuit_test_error": mc_error, "backprop_test_error": bp_error,
                   "apical": apical, "seconds": time.perf_counter() - start,
                   **{f"angle_{k}": v for k, v in angles.items() if k.startswith("W_")}}
            rows.append(row)
            log.append_row("epochs", row)
            angle_text = "  ".join(f"{k[6:]} {v:5.1f}" for k, v in row.items() if k.startswith("angle_"))
            errors = ("" if labels is None else
                      f"test error microcircuit {100 * mc_error:5.2f} %  backprop {100 * bp_error:5.2f} %  ")
            print(f"epoch {epoch:3d}  {errors}test loss microcircuit {mc_loss:.3e}  backprop {bp_loss:.3e}  "
                  f"angles {angle_text}  apical {apical:.1e}  {row['seconds']:5.1f} s", flush=True)
        record = SettleOptions(integrator="euler", dt=0.2, max_steps=5000, atol=1e-7, rtol=1e-7, record_every=5)
        xr, yr = x_test[:RECORDED], y_test[:RECORDED]
        free = settle(student, xr, target=yr, options=record)
        nudged = settle(student, xr, s0=free.state, target=yr, beta=args.beta, options=record, phase="nudged")
        log.record_relaxation([free, nudged], label="after training", x=xr, target=yr)
    rule = "nudged - free" if args.subtract_free else "at the nudged state"
    task = "teacher-student regression" if images is None else f"{args.data} (one-hot regression)"
    title = (f"{task} {'-'.join(map(str, args.sizes))} {args.activation}, top-down "
             f"{args.top_down}, beta {args.beta:g} ({rule}), lr {args.lr:g}, {args.train_size} inputs")
    figure = plot(pretraining, rows, args.out / "learning.png", title)
    first, last = rows[0], rows[-1]
    print(f"\n{title}\ntest loss: microcircuit {first['microcircuit_test_loss']:.3e} -> "
          f"{last['microcircuit_test_loss']:.3e}, backprop {first['backprop_test_loss']:.3e} -> "
          f"{last['backprop_test_loss']:.3e} after {args.epochs} epochs")
    if labels is not None:
        best = min(r["microcircuit_test_error"] for r in rows)
        print(f"test error: microcircuit {100 * last['microcircuit_test_error']:.2f} % (best {100 * best:.2f} %), "
              f"backprop {100 * last['backprop_test_error']:.2f} % (Sacramento et al. 2018: about 2 % on MNIST)")
    print(f"log: {args.out / 'log.h5'}\nfigure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
