"""Parameter sweeps of a scenario on Dask: one task per grid point, each with its own output folder.

``run_sweep`` expands a grid (``beta=0.1,0.5,1``, ``seed=0..4``) into points,
checks every point's settings with the scenario's own parser before anything
runs, and submits one task per point to a Dask cluster: an embedded
``LocalCluster`` by default, or an existing scheduler at an address. Each
task runs the scenario in its worker process with ``--out`` set to the
point's folder and, when the scenario returned 0, writes ``point.json`` last
(atomically): a point with that file is complete and is skipped when the
same sweep runs again. A point that fails is reported with its error while
the others finish. The sweep then gathers ``summary.csv`` and
``summary.h5`` (one row per point: its settings, status, error, wall time
and numbers read off its log) and ``summary.png`` (a metric against each
swept parameter).

Workers share Numba's on-disk cache, so after the first compilation on the
machine each worker loads the compiled kernels instead of compiling them.
"""
from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dynsim._threads import thread_environment
from dynsim.cli.scenarios import ScenarioError, find_scenario
from dynsim.validation import WriteError, os_reason, writable_folder

__all__ = ["parse_grid", "grid_points", "run_sweep", "POINT_FILE"]

log = logging.getLogger("dynsim.cli.sweep")
POINT_FILE = "point.json"


def parse_grid(items):
    """``['beta=0.1,0.5', 'seed=0..2']`` -> ``{'beta': ['0.1', '0.5'], 'seed': ['0', '1', '2']}``.

    ``a..b`` is the inclusive integer range; values are otherwise
    comma-separated and stay text until the scenario's parser reads them.
    """
    if items is not None and (isinstance(items, (str, bytes)) or not isinstance(items, (list, tuple))
                              or not all(isinstance(item, str) for item in items)):
        raise ScenarioError(f"grid items must be a list of 'key=values' strings, got {items!r}")
    grid = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ScenarioError(f"a grid entry must look like key=v1,v2 or key=a..b, got {item!r}")
        if key in grid:
            raise ScenarioError(f"grid key {key!r} is given twice")
        expanded = []
        for part in values.split(","):
            part = part.strip()
            m = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", part)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if hi < lo:
                    raise ScenarioError(f"grid range {part!r} of {key!r} is empty (a..b needs a <= b)")
                expanded += [str(v) for v in range(lo, hi + 1)]
            elif part:
                expanded.append(part)
            else:
                raise ScenarioError(f"grid entry {item!r} has an empty value")
        grid[key] = expanded
    if not grid:
        raise ScenarioError("the grid is empty: give at least one key=values")
    return grid


def _point_name(settings):
    text = "_".join(f"{k}={v}" for k, v in settings.items())
    return re.sub(r"[^A-Za-z0-9=._-]", "-", text)


def _check_grid(grid):
    if not isinstance(grid, dict) or not grid:
        raise ScenarioError(f"grid must be a dict of parameter name to a non-empty list of values "
                            f"(see parse_grid), got {grid!r}")
    for key, values in grid.items():
        if not isinstance(key, str) or isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) \
                or not values:
            raise ScenarioError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
        repeated = sorted({str(v) for v in values if [str(w) for w in values].count(str(v)) > 1})
        if repeated:
            # Two equal points would run at once into one folder.
            raise ScenarioError(f"grid[{key!r}] repeats {', '.join(repeated)}: give each value once")


# What a point's row can hold besides its settings: per-phase figures of its first relaxation, a summary
# table's first row, a training log's last epoch, and the wall time.
_METRIC = re.compile(r"^(\w+_(steps|nfev|energy|residual|cost)|summary_\w+|final_\w+|seconds)$")


def _check_metric(metric, grid):
    if metric is None:
        return
    if not isinstance(metric, str) or metric in grid or not _METRIC.match(metric):
        raise ScenarioError(
            f"metric must name a summary column: <phase>_steps, _nfev, _energy, _residual or _cost (e.g. "
            f"free_steps), summary_<column>, final_<column> of a training log's last epoch (e.g. "
            f"final_test_error) or seconds; got {metric!r}")


def grid_points(grid):
    """The points of the grid in order: ``[{key: value text}, ...]``."""
    _check_grid(grid)
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _point_log(folder):
    """The point's dynsim trajectory log: ``log.h5`` when there, else the one ``*.h5`` that is a dynsim log.

    Other HDF5 files of a point (a training run's ``checkpoint.h5``) are not
    logs and are passed over.
    """
    from dynsim.io.log import LogFormatError, read_log

    files = sorted(Path(folder).glob("*.h5"), key=lambda f: (f.name != "log.h5", f.name))
    for path in files:
        try:
            return read_log(path)
        except LogFormatError:
            continue
    return None


def _log_numbers(folder):
    """Numbers a user compares points by, read off the point's dynsim log."""
    numbers = {}
    reader = _point_log(folder)
    if reader is None:
        return numbers
    if len(reader):
        for name, phase in reader.relaxation(0).phases.items():
            numbers[f"{name}_steps"] = float(phase.attrs.get("n_steps", np.nan))
            numbers[f"{name}_nfev"] = float(phase.attrs.get("nfev", np.nan))
            numbers[f"{name}_energy"] = float(np.mean(phase.final_energy))
            numbers[f"{name}_residual"] = float(np.max(phase.final_residual))
            if phase.final_cost is not None:
                numbers[f"{name}_cost"] = float(np.mean(phase.final_cost))
    for table_name, prefix in (("summary", "summary"), ("epochs", "final")):
        if table_name not in reader.tables:
            continue
        # A summary has one row; a training run's per-epoch table is compared by its last epoch.
        table = reader.table(table_name)
        for column, values in table.items():
            values = np.asarray(values) if column != "__attrs__" else None
            if values is not None and values.ndim == 1 and values.dtype.kind in "fiu" and values.size:
                numbers[f"{prefix}_{column}"] = float(values[0] if table_name == "summary" else values[-1])
    return numbers


def _write_json_atomically(path, data):
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1)
    os.replace(tmp, path)


def run_point(scenario_path, argv, folder, settings):
    """Run one point in this process (a Dask task); returns its row. Never raises: errors are the row's."""
    from dynsim.cli.scenarios import Scenario

    folder = Path(folder)
    start = time.perf_counter()
    row = {"point": folder.name, **settings, "status": "failed", "error": "", "seconds": float("nan")}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        scenario = Scenario(Path(scenario_path).stem, Path(scenario_path), "")
        try:
            code = scenario.run(argv)
        except SystemExit as exc:  # argparse and the scenarios report bad values this way
            code = exc.code if isinstance(exc.code, int) else 1
            if getattr(exc, "message", None):
                row["error"] = str(exc.message)
            elif not isinstance(exc.code, int) and exc.code is not None:
                row["error"] = str(exc.code)
        if code:
            row["error"] = row["error"] or f"the scenario exited with status {code}"
        else:
            row.update(_log_numbers(folder), status="ok")
    except Exception as exc:  # a failing point must not stop the sweep
        row["error"] = f"{type(exc).__name__}: {exc}"
    row["seconds"] = time.perf_counter() - start
    if row["status"] == "ok":
        _write_json_atomically(folder / POINT_FILE, row)
    return row


def _cluster(scheduler, workers):
    """A context manager giving a Dask client: on an existing scheduler, or on a LocalCluster it owns."""
    import contextlib

    from distributed import Client, LocalCluster

    # distributed sets its loggers to INFO when imported; the sweep reports progress itself.
    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ScenarioError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
        return contextlib.closing(client)

    @contextlib.contextmanager
    def local():
        # One task per worker, and the machine's cores shared out among the workers' BLAS, OpenMP and Numba
        # pools: each would otherwise size its pool for the whole machine, and with several workers their
        # threads, which wait for work by spinning, would fight for the cores (see dynsim._threads).
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.ERROR, env=thread_environment(max(1, cores // workers))) as cluster, \
                Client(cluster) as client:
            yield client

    return local()


def _task_failure(exc):
    """Why a point's Dask task failed, for its row."""
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        allowed = dask_config_allowed_failures()
        return (f"the worker running this point died each time it was tried ({allowed + 1} tries: killed, out of "
                f"memory, or a crash in compiled code); run the sweep again to retry it")
    return f"{type(exc).__name__}: {exc}"


def dask_config_allowed_failures():
    import dask

    return int(dask.config.get("distributed.scheduler.allowed-failures", 3))


def _write_summary(out, rows, grid, scenario_name):
    from dynsim.io.log import TrajectoryLog

    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table = {c: [row.get(c, "" if c in ("error", "status", "point") or c in grid else np.nan) for row in rows]
             for c in columns}
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".csv.tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(zip(*table.values()))
        os.replace(tmp, out / "summary.csv")
    finally:
        Path(tmp).unlink(missing_ok=True)
    h5_tmp = out / "summary.h5.tmp"
    h5_tmp.unlink(missing_ok=True)
    try:
        with TrajectoryLog(h5_tmp, {"sweep": scenario_name, "grid": grid}) as summary:
            numeric = {c: v for c, v in table.items() if c not in grid and c not in ("point", "status", "error")}
            summary.record_table("summary", {"point": table["point"], "status": table["status"],
                                             "error": table["error"], **{k: table[k] for k in grid},
                                             **{k: np.asarray(v, dtype=float) for k, v in numeric.items()}})
        os.replace(h5_tmp, out / "summary.h5")
    finally:
        h5_tmp.unlink(missing_ok=True)
    return table


def _plot_summary(table, grid, metric, out):
    from matplotlib.figure import Figure

    from dynsim.plots._figure import save_figure

    keys = list(grid)
    fig = Figure(figsize=(4.0 * len(keys), 3.4), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False).ravel()
    values = np.asarray(table[metric], dtype=float)
    ok = np.asarray(table["status"]) == "ok"
    for ax, key in zip(axes, keys):
        labels = list(dict.fromkeys(grid[key]))
        pos = np.array([labels.index(str(v)) for v in table[key]], dtype=float)
        jitter = np.linspace(-0.15, 0.15, len(pos)) if len(pos) > 1 else np.zeros(1)
        ax.plot(pos[ok] + jitter[ok], values[ok], "o", color="C0", label="completed")
        if (~ok).any():
            top = np.nanmax(values[ok]) if ok.any() and np.isfinite(values[ok]).any() else 0.0
            ax.plot(pos[~ok] + jitter[~ok], np.full((~ok).sum(), top), "x", color="C3", ms=9, mew=2,
                    label="failed")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{metric} against each swept parameter", fontsize=11)
    return save_figure(fig, out / "summary.png")


def run_sweep(scenario, grid, out, scheduler=None, workers=2, metric=None, quiet=False):
    """Run ``scenario`` at every point of ``grid``; returns the summary table (dict of columns).

    Parameters
    ----------
    scenario : str
        Name or path of the scenario.
    grid : dict
        From :func:`parse_grid`.
    out : path
        Sweep folder: ``points/<point>/`` per point, then the summaries.
    scheduler : str, optional
        Address of an existing Dask scheduler (default: a LocalCluster here).
    workers : int
        Workers of the LocalCluster.
    metric : str, optional
        Column of the summary drawn against each parameter (default: the
        first number read off the logs).
    """
    scenario = find_scenario(scenario)
    _check_grid(grid)
    if "out" in grid or "overwrite" in grid:
        raise ScenarioError("the grid cannot set 'out' or 'overwrite': each point has its own folder")
    if isinstance(workers, (bool, np.bool_)) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ScenarioError(f"workers must be an integer >= 1, got {workers!r}")
    _check_metric(metric, grid)
    out = Path(out)
    parser = scenario.parser()

    def rejected(message):  # argparse's error(), as one line of ours instead of its usage text and exit
        raise ScenarioError(f"grid point {settings} is rejected by {scenario.name}'s parameters: {message}")

    parser.error = rejected
    points = []
    for settings in grid_points(grid):
        folder = out / "points" / _point_name(settings)
        argv = scenario.argv({**settings, "out": str(folder), "overwrite": "true"})
        parser.parse_args(argv)  # the scenario's own validation, before anything runs
        points.append((settings, folder, argv))
    # Before any point runs: a sweep folder that cannot be written would fail every point, then the summary.
    writable_folder("--out", out)
    done = [p for p in points if (p[1] / POINT_FILE).exists()]
    todo = [p for p in points if not (p[1] / POINT_FILE).exists()]
    log.info("%s: %d points, %d complete already, %d to run", scenario.name, len(points), len(done), len(todo))
    rows = {str(folder): json.loads((folder / POINT_FILE).read_text()) | {"skipped": 1.0}
            for _, folder, _ in done}
    if todo:
        from distributed import as_completed

        out.mkdir(parents=True, exist_ok=True)
        with _cluster(scheduler, workers) as client:
            # At most one point per worker thread in flight: when a worker dies, Dask counts the death against
            # every task it held, so a queued point beside one that kills its worker would be blamed too.
            slots = max(1, sum(client.nthreads().values()))
            pending = list(todo)
            futures = {}
            running = as_completed()

            def submit_next():
                settings, folder, argv = pending.pop(0)
                future = client.submit(run_point, str(scenario.path), argv, str(folder), settings, pure=False)
                futures[future] = (settings, folder)
                running.add(future)

            for _ in range(min(slots, len(pending))):
                submit_next()
            finished = failed = 0
            bar = tqdm(total=len(todo), desc=f"sweep {scenario.name}", unit="point", disable=True if quiet else None)
            for future in running:
                settings, folder = futures.pop(future)
                if pending:
                    submit_next()
                try:
                    row = future.result()
                except Exception as exc:  # the task itself failed: its worker died (Dask retried it) or was lost
                    row = {"point": folder.name, **settings, "status": "failed", "seconds": float("nan"),
                           "error": _task_failure(exc)}
                row["skipped"] = 0.0
                rows[str(folder)] = row
                finished += 1
                failed += row["status"] != "ok"
                bar.set_postfix(running=len(todo) - finished, failed=failed)
                bar.update()
                if not quiet:
                    log.info("[%d/%d done, %d running, %d failed] %s: %s%s", finished, len(todo),
                             len(todo) - finished, failed, row["point"], row["status"],
                             f" ({row['error']})" if row["error"] else "")
            bar.close()
    ordered = [rows[str(folder)] for _, folder, _ in points]
    try:
        table = _write_summary(out, ordered, grid, scenario.name)
    except OSError as exc:
        if isinstance(exc, WriteError):
            raise
        raise WriteError(f"cannot write the summary in {out}: {os_reason(exc)}; the points' own logs are kept, "
                         "and running the sweep again writes it", getattr(exc, "errno", None)) from None
    numbers = [c for c in table if c not in grid and c not in ("point", "status", "error", "skipped", "seconds")]
    metric = metric or (numbers[0] if numbers else "seconds")
    if metric not in table:
        raise ScenarioError(f"metric {metric!r} is not in the summary; its columns are {list(table)}")
    _plot_summary(table, grid, metric, out)
    return table
