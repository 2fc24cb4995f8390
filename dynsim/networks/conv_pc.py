"""Predictive coding networks over groups of units and feature maps: dense, convolutional and pooled predictions.

A :class:`ConvPCNetwork` gives an :class:`~dynsim.networks.architecture.Architecture`
whose groups are listed in feedforward order (every coupling goes from an
earlier group to a later one) the predictive coding energy

    F(x) = sum_g p_g / 2 ||eps_g||^2,     eps_g = x_g - mu_g,
    mu_g = b_g + sum_{c: post = g} K_c(f_pre(x_pre)),

per sample, with ``K_c(a) = a W_c`` for a :class:`~dynsim.networks.architecture.Dense`
coupling, ``K_c(a) = pool(conv(a, W_c))`` for a
:class:`~dynsim.networks.architecture.Conv` one, ``f_g`` the activation of
group g (applied to the clamped input too, as :class:`~dynsim.networks.pc.PCNetwork`
does), ``b_g`` a bias per unit or per channel, and ``p_g = 1 / sigma_g^2``
the precisions. With one dense coupling between consecutive groups it is
:class:`~dynsim.networks.pc.PCNetwork` (same energy, same parameter layout).

Inference is gradient descent on F, ``dx_g/dt = -dF/dx_g``::

    -dF/dx_g = -p_g eps_g + f_g'(x_g) * sum_{c: pre = g} J_c^T (p_post eps_post),

``J_c`` the Jacobian of ``K_c`` at ``f_g(x_g)`` (max pooling routes to each
window's winner there), integrated by Euler steps from the feedforward pass
(where every error is zero) with the output free or clamped to the target
(supervised learning). With ``fixed_prediction`` the predictions, ``f'`` and
the poolings' winners are held at their feedforward values (Millidge et al.
2020): at equilibrium the errors are then backprop's deltas exactly, for
convolutions and pooling as for dense layers (Millidge et al. 2022).

The weight update is local: ``-dF/dW_c = p_post * d<eps_post, K_c(a_pre)>/dW_c``
(for a convolution, the correlation of the presynaptic maps with the
unpooled postsynaptic errors), ``-dF/db_g = p_g sum eps_g``.

References
----------
.. [1] J. C. R. Whittington, R. Bogacz, "An Approximation of the Error
       Backpropagation Algorithm in a Predictive Coding Network with Local
       Hebbian Synaptic Plasticity", Neural Computation 29(5) (2017).
.. [2] B. Millidge, A. Tschantz, C. L. Buckley, "Predictive Coding
       Approximates Backprop along Arbitrary Computation Graphs",
       Neural Computation 34(6) (2022) (convolutional PC, fixed prediction).
.. [3] Y. Song, T. Lukasiewicz, Z. Xu, R. Bogacz, "Can the Brain Do
       Backpropagation? Exact Implementation of Backpropagation in Predictive
       Coding Networks", NeurIPS (2020) (Z-IL).
.. [4] L. Pinchetti et al., "Benchmarking Predictive Coding Networks -- Made
       Simple", ICLR (2025) (convolutional PC benchmarks).
"""
from __future__ import annotations

import numpy as np

from dynsim._threads import kernels_own_the_cores
from dynsim.networks.architecture import GROUP_ACTIVATIONS
from dynsim.networks.architecture_network import ArchitectureNetwork
from dynsim.networks.coupling_ops import activate_into, add_into, copy_into
from dynsim.validation import ValidationError, boolean, float_array, positive_array, random_generator, real_scalar
from integrators import CONVERGED, DIVERGED, STEP_LIMIT, IntegrationResult, Trajectory
from integrators._numerics import first_bad_sample
from integrators.solve import _message as _integrator_message

__all__ = ["ConvPCNetwork", "CONV_PC_SCHEMES"]

CONV_PC_SCHEMES = ("euler",)
"""How a :class:`ConvPCNetwork` relaxes: Euler steps of ``dx/dt = -dF/dx`` (the inference of the PC papers)."""


class ConvPCNetwork(ArchitectureNetwork):
    """Predictive coding network over groups of units and feature maps, predicted densely or by convolution.

    Parameters
    ----------
    architecture : Architecture
        Groups in feedforward order (the first clamped, the last the output)
        and couplings, each from an earlier group to a later one; every free
        group is predicted by at least one coupling. Activations may be any
        of 'hard_sigmoid', 'logistic', 'tanh', 'linear', 'relu', 'gelu'.
    variances : sequence of float, optional
        sigma_g^2 of the free groups 1..G-1 (default all 1).
    fixed_prediction : bool
        Hold the predictions, f' and the poolings' winners at their
        feedforward values during inference.
    theta : ndarray, shape (n_params,), optional
        In the layout of :meth:`Architecture.parameter_layout`; by default
        :meth:`Architecture.initial_theta` of ``seed``.
    seed : int or numpy.random.Generator, optional
    dtype : {numpy.float32, numpy.float64}
        Of the parameters, states, errors and gradients (per-sample energies
        are summed in float64). Default float32.
    init : {'default', 'fan-in'}
        The default start (:meth:`Architecture.initial_theta`), when ``theta``
        is not given: ``'fan-in'`` is PyTorch's layers' (pcx's benchmarks').

    Notes
    -----
    The free state ``s`` (batch, n_free) holds the free groups side by side,
    each in (C, H, W) order, as :class:`ConvHopfieldNetwork` does; the
    "drive" of a relaxation is the feedforward pass (:meth:`input_drive`),
    constant during it, and inference starts there.

    References
    ----------
    .. [1] B. Millidge, A. Tschantz, C. L. Buckley, Neural Computation 34(6) (2022).
    .. [2] J. C. R. Whittington, R. Bogacz, Neural Computation 29(5) (2017).
    """

    relaxation_schemes = CONV_PC_SCHEMES
    natural_box = None  # states are unbounded: f acts on the predictions, not on the state
    # x: state, x_new: next state, mu: predictions, e: p * eps, f / fp: f and f' of the presynaptic activity,
    # v: the vector field -dF/dx, t: one coupling's product, base: the constant part of a mixed group's prediction.
    _buffer_roles = ("x", "x_new", "mu", "e", "f", "fp", "v", "t", "base")

    def __init__(self, architecture, variances=None, fixed_prediction=False, theta=None, seed=None,
                 dtype=np.float32, init="default"):
        super().__init__(architecture, dtype)
        index = architecture.group_index
        for c in architecture.couplings:
            if index[c.pre] >= index[c.post]:
                raise ValidationError(
                    f"coupling {c.name} ({c.pre} -> {c.post}): a predictive coding network predicts each group from "
                    f"earlier ones, but {c.post} (group {index[c.post]}) comes before {c.pre} (group "
                    f"{index[c.pre]}); list the groups in feedforward order")
        G = len(self.group_sizes)
        incoming = [tuple(op for op in self._links if op.post == g) for g in range(G)]
        for g in range(1, G):
            if not incoming[g]:
                raise ValidationError(f"group {self.group_names[g]} {self.group_shapes[g]} receives no coupling: "
                                      "every free group of a predictive coding network is predicted by an earlier "
                                      "group")
        self._incoming = incoming
        self._outgoing = [tuple(op for op in self._links if op.pre == g) for g in range(G)]
        # Groups predicted by the input and by free groups: their input part is recovered from the feedforward pass.
        self._mixed = tuple(g for g in range(1, G) if any(op.pre == 0 for op in incoming[g])
                            and any(op.pre != 0 for op in incoming[g]))
        self._acts = tuple(GROUP_ACTIVATIONS[a] for a in self.activations)
        self.variances = variances
        self.fixed_prediction = boolean("fixed_prediction", fixed_prediction)
        if theta is None:
            theta = architecture.initial_theta(random_generator("seed", seed), self.dtype, init)
        self.theta = theta

    # ------------------------------------------------------------------ description
    @property
    def variances(self):
        """sigma_g^2 of the free groups 1..G-1, shape (G - 1,)."""
        return self._variances.copy()

    @variances.setter
    def variances(self, value):
        v = positive_array("variances", value, len(self.group_sizes) - 1)
        self._variances = v
        self._precisions = np.concatenate(([0.0], 1.0 / v))

    @property
    def activation(self):
        """The groups' activation when they share one, else the tuple of every group's."""
        acts = set(self.activations)
        return acts.pop() if len(acts) == 1 else self.activations

    def describe(self):
        """Plain dict describing the network (for logs and run files)."""
        activation = self.activation
        return {"model": "predictive_coding", "kind": "conv_pc", **self.architecture.describe(),
                "group_sizes": list(self.group_sizes), "group_names": list(self.group_names),
                "activation": activation if isinstance(activation, str) else list(activation),
                "connections": [[op.pre, op.post] for op in self._links], "variances": self.variances.tolist(),
                "fixed_prediction": self.fixed_prediction, "n_params": self.n_params, "dtype": self.dtype.name}

    # ------------------------------------------------------------------ feedforward pass
    def _input_activity(self, x, input_activity=None):
        """f_0(x) (computed unless given, then checked) and its (batch, *input_shape) view."""
        if input_activity is None:
            fx = np.empty_like(x)
            activate_into(x, self._acts[0], fx, np.empty_like(x))
        else:
            fx = float_array("input_activity", input_activity, shape=x.shape, dtype=self.dtype)
        return fx, fx.reshape((x.shape[0],) + self.group_shapes[0])

    def input_activity(self, x):
        """f(x) of the clamped input, shape (batch, n_input): the presynaptic activity of the input's couplings."""
        return self._input_activity(self.check_input(x))[0]

    def _bias_into(self, g, out4):
        b = self._bias_blocks.get(g)
        if b is None:
            out4[...] = 0.0
        elif len(self.group_shapes[g]) == 3:
            out4[...] = self._theta[b.start:b.stop][None, :, None, None]
        else:
            out4[...] = self._theta[b.start:b.stop][None, :]

    def _feedforward_into(self, buf, fx2, fx4):
        """mu-hat into ``mu`` (group by group, in feedforward order) and f, f' of it into ``f``, ``fp``.

        The forward products leave each max pooling's winners at the
        feedforward activity: the routing of backprop and of fixed prediction.
        """
        v2, v4 = buf.v2, buf.v4
        for g in range(1, len(self.group_sizes)):
            self._bias_into(g, v4["mu"][g])
            for op in self._incoming[g]:
                a2, a4 = (fx2, fx4) if op.pre == 0 else (v2["f"][op.pre], v4["f"][op.pre])
                op.forward_into(self._theta, a2, a4, v2["t"][g], v4["t"][g], buf.scratch[op.index])
                add_into(v2["mu"][g], v2["t"][g])
            activate_into(v2["mu"][g], self._acts[g], v2["f"][g], v2["fp"][g])

    @kernels_own_the_cores
    def input_drive(self, x, input_activity=None):
        """The feedforward pass mu-hat, shape (batch, n_free): x_g = mu_g group after group from the input.

        Constant during a relaxation; the free equilibrium when the output is
        free, and where inference starts.

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
            Examples flat in (C, H, W) order.
        input_activity : ndarray, shape (batch, n_input), optional
            :meth:`input_activity` of ``x``, when the caller has it.
        """
        x = self.check_input(x)
        buf = self._buffers(x.shape[0])
        self._feedforward_into(buf, *self._input_activity(x, input_activity))
        return self._flat(buf.v2["mu"])

    def feedforward(self, x):
        """The feedforward pass (:meth:`input_drive`): the network's prediction, output last."""
        return self.input_drive(x)

    def initial_state(self, drive):
        """Inference starts from the feedforward pass (Whittington & Bogacz 2017)."""
        return drive.copy()

    # ------------------------------------------------------------------ errors and field
    def _load(self, buf, role, flat):
        for g in range(1, len(self.group_sizes)):
            o = int(self._free_off[g])
            np.copyto(buf.v2[role][g], flat[:, o:o + self.group_sizes[g]])

    def _prepare(self, buf, drive, fixed):
        """What a relaxation holds constant, from the feedforward pass ``drive``.

        Fixed prediction: f and f' of mu-hat, and the poolings' winners there.
        Strict: the input's part of each mixed group's prediction (mu-hat minus
        its free groups' products at mu-hat), so that a step needs no product
        with the input.
        """
        v2, v4 = buf.v2, buf.v4
        self._load(buf, "mu", drive)
        G = len(self.group_sizes)
        if fixed or self._mixed:
            for g in range(1, G):
                activate_into(v2["mu"][g], self._acts[g], v2["f"][g], v2["fp"][g])
        if fixed:
            for op in self._free_links:
                if op.pool_max:
                    op.forward_into(self._theta, v2["f"][op.pre], v4["f"][op.pre], v2["t"][op.post],
                                    v4["t"][op.post], buf.scratch[op.index])
            return
        for g in self._mixed:
            copy_into(v2["mu"][g], v2["base"][g])
            for op in self._incoming[g]:
                if op.pre != 0:
                    op.forward_into(self._theta, v2["f"][op.pre], v4["f"][op.pre], v2["t"][g], v4["t"][g],
                                    buf.scratch[op.index])
                    v2["base"][g] -= v2["t"][g]

    def _errors(self, buf, fixed):
        """``e`` = p eps of every free group at the state ``x``; with ``fixed`` False, f and f' of the state too.

        Returns the energy per sample (float64). The forward products leave
        each max pooling's winners at the current activity (strict), where
        the transposed products of :meth:`_field` route.
        """
        v2, v4 = buf.v2, buf.v4
        G = len(self.group_sizes)
        theta = self._theta
        if not fixed:
            for g in range(1, G):
                activate_into(v2["x"][g], self._acts[g], v2["f"][g], v2["fp"][g])
        energy = np.zeros(buf.n_batch)
        for g in range(1, G):
            e = v2["e"][g]
            if fixed or not any(op.pre != 0 for op in self._incoming[g]):
                np.subtract(v2["x"][g], v2["mu"][g], out=e)  # mu-hat: held, or predicted by the input alone
            else:
                if g in self._mixed:
                    copy_into(v2["base"][g], e)
                else:
                    self._bias_into(g, v4["e"][g])
                for op in self._incoming[g]:
                    if op.pre != 0:  # the input's part is in base (mixed) or mu-hat
                        op.forward_into(theta, v2["f"][op.pre], v4["f"][op.pre], v2["t"][g], v4["t"][g],
                                        buf.scratch[op.index])
                        add_into(e, v2["t"][g])
                np.subtract(v2["x"][g], e, out=e)
            energy += 0.5 * self._precisions[g] * np.einsum("ij,ij->i", e, e, dtype=np.float64)
            if self._precisions[g] != 1.0:
                e *= self.dtype.type(self._precisions[g])
        return energy

    def _field(self, buf, beta, target, clamp_output):
        """``v`` = -dF/dx (- beta (x_out - y) on a free output; 0 on a clamped one), from :meth:`_errors`."""
        v2, v4 = buf.v2, buf.v4
        G = len(self.group_sizes)
        for g in range(1, G):
            v = v2["v"][g]
            np.negative(v2["e"][g], out=v)
            back = v2["t"][g]
            for op in self._outgoing[g]:
                # J_c^T (p eps_post), routed through the winners of the last forward product, times f'(x_g).
                op.transpose_into(self._theta, v2["e"][op.post], v4["e"][op.post], back, v4["t"][g],
                                  buf.scratch[op.index])
                back *= v2["fp"][g]
                add_into(v, back)
        out = v2["v"][G - 1]
        if clamp_output:
            out[...] = 0.0
        elif beta != 0.0:
            out -= self.dtype.type(beta) * (v2["x"][G - 1] - target)

    # ------------------------------------------------------------------ energy and gradients
    def _state_errors(self, s, drive, fixed=None):
        """Buffers holding the errors at ``s`` (checked), and the energy per sample."""
        fixed = self.fixed_prediction if fixed is None else fixed
        buf = self._buffers(s.shape[0])
        self._prepare(buf, drive, fixed)
        self._load(buf, "x", s)
        return buf, self._errors(buf, fixed)

    @kernels_own_the_cores
    def energy_from_drive(self, s, drive):
        """F per sample from a precomputed feedforward pass, shape (batch,)."""
        s = self.check_state(s)
        return self._state_errors(s, self._checked_drive(drive, s))[1].astype(self.dtype)

    @kernels_own_the_cores
    def energy(self, x, s):
        """F per sample, shape (batch,)."""
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        return self.energy_from_drive(s, self.input_drive(x))

    @kernels_own_the_cores
    def energy_grad_state(self, x, s, drive=None):
        """dF/ds, shape (batch, n_free) (the output's entries included)."""
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        drive = self.input_drive(x) if drive is None else self._checked_drive(drive, s)
        buf, _ = self._state_errors(s, drive)
        self._field(buf, 0.0, None, False)
        return -self._flat(buf.v2["v"])

    @kernels_own_the_cores
    def errors(self, x, s):
        """Prediction errors per group: ``{group name: eps_g (batch, n_g)}``."""
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        buf, _ = self._state_errors(s, self.input_drive(x))
        eps = self._flat(buf.v2["e"])
        for g in range(1, len(self.group_sizes)):
            o = int(self._free_off[g])
            eps[:, o:o + self.group_sizes[g]] /= self.dtype.type(self._precisions[g])
        return self.split_state(eps)

    def _parameter_products(self, buf, fx2, fx4, grads, scale):
        """``scale * (d<g_post, K_c(a_pre)>/dW_c, sum g_g)`` for every block, a (n_params,) vector.

        ``a_pre`` is f of the input (``fx``) or the ``f`` role of a free group,
        ``g`` the role named ``grads``. A max pooling's winners are found at
        ``a_pre`` first.
        """
        v2, v4 = buf.v2, buf.v4
        grad = np.empty(self.n_params, dtype=self.dtype)
        for op in self._links:
            a2, a4 = (fx2, fx4) if op.pre == 0 else (v2["f"][op.pre], v4["f"][op.pre])
            out = grad[op.start:op.stop]
            op.weight_grad_into(self._theta, a2, a4, v2[grads][op.post], v4[grads][op.post], buf.scratch[op.index],
                                v4["t"][op.post], out)
        for g, b in self._bias_blocks.items():
            self._bias_grad_into(g, v2[grads][g], v4[grads][g], grad[b.start:b.stop])
        grad *= self.dtype.type(scale)
        return grad

    @kernels_own_the_cores
    def energy_grad_params(self, x, s, drive=None, input_activity=None):
        """Gradient of the batch-mean F with respect to theta, shape (n_params,).

        ``dF/dW_c = -p_post/B sum_b d<eps_post, K_c(a_pre)>/dW_c`` with the
        presynaptic activity ``a_pre = f(x_pre)`` (its feedforward value with
        fixed prediction), ``dF/db_g = -p_g/B sum_b eps_g``.

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
        s : ndarray, shape (batch, n_free)
        drive : ndarray, shape (batch, n_free), optional
            :meth:`input_drive` of ``x``, when the caller has it.
        input_activity : ndarray, shape (batch, n_input), optional
            :meth:`input_activity` of ``x``, when the caller has it.
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        fx2, fx4 = self._input_activity(x, input_activity)
        drive = self.input_drive(x, fx2) if drive is None else self._checked_drive(drive, s)
        buf, _ = self._state_errors(s, drive)
        return self._parameter_products(buf, fx2, fx4, "e", -1.0 / x.shape[0])

    @kernels_own_the_cores
    def backprop_gradient(self, x, target):
        """Exact backprop gradient of mean_b 1/2 ||y_hat_b - target_b||^2 through the feedforward pass, (n_params,).

        Reverse-mode differentiation of :meth:`feedforward` group by group
        (delta_out = (y_hat - y) / B, delta_g = f'(mu_g) sum_c J_c^T
        delta_post), with the same coupling products as the network; the
        tests hold it to PyTorch's autograd.
        """
        x = self.check_input(x)
        target = self.check_target(target, x.shape[0])
        n_batch = x.shape[0]
        buf = self._buffers(n_batch)
        fx2, fx4 = self._input_activity(x)
        self._feedforward_into(buf, fx2, fx4)
        v2, v4 = buf.v2, buf.v4
        G = len(self.group_sizes)
        delta = v2["e"]  # the deltas take the errors' role
        np.subtract(v2["mu"][G - 1], target, out=delta[G - 1])
        delta[G - 1] /= self.dtype.type(n_batch)
        for g in range(G - 2, 0, -1):
            delta[g][...] = 0.0
            for op in self._outgoing[g]:
                if op.pool_max:  # winners at the feedforward activity of g
                    op.forward_into(self._theta, v2["f"][g], v4["f"][g], v2["t"][op.post], v4["t"][op.post],
                                    buf.scratch[op.index])
                op.transpose_into(self._theta, v2["e"][op.post], v4["e"][op.post], v2["t"][g], v4["t"][g],
                                  buf.scratch[op.index])
                add_into(delta[g], v2["t"][g])
            delta[g] *= v2["fp"][g]
        return self._parameter_products(buf, fx2, fx4, "e", 1.0)

    # ------------------------------------------------------------------ relaxation
    def relax(self, s0, drive, scheme="euler", beta=0.0, target=None, clamp_output=False, **options):
        """:meth:`relax_with_energy` without the energy: the :class:`integrators.IntegrationResult` only."""
        return self.relax_with_energy(s0, drive, scheme, beta, target, clamp_output, **options)[0]

    @kernels_own_the_cores
    def relax_with_energy(self, s0, drive, scheme="euler", beta=0.0, target=None, clamp_output=False, *, dt=0.1,
                          max_steps=100_000, atol=1e-6, rtol=1e-6, stop_at_steady_state=True, box=None,
                          max_abs=1e6, record_every=0, record_samples=None):
        """Relax a batch of states by Euler steps of ``dx/dt = -dF/dx``; the result and the final energy.

        The steps, steady-state test, statuses, counts and messages of the
        integrators' fixed-step drivers (:func:`integrators.integrate` with
        ``method='euler'``).

        Parameters
        ----------
        s0 : ndarray, shape (batch, n_free)
            Starting states (the feedforward pass, usually).
        drive : ndarray, shape (batch, n_free)
            :meth:`input_drive` of the clamped input.
        scheme : {'euler'}
        beta : float
            Nudging of a free output towards ``target``: ``- beta (x_out - y)``
            added to its field.
        target : ndarray, shape (batch, n_output), optional
            Needed when ``beta != 0`` or ``clamp_output``.
        clamp_output : bool
            Hold the output where ``s0`` has it (supervised inference).
        dt : float
            Euler step (the inference rate).
        max_steps : int
        atol, rtol : float
            Steady state when every sample has ``||dx/dt|| <= atol + rtol ||x||``.
        stop_at_steady_state : bool
            False runs exactly ``max_steps`` steps (the papers' T).
        box : None or 'natural'
            The states are unbounded: no projection ('natural' means none
            here); a (low, high) pair is refused.
        max_abs : float
            A state or field value above this magnitude counts as divergence.
        record_every : int
            Keep every that many steps (0: none).
        record_samples : sequence of int, optional
            Batch indices to record (default: all).

        Returns
        -------
        (integrators.IntegrationResult, ndarray of shape (batch,))
            ``t = n_steps * dt``; and F of the final state, of the network's dtype.
        """
        if scheme not in CONV_PC_SCHEMES:
            raise ValidationError(f"scheme must be one of {list(CONV_PC_SCHEMES)} for a ConvPCNetwork, got "
                                  f"{scheme!r}")
        a = self._check_relaxation(s0, drive, beta, target, clamp_output, max_steps, atol, rtol, stop_at_steady_state,
                                   max_abs, record_every, record_samples)
        dt = real_scalar("dt", dt, 0.0, np.inf, low_open=True, high_open=True)
        if box not in (None, "natural"):
            raise ValidationError(f"box: the states of a predictive coding network are unbounded (its activations "
                                  f"act on the predictions); pass None, got {box!r}")
        return self._relax(a["s0"], a["drive"], a["beta"], a["target"], a["clamp_output"], dt, a["max_steps"],
                           a["atol"], a["rtol"], a["stop_at_steady_state"], a["max_abs"], a["record_every"],
                           a["samples"])

    def _relax(self, s0, drive, beta, target, clamp_output, dt, max_steps, atol, rtol, stop_at_steady_state,
               max_abs, record_every, samples):
        """The Euler loop of :meth:`relax_with_energy` on checked arguments (the integrators' explicit_rk, s = 1)."""
        fixed = self.fixed_prediction
        buf = self._buffers(s0.shape[0])
        self._prepare(buf, drive, fixed)
        self._load(buf, "x", s0)
        flat = buf.flat
        h = self.dtype.type(dt)
        rec_t, rec_y, rec_res = [], [], []

        def evaluate():
            energy = self._errors(buf, fixed)
            self._field(buf, beta, target, clamp_output)
            return energy

        def residual_of(role):
            out = np.zeros(s0.shape[0])
            for g in range(1, len(self.group_sizes)):
                out += np.einsum("ij,ij->i", buf.v2[role][g], buf.v2[role][g], dtype=np.float64)
            return np.sqrt(out)

        def first_bad(role):
            bad = [first_bad_sample(buf.v2[role][g], max_abs) for g in range(1, len(self.group_sizes))]
            bad = [b for b in bad if b >= 0]
            return min(bad) if bad else -1

        def record(step, residual):
            rec_t.append(step * dt)
            rec_y.append(self._flat(buf.v2["x"])[samples])
            rec_res.append(residual[samples].copy())

        energy = evaluate()
        residual = residual_of("v")
        steps, status, bad_step, bad_sample, last_recorded = 0, None, -1, -1, -1
        if record_every > 0:
            record(0, residual)
            last_recorded = 0
        bad = first_bad("v")
        if bad >= 0:
            status, bad_step, bad_sample = DIVERGED, 0, bad
        while status is None:
            if stop_at_steady_state and np.all(residual <= atol + rtol * residual_of("x")):
                status = CONVERGED
                break
            if steps >= max_steps:
                status = STEP_LIMIT
                break
            np.multiply(flat["v"], h, out=flat["x_new"])
            flat["x_new"] += flat["x"]
            bad = first_bad("x_new")
            if bad >= 0:
                status, bad_step, bad_sample = DIVERGED, steps + 1, bad  # x keeps the last good state
                break
            buf.swap("x", "x_new")
            flat = buf.flat
            steps += 1
            energy = evaluate()
            bad = first_bad("v")
            if bad >= 0:
                status, bad_step, bad_sample = DIVERGED, steps, bad
                break
            residual = residual_of("v")
            if record_every > 0 and steps % record_every == 0:
                record(steps, residual)
                last_recorded = steps
        if record_every > 0 and last_recorded != steps and status != DIVERGED:
            record(steps, residual)
        y = self._flat(buf.v2["x"])
        if status == DIVERGED:  # the energy of the last good state
            self._load(buf, "x", y)
            energy = self._errors(buf, fixed)
        with np.errstate(over="ignore"):
            tolerance = atol + rtol * np.linalg.norm(y.astype(np.float64), axis=1)
        trajectory = None
        if record_every > 0:
            trajectory = Trajectory(t=np.array(rec_t), y=np.stack(rec_y), residual=np.stack(rec_res),
                                    samples=samples)
        result = IntegrationResult(
            y=y, t=float(steps * dt), status=int(status),
            message=_integrator_message(status, steps, steps * dt, residual, tolerance, bad_step, bad_sample,
                             stop_at_steady_state),
            n_steps=int(steps), n_accepted=int(steps), n_rejected=0, nfev=int(steps) + 1, residual=residual.copy(),
            tolerance=tolerance, diverged_step=int(bad_step), diverged_sample=int(bad_sample),
            trajectory=trajectory, method="euler")
        return result, energy.astype(self.dtype)

