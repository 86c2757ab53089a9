"""The ``out_of_range`` policies side by side on a real catalog: flux and compactness of the stamps.

Samples the rows of a catalog that lie outside the model's training range with each policy
(``extrapolate``, ``clip``) and prints, per policy, the stamp flux over the catalog flux
(``10**(-0.4 (mag - zero_point))``, from the model's magnitude condition) and the fraction of
the flux in the outer border of the stamp (``galsim_hub.sampling.fluxes.border_fractions``), plus the
same for the rows inside the range, and how many clipped rows were pulled further in.

Usage::

    python benchmarks/out_of_range.py CATALOG.fits [--model hub:synthetic_bdk] [--seed 1]

e.g. with GalSim's ``real_galaxy_catalog_23.5_example_fits.fits`` (columns ``mag_auto``,
``flux_radius``, ``zphot``).
"""

from __future__ import annotations

import argparse
import warnings

import galsim
import numpy as np
from astropy.table import Table

from galsim_hub import GenerativeGalaxyModel
from galsim_hub.sampling.catalog import condition_matrix, outside_range
from galsim_hub.sampling.fluxes import band_magnitudes, magnitude_to_flux
from galsim_hub.sampling.noise import draw_base_noise
from galsim_hub.sampling.plan import SamplingPlan, border_fractions, plausible


def _row(label: str, images: np.ndarray, catalog_flux: np.ndarray) -> str:
    ratio = images.sum(axis=(1, 2), dtype=np.float64) / catalog_flux
    border = border_fractions(images)
    return (
        f"{label:26s} {len(images):5d}  {ratio.min():9.3g} {np.median(ratio):9.3g} {ratio.max():9.3g}"
        f"  {np.median(border):7.3f} {border.max():7.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalog")
    parser.add_argument("--model", default="hub:synthetic_bdk")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    model = GenerativeGalaxyModel(args.model)
    metadata = model.metadata
    magnitudes = band_magnitudes(metadata)
    if magnitudes is None or metadata.get("bands"):
        raise SystemExit(f"{args.model} is not a single-band model with a magnitude condition and a zero point")
    index, zero_point = next(iter(magnitudes[0].terms)), magnitudes[0].zero_point
    table = Table.read(args.catalog)
    conditions = condition_matrix(table, metadata["conditions"])
    outside = outside_range(conditions, metadata["conditions"]).any(axis=1)
    beyond, within = table[outside], table[~outside]
    print(
        f"model {args.model}; catalog {args.catalog}: {outside.sum()} of {len(table)} rows outside the "
        f"training range; seed {args.seed}"
    )
    print(f"{'policy / rows':26s} {'N':>5s}  {'flux/cat':>9s} {'median':>9s} {'max':>9s}  {'border':>7s} {'max':>7s}")
    flux = magnitude_to_flux(np.asarray(beyond[metadata["conditions"][index]["name"]]), zero_point)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for policy in ("extrapolate", "clip"):
            images = model.sample(beyond, seed=args.seed, return_arrays=True, out_of_range=policy)
            print(_row(f"{policy} (outside)", images, flux))
        plan = SamplingPlan(condition_matrix(beyond, metadata["conditions"]), metadata, "clip")
        clipped_at_edge = model.sample_arrays(plan.inputs, _noise(model, len(beyond), args.seed))
        if len(within):
            images = model.sample(within, seed=args.seed, return_arrays=True)
            within_flux = magnitude_to_flux(np.asarray(within[metadata["conditions"][index]["name"]]), zero_point)
            print(_row("inside the range", images, within_flux))
    edge_flux = magnitude_to_flux(plan.inputs[:, index], zero_point)
    print(_row("clipped, before pull-in", clipped_at_edge, edge_flux) + "   (flux vs the clipped magnitude)")
    pulled = int((~plausible(clipped_at_edge, edge_flux)).sum())
    print(f"clipped rows pulled further in: {pulled} of {len(beyond)}")


def _noise(model: GenerativeGalaxyModel, n: int, seed: int) -> np.ndarray:
    return draw_base_noise(n, model.latent_dim, galsim.BaseDeviate(seed))


if __name__ == "__main__":
    main()
