"""Run many bad command lines of the ``dynsim`` command and the scenarios in one process; report each outcome.

``python tests/bad_input_driver.py CASES.json RESULTS.json``: CASES.json holds
a list of ``{"id", "entry", "argv"}``, where ``entry`` is ``"dynsim"`` (the
command's ``main``) or the name of a scenario (its ``main``, as
``python scenarios/<name>.py`` runs it). Each case runs as the real entry
point does, with its own stderr captured, but nothing is allowed to train,
load a data set, write a log or start a Dask cluster: those calls are
replaced by one that raises :class:`Reached`, so a bad input that is not
refused during argument validation shows up as ``reached`` instead of
starting work. RESULTS.json gets, per case, the exit status (1 for an
exception that escaped, which a real run shows as a traceback), the captured
stderr, and ``reached`` (the guarded call that was reached, or null).

Running the cases in one process keeps the import and start-up cost (about
2 s per process here) to one; tests/test_bad_inputs_cli.py also runs a few
cases as real subprocesses, unguarded.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (module, attribute): work that must never start on a bad input.
GUARDED = [
    ("dynsim.training.loop", "fit"),
    ("dynsim.training.loop", "train"),
    ("dynsim.datasets.idx", "load_folder"),  # after load() has checked its arguments, before any file is read
    ("dynsim.datasets.idx", "download_files"),
    ("dynsim.datasets.cifar", "load_cifar10"),
    ("dynsim.io.log", "TrajectoryLog"),
    ("dynsim.training.run_folder", "open_run_log"),
    ("dynsim.relax.phases", "settle"),
    ("dynsim.relax.phases", "free_phase"),
    ("dynsim.relax.phases", "nudged_phase"),
    ("dynsim.cli.sweep", "_cluster"),
]


class Reached(Exception):
    """A guarded call was reached: the bad input was not refused before work started."""


def _guard():
    """Replace every guarded object, wherever a dynsim module or a scenario imported it, by a raising stub."""
    replaced = {}
    for module, name in GUARDED:
        original = getattr(importlib.import_module(module), name)

        def stub(*args, _what=f"{module}.{name}", **kwargs):
            raise Reached(_what)

        replaced[id(original)] = (original, stub)  # the original kept alive: its id stays its own
    for mod in list(sys.modules.values()):
        if not getattr(mod, "__name__", "").startswith("dynsim"):
            continue
        for attr, value in list(vars(mod).items()):
            if id(value) in replaced and replaced[id(value)][0] is value:
                setattr(mod, attr, replaced[id(value)][1])
    return replaced


def run_case(case, replaced):
    """Run one case; returns its result dict."""
    from dynsim.cli.main import main as dynsim_main
    from dynsim.cli.scenarios import find_scenario

    err = io.StringIO()
    reached = None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            if case["entry"] == "dynsim":
                code = dynsim_main(case["argv"])
            else:
                module = find_scenario(case["entry"]).module()
                # The scenario imported its names after the guard: replace them in its namespace too.
                for attr, value in list(vars(module).items()):
                    if id(value) in replaced and replaced[id(value)][0] is value:
                        setattr(module, attr, replaced[id(value)][1])
                code = module.main(case["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Reached as exc:
            code, reached = None, str(exc)
        except BaseException:  # what a real run would end in: a traceback and exit status 1
            traceback.print_exc(file=err)
            code = 1
    return {"id": case["id"], "code": code, "stderr": err.getvalue(), "reached": reached}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cases = json.loads(Path(argv[0]).read_text())
    # The entry points and every guarded module loaded before the guard, so that their names are replaced.
    for module in ("dynsim.cli.main", "dynsim.cli.scenarios", *(m for m, _ in GUARDED)):
        importlib.import_module(module)
    replaced = _guard()
    results = [run_case(case, replaced) for case in cases]
    Path(argv[1]).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
