"""How far are predictive coding's local updates from backprop's gradient, and what does inference cost?

For a random 3-hidden-layer predictive coding network (tanh) and a batch with
one-hot targets, this scenario compares the PC update with exact backprop per
parameter block:

1. against the number of inference iterations, for strict PC at equal
   precisions and at a small output precision (large sigma_L^2), fixed
   prediction and Z-IL (``relative_error_vs_steps.png``);
2. against the output variance sigma_L^2, inference settled to a tolerance
   (``relative_error_vs_output_variance.png``): the error falls like 1/sigma_L^2;
3. against the step of explicit Euler, beside adaptive Dormand--Prince
   (``relative_error_vs_dt.png``): above its stability step Euler oscillates
   or diverges (marked x), the adaptive integrator keeps going;

and records one inference with its prediction errors per layer
(``error_settling.png``, ``energy.png``). Everything goes to ``pc.h5``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dynsim.cli.argtypes import number_list
from dynsim.experiments.estimator_sweep import PC_GRID_KEYS, error_norms, sweep_pc_updates
from dynsim.io.log import TrajectoryLog
from dynsim.learning.predictive_coding import pc_gradient
from dynsim.networks.pc import PCNetwork
from dynsim.plots.gradients import plot_error_settling, plot_sweep
from dynsim.plots.relaxation import plot_energy
from dynsim.relax.phases import SettleOptions
from dynsim.validation import (ValidationError, check_memory, fail, layered_bytes, positive_int, reports_write_errors,
                               writable_folder)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", default="20-32-32-32-10", help="layer sizes, input first")
    p.add_argument("--activation", default="tanh", choices=["tanh", "logistic", "relu", "hard_sigmoid"], help="activation f of the predictions")
    p.add_argument("--batch", type=int, default=16, help="samples in the batch")
    p.add_argument("--steps", type=number_list(int, name="steps", example="1,10,100"), default=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
                   help="inference iteration counts (Euler)")
    p.add_argument("--dt", type=float, default=0.1, help="Euler step of the iteration sweep")
    p.add_argument("--output-variances", type=number_list(float, name="output-variances", example="1,100"), default=[1, 3, 10, 30, 100, 300, 1000], help="output variances sigma_L^2 to sweep (comma list)")
    p.add_argument("--euler-steps", type=number_list(float, name="euler-steps", example="0.1,1"), default=[0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0],
                   help="Euler steps of the stability sweep")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, inputs and targets")
    p.add_argument("--out", type=Path, default=Path("runs/pc_vs_backprop"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing log in --out")
    return p


@reports_write_errors
def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        positive_int("--seed", args.seed, minimum=0)
        try:
            sizes = [int(v) for v in args.sizes.split("-")]
        except ValueError:
            raise ValidationError("--sizes must look like 20-32-32-32-10 (integers joined by '-'), "
                                  f"got {args.sizes!r}") from None
        if args.batch < 1:
            raise ValidationError(f"--batch must be >= 1, got {args.batch}")
        values = [*args.steps, *args.output_variances, *args.euler_steps, args.dt]
        if min(args.steps) < 1 or not all(np.isfinite(v) and v > 0 for v in values):
            raise ValidationError("--steps, --output-variances, --euler-steps and --dt must be positive and finite, "
                                  f"got {args.steps}, {args.output_variances}, {args.euler_steps} and {args.dt}")
        check_memory("--sizes and --batch", layered_bytes(sizes, args.batch),
                     f"a {args.sizes} network with a batch of {args.batch}")
        rng = np.random.default_rng(args.seed)
        net = PCNetwork(sizes, activation=args.activation, seed=rng)
    except (ValueError, ValidationError) as exc:
        fail(f"{exc}")
    x = rng.uniform(-1, 1, size=(args.batch, sizes[0]))
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], args.batch)]
    config = {"scenario": "pc_vs_backprop", "sizes": sizes, "activation": args.activation, "batch": args.batch,
              "seed": args.seed, "steps": args.steps, "dt": args.dt, "output_variances": args.output_variances,
              "euler_steps": args.euler_steps}
    try:
        writable_folder("--out", args.out)
        log = TrajectoryLog(args.out / "pc.h5", config, network=net, overwrite=args.overwrite)
    except (FileExistsError, ValidationError) as exc:
        fail(f"{exc}")

    L = len(sizes) - 1
    big = 100.0
    with log:
        sweeps = {
            "iterations": {"variant": ["strict", "fixed_prediction"], "output_variance": [1.0, big],
                           "inference_steps": args.steps, "dt": [args.dt]},
            "zil": {"variant": ["zil"]},
            "output_variance": {"variant": ["strict"], "output_variance": args.output_variances,
                                "integrator": ["dopri5"], "inference_steps": [None]},
            "stability": {"variant": ["strict"], "output_variance": [big], "integrator": ["euler"],
                          "dt": args.euler_steps, "inference_steps": [None]},
            "adaptive": {"variant": ["strict"], "output_variance": [big], "integrator": ["dopri5"],
                         "inference_steps": [None]},
        }
        tables = {}
        for name, grid in sweeps.items():
            table = sweep_pc_updates(net, x, y, grid)
            blocks = table.pop("blocks")
            log.record_table(name, table, attrs={"blocks": ",".join(blocks), "reference": "exact backprop"})
            tables[name] = dict(table, blocks=blocks)

        # One recorded inference: strict PC at a small output precision, settled by dopri5.
        net.variances = [1.0] * (L - 1) + [big]
        recorded = pc_gradient(net, x, y, "strict", options=SettleOptions(
            integrator="dopri5", atol=1e-10, rtol=1e-10, record_every=1, record_samples=(0, 1, 2)))
        log.record_relaxation([recorded.inference], label=f"strict PC inference, sigma_L^2={big:g}", x=x, target=y)
        norms = error_norms(net, x, recorded.inference)
        log.record_table("error_settling", norms, attrs={"variant": "strict", "output_variance": big})

    out = args.out
    zil = tables["zil"]["relative_error"][0][-1]
    figures = [
        plot_sweep(tables["iterations"], out / "relative_error_vs_steps.png", x="inference_steps",
                   metric="relative_error", keys=PC_GRID_KEYS,
                   title=f"PC update against backprop (Euler dt={args.dt:g}); Z-IL after {L - 1} steps: {zil:.1e}"),
        plot_sweep(tables["output_variance"], out / "relative_error_vs_output_variance.png", x="output_variance",
                   metric="relative_error", keys=PC_GRID_KEYS,
                   title="strict PC settled to 1e-10 (dopri5): error against the output variance"),
        plot_sweep(tables["stability"], out / "relative_error_vs_dt.png", x="dt", metric="relative_error",
                   keys=PC_GRID_KEYS, title=("strict PC, explicit Euler to a tolerance against its step "
                                             f"(dopri5: {tables['adaptive']['relative_error'][0][-1]:.3g})")),
        plot_error_settling(norms, out / "error_settling.png",
                            title=f"strict PC inference (sigma_L^2={big:g}): prediction errors per layer"),
        plot_energy(out / "pc.h5", out / "energy.png"),
    ]

    print(f"network {args.sizes} ({args.activation}), batch {args.batch}; relative error / cosine of the PC "
          "update against exact backprop (all parameters)")
    it = tables["iterations"]
    print(f"{'variant':<18}{'sigma_L^2':>10}" + "".join(f"{s:>10d}" for s in args.steps))
    for variant in ("strict", "fixed_prediction"):
        for var in (1.0, big):
            sel = [i for i in range(len(it["variant"])) if it["variant"][i] == variant
                   and it["output_variance"][i] == var]
            print(f"{variant:<18}{var:>10g}" + "".join(f"{it['relative_error'][i][-1]:>10.2e}" for i in sel))
    print(f"Z-IL after {L - 1} steps: relative error {zil:.2e}")
    ov = tables["output_variance"]
    print("strict PC settled (dopri5), by sigma_L^2: " + ", ".join(
        f"{v:g}: {e[-1]:.3g}" for v, e in zip(ov["output_variance"], ov["relative_error"])))
    st = tables["stability"]
    print("explicit Euler to a tolerance, by dt: " + ", ".join(
        f"{d:g}: {s}" + (f" ({e[-1]:.3g})" if s == "converged" else "")
        for d, s, e in zip(st["dt"], st["status"], st["relative_error"]))
          + f"; dopri5: {tables['adaptive']['status'][0]} after {tables['adaptive']['steps_taken'][0]} steps")
    print(f"log: {out / 'pc.h5'}\nfigures: " + ", ".join(str(f) for f in figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
