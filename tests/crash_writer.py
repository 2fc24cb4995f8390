"""A log writer to be killed: the subprocess of tests/test_log_crash.py.

``python crash_writer.py LOG PROGRESS [--pause S]`` creates LOG and then, in a
loop, records one relaxation, appends one row to table ``epochs`` and, every
fifth round, writes a whole new table ``sweep_<k>``. After each call returns
it appends a line to PROGRESS with one unbuffered ``write`` (it survives a
SIGKILL): ``R n`` (n relaxations complete), ``T n`` (n rows of ``epochs``),
``S k`` (table ``sweep_k`` complete). The records are deterministic
functions of their index, so the test can check every byte it reads back.
"""
import os
import sys
import time

import numpy as np

from dynsim.io.log import TrajectoryLog
from dynsim.relax.phases import PhaseResult
from integrators.solve import IntegrationResult, Trajectory

BATCH, N_FREE, POINTS, RECORDED = 4, 20, 50, 3
SWEEP_EVERY = 5


def phase(k, name):
    """Phase ``name`` of relaxation ``k``: arrays drawn from a generator seeded by (k, name)."""
    rng = np.random.default_rng([k, len(name)])
    samples = np.arange(RECORDED, dtype=np.int64)
    traj = Trajectory(t=np.linspace(0.0, 1.0 + k, POINTS), y=rng.standard_normal((POINTS, RECORDED, N_FREE)),
                      residual=rng.uniform(size=(POINTS, RECORDED)), samples=samples)
    integ = IntegrationResult(
        y=rng.standard_normal((BATCH, N_FREE)), t=1.0 + k, status=0, message=f"relaxation {k}", n_steps=POINTS,
        n_accepted=POINTS, n_rejected=0, nfev=4 * POINTS, residual=rng.uniform(size=BATCH),
        tolerance=np.full(BATCH, 1e-6), diverged_step=-1, diverged_sample=-1, trajectory=traj, method="rk4")
    return PhaseResult(phase=name, beta=0.0 if name == "free" else 0.5, state=integ.y,
                       energy=rng.standard_normal(BATCH), cost=rng.uniform(size=BATCH), integration=integ,
                       trajectory_energy=rng.standard_normal((POINTS, RECORDED)),
                       trajectory_cost=rng.uniform(size=(POINTS, RECORDED)))


LIFETIME_S = 120.0
"""Seconds after which the writer stops by itself."""


def row(k):
    return {"epoch": k, "loss": 1.0 / (k + 1), "note": f"epoch {k}"}


def sweep(k):
    return {"beta": np.linspace(0.1, 1.0, 7) * (k + 1), "variant": [f"v{j}" for j in range(7)]}


def main(path, progress):
    fd = os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def report(line):
        os.write(fd, (line + "\n").encode())

    log = TrajectoryLog(path, {"writer": "crash_writer"})
    report("ready")
    k = 0
    # The tests kill this writer within seconds; the limit only keeps a stuck test from growing the log without
    # bound (a hung reader once let it write 7 GB).
    stop = time.monotonic() + LIFETIME_S
    while time.monotonic() < stop:
        log.record_relaxation([phase(k, "free"), phase(k, "nudged")], label=f"batch {k}",
                              x=np.full((BATCH, 2), float(k)))
        report(f"R {k + 1}")
        log.append_row("epochs", row(k))
        report(f"T {k + 1}")
        if k % SWEEP_EVERY == 0:
            log.record_table(f"sweep_{k}", sweep(k), attrs={"k": k})
            report(f"S {k}")
        k += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
