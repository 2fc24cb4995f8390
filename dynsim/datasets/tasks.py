"""Small classification tasks generated in code (no download): XOR, moons, two spirals.

Each returns inputs scaled to [0, 1] (the range of clamped hard-sigmoid
units), integer labels and one-hot targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynsim.validation import ValidationError, float_dtype, positive_int, real_scalar

__all__ = ["Task", "xor", "moons", "two_spirals", "TASKS"]


@dataclass
class Task:
    """Inputs x (n, d) in [0, 1], labels (n,), one-hot targets (n, n_classes)."""

    name: str
    x: np.ndarray
    labels: np.ndarray
    targets: np.ndarray

    def astype(self, dtype):
        """The same task with inputs and targets of floating-point type ``dtype`` (labels unchanged).

        A network of that dtype then takes its minibatches without a
        conversion per call. Returns ``self`` when nothing changes.
        """
        dtype = float_dtype(dtype)
        if self.x.dtype == dtype and self.targets.dtype == dtype:
            return self
        return Task(self.name, np.ascontiguousarray(self.x, dtype=dtype), self.labels,
                    np.ascontiguousarray(self.targets, dtype=dtype))


def _rng(seed):
    """``numpy.random.default_rng(seed)`` for None, an int >= 0 or a Generator; ValidationError otherwise."""
    if seed is None or isinstance(seed, np.random.Generator) or (
            isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)) and seed >= 0):
        return np.random.default_rng(seed)
    raise ValidationError(f"seed must be None, an integer >= 0 or a numpy.random.Generator, got {seed!r}")


def _task(name, x, labels, n_classes=2):
    lo, hi = x.min(0), x.max(0)
    x = (x - lo) / np.where(hi > lo, hi - lo, 1.0)
    return Task(name, np.ascontiguousarray(x), labels.astype(np.int64), np.eye(n_classes)[labels])


def xor():
    """The four XOR patterns: label = x1 XOR x2."""
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return Task("xor", x, np.array([0, 1, 1, 0]), np.eye(2)[[0, 1, 1, 0]])


def moons(n=200, noise=0.1, seed=0):
    """Two interleaving half circles with Gaussian noise, ``n`` points in all."""
    n = positive_int("n", n, minimum=2)
    noise = real_scalar("noise", noise, 0.0, np.inf, high_open=True)
    rng = _rng(seed)
    n0 = n // 2
    a = np.pi * rng.uniform(size=n0)
    b = np.pi * rng.uniform(size=n - n0)
    x = np.concatenate([np.c_[np.cos(a), np.sin(a)], np.c_[1 - np.cos(b), 0.5 - np.sin(b)]])
    x += noise * rng.standard_normal(x.shape)
    return _task("moons", x, np.r_[np.zeros(n0, int), np.ones(n - n0, int)])


def two_spirals(n=200, turns=1.5, noise=0.05, seed=0):
    """Two interleaved spirals of ``turns`` turns, ``n`` points in all."""
    n = positive_int("n", n, minimum=2)
    turns = real_scalar("turns", turns, 0.0, np.inf, low_open=True, high_open=True)
    noise = real_scalar("noise", noise, 0.0, np.inf, high_open=True)
    rng = _rng(seed)
    n0 = n // 2
    t0 = np.sqrt(rng.uniform(size=n0)) * turns * 2 * np.pi
    t1 = np.sqrt(rng.uniform(size=n - n0)) * turns * 2 * np.pi
    arm = lambda t, phase: np.c_[t * np.cos(t + phase), t * np.sin(t + phase)] / (turns * 2 * np.pi)
    x = np.concatenate([arm(t0, 0.0), arm(t1, np.pi)]) + noise * rng.standard_normal((n, 2))
    return _task("two_spirals", x, np.r_[np.zeros(n0, int), np.ones(n - n0, int)])


TASKS = {"xor": xor, "moons": moons, "two_spirals": two_spirals}
