"""Validation of generative galaxy models against real galaxies.

Following Lanusse et al. (2021, MNRAS 504, 5543, sec. 5), three samples of the same
galaxies are drawn with the same PSF and the same noise (the data set's noise power
spectrum when it has one):

- ``real``: the held-out noiseless profiles of a data set (``truth``);
- ``parametric``: their smooth counterparts without knots (``truth_smooth``);
- ``mock``: the generative model conditioned on the real galaxies' catalog columns.

Each sample is measured with HSM adaptive moments (flux, size ``sigma``, ellipticity
``g``) and with statmorph (Gini, M20 and the MID statistics: multimode ``M``, intensity
``I``, deviation ``D``). The mock and parametric distributions are compared with the real
one (mean difference, Wasserstein distance, Kolmogorov-Smirnov statistic), the per-galaxy
size and magnitude residuals of mock versus real are binned in the conditions, figures are
drawn and a markdown report lists the targets with PASS/FAIL.

Command line::

    python -m galsim_hub.training validate MODEL --data DIR --out DIR [--n N] [--seed S] [--jobs J]
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import galsim
import numpy as np
from astropy.table import Table
from scipy import ndimage, stats

from galsim_hub.errors import CatalogError, GalSimHubError, MetadataError

__all__ = [
    "HSM_COLUMNS",
    "MORPH_COLUMNS",
    "STAT_COLUMNS",
    "SAMPLES",
    "TARGETS",
    "central_segmap",
    "measure_statistics",
    "draw_observed",
    "compare_samples",
    "conditional_residuals",
    "reconstruction_check",
    "evaluate_targets",
    "targets_markdown",
    "make_figures",
    "write_report",
    "run_validation",
    "main",
]

HSM_COLUMNS = ("flux", "sigma", "g1", "g2", "g")
MORPH_COLUMNS = ("gini", "m20", "multimode", "intensity", "deviation")
STAT_COLUMNS = HSM_COLUMNS + MORPH_COLUMNS
SAMPLES = ("real", "parametric", "mock")

# Statistics whose mean difference is reported relative to the real mean.
RELATIVE_COLUMNS = ("sigma", "g")

# Thresholds of the validation targets (Lanusse et al. 2021, sec. 5).
TARGETS = {
    "mean_size_relative": 0.02,
    "mean_g_relative": 0.02,
    "size_scatter": 0.25,
    "mag_scatter": 0.3,
}

# Conditions in which the residuals are binned when the data set has them.
RESIDUAL_CONDITIONS = ("mag_auto", "flux_radius")
GALLERY_SIZE = 8  # stamps per sample in gallery.png

_LABELS = {
    "flux": "flux",
    "sigma": r"$\sigma$ [arcsec]",
    "g1": "$g_1$",
    "g2": "$g_2$",
    "g": "$|g|$",
    "gini": "Gini",
    "m20": "$M_{20}$",
    "multimode": "M (multimode)",
    "intensity": "I (intensity)",
    "deviation": "D (deviation)",
}
_COLOURS = {"real": "k", "parametric": "tab:orange", "mock": "tab:blue"}


# ----------------------------------------------------------------------------------------
# Per-image statistics
# ----------------------------------------------------------------------------------------
def _as_image_stack(images: Any, name: str = "images") -> np.ndarray:
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or array.shape[1] < 4 or array.shape[2] < 4:
        raise ValueError(f"{name} must be an array [N, ny, nx] of stamps, got shape {np.shape(images)}")
    bad = ~np.isfinite(array).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"{name} hold non-finite pixels in stamps {np.flatnonzero(bad)[:10].tolist()}")
    return array


def _per_image(value: Any, n: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(n, float(array))
    if array.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have one value per image ({n}), got shape {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    return array


def _border_noise(images: np.ndarray, width: int = 2) -> np.ndarray:
    """Robust noise rms of each stamp from its outer ``width`` pixels (MAD)."""
    border = np.ones(images.shape[1:], dtype=bool)
    border[width:-width, width:-width] = False
    pixels = images[:, border]
    mad = np.median(np.abs(pixels - np.median(pixels, axis=1, keepdims=True)), axis=1)
    return 1.4826 * mad


def _smoothing_noise_factor(smoothing: float) -> float:
    """Factor by which a Gaussian filter of ``smoothing`` pixels scales white-noise rms."""
    half = int(math.ceil(4 * smoothing)) + 1
    delta = np.zeros((2 * half + 1, 2 * half + 1))
    delta[half, half] = 1.0
    return float(np.sqrt(np.sum(ndimage.gaussian_filter(delta, smoothing) ** 2)))


def central_segmap(image: np.ndarray, noise_sigma: float, *, nsigma: float = 2.0,
                   smoothing: float = 1.0) -> np.ndarray:
    """Segmentation map of the source at the centre of a stamp.

    The stamp is smoothed with a Gaussian of ``smoothing`` pixels, thresholded at
    ``nsigma`` times the rms of the smoothed noise (and at least at 1e-3 of the smoothed
    peak, so that noiseless stamps get a finite footprint), and the connected component
    closest to the stamp centre is kept with its holes filled.

    Parameters
    ----------
    image : `numpy.ndarray`
        One stamp ``[ny, nx]``, background subtracted.
    noise_sigma : float
        Rms of the pixel noise of ``image``.
    nsigma : float, optional
        Detection threshold in units of the smoothed noise rms.
    smoothing : float, optional
        Gaussian smoothing scale in pixels (0 for none).

    Returns
    -------
    segmap : `numpy.ndarray` of bool
        True on the pixels of the central source; all False if nothing is detected.
    """
    image = np.asarray(image, dtype=np.float64)
    if smoothing > 0:
        smoothed = ndimage.gaussian_filter(image, smoothing)
        noise = noise_sigma * _smoothing_noise_factor(smoothing)
    else:
        smoothed, noise = image, noise_sigma
    peak = smoothed.max()
    if peak <= 0:
        return np.zeros(image.shape, dtype=bool)
    labels, count = ndimage.label(smoothed > max(nsigma * noise, 1e-3 * peak))
    if count == 0:
        return np.zeros(image.shape, dtype=bool)
    ys, xs = np.nonzero(labels)
    centre_y, centre_x = (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
    nearest = np.argmin((ys - centre_y) ** 2 + (xs - centre_x) ** 2)
    return ndimage.binary_fill_holes(labels == labels[ys[nearest], xs[nearest]])


def _hsm_moments(image: np.ndarray, pixel_scale: float) -> tuple[float, float, float, float, bool]:
    """Flux, sigma (arcsec), g1, g2 and success flag of HSM adaptive moments.

    A fit that converges to a negative amplitude (a negative source) is a failure too.
    """
    try:
        result = galsim.hsm.FindAdaptiveMom(galsim.Image(image, scale=pixel_scale), strict=False)
    except (galsim.GalSimError, RuntimeError, ValueError):
        return (math.nan,) * 4 + (False,)
    if result.moments_status != 0:
        return (math.nan,) * 4 + (False,)
    shape = result.observed_shape
    values = (result.moments_amp, result.moments_sigma * pixel_scale, shape.g1, shape.g2)
    if not (np.isfinite(values).all() and values[0] > 0 and values[1] > 0):
        return (math.nan,) * 4 + (False,)
    return values + (True,)


def _morphology_one(task: tuple[np.ndarray, np.ndarray, float, dict]) -> tuple[tuple[float, ...], int, bool]:
    """Gini, M20, M, I, D of one stamp with statmorph; failures give NaN and ok=False."""
    import statmorph

    image, segmap, noise_sigma, kwargs = task
    failed = ((math.nan,) * len(MORPH_COLUMNS), -1, False)
    if not segmap.any():
        return failed
    kwargs = dict(kwargs)
    if "gain" not in kwargs and "weightmap" not in kwargs:
        # Sky-dominated noise; a floor keeps the weights finite on noiseless stamps.
        floor = 1e-6 * float(np.abs(image).max()) or 1e-12
        kwargs["weightmap"] = np.full(image.shape, max(noise_sigma, floor))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            morph = statmorph.source_morphology(image, segmap.astype(np.int32), **kwargs)[0]
            values = tuple(float(getattr(morph, column)) for column in MORPH_COLUMNS)
    except Exception:  # statmorph raises many kinds of errors on odd stamps: flag, never crash
        return failed
    flag = int(morph.flag)
    return values, flag, bool(flag <= 1 and np.isfinite(values).all())


def measure_statistics(images: Any, pixel_scale: float, *, noise_sigma: Any = None, segmap: Any = None,
                       n_morph: int | None = None, n_jobs: int = 1, nsigma: float = 2.0,
                       statmorph_kwargs: Mapping[str, Any] | None = None) -> Table:
    """Measure HSM moments and statmorph morphology of a stack of observed stamps.

    Parameters
    ----------
    images : array-like
        Observed (PSF-convolved, noisy, background-subtracted) stamps ``[N, ny, nx]``.
    pixel_scale : float
        Pixel scale of the stamps in arcsec.
    noise_sigma : float or array-like, optional
        Noise rms, one value or one per stamp. Estimated from the stamp borders (median
        absolute deviation) when not given.
    segmap : array-like, optional
        Source footprints, ``[ny, nx]`` shared by all stamps or ``[N, ny, nx]``; nonzero
        marks the source. By default :func:`central_segmap` at ``nsigma``.
    n_morph : int, optional
        Run statmorph on the first ``n_morph`` stamps only (the others get ``morph_ok``
        False); all stamps by default. HSM runs on every stamp.
    n_jobs : int, optional
        Number of processes for statmorph (a ``spawn`` pool when larger than 1).
    nsigma : float, optional
        Detection threshold of the default segmentation.
    statmorph_kwargs : mapping, optional
        Extra keyword arguments of `statmorph.source_morphology` (for example ``gain``,
        ``niter_bh_mid``). By default a constant weight map at ``noise_sigma`` is used.

    Returns
    -------
    table : `astropy.table.Table`
        One row per stamp: ``flux`` (HSM amplitude, image units), ``sigma`` (HSM
        determinant radius in arcsec), ``g1``, ``g2``, ``g`` (= ``|g|``), ``hsm_ok``,
        ``gini``, ``m20``, ``multimode``, ``intensity``, ``deviation``, ``morph_flag``
        (statmorph flag, -1 when it did not run or failed) and ``morph_ok``. Failed
        measurements hold NaN and a False flag.
    """
    stack = _as_image_stack(images)
    n_images = stack.shape[0]
    if not pixel_scale > 0:
        raise ValueError(f"pixel_scale must be positive, got {pixel_scale}")
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be at least 1, got {n_jobs}")
    sigmas = _border_noise(stack) if noise_sigma is None else _per_image(noise_sigma, n_images, "noise_sigma")
    n_morph = n_images if n_morph is None else int(np.clip(n_morph, 0, n_images))

    hsm = [_hsm_moments(image, pixel_scale) for image in stack]
    table = Table()
    for index, column in enumerate(("flux", "sigma", "g1", "g2")):
        table[column] = np.array([row[index] for row in hsm], dtype=np.float64)
    table["g"] = np.hypot(table["g1"], table["g2"])
    table["hsm_ok"] = np.array([row[4] for row in hsm], dtype=bool)

    if segmap is None:
        masks = [central_segmap(stack[i], sigmas[i], nsigma=nsigma) for i in range(n_morph)]
    else:
        given = np.asarray(segmap)
        if given.shape not in (stack.shape[1:], stack.shape):
            raise ValueError(f"segmap must have shape {stack.shape[1:]} or {stack.shape}, got {given.shape}")
        given = np.broadcast_to(given, stack.shape) != 0
        masks = [given[i] for i in range(n_morph)]
    tasks = [(stack[i], masks[i], float(sigmas[i]), dict(statmorph_kwargs or {})) for i in range(n_morph)]
    if n_jobs > 1 and len(tasks) > 1:
        with multiprocessing.get_context("spawn").Pool(min(n_jobs, len(tasks))) as pool:
            morphology = pool.map(_morphology_one, tasks, chunksize=max(1, len(tasks) // (4 * n_jobs)))
    else:
        morphology = [_morphology_one(task) for task in tasks]
    morphology += [((math.nan,) * len(MORPH_COLUMNS), -1, False)] * (n_images - n_morph)
    for index, column in enumerate(MORPH_COLUMNS):
        table[column] = np.array([row[0][index] for row in morphology], dtype=np.float64)
    table["morph_flag"] = np.array([row[1] for row in morphology], dtype=np.int16)
    table["morph_ok"] = np.array([row[2] for row in morphology], dtype=bool)
    return table


# ----------------------------------------------------------------------------------------
# Drawing observed stamps
# ----------------------------------------------------------------------------------------
def draw_observed(profiles: Any, pixel_scale_in: float, psf: galsim.GSObject | Sequence[galsim.GSObject],
                  pixel_scale_out: float, stamp_size_out: int, noise_sigma: Any,
                  rng: np.random.Generator | int | None = None, *, method: str = "auto",
                  noise_power: Any = None) -> np.ndarray:
    """Convolve unconvolved profile images with a PSF, draw them and add Gaussian noise.

    Parameters
    ----------
    profiles : array-like
        Unconvolved light profiles ``[N, S, S]`` in flux units per pixel (as a generative
        model outputs, or a data set's ``truth``), non-negative.
    pixel_scale_in : float
        Pixel scale of ``profiles`` in arcsec.
    psf : `galsim.GSObject` or sequence of them
        One PSF for all galaxies, or one per galaxy.
    pixel_scale_out : float
        Pixel scale of the observed stamps in arcsec.
    stamp_size_out : int
        Side of the observed stamps in pixels.
    noise_sigma : float or array-like or None
        Rms of the white Gaussian pixel noise, one value or one per galaxy (0 for none);
        None when ``noise_power`` is given.
    rng : `numpy.random.Generator` or int, optional
        Source of the noise (a seed or a generator).
    method : str, optional
        GalSim ``drawImage`` method: ``'auto'`` convolves with the pixel; use
        ``'no_pixel'`` when the PSF is an effective PSF that already contains it.
    noise_power : array-like, optional
        Power spectra of correlated Gaussian noise, ``[N, S', S' // 2 + 1]`` in
        `numpy.fft.rfft2` layout, normalised as the ``noise_ps`` of a data set
        (``E|rfft2(noise)|**2 / S'**2``: white noise of variance ``v`` has ``v`` everywhere).
        The noise is periodic on the stamp.

    Returns
    -------
    stamps : `numpy.ndarray`
        Observed stamps ``[N, stamp_size_out, stamp_size_out]`` (float64). Profiles with zero
        total flux give pure noise.
    """
    stack = _as_image_stack(profiles, "profiles")
    n_images = stack.shape[0]
    if not (pixel_scale_in > 0 and pixel_scale_out > 0):
        raise ValueError(f"pixel scales must be positive, got {pixel_scale_in} and {pixel_scale_out}")
    if int(stamp_size_out) != stamp_size_out or stamp_size_out < 4:
        raise ValueError(f"stamp_size_out must be an integer of at least 4, got {stamp_size_out}")
    psfs = [psf] * n_images if isinstance(psf, galsim.GSObject) else list(psf)
    if len(psfs) != n_images or not all(isinstance(p, galsim.GSObject) for p in psfs):
        raise ValueError(f"psf must be a galsim.GSObject or a sequence of {n_images} of them")
    size = int(stamp_size_out)
    if (noise_power is None) == (noise_sigma is None):
        raise ValueError("give exactly one of noise_sigma and noise_power")
    if noise_power is not None:
        noise_power = np.asarray(noise_power, dtype=np.float64)
        if noise_power.shape != (n_images, size, size // 2 + 1):
            raise ValueError(f"noise_power must have shape {(n_images, size, size // 2 + 1)}, "
                             f"got {noise_power.shape}")
        if not np.isfinite(noise_power).all() or (noise_power < 0).any():
            raise ValueError("noise_power must be finite and non-negative")
    else:
        sigmas = _per_image(noise_sigma, n_images, "noise_sigma")
    rng = np.random.default_rng(rng)
    stamps = np.zeros((n_images, size, size))
    for index in range(n_images):
        if stack[index].sum() <= 0:
            continue
        galaxy = galsim.InterpolatedImage(galsim.Image(stack[index], scale=pixel_scale_in))
        stamps[index] = galsim.Convolve(galaxy, psfs[index]).drawImage(
            nx=size, ny=size, scale=pixel_scale_out, method=method).array
    white = rng.standard_normal(stamps.shape)
    if noise_power is None:
        return stamps + sigmas[:, None, None] * white
    return stamps + np.fft.irfft2(np.fft.rfft2(white) * np.sqrt(noise_power), s=(size, size))


# ----------------------------------------------------------------------------------------
# Comparisons
# ----------------------------------------------------------------------------------------
def _valid(table: Table, column: str) -> np.ndarray:
    flag = "hsm_ok" if column in HSM_COLUMNS else "morph_ok"
    values = np.asarray(table[column], dtype=np.float64)
    return values[np.asarray(table[flag], dtype=bool) & np.isfinite(values)]


def compare_samples(stats_real: Table, stats_other: Table, columns: Sequence[str] = STAT_COLUMNS) -> Table:
    """Compare the distributions of statistics of a sample with those of the real one.

    Only rows with ``hsm_ok`` (for HSM columns) or ``morph_ok`` (for morphology columns)
    enter.

    Parameters
    ----------
    stats_real, stats_other : `astropy.table.Table`
        Outputs of :func:`measure_statistics`.
    columns : sequence of str, optional
        Statistics to compare.

    Returns
    -------
    table : `astropy.table.Table`
        One row per statistic: ``statistic``, ``n_real``, ``n_other``, ``mean_real``,
        ``mean_other``, ``mean_diff`` (``other - real``, divided by the real mean for
        ``sigma`` and ``g``), ``relative``, ``wasserstein``
        (`scipy.stats.wasserstein_distance`), ``ks`` and ``ks_pvalue``
        (`scipy.stats.ks_2samp`). NaN where a sample has fewer than two valid values.
    """
    rows = []
    for column in columns:
        for table in (stats_real, stats_other):
            if column not in table.colnames:
                raise KeyError(f"statistic {column!r} is not a column of the statistics table")
        real, other = _valid(stats_real, column), _valid(stats_other, column)
        relative = column in RELATIVE_COLUMNS
        if len(real) < 2 or len(other) < 2:
            rows.append((column, len(real), len(other), math.nan, math.nan, math.nan, relative,
                         math.nan, math.nan, math.nan))
            continue
        mean_real, mean_other = float(real.mean()), float(other.mean())
        diff = (mean_other - mean_real) / mean_real if relative else mean_other - mean_real
        ks = stats.ks_2samp(real, other)
        rows.append((column, len(real), len(other), mean_real, mean_other, diff, relative,
                     float(stats.wasserstein_distance(real, other)), float(ks.statistic), float(ks.pvalue)))
    return Table(rows=rows, names=("statistic", "n_real", "n_other", "mean_real", "mean_other", "mean_diff",
                                   "relative", "wasserstein", "ks", "ks_pvalue"),
                 dtype=(str, int, int, float, float, float, bool, float, float, float))


def _residual_summary(size_ratio: np.ndarray, dmag: np.ndarray) -> tuple[int, float, float, float, float]:
    n = len(size_ratio)
    if n == 0:
        return 0, math.nan, math.nan, math.nan, math.nan
    spread = (lambda x: float(np.std(x, ddof=1))) if n > 1 else (lambda x: math.nan)
    return n, float(np.mean(size_ratio - 1)), spread(size_ratio), float(np.mean(dmag)), spread(dmag)


def conditional_residuals(stats_real: Table, stats_mock: Table, conditions: Any,
                          names: Sequence[str] = RESIDUAL_CONDITIONS, *, n_bins: int = 5) -> Table:
    """Size and magnitude residuals of mock versus real galaxies binned in the conditions.

    Row ``i`` of the three inputs is the same galaxy: the mock was conditioned on the real
    galaxy's catalog values. Galaxies where HSM failed on either image, or with a
    non-positive flux, are left out.

    Parameters
    ----------
    stats_real, stats_mock : `astropy.table.Table`
        Outputs of :func:`measure_statistics` for the real and the mock sample.
    conditions : `astropy.table.Table` or mapping of arrays
        Condition columns of the galaxies.
    names : sequence of str, optional
        Conditions to bin in; each must be a column of ``conditions``.
    n_bins : int, optional
        Number of equal-count bins per condition.

    Returns
    -------
    table : `astropy.table.Table`
        A first row with ``condition == 'all'`` over all galaxies, then one row per bin:
        ``condition``, ``bin_lo``, ``bin_hi``, ``bin_centre`` (median of the condition in
        the bin), ``n``, ``size_mean`` (mean of ``sigma_mock / sigma_real - 1``),
        ``size_scatter`` (standard deviation of that fractional ratio), ``mag_mean`` and
        ``mag_scatter`` (of ``-2.5 log10(flux_mock / flux_real)``, in mag).
    """
    n_rows = len(stats_real)
    if len(stats_mock) != n_rows:
        raise ValueError(f"real and mock statistics differ in length ({n_rows} and {len(stats_mock)})")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    flux_real = np.asarray(stats_real["flux"], dtype=np.float64)
    flux_mock = np.asarray(stats_mock["flux"], dtype=np.float64)
    ok = (np.asarray(stats_real["hsm_ok"], dtype=bool) & np.asarray(stats_mock["hsm_ok"], dtype=bool)
          & (flux_real > 0) & (flux_mock > 0))
    size_ratio = np.full(n_rows, math.nan)
    dmag = np.full(n_rows, math.nan)
    size_ratio[ok] = np.asarray(stats_mock["sigma"])[ok] / np.asarray(stats_real["sigma"])[ok]
    dmag[ok] = -2.5 * np.log10(flux_mock[ok] / flux_real[ok])

    rows = [("all", math.nan, math.nan, math.nan) + _residual_summary(size_ratio[ok], dmag[ok])]
    for name in names:
        try:
            values = np.asarray(conditions[name], dtype=np.float64)
        except (KeyError, ValueError) as error:
            raise CatalogError(f"condition {name!r} is not a column of the conditions") from error
        if values.shape != (n_rows,):
            raise CatalogError(f"condition {name!r} has {values.shape} values for {n_rows} galaxies")
        usable = ok & np.isfinite(values)
        if not usable.any():
            continue
        edges = np.unique(np.quantile(values[usable], np.linspace(0, 1, n_bins + 1)))
        if len(edges) == 1:
            edges = np.array([edges[0], edges[0]])
        which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
        for index in range(len(edges) - 1):
            members = usable & (which == index)
            centre = float(np.median(values[members])) if members.any() else math.nan
            rows.append((name, float(edges[index]), float(edges[index + 1]), centre)
                        + _residual_summary(size_ratio[members], dmag[members]))
    return Table(rows=rows, names=("condition", "bin_lo", "bin_hi", "bin_centre", "n", "size_mean",
                                   "size_scatter", "mag_mean", "mag_scatter"),
                 dtype=(str, float, float, float, int, float, float, float, float))


def reconstruction_check(reconstructions: Any, noisy: Any, truth: Any) -> dict[str, Any]:
    """Compare a VAE's reconstructions with its noisy inputs, both against the truth.

    All three stacks must be in the same (observed) space: same PSF, pixel scale and size.
    A useful autoencoder denoises: its reconstructions are closer to the noiseless truth
    than the noisy inputs are.

    Parameters
    ----------
    reconstructions, noisy, truth : array-like
        Stacks ``[N, ny, nx]`` of the noiseless reconstructed images, the noisy inputs and
        the noiseless truth.

    Returns
    -------
    result : dict
        ``mse_reconstruction``, ``mse_noisy``, ``ratio`` (their quotient) and ``passed``
        (``mse_reconstruction < mse_noisy``).
    """
    arrays = [_as_image_stack(a, name) for a, name in
              ((reconstructions, "reconstructions"), (noisy, "noisy"), (truth, "truth"))]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"reconstructions, noisy and truth differ in shape: {[a.shape for a in arrays]}")
    mse_reconstruction = float(np.mean((arrays[0] - arrays[2]) ** 2))
    mse_noisy = float(np.mean((arrays[1] - arrays[2]) ** 2))
    return {"mse_reconstruction": mse_reconstruction, "mse_noisy": mse_noisy,
            "ratio": mse_reconstruction / mse_noisy if mse_noisy > 0 else math.inf,
            "passed": bool(mse_reconstruction < mse_noisy)}


def evaluate_targets(comparisons: Mapping[str, Table], residuals: Table) -> list[dict[str, Any]]:
    """Check the validation targets of the paper.

    Parameters
    ----------
    comparisons : mapping
        ``{'mock': table, 'parametric': table}`` from :func:`compare_samples`.
    residuals : `astropy.table.Table`
        Output of :func:`conditional_residuals` (its ``'all'`` row is used).

    Returns
    -------
    targets : list of dict
        One per target: ``name``, ``description``, ``value``, ``requirement`` (text) and
        ``passed`` (NaN values fail).
    """
    mock = {row["statistic"]: row for row in comparisons["mock"]}
    parametric = {row["statistic"]: row for row in comparisons["parametric"]}
    overall = residuals[residuals["condition"] == "all"][0]
    targets = []

    def add(name, description, value, requirement, passed):
        targets.append({"name": name, "description": description, "value": float(value),
                        "requirement": requirement, "passed": bool(passed)})

    for column, key, text in (("sigma", "mean_size_relative", "mean size"), ("g", "mean_g_relative", "mean |g|")):
        value = mock[column]["mean_diff"]
        limit = TARGETS[key]
        add(key, f"relative difference of the {text} of mocks and real galaxies", value,
            f"abs(value) < {limit:g}", abs(value) < limit)
    for column, key, unit in (("size_scatter", "size_scatter", "fractional"), ("mag_scatter", "mag_scatter", "mag")):
        value = overall[column]
        limit = TARGETS[key]
        add(key, f"scatter of the per-galaxy {column.split('_')[0]} residual, mock vs real ({unit})", value,
            f"< {limit:g}", value < limit)
    for column in MORPH_COLUMNS:
        value, reference = mock[column]["wasserstein"], parametric[column]["wasserstein"]
        add(f"{column}_distance", f"Wasserstein distance of {column} to the real sample, mock vs parametric",
            value, f"< parametric ({reference:.4g})", value < reference)
    return targets


# ----------------------------------------------------------------------------------------
# Figures and report
# ----------------------------------------------------------------------------------------
def _density_contours(ax, x: np.ndarray, y: np.ndarray, colour: str, label: str, extent) -> None:
    """Scatter points and, when there are enough, contours enclosing 39% and 86% of them."""
    ax.scatter(x, y, s=4, color=colour, alpha=0.35, label=label, linewidths=0)
    if len(x) < 10:
        return
    hist, xedges, yedges = np.histogram2d(x, y, bins=20, range=extent)
    hist = ndimage.gaussian_filter(hist, 1.0)
    ordered = np.sort(hist.ravel())[::-1]
    cumulative = np.cumsum(ordered) / ordered.sum()
    levels = np.unique([ordered[np.searchsorted(cumulative, q)] for q in (0.86, 0.39)])
    if len(levels) < 1 or levels[0] <= 0:
        return
    centres_x = 0.5 * (xedges[1:] + xedges[:-1])
    centres_y = 0.5 * (yedges[1:] + yedges[:-1])
    ax.contour(centres_x, centres_y, hist.T, levels=levels, colors=colour, linewidths=1.2)


def _pair_extent(stats_tables: Mapping[str, Table], x: str, y: str):
    values = {c: np.concatenate([_valid(t, c) for t in stats_tables.values()]) for c in (x, y)}
    if any(len(v) == 0 for v in values.values()):
        return None
    extent = []
    for column in (x, y):
        lo, hi = np.percentile(values[column], [0.5, 99.5])
        pad = 0.05 * (hi - lo) or 0.5 * abs(lo) or 1.0
        extent.append([lo - pad, hi + pad])
    return extent


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", markerscale=3)
    else:
        ax.text(0.5, 0.5, "no morphology measured", ha="center", transform=ax.transAxes)


def _pair_panel(ax, stats_tables: Mapping[str, Table], x: str, y: str) -> None:
    extent = _pair_extent(stats_tables, x, y)
    for sample, table in stats_tables.items():
        ok = np.asarray(table["morph_ok"], dtype=bool)
        ok &= np.isfinite(np.asarray(table[x], dtype=float)) & np.isfinite(np.asarray(table[y], dtype=float))
        if ok.any() and extent is not None:
            _density_contours(ax, np.asarray(table[x])[ok], np.asarray(table[y])[ok],
                              _COLOURS.get(sample, None) or "grey", sample, extent)
    if extent is not None:
        ax.set_xlim(extent[0])
        ax.set_ylim(extent[1])
    ax.set_xlabel(_LABELS[x])
    ax.set_ylabel(_LABELS[y])


def make_figures(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Draw the validation figures as PNG files.

    Parameters
    ----------
    results : mapping
        At least ``stats`` (``{sample: table}`` from :func:`measure_statistics`) and
        ``residuals`` (from :func:`conditional_residuals`), as :func:`run_validation`
        returns.
    out_dir : str or path
        Folder to write into (created if needed).

    Returns
    -------
    paths : list of `pathlib.Path`
        ``size_ellipticity.png`` (histograms of sigma and ``|g|``), ``residuals.png``
        (conditional size and magnitude residuals), ``mid.png`` (M-I, M-D, I-D) and
        ``gini_m20.png``, and ``gallery.png`` (the first stamps of each sample, as observed)
        when ``results`` has a ``gallery`` (``{sample: [n, S, S] stamps}``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats_tables = results["stats"]
    paths = []

    def save(fig, name):
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, column in zip(axes, ("sigma", "g")):
        pooled = np.concatenate([_valid(t, column) for t in stats_tables.values()])
        bins = np.histogram_bin_edges(pooled, bins=25) if len(pooled) else 10
        for sample, table in stats_tables.items():
            values = _valid(table, column)
            ax.hist(values, bins=bins, histtype="step", density=True, lw=1.5,
                    color=_COLOURS.get(sample), label=f"{sample} (n={len(values)})")
        ax.set_xlabel(_LABELS[column])
        ax.set_ylabel("density")
        ax.legend(fontsize="small")
    save(fig, "size_ellipticity.png")

    residuals = results["residuals"]
    conditions = [c for c in dict.fromkeys(residuals["condition"]) if c != "all"]
    fig, axes = plt.subplots(2, max(1, len(conditions)), figsize=(5 * max(1, len(conditions)), 7), squeeze=False)
    for column, condition in enumerate(conditions):
        rows = residuals[residuals["condition"] == condition]
        for row, (mean, scatter, label) in enumerate((("size_mean", "size_scatter", r"$\sigma_{mock}/\sigma_{real}-1$"),
                                                      ("mag_mean", "mag_scatter", r"$m_{mock}-m_{real}$"))):
            ax = axes[row, column]
            ax.errorbar(rows["bin_centre"], rows[mean], yerr=np.nan_to_num(rows[scatter]), fmt="o", capsize=3)
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xlabel(condition)
            ax.set_ylabel(label)
    if not conditions:
        for ax in axes[:, 0]:
            ax.text(0.5, 0.5, "no condition to bin in", ha="center", transform=ax.transAxes)
    save(fig, "residuals.png")

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (x, y) in zip(axes, (("multimode", "intensity"), ("multimode", "deviation"), ("intensity", "deviation"))):
        _pair_panel(ax, stats_tables, x, y)
    _legend(axes[0])
    save(fig, "mid.png")

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    _pair_panel(ax, stats_tables, "m20", "gini")
    m20 = np.linspace(-3.0, -0.5, 2)
    # Lotz, Primack & Madau (2008) division lines: mergers above the first, E/S0/Sa above the second.
    ax.plot(m20, -0.14 * m20 + 0.33, color="grey", ls="--", lw=0.8)
    ax.plot(m20, 0.14 * m20 + 0.80, color="grey", ls=":", lw=0.8)
    ax.invert_xaxis()
    _legend(ax)
    save(fig, "gini_m20.png")

    gallery = results.get("gallery")
    if gallery:
        rows = list(gallery.items())
        n_columns = min(len(images) for _, images in rows)
        fig, axes = plt.subplots(len(rows), n_columns, figsize=(1.6 * n_columns, 1.7 * len(rows)), squeeze=False)
        for row, (sample, images) in enumerate(rows):
            for column in range(n_columns):
                ax = axes[row, column]
                stamp = images[column]
                ax.imshow(np.arcsinh(stamp / (3 * _noise_level(stamp))), origin="lower", cmap="gray")
                ax.set_xticks([])
                ax.set_yticks([])
            axes[row, 0].set_ylabel(sample)
        save(fig, "gallery.png")
    return paths


def _noise_level(stamp: np.ndarray) -> float:
    """A robust noise rms from the stamp border (median absolute deviation), for display."""
    border = np.concatenate([stamp[:2].ravel(), stamp[-2:].ravel(), stamp[:, :2].ravel(), stamp[:, -2:].ravel()])
    mad = float(np.median(np.abs(border - np.median(border)))) * 1.4826
    return mad if mad > 0 else float(np.max(np.abs(stamp))) / 100 or 1.0


def _format(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "nan" if not np.isfinite(value) else f"{value:.4g}"
    return str(value)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_format(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def targets_markdown(targets: Sequence[Mapping[str, Any]]) -> str:
    """The targets as a markdown table with a PASS/FAIL column."""
    return _markdown_table(("target", "value", "requirement", "result"),
                           [(t["name"], t["value"], t["requirement"], "PASS" if t["passed"] else "FAIL")
                            for t in targets])


def _jsonable(value: Any) -> Any:
    if isinstance(value, Table):
        return [{name: _jsonable(row[name]) for name in value.colnames} for row in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (str, type(None))):
        return value
    return str(value)


def write_report(results: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``validation.md`` (targets with PASS/FAIL, tables) and ``validation.json``.

    Parameters
    ----------
    results : mapping
        As :func:`run_validation` returns: ``targets``, ``comparisons``, ``residuals`` and
        optionally ``metadata``, ``reconstruction`` and ``figures``.
    out_dir : str or path
        Folder to write into (created if needed).

    Returns
    -------
    path : `pathlib.Path`
        The markdown report; ``validation.json`` lies beside it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = results["targets"]
    comparisons = results["comparisons"]
    metadata = results.get("metadata", {})
    n_passed = sum(t["passed"] for t in targets)
    lines = ["# Validation report", ""]
    if metadata:
        lines += [f"- {key}: {_format(value)}" for key, value in metadata.items()] + [""]
    lines += [f"## Targets ({n_passed}/{len(targets)} passed)", "", targets_markdown(targets), ""]

    samples = list(comparisons)
    header = ["statistic", "mean real"] + [f"mean {s}" for s in samples] + [f"Δmean {s}" for s in samples]
    header += [f"W {s}" for s in samples] + [f"KS {s}" for s in samples]
    tables = {s: {row["statistic"]: row for row in comparisons[s]} for s in samples}
    rows = []
    for statistic in comparisons[samples[0]]["statistic"]:
        per = [tables[s][statistic] for s in samples]
        rows.append([statistic, per[0]["mean_real"]] + [r["mean_other"] for r in per] + [r["mean_diff"] for r in per]
                    + [r["wasserstein"] for r in per] + [r["ks"] for r in per])
    lines += ["## Distributions compared with the real sample", "",
              "Δmean is relative for sigma and g; W is the Wasserstein distance, KS the "
              "Kolmogorov-Smirnov statistic.", "", _markdown_table(header, rows), ""]

    residuals = results["residuals"]
    lines += ["## Residuals of mocks vs real galaxies with the same conditions", "",
              "size: sigma_mock / sigma_real - 1; magnitude: m_mock - m_real.", "",
              _markdown_table(("condition", "bin", "n", "size mean", "size scatter", "mag mean", "mag scatter"),
                              [(r["condition"], "all" if r["condition"] == "all" else
                                f"{r['bin_lo']:.3g} - {r['bin_hi']:.3g}", r["n"], r["size_mean"],
                                r["size_scatter"], r["mag_mean"], r["mag_scatter"]) for r in residuals]), ""]
    reconstruction = results.get("reconstruction")
    if reconstruction:
        lines += ["## Autoencoder reconstructions", "",
                  _markdown_table(("MSE reconstruction", "MSE noisy input", "ratio", "result"),
                                  [(reconstruction["mse_reconstruction"], reconstruction["mse_noisy"],
                                    reconstruction["ratio"], "PASS" if reconstruction["passed"] else "FAIL")]), ""]
    figures = results.get("figures") or []
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in figures] + [""]
    path = out_dir / "validation.md"
    path.write_text("\n".join(lines))

    numbers = {key: results[key] for key in ("metadata", "targets", "comparisons", "residuals", "reconstruction",
                                             "figures") if key in results and results[key] is not None}
    (out_dir / "validation.json").write_text(json.dumps(_jsonable(numbers), indent=2, allow_nan=False))
    return path


# ----------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------
def _condition_names(metadata: Mapping[str, Any]) -> list[str]:
    try:
        return [entry["name"] if isinstance(entry, Mapping) else str(entry) for entry in metadata["conditions"]]
    except (KeyError, TypeError) as error:
        raise MetadataError("dataset metadata has no 'conditions' list of {'name': ...} entries") from error


def run_validation(model: Any, data_dir: str | Path, out_dir: str | Path, *, n: int | None = None, seed: int = 0,
                   psf: galsim.GSObject | None = None, noise_sigma: float | None = None, n_jobs: int = 1,
                   n_morph: int | None = None, reconstructions: Any = None) -> dict[str, Any]:
    """Validate a generative model against a held-out data set and write the results.

    Parameters
    ----------
    model : str or `galsim_hub.GenerativeGalaxyModel`
        A model handle or a loaded model (anything with ``quantities``, ``pixel_scale``,
        ``stamp_size`` and ``sample(cat, seed=..., return_arrays=True)``).
    data_dir : str or path
        A data set written by :mod:`galsim_hub.training.data` (``dataset.json`` and shards
        with ``truth``, ``truth_smooth``, ``conditions``, ``psf``, ``noise_var``).
    out_dir : str or path
        Where the figures, ``validation.md`` and ``validation.json`` go.
    n : int, optional
        Number of galaxies, drawn at random without replacement; all by default.
    seed : int, optional
        Seed of the selection, of the noise and of the model's sampling.
    psf : `galsim.GSObject`, optional
        PSF of the three samples. By default each galaxy's own PSF image from the data set,
        taken as an effective PSF (drawn with ``method='no_pixel'``).
    noise_sigma : float, optional
        White pixel noise rms of the three samples. By default each galaxy's noise of the
        data set: its power spectrum ``noise_ps`` when the data set has one (correlated noise
        as in COSMOS), else white noise of variance ``noise_var``.
    n_jobs : int, optional
        Processes for statmorph.
    n_morph : int, optional
        Measure morphology on this many galaxies only (HSM runs on all).
    reconstructions : array-like, optional
        VAE reconstructions ``[n_dataset, S, S]`` (unconvolved, aligned with the data set's
        rows), compared with the data set's noisy PSF-convolved ``image`` against the noiseless
        unconvolved ``truth`` (:func:`reconstruction_check`). By default computed with
        ``model.reconstruct`` when the model has an encoder.

    Returns
    -------
    results : dict
        ``metadata``, ``indices`` (data set rows used), ``conditions`` (table), ``stats``
        (``{'real', 'parametric', 'mock'}`` tables), ``comparisons`` (``{'parametric',
        'mock'}`` tables), ``residuals``, ``targets``, ``reconstruction`` (or None),
        ``figures`` and ``report`` (paths).
    """
    from galsim_hub.training.data import load_arrays, read_dataset_metadata

    data_dir = Path(data_dir)
    metadata = read_dataset_metadata(data_dir)
    names = _condition_names(metadata)
    pixel_scale = float(metadata["pixel_scale"])
    stamp_size = int(metadata["stamp_size"])
    keys = ["truth", "truth_smooth", "conditions", "image", "psf"]
    keys += ["noise_var"] if noise_sigma is None else []
    try:  # the data set's (possibly correlated) noise power spectrum, when it has one
        arrays = load_arrays(data_dir, keys=keys + (["noise_ps"] if noise_sigma is None else []))
    except MetadataError:
        arrays = load_arrays(data_dir, keys=keys)
    total = len(arrays["truth"])
    if arrays["conditions"].shape != (total, len(names)):
        raise MetadataError(f"conditions of {data_dir} have shape {arrays['conditions'].shape}, "
                            f"expected ({total}, {len(names)}) for {names}")

    rng = np.random.default_rng(seed)
    indices = np.arange(total) if n is None or n >= total else np.sort(rng.choice(total, size=int(n), replace=False))
    conditions = Table(arrays["conditions"][indices], names=names)

    if isinstance(model, (str, Path)):
        import galsim_hub

        handle = str(model)
        model = galsim_hub.GenerativeGalaxyModel(handle)
    else:
        handle = getattr(model, "handle", type(model).__name__)
    missing = [q for q in model.quantities if q not in names]
    if missing:
        raise CatalogError(f"the model needs conditions {missing} that data set {data_dir} does not have ({names})")
    # GalSim takes seed 0 to mean "random": derive a non-zero model seed from ``seed``.
    model_seed = int(rng.integers(1, 2**31 - 1))
    mock_profiles = np.asarray(model.sample(conditions[list(model.quantities)], seed=model_seed, return_arrays=True))
    if mock_profiles.ndim == 4 and mock_profiles.shape[-1] == 1:
        mock_profiles = mock_profiles[..., 0]
    if mock_profiles.shape[0] != len(indices):
        raise ValueError(f"model returned {mock_profiles.shape[0]} images for {len(indices)} galaxies")

    if psf is None:
        # The data set's PSF images are sampled without a pixel, centred on pixel (S//2, S//2),
        # and its truth images already hold the pixel: draw without a further pixel.
        psfs = [galsim.InterpolatedImage(galsim.Image(np.asarray(p, dtype=np.float64), scale=pixel_scale),
                                         use_true_center=False) for p in arrays["psf"][indices]]
        description = metadata.get("psf", {})
        description = description.get("description", description) if isinstance(description, Mapping) else description
        method, psf_text = "no_pixel", f"data set PSF images ({description})" if description else "data set PSF images"
    else:
        psfs, method, psf_text = psf, "auto", repr(psf)
    sigmas = np.sqrt(arrays["noise_var"][indices]) if noise_sigma is None else float(noise_sigma)
    noise_power = arrays["noise_ps"][indices] if "noise_ps" in arrays else None
    noise_text = "data set noise power spectra" if noise_power is not None else (
        "white, data set noise_var" if noise_sigma is None else f"white, sigma {float(noise_sigma):g}")

    def observe(profiles, scale, noisy=True):
        if not noisy:
            return draw_observed(profiles, scale, psfs, pixel_scale, stamp_size, 0.0, rng, method=method)
        if noise_power is not None:
            return draw_observed(profiles, scale, psfs, pixel_scale, stamp_size, None, rng, method=method,
                                 noise_power=noise_power)
        return draw_observed(profiles, scale, psfs, pixel_scale, stamp_size, sigmas, rng, method=method)

    observed = {"real": observe(arrays["truth"][indices], pixel_scale),
                "parametric": observe(arrays["truth_smooth"][indices], pixel_scale),
                "mock": observe(mock_profiles, float(model.pixel_scale))}
    stats_tables = {sample: measure_statistics(images, pixel_scale, noise_sigma=sigmas, n_morph=n_morph,
                                               n_jobs=n_jobs) for sample, images in observed.items()}
    comparisons = {sample: compare_samples(stats_tables["real"], stats_tables[sample])
                   for sample in ("parametric", "mock")}
    residual_names = [c for c in RESIDUAL_CONDITIONS if c in names] or names[:2]
    residuals = conditional_residuals(stats_tables["real"], stats_tables["mock"], conditions, residual_names)
    targets = evaluate_targets(comparisons, residuals)

    # The deconvolution claim, in the unconvolved frame: the VAE's reconstruction of a noisy,
    # PSF-convolved stamp is closer to the noiseless unconvolved truth than the stamp is.
    reconstruction = None
    if reconstructions is None and hasattr(model, "reconstruct"):
        try:
            reconstructions = model.reconstruct(arrays["image"][indices], arrays["psf"][indices])
        except MetadataError:
            reconstructions = None  # exported without an encoder
        else:
            reconstructions = _scatter_rows(reconstructions, indices, total)
    if reconstructions is not None:
        reconstructions = np.asarray(reconstructions)
        if len(reconstructions) != total:
            raise ValueError(f"reconstructions must have one image per data set row ({total}), "
                             f"got {len(reconstructions)}")
        reconstruction = reconstruction_check(reconstructions[indices], arrays["image"][indices],
                                              arrays["truth"][indices])

    results = {
        "metadata": {"model": str(handle), "data": str(data_dir), "n_galaxies": len(indices), "seed": seed,
                     "pixel_scale": pixel_scale, "stamp_size": stamp_size, "psf": psf_text,
                     "noise_sigma": float(np.mean(sigmas)), "noise": noise_text, "n_morph": len(indices) if n_morph is None else n_morph},
        "indices": indices,
        "conditions": conditions,
        "stats": stats_tables,
        "comparisons": comparisons,
        "residuals": residuals,
        "targets": targets,
        "reconstruction": reconstruction,
        "gallery": {sample: images[:GALLERY_SIZE] for sample, images in observed.items()},
    }
    results["figures"] = make_figures(results, out_dir)
    results["report"] = write_report(results, out_dir)
    return results


def _scatter_rows(rows: np.ndarray, indices: np.ndarray, total: int) -> np.ndarray:
    """Place ``rows`` (one per selected index) into a ``[total, ...]`` array of zeros."""
    full = np.zeros((total,) + rows.shape[1:], rows.dtype)
    full[indices] = rows
    return full


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m galsim_hub.training validate MODEL --data DIR --out DIR``.

    Returns the exit status: 0; 1 with ``--strict`` when a target fails; 2 when the model or
    the data set cannot be used (the error is printed).
    """
    parser = argparse.ArgumentParser(prog="python -m galsim_hub.training validate",
                                     description="Validate a generative galaxy model against a held-out data set.")
    parser.add_argument("model", help="model handle (hub:NAME, URL, directory or archive)")
    parser.add_argument("--data", required=True, help="data set directory (galsim_hub.training.data)")
    parser.add_argument("--out", required=True, help="output directory for figures and the report")
    parser.add_argument("--n", type=int, default=None, help="number of galaxies (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--jobs", type=int, default=1, help="processes for statmorph (default: 1)")
    parser.add_argument("--n-morph", type=int, default=None, help="galaxies measured with statmorph (default: all)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target fails")
    args = parser.parse_args(argv)
    try:
        results = run_validation(args.model, args.data, args.out, n=args.n, seed=args.seed, n_jobs=args.jobs,
                                 n_morph=args.n_morph)
    except GalSimHubError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(targets_markdown(results["targets"]))
    print(f"\nreport: {results['report']}")
    return 1 if args.strict and not all(t["passed"] for t in results["targets"]) else 0
