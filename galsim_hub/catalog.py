"""Turn a user's catalog into the condition matrix a model takes, with clear errors.

Accepted catalogs: an astropy ``Table`` or ``Row``, a dict of columns, a numpy structured
array (or record), or anything indexable by column name with a ``columns``/``colnames``
attribute (e.g. a pandas ``DataFrame``).
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from .errors import CatalogError

_MAX_ROWS_SHOWN = 10


class OutOfRangeWarning(UserWarning):
    """Catalog values lie outside the range a model was trained on."""


def column_names(catalog: Any) -> list[str]:
    """The column names of a supported catalog object."""
    for attribute in ("colnames", "columns"):
        names = getattr(catalog, attribute, None)
        if names is not None and not callable(names):
            return [str(name) for name in names]
    dtype = getattr(catalog, "dtype", None)
    if dtype is not None and dtype.names:
        return list(dtype.names)
    if isinstance(catalog, dict):
        return [str(key) for key in catalog]
    raise CatalogError(
        f"cannot read columns from a {type(catalog).__name__}; pass an astropy Table, a dict of "
        "columns or a numpy structured array"
    )


def _rows(mask: np.ndarray, labels: Sequence | None = None) -> str:
    """The first rows where ``mask`` is set (as their ``labels`` when given), and their count."""
    rows = np.flatnonzero(mask)
    named = rows if labels is None else [labels[i] for i in rows]
    shown = ", ".join(str(r) for r in named[:_MAX_ROWS_SHOWN])
    return shown + (f", ... ({rows.size} rows)" if rows.size > _MAX_ROWS_SHOWN else "")


def condition_matrix(catalog: Any, conditions: Sequence[dict]) -> np.ndarray:
    """Read, check and stack the condition columns of a catalog.

    Parameters
    ----------
    catalog : astropy.table.Table, dict, numpy structured array, ...
        The catalog; one row per galaxy.
    conditions : sequence of dict
        The model's condition metadata (``name``, ``min``, ``max``).

    Returns
    -------
    numpy.ndarray
        ``[N, C]`` float64 array, columns in the order of ``conditions``.

    Raises
    ------
    CatalogError
        When a column is missing, not numeric, not one-dimensional, or holds NaN, infinite
        or masked values (the message names the column and the rows), or when the catalog
        is empty or the columns differ in length.

    Warns
    -----
    OutOfRangeWarning
        When values lie outside a condition's training range.
    """
    available = column_names(catalog)
    names = [condition["name"] for condition in conditions]
    missing = [name for name in names if name not in available]
    if missing:
        raise CatalogError(
            f"catalog lacks the column(s) {', '.join(missing)} that the model is conditioned on "
            f"(model inputs: {', '.join(names)}; catalog columns: {', '.join(available) or 'none'})"
        )
    columns = []
    for condition in conditions:
        name = condition["name"]
        raw = catalog[name]
        mask = np.ma.getmaskarray(raw) if np.ma.isMaskedArray(raw) else None
        values = np.atleast_1d(np.ma.getdata(raw))
        if values.ndim != 1:
            raise CatalogError(f"column '{name}' must be one value per row, got shape {values.shape}")
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
            raise CatalogError(f"column '{name}' is not numeric (dtype {values.dtype})")
        values = values.astype(np.float64)
        if mask is not None and np.atleast_1d(mask).any():
            raise CatalogError(f"column '{name}' has masked (missing) values in rows {_rows(np.atleast_1d(mask))}")
        bad = ~np.isfinite(values)
        if bad.any():
            raise CatalogError(f"column '{name}' has NaN or infinite values in rows {_rows(bad)}")
        columns.append(values)
    lengths = {column.size for column in columns}
    if len(lengths) > 1:
        raise CatalogError(f"condition columns differ in length: {sorted(lengths)}")
    if not lengths or lengths == {0}:
        raise CatalogError("catalog is empty: there is no galaxy to sample")
    matrix = np.stack(columns, axis=1)
    warn_out_of_range(matrix, conditions)
    return matrix


def warn_out_of_range(matrix: np.ndarray, conditions: Sequence[dict], labels: Sequence | None = None,
                      what: str = "rows", prefix: str = "", stacklevel: int = 3) -> None:
    """Warn, per condition, about values outside the model's training range.

    Parameters
    ----------
    matrix : numpy.ndarray
        ``[N, C]`` condition values.
    conditions : sequence of dict
        The model's condition metadata (``name``, ``min``, ``max``; ranges may be unknown).
    labels : sequence, optional
        How to name the rows in the message (default: their indices).
    what : str
        What the rows are, e.g. ``"rows"`` or ``"objects"``.
    prefix : str
        Text that starts the message.
    stacklevel : int
        Passed to :func:`warnings.warn`.

    Warns
    -----
    OutOfRangeWarning
        One per condition with values outside its range.
    """
    for i, condition in enumerate(conditions):
        low, high = condition.get("min"), condition.get("max")
        if low is None or high is None:
            continue
        outside = (matrix[:, i] < low) | (matrix[:, i] > high)
        if outside.any():
            warnings.warn(
                f"{prefix}{int(outside.sum())} value(s) of '{condition['name']}' lie outside the training "
                f"range [{low:g}, {high:g}] ({what} {_rows(outside, labels)}); the model extrapolates there",
                OutOfRangeWarning,
                stacklevel=stacklevel,
            )
