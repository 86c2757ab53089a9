"""Colour measurements of multi-band galaxy profiles: total colours, colour gradients, size ratios.

All measurements here are made on stacks ``[N, S, S, B]`` (band last, as multi-band data sets
and models store them) of noiseless, PSF-free profiles, except :func:`observed_photometry`,
which measures noisy observed stamps (the real AEGIS check, :mod:`.aegis`):

- magnitudes and colours from the total flux of each stamp, AB with each band's zero point
  (``colour = m_blue - m_red``: larger is redder);
- half-light radii from the curve of growth in circular apertures about the reference band's
  centroid (pixels are split into sub-pixels so that apertures cut them in proportion);
- colour gradients: the colour inside the reference band's half-light radius minus the colour
  outside it, both about the reference centroid. A galaxy with a red centre (a bulge) and a
  bluer disc has a *positive* gradient; a galaxy whose bands share one profile has zero;
- band-to-band size ratios ``r_b / r_ref``.

:func:`no_gradient_profiles` builds the parametric comparison population without colour
gradients: each galaxy's reference-band image scaled to every band's total flux.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import Table

__all__ = [
    "DEFAULT_OVERSAMPLE",
    "band_magnitudes",
    "centroid",
    "curve_of_growth",
    "half_light_radius",
    "aperture_weights",
    "measure_colours",
    "colour_pairs",
    "no_gradient_profiles",
    "compare_colours",
    "observed_photometry",
]

#: Sub-pixels per pixel side used for aperture fractions and curves of growth.
DEFAULT_OVERSAMPLE = 4


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------
def _as_band_stack(images: Any, n_bands: int | None = None, name: str = "images") -> np.ndarray:
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 3:
        array = array[np.newaxis]
    if array.ndim != 4 or array.shape[1] < 4 or array.shape[2] < 4:
        raise ValueError(
            f"{name} must be an array [N, S, S, B] of multi-band stamps (band last), got shape {np.shape(images)}"
        )
    if n_bands is not None and array.shape[-1] != n_bands:
        raise ValueError(f"{name} have {array.shape[-1]} bands on their last axis, expected {n_bands}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} hold non-finite pixels")
    return array


def _band_index(names: Sequence[str], band: str, what: str = "band") -> int:
    try:
        return list(names).index(band)
    except ValueError:
        raise ValueError(f"{what} {band!r} is not one of the bands {list(names)}") from None


def colour_pairs(bands: Sequence[str]) -> list[tuple[str, str]]:
    """Neighbouring band pairs ``(blue, red)`` in the given (increasing wavelength) order."""
    return list(zip(list(bands)[:-1], list(bands)[1:]))


def centroid(image: np.ndarray) -> tuple[float, float]:
    """First moments ``(y, x)`` in pixel indices of the positive part of a stamp.

    A stamp without positive pixels gives the stamp centre.
    """
    image = np.clip(np.asarray(image, dtype=np.float64), 0, None)
    total = image.sum()
    if not total > 0:
        return (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
    ys, xs = np.indices(image.shape)
    return float((ys * image).sum() / total), float((xs * image).sum() / total)


def _subpixel_radii(shape: tuple[int, int], centre: tuple[float, float], oversample: int) -> np.ndarray:
    """Distance ``[ny, nx, o*o]`` of each sub-pixel centre from ``centre`` (pixel units)."""
    offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
    ys = np.arange(shape[0])[:, None] + offsets[None, :] - centre[0]  # [ny, o]
    xs = np.arange(shape[1])[:, None] + offsets[None, :] - centre[1]  # [nx, o]
    r2 = ys[:, None, :, None] ** 2 + xs[None, :, None, :] ** 2  # [ny, nx, o, o]
    return np.sqrt(r2).reshape(shape[0], shape[1], oversample * oversample)


def aperture_weights(
    shape: tuple[int, int], centre: tuple[float, float], radius: float, oversample: int = DEFAULT_OVERSAMPLE
) -> np.ndarray:
    """Fraction of each pixel inside a circle of ``radius`` pixels about ``centre`` (y, x)."""
    if not radius >= 0:
        raise ValueError(f"aperture radius must be non-negative, got {radius}")
    return (_subpixel_radii(shape, centre, oversample) <= radius).mean(axis=-1)


def curve_of_growth(
    image: np.ndarray, centre: tuple[float, float], oversample: int = DEFAULT_OVERSAMPLE
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted sub-pixel radii (pixels) and the flux enclosed within each of them."""
    image = np.asarray(image, dtype=np.float64)
    radii = _subpixel_radii(image.shape, centre, oversample).ravel()
    values = np.repeat(image.ravel() / oversample**2, oversample * oversample)
    order = np.argsort(radii, kind="stable")
    return radii[order], np.cumsum(values[order])


def half_light_radius(
    image: np.ndarray,
    centre: tuple[float, float] | None = None,
    *,
    total: float | None = None,
    oversample: int = DEFAULT_OVERSAMPLE,
) -> float:
    """Radius (pixels) of the circle about ``centre`` that encloses half of ``total``.

    Parameters
    ----------
    image : numpy.ndarray
        One stamp ``[ny, nx]``.
    centre : (float, float), optional
        ``(y, x)`` in pixel indices; by default the stamp's :func:`centroid`.
    total : float, optional
        The total flux; by default the sum of the stamp.
    oversample : int, optional
        Sub-pixels per pixel side.

    Returns
    -------
    float
        The first radius at which the curve of growth reaches half the total (linearly
        interpolated between sub-pixels); NaN when the total is not positive.
    """
    image = np.asarray(image, dtype=np.float64)
    centre = centroid(image) if centre is None else centre
    total = float(image.sum()) if total is None else float(total)
    if not total > 0:
        return math.nan
    return _half_light(*curve_of_growth(image, centre, oversample), total)


def _half_light(radii: np.ndarray, enclosed: np.ndarray, total: float) -> float:
    """First radius where the curve of growth ``enclosed(radii)`` reaches ``total / 2``."""
    if not total > 0:
        return math.nan
    above = np.flatnonzero(enclosed >= 0.5 * total)
    if len(above) == 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(radii[0])
    r0, r1, f0, f1 = radii[i - 1], radii[i], enclosed[i - 1], enclosed[i]
    return float(r0 + (0.5 * total - f0) / (f1 - f0) * (r1 - r0)) if f1 > f0 else float(r1)


def band_magnitudes(images: Any, zero_points: Sequence[float] | np.ndarray) -> np.ndarray:
    """AB magnitudes ``[N, B]`` of the total flux of each stamp (NaN where it is not positive)."""
    points = np.asarray(zero_points, dtype=np.float64)
    stack = _as_band_stack(images, len(points))
    flux = stack.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, points - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)


def _mag(flux: np.ndarray | float, zero_point: float) -> np.ndarray:
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, zero_point - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)


# ----------------------------------------------------------------------------------------
# Noiseless profiles
# ----------------------------------------------------------------------------------------
def measure_colours(
    images: Any,
    bands: Sequence[str],
    zero_points: Sequence[float] | np.ndarray,
    *,
    reference: str = "f814w",
    pixel_scale: float = 1.0,
    oversample: int = DEFAULT_OVERSAMPLE,
) -> Table:
    """Colours, colour gradients and half-light radii of noiseless multi-band profiles.

    Parameters
    ----------
    images : array-like
        ``[N, S, S, B]`` noiseless profiles (band last), in each band's flux units.
    bands : sequence of str
        Band names of the last axis, in increasing wavelength.
    zero_points : sequence of float
        AB zero point of each band: ``m = zp - 2.5 log10(flux)``.
    reference : str, optional
        The band whose centroid and half-light radius define the apertures.
    pixel_scale : float, optional
        Arcsec per pixel: radii are given in arcsec (1 gives pixels).
    oversample : int, optional
        Sub-pixels per pixel side of the apertures.

    Returns
    -------
    astropy.table.Table
        One row per galaxy: ``mag_<b>`` (total), ``hlr_<b>`` (half-light radius about the
        reference centroid, arcsec), ``color_<b1>_<b2>`` (total ``m_b1 - m_b2`` for neighbouring
        bands), ``grad_<b1>_<b2>`` (colour inside the reference half-light radius minus colour
        outside it), ``ratio_<b>`` (``hlr_<b> / hlr_<reference>``, other bands) and ``ok``
        (every value finite). Failed values are NaN.
    """
    bands = [str(b) for b in bands]
    zero_points = np.asarray(zero_points, dtype=np.float64)
    if len(zero_points) != len(bands):
        raise ValueError(f"{len(bands)} bands {bands} but {len(zero_points)} zero points")
    stack = _as_band_stack(images, len(bands))
    ref = _band_index(bands, reference, "reference band")
    if not pixel_scale > 0:
        raise ValueError(f"pixel_scale must be positive, got {pixel_scale}")
    n = len(stack)
    mags = band_magnitudes(stack, zero_points)
    hlr = np.full((n, len(bands)), math.nan)
    inner = np.full((n, len(bands)), math.nan)
    outer = np.full((n, len(bands)), math.nan)
    for i in range(n):
        centre = centroid(stack[i, ..., ref])
        radii = _subpixel_radii(stack.shape[1:3], centre, oversample).ravel()
        order = np.argsort(radii, kind="stable")
        radii = radii[order]
        pixel_of = order // (oversample * oversample)  # sub-pixel -> pixel (row-major)
        for b in range(len(bands)):
            values = stack[i, ..., b].ravel() / oversample**2
            hlr[i, b] = _half_light(radii, np.cumsum(values[pixel_of]), float(stack[i, ..., b].sum()))
        if np.isfinite(hlr[i, ref]):
            weights = aperture_weights(stack.shape[1:3], centre, hlr[i, ref], oversample)
            inside = np.einsum("yx,yxb->b", weights, stack[i])
            inner[i] = inside
            outer[i] = stack[i].sum(axis=(0, 1)) - inside
    table = Table()
    for b, band in enumerate(bands):
        table[f"mag_{band}"] = mags[:, b]
    for b, band in enumerate(bands):
        table[f"hlr_{band}"] = hlr[:, b] * pixel_scale
    for blue, red in colour_pairs(bands):
        i, j = bands.index(blue), bands.index(red)
        table[f"color_{blue}_{red}"] = mags[:, i] - mags[:, j]
    for blue, red in colour_pairs(bands):
        i, j = bands.index(blue), bands.index(red)
        inside = _mag(inner[:, i], zero_points[i]) - _mag(inner[:, j], zero_points[j])
        outside = _mag(outer[:, i], zero_points[i]) - _mag(outer[:, j], zero_points[j])
        table[f"grad_{blue}_{red}"] = inside - outside
    for b, band in enumerate(bands):
        if b != ref:
            with np.errstate(divide="ignore", invalid="ignore"):
                table[f"ratio_{band}"] = hlr[:, b] / hlr[:, ref]
    values = np.stack([np.asarray(table[c], dtype=np.float64) for c in table.colnames], axis=1)
    table["ok"] = np.isfinite(values).all(axis=1)
    return table


def no_gradient_profiles(images: Any, reference_index: int) -> np.ndarray:
    """Each galaxy's reference-band profile scaled to the total flux of every band.

    The result has the colours of ``images`` but no colour gradient: every band has the
    reference band's shape (size ratio 1).

    Parameters
    ----------
    images : array-like
        ``[N, S, S, B]`` profiles.
    reference_index : int
        Index of the reference band on the last axis.

    Returns
    -------
    numpy.ndarray
        ``[N, S, S, B]``; galaxies whose reference flux is not positive are all zero.
    """
    stack = _as_band_stack(images)
    if not -stack.shape[-1] <= reference_index < stack.shape[-1]:
        raise ValueError(f"reference_index {reference_index} out of range for {stack.shape[-1]} bands")
    reference = stack[..., reference_index]
    ref_flux = reference.sum(axis=(1, 2))
    flux = stack.sum(axis=(1, 2))  # [N, B]
    scale = np.where(ref_flux[:, None] > 0, flux / np.where(ref_flux > 0, ref_flux, 1.0)[:, None], 0.0)
    return reference[..., None] * scale[:, None, None, :]


# ----------------------------------------------------------------------------------------
# Comparisons
# ----------------------------------------------------------------------------------------
def _summary(truth: np.ndarray, other: np.ndarray) -> tuple[float, ...]:
    ok = np.isfinite(truth) & np.isfinite(other)
    if ok.sum() < 2:
        return (math.nan,) * 6
    t, o = truth[ok], other[ok]
    d = o - t
    return (
        float(t.mean()),
        float(o.mean()),
        float(o.mean() - t.mean()),
        float(t.std(ddof=1)),
        float(o.std(ddof=1)),
        float(d.std(ddof=1)),
    )


def compare_colours(
    truth: Table,
    others: Mapping[str, Table],
    columns: Sequence[str],
    *,
    n_bootstrap: int = 500,
    rng: np.random.Generator | int | None = None,
) -> Table:
    """Compare colour statistics of samples with the truth, galaxy by galaxy.

    Row ``i`` of every table is the same galaxy (its mock, its no-gradient counterpart), so
    bootstrap resamples take the same rows of all samples.

    Parameters
    ----------
    truth : astropy.table.Table
        :func:`measure_colours` of the truth.
    others : mapping
        ``{sample: table}`` of the same galaxies.
    columns : sequence of str
        Columns to compare (``color_*``, ``grad_*``, ``ratio_*``...).
    n_bootstrap : int, optional
        Bootstrap resamples of the galaxies for the uncertainties.
    rng : numpy.random.Generator or int, optional
        Source of the resampling.

    Returns
    -------
    astropy.table.Table
        One row per sample and column: ``sample``, ``statistic``, ``n``, ``mean_truth``,
        ``mean_other``, ``mean_diff`` (other - truth), ``mean_diff_err`` (bootstrap standard
        deviation), ``mean_truth_err`` (bootstrap standard deviation of the truth mean),
        ``scatter_truth``, ``scatter_other``, ``scatter_diff`` (standard deviation of the
        per-galaxy difference), ``scatter_other_err`` and ``scatter_diff_err`` (bootstrap standard
        deviations). Rows with a NaN in either sample are left out.
    """
    rng = np.random.default_rng(rng)
    n_rows = len(truth)
    for sample, table in others.items():
        if len(table) != n_rows:
            raise ValueError(f"sample {sample!r} has {len(table)} galaxies, the truth {n_rows}")
    resamples = [rng.integers(0, n_rows, n_rows) for _ in range(int(n_bootstrap))]
    rows = []
    for sample, table in others.items():
        for column in columns:
            if column not in truth.colnames or column not in table.colnames:
                raise KeyError(f"statistic {column!r} is not a column of the colour tables")
            t = np.asarray(truth[column], dtype=np.float64)
            o = np.asarray(table[column], dtype=np.float64)
            values = _summary(t, o)
            boot = np.array([_summary(t[r], o[r]) for r in resamples]).reshape(-1, 6)
            if len(boot) > 1:
                with np.errstate(invalid="ignore"):
                    errors = np.nanstd(boot, axis=0, ddof=1)
            else:
                errors = np.full(6, math.nan)
            n_ok = int((np.isfinite(t) & np.isfinite(o)).sum())
            rows.append(
                (
                    sample,
                    column,
                    n_ok,
                    values[0],
                    values[1],
                    values[2],
                    float(errors[2]),
                    float(errors[0]),
                    values[3],
                    values[4],
                    values[5],
                    float(errors[4]),
                    float(errors[5]),
                )
            )
    return Table(
        rows=rows,
        names=(
            "sample",
            "statistic",
            "n",
            "mean_truth",
            "mean_other",
            "mean_diff",
            "mean_diff_err",
            "mean_truth_err",
            "scatter_truth",
            "scatter_other",
            "scatter_diff",
            "scatter_other_err",
            "scatter_diff_err",
        ),
        dtype=(str, str, int) + (float,) * 10,
    )


# ----------------------------------------------------------------------------------------
# Observed (noisy) stamps
# ----------------------------------------------------------------------------------------
def _smoothed_border_noise(stamp: np.ndarray, smoothing: float = 1.0, width: int = 3) -> float:
    """White-noise rms that would give the border noise of the stamp smoothed by ``smoothing`` px."""
    from scipy import ndimage

    from galsim_hub.training.validation.statistics import _smoothing_noise_factor

    if min(stamp.shape) <= 2 * width + 2:
        return 0.0
    smoothed = ndimage.gaussian_filter(stamp, smoothing)
    border = np.concatenate(
        [
            smoothed[:width].ravel(),
            smoothed[-width:].ravel(),
            smoothed[width:-width, :width].ravel(),
            smoothed[width:-width, -width:].ravel(),
        ]
    )
    mad = 1.4826 * float(np.median(np.abs(border - np.median(border))))
    return mad / _smoothing_noise_factor(smoothing)


def observed_photometry(
    images: Sequence[np.ndarray],
    noise_sigmas: Sequence[float],
    zero_points: Sequence[float],
    *,
    reference: int = -1,
    nsigma: float = 1.5,
    grow: int = 3,
    oversample: int = DEFAULT_OVERSAMPLE,
) -> dict[str, Any]:
    """Noise-robust fluxes and half-light radii of one galaxy observed in several bands.

    The aperture is the union of the central source's footprint in every band
    (:func:`galsim_hub.training.validation.statistics.central_segmap` at ``nsigma`` on the smoothed
    stamp), grown by ``grow`` pixels: pixels outside it (noise, neighbours) are set to zero.
    Correlated noise has a larger rms once smoothed than white noise of the same variance: the
    detection uses the larger of ``noise_sigmas`` and the white-equivalent rms measured on the
    smoothed stamp's border (median absolute deviation), so real and simulated stamps with
    correlated noise get footprints of the same significance.
    Fluxes are the sums within it; half-light radii come from the curve of growth of the
    masked stamps about the reference band's centroid (of its masked, positive pixels).

    Parameters
    ----------
    images : sequence of numpy.ndarray
        The galaxy's background-subtracted stamps, one ``[ny, nx]`` per band, same shape and
        registered.
    noise_sigmas : sequence of float
        Pixel noise rms of each stamp.
    zero_points : sequence of float
        AB zero point of each band.
    reference : int, optional
        Index of the band that defines the centre.
    nsigma : float, optional
        Detection threshold of the footprints.
    grow : int, optional
        Pixels by which the union of footprints is dilated.
    oversample : int, optional
        Sub-pixels per pixel side of the curve of growth.

    Returns
    -------
    dict
        ``flux`` and ``mag`` (per band), ``hlr`` (per band, pixels), ``centre`` (y, x),
        ``n_pixels`` (aperture size); NaN values when nothing is detected.
    """
    from scipy import ndimage

    from galsim_hub.training.validation.statistics import central_segmap

    stamps = [np.asarray(image, dtype=np.float64) for image in images]
    if len({s.shape for s in stamps}) != 1:
        raise ValueError(f"the bands' stamps differ in shape: {[s.shape for s in stamps]}")
    if not (len(stamps) == len(noise_sigmas) == len(zero_points)):
        raise ValueError("give one noise rms and one zero point per band")
    footprint = np.zeros(stamps[0].shape, dtype=bool)
    for stamp, sigma in zip(stamps, noise_sigmas):
        footprint |= central_segmap(stamp, max(float(sigma), _smoothed_border_noise(stamp)), nsigma=nsigma)
    n_bands = len(stamps)
    if not footprint.any():
        return {
            "flux": np.full(n_bands, math.nan),
            "mag": np.full(n_bands, math.nan),
            "hlr": np.full(n_bands, math.nan),
            "centre": (math.nan, math.nan),
            "n_pixels": 0,
        }
    if grow > 0:
        footprint = ndimage.binary_dilation(footprint, iterations=int(grow))
    masked = [np.where(footprint, stamp, 0.0) for stamp in stamps]
    centre = centroid(masked[reference])
    flux = np.array([m.sum() for m in masked])
    hlr = np.array([half_light_radius(m, centre, oversample=oversample) for m in masked])
    mag = np.array([float(_mag(f, zp)) for f, zp in zip(flux, zero_points)])
    return {"flux": flux, "mag": mag, "hlr": hlr, "centre": centre, "n_pixels": int(footprint.sum())}
