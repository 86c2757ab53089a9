"""Multi-band galaxies: per-band images and one chromatic object.

A multi-band (format 2) model decodes one morphology into ``B`` images, one per training band.
This module turns them into GalSim objects:

:class:`BandSet`
    The model's bands (:class:`galsim.Bandpass`, effective wavelength, zero point) and the
    ``B`` spectral energy distributions of the chromatic construction below, built once per model.
:class:`MultiBandGalaxy`
    One sampled galaxy: ``images[band]`` (:class:`galsim.InterpolatedImage`), ``chromatic``
    (a :class:`galsim.ChromaticObject`) and ``through(bandpass)``.

The chromatic object
--------------------
``chromatic = sum_c I_c * S_c``: the band images ``I_c`` themselves, each times an SED ``S_c``
(photons/nm, piecewise linear in wavelength). Let ``h_b`` be the "hat" functions of the band
effective wavelengths ``l_1 < ... < l_B``: ``h_b`` is 1 at ``l_b``, falls linearly to 0 at
its neighbours, and ``h_1`` (``h_B``) stays 1 below ``l_1`` (above ``l_B``); they sum to 1 at
every wavelength. With ``M[a, b] = integral T_a h_b`` (the photon flux of ``h_b`` through band
``a``'s throughput ``T_a``), ``S_c = sum_b (M^-1)[b, c] h_b``, so that
``integral T_a S_c = delta_ac``. Hence:

* drawn through training band ``a``, the object is exactly ``I_a`` (the integrals of
  piecewise-linear tables are exact in GalSim, so this holds to float round-off);
* at wavelength ``l`` the galaxy's surface brightness is ``sum_b J_b h_b(l)`` with
  ``J = M^-1 I``: it **interpolates** linearly in wavelength between the profiles ``J_b``
  attributed to the effective wavelengths (``J_b`` is ``I_b`` with the light its neighbours'
  hats put into band ``b`` taken out), and **extrapolates** flat beyond the bluest and
  reddest band (``J_1`` below ``l_1``, ``J_B`` above ``l_B``), from :data:`WAVE_MIN` to
  :data:`WAVE_MAX` nm;
* a galaxy whose images are those of one profile with a flat photon spectrum
  (``I_a = P integral T_a``) is that flat-spectrum profile at every wavelength, since the
  hats sum to 1.

Unlike ``galsim.InterpolatedChromaticObject.from_images``, which needs the drawing bandpass
inside the range of the given wavelengths (training bands whose throughput reaches beyond the
bluest or reddest effective wavelength fail with ``GalSimRangeError``), this draws through any
bandpass, and every term is separable (a profile times an SED): GalSim draws it as ``B``
scaled :class:`~galsim.InterpolatedImage` draws, with no integral over wavelength, and the
SEDs are shared by every galaxy of the model. Drawn with an achromatic PSF,
``through(bandpass)`` gives the same image from a single InterpolatedImage.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Mapping

import galsim
import numpy as np

from galsim_hub.errors import MetadataError

#: Wavelength range (nm) over which the chromatic object is defined (flat beyond the bands).
WAVE_MIN, WAVE_MAX = 1.0, 100000.0
#: A band system whose flux matrix has a larger condition number is refused.
MAX_CONDITION = 1e8


def band_bandpass(band: Mapping, source: str = "model") -> galsim.Bandpass:
    """The :class:`galsim.Bandpass` of one band of the metadata (file name or throughput table)."""
    spec = band["bandpass"]
    if isinstance(spec, str):
        try:
            return galsim.Bandpass(spec, wave_type="nm")
        except (OSError, ValueError, galsim.GalSimError) as error:
            raise MetadataError(
                f"{source}: band '{band['name']}' bandpass {spec!r} is not a GalSim bandpass file "
                f"(e.g. 'LSST_g.dat') nor a readable file: {error}"
            ) from None
    table = np.asarray(spec, dtype=np.float64)
    return galsim.Bandpass(galsim.LookupTable(table[:, 0], table[:, 1], interpolant="linear"), wave_type="nm")


class BandSet:
    """The bands of a multi-band model and the SEDs of its chromatic objects.

    Parameters
    ----------
    bands : list of dict
        The metadata's validated ``bands`` (see :func:`galsim_hub.metadata.validate_bands`).
    source : str
        Where they come from, for error messages.

    Raises
    ------
    MetadataError
        When a bandpass file is unknown, an effective wavelength lies outside its bandpass, or
        the bands' flux matrix is singular (bands too alike to be told apart).
    """

    def __init__(self, bands: list[dict], source: str = "model"):
        self.names = tuple(band["name"] for band in bands)
        self.zero_points = {band["name"]: float(band["zero_point"]) for band in bands}
        self.bandpasses = {band["name"]: band_bandpass(band, source) for band in bands}
        self.wavelengths = np.array([float(band["effective_wavelength"]) for band in bands])
        for name, wavelength in zip(self.names, self.wavelengths):
            bandpass = self.bandpasses[name]
            if not bandpass.blue_limit <= wavelength <= bandpass.red_limit:
                raise MetadataError(
                    f"{source}: band '{name}' effective wavelength {wavelength:g} nm lies outside its bandpass "
                    f"[{bandpass.blue_limit:g}, {bandpass.red_limit:g}] nm"
                )
        knots = np.concatenate([[WAVE_MIN], self.wavelengths, [WAVE_MAX]])
        hats = [self._sed(knots, np.concatenate([[u[0]], u, [u[-1]]])) for u in np.eye(len(self.names))]
        fluxes = np.array([[hat.calculateFlux(self.bandpasses[a]) for hat in hats] for a in self.names])
        if np.linalg.cond(fluxes) > MAX_CONDITION:
            raise MetadataError(
                f"{source}: the bands {', '.join(self.names)} overlap too much to be told apart (their flux "
                "matrix is singular); give each band a distinct bandpass and effective wavelength"
            )
        inverse = np.linalg.inv(fluxes)  # S_c = sum_b inverse[b, c] h_b
        #: ``{band: galsim.SED}``: the SED of each band image in the chromatic object.
        self.seds = {
            name: self._sed(knots, np.concatenate([[column[0]], column, [column[-1]]]))
            for name, column in zip(self.names, inverse.T)
        }

    @staticmethod
    def _sed(knots: np.ndarray, values: np.ndarray) -> galsim.SED:
        return galsim.SED(galsim.LookupTable(knots, values, interpolant="linear"), wave_type="nm", flux_type="fphotons")

    def __len__(self) -> int:
        return len(self.names)

    def weights(self, bandpass: galsim.Bandpass) -> np.ndarray:
        """``[B]``: the chromatic object through ``bandpass`` is ``sum_c weights[c] I_c``."""
        return np.array([self.seds[name].calculateFlux(bandpass) for name in self.names])


_BAND_SETS: dict[str, BandSet] = {}


def band_set_of(metadata: Mapping, source: str = "model") -> BandSet | None:
    """The :class:`BandSet` of a model's metadata (``None`` without ``bands``), built once per process.

    Building one reads bandpass files and integrates the SEDs; models, their config inputs and
    publication checks with the same bands share it.
    """
    bands = metadata.get("bands")
    if bands is None:
        return None
    key = json.dumps(bands, sort_keys=True)
    if key not in _BAND_SETS:
        _BAND_SETS[key] = BandSet(bands, source)
    return _BAND_SETS[key]


class MultiBandGalaxy:
    """One galaxy of a multi-band model: its image in each band and its chromatic object.

    Parameters
    ----------
    band_set : BandSet
        The model's bands.
    images : list of galsim.InterpolatedImage
        The galaxy's profile in each band, in the order of ``band_set.names``.
    arrays : numpy.ndarray
        ``[S, S, B]`` the stamps they were built from.
    pad_factor : float
        The ``pad_factor`` the images were built with (used by :meth:`through`).

    Attributes
    ----------
    bands : tuple of str
        Band names, in the model's order.
    images : dict
        ``{band: galsim.InterpolatedImage}``, in the model's flux units of that band.
    """

    def __init__(
        self, band_set: BandSet, images: list[galsim.InterpolatedImage], arrays: np.ndarray, pad_factor: float = 4
    ):
        if len(images) != len(band_set) or np.shape(arrays)[-1] != len(band_set):
            raise ValueError(f"a galaxy of the bands {list(band_set.names)} needs {len(band_set)} images and stamps")
        self.band_set = band_set
        self.pad_factor = pad_factor
        self.bands = band_set.names
        self.images = dict(zip(self.bands, images))
        self.arrays = arrays

    def __repr__(self) -> str:
        return f"MultiBandGalaxy(bands={list(self.bands)!r})"

    def __getitem__(self, band: str) -> galsim.InterpolatedImage:
        return self.images[band]

    @cached_property
    def chromatic(self) -> galsim.ChromaticObject:
        """The galaxy as a :class:`galsim.ChromaticObject` (see the module docstring).

        Drawn through a training band's bandpass it gives that band's image; through any other
        bandpass, the linear interpolation (flat extrapolation) in wavelength of the bands.
        """
        return galsim.Add([self.images[name] * self.band_set.seds[name] for name in self.bands])

    def through(self, bandpass: galsim.Bandpass) -> galsim.InterpolatedImage:
        """The chromatic object integrated over ``bandpass``, as one InterpolatedImage.

        Drawn (with achromatic PSFs), it gives the image ``chromatic.drawImage(bandpass)`` gives,
        at the cost of a single-band galaxy: the band stamps weighted by :meth:`BandSet.weights`.
        """
        weights = self.band_set.weights(bandpass)
        first = self.images[self.bands[0]]
        stamp = np.tensordot(self.arrays, weights, axes=([2], [0])).astype(np.float32)
        return galsim.InterpolatedImage(
            galsim.Image(stamp, scale=first.image.scale),
            x_interpolant=first.x_interpolant,
            k_interpolant=first.k_interpolant,
            pad_factor=self.pad_factor,
            gsparams=first.gsparams,
            _force_maxk=max(image.maxk for image in self.images.values()),
            _force_stepk=min(image.stepk for image in self.images.values()),
        )
