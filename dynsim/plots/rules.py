"""Figures that put learning rules beside backprop: alignment angles during training, and every rule on one network.

Files only (the Agg canvas, never a window), like the other figures of
:mod:`dynsim.plots`. Both read the tables the training scenarios write, so
that ``dynsim plot --kind gradients`` draws them from a log.

References
----------
.. [1] T. P. Lillicrap, D. Cownden, D. B. Tweed, C. J. Akerman, "Random
       synaptic feedback weights support error backpropagation for deep
       learning", Nature Communications 7:13276 (2016), Fig. 2 (the angle
       between feedback alignment's hidden update and backprop's, falling
       below 90 degrees as the network learns).
"""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from dynsim.plots._figure import save_figure

__all__ = ["plot_alignment", "plot_rule_comparison"]

_RULE_COLUMNS = ("rule", "kind", "x", "cosine", "test_error")


def plot_alignment(tables, out, title=None, reference="backprop"):
    """Angle between each rule's update and the reference's against epoch, one panel per weight matrix.

    Parameters
    ----------
    tables : mapping of str to mapping of str to array
        Per rule (its name, the legend's label), an ``epoch`` column and one
        column of angles in degrees per weight matrix, named ``W_...`` (the
        ``alignment_<rule>`` tables of ``scenarios/mnist_pc.py``). A matrix
        missing from a rule's table is left out of that rule's lines.
    out : str or os.PathLike
        PNG file to write.
    title : str, optional
    reference : str
        What the angles are measured to, for the axis label.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        ``tables`` is empty, or holds no ``W_...`` column.
    """
    if not tables:
        raise ValueError("tables is empty: give at least one rule's table of angles")
    blocks = list(dict.fromkeys(name for table in tables.values() for name in table if name.startswith("W_")))
    if not blocks:
        raise ValueError("the tables hold no angle column (named 'W_...')")
    fig = Figure(figsize=(max(4.0 * len(blocks), 6.0), 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(blocks), sharey=True))
    for ax, block in zip(axes, blocks):
        for k, (rule, table) in enumerate(tables.items()):
            if block not in table:
                continue
            epoch = np.asarray(table["epoch"], dtype=float)
            order = np.argsort(epoch, kind="stable")
            ax.plot(epoch[order], np.asarray(table[block], dtype=float)[order], marker="o", ms=3, color=f"C{k % 10}",
                    label=rule)
        ax.axhline(90.0, color="k", lw=0.8, ls=":")  # orthogonal: the update carries no information on the gradient
        ax.set_title(block, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"angle to {reference}'s update (degrees)")
    axes[0].set_ylim(0.0, 120.0)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)


def plot_rule_comparison(table, out, title=None):
    """Every rule beside its exact gradient: cosine against iterations, cosine during training, final test error.

    Parameters
    ----------
    table : mapping of str to array
        The ``rules`` table of ``scenarios/compare_rules.py``, one row per
        measurement: ``rule``, ``kind`` ('iterations': at the start, after
        ``x`` iterations of the phases; 'epoch': after epoch ``x`` of
        training), ``x``, ``cosine`` and ``test_error`` (a fraction, NaN on
        'iterations' rows).
    out : str or os.PathLike
        PNG file to write.
    title : str, optional

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        A column is missing.
    """
    missing = [name for name in _RULE_COLUMNS if name not in table]
    if missing:
        raise ValueError(f"the rules table lacks the columns {missing}")
    rule, kind = np.asarray(table["rule"]).astype(str), np.asarray(table["kind"]).astype(str)
    x, cosine = np.asarray(table["x"], dtype=float), np.asarray(table["cosine"], dtype=float)
    test_error = np.asarray(table["test_error"], dtype=float)
    rules = list(dict.fromkeys(rule))
    palette = colormaps["tab20"]
    fig = Figure(figsize=(15.0, 4.5), layout="constrained")
    ax_it, ax_ep, ax_acc = fig.subplots(1, 3)
    names, errors, colours = [], [], []
    for k, name in enumerate(rules):
        # tab20 pairs neighbouring colours: alternate the line style so that neighbours stay apart.
        style = dict(marker="o", ms=3, color=palette(k % 20), ls="-" if k % 2 == 0 else "--", label=name)
        rows = {which: np.flatnonzero((rule == name) & (kind == which)) for which in ("iterations", "epoch")}
        for ax, which in ((ax_it, "iterations"), (ax_ep, "epoch")):
            if rows[which].size:
                ax.plot(x[rows[which]], cosine[rows[which]], **style)
        epochs = rows["epoch"]
        if epochs.size:
            names.append(name)
            errors.append(100.0 * test_error[epochs[np.argmax(x[epochs])]])
            colours.append(palette(k % 20))
    ax_it.set_xscale("log")
    ax_it.set_xlabel("iterations of the phases")
    ax_it.set_title("1. at the start, against iterations", fontsize=9)
    ax_ep.set_xlabel("epoch")
    ax_ep.set_title("2. during training (the probe minibatch)", fontsize=9)
    for ax in (ax_it, ax_ep):
        ax.set_ylabel("cosine to the exact gradient (weights)")
        ax.set_ylim(-0.2, 1.05)
        ax.axhline(0.0, color="k", lw=0.8, ls=":")
        ax.grid(True, which="both", alpha=0.3)
    ax_ep.legend(fontsize=7, ncol=2)
    ax_acc.barh(range(len(names)), errors, color=colours)
    ax_acc.set_yticks(range(len(names)), names, fontsize=8)
    ax_acc.invert_yaxis()
    ax_acc.set_xlabel("test error after the last epoch (%)")
    ax_acc.set_title("3. accuracy", fontsize=9)
    ax_acc.grid(True, axis="x", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)
