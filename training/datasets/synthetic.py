"""A synthetic galaxy population with known truth: bulge + exponential disc + star-forming knots.

:func:`build_synthetic_dataset` draws it through an HST-like PSF with COSMOS-like noise and also
stores the noiseless truth, so that a trained model can be checked against what it should produce.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any, Mapping

import galsim
import numpy as np

from galsim_hub.training.datasets.drawing import (
    COSMOS_FLUX_UNITS,
    COSMOS_NOISE_SIGMA,
    COSMOS_PIXEL_SCALE,
    COSMOS_ZERO_POINT,
    HST_DIAMETER_M,
    HST_JITTER_SIGMA_ARCSEC,
    HST_LAMBDA_NM,
    HST_OBSCURATION,
    draw_pixelised,
    draw_psf_array,
    flux_radius_pixels,
    hst_psf,
)
from galsim_hub.training.datasets.shards import Part, ShardWriter, check_layout, check_positive_int, progress_bar

__all__ = [
    "sample_synthetic_parameters",
    "synthetic_components",
    "synthetic_galaxy_profiles",
    "build_synthetic_dataset",
    "NoiseModel",
]

#: rms (pixels) of the Gaussian kernel that colours the synthetic correlated noise. White noise
#: smoothed by it has nearest-neighbour and diagonal correlations 0.48 and 0.23, those of the
#: ACS F814W noise correlation function of the COSMOS sample.
CORRELATED_NOISE_KERNEL_SIGMA_PIXELS = 0.62

CONDITION_INFO = {
    "mag_auto": ("mag", "F814W AB magnitude (SExtractor MAG_AUTO), zero point 25.94"),
    "flux_radius": ("pixel", "half-light radius of the PSF-convolved galaxy in stamp pixels (SExtractor FLUX_RADIUS)"),
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
MAX_REDRAWS = 1000


class NoiseModel:
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
            self.power_spectrum = self.sigma**2 * np.abs(self._transfer) ** 2
        else:
            self.power_spectrum = np.full((stamp_size, stamp_size // 2 + 1), self.sigma**2)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        white = rng.normal(0.0, self.sigma, (self.stamp_size, self.stamp_size))
        if not self.correlated:
            return white
        return np.fft.irfft2(np.fft.rfft2(white) * self._transfer, s=white.shape)

    def describe(self) -> dict:
        if self.correlated:
            return {
                "type": "correlated_gaussian",
                "sigma": self.sigma,
                "kernel_sigma_pixels": CORRELATED_NOISE_KERNEL_SIGMA_PIXELS,
                "description": "white Gaussian noise circularly convolved with a Gaussian "
                "kernel (ACS-like pixel correlations); noise_ps is exact",
            }
        return {"type": "white_gaussian", "sigma": self.sigma, "description": "white Gaussian pixel noise"}


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
        SIZE_LOG_INTERCEPT + SIZE_LOG_SLOPE * (mag - 23.0) + SIZE_LOG_SCATTER * size_deviate
    )
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


def synthetic_components(params: Mapping[str, Any]) -> dict[str, galsim.GSObject]:
    """Build the three components of one synthetic galaxy, with their F814W fluxes.

    Parameters
    ----------
    params : dict
        As returned by :func:`sample_synthetic_parameters`.

    Returns
    -------
    dict of str to galsim.GSObject
        ``bulge`` (de Vaucouleurs, half as flattened as the disc), ``disc`` (exponential,
        without the knots' share of its flux) and ``knots`` (star-forming knots positioned by
        `galsim.RandomKnots` and drawn as Gaussians of 0.015" rms, so that the profiles are
        analytic in real space). Their fluxes add up to the galaxy's F814W flux (zero point
        :data:`COSMOS_ZERO_POINT`).
    """
    flux = 10 ** (-0.4 * (params["mag"] - COSMOS_ZERO_POINT))
    bulge_flux = flux * params["bulge_fraction"]
    disc_flux = flux - bulge_flux
    knot_flux = disc_flux * params["knot_fraction"]
    shear = galsim.Shear(e=params["ellipticity"], beta=params["beta"] * galsim.radians)
    bulge_shear = galsim.Shear(e=0.5 * params["ellipticity"], beta=params["beta"] * galsim.radians)

    bulge = galsim.DeVaucouleurs(half_light_radius=params["bulge_hlr"], flux=bulge_flux)
    positions = galsim.RandomKnots(
        params["n_knots"], half_light_radius=params["disc_hlr"], flux=1.0, rng=galsim.BaseDeviate(params["knot_seed"])
    ).points
    knot = galsim.Gaussian(sigma=KNOT_SIGMA_ARCSEC, flux=knot_flux / len(positions))
    disc = galsim.Exponential(half_light_radius=params["disc_hlr"], flux=disc_flux - knot_flux)
    return {
        "bulge": bulge.shear(bulge_shear),
        "disc": disc.shear(shear),
        "knots": galsim.Add([knot.shift(x, y) for x, y in positions]).shear(shear),
    }


def synthetic_galaxy_profiles(params: Mapping[str, Any]) -> tuple[galsim.GSObject, galsim.GSObject]:
    """Build the GalSim profiles of one synthetic galaxy.

    Parameters
    ----------
    params : dict
        As returned by :func:`sample_synthetic_parameters`.

    Returns
    -------
    galaxy, smooth : galsim.GSObject
        The galaxy (the sum of :func:`synthetic_components`) and the same galaxy with the knot
        flux given back to the disc.
    """
    components = synthetic_components(params)
    disc, knots = components["disc"], components["knots"]
    galaxy = galsim.Add([components["bulge"], disc, knots])
    smooth = galsim.Add([components["bulge"], disc.withFlux(disc.flux + knots.flux)])
    return galaxy, smooth


def _synthetic_example(
    ident: int,
    seed: int,
    psf: galsim.GSObject,
    psf_array: np.ndarray,
    psf_hlr: float,
    noise: NoiseModel,
    stamp_size: int,
    pixel_scale: float,
) -> dict:
    """Draw galaxy ``ident`` of a synthetic data set, redrawing those that overflow the stamp."""
    rng = np.random.default_rng([seed, ident])
    max_radius = stamp_size / 5.0
    for _ in range(MAX_REDRAWS):
        params = sample_synthetic_parameters(rng, psf_hlr)
        if params["disc_hlr"] / pixel_scale > max_radius:
            continue
        galaxy, smooth = synthetic_galaxy_profiles(params)
        convolved = galsim.Convolve(galaxy, psf).drawImage(nx=stamp_size, ny=stamp_size, scale=pixel_scale).array
        radius = flux_radius_pixels(convolved)
        if radius <= max_radius:
            break
    else:
        raise RuntimeError(
            f"no synthetic galaxy with flux_radius <= {max_radius:.1f} px found in "
            f"{MAX_REDRAWS} draws: use a larger stamp_size or a coarser pixel_scale"
        )
    return {
        "image": convolved + noise.sample(rng),
        "psf": psf_array,
        "noise_var": noise.sigma**2,
        "noise_ps": noise.power_spectrum,
        "conditions": [params["mag"], radius, params["zphot"]],
        "ident": ident,
        "truth": draw_pixelised(galaxy, stamp_size, pixel_scale),
        "truth_smooth": draw_pixelised(smooth, stamp_size, pixel_scale),
    }


def build_synthetic_dataset(
    out_dir: str | os.PathLike,
    n_examples: int,
    *,
    stamp_size: int = 64,
    pixel_scale: float = 0.03,
    psf: str | galsim.GSObject = "hst",
    noise_sigma: float | None = None,
    correlated_noise: bool = False,
    seed: int = 0,
    shard_size: int = 1024,
    overwrite: bool = False,
    part: Part | None = None,
    progress: bool | None = None,
) -> pathlib.Path:
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
        Colour the noise with an ACS-like correlation (see :class:`NoiseModel`).
    seed : int, optional
        Seed of the whole data set.
    shard_size : int, optional
        Galaxies per shard file.
    overwrite : bool, optional
        Replace a data set already in ``out_dir``.
    part : Part, optional
        Build only this part of the data set (its shards and a part manifest), one job of several;
        :func:`~galsim_hub.training.datasets.shards.merge_parts` then writes ``dataset.json``.
    progress : bool or None, optional
        Show a progress bar; None shows it on a terminal only.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    n_examples = check_positive_int("n_examples", n_examples)
    stamp_size, pixel_scale, shard_size, seed = check_layout(stamp_size, pixel_scale, shard_size, seed)
    if noise_sigma is None:
        noise_sigma = COSMOS_NOISE_SIGMA
    if not (isinstance(noise_sigma, (int, float)) and math.isfinite(noise_sigma) and noise_sigma >= 0):
        raise ValueError(f"noise_sigma must be a non-negative number, got {noise_sigma!r}")
    if isinstance(psf, str) and psf == "hst":
        psf_profile = hst_psf()
        psf_description = {
            "type": "hst",
            "lam_nm": HST_LAMBDA_NM,
            "diam_m": HST_DIAMETER_M,
            "obscuration": HST_OBSCURATION,
            "jitter_sigma_arcsec": HST_JITTER_SIGMA_ARCSEC,
            "description": "Airy(814 nm, 2.4 m, obscuration 0.33) convolved with a Gaussian "
            "jitter; the same PSF for every galaxy",
        }
    elif isinstance(psf, galsim.GSObject):
        psf_profile = psf
        psf_description = {
            "type": "galsim",
            "repr": repr(psf),
            "description": "user-given GalSim profile; the same for every galaxy",
        }
    else:
        raise ValueError(f"psf must be 'hst' or a galsim.GSObject, got {psf!r}")

    psf_array = draw_psf_array(psf_profile, stamp_size, pixel_scale)
    psf_hlr = psf_profile.calculateHLR(scale=pixel_scale / 4, size=stamp_size * 4)
    noise = NoiseModel(noise_sigma, stamp_size, correlated_noise)
    writer = ShardWriter(out_dir, shard_size, overwrite, part)
    selected = writer.selected(n_examples)
    with progress_bar(len(selected), progress, "synthetic galaxies") as bar:
        for ident in selected:
            example = _synthetic_example(ident, seed, psf_profile, psf_array, psf_hlr, noise, stamp_size, pixel_scale)
            writer.add(example, ident)
            bar.update()
    metadata = {
        "source": "synthetic",
        "stamp_size": stamp_size,
        "pixel_scale": pixel_scale,
        "flux_units": COSMOS_FLUX_UNITS,
        "zero_point": COSMOS_ZERO_POINT,
        "psf": psf_description,
        "noise": noise.describe(),
        "config": {
            "n_examples": n_examples,
            "stamp_size": stamp_size,
            "pixel_scale": pixel_scale,
            "psf": psf_description["type"] if psf_description["type"] == "hst" else repr(psf),
            "noise_sigma": float(noise_sigma),
            "correlated_noise": bool(correlated_noise),
            "seed": seed,
            "shard_size": shard_size,
        },
    }
    return writer.finish(metadata, ("mag_auto", "flux_radius", "zphot"), CONDITION_INFO, n_total=n_examples)
