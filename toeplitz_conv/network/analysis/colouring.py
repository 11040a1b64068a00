"""Colour a Jacobian's columns on a lattice, seed the compressed product, scatter it back.

Two columns may share a colour when no row reads both (Curtis, Powell & Reid 1974): then
``(J S)[i, k]`` is the one entry of row ``i`` in the columns of colour ``k``. Where every
row's reach lies in a box of coordinates no wider than ``e_a`` along axis ``a``
(:mod:`.reach`), the lattice colouring

    colour(j) = (c_0 mod e_0, c_1 mod e_1, ...)        (c: the coordinates of column j)

is valid: two columns of one colour differ by a nonzero multiple of ``e_a`` along some axis,
which no box spans. It needs ``prod(e_a)`` colours: ``C_in * 17 * 17`` for a stack of eight
3x3 convolutions, whatever the image size — the optimum for a translation-invariant stencil
(its columns within one box all clash). And the column behind ``(J S)[i, k]`` is found from
row ``i``'s box alone, without any pattern stored:

    v_a = lo_a + ((k_a - lo_a) mod e_a),   kept where v_a <= hi_a on every axis.

Rows are coloured the same way, with the boxes of output coordinates each input reaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

import numpy as np
import numpy.typing as npt

from .reach import bounds


@dataclass(frozen=True)
class Lattice:
    """A lattice colouring of the entries of a ``shape``-shaped side of the Jacobian.

    Attributes
    ----------
    shape : tuple of int
        The coloured side's sample shape (the input's for columns, the output's for rows).
    extents : tuple of int
        The widest box along each axis: the lattice's period there.
    """

    shape: tuple[int, ...]
    extents: tuple[int, ...]

    @property
    def colours(self) -> int:
        """The number of colours: ``prod(extents)``."""
        return prod(self.extents)

    def colour_of(self) -> np.ndarray:
        """``(prod(shape),)`` int64: the colour of each entry (C order)."""
        coords = np.indices(self.shape).reshape(len(self.shape), -1)
        mods = [c % e for c, e in zip(coords, self.extents)]
        colour: np.ndarray = np.ravel_multi_index(mods, self.extents).astype(np.int64)
        return colour

    def seeds(self, colours: Sequence[int] | np.ndarray, dtype: npt.DTypeLike) -> np.ndarray:
        """``(len(colours), *shape)``: the 0/1 seed of each colour (the columns of ``S``)."""
        ks = np.asarray(colours, dtype=np.int64)
        seeds: np.ndarray = (self.colour_of()[None, :] == ks[:, None]).astype(dtype)
        return seeds.reshape(len(ks), *self.shape)

    def targets(self, M: np.ndarray, colours: Sequence[int] | np.ndarray) -> np.ndarray:
        """``(len(M), len(colours))`` int64: for each box of ``M`` and each colour, the flat
        index of the one entry of that colour inside the box, or -1 where there is none."""
        lo, hi, reached = bounds(M)
        lo, hi = lo.astype(np.int64), hi.astype(np.int64)
        ks = np.asarray(np.unravel_index(np.asarray(colours, dtype=np.int64), self.extents)).T  # (B, d)
        e = np.asarray(self.extents, dtype=np.int64)
        v = lo[:, None, :] + np.mod(ks[None, :, :] - lo[:, None, :], e)  # (n, B, d)
        ok = reached[:, None] & np.all(v <= hi[:, None, :], axis=2)
        flat = np.ravel_multi_index(tuple(np.where(ok[..., None], v, 0).transpose(2, 0, 1)), self.shape)
        return np.where(ok, flat, -1)


def lattice(M: np.ndarray, shape: Sequence[int]) -> Lattice:
    """The lattice colouring for the boxes ``M`` (one per row of the Jacobian, in the
    coordinates of ``shape``): the period along each axis is the widest box there (at least 1;
    at most the axis itself)."""
    lo, hi, reached = bounds(M)
    if not reached.any():
        return Lattice(tuple(shape), (1,) * len(shape))
    widths = (hi[reached] - lo[reached] + 1).max(axis=0)
    extents = tuple(int(min(max(w, 1), n)) for w, n in zip(widths, shape))
    return Lattice(tuple(shape), extents)


def valid(lat: Lattice, M: np.ndarray) -> bool:
    """True when no box of ``M`` holds two entries of one colour (every box fits the period):
    the check :func:`lattice` is built to pass, kept apart so that a test can break it."""
    lo, hi, reached = bounds(M)
    return bool(np.all((hi[reached] - lo[reached] + 1) <= np.asarray(lat.extents)))
