"""Figures of training runs: loss and accuracy against epoch, error curves of dataset runs, decision regions.

Built on :class:`matplotlib.figure.Figure` with the Agg canvas; pyplot is
never imported.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from dynsim.plots._figure import save_figure

__all__ = ["plot_training_curves", "plot_decision_regions", "plot_error_curves"]

_CURVE_STYLES = ("-", "--", "-.", ":")
_SPLIT_STYLES = {"test": "-", "validation": "--", "train": ":"}
"""Line styles of the splits when several runs share a figure (colours tell the runs apart)."""
LOSS_FLOOR = 1e-12
"""Losses below this are drawn on the linear part of the training-curve loss axis."""


def _curve_columns(history):
    """``(epoch, loss, accuracy)`` arrays of a History, a dict of columns or a logged table."""
    if hasattr(history, "as_arrays"):
        history = history.as_arrays()
    try:
        return tuple(np.asarray(history[key], dtype=float) for key in ("epoch", "loss", "accuracy"))
    except (KeyError, TypeError):
        raise ValueError("each history must be a dynsim.training.loop.History or a mapping with "
                         "'epoch', 'loss' and 'accuracy' columns") from None


def plot_training_curves(histories, out, title=None):
    """Loss and accuracy against epoch, one line per run (e.g. per learning rule).

    Parameters
    ----------
    histories : mapping of str to History or mapping
        Run label -> :class:`dynsim.training.loop.History`, or any mapping with
        ``epoch``, ``loss`` and ``accuracy`` columns (such as a table read
        back with :meth:`dynsim.io.log.LogReader.table`).
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
    return save_figure(fig, out)


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
    return save_figure(fig, out)


def plot_error_curves(columns, out, title=None, reference=None):
    """Training, validation and test error against epoch, from the per-epoch metrics table of one run or of several.

    Parameters
    ----------
    columns : mapping of str to array, or mapping of str to such mappings
        ``epoch`` and any ``<split>_error`` columns, e.g. the ``epochs``
        table of a dataset run (:func:`dynsim.training.loop.metric_columns`);
        or, for runs side by side (the ``epochs_<rule>`` tables of a
        scenario that trains several rules), such tables by run name: a
        colour per run, a line style per split.
    out : str or os.PathLike
        PNG file to write.
    title : str, optional
    reference : tuple of (float, str), optional
        A published test error (fraction) and its source, drawn as a
        horizontal line so the run can be read against the paper.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        No table, or a table without an ``epoch`` or any ``<split>_error`` column.
    """
    runs = {None: columns} if "epoch" in columns else dict(columns)
    if not runs:
        raise ValueError("columns is empty: give a table, or tables by run name")
    for name, table in runs.items():
        if "epoch" not in table or not any(k.endswith("_error") for k in table):
            which = "columns" if name is None else f"the table of {name!r}"
            raise ValueError(f"{which} must hold 'epoch' and '<split>_error' columns, got {sorted(table)}")
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = fig.subplots()
    for k, (name, table) in enumerate(runs.items()):
        epoch = np.asarray(table["epoch"], dtype=float)
        splits = [key[:-len("_error")] for key in table if key.endswith("_error")]
        for j, split in enumerate(splits):
            err = 100.0 * np.asarray(table[f"{split}_error"], dtype=float)
            colour = f"C{(j if name is None else k) % 10}"
            style = "-" if name is None else _SPLIT_STYLES.get(split, _CURVE_STYLES[j % len(_CURVE_STYLES)])
            ax.plot(epoch, err, marker="o", ms=3, color=colour, ls=style,
                    label=split if name is None else f"{name} {split}")
            # One run: every split's last value; several: the test error's only, to keep the figure readable.
            if err.size and (name is None or split == "test"):
                ax.annotate(f"{err[-1]:.2f} %", (epoch[-1], err[-1]), textcoords="offset points", xytext=(4, 0),
                            color=colour, fontsize=8, va="center")
    if reference is not None:
        ax.axhline(100.0 * reference[0], color="k", ls=":", lw=1, label=reference[1])
    # Symlog: training error reaches exactly 0 %, which a log axis would drop.
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(bottom=0.0)  # errors are never negative: no mirrored half-axis
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8 if len(runs) > 1 else None)
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, out)
