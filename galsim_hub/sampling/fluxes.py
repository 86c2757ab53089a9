"""Fluxes of sampled galaxies, and what to do with conditions outside a model's training range.

Two jobs of the sampling path, shared by the Python API, the GalSim config type and the CLI:

- **Catalog fluxes** (:func:`catalog_fluxes`, :func:`set_fluxes`): every stamp can be rescaled
  to a flux read from a catalog, given as a flux column or as a magnitude column with a zero
  point, so that one single-band model serves several bands with the same morphology.
- **Out-of-range conditions** (:class:`SamplingPlan`): a generative model is only trained on
  a box of conditions, and beyond it (and at its edges) it can return stamp-filling squares
  with many times the catalog flux. The policy ``out_of_range`` decides what happens to rows
  with a condition outside the box:

  ``"clip"`` (default)
      Each condition is clipped to the training range ``[min, max]``. The stamp decoded at the
      clipped conditions is checked (:func:`plausible`); where it is not plausible (flux more
      than :data:`FLUX_FACTOR` from the flux of its clipped magnitude, or more than
      :data:`BORDER_FRACTION` of its flux in the outer :func:`border_width` pixels) the
      conditions are pulled further towards the centre of the training range (the training
      mean ``condition_mean``, else the middle of the range; :data:`PULL_IN_STEPS`), with the
      same base noise, until it is (a :class:`~galsim_hub.errors.CatalogError` if it never
      is, even at the centre). The flux is then set from
      the catalog magnitude (the condition whose unit is ``"mag"``, with the model's
      ``zero_point``). Models without such a condition or zero point are clipped only. One
      :class:`~galsim_hub.sampling.catalog.OutOfRangeWarning` per call names the columns and rows.
  ``"error"``
      A :class:`~galsim_hub.errors.CatalogError` naming the columns and rows.
  ``"extrapolate"``
      The model is fed the values as they are (the behaviour before this option), with a warning.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np

from galsim_hub.sampling.catalog import OutOfRangeWarning, outside_range, read_column, row_list
from galsim_hub.errors import CatalogError

OUT_OF_RANGE_POLICIES = ("clip", "error", "extrapolate")
DEFAULT_OUT_OF_RANGE = "clip"
#: A clipped stamp whose flux differs by more than this factor from its magnitude's is implausible.
FLUX_FACTOR = 2.0
#: A clipped stamp with more than this fraction of its flux in the border is implausible.
BORDER_FRACTION = 0.1
#: Fractions of the way from the centre of the training range to the clipped conditions that are
#: tried, in turn, for clipped rows whose stamp is implausible.
PULL_IN_STEPS = (0.75, 0.5, 0.25, 0.0)

Decoder = Callable[[np.ndarray, np.ndarray], np.ndarray]


def check_policy(out_of_range: str) -> str:
    """Return ``out_of_range`` if it names a policy, else raise a ``ValueError`` listing them."""
    if out_of_range not in OUT_OF_RANGE_POLICIES:
        raise ValueError(
            f"out_of_range must be one of {', '.join(repr(p) for p in OUT_OF_RANGE_POLICIES)}, got {out_of_range!r}"
        )
    return out_of_range


def magnitude_to_flux(mag: Any, zero_point: float) -> np.ndarray:
    """``10**(-0.4 (mag - zero_point))``: the flux, in the units whose zero point is given."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - float(zero_point)))


def calibrated_fluxes(conditions: np.ndarray, metadata: dict) -> np.ndarray | None:
    """The catalog fluxes a flux-calibrated model gives its stamps, or None.

    A model whose metadata has ``flux_calibration: {"condition": NAME}`` (see
    :func:`galsim_hub.metadata.validate_flux_calibration`) gives every galaxy the flux of its
    catalog magnitude ``NAME`` when the caller passes no ``flux=``/``mag=``.
    """
    calibration = metadata.get("flux_calibration")
    if not calibration:
        return None
    names = [c["name"] for c in metadata["conditions"]]
    index = names.index(calibration["condition"])
    return fluxes_from_magnitudes(np.asarray(conditions)[:, index], float(metadata["zero_point"]),
                                  f"the catalog's '{calibration['condition']}' (the model's flux calibration)")


def magnitude_condition(metadata: dict) -> tuple[int, float] | None:
    """Index of the model's first condition in ``"mag"`` and its zero point, or ``None``."""
    zero_point = metadata.get("zero_point")
    if zero_point is None:
        return None
    for index, condition in enumerate(metadata["conditions"]):
        if condition.get("unit") == "mag":
            return index, float(zero_point)
    return None


def border_width(stamp_size: int) -> int:
    """Width in pixels of the stamp border checked by :func:`plausible` (4 on a 64-pixel stamp)."""
    return max(1, int(stamp_size) // 16)


def border_fractions(images: np.ndarray) -> np.ndarray:
    """``[N]`` fraction of each stamp's flux in its outer :func:`border_width` pixels."""
    images = np.asarray(images)
    width = border_width(images.shape[-1])
    total = images.sum(axis=(1, 2), dtype=np.float64)
    inner = images[:, width:-width, width:-width].sum(axis=(1, 2), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (total - inner) / total


def plausible(images: np.ndarray, expected_flux: np.ndarray | None = None) -> np.ndarray:
    """Which stamps look like a galaxy rather than a model failure.

    Parameters
    ----------
    images : numpy.ndarray
        ``[N, S, S]`` stamps.
    expected_flux : numpy.ndarray, optional
        ``[N]`` flux each stamp should have (from its magnitude condition).

    Returns
    -------
    numpy.ndarray
        ``[N]`` bool: finite with a positive flux, at most :data:`BORDER_FRACTION` of it in the
        border, and (when ``expected_flux`` is given) within a factor :data:`FLUX_FACTOR` of it.
    """
    images = np.asarray(images)
    total = images.sum(axis=(1, 2), dtype=np.float64)
    ok = np.isfinite(images).all(axis=(1, 2)) & (total > 0)
    with np.errstate(invalid="ignore"):
        ok &= border_fractions(images) <= BORDER_FRACTION
        if expected_flux is not None:
            ratio = total / np.asarray(expected_flux, dtype=np.float64)
            ok &= (ratio <= FLUX_FACTOR) & (ratio >= 1.0 / FLUX_FACTOR)
    return ok


#: The fluxes a float32 stamp can carry: beyond them its pixels overflow to infinity or
#: vanish below float32's smallest normal numbers (no real galaxy comes near either).
FLUX_LIMITS = (1e-30, 1e30)
#: Catalog values that mean "no data" in common catalogs, named in error messages.
SENTINELS = (-99.0, 99.0, -999.0, 999.0, -9999.0, 9999.0)


def _sentinel_hint(values: np.ndarray | None, rows: np.ndarray) -> str:
    if values is None:
        return ""
    found = sorted({float(v) for v in np.asarray(values)[rows] if float(v) in SENTINELS})
    return (f" ({', '.join(f'{v:g}' for v in found)} is a common no-data value: drop or fill these rows)"
            if found else "")


def check_fluxes(fluxes: Any, n_rows: int, what: str, source_values: Any = None,
                 labels: Sequence | None = None) -> np.ndarray:
    """Check one flux per row: finite, positive and within :data:`FLUX_LIMITS`; ``what`` names
    them in errors, ``source_values`` (the magnitudes they came from) give the hint of a
    no-data sentinel such as -99; ``labels`` name the rows (default: their indices).

    A zero flux is refused too: a GalSim profile cannot be built from a stamp without flux.
    """
    fluxes = np.atleast_1d(np.asarray(fluxes, dtype=np.float64))
    if fluxes.shape != (n_rows,):
        raise CatalogError(f"{what} has shape {fluxes.shape}; expected one value per row ({n_rows})")
    bad = ~np.isfinite(fluxes)
    if bad.any():
        raise CatalogError(f"{what} is NaN or infinite in rows {row_list(bad, labels)}{_sentinel_hint(source_values, bad)}")
    not_positive = fluxes <= 0
    if not_positive.any():
        raise CatalogError(
            f"{what} is zero or negative in rows {row_list(not_positive, labels)}; every galaxy needs a positive flux"
            f"{_sentinel_hint(source_values, not_positive)}"
        )
    low, high = FLUX_LIMITS
    extreme = (fluxes < low) | (fluxes > high)
    if extreme.any():
        values = ", ".join(f"{f:.3g}" for f in fluxes[extreme][:5])
        raise CatalogError(
            f"{what}: fluxes outside {low:g} - {high:g} (model flux units) in rows {row_list(extreme, labels)} "
            f"({values}): a float32 stamp cannot hold them{_sentinel_hint(source_values, extreme)}"
        )
    return fluxes


def fluxes_from_magnitudes(magnitudes: Any, zero_point: float, what: str, n_rows: int | None = None,
                           labels: Sequence | None = None) -> np.ndarray:
    """The fluxes of catalog magnitudes, checked by :func:`check_fluxes`.

    A magnitude of -1e30 (flux overflowing to infinity) or of -99 (a "no data" value, flux 1e50)
    is an error naming the rows (``labels``), not an infinite stamp.
    """
    magnitudes = np.asarray(magnitudes, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        fluxes = magnitude_to_flux(magnitudes, zero_point)
    return check_fluxes(fluxes, len(fluxes) if n_rows is None else n_rows, what, source_values=magnitudes,
                        labels=labels)


def _values(catalog: Any, source: Any, role: str) -> tuple[np.ndarray, str]:
    """A column of ``catalog`` (when ``source`` is a name) or the values themselves."""
    if isinstance(source, str):
        if catalog is None:
            raise CatalogError(f"{role} column '{source}' needs a catalog")
        return read_column(catalog, source, role=role), f"{role} column '{source}'"
    if source is None:
        raise CatalogError(f"{role} is None: give a column name or one value per row")
    try:
        return np.atleast_1d(np.asarray(source, dtype=np.float64)), f"{role} values"
    except (TypeError, ValueError) as error:
        raise CatalogError(f"{role} must be a column name or numbers, got {source!r}") from error


def check_zero_point(zero_point: Any, name: str = "zero_point") -> float | None:
    """``zero_point`` as a float (None stays None); a non-number is a `ValueError` naming it."""
    if zero_point is None:
        return None
    if isinstance(zero_point, (bool, str, bytes)) or not np.isscalar(zero_point):
        raise ValueError(f"{name}= must be a number, got {zero_point!r} ({type(zero_point).__name__})")
    try:
        return float(zero_point)
    except (TypeError, ValueError):
        raise ValueError(f"{name}= must be a number, got {zero_point!r}") from None


def catalog_fluxes(
    catalog: Any,
    n_rows: int,
    flux: Any = None,
    mag: Any = None,
    zero_point: float | None = None,
    default_zero_point: float | None = None,
) -> np.ndarray | None:
    """The fluxes the sampled galaxies must have, from a flux or a magnitude column.

    Parameters
    ----------
    catalog : astropy.table.Table, dict, numpy structured array, ...
        The catalog being sampled (one row per galaxy).
    n_rows : int
        Number of galaxies.
    flux : str or array_like, optional
        A column name of ``catalog``, or one flux per row, in the units you want the galaxies in.
    mag : str or array_like, optional
        A magnitude column name, or one magnitude per row; the flux is
        ``10**(-0.4 (mag - zero_point))``. Give either ``flux`` or ``mag``.
    zero_point : float, optional
        Zero point of ``mag`` (default: ``default_zero_point``, the model's).
    default_zero_point : float, optional
        The model's zero point (metadata ``zero_point``).

    Returns
    -------
    numpy.ndarray or None
        ``[N]`` fluxes, or ``None`` when neither ``flux`` nor ``mag`` is given.

    Raises
    ------
    CatalogError
        When the column is missing, or a value is NaN, infinite, masked, or a flux is not positive.
    ValueError
        When both ``flux`` and ``mag`` are given, or a zero point without ``mag``, or ``mag``
        without any zero point.
    """
    if flux is not None and mag is not None:
        raise ValueError("give the galaxies' flux either as flux= or as mag= (with zero_point=), not both")
    if mag is None:
        if zero_point is not None:
            raise ValueError("zero_point= goes with mag=; give mag= the magnitude column")
        if flux is None:
            return None
        values, what = _values(catalog, flux, "flux")
        return check_fluxes(values, n_rows, what)
    zero_point = check_zero_point(zero_point)
    if zero_point is None:
        zero_point = default_zero_point
    if zero_point is None or not np.isfinite(zero_point):
        raise ValueError(
            f"mag= needs a finite zero_point= (the model states none), got {zero_point!r}"
        )
    values, what = _values(catalog, mag, "magnitude")
    if values.shape == (n_rows,):
        bad = ~np.isfinite(values)
        if bad.any():
            raise CatalogError(f"{what} is NaN or infinite in rows {row_list(bad)}")
    return fluxes_from_magnitudes(values, zero_point, what, n_rows=n_rows)


def set_fluxes(images: np.ndarray, fluxes: np.ndarray | None) -> np.ndarray:
    """Rescale each stamp to its flux; rows whose flux is NaN (or ``fluxes=None``) are left alone.

    Raises
    ------
    CatalogError
        When a stamp to rescale has no positive, finite flux of its own.
    """
    if fluxes is None:
        return images
    fluxes = np.asarray(fluxes, dtype=np.float64)
    rows = np.isfinite(fluxes)
    if not rows.any():
        return images
    images = np.array(images, dtype=np.float32)
    totals = images[rows].sum(axis=(1, 2), dtype=np.float64)
    empty = ~(np.isfinite(totals) & (totals > 0))
    if empty.any():
        mask = np.zeros(len(fluxes), dtype=bool)
        mask[np.flatnonzero(rows)[empty]] = True
        raise CatalogError(f"the model's stamps of rows {row_list(mask)} have no flux to rescale")
    images[rows] *= (fluxes[rows] / totals)[:, None, None].astype(np.float32)
    sums = images[rows].sum(axis=(1, 2), dtype=np.float64)
    broken = ~(np.isfinite(images[rows]).all(axis=(1, 2)) & (sums > 0))
    if broken.any():
        mask = np.zeros(len(fluxes), dtype=bool)
        mask[np.flatnonzero(rows)[broken]] = True
        raise CatalogError(f"rescaled to their catalog flux, the stamps of rows {row_list(mask)} are not finite "
                           "or hold no flux in float32")
    return images


class SamplingPlan:
    """Apply an out-of-range policy and catalog fluxes to the sampling of a catalog.

    Parameters
    ----------
    conditions : numpy.ndarray
        ``[N, C]`` catalog conditions (checked: finite).
    metadata : dict
        The model's metadata (``conditions`` with ``min``/``max``/``unit``, ``zero_point``,
        optional ``condition_mean``).
    out_of_range : {"clip", "error", "extrapolate"}
        The policy (see the module docstring).
    fluxes : numpy.ndarray, optional
        ``[N]`` catalog fluxes (:func:`catalog_fluxes`); every stamp is rescaled to them. When
        None, a flux-calibrated model (:func:`calibrated_fluxes`) gives its catalog magnitudes' fluxes.
    labels : sequence, optional
        Names of the rows in messages (default: their indices).
    what : str
        What the rows are in messages (``"rows"``, ``"objects"``).
    prefix : str
        Start of messages.
    stacklevel : int
        Of the warning, counted from the caller of the constructor.
    flux_note : str, optional
        What the warning says of the clipped rows' flux, when the caller sets it (multi-band
        models, :func:`galsim_hub.profiles.bands.multiband_plan`).

    Raises
    ------
    CatalogError
        With ``out_of_range="error"`` and conditions outside the training range.

    Warns
    -----
    OutOfRangeWarning
        Once, naming the columns and rows, with ``"clip"`` or ``"extrapolate"``.
    """

    def __init__(
        self,
        conditions: np.ndarray,
        metadata: dict,
        out_of_range: str = DEFAULT_OUT_OF_RANGE,
        fluxes: np.ndarray | None = None,
        labels: Sequence | None = None,
        what: str = "rows",
        prefix: str = "",
        stacklevel: int = 2,
        flux_note: str | None = None,
    ):
        policy = check_policy(out_of_range)
        specs = metadata["conditions"]
        n_rows = len(conditions)
        self._calibration = (metadata.get("flux_calibration") or {}).get("condition")
        calibrated = fluxes is None and self._calibration is not None
        if calibrated:
            fluxes = calibrated_fluxes(conditions, metadata)
        outside = outside_range(conditions, specs)
        self.inputs = np.asarray(conditions, dtype=np.float64)
        self.clipped = np.zeros(n_rows, dtype=bool)
        self.targets = np.full(n_rows, np.nan) if fluxes is None else np.asarray(fluxes, dtype=np.float64)
        self._magnitude = magnitude_condition(metadata)
        self._centre = _range_centre(metadata)
        self._labels, self._what, self._prefix = labels, what, prefix
        if not outside.any():
            return
        summary = (
            f"{prefix}{int(outside.any(axis=1).sum())} of {n_rows} {what} lie outside the model's training "
            f"range: {_describe(outside, specs, labels, what)}"
        )
        if policy == "error":
            raise CatalogError(
                f"{summary}. out_of_range='error' refuses them; 'clip' clips them to the range and sets "
                "their catalog flux, 'extrapolate' lets the model extrapolate"
            )
        if policy == "extrapolate":
            warnings.warn(f"{summary}; the model extrapolates there", OutOfRangeWarning, stacklevel=stacklevel + 1)
            return
        low = np.array([_bound(spec, "min", -np.inf) for spec in specs])
        high = np.array([_bound(spec, "max", np.inf) for spec in specs])
        self.inputs = np.clip(self.inputs, low, high)
        self.clipped = outside.any(axis=1)
        if flux_note is None:
            flux_note = self._clipped_flux_note(conditions, specs, fluxes is not None, calibrated, labels, prefix)
        warnings.warn(
            f"{summary}. out_of_range='clip': their conditions are clipped to the range (and pulled further "
            f"in where the model's stamp at the edge is implausible) and {flux_note}; pass "
            "out_of_range='error' to refuse such rows or 'extrapolate' to let the model extrapolate",
            OutOfRangeWarning,
            stacklevel=stacklevel + 1,
        )

    def _clipped_flux_note(self, conditions: np.ndarray, specs: Sequence[dict], given: bool, calibrated: bool,
                           labels: Sequence | None, prefix: str) -> str:
        """Set the clipped rows' flux targets where the catalog gives them; say what their flux is."""
        if calibrated:
            return f"their flux is set from the catalog's '{self._calibration}' (the model's flux calibration)"
        if given:
            return "their flux is the catalog flux given"
        if self._magnitude is None:
            return ("their flux is the model's at the clipped conditions (the model has no magnitude "
                    "condition with a zero point to set it from)")
        index, zero_point = self._magnitude
        rows = self.clipped
        names = np.flatnonzero(rows) if labels is None else [labels[i] for i in np.flatnonzero(rows)]
        self.targets[rows] = fluxes_from_magnitudes(conditions[rows, index], zero_point,
                                                    f"{prefix}the catalog's '{specs[index]['name']}'", labels=names)
        return f"their flux is set from the catalog's '{specs[index]['name']}' with zero point {zero_point:g}"

    def images(self, decode: Decoder, noise: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """Decode the given rows under the policy and return their ``[B, S, S]`` stamps.

        Parameters
        ----------
        decode : callable
            ``decode(conditions [B, C], noise [B, L]) -> images [B, S, S]``, the model.
        noise : numpy.ndarray
            ``[B, L]`` base noise of these rows.
        rows : slice
            Which rows of the plan (default: all).
        """
        inputs = self.inputs[rows]
        images = np.asarray(decode(inputs, noise))
        clipped = np.flatnonzero(self.clipped[rows])
        if clipped.size:
            images = self._pull_in(decode, np.array(images), inputs, noise, clipped, rows)
        return set_fluxes(images, self.targets[rows])

    def _expected_flux(self, inputs: np.ndarray) -> np.ndarray | None:
        if self._magnitude is None:
            return None
        index, zero_point = self._magnitude
        return magnitude_to_flux(inputs[:, index], zero_point)

    def _pull_in(self, decode: Decoder, images: np.ndarray, inputs: np.ndarray, noise: np.ndarray,
                 rows: np.ndarray, rows_of_plan: slice) -> np.ndarray:
        """Re-decode implausible clipped rows closer and closer to the centre of the range."""
        bad = rows[~plausible(images[rows], self._expected_flux(inputs[rows]))]
        for step in PULL_IN_STEPS:
            if not bad.size:
                return images
            pulled = np.where(np.isnan(self._centre), inputs[bad], self._centre + step * (inputs[bad] - self._centre))
            images[bad] = decode(pulled, noise[bad])
            bad = bad[~plausible(images[bad], self._expected_flux(pulled))]
        if bad.size:
            names = np.arange(len(self.inputs))[rows_of_plan][bad]
            if self._labels is not None:
                names = [self._labels[i] for i in names]
            raise CatalogError(
                f"{self._prefix}the model gives no plausible stamp for {self._what} "
                f"{', '.join(map(str, names[:10]))} even at the centre of its training range; use "
                "out_of_range='extrapolate' to take its output anyway"
            )
        return images


def sampling_plan(
    catalog: Any,
    conditions: np.ndarray,
    metadata: dict,
    out_of_range: str = DEFAULT_OUT_OF_RANGE,
    flux: Any = None,
    mag: Any = None,
    zero_point: float | None = None,
) -> SamplingPlan:
    """The :class:`SamplingPlan` of one call of ``GenerativeGalaxyModel.sample`` (or ``iter_sample``).

    Reads the catalog fluxes (:func:`catalog_fluxes`, with the model's ``zero_point`` as the
    default) and applies ``out_of_range``; a warning points at the caller's caller (the user's
    call of ``sample``).
    """
    fluxes = catalog_fluxes(catalog, len(conditions), flux, mag, zero_point, metadata.get("zero_point"))
    return SamplingPlan(conditions, metadata, out_of_range, fluxes, stacklevel=3)


def _bound(spec: dict, key: str, default: float) -> float:
    value = spec.get(key)
    return default if value is None else float(value)


def _range_centre(metadata: dict) -> np.ndarray:
    """The training mean of each condition (``condition_mean``), else the middle of its range."""
    specs = metadata["conditions"]
    means = metadata.get("condition_mean")
    centre = []
    for i, spec in enumerate(specs):
        low, high = spec.get("min"), spec.get("max")
        if means is not None:
            value = float(means[i])
        elif low is not None and high is not None:
            value = 0.5 * (float(low) + float(high))
        else:
            value = np.nan  # no range: never clipped, so never pulled in
        if low is not None and high is not None:
            value = min(max(value, float(low)), float(high))
        centre.append(value)
    return np.array(centre)


def _describe(outside: np.ndarray, specs: Sequence[dict], labels: Sequence | None, what: str) -> str:
    parts = []
    for i, spec in enumerate(specs):
        column = outside[:, i]
        if column.any():
            parts.append(
                f"'{spec['name']}' {int(column.sum())} value(s) outside [{spec['min']:g}, {spec['max']:g}] "
                f"({what} {row_list(column, labels)})"
            )
    return "; ".join(parts)
