"""Associative memory on a fully connected Hopfield network: patterns, corrupted cues, training, recall.

The network has three groups: the clamped ``cue`` (a stored pattern with
some bits flipped), ``hidden`` units and the ``memory`` units, every pair of
groups coupled, including the symmetric blocks within ``hidden`` and within
``memory``. A local rule (EP or CHL, :mod:`dynsim.learning.contrastive`) trains the
memory units towards the clean pattern on freshly corrupted cues every
epoch; recall settles the free phase and reads each memory unit as bit 1
when its state exceeds 1/2.

Recall is scored against two baselines that need no learning: the cue
itself (what the memory was given) and the stored pattern nearest to the
cue in Hamming distance. The latter is the maximum-likelihood decoder when
the flipped bits are placed uniformly at random: no memory of these
patterns recalls more cues exactly.

References
----------
.. [1] J. J. Hopfield, "Neurons with graded response have collective
       computational properties like those of two-state neurons", PNAS 81
       (1984) (the continuous network as an associative memory).
.. [2] B. Scellier, Y. Bengio, "Equilibrium Propagation", Front. Comput.
       Neurosci. 11:24 (2017).
.. [3] J. R. Movellan, "Contrastive Hebbian learning in the continuous
       Hopfield model", Connectionist Models (1991).
"""
from __future__ import annotations

import time

import numpy as np

from dynsim.learning.rules import RULES, gradient_estimate
from dynsim.networks.hopfield import HopfieldNetwork
from dynsim.relax.phases import SettleOptions, free_phase
from dynsim.validation import ValidationError, float_array, positive_int, real_scalar

__all__ = ["GROUP_NAMES", "random_patterns", "flipped_bits", "corrupt", "nearest_pattern", "recall_scores",
           "memory_network", "recall", "train_memory", "recall_table"]

GROUP_NAMES = ("cue", "hidden", "memory")
"""Group names of :func:`memory_network` (``hidden`` is left out when it has no units)."""

MAX_CORRUPTION = 0.5
"""Largest fraction of flipped bits: beyond 1/2 a cue is closer to the inverted pattern."""

_MAX_DRAWS = 10_000


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise ValidationError(f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), "
                              f"got {type(rng).__name__}")
    return rng


def random_patterns(n_patterns, n_units, rng, min_distance=None):
    """Distinct random binary patterns with a minimum pairwise Hamming distance.

    Parameters
    ----------
    n_patterns, n_units : int
    rng : numpy.random.Generator
    min_distance : int, optional
        Smallest Hamming distance between any two patterns (default
        ``n_units // 4``); patterns are redrawn one at a time until it holds.

    Returns
    -------
    ndarray, shape (n_patterns, n_units)
        Entries 0.0 or 1.0, each bit 1 with probability 1/2.
    """
    n_patterns = positive_int("n_patterns", n_patterns)
    n_units = positive_int("n_units", n_units)
    min_distance = n_units // 4 if min_distance is None else positive_int("min_distance", min_distance, minimum=0)
    _check_rng(rng)
    patterns = np.zeros((0, n_units))
    for _ in range(_MAX_DRAWS):
        if len(patterns) == n_patterns:
            return patterns
        p = (rng.random(n_units) < 0.5).astype(float)
        if len(patterns) == 0 or np.abs(patterns - p).sum(1).min() >= max(min_distance, 1):
            patterns = np.vstack([patterns, p])
    raise ValidationError(f"could not draw {n_patterns} patterns of {n_units} bits at Hamming distance "
                          f">= {min_distance} from each other; ask for fewer patterns or more units")


def flipped_bits(fraction, n_units):
    """Bits a corruption level flips in a pattern of ``n_units``: round(fraction * n_units)."""
    fraction = real_scalar("corruption", fraction, 0.0, MAX_CORRUPTION)
    return int(round(fraction * positive_int("n_units", n_units)))


def corrupt(patterns, n_flips, rng):
    """Copies of ``patterns`` with exactly ``n_flips`` bits flipped per row, at random places.

    Parameters
    ----------
    patterns : ndarray, shape (batch, n_units)
        Binary (0/1) rows.
    n_flips : int or ndarray of int, shape (batch,)
        Bits to flip in each row.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, shape (batch, n_units)
    """
    patterns = float_array("patterns", patterns, ndim=2)
    _check_rng(rng)
    batch, n = patterns.shape
    raw = np.asarray(n_flips)
    if raw.dtype.kind not in "iu" or raw.ndim > 1 or raw.ndim == 1 and raw.shape != (batch,):
        raise ValidationError(f"n_flips must be an integer or integers of shape ({batch},), "
                              f"got {n_flips!r}")
    n_flips = np.broadcast_to(raw.astype(np.int64), (batch,))
    if n_flips.min(initial=0) < 0 or n_flips.max(initial=0) > n:
        raise ValidationError(f"n_flips must lie in [0, {n}], got {n_flips.min()}..{n_flips.max()}")
    # A row's first n_flips positions in a random order are distinct random bits.
    order = np.argsort(rng.random((batch, n)), axis=1)
    flip = np.zeros((batch, n), dtype=bool)
    np.put_along_axis(flip, order, np.arange(n)[None, :] < n_flips[:, None], axis=1)
    return np.where(flip, 1.0 - patterns, patterns)


def nearest_pattern(cues, patterns):
    """The stored pattern nearest to each cue in Hamming distance (ties: the lower index).

    Parameters
    ----------
    cues : ndarray, shape (batch, n_units)
    patterns : ndarray, shape (n_patterns, n_units)

    Returns
    -------
    ndarray, shape (batch, n_units)
    """
    patterns = float_array("patterns", patterns, ndim=2)
    cues = float_array("cues", cues, shape=(None, patterns.shape[1])) > 0.5
    distance = (cues[:, None, :] != (patterns[None] > 0.5)).sum(-1)
    return patterns[distance.argmin(1)]


def recall_scores(recalled, clean):
    """Bit accuracy and exact-recall rate of ``recalled`` (read as bit 1 above 1/2) against ``clean``.

    Parameters
    ----------
    recalled, clean : ndarray, shape (batch, n_units)

    Returns
    -------
    dict
        ``bit_accuracy`` (fraction of correct bits), ``exact_recall``
        (fraction of rows with every bit correct).
    """
    clean = float_array("clean", clean, ndim=2)
    recalled = float_array("recalled", recalled, shape=clean.shape)
    correct = (recalled > 0.5) == (clean > 0.5)
    return {"bit_accuracy": float(correct.mean()), "exact_recall": float(correct.all(1).mean())}


def memory_network(n_units, n_hidden, activation="hard_sigmoid", seed=None):
    """Fully connected network ``cue -> hidden -> memory`` with every group pair coupled.

    Connections: (cue, hidden), (cue, memory), (hidden, hidden),
    (hidden, memory), (memory, memory); with ``n_hidden = 0`` only
    (cue, memory) and (memory, memory), a classic Hopfield memory with an
    external field from the cue. Glorot-uniform weights, zero biases.
    """
    n_units = positive_int("n_units", n_units)
    n_hidden = positive_int("n_hidden", n_hidden, minimum=0)
    if n_hidden:
        sizes, names = [n_units, n_hidden, n_units], list(GROUP_NAMES)
    else:
        sizes, names = [n_units, n_units], [GROUP_NAMES[0], GROUP_NAMES[2]]
    G = len(sizes)
    connections = [(a, b) for a in range(G) for b in range(a, G) if not a == b == 0]
    return HopfieldNetwork(sizes, connections, activation, seed=seed, group_names=names)


def recall(network, cues, options=None):
    """Settle the free phase with ``cues`` clamped; returns ``(memory states (batch, n_units), PhaseResult)``."""
    free = free_phase(network, cues, options=options)
    return free.state[:, network.output_slice], free


def _training_set(patterns, max_flips, per_pattern, rng):
    """``per_pattern`` cues per pattern, each with a number of flips drawn uniformly from 0..max_flips."""
    clean = np.repeat(patterns, per_pattern, axis=0)
    flips = rng.integers(0, max_flips + 1, size=len(clean))
    return corrupt(clean, flips, rng), clean


def train_memory(network, patterns, rule, optimizer, epochs, corruption, per_pattern=20, batch_size=10,
                 beta=0.5, options=None, nudged_options=None, rng=None, validation_per_pattern=20):
    """Train ``network`` in place to recall ``patterns`` from corrupted cues.

    Every epoch draws fresh cues: ``per_pattern`` per stored pattern, each
    with a number of flipped bits drawn uniformly from 0 to
    ``flipped_bits(corruption)``, so the memory sees many corruptions and
    never the same cue set twice; the target is the clean pattern. After
    each epoch (and before the first) recall is scored on one fixed
    validation set of cues corrupted at exactly ``corruption``.

    Parameters
    ----------
    network : HopfieldNetwork
        Input and output groups of ``n_units`` (e.g. :func:`memory_network`).
    patterns : ndarray, shape (n_patterns, n_units)
    rule : str
        One of :data:`dynsim.learning.rules.RULES`.
    optimizer : SGD or Adam
    epochs, per_pattern, batch_size, validation_per_pattern : int
    corruption : float
        Largest fraction of flipped bits in training, in [0, 1/2].
    beta : float
        Nudging strength of the EP rules.
    options, nudged_options : SettleOptions
    rng : numpy.random.Generator

    Returns
    -------
    dict of str to ndarray, shape (epochs + 1,)
        ``epoch``, ``loss`` (mean cost at the free equilibrium on the
        validation set), ``bit_accuracy``, ``exact_recall``, ``free_steps``
        and ``second_phase_steps`` (mean per minibatch), ``unsettled_free``
        and ``unsettled_second`` (minibatch phases that stopped before the
        steady state, e.g. at the step limit), ``seconds``.
    """
    patterns = float_array("patterns", patterns, ndim=2)
    n_units = patterns.shape[1]
    if network.n_input != n_units or network.n_output != n_units:
        raise ValidationError(f"the network's input and output groups must have {n_units} units (the pattern "
                              f"size), got {network.n_input} and {network.n_output}")
    epochs = positive_int("epochs", epochs, minimum=0)
    if rule not in RULES:
        raise ValidationError(f"rule must be one of {list(RULES)}, got {rule!r}")
    per_pattern = positive_int("per_pattern", per_pattern)
    batch_size = positive_int("batch_size", batch_size)
    max_flips = flipped_bits(corruption, n_units)
    options = SettleOptions() if options is None else options
    rng = np.random.default_rng() if rng is None else _check_rng(rng)
    val_clean = np.repeat(patterns, positive_int("validation_per_pattern", validation_per_pattern), axis=0)
    val_cues = corrupt(val_clean, max_flips, rng)
    history = {k: [] for k in ("epoch", "loss", "bit_accuracy", "exact_recall", "free_steps",
                               "second_phase_steps", "unsettled_free", "unsettled_second", "seconds")}

    def record(epoch, free_steps, second_steps, unsettled_free, unsettled_second, seconds):
        free = free_phase(network, val_cues, target=val_clean, options=options)
        scores = recall_scores(free.state[:, network.output_slice], val_clean)
        for key, value in (("epoch", epoch), ("loss", float(free.cost.mean())),
                           ("bit_accuracy", scores["bit_accuracy"]), ("exact_recall", scores["exact_recall"]),
                           ("free_steps", free_steps), ("second_phase_steps", second_steps),
                           ("unsettled_free", unsettled_free), ("unsettled_second", unsettled_second),
                           ("seconds", seconds)):
            history[key].append(value)

    record(0, 0.0, 0.0, 0, 0, 0.0)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        cues, clean = _training_set(patterns, max_flips, per_pattern, rng)
        order = rng.permutation(len(cues))
        free_steps, second_steps, unsettled_free, unsettled_second = [], [], 0, 0
        for lo in range(0, len(cues), batch_size):
            idx = order[lo:lo + batch_size]
            est = gradient_estimate(rule, network, cues[idx], clean[idx], beta, options,
                                    nudged_options, rng=rng)
            grad, free, phases = est.gradient, est.free, est.phases
            optimizer.step(network.theta, grad)
            free_steps.append(free.integration.n_steps)
            second_steps.extend(p.integration.n_steps for p in phases.values())
            unsettled_free += not free.converged
            unsettled_second += sum(not p.converged for p in phases.values())
        record(epoch, float(np.mean(free_steps)), float(np.mean(second_steps)) if second_steps else 0.0,
               unsettled_free, unsettled_second, time.perf_counter() - start)
    return {k: np.asarray(v) for k, v in history.items()}


def recall_table(network, patterns, levels, trials, rng, options=None):
    """Recall from fresh corrupted cues at each corruption level, with the two baselines.

    Parameters
    ----------
    network : HopfieldNetwork
    patterns : ndarray, shape (n_patterns, n_units)
    levels : sequence of float
        Fractions of flipped bits, each in [0, 1/2].
    trials : int
        Corrupted cues per pattern and level.
    rng : numpy.random.Generator
    options : SettleOptions

    Returns
    -------
    dict of str to ndarray, shape (n_levels,)
        ``corruption``, ``flipped_bits``, ``cues`` (per level), then
        ``<who>_bit_accuracy`` and ``<who>_exact_recall`` for ``who`` in
        network, cue, nearest; ``unsettled`` (cues whose free phase stopped
        before the steady state) and ``free_steps`` (steps of the level's
        batched free phase).
    """
    patterns = float_array("patterns", patterns, ndim=2)
    trials = positive_int("trials", trials)
    _check_rng(rng)
    n_units = patterns.shape[1]
    if isinstance(levels, (str, bytes)) or np.ndim(levels) != 1 or len(levels) == 0:
        raise ValidationError(f"levels must be a non-empty sequence of corruption fractions, got {levels!r}")
    flips_per_level = [flipped_bits(level, n_units) for level in levels]  # all checked before any recall
    rows = []
    for level, flips in zip(levels, flips_per_level):
        clean = np.repeat(patterns, trials, axis=0)
        cues = corrupt(clean, flips, rng)
        recalled, free = recall(network, cues, options)
        row = {"corruption": float(level), "flipped_bits": flips, "cues": len(cues)}
        for who, guess in (("network", recalled), ("cue", cues), ("nearest", nearest_pattern(cues, patterns))):
            for key, value in recall_scores(guess, clean).items():
                row[f"{who}_{key}"] = value
        # The residual test of the integrator, per cue: a cue whose state still moves is counted.
        row["unsettled"] = int(np.sum(free.integration.residual > free.integration.tolerance))
        row["free_steps"] = int(free.integration.n_steps)
        rows.append(row)
    return {key: np.asarray([row[key] for row in rows]) for key in rows[0]}
