"""The pictures of the README and the docs' quick start: sampled galaxies beside real ones, and a field.

1. ``docs/images/real_vs_mock.png``: held-out real HST/COSMOS galaxies as observed (top row), and
   galaxies sampled from ``hub:cosmos_real`` and ``hub:synthetic_bdk`` conditioned on the same
   catalog values (``mag_auto``, ``flux_radius``, ``zphot``), each drawn with that real galaxy's own
   PSF and noise (the validation set of ``training/configs/cosmos_real_heldout.yaml``);
2. ``docs/images/field.png``: a 512x512 field at 0.07"/px of galaxies sampled from
   ``hub:cosmos_real`` for 60 rows of ``examples/cosmos_catalog.fits`` (real COSMOS galaxies' catalog
   values), through an HST-like PSF,
   with noise.

Usage (from the repository root; step 1 needs the held-out data set)::

    python -m galsim_hub.training dataset --config training/configs/cosmos_real_heldout.yaml \\
        --work-dir runs/cosmos_real_heldout
    python examples/make_readme_figures.py --heldout runs/cosmos_real_heldout/dataset
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import galsim
import numpy as np
from astropy.table import Table

REPOSITORY = Path(__file__).resolve().parents[1]
N_SHOWN = 8
BRIGHT_MAG = 21.0  # the field's "bright" mocks of the pedestal check


def _stretch(stamp: np.ndarray, noise: float) -> np.ndarray:
    return np.arcsinh(stamp / (3 * noise))


def real_vs_mock(heldout: Path, out: Path, models: list[str], seed: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import galsim_hub
    from galsim_hub.training.datasets.data import load_arrays, read_dataset_metadata
    from galsim_hub.training.validation.statistics import draw_observed

    meta = read_dataset_metadata(heldout)
    arrays = load_arrays(heldout, ["image", "psf", "noise_ps", "noise_var", "conditions", "ident"])
    names = [c["name"] for c in meta["conditions"]]
    scale, stamp = float(meta["pixel_scale"]), int(meta["stamp_size"])
    # The brightest held-out galaxies show their morphology best.
    rows = np.sort(np.argsort(arrays["conditions"][:, names.index("mag_auto")])[:N_SHOWN])
    cat = Table(arrays["conditions"][rows], names=names)
    psfs = [
        galsim.InterpolatedImage(galsim.Image(p.astype(np.float64), scale=scale), use_true_center=False)
        for p in arrays["psf"][rows]
    ]
    panels = [("real (observed)", arrays["image"][rows])]
    rng = np.random.default_rng(seed)
    for handle in models:
        model = galsim_hub.GenerativeGalaxyModel(handle)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            profiles = model.sample(cat[list(model.quantities)], seed=seed, return_arrays=True)
        panels.append(
            (
                handle,
                draw_observed(
                    profiles,
                    model.pixel_scale,
                    psfs,
                    scale,
                    stamp,
                    None,
                    rng,
                    method="no_pixel",
                    noise_power=arrays["noise_ps"][rows],
                ),
            )
        )
    noise = np.sqrt(arrays["noise_var"][rows])
    fig, axes = plt.subplots(len(panels), N_SHOWN, figsize=(1.5 * N_SHOWN, 1.6 * len(panels)), squeeze=False)
    for row, (label, images) in enumerate(panels):
        for column in range(N_SHOWN):
            ax = axes[row, column]
            ax.imshow(_stretch(images[column], noise[column]), origin="lower", cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"m={cat['mag_auto'][column]:.1f}", fontsize=8)
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(
        "Held-out real COSMOS galaxies and mocks with the same mag_auto, flux_radius, zphot, PSF and noise", fontsize=9
    )
    fig.tight_layout()
    path = out / "real_vs_mock.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def field(out: Path, handle: str, seed: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import galsim_hub

    model = galsim_hub.GenerativeGalaxyModel(handle)
    size, scale = 512, 0.07
    rng = np.random.default_rng(seed)
    # Real combinations of magnitude, size and redshift: the COSMOS galaxies' own catalog values.
    catalog = Table.read(REPOSITORY / "examples" / "cosmos_catalog.fits")
    n = 60
    catalog = catalog[rng.choice(len(catalog), n, replace=False)]
    galaxies = model.sample(catalog, seed=seed)
    psf = galsim.Airy(lam=814.0, diam=2.4, obscuration=0.33, scale_unit=galsim.arcsec)
    sigma = 0.0026 * scale / 0.03
    image = galsim.ImageF(size, size, scale=scale)
    for galaxy, x, y, angle in zip(
        galaxies, rng.uniform(20, size - 20, n), rng.uniform(20, size - 20, n), rng.uniform(0, 360, n)
    ):
        stamp = galsim.Convolve(galaxy.rotate(angle * galsim.degrees), psf).drawImage(
            nx=64, ny=64, scale=scale, center=galsim.PositionD(x, y)
        )
        bounds = stamp.bounds & image.bounds
        image[bounds] += stamp[bounds]
    image.addNoise(galsim.GaussianNoise(galsim.BaseDeviate(seed), sigma=sigma))
    report_pedestals(model, catalog, seed, psf, scale, sigma)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(_stretch(image.array, sigma), origin="lower", cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f'{handle}: {n} sampled galaxies, 0.07"/px, HST-like PSF and noise', fontsize=9)
    fig.tight_layout()
    path = out / "field.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report_pedestals(model, catalog: Table, seed: int, psf: galsim.GSObject, scale: float, sigma: float) -> None:
    """Print the light of the field's bright mocks outside 4 half-light radii against the noise.

    The check of the README's picture: a postage-stamp pedestal shows as a mean level there
    well above the noise's standard error (see `galsim_hub.training.validation.diagnosis.pedestal_levels`).
    """
    from galsim_hub.training.validation.diagnosis import pedestal_levels

    bright = np.asarray(catalog["mag_auto"]) < BRIGHT_MAG
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profiles = model.sample(catalog, seed=seed, return_arrays=True)[bright]
    levels = pedestal_levels(profiles, model.pixel_scale, psf, scale, sigma)
    print(
        f"pedestal check, {int(bright.sum())} mocks with mag_auto < {BRIGHT_MAG}: mean level outside "
        "4 r_half in noise sigma per pixel / in standard errors of the annulus mean"
    )
    for mag, row in zip(np.asarray(catalog["mag_auto"])[bright], levels):
        print(
            f'  mag_auto {mag:5.2f}  r_half {row["r_half"]:.2f}"  {row["region"]:7s} n {row["n_annulus"]:5d}  '
            f"{row['level_sigma']:+.4f} sigma  {row['level_error']:+.2f} standard errors"
        )
    within = np.abs(levels["level_error"]) < 1
    print(
        f"  within 1 standard error: {int(within.sum())} of {len(levels)}; largest |level| "
        f"{np.abs(levels['level_sigma']).max():.4f} sigma per pixel"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Make the README's pictures.")
    parser.add_argument("--heldout", type=Path, default=REPOSITORY / "runs" / "cosmos_real_heldout" / "dataset")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "images")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(real_vs_mock(args.heldout, args.out, ["hub:cosmos_real", "hub:synthetic_bdk"], args.seed))
    print(field(args.out, "hub:cosmos_real", args.seed))


if __name__ == "__main__":
    main()
