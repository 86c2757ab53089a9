"""Write ``chromatic_catalog.fits``: a catalog for ``three_band_field.yaml`` (hub:synthetic_chromatic).

The rows are galaxies of the model's own synthetic population (:mod:`galsim_hub.training.datasets.chromatic`),
so that their conditions are consistent with each other (colours, sizes and redshifts that go
together): a small chromatic data set is drawn in a temporary directory and its conditions kept.
Columns: ``x``, ``y`` (pixel position in the 400x400 field of 0.05" pixels), ``mag_f814w``,
``color_f435w_f606w``, ``color_f606w_f814w`` (AB), ``flux_radius`` (F814W, pixels of 0.05") and
``zphot``. Run ``python examples/make_chromatic_catalog.py [N] [OUT]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.table import Table

from galsim_hub.training.datasets.data import build_chromatic_dataset, load_arrays, read_dataset_metadata


def make_chromatic_catalog(n_galaxies: int = 40, seed: int = 2027, field_size: int = 400) -> Table:
    """A catalog of ``n_galaxies`` rows of the chromatic population with field positions.

    Parameters
    ----------
    n_galaxies : int
        Number of rows.
    seed : int
        Seed of the population draw and of the positions, so that the file is reproducible.
    field_size : int
        Side of the field in pixels; positions keep 32 pixels from the edges.

    Returns
    -------
    astropy.table.Table
    """
    with tempfile.TemporaryDirectory() as tmp:
        dataset = build_chromatic_dataset(
            Path(tmp) / "set", n_galaxies, stamp_size=64, pixel_scale=0.05, seed=seed, progress=False
        )
        names = [c["name"] for c in read_dataset_metadata(dataset)["conditions"]]
        conditions = load_arrays(dataset, ("conditions",))["conditions"]
    rng = np.random.default_rng(seed)
    catalog = Table(
        {"x": rng.uniform(32, field_size - 32, n_galaxies), "y": rng.uniform(32, field_size - 32, n_galaxies)}
    )
    for i, name in enumerate(names):
        catalog[name] = conditions[:, i]
    return catalog


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("chromatic_catalog.fits")
    make_chromatic_catalog(n).write(out, overwrite=True)
    print(f"wrote {n} galaxies to {out}")
