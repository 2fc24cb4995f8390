"""The :class:`Task` container, and small classification tasks generated in code (no download).

The toy tasks (XOR, moons, two spirals) return inputs scaled to [0, 1] (the
range of clamped hard-sigmoid units), integer labels and one-hot targets.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dynsim.validation import ValidationError, check_memory, float_dtype, positive_int, real_scalar

__all__ = ["Task", "xor", "moons", "two_spirals", "TASKS"]


@dataclass
class Task:
    """A labelled set of examples, kept flat; image data sets also carry the image shape.

    Attributes
    ----------
    name : str
    x : ndarray, shape (n, d)
        Inputs in [0, 1], one example per row. Image examples are stored
        flat in (C, H, W) order (channel planes one after the other, each
        row-major): the layout dense networks, training and checkpoints use.
    labels : ndarray, shape (n,)
        Integer class of each example.
    targets : ndarray, shape (n, n_classes)
        One-hot targets.
    image_shape : tuple of 3 int, or None
        ``(C, H, W)`` of one example when the examples are images, with
        ``C * H * W == d``; ``None`` for data that are not images.
        :meth:`images` gives the (n, C, H, W) view of ``x``.
    """

    name: str
    x: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    # Last and optional: every positional Task(name, x, labels, targets) keeps working.
    image_shape: tuple | None = None

    def __post_init__(self):
        if self.image_shape is not None:
            self.image_shape = _image_shape(self.name, self.image_shape, np.shape(self.x))

    def images(self):
        """The inputs as images: ``x`` seen as (n, C, H, W), without a copy.

        Returns
        -------
        ndarray, shape (n, C, H, W)
            A view of ``x``: writing into it writes into ``x``. Pixel
            ``(c, r, col)`` of example ``i`` is ``x[i, (c * H + r) * W + col]``.

        Raises
        ------
        ValidationError
            The task has no image shape, or ``x`` (replaced since the task
            was made) no longer matches it.
        """
        if self.image_shape is None:
            raise ValidationError(f"task {self.name!r} has no image shape (image_shape is None): its examples "
                                  f"are flat vectors, shape {np.shape(self.x)}; images() needs a task made "
                                  f"with image_shape=(C, H, W), e.g. from dynsim.datasets.idx.load")
        # Checked again here: x is a plain attribute and may have been replaced since construction.
        shape = _image_shape(self.name, self.image_shape, np.shape(self.x))
        # Splitting the one axis of width C*H*W into (C, H, W) is always
        # possible on the strides, whatever x's memory order: a view, never a copy.
        return self.x.reshape(self.x.shape[0], *shape)

    def astype(self, dtype):
        """The same task with inputs and targets of floating-point type ``dtype`` (labels unchanged).

        A network of that dtype then takes its minibatches without a
        conversion per call. Returns ``self`` when nothing changes; the
        image shape is kept.
        """
        dtype = float_dtype(dtype)
        if self.x.dtype == dtype and self.targets.dtype == dtype:
            return self
        # replace() carries every other field (image_shape, and any added later).
        return dataclasses.replace(self, x=np.ascontiguousarray(self.x, dtype=dtype),
                                   targets=np.ascontiguousarray(self.targets, dtype=dtype))


def _image_shape(name, value, x_shape):
    """``value`` as a tuple of 3 positive ints whose product is the width of ``x``; ValidationError otherwise."""
    bad = (isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3
           or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1 for v in value))
    if bad:
        raise ValidationError(f"task {name!r}: image_shape must be None or 3 positive integers (C, H, W); "
                              f"got {value!r}")
    shape = tuple(int(v) for v in value)
    size = shape[0] * shape[1] * shape[2]
    if len(x_shape) != 2 or x_shape[1] != size:
        raise ValidationError(f"task {name!r}: image_shape {shape} holds {size} values per example, but x has "
                              f"shape {tuple(x_shape)}; expected (n, {size})")
    return shape


def _rng(seed):
    """``numpy.random.default_rng(seed)`` for None, an int >= 0 or a Generator; ValidationError otherwise."""
    if seed is None or isinstance(seed, np.random.Generator) or (
            isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)) and seed >= 0):
        return np.random.default_rng(seed)
    raise ValidationError(f"seed must be None, an integer >= 0 or a numpy.random.Generator, got {seed!r}")


_TASK_BYTES_PER_POINT = 8 * 16
"""Memory a generated point takes while its task is built: its coordinates, label, one-hot target, temporaries."""


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
    check_memory("n", _TASK_BYTES_PER_POINT * n, f"{n} points")
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
    check_memory("n", _TASK_BYTES_PER_POINT * n, f"{n} points")
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
