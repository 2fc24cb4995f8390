"""Train a vector-field Hopfield network with EP without weight transport, and follow its alignment angles.

The network (784-256-10 by default, hard-sigmoid hidden units, linear
output) relaxes with forward
weights W_k and feedback weights B_k of their own
(:class:`dynsim.networks.vector_field_hopfield.VectorFieldHopfieldNetwork`);
each feedback mode of ``--feedback`` is trained in turn from the same forward
weights (same seed) with centered EP's local update
(:func:`dynsim.learning.vector_field_ep.vf_ep_gradient`) and SGD:

- ``tied``: B_k = W_k^T, symmetric EP (the baseline);
- ``random``: fixed random feedback (feedback alignment; Lillicrap et al. 2016);
- ``kolen-pollack``: B_k receives the transpose of W_k's update, both with
  weight decay ``--weight-decay`` (Akrout et al. 2019);
- ``weight-mirror``: B_k learns from noise driven through W_k, at its own rate
  ``--mirror-lr`` (Akrout et al. 2019).

After each epoch it logs the training, validation and test errors, the
residuals ||ds/dt|| of the relaxations (the dynamics have no energy unless
tied, so nothing guarantees that they settle), and, on a held-out batch of
validation images, per forward block the angle between the VF-EP update and
the true gradient (recurrent backprop of the vector-field network at its
free fixed point, :func:`dynsim.references.vector_field.vf_implicit_gradient`),
the angle to the symmetric network's EP update, and the angle between each
B_k and W_k^T.

Written to ``--out``: ``log.h5`` (the configuration, one table
``epochs_<mode>`` per feedback mode, a row per epoch, epoch 0 before
training, and the free and nudged relaxations of 4 test images before and
after each mode's training, every step), ``checkpoint_<mode>.h5`` after each epoch of each mode
(``--resume`` continues an interrupted run with the weights of an
uninterrupted one), ``angles.png`` (the angles and the validation error against the
epoch, every mode in one figure). ::

    python scenarios/vf_ep.py --out runs/vf_ep
    python scenarios/vf_ep.py --feedback random,kolen-pollack --dataset fashion-mnist --out runs/vf_fashion

References
----------
.. [1] B. Scellier, A. Goyal, J. Binas, T. Mesnard, Y. Bengio, "Generalization
       of Equilibrium Propagation to Vector Field Dynamics", arXiv:1808.04873 (2018).
.. [2] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by
       Drastically Reducing its Gradient Estimator Bias", Front. Neurosci. 15 (2021).
.. [3] M. Akrout, C. Wilson, P. C. Humphreys, T. Lillicrap, D. Tweed, "Deep
       Learning without Weight Transport", NeurIPS (2019).
.. [4] T. P. Lillicrap, D. Cownden, D. B. Tweed, C. J. Akerman, "Random synaptic
       feedback weights support error backpropagation for deep learning",
       Nat. Commun. 7:13276 (2016).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dynsim.cli.argtypes import choice_list, layer_sizes, number_list
from dynsim.datasets.idx import DatasetError, load
from dynsim.learning.vector_field_ep import VF_EP_VARIANTS, vf_evaluate, vf_train_epoch
from dynsim.networks.vector_field_hopfield import FEEDBACK_MODES, VF_ACTIVATIONS, VectorFieldHopfieldNetwork
from dynsim.plots._figure import save_figure
from dynsim.references.vector_field import vf_alignment
from dynsim.relax.phases import SettleOptions
from dynsim.relax.vector_field import settle_vector_field
from dynsim.training.checkpoint import Checkpoint, CheckpointError, checkpoint_exists, load_checkpoint, save_checkpoint
from dynsim.training.optimizers import SGD
from dynsim.training.run_folder import RunFolderError, open_run_log
from dynsim.validation import (DivergenceError, ValidationError, fail, positive_int, real_scalar, reports_write_errors,
                               writable_folder)

DATASETS = ("mnist", "fashion-mnist")
SCHEMES = ("fixed_point", "block")
COLOURS = {"tied": "black", "random": "tab:red", "kolen-pollack": "tab:blue", "weight-mirror": "tab:green"}
RECORDED_IMAGES = 4
"""Test images whose free and nudged relaxations are recorded before and after each mode's training."""


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=DATASETS, help="data set")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder of the IDX files (default: $DYNSIM_DATA, else data/)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.add_argument("--feedback", type=choice_list(FEEDBACK_MODES, "feedback mode"),
                   default=["tied", "random", "kolen-pollack", "weight-mirror"],
                   help="feedback modes to train, one after the other (comma list)")
    p.add_argument("--hidden", type=layer_sizes(1, "hidden", "256"), default=[256],
                   help="hidden layer sizes, e.g. 256 or 256-128")
    p.add_argument("--activation", default="hard_sigmoid", choices=VF_ACTIVATIONS, help="activation of every layer")
    p.add_argument("--output-activation", default="linear", choices=VF_ACTIVATIONS + ("linear",),
                   help="activation of the output layer: linear (Scellier 2024) cannot die at a bound as a "
                        "hard-sigmoid output can (a dead output leaves its class always wrong)")
    p.add_argument("--init-gain", type=float, default=0.7,
                   help="initial weights uniform in +-gain/sqrt(fan-in) (Scellier 2024's 0.7); 0 for Glorot's")
    p.add_argument("--variant", default="centered", choices=VF_EP_VARIANTS, help="EP nudging variant")
    p.add_argument("--beta", type=float, default=0.2, help="nudging strength (the sweeps need beta < 1 centered)")
    p.add_argument("--integrator", default="block", choices=SCHEMES,
                   help="relaxation scheme of every phase (one step: one sweep): block (odd then even layers) "
                        "settles the tied network where the synchronous fixed_point may cycle")
    p.add_argument("--free-steps", type=int, default=30, help="free-phase sweeps per minibatch")
    p.add_argument("--nudged-steps", type=int, default=10, help="nudged-phase sweeps")
    p.add_argument("--eval-steps", type=int, default=100,
                   help="most sweeps of the evaluation's free phase (to the steady state, tolerance 1e-5)")
    p.add_argument("--lr", type=number_list(float, 0.0, None, "lr", "0.05,0.05"), default=[0.05, 0.05],
                   help="SGD learning rate per layer (the feedback block B_k takes W_k's)")
    p.add_argument("--weight-decay", type=float, default=0.05,
                   help="kolen-pollack only: weight decay of the feedback B_k and of its partner W_k (k >= 1)")
    p.add_argument("--mirror-samples", type=int, default=1024, help="noise samples of each weight-mirror update")
    p.add_argument("--mirror-lr", type=float, default=0.2,
                   help="weight-mirror only: learning rate of the feedback blocks. Too low and B lags behind "
                        "W^T (at 0.01, 784-256-10 learned markedly worse than tied); the noise of the mirror "
                        "estimate, which grows with the rate, is kept down by --mirror-samples")
    p.add_argument("--batch-size", type=int, default=20, help="minibatch size")
    p.add_argument("--epochs", type=int, default=5, help="epochs per feedback mode")
    p.add_argument("--train-size", type=int, default=10000, help="first N training images")
    p.add_argument("--eval-size", type=int, default=2000, help="first N validation and test images")
    p.add_argument("--angle-batch", type=int, default=100,
                   help="held-out validation images on which the angles to recurrent backprop are measured")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="floating-point type of the network and data (the reference gradient is float64)")
    p.add_argument("--seed", type=int, default=0, help="initial weights, minibatch order, mirror noise")
    p.add_argument("--out", type=Path, default=Path("runs/vf_ep"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoints (one per feedback mode)")
    return p


def check(args):
    """Every option checked before anything is loaded or written; ValidationError otherwise."""
    for name in ("free_steps", "nudged_steps", "eval_steps", "batch_size", "train_size", "eval_size", "angle_batch",
                 "mirror_samples"):
        positive_int("--" + name.replace("_", "-"), getattr(args, name))
    positive_int("--epochs", args.epochs, minimum=0)
    positive_int("--seed", args.seed, minimum=0)
    real_scalar("--beta", args.beta, 0.0, np.inf, low_open=True, high_open=True)
    if args.variant in ("centered", "negative") and not args.beta < 1.0:
        raise ValidationError(f"--beta: the {args.variant} variant nudges with -beta and the sweeps divide by the "
                              f"outputs' curvature 1 - beta: beta must be < 1, got {args.beta}")
    real_scalar("--weight-decay", args.weight_decay, 0.0, np.inf, high_open=True)
    real_scalar("--mirror-lr", args.mirror_lr, 0.0, np.inf, high_open=True)
    real_scalar("--init-gain", args.init_gain, 0.0, np.inf, high_open=True)
    if len(args.lr) != len(args.hidden) + 1:
        raise ValidationError(f"--lr needs one rate per layer ({len(args.hidden) + 1}), got {len(args.lr)}")
    if args.angle_batch > args.eval_size:
        raise ValidationError(f"--angle-batch must be at most --eval-size ({args.eval_size}), got {args.angle_batch}")


def rates(net, mode, args):
    """Learning rate per parameter block: the layer's (B_k takes W_k's), the mirror rate for weight-mirror feedback."""
    layer = net.layer_of_block()
    out = {name: args.lr[layer[name] - 1] for name in net.parameter_blocks()}
    if mode == "weight-mirror":
        out.update({name: args.mirror_lr for name in net.feedback_block_names().values()})
    return out


def block_names(net):
    return [f"W_{net.group_names[k]}_{net.group_names[k + 1]}" for k in range(len(net.group_sizes) - 1)]


def epoch_row(net, epoch, train, validation, test, angle_x, angle_y, args, seconds):
    """One row of the epoch table: errors, residuals, angles."""
    opts = SettleOptions(integrator=args.integrator, max_steps=args.eval_steps, atol=1e-5, rtol=1e-5,
                         not_converged="ignore")
    val = vf_evaluate(net, validation.x, validation.labels, validation.targets, opts)
    tst = vf_evaluate(net, test.x, test.labels, test.targets, opts)
    # The reference is the fixed point's gradient: settle the angle batch tightly (block sweeps, many of them).
    ref_opts = SettleOptions(integrator="block", max_steps=5000, atol=1e-8, rtol=1e-8, not_converged="ignore")
    align = vf_alignment(net, angle_x, angle_y, beta=args.beta, variant=args.variant, options=ref_opts)
    row = {"epoch": epoch, "train_loss": train.get("train_loss", np.nan),
           "train_error": train.get("train_error", np.nan), "validation_loss": val["loss"],
           "validation_error": val["error"], "test_error": tst["error"],
           "free_residual": train.get("free_residual", np.nan), "nudged_residual": train.get("nudged_residual", np.nan),
           "eval_residual": max(val["residual"], tst["residual"]),
           "eval_not_converged": val["not_converged"] + tst["not_converged"],
           "reference_residual": float(align.reference.residual.max()), "seconds": seconds}
    for name in block_names(net) + ["all"]:
        row[f"angle_true_{name}"] = align.to_true_gradient[name]
        row[f"angle_symmetric_ep_{name}"] = align.to_symmetric_ep[name]
    for name, angle in net.feedback_angles().items():
        row[f"angle_feedback_{name}"] = angle
    return row


def record_settling(log, net, test, mode, epoch, args, free_opts, nudged_opts):
    """The training's free phase and its nudged phase (+beta) of a few fixed test images, every step kept."""
    x, y = test.x[:RECORDED_IMAGES], test.targets[:RECORDED_IMAGES]
    free = settle_vector_field(net, x, target=y, options=dataclasses.replace(free_opts, record_every=1))
    nudged = settle_vector_field(net, x, s0=free.state, target=y, beta=args.beta, phase="nudged+",
                                 options=dataclasses.replace(nudged_opts, record_every=1))
    return log.record_relaxation([free, nudged], label=f"{mode} epoch {epoch}", x=x, target=y)


def plot_angles(rows, net, out, title):
    """Four panels against the epoch: angle to recurrent backprop, to symmetric EP, B vs W^T, validation error."""
    fig = Figure(figsize=(11, 8), constrained_layout=True)
    axes = fig.subplots(2, 2).ravel()
    styles = ["-", "--", ":", "-."]
    fb_names = [f"B_{net.group_names[k + 1]}_{net.group_names[k]}" for k in range(1, len(net.group_sizes) - 1)]
    for mode, table in rows.items():
        epochs = [r["epoch"] for r in table]
        colour = COLOURS[mode]
        for i, name in enumerate(block_names(net)):
            axes[0].plot(epochs, [r[f"angle_true_{name}"] for r in table], styles[i % 4], color=colour)
            axes[1].plot(epochs, [r[f"angle_symmetric_ep_{name}"] for r in table], styles[i % 4], color=colour)
        for i, name in enumerate(fb_names):
            axes[2].plot(epochs, [r[f"angle_feedback_{name}"] for r in table], styles[i % 4], color=colour,
                         marker="o")
        axes[3].plot(epochs, [100 * r["validation_error"] for r in table], "-", color=colour, marker="o")
    # One legend for the modes (colours), one for the blocks (line styles).
    modes = [Line2D([], [], color=COLOURS[m], label=m) for m in rows]
    forward = [Line2D([], [], color="grey", ls=styles[i % 4], label=n) for i, n in enumerate(block_names(net))]
    feedback = [Line2D([], [], color="grey", ls=styles[i % 4], marker="o", label=f"{n} vs W^T")
                for i, n in enumerate(fb_names)]
    axes[0].set(title="VF-EP update vs recurrent backprop (tied: EP's own bias)", ylabel="angle (degrees)")
    axes[1].set(title="VF-EP update vs symmetric network's EP", ylabel="angle (degrees)")
    axes[2].set(title="feedback B_k vs W_k^T", ylabel="angle (degrees)")
    axes[3].set(title="validation error", ylabel="error (%)")
    for ax in axes[:3]:
        ax.axhline(90, color="grey", lw=0.6)
        ax.set_ylim(0, 100)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(handles=forward, fontsize=7, loc="upper right")
    axes[1].legend(handles=forward, fontsize=7, loc="upper right")
    axes[2].legend(handles=feedback, fontsize=7, loc="upper right")
    axes[3].legend(handles=modes, fontsize=8, loc="upper right")
    fig.suptitle(title)
    return save_figure(fig, out)


@reports_write_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        check(args)
        held = [p for p in (args.out / "log.h5", *(args.out / f"checkpoint_{m}.h5" for m in args.feedback))
                if p.exists()]
        if held and not (args.overwrite or args.resume):
            # Before the data are loaded: refusing takes no time.
            raise ValidationError(f"{args.out} holds a run ({held[0].name} already exists): pass --resume to "
                                  "continue it or --overwrite to replace it")
        sizes = [784, *args.hidden, 10]
        splits = load(args.dataset, data_dir=args.data_dir, download=not args.no_download, dtype=args.dtype)
        data = splits.as_dict(args.train_size, args.eval_size)
        writable_folder("--out", args.out)
    except (ValidationError, DatasetError) as exc:
        fail(f"{exc}")
    train, validation, test = data["train"], data["validation"], data["test"]
    angle_x, angle_y = validation.x[:args.angle_batch], validation.targets[:args.angle_batch]
    free_opts = SettleOptions(integrator=args.integrator, max_steps=args.free_steps, stop_at_steady_state=False)
    nudged_opts = SettleOptions(integrator=args.integrator, max_steps=args.nudged_steps, stop_at_steady_state=False)
    first = VectorFieldHopfieldNetwork(sizes, args.activation, feedback=args.feedback[0], seed=args.seed,
                                       dtype=args.dtype, output_activation=args.output_activation,
                                       init_gain=args.init_gain or None)
    config = {"scenario": "vf_ep", "dataset": args.dataset, "sizes": sizes, "activation": args.activation,
              "output_activation": args.output_activation, "init_gain": args.init_gain,
              "feedback": list(args.feedback), "variant": args.variant, "beta": args.beta,
              "integrator": args.integrator, "free_steps": args.free_steps, "nudged_steps": args.nudged_steps,
              "eval_steps": args.eval_steps, "lr": list(args.lr), "weight_decay": args.weight_decay,
              "mirror_samples": args.mirror_samples, "mirror_lr": args.mirror_lr, "batch_size": args.batch_size,
              "epochs": args.epochs, "n_train": int(train.x.shape[0]), "n_validation": int(validation.x.shape[0]),
              "n_test": int(test.x.shape[0]), "angle_batch": int(angle_x.shape[0]), "dtype": args.dtype,
              "seed": args.seed}
    tables = {mode: f"epochs_{mode.replace('-', '_')}" for mode in args.feedback}
    checkpoints = {mode: args.out / f"checkpoint_{mode}.h5" for mode in args.feedback}
    try:
        log, logged, _ = open_run_log(args.out, config, network=first, resume=args.resume, overwrite=args.overwrite,
                                      runs={checkpoints[m].name: tables[m] for m in args.feedback})
    except (FileExistsError, RunFolderError) as exc:
        fail(f"{exc}")
    # What a resumed run must share with the one that saved (the epoch count may grow).
    fingerprint = {k: v for k, v in config.items() if k not in ("epochs", "feedback")}
    rows = {}
    with log:
        for mode in args.feedback:
            net = VectorFieldHopfieldNetwork(sizes, args.activation, feedback=mode, seed=args.seed, dtype=args.dtype,
                                             output_activation=args.output_activation,
                                             init_gain=args.init_gain or None)
            optimizer = SGD(net, rates(net, mode, args))
            rng = np.random.default_rng(args.seed)
            decay = args.weight_decay if mode == "kolen-pollack" else 0.0
            table = rows[mode] = []
            first_epoch = 0
            if args.resume and checkpoint_exists(checkpoints[mode]):
                try:
                    ckpt = load_checkpoint(checkpoints[mode], {**fingerprint, "feedback": mode})
                except CheckpointError as exc:
                    fail(f"{exc}")
                net.theta = ckpt.theta
                optimizer.load_state_dict(ckpt.optimizer)
                rng.bit_generator.state = ckpt.rng_state
                first_epoch = ckpt.epoch + 1
                # The rows so far travel in the checkpoint (the log is open for writing here): the figure needs them.
                history = ckpt.history
                table.extend({k: float(v[i]) for k, v in history.items()} for i in range(len(history["epoch"])))
                print(f"{mode:<14} resuming after epoch {ckpt.epoch}", flush=True)
            try:
                for epoch in range(first_epoch, args.epochs + 1):
                    start = time.perf_counter()
                    figures = {}
                    if epoch > 0:
                        figures = vf_train_epoch(net, optimizer, train.x, train.targets, train.labels,
                                                 args.batch_size, args.beta, args.variant, free_opts, nudged_opts,
                                                 weight_decay=decay, mirror_samples=args.mirror_samples, rng=rng)
                    row = epoch_row(net, epoch, figures, validation, test, angle_x, angle_y, args,
                                    time.perf_counter() - start)
                    if epoch not in logged[tables[mode]]:
                        log.append_row(tables[mode], row)
                        if epoch in (0, args.epochs):  # a resumed run has recorded the epochs it logged
                            record_settling(log, net, test, mode, epoch, args, free_opts, nudged_opts)
                    table.append(row)
                    # After the row: a run stopped between the two resumes at this epoch and skips its row.
                    save_checkpoint(checkpoints[mode], Checkpoint(
                        epoch=epoch, theta=net.theta.copy(), optimizer=optimizer.state_dict(),
                        rng_state=rng.bit_generator.state, fingerprint={**fingerprint, "feedback": mode},
                        history={k: [r[k] for r in table] for k in row}))
                    fb = ", ".join(f"{v:5.1f}" for v in net.feedback_angles().values())
                    print(f"{mode:<14} epoch {epoch:3d}  train {100 * row['train_error']:6.2f} %  validation "
                          f"{100 * row['validation_error']:6.2f} %  test {100 * row['test_error']:6.2f} %  "
                          f"angle to RBP {row['angle_true_all']:5.1f}  to sym. EP {row['angle_symmetric_ep_all']:5.1f}"
                          f"  B vs W^T {fb or '-':>5}  residual {row['eval_residual']:.1e}  "
                          f"{row['seconds']:5.1f} s", flush=True)
            except DivergenceError as exc:
                fail(f"feedback {mode!r}: {exc}")
    title = (f"{args.dataset}: {'-'.join(map(str, sizes))} {args.activation} ({args.output_activation} output), "
             f"{args.variant} EP β={args.beta:g}, "
             f"{args.integrator} {args.free_steps}/{args.nudged_steps}, {train.x.shape[0]} images")
    figure = plot_angles(rows, first, args.out / "angles.png", title)
    print(f"\n{'feedback':<14}{'validation':>11}{'test':>8}{'angle RBP':>11}{'angle sym':>11}{'B vs W^T':>10}")
    for mode, table in rows.items():
        last = table[-1]
        fb = [v for k, v in last.items() if k.startswith("angle_feedback_")]
        print(f"{mode:<14}{100 * last['validation_error']:>10.2f}%{100 * last['test_error']:>7.2f}%"
              f"{last['angle_true_all']:>11.1f}{last['angle_symmetric_ep_all']:>11.1f}"
              f"{(np.mean(fb) if fb else float('nan')):>10.1f}")
    print(f"log: {args.out / 'log.h5'}\nfigure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
