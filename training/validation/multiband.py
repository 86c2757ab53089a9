"""Validation of multi-band generative galaxy models against a held-out multi-band data set.

The data set (:func:`galsim_hub.training.datasets.chromatic.build_chromatic_dataset`) holds, per galaxy
and band, the noiseless PSF-free ``truth``, the band's PSF image and noise. Three samples of the
same galaxies are compared:

- ``truth``: the data set's noiseless profiles;
- ``mock``: the model conditioned on the galaxies' catalog columns;
- ``no_gradient``: a parametric population without colour gradients, each galaxy's reference
  band (F814W) truth scaled to every band's total truth flux: the right colours, zero colour
  gradient, size ratio 1. It tells how far "no gradient at all" is from the truth, the bar a
  model that learnt the gradients must beat.

Per band, ``truth`` and ``mock`` are drawn with the band's PSF and noise and measured with HSM
(size ``sigma``, ``|g|``; statmorph optionally) as in :mod:`.validation`. On the noiseless
profiles, :mod:`.colours` measures total colours, colour gradients (colour inside minus outside
the reference band's half-light radius) and half-light-radius ratios ``r_b / r_ref``. Means and
scatters are compared with bootstrap errors, and targets give PASS/FAIL
(:data:`COLOUR_TARGETS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import galsim
import numpy as np
from astropy.table import Table

from galsim_hub.errors import MetadataError
from galsim_hub.training.validation.colours import colour_pairs, compare_colours, measure_colours, no_gradient_profiles
from galsim_hub.training.validation.common import (
    check_model_conditions,
    condition_names,
    held_out_rows,
    sample_mocks,
)
from galsim_hub.training.validation.report import TARGETS
from galsim_hub.training.validation.statistics import (
    HSM_COLUMNS,
    MORPH_COLUMNS,
    compare_samples,
    conditional_residuals,
    draw_observed,
    measure_statistics,
)

__all__ = [
    "COLOUR_TARGETS",
    "MULTIBAND_SAMPLES",
    "dataset_bands",
    "model_band_order",
    "evaluate_multiband_targets",
    "run_multiband_validation",
]

MULTIBAND_SAMPLES = ("truth", "mock", "no_gradient")

#: Tolerances of the multi-band targets (mag for colours and gradients, fractional for sizes).
COLOUR_TARGETS = {
    "mean_color": 0.05,  # |mean colour mock - truth|
    "color_scatter": 0.10,  # scatter of the per-galaxy colour residual mock - truth
    "mean_gradient": 0.05,  # |mean colour gradient mock - truth|, and closer than no_gradient
    "mean_size_ratio": 0.03,  # |mean r_b/r_ref of mocks / that of the truth - 1|
}
GALLERY_SIZE = 8


def dataset_bands(metadata: Mapping[str, Any], where: Any = "the data set") -> tuple[list[dict], str]:
    """The ``bands`` entries of a data set's metadata and its reference band.

    Raises
    ------
    MetadataError
        When the data set has no ``bands`` (a single-band data set) or they lack names or zero points.
    """
    bands = metadata.get("bands")
    if not bands:
        raise MetadataError(
            f"{where} has no 'bands' in its dataset.json: multi-band validation needs a "
            "multi-band data set (galsim_hub.training.datasets.chromatic.build_chromatic_dataset)"
        )
    try:
        bands = [{"name": str(b["name"]), "zero_point": float(b["zero_point"]), **b} for b in bands]
    except (KeyError, TypeError, ValueError) as error:
        raise MetadataError(f"the bands of {where} need a 'name' and a 'zero_point' each") from error
    names = [b["name"] for b in bands]
    reference = str(metadata.get("reference_band", "f814w" if "f814w" in names else names[-1]))
    if reference not in names:
        raise MetadataError(f"reference band {reference!r} of {where} is not one of its bands {names}")
    return bands, reference


def model_band_order(model: Any, names: Sequence[str], handle: Any = "the model") -> list[int]:
    """Indices of the data set's bands ``names`` on the last axis of the model's stamps.

    Raises
    ------
    MetadataError
        When the model is single-band (``model.bands`` is None) or lacks one of the bands.
    """
    model_bands = getattr(model, "bands", None)
    if not model_bands:
        raise MetadataError(
            f"{handle} is a single-band model (no 'bands' in its metadata): multi-band "
            f"validation needs a multi-band model of the bands {list(names)}"
        )
    model_bands = list(model_bands)
    missing = [b for b in names if b not in model_bands]
    if missing:
        raise MetadataError(f"{handle} has the bands {model_bands}, not the data set's {missing}")
    return [model_bands.index(b) for b in names]


def _load(data_dir: Path) -> dict[str, np.ndarray]:
    from galsim_hub.training.datasets.shards import load_arrays

    keys = ["conditions", "psf", "truth", "noise_var"]
    try:
        return load_arrays(data_dir, keys=keys + ["noise_ps"])
    except MetadataError:
        return load_arrays(data_dir, keys=keys)


def _psfs(psf: np.ndarray, pixel_scale: float) -> list[galsim.GSObject]:
    return [
        galsim.InterpolatedImage(
            galsim.Image(np.asarray(p, dtype=np.float64), scale=pixel_scale), use_true_center=False
        )
        for p in psf
    ]


def _target(
    name: str, description: str, value: float, requirement: str, passed: bool, error: float = math.nan
) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "value": float(value),
        "error": float(error),
        "requirement": requirement,
        "passed": bool(passed and np.isfinite(value)),
    }


def evaluate_multiband_targets(
    band_comparisons: Mapping[str, Table],
    band_residuals: Mapping[str, Table],
    colour_comparison: Table,
    bands: Sequence[str],
    reference: str,
) -> list[dict[str, Any]]:
    """PASS/FAIL targets of the multi-band validation.

    Parameters
    ----------
    band_comparisons : mapping
        ``{band: compare_samples(truth, mock)}`` of the drawn, noisy stamps.
    band_residuals : mapping
        ``{band: conditional_residuals(...)}`` (its ``'all'`` row is used).
    colour_comparison : astropy.table.Table
        :func:`galsim_hub.training.validation.colours.compare_colours` of ``mock`` and ``no_gradient``.
    bands : sequence of str
        Band names, in increasing wavelength.
    reference : str
        The reference band of the size ratios.

    Returns
    -------
    list of dict
        ``name``, ``description``, ``value``, ``error``, ``requirement``, ``passed`` (NaN fails).
    """
    targets = []
    for band in bands:
        rows = {row["statistic"]: row for row in band_comparisons[band]}
        for column, key, text in (("sigma", "mean_size_relative", "HSM size"), ("g", "mean_g_relative", "|g|")):
            value, limit = rows[column]["mean_diff"], TARGETS[key]
            targets.append(
                _target(
                    f"{key}_{band}",
                    f"{band}: relative difference of the mean {text}, mock vs "
                    "truth (drawn with the band's PSF and noise)",
                    value,
                    f"abs(value) < {limit:g}",
                    abs(value) < limit,
                    rows[column]["mean_diff_err"],
                )
            )
    comparison = {(row["sample"], row["statistic"]): row for row in colour_comparison}
    for blue, red in colour_pairs(bands):
        mock = comparison[("mock", f"color_{blue}_{red}")]
        limit = COLOUR_TARGETS["mean_color"]
        targets.append(
            _target(
                f"mean_color_{blue}_{red}",
                f"mean {blue} - {red} colour, mock - truth (mag)",
                mock["mean_diff"],
                f"abs(value) < {limit:g}",
                abs(mock["mean_diff"]) < limit,
                mock["mean_diff_err"],
            )
        )
        limit = COLOUR_TARGETS["color_scatter"]
        targets.append(
            _target(
                f"color_scatter_{blue}_{red}",
                f"scatter of the per-galaxy {blue} - {red} colour residual, mock - truth (mag)",
                mock["scatter_diff"],
                f"< {limit:g}",
                mock["scatter_diff"] < limit,
                mock["scatter_diff_err"],
            )
        )
    for blue, red in colour_pairs(bands):
        mock = comparison[("mock", f"grad_{blue}_{red}")]
        flat = comparison[("no_gradient", f"grad_{blue}_{red}")]
        limit = COLOUR_TARGETS["mean_gradient"]
        targets.append(
            _target(
                f"mean_gradient_{blue}_{red}",
                f"mean {blue} - {red} colour gradient (inside - outside the {reference} half-light radius), mock - truth "
                f"(mag; truth {mock['mean_truth']:.3f} ± {mock['mean_truth_err']:.3f})",
                mock["mean_diff"],
                f"abs(value) < {limit:g} and abs(value) + 2 ± < {abs(flat['mean_diff']):.3g} (no_gradient)",
                abs(mock["mean_diff"]) < limit and _closer(mock, flat),
                mock["mean_diff_err"],
            )
        )
    for band in bands:
        if band == reference:
            continue
        mock = comparison[("mock", f"ratio_{band}")]
        value = mock["mean_other"] / mock["mean_truth"] - 1 if mock["mean_truth"] else math.nan
        limit = COLOUR_TARGETS["mean_size_ratio"]
        targets.append(
            _target(
                f"mean_size_ratio_{band}",
                f"mean half-light radius ratio r_{band}/r_{reference}, mock / truth - 1 (truth {mock['mean_truth']:.3f})",
                value,
                f"abs(value) < {limit:g}",
                abs(value) < limit,
                mock["mean_diff_err"] / mock["mean_truth"] if mock["mean_truth"] else math.nan,
            )
        )
    return targets


def _closer(mock: Mapping[str, float], flat: Mapping[str, float]) -> bool:
    """Mocks closer to the truth than ``no_gradient``, by more than twice their bootstrap error."""
    error = mock["mean_diff_err"] if np.isfinite(mock["mean_diff_err"]) else 0.0
    return bool(abs(mock["mean_diff"]) + 2 * error < abs(flat["mean_diff"]))


def _gradient_verdicts(
    colour_comparison: Table, correlations: Mapping[str, float], bands: Sequence[str], reference: str
) -> list[str]:
    """One sentence per colour and per size ratio: did the mocks reproduce the truth's gradients?"""
    comparison = {(row["sample"], row["statistic"]): row for row in colour_comparison}
    lines = []
    for blue, red in colour_pairs(bands):
        column = f"grad_{blue}_{red}"
        mock, flat = comparison[("mock", column)], comparison[("no_gradient", column)]
        truth_mean, truth_err = mock["mean_truth"], mock["mean_truth_err"]
        significant = abs(truth_mean) > 2 * truth_err if np.isfinite(truth_err) else False
        close = abs(mock["mean_diff"]) < COLOUR_TARGETS["mean_gradient"]
        better = _closer(mock, flat)
        if not significant:
            verdict = "the truth has no mean gradient at 2 sigma: this sample cannot tell"
        elif close and better:
            verdict = "LEARNT (mean gradient within tolerance, closer to the truth than no gradient by > 2 sigma)"
        elif better:
            verdict = (
                "PARTLY learnt (closer to the truth than no gradient by > 2 sigma, but off by more than "
                f"{COLOUR_TARGETS['mean_gradient']:g} mag)"
            )
        else:
            verdict = "NOT learnt (not significantly closer to the truth than a population without gradients)"
        lines.append(
            f"- {blue} - {red}: truth {truth_mean:+.3f} ± {truth_err:.3f} mag, mock "
            f"{mock['mean_other']:+.3f} (mock - truth {mock['mean_diff']:+.3f} ± "
            f"{mock['mean_diff_err']:.3f}), "
            f"no_gradient {flat['mean_other']:+.3f}; "
            f"per-galaxy correlation mock/truth r = {correlations.get(column, math.nan):.2f}: {verdict}."
        )
    for band in bands:
        column = f"ratio_{band}"
        if ("mock", column) not in comparison:
            continue
        mock = comparison[("mock", column)]
        limit = COLOUR_TARGETS["mean_size_ratio"]
        offset = mock["mean_other"] / mock["mean_truth"] - 1 if mock["mean_truth"] else math.nan
        away_from_one = abs(mock["mean_truth"] - 1) > 2 * mock["mean_truth_err"]
        verdict = ("within tolerance" if abs(offset) < limit else f"off by {offset:+.1%}") + (
            "" if away_from_one else "; the truth's ratio is 1 at 2 sigma, so this cannot tell"
        )
        lines.append(
            f"- size ratio r_{band}/r_{reference}: truth {mock['mean_truth']:.3f} ± "
            f"{mock['mean_truth_err']:.3f}, "
            f"mock {mock['mean_other']:.3f}, no_gradient 1: {verdict}."
        )
    return lines


def run_multiband_validation(
    model: Any,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    n: int | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    n_morph: int | None = None,
    n_bootstrap: int = 500,
    out_of_range: str = "clip",
) -> dict[str, Any]:
    """Validate a multi-band model against a held-out multi-band data set and write the report.

    Parameters
    ----------
    model : str or galsim_hub.GenerativeGalaxyModel
        A multi-band model handle or loaded model (``bands``, ``quantities``, ``pixel_scale``,
        ``band_set`` and ``sample(cat, seed=..., return_arrays=True)`` giving ``[N, S, S, B]``).
    data_dir : str or path
        A multi-band data set with ``truth``, ``psf``, ``noise_var`` (and optionally
        ``noise_ps``) ``[..., B]`` and ``bands`` in its ``dataset.json``.
    out_dir : str or path
        Where the figures, ``validation.md`` and ``validation.json`` go.
    n : int, optional
        Number of galaxies, drawn at random without replacement; all by default.
    seed : int, optional
        Seed of the selection, the noise, the bootstrap and the model's sampling.
    n_jobs : int, optional
        Processes for statmorph.
    n_morph : int, optional
        Galaxies measured with statmorph in every band; None or 0 skips statmorph (the default,
        for speed).
    n_bootstrap : int, optional
        Bootstrap resamples of the galaxies for the uncertainties.
    out_of_range : {"clip", "error", "extrapolate"}, optional
        The model's policy for held-out galaxies outside its training range.

    Returns
    -------
    dict
        ``metadata``, ``indices``, ``conditions``, ``stats`` (``{band: {'truth', 'mock'}}`` HSM
        tables), ``comparisons`` (``{band: table}``), ``residuals`` (``{band: table}``),
        ``colours`` (``{'truth', 'mock', 'no_gradient'}`` tables of
        :func:`~galsim_hub.training.validation.colours.measure_colours`), ``colour_comparison``,
        ``gradient_correlation``, ``verdicts``, ``targets``, ``figures`` and ``report``.

    Raises
    ------
    MetadataError
        When the data set has no bands, the model is single-band or lacks one of the bands.
    CatalogError
        When the model needs a condition the data set does not have.
    """
    from galsim_hub.training.datasets.shards import read_dataset_metadata
    from galsim_hub.training.validation.multiband_report import make_multiband_figures, write_multiband_report

    data_dir = Path(data_dir)
    metadata = read_dataset_metadata(data_dir)
    bands, reference = dataset_bands(metadata, data_dir)
    names = [b["name"] for b in bands]
    ref = names.index(reference)
    zero_points = [b["zero_point"] for b in bands]
    names_of_conditions = condition_names(metadata)
    pixel_scale, stamp_size = float(metadata["pixel_scale"]), int(metadata["stamp_size"])
    arrays = _load(data_dir)
    if arrays["truth"].ndim != 4 or arrays["truth"].shape[-1] != len(names):
        raise MetadataError(
            f"truth of {data_dir} has shape {arrays['truth'].shape}, expected [n, S, S, "
            f"{len(names)}] for the bands {names}"
        )

    rng, indices, conditions, model, handle = held_out_rows(arrays["conditions"], names_of_conditions, n, seed, model)
    order = model_band_order(model, names, handle)
    check_model_conditions(model, names_of_conditions, data_dir)
    mock = sample_mocks(model, conditions, rng, out_of_range)[..., order]
    model_zero_points = (
        [float(b["zero_point"]) for b in model.metadata["bands"]] if hasattr(model, "metadata") else zero_points
    )
    model_zero_points = [model_zero_points[i] for i in order]
    truth = np.asarray(arrays["truth"][indices], dtype=np.float64)

    # Per band: drawn with the band's PSF and noise, measured with HSM (and statmorph).
    n_morph = int(n_morph or 0)
    columns = HSM_COLUMNS + (MORPH_COLUMNS if n_morph > 0 else ())
    stats, comparisons, residuals = {}, {}, {}
    for b, band in enumerate(names):
        psfs = _psfs(arrays["psf"][indices, ..., b], pixel_scale)
        sigma = np.sqrt(arrays["noise_var"][indices, b])
        power = arrays["noise_ps"][indices, ..., b] if "noise_ps" in arrays else None
        noise = dict(noise_sigma=None, noise_power=power) if power is not None else dict(noise_sigma=sigma)
        observed = {
            "truth": draw_observed(
                truth[..., b], pixel_scale, psfs, pixel_scale, stamp_size, rng=rng, method="no_pixel", **noise
            ),
            "mock": draw_observed(
                mock[..., b],
                float(model.pixel_scale),
                psfs,
                pixel_scale,
                stamp_size,
                rng=rng,
                method="no_pixel",
                **noise,
            ),
        }
        stats[band] = {
            sample: measure_statistics(images, pixel_scale, noise_sigma=sigma, n_morph=n_morph, n_jobs=n_jobs)
            for sample, images in observed.items()
        }
        comparisons[band] = compare_samples(
            stats[band]["truth"], stats[band]["mock"], columns, n_bootstrap=n_bootstrap, rng=rng
        )
        residuals[band] = conditional_residuals(stats[band]["truth"], stats[band]["mock"], conditions, [])

    # Colours, gradients and size ratios of the noiseless profiles.
    colour_tables = {
        "truth": measure_colours(truth, names, zero_points, reference=reference, pixel_scale=pixel_scale),
        "mock": measure_colours(
            mock, names, model_zero_points, reference=reference, pixel_scale=float(model.pixel_scale)
        ),
        "no_gradient": measure_colours(
            no_gradient_profiles(truth, ref), names, zero_points, reference=reference, pixel_scale=pixel_scale
        ),
    }
    pairs = colour_pairs(names)
    colour_columns = (
        [f"color_{a}_{b}" for a, b in pairs]
        + [f"grad_{a}_{b}" for a, b in pairs]
        + [f"ratio_{b}" for b in names if b != reference]
    )
    colour_comparison = compare_colours(
        colour_tables["truth"],
        {"mock": colour_tables["mock"], "no_gradient": colour_tables["no_gradient"]},
        colour_columns,
        n_bootstrap=n_bootstrap,
        rng=rng,
    )
    correlations = {}
    for column in colour_columns:
        t, m = (np.asarray(colour_tables[s][column], dtype=float) for s in ("truth", "mock"))
        ok = np.isfinite(t) & np.isfinite(m)
        correlations[column] = (
            float(np.corrcoef(t[ok], m[ok])[0, 1]) if ok.sum() > 2 and t[ok].std() > 0 and m[ok].std() > 0 else math.nan
        )
    targets = evaluate_multiband_targets(comparisons, residuals, colour_comparison, names, reference)

    results = {
        "metadata": {
            "model": str(handle),
            "data": str(data_dir),
            "bands": ", ".join(names),
            "reference band": reference,
            "n_galaxies": len(indices),
            "seed": seed,
            "pixel_scale": pixel_scale,
            "stamp_size": stamp_size,
            "psf": "data set PSF image of each band",
            "noise": (
                "data set noise power spectra, per band"
                if "noise_ps" in arrays
                else "white, data set noise_var, per band"
            ),
            "n_morph": n_morph,
            "n_bootstrap": n_bootstrap,
            "out_of_range": out_of_range,
            "truth sample": "noiseless data set truth (drawn with PSF and noise for HSM)",
            "no_gradient sample": f"each galaxy's {reference} truth scaled to every band's truth flux",
        },
        "indices": indices,
        "conditions": conditions,
        "stats": stats,
        "comparisons": comparisons,
        "residuals": residuals,
        "colours": colour_tables,
        "colour_comparison": colour_comparison,
        "gradient_correlation": correlations,
        "targets": targets,
        "verdicts": _gradient_verdicts(colour_comparison, correlations, names, reference),
        "gallery": {
            "truth": truth[:GALLERY_SIZE],
            "mock": mock[:GALLERY_SIZE],
            "zero_points": zero_points,
            "reference": ref,
        },
    }
    results["figures"] = make_multiband_figures(results, out_dir)
    results["report"] = write_multiband_report(results, out_dir)
    return results
