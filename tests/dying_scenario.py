"""A scenario for the sweep tests: writes a small log, or kills its own process when ``--die`` is 1.

``python dying_scenario.py --value V --die D --out FOLDER [--overwrite]``.
"""
import argparse
import os
import signal
from pathlib import Path

from dynsim.io.log import TrajectoryLog


def build_parser():
    p = argparse.ArgumentParser(description="a point that dies on request")
    p.add_argument("--value", type=float, default=0.0, help="a number written to the summary")
    p.add_argument("--die", type=int, default=0, choices=[0, 1], help="1: SIGKILL this process")
    p.add_argument("--out", type=Path, default=Path("runs/dying"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the log")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.die:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
    with TrajectoryLog(args.out / "log.h5", {"value": args.value}, overwrite=args.overwrite) as log:
        log.record_table("summary", {"value": [args.value], "double": [2 * args.value]})
    return 0
