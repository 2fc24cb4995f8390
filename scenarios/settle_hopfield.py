"""First scenario: settle a small layered Hopfield network under a free and a nudged phase.

Builds a layered continuous Hopfield network (Scellier & Bengio 2017) with
random Glorot weights, clamps random inputs, relaxes the free phase from
zero, then the nudged phase from the free equilibrium towards one-hot
targets, and writes to the output folder:

- ``settle.h5``: the HDF5 trajectory log (see the README for its layout);
- ``settling.png``: unit activities against time per layer, free then nudged;
- ``energy.png``: energy and residual norm against time.

It prints the steps, vector-field evaluations, final residuals and energies
of each phase. Nothing is downloaded.

Run ``python scenarios/settle_hopfield.py --help`` for the options.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dynsim.cli.argtypes import layer_sizes
from dynsim.io.log import TrajectoryLog
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.plots.relaxation import plot_energy, plot_settling
from dynsim.relax.phases import SettleOptions, free_phase, nudged_phase
from dynsim.validation import (ValidationError, check_memory, fail, layered_bytes, positive_int, real_scalar,
                               reports_write_errors, writable_folder)
from integrators import METHODS


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", type=layer_sizes(2, "sizes", "16-24-12-4"), default=[16, 24, 12, 4],
                   help="layer sizes, input first, output last")
    p.add_argument("--activation", default="hard_sigmoid", choices=["hard_sigmoid", "logistic", "tanh"], help="activation rho of the units")
    p.add_argument("--integrator", default="projected_euler", choices=sorted(METHODS), help="ODE integrator of both phases")
    p.add_argument("--dt", type=float, default=None, help="step of the fixed-step integrators")
    p.add_argument("--beta", type=float, default=0.5, help="nudging strength (nonzero, either sign)")
    p.add_argument("--batch", type=int, default=8, help="number of input samples")
    p.add_argument("--atol", type=float, default=1e-6, help="absolute steady-state tolerance")
    p.add_argument("--rtol", type=float, default=1e-6, help="relative steady-state tolerance")
    p.add_argument("--max-steps", type=int, default=100_000, help="step limit per phase")
    p.add_argument("--record-every", type=int, default=1, help="keep every k-th step of the trajectory")
    p.add_argument("--record-samples", type=int, default=4, help="how many samples to record")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, inputs and targets")
    p.add_argument("--out", type=Path, default=Path("runs/settle_hopfield"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing log in --out")
    return p


@reports_write_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.batch < 1:
        fail("--batch must be >= 1")
    try:
        positive_int("--seed", args.seed, minimum=0)
        real_scalar("--beta", args.beta)  # finite; zero is refused below, with its reason
        check_memory("--sizes and --batch", layered_bytes(args.sizes, args.batch),
                     f"a {'-'.join(map(str, args.sizes))} network with a batch of {args.batch}")
    except ValidationError as exc:
        fail(f"{exc}")
    rng = np.random.default_rng(args.seed)
    try:
        net = HopfieldNetwork.layered(args.sizes, activation=args.activation, seed=rng)
        options = SettleOptions(integrator=args.integrator, dt=args.dt, atol=args.atol, rtol=args.rtol,
                                max_steps=args.max_steps, record_every=args.record_every,
                                record_samples=tuple(range(min(args.record_samples, args.batch))))
        if args.beta == 0:
            raise ValidationError("--beta must be nonzero (the nudged phase needs a nudge)")
    except ValidationError as exc:
        fail(f"{exc}")
    x = rng.uniform(size=(args.batch, args.sizes[0]))
    target = np.eye(args.sizes[-1])[rng.integers(0, args.sizes[-1], args.batch)]

    config = {"scenario": "settle_hopfield", "sizes": args.sizes, "activation": args.activation,
              "beta": args.beta, "batch": args.batch, "seed": args.seed, **options.describe()}
    try:
        writable_folder("--out", args.out)
    except ValidationError as exc:
        fail(f"{exc}")
    log_path = args.out / "settle.h5"
    try:
        log = TrajectoryLog(log_path, config, network=net, overwrite=args.overwrite)
    except FileExistsError as exc:
        fail(f"{exc}")
    with log:
        free = free_phase(net, x, target=target, options=options)
        nudged = nudged_phase(net, x, target, args.beta, free.state, options=options)
        log.record_relaxation([free, nudged], label="free then nudged", x=x, target=target)
    settling_png = plot_settling(log_path, args.out / "settling.png")
    energy_png = plot_energy(log_path, args.out / "energy.png")

    print(f"network {'-'.join(map(str, args.sizes))} ({args.activation}), batch {args.batch}, "
          f"integrator {args.integrator}, beta {args.beta}")
    print(f"{'phase':<8}{'status':<12}{'steps':>8}{'f-evals':>10}{'max residual':>15}"
          f"{'mean energy':>14}{'mean cost':>12}")
    for phase in (free, nudged):
        it = phase.integration
        print(f"{phase.phase:<8}{phase.status:<12}{it.n_steps:>8}{it.nfev:>10}{it.residual.max():>15.3e}"
              f"{phase.energy.mean():>14.6f}{phase.cost.mean():>12.6f}")
    print(f"log: {log_path}\nfigures: {settling_png}, {energy_png}")
    failed = [p.phase for p in (free, nudged) if not p.converged]
    if failed:
        print(f"warning: {', '.join(failed)} phase did not reach the steady state: "
              + "; ".join(p.integration.message for p in (free, nudged) if not p.converged), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
