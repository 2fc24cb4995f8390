"""A dynsim Hopfield network (dense or convolutional) on a torch device: energy, fields, parameter gradients.

:class:`TorchHopfieldNetwork` takes a :class:`dynsim.networks.hopfield.HopfieldNetwork`
or a :class:`dynsim.networks.conv_hopfield.ConvHopfieldNetwork` and holds its
parameter vector ``theta`` as one torch tensor on a device (the CPU or a CUDA
GPU), with the same layout. It evaluates the energy of those classes,

    E(s) = 1/2 sum_g ||s_g||^2 - sum_g <b_g, rho(s_g)> - sum_c <rho(s_post(c)), K_c(rho(s_pre(c)))>,

with the input group clamped to ``rho(x)``. The local field of a free group is
``h_g = -dE/d rho(s_g) = d_g + sum_{c: post = g} K_c(a_pre) + sum_{c: pre = g} J_c^T a_post``,
``d_g`` the drive (bias plus the input's couplings, once per minibatch).

States are handled as lists of group tensors ``(batch, *group_shape)``,
index ``g`` for group ``g`` (entry 0, the input, is None); :meth:`flatten`
and :meth:`unflatten` convert to and from the (batch, n_free) layout of the
Numba path, so results compare entry by entry.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation: Bridging the Gap between Energy-Based Models and
       Backpropagation", Front. Comput. Neurosci. 11:24 (2017).
.. [2] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
       Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021).
"""
from __future__ import annotations

from dynsim.backends.torch._torch import require_torch
from dynsim.backends.torch.activations import BOUNDED, rho, rho_and_prime
from dynsim.backends.torch.couplings import DenseCoupling, torch_couplings
from dynsim.backends.torch.device_network import DeviceNetwork
from dynsim.networks.conv_hopfield import ConvHopfieldNetwork
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.validation import ValidationError

torch = require_torch()

__all__ = ["TorchHopfieldNetwork"]


class TorchHopfieldNetwork(DeviceNetwork):
    """A Hopfield network description evaluated with torch on ``device``.

    Parameters
    ----------
    network : HopfieldNetwork or ConvHopfieldNetwork
        The description (groups, couplings, activations) and the starting
        parameters. It is not modified: :meth:`to_host` copies the
        parameters back when asked.
    device : str or torch.device
        ``'cpu'``, ``'cuda'`` or ``'cuda:<index>'``.
    dtype : numpy dtype, optional
        float32 or float64 (default: the network's).

    Attributes
    ----------
    source : HopfieldNetwork or ConvHopfieldNetwork
    theta : torch.Tensor, shape (n_params,)
        The parameters on the device, in the source's layout.
    group_shapes : tuple of tuple
    activations : tuple of str
    couplings : tuple of DenseCoupling or ConvCoupling
    connections : tuple of (int, int)
        (pre, post) group indices per coupling (what
        :func:`dynsim.relax.block_relaxation.group_colours` reads).

    Notes
    -----
    A group coupled to itself (a symmetric block within a group of the dense
    network) is refused: none of the layered or convolutional networks of
    the EP papers has one, and the block scheme cannot update such a group.
    """

    def __init__(self, network, device="cpu", dtype=None):
        if not isinstance(network, (HopfieldNetwork, ConvHopfieldNetwork)):
            raise ValidationError(f"network must be a HopfieldNetwork or a ConvHopfieldNetwork, got "
                                  f"{type(network).__name__}")
        self._init_device(network, device, dtype)
        self.activations = tuple(network.activations)
        if isinstance(network, HopfieldNetwork):
            self._from_dense(network)
        else:
            self._from_conv(network)
        self.connections = tuple((c.pre, c.post) for c in self.couplings)

    # ------------------------------------------------------------------ construction
    def _from_dense(self, net):
        self.group_shapes = tuple((n,) for n in net.group_sizes)
        couplings = []
        for c, (a, b) in enumerate(net.connections):
            if a == b:
                raise ValidationError(
                    f"network: group {net.group_names[a]!r} is coupled to itself; the torch backend runs layered "
                    "and convolutional networks (couplings between distinct groups) only")
            start = int(net._w_off[c])
            couplings.append(DenseCoupling(a, b, self.group_shapes[a], self.group_shapes[b], start,
                                           start + net.group_sizes[a] * net.group_sizes[b]))
        self.couplings = tuple(couplings)
        # One bias per free unit, all groups side by side after the weights.
        self._bias = {g: (int(net._b_off + net._free_off[g]), int(net._b_off + net._free_off[g] + net.group_sizes[g]))
                      for g in range(1, len(net.group_sizes))}

    def _from_conv(self, net):
        self.group_shapes = tuple(tuple(s) for s in net.group_shapes)
        self.couplings = torch_couplings(net, self.group_shapes)
        self._bias = {g: (b.start, b.stop) for g, b in net._bias_blocks.items()}

    # ------------------------------------------------------------------ layout
    def zeros(self, n_batch):
        """Group tensors of zeros (the relaxations' start, Scellier & Bengio 2017; Laborieux et al. 2021)."""
        return [None] + [torch.zeros((n_batch,) + shape, dtype=self.dtype, device=self.device)
                         for shape in self.group_shapes[1:]]

    def boxes(self, bounds=None, project=True):
        """Per free group ``(lo, hi)`` or None: ``bounds`` for every group, else each activation's natural box."""
        out = [None]
        for g in range(1, len(self.group_sizes)):
            if not project:
                out.append(None)
            elif bounds is not None:
                out.append((float(bounds[0]), float(bounds[1])))
            else:
                out.append(BOUNDED.get(self.activations[g]))
        return out

    # ------------------------------------------------------------------ energy and fields
    def input_activity(self, x):
        """rho of the clamped input, shape (batch, *input_shape)."""
        x = self.tensor(x)
        return rho(x.reshape((x.shape[0],) + self.group_shapes[0]), self.activations[0])

    def input_drive(self, x):
        """Biases plus the clamped input's couplings, group tensors; constant during a relaxation.

        Parameters
        ----------
        x : tensor or ndarray, shape (batch, n_input)
        """
        rx = self.input_activity(x)
        n = rx.shape[0]
        drive = [None]
        for g in range(1, len(self.group_sizes)):
            shape = self.group_shapes[g]
            b = self._bias.get(g)
            if b is None:
                d = torch.zeros((n,) + shape, dtype=self.dtype, device=self.device)
            else:
                bias = self.theta[b[0]:b[1]]
                d = (bias.view(1, -1, 1, 1) if len(shape) == 3 else bias.view(1, -1)).expand((n,) + shape).clone()
            for c in self.couplings:
                if c.pre == 0 and c.post == g:
                    d = d + c.forward(self.theta, rx)[0]
            drive.append(d)
        return drive

    def activate(self, s, groups=None):
        """``(rho(s_g), rho'(s_g))`` for the groups (default: every free group); two lists."""
        G = len(self.group_sizes)
        a, ap = [None] * G, [None] * G
        for g in (range(1, G) if groups is None else groups):
            a[g], ap[g] = rho_and_prime(s[g], self.activations[g])
        return a, ap

    def forwards(self, a, pre_groups=None):
        """``K_c(a_pre)`` and the pooling winners of every free coupling whose pre group is in ``pre_groups``."""
        out = {}
        for k, c in enumerate(self.couplings):
            if c.pre != 0 and (pre_groups is None or c.pre in pre_groups):
                out[k] = c.forward(self.theta, a[c.pre])
        return out

    def field(self, g, a, drive, memo):
        """The local field ``h_g`` of free group ``g``, from the activities ``a`` and the forwards ``memo``."""
        h = drive[g]
        for k, c in enumerate(self.couplings):
            if c.pre == 0:
                continue
            if c.post == g:
                h = h + memo[k][0]
            elif c.pre == g:
                h = h + c.transpose(self.theta, a[c.post], memo[k][1])
        return h

    def local_field(self, s, drive):
        """``h = -dE/d rho(s)`` of every free group, group tensors."""
        a, _ = self.activate(s)
        memo = self.forwards(a)
        return [None] + [self.field(g, a, drive, memo) for g in range(1, len(self.group_sizes))]

    def energy(self, s, drive):
        """Energy per sample, shape (batch,)."""
        a, _ = self.activate(s)
        n = s[1].shape[0]
        en = torch.zeros(n, dtype=self.dtype, device=self.device)
        for g in range(1, len(self.group_sizes)):
            en = en + (0.5 * s[g] * s[g] - a[g] * drive[g]).reshape(n, -1).sum(1)
        for k, (out, _) in self.forwards(a).items():
            en = en - (a[self.couplings[k].post] * out).reshape(n, -1).sum(1)
        return en

    def energy_grad_state(self, s, drive):
        """``dE/ds = s - rho'(s) h``, group tensors."""
        _, ap = self.activate(s)
        h = self.local_field(s, drive)
        return [None] + [s[g] - ap[g] * h[g] for g in range(1, len(self.group_sizes))]

    # ------------------------------------------------------------------ parameter gradients
    def _bias_grad(self, g, a):
        dims = (0, 2, 3) if a.dim() == 4 else (0,)
        return a.sum(dim=dims)

    def energy_grad_params(self, x, s):
        """Gradient of the batch-mean energy with respect to :attr:`theta`, shape (n_params,)."""
        rx = self.input_activity(x)
        a, _ = self.activate(s)
        a[0] = rx
        n = rx.shape[0]
        grad = torch.empty(self.n_params, dtype=self.dtype, device=self.device)
        for c in self.couplings:
            grad[c.start:c.stop] = c.weight_grad(self.theta, a[c.pre], a[c.post]).reshape(-1)
        for g, (lo, hi) in self._bias.items():
            grad[lo:hi] = self._bias_grad(g, a[g])
        return grad.mul_(-1.0 / n)

    def energy_grad_params_difference(self, x, s_a, s_b, scale=1.0):
        """``scale * (dE/dtheta(s_b) - dE/dtheta(s_a))`` for two states of one input, shape (n_params,).

        The couplings from the clamped input take one weight-gradient product
        with ``rho(s_b) - rho(s_a)`` (the input and its pooling winners are
        the same in both states); the others take two.
        """
        rx = self.input_activity(x)
        a_a, _ = self.activate(s_a)
        a_b, _ = self.activate(s_b)
        n = rx.shape[0]
        grad = torch.empty(self.n_params, dtype=self.dtype, device=self.device)
        for c in self.couplings:
            if c.pre == 0:
                block = c.weight_grad(self.theta, rx, a_b[c.post] - a_a[c.post])
            else:
                block = c.weight_grad(self.theta, a_b[c.pre], a_b[c.post]) \
                    - c.weight_grad(self.theta, a_a[c.pre], a_a[c.post])
            grad[c.start:c.stop] = block.reshape(-1)
        for g, (lo, hi) in self._bias.items():
            grad[lo:hi] = self._bias_grad(g, a_b[g] - a_a[g])
        return grad.mul_(-float(scale) / n)
