"""SGD and Adam on the device, with the per-parameter rates and the arithmetic of :mod:`dynsim.training.optimizers`.

Both keep their state (momentum, moments, step count, rate factor) in
tensors on the network's device and update ``theta`` in place with no read
back to the host, so that a whole training step can be captured in a CUDA
graph. A step whose gradient or new parameters are not finite is refused as
on the CPU: the parameters and the state stay as they were, and
:meth:`step` returns False in a boolean tensor; :meth:`check` (a read back)
turns that into :class:`dynsim.training.optimizers.NonFiniteGradientError`.
Their :meth:`state_dict` is the CPU optimizers', so checkpoints move between
the two.

References
----------
.. [1] D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR (2015).
"""
from __future__ import annotations

import numpy as np

from dynsim.backends.torch._torch import require_torch
from dynsim.training.optimizers import NonFiniteGradientError, learning_rates
from dynsim.validation import ValidationError, real_scalar

torch = require_torch()

__all__ = ["TorchSGD", "TorchAdam"]


class _DeviceOptimizer:
    def __init__(self, net, lr):
        self.net = net
        self.rates = torch.as_tensor(learning_rates(net.source, lr), dtype=net.dtype, device=net.device)
        self._scale = torch.ones((), dtype=net.dtype, device=net.device)

    @property
    def lr_scale(self):
        """Factor on every rate (a schedule's), 1 by default."""
        return float(self._scale)

    @lr_scale.setter
    def lr_scale(self, value):
        self._scale.fill_(real_scalar("lr_scale", value, 0.0, np.inf, low_open=True, high_open=True))

    def _apply(self, theta, new, ok, pairs):
        """Write ``new`` and the new state where the step is finite; keep everything otherwise."""
        theta.copy_(torch.where(ok, new, theta))
        for old, value in pairs:
            old.copy_(torch.where(ok, value, old))

    @staticmethod
    def check(ok, theta_name="theta"):
        """Raise NonFiniteGradientError when the step that returned ``ok`` was refused (reads ``ok`` back)."""
        if not bool(ok):
            raise NonFiniteGradientError(f"a gradient or an updated parameter was not finite; {theta_name} and the "
                                         "optimizer state were not updated (learning rate or beta too large?)")


class TorchSGD(_DeviceOptimizer):
    """``v <- momentum v + grad; theta <- theta - lr_scale lr v`` (see :class:`dynsim.training.optimizers.SGD`)."""

    def __init__(self, net, lr, momentum=0.0):
        super().__init__(net, lr)
        self.momentum = real_scalar("momentum", momentum, 0.0, 1.0, high_open=True)
        self.velocity = torch.zeros(net.n_params, dtype=net.dtype, device=net.device)

    def step(self, theta, grad):
        """Update ``theta`` in place from ``grad``; a 0-d boolean tensor, True when the step was applied."""
        v = self.momentum * self.velocity + grad if self.momentum else grad
        new = theta - self._scale * self.rates * v
        ok = torch.isfinite(grad).all() & torch.isfinite(new).all()
        self._apply(theta, new, ok, [(self.velocity, v)] if self.momentum else [])
        return ok

    def state_dict(self):
        return {"velocity": self.velocity.cpu().numpy().copy()}

    def load_state_dict(self, state):
        self.velocity.copy_(torch.as_tensor(np.asarray(state["velocity"]), dtype=self.net.dtype))


class TorchAdam(_DeviceOptimizer):
    """Adam with per-parameter rates (see :class:`dynsim.training.optimizers.Adam`), on the device.

    ``m' = b1 m + (1 - b1) g``, ``v' = b2 v + (1 - b2) g^2``,
    ``theta -= lr_scale r (m' / c1) / (sqrt(v' / c2) + eps)``, ``c1 = 1 - b1^t``,
    ``c2 = 1 - b2^t``, the step count ``t`` a device tensor.
    """

    def __init__(self, net, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        super().__init__(net, lr)
        self.beta1 = real_scalar("beta1", beta1, 0.0, 1.0, high_open=True)
        self.beta2 = real_scalar("beta2", beta2, 0.0, 1.0, high_open=True)
        self.eps = real_scalar("eps", eps, 0.0, np.inf, low_open=True)
        self.m = torch.zeros(net.n_params, dtype=net.dtype, device=net.device)
        self.v = torch.zeros(net.n_params, dtype=net.dtype, device=net.device)
        self.t = torch.zeros((), dtype=torch.float64, device=net.device)

    def step(self, theta, grad):
        """Update ``theta`` in place from ``grad``; a 0-d boolean tensor, True when the step was applied."""
        t = self.t + 1.0
        c1 = (1.0 - torch.pow(self.beta1, t)).to(theta.dtype)
        c2 = (1.0 - torch.pow(self.beta2, t)).to(theta.dtype)
        m = self.beta1 * self.m + (1.0 - self.beta1) * grad
        v = self.beta2 * self.v + (1.0 - self.beta2) * (grad * grad)
        new = theta - (self._scale * self.rates) * (m / c1) / (torch.sqrt(v / c2) + self.eps)
        ok = torch.isfinite(grad).all() & torch.isfinite(new).all()
        self._apply(theta, new, ok, [(self.m, m), (self.v, v), (self.t, t)])
        return ok

    def state_dict(self):
        return {"m": self.m.cpu().numpy().copy(), "v": self.v.cpu().numpy().copy(), "t": int(self.t)}

    def load_state_dict(self, state):
        self.m.copy_(torch.as_tensor(np.asarray(state["m"]), dtype=self.net.dtype))
        self.v.copy_(torch.as_tensor(np.asarray(state["v"]), dtype=self.net.dtype))
        self.t.fill_(int(state["t"]))


def make_optimizer(name, net, lr, **options):
    """``'sgd'`` or ``'adam'`` on the device of ``net``."""
    if name == "sgd":
        return TorchSGD(net, lr, **options)
    if name == "adam":
        return TorchAdam(net, lr, **options)
    raise ValidationError(f"optimizer must be 'sgd' or 'adam', got {name!r}")
