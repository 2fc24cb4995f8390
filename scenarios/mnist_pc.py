"""Train a predictive coding network on MNIST or Fashion-MNIST beside exact backprop on the same network.

The pcx benchmark network (Pinchetti et al.): 784-128-128-128-10, minibatch
128, Adam at 3e-4 with pcx's schedule (warm-up to 1.1 times over the first
10 % of the steps, cosine decay to 0.1 times), 25 epochs, parameters
uniform in +-1/sqrt(fan-in). Each rule asked for ('pc-strict',
'pc-fixed-prediction', 'pc-zil', 'bp') trains a fresh network from the same
initial parameters with the same minibatch order, so the rules differ only
in their gradient estimate. 'pc-strict' relaxes the hidden activities for
``--inference-steps`` Euler steps of size ``--dt`` with the output clamped
to the target and reads the local Hebbian update (Whittington & Bogacz
2017); 'pc-zil' is Z-IL (Song et al. 2020: L - 1 unit steps, each layer's
update read at its own step), which equals backprop by construction; 'bp'
is backprop on the feedforward pass, which is also the network's
prediction for every rule. 'fa' and 'dfa' are feedback alignment
(Lillicrap et al. 2016) and direct feedback alignment (Nokland 2016): the
output error reaches the hidden layers through fixed random matrices
instead of the transposed forward weights. 'dtp' is difference target
propagation (Lee et al. 2015): targets carried down through learned inverses
with the difference correction, each layer trained towards its target, the
inverses trained to undo noisy forward steps (``--dtp-step``, ``--dtp-noise``);
``--dtp-top gradient --dtp-space rate`` is the formulation of Lee et al.'s code
(a gradient step on the last hidden layer; targets and inverses on the rates).

``--conv 32,64`` puts convolutional stages before the dense layers (each a
``--kernel`` convolution then ``--pool`` pooling of side 2; no dense hidden
layers unless ``--hidden`` names some): a
:class:`~dynsim.networks.conv_pc.ConvPCNetwork`, trained by the PC rules and
'bp' (feedback alignment and DTP are dense-only).

``--device cuda`` (or ``cpu``, ``cuda:1``; the torch extra) trains
'pc-strict' and 'pc-fixed-prediction', dense or ``--conv``, on the torch
backend (:func:`dynsim.backends.torch.fit.fit_on_device`): the data go to
the device once, and after each epoch the host receives the parameters for
the log, the alignment angles and the checkpoint. The epochs, minibatch
order, log and checkpoints are the default Numba path's, so a run started
on a GPU continues with ``--resume`` on the CPU and back; ``--cuda-graph``
replays each training step as one CUDA graph.

The default inference is pcx's regime: a few small steps (5 x 0.05) from
the feedforward pass. Each step carries the output error one layer further
down, so after a few small steps every layer's update points along its
backprop gradient (per-layer cosines 0.987-0.999 on an MNIST minibatch at
initialisation), at a scale that shrinks with depth and that Adam's
per-parameter normalisation removes. Longer inference moves away from that
direction before it settles (20 x 0.1: cosines 0.92-0.95; settled, with
equal variances: 0.87-0.95).

Data: as in ``scenarios/mnist_ep.py`` (``--data-dir``, ``$DYNSIM_DATA``,
``data/``; downloaded when missing unless ``--no-download``); 50,000
training, 10,000 validation, 10,000 test images. Written to ``--out``:

- ``log.h5``: the configuration; per rule a table ``epochs_<rule>`` (loss,
  train / validation / test error, mean inference steps, seconds, examples
  per second; epoch 0 before training) and, after training, one inference
  relaxation of a few test images with its whole trajectory;
- per rule but 'bp' a table ``alignment_<rule>``: after every epoch, the
  angle in degrees between the rule's update and backprop's, per weight
  matrix, on the first 1,000 held-out images (Lillicrap et al. 2016, Fig. 2);
- ``checkpoint_<rule>.h5`` after every epoch (``--resume`` continues);
- ``errors.png``: test error of each rule against epoch, with pcx's figures;
- ``alignment.png``: the angles against epoch, one panel per weight matrix.

It prints one line per epoch and a final table with the paper's numbers
(pcx, MNIST: PC 98.42 % / BP 98.46 %; Fashion-MNIST: 89.88 % / 89.83 %). ::

    python scenarios/mnist_pc.py --out runs/mnist_pc
    python scenarios/mnist_pc.py --dataset fashion-mnist --out runs/fashion_pc
    python scenarios/mnist_pc.py --dataset fashion-mnist --conv 32,64 --epochs 10 --out runs/fashion_conv_pc
    python scenarios/mnist_pc.py --rules fa,dfa,dtp,bp --out runs/mnist_no_transport
    python scenarios/mnist_pc.py --dataset fashion-mnist --conv 32,64 --device cuda --cuda-graph --out runs/gpu_pc

References
----------
.. [1] J. C. R. Whittington, R. Bogacz, "An Approximation of the Error
       Backpropagation Algorithm in a Predictive Coding Network with Local
       Hebbian Synaptic Plasticity", Neural Computation 29(5) (2017).
.. [2] L. Pinchetti et al., "Benchmarking Predictive Coding Networks -- Made
       Simple", ICLR (2025) (pcx; the 784-128-128-128-10 benchmark).
.. [3] T. P. Lillicrap et al., "Random synaptic feedback weights support error
       backpropagation for deep learning", Nature Communications 7:13276 (2016).
.. [4] A. Nokland, "Direct Feedback Alignment Provides Learning in Deep Neural
       Networks", NeurIPS (2016).
.. [5] D.-H. Lee, S. Zhang, A. Fischer, Y. Bengio, "Difference Target
       Propagation", ECML PKDD (2015).
.. [6] B. Millidge, A. Tschantz, C. L. Buckley, "Predictive Coding
       Approximates Backprop along Arbitrary Computation Graphs", Neural
       Computation 34(6) (2022) (convolutional PC).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dynsim.cli.argtypes import add_autocast_argument, check_autocast, choice_list, layer_sizes, number_list
from dynsim.datasets.idx import DATASETS, DatasetError, load
from dynsim.io.log import read_log
from dynsim.learning import gradient_estimate
from dynsim.learning.predictive_coding import pc_gradient, zil_gradient
from dynsim.networks import Architecture, ConvPCNetwork, DTPNetwork
from dynsim.networks.dtp import TARGET_SPACES, TOP_TARGETS
from dynsim.networks.pc import PCNetwork
from dynsim.plots._figure import save_figure
from dynsim.plots.rules import plot_alignment
from dynsim.references import alignment_angles
from dynsim.relax.phases import SettleOptions
from dynsim.training.checkpoint import CheckpointError, checkpoint_exists
from dynsim.training.loop import TrainingDivergedError, fit
from dynsim.training.optimizers import SGD, Adam
from dynsim.training.run_folder import RunFolderError, open_run_log
from dynsim.training.schedules import SCHEDULES, make_schedule
from dynsim.validation import (ValidationError, WriteError, check_memory, fail, layered_bytes, positive_int,
                               real_scalar, reports_write_errors, writable_folder)

RULES = ("pc-strict", "pc-fixed-prediction", "pc-zil", "bp", "fa", "dfa", "dtp")
DEVICE_RULES = ("pc-strict", "pc-fixed-prediction")
"""The rules ``--device`` trains (those of the torch backend)."""
PAPER = {"mnist": {"pc": 0.9842, "bp": 0.9846}, "fashion-mnist": {"pc": 0.8988, "bp": 0.8983}}
"""Test accuracies of the pcx benchmark (784-128-128-128-10), PC and backprop."""
TARGET = {"mnist": 0.982, "fashion-mnist": 0.890}
"""Accuracy the issue asks of PC on each data set."""
RECORDED_IMAGES = 4
ALIGNMENT_IMAGES = 1000
"""Held-out images on which each rule's update is compared with backprop's after every epoch."""
N_TEST = 10000
"""Test images of MNIST and Fashion-MNIST."""
DTP_OPTIONS = {"dtp_step": 0.1, "dtp_noise": 0.1, "dtp_top": "output", "dtp_space": "state"}
CONV_OPTIONS = {"kernel": 5, "padding": 0, "pool": "max"}
"""Options that shape one rule's network or the --conv stages, and their values when left unset: given without
that rule or --conv, they would be silently ignored, so they are refused instead."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help with defaults, except for options whose default is None: their help says what unset means."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=_HelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=sorted(DATASETS), help="data set")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder of the IDX files (default: $DYNSIM_DATA, else data/)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.add_argument("--validation-size", type=int, default=10000,
                   help="training images held out for validation; 0 trains on all 60,000 (as pcx does) and "
                        "evaluates the test set only")
    p.add_argument("--init", default="fan-in", choices=["fan-in", "glorot"],
                   help="initial parameters: 'fan-in' (weights and biases uniform in +-1/sqrt(fan-in), the default "
                        "of PyTorch's and Equinox's linear layers, pcx's) or 'glorot' (zero biases)")
    p.add_argument("--rules", type=choice_list(RULES, "rule"), default=None,
                   help="comma-separated rules, each trained from the same start (default pc-strict,bp; with "
                        "--device, pc-strict)")
    p.add_argument("--hidden", type=layer_sizes(1, "hidden", "128-128-128"), default=None,
                   help="dense hidden layer sizes (default 128-128-128; with --conv, none: the maps feed the output)")
    p.add_argument("--conv", type=number_list(int, 1, None, "--conv", "16,32"), default=None,
                   help="convolutional stages before the dense layers, their channels (e.g. 16,32): each a "
                        "--kernel convolution (padding --padding) then --pool pooling of side 2 (Millidge et al. "
                        "2022's convolutional PC)")
    p.add_argument("--kernel", type=int, default=None, help="kernel side of the --conv stages (default: 5)")
    p.add_argument("--padding", type=int, default=None, help="zero padding of the --conv stages (default: 0)")
    p.add_argument("--pool", default=None, choices=["max", "avg", "none"],
                   help="pooling after each --conv stage (default: max)")
    p.add_argument("--activation", default="tanh", choices=["tanh", "logistic", "relu", "hard_sigmoid", "gelu"],
                   help="f in mu_l = f(x_{l-1}) W_l + b_l")
    p.add_argument("--inference-steps", type=int, default=5, help="Euler steps of the PC inference")
    p.add_argument("--dt", type=float, default=0.05, help="Euler step of the PC inference")
    p.add_argument("--dtp-step", type=float, default=None,
                   help="'dtp': eta of the top target's step, x_L - eta (x_L - y) on the output or a gradient step of "
                        "eta on the last hidden layer (--dtp-top) (default: 0.1)")
    p.add_argument("--dtp-noise", type=float, default=None,
                   help="'dtp': sigma of the corruption its learned inverses are trained to undo (default: 0.1)")
    p.add_argument("--dtp-top", default=None, choices=list(TOP_TARGETS),
                   help="'dtp': where the targets start: the output's target carried down by a learned inverse "
                        "(default), or (Lee et al.'s code) a gradient step on the last hidden layer through W_L^T, "
                        "which then learns backprop's update")
    p.add_argument("--dtp-space", default=None, choices=list(TARGET_SPACES),
                   help="'dtp': hidden targets, inverses and local losses on the states x_l (default), or (Lee et "
                        "al.) on the rates f(x_l)")
    p.add_argument("--output-variance", type=float, default=1.0,
                   help="sigma_L^2 of 'pc-strict' (other layers 1); its update is multiplied by it")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help="parameter update rule")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate (peak of the schedule: times 1.1)")
    p.add_argument("--schedule", default="warmup-cosine", choices=sorted(SCHEDULES),
                   help="learning-rate schedule over the whole run: 'warmup-cosine' rises from lr to 1.1 lr over "
                        "the first 10 %% of the steps, then decays to 0.1 lr (pcx's); 'exponential' times 0.99 "
                        "per epoch")
    p.add_argument("--batch-size", type=int, default=128, help="minibatch size")
    p.add_argument("--epochs", type=int, default=25, help="epochs")
    p.add_argument("--train-size", type=int, default=None, help="use only the first N training images (smoke runs)")
    p.add_argument("--eval-size", type=int, default=None, help="use only the first N validation and test images")
    p.add_argument("--max-batches", type=int, default=None, help="minibatches per epoch at most (smoke runs)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and minibatch order")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="what the network computes in (parameters, states, gradients, optimizer state): float32 "
                        "is pcx's precision and about twice as fast; float64 for gradient checks; the images are "
                        "loaded in it")
    p.add_argument("--device", default=None,
                   help="train on the torch backend on this device ('cpu', 'cuda', 'cuda:<index>'; needs the torch "
                        "extra): the rules pc-strict and pc-fixed-prediction, the same epochs, log and checkpoints "
                        "as the default Numba path (a run continues on either)")
    add_autocast_argument(p)
    p.add_argument("--cuda-graph", action="store_true",
                   help="with --device cuda: replay each training step as a CUDA graph")
    p.add_argument("--out", type=Path, default=Path("runs/mnist_pc"), help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoints")
    p.add_argument("--overwrite", action="store_true", help="start afresh, replacing the log and checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def check_options(args):
    """Every option checked before anything is loaded or written, sizes against the data set and the memory."""
    positive_int("--inference-steps", args.inference_steps)
    positive_int("--batch-size", args.batch_size)
    positive_int("--epochs", args.epochs, minimum=0)
    positive_int("--seed", args.seed, minimum=0)
    real_scalar("--dt", args.dt, 0.0, np.inf, low_open=True, high_open=True)
    real_scalar("--lr", args.lr, 0.0, np.inf, low_open=True, high_open=True)
    real_scalar("--output-variance", args.output_variance, 0.0, np.inf, low_open=True, high_open=True)
    for name in ("train_size", "eval_size", "max_batches"):
        if getattr(args, name) is not None:
            positive_int("--" + name.replace("_", "-"), getattr(args, name))
    n_images = DATASETS[args.dataset].n_train
    validation = args.validation_size
    if isinstance(validation, bool) or not 0 <= validation <= n_images - 1:
        raise ValidationError(f"--validation-size must be an integer in [0, {n_images - 1}] (the {n_images} "
                              f"training images keep at least one for training), got {validation}")
    n_train = n_images - validation
    if args.train_size is not None and args.train_size > n_train:
        raise ValidationError(f"--train-size must be at most {n_train} (the training images left after "
                              f"--validation-size {validation}), got {args.train_size}")
    n_eval = min(validation, N_TEST) if validation else N_TEST
    if args.eval_size is not None and args.eval_size > n_eval:
        raise ValidationError(f"--eval-size must be at most {n_eval} (the images of the smaller held-out split), "
                              f"got {args.eval_size}")
    if args.resume and args.overwrite:
        raise ValidationError("--resume and --overwrite exclude each other")
    if args.rules is None:
        args.rules = ["pc-strict"] if args.device is not None else ["pc-strict", "bp"]
    options_of("dtp" in args.rules, DTP_OPTIONS, args,
               f"to the rule dtp, which --rules {','.join(args.rules)} does not train", "add dtp to --rules")
    options_of(args.conv is not None, CONV_OPTIONS, args, "to the --conv stages, and none is given", "give --conv")
    real_scalar("--dtp-step", args.dtp_step, 0.0, np.inf, low_open=True, high_open=True)
    real_scalar("--dtp-noise", args.dtp_noise, 0.0, np.inf, low_open=True, high_open=True)
    if args.cuda_graph and args.device is None:
        raise ValidationError("--cuda-graph replays training steps on a CUDA device: give --device cuda")
    check_autocast(args.autocast, args.device, args.dtype)
    if args.device is not None:
        from dynsim.backends.torch._torch import resolve_device  # an ImportError naming the extra without torch

        device = resolve_device(args.device)
        if args.cuda_graph and device.type != "cuda":
            raise ValidationError(f"--cuda-graph needs a CUDA device, got --device {args.device}")
        host_only = [rule for rule in args.rules if rule not in DEVICE_RULES]
        if host_only:
            raise ValidationError(f"--rules {','.join(host_only)}: on --device the torch backend trains "
                                  f"{', '.join(DEVICE_RULES)}; drop them or --device")
    itemsize = np.dtype(args.dtype).itemsize
    batch = min(args.batch_size, args.train_size or n_train)
    if args.hidden is None:
        args.hidden = [] if args.conv else [128, 128, 128]
    data_bytes = (n_images + N_TEST) * (784 + 10) * itemsize
    if args.conv is None:
        # The images in memory, and per rule's network its parameters, gradient, optimizer moments, feedback, start.
        check_memory("--hidden and --batch-size", layered_bytes([784, *args.hidden, 10], batch, itemsize, copies=6)
                     + data_bytes, f"a {'-'.join(map(str, [784, *args.hidden, 10]))} network trained on minibatches "
                                   f"of {batch} {args.dataset} images in {args.dtype}")
        return
    dense_only = sorted(set(args.rules) & {"fa", "dfa", "dtp"})
    if dense_only:
        raise ValidationError(f"--rules {','.join(dense_only)}: feedback alignment and target propagation are "
                              "implemented for dense layers; drop them or --conv")
    positive_int("--kernel", args.kernel)
    positive_int("--padding", args.padding, minimum=0)
    arch = architecture(args)  # a ValidationError naming the stage whose maps vanish
    n_free = sum(g.size for g in arch.groups[1:])
    # Per rule: the buffers of one batch (9 roles of the free state), parameters with gradient and moments.
    check_memory("--conv and --batch-size", 9 * batch * n_free * itemsize + 6 * arch.n_params * itemsize
                 + data_bytes, f"a {describe_architecture(arch)} network trained on minibatches of {batch} "
                               f"{args.dataset} images in {args.dtype}")


def options_of(applies, defaults, args, what, remedy):
    """Refuse ``defaults``' options given where they do not apply, then give the unset ones their defaults.

    ``what`` says what the options apply to and why that is absent, ``remedy`` the other way out than dropping them.

    Raises
    ------
    ValidationError
        Naming every such option given, ``what`` and ``remedy``.
    """
    given = ["--" + name.replace("_", "-") for name in defaults if getattr(args, name) is not None]
    if given and not applies:
        several = len(given) > 1
        raise ValidationError(f"{', '.join(given)} {'apply' if several else 'applies'} only {what}: {remedy} or "
                              f"drop {'them' if several else 'it'}")
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default)


def architecture(args):
    """The --conv network: conv stages with pooling on the (1, 28, 28) images, then --hidden dense layers, 10 outputs."""
    n = len(args.conv)
    pools = {"max": "m", "avg": "a", "none": "i"}[args.pool] * n
    return Architecture.conv_stack((1, 28, 28), args.conv, [args.kernel] * n, pools, paddings=args.padding,
                                   fc=[*args.hidden, 10], activation=args.activation)


def describe_architecture(arch):
    """``1x28x28-16x12x12-...-10``: the groups' shapes joined by '-'."""
    return "-".join("x".join(map(str, g.shape)) for g in arch.groups)


def make_network(rule, sizes, activation, theta, output_variance, dtype=np.float64, arch=None, dtp=None):
    """A rule's network from the shared start ``theta``: dense (``sizes``) or the architecture ``arch``.

    'dtp' gets a :class:`DTPNetwork`: ``dtp`` holds its keyword arguments (target step, noise, seed, init); its
    forward parameters are ``theta``, its inverses drawn from the seed.
    """
    if rule == "dtp":
        net = DTPNetwork(sizes, activation=activation, dtype=dtype, **dtp)
        net.theta[:net.n_forward] = theta
        return net
    n_free = len(sizes) - 1 if arch is None else len(arch.groups) - 1
    variances = [1.0] * (n_free - 1) + [output_variance] if rule == "pc-strict" else None
    if arch is not None:
        return ConvPCNetwork(arch, variances=variances, theta=theta.copy(), dtype=dtype)
    return PCNetwork(sizes, activation=activation, variances=variances, theta=theta.copy(), dtype=dtype)


def plot_test_errors(histories, dataset, out, title):
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = fig.subplots()
    for k, (rule, h) in enumerate(histories.items()):
        ax.plot(h["epoch"][1:], 100 * np.asarray(h["test_error"][1:]), marker="o", ms=3, color=f"C{k}",
                label=f"{rule} test")
        ax.plot(h["epoch"][1:], 100 * np.asarray(h["train_error"][1:]), ls=":", color=f"C{k}", label=f"{rule} train")
    for k, (name, acc) in enumerate(PAPER[dataset].items()):
        ax.axhline(100 * (1 - acc), color="k", ls=["--", "-."][k], lw=1, label=f"pcx {name.upper()} test")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, out)


@reports_write_errors  # a full disk or a read-only folder met during the run: one line naming the file
def main(argv=None):
    args = build_parser().parse_args(argv)
    dtype = np.float32 if args.dtype == "float32" else np.float64
    try:
        check_options(args)
        writable_folder("--out", args.out, create=False)  # a read-only or full --out fails before the data load
        # In the network's dtype from the start: no conversion per minibatch.
        splits = load(args.dataset, data_dir=args.data_dir, download=not args.no_download,
                      validation_size=args.validation_size, dtype=dtype)
        data = splits.as_dict(args.train_size, args.eval_size)
        sizes = [784, *args.hidden, 10]
        arch = None if args.conv is None else architecture(args)
        # Drawn in float64 whatever --dtype: a float32 run starts from the float64 run's parameters, rounded.
        if arch is None:
            template = PCNetwork(sizes, activation=args.activation, seed=args.seed, init=args.init)
        else:
            template = ConvPCNetwork(arch, seed=args.seed, dtype=np.float64,
                                     init="fan-in" if args.init == "fan-in" else "default")
        theta0 = template.theta.copy()
        options = SettleOptions(integrator="euler", dt=args.dt, max_steps=args.inference_steps,
                                stop_at_steady_state=False)
        (Adam if args.optimizer == "adam" else SGD)(template, args.lr)
    except (ValidationError, DatasetError, WriteError, ImportError) as exc:
        fail(f"{exc}")

    config = {"scenario": "mnist_pc", "dataset": args.dataset, "sizes": sizes, "activation": args.activation,
              "rules": args.rules, "inference_steps": args.inference_steps, "dt": args.dt,
              "output_variance": args.output_variance, "optimizer": args.optimizer, "lr": args.lr,
              "schedule": args.schedule, "init": args.init, "validation_size": args.validation_size,
              "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed,
              "n_train": data["train"].x.shape[0], "n_test": data["test"].x.shape[0], "max_batches": args.max_batches,
              "dtype": args.dtype, "device": args.device or "numba", "autocast": args.autocast}
    if "dtp" in args.rules:
        config.update(dtp_step=args.dtp_step, dtp_noise=args.dtp_noise, dtp_top=args.dtp_top,
                      dtp_space=args.dtp_space)
    if arch is not None:
        config.update(conv=args.conv, kernel=args.kernel, padding=args.padding, pool=args.pool,
                      architecture=describe_architecture(arch))
    log_path = args.out / "log.h5"
    checkpoints = {rule: args.out / f"checkpoint_{rule}.h5" for rule in args.rules}
    try:
        # Each rule trains its own network into the one log: a checkpoint and an epoch table per rule.
        log, logged, _ = open_run_log(args.out, config, network=template, resume=args.resume,
                                      overwrite=args.overwrite,
                                      runs={path.name: f"epochs_{rule}" for rule, path in checkpoints.items()})
    except (FileExistsError, RunFolderError) as exc:
        fail(f"{exc}")
    logged = {rule: logged[f"epochs_{rule}"] for rule in args.rules}

    fingerprint = {k: config[k] for k in ("dataset", "activation", "inference_steps", "dt", "output_variance",
                                          "optimizer", "lr", "max_batches")}
    # Options added later join the fingerprint only away from the behaviour before they existed, so such runs resume.
    fingerprint.update({k: config[k] for k, neutral in (("schedule", "constant"), ("init", "glorot"),
                                                         ("validation_size", 10000), ("dtype", "float64"),
                                                         ("autocast", None))
                        if config[k] != neutral})
    if arch is not None:
        fingerprint.update({k: config[k] for k in ("architecture", "kernel", "padding", "pool")})
    if "dtp" in args.rules:
        fingerprint.update({k: config[k] for k in ("dtp_step", "dtp_noise")})
        fingerprint.update({k: config[k] for k, neutral in (("dtp_top", "output"), ("dtp_space", "state"))
                            if config[k] != neutral})
    schedule = make_schedule(args.schedule)
    held_out = data.get("validation") or data["test"]
    probe_x, probe_t = held_out.x[:ALIGNMENT_IMAGES], held_out.targets[:ALIGNMENT_IMAGES]
    histories = {}
    with log:
        for rule in args.rules:
            net = make_network(rule, sizes, args.activation, theta0, args.output_variance, dtype, arch,
                               dtp=dict(target_step=args.dtp_step, inverse_noise=args.dtp_noise, seed=args.seed,
                                        init=args.init, top_target=args.dtp_top, target_space=args.dtp_space))
            optimizer = (Adam if args.optimizer == "adam" else SGD)(net, args.lr)

            def on_epoch(row, rule=rule, net=net):
                if int(row["epoch"]) not in logged[rule]:
                    if rule != "bp" and not row["replayed"]:
                        # The network as it is after this epoch; replayed rows (on --resume) have no such network.
                        estimate = gradient_estimate(rule, net, probe_x, probe_t, options=options,
                                                     feedback_seed=args.seed)
                        angles = alignment_angles(net, estimate.gradient, net.backprop_gradient(probe_x, probe_t))
                        log.append_row(f"alignment_{rule}", {"epoch": int(row["epoch"]), **{
                            name: angle for name, angle in angles.items() if name.startswith("W_")}})
                    log.append_row(f"epochs_{rule}", {k: v for k, v in row.items() if k != "replayed"})
                    logged[rule].add(int(row["epoch"]))
                if not row["replayed"]:
                    print(f"{rule:<20} epoch {int(row['epoch']):3d}  train {100 * row['train_error']:6.2f} %  "
                          f"validation {100 * row.get('validation_error', np.nan):6.2f} %  "
                          f"test {100 * row['test_error']:6.2f} %"
                          f"  {row['seconds']:6.1f} s  {row['examples_per_s']:.0f} ex/s", flush=True)

            ckpt = checkpoints[rule]
            resume = args.resume and checkpoint_exists(ckpt)
            try:
                if args.device is None:
                    histories[rule] = fit(net, data, rule, optimizer, args.epochs, args.batch_size, options=options,
                                          seed=args.seed, checkpoint=ckpt, resume=resume, fingerprint=fingerprint,
                                          on_epoch=on_epoch, max_batches=args.max_batches,
                                          progress=False if args.quiet else None, lr_schedule=schedule)
                else:  # the same epochs on the torch backend; its checkpoints are fit's (the device is no part)
                    from dynsim.backends.torch.fit import fit_on_device

                    histories[rule] = fit_on_device(net, data, rule, optimizer, args.epochs, args.batch_size,
                                                    device=args.device, options=options, seed=args.seed,
                                                    checkpoint=ckpt, resume=resume, fingerprint=fingerprint,
                                                    on_epoch=on_epoch, max_batches=args.max_batches,
                                                    lr_schedule=schedule, cuda_graph=args.cuda_graph,
                                                    autocast=args.autocast)
            except (TrainingDivergedError, CheckpointError) as exc:
                fail(f"{exc}")
            if rule.startswith("pc-"):  # the rules that relax: their inference, recorded
                idx = slice(0, RECORDED_IMAGES)
                if rule == "pc-zil":  # its own inference: L - 1 unit steps, recorded
                    est = zil_gradient(net, data["test"].x[idx], data["test"].targets[idx])
                else:
                    est = pc_gradient(net, data["test"].x[idx], data["test"].targets[idx],
                                      rule[3:].replace("-", "_"), options=dataclasses.replace(options, record_every=1))
                log.record_relaxation([est.inference], label=f"{rule} after", x=data["test"].x[idx],
                                      target=data["test"].targets[idx])

    shape = '-'.join(map(str, sizes)) if arch is None else describe_architecture(arch)
    title = (f"{args.dataset}: {shape} {args.activation}, {args.optimizer} lr={args.lr:g} "
             f"({args.schedule}), "
             f"batch {args.batch_size}, inference {args.inference_steps} x dt={args.dt:g}")
    figure = plot_test_errors(histories, args.dataset, args.out / "errors.png", title)
    with read_log(log_path) as reader:
        alignment = {rule: reader.table(f"alignment_{rule}") for rule in args.rules
                     if f"alignment_{rule}" in reader.tables}
    if alignment:
        print(f"alignment figure: {plot_alignment(alignment, args.out / 'alignment.png', title)}")
    print(f"\n{title}")
    print(f"{'rule':<22}{'train acc':>10}{'val acc':>10}{'test acc':>10}{'best test':>11}{'seconds':>9}")
    for rule, h in histories.items():
        acc = lambda key: 100 * (1 - h[key][-1]) if key in h else float("nan")  # noqa: E731
        best = 100 * (1 - np.min(h["test_error"][1:])) if len(h["epoch"]) > 1 else float("nan")
        print(f"{rule:<22}{acc('train_error'):>9.2f}%{acc('validation_error'):>9.2f}%{acc('test_error'):>9.2f}%"
              f"{best:>10.2f}%{h['seconds'].sum():>9.0f}")
    paper = PAPER[args.dataset]
    print(f"paper (pcx): PC {100 * paper['pc']:.2f} %, BP {100 * paper['bp']:.2f} % test accuracy; "
          f"target for PC here: >= {100 * TARGET[args.dataset]:.1f} %")
    print(f"log: {log_path}\nfigure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
