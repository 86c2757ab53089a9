"""Copy a small subset of the real COSMOS galaxies of ../shared/data into tests/data (run once).

Writes, for each source sample, a RealGalaxyCatalog of N galaxies (the smallest stamps among those
that GalSim's COSMOSCatalog keeps) with their image, PSF, _fits (and _selection) rows and the noise
correlation file, in the same layout and file names as the original, so that the tests exercise
the COSMOS path on real files without ../shared. Usage::

    python tests/data/make_real_subset.py ../shared/data tests/data
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits

SAMPLES = {  # sample folder: (catalog file, galaxies to copy)
    "cosmos_23.5_example": ("real_galaxy_catalog_23.5_example.fits", 12),
    "cosmos_btk100": ("real_galaxy_catalog_26_extension_example.fits", 12),
}


def _rows(path: Path, rows: np.ndarray) -> fits.BinTableHDU:
    with fits.open(path) as hdus:
        return fits.BinTableHDU(hdus[1].data[rows], header=hdus[1].header)


def copy_subset(source: Path, dest: Path, catalog_file: str, n: int) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with fits.open(source / catalog_file) as hdus:
        cat = hdus[1].data
        gal_file, psf_file = cat["GAL_FILENAME"][0].strip(), cat["PSF_FILENAME"][0].strip()
        with fits.open(source / gal_file) as images:
            sizes = np.array([images[int(h)].data.size for h in cat["GAL_HDU"]])
        has_selection = (source / catalog_file.replace(".fits", "_selection.fits")).is_file()
        cosmos = galsim.COSMOSCatalog(
            file_name=catalog_file, dir=str(source), exclusion_level="marginal" if has_selection else "none"
        )
        keep = np.zeros(len(cat), bool)
        keep[cosmos.orig_index] = True  # the galaxies COSMOSCatalog keeps at its cuts
        rows = np.sort(np.argsort(np.where(keep, sizes, np.inf))[:n])
        table = fits.BinTableHDU(cat[rows], header=hdus[1].header)
    old_gal, old_psf = table.data["GAL_HDU"].copy(), table.data["PSF_HDU"].copy()
    table.data["GAL_HDU"] = np.arange(len(rows))
    table.data["PSF_HDU"] = np.arange(len(rows))
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(dest / catalog_file, overwrite=True)
    for name in ("_fits.fits", "_selection.fits"):
        path = source / catalog_file.replace(".fits", name)
        if path.is_file():
            fits.HDUList([fits.PrimaryHDU(), _rows(path, rows)]).writeto(dest / path.name, overwrite=True)
    for file_name, hdu_numbers in ((gal_file, old_gal), (psf_file, old_psf)):
        with fits.open(source / file_name) as hdus:
            out = [fits.PrimaryHDU(hdus[int(hdu_numbers[0])].data)]
            out += [fits.ImageHDU(hdus[int(h)].data) for h in hdu_numbers[1:]]
            fits.HDUList(out).writeto(dest / file_name, overwrite=True)
    noise = cat["NOISE_FILENAME"][0].strip()
    shutil.copyfile(source / noise, dest / noise)


def main(argv: list[str]) -> None:
    source_root, dest_root = Path(argv[0]), Path(argv[1])
    for sample, (catalog_file, n) in SAMPLES.items():
        copy_subset(source_root / sample, dest_root / sample, catalog_file, n)


if __name__ == "__main__":
    main(sys.argv[1:])
