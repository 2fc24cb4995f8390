"""The layered vector-field Hopfield network: separate forward and feedback weights, no energy.

In the continuous Hopfield network of Scellier & Bengio (2017) layer k hears
layer k+1 through W_k^T, the transpose of the weights by which it drives
layer k+1: the dynamics are the gradient flow of an energy, and equilibrium
propagation (EP) computes the gradient of the loss. A synapse cannot read the
weight of the synapse going the other way (the weight-transport problem).
Here the feedback weights ``B_k`` are parameters of their own (Scellier et
al. 2018, "vector field dynamics"; the VF models of Laborieux et al. 2021):

    ds_k/dt = rho'(s_k) * (rho(s_{k-1}) W_{k-1} + rho(s_{k+1}) B_k + b_k) - s_k,

with the output nudged by ``-beta (s_out - y)``. What that changes:

- Unless ``B_k = W_k^T`` there is no energy: the relaxation is not a
  gradient flow, nothing guarantees that it converges (it may cycle or
  wander) and :meth:`VectorFieldHopfieldNetwork.energy` (the energy the
  forward weights would define) may rise along it. Every relaxation reports
  its residual ``||ds/dt||`` (:attr:`integrators.IntegrationResult.residual`);
  read it before trusting a settled state.
- EP's update stays local, and estimates the true gradient only as far as
  the feedback agrees with the forward weights
  (:mod:`dynsim.learning.vector_field_ep`).

The feedback is one of :data:`FEEDBACK_MODES`: ``'tied'`` (B_k = W_k^T
always; the network is then exactly the symmetric
:class:`~dynsim.networks.hopfield.HopfieldNetwork`), ``'random'`` (drawn once,
never learned: feedback alignment, Lillicrap et al. 2016), ``'kolen-pollack'``
or ``'weight-mirror'`` (learned, Akrout et al. 2019; the rules are in
:mod:`dynsim.learning.vector_field_ep`).

References
----------
.. [1] B. Scellier, A. Goyal, J. Binas, T. Mesnard, Y. Bengio, "Generalization
       of Equilibrium Propagation to Vector Field Dynamics", arXiv:1808.04873 (2018).
.. [2] A. Laborieux et al., "Scaling Equilibrium Propagation to Deep ConvNets by
       Drastically Reducing its Gradient Estimator Bias", Front. Neurosci. 15 (2021).
.. [3] M. Akrout, C. Wilson, P. C. Humphreys, T. Lillicrap, D. Tweed, "Deep
       Learning without Weight Transport", NeurIPS (2019).
.. [4] T. P. Lillicrap, D. Cownden, D. B. Tweed, C. J. Akerman, "Random synaptic
       feedback weights support error backpropagation for deep learning",
       Nat. Commun. 7:13276 (2016).
.. [5] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput.
       Neurosci. 11:24 (2017).
"""
from __future__ import annotations

import numpy as np

import integrators
from dynsim.networks import hopfield_kernels as HK
from dynsim.networks import vector_field_kernels as VK
from dynsim.networks.activations import NATURAL_BOUNDS, activation_code, rho
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.networks.layout import NetworkLayout
from dynsim.validation import (ValidationError, boolean, float_array, float_dtype, positive_int, random_generator,
                               real_scalar)
from integrators.solve import finish_result

__all__ = ["VectorFieldHopfieldNetwork", "VF_FIELD", "FEEDBACK_MODES", "VF_ACTIVATIONS", "angle_between"]

RELAXATION_SCHEMES = ("fixed_point", "block")
"""The sweeps :meth:`VectorFieldHopfieldNetwork.relax_sweeps` runs (those of :mod:`dynsim.relax.block_relaxation`)."""

VF_FIELD = integrators.VectorField(
    "dynsim.networks.vector_field_kernels", "vf_vector_field",
    dependencies=("dynsim.networks.activations", "dynsim.networks.hopfield_kernels"))
"""The compiled vector field of :class:`VectorFieldHopfieldNetwork`."""

FEEDBACK_MODES = ("tied", "random", "kolen-pollack", "weight-mirror")
"""How the feedback weights are set: tied to W^T, fixed random, or learned (Kolen-Pollack, weight mirror)."""

VF_ACTIVATIONS = ("hard_sigmoid", "logistic", "tanh")
"""Activations of the vector-field network (one for every layer)."""


class VectorFieldHopfieldNetwork(NetworkLayout):
    """Layered Hopfield network whose feedback weights are not the forward weights' transpose.

    Parameters
    ----------
    sizes : sequence of int, length L + 1 >= 2
        ``[n_input, n_1, ..., n_output]``.
    activation : {'hard_sigmoid', 'logistic', 'tanh'}
        rho of every layer (the input's too, as in :class:`HopfieldNetwork`).
    output_activation : {'hard_sigmoid', 'logistic', 'tanh', 'linear'}, optional
        Replaces the output layer's activation; ``'linear'`` is the output
        of Scellier 2024's deep Hopfield networks, which cannot die at a
        bound as a hard-sigmoid output can (a unit clipped at 0 for every
        image never learns: its class is then always wrong).
    feedback : {'tied', 'random', 'kolen-pollack', 'weight-mirror'}
        ``'tied'``: B_k = W_k^T always (no feedback parameters). Otherwise
        the feedback blocks are parameters, drawn at random like the forward
        weights of the same shape; ``'random'`` keeps them fixed, the two
        others learn them (:func:`dynsim.learning.vector_field_ep.vf_ep_gradient`).
    theta : ndarray, shape (n_params,), optional
        Parameters (see :attr:`theta`); by default the forward weights of
        ``HopfieldNetwork.layered(sizes, activation, seed=seed)`` (same seed,
        same forward weights), zero biases, then the feedback blocks.
    seed : int or numpy.random.Generator, optional
    init_gain : float, optional
        Weights uniform in ``+-init_gain / sqrt(fan-in)`` instead of Glorot's
        ``+-sqrt(6 / (n_a + n_b))`` (the fan-in of B_k is n_{k+1}).
    dtype : {numpy.float64, numpy.float32}
        Type of the parameters and of every state and gradient computed.

    Attributes
    ----------
    n_forward : int
        Forward parameters: weight blocks W_0..W_{L-1}, then the biases of the
        free units, laid out as in a layered :class:`HopfieldNetwork`, so
        ``theta[:n_forward]`` is a valid parameter vector of
        :meth:`symmetric_network`.
    n_params : int
        ``n_forward`` plus the feedback blocks B_1..B_{L-1} (none when tied).

    Notes
    -----
    Without tied feedback there is no energy, so no Lyapunov function: a
    relaxation may fail to converge and the pseudo-energy of :meth:`energy`
    may rise along it. Check the residual of every relaxation
    (:class:`dynsim.relax.phases.PhaseResult` ``.integration.residual``).

    References
    ----------
    Scellier et al. (2018), Sec. 3 (the neural-network vector field);
    Laborieux et al. (2021), the VF models.

    Examples
    --------
    >>> net = VectorFieldHopfieldNetwork([784, 256, 10], feedback='kolen-pollack', seed=0)
    >>> net.parameter_blocks().keys()
    dict_keys(['W_input_hidden_1', 'W_hidden_1_output', 'b_hidden_1', 'b_output', 'B_output_hidden_1'])
    """

    vector_field = VF_FIELD

    def __init__(self, sizes, activation="hard_sigmoid", feedback="random", theta=None, seed=None, init_gain=None,
                 dtype=np.float64, output_activation=None):
        self.dtype = float_dtype(dtype)
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
            raise ValidationError(f"sizes must be a sequence of layer sizes, input first, got {sizes!r}")
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValidationError(f"sizes needs an input and at least one free layer, got {sizes}")
        for k, n in enumerate(sizes):
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
                raise ValidationError(f"sizes[{k}] must be an integer >= 1, got {n!r}")
        if not isinstance(activation, str) or activation not in VF_ACTIVATIONS:
            raise ValidationError(f"activation must be one of {list(VF_ACTIVATIONS)}, got {activation!r}")
        if output_activation is not None and (not isinstance(output_activation, str)
                                              or output_activation not in VF_ACTIVATIONS + ("linear",)):
            raise ValidationError(f"output_activation must be None or one of {list(VF_ACTIVATIONS + ('linear',))}, "
                                  f"got {output_activation!r}")
        if not isinstance(feedback, str) or feedback not in FEEDBACK_MODES:
            raise ValidationError(f"feedback must be one of {list(FEEDBACK_MODES)}, got {feedback!r}")
        if init_gain is not None:
            init_gain = real_scalar("init_gain", init_gain, 0.0, np.inf, low_open=True, high_open=True)
        L = len(sizes) - 1
        self.group_sizes = tuple(int(n) for n in sizes)
        self.group_names = tuple(["input"] + [f"hidden_{k}" for k in range(1, L)] + ["output"])
        self.connections = tuple((k, k + 1) for k in range(L))
        self.output_activation = activation if output_activation is None else output_activation
        self.activations = (activation,) * L + (self.output_activation,)
        # One name when every layer shares it, else one per layer (as HopfieldNetwork.activation).
        self.activation = activation if self.output_activation == activation else self.activations
        self.feedback = feedback
        self.tied = feedback == "tied"
        self._acts = np.array([activation_code(a) for a in self.activations], dtype=np.int64)
        self._sizes = np.array(self.group_sizes, dtype=np.int64)
        free_off = np.zeros(L + 1, dtype=np.int64)
        free_off[1:] = np.concatenate(([0], np.cumsum(self._sizes[1:-1])))
        self._free_off = free_off
        self._pre = np.arange(L, dtype=np.int64)
        self._post = np.arange(1, L + 1, dtype=np.int64)
        blocks = self._sizes[:-1] * self._sizes[1:]
        self._w_off = np.concatenate(([0], np.cumsum(blocks)[:-1])).astype(np.int64)
        self._b_off = int(blocks.sum())
        self.n_forward = self._b_off + self.n_free
        fb_off = np.full(L, -1, dtype=np.int64)
        end = self.n_forward
        if not self.tied:
            for k in range(1, L):
                fb_off[k] = end
                end += int(blocks[k])
        self._fb_off = fb_off
        self.n_params = end
        if theta is None:
            theta = self._initial_theta(random_generator("seed", seed), init_gain)
        self.theta = theta

    def _initial_theta(self, rng, init_gain):
        """Forward weights as ``HopfieldNetwork.layered`` draws them, zero biases, then random feedback."""
        sym = HopfieldNetwork.layered(list(self.group_sizes), self.activations[0], seed=rng, init_gain=init_gain)
        theta = np.zeros(self.n_params)
        theta[:self.n_forward] = sym.theta
        for k in self._feedback_layers():
            n_hi, n_lo = self.group_sizes[k + 1], self.group_sizes[k]
            limit = np.sqrt(6.0 / (n_lo + n_hi)) if init_gain is None else init_gain / np.sqrt(n_hi)
            start = self._fb_off[k]
            theta[start:start + n_hi * n_lo] = rng.uniform(-limit, limit, size=n_hi * n_lo)
        return theta

    def _feedback_layers(self):
        """The k of the feedback blocks B_k stored in theta (1..L-1; none when tied)."""
        return [] if self.tied else list(range(1, len(self.group_sizes) - 1))

    # ----------------------------------------------------------------- parameters
    @property
    def theta(self):
        """Flat parameters, shape (n_params,): W_0..W_{L-1}, biases of the free units, then B_1..B_{L-1}."""
        return self._theta

    @theta.setter
    def theta(self, value):
        self._theta = float_array("theta", value, shape=(self.n_params,), dtype=self.dtype)

    @property
    def forward_theta(self):
        """View of the forward parameters, shape (n_forward,): a layered Hopfield network's parameter vector."""
        return self._theta[:self.n_forward]

    def weights(self, k):
        """View of the forward block W_k (k = 0..L-1), shape (n_k, n_{k+1}), into :attr:`theta`."""
        L = len(self.group_sizes) - 1
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 0 <= k < L:
            raise ValidationError(f"k must be a forward block in [0, {L - 1}], got {k!r}")
        start = self._w_off[k]
        n_a, n_b = self.group_sizes[k], self.group_sizes[k + 1]
        return self._theta[start:start + n_a * n_b].reshape(n_a, n_b)

    def biases(self, g):
        """View of the biases of free layer ``g`` (1..L), shape (n_g,), into :attr:`theta`."""
        if isinstance(g, (bool, np.bool_)) or not isinstance(g, (int, np.integer)) \
                or not 1 <= g < len(self.group_sizes):
            raise ValidationError(f"g must be a free layer in [1, {len(self.group_sizes) - 1}], got {g!r}")
        start = self._b_off + self._free_off[g]
        return self._theta[start:start + self.group_sizes[g]]

    def feedback_weights(self, k):
        """The feedback block B_k (k = 1..L-1), shape (n_{k+1}, n_k): layer k hears rho(s_{k+1}) B_k.

        A view into :attr:`theta`; when tied, the transposed view ``W_k.T``.
        """
        L = len(self.group_sizes) - 1
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= k < L:
            raise ValidationError(f"k must be a feedback block in [1, {L - 1}] (layers 1..L-1 hear the layer "
                                  f"above), got {k!r}")
        if self.tied:
            return self.weights(k).T
        start = self._fb_off[k]
        n_hi, n_lo = self.group_sizes[k + 1], self.group_sizes[k]
        return self._theta[start:start + n_hi * n_lo].reshape(n_hi, n_lo)

    def tie_feedback(self):
        """Set every feedback block to the transpose of its forward block, B_k = W_k^T (nothing when tied)."""
        for k in self._feedback_layers():
            self.feedback_weights(k)[...] = self.weights(k).T

    def parameter_blocks(self):
        """Named slices of :attr:`theta`: ``W_<pre>_<post>``, ``b_<layer>``, then ``B_<source>_<receiver>``.

        The forward names and slices are those of :meth:`symmetric_network`.
        ``B_output_hidden_1`` carries rho(output) to hidden_1 (shape (n_out, n_1)).
        """
        names = self.group_names
        blocks = {}
        for k in range(len(self.group_sizes) - 1):
            start = int(self._w_off[k])
            blocks[f"W_{names[k]}_{names[k + 1]}"] = slice(start, start + self.group_sizes[k] * self.group_sizes[k + 1])
        for g in range(1, len(self.group_sizes)):
            start = self._b_off + int(self._free_off[g])
            blocks[f"b_{names[g]}"] = slice(start, start + self.group_sizes[g])
        for k in self._feedback_layers():
            start = int(self._fb_off[k])
            blocks[f"B_{names[k + 1]}_{names[k]}"] = slice(start, start + self.group_sizes[k] * self.group_sizes[k + 1])
        return blocks

    def feedback_block_names(self):
        """``{k: name of B_k's block}`` for the feedback blocks in :attr:`theta`."""
        return {k: f"B_{self.group_names[k + 1]}_{self.group_names[k]}" for k in self._feedback_layers()}

    def layer_of_block(self):
        """The layer whose learning rate each block takes: ``{block name: layer index}``.

        W_k and b_{k+1} take layer k+1's (Scellier & Bengio's convention), and
        so does B_k: Kolen-Pollack gives B_k the transpose of W_k's update,
        which must come with the same rate.
        """
        layers = {}
        for k in range(len(self.group_sizes) - 1):
            layers[f"W_{self.group_names[k]}_{self.group_names[k + 1]}"] = k + 1
        for g in range(1, len(self.group_sizes)):
            layers[f"b_{self.group_names[g]}"] = g
        for k, name in self.feedback_block_names().items():
            layers[name] = k + 1
        return layers

    def feedback_angles(self):
        """Angle in degrees between each B_k and W_k^T (Frobenius inner product): ``{B block name: angle}``.

        0 for tied feedback; about 90 for independent random blocks. Akrout et
        al. (2019, Fig. 2) follow it as the feedback learns. The keys are
        those of :meth:`feedback_block_names` (for a tied network, the names
        the blocks would have).
        """
        out = {}
        for k in range(1, len(self.group_sizes) - 1):
            out[f"B_{self.group_names[k + 1]}_{self.group_names[k]}"] = angle_between(self.feedback_weights(k),
                                                                                      self.weights(k).T)
        return out

    def symmetric_network(self):
        """The symmetric :class:`HopfieldNetwork` with the same forward weights and biases (B_k = W_k^T).

        A new network holding a copy of :attr:`forward_theta`: the reference
        whose energy-based EP the vector-field network's is compared with.
        """
        return HopfieldNetwork.layered(list(self.group_sizes), self.activations[0],
                                       theta=self.forward_theta.copy(), dtype=self.dtype,
                                       output_activation=self.output_activation)

    def astype(self, dtype):
        """A new network of the same architecture and feedback whose parameters are converted to ``dtype``.

        E.g. a float64 copy of a float32 network for gradient references.
        """
        return VectorFieldHopfieldNetwork(list(self.group_sizes), self.activations[0], feedback=self.feedback,
                                          theta=np.asarray(self._theta, dtype=float_dtype(dtype)), dtype=dtype,
                                          output_activation=self.output_activation)

    def describe(self):
        """Plain dict describing the architecture (for logs)."""
        return {"group_sizes": list(self.group_sizes), "group_names": list(self.group_names),
                "connections": [list(c) for c in self.connections],
                "activation": self.activation if isinstance(self.activation, str) else list(self.activation),
                "feedback": self.feedback, "n_params": self.n_params, "n_forward": self.n_forward,
                "dtype": self.dtype.name}

    # ----------------------------------------------------------------- dynamics
    @property
    def natural_box(self):
        """The box projected dynamics clip the states to: ([0, 1] for the hard sigmoid), else None.

        With a different output activation, a pair of per-unit bounds, shape
        (n_free,) each, -inf/inf on the units without a box (None if no layer has one).
        """
        hidden = NATURAL_BOUNDS.get(self.activations[0])
        out = NATURAL_BOUNDS.get(self.output_activation)
        if hidden == out:
            return hidden
        lower = np.full(self.n_free, -np.inf)
        upper = np.full(self.n_free, np.inf)
        for g, box in ((g, hidden) for g in range(1, len(self.group_sizes) - 1)):
            if box is not None:
                lower[self._cols(g)], upper[self._cols(g)] = box
        if out is not None:
            lower[self.output_slice], upper[self.output_slice] = out
        return lower, upper

    @property
    def has_energy(self):
        """True only for tied feedback: the dynamics are then the gradient flow of :meth:`energy`."""
        return self.tied

    def initial_state(self, drive):
        """Relaxations start from zero (Scellier & Bengio 2017)."""
        return np.zeros_like(drive)

    def input_drive(self, x):
        """Biases plus the clamped input's projection rho(x) W_0, shape (batch, n_free); constant in a relaxation."""
        x = self.check_input(x)
        return HK.input_drive(x, self._theta, self._sizes, self._free_off, self._pre, self._post, self._w_off,
                              self._b_off, self._acts)

    def kernel_args(self, drive, beta=0.0, target=None, clamp_output=False):
        """The ``args`` tuple of :func:`dynsim.networks.vector_field_kernels.vf_vector_field`."""
        if target is None:
            target = np.zeros((drive.shape[0], self.n_output), dtype=self.dtype)
        return (self._theta, self._sizes, self._free_off, self._w_off, self._fb_off, self.tied, self._acts, drive,
                float(beta), target, bool(clamp_output))

    def dsdt(self, x, s, beta=0.0, target=None, clamp_output=False):
        """The vector field ds/dt at ``s``, shape (batch, n_free).

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
        s : ndarray, shape (batch, n_free)
        beta : float
            Nudging strength (needs ``target`` when not 0).
        target : ndarray, shape (batch, n_output), optional
        clamp_output : bool
            Zero field on the output units (they are held at the target).
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        beta = real_scalar("beta", beta)
        clamp_output = boolean("clamp_output", clamp_output)
        if target is not None:
            target = self.check_target(target, x.shape[0])
        elif beta != 0.0 or clamp_output:
            raise ValidationError("target is required when beta != 0 or clamp_output")
        out = np.empty_like(s)
        VK.vf_vector_field(0.0, s, out, self.kernel_args(self.input_drive(x), beta, target, clamp_output))
        return out

    def local_field(self, x, s):
        """``h = drive + rho(s_{k-1}) W_{k-1} + rho(s_{k+1}) B_k`` per layer, shape (batch, n_free)."""
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        r = HK.group_rho(s, self._acts, self._sizes, self._free_off)
        return VK.local_field(r, self._theta, self._sizes, self._free_off, self._w_off, self._fb_off, self.tied,
                              self.input_drive(x))

    # ----------------------------------------------------------------- the (pseudo-)energy
    def energy(self, x, s):
        """The energy of the forward weights, E_W(s; x), per sample, shape (batch,).

        That of :meth:`symmetric_network`: with tied feedback the dynamics
        descend it; otherwise it is only a pseudo-energy, which a relaxation
        may raise, but it is the function whose parameter gradient dE_W/dtheta
        EP's local update contrasts between two states.
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        return self.energy_from_drive(s, self.input_drive(x))

    def energy_from_drive(self, s, drive):
        """:meth:`energy` from an input drive already computed (:meth:`input_drive`), shape (batch,)."""
        s = self.check_state(s)
        drive = float_array("drive", drive, shape=s.shape, dtype=self.dtype)
        return HK.energy(s, self.forward_theta, self._sizes, self._free_off, self._pre, self._post, self._w_off,
                         self._acts, drive)

    def forward_energy_grad_params_difference(self, x, s_a, s_b, scale=1.0):
        """``scale * (dE_W/dtheta(s_b) - dE_W/dtheta(s_a))`` over the forward parameters, shape (n_forward,).

        The local update EP reads off two states (Hebbian terms
        -rho(s_k)^T rho(s_{k+1}) / batch per forward block, -rho(s) / batch per
        bias), one matrix product per block.

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
        s_a, s_b : ndarray, shape (batch, n_free)
        scale : float
        """
        x = self.check_input(x)
        s_a = self.check_state(s_a, x.shape[0], name="s_a")
        s_b = self.check_state(s_b, x.shape[0], name="s_b")
        return HK.energy_grad_params_difference(x, s_a, s_b, float(scale), self.forward_theta, self._sizes,
                                                self._free_off, self._pre, self._post, self._w_off, self._b_off,
                                                self._acts)

    # ----------------------------------------------------------------- linearisation (reference gradients)
    def field_jacobian(self, x, s, beta=0.0):
        """Dense Jacobians J_b = d(ds/dt)/ds per sample, shape (batch, n_free, n_free), in float64.

        J = diag(rho''(s) h - 1) + diag(rho'(s)) C diag(rho'(s)) - beta P_out, with C
        the coupling matrix among free units: block (k+1, k) is W_k^T (layer
        k+1 hears layer k through W_k), block (k, k+1) is B_k^T. Not symmetric
        unless the feedback is tied. For small networks (the references).
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        beta = real_scalar("beta", beta)
        r, rp = (a.astype(np.float64) for a in HK.group_rho_and_prime(s, self._acts, self._sizes, self._free_off))
        rpp = HK.group_rho_second(s, self._acts, self._sizes, self._free_off).astype(np.float64)
        h = self.local_field(x, s).astype(np.float64)
        n = self.n_free
        C = np.zeros((n, n))
        for k in range(1, len(self.group_sizes) - 1):
            lo = self._cols(k)
            hi = self._cols(k + 1)
            C[hi, lo] = np.asarray(self.weights(k), dtype=np.float64).T
            C[lo, hi] = np.asarray(self.feedback_weights(k), dtype=np.float64).T
        J = rp[:, :, None] * C[None] * rp[:, None, :]
        diag = np.arange(n)
        J[:, diag, diag] += rpp * h - 1.0
        if beta != 0.0:
            out = np.arange(n)[self.output_slice]
            J[:, out, out] -= beta
        return J

    def field_vjp_params(self, x, s, adjoint):
        """Batch mean of ``adjoint_b^T d(ds/dt)_b/dtheta``, shape (n_params,), in float64.

        For W_k: rho(s_k)^T (rho'(s_{k+1}) lambda_{k+1}) / batch (rho(x) for
        k = 0); for B_k: rho(s_{k+1})^T (rho'(s_k) lambda_k) / batch; for the
        biases rho'(s) lambda averaged. With tied feedback W_k also carries
        the B_k = W_k^T term, transposed. The nudging term does not depend on
        theta.

        Parameters
        ----------
        x : ndarray, shape (batch, n_input)
        s : ndarray, shape (batch, n_free)
        adjoint : ndarray, shape (batch, n_free)
        """
        x = self.check_input(x)
        s = self.check_state(s, x.shape[0])
        adjoint = float_array("adjoint", adjoint, shape=s.shape)
        batch = s.shape[0]
        r, rp = (a.astype(np.float64) for a in HK.group_rho_and_prime(s, self._acts, self._sizes, self._free_off))
        rx = rho(x, self._acts[0]).astype(np.float64)
        u = rp * adjoint  # rho'(s) lambda: what each unit's field change is weighted by
        out = np.zeros(self.n_params)
        L = len(self.group_sizes) - 1
        for k in range(L):
            below = rx if k == 0 else r[:, self._cols(k)]
            blk = below.T @ u[:, self._cols(k + 1)] / batch
            if self.tied and k >= 1:
                blk = blk + u[:, self._cols(k)].T @ r[:, self._cols(k + 1)] / batch
            out[self._w_off[k]:self._w_off[k] + blk.size] = blk.ravel()
        out[self._b_off:self.n_forward] = u.mean(axis=0)
        for k in self._feedback_layers():
            blk = r[:, self._cols(k + 1)].T @ u[:, self._cols(k)] / batch
            out[self._fb_off[k]:self._fb_off[k] + blk.size] = blk.ravel()
        return out

    def _cols(self, g):
        """Columns of free layer ``g`` in the state."""
        return slice(int(self._free_off[g]), int(self._free_off[g]) + self.group_sizes[g])

    # ----------------------------------------------------------------- relaxation schemes
    def relax_sweeps(self, s0, drive, scheme, beta=0.0, target=None, clamp_output=False, *, max_steps=100_000,
                     atol=1e-6, rtol=1e-6, stop_at_steady_state=True, box="natural", max_abs=1e6, record_every=0,
                     record_samples=None):
        """Relax a batch of states by fixed-point or block sweeps; the result and the final pseudo-energy.

        The signature, statuses and counts of
        :meth:`dynsim.networks.conv_hopfield.ConvHopfieldNetwork.relax_with_energy`.
        One sweep sets each layer to ``P(rho'(s) h)`` (the nudged output to
        ``P((rho'(s) h + beta y) / (1 + beta))``), the zero of its own
        component of the field given the others; its cost is one evaluation
        of the local field. For the symmetric network these maps never raise
        the energy (block) or at least have its fixed points; with untied
        feedback they have the fixed points of the vector field but may
        cycle instead of converging: read the status and residual.

        Parameters
        ----------
        s0 : ndarray, shape (batch, n_free)
        drive : ndarray, shape (batch, n_free)
            :meth:`input_drive` of the clamped input.
        scheme : {'fixed_point', 'block'}
            Every layer from the same state, or the odd layers then the even ones.
        beta : float
            Nudging strength, > -1.
        target : ndarray, shape (batch, n_output), optional
        clamp_output : bool
            Hold the outputs where ``s0`` has them.
        max_steps, atol, rtol, stop_at_steady_state, max_abs, record_every, record_samples
            As in :func:`integrators.integrate` (a step is a sweep).
        box : 'natural', (float, float) or None
            Projection box; 'natural' is :attr:`natural_box`.

        Returns
        -------
        (integrators.IntegrationResult, ndarray of shape (batch,))
        """
        if scheme not in RELAXATION_SCHEMES:
            raise ValidationError(f"scheme must be one of {list(RELAXATION_SCHEMES)}, got {scheme!r}")
        s0 = self.check_state(s0, name="s0")
        n_batch, n = s0.shape
        drive = float_array("drive", drive, shape=s0.shape, dtype=self.dtype)
        beta = real_scalar("beta", beta)
        clamp_output = boolean("clamp_output", clamp_output)
        if not clamp_output and not beta > -1.0:
            raise ValidationError(f"the relaxation scheme {scheme!r} divides by the outputs' curvature 1 + beta, "
                                  f"which must be positive: beta must be > -1, got {beta}")
        if target is None:
            if beta != 0.0 or clamp_output:
                raise ValidationError("target is required when beta != 0 or clamp_output")
            target = np.zeros((n_batch, self.n_output), dtype=self.dtype)
        else:
            target = self.check_target(target, n_batch)
        max_steps = positive_int("max_steps", max_steps)
        record_every = positive_int("record_every", record_every, minimum=0)
        if isinstance(box, str) and box == "natural":
            box = self.natural_box
        project = box is not None
        if project:
            lower = np.ascontiguousarray(np.broadcast_to(np.asarray(box[0], dtype=self.dtype), (n,)))
            upper = np.ascontiguousarray(np.broadcast_to(np.asarray(box[1], dtype=self.dtype), (n,)))
        else:
            lower = np.full(n, -np.inf, dtype=self.dtype)
            upper = np.full(n, np.inf, dtype=self.dtype)
        y0 = np.clip(s0, lower, upper) if project else s0
        samples = (np.arange(n_batch, dtype=np.int64) if record_samples is None
                   else np.ascontiguousarray(record_samples, dtype=np.int64))
        out = VK.relax_sweeps(y0, self._theta, self._sizes, self._free_off, self._w_off, self._fb_off, self.tied,
                              self._acts, drive, float(beta), target, clamp_output, scheme == "block",
                              max_steps, float(atol), float(rtol), bool(stop_at_steady_state), lower, upper, project,
                              float(max_abs), record_every, samples)
        y, status, steps, residual, bad_step, bad_sample, rec_t, rec_y, rec_res, n_rec = out
        trajectory = None
        if record_every > 0:
            trajectory = integrators.Trajectory(t=rec_t[:n_rec].copy(), y=rec_y[:n_rec].copy(),
                                                residual=rec_res[:n_rec].copy(), samples=samples)
        result = finish_result(y, float(steps), int(status), int(steps), 0, int(steps), residual, int(bad_step),
                               int(bad_sample), atol=float(atol), rtol=float(rtol),
                               stop_at_steady_state=bool(stop_at_steady_state), method=scheme, trajectory=trajectory)
        return result, self.energy_from_drive(result.y, drive)

    relax_with_energy = relax_sweeps
    """The name :func:`dynsim.relax.phases.settle` looks for: it sends the sweep schemes here."""


def angle_between(a, b):
    """Angle in degrees between two arrays of one shape, as vectors; NaN when either is zero.

    Computed as 2 atan2(||u - v||, ||u + v||) of the unit vectors, which
    stays accurate near 0 and 180 degrees (arccos of the cosine loses half
    the digits there: 1e-6 degrees for identical float64 arrays).
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if not (na > 0 and nb > 0):
        return float("nan")
    u, v = a / na, b / nb
    return float(np.degrees(2.0 * np.arctan2(np.linalg.norm(u - v), np.linalg.norm(u + v))))
