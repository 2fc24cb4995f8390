"""How close are EP's local updates to backprop's gradient, as a function of the iteration counts?

For a random layered Hopfield network and a batch, this scenario

1. computes the recurrent-backprop gradient of the cost at a tightly converged
   free equilibrium (the reference);
2. sweeps the free-phase iteration count, the nudging variant, beta and the
   integrator, and reports per parameter block the cosine, relative error and
   sign agreement of EP's estimate with the reference; besides ODE
   integrators the sweep runs the relaxation schemes of the EP literature
   (``fixed_point``: synchronous s <- P(s - D^-1 dF/ds); ``block``: odd then
   even layers), one step being one sweep, so the figures show what each
   iteration count costs and gives;
3. runs the GDU check of Ernoult et al. (2019): EP updates over the first k
   Euler steps of the nudged phase against BPTT gradients over the last k
   steps of the free phase, k = 1..K, with their normalized RMSE.

``--conv 4,6 --image 12`` runs the same study on a convolutional Hopfield
network (3x3 kernels and 2x2 max pooling per stage, then ``--sizes``' last
entry as outputs): the reference is recurrent backprop by conjugate
gradients on Hessian-vector products, with max pooling linearised at the
free state's winners; the sweep runs the relaxation schemes (a conv net has
no ODE path here), and the GDU check steps by fixed-point sweeps, the Euler
step of dt = 1 (``--gdu-free-steps`` and ``--gdu-nudged-steps`` count
sweeps; ``--dt`` does not apply).

Outputs in ``--out``: ``gradients.h5`` (tables ``sweep`` and ``gdu``, the
reference relaxation), ``cosine_vs_free_steps.png``,
``relative_error_vs_free_steps.png`` and ``gdu.png``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dynsim.cli.argtypes import choice_list, number_list
from dynsim.experiments.estimator_sweep import reference_gradient, sweep_ep_estimates
from dynsim.io.log import TrajectoryLog
from dynsim.learning.contrastive import EP_VARIANTS, ep_gradient
from dynsim.networks.architecture import Architecture
from dynsim.networks.conv_hopfield import ConvHopfieldNetwork
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.plots.gradients import plot_gdu, plot_sweep
from dynsim.references.compare import gdu_check
from dynsim.relax.block_relaxation import RELAXATION_SCHEMES
from dynsim.relax.phases import SETTLE_METHODS, SettleOptions
from dynsim.validation import (ValidationError, check_memory, fail, layered_bytes, positive_int, real_scalar,
                               reports_write_errors, writable_folder)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", default="10-20-15-4", help="layer sizes, input first")
    p.add_argument("--activation", default="logistic", choices=["hard_sigmoid", "logistic", "tanh"], help="activation rho of the units")
    p.add_argument("--batch", type=int, default=8, help="samples in the batch")
    p.add_argument("--free-steps", type=number_list(int, 1, name="free-steps", example="5,10,20"), default=[1, 2, 5, 10, 20, 40, 80, 160], help="free-phase iteration counts (sweeps for the relaxation schemes) to sweep (comma list)")
    p.add_argument("--nudged-steps", type=number_list(int, 1, name="nudged-steps", example="20"), default=[20], help="nudged-phase iteration counts to sweep (comma list)")
    p.add_argument("--betas", type=number_list(float, name="betas", example="0.1,0.5"), default=[0.1], help="nudging strengths to sweep (comma list)")
    p.add_argument("--variants", type=choice_list(EP_VARIANTS, "variant"), default=["positive", "negative", "centered"], help="EP nudging variants to sweep (comma list)")
    p.add_argument("--integrators", type=choice_list(SETTLE_METHODS, "integrator"), default=["euler", "rk4", "fixed_point", "block"], help="integrators and relaxation schemes to sweep (comma list)")
    p.add_argument("--dt", type=float, default=0.2, help="step of the fixed-step integrators (the relaxation schemes have none)")
    p.add_argument("--gdu-beta", type=float, default=0.01, help="beta of the GDU check")
    p.add_argument("--gdu-free-steps", type=int, default=800, help="free Euler steps T of the GDU check")
    p.add_argument("--gdu-nudged-steps", type=int, default=40, help="nudged Euler steps K of the GDU check")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, inputs and targets")
    p.add_argument("--out", type=Path, default=Path("runs/gradient_vs_iterations"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing log in --out")
    p.add_argument("--conv", type=number_list(int, 1, name="conv", example="4,6"), default=None,
                   help="channels of a convolutional stack (comma list; 3x3 kernels, 2x2 max pooling) on a "
                        "1 x --image x --image input, then the last of --sizes outputs; relaxed by the schemes "
                        "'fixed_point' and 'block' only, the GDU check by fixed-point sweeps")
    p.add_argument("--image", type=int, default=12, help="side of the square one-channel input of --conv")
    return p


def _conv_network(args, sizes, rng):
    """The --conv stack: 3x3 kernels and 2x2 max pooling per stage on a 1 x image x image input."""
    positive_int("--image", args.image)
    bad = [m for m in args.integrators if m not in RELAXATION_SCHEMES]
    if bad:
        raise ValidationError(f"--integrators: a conv network relaxes with {list(RELAXATION_SCHEMES)} only, got "
                              f"{bad}")
    k = len(args.conv)
    arch = Architecture.conv_stack((1, args.image, args.image), args.conv, [3] * k, "m" * k, fc=[sizes[-1]],
                                   activation=args.activation)
    net = ConvHopfieldNetwork(arch, seed=rng, dtype=np.float64)
    # Half the default scale, as the lab-conv preset of mnist_ep.py: at full scale the outputs start saturated,
    # pinned at the box, where EP and recurrent backprop both read zero.
    net.theta = 0.5 * net.theta
    return net


@reports_write_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        positive_int("--seed", args.seed, minimum=0)
        try:
            sizes = [int(v) for v in args.sizes.split("-")]
        except ValueError:
            raise ValidationError(f"--sizes must look like 10-20-15-4 (integers joined by '-'), got {args.sizes!r}") \
                from None
        # Every value of the sweep and of the GDU check, before the log exists.
        for beta in args.betas:
            real_scalar("--betas value", beta, 0.0, np.inf, low_open=True, high_open=True)
        real_scalar("--dt", args.dt, 0.0, np.inf, low_open=True, high_open=True)
        real_scalar("--gdu-beta", args.gdu_beta, nonzero=True)
        positive_int("--gdu-free-steps", args.gdu_free_steps)
        positive_int("--gdu-nudged-steps", args.gdu_nudged_steps)
        if args.batch < 1:
            raise ValidationError(f"--batch must be >= 1, got {args.batch}")
        check_memory("--sizes and --batch", layered_bytes(sizes, args.batch),
                     f"a {args.sizes} network with a batch of {args.batch}")
        rng = np.random.default_rng(args.seed)
        if args.conv is not None:
            net = _conv_network(args, sizes, rng)
            sizes = [net.n_input, *net.group_sizes[1:]]
        else:
            net = HopfieldNetwork.layered(sizes, activation=args.activation, seed=rng)
        if args.activation == "hard_sigmoid" and args.conv is None:
            # Small positive biases keep units off the lower bound, where EP and backprop both read zero.
            theta = net.theta.copy()
            theta[-net.n_free:] = 0.2
            net.theta = theta
        grid = {"free_steps": args.free_steps, "nudged_steps": args.nudged_steps, "beta": args.betas,
                "variant": args.variants, "integrator": args.integrators, "dt": [args.dt]}
        if args.batch < 1:
            raise ValidationError(f"--batch must be >= 1, got {args.batch}")
    except (ValueError, ValidationError) as exc:
        fail(f"{exc}")
    x = rng.uniform(size=(args.batch, sizes[0]))
    target = np.eye(sizes[-1])[rng.integers(0, sizes[-1], args.batch)]

    config = {"scenario": "gradient_vs_iterations", "sizes": sizes, "activation": args.activation,
              "batch": args.batch, "seed": args.seed, "grid": {k: list(v) for k, v in grid.items()},
              "gdu_beta": args.gdu_beta, "gdu_free_steps": args.gdu_free_steps,
              "gdu_nudged_steps": args.gdu_nudged_steps, "dt": args.dt}
    try:
        writable_folder("--out", args.out)
        log = TrajectoryLog(args.out / "gradients.h5", config, network=net, overwrite=args.overwrite)
    except (FileExistsError, ValidationError) as exc:
        fail(f"{exc}")
    with log:
        reference, free = reference_gradient(net, x, target)
        try:
            table = sweep_ep_estimates(net, x, target, grid, reference=reference, seed=args.seed)
        except ValidationError as exc:
            fail(f"{exc}")
        blocks = table.pop("blocks")
        log.record_table("sweep", table, attrs={"blocks": ",".join(blocks), "reference": "recurrent backprop"})
        # The reference relaxation, with a nudged phase, for users to look at.
        recorded = SettleOptions(integrator="rk4" if args.conv is None else "block", atol=1e-10, rtol=1e-10,
                                 record_every=1, record_samples=(0, 1), **({"dt": 0.25} if args.conv is None else {}))
        est = ep_gradient(net, x, target, 0.5, "positive", options=recorded)
        log.record_relaxation([est.free, est.phases["nudged+"]], label="reference free and nudged (beta=0.5)",
                              x=x, target=target)

        # A conv net steps by fixed-point sweeps: the Euler step of dt = 1.
        if args.conv is None:
            integrator, gdu_dt = ("projected_euler" if args.activation == "hard_sigmoid" else "euler"), args.dt
        else:
            integrator, gdu_dt = "fixed_point", 1.0
        gdu = gdu_check(net, x, target, args.gdu_beta, args.gdu_free_steps, args.gdu_nudged_steps, gdu_dt,
                        integrator=integrator)
        log.record_table("gdu", {"k": np.arange(1, args.gdu_nudged_steps + 1), "ep_per_step": gdu.ep_per_step,
                                 "bptt_per_step": gdu.bptt_per_step},
                         attrs={"beta": args.gdu_beta, "integrator": integrator,
                                **{f"rmse_{k}": v for k, v in gdu.rmse.items()}})

    table["blocks"] = blocks
    fig1 = plot_sweep(table, args.out / "cosine_vs_free_steps.png", x="free_steps", metric="cosine")
    fig2 = plot_sweep(table, args.out / "relative_error_vs_free_steps.png", x="free_steps",
                      metric="relative_error")
    fig3 = plot_gdu(gdu, net, args.out / "gdu.png")

    what = args.sizes if args.conv is None else f"conv {net.describe()['group_sizes']}"
    print(f"network {what} ({args.activation}), batch {args.batch}; reference: recurrent backprop at a "
          f"free state with residual {free.integration.residual.max():.1e}")
    print(f"{'integrator':<16}{'variant':<10}{'beta':>6}{'free':>6}{'nudged':>7}{'residual':>10}"
          f"{'cos(all)':>10}{'min cos':>9}{'rel err':>9}")
    for i in range(len(table["beta"])):
        cos = table["cosine"][i]
        print(f"{table['integrator'][i]:<16}{table['variant'][i]:<10}{table['beta'][i]:>6g}"
              f"{table['free_steps'][i]:>6d}{table['nudged_steps'][i]:>7d}{table['free_residual'][i]:>10.1e}"
              f"{cos[-1]:>10.4f}{np.nanmin(cos[:-1]):>9.4f}{table['relative_error'][i][-1]:>9.2e}")
    print(f"GDU ({integrator}, beta={args.gdu_beta}, T={args.gdu_free_steps}, K={args.gdu_nudged_steps}): "
          "normalized RMSE " + ", ".join(f"{k} {v:.4f}" for k, v in gdu.rmse.items())
          + f"; sign agreement {gdu.sign_agreement['all']:.3f}")
    print(f"log: {args.out / 'gradients.h5'}\nfigures: {fig1}, {fig2}, {fig3}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
