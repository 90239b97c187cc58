"""Guarded calls into native numerical code: every least-squares solve gocopt makes goes through here.

LAPACK and SciPy's Fortran/C solvers are fast, and undefined on inputs their Python wrappers do not
check: ``scipy.optimize.nnls`` on a matrix with zero rows frees memory twice and aborts the
interpreter in the SciPy releases pip installs today (scipy issue 24861), and ``numpy.linalg.lstsq``
on a NaN raises "SVD did not converge" with nothing that says where the NaN came from. A library
that dies with a C-level abort takes a serving process or a study's worker with it.

So each solve here settles, before the native call, the cases the call cannot: no rows or no
unknowns (the answer is the zero vector: nothing to fit), and non-finite inputs (a
:class:`~gocopt.errors.NumericalError` naming what was being solved, since upstream code is meant
to have refused them already). Rank-deficient systems are left to the solvers, which return the
least-norm (``lstsq``) or a feasible (``nnls``) solution for them.
"""

from __future__ import annotations

import numpy as np

from gocopt.errors import NumericalError


def least_squares(a: np.ndarray, b: np.ndarray, *, what: str) -> np.ndarray:
    """``argmin ‖a x − b‖²`` (the least-norm one where ``a`` is rank-deficient); zeros when ``a``
    has no rows or no columns. ``what`` names the solve in any error."""
    a, b = _checked(a, b, what)
    if a.shape[0] == 0 or a.shape[1] == 0:
        return np.zeros((a.shape[1],) + b.shape[1:])
    return np.linalg.lstsq(a, b, rcond=None)[0]


def nonnegative_least_squares(a: np.ndarray, b: np.ndarray, *, what: str) -> np.ndarray:
    """``argmin ‖a x − b‖²`` subject to ``x ≥ 0``; zeros when ``a`` has no rows or no columns (where
    ``scipy.optimize.nnls`` itself would abort the process)."""
    a, b = _checked(a, b, what)
    if b.ndim != 1:
        raise NumericalError(f"{what}: non-negative least squares takes one right-hand side, got shape {b.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        return np.zeros(a.shape[1])
    from scipy.optimize import nnls  # scipy loads only when a surrogate is fitted

    return nnls(a, b)[0]


def _checked(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.shape[:1] != a.shape[:1]:
        raise NumericalError(f"{what}: a system of shape {a.shape} with a right-hand side of shape {b.shape}")
    for name, array in (("matrix", a), ("right-hand side", b)):
        if not np.isfinite(array).all():
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
            raise NumericalError(f"{what}: the {name} holds {array[where]} at {where}; the measurements it was "
                                 "built from are not finite (report this: calibration should have refused them)")
    return a, b


__all__ = ["least_squares", "nonnegative_least_squares"]
