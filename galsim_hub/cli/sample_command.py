"""``galsim-hub sample``: galaxies of a model into a FITS file, any number of bands."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Sequence

from galsim_hub.backends import BACKENDS
from galsim_hub.constants import DEFAULT_BATCH_SIZE, DEFAULT_OUT_OF_RANGE, MAX_SEED, OUT_OF_RANGE_POLICIES
from galsim_hub.errors import GalSimHubError

MAX_STAMP_PIXELS = 4096  # side of a PSF-convolved stamp
#: The most columns a FITS binary table holds (TFIELDS).
MAX_FITS_COLUMNS = 999


def _uniform_catalog(model, n: int, seed: int | None):
    import numpy as np
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    columns = {}
    for condition in model.metadata["conditions"]:
        low, high = condition.get("min"), condition.get("max")
        if low is None or high is None:
            raise GalSimHubError(
                f"the model does not state the training range of '{condition['name']}'; give --catalog"
            )
        columns[condition["name"]] = rng.uniform(low, high, n)
    return Table(columns)


def _read_catalog(path: str, n: int | None):
    from astropy.io.registry import IORegistryError
    from astropy.table import Table

    if Path(path).is_dir():
        raise GalSimHubError(f"--catalog {path} is a folder; give a catalog file (e.g. a FITS table)")
    if not Path(path).is_file():
        raise FileNotFoundError(f"the catalog {path} does not exist")
    try:
        catalog = Table.read(path)
    except (IORegistryError, OSError, ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GalSimHubError(
            f"cannot read the catalog {path} as a table ({first_line}); give a FITS table or another "
            "format astropy's Table.read understands (e.g. .ecsv, .csv with format given by its suffix)"
        ) from exc
    if n is not None:
        if n > len(catalog):
            raise GalSimHubError(f"--n {n} asks for more galaxies than the {len(catalog)} rows of {path}")
        catalog = catalog[:n]
    return catalog


def _sampling_options(args: argparse.Namespace, bands: Sequence[str] | None) -> dict:
    """The ``sample`` keywords of --out-of-range, --flux-column, --mag-column and --zero-point.

    A single-band model (``bands`` None) takes a column name; a multi-band model takes
    ``BAND=COL[,BAND=COL...]``, each band with its own zero point.
    """
    columns = [
        option
        for option, value in (("--flux-column", args.flux_column), ("--mag-column", args.mag_column))
        if value is not None
    ]
    if columns and args.catalog is None:
        raise GalSimHubError(f"{' and '.join(columns)} need(s) --catalog")
    if args.zero_point is not None and args.mag_column is None:
        raise GalSimHubError("--zero-point goes with --mag-column")
    if args.zero_point is not None and not math.isfinite(args.zero_point):
        raise GalSimHubError(f"--zero-point must be a finite number, got {args.zero_point}")
    if args.zero_point is not None and bands is not None:
        raise GalSimHubError(
            "--zero-point applies to single-band models; a multi-band model's magnitudes use each band's own zero point"
        )
    options = {"out_of_range": args.out_of_range, "zero_point": args.zero_point}
    for key, option, value in (("flux", "--flux-column", args.flux_column), ("mag", "--mag-column", args.mag_column)):
        options[key] = value if value is None or bands is None else _band_columns(value, option, bands)
    return options


def _band_columns(value: str, option: str, bands: Sequence[str]) -> dict[str, str]:
    """Parse ``BAND=COL[,BAND=COL...]`` of a multi-band model's ``option``."""
    pairs = [item.strip() for item in value.split(",") if item.strip()]
    columns = {}
    for pair in pairs:
        band, _, column = pair.partition("=")
        band, column = band.strip(), column.strip()
        if not column or band not in bands or band in columns:
            raise GalSimHubError(
                f"{option} {value!r}: a multi-band model takes BAND=COLUMN pairs separated by commas, one per "
                f"band at most, over its bands {','.join(bands)} (e.g. {option} {bands[0]}=mag_{bands[0]})"
            )
        columns[band] = column
    if not columns:
        raise GalSimHubError(f"{option} {value!r}: give at least one BAND=COLUMN pair")
    return columns


def _selected_bands(model, args) -> list[int]:
    """Indexes of the bands to write (``--bands``, default all; a single-band model has one)."""
    if model.bands is None:
        if args.bands is not None:
            raise GalSimHubError(f"--bands needs a multi-band model; {args.handle} is single-band")
        return [0]
    if args.bands is None:
        return list(range(len(model.bands)))
    names = [name.strip() for name in args.bands.split(",") if name.strip()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise GalSimHubError(
            f"--bands {args.bands!r} names {','.join(repeated)} twice: each band is one extension of the output file"
        )
    unknown = [name for name in names if name not in model.bands]
    if unknown or not names:
        raise GalSimHubError(f"--bands {args.bands!r}: the model's bands are {','.join(model.bands)}")
    return [model.bands.index(name) for name in names]


def _stamps(model, catalog, args, bands: list[int]):
    """``[N, S, S, b]`` stamps of the selected bands (PSF-convolved with --psf), and their pixel scale."""
    import galsim
    import numpy as np

    from galsim_hub.profiles.wrap import band_images

    options = _sampling_options(args, model.bands)
    if args.psf is None:
        arrays = np.asarray(model.sample(catalog, seed=args.seed, return_arrays=True, **options))
        arrays = arrays.reshape(*arrays.shape[:3], -1)
        return np.ascontiguousarray(arrays[..., bands]), model.pixel_scale
    scale, size = _psf_geometry(model, args)
    psf = galsim.Kolmogorov(fwhm=args.psf)
    galaxies = model.sample(catalog, seed=args.seed, **options)
    stamps = [
        [galsim.Convolve(band_images(galaxy)[b], psf).drawImage(nx=size, ny=size, scale=scale).array for b in bands]
        for galaxy in galaxies
    ]
    return np.asarray(stamps, dtype=np.float32).transpose(0, 2, 3, 1), scale


def _psf_geometry(model, args) -> tuple[float, int]:
    """Pixel scale and size of PSF-convolved stamps."""
    import numpy as np

    scale = model.pixel_scale if args.psf_scale is None else args.psf_scale
    # The model's field of view plus one PSF FWHM on each side, so the PSF wings stay in.
    size = int(np.ceil((model.stamp_size * model.pixel_scale + 2 * args.psf) / scale))
    if size > MAX_STAMP_PIXELS:
        raise GalSimHubError(
            f"--psf {args.psf:g} at --psf-scale {scale:g} makes stamps of {size}x{size} pixels, more than "
            f"the limit of {MAX_STAMP_PIXELS}; give a smaller --psf FWHM or a larger --psf-scale"
        )
    return scale, size


def _ascii(text: str) -> str:
    """``text`` as FITS header cards hold it (ASCII; other characters as escapes)."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _output_header(model, args: argparse.Namespace, scale: float, bands: list[str] | None):
    """The primary header of ``sample``'s output file."""
    from astropy.io import fits

    header = fits.Header()
    header["MODEL"] = (_ascii(args.handle), "galsim-hub model handle")
    header["MODNAME"] = (_ascii(str(model.metadata.get("name", "")))[:68], "model name")
    header["MODVERS"] = (_ascii(str(model.metadata.get("version", "")))[:68], "model version")
    header["PIXSCALE"] = (scale, "arcsec per pixel")
    header["SEED"] = (-1 if args.seed is None else args.seed, "seed of the base noise (-1: random)")
    header["PSFFWHM"] = (0.0 if args.psf is None else args.psf, "Kolmogorov PSF FWHM in arcsec (0: none)")
    header["BUNIT"] = _ascii(str(model.metadata.get("flux_units", "")))[:68]
    header["OUTRANGE"] = (args.out_of_range, "out_of_range policy (clip, error, extrapolate)")
    if bands is not None and (args.flux_column or args.mag_column):
        header["BUNIT"] = _ascii(
            f"{'flux' if args.flux_column else 'mag'} columns {args.flux_column or args.mag_column}"
        )[:68]
    elif args.flux_column or args.mag_column:
        zero_point = args.zero_point if args.zero_point is not None else model.metadata.get("zero_point")
        unit = (
            f"flux of column {args.flux_column}"
            if args.flux_column
            else f"10**(-0.4({args.mag_column}-{zero_point:g}))"
        )
        header["BUNIT"] = _ascii(unit)[:68]
    if bands is not None:
        header["BANDS"] = (",".join(bands), "one image extension per band")
    return header


#: The most columns a FITS binary table holds (TFIELDS).
MAX_FITS_COLUMNS = 999


def _catalog_hdu(catalog):
    """The conditions table of ``sample``'s output, checked for FITS before any sampling."""
    from astropy.io import fits

    if len(catalog.colnames) > MAX_FITS_COLUMNS:
        raise GalSimHubError(
            f"the catalog has {len(catalog.colnames)} columns but a FITS table holds at most "
            f"{MAX_FITS_COLUMNS}; write a catalog with the columns you need"
        )
    try:
        table = fits.table_to_hdu(catalog)
        table.verify("exception")
    except (ValueError, TypeError, fits.VerifyError) as error:
        raise GalSimHubError(f"the catalog cannot be written to FITS: {error}") from error
    table.name = "CATALOG"
    return table


def cmd_sample(args: argparse.Namespace) -> None:
    """Sample galaxies and write a FITS cube of stamps plus the conditions table."""
    import numpy as np
    from astropy.io import fits

    from galsim_hub.model import GenerativeGalaxyModel

    if args.catalog is None and args.n is None:
        raise GalSimHubError("give --catalog CAT.fits, or --n N to draw conditions uniformly in the training range")
    if args.n is not None and args.n < 1:
        raise GalSimHubError(f"--n must be a positive number, got {args.n}")
    for option, value, meaning in (("--psf", args.psf, "a FWHM"), ("--psf-scale", args.psf_scale, "a pixel scale")):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise GalSimHubError(f"{option} is {meaning} in arcsec and must be a positive finite number, got {value}")
    if args.psf_scale is not None and args.psf is None:
        raise GalSimHubError("--psf-scale applies to PSF-convolved stamps: give --psf FWHM too")
    if args.seed is not None and not 1 <= args.seed <= MAX_SEED:
        raise GalSimHubError(f"--seed must be an integer from 1 to 2**63-1, got {args.seed}")
    out = Path(args.out)
    if out.is_dir():
        raise GalSimHubError(f"--out {out} is a folder; give the name of a FITS file")
    if out.exists() and not args.overwrite:
        raise GalSimHubError(f"{out} exists; pass --overwrite to replace it")
    catalog = _read_catalog(args.catalog, args.n) if args.catalog else None
    model = GenerativeGalaxyModel(args.handle, device=args.device, batch_size=args.batch_size, backend=args.backend)
    if catalog is None:
        catalog = _uniform_catalog(model, args.n, args.seed)
    bands = _selected_bands(model, args)
    names = None if model.bands is None else [model.bands[b] for b in bands]
    # Everything the FITS file needs is checked before the work: a bad handle or catalog for
    # FITS fails now, not after sampling.
    scale = model.pixel_scale if args.psf is None else _psf_geometry(model, args)[0]
    header = _output_header(model, args, scale, names)
    table = _catalog_hdu(catalog)
    stamps, scale = _stamps(model, catalog, args, bands)
    if names is None:  # a single-band model: the cube in the primary HDU
        hdus = [fits.PrimaryHDU(stamps[..., 0], header=header)]
    else:  # an empty primary with the run's header, then one cube per band, named after it
        hdus = [fits.PrimaryHDU(header=header)]
        zero_points = {band["name"]: band["zero_point"] for band in model.metadata["bands"]}
        for index, band in enumerate(names):
            hdus.append(fits.ImageHDU(np.ascontiguousarray(stamps[..., index]), name=band))
            hdus[-1].header["ZEROPT"] = (zero_points[band], "AB zero point")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fits.HDUList([*hdus, table]).writeto(tmp, overwrite=True)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    in_bands = "" if names is None else f" in each of the bands {','.join(names)}"
    print(f'wrote {len(stamps)} stamps of {stamps.shape[1]}x{stamps.shape[2]} pixels at {scale:g}"{in_bands} to {out}')


def add_command(commands: argparse._SubParsersAction) -> None:
    """Add ``sample`` to the command line."""
    sub = commands.add_parser("sample", help="sample galaxies into a FITS file")
    sub.add_argument("handle")
    sub.add_argument("--catalog", help="FITS (or any astropy-readable) table with the condition columns")
    sub.add_argument("--out", required=True, help="output FITS: cube of stamps + CATALOG table")
    sub.add_argument("--n", type=int, help="first N catalog rows, or N galaxies with uniform conditions")
    sub.add_argument("--seed", type=int, help="seed of the base noise (and of uniform conditions)")
    sub.add_argument("--psf", type=float, metavar="FWHM", help="convolve with a Kolmogorov PSF of this FWHM (arcsec)")
    sub.add_argument("--psf-scale", type=float, metavar="SCALE", help="pixel scale of PSF-convolved stamps (arcsec)")
    sub.add_argument(
        "--out-of-range",
        choices=OUT_OF_RANGE_POLICIES,
        default=DEFAULT_OUT_OF_RANGE,
        help="rows outside the training range: clip them and set their catalog flux (default), "
        "refuse them, or let the model extrapolate",
    )
    fluxes = sub.add_mutually_exclusive_group()
    fluxes.add_argument(
        "--flux-column",
        metavar="COL",
        help="set each galaxy's flux from this catalog column (multi-band: BAND=COL,BAND=COL...)",
    )
    fluxes.add_argument(
        "--mag-column",
        metavar="COL",
        help="set each galaxy's flux from this magnitude column (multi-band: BAND=COL,..., each band's zero point)",
    )
    sub.add_argument(
        "--zero-point",
        type=float,
        metavar="ZP",
        help="zero point of --mag-column (default: the model's): flux = 10**(-0.4 (mag - ZP))",
    )
    sub.add_argument(
        "--bands", metavar="B1,B2", help="multi-band models: the bands to write, one image extension each (default all)"
    )
    sub.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"galaxies per model call (default {DEFAULT_BATCH_SIZE})",
    )
    sub.add_argument(
        "--device",
        help="device in the backend's words: /CPU:0 (TensorFlow), cpu or gpu (JAX), cuda:0 (PyTorch), cpu (NumPy)",
    )
    sub.add_argument(
        "--backend", choices=BACKENDS, help="where the networks run (default: $GALSIM_HUB_BACKEND, else tensorflow)"
    )
    sub.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    sub.set_defaults(func=cmd_sample)
