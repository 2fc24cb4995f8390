"""Predictive coding networks on the torch backend: energy, inference with the output clamped, the PC update.

:class:`TorchPCNetwork` takes a :class:`dynsim.networks.pc.PCNetwork` (layers
x_0 .. x_L, predictions ``mu_l = f(x_{l-1}) W_l + b_l``, precisions
``p_l = 1 / sigma_l^2``) and evaluates, on a device, what its Numba kernels do:

    F = sum_l (p_l / 2) ||x_l - mu_l||^2,
    dF/dx_l = p_l eps_l - f'(x_l) * (p_{l+1} eps_{l+1} W_{l+1}^T),
    dF/dW_l = -p_l f(x_{l-1})^T eps_l / B,   dF/db_l = -p_l mean_b eps_l,

with ``fixed_prediction`` holding predictions and f' at the feedforward
pass (Millidge et al. 2020). :func:`pc_estimate` is the strict (or
fixed-prediction) PC rule of :func:`dynsim.learning.predictive_coding.pc_gradient`:
inference by Euler steps from the feedforward pass with the output clamped
to the target, the update read at the last state, times sigma_L^2.

References
----------
.. [1] J. C. R. Whittington, R. Bogacz, "An Approximation of the Error Backpropagation Algorithm in a
       Predictive Coding Network with Local Hebbian Synaptic Plasticity", Neural Computation 29(5) (2017).
.. [2] B. Millidge, A. Tschantz, C. L. Buckley, "Predictive Coding Approximates Backprop along Arbitrary
       Computation Graphs", Neural Computation 34(6) (2022).
"""
from __future__ import annotations

import math

from dynsim.backends.torch._torch import require_torch
from dynsim.backends.torch.device_network import DeviceNetwork, check_range
from dynsim.backends.torch.relax import TorchPhase, check_options
from dynsim.networks.pc import PCNetwork
from dynsim.validation import ValidationError

torch = require_torch()

__all__ = ["TorchPCNetwork", "pc_relax", "pc_estimate", "PC_TORCH_RULES"]

PC_TORCH_RULES = ("pc-strict", "pc-fixed-prediction")
"""The predictive coding rules the torch backend runs."""

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def f_and_prime(v, activation):
    """f(v), f'(v) of the PC activations, with the formulas of :mod:`dynsim.networks.activations`."""
    if activation == "tanh":
        th = torch.tanh(v)
        return th, 1.0 - th * th
    if activation == "logistic":
        e = torch.sigmoid(v)
        return e, e * (1.0 - e)
    if activation == "relu":
        pos = v > 0.0
        return torch.where(pos, v, torch.zeros_like(v)), pos.to(v.dtype)
    if activation == "hard_sigmoid":
        return v.clamp(0.0, 1.0), ((v >= 0.0) & (v <= 1.0)).to(v.dtype)
    if activation == "gelu":
        th = torch.tanh(_GELU_C * (v + _GELU_A * v * v * v))
        return 0.5 * v * (1.0 + th), 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * _GELU_C * (
            1.0 + 3.0 * _GELU_A * v * v)
    raise ValueError(f"unknown activation {activation!r}")  # validated by PCNetwork


class TorchPCNetwork(DeviceNetwork):
    """A :class:`~dynsim.networks.pc.PCNetwork` evaluated with torch on ``device``.

    Parameters
    ----------
    network : PCNetwork
        Description and starting parameters (not modified; :meth:`to_host` writes them back).
    device : str or torch.device
    dtype : numpy dtype, optional
        float32 or float64 (default: the network's).

    Notes
    -----
    States are lists of layer tensors ``[None, x_1, ..., x_L]`` as for
    :class:`~dynsim.backends.torch.network.TorchHopfieldNetwork`, with the
    same :meth:`flatten` / :meth:`unflatten` to the Numba layout.
    """

    def __init__(self, network, device="cpu", dtype=None):
        if not isinstance(network, PCNetwork):
            raise ValidationError(f"network must be a PCNetwork, got {type(network).__name__}")
        self._init_device(network, device, dtype)
        self.group_shapes = tuple((n,) for n in self.group_sizes)
        self.activation = network.activation
        self._w = [None] + [(int(network._w_off[l]), int(network._w_off[l]) + self.group_sizes[l - 1] *
                             self.group_sizes[l]) for l in range(1, len(self.group_sizes))]
        self._b = [None] + [(int(network._b_off + network._free_off[l]),
                             int(network._b_off + network._free_off[l]) + self.group_sizes[l])
                            for l in range(1, len(self.group_sizes))]
        self.precisions = [None] + [float(1.0 / v) for v in network.variances]
        self.output_variance = float(network.variances[-1])
        self.fixed_prediction = network.fixed_prediction

    def weight(self, l):
        a, b = self._w[l]
        return self.theta[a:b].view(self.group_sizes[l - 1], self.group_sizes[l])

    def bias(self, l):
        a, b = self._b[l]
        return self.theta[a:b]

    # -------------------------------------------------------------- energy
    def feedforward(self, x):
        """``(f(x), [None, mu_1, ..., mu_L])``: the input activity and the feedforward pass."""
        fx, _ = f_and_prime(self.tensor(x), self.activation)
        mu, below = [None], fx
        for l in range(1, len(self.group_sizes)):
            mu.append(below @ self.weight(l) + self.bias(l))
            below = f_and_prime(mu[l], self.activation)[0]
        return fx, mu

    def errors(self, s, fx, mu_hat, fixed=None):
        """``(eps, f, f')``: prediction errors per layer and f, f' of the state (of mu_hat when ``fixed``)."""
        fixed = self.fixed_prediction if fixed is None else fixed
        L = len(self.group_sizes) - 1
        f, fp = [None] * (L + 1), [None] * (L + 1)
        source = mu_hat if fixed else s
        for l in range(1, L + 1):
            f[l], fp[l] = f_and_prime(source[l], self.activation)
        eps = [None, s[1] - mu_hat[1]]
        for l in range(2, L + 1):
            eps.append(s[l] - mu_hat[l] if fixed else s[l] - (f[l - 1] @ self.weight(l) + self.bias(l)))
        return eps, f, fp

    def energy(self, s, fx, mu_hat, fixed=None):
        """F per sample, shape (batch,)."""
        eps, _, _ = self.errors(s, fx, mu_hat, fixed)
        return sum(0.5 * self.precisions[l] * (eps[l] * eps[l]).sum(1) for l in range(1, len(eps)))

    def energy_grad_state(self, s, fx, mu_hat, fixed=None, eps=None):
        """dF/dx per layer."""
        if eps is None:
            eps, _, fp = self.errors(s, fx, mu_hat, fixed)
        else:
            eps, fp = eps
        L = len(self.group_sizes) - 1
        grad = [None] + [self.precisions[l] * eps[l] for l in range(1, L + 1)]
        for l in range(1, L):
            grad[l] = grad[l] - fp[l] * ((self.precisions[l + 1] * eps[l + 1]) @ self.weight(l + 1).T)
        return grad

    def energy_grad_params(self, s, fx, mu_hat, fixed=None):
        """Gradient of the batch-mean F with respect to :attr:`theta`, shape (n_params,)."""
        eps, f, _ = self.errors(s, fx, mu_hat, fixed)
        n = s[1].shape[0]
        grad = torch.empty(self.n_params, dtype=self.dtype, device=self.device)
        for l in range(1, len(self.group_sizes)):
            e = eps[l] * (-self.precisions[l] / n)
            below = fx if l == 1 else f[l - 1]
            a, b = self._w[l]
            grad[a:b] = (below.T @ e).reshape(-1)
            a, b = self._b[l]
            grad[a:b] = e.sum(0)
        return grad


def pc_relax(net, s0, fx, mu_hat, options, check_every=10, sync=True, fixed=None):
    """Inference with the output held: Euler steps ``x <- x - dt dF/dx`` on the hidden layers.

    ``options`` is a :class:`~dynsim.relax.phases.SettleOptions` with
    ``integrator='euler'`` (the PC papers' inference); its steady-state test
    and ``max_abs`` act every ``check_every`` steps, as in
    :func:`dynsim.backends.torch.relax.relax`. Returns a :class:`TorchPhase`.
    """
    check_every = check_options(options, check_every)
    if options.integrator != "euler":
        raise ValidationError(f"options.integrator must be 'euler' for predictive coding inference on the torch "
                              f"backend, got {options.integrator!r}")
    if options.bounds is not None or options.retry_smaller_step:
        raise ValidationError("options: PC inference on the torch backend runs unprojected Euler steps at one step "
                              "size; bounds and retry_smaller_step are not supported (leave them unset)")
    dt = options.step()
    L = len(net.group_sizes) - 1
    s = [None] + [net.tensor(t).clone() for t in s0[1:]]
    stop = options.stop_at_steady_state and sync
    steps, status, residual = 0, None, None
    while True:
        at_end = steps >= options.max_steps
        test = sync and (at_end or (stop and steps % check_every == 0))
        grad = net.energy_grad_state(s, fx, mu_hat, fixed)
        if test or (at_end and not sync):
            n = s[1].shape[0]  # groups may be feature maps (batch, C, H, W): per-sample sums over the rest
            res2 = sum((grad[l] * grad[l]).reshape(n, -1).sum(1) for l in range(1, L))
            residual = res2.sqrt() if L > 1 else torch.zeros(n, dtype=net.dtype, device=net.device)
            norm = sum((s[l] * s[l]).reshape(n, -1).sum(1) for l in range(1, L + 1)).sqrt()
            largest = torch.stack([t.abs().reshape(n, -1).amax(1) for t in [*s[1:], *grad[1:L]]]).amax(0)
        if test:
            check_range("inference", steps, residual, norm, largest, options.max_abs)
            if stop and bool((residual <= options.atol + options.rtol * norm).all()):
                status = "converged"
                break
        if at_end:
            status = "step_limit" if sync else None
            break
        for l in range(1, L):  # the output layer is clamped
            s[l] = s[l] - dt * grad[l]
        steps += 1
    return TorchPhase(state=s, steps=steps, status=status, residual=residual)


def pc_estimate(net, rule, x, target, options, check_every=10, sync=True, rescale=True):
    """The PC update of one minibatch (:func:`dynsim.learning.predictive_coding.pc_gradient`) on the device.

    Returns
    -------
    TorchEstimate
        ``gradient`` (n_params,), ``free`` the feedforward pass (the
        network's prediction), ``phases['inference']``.
    """
    from dynsim.backends.torch.learning import TorchEstimate

    if rule not in PC_TORCH_RULES:
        raise ValidationError(f"rule must be one of {list(PC_TORCH_RULES)} for a PC network on the torch backend, "
                              f"got {rule!r}")
    fixed = rule == "pc-fixed-prediction"
    fx, mu = net.feedforward(x)  # fx: f(x), or a TorchConvPCNetwork's ClampedInput
    s0 = [None] + list(mu[1:-1]) + [net.tensor(target).reshape(mu[-1].shape)]
    inference = pc_relax(net, s0, fx, mu, options, check_every, sync, fixed)
    grad = net.energy_grad_params(inference.state, fx, mu, fixed)
    if rescale:
        grad = grad * net.output_variance
    free = TorchPhase(state=mu, steps=0, status="converged", residual=None)
    return TorchEstimate(grad, free, {"inference": inference}, (0.0, 0.0))
