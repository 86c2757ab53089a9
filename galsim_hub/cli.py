"""The ``galsim-hub`` command line (also ``python -m galsim_hub``).

::

    galsim-hub list
    galsim-hub info HANDLE
    galsim-hub fetch HANDLE
    galsim-hub sample HANDLE [--catalog CAT.fits] --out OUT.fits [--n N] [--seed S]
                             [--psf FWHM [--psf-scale SCALE]] [--batch-size B] [--device DEV]
                             [--out-of-range clip|error|extrapolate]
                             [--flux-column COL | --mag-column COL [--zero-point ZP]]
                             [--bands g,r,i]   (multi-band models: one cube per band;
                                               --flux-column/--mag-column BAND=COL,BAND=COL...)
    galsim-hub cache list | clear [KEY ...]
    galsim-hub publish MODEL_DIR --hub DIR_OR_URL [--name NAME] [--version VERSION]

Exit status: 0 success; 1 an error the user can fix (bad input, missing file, network,
unsafe archive...), printed as one line ``galsim-hub: error: ...``; 2 a usage error
(unknown command or option, malformed value), printed by argparse with the usage; 130
interrupted (Ctrl-C). A closed output pipe (``galsim-hub list | head``) is success.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

from galsim_hub import __version__
from galsim_hub.errors import GalSimHubError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's own status for usage errors
EXIT_INTERRUPTED = 130
MAX_STAMP_PIXELS = 4096  # side of a PSF-convolved stamp
MAX_SEED = 2**63 - 1  # GalSim seeds are signed 64-bit integers


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def _conditions_text(metadata: dict) -> str:
    parts = []
    for condition in metadata.get("conditions") or []:
        low, high = condition.get("min"), condition.get("max")
        span = f"[{low:g}, {high:g}]" if low is not None and high is not None else ""
        parts.append(f"{condition['name']}{span}")
    return ", ".join(parts) or "?"


def cmd_list(args: argparse.Namespace) -> None:
    """Print the models of every index: name, version, stamp, pixel scale, conditions."""
    from galsim_hub.hub.handle import load_index

    rows = []
    for entry in load_index():
        metadata = entry.get("metadata") or {}
        rows.append([
            f"hub:{entry['name']}",
            entry["version"],
            str(metadata.get("stamp_size", "?")),
            f"{metadata['pixel_scale']:g}" if "pixel_scale" in metadata else "?",
            _conditions_text(metadata),
        ])
    _print_table(rows, ["HANDLE", "VERSION", "STAMP", "PIXEL[\"]", "CONDITIONS"])


def _read_card(entry: dict) -> str | None:
    if entry.get("_card_path"):
        path = Path(entry["_card_path"])
        return path.read_text(encoding="utf-8") if path.is_file() else None
    if entry.get("_card_url"):
        from galsim_hub.hub import http
        from galsim_hub.hub import settings

        if settings.is_offline():
            return None
        try:
            response = http.request("GET", entry["_card_url"], f"could not read the card {entry['_card_url']}")
        except GalSimHubError:
            return None
        return response.text if response.ok else None
    return None


def cmd_info(args: argparse.Namespace) -> None:
    """Print a model's metadata and model card (hub entries need no download)."""
    from galsim_hub.hub.handle import resolve

    source = resolve(args.handle)
    if source.entry is not None:
        entry = source.entry
        metadata = dict(entry.get("metadata") or {})
        card = _read_card(entry)
        details = {
            "handle": f"hub:{entry['name']}@{entry['version']}",
            "source": source.location,
            "sha256": entry.get("sha256"),
            "size": entry.get("size"),
            "description": entry.get("description", ""),
        }
    else:
        from galsim_hub.hub.cache import fetch
        from galsim_hub.metadata import MODEL_METADATA_FILE, read_metadata

        directory = fetch(source, progress=None)
        metadata = read_metadata(directory) if (directory / MODEL_METADATA_FILE).is_file() else {}
        card_path = directory / "README.md"
        card = card_path.read_text(encoding="utf-8") if card_path.is_file() else None
        details = {"handle": args.handle, "source": source.location, "directory": str(directory)}
    for key, value in details.items():
        print(f"{key}: {value}")
    print("conditions: " + _conditions_text(metadata))
    print("metadata:")
    print(json.dumps(metadata, indent=2))
    print("model card:")
    print(card if card else "(none)")


def cmd_fetch(args: argparse.Namespace) -> None:
    """Download a model into the cache (with a progress bar) and print its directory."""
    from galsim_hub.hub.cache import fetch
    from galsim_hub.hub.handle import resolve

    print(fetch(resolve(args.handle), progress=not args.quiet))


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


def _sampling_options(args: argparse.Namespace) -> dict:
    """The ``sample`` keywords of --out-of-range, --flux-column, --mag-column and --zero-point."""
    columns = [option for option, value in (("--flux-column", args.flux_column), ("--mag-column", args.mag_column))
               if value is not None]
    if columns and args.catalog is None:
        raise GalSimHubError(f"{' and '.join(columns)} need(s) --catalog")
    if args.zero_point is not None and args.mag_column is None:
        raise GalSimHubError("--zero-point goes with --mag-column")
    if args.zero_point is not None and not math.isfinite(args.zero_point):
        raise GalSimHubError(f"--zero-point must be a finite number, got {args.zero_point}")
    return {"out_of_range": args.out_of_range, "flux": args.flux_column, "mag": args.mag_column,
            "zero_point": args.zero_point}


def _band_sampling_options(args: argparse.Namespace, bands: Sequence[str]) -> dict:
    """:func:`_sampling_options` of a multi-band model: ``--flux-column``/``--mag-column`` as
    ``BAND=COL[,BAND=COL...]``, each band with its own zero point."""
    options = _sampling_options(args)
    if args.zero_point is not None:
        raise GalSimHubError("--zero-point applies to single-band models; a multi-band model's magnitudes use "
                             "each band's own zero point")
    for key, option in (("flux", "--flux-column"), ("mag", "--mag-column")):
        if options[key] is not None:
            options[key] = _band_columns(options[key], option, bands)
    options.pop("zero_point")
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


def _selected_bands(model, args) -> list[str] | None:
    """The bands to write (``--bands``, default all of a multi-band model); ``None`` if single-band."""
    if model.bands is None:
        if args.bands is not None:
            raise GalSimHubError(f"--bands needs a multi-band model; {args.handle} is single-band")
        return None
    if args.bands is None:
        return model.bands
    names = [name.strip() for name in args.bands.split(",") if name.strip()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise GalSimHubError(f"--bands {args.bands!r} names {','.join(repeated)} twice: each band is one "
                             "extension of the output file")
    unknown = [name for name in names if name not in model.bands]
    if unknown or not names:
        raise GalSimHubError(f"--bands {args.bands!r}: the model's bands are {','.join(model.bands)}")
    return names


def _band_stamps(model, catalog, args, bands: list[str]):
    """``{band: [N, S, S] stamps}`` of a multi-band model (PSF-convolved with --psf), and the scale."""
    import galsim
    import numpy as np

    if args.psf is None:
        arrays = model.sample(catalog, seed=args.seed, return_arrays=True, **_band_sampling_options(args, model.bands))
        return {band: np.ascontiguousarray(arrays[..., model.bands.index(band)]) for band in bands}, model.pixel_scale
    scale, size = _psf_geometry(model, args)
    psf = galsim.Kolmogorov(fwhm=args.psf)
    galaxies = model.sample(catalog, seed=args.seed, **_band_sampling_options(args, model.bands))
    return {
        band: np.stack([galsim.Convolve(galaxy.images[band], psf).drawImage(nx=size, ny=size, scale=scale).array
                        for galaxy in galaxies]).astype(np.float32)
        for band in bands
    }, scale


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


def _stamps(model, catalog, args):
    import galsim
    import numpy as np

    if args.psf is None:
        return model.sample(catalog, seed=args.seed, return_arrays=True, **_sampling_options(args)), model.pixel_scale
    scale, size = _psf_geometry(model, args)
    psf = galsim.Kolmogorov(fwhm=args.psf)
    galaxies = model.sample(catalog, seed=args.seed, **_sampling_options(args))
    stamps = [
        galsim.Convolve(galaxy, psf).drawImage(nx=size, ny=size, scale=scale).array for galaxy in galaxies
    ]
    return np.stack(stamps).astype(np.float32), scale


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
        header["BUNIT"] = _ascii(f"{'flux' if args.flux_column else 'mag'} columns "
                                 f"{args.flux_column or args.mag_column}")[:68]
    elif args.flux_column or args.mag_column:
        zero_point = args.zero_point if args.zero_point is not None else model.metadata.get("zero_point")
        unit = f"flux of column {args.flux_column}" if args.flux_column else f"10**(-0.4({args.mag_column}-{zero_point:g}))"
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
    model = GenerativeGalaxyModel(args.handle, device=args.device, batch_size=args.batch_size)
    if catalog is None:
        catalog = _uniform_catalog(model, args.n, args.seed)
    bands = _selected_bands(model, args)
    # Everything the FITS file needs is checked before the work: a bad handle or catalog for
    # FITS fails now, not after sampling.
    scale = model.pixel_scale if args.psf is None else _psf_geometry(model, args)[0]
    header = _output_header(model, args, scale, bands)
    table = _catalog_hdu(catalog)
    if bands is None:
        stamps, scale = _stamps(model, catalog, args)
        hdus = [fits.PrimaryHDU(stamps, header=header)]
    else:  # an empty primary with the run's header, then one cube per band, named after it
        cubes, scale = _band_stamps(model, catalog, args, bands)
        stamps = cubes[bands[0]]
        hdus = [fits.PrimaryHDU(header=header)]
        for band in bands:
            hdus.append(fits.ImageHDU(cubes[band], name=band))
            hdus[-1].header["ZEROPT"] = (model.band_set.zero_points[band], "AB zero point")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fits.HDUList([*hdus, table]).writeto(tmp, overwrite=True)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    in_bands = "" if bands is None else f" in each of the bands {','.join(bands)}"
    print(f"wrote {len(stamps)} stamps of {stamps.shape[1]}x{stamps.shape[2]} pixels at {scale:g}\"{in_bands} to {out}")


def cmd_cache(args: argparse.Namespace) -> None:
    """List or clear the model cache."""
    from galsim_hub.hub.cache import cache_root, clear, list_entries

    if args.action == "list":
        entries = list_entries()
        rows = [
            [
                entry["key"][:12],
                f"{entry['name']}@{entry['version']}" if "name" in entry else "-",
                f"{entry.get('size_bytes', 0) / 1e6:.1f}",
                entry.get("created", ""),
                entry.get("source", ""),
            ]
            for entry in entries
        ]
        print(f"cache: {cache_root()} ({len(entries)} entries)")
        if rows:
            _print_table(rows, ["KEY", "MODEL", "MB", "CREATED", "SOURCE"])
    else:
        keys = _expand_keys(args.keys) if args.keys else None
        removed = clear(keys)
        print(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'} from {cache_root()}")


def _expand_keys(prefixes: list[str]) -> list[str]:
    """Full cache keys from the (unique) prefixes that ``cache list`` prints."""
    from galsim_hub.hub.cache import list_entries

    keys = [entry["key"] for entry in list_entries()]
    expanded = []
    for prefix in prefixes:
        matches = [key for key in keys if key.startswith(prefix)]
        if len(matches) != 1:
            raise GalSimHubError(
                f"cache key {prefix!r} matches {len(matches)} entries; see `galsim-hub cache list`"
            )
        expanded.append(matches[0])
    return expanded


def cmd_publish(args: argparse.Namespace) -> None:
    """Validate a model and publish it into a hub folder or HTTP(S) endpoint."""
    from galsim_hub.hub.publish import publish

    entry = publish(args.model_dir, args.hub, name=args.name, version=args.version)
    print(f"published hub:{entry['name']}@{entry['version']} to {args.hub}")
    print(f"  archive {entry['path']} ({entry['size']} bytes, sha256 {entry['sha256']})")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``galsim-hub``."""
    parser = argparse.ArgumentParser(
        prog="galsim-hub", description="Deep generative galaxy models for GalSim: list, fetch, sample, publish."
    )
    parser.add_argument("--version", action="version", version=f"galsim-hub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub = commands.add_parser("list", help="list the models of the hub indexes")
    sub.set_defaults(func=cmd_list)

    sub = commands.add_parser("info", help="show a model's metadata and model card")
    sub.add_argument("handle", help="hub:NAME[@VERSION], URL, archive or directory")
    sub.set_defaults(func=cmd_info)

    sub = commands.add_parser("fetch", help="download a model into the cache")
    sub.add_argument("handle")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.set_defaults(func=cmd_fetch)

    sub = commands.add_parser("sample", help="sample galaxies into a FITS file")
    sub.add_argument("handle")
    sub.add_argument("--catalog", help="FITS (or any astropy-readable) table with the condition columns")
    sub.add_argument("--out", required=True, help="output FITS: cube of stamps + CATALOG table")
    sub.add_argument("--n", type=int, help="first N catalog rows, or N galaxies with uniform conditions")
    sub.add_argument("--seed", type=int, help="seed of the base noise (and of uniform conditions)")
    sub.add_argument("--psf", type=float, metavar="FWHM", help="convolve with a Kolmogorov PSF of this FWHM (arcsec)")
    sub.add_argument("--psf-scale", type=float, metavar="SCALE", help="pixel scale of PSF-convolved stamps (arcsec)")
    sub.add_argument("--out-of-range", choices=["clip", "error", "extrapolate"], default="clip",
                     help="rows outside the training range: clip them and set their catalog flux (default), "
                          "refuse them, or let the model extrapolate")
    fluxes = sub.add_mutually_exclusive_group()
    fluxes.add_argument("--flux-column", metavar="COL",
                        help="set each galaxy's flux from this catalog column (multi-band: BAND=COL,BAND=COL...)")
    fluxes.add_argument("--mag-column", metavar="COL",
                        help="set each galaxy's flux from this magnitude column (multi-band: BAND=COL,..., "
                             "each band's zero point)")
    sub.add_argument("--zero-point", type=float, metavar="ZP",
                     help="zero point of --mag-column (default: the model's): flux = 10**(-0.4 (mag - ZP))")
    sub.add_argument("--bands", metavar="B1,B2",
                     help="multi-band models: the bands to write, one image extension each (default all)")
    sub.add_argument("--batch-size", type=int, default=256, help="galaxies per model call (default 256)")
    sub.add_argument("--device", help="TensorFlow device, e.g. /CPU:0")
    sub.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    sub.set_defaults(func=cmd_sample)

    sub = commands.add_parser("cache", help="list or clear the model cache")
    sub.add_argument("action", choices=["list", "clear"])
    sub.add_argument("keys", nargs="*", help="for clear: keys (or prefixes) to remove; default all")
    sub.set_defaults(func=cmd_cache)

    sub = commands.add_parser("publish", help="validate a model and publish it into a hub")
    sub.add_argument("model_dir")
    sub.add_argument("--hub", required=True, help="hub folder (with index.json) or http(s) URL accepting PUT")
    sub.add_argument("--name", help="published name (default: the metadata's)")
    sub.add_argument("--version", help="published version (default: the metadata's)")
    sub.set_defaults(func=cmd_publish)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``galsim-hub``; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BrokenPipeError:
        # The reader went away (e.g. `galsim-hub info ... | head`): not an error of ours.
        sys.stderr.close()
        return EXIT_OK
    except (GalSimHubError, OSError, ValueError) as exc:
        print(f"galsim-hub: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("galsim-hub: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
