"""A layered feedforward network with learned approximate inverses of its layers: difference target propagation.

:class:`DTPNetwork` is the feedforward pass of a :class:`~dynsim.networks.pc.PCNetwork`,
``x_l = F_l(x_{l-1}) = f(x_{l-1}) W_l + b_l`` (the output x_L linear in
f(x_{L-1})), with one more parameter pair per layer above the first: an
approximate inverse of the same form,

    G_l(x_l) = f(x_l) V_l + c_l  ~  x_{l-1},     l = 2 ... L,

with V_l of shape (n_l, n_{l-1}). The inverses carry targets down in
difference target propagation (Lee et al. 2015); they are learned from
noisy reconstructions (:func:`dynsim.learning.target_propagation.dtp_gradient`).
Every parameter, forward and inverse, lives in one flat ``theta``, so the
optimizers, the training loop and the checkpoints serve it unchanged.

Parameter layout
----------------
``theta`` = the :class:`PCNetwork` layout (W_1..W_L, then b_1..b_L), then
V_2..V_L (each (n_l, n_{l-1}), C order), then c_2..c_L (each (n_{l-1},)).
The inverse blocks are named ``V_<layer l>_<layer l-1>`` and
``c_<layer l-1>``.

References
----------
.. [1] D.-H. Lee, S. Zhang, A. Fischer, Y. Bengio, "Difference Target
       Propagation", ECML PKDD (2015).
.. [2] T. P. Lillicrap, A. Santoro, L. Marris, C. J. Akerman, G. Hinton,
       "Backpropagation and the brain", Nat. Rev. Neurosci. 21:335 (2020)
       (learning from differences of activities).
.. [3] A. Meulemans, F. S. Carzaniga, J. A. K. Suykens, J. Sacramento,
       B. F. Grewe, "A Theoretical Framework for Target Propagation",
       NeurIPS (2020).
"""
from __future__ import annotations

import numpy as np

from dynsim.networks.pc import PCNetwork, activation_and_derivative
from dynsim.validation import ValidationError, float_array, one_of, random_generator, real_scalar

__all__ = ["DTPNetwork", "TOP_TARGETS", "TARGET_SPACES"]

TOP_TARGETS = ("output", "gradient")
"""Where the targets start: the output (carried down by G_L), or the last hidden layer by a gradient step."""
TARGET_SPACES = ("state", "rate")
"""Where the hidden layers' targets live: the states x_l, or the rates f(x_l) (Lee et al.)."""


class DTPNetwork(PCNetwork):
    """Layered feedforward network x_0 -> ... -> x_L with learned inverses G_l of layers 2..L.

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, input first (at least one hidden layer).
    activation : {'tanh', 'logistic', 'relu', 'hard_sigmoid', 'gelu'}
        f in F_l and G_l.
    target_step : float
        eta > 0: the output's target is x_L - eta dL/dx_L (Lee et al.'s
        top-layer step), L = 1/2 ||x_L - y||^2.
    inverse_noise : float
        sigma > 0 of the Gaussian corruption the inverses learn to undo.
    theta : ndarray, shape (n_params,), optional
        Forward then inverse parameters (module docstring).
    seed : int or numpy.random.Generator, optional
        Random source of the initial parameters: the forward ones are drawn
        first, as :class:`PCNetwork` draws them from the same seed, then the
        inverses.
    init : {'glorot', 'fan-in'}
        As :class:`PCNetwork`'s, for the forward and the inverse layers.
    dtype : {numpy.float64, numpy.float32}
    top_target : {'output', 'gradient'}
        Where the targets start. 'output': the output's target
        x_L - eta (x_L - y), carried to layer L-1 by the learned inverse G_L.
        'gradient' (Lee et al.'s code): the last hidden layer's target is a
        gradient step of the loss, x^_{L-1} = x_{L-1} - eta dL/dx_{L-1}
        (h^_{L-1} = h_{L-1} - eta dL/dh_{L-1} in rate space; through W_L^T,
        the one place the rule transports weights), so that layer L-1, like
        the output layer in either case, learns backprop's update; G_L is
        not used (its update is zero).
    target_space : {'state', 'rate'}
        Where the hidden layers' targets live. 'state': the states x_l, with
        G_l carrying x^_l to x^_{l-1} and the local loss 1/2 ||x_l - x^_l||^2.
        'rate' (Lee et al.'s formulation, on activities h_l = f(x_l)): the
        same parameters read as the inverse g_l(h_l) = f(h_l V_l + c_l) on
        rates (the output's rate is f(x_L)), the difference correction on
        rates, and the local loss 1/2 ||f(x_l) - h^_l||^2, whose gradient
        carries f'(x_l), so saturated units weigh little, as in backprop. The
        linear output keeps the squared error of its state either way.

    Notes
    -----
    The predictive coding rules do not apply (the network has no PC energy
    of its own inverses); the training rules are 'dtp' and 'bp' (backprop on
    the forward pass; it leaves the inverses where they are).
    """

    def __init__(self, sizes, activation="tanh", target_step=0.1, inverse_noise=0.1, theta=None, seed=None,
                 init="glorot", dtype=np.float64, top_target="output", target_space="state"):
        rng = random_generator("seed", seed)
        super().__init__(sizes, activation=activation, seed=rng, init=init, dtype=dtype)
        sizes = self.group_sizes
        L = len(sizes) - 1
        if L < 2:
            raise ValidationError(f"sizes needs at least one hidden layer for target propagation, got {list(sizes)}")
        self.target_step = real_scalar("target_step", target_step, 0.0, np.inf, low_open=True, high_open=True)
        self.inverse_noise = real_scalar("inverse_noise", inverse_noise, 0.0, np.inf, low_open=True, high_open=True)
        self.top_target = one_of("top_target", top_target, TOP_TARGETS)
        self.target_space = one_of("target_space", target_space, TARGET_SPACES)
        self.n_forward = self.n_params
        # Offsets of V_l and c_l (l = 2..L) after the forward parameters.
        self._v_off, self._c_off = {}, {}
        start = self.n_forward
        for l in range(2, L + 1):
            self._v_off[l] = start
            start += sizes[l] * sizes[l - 1]
        for l in range(2, L + 1):
            self._c_off[l] = start
            start += sizes[l - 1]
        forward = self._theta
        self.n_params = start
        if theta is None:
            inverse = np.zeros(start - self.n_forward)
            for l in range(2, L + 1):
                # G_l maps n_l units to n_{l-1}: drawn as a forward layer of that shape would be.
                fan_in, fan_out = sizes[l], sizes[l - 1]
                limit = np.sqrt(6.0 / (fan_in + fan_out)) if init == "glorot" else 1.0 / np.sqrt(fan_in)
                v = self._v_off[l] - self.n_forward
                inverse[v:v + fan_in * fan_out] = rng.uniform(-limit, limit, fan_in * fan_out)
                if init == "fan-in":
                    c = self._c_off[l] - self.n_forward
                    inverse[c:c + fan_out] = rng.uniform(-limit, limit, fan_out)
            theta = np.concatenate([forward.astype(np.float64), inverse])
        self.theta = theta

    # ----------------------------------------------------------------- parameters
    def inverse_weights(self, l):
        """View of V_l (2 <= l <= L), shape (n_l, n_{l-1})."""
        self._check_inverse_layer(l)
        n = self.group_sizes[l] * self.group_sizes[l - 1]
        return self._theta[self._v_off[l]:self._v_off[l] + n].reshape(self.group_sizes[l], self.group_sizes[l - 1])

    def inverse_biases(self, l):
        """View of c_l (2 <= l <= L), shape (n_{l-1},)."""
        self._check_inverse_layer(l)
        return self._theta[self._c_off[l]:self._c_off[l] + self.group_sizes[l - 1]]

    def _check_inverse_layer(self, l):
        L = len(self.group_sizes) - 1
        if isinstance(l, (bool, np.bool_)) or not isinstance(l, (int, np.integer)) or not 2 <= l <= L:
            raise ValidationError(f"l must be a layer with an inverse, an integer in [2, {L}], got {l!r}")

    def parameter_blocks(self):
        """Named slices of theta: the forward blocks, then ``V_<layer l>_<layer l-1>`` and ``c_<layer l-1>``."""
        blocks = super().parameter_blocks()
        names, sizes = self.group_names, self.group_sizes
        L = len(sizes) - 1
        for l in range(2, L + 1):
            blocks[f"V_{names[l]}_{names[l - 1]}"] = slice(self._v_off[l], self._v_off[l] + sizes[l] * sizes[l - 1])
        for l in range(2, L + 1):
            blocks[f"c_{names[l - 1]}"] = slice(self._c_off[l], self._c_off[l] + sizes[l - 1])
        return blocks

    def layer_of_block(self):
        """The layer each block belongs to: W_l, b_l and the inverse of layer l (V_l, c_l) to l."""
        layers = super().layer_of_block()
        names = self.group_names
        for l in range(2, len(self.group_sizes)):
            layers[f"V_{names[l]}_{names[l - 1]}"] = l
            layers[f"c_{names[l - 1]}"] = l
        return layers

    def describe(self):
        return {**super().describe(), "model": "difference_target_propagation", "target_step": self.target_step,
                "inverse_noise": self.inverse_noise, "top_target": self.top_target, "target_space": self.target_space,
                "n_forward": self.n_forward}

    # ----------------------------------------------------------------- the inverses
    def inverse(self, l, x_l):
        """G_l(x_l) = f(x_l) V_l + c_l, shape (batch, n_{l-1}): the approximate inverse of layer l on states.

        With ``target_space='rate'`` the same parameters act on rates, g_l(h_l) = f(h_l V_l + c_l) = f(G_l(x_l))
        at h_l = f(x_l); this method and :meth:`reconstruction_loss` stay on states.
        """
        self._check_inverse_layer(l)
        x_l = float_array("x_l", x_l, shape=(None, self.group_sizes[l]), dtype=self.dtype)
        return self._inverse(l, x_l)

    def _inverse(self, l, x_l):
        f, _ = activation_and_derivative(x_l, self.activation)
        return f.astype(self.dtype, copy=False) @ self.inverse_weights(l) + self.inverse_biases(l)

    def _inverse_preactivation_of_rates(self, l, r_l):
        """r_l V_l + c_l for rates r_l (batch, n_l); f of it is g_l(h_l), the inverse on rates ('rate' space)."""
        return r_l @ self.inverse_weights(l) + self.inverse_biases(l)

    def reconstruction_loss(self, l, x_below):
        """1/2 mean_b ||G_l(F_l(x_{l-1})) - x_{l-1}||^2: how far G_l is from inverting layer l at ``x_below``."""
        self._check_inverse_layer(l)
        x_below = float_array("x_below", x_below, shape=(None, self.group_sizes[l - 1]), dtype=self.dtype)
        f, _ = activation_and_derivative(x_below, self.activation)
        up = f.astype(self.dtype, copy=False) @ self.weights(l) + self.biases(l)
        return 0.5 * float(np.mean(np.sum((self._inverse(l, up) - x_below) ** 2, axis=1)))
