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

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter

from dynsim.io.log import LogReader, read_log
from dynsim.plots._figure import save_figure

__all__ = ["plot_settling", "plot_energy", "plot_recall", "pattern_shape", "plot_feature_maps"]

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
    return save_figure(fig, out)


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
    return save_figure(fig, out)


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
    return save_figure(fig, out)


def plot_feature_maps(log, out, group, relaxation=0, phase="free", sample=None, channels=None, times=None):
    """Image grid of a convolutional group's feature maps while it settles: rows are times, columns channels.

    Parameters
    ----------
    log : str, os.PathLike or LogReader
    out : str or os.PathLike
        PNG file to write.
    group : str
        A free group recorded as feature maps (:meth:`dynsim.io.log.PhaseRecord.maps`).
    relaxation : int
        Index of the relaxation in the log.
    phase : str
        The phase whose trajectory is drawn.
    sample : int, optional
        Batch index of the sample (default: the first recorded one).
    channels : sequence of int, optional
        Channels to draw (default: up to 8, spread over the group's).
    times : sequence of int, optional
        Indices into the recorded points (default: up to 6, from the first
        to the last, both included).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ValueError
        No trajectory, a group that is not a feature map, or a channel,
        time index or sample outside what was recorded (the message gives
        the valid range).

    Notes
    -----
    All panels share one colour scale, the range of the drawn values, so
    that a map's brightness can be compared across channels and times.
    """
    reader = _reader(log)
    rel = _relaxation_with_trajectory(reader, relaxation)
    record = rel[phase]
    if not record.has_trajectory:
        raise ValueError(f"phase {phase!r} of relaxation {rel.index} recorded no trajectory")
    maps = record.maps(group)  # (m, r, C, H, W)
    m, _, n_channels = maps.shape[:3]
    sample = int(rel.samples[0]) if sample is None else int(sample)
    col = rel.column(sample)
    channels = _unit_choice(n_channels, 8).tolist() if channels is None else [int(c) for c in channels]
    times = (sorted(set(np.linspace(0, m - 1, min(m, 6)).round().astype(int).tolist())) if times is None
             else [int(k) for k in times])
    for name, values, n in (("channels", channels, n_channels), ("times", times, m)):
        if not values or any(not 0 <= v < n for v in values):
            raise ValueError(f"{name} must be indices in [0, {n - 1}], got {values}")
    shown = maps[np.ix_(times, [col], channels)][:, 0]  # (len(times), len(channels), H, W)
    lo, hi = float(np.min(shown)), float(np.max(shown))
    if not hi > lo:
        hi = lo + 1.0
    fig = Figure(figsize=(1.3 * len(channels) + 1.2, 1.3 * len(times) + 0.8), layout="constrained")
    axes = fig.subplots(len(times), len(channels), squeeze=False)
    for i, k in enumerate(times):
        for j, c in enumerate(channels):
            ax = axes[i, j]
            image = ax.imshow(shown[i, j], cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"channel {c}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"t = {record.t[k]:g}", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label=group)
    fig.suptitle(f"{_title(rel, f'sample {sample}')}\n{group} in phase {phase!r}", fontsize=9)
    return save_figure(fig, out)
