"""Multi-band galaxies: per-band images, one chromatic object, and per-band catalog fluxes.

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
from typing import Any, Mapping

import galsim
import numpy as np

from galsim_hub.errors import MetadataError
from galsim_hub.sampling.fluxes import DEFAULT_OUT_OF_RANGE, SamplingPlan, catalog_fluxes, fluxes_from_magnitudes, set_fluxes

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

    def fluxes(
        self, catalog: Any, n_rows: int, flux: Any = None, mag: Any = None, zero_point: Any = None
    ) -> dict[int, np.ndarray]:
        """Per-band catalog fluxes: ``{band index: [N] fluxes}`` for the bands given.

        Parameters
        ----------
        catalog : astropy.table.Table, dict, numpy structured array, ...
            The catalog being sampled.
        n_rows : int
            Number of galaxies.
        flux, mag : dict, optional
            ``{band name: column name or values}``: the flux, or the AB magnitude, of each galaxy
            in that band. Bands left out keep the model's flux. A band may appear in only one.
        zero_point : dict, optional
            ``{band name: zero point}`` of ``mag``; by default each band's ``zero_point``.

        Raises
        ------
        ValueError
            When ``flux``, ``mag`` or ``zero_point`` is not a dict, names an unknown band, or a
            band is given both a flux and a magnitude.
        CatalogError
            As :func:`galsim_hub.sampling.fluxes.catalog_fluxes`.
        """
        given = {}
        for role, values in (("flux", flux), ("mag", mag), ("zero_point", zero_point)):
            if values is None:
                given[role] = {}
                continue
            if not isinstance(values, Mapping):
                item = "value" if role == "zero_point" else "column"
                raise ValueError(
                    f"a multi-band model takes {role}= as a dict {{band: {item}}} over its bands "
                    f"{list(self.names)}, got {type(values).__name__}"
                )
            unknown = sorted(set(values) - set(self.names))
            if unknown:
                raise ValueError(f"{role}= names unknown band(s) {unknown}; the model's bands are {list(self.names)}")
            empty = sorted(band for band, value in values.items() if value is None)
            if empty:
                raise ValueError(f"{role}= gives None for band(s) {empty}: give a column name or values "
                                 "for each band named, or leave the band out")
            given[role] = dict(values)
        both = sorted(set(given["flux"]) & set(given["mag"]))
        if both:
            raise ValueError(f"band(s) {both} are given both flux= and mag=; give one per band")
        stray = sorted(set(given["zero_point"]) - set(given["mag"]))
        if stray:
            raise ValueError(f"zero_point= for band(s) {stray} without mag= for them")
        result = {}
        for index, name in enumerate(self.names):
            if name in given["flux"]:
                result[index] = catalog_fluxes(catalog, n_rows, flux=given["flux"][name])
            elif name in given["mag"]:
                result[index] = catalog_fluxes(
                    catalog, n_rows, mag=given["mag"][name], zero_point=given["zero_point"].get(name),
                    default_zero_point=self.zero_points[name],
                )
        return result


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


def band_magnitude_terms(metadata: Mapping) -> dict[int, dict[int, float]] | None:
    """How the model's magnitude and colour conditions give every band's AB magnitude.

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


def multiband_plan(conditions: np.ndarray, metadata: Mapping, out_of_range: str = DEFAULT_OUT_OF_RANGE,
                   **options: Any) -> SamplingPlan:
    """The out-of-range plan of a multi-band model: decode ``plan.inputs`` (clipped or not).

    Clipped rows are decoded at the clipped conditions. When the model's magnitude and colour
    conditions give every band's magnitude (:func:`band_magnitude_terms`), the clipped rows'
    flux in each band is set from the catalog's values, with the band's zero point:
    ``plan.band_fluxes`` is ``{band index: [N] fluxes}``, NaN for the rows left alone (use
    :func:`apply_band_fluxes`); otherwise it is empty and clipped rows keep the model's flux.
    The plausibility check and pull-in of single-band models
    (:class:`~galsim_hub.sampling.fluxes.SamplingPlan`) are not applied to multi-band stamps. ``options``
    go to ``SamplingPlan``.
    """
    conditions = np.asarray(conditions, dtype=np.float64)
    terms = band_magnitude_terms(metadata)
    if terms is None:
        note = ("their flux is the model's at the clipped conditions (the model's conditions do not give "
                "every band's magnitude)")
    else:
        note = "their flux in every band is set from the catalog's magnitude and colours"
    single_band_only = {key: value for key, value in metadata.items() if key != "zero_point"}
    plan = SamplingPlan(conditions, single_band_only, out_of_range, flux_note=note, **options)
    plan.band_fluxes = {}
    if terms is not None and plan.clipped.any():
        for band, coefficients in terms.items():
            mags = sum(coefficient * conditions[:, index] for index, coefficient in coefficients.items())
            fluxes = np.full(len(conditions), np.nan)
            labels = options.get("labels")
            rows = np.flatnonzero(plan.clipped)
            fluxes[plan.clipped] = fluxes_from_magnitudes(
                mags[plan.clipped], metadata["bands"][band]["zero_point"],
                f"{options.get('prefix', '')}the catalog's magnitude and colours in band {metadata['bands'][band]['name']}",
                labels=rows if labels is None else [labels[i] for i in rows])
            plan.band_fluxes[band] = fluxes
    return plan


def apply_band_fluxes(images: np.ndarray, fluxes: Mapping[int, np.ndarray], rows: slice = slice(None)) -> np.ndarray:
    """Rescale channel ``b`` of ``[N, S, S, B]`` images to ``fluxes[b][rows]`` (see :meth:`BandSet.fluxes`)."""
    if not fluxes:
        return images
    images = np.array(images, dtype=np.float32)
    for index, values in fluxes.items():
        images[..., index] = set_fluxes(images[..., index], np.asarray(values)[rows])
    return images


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

    def __init__(self, band_set: BandSet, images: list[galsim.InterpolatedImage], arrays: np.ndarray,
                 pad_factor: float = 4):
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


def chromatic_galaxy(
    stamp: np.ndarray,
    metadata: Mapping,
    x_interpolant: Any = None,
    k_interpolant: Any = None,
    pad_factor: float = 4,
    gsparams: galsim.GSParams | None = None,
    bandpass: galsim.Bandpass | None = None,
) -> galsim.ChromaticObject | galsim.InterpolatedImage:
    """The galaxy of one ``[S, S, B]`` stamp of a multi-band model (the config's galaxy).

    Parameters
    ----------
    stamp : numpy.ndarray
        ``[S, S, B]`` the galaxy's stamps in the bands of ``metadata``.
    metadata : dict
        The model's metadata (``bands``, ``pixel_scale``).
    x_interpolant, k_interpolant, pad_factor, gsparams
        As given to :class:`galsim.InterpolatedImage`.
    bandpass : galsim.Bandpass, optional
        The one bandpass the galaxy will be drawn through, when everything it is drawn with is
        achromatic: the galaxy is then :meth:`MultiBandGalaxy.through` that bandpass, one
        ``InterpolatedImage`` that draws the same pixels as the chromatic object at the cost of a
        single band.

    Returns
    -------
    galsim.ChromaticObject or galsim.InterpolatedImage
        The chromatic object, or its image through ``bandpass``.
    """
    band_set = band_set_of(metadata, source=str(metadata.get("name", "model")))
    images = [
        galsim.InterpolatedImage(
            galsim.Image(np.array(stamp[..., b]), scale=float(metadata["pixel_scale"])),
            x_interpolant=x_interpolant, k_interpolant=k_interpolant, pad_factor=pad_factor, gsparams=gsparams,
        )
        for b in range(len(band_set))
    ]
    galaxy = MultiBandGalaxy(band_set, images, stamp, pad_factor)
    return galaxy.chromatic if bandpass is None else galaxy.through(bandpass)
