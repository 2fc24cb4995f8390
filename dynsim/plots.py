"""Figures of logged relaxations: unit activities and energies against time, saved as PNG.

The figures are built on :class:`matplotlib.figure.Figure` with the Agg
canvas and written to files; pyplot is never imported, so no window opens
and the global backend of the calling program is left alone.

The phases of a relaxation are drawn on one continuous time axis: each
phase after the first starts where the previous one ended (its ``t_final``),
as in Fig. 2 of Scellier & Bengio (2017) [1]_, with a dashed line at every
phase switch.

References
----------
.. [1] B. Scellier, Y. Bengio, "Equilibrium Propagation: Bridging the Gap
       between Energy-Based Models and Backpropagation", Front. Comput.
       Neurosci. 11:24 (2017).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter

from dynsim.log import LogReader, read_log

__all__ = ["plot_settling", "plot_energy", "plot_recall", "pattern_shape", "plot_training_curves",
           "plot_decision_regions", "plot_error_curves"]

DPI = 120
"""Resolution of the saved PNG files."""

_PHASE_COLORS = ("C0", "C3", "C2", "C4", "C1")
_ROUNDOFF = 64 * np.finfo(float).eps


def _reader(log):
    return log if isinstance(log, LogReader) else read_log(log)


def _relaxation_with_trajectory(reader, relaxation):
    rel = reader.relaxation(relaxation)
    if not rel.has_trajectory:
        raise ValueError(
            f"relaxation {rel.index} of {str(reader.path)!r} has no recorded trajectory (only final states); "
            "settle with SettleOptions(record_every=k) with k >= 1 to record one")
    return rel


def _phase_offsets(rel):
    """Start of each phase on the continuous time axis: the sum of the earlier phases' final times."""
    offsets, start = {}, 0.0
    for name, phase in rel.phases.items():
        offsets[name] = start
        t_end = phase.t_final
        if not np.isfinite(t_end) and phase.has_trajectory and len(phase.t):
            t_end = float(phase.t[-1])
        start += t_end if np.isfinite(t_end) else 0.0
    return offsets


def _phase_label(phase):
    if phase.beta:
        return f"{phase.name} (β={phase.beta:g})"
    return phase.name


def _mark_phases(ax, rel, offsets, label=True):
    """Dashed lines at the phase switches; phase names just above the axes (clear of the data)."""
    names = list(rel.phases)
    for k, name in enumerate(names):
        if k > 0:
            ax.axvline(offsets[name], color="0.35", ls="--", lw=1.0)
        if label:
            # x in data units, y in axes units: the label sits on top whatever the y scale.
            ax.text(offsets[name], 1.01, " " + _phase_label(rel.phases[name]), transform=ax.get_xaxis_transform(),
                    ha="left", va="bottom", fontsize=8, color="0.25")


def _status_line(rel):
    parts = []
    for phase in rel.phases.values():
        a = phase.attrs
        parts.append(f"{phase.name}: {a.get('status_name', '?')} after {a.get('n_steps', '?')} steps")
    return "; ".join(parts)


def _integrators(rel):
    names = []
    for phase in rel.phases.values():
        name = phase.attrs.get("integrator")
        if name and name not in names:
            names.append(name)
    return ", ".join(names) or "?"


def _title(rel, sample_text):
    label = f" “{rel.label}”" if rel.label else ""
    return (f"relaxation {rel.index}{label}, {sample_text} — integrator {_integrators(rel)}\n"
            f"{_status_line(rel)}")


def _save(fig, out):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=DPI, format="png")
    return out


def _unit_choice(n, max_units):
    """At most ``max_units`` unit indices spread evenly over a group of ``n`` units."""
    if n <= max_units:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_units).round().astype(int))


def plot_settling(log, out, relaxation=0, sample=None, max_units=12):
    """Unit activities against time, one row of axes per free group.

    Each unit keeps its colour through the phases; in a nudged phase the
    output group also shows the target it is pulled towards (dotted) when
    the log holds it.

    Parameters
    ----------
    log : str, os.PathLike or LogReader
    out : str or os.PathLike
        PNG file to write (parent folders are created).
    relaxation : int
        Index of the relaxation in the log.
    sample : int, optional
        Batch index of the sample to draw; it must be among the recorded
        samples. Default: the first recorded sample.
    max_units : int
        Units drawn per group at most (spread evenly over the group).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ValueError
        The relaxation has no recorded trajectory, or ``sample`` was not recorded.
    """
    reader = _reader(log)
    rel = _relaxation_with_trajectory(reader, relaxation)
    if int(max_units) < 1:
        raise ValueError(f"max_units must be >= 1, got {max_units!r}")
    sample = int(rel.samples[0]) if sample is None else int(sample)
    col = rel.column(sample)
    offsets = _phase_offsets(rel)
    recorded = [p for p in rel.phases.values() if p.has_trajectory]
    groups = list(recorded[0].states)
    output = reader.network["group_names"][-1] if reader.network else None

    fig = Figure(figsize=(8.0, 1.2 + 2.0 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False)[:, 0]
    for ax, group in zip(axes, groups):
        n_units = recorded[0].states[group].shape[-1]
        units = _unit_choice(n_units, int(max_units))
        colors = [f"C{k % 10}" for k in range(len(units))]
        for phase in recorded:
            t = phase.t + offsets[phase.name]
            y = phase.states[group][:, col, :]
            for unit, color in zip(units, colors):
                # One colour per unit across phases: a unit's line continues through the switch.
                ax.plot(t, y[:, unit], color=color, lw=1.2,
                        label=f"unit {unit}" if phase is recorded[0] else None)
            if group == output and phase.beta and rel.target is not None:
                # The target the nudged phase pulls the output towards (Scellier & Bengio 2017, Sec. 3).
                for unit, color in zip(units, colors):
                    ax.hlines(rel.target[sample, unit], t[0], t[-1], colors=color, linestyles=":", lw=1.0)
                ax.plot([], [], color="0.4", ls=":", lw=1.0, label="target")  # legend entry in neutral grey
        _mark_phases(ax, rel, offsets, label=ax is axes[0])
        shown = f"{len(units)} of {n_units} units" if len(units) < n_units else f"{n_units} units"
        ax.set_ylabel(f"{group}\n({shown})", fontsize=9)
        ax.grid(True, alpha=0.3)
        if len(units) <= 6:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, borderaxespad=0.0)
    axes[-1].set_xlabel("time t (phases joined: each starts at the previous phase's end)")
    fig.suptitle(_title(rel, f"sample {sample}"), fontsize=9)
    return _save(fig, out)


def _finite_positive(values):
    """Values with non-positive entries as NaN: log axes cannot show them (a projected residual can be 0)."""
    values = np.array(values, dtype=float)
    values[~(values > 0)] = np.nan
    return values


def plot_energy(log, out, relaxation=0, sample=None):
    """Energy, residual and distance to the settled energy against time.

    Three panels sharing one continuous time axis over the phases:

    1. the energy E(s(t)), and for a nudged phase with a logged cost also
       the total energy F = E + beta C it minimises (dashed) [1]_;
    2. the residual ||ds/dt|| (norm of the projected vector field) on a
       log scale, with the steady-state tolerance at the final state dotted;
    3. F(t) - F(t_end) of each phase on a log scale (F = E in the free
       phase): a straight line means linear convergence.

    Parameters
    ----------
    log : str, os.PathLike or LogReader
    out : str or os.PathLike
        PNG file to write (parent folders are created).
    relaxation : int
        Index of the relaxation in the log.
    sample : int, optional
        Batch index of one recorded sample; default every recorded sample
        (thin lines).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ValueError
        The relaxation has no recorded trajectory, or ``sample`` was not recorded.
    """
    reader = _reader(log)
    rel = _relaxation_with_trajectory(reader, relaxation)
    if sample is None:
        cols = np.arange(len(rel.samples))
        lw, alpha = (1.4, 1.0) if len(cols) == 1 else (0.8, 0.6)
        sample_text = (f"sample {int(rel.samples[0])}" if len(cols) == 1
                       else f"{len(cols)} samples")
    else:
        cols = np.array([rel.column(sample)])
        lw, alpha = 1.4, 1.0
        sample_text = f"sample {int(sample)}"
    offsets = _phase_offsets(rel)

    fig = Figure(figsize=(8.0, 8.0), layout="constrained")
    ax_e, ax_r, ax_d = fig.subplots(3, 1, sharex=True)
    for k, phase in enumerate(rel.phases.values()):
        if not phase.has_trajectory:
            continue
        color = _PHASE_COLORS[k % len(_PHASE_COLORS)]
        t = phase.t + offsets[phase.name]
        name = _phase_label(phase)
        for j, c in enumerate(cols):
            first = j == 0
            if phase.energy is not None:
                ax_e.plot(t, phase.energy[:, c], color=color, lw=lw, alpha=alpha,
                          label=f"E, {name}" if first else None)
            total = phase.energy
            if phase.beta and phase.cost is not None and phase.energy is not None:
                total = phase.energy + phase.beta * phase.cost
                ax_e.plot(t, total[:, c], color=color, lw=lw, alpha=alpha, ls="--",
                          label=f"F = E + βC, {name}" if first else None)
            if phase.residual is not None:
                ax_r.plot(t, _finite_positive(phase.residual[:, c]), color=color, lw=lw, alpha=alpha,
                          label=name if first else None)
            if total is not None:
                gap = total[:, c] - total[-1, c]
                # Below a few ulps of F the difference is round-off noise, not convergence.
                gap[gap <= _ROUNDOFF * max(1.0, abs(total[-1, c]))] = np.nan
                gap = _finite_positive(gap)
                ax_d.plot(t, gap, color=color, lw=lw, alpha=alpha,
                          label=(f"F - F(end), {name}" if phase.beta else f"E - E(end), {name}") if first else None)
        if phase.final_tolerance is not None and len(rel.samples):
            # The stop test of the integrator at the settled state (largest over the drawn samples).
            tol = float(np.max(phase.final_tolerance[rel.samples[cols]]))
            ax_r.hlines(tol, t[0], t[-1], colors=color, linestyles=":", lw=1.2,
                        label="tolerance at the end" if k == 0 else None)

    ax_e.set_ylabel("energy")
    ax_r.set_ylabel("residual ‖ds/dt‖")
    ax_r.set_yscale("log")
    ax_d.set_ylabel("distance to the\nsettled energy")
    ax_d.set_yscale("log")
    ax_d.set_xlabel("time t (phases joined: each starts at the previous phase's end)")
    for ax in (ax_e, ax_r, ax_d):
        _mark_phases(ax, rel, offsets, label=ax is ax_e)
        ax.grid(True, which="major", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    fig.suptitle(_title(rel, sample_text), fontsize=9)
    return _save(fig, out)


def pattern_shape(n_units):
    """Image shape (rows, columns) a pattern of ``n_units`` bits is drawn in, row by row.

    The most nearly square factorisation ``rows * columns = n_units``
    (16 -> 4 x 4, 20 -> 4 x 5); when that is longer than 3 : 1 (a prime,
    say), a ``ceil(sqrt(n))`` wide grid whose last cells stay empty.
    """
    n_units = int(n_units)
    rows = max(d for d in range(1, int(np.sqrt(n_units)) + 1) if n_units % d == 0)
    if n_units // rows <= 3 * rows:
        return rows, n_units // rows
    cols = int(np.ceil(np.sqrt(n_units)))
    return int(np.ceil(n_units / cols)), cols


def _draw_pattern(ax, values, shape, wrong=None):
    """One pattern as an image (1 black, 0 white, graded states grey), wrong bits outlined in red.

    Cells of the grid beyond the pattern (``shape`` holds more) are left empty, in light blue.
    """
    grid = np.full(shape[0] * shape[1], np.nan)
    grid[:len(values)] = values
    cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="#dde8f0")
    ax.imshow(grid.reshape(shape), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    if wrong is not None:
        for k in np.flatnonzero(np.ravel(wrong)):
            i, j = divmod(int(k), shape[1])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1.0, 1.0, fill=False, ec="red", lw=2.0))
    ax.set_xticks([])
    ax.set_yticks([])


def plot_recall(log, out, relaxation=0, phase="free", image_shape=None, max_samples=8):
    """Associative recall of a logged relaxation: stored pattern, cue, recalled memory and its settling.

    One row per sample of the relaxation (the recorded samples when a
    trajectory was recorded, else the first ``max_samples``): the target
    (the stored pattern), the clamped input (the corrupted cue), the final
    state of the output group (the recalled memory, graded states in grey)
    and, when recorded, the output units against time as an image (units
    down, time across). Bits that read wrong against the stored pattern
    (state above 1/2 taken as 1) are outlined in red.

    Parameters
    ----------
    log : str, os.PathLike or LogReader
    out : str or os.PathLike
        PNG file to write (parent folders are created).
    relaxation : int
        Index of the relaxation in the log; it must hold ``x`` and
        ``target`` of the same width (cue and pattern).
    phase : str
        Phase whose final state is the recall (the free phase by default).
    image_shape : (int, int), optional
        Shape a pattern is drawn in; default :func:`pattern_shape`.
    max_samples : int
        Rows drawn at most.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ValueError
        The relaxation has no input or target, or they differ in width.
    """
    reader = _reader(log)
    rel = reader.relaxation(relaxation)
    rec = rel[phase]
    if rel.x is None or rel.target is None:
        raise ValueError(f"relaxation {rel.index} of {str(reader.path)!r} has no logged input and target: "
                         "record_relaxation(..., x=cues, target=patterns) to draw a recall")
    n = rel.target.shape[1]
    if rel.x.shape[1] != n:
        raise ValueError(f"recall needs cues and patterns of one width, got x of {rel.x.shape[1]} and "
                         f"target of {n} units")
    if int(max_samples) < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples!r}")
    shape = pattern_shape(n) if image_shape is None else tuple(int(v) for v in image_shape)
    if len(shape) != 2 or min(shape) < 1 or shape[0] * shape[1] < n:
        raise ValueError(f"image_shape {shape} does not hold the {n} units of a pattern")
    recalled = rec.final_state[:, -n:]
    output = reader.network["group_names"][-1] if reader.network else None
    traced = rec.has_trajectory and output in rec.states
    samples = rel.samples if traced else np.arange(rel.x.shape[0])
    samples = samples[:int(max_samples)]

    n_cols = 4 if traced else 3
    # An image column as wide as the pattern is long; the settling column a fixed width.
    wide = shape[1] / shape[0]
    widths = [wide] * 3 + [3.2] * (n_cols - 3)
    row_height = 1.45 / max(1.0, wide / 1.6)
    fig = Figure(figsize=(1.25 * sum(widths) + 1.5, 1.0 + row_height * len(samples)), layout="constrained")
    axes = fig.subplots(len(samples), n_cols, squeeze=False, width_ratios=widths)
    titles = ["stored pattern", "cue (clamped input)", f"recalled ({output or 'output'})",
              f"{output or 'output'} units while settling"]
    for row, sample in enumerate(samples):
        clean = rel.target[sample] > 0.5
        cue_wrong = (rel.x[sample] > 0.5) != clean
        rec_wrong = (recalled[sample] > 0.5) != clean
        ax_p, ax_c, ax_r = axes[row, :3]
        _draw_pattern(ax_p, rel.target[sample], shape)
        _draw_pattern(ax_c, rel.x[sample], shape, cue_wrong)
        _draw_pattern(ax_r, recalled[sample], shape, rec_wrong)
        ax_p.set_ylabel(f"sample {int(sample)}", fontsize=9)
        ax_c.set_xlabel(f"{int(cue_wrong.sum())} of {n} bits wrong", fontsize=8)
        ax_r.set_xlabel(f"{int(rec_wrong.sum())} of {n} bits wrong", fontsize=8,
                        color="red" if rec_wrong.any() else "black")
        if traced:
            ax_t = axes[row, 3]
            y = rec.states[output][:, rel.column(sample), :]
            t = np.asarray(rec.t, dtype=float)
            # Each recorded state fills the time up to the midpoints with its neighbours: right for
            # the unequal steps of an adaptive integrator too.
            edges = np.concatenate(([t[0]], (t[1:] + t[:-1]) / 2, [t[-1]])) if len(t) > 1 else t[0] + np.arange(2)
            mesh = ax_t.pcolormesh(edges, np.arange(n + 1) - 0.5, y.T, cmap="gray_r", vmin=0.0, vmax=1.0)
            ax_t.set_ylim(n - 0.5, -0.5)
            # Recall happens within a few time constants (the leak's is 1), the stop test may take
            # tens more: linear up to t = 1, logarithmic after, so both show.
            ax_t.set_xscale("symlog", linthresh=1.0, linscale=0.5)
            ax_t.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            # Units that end on the wrong side of 1/2: a red box at the right edge, x in axes units
            # (inside the axes: markers drawn outside them collapse the constrained layout).
            for unit in np.flatnonzero(rec_wrong):
                ax_t.add_patch(Rectangle((0.975, unit - 0.5), 0.025, 1.0, fc="red", ec="none",
                                         transform=ax_t.get_yaxis_transform()))
            ax_t.set_yticks([0, n - 1])
            ax_t.tick_params(labelsize=7)
            ax_t.set_ylabel("unit", fontsize=8)
            if row == len(samples) - 1:
                ax_t.set_xlabel("time t (linear up to 1, logarithmic after)", fontsize=8)
        if row == 0:
            for ax, title in zip(axes[0], titles):
                ax.set_title(title, fontsize=9)
    if traced:
        fig.colorbar(mesh, ax=axes[:, 3], shrink=0.5, aspect=30, label="state")
    status = rec.attrs.get("status_name", "?")
    label = f" “{rel.label}”" if rel.label else ""
    fig.suptitle(f"relaxation {rel.index}{label}: {phase} phase {status} after {rec.attrs.get('n_steps', '?')} "
                 f"steps ({rec.attrs.get('integrator', '?')})\nblack = 1, white = 0, grey = graded state; "
                 "red: bit on the wrong side of 1/2" + ("; light blue: no unit" if shape[0] * shape[1] > n else ""),
                 fontsize=9)
    return _save(fig, out)


# --------------------------------------------------------------------------- training
_CURVE_STYLES = ("-", "--", "-.", ":")
LOSS_FLOOR = 1e-12
"""Losses below this are drawn on the linear part of the training-curve loss axis."""


def _curve_columns(history):
    """``(epoch, loss, accuracy)`` arrays of a History, a dict of columns or a logged table."""
    if hasattr(history, "as_arrays"):
        history = history.as_arrays()
    try:
        return tuple(np.asarray(history[key], dtype=float) for key in ("epoch", "loss", "accuracy"))
    except (KeyError, TypeError):
        raise ValueError("each history must be a dynsim.training.History or a mapping with "
                         "'epoch', 'loss' and 'accuracy' columns") from None


def plot_training_curves(histories, out, title=None):
    """Loss and accuracy against epoch, one line per run (e.g. per learning rule).

    Parameters
    ----------
    histories : mapping of str to History or mapping
        Run label -> :class:`dynsim.training.History`, or any mapping with
        ``epoch``, ``loss`` and ``accuracy`` columns (such as a table read
        back with :meth:`dynsim.log.LogReader.table`).
    out : str or os.PathLike
        PNG file to write (parent folders are created).
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        ``out``.

    Notes
    -----
    The loss is drawn on a log scale: a rule that fits the targets drives
    the mean cost towards zero by orders of magnitude, which a linear axis
    flattens into the floor. The hard sigmoid reaches its targets exactly,
    so when a loss is exactly zero the scale turns linear (symlog) below
    the power of ten under the smallest positive loss (and below
    :data:`LOSS_FLOOR` in any case): the zeros sit on the bottom line
    instead of vanishing from the figure. Lines that coincide (several
    rules at 100 % accuracy) stay distinguishable by their dash pattern.
    """
    if not histories:
        raise ValueError("histories must hold at least one run")
    fig = Figure(figsize=(9.0, 6.0), layout="constrained")
    ax_loss, ax_acc = fig.subplots(2, 1, sharex=True)
    for k, (label, history) in enumerate(histories.items()):
        epoch, loss, accuracy = _curve_columns(history)
        # Later lines thinner, each with its own dashes: a line drawn over an equal one leaves the
        # earlier one showing at its edges and in its gaps.
        style = {"color": f"C{k % 10}", "ls": _CURVE_STYLES[k % len(_CURVE_STYLES)], "lw": max(2.4 - 0.25 * k, 1.0)}
        ax_loss.plot(epoch, loss, label=str(label), **style)
        ax_acc.plot(epoch, accuracy, **style)
    losses = np.concatenate([_curve_columns(h)[1] for h in histories.values()])
    positive = losses[losses > 0]
    if np.any(losses == 0) or not positive.size:
        # A power of ten, so that the linear part ends on a labelled tick one decade's height above 0.
        linthresh = 10.0 ** np.floor(np.log10(max(positive.min(initial=1.0), LOSS_FLOOR)))
        ax_loss.set_yscale("symlog", linthresh=linthresh, linscale=1.0)
        ax_loss.set_ylim(bottom=0.0)
    else:
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss (mean cost at\nthe free equilibrium)")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(-0.03, 1.03)
    ax_acc.set_xlabel("epoch (0: before training)")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, which="major", alpha=0.3)
    ax_loss.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def plot_decision_regions(predictors, x, labels, out, resolution=100, margin=0.05, title=None, chunk=1000):
    """Decision regions of two-input classifiers, one panel per classifier, with the data on top.

    Parameters
    ----------
    predictors : mapping of str to callable
        Panel title -> function mapping inputs, shape (m, 2), to output
        scores, shape (m, n_classes) (e.g. the output units of a settled
        free phase); the predicted class is the argmax.
    x : ndarray, shape (n, 2)
        Data points drawn on every panel; they also set the plotted range.
    labels : ndarray of int, shape (n,)
        Their classes.
    out : str or os.PathLike
        PNG file to write (parent folders are created).
    resolution : int
        Grid points per axis at which each predictor is evaluated.
    margin : float
        Border around the data, as a fraction of its range.
    title : str, optional
        Figure title.
    chunk : int
        Grid points handed to a predictor at a time. A relaxation of a
        batch runs until its slowest sample has settled, so moderate
        batches keep the work near the sum of what each point needs.

    Returns
    -------
    pathlib.Path
        ``out``.

    Notes
    -----
    With two classes the colour shows the margin ``score_1 - score_0``, so
    a network that is right but unsure looks different from a confident
    one; the black line is the decision boundary. White areas are ties
    (e.g. both output units pinned at the same bound), where argmax
    answers class 0. With more classes each region takes its class colour. Each
    panel's title carries the accuracy of the predictor on ``x``.
    """
    x = np.asarray(x, dtype=float)
    labels = np.asarray(labels)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (n, 2): decision regions are drawn for two inputs, got {x.shape}")
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {labels.shape}")
    if not predictors:
        raise ValueError("predictors must hold at least one classifier")
    resolution, chunk = int(resolution), int(chunk)
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    lo, hi = x.min(0), x.max(0)
    pad = margin * np.where(hi > lo, hi - lo, 1.0)
    g0 = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    g1 = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    mesh = np.stack(np.meshgrid(g0, g1), axis=-1).reshape(-1, 2)

    n = len(predictors)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.6 * cols + 0.8, 3.5 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    grids = {name: np.concatenate([np.asarray(predict(mesh[start:start + chunk]), dtype=float)
                                   for start in range(0, len(mesh), chunk)])
             for name, predict in predictors.items()}
    # One colour scale for every panel: [-1, 1] for outputs in [0, 1], wider for e.g. tanh outputs.
    vlim = max([1.0] + [np.abs(g[:, 1] - g[:, 0]).max() for g in grids.values() if g.shape[1] == 2])
    image = None
    for ax, (name, predict) in zip(axes.ravel(), predictors.items()):
        scores = grids[name]
        accuracy = np.mean(np.asarray(predict(x)).argmax(1) == labels)
        if scores.shape[1] == 2:
            value = (scores[:, 1] - scores[:, 0]).reshape(resolution, resolution)
            image = ax.pcolormesh(g0, g1, value, cmap="RdBu_r", vmin=-vlim, vmax=vlim, shading="auto")
            if value.min() < 0 < value.max():
                ax.contour(g0, g1, value, levels=[0.0], colors="k", linewidths=1.2)
        else:
            value = scores.argmax(1).reshape(resolution, resolution)
            ax.pcolormesh(g0, g1, value, cmap="tab10", vmin=0, vmax=9, alpha=0.35, shading="auto")
        for c in np.unique(labels):
            hit = labels == c
            # Class colours match the shading: class 0 blue (negative margin), class 1 red.
            ax.scatter(x[hit, 0], x[hit, 1], s=12, c="C0" if c == 0 else ("C3" if c == 1 else f"C{c % 10}"),
                       edgecolors="k", linewidths=0.4, label=f"class {c}")
        ax.set_title(f"{name}: accuracy {accuracy:.1%}", fontsize=9)
        ax.set_aspect("equal")
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel("input 1")
    for ax in axes[:, 0]:
        ax.set_ylabel("input 2")
    axes[0, 0].legend(loc="lower left", fontsize=7, framealpha=0.8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="output 1 − output 0")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def plot_error_curves(columns, out, title=None, reference=None):
    """Training, validation and test error against epoch, from a per-epoch metrics table.

    Parameters
    ----------
    columns : mapping of str to array
        ``epoch`` and any ``<split>_error`` columns, e.g. the ``epochs``
        table of a dataset run (:func:`dynsim.fitting.metric_columns`).
    out : str or os.PathLike
        PNG file to write.
    title : str, optional
    reference : tuple of (float, str), optional
        A published test error (fraction) and its source, drawn as a
        horizontal line so the run can be read against the paper.

    Returns
    -------
    pathlib.Path
    """
    epoch = np.asarray(columns["epoch"], dtype=float)
    splits = [k[:-len("_error")] for k in columns if k.endswith("_error")]
    if not splits:
        raise ValueError("columns hold no '<split>_error' column")
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = fig.subplots()
    for k, split in enumerate(splits):
        err = 100.0 * np.asarray(columns[f"{split}_error"], dtype=float)
        ax.plot(epoch, err, marker="o", ms=3, color=f"C{k}", label=split)
        if err.size:
            ax.annotate(f"{err[-1]:.2f} %", (epoch[-1], err[-1]), textcoords="offset points", xytext=(4, 0),
                        color=f"C{k}", fontsize=8, va="center")
    if reference is not None:
        ax.axhline(100.0 * reference[0], color="k", ls=":", lw=1, label=reference[1])
    # Symlog: training error reaches exactly 0 %, which a log axis would drop.
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(bottom=0.0)  # errors are never negative: no mirrored half-axis
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, out)
