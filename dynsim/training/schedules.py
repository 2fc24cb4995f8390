"""Learning-rate schedules: a factor on the optimizer's rates at each minibatch.

A schedule is called as ``schedule(epoch, batch, n_batches, epochs)`` with
``epoch`` counted from 1 and ``batch`` from 0, and returns the factor
(> 0) that :func:`dynsim.training.loop` sets as the optimizer's ``lr_scale``
before that minibatch's step. Schedules hold no state: a resumed run gets
the factors an uninterrupted one would have had, as long as the total
``epochs`` is the same. A schedule whose factors depend on that total says
so with ``spans_run = True`` (:class:`WarmupCosine`): :func:`dynsim.training.loop.fit`
then refuses to resume its run with another number of epochs, which would
change the rates of the epochs already trained.

References
----------
.. [1] I. Loshchilov, F. Hutter, "SGDR: Stochastic Gradient Descent with
       Warm Restarts", ICLR (2017) (cosine decay).
.. [2] P. Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in
       1 Hour", arXiv:1706.02677 (2017) (linear warm-up).
.. [3] L. Pinchetti et al., "Benchmarking Predictive Coding Networks -- Made
       Simple", ICLR (2025) (warm-up then cosine decay for the PC benchmarks).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dynsim.validation import ValidationError, real_scalar

__all__ = ["Constant", "WarmupCosine", "ExponentialPerEpoch", "SCHEDULES", "make_schedule"]


@dataclass(frozen=True)
class Constant:
    """Factor 1 throughout."""

    spans_run = False
    """The factors do not depend on the run's total number of epochs: a run can be extended."""

    def __call__(self, epoch, batch, n_batches, epochs):
        return 1.0

    def describe(self):
        return {"schedule": "constant"}


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warm-up from 1 to ``peak`` over the first ``warmup`` fraction of the steps, then cosine decay to ``end``.

    Over all ``epochs * n_batches`` steps, with ``p`` the fraction done:
    ``1 + (peak - 1) p / warmup`` while ``p < warmup``, then
    ``end + (peak - end) (1 + cos(pi (p - warmup) / (1 - warmup))) / 2``.
    The defaults (0.1, 1.1, 0.1) are those of the pcx benchmarks.
    """

    spans_run = True
    """The factors depend on the total number of epochs: a run cannot be extended without changing them."""

    warmup: float = 0.1
    peak: float = 1.1
    end: float = 0.1

    def __post_init__(self):
        real_scalar("warmup", self.warmup, 0.0, 1.0, high_open=True)
        real_scalar("peak", self.peak, 0.0, math.inf, low_open=True, high_open=True)
        real_scalar("end", self.end, 0.0, math.inf, low_open=True, high_open=True)

    def __call__(self, epoch, batch, n_batches, epochs):
        p = ((epoch - 1) * n_batches + batch) / (epochs * n_batches)
        if p < self.warmup:
            return 1.0 + (self.peak - 1.0) * p / self.warmup
        q = (p - self.warmup) / (1.0 - self.warmup)
        return self.end + (self.peak - self.end) * 0.5 * (1.0 + math.cos(math.pi * q))

    def describe(self):
        return {"schedule": "warmup-cosine", **asdict(self)}


@dataclass(frozen=True)
class ExponentialPerEpoch:
    """Factor ``gamma ** (epoch - 1)``: the rates shrink by ``gamma`` after each epoch."""

    spans_run = False
    """The factors do not depend on the run's total number of epochs: a run can be extended."""

    gamma: float = 0.99

    def __post_init__(self):
        real_scalar("gamma", self.gamma, 0.0, 1.0, low_open=True)

    def __call__(self, epoch, batch, n_batches, epochs):
        return self.gamma ** (epoch - 1)

    def describe(self):
        return {"schedule": "exponential", **asdict(self)}


SCHEDULES = {"constant": Constant, "warmup-cosine": WarmupCosine, "exponential": ExponentialPerEpoch}
"""Schedule names (as the scenarios' ``--schedule`` takes them) and their classes."""


def make_schedule(name, **params):
    """The schedule called ``name`` (see :data:`SCHEDULES`) with ``params``; ValidationError for an unknown name."""
    if name not in SCHEDULES:
        raise ValidationError(f"schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
    return SCHEDULES[name](**params)
