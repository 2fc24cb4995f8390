"""Convolutional predictive coding networks on the torch backend: the energy of :class:`ConvPCNetwork` on a device.

:class:`TorchConvPCNetwork` takes a :class:`dynsim.networks.conv_pc.ConvPCNetwork`
(groups of units or feature maps in feedforward order, dense and
convolutional couplings with max or average pooling, skip couplings
allowed) and evaluates what its Numba kernels do,

    F = sum_g (p_g / 2) ||eps_g||^2,   eps_g = x_g - mu_g,   mu_g = b_g + sum_{c: post = g} K_c(f_pre(x_pre)),
    dF/dx_g = p_g eps_g - f_g'(x_g) * sum_{c: pre = g} J_c^T (p_post eps_post),
    dF/dW_c = -d<p_post eps_post, K_c(a_pre)>/dW_c / B,   dF/db_g = -p_g sum eps_g / B,

with the couplings of :mod:`dynsim.backends.torch.couplings` (PyTorch's
``conv2d``, its transpose and weight gradient; max pooling routed to each
window's first winner). With ``fixed_prediction`` the predictions, f' and
the poolings' winners are those of the feedforward pass. It has the
interface of :class:`~dynsim.backends.torch.pc.TorchPCNetwork`, so
:func:`~dynsim.backends.torch.pc.pc_relax` and
:func:`~dynsim.backends.torch.pc.pc_estimate` run it.

References
----------
.. [1] B. Millidge, A. Tschantz, C. L. Buckley, "Predictive Coding Approximates Backprop along Arbitrary
       Computation Graphs", Neural Computation 34(6) (2022) (convolutional PC, fixed prediction).
.. [2] L. Pinchetti et al., "Benchmarking Predictive Coding Networks -- Made Simple", ICLR (2025).
"""
from __future__ import annotations

from typing import NamedTuple

from dynsim.backends.torch._torch import require_torch
from dynsim.backends.torch.couplings import torch_couplings
from dynsim.backends.torch.device_network import DeviceNetwork
from dynsim.backends.torch.pc import TorchPCNetwork, f_and_prime
from dynsim.networks.conv_pc import ConvPCNetwork
from dynsim.validation import ValidationError

torch = require_torch()

__all__ = ["TorchConvPCNetwork", "ClampedInput", "TORCH_PC_NETWORKS"]


class ClampedInput(NamedTuple):
    """What a minibatch's clamped input gives every later call: f(x_0) and what it predicts.

    ``fx`` (batch, *input_shape); ``drive`` per group ``b_g + sum_{c: pre = 0}
    K_c(fx)`` (None for group 0), constant during the inference.
    """

    fx: object
    drive: list


class TorchConvPCNetwork(DeviceNetwork):
    """A :class:`~dynsim.networks.conv_pc.ConvPCNetwork` evaluated with torch on ``device``.

    Parameters
    ----------
    network : ConvPCNetwork
        Description and starting parameters (not modified; :meth:`to_host` writes them back).
    device : str or torch.device
    dtype : numpy dtype, optional
        float32 or float64 (default: the network's).

    Notes
    -----
    States are lists of group tensors ``[None, x_1, ..., x_L]`` shaped
    ``(batch, *group_shape)``; :meth:`flatten` and :meth:`unflatten` convert
    to the (batch, n_free) layout of the Numba path. :meth:`feedforward`
    returns a :class:`ClampedInput` where the dense network returns f(x).
    """

    def __init__(self, network, device="cpu", dtype=None):
        if not isinstance(network, ConvPCNetwork):
            raise ValidationError(f"network must be a ConvPCNetwork, got {type(network).__name__}")
        self._init_device(network, device, dtype)
        self.group_shapes = tuple(tuple(s) for s in network.group_shapes)
        self.activations = tuple(network.activations)
        self.couplings = torch_couplings(network, self.group_shapes)
        self._bias = {g: (b.start, b.stop) for g, b in network._bias_blocks.items()}
        self.precisions = [None] + [float(1.0 / v) for v in network.variances]
        self.output_variance = float(network.variances[-1])
        self.fixed_prediction = network.fixed_prediction

    # -------------------------------------------------------------- predictions
    def _bias_of(self, g, n):
        shape = self.group_shapes[g]
        span = self._bias.get(g)
        if span is None:
            return torch.zeros((n,) + shape, dtype=self.dtype, device=self.device)
        b = self.theta[span[0]:span[1]]
        return (b.view(1, -1, 1, 1) if len(shape) == 3 else b.view(1, -1)).expand((n,) + shape)

    def _activities(self, source, fx):
        """f and f' of every group of ``source`` (group 0: the clamped input's ``fx``)."""
        G = len(self.group_sizes)
        f, fp = [fx] + [None] * (G - 1), [None] * G
        for g in range(1, G):
            f[g], fp[g] = f_and_prime(source[g], self.activations[g])
        return f, fp

    def _forwards(self, f):
        """``{k: (K_k(f_pre), winners)}`` of the couplings between free groups."""
        return {k: c.forward(self.theta, f[c.pre]) for k, c in enumerate(self.couplings) if c.pre != 0}

    def feedforward(self, x):
        """``(ClampedInput, [None, mu_1, ..., mu_L])``: the clamped input and the feedforward pass x_g = mu_g."""
        x = self.tensor(x)
        n = x.shape[0]
        fx, _ = f_and_prime(x.reshape((n,) + self.group_shapes[0]), self.activations[0])
        G = len(self.group_sizes)
        drive, mu, f = [None], [None], [fx] + [None] * (G - 1)
        for g in range(1, G):
            d = self._bias_of(g, n)
            for c in self.couplings:
                if c.pre == 0 and c.post == g:
                    d = d + c.forward(self.theta, fx)[0]
            drive.append(d)
            m = d
            for c in self.couplings:
                if c.pre != 0 and c.post == g:  # feedforward order: group c.pre is done
                    m = m + c.forward(self.theta, f[c.pre])[0]
            mu.append(m)
            f[g] = f_and_prime(m, self.activations[g])[0]
        return ClampedInput(fx, drive), mu

    # -------------------------------------------------------------- energy
    def errors(self, s, inp, mu_hat, fixed=None):
        """``(eps, f, f', forwards)``: errors per group, f and f' of the state (of mu_hat when ``fixed``), and
        the couplings' forwards at those f (their pooling winners route the transposes)."""
        fixed = self.fixed_prediction if fixed is None else fixed
        source = mu_hat if fixed else s
        f, fp = self._activities(source, inp.fx)
        fwd = self._forwards(f)
        eps = [None]
        for g in range(1, len(self.group_sizes)):
            if fixed:
                eps.append(s[g] - mu_hat[g])
                continue
            m = inp.drive[g]
            for k, c in enumerate(self.couplings):
                if c.pre != 0 and c.post == g:
                    m = m + fwd[k][0]
            eps.append(s[g] - m)
        return eps, f, fp, fwd

    def energy(self, s, inp, mu_hat, fixed=None):
        """F per sample, shape (batch,)."""
        eps = self.errors(s, inp, mu_hat, fixed)[0]
        n = s[1].shape[0]
        return sum(0.5 * self.precisions[g] * (eps[g] * eps[g]).reshape(n, -1).sum(1) for g in range(1, len(eps)))

    def energy_grad_state(self, s, inp, mu_hat, fixed=None):
        """dF/dx per group, group tensors."""
        eps, _, fp, fwd = self.errors(s, inp, mu_hat, fixed)
        grad = [None] + [self.precisions[g] * eps[g] for g in range(1, len(self.group_sizes))]
        for k, c in enumerate(self.couplings):
            if c.pre != 0:
                back = c.transpose(self.theta, self.precisions[c.post] * eps[c.post], fwd[k][1])
                grad[c.pre] = grad[c.pre] - fp[c.pre] * back
        return grad

    def energy_grad_params(self, s, inp, mu_hat, fixed=None):
        """Gradient of the batch-mean F with respect to :attr:`theta`, shape (n_params,)."""
        eps, f, _, fwd = self.errors(s, inp, mu_hat, fixed)
        n = s[1].shape[0]
        grad = torch.empty(self.n_params, dtype=self.dtype, device=self.device)
        for k, c in enumerate(self.couplings):
            memo = fwd[k][1] if k in fwd else None  # a coupling from the input finds its winners again
            block = c.weight_grad(self.theta, f[c.pre], self.precisions[c.post] * eps[c.post], memo)
            grad[c.start:c.stop] = block.reshape(-1)
        for g, (lo, hi) in self._bias.items():
            e = self.precisions[g] * eps[g]
            grad[lo:hi] = e.sum(dim=(0, 2, 3)) if e.dim() == 4 else e.sum(0)
        return grad.mul_(-1.0 / n)


TORCH_PC_NETWORKS = (TorchPCNetwork, TorchConvPCNetwork)
"""The predictive coding networks of the torch backend (what :func:`~dynsim.backends.torch.pc.pc_estimate` runs)."""
