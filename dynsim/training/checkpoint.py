"""Training checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint holds the parameters, the optimizer state, the state of the
random generator (shuffling and the random sign of EP), the persistent
particles and the per-epoch metrics so far. It is written to a temporary
file beside the target, flushed to disk and renamed over the old one, so a
run killed while saving still leaves the previous checkpoint intact: there
is never a half-written checkpoint to resume from. The checkpoint it
replaces is kept as ``<name>.prev``; a newest checkpoint that cannot be
read (a damaged disk, a file cut short by a full disk) falls back to it,
with a :class:`CheckpointFallbackWarning`.

A checkpoint written in the middle of an epoch (``fit(checkpoint_every=...)``)
also holds the epoch's position: its permutation of the training set, the
next minibatch and the partial metrics, so that a resumed run finishes the
epoch exactly as the uninterrupted one.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from dynsim.validation import DynsimError, WriteError, os_reason

__all__ = ["Checkpoint", "CheckpointError", "CheckpointWriteError", "CheckpointFallbackWarning", "save_checkpoint",
           "load_checkpoint", "previous_path", "checkpoint_exists", "check_fingerprint"]

FORMAT = "dynsim-checkpoint"
VERSION = 1


class CheckpointError(DynsimError):
    """A checkpoint is missing, unreadable or belongs to another configuration."""


class CheckpointWriteError(CheckpointError, WriteError):
    """A checkpoint could not be written (a full disk, a read-only folder); the previous one is kept.

    Both a :class:`CheckpointError` and a :class:`dynsim.validation.WriteError`
    (an ``OSError``), so either handler catches it.
    """


class CheckpointFallbackWarning(RuntimeWarning):
    """The newest checkpoint could not be read; the run resumes from the previous one."""


def previous_path(path):
    """Where the checkpoint that ``path`` replaced is kept: ``<name>.prev`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def checkpoint_exists(path):
    """True when ``path`` or its previous checkpoint is there (a kill can fall between the two renames)."""
    return Path(path).exists() or previous_path(path).exists()


@dataclass
class Checkpoint:
    """The state of a training run after a completed epoch.

    Attributes
    ----------
    epoch : int
        Epochs completed.
    theta : ndarray, shape (n_params,)
    optimizer : dict
        ``optimizer.state_dict()``: arrays and scalars.
    rng_state : dict
        ``numpy.random.Generator.bit_generator.state``.
    particles : ndarray, shape (n_train, n_free), or None
        Persistent particles, when the run uses them.
    history : dict of str to ndarray
        One column per metric, one entry per epoch logged so far.
    fingerprint : dict
        What must not change between the run that saved and the run that
        resumes (network sizes, rule, batch size, ...).
    eval_particles : dict of str to ndarray
        Persistent evaluation particles per held-out split, when the run
        uses them (each of shape (n_split, n_free)).
    partial : dict or None
        Saved in the middle of epoch ``epoch + 1``: ``order`` (the epoch's
        permutation, int64), ``batch`` (the next minibatch), ``seconds``
        (training time of the epoch so far), the running sums ``loss_sum``,
        ``wrong``, ``seen`` and the per-minibatch arrays ``free_steps``,
        ``nudged_steps``, ``free_residual``, ``nudged_residual``. None at
        the end of an epoch.
    """

    epoch: int
    theta: np.ndarray
    optimizer: dict
    rng_state: dict
    particles: np.ndarray | None = None
    history: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)
    eval_particles: dict = field(default_factory=dict)
    partial: dict | None = None


def save_checkpoint(path, checkpoint):
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename).

    The HDF5 file is built in memory and written with one plain write, so a
    full disk or a read-only folder fails an ordinary system call, never a
    write inside HDF5 (which can leave the library in a state that crashes
    the process later). The memory this takes is the checkpoint's size.

    Raises
    ------
    CheckpointWriteError
        The checkpoint could not be written (a full disk, a read-only
        folder); the message names the file. The previous checkpoint, if
        any, is left as it was, and no temporary file is left behind.
    """
    path = Path(path)
    with h5py.File(f"{path.name}.image", "w", driver="core", backing_store=False) as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["epoch"] = int(checkpoint.epoch)
        f.attrs["rng_state"] = json.dumps(checkpoint.rng_state)
        f.attrs["fingerprint"] = json.dumps(checkpoint.fingerprint, sort_keys=True)
        f.create_dataset("theta", data=np.asarray(checkpoint.theta, dtype=float))
        if checkpoint.particles is not None:
            f.create_dataset("particles", data=checkpoint.particles)
        opt = f.create_group("optimizer")
        for key, value in checkpoint.optimizer.items():
            opt.create_dataset(key, data=np.asarray(value))
        if checkpoint.eval_particles:
            ev = f.create_group("eval_particles")
            for key, value in checkpoint.eval_particles.items():
                ev.create_dataset(key, data=np.asarray(value))
        hist = f.create_group("history")
        for key, values in checkpoint.history.items():
            hist.create_dataset(key, data=np.asarray(values, dtype=float))
        if checkpoint.partial is not None:
            part = f.create_group("partial")
            for key, value in checkpoint.partial.items():
                part.create_dataset(key, data=np.asarray(value))
        f.flush()
        image = f.id.get_file_image()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The process id in the name lets the next run remove what a killed writer left (dynsim.training.run_folder).
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(image)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            # A kill between the two renames leaves the previous checkpoint, which load_checkpoint falls back to.
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            kept = next((p for p in (path, previous_path(path)) if p.exists()), None)
            raise CheckpointWriteError(f"cannot write the checkpoint {path}: {os_reason(exc)}; "
                             + (f"the previous checkpoint {kept.name} is kept" if kept else "no checkpoint is kept"),
                             exc.errno) from None
        raise
    return path


def _read(path):
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path} is not a dynsim checkpoint")
            return Checkpoint(
                epoch=int(f.attrs["epoch"]),
                theta=f["theta"][()],
                optimizer={k: v[()] for k, v in f["optimizer"].items()},
                rng_state=json.loads(f.attrs["rng_state"]),
                particles=f["particles"][()] if "particles" in f else None,
                history={k: v[()] for k, v in f["history"].items()},
                fingerprint=json.loads(f.attrs["fingerprint"]),
                eval_particles={k: v[()] for k, v in f["eval_particles"].items()} if "eval_particles" in f else {},
                partial={k: v[()] for k, v in f["partial"].items()} if "partial" in f else None,
            )
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


def load_checkpoint(path, fingerprint=None):
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or Path
    fingerprint : dict, optional
        The resuming run's configuration; a difference in any key is refused
        with a :class:`CheckpointError` that names the keys.

    Returns
    -------
    Checkpoint
    """
    path = Path(path)
    prev = previous_path(path)
    if not path.exists() and not prev.exists():
        raise CheckpointError(f"no checkpoint at {path}: nothing to resume (start without resume)")
    try:
        ckpt = _read(path)
    except CheckpointError as exc:
        if not prev.exists():
            raise
        try:
            ckpt = _read(prev)
        except CheckpointError:
            raise exc from None
        where = "mid-epoch " + str(ckpt.epoch + 1) if ckpt.partial is not None else f"after epoch {ckpt.epoch}"
        warnings.warn(f"{exc}; resuming from the previous checkpoint {prev.name} ({where}) instead",
                      CheckpointFallbackWarning, stacklevel=2)
    if fingerprint is not None:
        check_fingerprint(path, ckpt.fingerprint, fingerprint)
    return ckpt


def check_fingerprint(path, saved, fingerprint):
    """Refuse, with a :class:`CheckpointError` naming the keys, a checkpoint saved by another configuration.

    Parameters
    ----------
    path : str or Path
        The checkpoint, named in the message.
    saved : dict
        Its fingerprint (``Checkpoint.fingerprint``).
    fingerprint : dict
        The resuming run's.
    """
    expected = json.loads(json.dumps(fingerprint, sort_keys=True))
    differ = sorted(k for k in set(expected) | set(saved) if expected.get(k) != saved.get(k))
    if differ:
        detail = ", ".join(f"{k}: saved {saved.get(k)!r}, now {expected.get(k)!r}" for k in differ)
        raise CheckpointError(f"checkpoint {path} was saved by a different configuration ({detail}); "
                              "resume with the same settings or start a new run")
