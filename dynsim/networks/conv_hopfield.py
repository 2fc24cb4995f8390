"""The convolutional Hopfield network of Laborieux et al. (2021), built from an :class:`Architecture`.

A :class:`ConvHopfieldNetwork` gives the groups and couplings of an
:class:`~dynsim.networks.architecture.Architecture` the energy

    E(s) = 1/2 sum_g ||s_g||^2 - sum_c <rho(s_post(c)), K_c(rho(s_pre(c)))> - sum_g <b_g, rho(s_g)>

per sample, with ``K_c(a) = a W_c`` for a :class:`~dynsim.networks.architecture.Dense`
coupling and ``K_c(a) = pool(conv(a, W_c))`` for a
:class:`~dynsim.networks.architecture.Conv` coupling, a per-channel bias
shared by every position of its maps, and the input group clamped to
``rho_input(x)`` (as :class:`~dynsim.networks.hopfield.HopfieldNetwork` applies
its activation to the input). It has the interface the relaxation and
learning code use for dense Hopfield networks: a flat free state ``s``
(batch, n_free) holding the free groups one after the other, each in
(C, H, W) order; one flat parameter vector ``theta``; an input drive (the
biases and the input's couplings) computed once per minibatch.

Local field and relaxation
--------------------------
With ``a_g = rho(s_g)``, the local field ``h_g = -dE/da_g`` of a free group is

    h_g = d_g + sum_{c: post = g} K_c(a_pre) + sum_{c: pre = g} J_c^T a_post,

``d_g`` the drive (bias plus the couplings from the input) and ``J_c`` the
Jacobian of ``K_c`` at ``a_pre``: ``W_c^T`` (dense), or the transposed
convolution after the pooling's backward pass (max pooling routes to each
window's winner at the current ``a_pre``). Since ``K_c`` is positively
homogeneous (``J_c a = K_c(a)``, also for max pooling),
``E = 1/2 ||s||^2 - 1/2 <a, h + d>``, and ``dE/ds = s - rho'(s) h``.

:meth:`ConvHopfieldNetwork.relax_with_energy` runs the relaxation schemes
of :mod:`dynsim.relax.block_relaxation` on this network, with the same update,
steady-state test, statuses and result: a group update is

    hidden groups:        s_g   <- P( rho'(s_g) h_g )
    nudged output group:  s_out <- P( (rho'(s_out) h_out + beta y) / (1 + beta) )

(P the projection onto the group's box), which for the hard sigmoid is
Laborieux et al.'s ``s <- rho(dPhi/ds)``, each group set to rho of its total
input; ``fixed_point`` updates every group from the same state, ``block``
the groups of odd depth, then those of even depth, each half reading the
other's newest values (Scellier et al. 2023).

References
----------
.. [1] A. Laborieux, M. Ernoult, B. Scellier, Y. Bengio, J. Grollier,
       D. Querlioz, "Scaling Equilibrium Propagation to Deep ConvNets by
       Drastically Reducing Its Gradient Estimator Bias", Front. Neurosci.
       15:633674 (2021).
.. [2] M. Ernoult, J. Grollier, D. Querlioz, Y. Bengio, B. Scellier,
       "Updates of Equilibrium Prop Match Gradients of Backprop Through Time
       in an RNN with Static Input", NeurIPS 2019 (the convolutional
       primitive function with pooling).
.. [3] B. Scellier, Y. Bengio, "Equilibrium Propagation: Bridging the Gap
       between Energy-Based Models and Backpropagation", Front. Comput.
       Neurosci. 11:24 (2017).
.. [4] B. Scellier, M. Ernoult, J. Kendall, S. Kumar, "Energy-based learning
       algorithms for analog computing: a comparative study", NeurIPS 2023
       (asynchronous block updates).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from dynsim._threads import kernels_own_the_cores
from dynsim.networks import conv_linearization
from dynsim.networks.activations import ACTIVATIONS, NATURAL_BOUNDS, activation_code
from dynsim.networks.architecture_network import ArchitectureNetwork
from dynsim.networks.coupling_ops import activate_into, add_into, copy_into
from dynsim.validation import ValidationError, float_array, random_generator, real_scalar
from integrators import CONVERGED, DIVERGED, STEP_LIMIT, IntegrationResult, Trajectory

__all__ = ["ConvHopfieldNetwork", "CONV_RELAXATION_SCHEMES"]

CONV_RELAXATION_SCHEMES = ("fixed_point", "block")
"""The relaxation schemes :meth:`ConvHopfieldNetwork.relax_with_energy` runs (those of the dense network)."""

# ----------------------------------------------------------------------------- compiled helpers
# Each takes one group's (batch, n_g) C-contiguous block and checks nothing. Sums run over 1-D row views
# (fixed strides) in float64 accumulators, so that the loops vectorise whatever the dtype. The helpers called
# once or more per sweep run their rows on Numba's threads: each row's sums are its own, so every thread count
# gives the same numbers.

@njit(cache=True, fastmath={"reassoc"}, parallel=True)
def _group_sums(s, r, rp, h, d, target, nudge, keep, lo, hi, project, max_abs, en, y2, f2, res2, f_over):
    """One group's share of the per-sample tests, at a state whose local field ``h`` is current.

    The vector field ``f = keep (rho'(s) h - s - nudge (s - y))`` (``keep`` 0
    for a group held fixed), the projected residual (a component pinned at a
    bound by a field pointing out of the box does not count, as in
    :func:`integrators._numerics.steady_residual`), the energy
    ``1/2 s^2 - 1/2 rho(s) (h + d)``, ``||s||^2`` and the divergence counts,
    each added to its (batch,) accumulator. ``target`` is only read when
    ``nudge`` is not 0.
    """
    n_batch, m = s.shape
    for i in prange(n_batch):
        e_acc = 0.0
        y_acc = 0.0
        f_acc = 0.0
        r_acc = 0.0
        over = 0
        si, ri, rpi, hi_, di, ti = s[i], r[i], rp[i], h[i], d[i], target[i]
        for j in range(m):
            v = si[j]
            e_acc += v * v - ri[j] * (hi_[j] + di[j])
            y_acc += v * v
            f = keep * (rpi[j] * hi_[j] - v - nudge * (v - ti[j]))
            f_acc += f * f
            over += abs(f) > max_abs
            pinned = project & (((v <= lo) & (f < 0.0)) | ((v >= hi) & (f > 0.0)))
            r_acc += 0.0 if pinned else f * f
        en[i] += 0.5 * e_acc
        y2[i] += y_acc
        f2[i] += f_acc
        res2[i] += r_acc
        f_over[i] += over


@njit(cache=True, fastmath={"reassoc"}, parallel=True)
def _update_into(rp, h, target, nudged, beta, scale, lo, hi, project, max_abs, out, yn2, yn_over):
    """``out = P(rho'(s) h)``, or ``P((rho'(s) h + beta y) scale)`` on the nudged output; sums of the divergence test.

    The expressions of :func:`dynsim.relax.block_relaxation._update_groups`
    (``scale = 1 / (1 + beta)``, the outputs' curvature).
    """
    n_batch, m = out.shape
    for i in prange(n_batch):
        acc = 0.0
        over = 0
        rpi, hi_, ti, oi = rp[i], h[i], target[i], out[i]
        for j in range(m):
            if nudged:
                v = (rpi[j] * hi_[j] + beta * ti[j]) * scale
            else:
                v = rpi[j] * hi_[j]
            if project:
                v = min(max(v, lo), hi)
            oi[j] = v
            acc += v * v
            over += abs(v) > max_abs
        yn2[i] += acc
        yn_over[i] += over


@njit(cache=True, fastmath={"reassoc"}, parallel=True)
def _held_into(s, out, max_abs, yn2, yn_over):
    """A group held where it is (a clamped output): copied into ``out``, with its sums of the divergence test."""
    n_batch, m = s.shape
    for i in prange(n_batch):
        acc = 0.0
        over = 0
        si, oi = s[i], out[i]
        for j in range(m):
            v = si[j]
            oi[j] = v
            acc += v * v
            over += abs(v) > max_abs
        yn2[i] += acc
        yn_over[i] += over


@njit(cache=True, fastmath={"reassoc"})
def _own_energy_into(s, r, d, en):
    """en[b] += sum_j 1/2 s^2 - rho(s) d: a group's quadratic term, bias and input couplings."""
    n_batch, m = s.shape
    for i in range(n_batch):
        acc = 0.0
        si, ri, di = s[i], r[i], d[i]
        for j in range(m):
            acc += 0.5 * si[j] * si[j] - ri[j] * di[j]
        en[i] += acc


@njit(cache=True, fastmath={"reassoc"})
def _rowdot_subtract(a, b, en):
    """en[b] -= <a[b], b[b]>: a coupling's energy from its post activity and the drive it receives."""
    n_batch, m = a.shape
    for i in range(n_batch):
        acc = 0.0
        ai, bi = a[i], b[i]
        for j in range(m):
            acc += ai[j] * bi[j]
        en[i] -= acc


@njit(cache=True)
def _verdict(res2, y2, f2, f_over, atol, rtol, limit, residual):
    """Residual norms into ``residual``; (first diverged sample or -1, whether every sample is steady).

    A sample diverged when its field is non-finite or above ``max_abs``
    (``limit = max_abs^2``); it is steady when ``||f|| <= atol + rtol ||s||``
    (the integrators' test).
    """
    bad = -1
    steady = True
    for i in range(res2.shape[0]):
        residual[i] = np.sqrt(res2[i])
        if bad < 0 and (not (f2[i] < np.inf) or (f2[i] > limit and f_over[i] > 0.0)):
            bad = i
        if not residual[i] <= atol + rtol * np.sqrt(y2[i]):
            steady = False
    return bad, steady


@njit(cache=True)
def _first_diverged(yn2, yn_over, limit):
    """First sample whose new state is non-finite or above ``max_abs`` (``limit = max_abs^2``), or -1."""
    for i in range(yn2.shape[0]):
        if not (yn2[i] < np.inf) or (yn2[i] > limit and yn_over[i] > 0.0):
            return i
    return -1


# ----------------------------------------------------------------------------- couplings at run time
# ----------------------------------------------------------------------------- the network
class ConvHopfieldNetwork(ArchitectureNetwork):
    """Hopfield network over groups of units and feature maps, coupled densely or by convolution and pooling.

    Parameters
    ----------
    architecture : Architecture
        Groups (the first clamped, the last the output) and couplings.
    theta : ndarray, shape (n_params,), optional
        Parameters in the layout of :meth:`Architecture.parameter_layout`;
        by default :meth:`Architecture.initial_theta` of ``seed``.
    seed : int or numpy.random.Generator, optional
        Random source of the default initialisation.
    dtype : {numpy.float32, numpy.float64}
        Floating-point type of the parameters and of every state, drive,
        energy and gradient (default float32: the convolutions run about
        twice as fast as in float64; the gradient checks use float64).
        Arrays handed to the public methods are converted to it once.

    Attributes
    ----------
    Those of :class:`~dynsim.networks.architecture_network.ArchitectureNetwork`
    (the architecture, group names, shapes, sizes and activations, n_params).

    Notes
    -----
    A free state's layout matches :meth:`dynsim.datasets.tasks.Task.images`
    (examples flat in (C, H, W) order), so image tasks feed the network as
    they are, and logs, checkpoints, persistent particles and the learning
    rules see the same (batch, n_free) arrays as with dense networks.

    References
    ----------
    .. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
           Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021).
    .. [2] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput. Neurosci. 11:24 (2017).
    """

    relaxation_schemes = CONV_RELAXATION_SCHEMES
    """What :func:`dynsim.relax.phases.settle` may ask of :meth:`relax_with_energy`."""

    def __init__(self, architecture, theta=None, seed=None, dtype=np.float32):
        super().__init__(architecture, dtype)
        for g in architecture.groups:
            if g.activation not in ACTIVATIONS:
                raise ValidationError(f"group {g.name}: a Hopfield network's activation must be one of "
                                      f"{sorted(ACTIVATIONS)} (its energy needs rho bounded or linear), got "
                                      f"{g.activation!r}; 'relu' and 'gelu' serve ConvPCNetwork")
        self._acts = tuple(activation_code(a) for a in self.activations)
        self._colours = None
        if theta is None:
            theta = architecture.initial_theta(random_generator("seed", seed), self.dtype)
        self.theta = theta

    # ------------------------------------------------------------------ description
    @property
    def activation(self):
        """The free groups' activation when they share one, else the tuple of every group's."""
        free = set(self.activations[1:])
        return free.pop() if len(free) == 1 else self.activations

    @property
    def natural_box(self):
        """(0, 1) when every free group is a hard sigmoid, else None.

        :meth:`relax_with_energy` with ``box='natural'`` projects each group
        onto its own activation's box instead, which also serves networks that
        mix activations.
        """
        boxes = {NATURAL_BOUNDS.get(a) for a in self.activations[1:]}
        return boxes.pop() if len(boxes) == 1 else None

    def describe(self):
        """Plain dict describing the network (for logs and run files).

        The keys the dense network's description has (``group_sizes``,
        ``group_names``, ``activation``, ``connections`` as [pre, post] group
        indices per coupling, ``n_params``, ``dtype``), plus the
        architecture's ``groups`` and ``couplings`` with their shapes and
        geometry.
        """
        activation = self.activation
        return {"kind": "conv_hopfield", **self.architecture.describe(), "group_sizes": list(self.group_sizes),
                "group_names": list(self.group_names),
                "activation": activation if isinstance(activation, str) else list(activation),
                "connections": [[link.pre, link.post] for link in self._links], "n_params": self.n_params,
                "dtype": self.dtype.name}

    # ------------------------------------------------------------------ buffers
    def _load(self, buf, s, drive=None):
        """Copy the flat state (and drive) into the group buffers; rho and rho' of every free group."""
        for g in range(1, len(self.group_sizes)):
            cols = slice(int(self._free_off[g]), int(self._free_off[g]) + self.group_sizes[g])
            np.copyto(buf.v2["y"][g], s[:, cols])
            if drive is not None:
                np.copyto(buf.v2["d"][g], drive[:, cols])
            activate_into(buf.v2["y"][g], self._acts[g], buf.v2["r"][g], buf.v2["rp"][g])

    def _fields(self, buf, theta, selected, version, link_version):
        """Local fields ``h_g = d_g + sum of the couplings' contributions`` of the groups in ``selected``.

        Every contribution into a selected group is computed from the
        current activities. The forward products come first: with max
        pooling they record the winners at the current presynaptic activity,
        which the transposed products then route through. A winner record
        older than its group's last move (``link_version`` behind
        ``version``) is refreshed before use.
        """
        v2, v4 = buf.v2, buf.v4
        for g in selected:
            copy_into(v2["d"][g], v2["h"][g])
        for link in self._free_links:
            if link.post in selected:
                link.forward_into(theta, v2["r"][link.pre], v4["r"][link.pre], v2["t"][link.post],
                                  v4["t"][link.post], buf.scratch[link.index])
                link_version[link.index] = version[link.pre]
                add_into(v2["h"][link.post], v2["t"][link.post])
        for link in self._free_links:
            if link.pre in selected:
                if link.pool_max and link_version[link.index] != version[link.pre]:
                    link.forward_into(theta, v2["r"][link.pre], v4["r"][link.pre], v2["t"][link.post],
                                      v4["t"][link.post], buf.scratch[link.index])
                    link_version[link.index] = version[link.pre]
                link.transpose_into(theta, v2["r"][link.post], v4["r"][link.post], v2["t"][link.pre],
                                    v4["t"][link.pre], buf.scratch[link.index])
                add_into(v2["h"][link.pre], v2["t"][link.pre])

    def _rho_input(self, x):
        """rho of the clamped input, shape (batch, n_input), and its (batch, *input_shape) view."""
        rx = np.empty_like(x)
        activate_into(x, self._acts[0], rx, np.empty_like(x))
        return rx, rx.reshape((x.shape[0],) + self.group_shapes[0])

    # ------------------------------------------------------------------ energy
    def initial_state(self, drive):
        """Relaxations start from zero (Scellier & Bengio 2017; Laborieux et al. 2021)."""
        return np.zeros_like(drive)

    @kernels_own_the_cores
    def input_drive(self, x):
        """Biases plus the clamped input's couplings, shape (batch, n_free); constant during a relaxation.

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
            Examples flat in (C, H, W) order (:attr:`dynsim.datasets.tasks.Task.x`).

        Returns
        -------
        ndarray, shape (batch, n_free)
        """
        x = self.check_input(x)
        n_batch = x.shape[0]
        buf = self._buffers(n_batch)
        rx2, rx4 = self._rho_input(x)
        theta = self._theta
        for g in range(1, len(self.group_sizes)):
            dg = buf.v4["d"][g]
            b = self._bias_blocks.get(g)
            if b is None:
                dg[...] = 0.0
            elif len(self.group_shapes[g]) == 3:
                dg[...] = theta[b.start:b.stop][None, :, None, None]
            else:
                dg[...] = theta[b.start:b.stop][None, :]
            for link in self._input_links:
                if link.post == g:
                    link.forward_into(theta, rx2, rx4, buf.v2["t"][g], buf.v4["t"][g], buf.scratch[link.index])
                    add_into(buf.v2["d"][g], buf.v2["t"][g])
        return self._flat(buf.v2["d"])

    @kernels_own_the_cores
    def energy(self, x, s):
        """Energy E(s; x) per sample, shape (batch,).

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
        s : ndarray, shape (batch, n_free)
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        return self.energy_from_drive(s, self.input_drive(x))

    @kernels_own_the_cores
    def energy_from_drive(self, s, drive):
        """Energy per sample from an input drive already computed (:meth:`input_drive`), shape (batch,).

        ``1/2 ||s||^2 - <rho(s), drive> - sum_c <rho(s_post), K_c(rho(s_pre))>``
        over the couplings between free groups, accumulated in float64.
        """
        s = self.check_state(s)
        drive = self._checked_drive(drive, s)
        buf = self._buffers(s.shape[0])
        self._load(buf, s, drive)
        en = np.zeros(s.shape[0])
        v2, v4 = buf.v2, buf.v4
        for g in range(1, len(self.group_sizes)):
            _own_energy_into(v2["y"][g], v2["r"][g], v2["d"][g], en)
        for link in self._free_links:
            link.forward_into(self._theta, v2["r"][link.pre], v4["r"][link.pre], v2["t"][link.post],
                              v4["t"][link.post], buf.scratch[link.index])
            _rowdot_subtract(v2["r"][link.post], v2["t"][link.post], en)
        return en.astype(self.dtype)

    def _field_of_state(self, s, drive):
        buf = self._buffers(s.shape[0])
        self._load(buf, s, drive)
        G = len(self.group_sizes)
        self._fields(buf, self._theta, set(range(1, G)), [0] * G, [-1] * len(self._links))
        return buf

    @kernels_own_the_cores
    def local_field(self, x, s, drive=None):
        """The local field ``h = -dE/d rho(s)`` of every free unit, shape (batch, n_free).

        Each group's total input: its bias, the couplings from below and
        above (with max pooling, routed through the winners at the current
        state). At a fixed point of the relaxation of a hard-sigmoid network,
        ``s = rho(h)``.

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
        s : ndarray, shape (batch, n_free)
        drive : ndarray, shape (batch, n_free), optional
            :meth:`input_drive` of ``x`` when the caller has it.
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        drive = self.input_drive(x) if drive is None else self._checked_drive(drive, s)
        return self._flat(self._field_of_state(s, drive).v2["h"])

    @kernels_own_the_cores
    def energy_grad_state(self, x, s, drive=None):
        """dE/ds = s - rho'(s) h, shape (batch, n_free).

        ``drive`` (from :meth:`input_drive`) saves recomputing the input's
        convolutions when many states of one input are evaluated.
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        drive = self.input_drive(x) if drive is None else self._checked_drive(drive, s)
        buf = self._field_of_state(s, drive)
        v2 = buf.v2
        return self._flat([None] + [v2["y"][g] - v2["rp"][g] * v2["h"][g] for g in range(1, len(self.group_sizes))])

    def _linearization(self, x, s, drive):
        """The :class:`~dynsim.networks.conv_linearization.Linearization` at ``(x, s)`` for the current theta.

        The last one is kept: the callers apply it to many directions at one
        state (conjugate gradients) or read two products per state (BPTT).
        The memo compares the numbers, so it cannot go stale.
        """
        memo = self.__dict__.get("_lin_memo")
        if memo is not None and memo[0].shape == x.shape and memo[1].shape == s.shape and \
                np.array_equal(memo[0], x) and np.array_equal(memo[1], s) and np.array_equal(memo[2], self._theta):
            return memo[3]
        lin = conv_linearization.Linearization(self, x, s, lambda: self.local_field(x, s, drive))
        self._lin_memo = (x.copy(), s.copy(), self._theta.copy(), lin)
        return lin

    def energy_hvp(self, x, s, v, drive=None):
        """Hessian-vector products ``d^2E/ds^2 v`` per sample, shape (batch, n_free), without forming a Hessian.

        Max pooling is linearised at the winners of the current state (see
        :mod:`dynsim.networks.conv_linearization`); ``drive`` as in
        :meth:`energy_grad_state`.
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        v = float_array("v", v, shape=s.shape, dtype=self.dtype)
        return self._linearization(x, s, drive).hvp(v)

    def energy_grad_params_directional(self, x, s, v):
        """``d/de`` of the batch-mean ``dE/dtheta`` at ``s + e v``, shape (n_params,) (winners held fixed)."""
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        v = float_array("v", v, shape=s.shape, dtype=self.dtype)
        return self._linearization(x, s, None).grad_params_directional(v)

    def _weight_grads(self, buf, theta, link, a2, a4, g2, g4, out):
        link.weight_grad_into(theta, a2, a4, g2, g4, buf.scratch[link.index], buf.v4["t"][link.post], out)

    @kernels_own_the_cores
    def energy_grad_params(self, x, s):
        """Gradient of the batch-mean energy with respect to :attr:`theta`, shape (n_params,).

        dE/dW = -rho(s_pre)^T rho(s_post) / B for a dense block,
        -sum_b corr(rho(s_pre_b), unpool(rho(s_post_b))) / B for a
        convolution (max pooling routed through the winners at rho(s_pre)),
        dE/db = -rho(s) / B summed over the batch (and over the positions of
        a map). The quantity equilibrium propagation contrasts between two
        settled states, with the batch convention of
        :meth:`HopfieldNetwork.energy_grad_params` (a mean).

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
        s : ndarray, shape (batch, n_free)
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        n_batch = x.shape[0]
        buf = self._buffers(n_batch)
        self._load(buf, s)
        rx2, rx4 = self._rho_input(x)
        theta = self._theta
        grad = np.empty(self.n_params, dtype=self.dtype)
        scale = self.dtype.type(-1.0 / n_batch)
        v2, v4 = buf.v2, buf.v4
        for link in self._links:
            a2, a4 = (rx2, rx4) if link.pre == 0 else (v2["r"][link.pre], v4["r"][link.pre])
            out = grad[link.start:link.stop]
            self._weight_grads(buf, theta, link, a2, a4, v2["r"][link.post], v4["r"][link.post], out)
            out *= scale
        for g, b in self._bias_blocks.items():
            out = grad[b.start:b.stop]
            self._bias_grad_into(g, v2["r"][g], v4["r"][g], out)
            out *= scale
        return grad

    @kernels_own_the_cores
    def energy_grad_params_difference(self, x, s_a, s_b, scale=1.0):
        """``scale * (dE/dtheta(s_b) - dE/dtheta(s_a))`` for two states of the same input, shape (n_params,).

        Equals ``scale * (energy_grad_params(x, s_b) - energy_grad_params(x, s_a))``
        to rounding. The couplings from the clamped input (the largest
        convolutions of an image network) take one weight-gradient product
        with ``rho(s_b) - rho(s_a)`` instead of two: the input, and so its
        pooling winners, are the same in both states, and the gradient is
        linear in the post activity. The other couplings take two.

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
        s_a, s_b : ndarray, shape (batch, n_free)
        scale : float
            E.g. 1 / (beta_2 - beta_1).
        """
        x = self.check_input(x)
        s_a = self.check_state(s_a, x.shape[0], name="s_a")
        s_b = self.check_state(s_b, x.shape[0], name="s_b")
        scale = real_scalar("scale", scale)
        n_batch = x.shape[0]
        buf = self._buffers(n_batch)
        v2, v4 = buf.v2, buf.v4
        G = len(self.group_sizes)
        # rho(s_a) kept in the field buffer, rho(s_b) in r, their difference in y_new.
        self._load(buf, s_a)
        for g in range(1, G):
            copy_into(v2["r"][g], v2["h"][g])
        self._load(buf, s_b)
        for g in range(1, G):
            np.subtract(v2["r"][g], v2["h"][g], out=v2["y_new"][g])
        rx2, rx4 = self._rho_input(x)
        theta = self._theta
        k = self.dtype.type(-scale / n_batch)
        grad = np.empty(self.n_params, dtype=self.dtype)
        for link in self._links:
            out = grad[link.start:link.stop]
            if link.pre == 0:
                self._weight_grads(buf, theta, link, rx2, rx4, v2["y_new"][link.post], v4["y_new"][link.post], out)
            else:
                self._weight_grads(buf, theta, link, v2["r"][link.pre], v4["r"][link.pre], v2["r"][link.post],
                                   v4["r"][link.post], out)
                other = np.empty_like(out)
                self._weight_grads(buf, theta, link, v2["h"][link.pre], v4["h"][link.pre], v2["h"][link.post],
                                   v4["h"][link.post], other)
                out -= other
            out *= k
        for g, b in self._bias_blocks.items():
            out = grad[b.start:b.stop]
            self._bias_grad_into(g, v2["y_new"][g], v4["y_new"][g], out)
            out *= k
        return grad

    # ------------------------------------------------------------------ relaxation
    def _group_colours(self):
        """Two-colour the free groups by their couplings: ``{group: 1 (first half) or 0 (second half)}``.

        Each connected set of free groups takes the parity of its
        lowest-numbered group for that group (in a stack, a group's colour is
        the parity of its depth, as :func:`dynsim.relax.block_relaxation.group_colours`).
        """
        if self._colours is not None:
            return self._colours
        G = len(self.group_sizes)
        neighbours = {g: [] for g in range(1, G)}
        for link in self._free_links:
            neighbours[link.pre].append((link.post, link))
            neighbours[link.post].append((link.pre, link))
        colour = {}
        for root in range(1, G):
            if root in colour:
                continue
            colour[root] = root % 2
            queue = [root]
            while queue:
                g = queue.pop(0)
                for k, link in neighbours[g]:
                    if k not in colour:
                        colour[k] = 1 - colour[g]
                        queue.append(k)
                    elif colour[k] == colour[g]:
                        c = link.coupling
                        raise ValidationError(
                            f"scheme 'block' updates the free groups in two halves without couplings inside a "
                            f"half, but coupling {c.name} ({c.pre} -> {c.post}) closes an odd cycle of couplings "
                            "among the free groups; use 'fixed_point'")
        self._colours = colour
        return colour

    def _halves(self, scheme, clamp_output):
        """Masks of the groups each half-sweep updates, shapes (G,) and (G,) (as block_relaxation.update_halves)."""
        G = len(self.group_sizes)
        first = np.zeros(G, dtype=bool)
        second = np.zeros(G, dtype=bool)
        if scheme == "fixed_point":
            first[1:] = True
        else:
            for g, c in self._group_colours().items():
                (first if c == 1 else second)[g] = True
        if clamp_output:
            first[G - 1] = second[G - 1] = False
        return first, second

    def _group_boxes(self, box):
        """Per free group ``(project, lo, hi)`` from ``box``: 'natural', None or (low, high)."""
        real = self.dtype.type
        out = [None]
        for g in range(1, len(self.group_sizes)):
            b = NATURAL_BOUNDS.get(self.activations[g]) if isinstance(box, str) else box
            out.append((False, real(-np.inf), real(np.inf)) if b is None else (True, real(b[0]), real(b[1])))
        return out

    def _check_box(self, box):
        if isinstance(box, str):
            if box != "natural":
                raise ValidationError(f"box must be 'natural', None or a pair (low, high), got {box!r}")
            return box
        if box is None:
            return None
        try:
            lo, hi = box
        except (TypeError, ValueError):
            raise ValidationError(f"box must be 'natural', None or a pair (low, high), got {box!r}") from None
        lo = real_scalar("box[0]", lo, low=-np.inf)
        hi = real_scalar("box[1]", hi)
        if not lo < hi:
            raise ValidationError(f"box must be (low, high) with low < high, got {box!r}")
        return (lo, hi)

    def relax(self, s0, drive, scheme, beta=0.0, target=None, clamp_output=False, **options):
        """:meth:`relax_with_energy` without the energy: the :class:`integrators.IntegrationResult` only."""
        return self.relax_with_energy(s0, drive, scheme, beta, target, clamp_output, **options)[0]

    @kernels_own_the_cores
    def relax_with_energy(self, s0, drive, scheme, beta=0.0, target=None, clamp_output=False, *, max_steps=100_000,
                          atol=1e-6, rtol=1e-6, stop_at_steady_state=True, box="natural", max_abs=1e6,
                          record_every=0, record_samples=None):
        """Relax a batch of states by fixed-point or block sweeps; the result and the final energy.

        The schemes, steady-state test, statuses, counts and messages of
        :func:`dynsim.relax.block_relaxation.relax_with_energy` for dense
        networks. One sweep updates every free group once (in one half, or
        two), costing one evaluation of the local field: a forward and a
        transposed product per coupling between free groups. With max
        pooling, a group of the second half that feeds a max-pooled coupling
        has its field computed again at the top of each sweep (its pooling
        winners moved with it), one more transposed product per such
        coupling.

        Parameters
        ----------
        s0 : ndarray, shape (batch, n_free)
            Starting states (projected onto the box).
        drive : ndarray, shape (batch, n_free)
            :meth:`input_drive` of the clamped input.
        scheme : {'fixed_point', 'block'}
            ``fixed_point`` updates every free group from the same state
            (Laborieux et al. 2021); ``block`` the groups of odd depth, then
            those of even depth, each half reading the other's newest values
            (Scellier et al. 2023); it needs couplings among the free groups
            without odd cycles.
        beta : float
            Nudging strength, > -1 (the outputs' curvature 1 + beta).
        target : ndarray, shape (batch, n_output), optional
            Needed when ``beta != 0`` or ``clamp_output``.
        clamp_output : bool
            Hold the outputs where ``s0`` has them (contrastive Hebbian
            learning's clamped phase).
        max_steps : int
            Sweep limit.
        atol, rtol : float
            Steady state when every sample has ``||ds/dt|| <= atol + rtol ||s||``,
            ``ds/dt = -dF/ds`` projected as the integrators do.
        stop_at_steady_state : bool
            False runs exactly ``max_steps`` sweeps (the fixed iteration counts
            of the EP papers).
        box : 'natural', None or (float, float)
            Projection: ``'natural'`` projects each group onto its
            activation's box ([0, 1] for the hard sigmoid, none for the smooth
            ones), None projects nothing, a pair projects every group onto it.
        max_abs : float
            A state or field value above this magnitude counts as divergence.
        record_every : int
            Keep every that many sweeps (0: none); ``t`` counts sweeps.
        record_samples : sequence of int, optional
            Batch indices to record (default: all).

        Returns
        -------
        (integrators.IntegrationResult, ndarray of shape (batch,))
            ``n_steps`` sweeps, ``nfev`` field evaluations (one per sweep
            plus the initial one), ``t`` the number of sweeps; and the
            energy E (not E + beta C) of the final state, of the network's dtype.

        References
        ----------
        .. [1] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by Drastically Reducing Its
               Gradient Estimator Bias", Front. Neurosci. 15:633674 (2021).
        .. [2] B. Scellier et al., "Energy-based learning algorithms for analog computing: a comparative study",
               NeurIPS 2023.
        """
        # ---- validation, once
        if scheme not in CONV_RELAXATION_SCHEMES:
            raise ValidationError(f"scheme must be one of {list(CONV_RELAXATION_SCHEMES)}, got {scheme!r}")
        a = self._check_relaxation(s0, drive, beta, target, clamp_output, max_steps, atol, rtol, stop_at_steady_state,
                                   max_abs, record_every, record_samples)
        beta, clamp_output = a["beta"], a["clamp_output"]
        target = a["target"]
        if target is None:
            target = np.zeros((a["s0"].shape[0], self.n_output), dtype=self.dtype)
        if not clamp_output and not beta > -1.0:
            raise ValidationError(f"the relaxation scheme {scheme!r} divides by the outputs' curvature 1 + beta, "
                                  f"which must be positive: beta must be > -1, got {beta}")
        boxes = self._group_boxes(self._check_box(box))
        first, second = self._halves(scheme, clamp_output)
        return self._relax(a["s0"], a["drive"], scheme, beta, target, first, second, a["max_steps"], a["atol"],
                           a["rtol"], a["stop_at_steady_state"], boxes, a["max_abs"], a["record_every"], a["samples"])

    def _relax(self, s0, drive, scheme, beta, target, first, second, max_steps, atol, rtol, stop_at_steady_state,
               boxes, max_abs, record_every, samples):
        """The sweeps of :meth:`relax_with_energy` on checked arguments (the loop of block_relaxation.relax_batch)."""
        G = len(self.group_sizes)
        out_g = G - 1
        n_batch = s0.shape[0]
        real = self.dtype.type
        beta_r = real(beta)
        scale = real(1.0) / (real(1.0) + beta_r)
        zero, one = real(0.0), real(1.0)
        theta = self._theta
        buf = self._buffers(n_batch)
        v2 = buf.v2
        free = range(1, G)
        for g in free:
            o = int(self._free_off[g])
            project, lo, hi = boxes[g]
            y = v2["y"][g]
            np.copyto(y, s0[:, o:o + self.group_sizes[g]])
            if project:
                np.clip(y, lo, hi, out=y)
            np.copyto(v2["d"][g], drive[:, o:o + self.group_sizes[g]])
            activate_into(y, self._acts[g], v2["r"][g], v2["rp"][g])
        target = np.ascontiguousarray(target, dtype=self.dtype)
        moving = [bool(first[g] or second[g]) for g in range(G)]
        first_set = {g for g in free if first[g]}
        second_set = {g for g in free if second[g]}
        has_second = bool(second_set)
        # Fields recomputed at the top of a sweep: the first half's, the held groups' (the energy needs them) and
        # those of second-half groups whose field depends on their own state (pre of a max-pooled coupling).
        top = set(first_set) | {g for g in free if not moving[g]}
        top |= {link.pre for link in self._free_links if link.pool_max and link.pre in second_set}
        every = set(free)
        version = [0] * G
        link_version = [-1] * len(self._links)
        sums = buf.sums
        en, y2, f2, res2, f_over, yn2, yn_over = (sums[k] for k in ("en", "y2", "f2", "res2", "f_over", "yn2",
                                                                   "yn_over"))
        limit = max_abs * max_abs
        rec_t, rec_y, rec_res = [], [], []

        def record(step, residual):
            rows = np.empty((samples.size, self.n_free), dtype=self.dtype)
            for g in free:
                o = int(self._free_off[g])
                rows[:, o:o + self.group_sizes[g]] = v2["y"][g][samples]
            rec_t.append(float(step))
            rec_y.append(rows)
            rec_res.append(residual[samples].copy())

        self._fields(buf, theta, every, version, link_version)
        steps, status, bad_step, bad_sample, last_recorded = 0, None, -1, -1, -1
        residual = np.zeros(n_batch)
        while status is None:
            if steps > 0:
                self._fields(buf, theta, top, version, link_version)
            for acc in (en, y2, f2, res2, f_over):
                acc[:] = 0.0
            for g in free:
                project, lo, hi = boxes[g]
                nudge = beta_r if (g == out_g and moving[g]) else zero
                tg = target if g == out_g else v2["y"][g]
                _group_sums(v2["y"][g], v2["r"][g], v2["rp"][g], v2["h"][g], v2["d"][g], tg, nudge,
                            one if moving[g] else zero, lo, hi, project, max_abs, en, y2, f2, res2, f_over)
            bad, steady = _verdict(res2, y2, f2, f_over, atol, rtol, limit, residual)
            if record_every > 0 and (steps == 0 or steps % record_every == 0):
                record(steps, residual)
                last_recorded = steps
            if bad >= 0:
                status, bad_step, bad_sample = DIVERGED, steps, int(bad)
                break
            if stop_at_steady_state and steady:
                status = CONVERGED
                break
            if steps >= max_steps:
                status = STEP_LIMIT
                break
            yn2[:] = 0.0
            yn_over[:] = 0.0
            for g in free:
                project, lo, hi = boxes[g]
                if first[g]:
                    tg = target if g == out_g else v2["y"][g]
                    _update_into(v2["rp"][g], v2["h"][g], tg, g == out_g and beta != 0.0, beta_r, scale, lo, hi,
                                 project, max_abs, v2["y_new"][g], yn2, yn_over)
                elif not moving[g]:
                    _held_into(v2["y"][g], v2["y_new"][g], max_abs, yn2, yn_over)
            if has_second:
                for g in first_set:
                    activate_into(v2["y_new"][g], self._acts[g], v2["r"][g], v2["rp"][g])
                    version[g] += 1
                self._fields(buf, theta, second_set, version, link_version)
                for g in second_set:
                    project, lo, hi = boxes[g]
                    tg = target if g == out_g else v2["y"][g]
                    _update_into(v2["rp"][g], v2["h"][g], tg, g == out_g and beta != 0.0, beta_r, scale, lo, hi,
                                 project, max_abs, v2["y_new"][g], yn2, yn_over)
            bad = _first_diverged(yn2, yn_over, limit)
            if bad >= 0:
                # `y` keeps the last good state.
                status, bad_step, bad_sample = DIVERGED, steps + 1, int(bad)
                break
            # The new state becomes the state: swap the two roles' views, no copy.
            for views in (buf.v2, buf.v4):
                views["y"], views["y_new"] = views["y_new"], views["y"]
            steps += 1
            for g in (second_set if has_second else first_set):
                activate_into(v2["y"][g], self._acts[g], v2["r"][g], v2["rp"][g])
                version[g] += 1

        if record_every > 0 and last_recorded != steps and status != DIVERGED:
            record(steps, residual)
        y = self._flat(v2["y"])
        energy = en.astype(self.dtype)
        with np.errstate(over="ignore"):
            tolerance = atol + rtol * np.linalg.norm(y.astype(np.float64), axis=1)
        trajectory = None
        if record_every > 0:
            trajectory = Trajectory(t=np.array(rec_t), y=np.stack(rec_y), residual=np.stack(rec_res),
                                    samples=samples)
        result = IntegrationResult(
            y=y, t=float(steps), status=int(status),
            message=_message(status, steps, residual, tolerance, bad_step, bad_sample, stop_at_steady_state),
            n_steps=int(steps), n_accepted=int(steps), n_rejected=0, nfev=int(steps) + 1, residual=residual.copy(),
            tolerance=tolerance, diverged_step=int(bad_step), diverged_sample=int(bad_sample),
            trajectory=trajectory, method=scheme)
        return result, energy


def _message(status, steps, residual, tolerance, bad_step, bad_sample, stop_at_steady_state):
    """The result's message, worded as the dense network's relaxation schemes word it."""
    if status == CONVERGED:
        return f"steady state reached by every sample after {steps} sweeps"
    if status == STEP_LIMIT:
        if not stop_at_steady_state:
            return f"step limit reached after {steps} sweeps"
        with np.errstate(all="ignore"):
            worst = int(np.nanargmax(residual / np.maximum(tolerance, np.finfo(float).tiny))) \
                if np.isfinite(residual).any() else 0
        return (f"step limit reached after {steps} sweeps; largest residual {residual[worst]:.3e} "
                f"(sample {worst}) against tolerance {tolerance[worst]:.3e}")
    return (f"diverged at sweep {bad_step} in sample {bad_sample}: a state or vector field value became "
            "non-finite or exceeded max_abs; y holds the last finite state")
