"""Write ``catalog.fits``: a small catalog of galaxies for ``field.yaml`` and ``bands.yaml``.

Columns: ``x``, ``y`` (pixel position in the 256x256 field), ``mag_auto`` (F814W AB),
``flux_radius`` (pixels of 0.03 arcsec) and ``zphot``, drawn inside the training range of
the bundled model; ``flux_g``, ``flux_r``, ``flux_i``: fluxes in three bands, in the model's
flux units (``flux_i`` is that of ``mag_auto`` at the zero point 25.94; ``r - i`` and ``g - r``
colours are drawn in [0.1, 0.6] and [0.2, 1.2] mag). Run
``python examples/make_catalog.py [N] [OUT]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.table import Table

ZERO_POINT = 25.94  # F814W AB zero point of the bundled model's flux units


def make_catalog(n_galaxies: int = 64, seed: int = 2021, field_size: int = 256) -> Table:
    """A catalog of ``n_galaxies`` rows with positions and model conditions.

    Parameters
    ----------
    n_galaxies : int
        Number of rows.
    seed : int
        Seed of the numpy generator, so that the file is reproducible.
    field_size : int
        Side of the field in pixels; positions keep 16 pixels from the edges.

    Returns
    -------
    astropy.table.Table
    """
    rng = np.random.default_rng(seed)
    catalog = Table(
        {
            "x": rng.uniform(16, field_size - 16, n_galaxies),
            "y": rng.uniform(16, field_size - 16, n_galaxies),
            "mag_auto": rng.uniform(21.0, 24.5, n_galaxies),
            "flux_radius": rng.uniform(3.0, 9.0, n_galaxies),
            "zphot": rng.uniform(0.2, 1.8, n_galaxies),
        }
    )
    r_minus_i = rng.uniform(0.1, 0.6, n_galaxies)
    g_minus_r = rng.uniform(0.2, 1.2, n_galaxies)
    catalog["flux_i"] = 10 ** (-0.4 * (catalog["mag_auto"] - ZERO_POINT))
    catalog["flux_r"] = catalog["flux_i"] * 10 ** (-0.4 * r_minus_i)
    catalog["flux_g"] = catalog["flux_r"] * 10 ** (-0.4 * g_minus_r)
    return catalog


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("catalog.fits")
    make_catalog(count).write(out, overwrite=True)
    print(f"wrote {count} galaxies to {out}")
