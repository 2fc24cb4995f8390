"""Figures of gradient comparisons: metrics against iteration counts, and GDU curves.

Files only (the Agg canvas, never a window), like :mod:`dynsim.plots.relaxation`.

References
----------
.. [1] M. Ernoult et al., "Updates of Equilibrium Prop Match Gradients of
       Backprop Through Time in an RNN with Static Input", NeurIPS (2019), Fig. 2
       (EP updates dashed, BPTT gradients solid).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from dynsim.experiments.estimator_sweep import GRID_KEYS
from dynsim.plots._figure import save_figure
from dynsim.validation import ValidationError

__all__ = ["plot_sweep", "plot_gdu", "plot_gdu_table", "plot_error_settling", "plot_prediction_budget"]

_METRIC_LABELS = {"cosine": "cosine with backprop", "relative_error": "relative error",
                  "sign_agreement": "sign agreement", "normalized_rmse": "normalized RMSE"}


def plot_sweep(table, out, x="free_steps", metric="cosine", blocks=None, title=None, keys=GRID_KEYS,
               reference="recurrent backprop"):
    """One panel per parameter block: ``metric`` against ``x``, one line per other setting.

    Parameters
    ----------
    table : dict
        A table from :func:`dynsim.experiments.estimator_sweep.sweep_ep_estimates` (or read
        back with ``LogReader.table``).
    out : path
        PNG to write.
    x : str
        The swept key on the horizontal axis (log scale for counts and tolerances).
    metric : {'cosine', 'relative_error', 'sign_agreement', 'normalized_rmse'}
    blocks : list of str, optional
        Blocks to draw (default: all, 'all' included).
    keys : sequence of str
        The table's setting columns (default: those of the EP sweep; pass
        :data:`dynsim.experiments.estimator_sweep.PC_GRID_KEYS` for predictive coding); lines are
        drawn per combination of the ones that vary.
    reference : str
        What the estimates were compared with, for the axis labels and the
        title (default 'recurrent backprop'; 'backprop' for predictive coding).
    """
    if metric not in _METRIC_LABELS:
        raise ValidationError(f"metric must be one of {list(_METRIC_LABELS)}, got {metric!r}")
    if x not in keys:
        raise ValidationError(f"x must be one of {list(keys)}, got {x!r}")
    names = [str(b) for b in table["blocks"]]
    blocks = names if blocks is None else list(blocks)
    values = np.asarray(table[metric])
    xs = np.asarray(table[x])
    others = [k for k in keys if k != x and len(set(map(str, table[k]))) > 1]
    series = {}
    for i in range(len(xs)):
        key = tuple((k, str(table[k][i])) for k in others)
        series.setdefault(key, []).append(i)

    n = len(blocks)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    # Colour by the first varying setting, line style by the second, so overlapping lines stay visible.
    first = sorted({dict(key).get(others[0]) for key in series}) if others else [None]
    second = sorted({dict(key).get(others[1]) for key in series}) if len(others) > 1 else [None]
    styles = ["-", "--", ":", "-."]
    line_style = {}
    for key in series:
        d = dict(key)
        color = f"C{first.index(d.get(others[0])) % 10}" if others else "C0"
        style = styles[second.index(d.get(others[1])) % 4] if len(others) > 1 else "-"
        line_style[key] = (color, style)
    for ax, block in zip(axes, blocks):
        j = names.index(block)
        for key, idx in series.items():
            idx = np.asarray(idx)[np.argsort(xs[idx])]
            label = ", ".join(f"{k}={v}" for k, v in key) or metric
            color, style = line_style[key]
            ax.plot(xs[idx], values[idx, j], style, color=color, marker="o", ms=3, label=label)
            if "status" in table:  # points whose relaxation diverged have no value: mark where they are
                bad = [i for i in idx if str(table["status"][i]) == "diverged"]
                if bad:
                    ax.plot(xs[bad], np.full(len(bad), np.nanmax(values[:, j]) if np.isfinite(values[:, j]).any()
                                            else 1.0), "x", color=color, ms=8, mew=2,
                            label=f"{label}: diverged")
        ax.set_title(block, fontsize=10)
        ax.set_xlabel(x.replace("_", " "))
        if np.issubdtype(xs.dtype, np.number) and np.nanmin(xs) > 0 and np.nanmax(xs) / np.nanmin(xs) >= 8:
            ax.set_xscale("log")
            # Label the swept values themselves: over less than two decades matplotlib labels every minor tick
            # too (2x10^0, 3x10^0, ...) and the labels run into each other.
            ax.set_xticks(np.unique(xs[np.isfinite(xs)]))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        if metric in ("relative_error", "normalized_rmse"):
            ax.set_yscale("log")
        ax.set_ylabel(_metric_label(metric, reference))
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    if len(series) > 1:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8)
    fig.suptitle(title or f"EP estimate against {reference}: {_metric_label(metric, reference)}", fontsize=11)
    return save_figure(fig, out)


def _metric_label(metric, reference):
    # The default keeps the labels the figures have always had.
    return f"cosine with {reference}" if metric == "cosine" and reference != "recurrent backprop" \
        else _METRIC_LABELS[metric]


def plot_prediction_budget(table, out, title=None):
    """How the free phase's predictions depend on its length: agreement with a long phase and the error.

    Parameters
    ----------
    table : dict
        Columns ``free_steps`` (m,), ``agreement`` (m,): the fraction of
        images whose predicted class equals that of the long free phase, and
        ``error`` (m,): the classification error at that length; attribute-like
        entries ``long_steps`` and ``long_error`` (scalars) for the long phase.
    out : path
        PNG to write.
    """
    for key in ("free_steps", "agreement", "error", "long_steps", "long_error"):
        if key not in table:
            raise ValidationError(f"table has no {key!r} column (got {sorted(table)})")
    steps = np.asarray(table["free_steps"])
    order = np.argsort(steps)
    fig = Figure(figsize=(8.4, 3.2), layout="constrained")
    ax_agree, ax_err = fig.subplots(1, 2)
    ax_agree.plot(steps[order], 100 * np.asarray(table["agreement"])[order], "o-", ms=3, label="same class")
    ax_agree.set_ylabel(f"same class as after {table['long_steps']} steps (%)")
    ax_err.plot(steps[order], 100 * np.asarray(table["error"])[order], "o-", ms=3, label="free phase of this length")
    ax_err.axhline(100 * float(table["long_error"]), color="C1", ls="--", label=f"after {table['long_steps']} steps")
    ax_err.set_ylabel("classification error (%)")
    ax_err.legend(fontsize=8)
    for ax in (ax_agree, ax_err):
        ax.set_xlabel("free steps")
        ax.grid(alpha=0.3)
    fig.suptitle(title or "predictions against the length of the free phase", fontsize=11)
    return save_figure(fig, out)


def plot_gdu(gdu, network, out, components=3, seed=0, cumulative=False, title=None):
    """GDU curves: EP updates (dashed) and BPTT gradients (solid) against the step k, per block.

    Parameters
    ----------
    gdu : dynsim.references.compare.GDUResult
    network : HopfieldNetwork
        Defines the blocks.
    out : path
    components : int
        Randomly chosen components drawn per block (among those with the
        largest BPTT signal, so that the curves are not all flat).
    cumulative : bool
        Plot the accumulated updates instead of the per-step ones.
    """
    ep = gdu.ep_cumulative if cumulative else gdu.ep_per_step
    bp = gdu.bptt_cumulative if cumulative else gdu.bptt_per_step
    blocks = network.parameter_blocks()
    rng = np.random.default_rng(seed)
    k = np.arange(1, ep.shape[0] + 1)
    n = len(blocks)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (name, sl) in zip(axes, blocks.items()):
        strength = np.abs(bp[:, sl]).sum(0)
        candidates = np.argsort(strength)[::-1][:max(components * 4, components)]
        chosen = rng.choice(candidates, size=min(components, candidates.size), replace=False)
        for c, comp in enumerate(chosen):
            color = f"C{c}"
            # BPTT as a wide translucent band, EP as thin dashes on top: both stay visible when they agree.
            ax.plot(k, bp[:, sl][:, comp], "-", color=color, lw=4, alpha=0.35)
            ax.plot(k, ep[:, sl][:, comp], "--", color=color, lw=1.2)
        rmse = gdu.rmse.get(name, float("nan"))
        ax.set_title(f"{name}  (RMSE {rmse:.3g})", fontsize=10)
        ax.set_xlabel("step k (nudged phase / backwards in time)")
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].plot([], [], "k-", lw=4, alpha=0.35, label="BPTT")
    axes[0].plot([], [], "k--", lw=1.2, label="EP")
    axes[0].legend(fontsize=8)
    kind = "accumulated" if cumulative else "per-step"
    fig.suptitle(title or f"GDU: {kind} EP updates (dashed) and BPTT gradients (solid)", fontsize=11)
    return save_figure(fig, out)


def plot_error_settling(norms, out, title=None):
    """Norm of each layer's prediction error against time (log scale), one panel per layer.

    Parameters
    ----------
    norms : dict
        From :func:`dynsim.experiments.estimator_sweep.error_norms` (or its logged table): ``t``
        and ``eps_<layer>`` of shape (m, n_recorded).
    """
    layers = [k for k in norms if k.startswith("eps_")]
    if not layers:
        raise ValidationError("norms holds no eps_<layer> columns")
    t = np.asarray(norms["t"])
    fig = Figure(figsize=(4.0 * len(layers), 3.2), layout="constrained")
    axes = fig.subplots(1, len(layers), squeeze=False).ravel()
    for ax, key in zip(axes, layers):
        values = np.asarray(norms[key])
        for r in range(values.shape[1]):
            positive = values[:, r] > 0
            ax.plot(t[positive], values[positive, r], lw=1, color=f"C{r % 10}")
        ax.set_yscale("log")
        ax.set_title(key[4:], fontsize=10)
        ax.set_xlabel("inference time t")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("||prediction error||")
    fig.suptitle(title or "settling of the prediction errors (one line per sample)", fontsize=11)
    return save_figure(fig, out)


def plot_gdu_table(table, out, components=6, title=None):
    """GDU curves from a logged ``gdu`` table (no network needed): the components with the most BPTT signal.

    Parameters
    ----------
    table : dict
        ``k`` (K,), ``ep_per_step`` and ``bptt_per_step`` (K, n_params), as
        written by the gradient scenario; its attrs may hold ``rmse_all``.
    """
    k = np.asarray(table["k"])
    ep = np.asarray(table["ep_per_step"])
    bp = np.asarray(table["bptt_per_step"])
    chosen = np.argsort(np.abs(bp).sum(0))[::-1][:components]
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for c, comp in enumerate(chosen):
        ax.plot(k, bp[:, comp], "-", color=f"C{c}", lw=4, alpha=0.35)
        ax.plot(k, ep[:, comp], "--", color=f"C{c}", lw=1.2)
    ax.plot([], [], "k-", lw=4, alpha=0.35, label="BPTT")
    ax.plot([], [], "k--", lw=1.2, label="EP")
    ax.legend(fontsize=8)
    ax.set_xlabel("step k")
    ax.set_ylabel("per-step update")
    ax.grid(alpha=0.3)
    rmse = table.get("__attrs__", {}).get("rmse_all")
    suffix = f" (normalized RMSE {rmse:.3g})" if rmse is not None else ""
    fig.suptitle(title or f"GDU: EP updates (dashed) and BPTT gradients (solid){suffix}", fontsize=11)
    return save_figure(fig, out)
