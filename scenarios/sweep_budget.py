"""How many iterations a trained EP network needs: its update and predictions at short phases against long ones.

A run of ``mnist_ep.py`` fixes its free and nudged iteration counts before
training, and the network it trains settles more slowly as its weights
grow. This scenario takes the run's folder (``log.h5`` for the
configuration, ``checkpoint.h5`` for the weights it has reached, mid-epoch
or after an epoch) and, on held-out images, measures:

1. **the update**: the run's EP rule (its beta, variant, integrator and step)
   with every pair of ``--free-steps`` and ``--nudged-steps``, against the
   same rule with long phases (``--long-free`` and ``--long-nudged``
   iterations), per parameter block: cosine, relative error, sign agreement
   and normalized RMSE, on a minibatch of ``--batch`` images. The reference
   is the rule itself settled, not recurrent backprop: it says what shorter
   phases lose against what the run's rule would give with settled phases
   (``gradient_vs_iterations.py`` compares with recurrent backprop). The
   run's ``ep-random`` rule is measured with its positive sign (the negative
   one is its mirror image);
2. **the predictions**: the class each of ``--images`` held-out images gets
   after each count of ``--free-steps`` from zero, against the class after
   ``--long-free`` iterations, and the classification error of each.

Every phase here starts from zero, as the training of a run without
persistent particles does (``lab-conv``, ``lab-mlp``, the ``dhn-*`` presets).
A run with them (the ``sb-*`` and ``centered-1h`` presets) starts each free
phase from the image's last state, where its counts reach further.

Written to ``--out``: ``budget.h5`` (tables ``updates`` and ``predictions``,
the run's configuration), ``update_cosine.png`` (cosine per block against
the free steps, a line per nudged count) and ``predictions.png``.

Example, beside a training run in ``runs/lab-conv``::

    python scenarios/sweep_budget.py --run runs/lab-conv --data-dir DIR --out runs/lab-conv-budget

References
----------
.. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep
       ConvNets by Drastically Reducing its Gradient Estimator Bias",
       Front. Neurosci. 15 (2021) (centered EP; the iteration counts T1, T2).
.. [2] B. Scellier, M. Ernoult, J. Kendall, S. Kumar, "Energy-based learning
       algorithms for analog computing: a comparative study", NeurIPS (2023)
       (block updates and the number of iterations they need).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # mnist_ep's presets rebuild the run's network

import mnist_ep  # noqa: E402

from dynsim.cli.argtypes import number_list  # noqa: E402
from dynsim.datasets.idx import DatasetError, load  # noqa: E402
from dynsim.experiments.estimator_sweep import sweep_ep_estimates  # noqa: E402
from dynsim.io.log import TrajectoryLog, read_log  # noqa: E402
from dynsim.learning.contrastive import ep_gradient  # noqa: E402
from dynsim.plots.gradients import plot_prediction_budget, plot_sweep  # noqa: E402
from dynsim.relax.phases import free_phase  # noqa: E402
from dynsim.training.checkpoint import CheckpointError, checkpoint_exists, load_checkpoint  # noqa: E402
from dynsim.training.loop import predict  # noqa: E402
from dynsim.validation import ValidationError, fail, positive_int, reports_write_errors, writable_folder  # noqa: E402

SPLITS = ("validation", "test")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", type=Path, required=True,
                   help="folder of an mnist_ep.py run (its log.h5 and checkpoint.h5)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder of the IDX files (default: $DYNSIM_DATA, else data/)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.add_argument("--split", default="validation", choices=SPLITS, help="held-out images to measure on")
    p.add_argument("--batch", type=int, default=100, help="images of the minibatch whose update is compared")
    p.add_argument("--images", type=int, default=2000, help="images whose predictions are compared")
    p.add_argument("--free-steps", type=number_list(int, 1, name="free-steps", example="10,15,30"),
                   default=[5, 10, 15, 20, 30], help="free-phase iteration counts to measure (comma list)")
    p.add_argument("--nudged-steps", type=number_list(int, 1, name="nudged-steps", example="5,10"),
                   default=[3, 5, 10], help="nudged-phase iteration counts to measure (comma list)")
    p.add_argument("--long-free", type=int, default=300, help="iterations of the reference's free phase")
    p.add_argument("--long-nudged", type=int, default=150, help="iterations of each of the reference's nudged phases")
    p.add_argument("--seed", type=int, default=0, help="seed of the images drawn from the split")
    p.add_argument("--out", type=Path, default=Path("runs/sweep_budget"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing budget.h5 in --out")
    return p


def run_network(run):
    """The run's configuration, the network it trains with the checkpoint's weights, and the checkpoint."""
    log_path, checkpoint_path = run / "log.h5", run / "checkpoint.h5"
    if not log_path.exists():
        raise ValidationError(f"--run {run}: no log.h5 there (the folder of an mnist_ep.py run holds log.h5 and "
                              "checkpoint.h5)")
    with read_log(log_path) as log:
        config = dict(log.config)
    if config.get("scenario") != "mnist_ep":
        raise ValidationError(f"--run {run}: its log.h5 was written by {config.get('scenario')!r}, not mnist_ep.py")
    if not config.get("rule", "").startswith("ep-"):
        raise ValidationError(f"--run {run}: its rule is {config.get('rule')!r}; this measures the EP rules "
                              f"({', '.join(r for r in mnist_ep.RULES if r.startswith('ep-'))})")
    if not checkpoint_exists(checkpoint_path):
        raise ValidationError(f"--run {run}: no checkpoint.h5 there yet (mnist_ep.py writes it after each epoch "
                              "and every --checkpoint-minutes within one)")
    ckpt = load_checkpoint(checkpoint_path)
    argv = ["--preset", config["preset"], "--dtype", config["dtype"], "--out", str(run),
            "--output-activation", config["output_activation"], "--integrator", config["integrator"],
            "--dt", repr(config["dt"])]
    if "conv" not in mnist_ep.PRESETS[config["preset"]]:
        argv += ["--hidden", "-".join(map(str, config["sizes"][1:-1]))]
    args = mnist_ep.build_parser().parse_args(argv)
    mnist_ep.resolve(args)
    net = mnist_ep.build_network(args)
    if ckpt.theta.shape != (net.n_params,):
        raise ValidationError(f"--run {run}: checkpoint.h5 holds {ckpt.theta.shape[0]} parameters, the network of "
                              f"its log {net.n_params}")
    net.theta = ckpt.theta.astype(net.dtype)
    # The training's own phases (integrator, step, fixed counts): only their lengths change here.
    free_options, _, _, _ = mnist_ep.settle_options(args)
    return config, net, ckpt, free_options


def predictions(net, x, labels, options, counts, long_steps):
    """Agreement of the class after each count of free steps with the class after ``long_steps``, and errors.

    One free phase from zero, read at each count on its way to ``long_steps``:
    a fixed-step phase continued from its state after k steps is the phase of
    k + m steps from zero, step for step (an adaptive one is restarted at each
    count, since its step size is state the phase does not hand on). Classes
    as the training scores them (:func:`dynsim.training.loop.predict`): a tied
    largest output is no class (-1) and counts as an error; two states that
    both make no decision agree.
    """
    drive = net.input_drive(x)  # constant in every phase here
    continued = options.integrator != "dopri5"
    states, state, done = [], None, 0
    for steps in [*counts, long_steps]:
        length = steps - done if continued else steps
        state = free_phase(net, x, s0=state if continued else None, drive=drive,
                           options=dataclasses.replace(options, max_steps=int(length))).state
        states.append(state)
        done = steps
    long_state = states.pop()
    n_out = net.n_output
    long_class = predict(long_state[:, -n_out:])
    classes = [predict(state[:, -n_out:]) for state in states]
    table = {"free_steps": np.asarray(counts),
             "agreement": np.array([(cls == long_class).mean() for cls in classes]),
             "error": np.array([(cls != labels).mean() for cls in classes]),
             "max_distance": np.array([np.abs(state - long_state).max() for state in states])}
    return table, float((long_class != labels).mean())


@reports_write_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        for flag, value in (("--batch", args.batch), ("--images", args.images), ("--long-free", args.long_free),
                            ("--long-nudged", args.long_nudged)):
            positive_int(flag, value)
        positive_int("--seed", args.seed, minimum=0)
        for flag, counts, long_flag, long_steps in (("--free-steps", args.free_steps, "--long-free", args.long_free),
                                                    ("--nudged-steps", args.nudged_steps, "--long-nudged",
                                                     args.long_nudged)):
            if max(counts) >= long_steps:
                raise ValidationError(f"{flag} must stay below {long_flag} ({long_steps}), the reference's count; "
                                      f"got {max(counts)}")
        config, net, ckpt, free_options = run_network(args.run)
        splits = load(config["dataset"], data_dir=args.data_dir, download=not args.no_download, dtype=net.dtype)
        split = getattr(splits, args.split)
        n = split.x.shape[0]
        if max(args.batch, args.images) > n:
            raise ValidationError(f"--batch and --images must be at most the {n} images of the {args.split} split, "
                                  f"got {args.batch} and {args.images}")
        writable_folder("--out", args.out)
    except (ValidationError, DatasetError, CheckpointError) as exc:
        fail(f"{exc}")

    rng = np.random.default_rng(args.seed)
    pick = rng.choice(n, args.batch, replace=False)
    x, target = split.x[pick], split.targets[pick]
    variant = config["rule"][3:]
    variant = "positive" if variant == "random" else variant
    where = (f"mid-epoch {ckpt.epoch + 1}" if ckpt.partial is not None else f"after epoch {ckpt.epoch}")
    budget_config = {"scenario": "sweep_budget", "run": str(args.run), "run_config": config, "checkpoint": where,
                     "split": args.split, "batch": args.batch, "images": args.images, "seed": args.seed,
                     "long_free": args.long_free, "long_nudged": args.long_nudged, "variant": variant}
    try:
        log = TrajectoryLog(args.out / "budget.h5", budget_config, network=net, overwrite=args.overwrite)
    except (FileExistsError, ValidationError) as exc:
        fail(f"{exc}")
    with log:
        long_free = free_phase(net, x, target=target, options=dataclasses.replace(free_options,
                                                                                   max_steps=args.long_free))
        reference = ep_gradient(net, x, target, config["beta"], variant, free=long_free,
                                nudged_options=dataclasses.replace(free_options, max_steps=args.long_nudged)).gradient
        grid = {"integrator": [config["integrator"]], "dt": [config["dt"]], "free_steps": args.free_steps,
                "nudged_steps": args.nudged_steps, "beta": [config["beta"]], "variant": [variant]}
        updates = sweep_ep_estimates(net, x, target, grid, reference=reference)
        blocks = updates.pop("blocks")
        log.record_table("updates", updates, attrs={"blocks": ",".join(blocks),
                                                    "reference": f"{variant} EP after {args.long_free} free and "
                                                                 f"{args.long_nudged} nudged iterations"})
        images = split.x[:args.images]
        labels = split.targets[:args.images].argmax(1)
        counts = sorted(set(args.free_steps))
        pred, long_error = predictions(net, images, labels, free_options, counts, args.long_free)
        log.record_table("predictions", pred, attrs={"long_steps": args.long_free, "long_error": long_error})
    updates["blocks"] = blocks
    reference_name = f"{args.long_free}/{args.long_nudged}-iteration EP"
    plot_sweep(updates, args.out / "update_cosine.png", x="free_steps", metric="cosine", reference=reference_name,
               title=f"{config['preset']} {where}: {variant} EP (beta {config['beta']:g}) against {reference_name}")
    plot_prediction_budget({**pred, "long_steps": args.long_free, "long_error": long_error},
                           args.out / "predictions.png",
                           title=f"{config['preset']} {where}: {args.images} {args.split} images")

    print(f"{config['preset']} ({config['integrator']}, trained with {config['free_steps']} free / "
          f"{config['nudged_steps']} nudged), weights {where}; {args.split} images")
    print(f"update of {variant} EP, beta {config['beta']:g}, {args.batch} images, against the same rule after "
          f"{args.long_free} free / {args.long_nudged} nudged iterations; cosine per block:")
    print(f"{'free':>5}{'nudged':>7}{'residual':>10}  " + "".join(f"{b[:14]:>15}" for b in blocks))
    for i in range(len(updates["free_steps"])):
        print(f"{updates['free_steps'][i]:>5d}{updates['nudged_steps'][i]:>7d}{updates['free_residual'][i]:>10.1e}  "
              + "".join(f"{c:>15.4f}" for c in updates["cosine"][i]))
    print(f"predictions of {args.images} images against {args.long_free} free iterations "
          f"(error there {100 * long_error:.2f} %):")
    for i, steps in enumerate(pred["free_steps"]):
        print(f"  {steps:>4d} free: same class {100 * pred['agreement'][i]:6.2f} %, error "
              f"{100 * pred['error'][i]:5.2f} %, largest state difference {pred['max_distance'][i]:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
