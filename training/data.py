"""Training data sets of galaxy postage stamps for galsim-hub models.

Two sources produce data sets in one on-disk format (format 1):

- :func:`build_synthetic_dataset` draws a realistic synthetic population (bulge + exponential
  disc + star-forming knots) through an HST-like PSF with COSMOS-like noise, and also stores the
  noiseless truth, so that a trained model can be checked against what it should produce;
- :func:`build_cosmos_dataset` draws real HST/ACS COSMOS galaxies from the files that
  ``galsim_download_cosmos`` delivers, each with its own PSF and noise, as in Lanusse et al.
  (2021, MNRAS 504, 5543).

Format 1
--------
A data set is a directory holding ``dataset.json`` and ``shard-NNNNN.npz`` files. Each shard
holds, for ``n`` galaxies on ``S x S`` stamps:

``image`` : float32 ``[n, S, S]``
    The noisy, PSF-convolved stamp, in the flux units of the metadata.
``psf`` : float32 ``[n, S, S]``
    The PSF at the same pixel scale, drawn without a further pixel convolution, normalised to
    unit sum and centred on pixel ``(S // 2, S // 2)``, so that ``image`` is (up to noise and
    stamp edges) the discrete convolution of the pixelised profile with ``psf``.
``noise_var`` : float32 ``[n]``
    The pixel noise variance.
``noise_ps`` : float32 ``[n, S, S // 2 + 1]``
    The noise power spectrum in :func:`numpy.fft.rfft2` layout, normalised so that white noise
    of variance ``v`` has ``noise_ps == v`` everywhere: ``E|rfft2(noise)|**2 / S**2``.
``conditions`` : float32 ``[n, C]``
    The condition columns, in the order of ``dataset.json``.
``ident`` : int64 ``[n]``
    The galaxy identifier (the COSMOS ``IDENT``, or the running index of synthetic galaxies).
``truth``, ``truth_smooth`` : float32 ``[n, S, S]`` (synthetic data only)
    The noiseless profile convolved with the pixel only (what a decoder output stands for when
    it is read as a `galsim.InterpolatedImage`), and the same galaxy without its knots, whose
    flux is given back to the disc (the "parametric" comparison sample for validation).

``dataset.json`` is written last and atomically, so a directory without it is an unfinished
build and is never read as a data set.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
from typing import Any, Callable, Iterable, Mapping, Sequence

import galsim
import numpy as np
from astropy.io import fits
from tqdm.auto import tqdm

from galsim_hub._version import __version__
from galsim_hub.errors import CatalogError, GalSimHubError, MetadataError

__all__ = [
    "FORMAT_VERSION",
    "COSMOS_ZERO_POINT",
    "COSMOS_NOISE_SIGMA",
    "CosmosFilesNotFoundError",
    "hst_psf",
    "flux_radius_pixels",
    "build_synthetic_dataset",
    "build_cosmos_dataset",
    "read_dataset_metadata",
    "load_arrays",
    "make_tf_dataset",
]

FORMAT_VERSION = 1
METADATA_FILE = "dataset.json"

#: F814W AB zero point of GalSim's COSMOS images (flux in e-/s over the HST collecting area):
#: ``MAG + 2.5 log10(stamp_flux)`` of the COSMOS RealGalaxyCatalog is 25.94.
COSMOS_ZERO_POINT = 25.94
#: Pixel noise rms of the COSMOS F814W stamps at 0.03"/px: the square root of the median
#: ``NOISE_VARIANCE`` (6.8e-6) of the public 100-galaxy COSMOS 25.2 sample.
COSMOS_NOISE_SIGMA = 2.6e-3
COSMOS_PIXEL_SCALE = 0.03
COSMOS_FLUX_UNITS = "e-/s (HST/ACS F814W count rate, GalSim COSMOS normalisation)"

#: HST-like PSF: the Airy pattern of the 2.4 m obscured aperture at 814 nm, blurred by a
#: Gaussian of 0.02" rms for jitter and charge diffusion.
HST_LAMBDA_NM = 814.0
HST_DIAMETER_M = 2.4
HST_OBSCURATION = 0.33
HST_JITTER_SIGMA_ARCSEC = 0.02

#: rms (pixels) of the Gaussian kernel that colours the synthetic correlated noise. White noise
#: smoothed by it has nearest-neighbour and diagonal correlations 0.48 and 0.23, those of the
#: ACS F814W noise correlation function of the COSMOS sample.
CORRELATED_NOISE_KERNEL_SIGMA_PIXELS = 0.62

EXCLUSION_LEVELS = ("none", "bad_stamp", "bad_fits", "marginal")

CONDITION_INFO = {
    "mag_auto": ("mag", "F814W AB magnitude (SExtractor MAG_AUTO), zero point 25.94"),
    "flux_radius": ("pixel", "half-light radius of the PSF-convolved galaxy in stamp pixels "
                             "(SExtractor FLUX_RADIUS)"),
    "zphot": ("", "photometric redshift"),
}

# Synthetic population, calibrated on the COSMOS mag_auto / flux_radius / zphot catalogues of
# GalSim's 23.5 example and the 25.2 sample: ln(flux_radius / 0.03") = 2.34 - 0.243 (mag - 23)
# with a scatter of 0.33 in both.
MAG_RANGE = (20.0, 25.2)
NUMBER_COUNT_SLOPE = 0.3  # d log10 N / d mag of F814W galaxy counts
SIZE_LOG_INTERCEPT = 2.34
SIZE_LOG_SLOPE = -0.243
SIZE_LOG_SCATTER = 0.33
MAX_ELLIPTICITY = 0.7
KNOT_SIGMA_ARCSEC = 0.015
HIRES_OVERSAMPLING = 5
MAX_REDRAWS = 1000


class CosmosFilesNotFoundError(GalSimHubError, FileNotFoundError):
    """Files of a COSMOS training sample are missing from the catalog directory."""


# ------------------------------------------------------------------------------------------
# PSF, noise and measurements
# ------------------------------------------------------------------------------------------

def hst_psf() -> galsim.GSObject:
    """The HST/ACS-like F814W PSF used by default for synthetic data sets.

    Returns
    -------
    galsim.GSObject
        ``Airy(lam=814 nm, diam=2.4 m, obscuration=0.33)`` convolved with a Gaussian of
        0.02" rms (jitter), in arcsec, without the pixel response.
    """
    airy = galsim.Airy(lam=HST_LAMBDA_NM, diam=HST_DIAMETER_M, obscuration=HST_OBSCURATION,
                       scale_unit=galsim.arcsec)
    return galsim.Convolve(airy, galsim.Gaussian(sigma=HST_JITTER_SIGMA_ARCSEC))


def draw_psf_array(psf: galsim.GSObject, stamp_size: int, pixel_scale: float) -> np.ndarray:
    """Draw ``psf`` without pixel, centred on pixel ``(S // 2, S // 2)``, with unit sum."""
    image = psf.drawImage(nx=stamp_size, ny=stamp_size, scale=pixel_scale, method="no_pixel",
                          use_true_center=False)
    array = image.array.astype(np.float64)
    total = array.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"the PSF {psf!r} draws to a stamp of non-positive or non-finite sum")
    return array / total


def flux_radius_pixels(image: np.ndarray) -> float:
    """Half-light radius of a noiseless image in pixels, like SExtractor's ``FLUX_RADIUS``.

    The curve of growth is taken in circular apertures about the flux-weighted centroid; the
    radius enclosing half of the stamp's flux is interpolated between pixel centres.

    Parameters
    ----------
    image : numpy.ndarray
        A 2-d noiseless image with positive total flux.

    Returns
    -------
    float
        The half-light radius in pixels.
    """
    image = np.asarray(image, dtype=np.float64)
    total = image.sum()
    if not total > 0:
        raise ValueError("flux_radius needs an image with positive total flux")
    y, x = np.indices(image.shape, dtype=np.float64)
    xc = (image * x).sum() / total
    yc = (image * y).sum() / total
    radius = np.hypot(x - xc, y - yc).ravel()
    order = np.argsort(radius)
    radius = radius[order]
    growth = np.cumsum(image.ravel()[order])
    return float(np.interp(0.5 * total, growth, radius))


class _NoiseModel:
    """Stationary Gaussian pixel noise on periodic ``S x S`` stamps, white or correlated.

    Correlated noise is white noise circularly convolved with a Gaussian kernel normalised to
    unit sum of squares, so the variance stays ``sigma**2`` and the power spectrum is exact.
    """

    def __init__(self, sigma: float, stamp_size: int, correlated: bool):
        self.sigma = float(sigma)
        self.stamp_size = stamp_size
        self.correlated = correlated
        if correlated:
            y, x = np.indices((stamp_size, stamp_size)) - stamp_size // 2
            kernel = np.exp(-0.5 * (x**2 + y**2) / CORRELATED_NOISE_KERNEL_SIGMA_PIXELS**2)
            kernel /= np.sqrt((kernel**2).sum())
            self._transfer = np.fft.rfft2(np.fft.ifftshift(kernel))
            self.power_spectrum = (self.sigma**2 * np.abs(self._transfer) ** 2)
        else:
            self.power_spectrum = np.full((stamp_size, stamp_size // 2 + 1), self.sigma**2)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        white = rng.normal(0.0, self.sigma, (self.stamp_size, self.stamp_size))
        if not self.correlated:
            return white
        return np.fft.irfft2(np.fft.rfft2(white) * self._transfer, s=white.shape)

    def describe(self) -> dict:
        if self.correlated:
            return {"type": "correlated_gaussian", "sigma": self.sigma,
                    "kernel_sigma_pixels": CORRELATED_NOISE_KERNEL_SIGMA_PIXELS,
                    "description": "white Gaussian noise circularly convolved with a Gaussian "
                                   "kernel (ACS-like pixel correlations); noise_ps is exact"}
        return {"type": "white_gaussian", "sigma": self.sigma,
                "description": "white Gaussian pixel noise"}


def power_spectrum_from_correlated_noise(noise: galsim.BaseCorrelatedNoise, stamp_size: int,
                                         pixel_scale: float) -> tuple[np.ndarray, float]:
    """Noise power spectrum and variance of a GalSim correlated noise on an ``S x S`` stamp.

    The correlation function is drawn on the stamp (lag 0 at pixel ``(S // 2, S // 2)``) and
    Fourier transformed, which gives ``E|rfft2(noise)|**2 / S**2`` of periodic noise with that
    correlation function: white noise of variance ``v`` gives ``v`` everywhere. Where the
    true spectrum vanishes (beyond a PSF's ``maxk``) the transform of the stamp-truncated
    correlation function rings by a few percent of the variance below zero: it is clipped at 0.

    Returns
    -------
    power_spectrum : numpy.ndarray
        ``[S, S // 2 + 1]``, non-negative, in :func:`numpy.fft.rfft2` layout.
    variance : float
        The pixel variance, lag 0 of the correlation function.
    """
    cf = galsim.ImageD(stamp_size, stamp_size, scale=pixel_scale)
    noise.drawImage(cf)
    centre = stamp_size // 2
    power_spectrum = np.maximum(np.fft.rfft2(np.fft.ifftshift(cf.array)).real, 0.0)
    return power_spectrum, float(cf.array[centre, centre])


# ------------------------------------------------------------------------------------------
# Synthetic population
# ------------------------------------------------------------------------------------------

def _sample_magnitude(rng: np.random.Generator) -> float:
    """Draw an F814W magnitude from counts rising as 10**(0.3 mag) over MAG_RANGE."""
    lo, hi = (10 ** (NUMBER_COUNT_SLOPE * m) for m in MAG_RANGE)
    return math.log10(lo + rng.uniform() * (hi - lo)) / NUMBER_COUNT_SLOPE


def sample_synthetic_parameters(rng: np.random.Generator, psf_hlr_arcsec: float) -> dict:
    """Draw the parameters of one synthetic galaxy.

    The population: magnitudes 20 to 25.2 with counts rising by 10**0.3 per magnitude; an
    observed half-light radius following the COSMOS size-magnitude relation
    ``ln(r / 0.03") = 2.34 - 0.243 (mag - 23) + 0.33 N(0, 1)`` (fainter is smaller), from which
    the PSF half-light radius is removed in quadrature; a redshift ``zphot`` with
    ``ln(1 + z) = 0.50 + 0.07 (mag - 23) - 0.05 N_size + 0.12 N(0, 1)`` (fainter and smaller is
    further away); a bulge fraction drawn from a bulge-dominated Beta(4, 2.5) with probability
    ``0.5 - 0.08 (mag - 20)`` (at least 0.1) and from a disc-dominated Beta(1.2, 8) otherwise;
    a bulge radius 0.25 to 0.6 times the disc radius; 5 to 40 knots carrying a Beta(1.5, 5)
    fraction of the disc flux; a Rayleigh(0.25) ellipticity capped at 0.7 (the bulge half as
    flattened) and a uniform position angle.

    Parameters
    ----------
    rng : numpy.random.Generator
        The generator of this galaxy.
    psf_hlr_arcsec : float
        The PSF half-light radius, removed in quadrature from the observed size.

    Returns
    -------
    dict
        ``mag``, ``zphot``, ``disc_hlr``, ``bulge_hlr`` (arcsec), ``bulge_fraction``,
        ``knot_fraction``, ``n_knots``, ``ellipticity``, ``beta`` (radians), ``knot_seed``.
    """
    mag = _sample_magnitude(rng)
    size_deviate = rng.normal()
    observed_hlr = COSMOS_PIXEL_SCALE * math.exp(
        SIZE_LOG_INTERCEPT + SIZE_LOG_SLOPE * (mag - 23.0) + SIZE_LOG_SCATTER * size_deviate)
    disc_hlr = math.sqrt(max(observed_hlr**2 - psf_hlr_arcsec**2, 0.02**2))
    zphot = math.exp(0.50 + 0.07 * (mag - 23.0) - 0.05 * size_deviate + 0.12 * rng.normal()) - 1
    bulge_dominated = rng.uniform() < max(0.5 - 0.08 * (mag - 20.0), 0.1)
    bulge_fraction = rng.beta(4.0, 2.5) if bulge_dominated else rng.beta(1.2, 8.0)
    return {
        "mag": mag,
        "zphot": max(zphot, 0.01),
        "disc_hlr": disc_hlr,
        "bulge_hlr": max(disc_hlr * rng.uniform(0.25, 0.6), 0.02),
        "bulge_fraction": float(bulge_fraction),
        "knot_fraction": float(rng.beta(1.5, 5.0)),
        "n_knots": int(rng.integers(5, 41)),
        "ellipticity": min(float(rng.rayleigh(0.25)), MAX_ELLIPTICITY),
        "beta": float(rng.uniform(0.0, math.pi)),
        "knot_seed": int(rng.integers(1, 2**31 - 1)),
    }


def synthetic_galaxy_profiles(params: Mapping[str, Any]) -> tuple[galsim.GSObject,
                                                                   galsim.GSObject]:
    """Build the GalSim profiles of one synthetic galaxy.

    Parameters
    ----------
    params : dict
        As returned by :func:`sample_synthetic_parameters`.

    Returns
    -------
    galaxy, smooth : galsim.GSObject
        The galaxy (de Vaucouleurs bulge + exponential disc + knots) and the same galaxy with
        the knot flux given back to the disc. Knots are positioned by `galsim.RandomKnots`
        and drawn as Gaussians of 0.015" rms so that the profiles are analytic in real space.
    """
    flux = 10 ** (-0.4 * (params["mag"] - COSMOS_ZERO_POINT))
    bulge_flux = flux * params["bulge_fraction"]
    disc_flux = flux - bulge_flux
    knot_flux = disc_flux * params["knot_fraction"]
    shear = galsim.Shear(e=params["ellipticity"], beta=params["beta"] * galsim.radians)
    bulge_shear = galsim.Shear(e=0.5 * params["ellipticity"], beta=params["beta"] * galsim.radians)

    bulge = galsim.DeVaucouleurs(half_light_radius=params["bulge_hlr"], flux=bulge_flux)
    bulge = bulge.shear(bulge_shear)
    positions = galsim.RandomKnots(params["n_knots"], half_light_radius=params["disc_hlr"],
                                   flux=1.0, rng=galsim.BaseDeviate(params["knot_seed"])).points
    knot = galsim.Gaussian(sigma=KNOT_SIGMA_ARCSEC, flux=knot_flux / len(positions))
    knots = galsim.Add([knot.shift(x, y) for x, y in positions]).shear(shear)
    disc_profile = galsim.Exponential(half_light_radius=params["disc_hlr"]).shear(shear)

    galaxy = galsim.Add([bulge, disc_profile.withFlux(disc_flux - knot_flux), knots])
    smooth = galsim.Add([bulge, disc_profile.withFlux(disc_flux)])
    return galaxy, smooth


def _draw_pixelised(profile: galsim.GSObject, stamp_size: int, pixel_scale: float) -> np.ndarray:
    """Profile convolved with the pixel, sampled at pixel centres.

    Drawn in real space on a grid oversampled 5 times and summed over each pixel: the cuspy
    bulges would otherwise need FFTs of thousands of pixels on a side.
    """
    n = HIRES_OVERSAMPLING
    hires = profile.drawImage(nx=stamp_size * n, ny=stamp_size * n, scale=pixel_scale / n,
                              method="no_pixel").array
    return hires.reshape(stamp_size, n, stamp_size, n).sum(axis=(1, 3))


def _synthetic_example(ident: int, seed: int, psf: galsim.GSObject, psf_array: np.ndarray,
                       psf_hlr: float, noise: _NoiseModel, stamp_size: int,
                       pixel_scale: float) -> dict:
    """Draw galaxy ``ident`` of a synthetic data set, redrawing those that overflow the stamp."""
    rng = np.random.default_rng([seed, ident])
    max_radius = stamp_size / 5.0
    for _ in range(MAX_REDRAWS):
        params = sample_synthetic_parameters(rng, psf_hlr)
        if params["disc_hlr"] / pixel_scale > max_radius:
            continue
        galaxy, smooth = synthetic_galaxy_profiles(params)
        convolved = galsim.Convolve(galaxy, psf).drawImage(
            nx=stamp_size, ny=stamp_size, scale=pixel_scale).array
        radius = flux_radius_pixels(convolved)
        if radius <= max_radius:
            break
    else:
        raise RuntimeError(
            f"no synthetic galaxy with flux_radius <= {max_radius:.1f} px found in "
            f"{MAX_REDRAWS} draws: use a larger stamp_size or a coarser pixel_scale")
    return {
        "image": convolved + noise.sample(rng),
        "psf": psf_array,
        "noise_var": noise.sigma**2,
        "noise_ps": noise.power_spectrum,
        "conditions": [params["mag"], radius, params["zphot"]],
        "ident": ident,
        "truth": _draw_pixelised(galaxy, stamp_size, pixel_scale),
        "truth_smooth": _draw_pixelised(smooth, stamp_size, pixel_scale),
    }


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------

_ARRAY_DTYPES = {"image": np.float32, "psf": np.float32, "noise_var": np.float32,
                 "noise_ps": np.float32, "conditions": np.float32, "ident": np.int64,
                 "truth": np.float32, "truth_smooth": np.float32}


def _atomic_write(path: pathlib.Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through a temporary file in the same directory, then rename it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class _ShardWriter:
    """Collects examples and writes them as shards; ``finish`` writes ``dataset.json``."""

    def __init__(self, out_dir: str | os.PathLike, shard_size: int, overwrite: bool):
        self.out_dir = pathlib.Path(out_dir)
        self.shard_size = shard_size
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise NotADirectoryError(f"out_dir {str(self.out_dir)!r} exists and is not a directory")
        if self.out_dir.is_dir() and any(self.out_dir.iterdir()):
            if not overwrite:
                raise FileExistsError(
                    f"out_dir {str(self.out_dir)!r} is not empty; pass overwrite=True to replace "
                    "the data set in it")
            # The metadata goes first, so that the directory never looks complete meanwhile.
            (self.out_dir / METADATA_FILE).unlink(missing_ok=True)
            for old in self.out_dir.glob("shard-*.npz"):
                old.unlink()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shards: list[str] = []
        self.n_examples = 0
        self._buffer: list[dict] = []
        self._cond_min: np.ndarray | None = None
        self._cond_max: np.ndarray | None = None

    def add(self, example: dict) -> None:
        self._buffer.append(example)
        if len(self._buffer) == self.shard_size:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        arrays = {key: np.asarray([ex[key] for ex in self._buffer], dtype=_ARRAY_DTYPES[key])
                  for key in self._buffer[0]}
        cond = arrays["conditions"].astype(np.float64)
        low, high = cond.min(axis=0), cond.max(axis=0)
        self._cond_min = low if self._cond_min is None else np.minimum(self._cond_min, low)
        self._cond_max = high if self._cond_max is None else np.maximum(self._cond_max, high)
        name = f"shard-{len(self.shards):05d}.npz"
        _atomic_write(self.out_dir / name, lambda handle: np.savez(handle, **arrays))
        self.shards.append(name)
        self.n_examples += len(self._buffer)
        self._buffer = []

    def finish(self, metadata: dict, condition_names: Sequence[str]) -> pathlib.Path:
        self._flush()
        if self.n_examples == 0:
            raise ValueError("no galaxy was written: the data set would be empty")
        conditions = []
        for i, name in enumerate(condition_names):
            unit, description = CONDITION_INFO.get(name.lower(), ("", f"catalog column {name}"))
            conditions.append({"name": name, "unit": unit, "description": description,
                               "min": float(self._cond_min[i]), "max": float(self._cond_max[i])})
        full = {"format": FORMAT_VERSION, **metadata, "conditions": conditions,
                "n_examples": self.n_examples, "shards": self.shards,
                "created_by": f"galsim-hub {__version__}"}
        text = json.dumps(full, indent=2, sort_keys=False) + "\n"
        _atomic_write(self.out_dir / METADATA_FILE, lambda handle: handle.write(text), mode="w")
        return self.out_dir


def _progress_bar(total: int, progress: bool | None, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="gal", disable=None if progress is None else not progress)


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_positive_float(name: str, value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


# ------------------------------------------------------------------------------------------
# Builders
# ------------------------------------------------------------------------------------------

def build_synthetic_dataset(out_dir: str | os.PathLike, n_examples: int, *, stamp_size: int = 64,
                            pixel_scale: float = 0.03, psf: str | galsim.GSObject = "hst",
                            noise_sigma: float | None = None, correlated_noise: bool = False,
                            seed: int = 0, shard_size: int = 1024, overwrite: bool = False,
                            progress: bool | None = None) -> pathlib.Path:
    """Build a synthetic data set of bulge + disc + knots galaxies (format 1).

    Each galaxy is drawn from the population of :func:`sample_synthetic_parameters` with its own
    generator, seeded by ``(seed, ident)``, so galaxy ``i`` is the same whatever ``n_examples``
    and ``shard_size``. Galaxies whose PSF-convolved half-light radius exceeds ``S / 5`` pixels
    are redrawn (the population is the calibrated one conditioned on fitting in the stamp: small
    stamps under-represent bright, large galaxies). Stored conditions: ``mag_auto`` (the
    intended total magnitude, zero point 25.94), ``flux_radius`` (measured on the noiseless
    PSF-convolved stamp with :func:`flux_radius_pixels`, in stamp pixels) and ``zphot``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Directory to create (or an empty one).
    n_examples : int
        Number of galaxies.
    stamp_size : int, optional
        Stamp side ``S`` in pixels (at least 16).
    pixel_scale : float, optional
        Pixel scale in arcsec.
    psf : "hst" or galsim.GSObject, optional
        ``"hst"`` for :func:`hst_psf`, or any GalSim profile in arcsec (without pixel).
    noise_sigma : float, optional
        Pixel noise rms; default :data:`COSMOS_NOISE_SIGMA`, the HST/ACS COSMOS level. 0 gives
        noiseless images.
    correlated_noise : bool, optional
        Colour the noise with an ACS-like correlation (see :class:`_NoiseModel`).
    seed : int, optional
        Seed of the whole data set.
    shard_size : int, optional
        Galaxies per shard file.
    overwrite : bool, optional
        Replace a data set already in ``out_dir``.
    progress : bool or None, optional
        Show a progress bar; None shows it on a terminal only.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    n_examples = _check_positive_int("n_examples", n_examples)
    stamp_size = _check_positive_int("stamp_size", stamp_size, minimum=16)
    pixel_scale = _check_positive_float("pixel_scale", pixel_scale)
    shard_size = _check_positive_int("shard_size", shard_size)
    seed = _check_positive_int("seed", seed, minimum=0)
    if noise_sigma is None:
        noise_sigma = COSMOS_NOISE_SIGMA
    if not (isinstance(noise_sigma, (int, float)) and math.isfinite(noise_sigma)
            and noise_sigma >= 0):
        raise ValueError(f"noise_sigma must be a non-negative number, got {noise_sigma!r}")
    if isinstance(psf, str) and psf == "hst":
        psf_profile = hst_psf()
        psf_description = {
            "type": "hst", "lam_nm": HST_LAMBDA_NM, "diam_m": HST_DIAMETER_M,
            "obscuration": HST_OBSCURATION, "jitter_sigma_arcsec": HST_JITTER_SIGMA_ARCSEC,
            "description": "Airy(814 nm, 2.4 m, obscuration 0.33) convolved with a Gaussian "
                           "jitter; the same PSF for every galaxy"}
    elif isinstance(psf, galsim.GSObject):
        psf_profile = psf
        psf_description = {"type": "galsim", "repr": repr(psf),
                           "description": "user-given GalSim profile; the same for every galaxy"}
    else:
        raise ValueError(f"psf must be 'hst' or a galsim.GSObject, got {psf!r}")

    psf_array = draw_psf_array(psf_profile, stamp_size, pixel_scale)
    psf_hlr = psf_profile.calculateHLR(scale=pixel_scale / 4, size=stamp_size * 4)
    noise = _NoiseModel(noise_sigma, stamp_size, correlated_noise)
    writer = _ShardWriter(out_dir, shard_size, overwrite)
    with _progress_bar(n_examples, progress, "synthetic galaxies") as bar:
        for ident in range(n_examples):
            writer.add(_synthetic_example(ident, seed, psf_profile, psf_array, psf_hlr, noise,
                                          stamp_size, pixel_scale))
            bar.update()
    metadata = {
        "source": "synthetic", "stamp_size": stamp_size, "pixel_scale": pixel_scale,
        "flux_units": COSMOS_FLUX_UNITS, "zero_point": COSMOS_ZERO_POINT,
        "psf": psf_description, "noise": noise.describe(),
        "config": {"n_examples": n_examples, "stamp_size": stamp_size,
                   "pixel_scale": pixel_scale, "psf": psf_description["type"]
                   if psf_description["type"] == "hst" else repr(psf),
                   "noise_sigma": float(noise_sigma), "correlated_noise": bool(correlated_noise),
                   "seed": seed, "shard_size": shard_size},
    }
    return writer.finish(metadata, ("mag_auto", "flux_radius", "zphot"))


def _fits_table(path: pathlib.Path) -> np.ndarray:
    with fits.open(path) as hdus:
        return np.array(hdus[1].data)


def _check_cosmos_files(catalog_dir: pathlib.Path, catalog_file: str,
                        exclusion_level: str) -> None:
    """Raise CosmosFilesNotFoundError listing every file of the sample that is missing."""
    catalog_path = catalog_dir / catalog_file
    needed = [catalog_file, catalog_file.replace(".fits", "_fits.fits")]
    if exclusion_level in ("marginal", "bad_stamp"):
        needed.append(catalog_file.replace(".fits", "_selection.fits"))
    if catalog_path.is_file():
        cat = _fits_table(catalog_path)
        names = {n.lower(): n for n in cat.dtype.names}
        for column in ("gal_filename", "psf_filename", "noise_filename"):
            if column in names:
                needed.extend(sorted({(f.decode() if isinstance(f, bytes) else str(f)).strip()
                                      for f in cat[names[column]]}))
    missing = [name for name in dict.fromkeys(needed) if not (catalog_dir / name).is_file()]
    if missing:
        raise CosmosFilesNotFoundError(
            f"COSMOS training sample files missing in {str(catalog_dir)!r}: "
            f"{', '.join(missing)}. Download them with `galsim_download_cosmos -s 25.2` "
            "(and pass the directory it reports as catalog_dir).")


def _lookup_column(tables: Sequence[np.ndarray], name: str) -> np.ndarray:
    """Find column ``name`` (case-insensitive) in the first table that has it."""
    for table in tables:
        for column in table.dtype.names:
            if column.lower() == name.lower():
                return np.asarray(table[column])
    available = sorted({c for table in tables for c in table.dtype.names}, key=str.lower)
    raise CatalogError(f"condition column {name!r} is not in the COSMOS catalogs; available "
                       f"columns: {', '.join(available)}")


def build_cosmos_dataset(out_dir: str | os.PathLike, catalog_dir: str | os.PathLike, *,
                         catalog_file: str = "real_galaxy_catalog_25.2.fits",
                         stamp_size: int = 64, pixel_scale: float = 0.03,
                         conditions: Sequence[str] = ("mag_auto", "flux_radius", "zphot"),
                         max_galaxies: int | None = None, exclusion_level: str = "marginal",
                         min_flux_radius: float | None = None, max_mag: float | None = None,
                         seed: int = 0, shard_size: int = 1024, overwrite: bool = False,
                         progress: bool | None = None) -> pathlib.Path:
    """Build a data set of real HST/ACS COSMOS galaxies (format 1), as in Lanusse et al. 2021.

    Each galaxy is a `galsim.RealGalaxy` from `galsim.COSMOSCatalog`, convolved back with its
    own original HST PSF and drawn with ``method='no_pixel'`` (the PSF image already holds the
    pixel), padded with its own correlated noise so that the whole stamp is noisy. The stored
    ``psf`` is that original PSF. ``noise_ps`` is the power spectrum of the noise in the drawn
    stamp, ``observed.noise`` of GalSim: the catalog noise correlation function (variance
    ``NOISE_VARIANCE``) propagated through the deconvolution by the original PSF and the
    convolution back, which drops the Fourier modes beyond the PSF's ``maxk``; ``noise_var`` is
    its variance (lag 0 of its correlation function), somewhat below ``NOISE_VARIANCE``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Directory to create (or an empty one).
    catalog_dir : str or os.PathLike
        Directory holding the files of ``galsim_download_cosmos`` (catalog, ``_fits`` and
        ``_selection`` catalogs, galaxy and PSF image files, noise correlation file).
    catalog_file : str, optional
        The RealGalaxyCatalog file name in ``catalog_dir``.
    stamp_size : int, optional
        Stamp side in pixels (at least 16).
    pixel_scale : float, optional
        Pixel scale in arcsec; the COSMOS images have 0.03.
    conditions : sequence of str, optional
        Condition columns, looked up case-insensitively in the ``_fits`` catalog, then in the
        main catalog (e.g. ``MAG``).
    max_galaxies : int, optional
        Keep at most this many galaxies, drawn at random (with ``seed``) after the cuts.
    exclusion_level : {"marginal", "bad_fits", "bad_stamp", "none"}, optional
        GalSim's COSMOSCatalog quality cuts.
    min_flux_radius, max_mag : float, optional
        Further cuts on ``flux_radius`` and ``mag_auto`` of the ``_fits`` catalog.
    seed : int, optional
        Seeds the galaxy subset and each galaxy's noise padding.
    shard_size : int, optional
        Galaxies per shard file.
    overwrite : bool, optional
        Replace a data set already in ``out_dir``.
    progress : bool or None, optional
        Show a progress bar; None shows it on a terminal only.

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    CosmosFilesNotFoundError
        Files of the sample are missing (all of them are listed).
    galsim_hub.errors.CatalogError
        A condition or cut column is absent, or a stamp holds NaN or infinite pixels.
    """
    stamp_size = _check_positive_int("stamp_size", stamp_size, minimum=16)
    pixel_scale = _check_positive_float("pixel_scale", pixel_scale)
    shard_size = _check_positive_int("shard_size", shard_size)
    seed = _check_positive_int("seed", seed, minimum=0)
    if max_galaxies is not None:
        max_galaxies = _check_positive_int("max_galaxies", max_galaxies)
    if exclusion_level not in EXCLUSION_LEVELS:
        raise ValueError(f"exclusion_level must be one of {EXCLUSION_LEVELS}, "
                         f"got {exclusion_level!r}")
    if isinstance(conditions, str) or not conditions or not all(
            isinstance(c, str) and c for c in conditions):
        raise ValueError(f"conditions must be a non-empty sequence of column names, "
                         f"got {conditions!r}")
    conditions = tuple(conditions)
    if len({c.lower() for c in conditions}) != len(conditions):
        raise ValueError(f"conditions has duplicate names: {conditions!r}")
    catalog_dir = pathlib.Path(catalog_dir)
    _check_cosmos_files(catalog_dir, catalog_file, exclusion_level)

    try:
        cosmos = galsim.COSMOSCatalog(file_name=catalog_file, dir=str(catalog_dir),
                                      exclusion_level=exclusion_level)
    except (KeyError, ValueError) as err:
        raise CatalogError(
            f"cannot apply exclusion_level={exclusion_level!r} to {catalog_file!r} ({err}); "
            "catalogs without parametric fits or selection columns need exclusion_level='none'"
        ) from err
    param_cat = cosmos.param_cat
    real_cat = np.array(cosmos.real_cat.cat)
    real_ident = _lookup_column([real_cat], "IDENT")
    if "ident" in {n.lower() for n in param_cat.dtype.names} and not np.array_equal(
            _lookup_column([param_cat], "IDENT"), real_ident):
        raise CatalogError(f"the IDENT columns of {catalog_file!r} and its _fits catalog differ: "
                           "the catalogs do not describe the same galaxies in the same order")
    tables = (param_cat, real_cat)
    values = np.stack([_lookup_column(tables, name).astype(np.float64) for name in conditions],
                      axis=1)

    indices = np.arange(cosmos.nobjects)  # indices into the COSMOSCatalog after exclusion
    orig = cosmos.orig_index
    keep = np.ones(len(indices), dtype=bool)
    if max_mag is not None:
        keep &= _lookup_column(tables, "mag_auto")[orig] <= float(max_mag)
    if min_flux_radius is not None:
        keep &= _lookup_column(tables, "flux_radius")[orig] >= float(min_flux_radius)
    indices = indices[keep]
    rng = np.random.default_rng(seed)
    if max_galaxies is not None and len(indices) > max_galaxies:
        indices = np.sort(rng.choice(indices, size=max_galaxies, replace=False))
    if len(indices) == 0:
        raise CatalogError("no COSMOS galaxy passes the cuts (exclusion_level, max_mag, "
                           "min_flux_radius)")

    writer = _ShardWriter(out_dir, shard_size, overwrite)
    with _progress_bar(len(indices), progress, "COSMOS galaxies") as bar:
        for index in indices:
            row = orig[index]
            ident = int(real_ident[row])
            deviate = galsim.BaseDeviate(int(np.random.default_rng([seed, row]).integers(2**31)))
            galaxy = cosmos.makeGalaxy(int(index), gal_type="real", rng=deviate,
                                       noise_pad_size=stamp_size * pixel_scale)
            observed = galsim.Convolve(galaxy, galaxy.original_psf)
            image = observed.drawImage(nx=stamp_size, ny=stamp_size, scale=pixel_scale,
                                       method="no_pixel").array
            psf_array = draw_psf_array(galaxy.original_psf, stamp_size, pixel_scale)
            # GalSim propagates the catalog noise through the deconvolution and the convolution
            # back: modes beyond the PSF's maxk are lost, so this is the noise in the stamp.
            noise_ps, noise_var = power_spectrum_from_correlated_noise(
                observed.noise, stamp_size, pixel_scale)
            if not (np.all(np.isfinite(image)) and np.all(np.isfinite(psf_array))):
                raise CatalogError(f"the stamp of COSMOS galaxy IDENT {ident} has NaN or "
                                   "infinite pixels")
            writer.add({"image": image, "psf": psf_array,
                        "noise_var": noise_var,
                        "noise_ps": noise_ps, "conditions": values[row], "ident": ident})
            bar.update()
    metadata = {
        "source": "cosmos", "stamp_size": stamp_size, "pixel_scale": pixel_scale,
        "flux_units": COSMOS_FLUX_UNITS, "zero_point": COSMOS_ZERO_POINT,
        "psf": {"type": "cosmos_original",
                "description": "each galaxy's own HST/ACS PSF (RealGalaxy.original_psf, which "
                               "includes the pixel), drawn with method='no_pixel'"},
        "noise": {"type": "cosmos",
                  "description": "the galaxy's own HST/ACS correlated noise, with noise padding "
                                 "outside the original postage stamp, as propagated by GalSim "
                                 "through the PSF deconvolution and reconvolution; noise_ps is "
                                 "its power spectrum, noise_var its variance"},
        "config": {"catalog_dir": str(catalog_dir), "catalog_file": catalog_file,
                   "stamp_size": stamp_size, "pixel_scale": pixel_scale,
                   "conditions": list(conditions), "max_galaxies": max_galaxies,
                   "exclusion_level": exclusion_level, "min_flux_radius": min_flux_radius,
                   "max_mag": max_mag, "seed": seed, "shard_size": shard_size},
    }
    return writer.finish(metadata, conditions)


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------

_REQUIRED_METADATA = {"format": int, "source": str, "stamp_size": int, "pixel_scale": (int, float),
                      "conditions": list, "n_examples": int, "shards": list,
                      "flux_units": str, "zero_point": (int, float)}
_REQUIRED_CONDITION_FIELDS = ("name", "unit", "description", "min", "max")


def read_dataset_metadata(path: str | os.PathLike) -> dict:
    """Read and validate the ``dataset.json`` of a data set directory.

    Parameters
    ----------
    path : str or os.PathLike
        The data set directory (or its ``dataset.json``).

    Returns
    -------
    dict
        The metadata.

    Raises
    ------
    galsim_hub.errors.MetadataError
        The directory is not a finished format-1 data set, or its metadata are malformed.
    """
    path = pathlib.Path(path)
    metadata_path = path if path.name == METADATA_FILE else path / METADATA_FILE
    if not metadata_path.is_file():
        raise MetadataError(f"{str(metadata_path)!r} not found: {str(metadata_path.parent)!r} "
                            "is not a data set, or its build did not finish")
    try:
        metadata = json.loads(metadata_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MetadataError(f"{str(metadata_path)!r} is not valid JSON: {err}") from err
    if not isinstance(metadata, dict):
        raise MetadataError(f"{str(metadata_path)!r} must hold a JSON object")
    for key, kind in _REQUIRED_METADATA.items():
        if key not in metadata:
            raise MetadataError(f"{str(metadata_path)!r} lacks the field {key!r}")
        if not isinstance(metadata[key], kind) or isinstance(metadata[key], bool):
            raise MetadataError(f"field {key!r} of {str(metadata_path)!r} has the wrong type "
                                f"({type(metadata[key]).__name__})")
    if metadata["format"] != FORMAT_VERSION:
        raise MetadataError(f"{str(metadata_path)!r} has data set format {metadata['format']}; "
                            f"this galsim-hub reads format {FORMAT_VERSION}")
    for i, condition in enumerate(metadata["conditions"]):
        if not isinstance(condition, dict) or any(f not in condition
                                                  for f in _REQUIRED_CONDITION_FIELDS):
            raise MetadataError(f"condition {i} of {str(metadata_path)!r} must have the fields "
                                f"{', '.join(_REQUIRED_CONDITION_FIELDS)}")
    missing = [s for s in metadata["shards"] if not (metadata_path.parent / s).is_file()]
    if missing:
        raise MetadataError(f"shards listed in {str(metadata_path)!r} are missing: "
                            f"{', '.join(missing)}")
    return metadata


def _shard_paths(path: str | os.PathLike) -> tuple[dict, list[pathlib.Path]]:
    path = pathlib.Path(path)
    directory = path.parent if path.name == METADATA_FILE else path
    metadata = read_dataset_metadata(directory)
    return metadata, [directory / name for name in metadata["shards"]]


def _check_keys(keys: Iterable[str], available: Iterable[str], path: pathlib.Path) -> list[str]:
    keys, available = list(keys), sorted(available)
    unknown = [k for k in keys if k not in available]
    if unknown:
        raise MetadataError(f"the data set {str(path)!r} has no array {', '.join(unknown)}; "
                            f"available: {', '.join(available)}")
    return keys


def load_arrays(path: str | os.PathLike, keys: Iterable[str] | None = None
                ) -> dict[str, np.ndarray]:
    """Load arrays of all shards of a data set, concatenated (for small sets and validation).

    Parameters
    ----------
    path : str or os.PathLike
        The data set directory.
    keys : iterable of str, optional
        The arrays to load (e.g. ``("image", "conditions")``); all of them by default.

    Returns
    -------
    dict of str to numpy.ndarray
    """
    metadata, shards = _shard_paths(path)
    parts: dict[str, list[np.ndarray]] = {}
    for shard in shards:
        with np.load(shard) as data:
            wanted = _check_keys(data.files if keys is None else keys, data.files, shard.parent)
            for key in wanted:
                parts.setdefault(key, []).append(data[key])
    return {key: np.concatenate(arrays) for key, arrays in parts.items()}


def make_tf_dataset(path: str | os.PathLike, batch_size: int, *,
                    keys: Sequence[str] = ("image", "psf", "noise_var", "noise_ps", "conditions"),
                    shuffle: bool = True, repeat: bool = True, seed: int = 0):
    """Stream a data set as a `tf.data.Dataset` of dicts of batched arrays.

    Shards are read one at a time (the shard order and the order within each shard are
    shuffled per pass, then a shuffle buffer of one shard mixes neighbouring shards), so data
    sets larger than memory can be streamed. Batches have exactly ``batch_size`` examples
    (the last incomplete batch of a pass is dropped when ``repeat`` is False).

    Parameters
    ----------
    path : str or os.PathLike
        The data set directory.
    batch_size : int
        Examples per batch; at most the number of examples.
    keys : sequence of str, optional
        Arrays to yield.
    shuffle : bool, optional
        Shuffle the examples (reproducibly, from ``seed``).
    repeat : bool, optional
        Loop over the data set for ever.
    seed : int, optional
        Seed of the shuffling.

    Returns
    -------
    tf.data.Dataset
        Yields dicts ``{key: tensor [batch_size, ...]}``.
    """
    import tensorflow as tf

    metadata, shards = _shard_paths(path)
    batch_size = _check_positive_int("batch_size", batch_size)
    if batch_size > metadata["n_examples"]:
        raise ValueError(f"batch_size {batch_size} exceeds the {metadata['n_examples']} "
                         f"examples of {str(path)!r}")
    keys = list(keys)
    with np.load(shards[0]) as first:
        keys = _check_keys(keys, first.files, shards[0].parent)
        signature = {k: tf.TensorSpec((None,) + first[k].shape[1:], tf.as_dtype(first[k].dtype))
                     for k in keys}
        buffer_size = len(first[keys[0]])

    def shards_of_passes():
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(len(shards)) if shuffle else range(len(shards))
            for i in order:
                with np.load(shards[i]) as data:
                    arrays = {k: data[k] for k in keys}
                if shuffle:
                    perm = rng.permutation(len(arrays[keys[0]]))
                    arrays = {k: v[perm] for k, v in arrays.items()}
                yield arrays
            if not repeat:
                return

    dataset = tf.data.Dataset.from_generator(shards_of_passes, output_signature=signature)
    dataset = dataset.unbatch()
    if shuffle:
        dataset = dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
