"""Cleaning of real postage stamps before GalSim pads them: sky, edge taper, the taper's noise.

A COSMOS postage stamp ends where its cut-out ends, on a sky level that is not zero. Left as it
is, GalSim's noise padding around it shows the stamp as a square pedestal in every example, and
a model trained on them learns the pedestal. :func:`clean_stamp` subtracts the sky, brings the
last :data:`EDGE_TAPER` pixels to zero with a cosine and gives back the noise the taper took.
"""

from __future__ import annotations

import galsim
import numpy as np

__all__ = ["stamp_background", "edge_taper", "clean_stamp", "catalog_noise", "EDGE_TAPER"]


def stamp_background(stamp: np.ndarray, width: int = 2, clip: float = 3.0) -> float:
    """Robust sky level of a postage stamp, from its border (for catalogs without ``NOISE_MEAN``).

    The sigma-clipped median of the outer ``width`` pixels on each side.

    Parameters
    ----------
    stamp : numpy.ndarray
        The 2-d postage stamp.
    width : int, optional
        Border width in pixels.
    clip : float, optional
        Pixels more than ``clip`` robust standard deviations from the median are dropped
        (iterated five times), so that a neighbour or a bright wing crossing the border does
        not bias the level.

    Returns
    -------
    float
        The background, in the stamp's units.
    """
    stamp = np.asarray(stamp, dtype=np.float64)
    if stamp.ndim != 2 or min(stamp.shape) <= 2 * width:
        raise ValueError(f"a stamp of shape {stamp.shape} has no border of width {width}")
    border = np.concatenate(
        [
            stamp[:width].ravel(),
            stamp[-width:].ravel(),
            stamp[width:-width, :width].ravel(),
            stamp[width:-width, -width:].ravel(),
        ]
    )
    border = border[np.isfinite(border)]
    for _ in range(5):
        centre = np.median(border)
        spread = 1.4826 * np.median(np.abs(border - centre))
        if spread == 0:
            break
        kept = border[np.abs(border - centre) <= clip * spread]
        if kept.size == border.size or kept.size < 16:
            break
        border = kept
    return float(np.median(border))


#: Width (native pixels) of the cosine taper that brings a postage stamp's edge to zero.
EDGE_TAPER = 8


def edge_taper(shape: tuple[int, int], width: int = EDGE_TAPER) -> np.ndarray:
    """A window that rises from 0 at a stamp's edge to 1 at ``width`` pixels inside it (cosine).

    The width shrinks to a quarter of the stamp's smaller side for small stamps.
    """
    ny, nx = shape
    width = max(1, min(int(width), min(shape) // 4))
    distance_y = np.minimum(np.arange(ny), np.arange(ny)[::-1])
    distance_x = np.minimum(np.arange(nx), np.arange(nx)[::-1])
    distance = np.minimum(distance_y[:, None], distance_x[None, :]).astype(np.float64)
    return np.where(distance >= width, 1.0, 0.5 - 0.5 * np.cos(np.pi * distance / width))


def catalog_noise(
    noise_image: galsim.Image | None, pixel_scale: float, variance: float, rng: galsim.BaseDeviate
) -> galsim.BaseNoise:
    """The stamp's own noise, built as `galsim.RealGalaxy` builds it for the noise padding."""
    if noise_image is None:
        return galsim.UncorrelatedNoise(variance, rng=rng, scale=pixel_scale)
    correlation = galsim.InterpolatedImage(
        noise_image, normalization="sb", calculate_stepk=False, calculate_maxk=False, x_interpolant="linear"
    )
    return galsim.BaseCorrelatedNoise(rng, correlation, noise_image.wcs).withVariance(variance)


def clean_stamp(stamp: np.ndarray, sky: float, window: np.ndarray | None = None) -> np.ndarray:
    """A COSMOS postage stamp ready for noise padding: less its sky, its edge tapered to zero.

    COSMOS stamps carry a sky offset (``NOISE_MEAN`` of the catalog) and, for the bright
    galaxies of GalSim's 23.5 sample, are cut where the galaxy's wings are still well above
    it: the border's mean sits a median of 18 standard errors above ``NOISE_MEAN`` there.
    Padded with zero-mean noise as it is, the stamp shows as a faint square, which a model
    learns (the pedestals of ``hub:cosmos_real`` 1.0). Subtracting the sky and tapering the
    last ``width`` pixels to zero removes the edge while keeping the galaxy's inner profile
    untouched; subtracting the border's own level instead would remove a median 19% of those
    galaxies' flux (the taper: 6%). The data-set builder then adds back, under the taper,
    ``sqrt(1 - window**2)`` times a fresh realisation of the stamp's own noise, so that the
    noise keeps its variance up to the edge.

    Parameters
    ----------
    stamp : numpy.ndarray
        The 2-d postage stamp.
    sky : float
        Its sky level (``NOISE_MEAN``, or :func:`stamp_background` where the catalog has none).
    window : numpy.ndarray, optional
        The taper (default :func:`edge_taper` of the stamp's shape).
    """
    stamp = np.asarray(stamp, dtype=np.float64)
    return (stamp - sky) * (edge_taper(stamp.shape) if window is None else window)
