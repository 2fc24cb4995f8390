"""What every dynsim network shares: a clamped input group, free groups stored side by side, a cost.

Both :class:`dynsim.networks.hopfield.HopfieldNetwork` and :class:`dynsim.networks.pc.PCNetwork`
keep their units in groups (group 0 the clamped input, the last group the
output) and their free state ``s`` as one (batch, n_free) array. A subclass
sets ``group_sizes``, ``group_names`` and ``_free_off`` (the column of each
free group in ``s``); this class derives the sizes, the views, the boundary
checks and the output cost from them.
"""
from __future__ import annotations

import numpy as np

from dynsim.validation import ValidationError, float_array

__all__ = ["NetworkLayout"]


class NetworkLayout:
    """Sizes, views, input checks and cost of a network with a clamped input and free groups."""

    group_sizes: tuple
    group_names: tuple
    _free_off: np.ndarray

    @property
    def n_input(self):
        return self.group_sizes[0]

    @property
    def n_output(self):
        return self.group_sizes[-1]

    @property
    def n_free(self):
        """Units of the free state ``s``: every group but the input."""
        return sum(self.group_sizes[1:])

    @property
    def output_slice(self):
        """Columns of the output group in the free state."""
        return slice(self.n_free - self.n_output, self.n_free)

    def split_state(self, s):
        """The free state as a dict ``group name -> ndarray (..., n_g)`` of views."""
        s = np.asarray(s)
        return {self.group_names[g]: s[..., self._free_off[g]:self._free_off[g] + self.group_sizes[g]]
                for g in range(1, len(self.group_sizes))}

    def locate_unit(self, column):
        """The group of a column of the free state: ``(group name, unit index within the group)``.

        Parameters
        ----------
        column : int
            Index into the ``n_free`` columns of ``s``.
        """
        if isinstance(column, (bool, np.bool_)) or not isinstance(column, (int, np.integer)) \
                or not 0 <= column < self.n_free:
            raise ValidationError(f"column must be an integer in [0, {self.n_free - 1}], got {column!r}")
        for g in range(1, len(self.group_sizes)):
            start = int(self._free_off[g])
            if start <= column < start + self.group_sizes[g]:
                return self.group_names[g], int(column - start)
        raise AssertionError("the free groups do not cover the free state")  # pragma: no cover

    dtype = np.dtype(np.float64)
    """Floating-point type of states and parameters; arrays given to the checks below are converted to it."""

    def check_input(self, x):
        """``x`` validated: finite, of the network's :attr:`dtype`, shape (batch, n_input)."""
        return float_array("x", x, shape=(None, self.n_input), dtype=self.dtype)

    def check_state(self, s, batch=None, name="s"):
        """``s`` validated: finite, of the network's :attr:`dtype`, shape (batch, n_free); messages call it ``name``."""
        return float_array(name, s, shape=(batch, self.n_free), dtype=self.dtype)

    def check_target(self, target, batch, name="target"):
        """``target`` validated: finite, of the network's :attr:`dtype`, shape (batch, n_output)."""
        return float_array(name, target, shape=(batch, self.n_output), dtype=self.dtype)

    def cost(self, s, target):
        """C = 1/2 ||s_out - target||^2 per sample, shape (batch,)."""
        s = self.check_state(s)
        target = self.check_target(target, s.shape[0])
        return 0.5 * np.sum((s[:, self.output_slice] - target) ** 2, axis=1)
