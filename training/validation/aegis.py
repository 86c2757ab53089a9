"""A real two-band sanity check of multi-band models on GalSim's five AEGIS galaxies.

GalSim's ``real_comparison_images`` test data hold five HST/ACS AEGIS galaxies observed in F606W
and F814W at 0.03"/px, in RealGalaxyCatalog format (``AEGIS_F606w_catalog.fits``,
``AEGIS_F814w_catalog.fits``: same IDENTs, ``MAG`` per band, image, PSF and noise files). For
each galaxy this module measures

- the real colour F606W - F814W, from the catalog ``MAG`` and from stamp photometry
  (:func:`galsim_hub.training.validation.colours.observed_photometry`: the union of both bands' footprints
  grown by 3 pixels, each band's AB zero point from the model);
- the real size ratio ``r(F606W) / r(F814W)`` of the half-light radii of the observed stamps
  (curve of growth in that aperture about the F814W centroid), and of HSM sizes;

then samples mocks conditioned on ``mag_f814w = MAG_814``, ``color_f606w_f814w = MAG_606 -
MAG_814`` and ``flux_radius`` = the F814W stamp's half-light radius in model pixels. The
conditions AEGIS lacks (``color_f435w_f606w``, ``zphot``, ...) are the median of the
``n_neighbours`` rows of a reference data set (the model's training or held-out set) nearest in
(``mag_f814w``, ``color_f606w_f814w``), standardised; without a data set, the model's
``condition_mean``. Each mock's ``images['f606w']`` and ``images['f814w']`` are drawn through
the real PSFs at 0.03"/px on the real stamp's grid with the real correlated noise (the band's
correlation function at the real ``NOISE_VARIANCE``) and measured the same way. Five galaxies make
a sanity check, not a statistic.

Command line::

    python -m galsim_hub.training aegis MODEL --aegis-dir DIR --out DIR [--data DATASET] [--n-mocks 20]
        [--seed S] [--white-noise]
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import galsim
import numpy as np
from astropy.io import fits
from astropy.table import Table

from galsim_hub.errors import MetadataError
from galsim_hub.training.validation.colours import observed_photometry

__all__ = [
    "AEGIS_BANDS",
    "read_aegis",
    "measure_pair",
    "aegis_conditions",
    "correlated_noise",
    "run_aegis_check",
    "aegis_markdown",
]

#: Model band names of the two AEGIS bands and their catalog files.
AEGIS_BANDS = {"f606w": "AEGIS_F606w_catalog.fits", "f814w": "AEGIS_F814w_catalog.fits"}
AEGIS_PIXEL_SCALE = 0.03


def read_aegis(aegis_dir: str | Path) -> list[dict[str, Any]]:
    """Read the AEGIS two-band galaxies: per galaxy, per band, stamp, PSF, noise and MAG.

    Parameters
    ----------
    aegis_dir : str or path
        Folder with the two catalogs and the image and PSF files they name.

    Returns
    -------
    list of dict
        One per galaxy: ``ident``, ``pixel_scale`` and ``bands`` ``{band: {'image', 'psf',
        'noise_variance', 'mag', 'noise_file'}}`` (images as float64 arrays; ``noise_file`` the
        band's noise correlation function, None when the file is absent).

    Raises
    ------
    MetadataError
        When a file is missing or the two catalogs do not list the same galaxies.
    """
    aegis_dir = Path(aegis_dir)
    catalogs = {}
    for band, name in AEGIS_BANDS.items():
        path = aegis_dir / name
        if not path.is_file():
            raise MetadataError(
                f"AEGIS catalog {path} not found (expected {list(AEGIS_BANDS.values())} in {aegis_dir})"
            )
        with fits.open(path) as hdus:
            catalogs[band] = Table(hdus[1].data)
    idents = {band: list(np.asarray(cat["IDENT"])) for band, cat in catalogs.items()}
    if idents["f606w"] != idents["f814w"]:
        raise MetadataError(f"the AEGIS catalogs in {aegis_dir} list different galaxies: {idents}")
    galaxies = []
    for row in range(len(catalogs["f814w"])):
        galaxy: dict[str, Any] = {"ident": int(idents["f814w"][row]), "bands": {}}
        scales = set()
        for band, cat in catalogs.items():
            entry = cat[row]
            arrays = {}
            for key, file_key, hdu_key in (("image", "GAL_FILENAME", "GAL_HDU"), ("psf", "PSF_FILENAME", "PSF_HDU")):
                path = aegis_dir / str(entry[file_key]).strip()
                if not path.is_file():
                    raise MetadataError(f"AEGIS file {path} (galaxy {galaxy['ident']}, {band}) not found")
                with fits.open(path) as hdus:
                    arrays[key] = np.asarray(hdus[int(entry[hdu_key])].data, dtype=np.float64)
            noise_file = aegis_dir / str(entry["NOISE_FILENAME"]).strip()
            galaxy["bands"][band] = {
                **arrays,
                "noise_variance": float(entry["NOISE_VARIANCE"]),
                "mag": float(entry["MAG"]),
                "noise_file": noise_file if noise_file.is_file() else None,
            }
            scales.add(float(entry["PIXEL_SCALE"]))
        if len(scales) != 1:
            raise MetadataError(f"galaxy {galaxy['ident']} has different pixel scales in its bands: {scales}")
        galaxy["pixel_scale"] = scales.pop()
        galaxies.append(galaxy)
    return galaxies


def _hsm_sigma(image: np.ndarray) -> float:
    try:
        result = galsim.hsm.FindAdaptiveMom(galsim.Image(image), strict=False)
    except (galsim.GalSimError, RuntimeError, ValueError):
        return math.nan
    return float(result.moments_sigma) if result.moments_status == 0 and result.moments_sigma > 0 else math.nan


def measure_pair(
    image_606: np.ndarray, image_814: np.ndarray, sigma_606: float, sigma_814: float, zero_points: tuple[float, float]
) -> dict[str, float]:
    """Colour and size ratio of one galaxy observed in F606W and F814W.

    Returns
    -------
    dict
        ``color`` (F606W - F814W from stamp photometry, AB), ``hlr_606``, ``hlr_814`` (pixels),
        ``ratio`` (``hlr_606 / hlr_814``), ``hsm_ratio`` (ratio of HSM sigmas), ``flux_606``,
        ``flux_814``; NaN where a measurement failed.
    """
    phot = observed_photometry([image_606, image_814], [sigma_606, sigma_814], zero_points)
    hsm = (_hsm_sigma(image_606), _hsm_sigma(image_814))
    return {
        "color": float(phot["mag"][0] - phot["mag"][1]),
        "hlr_606": float(phot["hlr"][0]),
        "hlr_814": float(phot["hlr"][1]),
        "ratio": float(phot["hlr"][0] / phot["hlr"][1]),
        "hsm_ratio": hsm[0] / hsm[1],
        "flux_606": float(phot["flux"][0]),
        "flux_814": float(phot["flux"][1]),
    }


def aegis_conditions(
    model: Any, known: dict[str, float], reference: Table | None = None, n_neighbours: int = 20
) -> tuple[dict[str, float], str]:
    """The model's conditions for one galaxy: ``known`` ones, the others from a reference set.

    Parameters
    ----------
    model : galsim_hub.GenerativeGalaxyModel
        A model with ``quantities`` and ``metadata`` (``condition_mean``).
    known : dict
        Values of ``mag_f814w``, ``color_f606w_f814w`` and ``flux_radius`` (those the model has).
    reference : astropy.table.Table, optional
        Rows of the model's conditions (a training or held-out data set): the missing
        conditions are the median of the ``n_neighbours`` rows nearest in the standardised
        known magnitude and colour. Without it, the model's ``condition_mean``.
    n_neighbours : int, optional
        Rows whose median fills a missing condition.

    Returns
    -------
    (dict, str)
        All of ``model.quantities`` and a note on how the missing ones were filled.
    """
    quantities = list(model.quantities)
    missing = [q for q in quantities if q not in known]
    values = {q: float(known[q]) for q in quantities if q in known}
    if not missing:
        return values, "all conditions from AEGIS"
    if reference is None:
        means = dict(zip(quantities, model.metadata.get("condition_mean", [])))
        if any(q not in means for q in missing):
            raise MetadataError(f"the model has no condition_mean for {missing}: give a data set (--data)")
        values.update({q: float(means[q]) for q in missing})
        return values, f"{', '.join(missing)}: the model's condition_mean"
    absent = [q for q in missing if q not in reference.colnames]
    if absent:
        raise MetadataError(f"the reference data set lacks the model's conditions {absent}")
    keys = [k for k in ("mag_f814w", "color_f606w_f814w") if k in known and k in reference.colnames]
    rows = np.stack([np.asarray(reference[k], dtype=float) for k in keys], axis=1)
    scale = rows.std(axis=0)
    scale[scale == 0] = 1.0
    distance = np.hypot.reduce((rows - np.array([known[k] for k in keys])) / scale, axis=1)
    nearest = np.argsort(distance)[: max(1, int(n_neighbours))]
    values.update({q: float(np.median(np.asarray(reference[q], dtype=float)[nearest])) for q in missing})
    return values, (f"{', '.join(missing)}: median of the {len(nearest)} reference rows nearest in ({', '.join(keys)})")


def correlated_noise(
    path: str | Path, variance: float, pixel_scale: float = AEGIS_PIXEL_SCALE, rng: galsim.BaseDeviate | None = None
) -> galsim.BaseCorrelatedNoise:
    """The ACS noise of a RealGalaxyCatalog correlation-function file, scaled to ``variance``.

    GalSim's AEGIS files hold 50x50 correlation functions peaked at (25, 25), which
    `galsim.BaseCorrelatedNoise.from_file` refuses (it wants an odd size): the first row and
    column are dropped to centre them on a 49x49 image, then the noise is built as
    ``from_file`` does (linear interpolation of the correlation function).
    """
    cf = np.asarray(fits.getdata(path), dtype=np.float64)
    if cf.shape[0] % 2 == 0 and cf.shape == (cf.shape[0], cf.shape[0]):
        cf = cf[1:, 1:]
    if cf.ndim != 2 or cf.shape[0] != cf.shape[1] or np.unravel_index(cf.argmax(), cf.shape) != (cf.shape[0] // 2,) * 2:
        raise MetadataError(f"noise correlation function {path} is not a square image peaked at its centre")
    profile = galsim.InterpolatedImage(
        galsim.Image(cf, scale=pixel_scale),
        normalization="sb",
        calculate_stepk=False,
        calculate_maxk=False,
        x_interpolant=galsim.Linear(),
    )
    noise = galsim.correlatednoise.BaseCorrelatedNoise(rng, profile, galsim.PixelScale(pixel_scale))
    return noise.withVariance(float(variance))


def _draw(
    image: galsim.GSObject,
    psf: galsim.GSObject,
    shape: tuple[int, int],
    scale: float,
    sigma: float,
    noise: galsim.BaseCorrelatedNoise | None,
    rng: np.random.Generator,
) -> np.ndarray:
    drawn = galsim.Convolve(image, psf).drawImage(nx=shape[1], ny=shape[0], scale=scale, method="no_pixel")
    if noise is None:
        return drawn.array + rng.normal(0.0, sigma, shape)
    drawn.addNoise(noise.copy(rng=galsim.BaseDeviate(int(rng.integers(1, 2**31 - 1)))))
    return drawn.array


def run_aegis_check(
    model: Any,
    aegis_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    data: str | Path | None = None,
    n_mocks: int = 20,
    seed: int = 1,
    n_neighbours: int = 20,
    correlated: bool = True,
) -> Table:
    """Compare real AEGIS colours and size ratios with those of mocks of the same galaxies.

    Parameters
    ----------
    model : str or galsim_hub.GenerativeGalaxyModel
        A multi-band model with bands ``f606w`` and ``f814w`` and conditions among
        ``mag_f814w``, ``color_f606w_f814w``, ``flux_radius`` (and others, filled from ``data``).
    aegis_dir : str or path
        The AEGIS two-band files (:func:`read_aegis`).
    out_dir : str or path, optional
        Where ``aegis.md`` and ``aegis.json`` go (nothing written when None).
    data : str or path, optional
        A data set of the model's conditions (training or held-out) to fill the conditions
        AEGIS lacks; the model's ``condition_mean`` without it.
    n_mocks : int, optional
        Mocks per galaxy.
    seed : int, optional
        Seed of the mocks and their noise (non-zero).
    n_neighbours : int, optional
        See :func:`aegis_conditions`.
    correlated : bool, optional
        Give the mocks the real correlated noise (:func:`correlated_noise` of each band's
        ``NOISE_FILENAME``, at its ``NOISE_VARIANCE``); white noise of that variance when False
        or when the file is absent.

    Returns
    -------
    astropy.table.Table
        One row per galaxy: ``ident``, ``mag_f814w``, ``color_mag`` (catalog), ``color_real``
        (stamp), ``color_mock`` (median of the mocks) and ``color_mock_lo``/``_hi`` (16th/84th
        percentiles), ``ratio_real``, ``ratio_mock`` (``_lo``, ``_hi``), ``hsm_ratio_real``,
        ``hsm_ratio_mock``, ``flux_radius`` (the condition, model pixels), ``clipped``
        (conditions outside the model's range), and in ``meta`` the filling note. ``out_dir``
        also gets ``aegis.png``: each galaxy's real stamps and its first mock in both bands.
    """
    if isinstance(model, (str, Path)):
        import galsim_hub

        handle = str(model)
        model = galsim_hub.GenerativeGalaxyModel(handle)
    else:
        handle = getattr(model, "file_name", type(model).__name__)
    bands = list(getattr(model, "bands", None) or [])
    if not set(AEGIS_BANDS) <= set(bands):
        raise MetadataError(
            f"{handle} has bands {bands or 'none (single-band)'}: the AEGIS check needs a "
            f"multi-band model with {list(AEGIS_BANDS)}"
        )
    if int(n_mocks) < 1:
        raise ValueError(f"n_mocks must be at least 1, got {n_mocks}")
    zero_points = {b["name"]: float(b["zero_point"]) for b in model.metadata["bands"]}
    zp = (zero_points["f606w"], zero_points["f814w"])
    reference = None
    if data is not None:
        from galsim_hub.training.datasets.shards import load_arrays, read_dataset_metadata
        from galsim_hub.training.validation.morphology import _condition_names

        names = _condition_names(read_dataset_metadata(data))
        reference = Table(load_arrays(data, keys=["conditions"])["conditions"], names=names)
    ranges = {c["name"]: (c.get("min", -np.inf), c.get("max", np.inf)) for c in model.metadata["conditions"]}
    rng = np.random.default_rng(seed)
    rows: list = []
    stamps: list = []
    notes: set[str] = set()
    noise_notes: set[str] = set()
    for index, galaxy in enumerate(read_aegis(aegis_dir)):
        scale = galaxy["pixel_scale"]
        v, i = galaxy["bands"]["f606w"], galaxy["bands"]["f814w"]
        sigmas = (math.sqrt(v["noise_variance"]), math.sqrt(i["noise_variance"]))
        if v["image"].shape != i["image"].shape:
            raise MetadataError(f"galaxy {galaxy['ident']}: F606W and F814W stamps differ in shape")
        real = measure_pair(v["image"], i["image"], *sigmas, zp)
        known = {
            "mag_f814w": i["mag"],
            "color_f606w_f814w": v["mag"] - i["mag"],
            "flux_radius": real["hlr_814"] * scale / float(model.pixel_scale),
        }
        conditions, note = aegis_conditions(model, known, reference, n_neighbours)
        notes.add(note)
        clipped = [q for q, x in conditions.items() if not ranges[q][0] <= x <= ranges[q][1]]
        cat = Table({q: np.full(int(n_mocks), x) for q, x in conditions.items()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # out-of-range clipping is reported in the table
            mocks = model.sample(cat, seed=int(seed) * 1000 + index + 1)
        psfs = {
            b: galsim.InterpolatedImage(galsim.Image(galaxy["bands"][b]["psf"], scale=scale), flux=1.0)
            for b in AEGIS_BANDS
        }
        noises = {
            b: (
                correlated_noise(galaxy["bands"][b]["noise_file"], galaxy["bands"][b]["noise_variance"], scale)
                if correlated and galaxy["bands"][b]["noise_file"]
                else None
            )
            for b in AEGIS_BANDS
        }
        noise_notes.update(
            "correlated (the band's ACS correlation function)" if noises[b] is not None else "white"
            for b in AEGIS_BANDS
        )
        drawn = [
            (
                _draw(m.images["f606w"], psfs["f606w"], v["image"].shape, scale, sigmas[0], noises["f606w"], rng),
                _draw(m.images["f814w"], psfs["f814w"], i["image"].shape, scale, sigmas[1], noises["f814w"], rng),
            )
            for m in mocks
        ]
        measured = [measure_pair(*pair, *sigmas, zp) for pair in drawn]
        stamps.append((galaxy["ident"], (v["image"], i["image"]), drawn[0], sigmas))
        row = {
            "ident": galaxy["ident"],
            "mag_f814w": i["mag"],
            "color_mag": known["color_f606w_f814w"],
            "color_real": real["color"],
            "ratio_real": real["ratio"],
            "hsm_ratio_real": real["hsm_ratio"],
            "flux_radius": known["flux_radius"],
        }
        for key in ("color", "ratio", "hsm_ratio"):
            values = np.array([m[key] for m in measured], dtype=float)
            values = values[np.isfinite(values)]
            lo, mid, hi = np.percentile(values, [16, 50, 84]) if len(values) else (math.nan,) * 3
            row.update({f"{key}_mock": mid, f"{key}_mock_lo": lo, f"{key}_mock_hi": hi})
        row["n_mocks"] = len(measured)
        row["clipped"] = ", ".join(clipped)
        row.update({f"cond_{q}": x for q, x in conditions.items() if q not in known})
        rows.append(row)
    table = Table(rows=rows)
    table.meta.update(
        {
            "model": str(handle),
            "aegis_dir": str(aegis_dir),
            "data": None if data is None else str(data),
            "filled": "; ".join(sorted(notes)),
            "n_mocks": int(n_mocks),
            "seed": int(seed),
            "noise": " / ".join(sorted(noise_notes)) + " Gaussian noise of the real NOISE_VARIANCE",
            "zero_points": f"f606w {zp[0]:.4f}, f814w {zp[1]:.4f} (the model's)",
        }
    )
    if out_dir is not None:
        _figure(stamps, Path(out_dir))
        write_aegis_report(table, out_dir)
    return table


def _figure(stamps: list, out_dir: Path) -> Path:
    """``aegis.png``: each galaxy's real F606W and F814W stamps and its first mock's, same stretch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(4, len(stamps), figsize=(2.0 * len(stamps), 8.0), squeeze=False)
    for column, (ident, real, mock, sigmas) in enumerate(stamps):
        for row, (image, sigma, label) in enumerate(
            (
                (real[0], sigmas[0], "real F606W"),
                (real[1], sigmas[1], "real F814W"),
                (mock[0], sigmas[0], "mock F606W"),
                (mock[1], sigmas[1], "mock F814W"),
            )
        ):
            ax = axes[row, column]
            ax.imshow(
                np.arcsinh(image / (2 * sigma)),
                origin="lower",
                cmap="gray",
                vmin=-1,
                vmax=float(np.arcsinh(real[1].max() / (2 * sigmas[1]))),
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(label)
        axes[0, column].set_title(str(ident), fontsize="small")
    fig.tight_layout()
    path = out_dir / "aegis.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def aegis_markdown(table: Table) -> str:
    """The five-row table: real vs mock colour and size ratio (mock median [16th, 84th percentile])."""
    lines = [
        "| IDENT | MAG F814W | colour MAG | colour stamp | colour mock | r606/r814 real | r606/r814 mock | "
        "HSM ratio real | HSM ratio mock | flux_radius [model px] | clipped |",
        "|" + "---|" * 11,
    ]
    for r in table:
        lines.append(
            f"| {r['ident']} | {r['mag_f814w']:.2f} | {r['color_mag']:.2f} | {r['color_real']:.2f} | "
            f"{r['color_mock']:.2f} [{r['color_mock_lo']:.2f}, {r['color_mock_hi']:.2f}] | "
            f"{r['ratio_real']:.2f} | {r['ratio_mock']:.2f} [{r['ratio_mock_lo']:.2f}, "
            f"{r['ratio_mock_hi']:.2f}] | {r['hsm_ratio_real']:.2f} | {r['hsm_ratio_mock']:.2f} | "
            f"{r['flux_radius']:.2f} | {r['clipped'] or '-'} |"
        )
    return "\n".join(lines)


def write_aegis_report(table: Table, out_dir: str | Path) -> Path:
    """Write ``aegis.md`` and ``aegis.json`` in ``out_dir``; return the markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = table.meta
    lines = [
        "# AEGIS two-band sanity check",
        "",
        f"- model: {meta['model']}",
        f"- AEGIS files: {meta['aegis_dir']}",
        f"- mocks per galaxy: {meta['n_mocks']} (seed {meta['seed']})",
        f"- AB zero points: {meta['zero_points']}",
        "- mocks conditioned on mag_f814w = MAG(F814W), color_f606w_f814w = MAG(F606W) - MAG(F814W), "
        "flux_radius = half-light radius of the F814W stamp in model pixels",
        f"- conditions AEGIS lacks: {meta['filled']}",
        f"- mock noise: {meta['noise']}",
        '- measured on the observed stamps (real) and on mocks drawn through the real PSFs at 0.03"/px '
        "on the real stamp's grid: colour from stamp photometry in the union of both "
        "bands' footprints grown by 3 px, half-light radii from the curve of growth in that aperture about "
        "the F814W centroid, HSM sigma ratio",
        "",
        "Five galaxies: a sanity check, not a statistic. Mock columns: median [16th, 84th percentile].",
        "",
        aegis_markdown(table),
        "",
        "![aegis](aegis.png)",
        "",
    ]
    path = out_dir / "aegis.md"
    path.write_text("\n".join(lines))
    rows = [
        {
            name: (
                None
                if isinstance(row[name], (float, np.floating)) and not np.isfinite(row[name])
                else row[name].item()
                if hasattr(row[name], "item")
                else row[name]
            )
            for name in table.colnames
        }
        for row in table
    ]
    (out_dir / "aegis.json").write_text(json.dumps({"meta": dict(meta), "galaxies": rows}, indent=2))
    return path
