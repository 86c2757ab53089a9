"""Write ``imsim_catalog.fits``: galaxies on the sky for ``imsim_shape.yaml``.

Rows of ``cosmos_catalog.fits`` (real COSMOS ``mag_auto``, ``flux_radius`` and ``zphot``) with
20 < mag_auto < 24, placed at random within 20 arcsec of (RA, Dec) = (150.1, 2.2) deg, with an
LSST r-band AB magnitude ``mag_r`` (``mag_auto`` plus an r - F814W colour drawn in [0.1, 0.6]).
Run ``python examples/make_imsim_catalog.py [OUT]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.table import Table

HERE = Path(__file__).resolve().parent
CENTRE_DEG = (150.1, 2.2)
RADIUS_ARCSEC = 20.0


def make_catalog(seed: int = 134) -> Table:
    """The catalog: ``ra``, ``dec`` (degrees), ``mag_auto``, ``flux_radius``, ``zphot``, ``mag_r``."""
    rng = np.random.default_rng(seed)
    source = Table.read(HERE / "cosmos_catalog.fits")
    rows = source[(source["mag_auto"] > 20) & (source["mag_auto"] < 24)][:12]
    n = len(rows)
    offsets = rng.uniform(-RADIUS_ARCSEC, RADIUS_ARCSEC, (n, 2)) / 3600.0
    return Table(
        {
            "ra": CENTRE_DEG[0] + offsets[:, 0] / np.cos(np.radians(CENTRE_DEG[1])),
            "dec": CENTRE_DEG[1] + offsets[:, 1],
            "mag_auto": np.asarray(rows["mag_auto"], float),
            "flux_radius": np.asarray(rows["flux_radius"], float),
            "zphot": np.asarray(rows["zphot"], float),
            "mag_r": np.asarray(rows["mag_auto"], float) + rng.uniform(0.1, 0.6, n),
        }
    )


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "imsim_catalog.fits"
    make_catalog().write(out, overwrite=True)
    print(out)
