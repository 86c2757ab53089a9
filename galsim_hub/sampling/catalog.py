"""Turn a user's catalog into the condition matrix a model takes, with clear errors.

Accepted catalogs: an astropy ``Table`` or ``Row``, a dict of columns, a numpy structured
array (or record), or anything indexable by column name with a ``columns``/``colnames``
attribute (e.g. a pandas ``DataFrame``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from galsim_hub.errors import CatalogError

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


def row_list(mask: np.ndarray, labels: Sequence | None = None) -> str:
    """The first rows where ``mask`` is set (as their ``labels`` when given), and their count."""
    rows = np.flatnonzero(mask)
    named = list(rows) if labels is None else [labels[int(i)] for i in rows]
    shown = ", ".join(str(r) for r in named[:_MAX_ROWS_SHOWN])
    return shown + (f", ... ({rows.size} rows)" if rows.size > _MAX_ROWS_SHOWN else "")


def read_column(catalog: Any, name: str, role: str = "column") -> np.ndarray:
    """One numeric column of a catalog as float64, with clear errors.

    Parameters
    ----------
    catalog : astropy.table.Table, dict, numpy structured array, ...
        The catalog.
    name : str
        The column.
    role : str
        What the column is for, used in messages (e.g. ``"flux"``).

    Returns
    -------
    numpy.ndarray
        ``[N]`` float64 values.

    Raises
    ------
    CatalogError
        When the column is missing, not numeric, not one value per row, or holds NaN,
        infinite or masked values (naming the rows).
    """
    available = column_names(catalog)
    if name not in available:
        raise CatalogError(f"catalog has no {role} column '{name}' (catalog columns: {', '.join(available) or 'none'})")
    raw = catalog[name]
    mask = np.ma.getmaskarray(raw) if np.ma.isMaskedArray(raw) else None
    values = np.atleast_1d(np.ma.getdata(raw))
    if values.ndim != 1:
        raise CatalogError(f"column '{name}' must be one value per row, got shape {values.shape}")
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise CatalogError(f"column '{name}' is not numeric (dtype {values.dtype})")
    values = values.astype(np.float64)
    if mask is not None and np.atleast_1d(mask).any():
        raise CatalogError(f"column '{name}' has masked (missing) values in rows {row_list(np.atleast_1d(mask))}")
    bad = ~np.isfinite(values)
    if bad.any():
        raise CatalogError(f"column '{name}' has NaN or infinite values in rows {row_list(bad)}")
    return values


def float32_conditions(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """``values`` (``[N, C]``) as float32, the models' input type; values beyond its range are errors.

    Raises
    ------
    CatalogError
        When a finite value overflows float32 (``|x| > 3.4e38``), naming the column and rows.
    """
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        narrowed = values.astype(np.float32)
    overflow = np.isfinite(values) & ~np.isfinite(narrowed)
    if overflow.any():
        column, rows = overflow.any(axis=0).argmax(), np.flatnonzero(overflow.any(axis=1))
        raise CatalogError(
            f"column '{names[column]}' holds values beyond float32 range (|x| > 3.4e38) "
            f"in row(s) {', '.join(map(str, rows[:10]))}: the model takes float32 conditions"
        )
    return narrowed


def condition_matrix(catalog: Any, conditions: Sequence[dict]) -> np.ndarray:
    """Read, check and stack the condition columns of a catalog.

    Values outside the training range are returned as they are: what to do with them is the
    ``out_of_range`` policy of :class:`galsim_hub.sampling.plan.SamplingPlan`.

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
        When a column is missing, not numeric, not one-dimensional, or holds NaN, infinite,
        masked or float32-overflowing values (the message names the column and the rows), or
        when the catalog is empty or the columns differ in length.
    """
    available = column_names(catalog)
    names = [condition["name"] for condition in conditions]
    missing = [name for name in names if name not in available]
    if missing:
        raise CatalogError(
            f"catalog lacks the column(s) {', '.join(missing)} that the model is conditioned on "
            f"(model inputs: {', '.join(names)}; catalog columns: {', '.join(available) or 'none'})"
        )
    columns = [read_column(catalog, name, role="condition") for name in names]
    lengths = {column.size for column in columns}
    if len(lengths) > 1:
        raise CatalogError(f"condition columns differ in length: {sorted(lengths)}")
    if not lengths or lengths == {0}:
        raise CatalogError("catalog is empty: there is no galaxy to sample")
    matrix = np.stack(columns, axis=1)
    float32_conditions(matrix, names)  # before any out-of-range policy hides the overflow
    return matrix


def outside_range(matrix: np.ndarray, conditions: Sequence[dict]) -> np.ndarray:
    """``[N, C]`` bool: which values lie outside their condition's training range.

    Conditions whose range is unknown (no ``min``/``max``) are never outside.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    outside = np.zeros(matrix.shape, dtype=bool)
    for i, condition in enumerate(conditions):
        low, high = condition.get("min"), condition.get("max")
        if low is not None and high is not None:
            outside[:, i] = (matrix[:, i] < low) | (matrix[:, i] > high)
    return outside
