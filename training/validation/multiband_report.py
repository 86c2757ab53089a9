"""Figures and the markdown/JSON report of the multi-band validation (:mod:`.multiband_validation`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from galsim_hub.training.validation.colours import colour_pairs
from galsim_hub.training.validation.common import FigureWriter, format_value, markdown_table, write_report_files
from galsim_hub.training.validation.report import targets_markdown
from galsim_hub.training.validation.statistics import valid_values

__all__ = ["rgb_composite", "make_multiband_figures", "write_multiband_report"]

_COLOURS = {"truth": "k", "mock": "tab:blue", "no_gradient": "tab:orange"}


def rgb_composite(
    stamp: np.ndarray,
    zero_points: Sequence[float] | np.ndarray,
    reference: int,
    *,
    norm: float | None = None,
    q: float = 8.0,
) -> np.ndarray:
    """An RGB picture of a 3-band stamp ``[S, S, 3]`` (blue, green, red bands) with an asinh stretch.

    Each band is first put in AB flux density units relative to the reference band
    (``flux * 10**(0.4 (zp_ref - zp_b))``), so that a flat-spectrum (AB) source is grey; then
    the channels are scaled by ``asinh(q I / norm) / (q I / norm)`` of their mean ``I``
    (Lupton et al. 2004), so colours are kept where the stretch saturates.

    Parameters
    ----------
    stamp : numpy.ndarray
        ``[S, S, 3]`` in the order blue, green, red (e.g. F435W, F606W, F814W).
    zero_points : sequence of float
        AB zero point of each of the three bands.
    reference : int
        Index of the band whose units are kept.
    norm : float, optional
        The intensity that maps to about 1 (default: the 99.5th percentile of ``I``), to show
        two stamps with the same stretch.
    q : float, optional
        Softening of the asinh stretch.

    Returns
    -------
    numpy.ndarray
        ``[S, S, 3]`` floats in [0, 1], channels red, green, blue (for ``imshow``).
    """
    stamp = np.asarray(stamp, dtype=np.float64)
    if stamp.ndim != 3 or stamp.shape[-1] != 3:
        raise ValueError(f"an RGB composite needs a [S, S, 3] stamp, got shape {stamp.shape}")
    zero_points = np.asarray(zero_points, dtype=np.float64)
    scaled = np.clip(stamp, 0, None) * 10 ** (0.4 * (zero_points[reference] - zero_points))
    intensity = scaled.mean(axis=-1)
    if norm is None:
        norm = float(np.percentile(intensity, 99.5)) or 1.0
    x = q * intensity / norm
    factor = np.where(x > 0, np.arcsinh(x) / np.where(x > 0, x, 1.0), 1.0) / np.arcsinh(q)
    rgb = scaled * (factor * q / norm)[..., None]
    return np.clip(rgb[..., ::-1], 0, 1)


def _hist(ax, samples: Mapping[str, np.ndarray], label: str) -> None:
    pooled = np.concatenate([v[np.isfinite(v)] for v in samples.values()])
    if len(pooled) == 0:
        ax.text(0.5, 0.5, "nothing measured", ha="center", transform=ax.transAxes)
        return
    lo, hi = np.percentile(pooled, [0.5, 99.5])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 26)
    for sample, values in samples.items():
        values = values[np.isfinite(values)]
        ax.hist(
            np.clip(values, lo, hi),
            bins=bins,
            histtype="step",
            lw=1.5,
            density=True,
            color=_COLOURS.get(sample),
            label=f"{sample} (mean {values.mean():+.3f})" if len(values) else sample,
        )
    ax.set_xlabel(label)
    ax.set_ylabel("density")
    ax.legend(fontsize="x-small")


def make_multiband_figures(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Draw the multi-band validation figures as PNG files in ``out_dir``.

    Returns
    -------
    list of pathlib.Path
        ``band_size_ellipticity.png`` (HSM size and ``|g|`` per band, truth vs mock),
        ``colour_gradients.png`` (gradient distributions of truth, mock, no_gradient per colour),
        ``size_ratios.png`` (``r_b / r_ref`` per band), ``colour_colour.png`` and
        ``rgb_gallery.png`` (RGB composites of truth and mock profiles, same stretch per galaxy;
        three-band models only).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    writer = FigureWriter(out_dir, dpi=100)
    save = writer.save

    stats = results["stats"]
    bands = list(stats)
    reference = results["metadata"]["reference band"]
    fig, axes = plt.subplots(len(bands), 2, figsize=(9, 2.8 * len(bands)), squeeze=False)
    for row, band in enumerate(bands):
        for column, (statistic, label) in enumerate((("sigma", r"$\sigma$ [arcsec]"), ("g", "$|g|$"))):
            _hist(
                axes[row, column], {s: valid_values(t, statistic) for s, t in stats[band].items()}, f"{band}: {label}"
            )
    save(fig, "band_size_ellipticity.png")

    tables = results["colours"]
    pairs = colour_pairs(bands)
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 3.8), squeeze=False)
    for ax, (blue, red) in zip(axes[0], pairs):
        _hist(
            ax,
            {s: np.asarray(t[f"grad_{blue}_{red}"], dtype=float) for s, t in tables.items()},
            f"({blue} - {red}) inside - outside r_{reference} [mag]",
        )
        ax.axvline(0, color="grey", lw=0.8)
    save(fig, "colour_gradients.png")

    others = [b for b in bands if b != reference]
    fig, axes = plt.subplots(1, len(others), figsize=(5 * len(others), 3.8), squeeze=False)
    for ax, band in zip(axes[0], others):
        _hist(
            ax,
            {s: np.asarray(t[f"ratio_{band}"], dtype=float) for s, t in tables.items()},
            f"half-light radius r_{band} / r_{reference}",
        )
        ax.axvline(1, color="grey", lw=0.8)
    save(fig, "size_ratios.png")

    fig, ax = plt.subplots(figsize=(5, 4.5))
    if len(pairs) >= 2:
        (b1, r1), (b2, r2) = pairs[-1], pairs[0]
        for sample in ("truth", "mock"):
            ax.scatter(
                tables[sample][f"color_{b1}_{r1}"],
                tables[sample][f"color_{b2}_{r2}"],
                s=6,
                alpha=0.5,
                color=_COLOURS[sample],
                label=sample,
                linewidths=0,
            )
        ax.set_xlabel(f"{b1} - {r1}")
        ax.set_ylabel(f"{b2} - {r2}")
    else:
        ((b1, r1),) = pairs
        for sample in ("truth", "mock"):
            ax.scatter(
                tables[sample][f"mag_{r1}"],
                tables[sample][f"color_{b1}_{r1}"],
                s=6,
                alpha=0.5,
                color=_COLOURS[sample],
                label=sample,
                linewidths=0,
            )
        ax.set_xlabel(f"{r1} [mag]")
        ax.set_ylabel(f"{b1} - {r1}")
    ax.legend(fontsize="small", markerscale=3)
    save(fig, "colour_colour.png")

    gallery = results.get("gallery")
    if gallery and len(bands) == 3 and len(gallery["truth"]):
        n = len(gallery["truth"])
        fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
        for column in range(n):
            truth = rgb_composite(gallery["truth"][column], gallery["zero_points"], gallery["reference"])
            norm = float(np.percentile(np.clip(gallery["truth"][column], 0, None).mean(axis=-1), 99.5)) or 1.0
            for row, sample in enumerate(("truth", "mock")):
                picture = (
                    truth
                    if sample == "truth"
                    else rgb_composite(gallery["mock"][column], gallery["zero_points"], gallery["reference"], norm=norm)
                )
                axes[row, column].imshow(picture, origin="lower")
                axes[row, column].set_xticks([])
                axes[row, column].set_yticks([])
            for row, sample in enumerate(("truth", "mock")):
                axes[row, 0].set_ylabel(sample)
        fig.suptitle(f"{', '.join(bands)} as B, G, R (asinh stretch of the truth, per galaxy)", fontsize="small")
        save(fig, "rgb_gallery.png")
    return writer.paths


def write_multiband_report(results: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``validation.md`` and ``validation.json`` of a multi-band validation.

    Returns
    -------
    pathlib.Path
        The markdown report.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = results["targets"]
    n_passed = sum(t["passed"] for t in targets)
    lines = ["# Multi-band validation report", ""]
    lines += [f"- {key}: {format_value(value)}" for key, value in results["metadata"].items()] + [""]
    lines += [
        "## Did the model learn the colour gradients?",
        "",
        "Colour gradient: colour inside minus outside the reference band's half-light radius "
        "(circular apertures about its centroid) of the noiseless profiles; positive means a redder "
        "centre. `no_gradient` has each galaxy's colours and no gradient.",
        "",
    ]
    lines += list(results["verdicts"]) + [""]
    lines += [f"## Targets ({n_passed}/{len(targets)} passed)", "", targets_markdown(targets), ""]
    lines += [
        "## Colours, gradients and size ratios of the noiseless profiles",
        "",
        "Δmean = mean(sample) - mean(truth) with its bootstrap error; scatter of the sample and of the "
        "per-galaxy difference; r = correlation of mock and truth values galaxy by galaxy.",
        "",
        markdown_table(
            (
                "sample",
                "statistic",
                "n",
                "mean truth",
                "mean sample",
                "Δmean",
                "± Δmean",
                "scatter truth",
                "scatter sample",
                "scatter of difference",
                "r mock/truth",
            ),
            [
                (
                    r["sample"],
                    r["statistic"],
                    r["n"],
                    r["mean_truth"],
                    r["mean_other"],
                    r["mean_diff"],
                    r["mean_diff_err"],
                    r["scatter_truth"],
                    r["scatter_other"],
                    r["scatter_diff"],
                    results["gradient_correlation"].get(r["statistic"]) if r["sample"] == "mock" else float("nan"),
                )
                for r in results["colour_comparison"]
            ],
        ),
        "",
    ]
    rows, scatter_rows = [], []
    for band, table in results["comparisons"].items():
        rows += [
            (
                band,
                r["statistic"],
                r["n_real"],
                r["n_other"],
                r["mean_real"],
                r["mean_other"],
                r["mean_diff"],
                r["mean_diff_err"],
                r["wasserstein"],
                r["ks"],
            )
            for r in table
        ]
        overall = results["residuals"][band]
        overall = overall[overall["condition"] == "all"][0]
        scatter_rows.append(
            (
                band,
                overall["n"],
                overall["size_mean"],
                overall["size_scatter"],
                overall["mag_mean"],
                overall["mag_scatter"],
            )
        )
    lines += [
        "## Per band, drawn with the band's PSF and noise (HSM)",
        "",
        "Δmean is relative for sigma and g; W is the Wasserstein distance, KS the Kolmogorov-Smirnov statistic.",
        "",
        markdown_table(
            ("band", "statistic", "n truth", "n mock", "mean truth", "mean mock", "Δmean", "± Δmean", "W", "KS"), rows
        ),
        "",
        "Per-galaxy residuals, mock vs the same galaxy's truth: size sigma_mock / sigma_truth - 1, "
        "magnitude m_mock - m_truth (HSM fluxes).",
        "",
        markdown_table(("band", "n", "size mean", "size scatter", "mag mean", "mag scatter"), scatter_rows),
        "",
    ]
    numbers = {
        key: results[key]
        for key in (
            "metadata",
            "targets",
            "verdicts",
            "colour_comparison",
            "gradient_correlation",
            "comparisons",
            "residuals",
            "figures",
        )
    }
    return write_report_files(out_dir, lines, results.get("figures") or [], numbers)
