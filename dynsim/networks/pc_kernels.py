"""Compiled energy, gradients and vector field of a predictive coding network.

Layers x_0 (clamped input) ... x_L (output); the free state s holds x_1..x_L
side by side, shape (batch, n_free). Layer l is predicted from the layer
below, mu_l = f(x_{l-1}) W_l + b_l with W_l of shape (n_{l-1}, n_l) stored
C-ordered in ``theta`` at ``w_off[l]`` and b_l at ``b_off + free_off[l]``.
The energy is the precision-weighted sum of squared prediction errors

    F = sum_l (p_l / 2) ||eps_l||^2,   eps_l = x_l - mu_l,   p_l = 1 / sigma_l^2,

so that dF/dx_l = p_l eps_l - f'(x_l) * (p_{l+1} eps_{l+1} W_{l+1}^T) and
dF/dW_l = -p_l f(x_{l-1})^T eps_l (Whittington & Bogacz 2017, Eqs. 2-5 with
row-vector states).

The drive ``mu_hat`` (batch, n_free) holds the feedforward predictions
(computed once per relaxation): its first block mu_1 depends only on the
clamped input and is exact at every state. With ``fixed`` (the fixed-prediction
assumption of Millidge, Tschantz & Buckley 2020) every prediction and every
f'(x_l) is held at its feedforward value during inference.

References
----------
.. [1] J. C. R. Whittington, R. Bogacz, "An Approximation of the Error
       Backpropagation Algorithm in a Predictive Coding Network with Local
       Hebbian Synaptic Plasticity", Neural Computation 29(5) (2017).
.. [2] B. Millidge, A. Tschantz, C. L. Buckley, "Predictive Coding
       Approximates Backprop along Arbitrary Computation Graphs",
       Neural Computation 34(6) (2022; arXiv 2020).
"""
import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from dynsim.networks.activations import GELU, GELU_A, GELU_C, HARD_SIGMOID, TANH, unit_rho_and_prime

# Cody and Waite's split of ln 2 (fdlibm's constants): k * LN2_HI is exact for the k met here.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00


@njit(cache=True, error_model="numpy", inline="always")
def _tanh(v):
    """tanh(v) within 3 ulp of numpy's, from arithmetic alone, so that loops over it vectorise.

    Numba calls libm's scalar tanh for ``np.tanh`` (measured here: 15-20 ns
    per entry, 18 times numpy's SIMD tanh), and in a predictive coding
    network of width 128 the activations of the state then cost more than
    the matrix products. Here, with y = 2|v|: for |v| < 0.55,
    tanh = expm1(y) / (expm1(y) + 2) with expm1 from its Taylor series to
    degree 18 (truncation below 1e-16 relative; no cancellation near 0); for
    larger |v|, tanh = 1 - 2 / (exp(y) + 1) with exp(y) = 2^k exp(r),
    |r| <= ln2 / 2, exp(r) to degree 13, and 2^k built by exact binary
    selects (y is capped at 40, where tanh is 1 to double precision). Both
    branches are computed and one is selected: no branch, no call.
    """
    a = abs(v)
    y = 2.0 * a
    p = 1.0 / 6402373705728000.0
    p = p * y + 1.0 / 355687428096000.0
    p = p * y + 1.0 / 20922789888000.0
    p = p * y + 1.0 / 1307674368000.0
    p = p * y + 1.0 / 87178291200.0
    p = p * y + 1.0 / 6227020800.0
    p = p * y + 1.0 / 479001600.0
    p = p * y + 1.0 / 39916800.0
    p = p * y + 1.0 / 3628800.0
    p = p * y + 1.0 / 362880.0
    p = p * y + 1.0 / 40320.0
    p = p * y + 1.0 / 5040.0
    p = p * y + 1.0 / 720.0
    p = p * y + 1.0 / 120.0
    p = p * y + 1.0 / 24.0
    p = p * y + 1.0 / 6.0
    p = p * y + 0.5
    p = p * y + 1.0
    em1 = p * y
    small = em1 / (em1 + 2.0)
    yc = min(y, 40.0)
    kd = math.floor(yc * _INV_LN2 + 0.5)
    r = (yc - kd * _LN2_HI) - kd * _LN2_LO
    q = 1.0 / 6227020800.0
    q = q * r + 1.0 / 479001600.0
    q = q * r + 1.0 / 39916800.0
    q = q * r + 1.0 / 3628800.0
    q = q * r + 1.0 / 362880.0
    q = q * r + 1.0 / 40320.0
    q = q * r + 1.0 / 5040.0
    q = q * r + 1.0 / 720.0
    q = q * r + 1.0 / 120.0
    q = q * r + 1.0 / 24.0
    q = q * r + 1.0 / 6.0
    q = q * r + 0.5
    q = q * r + 1.0
    q = q * r + 1.0
    scale = 1.0
    if kd >= 32.0:
        scale *= 4294967296.0
        kd -= 32.0
    if kd >= 16.0:
        scale *= 65536.0
        kd -= 16.0
    if kd >= 8.0:
        scale *= 256.0
        kd -= 8.0
    if kd >= 4.0:
        scale *= 16.0
        kd -= 4.0
    if kd >= 2.0:
        scale *= 4.0
        kd -= 2.0
    if kd >= 1.0:
        scale *= 2.0
    big = 1.0 - 2.0 / (q * scale + 1.0)
    return math.copysign(small if a < 0.55 else big, v)


_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_F2 = np.float32(2.0)
_FHALF = np.float32(0.5)
_F_YMAX = np.float32(20.0)  # tanh(10) rounds to 1 in float32
_F_INV_LN2 = np.float32(1.4426950408889634)
_F_LN2_HI = np.float32(0.693145751953125)  # 11 significant bits: k * _F_LN2_HI is exact for k < 2^13
_F_LN2_LO = np.float32(1.4286068203094172e-06)
_F_GELU_C = np.float32(GELU_C)
_F_GELU_A = np.float32(GELU_A)
_F_GELU_3A = np.float32(3.0 * GELU_A)
_F_EXPM1 = tuple(np.float32(1.0 / math.factorial(k)) for k in range(2, 9))  # 1/2!, ..., 1/8!


@njit(cache=True, error_model="numpy", inline="always")
def _tanh32(v):
    """tanh(v) of a float32 in float32 arithmetic (a few float32 ulp), branch-free so that loops vectorise 8 wide.

    tanh|v| = e / (e + 2) with e = expm1(y), y = 2|v| capped at 20 (where
    tanh is 1 in float32): y = k ln2 + r, |r| <= ln2 / 2, expm1(r) by its
    Taylor series to degree 8 (truncation below 2e-9 relative), then
    expm1(y) = 2^k expm1(r) + (2^k - 1) with 2^k from exact binary selects.
    For k = 0 (|v| < 0.17) that is expm1(r) itself: no cancellation near 0.
    """
    a = abs(v)
    y = min(_F2 * a, _F_YMAX)
    k = np.floor(y * _F_INV_LN2 + _FHALF)
    r = (y - k * _F_LN2_HI) - k * _F_LN2_LO
    c2, c3, c4, c5, c6, c7, c8 = _F_EXPM1
    p = c8
    p = p * r + c7
    p = p * r + c6
    p = p * r + c5
    p = p * r + c4
    p = p * r + c3
    p = p * r + c2
    p = p * r + _F1
    em1 = p * r
    scale = _F1
    kk = k
    for bit, power in ((np.float32(16.0), np.float32(65536.0)), (np.float32(8.0), np.float32(256.0)),
                       (np.float32(4.0), np.float32(16.0)), (np.float32(2.0), np.float32(4.0)),
                       (np.float32(1.0), np.float32(2.0))):
        take = kk >= bit
        scale = scale * (power if take else _F1)
        kk = kk - (bit if take else _F0)
    e = scale * em1 + (scale - _F1)
    t = e / (e + _F2)
    return -t if v < _F0 else t


def _tanh_and_prime_of(v):  # pragma: no cover - replaced in compiled code by the overload below
    t = np.tanh(v)
    return t, 1.0 - t * t


@overload(_tanh_and_prime_of, inline="always")
def _tanh_and_prime_of_impl(v):
    """(tanh v, 1 - tanh^2 v) in the precision of ``v``: float32 arithmetic for float32 (twice the SIMD width)."""
    if isinstance(v, types.Float) and v.bitwidth == 32:
        def impl(v):
            t = _tanh32(v)
            return t, _F1 - t * t
        return impl

    def impl(v):
        t = _tanh(v)
        return t, 1.0 - t * t
    return impl


def _gelu_and_prime_of(v):  # pragma: no cover - replaced in compiled code by the overload below
    raise NotImplementedError


@overload(_gelu_and_prime_of, inline="always")
def _gelu_and_prime_of_impl(v):
    """GELU (tanh form) and its derivative in the precision of ``v`` (see :func:`phi_into`)."""
    if isinstance(v, types.Float) and v.bitwidth == 32:
        def impl(v):
            t = _tanh32(_F_GELU_C * (v + _F_GELU_A * v * v * v))
            return (_FHALF * v * (_F1 + t),
                    _FHALF * (_F1 + t) + _FHALF * v * (_F1 - t * t) * _F_GELU_C * (_F1 + _F_GELU_3A * v * v))
        return impl

    def impl(v):
        t = _tanh(GELU_C * (v + GELU_A * v * v * v))
        return 0.5 * v * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * v * v)
    return impl


@njit(cache=True, error_model="numpy")
def phi_into(s, act, f, fp):
    """f(s) and f'(s) written into ``f`` and ``fp`` (each of the shape of ``s``, (batch, n)).

    One loop per activation over 1-D rows (the activation test outside the
    loop, contiguous rows: the loop vectorises). tanh and GELU go through the
    vectorised :func:`_tanh` (GELU is x/2 (1 + tanh(u)), u = sqrt(2/pi) (x +
    0.044715 x^3), the formula of :func:`dynsim.networks.activations.unit_rho_and_prime`
    with this tanh): with libm's scalar tanh, the GELU of a 784-pixel input
    and of the hidden layers cost more than the matrix products of a
    784-128-128-128-10 network. A float32 state takes float32 arithmetic
    (:func:`_tanh32`), a float64 one the float64 :func:`_tanh`. The hard
    sigmoid's constants take the state's dtype. The other activations use
    :func:`dynsim.networks.activations.unit_rho_and_prime`. Every predictive coding
    kernel, generic or fused, takes its activations from here, so that both
    paths see the same numbers.
    """
    n_batch = s.shape[0]
    m = s.shape[1]
    zero = s.dtype.type(0)
    one = s.dtype.type(1)
    for i in range(n_batch):
        ss, fs, fps = s[i], f[i], fp[i]
        if act == TANH:
            for j in range(m):
                fs[j], fps[j] = _tanh_and_prime_of(ss[j])
        elif act == GELU:
            for j in range(m):
                fs[j], fps[j] = _gelu_and_prime_of(ss[j])
        elif act == HARD_SIGMOID:
            # Constants of the arrays' dtype: with float64 literals a float32 loop ran in float64, unvectorised
            # (7.9 ns a unit against 0.4-0.6 ns, one thread). Compare-and-select keeps a NaN a NaN.
            for j in range(m):
                v = ss[j]
                fs[j] = zero if v < zero else (one if v > one else v)
                fps[j] = one if (v >= zero) & (v <= one) else zero
        else:
            for j in range(m):
                fs[j], fps[j] = unit_rho_and_prime(ss[j], act)


@njit(cache=True)
def phi_and_prime(s, act):
    """f(s) and f'(s), new C-contiguous arrays of the shape and dtype of ``s`` (see :func:`phi_into`)."""
    f = np.empty(s.shape, dtype=s.dtype)
    fp = np.empty(s.shape, dtype=s.dtype)
    phi_into(s, act, f, fp)
    return f, fp


@njit(cache=True)
def _weights(theta, l, sizes, w_off):
    start = w_off[l]
    return theta[start:start + sizes[l - 1] * sizes[l]].reshape((sizes[l - 1], sizes[l]))


@njit(cache=True)
def input_activity(x, act):
    """f(x_0), shape (batch, n_input): what the first layer's prediction and weight update read."""
    fx, _ = phi_and_prime(x, act)
    return fx


@njit(cache=True)
def feedforward_from_activity(fx, theta, sizes, w_off, b_off, free_off, act):
    """Feedforward predictions mu_hat (batch, n_free) from f(x_0) (:func:`input_activity`).

    Each layer's product is a C-contiguous (batch, n_l) array, so that the
    bias pass and the activation read rows: through a product computed as
    (W^T a^T)^T (a Fortran-ordered result) the feedforward pass of a GELU
    784-128-128-128-10 network took twice as long (1.9 against 0.9 ms for
    128 samples in float32).
    """
    n_batch = fx.shape[0]
    L = sizes.shape[0] - 1
    n_free = free_off[L] + sizes[L]
    out = np.empty((n_batch, n_free), dtype=fx.dtype)
    below = fx
    for l in range(1, L + 1):
        o = free_off[l]
        n = sizes[l]
        mu = np.dot(below, _weights(theta, l, sizes, w_off))
        bias = theta[b_off + o:b_off + o + n]
        for i in range(n_batch):
            ms, os_ = mu[i], out[i]
            for j in range(n):
                ms[j] += bias[j]
                os_[o + j] = ms[j]
        if l < L:
            below, _ = phi_and_prime(mu, act)
    return out


@njit(cache=True)
def feedforward(x, theta, sizes, w_off, b_off, free_off, act):
    """Feedforward predictions mu_hat (batch, n_free): x_l = mu_l layer after layer from x_0."""
    return feedforward_from_activity(input_activity(x, act), theta, sizes, w_off, b_off, free_off, act)


@njit(cache=True)
def _difference_into(s, mu_hat, o, n, eps):
    """``eps[:, o:o + n] = s[:, o:o + n] - mu_hat[:, o:o + n]`` as an element loop (the comment above
    :func:`integrators._numerics.copy_prefix` says why not slices); ``mu_hat`` has the shape of ``s``."""
    for i in range(s.shape[0]):
        for j in range(o, o + n):
            eps[i, j] = s[i, j] - mu_hat[i, j]


@njit(cache=True)
def errors(s, theta, sizes, w_off, b_off, free_off, act, mu_hat, fixed):
    """Prediction errors eps (batch, n_free) and f, f' of the state (or of mu_hat when ``fixed``)."""
    if mu_hat.shape[0] != s.shape[0] or mu_hat.shape[1] != s.shape[1]:
        # The element loops below do not test indices (Numba does not): a drive of another batch stops here.
        raise ValueError("the predictions mu_hat (the drive) and the state s differ in shape")
    L = sizes.shape[0] - 1
    n_batch = s.shape[0]
    source = mu_hat if fixed else s
    f, fp = phi_and_prime(source, act)
    eps = np.empty_like(s)
    _difference_into(s, mu_hat, free_off[1], sizes[1], eps)
    for l in range(2, L + 1):
        o = free_off[l]
        n = sizes[l]
        if fixed:
            _difference_into(s, mu_hat, o, n, eps)
        else:
            op = free_off[l - 1]
            below = np.ascontiguousarray(f[:, op:op + sizes[l - 1]])
            mu = np.dot(below, _weights(theta, l, sizes, w_off))  # C-ordered: read by rows below
            for i in range(n_batch):
                for j in range(n):
                    eps[i, o + j] = s[i, o + j] - mu[i, j] - theta[b_off + o + j]
    return eps, f, fp


@njit(cache=True)
def energy(s, theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat, fixed):
    """F per sample, shape (batch,)."""
    eps, _, _ = errors(s, theta, sizes, w_off, b_off, free_off, act, mu_hat, fixed)
    L = sizes.shape[0] - 1
    out = np.zeros(s.shape[0])
    for l in range(1, L + 1):
        o = free_off[l]
        for i in range(s.shape[0]):
            acc = 0.0
            for j in range(sizes[l]):
                acc += eps[i, o + j] * eps[i, o + j]
            out[i] += 0.5 * precisions[l] * acc
    return out


@njit(cache=True)
def energy_grad_state(s, theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat, fixed):
    """dF/dx per sample, shape (batch, n_free)."""
    eps, _, fp = errors(s, theta, sizes, w_off, b_off, free_off, act, mu_hat, fixed)
    L = sizes.shape[0] - 1
    grad = np.empty_like(s)
    for l in range(1, L + 1):
        o = free_off[l]
        for i in range(grad.shape[0]):
            for j in range(o, o + sizes[l]):
                grad[i, j] = precisions[l] * eps[i, j]
    for l in range(1, L):
        o = free_off[l]
        oa = free_off[l + 1]
        above = np.ascontiguousarray(eps[:, oa:oa + sizes[l + 1]]) * precisions[l + 1]
        back = np.dot(_weights(theta, l + 1, sizes, w_off), above.T).T
        for i in range(grad.shape[0]):
            for j in range(sizes[l]):
                grad[i, o + j] -= fp[i, o + j] * back[i, j]
    return grad


@njit(cache=True)
def energy_grad_params_from_activity(fx, s, theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat, fixed):
    """:func:`energy_grad_params` from f(x_0) (:func:`input_activity`) instead of x_0.

    Each weight block's product is written straight into the returned
    vector, with the factor -p_l / B applied to the (batch, n_l) errors
    beforehand.
    """
    eps, f, _ = errors(s, theta, sizes, w_off, b_off, free_off, act, mu_hat, fixed)
    L = sizes.shape[0] - 1
    n_batch = s.shape[0]
    grad = np.empty(theta.shape[0], dtype=theta.dtype)
    for l in range(1, L + 1):
        o = free_off[l]
        scale = -precisions[l] / n_batch
        # Filled entry by entry so that e keeps the state's dtype (a float32 array times a float64 scalar would
        # become float64, and np.dot refuses mixed dtypes).
        e = np.empty((n_batch, sizes[l]), dtype=s.dtype)
        for i in range(n_batch):
            for j in range(sizes[l]):
                e[i, j] = eps[i, o + j] * scale
        if l == 1:
            below = fx
        else:
            op = free_off[l - 1]
            below = np.ascontiguousarray(f[:, op:op + sizes[l - 1]])
        n_w = sizes[l - 1] * sizes[l]
        np.dot(below.T, e, grad[w_off[l]:w_off[l] + n_w].reshape((sizes[l - 1], sizes[l])))
        for j in range(sizes[l]):
            acc = 0.0
            for i in range(n_batch):
                acc += e[i, j]
            grad[b_off + o + j] = acc
    return grad


@njit(cache=True)
def energy_grad_params(x, s, theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat, fixed):
    """Gradient of the batch-mean F with respect to theta, shape (n_params,).

    dF/dW_l = -p_l f(x_{l-1})^T eps_l / B, dF/db_l = -p_l mean(eps_l); with
    ``fixed`` the presynaptic activities are the feedforward ones.
    """
    return energy_grad_params_from_activity(input_activity(x, act), s, theta, sizes, w_off, b_off, free_off, act,
                                            precisions, mu_hat, fixed)


@njit(cache=True)
def pc_vector_field(t, s, dsdt, args):
    """dx/dt = -dF/dx (- beta dC/dx on the output), C = 1/2 ||x_L - target||^2.

    ``args = (theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat,
    fixed, beta, target, clamp_output)``. With ``clamp_output`` the output
    layer is held (at the target: supervised predictive coding).
    """
    theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat, fixed, beta, target, clamp_output = args
    grad = energy_grad_state(s, theta, sizes, w_off, b_off, free_off, act, precisions, mu_hat, fixed)
    n_batch, n = s.shape
    for i in range(n_batch):
        for j in range(n):
            dsdt[i, j] = -grad[i, j]
    L = sizes.shape[0] - 1
    o = free_off[L]
    n_out = sizes[L]
    if clamp_output:
        dsdt[:, o:o + n_out] = 0.0
    elif beta != 0.0:
        for i in range(n_batch):
            for j in range(n_out):
                dsdt[i, o + j] -= beta * (s[i, o + j] - target[i, j])
