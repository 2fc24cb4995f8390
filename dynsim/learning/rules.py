"""Every learning rule by name: one entry point that reads a minibatch's gradient estimate for any network.

The Hopfield rules (EP in its variants, CHL, the recurrent-backprop
baseline) settle a free phase (from zeros, or from each example's stored
free equilibrium with persistent particles) and contrast it with a second
phase; the predictive coding rules start from the feedforward pass, which
is the free equilibrium of a PC network.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput.
       Neurosci. 11:24 (2017) (training procedure, persistent particles).
"""
from __future__ import annotations

from dynsim.learning.contrastive import EP_VARIANTS, chl_gradient, ep_gradient
from dynsim.learning.estimate import Estimate
from dynsim.learning.feedback_alignment import FEEDBACK_KINDS, feedback_alignment_gradient
from dynsim.learning.microcircuit_plasticity import microcircuit_gradient
from dynsim.learning.predictive_coding import PC_NETWORKS, feedforward_phase, pc_gradient, zil_gradient
from dynsim.learning.target_propagation import dtp_gradient
from dynsim.learning.vector_field_ep import VF_EP_VARIANTS, vf_ep_gradient
from dynsim.networks.dtp import DTPNetwork
from dynsim.networks.microcircuit import DendriticMicrocircuit
from dynsim.networks.vector_field_hopfield import VectorFieldHopfieldNetwork
from dynsim.references.gradients import implicit_gradient
from dynsim.relax.phases import free_phase
from dynsim.validation import ValidationError

__all__ = ["RULES", "PC_RULES", "VF_RULES", "MICROCIRCUIT_RULES", "gradient_estimate"]

RULES = tuple(f"ep-{v}" for v in EP_VARIANTS) + ("chl", "rbp")
"""Rules for Hopfield networks; 'rbp' is the recurrent-backprop baseline."""

VF_RULES = tuple(f"ep-{v}" for v in VF_EP_VARIANTS)
"""Rules for vector-field Hopfield networks: EP's contrast (:func:`~dynsim.learning.vector_field_ep.vf_ep_gradient`),
the feedback learning as the network's ``feedback`` says."""

PC_RULES = ("pc-strict", "pc-fixed-prediction", "pc-zil", "bp", "fa", "dfa", "dtp")
"""Rules for predictive coding networks (and their feedforward pass): 'bp' is exact backprop on it, 'fa' and 'dfa'
feedback alignment and direct feedback alignment (:mod:`dynsim.learning.feedback_alignment`), 'dtp' difference
target propagation (:mod:`dynsim.learning.target_propagation`, for a
:class:`~dynsim.networks.dtp.DTPNetwork`, whose learned inverses it trains)."""

MICROCIRCUIT_RULES = ("microcircuit", "microcircuit-contrast")
"""Rules of a :class:`~dynsim.networks.microcircuit.DendriticMicrocircuit`: the paper's plasticity read at the
nudged state, or nudged minus free (:func:`~dynsim.learning.microcircuit_plasticity.microcircuit_gradient`'s
``subtract_free``); ``beta`` is the teaching conductance, ``options`` the settings of both relaxations."""

DTP_RULES = ("dtp", "bp")
"""The rules of a :class:`~dynsim.networks.dtp.DTPNetwork`: its own, and backprop on its forward pass."""


def _pc_gradient_estimate(rule, network, x, target, options, feedback_seed, rng):
    if rule not in PC_RULES:
        raise ValidationError(f"rule for a predictive coding network must be one of {list(PC_RULES)}, got {rule!r}")
    if isinstance(network, DTPNetwork):
        if rule not in DTP_RULES:
            raise ValidationError(f"rule {rule!r} does not train a DTPNetwork (it would leave its inverses "
                                  f"unlearned or undefined); its rules are {list(DTP_RULES)}")
    elif rule == "dtp":
        raise ValidationError(f"rule 'dtp' needs a DTPNetwork (a feedforward network with learned inverses), got "
                              f"{type(network).__name__}")
    if rule == "dtp":
        return dtp_gradient(network, x, target, rng=rng)
    if rule == "pc-zil":
        return zil_gradient(network, x, target)
    if rule in FEEDBACK_KINDS:
        return feedback_alignment_gradient(network, x, target, rule, feedback_seed)
    if rule == "bp":
        x = network.check_input(x)
        target = network.check_target(target, x.shape[0])
        free = feedforward_phase(network, network.input_drive(x), target)
        return Estimate(gradient=network.backprop_gradient(x, target), free=free, rule="bp")
    return pc_gradient(network, x, target, rule[3:].replace("-", "_"), options=options)


def gradient_estimate(rule, network, x, target, beta=0.5, options=None, nudged_options=None, s0=None, rng=None,
                      feedback_seed=0, rule_options=None):
    """The gradient estimate of any rule, by name, on one minibatch.

    Parameters
    ----------
    rule : str
        One of :data:`RULES` for a :class:`~dynsim.networks.hopfield.HopfieldNetwork`,
        of :data:`PC_RULES` for a :class:`~dynsim.networks.pc.PCNetwork` or a
        :class:`~dynsim.networks.conv_pc.ConvPCNetwork` (whose feedforward pass has no
        feedback alignment rules).
    network : HopfieldNetwork, ConvHopfieldNetwork, PCNetwork or ConvPCNetwork
    x : ndarray, shape (batch, n_input)
    target : ndarray, shape (batch, n_output)
    beta : float
        Nudging strength of the EP rules.
    options, nudged_options : SettleOptions, optional
        The free phase's (a PC network's inference's) and the second phase's settings.
    s0 : ndarray, shape (batch, n_free), optional
        Start of the free phase (persistent particles); Hopfield rules only.
    rng : numpy.random.Generator, optional
        The sign of 'ep-random'; the inverses' corruption noise of 'dtp'.
    feedback_seed : int
        The seed of the fixed random feedback of 'fa' and 'dfa' (the same
        seed, the same feedback matrices for a given network).
    rule_options : dict, optional
        Further keyword arguments of the rule's function; for a
        :class:`~dynsim.networks.vector_field_hopfield.VectorFieldHopfieldNetwork`
        (rules :data:`VF_RULES`), ``weight_decay`` and ``mirror_samples`` of
        :func:`~dynsim.learning.vector_field_ep.vf_ep_gradient` (``rng`` is
        the weight mirror's noise source).

    Returns
    -------
    Estimate
        ``gradient``, the ``free`` phase (a PC network's feedforward pass:
        it starts at its equilibrium) and the rule's other ``phases``.
    """
    if rule_options is not None and not isinstance(rule_options, dict):
        raise ValidationError(f"rule_options must be a dict of keyword arguments, got {rule_options!r}")
    if isinstance(network, DendriticMicrocircuit):
        if rule not in MICROCIRCUIT_RULES:
            raise ValidationError(f"rule for a dendritic microcircuit must be one of {list(MICROCIRCUIT_RULES)}, "
                                  f"got {rule!r}")
        if rule_options:
            raise ValidationError(f"rule_options: rule {rule!r} takes none, got {sorted(rule_options)}")
        return microcircuit_gradient(network, x, target, beta=beta, options=options, s0=s0,
                                     subtract_free=rule == "microcircuit-contrast")
    if isinstance(network, VectorFieldHopfieldNetwork):
        if rule not in VF_RULES:
            raise ValidationError(f"rule for a vector-field Hopfield network must be one of {list(VF_RULES)}, "
                                  f"got {rule!r}")
        extra = dict(rule_options or {})
        unknown = sorted(set(extra) - {"weight_decay", "mirror_samples"})
        if unknown:
            raise ValidationError(f"rule_options: {unknown} are not options of {rule!r} on a vector-field network; "
                                  "it takes 'weight_decay' and 'mirror_samples'")
        return vf_ep_gradient(network, x, target, beta, rule[3:], options=options, nudged_options=nudged_options,
                              s0=s0, rng=rng, **extra)
    if rule_options:
        raise ValidationError(f"rule_options: rule {rule!r} on a {type(network).__name__} takes none, got "
                              f"{sorted(rule_options)}")
    if isinstance(network, PC_NETWORKS):
        return _pc_gradient_estimate(rule, network, x, target, options, feedback_seed, rng)
    if rule not in RULES:
        raise ValidationError(f"rule must be one of {list(RULES)}, got {rule!r}")
    if rule.startswith("ep-"):
        return ep_gradient(network, x, target, beta, rule[3:], options=options, nudged_options=nudged_options,
                           s0=s0, rng=rng)
    if rule == "chl":
        return chl_gradient(network, x, target, options=options, clamped_options=nudged_options, s0=s0)
    free = free_phase(network, x, s0=s0, target=target, options=options)
    return Estimate(gradient=implicit_gradient(network, x, target, free).gradient, free=free, rule="rbp")
