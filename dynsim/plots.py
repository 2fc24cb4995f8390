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

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dynsim.log import LogReader, read_log

__all__ = ["plot_settling", "plot_energy"]

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
