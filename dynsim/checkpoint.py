"""Training checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint holds the parameters, the optimizer state, the state of the
random generator (shuffling and the random sign of EP), the persistent
particles and the per-epoch metrics so far. It is written to a temporary
file beside the target, flushed to disk and renamed over the old one, so a
run killed while saving still leaves the previous checkpoint intact: there
is never a half-written checkpoint to resume from.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from dynsim.validation import DynsimError

__all__ = ["Checkpoint", "CheckpointError", "save_checkpoint", "load_checkpoint"]

FORMAT = "dynsim-checkpoint"
VERSION = 1


class CheckpointError(DynsimError):
    """A checkpoint is missing, unreadable or belongs to another configuration."""


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
    """

    epoch: int
    theta: np.ndarray
    optimizer: dict
    rng_state: dict
    particles: np.ndarray | None = None
    history: dict = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)
    eval_particles: dict = field(default_factory=dict)


def save_checkpoint(path, checkpoint):
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The process id in the name lets the next run remove what a killed writer left (dynsim.run_folder).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
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
                    ev.create_dataset(key, data=np.asarray(value, dtype=float))
            hist = f.create_group("history")
            for key, values in checkpoint.history.items():
                hist.create_dataset(key, data=np.asarray(values, dtype=float))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


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
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: nothing to resume (start without resume)")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise CheckpointError(f"{path} is not a dynsim checkpoint")
            saved = json.loads(f.attrs["fingerprint"])
            ckpt = Checkpoint(
                epoch=int(f.attrs["epoch"]),
                theta=f["theta"][()],
                optimizer={k: v[()] for k, v in f["optimizer"].items()},
                rng_state=json.loads(f.attrs["rng_state"]),
                particles=f["particles"][()] if "particles" in f else None,
                history={k: v[()] for k, v in f["history"].items()},
                fingerprint=saved,
                eval_particles={k: v[()] for k, v in f["eval_particles"].items()} if "eval_particles" in f else {},
            )
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if fingerprint is not None:
        expected = json.loads(json.dumps(fingerprint, sort_keys=True))
        differ = sorted(k for k in set(expected) | set(saved) if expected.get(k) != saved.get(k))
        if differ:
            detail = ", ".join(f"{k}: saved {saved.get(k)!r}, now {expected.get(k)!r}" for k in differ)
            raise CheckpointError(f"checkpoint {path} was saved by a different configuration ({detail}); "
                                  "resume with the same settings or start a new run")
    return ckpt
