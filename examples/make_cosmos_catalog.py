"""Write ``cosmos_catalog.fits``: the catalog values of real COSMOS galaxies, for sampling real-looking fields.

Columns ``IDENT``, ``mag_auto`` (F814W AB, or the RealGalaxyCatalog's ``MAG`` where the ``_fits``
catalog has none), ``flux_radius`` (pixels of 0.03") and ``zphot`` of the galaxies of GalSim's
COSMOS example and of BlendingToolKit's COSMOS sample (``../shared/data``) that GalSim's
``COSMOSCatalog`` keeps: real combinations of magnitude, size and redshift, which a catalog drawn
uniformly in each column's range is not. Rows are in a random order (seed 2026), except that the
galaxies held out from ``hub:cosmos_real``'s training whose values lie outside its training range
come last, so that the first rows sample without a range warning. Run from the
repository root: ``python examples/make_cosmos_catalog.py [DATA_DIR] [OUT]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.table import Table

from galsim_hub.training.datasets.cosmos import CatalogSpec, _select_galaxies, read_holdout

CATALOGS = [
    ("cosmos_23.5_example", "real_galaxy_catalog_23.5_example.fits", "marginal"),
    ("cosmos_btk100", "real_galaxy_catalog_26_extension_example.fits", "none"),
]
CONDITIONS = ("mag_auto", "flux_radius", "zphot")
HOLDOUT = Path(__file__).resolve().parents[1] / "training" / "configs" / "cosmos_real_holdout.txt"


def make_catalog(data_dir: Path) -> Table:
    """The catalog values of every kept galaxy, in a reproducible random order."""
    galaxies = _select_galaxies(
        [CatalogSpec(str(data_dir / folder), file, level) for folder, file, level in CATALOGS], CONDITIONS, None, None
    )
    table = Table(
        rows=[(g.ident, *g.conditions) for g in galaxies],
        names=("IDENT",) + CONDITIONS,
        dtype=(np.int64, np.float32, np.float32, np.float32),
    )
    table = table[np.random.default_rng(2026).permutation(len(table))]
    training = [g for g in galaxies if g.ident not in set(read_holdout(HOLDOUT))]
    low = np.min([g.conditions for g in training], axis=0)
    high = np.max([g.conditions for g in training], axis=0)
    values = np.stack([table[name] for name in CONDITIONS], axis=1)
    outside = np.any((values < low.astype(np.float32)) | (values > high.astype(np.float32)), axis=1)
    return table[np.argsort(outside, kind="stable")]


if __name__ == "__main__":
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data")
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("cosmos_catalog.fits")
    make_catalog(data).write(out, overwrite=True)
    print(out)
