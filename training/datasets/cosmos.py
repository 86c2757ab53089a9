"""Data sets of real HST/ACS COSMOS galaxies from GalSim's RealGalaxyCatalog files."""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import galsim
import numpy as np
from astropy.io import fits

from galsim_hub.errors import CatalogError, GalSimHubError
from galsim_hub.training.datasets.drawing import (
    COSMOS_FLUX_UNITS,
    COSMOS_ZERO_POINT,
    draw_pixelised,
    draw_psf_array,
    power_spectrum_from_correlated_noise,
)
from galsim_hub.training.datasets.shards import Part, ShardWriter, check_layout, check_positive_int, progress_bar
from galsim_hub.training.datasets.stamps import catalog_noise, clean_stamp, edge_taper, stamp_background

EXCLUSION_LEVELS = ("none", "bad_stamp", "bad_fits", "marginal")


#: Other catalog columns a condition may be read from, in order, when its own name is absent:
#: the BlendingToolKit-style catalogs keep the F814W magnitude as ``MAG`` in the main catalog.
COLUMN_ALIASES = {"mag_auto": ("MAG",)}

#: Units and descriptions of the usual COSMOS conditions (flux_radius stays in the catalog's
#: 0.03" pixels whatever the stamp's pixel scale, as in the COSMOS catalogs users hold).
CONDITION_INFO = {
    "mag_auto": ("mag", "F814W AB magnitude (SExtractor MAG_AUTO, or MAG of the RealGalaxyCatalog), zero point 25.94"),
    "flux_radius": (
        "pixel",
        "SExtractor FLUX_RADIUS (half-light radius of the observed galaxy) in COSMOS pixels of 0.03 arcsec",
    ),
    "zphot": ("", "photometric redshift of the COSMOS catalog"),
}

#: The 8 exact symmetries of a square pixel grid: (quarter turns, mirrored).
ORIENTATIONS = tuple((turns, mirrored) for mirrored in (False, True) for turns in range(4))


class CosmosFilesNotFoundError(GalSimHubError, FileNotFoundError):
    """Files of a COSMOS training sample are missing from the catalog directory."""


def _fits_table(path: pathlib.Path) -> np.ndarray:
    with fits.open(path) as hdus:
        return np.array(hdus[1].data)


def _check_cosmos_files(catalog_dir: pathlib.Path, catalog_file: str, exclusion_level: str) -> None:
    """Raise CosmosFilesNotFoundError listing every file of the sample that is missing."""
    catalog_path = catalog_dir / catalog_file
    needed = [catalog_file, catalog_file.replace(".fits", "_fits.fits")]
    if exclusion_level in ("marginal", "bad_stamp"):
        needed.append(catalog_file.replace(".fits", "_selection.fits"))
    if catalog_path.is_file():
        cat = _fits_table(catalog_path)
        names = {n.lower(): n for n in (cat.dtype.names or ())}
        for column in ("gal_filename", "psf_filename", "noise_filename"):
            if column in names:
                needed.extend(
                    sorted({(f.decode() if isinstance(f, bytes) else str(f)).strip() for f in cat[names[column]]})
                )
    missing = [name for name in dict.fromkeys(needed) if not (catalog_dir / name).is_file()]
    if missing:
        raise CosmosFilesNotFoundError(
            f"COSMOS training sample files missing in {str(catalog_dir)!r}: "
            f"{', '.join(missing)}. Download them with `galsim_download_cosmos -s 25.2` "
            "(and pass the directory it reports as catalog_dir)."
        )


def _lookup_column(tables: Sequence[np.ndarray], name: str) -> np.ndarray:
    """Find column ``name`` (case-insensitive) in the first table that has it.

    A condition may also be read from the other names of :data:`COLUMN_ALIASES` (e.g.
    ``mag_auto`` from the ``MAG`` of a RealGalaxyCatalog whose ``_fits`` catalog has none).
    """
    for candidate in (name,) + COLUMN_ALIASES.get(name.lower(), ()):
        for table in tables:
            for column in table.dtype.names or ():
                if column.lower() == candidate.lower():
                    return np.asarray(table[column])
    available = sorted({c for table in tables for c in (table.dtype.names or ())}, key=str.lower)
    raise CatalogError(
        f"condition column {name!r} is not in the COSMOS catalogs; available columns: {', '.join(available)}"
    )


@dataclass(frozen=True)
class CatalogSpec:
    """One RealGalaxyCatalog to draw galaxies from.

    Parameters
    ----------
    dir : str
        The directory of its files.
    file : str
        The RealGalaxyCatalog file name (its ``_fits`` catalog sits beside it).
    exclusion_level : str
        GalSim's COSMOSCatalog cuts (``"none"`` for catalogs without fits or selection flags).
    """

    dir: str
    file: str = "real_galaxy_catalog_25.2.fits"
    exclusion_level: str = "marginal"

    @classmethod
    def from_any(cls, value: Any) -> "CatalogSpec":
        """Build from a spec, a mapping with ``dir`` (and ``file``, ``exclusion_level``)."""
        if isinstance(value, CatalogSpec):
            return value
        if not isinstance(value, Mapping) or "dir" not in value:
            raise ValueError(f"a catalog is a mapping with 'dir' (and 'file', 'exclusion_level'), got {value!r}")
        unknown = set(value) - {"dir", "file", "exclusion_level"}
        if unknown:
            raise ValueError(f"unknown catalog key(s) {sorted(unknown)}; valid: dir, file, exclusion_level")
        return cls(**{k: str(v) for k, v in value.items()})


def read_holdout(path: str | os.PathLike) -> list[int]:
    """Read a held-out list: one COSMOS ``IDENT`` per line; ``#`` starts a comment."""
    idents = []
    for number, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            idents.append(int(text.split()[0]))
        except ValueError:
            raise ValueError(f"{path}:{number}: expected a COSMOS IDENT, got {text!r}") from None
    if len(set(idents)) != len(idents):
        raise ValueError(f"{path} lists an IDENT twice")
    return idents


def _open_catalog(spec: CatalogSpec) -> galsim.COSMOSCatalog:
    if spec.exclusion_level not in EXCLUSION_LEVELS:
        raise ValueError(f"exclusion_level must be one of {EXCLUSION_LEVELS}, got {spec.exclusion_level!r}")
    catalog_dir = pathlib.Path(spec.dir).expanduser()
    _check_cosmos_files(catalog_dir, spec.file, spec.exclusion_level)
    try:
        return galsim.COSMOSCatalog(file_name=spec.file, dir=str(catalog_dir), exclusion_level=spec.exclusion_level)
    except (KeyError, ValueError) as err:
        raise CatalogError(
            f"cannot apply exclusion_level={spec.exclusion_level!r} to {spec.file!r} ({err}); "
            "catalogs without parametric fits or selection columns need exclusion_level='none'"
        ) from err


@dataclass
class _Galaxy:
    """A galaxy that passed the cuts: its catalog, its index in it and its conditions."""

    cosmos: galsim.COSMOSCatalog
    index: int
    row: int
    ident: int
    conditions: np.ndarray
    has_parametric: bool
    native_scale: float
    noise_mean: float | None = None


def _select_galaxies(
    specs: Sequence[CatalogSpec], conditions: Sequence[str], max_mag: float | None, min_flux_radius: float | None
) -> list[_Galaxy]:
    galaxies = []
    for spec in specs:
        cosmos = _open_catalog(spec)
        param_cat = cosmos.param_cat
        real_cat = np.array(cosmos.real_cat.cat)
        real_ident = _lookup_column([real_cat], "IDENT")
        if "ident" in {n.lower() for n in (param_cat.dtype.names or ())} and not np.array_equal(
            _lookup_column([param_cat], "IDENT"), real_ident
        ):
            raise CatalogError(
                f"the IDENT columns of {spec.file!r} and its _fits catalog differ: "
                "the catalogs do not describe the same galaxies in the same order"
            )
        tables = (param_cat, real_cat)
        values = np.stack([_lookup_column(tables, name).astype(np.float64) for name in conditions], axis=1)
        has_fits = "sersicfit" in {n.lower() for n in (param_cat.dtype.names or ())}
        native_scales = _lookup_column([real_cat], "PIXEL_SCALE").astype(np.float64)
        has_noise_mean = "noise_mean" in {n.lower() for n in (real_cat.dtype.names or ())}
        noise_means = _lookup_column([real_cat], "NOISE_MEAN").astype(np.float64) if has_noise_mean else None
        magnitude = _lookup_column(tables, "mag_auto") if max_mag is not None else None
        radius = _lookup_column(tables, "flux_radius") if min_flux_radius is not None else None
        for index in range(cosmos.nobjects):
            row = int(cosmos.orig_index[index])
            if magnitude is not None and not magnitude[row] <= float(max_mag or 0.0):
                continue
            if radius is not None and not radius[row] >= float(min_flux_radius or 0.0):
                continue
            galaxies.append(
                _Galaxy(
                    cosmos,
                    index,
                    row,
                    int(real_ident[row]),
                    values[row],
                    has_fits,
                    float(native_scales[row]),
                    None if noise_means is None else float(noise_means[row]),
                )
            )
    idents = [g.ident for g in galaxies]
    if len(set(idents)) != len(idents):
        raise CatalogError("the catalogs share galaxies (repeated IDENT): a galaxy would be drawn twice")
    return galaxies


def _split(galaxies: list[_Galaxy], holdout: Iterable[int] | None, split: str) -> list[_Galaxy]:
    if split not in ("all", "train", "holdout"):
        raise ValueError(f"split must be 'all', 'train' or 'holdout', got {split!r}")
    if split == "all":
        return galaxies
    if holdout is None:
        raise ValueError(f"split={split!r} needs a held-out list (holdout)")
    held = set(int(i) for i in holdout)
    known = {g.ident for g in galaxies}
    unknown = sorted(held - known)
    if unknown:
        raise CatalogError(
            f"held-out IDENT(s) {unknown[:10]} are not among the galaxies that pass the cuts of these catalogs"
        )
    return [g for g in galaxies if (g.ident in held) == (split == "holdout")]


def _oriented(profile: galsim.GSObject, turns: int, mirrored: bool) -> galsim.GSObject:
    """``profile`` mirrored (x -> -x) and turned by ``turns`` quarter turns (noise follows)."""
    if mirrored:
        profile = profile.transform(-1.0, 0.0, 0.0, 1.0)
    return profile.rotate(90.0 * turns * galsim.degrees) if turns else profile


def _draw_example(
    galaxy: _Galaxy,
    turns: int,
    mirrored: bool,
    shift: tuple[float, float],
    stamp_size: int,
    pixel_scale: float,
    noise_seed: int,
    with_parametric: bool,
) -> dict:
    """Draw one (possibly transformed) observation of a real galaxy and what goes with it.

    The galaxy is deconvolved by its original HST PSF (GalSim's RealGalaxy, padded with its own
    noise), transformed, shifted by ``shift`` pixels, convolved with the same transform of the
    original PSF and with the stamp's pixel, and sampled at pixel centres: the stored PSF is
    that PSF with the stamp's pixel, so the example is exactly as if observed in that
    orientation. The noise follows every step (``observed.noise``).
    """
    deviate = galsim.BaseDeviate(noise_seed)
    gal_image, psf_image, noise_image, native_scale, variance = galaxy.cosmos.getRealParams(galaxy.index)
    background = galaxy.noise_mean if galaxy.noise_mean is not None else stamp_background(gal_image.array)
    # The postage stamp less its sky, its edge tapered to zero, and the noise the taper took
    # away given back: its border and the (zero-mean) noise padding around it then have the
    # same mean and the same noise, and no edge of the stamp survives.
    window = edge_taper(gal_image.array.shape)
    refill = galsim.Image(np.zeros(gal_image.array.shape), wcs=gal_image.wcs)
    refill.addNoise(catalog_noise(noise_image, native_scale, variance, deviate))
    clean = galsim.Image(
        clean_stamp(gal_image.array, background, window) + np.sqrt(1.0 - window**2) * refill.array, wcs=gal_image.wcs
    )
    real = galsim.RealGalaxy(
        (clean, psf_image, noise_image, native_scale, variance),
        rng=deviate,
        noise_pad_size=1.1 * stamp_size * pixel_scale,
    )
    pixel = galsim.Pixel(pixel_scale)
    psf = galsim.Convolve(_oriented(real.original_psf, turns, mirrored), pixel)
    shifted = _oriented(real, turns, mirrored).shift(shift[0] * pixel_scale, shift[1] * pixel_scale)
    observed = galsim.Convolve(shifted, psf)
    image = observed.drawImage(nx=stamp_size, ny=stamp_size, scale=pixel_scale, method="no_pixel").array
    psf_array = draw_psf_array(psf, stamp_size, pixel_scale)
    noise_ps, noise_var = power_spectrum_from_correlated_noise(observed.noise, stamp_size, pixel_scale)
    # GalSim keeps the noise correlation function in the flux units of the catalog's pixels:
    # drawn on coarser pixels of ``f`` times the area, each pixel holds ``f`` times the flux, so
    # the noise variance grows by ``f**2`` (checked against the pixel variance and the stamp-sum
    # variance of drawn stamps at 0.05", 0.07" and 0.12").
    area_ratio = (pixel_scale / galaxy.native_scale) ** 2
    noise_ps, noise_var = noise_ps * area_ratio**2, noise_var * area_ratio**2
    if not (np.all(np.isfinite(image)) and np.all(np.isfinite(psf_array))):
        raise CatalogError(f"the stamp of COSMOS galaxy IDENT {galaxy.ident} has NaN or infinite pixels")
    example = {
        "image": image,
        "psf": psf_array,
        "noise_var": noise_var,
        "noise_ps": noise_ps,
        "conditions": galaxy.conditions,
        "ident": galaxy.ident,
        "background": background * area_ratio,
    }
    if with_parametric:
        example["has_parametric"] = galaxy.has_parametric
        parametric = np.zeros((stamp_size, stamp_size))
        if galaxy.has_parametric:
            fit = galaxy.cosmos.makeGalaxy(galaxy.index, gal_type="parametric")
            fit = _oriented(fit, turns, mirrored).shift(shift[0] * pixel_scale, shift[1] * pixel_scale)
            parametric = draw_pixelised(fit, stamp_size, pixel_scale)
        example["parametric"] = parametric
    return example


def build_cosmos_dataset(
    out_dir: str | os.PathLike,
    catalog_dir: str | os.PathLike | None = None,
    *,
    catalog_file: str = "real_galaxy_catalog_25.2.fits",
    catalogs: Sequence[Mapping | CatalogSpec] | None = None,
    stamp_size: int = 64,
    pixel_scale: float = 0.03,
    conditions: Sequence[str] = ("mag_auto", "flux_radius", "zphot"),
    max_galaxies: int | None = None,
    exclusion_level: str = "marginal",
    min_flux_radius: float | None = None,
    max_mag: float | None = None,
    holdout: Iterable[int] | str | os.PathLike | None = None,
    split: str = "all",
    orientations: int = 1,
    shifts: int = 0,
    max_shift: float = 0.5,
    parametric: bool = False,
    seed: int = 0,
    shard_size: int = 1024,
    overwrite: bool = False,
    part: Part | None = None,
    progress: bool | None = None,
) -> pathlib.Path:
    """Build a data set of real HST/ACS COSMOS galaxies (format 1), as in Lanusse et al. 2021.

    Each galaxy is a `galsim.RealGalaxy` from `galsim.COSMOSCatalog`, padded with its own
    correlated noise, convolved back with its own original HST PSF and the stamp's pixel and
    sampled at pixel centres (at any ``pixel_scale``: GalSim interpolates the 0.03" images).
    The stored ``psf`` is that original PSF with the stamp's pixel. Each postage stamp is
    cleaned before the noise padding (:func:`clean_stamp`: its sky ``NOISE_MEAN`` subtracted,
    stored per example as ``background`` in the flux units of the stamp's pixels, and its edge
    tapered to zero), so that the padding matches the stamp's border and no postage-stamp edge
    survives. ``noise_ps`` is the power
    spectrum of the noise in the drawn stamp, ``observed.noise`` of GalSim: the catalog noise
    correlation function (variance ``NOISE_VARIANCE``) propagated through the deconvolution,
    the convolution back and the pixel; ``noise_var`` is its variance.

    With few galaxies, exact augmentations keep the physics: each galaxy is drawn in
    ``orientations`` of the 8 symmetries of the pixel grid (quarter turns and mirror images of
    image, PSF and noise together) and, for each, ``shifts`` more times moved by a random
    sub-pixel offset (the PSF stays centred); each example gets its own noise padding. The
    conditions (magnitude, half-light radius, redshift) are invariant under these transforms.
    Examples are written in a random order (from ``seed``), so shards mix galaxies.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Directory to create (or an empty one).
    catalog_dir : str or os.PathLike, optional
        Directory holding the files of ``galsim_download_cosmos`` (catalog, ``_fits`` and
        ``_selection`` catalogs, galaxy and PSF image files, noise correlation file).
    catalog_file : str, optional
        The RealGalaxyCatalog file name in ``catalog_dir``.
    catalogs : sequence of mapping, optional
        Several catalogs at once instead of ``catalog_dir``: each ``{"dir": ..., "file": ...,
        "exclusion_level": ...}`` (see :class:`CatalogSpec`).
    stamp_size : int, optional
        Stamp side in pixels (at least 16).
    pixel_scale : float, optional
        Pixel scale in arcsec; the COSMOS images have 0.03.
    conditions : sequence of str, optional
        Condition columns, looked up case-insensitively in the ``_fits`` catalog, then in the
        main catalog, then under the names of :data:`COLUMN_ALIASES` (``mag_auto`` -> ``MAG``).
    max_galaxies : int, optional
        Keep at most this many galaxies, drawn at random (with ``seed``) after the cuts.
    exclusion_level : {"marginal", "bad_fits", "bad_stamp", "none"}, optional
        GalSim's COSMOSCatalog quality cuts of ``catalog_dir``.
    min_flux_radius, max_mag : float, optional
        Further cuts on ``flux_radius`` and ``mag_auto``.
    holdout : iterable of int, or path, optional
        IDENTs of held-out galaxies (or a file of them, see :func:`read_holdout`).
    split : {"all", "train", "holdout"}, optional
        Which galaxies: all, all but the held-out ones, or only the held-out ones.
    orientations : {1, 8}, optional
        Draw each galaxy as observed (1) or in all 8 orientations of the pixel grid.
    shifts : int, optional
        Further copies of each orientation, shifted by up to ``max_shift`` pixels in x and y.
    max_shift : float, optional
        Largest sub-pixel shift, in pixels.
    parametric : bool, optional
        Also store ``parametric``: the galaxy's COSMOS parametric fit, convolved with the pixel
        only (zeros where there is none; ``has_parametric`` tells).
    seed : int, optional
        Seeds the galaxy subset, the shifts, the write order and each example's noise padding.
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

    Raises
    ------
    CosmosFilesNotFoundError
        Files of the sample are missing (all of them are listed).
    galsim_hub.errors.CatalogError
        A condition or cut column is absent, a held-out IDENT is unknown, or a stamp holds NaN
        or infinite pixels.
    """
    stamp_size, pixel_scale, shard_size, seed = check_layout(stamp_size, pixel_scale, shard_size, seed)
    shifts = check_positive_int("shifts", shifts, minimum=0)
    if orientations not in (1, 8):
        raise ValueError(f"orientations must be 1 or 8, got {orientations!r}")
    max_shift = float(max_shift)
    if not 0.0 <= max_shift <= 1.0:
        raise ValueError(f"max_shift must be between 0 and 1 pixel, got {max_shift!r}")
    if max_galaxies is not None:
        max_galaxies = check_positive_int("max_galaxies", max_galaxies)
    if isinstance(conditions, str) or not conditions or not all(isinstance(c, str) and c for c in conditions):
        raise ValueError(f"conditions must be a non-empty sequence of column names, got {conditions!r}")
    conditions = tuple(conditions)
    if len({c.lower() for c in conditions}) != len(conditions):
        raise ValueError(f"conditions has duplicate names: {conditions!r}")
    if catalogs is None:
        if catalog_dir is None:
            raise ValueError("give catalog_dir (and catalog_file) or catalogs")
        catalogs = [CatalogSpec(str(catalog_dir), catalog_file, exclusion_level)]
    specs = [CatalogSpec.from_any(c) for c in catalogs]
    if not specs:
        raise ValueError("catalogs is empty")
    holdout_list = (
        read_holdout(holdout)
        if isinstance(holdout, (str, os.PathLike))
        else None
        if holdout is None
        else [int(i) for i in holdout]
    )

    galaxies = _split(_select_galaxies(specs, conditions, max_mag, min_flux_radius), holdout_list, split)
    rng = np.random.default_rng(seed)
    if max_galaxies is not None and len(galaxies) > max_galaxies:
        keep = np.sort(rng.choice(len(galaxies), size=max_galaxies, replace=False))
        galaxies = [galaxies[i] for i in keep]
    if not galaxies:
        raise CatalogError("no COSMOS galaxy passes the cuts (exclusion_level, max_mag, min_flux_radius, holdout)")
    tasks = [(g, o, k) for g in galaxies for o in range(orientations) for k in range(1 + shifts)]
    order = rng.permutation(len(tasks)) if len(tasks) > len(galaxies) else np.arange(len(tasks))

    writer = ShardWriter(out_dir, shard_size, overwrite, part)
    selected = writer.selected(len(tasks))
    with progress_bar(len(selected), progress, "COSMOS galaxies") as bar:
        for position in selected:
            galaxy, orientation, k = tasks[order[position]]
            example_rng = np.random.default_rng([seed, galaxy.ident, orientation, k])
            shift = (0.0, 0.0) if k == 0 else tuple(example_rng.uniform(-max_shift, max_shift, 2))
            turns, mirrored = ORIENTATIONS[orientation]
            writer.add(
                _draw_example(
                    galaxy,
                    turns,
                    mirrored,
                    shift,
                    stamp_size,
                    pixel_scale,
                    int(example_rng.integers(1, 2**31)),
                    parametric,
                ),
                position,
            )
            bar.update()
    metadata = {
        "source": "cosmos",
        "stamp_size": stamp_size,
        "pixel_scale": pixel_scale,
        "flux_units": COSMOS_FLUX_UNITS,
        "zero_point": COSMOS_ZERO_POINT,
        "psf": {
            "type": "cosmos_original",
            "description": "each galaxy's own HST/ACS PSF (RealGalaxy.original_psf, which "
            "includes the 0.03\" pixel) convolved with the stamp's pixel, "
            "drawn with method='no_pixel'",
        },
        "noise": {
            "type": "cosmos",
            "description": "the galaxy's own HST/ACS correlated noise, with noise padding "
            "outside the original postage stamp, as propagated by GalSim "
            "through the PSF deconvolution and reconvolution; noise_ps is "
            "its power spectrum, noise_var its variance",
        },
        "n_galaxies": len(galaxies),
        "idents": sorted(g.ident for g in galaxies),
        "config": {
            "catalogs": [vars(s) for s in specs],
            "stamp_size": stamp_size,
            "pixel_scale": pixel_scale,
            "conditions": list(conditions),
            "max_galaxies": max_galaxies,
            "min_flux_radius": min_flux_radius,
            "max_mag": max_mag,
            "split": split,
            "holdout": None if holdout is None else sorted(holdout_list or []),
            "orientations": orientations,
            "shifts": shifts,
            "max_shift": max_shift,
            "parametric": parametric,
            "seed": seed,
            "shard_size": shard_size,
        },
    }
    return writer.finish(metadata, conditions, CONDITION_INFO, n_total=len(tasks))
