"""Validation of generative galaxy models against real galaxies.

Following Lanusse et al. (2021, MNRAS 504, 5543, sec. 5), three samples of the same
galaxies are drawn with the same PSF and the same noise (the data set's noise power
spectrum when it has one):

- ``real``: the held-out galaxies: real ones as observed (COSMOS data sets), or the
  noiseless profiles of a synthetic data set (``truth``);
- ``parametric``: their COSMOS parametric fits, or their smooth synthetic counterparts without
  knots (``truth_smooth``);
- ``mock``: the generative model conditioned on the real galaxies' catalog columns.

Each sample is measured with HSM adaptive moments (flux, size ``sigma``, ellipticity
``g``) and with statmorph (Gini, M20 and the MID statistics: multimode ``M``, intensity
``I``, deviation ``D``). The mock and parametric distributions are compared with the real
one (mean difference, Wasserstein distance, Kolmogorov-Smirnov statistic), the per-galaxy
size and magnitude residuals of mock versus real are binned in the conditions, figures are
drawn and a markdown report lists the targets with PASS/FAIL. Bootstrap resamples of the
galaxies give the uncertainties; with the model's training set, a memorisation check tells
whether mocks copy training galaxies (:mod:`.memorisation`). Multi-band data sets go to
:mod:`.multiband_validation` (per-band sizes and shapes, colours, colour gradients, size ratios).

Command line::

    python -m galsim_hub.training validate MODEL --data DIR --out DIR [--n N] [--seed S] [--jobs J]
        [--train-data TRAIN_DIR] [--bootstrap B]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import galsim
import numpy as np
from astropy.table import Table

from galsim_hub.errors import MetadataError
from galsim_hub.training.validation.common import (
    check_model_conditions,
    condition_names,
    held_out_rows,
    sample_mocks,
)
from galsim_hub.training.validation.report import (
    TARGETS,
    evaluate_targets,
    make_figures,
    targets_markdown,
    write_report,
)
from galsim_hub.training.validation.statistics import (
    HSM_COLUMNS,
    MORPH_COLUMNS,
    RESIDUAL_CONDITIONS,
    STAT_COLUMNS,
    central_segmap,
    compare_samples,
    conditional_residuals,
    draw_observed,
    measure_statistics,
    reconstruction_check,
)

__all__ = [
    "HSM_COLUMNS",
    "MORPH_COLUMNS",
    "STAT_COLUMNS",
    "SAMPLES",
    "TARGETS",
    "central_segmap",
    "measure_statistics",
    "draw_observed",
    "compare_samples",
    "conditional_residuals",
    "reconstruction_check",
    "evaluate_targets",
    "targets_markdown",
    "make_figures",
    "write_report",
    "run_validation",
]

SAMPLES = ("real", "parametric", "mock")
GALLERY_SIZE = 8  # stamps per sample in gallery.png


# ----------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------
def _observed_psfs(arrays: Mapping[str, np.ndarray], indices: np.ndarray, pixel_scale: float):
    # The data set's PSF images are sampled without a pixel, centred on pixel (S//2, S//2), and
    # its truth images already hold the pixel: draw without a further pixel.
    return [
        galsim.InterpolatedImage(
            galsim.Image(np.asarray(p, dtype=np.float64), scale=pixel_scale), use_true_center=False
        )
        for p in arrays["psf"][indices]
    ]


def check_same_geometry(
    stamp_size: int, pixel_scale: float, data_stamp_size: int, data_pixel_scale: float, what: str, data_dir: Path
) -> None:
    """Refuse stamps of another geometry than the data set's before any statistic is computed.

    Raises
    ------
    MetadataError
        When the stamp size or the pixel scale differ.
    """
    if stamp_size != data_stamp_size or not np.isclose(pixel_scale, data_pixel_scale, rtol=1e-6):
        raise MetadataError(
            f'{what} has {stamp_size}-pixel stamps at {pixel_scale:g}"/px but the data set {data_dir} '
            f'{data_stamp_size}-pixel stamps at {data_pixel_scale:g}"/px: the comparison needs the same geometry'
        )


def _load_validation_arrays(data_dir: Path, real_galaxies: bool, noise_sigma: float | None) -> dict:
    from galsim_hub.training.datasets.data import load_arrays

    keys = ["conditions", "image", "psf"] + (
        ["parametric", "has_parametric"] if real_galaxies else ["truth", "truth_smooth"]
    )
    keys += ["noise_var"] if noise_sigma is None or real_galaxies else []
    try:  # the data set's (possibly correlated) noise power spectrum, when it has one
        return load_arrays(data_dir, keys=keys + (["noise_ps"] if noise_sigma is None else []))
    except MetadataError:
        if real_galaxies:
            raise
        return load_arrays(data_dir, keys=keys)


def run_validation(
    model: Any,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    n: int | None = None,
    seed: int = 0,
    psf: galsim.GSObject | None = None,
    noise_sigma: float | None = None,
    n_jobs: int = 1,
    n_morph: int | None = None,
    reconstructions: Any = None,
    train_data: str | Path | None = None,
    n_bootstrap: int = 500,
    out_of_range: str = "clip",
) -> dict[str, Any]:
    """Validate a generative model against a held-out data set and write the results.

    Multi-band data sets (with ``bands`` in their ``dataset.json``) are validated by
    :func:`galsim_hub.training.validation.multiband.run_multiband_validation` (``psf``,
    ``noise_sigma``, ``reconstructions`` and ``train_data`` do not apply; ``n_morph`` None skips
    statmorph). Two kinds of single-band data set are understood:

    - synthetic ones (with ``truth`` and ``truth_smooth``): ``real`` is the noiseless truth and
      ``parametric`` its knot-free counterpart, both drawn with the PSF and noise below;
    - real galaxies (COSMOS data sets, without ``truth``): ``real`` is each galaxy's stamp as
      observed, ``parametric`` its COSMOS parametric fit (``parametric``, where
      ``has_parametric``) drawn with that galaxy's PSF and noise. The mock-vs-parametric test
      of the paper then compares both samples on the galaxies that have fits.

    Parameters
    ----------
    model : str or `galsim_hub.GenerativeGalaxyModel`
        A model handle or a loaded model (anything with ``quantities``, ``pixel_scale``,
        ``stamp_size`` and ``sample(cat, seed=..., return_arrays=True)``).
    data_dir : str or path
        A data set written by :mod:`galsim_hub.training.datasets.data`.
    out_dir : str or path
        Where the figures, ``validation.md`` and ``validation.json`` go.
    n : int, optional
        Number of galaxies, drawn at random without replacement; all by default.
    seed : int, optional
        Seed of the selection, of the noise, of the bootstrap and of the model's sampling.
    psf : `galsim.GSObject`, optional
        PSF of the drawn samples (synthetic data sets only). By default each galaxy's own PSF
        image from the data set, taken as an effective PSF (drawn with ``method='no_pixel'``).
    noise_sigma : float, optional
        White pixel noise rms of the drawn samples (synthetic data sets only). By default each
        galaxy's noise of the data set: its power spectrum ``noise_ps`` when the data set has
        one (correlated noise as in COSMOS), else white noise of variance ``noise_var``.
    n_jobs : int, optional
        Processes for statmorph.
    n_morph : int, optional
        Measure morphology on this many galaxies only (HSM runs on all).
    reconstructions : array-like, optional
        VAE reconstructions ``[n_dataset, S, S]`` (synthetic data sets), compared with the data
        set's noisy PSF-convolved ``image`` against the noiseless unconvolved ``truth``
        (:func:`reconstruction_check`). By default computed with ``model.reconstruct`` when the
        model has an encoder.
    train_data : str or path, optional
        The model's training data set: adds the memorisation check
        (:func:`galsim_hub.training.validation.memorisation.memorisation_check`).
    n_bootstrap : int, optional
        Bootstrap resamples for the uncertainties of the comparisons.
    out_of_range : {"clip", "error", "extrapolate"}, optional
        The model's policy for held-out galaxies outside its training range (see
        :mod:`galsim_hub.sampling.plan`); ``clip``, what users get by default.

    Returns
    -------
    results : dict
        ``metadata``, ``indices`` (data set rows used), ``conditions`` (table), ``stats``
        (``{'real', 'parametric', 'mock'}`` tables), ``comparisons`` (``{'parametric',
        'mock'}`` tables, and ``'mock_fitted'`` for real galaxies), ``residuals``,
        ``targets``, ``reconstruction`` and ``memorisation`` (or None), ``figures`` and
        ``report`` (paths).
    """
    from galsim_hub.training.datasets.data import load_arrays, read_dataset_metadata
    from galsim_hub.training.validation.memorisation import memorisation_check

    data_dir = Path(data_dir)
    metadata = read_dataset_metadata(data_dir)
    if metadata.get("bands"):  # a multi-band data set: colours, gradients, per-band sizes
        from galsim_hub.training.validation.multiband import run_multiband_validation

        given = [
            name
            for name, value in (
                ("psf", psf),
                ("noise_sigma", noise_sigma),
                ("reconstructions", reconstructions),
                ("train_data", train_data),
            )
            if value is not None
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)} do not apply to multi-band data sets ({data_dir} has bands): "
                "each band is drawn with its own data set PSF and noise"
            )
        return run_multiband_validation(
            model,
            data_dir,
            out_dir,
            n=n,
            seed=seed,
            n_jobs=n_jobs,
            n_morph=n_morph,
            n_bootstrap=n_bootstrap,
            out_of_range=out_of_range,
        )
    names = condition_names(metadata)
    pixel_scale = float(metadata["pixel_scale"])
    stamp_size = int(metadata["stamp_size"])
    real_galaxies = metadata["source"] != "synthetic"
    if real_galaxies and (psf is not None or noise_sigma is not None):
        raise ValueError(
            "psf and noise_sigma apply to synthetic data sets only: real galaxies are "
            "compared as observed, with their own PSF and noise"
        )
    arrays = _load_validation_arrays(data_dir, real_galaxies, noise_sigma)
    total = len(arrays["image"])
    if arrays["conditions"].shape != (total, len(names)):
        raise MetadataError(
            f"conditions of {data_dir} have shape {arrays['conditions'].shape}, "
            f"expected ({total}, {len(names)}) for {names}"
        )

    rng, indices, conditions, model, handle = held_out_rows(arrays["conditions"], names, n, seed, model)
    if getattr(model, "bands", None):
        raise MetadataError(
            f"{handle} is a multi-band model (bands {list(model.bands)}) but data set {data_dir} "
            "has no 'bands': validate it against a multi-band data set (training.chromatic)"
        )
    check_model_conditions(model, names, data_dir)
    if train_data is not None:  # the memorisation check compares stamps pixel by pixel
        train_metadata = read_dataset_metadata(train_data)
        check_same_geometry(
            int(train_metadata["stamp_size"]),
            float(train_metadata["pixel_scale"]),
            stamp_size,
            pixel_scale,
            f"the training data set {train_data}",
            data_dir,
        )
    same_geometry = int(model.stamp_size) == stamp_size and np.isclose(float(model.pixel_scale), pixel_scale, rtol=1e-6)
    mocks = sample_mocks(model, conditions, rng, out_of_range)
    if mocks.shape[-1] != 1:
        raise MetadataError(f"{handle} returned {mocks.shape[-1]} bands for the single-band data set {data_dir}")
    mock_profiles = mocks[..., 0]

    if psf is None:
        psfs = _observed_psfs(arrays, indices, pixel_scale)
        description = metadata.get("psf", {})
        description = description.get("description", description) if isinstance(description, Mapping) else description
        method, psf_text = "no_pixel", f"data set PSF images ({description})" if description else "data set PSF images"
    else:
        psfs, method, psf_text = psf, "auto", repr(psf)
    sigmas = np.sqrt(arrays["noise_var"][indices]) if noise_sigma is None else float(noise_sigma)
    noise_power = arrays["noise_ps"][indices] if "noise_ps" in arrays else None
    noise_text = (
        "data set noise power spectra"
        if noise_power is not None
        else ("white, data set noise_var" if noise_sigma is None else f"white, sigma {float(noise_sigma):g}")
    )

    def observe(profiles, scale, rows=slice(None)):
        chosen = psfs if not isinstance(psfs, list) else [psfs[i] for i in np.arange(len(indices))[rows]]
        if noise_power is not None:
            return draw_observed(
                profiles,
                scale,
                chosen,
                pixel_scale,
                stamp_size,
                None,
                rng,
                method=method,
                noise_power=noise_power[rows],
            )
        sigma = sigmas if np.ndim(sigmas) == 0 else sigmas[rows]
        return draw_observed(profiles, scale, chosen, pixel_scale, stamp_size, sigma, rng, method=method)

    if real_galaxies:
        fitted = np.flatnonzero(arrays["has_parametric"][indices])
        observed = {
            "real": arrays["image"][indices],
            "parametric": (
                observe(arrays["parametric"][indices][fitted], pixel_scale, fitted)
                if len(fitted)
                else np.zeros((0, stamp_size, stamp_size))
            ),
            "mock": observe(mock_profiles, float(model.pixel_scale)),
        }
    else:
        fitted = np.arange(len(indices))
        observed = {
            "real": observe(arrays["truth"][indices], pixel_scale),
            "parametric": observe(arrays["truth_smooth"][indices], pixel_scale),
            "mock": observe(mock_profiles, float(model.pixel_scale)),
        }
    noise_rms = {
        "real": sigmas,
        "mock": sigmas,
        "parametric": sigmas if np.ndim(sigmas) == 0 else np.asarray(sigmas)[fitted],
    }
    stats_tables = {
        sample: measure_statistics(images, pixel_scale, noise_sigma=noise_rms[sample], n_morph=n_morph, n_jobs=n_jobs)
        for sample, images in observed.items()
    }
    boot = dict(n_bootstrap=n_bootstrap, rng=rng)
    comparisons = {
        "parametric": compare_samples(stats_tables["real"][fitted], stats_tables["parametric"], **boot),
        "mock": compare_samples(stats_tables["real"], stats_tables["mock"], **boot),
    }
    if real_galaxies:
        comparisons["mock_fitted"] = compare_samples(stats_tables["real"][fitted], stats_tables["mock"][fitted], **boot)
    residual_names = [c for c in RESIDUAL_CONDITIONS if c in names] or names[:2]
    residuals = conditional_residuals(stats_tables["real"], stats_tables["mock"], conditions, residual_names)

    memorisation = None
    if train_data is not None:
        training = load_arrays(train_data, keys=["image"])["image"]
        if training.shape[1:] != observed["real"].shape[1:]:
            raise MetadataError(
                f"training stamps {training.shape[1:]} differ from the validation stamps "
                f"{observed['real'].shape[1:]}: the memorisation check needs the same geometry"
            )
        memorisation = memorisation_check(observed["real"], observed["mock"], training)
    catalog_flux = _catalog_flux(model, conditions, mock_profiles)
    targets = evaluate_targets(comparisons, residuals, memorisation, catalog_flux)

    # The deconvolution claim, in the unconvolved frame: the VAE's reconstruction of a noisy,
    # PSF-convolved stamp is closer to the noiseless unconvolved truth than the stamp is.
    reconstruction = None
    if not real_galaxies and (same_geometry or reconstructions is not None):
        # (the model's encoder reads stamps of its own geometry only)
        reconstruction = _reconstruction(model, arrays, indices, total, reconstructions)

    results = {
        "metadata": {
            "model": str(handle),
            "data": str(data_dir),
            "n_galaxies": len(indices),
            "n_parametric": len(fitted),
            "seed": seed,
            "pixel_scale": pixel_scale,
            "stamp_size": stamp_size,
            "psf": psf_text,
            "noise_sigma": float(np.mean(sigmas)),
            "noise": noise_text,
            "n_morph": len(indices) if n_morph is None else n_morph,
            "n_bootstrap": n_bootstrap,
            "real sample": "observed stamps" if real_galaxies else "noiseless truth, drawn",
        },
        "indices": indices,
        "conditions": conditions,
        "stats": stats_tables,
        "comparisons": comparisons,
        "residuals": residuals,
        "targets": targets,
        "reconstruction": reconstruction,
        "memorisation": memorisation,
        "catalog_flux": catalog_flux,
        "gallery": _gallery(observed, fitted),
    }
    results["figures"] = make_figures(results, out_dir)
    results["report"] = write_report(results, out_dir)
    return results


def _catalog_flux(model: Any, conditions: Table, profiles: np.ndarray) -> list[dict[str, Any]] | None:
    """Median offset of the mocks' noise-free magnitude from the catalog's, per magnitude bin."""
    from galsim_hub.training.validation.diagnosis import flux_offsets_by_magnitude

    zero_point = (getattr(model, "metadata", None) or {}).get("zero_point")
    if "mag_auto" not in conditions.colnames or zero_point is None:
        return None
    flux = profiles.sum(axis=(1, 2), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mock_mag = np.where(flux > 0, -2.5 * np.log10(flux) + float(zero_point), np.nan)
    magnitudes = np.asarray(conditions["mag_auto"], dtype=np.float64)
    return flux_offsets_by_magnitude(magnitudes, mock_mag - magnitudes)


def _gallery(observed: Mapping[str, np.ndarray], fitted: np.ndarray) -> dict[str, np.ndarray]:
    """The first galaxies with a parametric fit (when there are enough), in every sample."""
    if len(fitted) >= GALLERY_SIZE:
        rows = fitted[:GALLERY_SIZE]
        return {
            "real": observed["real"][rows],
            "parametric": observed["parametric"][:GALLERY_SIZE],
            "mock": observed["mock"][rows],
        }
    return {sample: images[:GALLERY_SIZE] for sample, images in observed.items() if len(images)}


def _reconstruction(
    model: Any, arrays: Mapping[str, np.ndarray], indices: np.ndarray, total: int, reconstructions: Any
) -> dict[str, Any] | None:
    if reconstructions is None and hasattr(model, "reconstruct"):
        try:
            reconstructions = model.reconstruct(arrays["image"][indices], arrays["psf"][indices])
        except MetadataError:
            return None  # exported without an encoder
        reconstructions = _scatter_rows(reconstructions, indices, total)
    if reconstructions is None:
        return None
    reconstructions = np.asarray(reconstructions)
    if len(reconstructions) != total:
        raise ValueError(f"reconstructions must have one image per data set row ({total}), got {len(reconstructions)}")
    return reconstruction_check(reconstructions[indices], arrays["image"][indices], arrays["truth"][indices])


def _scatter_rows(rows: np.ndarray, indices: np.ndarray, total: int) -> np.ndarray:
    """Place ``rows`` (one per selected index) into a ``[total, ...]`` array of zeros."""
    full = np.zeros((total,) + rows.shape[1:], rows.dtype)
    full[indices] = rows
    return full
