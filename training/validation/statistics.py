"""Measurements for validation: HSM moments and statmorph morphology of observed stamps, drawing
profiles as observed, and comparisons of samples (distributions, per-galaxy residuals, reconstructions).
"""

from __future__ import annotations

import math
import multiprocessing
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import galsim
import numpy as np
from astropy.table import Table
from scipy import ndimage, stats

from galsim_hub.errors import CatalogError

__all__ = [
    "HSM_COLUMNS",
    "MORPH_COLUMNS",
    "STAT_COLUMNS",
    "RELATIVE_COLUMNS",
    "RESIDUAL_CONDITIONS",
    "central_segmap",
    "measure_statistics",
    "draw_observed",
    "compare_samples",
    "conditional_residuals",
    "reconstruction_check",
    "valid_values",
]

HSM_COLUMNS = ("flux", "sigma", "g1", "g2", "g")
MORPH_COLUMNS = ("gini", "m20", "multimode", "intensity", "deviation")
STAT_COLUMNS = HSM_COLUMNS + MORPH_COLUMNS
SAMPLES = ("real", "parametric", "mock")

# Statistics whose mean difference is reported relative to the real mean.
RELATIVE_COLUMNS = ("sigma", "g")

# Conditions in which the residuals are binned when the data set has them.
RESIDUAL_CONDITIONS = ("mag_auto", "flux_radius")


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


def central_segmap(image: np.ndarray, noise_sigma: float, *, nsigma: float = 2.0, smoothing: float = 1.0) -> np.ndarray:
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


def measure_statistics(
    images: Any,
    pixel_scale: float,
    *,
    noise_sigma: Any = None,
    segmap: Any = None,
    n_morph: int | None = None,
    n_jobs: int = 1,
    nsigma: float = 2.0,
    statmorph_kwargs: Mapping[str, Any] | None = None,
) -> Table:
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
def draw_observed(
    profiles: Any,
    pixel_scale_in: float,
    psf: galsim.GSObject | Sequence[galsim.GSObject],
    pixel_scale_out: float,
    stamp_size_out: int,
    noise_sigma: Any,
    rng: np.random.Generator | int | None = None,
    *,
    method: str = "auto",
    noise_power: Any = None,
) -> np.ndarray:
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
            raise ValueError(f"noise_power must have shape {(n_images, size, size // 2 + 1)}, got {noise_power.shape}")
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
        stamps[index] = (
            galsim.Convolve(galaxy, psfs[index]).drawImage(nx=size, ny=size, scale=pixel_scale_out, method=method).array
        )
    white = rng.standard_normal(stamps.shape)
    if noise_power is None:
        return stamps + sigmas[:, None, None] * white
    return stamps + np.fft.irfft2(np.fft.rfft2(white) * np.sqrt(noise_power), s=(size, size))


# ----------------------------------------------------------------------------------------
# Comparisons
# ----------------------------------------------------------------------------------------
def valid_values(table: Table, column: str) -> np.ndarray:
    flag = "hsm_ok" if column in HSM_COLUMNS else "morph_ok"
    values = np.asarray(table[column], dtype=np.float64)
    return values[np.asarray(table[flag], dtype=bool) & np.isfinite(values)]


def _comparison_row(
    real: np.ndarray, other: np.ndarray, relative: bool
) -> tuple[float, float, float, float, float, float]:
    if len(real) < 2 or len(other) < 2:
        return (math.nan,) * 6
    mean_real, mean_other = float(real.mean()), float(other.mean())
    diff = (mean_other - mean_real) / mean_real if relative else mean_other - mean_real
    ks = stats.ks_2samp(real, other)
    return (
        mean_real,
        mean_other,
        diff,
        float(stats.wasserstein_distance(real, other)),
        float(ks.statistic),
        float(ks.pvalue),
    )


def compare_samples(
    stats_real: Table,
    stats_other: Table,
    columns: Sequence[str] = STAT_COLUMNS,
    *,
    n_bootstrap: int = 0,
    rng: np.random.Generator | int | None = None,
) -> Table:
    """Compare the distributions of statistics of a sample with those of the real one.

    Only rows with ``hsm_ok`` (for HSM columns) or ``morph_ok`` (for morphology columns)
    enter.

    Parameters
    ----------
    stats_real, stats_other : `astropy.table.Table`
        Outputs of :func:`measure_statistics`.
    columns : sequence of str, optional
        Statistics to compare.
    n_bootstrap : int, optional
        Bootstrap resamples for the uncertainties (0: none). When both tables have the same
        length their rows are taken as the same galaxies and resampled together.
    rng : `numpy.random.Generator` or int, optional
        Source of the resampling.

    Returns
    -------
    table : `astropy.table.Table`
        One row per statistic: ``statistic``, ``n_real``, ``n_other``, ``mean_real``,
        ``mean_other``, ``mean_diff`` (``other - real``, divided by the real mean for
        ``sigma`` and ``g``), ``relative``, ``wasserstein``
        (`scipy.stats.wasserstein_distance`), ``ks`` and ``ks_pvalue``
        (`scipy.stats.ks_2samp`), and the bootstrap standard deviations ``mean_diff_err`` and
        ``wasserstein_err`` (NaN without bootstrap). NaN where a sample has fewer than two
        valid values.
    """
    rng = np.random.default_rng(rng)
    paired = len(stats_real) == len(stats_other)
    resamples = []
    for _ in range(int(n_bootstrap)):
        first = rng.integers(0, len(stats_real), len(stats_real))
        second = first if paired else rng.integers(0, len(stats_other), len(stats_other))
        resamples.append((first, second))
    rows = []
    for column in columns:
        for table in (stats_real, stats_other):
            if column not in table.colnames:
                raise KeyError(f"statistic {column!r} is not a column of the statistics table")
        relative = column in RELATIVE_COLUMNS
        real, other = valid_values(stats_real, column), valid_values(stats_other, column)
        values = _comparison_row(real, other, relative)
        boot = np.array(
            [
                _comparison_row(valid_values(stats_real[a], column), valid_values(stats_other[b], column), relative)[
                    2:4
                ]
                for a, b in resamples
            ]
        ).reshape(-1, 2)
        errors = (
            np.nanstd(boot, axis=0, ddof=1)
            if len(boot) > 1 and np.isfinite(boot).any(axis=0).all()
            else np.full(2, math.nan)
        )
        rows.append(
            (
                column,
                len(real),
                len(other),
                values[0],
                values[1],
                values[2],
                relative,
                values[3],
                values[4],
                values[5],
                float(errors[0]),
                float(errors[1]),
            )
        )
    return Table(
        rows=rows,
        names=(
            "statistic",
            "n_real",
            "n_other",
            "mean_real",
            "mean_other",
            "mean_diff",
            "relative",
            "wasserstein",
            "ks",
            "ks_pvalue",
            "mean_diff_err",
            "wasserstein_err",
        ),
        dtype=(str, int, int, float, float, float, bool, float, float, float, float, float),
    )


def _residual_summary(size_ratio: np.ndarray, dmag: np.ndarray) -> tuple[int, float, float, float, float]:
    n = len(size_ratio)
    if n == 0:
        return 0, math.nan, math.nan, math.nan, math.nan
    spread = (lambda x: float(np.std(x, ddof=1))) if n > 1 else (lambda x: math.nan)
    return n, float(np.mean(size_ratio - 1)), spread(size_ratio), float(np.mean(dmag)), spread(dmag)


def conditional_residuals(
    stats_real: Table,
    stats_mock: Table,
    conditions: Any,
    names: Sequence[str] = RESIDUAL_CONDITIONS,
    *,
    n_bins: int = 5,
) -> Table:
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
    ok = (
        np.asarray(stats_real["hsm_ok"], dtype=bool)
        & np.asarray(stats_mock["hsm_ok"], dtype=bool)
        & (flux_real > 0)
        & (flux_mock > 0)
    )
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
            rows.append(
                (name, float(edges[index]), float(edges[index + 1]), centre)
                + _residual_summary(size_ratio[members], dmag[members])
            )
    return Table(
        rows=rows,
        names=(
            "condition",
            "bin_lo",
            "bin_hi",
            "bin_centre",
            "n",
            "size_mean",
            "size_scatter",
            "mag_mean",
            "mag_scatter",
        ),
        dtype=(str, float, float, float, int, float, float, float, float),
    )


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
    arrays = [
        _as_image_stack(a, name)
        for a, name in ((reconstructions, "reconstructions"), (noisy, "noisy"), (truth, "truth"))
    ]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"reconstructions, noisy and truth differ in shape: {[a.shape for a in arrays]}")
    mse_reconstruction = float(np.mean((arrays[0] - arrays[2]) ** 2))
    mse_noisy = float(np.mean((arrays[1] - arrays[2]) ** 2))
    return {
        "mse_reconstruction": mse_reconstruction,
        "mse_noisy": mse_noisy,
        "ratio": mse_reconstruction / mse_noisy if mse_noisy > 0 else math.inf,
        "passed": bool(mse_reconstruction < mse_noisy),
    }
