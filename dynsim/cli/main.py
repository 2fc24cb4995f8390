"""The ``dynsim`` command: list and run scenarios, inspect and plot logs.

Every failure the user can fix (an unknown scenario or parameter, a file
that is not a dynsim log) is reported in one line on stderr with exit
status 2; nothing is written before the arguments have been checked.
"""
from __future__ import annotations

import argparse
import errno
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from dynsim._version import __version__
from dynsim.validation import DynsimError, StepHalvedWarning, ValidationError, os_reason, writable_folder

log = logging.getLogger("dynsim")

PLOT_KINDS = ("settling", "energy", "maps", "gradients", "training")
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}
"""Causes of a failed write that the user fixes (space, permissions), reported in one line."""


def _cmd_list(args):
    from dynsim.cli.scenarios import list_scenarios

    scenarios = list_scenarios()
    width = max(len(s.name) for s in scenarios)
    for s in scenarios:
        print(f"{s.name:<{width}}  {s.description}")
    return 0


def _cmd_run(args):
    from dynsim.cli.scenarios import find_scenario, parse_settings

    scenario = find_scenario(args.scenario)
    settings = parse_settings(args.set)
    if args.out is not None:
        settings["out"] = args.out
    if args.overwrite:
        settings["overwrite"] = "true"
    if args.list_parameters:
        for p in scenario.parameters():
            print(p.describe())
        return 0
    argv = scenario.argv(settings)
    log.info("running %s with %s", scenario.name, " ".join(argv) or "its defaults")
    return scenario.run(argv)


def _format_value(value):
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, list) and all(isinstance(v, float) for v in value):
        shown = [f"{v:.6g}" for v in value[:8]]
        more = f", ... ({len(value)} values)" if len(value) > 8 else ""
        return f"[{', '.join(shown)}{more}]"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"[{', '.join(map(str, value[:8]))}, ... ({len(value)} values)]"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _cmd_show(args):
    from dynsim.io.log import read_log

    reader = read_log(args.log)
    attrs = reader.attrs
    print(f"{args.log}: dynsim log (format {attrs.get('format_version')}, written by dynsim "
          f"{attrs.get('dynsim_version')} on {attrs.get('created')})")
    print("configuration:")
    for key, value in reader.config.items():
        print(f"  {key}: {_format_value(value)}")
    if reader.network:
        net = reader.network
        sizes = "-".join(map(str, net.get("group_sizes", [])))
        print(f"network: {sizes} ({net.get('activation')}), groups {', '.join(net.get('group_names', []))}")
    print(f"relaxations: {len(reader)}")
    for k in range(len(reader)):
        rel = reader.relaxation(k)
        parts = []
        for name, phase in rel.phases.items():
            a = phase.attrs
            res = np.max(phase.final_residual) if phase.final_residual is not None else float("nan")
            parts.append(f"{name} {a.get('status_name')} after {a.get('n_steps')} steps "
                         f"({a.get('nfev')} f-evals, max residual {res:.2e})")
        print(f"  [{k}] {rel.label}: " + "; ".join(parts))
    print(f"tables: {len(reader.tables)}")
    for name in reader.tables:
        table = reader.table(name)
        columns = [c for c in table if c != "__attrs__"]
        rows = len(table[columns[0]]) if columns else 0
        print(f"  {name}: {rows} rows; columns {', '.join(columns)}")
        if args.tables:
            for c in columns:
                values = np.asarray(table[c])
                shown = values.tolist() if values.ndim == 1 else f"<{values.shape[1:]} per row>"
                print(f"    {c}: {_format_value(shown)}")
    return 0


def _alignment_tables(reader):
    """Angles between rules' updates and a reference's during training, as :func:`plot_alignment` takes them.

    ``alignment_<rule>`` tables (feedforward rules against backprop), else the angle columns of the per-epoch
    tables: ``angle_true_W_*`` (vector-field EP against recurrent backprop) or ``angle_W_*`` (the microcircuit
    against backprop). Returns ``(tables, reference)``, or None when the log holds none of them.
    """
    tables = {t.removeprefix("alignment_"): reader.table(t) for t in reader.tables if t.startswith("alignment_")}
    if tables:
        return tables, "backprop"
    runs = {t.removeprefix("epochs_"): reader.table(t) for t in reader.tables
            if t == "epochs" or t.startswith("epochs_")}
    for prefix, reference in (("angle_true_", "recurrent backprop"), ("angle_", "backprop")):
        for name, table in runs.items():
            angles = {c.removeprefix(prefix): table[c] for c in table if c.startswith(prefix + "W_")}
            if angles:
                tables[name] = {"epoch": table["epoch"], **angles}
        if tables:
            return tables, reference
    return None


def _cmd_plot(args):
    from dynsim.io.log import read_log
    from dynsim.plots.gradients import plot_gdu_table, plot_sweep
    from dynsim.plots.relaxation import plot_energy, plot_feature_maps, plot_settling
    from dynsim.plots.rules import plot_alignment, plot_rule_comparison
    from dynsim.plots.training import plot_error_curves, plot_training_curves

    reader = read_log(args.log)
    out = Path(args.out) if args.out else Path(args.log).with_name(f"{Path(args.log).stem}_{args.kind}.png")
    if out.is_dir():
        raise ValidationError(f"--out {out} is a folder; name a PNG file")
    if out.suffix.lower() != ".png":
        raise ValidationError(f"--out must name a .png file (the figure is a PNG), got {str(out)!r}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it, or --out another file")
    writable_folder("--out", out.parent, create=False)  # before the figure is drawn: a read-only or full folder
    if args.kind in ("settling", "energy", "maps"):
        if len(reader) == 0:
            raise DynsimError(f"{args.log} holds no relaxation to plot; its tables are {reader.tables}")
        if not -len(reader) <= args.relaxation < len(reader):
            raise ValidationError(f"--relaxation must be in [{-len(reader)}, {len(reader) - 1}] ({args.log} holds "
                                  f"{len(reader)} relaxations; negative counts from the last), got {args.relaxation}")
        if args.kind == "maps":
            rel = reader.relaxation(args.relaxation % len(reader))
            phase = args.phase if args.phase is not None else next(iter(rel.phases))
            if phase not in rel.phases:
                raise ValidationError(f"--phase must be one of {list(rel.phases)}, got {phase!r}")
            groups = sorted(rel[phase].map_shapes)
            if not groups:
                raise DynsimError(f"relaxation {rel.index} of {args.log} recorded no feature maps (a convolutional "
                                  "network's groups, with their trajectory)")
            group = args.group if args.group is not None else groups[0]
            if group not in groups:
                raise ValidationError(f"--group must be one of the recorded feature maps {groups}, got {group!r}")
            try:
                path = plot_feature_maps(reader, out, group, relaxation=rel.index, phase=phase)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None
        else:
            plot = plot_settling if args.kind == "settling" else plot_energy
            path = plot(reader, out, relaxation=args.relaxation)
    elif args.kind == "training":
        names = [t for t in reader.tables if t.startswith("history")]
        # The per-epoch tables of dataset runs (dynsim.training.loop): 'epochs', or 'epochs_<rule>' per rule
        # where a scenario trains several side by side; error curves of every split.
        runs = [t for t in reader.tables if t == "epochs" or t.startswith("epochs_")]
        if runs:
            tables = reader.table("epochs") if runs == ["epochs"] else {t.removeprefix("epochs_"): reader.table(t)
                                                                        for t in runs}
            try:
                path = plot_error_curves(tables, out, title=f"training of {Path(args.log).name}")
            except ValueError as exc:  # a table of that name that is not a per-epoch error table
                raise DynsimError(f"{args.log}: cannot draw its per-epoch tables {runs}: {exc}") from None
        elif names:
            histories = {n.removeprefix("history_") or n: reader.table(n) for n in names}
            path = plot_training_curves(histories, out, title=f"training curves of {Path(args.log).name}")
        else:
            raise DynsimError(f"{args.log} holds no training history (an 'epochs' or 'epochs_*' table, or history* "
                              f"tables); its tables are {reader.tables}")
    else:
        if "sweep" in reader.tables:
            table = reader.table("sweep")
            table["blocks"] = table["__attrs__"]["blocks"].split(",")
            path = plot_sweep(table, out, x="free_steps", metric=args.metric)
        elif "gdu" in reader.tables:
            path = plot_gdu_table(reader.table("gdu"), out)
        elif "rules" in reader.tables:
            path = plot_rule_comparison(reader.table("rules"), out, title=f"every rule of {Path(args.log).name}")
        elif alignment := _alignment_tables(reader):
            tables, reference = alignment
            path = plot_alignment(tables, out, title=f"alignment in {Path(args.log).name}", reference=reference)
        else:
            raise DynsimError(f"{args.log} holds no gradient comparison (a 'sweep', 'gdu', 'rules' or "
                              f"'alignment_*' table, or angle_W_* columns); its tables are {reader.tables}")
    print(path)
    return 0


def _cmd_sweep(args):
    from dynsim.cli.sweep import parse_grid, run_sweep

    grid = parse_grid(args.grid)
    out = Path(args.out) if args.out else Path("runs") / f"sweep_{Path(args.scenario).stem}"
    start = time.perf_counter()
    table = run_sweep(args.scenario, grid, out, scheduler=args.scheduler, workers=args.workers, metric=args.metric,
                      quiet=args.quiet)
    status = list(table["status"])
    failed = [(p, e) for p, st, e in zip(table["point"], status, table["error"]) if st != "ok"]
    print(f"{len(status)} points: {status.count('ok')} completed "
          f"({int(sum(table['skipped']))} skipped as complete), {len(failed)} failed; "
          f"{time.perf_counter() - start:.1f} s; summary in {out / 'summary.csv'}, {out / 'summary.h5'}, "
          f"{out / 'summary.png'}")
    for point, error in failed:
        print(f"  failed {point}: {error}")
    return 1 if failed else 0


def build_parser():
    p = argparse.ArgumentParser(prog="dynsim", description="Energy-based network simulator: scenarios, logs, plots.")
    p.add_argument("--version", action="version", version=f"dynsim {__version__}")
    p.add_argument("--quiet", action="store_true", help="only warnings and errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="the scenarios, one line each")
    s.set_defaults(func=_cmd_list)

    s = sub.add_parser("run", help="run a scenario by name or path",
                       description="Run a scenario. Parameters: --set key=value (see --list-parameters).")
    s.add_argument("scenario", help="scenario name (dynsim list) or path of a scenario script")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="a scenario parameter (repeatable)")
    s.add_argument("--out", help="output folder")
    s.add_argument("--overwrite", action="store_true", help="replace an existing log in --out")
    s.add_argument("--list-parameters", action="store_true", help="print the scenario's parameters and exit")
    s.set_defaults(func=_cmd_run)

    s = sub.add_parser("show", help="what a log holds: configuration, relaxations, tables")
    s.add_argument("log", help="a dynsim HDF5 log")
    s.add_argument("--tables", action="store_true", help="also print the table columns")
    s.set_defaults(func=_cmd_show)

    s = sub.add_parser("plot", help="draw a figure from a log")
    s.add_argument("log", help="a dynsim HDF5 log")
    s.add_argument("--kind", choices=PLOT_KINDS, default="settling",
                   help="settling, energy: a relaxation's trajectories; maps: a convolutional group's feature maps; "
                        "training: error curves of every split (and run) per epoch; gradients: the distance of "
                        "updates to their reference (a sweep, GDU, every rule side by side, alignment angles "
                        "during training)")
    s.add_argument("--relaxation", type=int, default=0, help="which relaxation (settling, energy, maps)")
    s.add_argument("--group", default=None, help="maps: the feature-map group (default: the first recorded)")
    s.add_argument("--phase", default=None, help="maps: the phase (default: the first, free)")
    s.add_argument("--metric", default="cosine", choices=["cosine", "relative_error", "sign_agreement",
                                                           "normalized_rmse"], help="gradients: the metric")
    s.add_argument("--out", help="PNG to write (default: beside the log)")
    s.add_argument("--overwrite", action="store_true", help="replace the PNG if it exists")
    s.set_defaults(func=_cmd_plot)

    s = sub.add_parser("sweep", help="run a scenario over a parameter grid on Dask",
                       description="Run a scenario at every point of a grid, one Dask task per point; points "
                                   "already complete are skipped. Example: dynsim sweep settle_hopfield "
                                   "--grid beta=0.1,0.5,1 integrator=euler,dopri5 seed=0..4")
    s.add_argument("scenario", help="scenario name or path")
    s.add_argument("--grid", nargs="+", required=True, metavar="KEY=VALUES",
                   help="key=v1,v2,... or key=a..b (inclusive integers)")
    s.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster here)")
    s.add_argument("--workers", type=int, default=2, help="workers of the LocalCluster")
    s.add_argument("--metric", help="summary column drawn against each parameter")
    s.add_argument("--out", help="sweep folder (default runs/sweep_<scenario>)")
    s.set_defaults(func=_cmd_sweep)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s: %(message)s")
    for noisy in ("distributed", "tornado", "asyncio"):  # Dask's own chatter: only its errors
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # A relaxation retried with half the step is reported as a log line, like the run's progress.
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, StepHalvedWarning):
            log.warning("step halved: %s", message)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        return args.func(args)
    except (DynsimError, FileNotFoundError, FileExistsError, PermissionError, TimeoutError) as exc:
        print(f"dynsim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            raise
        # A write that failed where no dynsim code expected it (a scenario's own file): the path and the cause.
        where = f" {exc.filename}" if exc.filename else ""
        print(f"dynsim {args.command}: error: cannot write{where}: {os_reason(exc)}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
