"""End-to-end cost per galaxy of the real-galaxy model beside GalSim's RealGalaxy, in one run.

For the 200 real COSMOS galaxies of ``../shared/data`` (their own ``mag_auto``, ``flux_radius``,
``zphot``), measures milliseconds per galaxy from catalog row to a drawn, PSF-convolved stamp:

- ``hub:cosmos_real`` (and the synthetic default ``hub:synthetic_bdk``): ``sample()`` for the
  whole catalog, then convolve and draw each galaxy;
- ``galsim.RealGalaxy`` from the same RealGalaxyCatalog files: build and draw each galaxy (what a
  simulation drawing real COSMOS galaxies does), and ``COSMOSCatalog.makeGalaxy(gal_type='real')``;

each drawn two ways: as a ground survey sees it (64x64 stamps at 0.2"/px, Moffat FWHM 0.7"), and
at the model's own geometry (64x64 at 0.07"/px, an HST-like Airy PSF). Target: the model is no
slower than RealGalaxy.

Usage::

    python benchmarks/real_galaxies.py [--data ../shared/data] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import galsim
import numpy as np
from astropy.table import Table, vstack
from speed import _best_time  # benchmarks/ is on sys.path when this script runs

REPOSITORY = Path(__file__).resolve().parents[1]
SAMPLES = {  # folder: (RealGalaxyCatalog file, COSMOSCatalog exclusion level)
    "cosmos_23.5_example": ("real_galaxy_catalog_23.5_example.fits", "marginal"),
    "cosmos_btk100": ("real_galaxy_catalog_26_extension_example.fits", "none"),
}
GEOMETRIES = {  # name: (stamp pixels, arcsec per pixel, PSF)
    'ground 64 px at 0.2", Moffat 0.7"': (64, 0.2, galsim.Moffat(beta=3.0, fwhm=0.7)),
    "model's own 64 px at 0.07\", HST Airy": (
        64,
        0.07,
        galsim.Airy(lam=814.0, diam=2.4, obscuration=0.33, scale_unit=galsim.arcsec),
    ),
}


def real_catalogs(data_dir: Path) -> list[tuple[galsim.COSMOSCatalog, Table]]:
    """The COSMOS catalogs and their (mag_auto, flux_radius, zphot) rows."""
    from galsim_hub.training.datasets.cosmos import _lookup_column

    out = []
    for folder, (file_name, exclusion) in SAMPLES.items():
        cosmos = galsim.COSMOSCatalog(file_name=file_name, dir=str(data_dir / folder), exclusion_level=exclusion)
        tables = (cosmos.param_cat, np.array(cosmos.real_cat.cat))
        rows = cosmos.orig_index
        out.append(
            (
                cosmos,
                Table(
                    {
                        name: _lookup_column(tables, name)[rows].astype(np.float64)
                        for name in ("mag_auto", "flux_radius", "zphot")
                    }
                ),
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPOSITORY.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["hub:cosmos_real", "hub:synthetic_bdk"])
    args = parser.parse_args(argv)

    import warnings

    import galsim_hub

    catalogs = real_catalogs(args.data)
    conditions = vstack([table for _, table in catalogs])
    n = len(conditions)
    print(
        f"machine: {platform.processor() or platform.machine()}, {n} real COSMOS galaxies, "
        f"galsim {galsim.__version__}, best of {args.repeat}"
    )
    models = {handle: galsim_hub.GenerativeGalaxyModel(handle) for handle in args.models}
    rows = []
    for geometry, (stamp, scale, psf) in GEOMETRIES.items():

        def draw(profile):
            return galsim.Convolve(profile, psf).drawImage(nx=stamp, ny=stamp, scale=scale)

        for handle, model in models.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds = _best_time(lambda: [draw(g) for g in model.sample(conditions, seed=1)], args.repeat)
            rows.append((geometry, f"{handle}: sample() + convolve + draw", 1e3 * seconds / n))

        def real_galaxies():
            for cosmos, _ in catalogs:
                for index in range(cosmos.nobjects):
                    draw(galsim.RealGalaxy(cosmos.real_cat, index=int(cosmos.orig_index[index])))

        def cosmos_catalog():
            for cosmos, _ in catalogs:
                for index in range(cosmos.nobjects):
                    draw(cosmos.makeGalaxy(index, gal_type="real"))

        rows.append(
            (geometry, "galsim.RealGalaxy: build + convolve + draw", 1e3 * _best_time(real_galaxies, args.repeat) / n)
        )
        rows.append(
            (
                geometry,
                "COSMOSCatalog.makeGalaxy(real): build + convolve + draw",
                1e3 * _best_time(cosmos_catalog, args.repeat) / n,
            )
        )
    print("\n| stamps | what | ms per galaxy |\n| --- | --- | --- |")
    for geometry, what, ms in rows:
        print(f"| {geometry} | {what} | {ms:.2f} |")


if __name__ == "__main__":
    main()
