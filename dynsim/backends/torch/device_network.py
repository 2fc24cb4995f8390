"""What every network on the torch backend shares: its parameters on the device, conversions, state layout."""
from __future__ import annotations

import numpy as np

from dynsim.backends.torch._torch import require_torch, resolve_device, torch_dtype
from dynsim.validation import DynsimError, ValidationError

torch = require_torch()

__all__ = ["DeviceNetwork", "RelaxationDivergedError", "check_range"]


class RelaxationDivergedError(DynsimError):
    """A relaxation on the torch backend produced a non-finite state or one above ``max_abs``."""


class DeviceNetwork:
    """A dynsim network's description with its flat parameter vector ``theta`` as a tensor on ``device``.

    Subclasses set the group layout (``group_sizes``, ``group_shapes``,
    ``_free_off``) and the network-specific parts; this holds the parameters,
    the conversions to the device and back, and the flat (batch, n_free)
    layout of the Numba path.
    """

    def _init_device(self, network, device, dtype):
        self.source = network
        self.device = resolve_device(device)
        self.np_dtype = np.dtype(network.dtype if dtype is None else dtype)
        self.dtype = torch_dtype(self.np_dtype)
        self.group_names = tuple(network.group_names)
        self.group_sizes = tuple(network.group_sizes)
        self.n_params = network.n_params
        self._free_off = np.asarray(network._free_off)
        self.theta = torch.as_tensor(np.asarray(network.theta, dtype=self.np_dtype), device=self.device).clone()

    # ------------------------------------------------------------------ parameters
    def load_theta(self, theta):
        """Copy parameters (numpy (n_params,), in the source's layout) onto the device, in place."""
        theta = np.asarray(theta)
        if theta.shape != (self.n_params,) or not np.all(np.isfinite(theta)):
            raise ValidationError(f"theta must be a finite array of shape ({self.n_params},), got shape "
                                  f"{theta.shape}")
        self.theta.copy_(torch.as_tensor(theta.astype(self.np_dtype), device=self.device))

    def host_theta(self):
        """The parameters as a numpy array (n_params,) on the host."""
        return self.theta.detach().cpu().numpy().copy()

    def to_host(self):
        """Write the parameters back into :attr:`source` (for checkpoints, logs, the Numba path); returns it."""
        self.source.theta = self.host_theta().astype(self.source.dtype)
        return self.source

    def parameter_blocks(self):
        return self.source.parameter_blocks()

    def layer_of_block(self):
        return self.source.layer_of_block()

    # ------------------------------------------------------------------ layout
    @property
    def n_free(self):
        return sum(self.group_sizes[1:])

    @property
    def n_output(self):
        return self.group_sizes[-1]

    def tensor(self, a):
        """``a`` (numpy or torch) as a tensor of this network's dtype on its device."""
        if isinstance(a, torch.Tensor):
            return a.to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.asarray(a, dtype=self.np_dtype), device=self.device)

    def unflatten(self, s):
        """Group tensors ``[None, s_1, ..., s_out]`` (views) of a flat state (batch, n_free)."""
        s = self.tensor(s)
        out = [None]
        for g in range(1, len(self.group_sizes)):
            o = int(self._free_off[g])
            out.append(s[:, o:o + self.group_sizes[g]].view((s.shape[0],) + self.group_shapes[g]))
        return out

    def flatten(self, groups):
        """The flat state (batch, n_free) of group tensors."""
        return torch.cat([t.reshape(t.shape[0], -1) for t in groups[1:]], dim=1)


def check_range(phase, steps, residual, norm, largest, max_abs, where=""):
    """Raise :class:`RelaxationDivergedError` naming the first sample whose state or field left the range.

    As ``integrators._numerics.first_bad_sample``: an entry of the state or
    of its field above ``max_abs``, or anything not finite. One read back.
    """
    good = torch.isfinite(norm) & torch.isfinite(residual) & (largest <= max_abs)
    if not bool(good.all()):
        bad = int((~good).nonzero()[0, 0])
        raise RelaxationDivergedError(
            f"{phase} phase diverged: sample {bad} of the minibatch left the finite range (an entry of the state or "
            f"of its field above max_abs = {max_abs:g}, or not finite) by step {steps}{where}; lower the learning "
            "rate or beta, or relax with a smaller step")
