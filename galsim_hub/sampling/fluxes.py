"""Fluxes of sampled galaxies in every band: from catalog columns, from magnitude conditions.

A model's stamps have ``B`` bands (``B = 1`` for a single-band model). Every stamp can be
rescaled to a flux read from the catalog, given as a flux column or as a magnitude column with
a zero point (:func:`catalog_band_fluxes`; one model then serves several bands with the same
morphology), and a model's own magnitude and colour conditions give each band's magnitude
(:func:`band_magnitudes`), from which :class:`~galsim_hub.sampling.plan.SamplingPlan` sets the
flux of rows clipped to the training range. Every flux is checked (:func:`check_fluxes`): finite,
positive and within what a float32 stamp can hold, with a hint where a catalog's no-data value
(``-99``) is the cause.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from galsim_hub.errors import CatalogError
from galsim_hub.sampling.catalog import read_column, row_list


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
    return fluxes_from_magnitudes(
        np.asarray(conditions)[:, index],
        float(metadata["zero_point"]),
        f"the catalog's '{calibration['condition']}' (the model's flux calibration)",
    )


#: The fluxes a float32 stamp can carry: beyond them its pixels overflow to infinity or
#: vanish below float32's smallest normal numbers (no real galaxy comes near either).
FLUX_LIMITS = (1e-30, 1e30)
#: Catalog values that mean "no data" in common catalogs, named in error messages.
SENTINELS = (-99.0, 99.0, -999.0, 999.0, -9999.0, 9999.0)


def _sentinel_hint(values: np.ndarray | None, rows: np.ndarray) -> str:
    if values is None:
        return ""
    found = sorted({float(v) for v in np.asarray(values)[rows] if float(v) in SENTINELS})
    return (
        f" ({', '.join(f'{v:g}' for v in found)} is a common no-data value: drop or fill these rows)" if found else ""
    )


def check_fluxes(
    fluxes: Any, n_rows: int, what: str, source_values: Any = None, labels: Sequence | None = None
) -> np.ndarray:
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
        raise CatalogError(
            f"{what} is NaN or infinite in rows {row_list(bad, labels)}{_sentinel_hint(source_values, bad)}"
        )
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


def fluxes_from_magnitudes(
    magnitudes: Any, zero_point: float, what: str, n_rows: int | None = None, labels: Sequence | None = None
) -> np.ndarray:
    """The fluxes of catalog magnitudes, checked by :func:`check_fluxes`.

    A magnitude of -1e30 (flux overflowing to infinity) or of -99 (a "no data" value, flux 1e50)
    is an error naming the rows (``labels``), not an infinite stamp.
    """
    magnitudes = np.asarray(magnitudes, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        fluxes = magnitude_to_flux(magnitudes, zero_point)
    return check_fluxes(
        fluxes, len(fluxes) if n_rows is None else n_rows, what, source_values=magnitudes, labels=labels
    )


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
        return float(zero_point)  # type: ignore[arg-type]  # a numpy or Python scalar
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
        raise ValueError(f"mag= needs a finite zero_point= (the model states none), got {zero_point!r}")
    values, what = _values(catalog, mag, "magnitude")
    if values.shape == (n_rows,):
        bad = ~np.isfinite(values)
        if bad.any():
            raise CatalogError(f"{what} is NaN or infinite in rows {row_list(bad)}")
    return fluxes_from_magnitudes(values, zero_point, what, n_rows=n_rows)


def band_count(metadata: Mapping) -> int:
    """``B``: the number of bands of a model's stamps (1 without ``bands``)."""
    return len(metadata["bands"]) if metadata.get("bands") else 1


class BandMagnitude(NamedTuple):
    """One band's AB magnitude as a linear combination of the model's conditions."""

    terms: Mapping[int, float]  # {condition index: coefficient}
    zero_point: float

    def of(self, conditions: np.ndarray) -> np.ndarray:
        """``[N]`` the magnitude of ``[N, C]`` conditions."""
        conditions = np.asarray(conditions, dtype=np.float64)
        magnitude = np.zeros(len(conditions))
        for index, coefficient in self.terms.items():
            magnitude += coefficient * conditions[:, index]
        return magnitude

    def describe(self, specs: Sequence[Mapping]) -> str:
        """How the catalog gives it, for messages (``the catalog's 'mag_auto'``)."""
        if len(self.terms) == 1 and next(iter(self.terms.values())) == 1.0:
            return f"the catalog's '{specs[next(iter(self.terms))]['name']}'"
        return (
            "the catalog's magnitude and colours ("
            + " ".join(f"{'+' if c > 0 else '-'} {specs[i]['name']}" for i, c in self.terms.items()).lstrip("+ ")
            + ")"
        )


def band_magnitude_terms(metadata: Mapping) -> dict[int, dict[int, float]] | None:
    """How a multi-band model's magnitude and colour conditions give every band's AB magnitude.

    A condition in ``"mag"`` named ``mag_<band>`` is that band's magnitude, one named
    ``color_<a>_<b>`` (or ``colour_<a>_<b>``) the colour ``m_a - m_b``. Starting from the
    magnitudes, the colours carry the magnitude from band to band.

    Returns
    -------
    dict or None
        ``{band index: {condition index: coefficient}}`` (``m_b = sum coefficient * condition``)
        when these conditions give every band, else ``None``.
    """
    names = [band["name"] for band in metadata["bands"]]
    terms: dict[str, dict[int, float]] = {}
    colours = []
    for index, condition in enumerate(metadata["conditions"]):
        if condition.get("unit") != "mag":
            continue
        parts = condition["name"].split("_")
        if len(parts) == 2 and parts[0] == "mag" and parts[1] in names:
            terms.setdefault(parts[1], {index: 1.0})
        elif len(parts) == 3 and parts[0] in ("color", "colour") and parts[1] in names and parts[2] in names:
            colours.append((index, parts[1], parts[2]))
    progress = True
    while progress:
        progress = False
        for index, blue, red in colours:
            if red in terms and blue not in terms:  # m_blue = m_red + colour
                terms[blue] = {**terms[red], index: terms[red].get(index, 0.0) + 1.0}
                progress = True
            elif blue in terms and red not in terms:  # m_red = m_blue - colour
                terms[red] = {**terms[blue], index: terms[blue].get(index, 0.0) - 1.0}
                progress = True
    if len(terms) < len(names):
        return None
    return {names.index(name): coefficients for name, coefficients in terms.items()}


def band_magnitudes(metadata: Mapping) -> list[BandMagnitude] | None:
    """Each band's magnitude from the model's conditions, or ``None`` where some band has none.

    A single-band model's magnitude is its first condition in ``"mag"``, with the metadata's
    ``zero_point``; a multi-band model's are :func:`band_magnitude_terms`, with each band's
    zero point.
    """
    bands = metadata.get("bands")
    if bands:
        terms = band_magnitude_terms(metadata)
        if terms is None:
            return None
        return [BandMagnitude(terms[b], float(band["zero_point"])) for b, band in enumerate(bands)]
    zero_point = metadata.get("zero_point")
    if zero_point is None:
        return None
    for index, condition in enumerate(metadata["conditions"]):
        if condition.get("unit") == "mag":
            return [BandMagnitude({index: 1.0}, float(zero_point))]
    return None


def _band_arguments(bands: Sequence[str], flux: Any, mag: Any, zero_point: Any) -> dict[str, dict]:
    """``flux=``, ``mag=`` and ``zero_point=`` of a multi-band model, checked: ``{role: {band: value}}``."""
    given: dict[str, dict] = {}
    for role, values in (("flux", flux), ("mag", mag), ("zero_point", zero_point)):
        if values is None:
            given[role] = {}
            continue
        if not isinstance(values, Mapping):
            item = "value" if role == "zero_point" else "column"
            raise ValueError(
                f"a multi-band model takes {role}= as a dict {{band: {item}}} over its bands "
                f"{list(bands)}, got {type(values).__name__}"
            )
        unknown = sorted(set(values) - set(bands))
        if unknown:
            raise ValueError(f"{role}= names unknown band(s) {unknown}; the model's bands are {list(bands)}")
        empty = sorted(band for band, value in values.items() if value is None)
        if empty:
            raise ValueError(
                f"{role}= gives None for band(s) {empty}: give a column name or values "
                "for each band named, or leave the band out"
            )
        given[role] = dict(values)
    both = sorted(set(given["flux"]) & set(given["mag"]))
    if both:
        raise ValueError(f"band(s) {both} are given both flux= and mag=; give one per band")
    stray = sorted(set(given["zero_point"]) - set(given["mag"]))
    if stray:
        raise ValueError(f"zero_point= for band(s) {stray} without mag= for them")
    return given


def catalog_band_fluxes(
    catalog: Any, n_rows: int, metadata: Mapping, flux: Any = None, mag: Any = None, zero_point: Any = None
) -> np.ndarray | None:
    """The ``[N, B]`` fluxes a catalog gives the sampled galaxies (NaN: a band it does not give).

    Parameters
    ----------
    catalog : astropy.table.Table, dict, numpy structured array, ...
        The catalog being sampled.
    n_rows : int
        Number of galaxies.
    metadata : dict
        The model's metadata (``zero_point``, or ``bands`` with theirs).
    flux, mag : str, array_like or dict, optional
        A single-band model: a flux (magnitude) column name or one value per row, as
        :func:`catalog_fluxes`. A multi-band model: ``{band name: column name or values}``;
        bands left out keep the model's flux, and a band may appear in only one of them.
    zero_point : float or dict, optional
        Zero point of ``mag`` (multi-band: ``{band: zero point}``); by default the model's
        (each band's).

    Returns
    -------
    numpy.ndarray or None
        ``None`` when neither ``flux`` nor ``mag`` is given.

    Raises
    ------
    ValueError
        When the arguments do not fit together or name unknown bands.
    CatalogError
        As :func:`catalog_fluxes`.
    """
    bands = metadata.get("bands")
    if not bands:
        fluxes = catalog_fluxes(catalog, n_rows, flux, mag, zero_point, metadata.get("zero_point"))
        return None if fluxes is None else fluxes[:, None]
    names = [band["name"] for band in bands]
    given = _band_arguments(names, flux, mag, zero_point)
    if not given["flux"] and not given["mag"]:
        return None
    result = np.full((n_rows, len(names)), np.nan)
    for index, band in enumerate(bands):
        name = band["name"]
        if name in given["flux"]:
            result[:, index] = catalog_fluxes(catalog, n_rows, flux=given["flux"][name])
        elif name in given["mag"]:
            result[:, index] = catalog_fluxes(
                catalog,
                n_rows,
                mag=given["mag"][name],
                zero_point=given["zero_point"].get(name),
                default_zero_point=float(band["zero_point"]),
            )
    return result


def set_fluxes(images: np.ndarray, fluxes: np.ndarray | None) -> np.ndarray:
    """Rescale each stamp, in each band, to its flux; NaN fluxes (or ``fluxes=None``) leave it alone.

    Parameters
    ----------
    images : numpy.ndarray
        ``[N, S, S, B]`` stamps (``[N, S, S]``: one band).
    fluxes : numpy.ndarray, optional
        ``[N, B]`` (``[N]``) fluxes.

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
    totals = images.sum(axis=(1, 2), dtype=np.float64)
    empty = rows & ~(np.isfinite(totals) & (totals > 0))
    if empty.any():
        raise CatalogError(f"the model's stamps of rows {row_list(_any_band(empty))} have no flux to rescale")
    scale = np.where(rows, fluxes / np.where(rows, totals, 1.0), 1.0).astype(np.float32)
    images *= scale[:, None, None]
    sums = images.sum(axis=(1, 2), dtype=np.float64)
    broken = rows & ~(np.isfinite(images).all(axis=(1, 2)) & (sums > 0))
    if broken.any():
        raise CatalogError(
            f"rescaled to their catalog flux, the stamps of rows {row_list(_any_band(broken))} are "
            "not finite or hold no flux in float32"
        )
    return images


def _any_band(mask: np.ndarray) -> np.ndarray:
    return mask if mask.ndim == 1 else np.asarray(mask.any(axis=1))
