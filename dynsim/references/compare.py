"""How close is a local update to the true gradient: per-block metrics and the GDU check.

Metrics are computed per parameter block (each weight block and each bias
vector, :meth:`HopfieldNetwork.parameter_blocks`) and for all parameters
together ('all'):

- cosine similarity between estimate and reference;
- relative error ||g - g_ref|| / ||g_ref||;
- sign agreement: the fraction of components where the signs agree, among
  components where the reference is not zero;
- normalized RMSE of Ernoult et al. (2019) between two sequences over steps
  t = 1..K, per component: sqrt(sum_t (n_t - d_t)^2 / max(sum_t n_t^2, sum_t d_t^2)),
  averaged over the components of a block whose sequences are not both zero.

The GDU check (gradient-descent updates, Ernoult et al. 2019): the EP update
accumulated over the first k steps of an Euler nudged phase started at the
free fixed point equals, as beta -> 0, the BPTT gradient truncated to the
last k steps of the free phase, for every k.

References
----------
.. [1] M. Ernoult, J. Grollier, D. Querlioz, Y. Bengio, B. Scellier, "Updates
       of Equilibrium Prop Match Gradients of Backprop Through Time in an RNN
       with Static Input", NeurIPS (2019), Sec. 4 (metrics).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynsim.references.gradients import bptt_gradients
from dynsim.relax.phases import SettleOptions, settle
from dynsim.validation import ValidationError, float_array, positive_int, real_scalar

__all__ = ["gradient_metrics", "alignment_angles", "normalized_rmse", "GDUResult", "gdu_check", "ep_step_updates"]


def _check_network(network):
    if not all(hasattr(network, name) for name in ("parameter_blocks", "n_params")):
        raise ValidationError(f"network must be a HopfieldNetwork or a PCNetwork (it defines the parameter "
                              f"blocks), got {type(network).__name__}")


def _blocks(network):
    blocks = dict(network.parameter_blocks())
    blocks["all"] = slice(0, network.n_params)
    return blocks


def gradient_metrics(network, estimate, reference):
    """Per-block agreement of a gradient estimate with a reference gradient.

    Parameters
    ----------
    network : HopfieldNetwork
        Defines the blocks.
    estimate, reference : ndarray, shape (n_params,)

    Returns
    -------
    dict
        ``{block: {'cosine', 'relative_error', 'sign_agreement', 'norm', 'reference_norm'}}``,
        with a block 'all'. Cosine and relative error are NaN where the
        reference block is zero.
    """
    _check_network(network)
    estimate = float_array("estimate", estimate, shape=(network.n_params,))
    reference = float_array("reference", reference, shape=(network.n_params,))
    out = {}
    for name, sl in _blocks(network).items():
        g, r = estimate[sl], reference[sl]
        ng, nr = np.linalg.norm(g), np.linalg.norm(r)
        nonzero = r != 0
        out[name] = {
            "cosine": float(g @ r / (ng * nr)) if ng > 0 and nr > 0 else float("nan"),
            "relative_error": float(np.linalg.norm(g - r) / nr) if nr > 0 else float("nan"),
            "sign_agreement": float(np.mean(np.sign(g[nonzero]) == np.sign(r[nonzero])))
            if nonzero.any() else float("nan"),
            "norm": float(ng),
            "reference_norm": float(nr),
        }
    return out


def alignment_angles(network, estimate, reference):
    """Angle in degrees between an update and the reference gradient, per block (and 'all').

    Lillicrap et al. (2016, Fig. 2) follow it during training: 90 degrees is
    an update unrelated to backprop's, 0 is backprop's direction; an update
    within 90 degrees of the gradient still descends the loss.

    Parameters
    ----------
    network : HopfieldNetwork or PCNetwork
        Defines the blocks.
    estimate, reference : ndarray, shape (n_params,)

    Returns
    -------
    dict of str to float
        ``{block: angle}``; NaN where either block is zero.
    """
    metrics = gradient_metrics(network, estimate, reference)
    return {name: float(np.degrees(np.arccos(np.clip(m["cosine"], -1.0, 1.0)))) for name, m in metrics.items()}


def normalized_rmse(network, estimate_steps, reference_steps, floor=1e-12):
    """Ernoult et al.'s normalized RMSE between two per-step sequences, per block.

    Parameters
    ----------
    estimate_steps, reference_steps : ndarray, shape (K, n_params)
    floor : float
        Components whose larger sum of squares is below ``floor`` times the
        block's largest one are left out (both sequences are zero there up to
        rounding, and 0/0 carries no information).

    Returns
    -------
    dict
        ``{block: mean RMSE over the block's components}`` with a block 'all'.
    """
    _check_network(network)
    n = float_array("estimate_steps", estimate_steps, shape=(None, network.n_params))
    d = float_array("reference_steps", reference_steps, shape=(n.shape[0], network.n_params))
    floor = real_scalar("floor", floor, 0.0, 1.0)
    denom = np.maximum((n ** 2).sum(0), (d ** 2).sum(0))
    num = ((n - d) ** 2).sum(0)
    out = {}
    for name, sl in _blocks(network).items():
        den = denom[sl]
        keep = den > floor * den.max() if den.size and den.max() > 0 else np.zeros(den.shape, bool)
        out[name] = float(np.mean(np.sqrt(num[sl][keep] / den[keep]))) if keep.any() else float("nan")
    return out


def ep_step_updates(network, x, target, beta, s_free, n_steps, dt, integrator="euler", box="auto"):
    """EP updates accumulated over the first k = 1..K Euler steps of the nudged phase.

    ``cumulative[k-1] = (dE/dtheta(s^beta_k) - dE/dtheta(s_free)) / beta``, the
    EP estimate after k nudged steps from the free fixed point.

    Returns
    -------
    cumulative : ndarray, shape (K, n_params)
    per_step : ndarray, shape (K, n_params)
    """
    beta = real_scalar("beta", beta, nonzero=True)
    K = positive_int("n_steps", n_steps)
    bounds = None
    if not (box is None or isinstance(box, str) and box == "auto"):
        try:
            lo, hi = box
            bounds = (real_scalar("box[0]", lo), real_scalar("box[1]", hi))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"box must be 'auto', None or a pair (low, high), got {box!r}") from None
    options = SettleOptions(integrator=integrator, dt=None if integrator == "fixed_point" else dt, max_steps=K,
                            stop_at_steady_state=False, record_every=1, max_abs=np.inf, bounds=bounds,
                            project=box is not None)
    nudged = settle(network, x, s0=s_free, target=target, beta=beta, options=options, phase="nudged")
    states = nudged.integration.trajectory.y  # (K + 1, batch, n_free)
    base = network.energy_grad_params(x, states[0])
    cumulative = np.stack([(network.energy_grad_params(x, states[k]) - base) / beta for k in range(1, K + 1)])
    per_step = np.diff(np.vstack([np.zeros((1, network.n_params)), cumulative]), axis=0)
    return cumulative, per_step


@dataclass
class GDUResult:
    """EP per-step updates against BPTT per-step gradients (Ernoult et al. 2019).

    Attributes
    ----------
    ep_cumulative, bptt_cumulative : ndarray, shape (K, n_params)
    ep_per_step, bptt_per_step : ndarray, shape (K, n_params)
    rmse : dict
        Normalized RMSE per block between the per-step sequences.
    sign_agreement : dict
        Per block, the fraction of components whose accumulated updates
        after K steps agree in sign.
    """

    ep_cumulative: np.ndarray
    bptt_cumulative: np.ndarray
    ep_per_step: np.ndarray
    bptt_per_step: np.ndarray
    rmse: dict
    sign_agreement: dict


def gdu_check(network, x, target, beta, n_free_steps, n_nudged_steps, dt, integrator="euler", s0=None):
    """Run the GDU comparison: T free Euler steps, then K nudged steps vs BPTT over the last K.

    Parameters
    ----------
    network : HopfieldNetwork
    x, target : ndarray
    beta : float
        Small nudging strength (the property holds as beta -> 0).
    n_free_steps : int
        T; the free phase must be converged by then for the property to hold.
    n_nudged_steps : int
        K <= T.
    dt : float
        Euler step of both phases (1 for ``'fixed_point'``).
    integrator : {'euler', 'projected_euler', 'fixed_point'}
        ``'fixed_point'`` (a ConvHopfieldNetwork's): the free phase's sweep
        is Euler with dt = 1; the nudged sweep sets the output to
        ``(rho'(s) h + beta y) / (1 + beta)``, Euler's nudge to first order
        in beta, so the property holds as beta -> 0.

    Returns
    -------
    GDUResult
    """
    # Checked here so that the messages name this function's arguments, not bptt_gradients'.
    beta = real_scalar("beta", beta, nonzero=True)
    T = positive_int("n_free_steps", n_free_steps)
    K = positive_int("n_nudged_steps", n_nudged_steps)
    if K > T:
        raise ValidationError(f"n_nudged_steps must be <= n_free_steps={T}, got {K}")
    if integrator not in ("euler", "projected_euler", "fixed_point"):
        raise ValidationError(f"integrator must be 'euler', 'projected_euler' or 'fixed_point' (the GDU property "
                              f"holds for Euler steps; the fixed-point sweep is the step of dt = 1), got "
                              f"{integrator!r}")
    bptt = bptt_gradients(network, x, target, T, K, dt, s0=s0, integrator=integrator)
    ep_cum, ep_step = ep_step_updates(network, x, target, beta, bptt.final_state, n_nudged_steps, dt,
                                      integrator=integrator)
    rmse = normalized_rmse(network, ep_step, bptt.per_step)
    final = gradient_metrics(network, ep_cum[-1], bptt.cumulative[-1])
    return GDUResult(ep_cumulative=ep_cum, bptt_cumulative=bptt.cumulative, ep_per_step=ep_step,
                     bptt_per_step=bptt.per_step, rmse=rmse,
                     sign_agreement={k: v["sign_agreement"] for k, v in final.items()})
