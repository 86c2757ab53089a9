"""Cost per galaxy per band of the bundled multi-band model, next to a single-band model, in one run.

Two bundled models with the same 64x64 stamps and the same network size:
``hub:synthetic_chromatic`` (three bands F435W, F606W, F814W, 0.05"/px) and ``hub:synthetic_bdk``
(one band, 0.03"/px), both conditioned on the rows of ``examples/chromatic_catalog.fits`` (the
single-band model on its F814W magnitude, size and redshift). Each row samples the catalog (flow +
decoder, on this CPU) and draws every galaxy in three bands with an HST-like Airy PSF per band:

``single-band model + catalog fluxes``
    ``synthetic_bdk`` stamps as ``InterpolatedImage``, drawn in each band with that band's flux.
``multi-band, per-band images``
    ``MultiBandGalaxy.images[band]`` drawn in its own band.
``multi-band, chromatic``
    ``MultiBandGalaxy.chromatic`` convolved with the band's PSF, drawn through the band's bandpass.
``multi-band, through(bandpass)``
    ``MultiBandGalaxy.through(bandpass)``: what the GalSim config draws when the PSF is achromatic.

Columns: sampling (ms per galaxy), drawing (ms per galaxy per band), total per galaxy per band,
and the ratio to the single-band row. Best of ``--repeat`` rounds, rows interleaved.

Usage::

    python benchmarks/multiband_model.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import galsim
import numpy as np
from astropy.table import Table

import galsim_hub

CATALOG = Path(__file__).resolve().parents[1] / "examples" / "chromatic_catalog.fits"
LAMBDAS = {"f435w": 433.7, "f606w": 595.8, "f814w": 808.7}
SCALE = 0.05


def psf(band: str) -> galsim.GSObject:
    return galsim.Convolve(
        galsim.Airy(lam=LAMBDAS[band], diam=2.4, obscuration=0.33, scale_unit=galsim.arcsec),
        galsim.Gaussian(sigma=0.02),
    )


def rows(multi, single, catalog: Table) -> dict:
    """``{row: (sample(), draw(samples))}`` for each way of making three-band galaxies."""
    bands = list(multi.bands)
    psfs = {band: psf(band) for band in bands}
    bandpasses = multi.band_set.bandpasses
    single_cat = Table(
        {
            "mag_auto": catalog["mag_f814w"],
            "flux_radius": catalog["flux_radius"] * SCALE / 0.03,
            "zphot": catalog["zphot"],
        }
    )
    band_mags = {"f814w": catalog["mag_f814w"]}
    band_mags["f606w"] = band_mags["f814w"] + catalog["color_f606w_f814w"]
    band_mags["f435w"] = band_mags["f606w"] + catalog["color_f435w_f606w"]
    fluxes = {b: 10 ** (-0.4 * (np.asarray(band_mags[b]) - multi.band_set.zero_points[b])) for b in bands}
    conditions = catalog[list(multi.quantities)]

    def draw_single(galaxies):
        for i, galaxy in enumerate(galaxies):
            for band in bands:
                galsim.Convolve(galaxy.withFlux(float(fluxes[band][i])), psfs[band]).drawImage(
                    nx=64, ny=64, scale=SCALE
                )

    def draw_images(galaxies):
        for galaxy in galaxies:
            for band in bands:
                galsim.Convolve(galaxy.images[band], psfs[band]).drawImage(nx=64, ny=64, scale=SCALE)

    def draw_chromatic(galaxies):
        for galaxy in galaxies:
            for band in bands:
                galsim.Convolve(galaxy.chromatic, psfs[band]).drawImage(bandpasses[band], nx=64, ny=64, scale=SCALE)

    def draw_through(galaxies):
        for galaxy in galaxies:
            for band in bands:
                galsim.Convolve(galaxy.through(bandpasses[band]), psfs[band]).drawImage(nx=64, ny=64, scale=SCALE)

    def sample_single():
        return single.sample(single_cat, seed=1)

    def sample_multi():
        return multi.sample(conditions, seed=1)

    return {
        "single-band model + catalog fluxes": (sample_single, draw_single),
        "multi-band, per-band images": (sample_multi, draw_images),
        "multi-band, chromatic": (sample_multi, draw_chromatic),
        "multi-band, through(bandpass)": (sample_multi, draw_through),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # rows outside a model's range are clipped, as users get them
    catalog = Table.read(CATALOG)
    multi = galsim_hub.GenerativeGalaxyModel("hub:synthetic_chromatic")
    single = galsim_hub.GenerativeGalaxyModel("hub:synthetic_bdk")
    functions = rows(multi, single, catalog)
    n, n_bands = len(catalog), len(multi.bands)
    best = {name: [np.inf, np.inf] for name in functions}
    for sample, draw in functions.values():
        draw(sample())  # warm-up: TensorFlow traces, GalSim caches
    for _ in range(args.repeat):
        for name, (sample, draw) in functions.items():
            start = time.perf_counter()
            galaxies = sample()
            sampled = time.perf_counter()
            draw(galaxies)
            drawn = time.perf_counter()
            best[name][0] = min(best[name][0], (sampled - start) / n)
            best[name][1] = min(best[name][1], (drawn - sampled) / (n * n_bands))
    print(
        f"galsim-hub {galsim_hub.__version__}, GalSim {galsim.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {n} galaxies, 3 bands, 64x64 stamps, best of {args.repeat}\n"
    )
    print(
        "| galaxies | sampling, ms per galaxy | drawing, ms per galaxy per band | total, ms per galaxy per band | ratio |"
    )
    print("| --- | --- | --- | --- | --- |")
    reference = best["single-band model + catalog fluxes"]
    reference_total = reference[0] / n_bands + reference[1]
    for name, (sample_time, draw_time) in best.items():
        total = sample_time / n_bands + draw_time
        print(
            f"| {name} | {1e3 * sample_time:.2f} | {1e3 * draw_time:.2f} | {1e3 * total:.2f} | "
            f"{total / reference_total:.2f} |"
        )


if __name__ == "__main__":
    main()
