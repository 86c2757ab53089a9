"""Where a model's roundness, size and flux biases enter: the VAE or the flow.

For held-out real galaxies, four samples are drawn with each galaxy's own PSF and noise and
measured alike (HSM ``|g|``, size ``sigma``; flux against the catalog magnitude):

``real``
    the observed stamps;
``reconstruction``
    the VAE's reconstructions: each stamp encoded (posterior mean) and decoded, so only the
    autoencoder stands between it and the real stamp;
``flow``
    the flow's samples at the galaxies' own conditions, decoded (what ``sample`` returns
    before any flux rescaling);
``flow_mode``
    the decode of the flow's central latent (base noise zero) at the same conditions: the
    "typical" galaxy the flow puts at those conditions.

If ``reconstruction`` is already round or biased, the VAE is the limit (capacity, free bits,
steps, TV weight); if only ``flow`` is, the flow is (size, conditioning, temperature).
Fluxes: the noise-free profile's total flux of the model samples, the stamp sum of the real
galaxies, each as a magnitude offset from the catalog's (``mag_auto`` with the model's zero
point), median per magnitude bin.

Command line::

    python -m galsim_hub.training diagnose MODEL --data HELDOUT_DIR --out DIR [--seed S]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import galsim
import numpy as np
from astropy.table import Table

from galsim_hub.errors import GalSimHubError

__all__ = ["DIAGNOSIS_SAMPLES", "diagnose", "flux_offsets_by_magnitude", "pedestal_levels"]

DIAGNOSIS_SAMPLES = ("real", "reconstruction", "flow", "flow_mode")
MAGNITUDE_EDGES = (16.0, 20.0, 22.0, 23.5, 24.5, 27.0)
MIN_ANNULUS_PIXELS = 64


def _bootstrap_mean(values: np.ndarray, rng: np.random.Generator, n_bootstrap: int) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan
    draws = rng.integers(0, len(values), size=(n_bootstrap, len(values)))
    return float(values.mean()), float(values[draws].mean(axis=1).std())


def flux_offsets_by_magnitude(
    magnitudes: np.ndarray, offsets: np.ndarray, edges: Sequence[float] = MAGNITUDE_EDGES
) -> list[dict[str, Any]]:
    """Median magnitude offset (sample - catalog) in bins of catalog magnitude.

    Parameters
    ----------
    magnitudes : numpy.ndarray
        Catalog magnitudes ``[N]``.
    offsets : numpy.ndarray
        ``-2.5 log10(flux / catalog flux)`` per galaxy ``[N]`` (NaN where unmeasurable).
    edges : sequence of float
        Bin edges in magnitude.

    Returns
    -------
    list of dict
        One per non-empty bin: ``lo``, ``hi``, ``n``, ``median`` (mag).
    """
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        members = (magnitudes >= lo) & (magnitudes < hi) & np.isfinite(offsets)
        if members.any():
            rows.append(
                {
                    "lo": float(lo),
                    "hi": float(hi),
                    "n": int(members.sum()),
                    "median": float(np.median(offsets[members])),
                }
            )
    return rows


def pedestal_levels(
    profiles: np.ndarray,
    pixel_scale: float,
    psf: galsim.GSObject,
    draw_scale: float,
    noise_sigma: float,
    radius_factor: float = 4.0,
) -> Table:
    """The light a mock keeps far from its centre: a postage-stamp pedestal shows here.

    Each profile is convolved with ``psf`` and drawn noise-free at ``draw_scale`` on the model's
    field of view; its half-light radius ``r_half`` is measured from the drawn image (around
    its centroid), and the mean pixel value in the annulus outside ``radius_factor * r_half``
    (out to the stamp's edge) is compared with the noise: in units of the noise rms per pixel
    and of the standard error of a mean over the annulus (``noise_sigma / sqrt(n_pixels)``).
    A model without pedestals has both well below 1. Where fewer than
    :data:`MIN_ANNULUS_PIXELS` pixels lie outside ``radius_factor * r_half`` (a large galaxy), the
    stamp's outer frame (its last ``size // 16`` pixels) is used instead (``region`` says which).

    Parameters
    ----------
    profiles : numpy.ndarray
        ``[N, S, S]`` noise-free profiles (what ``sample(..., return_arrays=True)`` returns).
    pixel_scale : float
        Their pixel scale (arcsec).
    psf : galsim.GSObject
        The PSF of the field.
    draw_scale : float
        Pixel scale of the field (arcsec).
    noise_sigma : float
        Noise rms per pixel of the field.
    radius_factor : float, optional
        The annulus starts at this many half-light radii.

    Returns
    -------
    astropy.table.Table
        ``r_half`` (arcsec), ``region``, ``n_annulus``, ``level`` (mean annulus pixel value),
        ``level_sigma`` (level / noise_sigma), ``level_error`` (level / (noise_sigma / sqrt(n))).
    """
    size = int(round(profiles.shape[1] * pixel_scale / draw_scale))
    rows = []
    for profile in profiles:
        galaxy = galsim.InterpolatedImage(galsim.Image(np.asarray(profile, dtype=np.float64), scale=pixel_scale))
        image = galsim.Convolve(galaxy, psf).drawImage(nx=size, ny=size, scale=draw_scale).array
        y, x = np.mgrid[:size, :size]
        total = image.sum()
        cx, cy = (image * x).sum() / total, (image * y).sum() / total
        r = np.hypot(x - cx, y - cy)
        order = np.argsort(r.ravel())
        cumulative = np.cumsum(image.ravel()[order])
        r_half = float(r.ravel()[order][np.searchsorted(cumulative, 0.5 * total)])
        annulus = r > radius_factor * max(r_half, 1.0)
        region = "annulus"
        if annulus.sum() < MIN_ANNULUS_PIXELS:  # a large galaxy: the stamp's outer frame instead
            edge = max(2, size // 16)
            annulus = np.zeros_like(annulus)
            annulus[:edge], annulus[-edge:], annulus[:, :edge], annulus[:, -edge:] = True, True, True, True
            region = "edge"
        n = int(annulus.sum())
        level = float(image[annulus].mean())
        rows.append((r_half * draw_scale, region, n, level, level / noise_sigma, level / (noise_sigma / math.sqrt(n))))
    return Table(rows=rows, names=("r_half", "region", "n_annulus", "level", "level_sigma", "level_error"))


def diagnose(model: Any, data_dir: str | Path, *, seed: int = 0, n_bootstrap: int = 500) -> dict[str, Any]:
    """Measure the four samples of the module docstring on a held-out real-galaxy data set.

    Parameters
    ----------
    model : str or `galsim_hub.GenerativeGalaxyModel`
        A single-band model exported with an encoder (``encode`` signature).
    data_dir : str or path
        A COSMOS data set (``image``, ``psf``, ``noise_ps``, ``noise_var``, ``conditions``) at
        the model's stamp size and pixel scale.
    seed : int, optional
        Seeds the flow's base noise, the observation noise and the bootstrap.
    n_bootstrap : int, optional
        Bootstrap resamples of the galaxies for the errors of the means.

    Returns
    -------
    dict
        ``table`` (`astropy.table.Table`: one row per sample with ``mean_g``, ``mean_g_err``,
        ``mean_sigma``, ``mean_sigma_err``, ``median_dmag``, ``median_dmag_err``),
        ``flux_bins`` (per sample, :func:`flux_offsets_by_magnitude`) and ``metadata``.
    """
    import galsim_hub
    from galsim_hub.sampling.noise import draw_base_noise
    from galsim_hub.training.datasets.data import load_arrays, read_dataset_metadata
    from galsim_hub.training.validation.statistics import draw_observed, measure_statistics

    data_dir = Path(data_dir)
    metadata = read_dataset_metadata(data_dir)
    if not isinstance(model, galsim_hub.GenerativeGalaxyModel):
        model = galsim_hub.GenerativeGalaxyModel(str(model))
    if model.bands:
        raise GalSimHubError("diagnose is for single-band models")
    scale, size = float(metadata["pixel_scale"]), int(metadata["stamp_size"])
    if (size, scale) != (model.stamp_size, model.pixel_scale):
        raise GalSimHubError(
            f'data set {data_dir} has {size}-pixel stamps at {scale}", the model '
            f'{model.stamp_size} at {model.pixel_scale}": diagnose needs the same geometry'
        )
    arrays = load_arrays(data_dir, ["image", "psf", "noise_ps", "noise_var", "conditions"])
    names = [c["name"] for c in metadata["conditions"]]
    catalog = Table(arrays["conditions"].astype(np.float64), names=names)
    conditions = model.conditions(catalog)
    zero_point = model.metadata.get("zero_point")
    if "mag_auto" not in names or zero_point is None:
        raise GalSimHubError("diagnose compares fluxes with the catalog's mag_auto and needs the model's zero_point")
    magnitudes = np.asarray(catalog["mag_auto"], dtype=np.float64)
    catalog_flux = 10 ** (-0.4 * (magnitudes - float(zero_point)))
    n = len(catalog)

    noise = draw_base_noise(n, model.latent_dim, galsim.BaseDeviate(int(seed) + 1))
    profiles = {
        "reconstruction": model.reconstruct(arrays["image"], arrays["psf"]),
        "flow": model.sample_arrays(conditions, noise),
        "flow_mode": model.sample_arrays(conditions, np.zeros_like(noise)),
    }
    psfs = [
        galsim.InterpolatedImage(galsim.Image(np.asarray(p, dtype=np.float64), scale=scale), use_true_center=False)
        for p in arrays["psf"]
    ]
    rng = np.random.default_rng(seed)
    observed = {"real": arrays["image"].astype(np.float64)}
    for name, images in profiles.items():
        observed[name] = draw_observed(
            images, scale, psfs, scale, size, None, rng, method="no_pixel", noise_power=arrays["noise_ps"]
        )
    fluxes = {
        "real": arrays["image"].sum(axis=(1, 2), dtype=np.float64),
        **{name: images.sum(axis=(1, 2), dtype=np.float64) for name, images in profiles.items()},
    }
    sigma_noise = np.sqrt(arrays["noise_var"])
    rows, flux_bins = [], {}
    for name in DIAGNOSIS_SAMPLES:
        stats = measure_statistics(observed[name], scale, noise_sigma=sigma_noise, n_morph=0)
        ok = np.asarray(stats["hsm_ok"], dtype=bool)
        g = np.where(ok, np.asarray(stats["g"]), np.nan)
        sigma = np.where(ok, np.asarray(stats["sigma"]), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            dmag = np.where(fluxes[name] > 0, -2.5 * np.log10(fluxes[name] / catalog_flux), np.nan)
        finite = dmag[np.isfinite(dmag)]
        draws = rng.integers(0, len(finite), size=(n_bootstrap, len(finite)))
        mean_g, mean_g_err = _bootstrap_mean(g, rng, n_bootstrap)
        mean_sigma, mean_sigma_err = _bootstrap_mean(sigma, rng, n_bootstrap)
        rows.append(
            (
                name,
                int(ok.sum()),
                mean_g,
                mean_g_err,
                mean_sigma,
                mean_sigma_err,
                float(np.median(finite)),
                float(np.median(finite[draws], axis=1).std()),
            )
        )
        flux_bins[name] = flux_offsets_by_magnitude(magnitudes, dmag)
    table = Table(
        rows=rows,
        names=("sample", "n", "mean_g", "mean_g_err", "mean_sigma", "mean_sigma_err", "median_dmag", "median_dmag_err"),
    )
    return {
        "table": table,
        "flux_bins": flux_bins,
        "metadata": {
            "model": str(model.metadata.get("name")) + " " + str(model.metadata.get("version")),
            "data": str(data_dir),
            "n_galaxies": n,
            "seed": int(seed),
            "n_bootstrap": int(n_bootstrap),
        },
    }


def diagnosis_markdown(result: dict[str, Any]) -> str:
    """The diagnosis as markdown: the four-sample table and the per-magnitude-bin fluxes."""
    table = result["table"]
    real = table[table["sample"] == "real"][0]
    lines = [
        '| sample | n | mean \\|g\\| | vs real | mean size σ (") | vs real | median mag − catalog |',
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table:
        lines.append(
            f"| {row['sample']} | {row['n']} | {row['mean_g']:.3f} ± {row['mean_g_err']:.3f} | "
            f"{row['mean_g'] / real['mean_g'] - 1:+.0%} | {row['mean_sigma']:.4f} ± "
            f"{row['mean_sigma_err']:.4f} | {row['mean_sigma'] / real['mean_sigma'] - 1:+.0%} | "
            f"{row['median_dmag']:+.2f} ± {row['median_dmag_err']:.2f} |"
        )
    bins = result["flux_bins"]["real"]
    header = " | ".join(f"{b['lo']:g}–{b['hi']:g}" for b in bins)
    lines += [
        "",
        "Median magnitude − catalog `mag_auto` per catalog-magnitude bin:",
        "",
        f"| sample | {header} |",
        "| --- |" + " --- |" * len(bins),
    ]
    for name, sample_bins in result["flux_bins"].items():
        by_lo = {b["lo"]: b for b in sample_bins}
        cells = [
            f"{by_lo[b['lo']]['median']:+.2f} (n={by_lo[b['lo']]['n']})" if b["lo"] in by_lo else "–" for b in bins
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
