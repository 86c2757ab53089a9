"""Turn decoded stamps ``[N, S, S, B]`` into GalSim profiles, with ``maxk`` found for the whole batch.

One wrap serves every model: a single-band model's galaxy is the
:class:`galsim.InterpolatedImage` of its one band; a multi-band model's is a
:class:`~galsim_hub.profiles.bands.MultiBandGalaxy` of per-band InterpolatedImages (and its
chromatic object). Either way every InterpolatedImage gets the ``maxk`` that GalSim would find,
computed for all stamps and bands at once (:func:`interpolated_image_maxk`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import galsim
import numpy as np
from galsim.interpolant import convert_interpolant

from galsim_hub.profiles.bands import BandSet, MultiBandGalaxy

_MAXK_CHUNK = 16  # stamps Fourier-transformed at once: small enough to stay in cache


class ProfileOptions(NamedTuple):
    """How stamps become :class:`galsim.InterpolatedImage` objects (their keyword arguments)."""

    x_interpolant: Any = None
    k_interpolant: Any = None
    pad_factor: float = 4
    gsparams: galsim.GSParams | None = None


def interpolated_image_maxk(
    images: np.ndarray,
    pixel_scale: float,
    pad_factor: float = 4,
    x_interpolant: Any = None,
    gsparams: galsim.GSParams | None = None,
) -> np.ndarray:
    """The ``maxk`` that :class:`galsim.InterpolatedImage` computes, for a batch of stamps.

    GalSim finds ``maxk`` one object at a time: it Fourier transforms the padded stamp,
    scans square rings ``max(|kx|, |ky|) = r`` outwards and stops once five rings in a row
    (counting the last one above) have no ``|F(k)|`` above ``maxk_threshold`` times the
    flux; then it discards the transform, which drawing computes again. This runs the same
    scan on batched, zero-padded FFTs, about twice as fast, and the values are GalSim's (a
    ring can only flip where ``|F(k)|`` sits within float32 round-off of the threshold), so
    they can be handed to GalSim as ``_force_maxk``.

    Parameters
    ----------
    images : numpy.ndarray
        ``[N, S, S]`` stamps.
    pixel_scale : float
        Pixel scale in arcsec.
    pad_factor, x_interpolant, gsparams
        As given to :class:`galsim.InterpolatedImage`.

    Returns
    -------
    numpy.ndarray
        ``[N]`` maxk values in 1/arcsec.
    """
    gsparams = galsim.GSParams.check(gsparams)
    if x_interpolant is None:
        interpolant = galsim.Quintic(gsparams=gsparams)
    else:
        interpolant = convert_interpolant(x_interpolant).withGSParams(gsparams)
    size = max(images.shape[1:])
    pad_size = galsim.Image.good_fft_size(int(math.ceil(pad_factor * size)) if pad_factor > 1 else size)
    half = pad_size // 2
    dk = math.pi / half
    last_ring = min(int(math.ceil(interpolant.krange / dk)), half)
    flux = images.sum(axis=(1, 2), dtype=np.float64)
    threshold = (gsparams.maxk_threshold * flux) ** 2
    above = np.empty((len(images), last_ring + 1), dtype=bool)
    for start in range(0, len(images), _MAXK_CHUNK):
        chunk = slice(start, start + _MAXK_CHUNK)
        above[chunk] = _rings_above(images[chunk], threshold[chunk], pad_size, last_ring)
    maxk_ring = np.zeros(len(images), dtype=int)
    count = np.zeros(len(images), dtype=int)
    done = np.zeros(len(images), dtype=bool)
    for ring in range(last_ring + 1):
        hit = above[:, ring] & ~done
        maxk_ring[hit] = ring
        count[hit] = 0
        count[~done] += 1
        done |= count == 5
    return (maxk_ring + 1) * dk / pixel_scale


def _rings_above(images: np.ndarray, threshold: np.ndarray, pad_size: int, last_ring: int) -> np.ndarray:
    """``[B, last_ring + 1]``: does ring ``max(|kx|, |ky|) = r`` hold a ``|F|^2 > threshold``?"""
    import scipy.fft

    spectrum = scipy.fft.rfft(images, n=pad_size, axis=2)
    spectrum = scipy.fft.fft(spectrum, n=pad_size, axis=1, overwrite_x=True)[:, :, : last_ring + 1]
    above = spectrum.real**2 + spectrum.imag**2 > threshold[:, None, None]  # [B, ky (wrapped), kx]
    rings = np.arange(last_ring + 1)
    # Fold -ky onto ky (the index wraps, so ky = -N/2 folds onto itself).
    folded = above[:, : last_ring + 1] | above[:, (pad_size - rings) % pad_size]
    # Ring r: the row |ky| = r for kx <= r, and the column kx = r for |ky| <= r.
    rows = np.logical_or.accumulate(folded, axis=2)[:, rings, rings]
    columns = np.logical_or.accumulate(folded, axis=1)[:, rings, rings]
    return rows | columns


def band_maxk(images: np.ndarray, pixel_scale: float, options: ProfileOptions = ProfileOptions()) -> np.ndarray:
    """``[N, B]``: :func:`interpolated_image_maxk` of every band of ``[N, S, S, B]`` stamps."""
    images = np.asarray(images)
    return np.stack(
        [
            interpolated_image_maxk(
                np.ascontiguousarray(images[..., b]),
                pixel_scale,
                options.pad_factor,
                options.x_interpolant,
                options.gsparams,
            )
            for b in range(images.shape[-1])
        ],
        axis=1,
    )


def _interpolated_image(
    stamp: np.ndarray, pixel_scale: float, options: ProfileOptions, maxk: float = 0.0
) -> galsim.InterpolatedImage:
    """One band's InterpolatedImage (``maxk`` 0: GalSim finds it)."""
    return galsim.InterpolatedImage(
        galsim.Image(np.array(stamp), scale=pixel_scale),
        x_interpolant=options.x_interpolant,
        k_interpolant=options.k_interpolant,
        pad_factor=options.pad_factor,
        gsparams=options.gsparams,
        _force_maxk=float(maxk),
    )


def galaxy_profile(
    stamp: np.ndarray,
    pixel_scale: float,
    band_set: BandSet | None,
    options: ProfileOptions = ProfileOptions(),
    maxk: np.ndarray | None = None,
) -> galsim.InterpolatedImage | MultiBandGalaxy:
    """The galaxy of one ``[S, S, B]`` stamp.

    Parameters
    ----------
    stamp : numpy.ndarray
        ``[S, S, B]`` the galaxy in each band.
    pixel_scale : float
        Arcsec per pixel.
    band_set : BandSet or None
        The bands of a multi-band model; ``None`` for a single-band model (``B = 1``).
    options : ProfileOptions
        Interpolants, padding and GSParams of the InterpolatedImages.
    maxk : numpy.ndarray, optional
        ``[B]`` each band's ``maxk`` (:func:`band_maxk`); by default GalSim finds it.

    Returns
    -------
    galsim.InterpolatedImage or MultiBandGalaxy
    """
    maxk = np.zeros(stamp.shape[-1]) if maxk is None else maxk
    images = [_interpolated_image(stamp[..., b], pixel_scale, options, maxk[b]) for b in range(stamp.shape[-1])]
    if band_set is None:
        return images[0]
    return MultiBandGalaxy(band_set, images, stamp, options.pad_factor)


def wrap_stamps(
    images: np.ndarray, pixel_scale: float, band_set: BandSet | None, options: ProfileOptions = ProfileOptions()
) -> list:
    """The galaxies of ``[N, S, S, B]`` stamps (:func:`galaxy_profile`), their ``maxk`` found in one batch."""
    images = np.asarray(images)
    maxk = band_maxk(images, pixel_scale, options)
    return [
        galaxy_profile(stamp, pixel_scale, band_set, options, galaxy_maxk) for stamp, galaxy_maxk in zip(images, maxk)
    ]


def as_gsobject(
    galaxy: galsim.InterpolatedImage | MultiBandGalaxy, bandpass: galsim.Bandpass | None = None
) -> galsim.GSObject | galsim.ChromaticObject:
    """The object GalSim draws for a galaxy of :func:`galaxy_profile`.

    A single-band galaxy is its InterpolatedImage. A multi-band galaxy is its chromatic
    object or, given the one ``bandpass`` it will be drawn through with everything else
    achromatic, :meth:`MultiBandGalaxy.through` it: one InterpolatedImage, the same pixels.
    """
    if not isinstance(galaxy, MultiBandGalaxy):
        return galaxy
    return galaxy.chromatic if bandpass is None else galaxy.through(bandpass)


def band_images(galaxy: galsim.InterpolatedImage | MultiBandGalaxy) -> list[galsim.InterpolatedImage]:
    """A galaxy's InterpolatedImage in each band, in the model's band order (one for a single-band model)."""
    if isinstance(galaxy, MultiBandGalaxy):
        return [galaxy.images[band] for band in galaxy.bands]
    return [galaxy]
