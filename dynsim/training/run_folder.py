"""The output folder of a resumable training run: its log, its checkpoint, and what a kill leaves behind.

A dataset scenario writes ``log.h5`` (a :class:`dynsim.io.log.TrajectoryLog`)
and ``checkpoint.h5`` (:mod:`dynsim.training.checkpoint`) into its ``--out`` folder.
:func:`open_run_log` decides, from what is in the folder and the user's
``--resume`` / ``--overwrite``, whether the run starts, continues or is
refused, so that no work is discarded that the user did not ask to
discard:

- a folder holding a checkpoint is continued with ``resume`` and replaced
  only with ``overwrite``;
- a log without a checkpoint whose run was stopped before its first epoch
  ended (no committed epoch row) holds nothing to keep: the run starts
  again, with or without ``resume``, and says so;
- temporary files a killed writer left (``.log.h5.<pid>.tmp``,
  ``.checkpoint.h5.<pid>.<random>.tmp``) are removed when their process no
  longer runs;
- a folder that cannot be written (read-only, no permission, a full file
  system) or a path that names a file is refused before anything is
  written, with a :class:`RunFolderError` naming it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from dynsim.io.log import LogFormatError, TrajectoryLog, read_log
from dynsim.training.checkpoint import checkpoint_exists, previous_path
from dynsim.validation import DynsimError, ValidationError, WriteError, writable_folder

__all__ = ["RunFolderError", "open_run_log", "remove_stale_temporaries"]

_TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(?P<pid>\d+)(\..*)?\.tmp$")


class RunFolderError(DynsimError):
    """The folder's state and the requested start do not fit (a run to resume that is not there, ...)."""


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder, names=("log.h5", "checkpoint.h5")):
    """Remove the temporary files of ``names`` that a killed process left in ``folder``; returns their paths.

    Parameters
    ----------
    folder : str or os.PathLike
    names : sequence of str
        The files whose temporaries (``.<name>.<pid>...tmp``) are looked for.

    Returns
    -------
    list of pathlib.Path
        The files removed (those of processes that no longer run).
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        m = _TEMPORARY.match(path.name)
        if m and m.group("name") in names and path.is_file() and not _alive(int(m.group("pid"))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _epochs_logged(log_path, tables=("epochs",)):
    """Epochs committed to each of the log's epoch tables: ``{table: set of int}`` (empty sets where none)."""
    with read_log(log_path) as reader:
        return {table: set(reader.table(table)["epoch"].astype(int).tolist()) if table in reader.tables else set()
                for table in tables}


def open_run_log(out, config, network=None, resume=False, overwrite=False, say=print, runs=None):
    """Open the log of a run in folder ``out`` as the folder's state and the user's choice say.

    Parameters
    ----------
    out : str or os.PathLike
        The run folder (created if needed).
    config : dict
        Configuration of a new log.
    network : object, optional
        Passed to the log (names the recorded groups), also when continuing.
    resume, overwrite : bool
        ``--resume`` and ``--overwrite`` of the scenario.
    say : callable
        Receives one line when the folder's state changes what happens.
    runs : dict of str to str, optional
        For a folder that trains several networks one after the other into
        one log (e.g. one per rule): each checkpoint's file name and the
        name of its epoch table. Default ``{'checkpoint.h5': 'epochs'}``.

    Returns
    -------
    log : TrajectoryLog
    logged_epochs : set of int, or dict of str to set of int
        Epochs the log already holds (a resumed run appends only the
        others); with ``runs``, one set per epoch table.
    resume : bool
        Whether the run continues from its checkpoints (False when a run
        stopped before its first checkpoint starts again).

    Raises
    ------
    RunFolderError
        ``resume`` without anything to continue, a folder that holds a run
        and neither ``resume`` nor ``overwrite``, or a folder that cannot be
        written (read-only, full, a file): the message names it.
    """
    try:
        out = writable_folder("--out", out)
    except (ValidationError, WriteError) as exc:
        raise RunFolderError(str(exc)) from None
    several = runs is not None
    runs = {"checkpoint.h5": "epochs"} if runs is None else dict(runs)
    log_path = out / "log.h5"
    ckpt_paths = [out / name for name in runs]
    tables = tuple(runs.values())
    any_checkpoint = any(checkpoint_exists(path) for path in ckpt_paths)
    names = ", ".join(runs)
    for path in remove_stale_temporaries(out, ("log.h5", *runs)):
        say(f"removed {path.name}, left by a run that was stopped while writing it")
    unfinished = False
    if log_path.exists() and not any_checkpoint and not overwrite:
        try:
            unfinished = not any(_epochs_logged(log_path, tables).values())
        except LogFormatError:
            unfinished = False
        if not unfinished:
            raise RunFolderError(f"{out} holds a log with epochs but no {names} to continue from; pass "
                                 "--overwrite to start again, or --out another folder")
    if resume and not any_checkpoint:
        if not unfinished:
            raise RunFolderError(f"--resume: no run to continue in {out} (no {names}); run without --resume "
                                 "to start")
        say(f"{out}: the run was stopped before its first checkpoint; starting it again")
        resume = False
    elif unfinished:
        say(f"{out}: replacing the log of a run stopped before its first checkpoint")
    if resume:
        logged = _epochs_logged(log_path, tables)
        try:
            log = TrajectoryLog.reopen(log_path, network=network)
        except WriteError as exc:
            raise RunFolderError(str(exc)) from None
        return log, logged if several else logged["epochs"], True
    if any_checkpoint and not overwrite:
        raise RunFolderError(f"{out} holds a run ({names}): pass --resume to continue it or --overwrite to "
                             "start again")
    try:
        log = TrajectoryLog(log_path, config, network=network, overwrite=overwrite or unfinished)
    except WriteError as exc:
        raise RunFolderError(str(exc)) from None
    if overwrite:
        for path in ckpt_paths:
            path.unlink(missing_ok=True)
            previous_path(path).unlink(missing_ok=True)
    return log, {table: set() for table in tables} if several else set(), False
