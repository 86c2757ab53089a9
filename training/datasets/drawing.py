"""Drawing helpers shared by the data set builders: PSF stamps, noise spectra, sizes, COSMOS units."""

from __future__ import annotations

import galsim
import numpy as np

__all__ = [
    "COSMOS_ZERO_POINT",
    "COSMOS_NOISE_SIGMA",
    "COSMOS_PIXEL_SCALE",
    "COSMOS_FLUX_UNITS",
    "hst_psf",
    "draw_psf_array",
    "draw_pixelised",
    "flux_radius_pixels",
    "power_spectrum_from_correlated_noise",
]

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

#: Oversampling of the real-space drawings that :func:`draw_pixelised` sums into pixels.
HIRES_OVERSAMPLING = 5


def hst_psf() -> galsim.GSObject:
    """The HST/ACS-like F814W PSF used by default for synthetic data sets.

    Returns
    -------
    galsim.GSObject
        ``Airy(lam=814 nm, diam=2.4 m, obscuration=0.33)`` convolved with a Gaussian of
        0.02" rms (jitter), in arcsec, without the pixel response.
    """
    airy = galsim.Airy(lam=HST_LAMBDA_NM, diam=HST_DIAMETER_M, obscuration=HST_OBSCURATION, scale_unit=galsim.arcsec)
    return galsim.Convolve(airy, galsim.Gaussian(sigma=HST_JITTER_SIGMA_ARCSEC))


def draw_psf_array(psf: galsim.GSObject, stamp_size: int, pixel_scale: float) -> np.ndarray:
    """Draw ``psf`` without pixel, centred on pixel ``(S // 2, S // 2)``, with unit sum."""
    image = psf.drawImage(nx=stamp_size, ny=stamp_size, scale=pixel_scale, method="no_pixel", use_true_center=False)
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


def power_spectrum_from_correlated_noise(
    noise: galsim.BaseCorrelatedNoise, stamp_size: int, pixel_scale: float
) -> tuple[np.ndarray, float]:
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


def draw_pixelised(profile: galsim.GSObject, stamp_size: int, pixel_scale: float) -> np.ndarray:
    """Profile convolved with the pixel, sampled at pixel centres.

    Drawn in real space on a grid oversampled 5 times and summed over each pixel: the cuspy
    bulges would otherwise need FFTs of thousands of pixels on a side.
    """
    n = HIRES_OVERSAMPLING
    hires = profile.drawImage(nx=stamp_size * n, ny=stamp_size * n, scale=pixel_scale / n, method="no_pixel").array
    return hires.reshape(stamp_size, n, stamp_size, n).sum(axis=(1, 3))
