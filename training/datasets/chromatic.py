"""A synthetic multi-band population with colour gradients and known truth.

Each galaxy of :mod:`.synthetic` (bulge + exponential disc + star-forming knots, calibrated on
COSMOS F814W) gets one spectral energy distribution per component, GalSim's Coleman, Wu &
Weedman templates redshifted to the galaxy's redshift: an elliptical (``CWW_E_ext``) for the
bulge, an Sbc or Scd spiral for the disc and an irregular (``CWW_Im_ext``) for the knots. The
galaxy is then red in the centre, bluer in the disc and bluest in its knots, with colours
that follow from its bulge fraction and redshift. Each component keeps its shape in every
band, so the image in band ``b`` is exactly ``sum_c flux[c, b] * profile_c``; its fluxes are
the SEDs integrated through the band (AB magnitudes, scaled to the band's zero point).

:func:`build_chromatic_dataset` draws the population through HST/ACS F435W, F606W and F814W
(by default), each band with its own diffraction-limited PSF and its own noise, and stores the
noiseless truth of every band.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import pathlib
from typing import Callable, Iterator, Sequence

import galsim
import numpy as np

from galsim_hub.metadata import validate_bands
from galsim_hub.training.datasets.drawing import (
    COSMOS_FLUX_UNITS,
    COSMOS_NOISE_SIGMA,
    COSMOS_PIXEL_SCALE,
    COSMOS_ZERO_POINT,
    HST_DIAMETER_M,
    HST_JITTER_SIGMA_ARCSEC,
    HST_OBSCURATION,
    draw_pixelised,
    draw_psf_array,
    flux_radius_pixels,
)
from galsim_hub.training.datasets.shards import (
    Part,
    ShardWriter,
    check_layout,
    check_positive_float,
    check_positive_int,
    progress_bar,
)
from galsim_hub.training.datasets.synthetic import (
    MAX_REDRAWS,
    NoiseModel,
    sample_synthetic_parameters,
    synthetic_components,
)

__all__ = [
    "ACS_BANDS",
    "COMPONENT_SEDS",
    "band_definitions",
    "component_colours",
    "chromatic_condition_names",
    "build_chromatic_dataset",
]

#: The default bands: HST/ACS WFC filters as GalSim ships them, with the pixel noise rms of each
#: at the COSMOS pixel scale (0.03"). F606W and F814W have the noise of the AEGIS two-band stamps
#: (``NOISE_VARIANCE`` 5.6e-6 to 8.5e-6 in both); F435W is 1.3 times noisier (lower throughput).
ACS_BANDS = (
    {"name": "f435w", "bandpass": "ACS_wfc_F435W.dat", "noise_sigma": 1.3 * COSMOS_NOISE_SIGMA},
    {"name": "f606w", "bandpass": "ACS_wfc_F606W.dat", "noise_sigma": COSMOS_NOISE_SIGMA},
    {"name": "f814w", "bandpass": "ACS_wfc_F814W.dat", "noise_sigma": COSMOS_NOISE_SIGMA},
)
#: The reference band: its magnitude, size and the population's calibration are F814W's.
REFERENCE_BAND = "f814w"

#: CWW templates of each component; the disc draws one of its two with equal probability.
COMPONENT_SEDS = {
    "bulge": ("CWW_E_ext.sed",),
    "disc": ("CWW_Sbc_ext.sed", "CWW_Scd_ext.sed"),
    "knots": ("CWW_Im_ext.sed",),
}
COMPONENTS = tuple(COMPONENT_SEDS)

#: Redshift grid on which component colours are tabulated (interpolated linearly in between:
#: colours change by less than 0.01 mag between grid points).
_REDSHIFT_GRID = np.linspace(0.0, 3.0, 301)


def band_definitions(bands: Sequence[dict] = ACS_BANDS) -> list[dict]:
    """Model-format band entries of ``bands``: name, effective wavelength, zero point, bandpass.

    Zero points are AB, in the flux units of the COSMOS F814W images (e-/s over the HST
    aperture): the F814W zero point :data:`COSMOS_ZERO_POINT` shifted by the difference of the
    bands' AB zero points for a photon-counting detector, so that every band's pixel values are
    count rates through the same telescope. For the ACS bands this gives 25.67 (F435W), 26.50
    (F606W) and 25.94 (F814W), the published ACS/WFC values to 0.01 mag.

    Parameters
    ----------
    bands : sequence of dict
        Each with ``name`` and ``bandpass`` (a GalSim bandpass file, wavelengths in nm), in
        increasing wavelength; one of them named :data:`REFERENCE_BAND`.

    Returns
    -------
    list of dict
        Validated by :func:`galsim_hub.metadata.validate_bands`.
    """
    reference = galsim.Bandpass("ACS_wfc_F814W.dat", wave_type="nm").withZeropoint("AB")
    definitions = []
    for band in bands:
        bandpass = galsim.Bandpass(band["bandpass"], wave_type="nm").withZeropoint("AB")
        zero_point = COSMOS_ZERO_POINT + bandpass.zeropoint - reference.zeropoint
        definitions.append(
            {
                "name": band["name"],
                "effective_wavelength": round(float(bandpass.effective_wavelength), 2),
                "zero_point": round(float(zero_point), 4),
                "bandpass": band["bandpass"],
            }
        )
    return validate_bands(definitions, "chromatic bands")


@functools.lru_cache(maxsize=None)
def _colour_table(sed_file: str, bandpass_files: tuple[str, ...]) -> np.ndarray:
    """AB magnitudes ``[len(_REDSHIFT_GRID), B]`` of ``sed_file`` (any normalisation)."""
    sed = galsim.SED(sed_file, wave_type="Ang", flux_type="flambda")
    bandpasses = [galsim.Bandpass(f, wave_type="nm").withZeropoint("AB") for f in bandpass_files]
    return np.array([[sed.atRedshift(z).calculateMagnitude(bp) for bp in bandpasses] for z in _REDSHIFT_GRID])


def component_colours(sed_file: str, redshift: float, bands: Sequence[dict] = ACS_BANDS) -> np.ndarray:
    """Magnitudes of an SED in each band relative to the reference band, at a redshift.

    Parameters
    ----------
    sed_file : str
        A GalSim SED file (wavelengths in Angstrom, flux per unit wavelength).
    redshift : float
        Between 0 and 3.
    bands : sequence of dict, optional
        As in :func:`band_definitions`.

    Returns
    -------
    numpy.ndarray
        ``[B]`` AB magnitude minus the reference band's AB magnitude (0 for the reference).
    """
    if not 0.0 <= redshift <= _REDSHIFT_GRID[-1]:
        raise ValueError(f"redshift must lie in [0, {_REDSHIFT_GRID[-1]}], got {redshift!r}")
    table = _colour_table(sed_file, tuple(b["bandpass"] for b in bands))
    mags = np.array([np.interp(redshift, _REDSHIFT_GRID, table[:, j]) for j in range(table.shape[1])])
    reference = [b["name"] for b in bands].index(REFERENCE_BAND)
    return mags - mags[reference]


def chromatic_condition_names(bands: Sequence[dict] = ACS_BANDS) -> tuple[str, ...]:
    """``mag_<ref>``, ``color_<b>_<b+1>`` for each neighbouring pair, ``flux_radius``, ``zphot``."""
    names = [b["name"] for b in bands]
    colours = [f"color_{blue}_{red}" for blue, red in zip(names[:-1], names[1:])]
    return (f"mag_{REFERENCE_BAND}", *colours, "flux_radius", "zphot")


def _condition_info(bands: Sequence[dict]) -> dict:
    names = [b["name"] for b in bands]
    info = {
        f"mag_{REFERENCE_BAND}": ("mag", f"{REFERENCE_BAND.upper()} AB magnitude (total)"),
        "flux_radius": (
            "pixel",
            f"half-light radius of the PSF-convolved {REFERENCE_BAND.upper()} "
            "image in stamp pixels (SExtractor FLUX_RADIUS)",
        ),
        "zphot": ("", "redshift"),
    }
    for blue, red in zip(names[:-1], names[1:]):
        info[f"color_{blue}_{red}"] = ("mag", f"{blue.upper()} - {red.upper()} AB colour (total fluxes)")
    return info


def _band_fluxes(
    components: dict, sed_files: dict, redshift: float, bands: Sequence[dict], definitions: Sequence[dict]
) -> np.ndarray:
    """``[components, B]`` fluxes: each component's F814W flux carried to every band by its SED."""
    reference = definitions[[b["name"] for b in bands].index(REFERENCE_BAND)]["zero_point"]
    offsets = np.array([d["zero_point"] - reference for d in definitions])
    return np.array(
        [
            components[c].flux * 10 ** (-0.4 * (component_colours(sed_files[c], redshift, bands) - offsets))
            for c in COMPONENTS
        ]
    )


def _band_psf(definition: dict) -> galsim.GSObject:
    airy = galsim.Airy(
        lam=definition["effective_wavelength"],
        diam=HST_DIAMETER_M,
        obscuration=HST_OBSCURATION,
        scale_unit=galsim.arcsec,
    )
    return galsim.Convolve(airy, galsim.Gaussian(sigma=HST_JITTER_SIGMA_ARCSEC))


def _chromatic_example(
    ident: int,
    *,
    seed: int,
    bands: Sequence[dict],
    definitions: Sequence[dict],
    psfs: Sequence[galsim.GSObject],
    psf_arrays: np.ndarray,
    reference_psf_hlr: float,
    noises: Sequence[NoiseModel],
    stamp_size: int,
    pixel_scale: float,
) -> dict:
    """Draw galaxy ``ident`` in every band, redrawing those that overflow the stamp."""
    rng = np.random.default_rng([seed, ident])
    reference = [b["name"] for b in bands].index(REFERENCE_BAND)
    max_radius = stamp_size / 5.0
    for _ in range(MAX_REDRAWS):
        params = sample_synthetic_parameters(rng, reference_psf_hlr)
        params["zphot"] = min(params["zphot"], float(_REDSHIFT_GRID[-1]))
        sed_files = {c: COMPONENT_SEDS[c][rng.integers(len(COMPONENT_SEDS[c]))] for c in COMPONENTS}
        if params["disc_hlr"] / pixel_scale > max_radius:
            continue
        components = synthetic_components(params)
        fluxes = _band_fluxes(components, sed_files, params["zphot"], bands, definitions)
        observed = np.stack(
            [
                galsim.Convolve(
                    galsim.Add([components[c].withFlux(fluxes[i, b]) for i, c in enumerate(COMPONENTS)]), psfs[b]
                )
                .drawImage(nx=stamp_size, ny=stamp_size, scale=pixel_scale)
                .array
                for b in range(len(bands))
            ],
            axis=-1,
        )
        radius = flux_radius_pixels(observed[..., reference])
        if radius <= max_radius:
            break
    else:
        raise RuntimeError(
            f"no synthetic galaxy with flux_radius <= {max_radius:.1f} px found in "
            f"{MAX_REDRAWS} draws: use a larger stamp_size or a coarser pixel_scale"
        )
    unit_profiles = np.stack([draw_pixelised(components[c].withFlux(1.0), stamp_size, pixel_scale) for c in COMPONENTS])
    truth = np.einsum("cb,cyx->yxb", fluxes, unit_profiles)
    totals = fluxes.sum(axis=0)
    mags = np.array([d["zero_point"] for d in definitions]) - 2.5 * np.log10(totals)
    noise = np.stack([n.sample(rng) for n in noises], axis=-1)
    return {
        "image": observed + noise,
        "psf": psf_arrays,
        "noise_var": np.array([n.sigma**2 for n in noises]),
        "noise_ps": np.stack([n.power_spectrum for n in noises], axis=-1),
        "conditions": [mags[reference], *(mags[:-1] - mags[1:]), radius, params["zphot"]],
        "ident": ident,
        "truth": truth,
    }


@contextlib.contextmanager
def _example_map(jobs: int) -> Iterator[Callable]:
    """An ordered ``map`` over ``jobs`` processes (the builtin ``map`` for one)."""
    if jobs == 1:
        yield map
        return
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        yield functools.partial(pool.imap, chunksize=8)


def build_chromatic_dataset(
    out_dir: str | os.PathLike,
    n_examples: int,
    *,
    stamp_size: int = 64,
    pixel_scale: float = 0.05,
    bands: Sequence[dict] = ACS_BANDS,
    seed: int = 0,
    shard_size: int = 1024,
    jobs: int = 1,
    overwrite: bool = False,
    part: Part | None = None,
    progress: bool | None = None,
) -> pathlib.Path:
    """Build a multi-band synthetic data set with colour gradients (format 1 with ``bands``).

    Galaxies are those of :func:`~galsim_hub.training.datasets.synthetic.build_synthetic_dataset`'s
    population (its F814W magnitudes, sizes, shapes and redshifts; each drawn from its own
    generator seeded by ``(seed, ident)``) with one CWW SED per component
    (:data:`COMPONENT_SEDS`). Every band has the PSF ``Airy(effective wavelength, 2.4 m,
    obscuration 0.33)`` convolved with a 0.02" Gaussian jitter, and white Gaussian noise of the
    band's ``noise_sigma`` scaled from 0.03" to ``pixel_scale`` pixels (background-limited:
    the rms grows with the pixel side). Arrays carry the band as their last axis: ``image``,
    ``psf`` and ``truth`` ``[n, S, S, B]``, ``noise_var`` ``[n, B]``, ``noise_ps``
    ``[n, S, S // 2 + 1, B]``. Conditions: the reference magnitude ``mag_f814w``, the colours of
    neighbouring bands, ``flux_radius`` (F814W, noiseless PSF-convolved stamp, in pixels) and
    ``zphot``; ``dataset.json`` lists the bands as a model's ``bands`` metadata does.

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
    bands : sequence of dict, optional
        ``name``, ``bandpass`` (GalSim file, nm) and ``noise_sigma`` (rms at 0.03") of each band,
        in increasing wavelength, including ``f814w`` (the reference).
    seed : int, optional
        Seed of the whole data set.
    shard_size : int, optional
        Galaxies per shard file.
    jobs : int, optional
        Processes drawing galaxies (the data set does not depend on it).
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
    jobs = check_positive_int("jobs", jobs)
    bands = [dict(b) for b in bands]
    if REFERENCE_BAND not in [b.get("name") for b in bands]:
        raise ValueError(
            f"bands must include the reference band {REFERENCE_BAND!r}, got {[b.get('name') for b in bands]}"
        )
    for band in bands:
        check_positive_float(f"noise_sigma of band {band['name']!r}", band.get("noise_sigma"))
    definitions = band_definitions(bands)
    psfs = [_band_psf(d) for d in definitions]
    psf_arrays = np.stack([draw_psf_array(p, stamp_size, pixel_scale) for p in psfs], axis=-1)
    reference = [b["name"] for b in bands].index(REFERENCE_BAND)
    reference_psf_hlr = psfs[reference].calculateHLR(scale=pixel_scale / 4, size=stamp_size * 4)
    noise_scale = pixel_scale / COSMOS_PIXEL_SCALE
    noises = [NoiseModel(b["noise_sigma"] * noise_scale, stamp_size, correlated=False) for b in bands]

    draw = functools.partial(
        _chromatic_example,
        seed=seed,
        bands=bands,
        definitions=definitions,
        psfs=psfs,
        psf_arrays=psf_arrays,
        reference_psf_hlr=reference_psf_hlr,
        noises=noises,
        stamp_size=stamp_size,
        pixel_scale=pixel_scale,
    )
    writer = ShardWriter(out_dir, shard_size, overwrite, part)
    selected = writer.selected(n_examples)
    with progress_bar(len(selected), progress, "chromatic galaxies") as bar, _example_map(jobs) as map_examples:
        for index, example in zip(selected, map_examples(draw, selected)):
            writer.add(example, index)
            bar.update()
    band_metadata = [
        {
            **d,
            "noise_sigma": n.sigma,
            "psf": f"Airy({d['effective_wavelength']} nm, {HST_DIAMETER_M} m, obscuration "
            f'{HST_OBSCURATION}) * Gaussian({HST_JITTER_SIGMA_ARCSEC}")',
        }
        for d, n in zip(definitions, noises)
    ]
    metadata = {
        "source": "chromatic",
        "stamp_size": stamp_size,
        "pixel_scale": pixel_scale,
        "flux_units": COSMOS_FLUX_UNITS.replace("F814W", "per-band"),
        "zero_point": definitions[reference]["zero_point"],
        "bands": band_metadata,
        "reference_band": REFERENCE_BAND,
        "psf": {
            "type": "hst_per_band",
            "description": "diffraction-limited HST PSF at each band's effective wavelength, with jitter",
        },
        "noise": {
            "type": "white_gaussian",
            "sigma": [n.sigma for n in noises],
            "description": "white Gaussian pixel noise, one rms per band",
        },
        "seds": {c: list(files) for c, files in COMPONENT_SEDS.items()},
        "config": {
            "n_examples": n_examples,
            "stamp_size": stamp_size,
            "pixel_scale": pixel_scale,
            "bands": bands,
            "seed": seed,
            "shard_size": shard_size,
        },
    }
    return writer.finish(metadata, chromatic_condition_names(bands), _condition_info(bands), n_total=n_examples)
