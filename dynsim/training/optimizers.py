"""Optimizers over the flat parameter vector, with per-layer learning rates.

A learning rate may be one number, one number per free layer (Scellier &
Bengio 2017 use e.g. 0.1, 0.05 for 784-500-10: a weight block takes the rate
of its post-synaptic layer, a bias that of its own layer), or a dict from
block name (:meth:`HopfieldNetwork.parameter_blocks`) to rate. An update is
refused, with the theta left untouched, when the gradient is not finite.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput. Neurosci. 11:24 (2017).
.. [2] D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR (2015).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from dynsim.validation import ValidationError, float_dtype, real_scalar

__all__ = ["learning_rates", "SGD", "Adam", "NonFiniteGradientError"]


class NonFiniteGradientError(ValidationError):
    """A gradient, or the update it gives, holds NaN or inf; the parameters were not changed."""


def learning_rates(network, lr):
    """Expand a learning-rate specification to one rate per parameter, shape (n_params,)."""
    blocks = network.parameter_blocks()
    layer = network.layer_of_block()
    n_layers = len(network.group_sizes) - 1
    rates = np.empty(network.n_params)
    if isinstance(lr, dict):
        unknown = set(lr) - set(blocks)
        missing = set(blocks) - set(lr)
        if unknown or missing:
            raise ValidationError(f"lr: unknown blocks {sorted(unknown)}, missing blocks {sorted(missing)}; "
                                  f"the blocks are {list(blocks)}")
        for name, sl in blocks.items():
            rates[sl] = real_scalar(f"lr[{name!r}]", lr[name], 0.0, np.inf, high_open=True)
    elif np.ndim(lr) == 0:
        rates[:] = real_scalar("lr", lr, 0.0, np.inf, high_open=True)
    else:
        per_layer = list(lr)
        if len(per_layer) != n_layers:
            raise ValidationError(f"lr: give one rate per free layer ({n_layers}), got {len(per_layer)}")
        for name, sl in blocks.items():
            rates[sl] = real_scalar(f"lr[{layer[name] - 1}]", per_layer[layer[name] - 1], 0.0, np.inf,
                                    high_open=True)
    return rates


def _check_theta(theta, rates):
    """``theta`` must be the network's C-contiguous float32 or float64 parameter vector, updated in place."""
    if not (isinstance(theta, np.ndarray) and theta.dtype in (np.float32, np.float64) and theta.flags.c_contiguous
            and theta.flags.writeable and theta.shape == rates.shape):
        raise ValidationError(f"theta must be the network's C-contiguous float32 or float64 parameter vector of "
                              f"shape {rates.shape}, got {type(theta).__name__} {getattr(theta, 'dtype', '')} "
                              f"{getattr(theta, 'shape', '')}")


def _state_dtype(network):
    """The dtype of the parameters, the optimizer state's (float64 for a network that does not say)."""
    return float_dtype(getattr(network, "dtype", np.float64))


def rate_runs(rates):
    """``(starts, values)``: the per-parameter rates as runs of equal values (one run per block, or fewer).

    ``starts`` (k + 1,) int64 holds each run's first index and then
    ``len(rates)``; ``values`` (k,) the rate of each run.
    """
    rates = np.asarray(rates, dtype=np.float64)
    if rates.size == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0)
    cut = np.flatnonzero(rates[1:] != rates[:-1]) + 1
    starts = np.concatenate(([0], cut, [rates.size])).astype(np.int64)
    return starts, rates[starts[:-1]].copy()


SLAB = 16_384
"""Most parameters one thread updates in one piece of a parallel optimizer step (:func:`slab_runs`)."""


def slab_runs(runs, slab=SLAB):
    """Runs (:func:`rate_runs`) cut into pieces of at most ``slab`` parameters, for Numba's threads.

    A step is elementwise, so the pieces change nothing in the numbers:
    only how the work is shared out.
    """
    starts, values = runs
    cuts, rates = [], []
    for k in range(values.shape[0]):
        a, b = int(starts[k]), int(starts[k + 1])
        edges = list(range(a, b, slab))
        cuts += edges
        rates += [values[k]] * len(edges)
    return np.array(cuts + [int(starts[-1])], dtype=np.int64), np.array(rates, dtype=np.float64)


@njit(cache=True, fastmath={"reassoc"})
def _finite_sum(theta, velocity, grad, r, momentum):
    """0 when every ``grad[i]`` and ``theta[i] - r (momentum v[i] + grad[i])`` is finite, else NaN (1-D slices).

    ``x - x`` is 0 for a finite x and NaN for inf or NaN, so one sum
    answers for the whole slice; a sum may be reassociated, which lets it
    vectorise (the flags do not assume finite values, so LLVM may not fold
    ``x - x`` to 0). Without momentum the velocity is not read.
    """
    acc = 0.0
    if momentum == 0.0:
        for i in range(theta.shape[0]):
            new = theta[i] - r * grad[i]
            acc += (grad[i] - grad[i]) + (new - new)
    else:
        for i in range(theta.shape[0]):
            new = theta[i] - r * (momentum * velocity[i] + grad[i])
            acc += (grad[i] - grad[i]) + (new - new)
    return acc


@njit(cache=True)
def _all_finite_step(theta, velocity, grad, starts, values, momentum, scale):
    """True when every gradient entry and every new parameter ``theta - rate (momentum v + grad)`` is finite.

    One :func:`_finite_sum` per run of equal rates, over contiguous slices
    (a loop whose bounds come from an array did not vectorise). Measured on
    784-500-10: 0.1 ms, against 1 ms for an entry-by-entry test with an
    early exit.
    """
    acc = 0.0
    for k in range(values.shape[0]):
        a, b = starts[k], starts[k + 1]
        acc += _finite_sum(theta[a:b], velocity[a:b], grad[a:b], scale * values[k], momentum)
    return acc == 0.0


@njit(cache=True)
def _update_run(theta, velocity, grad, r, momentum):
    """``theta -= r (momentum v + grad)`` in place over 1-D slices, the velocity kept only with momentum."""
    if momentum == 0.0:
        for i in range(theta.shape[0]):
            theta[i] = theta[i] - r * grad[i]
    else:
        for i in range(theta.shape[0]):
            v = momentum * velocity[i] + grad[i]
            velocity[i] = v
            theta[i] = theta[i] - r * v


@njit(cache=True)
def _sgd_step(theta, velocity, grad, starts, values, momentum, scale):
    """One SGD step in place, or none: returns -1, else the first index whose gradient or new value is not finite.

    Two passes without temporaries: numpy's version allocated six
    parameter-sized arrays per step, and on 784-500-10 the page faults of
    those fresh allocations cost 1-6 ms per minibatch, more than the
    relaxation itself. The first pass only checks, so a refused step leaves
    ``theta`` and ``velocity`` untouched. The step is memory-bound: the
    rates come as runs (one scalar per block, :func:`rate_runs`) rather than
    a parameter-sized array, and without momentum the velocity is neither
    read nor written.
    """
    if not _all_finite_step(theta, velocity, grad, starts, values, momentum, scale):
        for k in range(values.shape[0]):
            r = scale * values[k]
            for i in range(starts[k], starts[k + 1]):
                v = momentum * velocity[i] + grad[i]
                if not (np.isfinite(grad[i]) and np.isfinite(theta[i] - r * v)):
                    return i
    for k in range(values.shape[0]):
        a, b = starts[k], starts[k + 1]
        _update_run(theta[a:b], velocity[a:b], grad[a:b], scale * values[k], momentum)
    return -1


class _PerParameterRates:
    """The learning rates of an optimizer: one per parameter, stored as runs of equal rates for the compiled step.

    Also the boundary of every step: :meth:`_prepare` checks its arguments,
    :meth:`_refuse` explains a step the compiled code refused.
    """

    def _prepare(self, theta, grad):
        """``grad`` in ``theta``'s dtype (one conversion when it comes in another) and the validated ``lr_scale``."""
        _check_theta(theta, self.rates)
        grad = np.ascontiguousarray(grad, dtype=theta.dtype)
        if grad.shape != theta.shape:
            raise ValidationError(f"grad must have shape {theta.shape}, got {grad.shape}")
        return grad, real_scalar("lr_scale", self.lr_scale, 0.0, np.inf, low_open=True, high_open=True)

    def _refuse(self, bad, theta, grad, scale):
        """The error for a step refused at parameter ``bad`` (its gradient, or its new value, not finite)."""
        if not np.isfinite(grad[bad]):
            return NonFiniteGradientError(f"grad holds a non-finite value at index {bad} ({grad[bad]}); "
                                          "the parameters were not updated")
        return NonFiniteGradientError(f"the update would make parameter {bad} non-finite (theta {theta[bad]}, "
                                      f"rate {scale * self.rates[bad]}, gradient {grad[bad]}); the parameters were "
                                      "not updated (learning rate too large?)")

    @property
    def rates(self):
        """Learning rate of each parameter, shape (n_params,), read-only (assign a new array to change them)."""
        return self._rates

    @rates.setter
    def rates(self, value):
        rates = np.array(value, dtype=np.float64)
        rates.flags.writeable = False
        self._rates = rates
        self._runs = rate_runs(rates)
        self._slabs = slab_runs(self._runs)


class SGD(_PerParameterRates):
    """Stochastic gradient descent with optional (heavy-ball) momentum.

    ``v <- momentum * v + grad; theta <- theta - lr_scale * lr * v``,
    compiled, with the whole step refused when a gradient or a new
    parameter is not finite. ``lr_scale`` (1 by default) is the factor a
    learning-rate schedule sets (:mod:`dynsim.training.schedules`).
    """

    def __init__(self, network, lr, momentum=0.0):
        self.rates = learning_rates(network, lr)
        self.lr_scale = 1.0
        self.momentum = real_scalar("momentum", momentum, 0.0, 1.0, high_open=True)
        self.dtype = _state_dtype(network)
        self.velocity = np.zeros(network.n_params, dtype=self.dtype)

    def step(self, theta, grad):
        """Update ``theta`` (n_params,) in place from ``grad`` (n_params,)."""
        grad, scale = self._prepare(theta, grad)
        if self.velocity.dtype != theta.dtype:
            self.velocity = self.velocity.astype(theta.dtype)
        bad = _sgd_step(theta, self.velocity, grad, self._runs[0], self._runs[1], self.momentum, scale)
        if bad >= 0:
            raise self._refuse(bad, theta, grad, scale)
        return theta

    def state_dict(self):
        return {"velocity": self.velocity.copy()}

    def load_state_dict(self, state):
        self.velocity = np.array(state["velocity"], dtype=self.dtype)


# error_model="numpy": no zero-division test per entry (sqrt(v) b + eps > 0), so the loops vectorise (measured on the
# 134,794 parameters of 784-128-128-128-10, float64, one thread: 0.53 ms -> 0.13 ms a test pass). Every scalar comes
# in the parameters' dtype: one float64 scalar would widen a float32 step to float64 lanes (measured on the 407,050
# parameters of 784-512-10, one thread: 1.24 ms a float32 step with float64 scalars, the same as a float64 step).
@njit(cache=True, fastmath={"reassoc"}, error_model="numpy")
def _adam_test(theta, m, v, grad, a, beta1, beta2, a1, a2, b, eps):
    """0 when every ``grad[i]`` and every new parameter of an Adam step is finite, else NaN (1-D slices of one rate).

    ``x - x`` is 0 for a finite x and NaN otherwise, so one sum answers
    (see :func:`_finite_sum`; ``reassoc`` lets it vectorise). The arguments
    are those of :func:`_adam_write`.
    """
    acc = a - a  # 0 in the parameters' dtype
    for i in range(theta.shape[0]):
        g = grad[i]
        mi = beta1 * m[i] + a1 * g
        vi = beta2 * v[i] + a2 * (g * g)
        new = theta[i] - a * mi / (np.sqrt(vi) * b + eps)
        acc += (g - g) + (new - new)
    return acc


@njit(cache=True, error_model="numpy")
def _adam_write(theta, m, v, grad, a, beta1, beta2, a1, a2, b, eps):
    """One Adam step in place over 1-D slices of one rate.

    ``m' = beta1 m + a1 g``, ``v' = beta2 v + a2 g^2`` (``a1 = 1 - beta1``,
    ``a2 = 1 - beta2``) and ``theta -= a m' / (sqrt(v') b + eps)`` with
    ``a = rate / (1 - beta1^t)`` and ``b = 1 / sqrt(1 - beta2^t)``: Kingma &
    Ba's ``rate m_hat / (sqrt(v_hat) + eps)`` with the bias corrections
    folded into two scalars, one division and one square root per
    parameter. The moments are stored in their dtype (the parameters') and
    read back as stored.
    """
    for i in range(theta.shape[0]):
        g = grad[i]
        mi = beta1 * m[i] + a1 * g
        vi = beta2 * v[i] + a2 * (g * g)
        m[i] = mi
        v[i] = vi
        theta[i] = theta[i] - a * mi / (np.sqrt(vi) * b + eps)


@njit(cache=True, parallel=True)
def _adam_step(theta, m, v, grad, starts, steps, beta1, beta2, a1, a2, b, eps):
    """One Adam step in place, or none: -1, else the first index whose gradient or new value is not finite.

    ``steps[k]`` is piece k's ``a`` (its rate over ``1 - beta1^t``); the
    other scalars are :func:`_adam_write`'s, all in the parameters' dtype.
    A test pass, then the update pass (as :func:`_sgd_step`): a refused step
    leaves ``theta``, ``m`` and ``v`` untouched. The same step in numpy,
    with its parameter-sized temporaries and finiteness tests, took 2.5 ms
    on the 134,794 parameters of 784-128-128-128-10 (float64, one thread;
    the test pass above: 0.13 ms). Both passes share the pieces ``starts``
    (at most :data:`SLAB` parameters each, :func:`slab_runs`) out among Numba's
    threads: every parameter's arithmetic is its own, so the numbers do
    not depend on the thread count.
    """
    acc = 0.0
    for k in prange(steps.shape[0]):
        lo, hi = starts[k], starts[k + 1]
        acc += _adam_test(theta[lo:hi], m[lo:hi], v[lo:hi], grad[lo:hi], steps[k], beta1, beta2, a1, a2, b, eps)
    if acc != 0.0:
        for k in range(steps.shape[0]):
            a = steps[k]
            for i in range(starts[k], starts[k + 1]):
                g = grad[i]
                mi = beta1 * m[i] + a1 * g
                vi = beta2 * v[i] + a2 * (g * g)
                new = theta[i] - a * mi / (np.sqrt(vi) * b + eps)
                if not (np.isfinite(g) and np.isfinite(new)):
                    return i
    for k in prange(steps.shape[0]):
        lo, hi = starts[k], starts[k + 1]
        _adam_write(theta[lo:hi], m[lo:hi], v[lo:hi], grad[lo:hi], steps[k], beta1, beta2, a1, a2, b, eps)
    return -1


class Adam(_PerParameterRates):
    """Adam (Kingma & Ba 2015) with per-parameter learning rates, times ``lr_scale`` (see :class:`SGD`).

    Compiled, in place, with the moments ``m``, ``v`` in the parameters'
    dtype (float32 for a float32 :class:`dynsim.networks.pc.PCNetwork`); the whole
    step is refused when a gradient or a new parameter is not finite.
    """

    def __init__(self, network, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.rates = learning_rates(network, lr)
        self.lr_scale = 1.0
        self.beta1 = real_scalar("beta1", beta1, 0.0, 1.0, high_open=True)
        self.beta2 = real_scalar("beta2", beta2, 0.0, 1.0, high_open=True)
        self.eps = real_scalar("eps", eps, 0.0, np.inf, low_open=True)
        self.dtype = _state_dtype(network)
        self.m = np.zeros(network.n_params, dtype=self.dtype)
        self.v = np.zeros(network.n_params, dtype=self.dtype)
        self.t = 0

    def step(self, theta, grad):
        """Update ``theta`` (n_params,) in place from ``grad`` (n_params,)."""
        grad, scale = self._prepare(theta, grad)
        if self.m.dtype != theta.dtype:
            self.m, self.v = self.m.astype(theta.dtype), self.v.astype(theta.dtype)
        t = self.t + 1
        real = theta.dtype.type
        # A rate too large for the dtype becomes inf here, and the compiled test then refuses the step.
        with np.errstate(over="ignore"):
            steps = ((scale / (1.0 - self.beta1 ** t)) * self._slabs[1]).astype(theta.dtype)
        bad = _adam_step(theta, self.m, self.v, grad, self._slabs[0], steps, real(self.beta1),
                         real(self.beta2), real(1.0 - self.beta1), real(1.0 - self.beta2),
                         real(1.0 / np.sqrt(1.0 - self.beta2 ** t)), real(self.eps))
        if bad >= 0:
            raise self._refuse(bad, theta, grad, scale)
        # The state moves only with an applied step, so a refused step can be retried as if it never happened.
        self.t = t
        return theta

    def state_dict(self):
        return {"m": self.m.copy(), "v": self.v.copy(), "t": self.t}

    def load_state_dict(self, state):
        self.m = np.array(state["m"], dtype=self.dtype)
        self.v = np.array(state["v"], dtype=self.dtype)
        self.t = int(state["t"])
