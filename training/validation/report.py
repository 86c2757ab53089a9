"""Validation targets, figures and the markdown/JSON report."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from scipy import ndimage

from galsim_hub.training.validation.common import FigureWriter, format_value, markdown_table, write_report_files
from galsim_hub.training.validation.statistics import MORPH_COLUMNS, valid_values

__all__ = ["TARGETS", "evaluate_targets", "make_figures", "targets_markdown", "write_report"]

# Thresholds of the validation targets (Lanusse et al. 2021, sec. 5).
TARGETS = {
    "mean_size_relative": 0.02,
    "mean_g_relative": 0.02,
    "size_scatter": 0.25,
    "mag_scatter": 0.3,
    # The mocks' noise-free flux against the catalog's magnitude, median per magnitude bin (mag).
    "catalog_flux": 0.1,
}

_LABELS = {
    "flux": "flux",
    "sigma": r"$\sigma$ [arcsec]",
    "g1": "$g_1$",
    "g2": "$g_2$",
    "g": "$|g|$",
    "gini": "Gini",
    "m20": "$M_{20}$",
    "multimode": "M (multimode)",
    "intensity": "I (intensity)",
    "deviation": "D (deviation)",
}
_COLOURS = {"real": "k", "parametric": "tab:orange", "mock": "tab:blue"}


def evaluate_targets(
    comparisons: Mapping[str, Table],
    residuals: Table,
    memorisation: Mapping[str, Any] | None = None,
    catalog_flux: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Check the validation targets of the paper (and the memorisation check when given).

    Parameters
    ----------
    comparisons : mapping
        ``{'mock': table, 'parametric': table}`` from :func:`compare_samples`, and optionally
        ``'mock_fitted'``: mocks vs real on the galaxies that have a parametric fit, which the
        mock-vs-parametric morphology targets then use (same galaxies on both sides).
    residuals : `astropy.table.Table`
        Output of :func:`conditional_residuals` (its ``'all'`` row is used).
    memorisation : mapping, optional
        Output of :func:`galsim_hub.training.validation.memorisation.memorisation_check`.
    catalog_flux : sequence of mapping, optional
        Median magnitude offset of the mocks' flux from the catalog's per magnitude bin
        (:func:`galsim_hub.training.validation.diagnosis.flux_offsets_by_magnitude`); the target holds
        the largest of them.

    Returns
    -------
    targets : list of dict
        One per target: ``name``, ``description``, ``value``, ``error`` (bootstrap standard
        deviation, NaN when unknown), ``requirement`` (text) and ``passed`` (NaN values fail).
    """
    mock = {row["statistic"]: row for row in comparisons["mock"]}
    fitted = {row["statistic"]: row for row in comparisons.get("mock_fitted", comparisons["mock"])}
    parametric = {row["statistic"]: row for row in comparisons["parametric"]}
    overall = residuals[residuals["condition"] == "all"][0]
    targets = []

    def add(name, description, value, requirement, passed, error=math.nan):
        targets.append(
            {
                "name": name,
                "description": description,
                "value": float(value),
                "error": float(error),
                "requirement": requirement,
                "passed": bool(passed),
            }
        )

    for column, key, text in (("sigma", "mean_size_relative", "mean size"), ("g", "mean_g_relative", "mean |g|")):
        value = mock[column]["mean_diff"]
        limit = TARGETS[key]
        add(
            key,
            f"relative difference of the {text} of mocks and real galaxies",
            value,
            f"abs(value) < {limit:g}",
            abs(value) < limit,
            mock[column]["mean_diff_err"],
        )
    for column, key, unit in (("size_scatter", "size_scatter", "fractional"), ("mag_scatter", "mag_scatter", "mag")):
        value = overall[column]
        limit = TARGETS[key]
        add(
            key,
            f"scatter of the per-galaxy {column.split('_')[0]} residual, mock vs real ({unit})",
            value,
            f"< {limit:g}",
            value < limit,
        )
    for column in MORPH_COLUMNS:
        value, reference = fitted[column]["wasserstein"], parametric[column]["wasserstein"]
        add(
            f"{column}_distance",
            f"Wasserstein distance of {column} to the real sample, mock vs parametric",
            value,
            f"< parametric ({reference:.4g} ± {parametric[column]['wasserstein_err']:.2g})",
            value < reference,
            fitted[column]["wasserstein_err"],
        )
    if catalog_flux:
        worst = max(catalog_flux, key=lambda b: abs(b["median"]))
        limit = TARGETS["catalog_flux"]
        add(
            "catalog_flux",
            "largest median offset of the mocks' magnitude from the catalog's, over "
            f"magnitude bins (worst: {worst['lo']:g} - {worst['hi']:g}, n={worst['n']})",
            worst["median"],
            f"abs(value) < {limit:g} mag in every bin",
            all(abs(b["median"]) < limit for b in catalog_flux),
        )
    if memorisation is not None:
        add(
            "memorisation",
            "fraction of mocks closer to a training stamp than the closest held-out real "
            f"galaxy (median distance mock/real {memorisation['ratio']:.3f})",
            memorisation["copy_fraction"],
            f"<= {memorisation['limit']:g}",
            memorisation["passed"],
        )
    return targets


# ----------------------------------------------------------------------------------------
# Figures and report
# ----------------------------------------------------------------------------------------
def _density_contours(ax, x: np.ndarray, y: np.ndarray, colour: str, label: str, extent) -> None:
    """Scatter points and, when there are enough, contours enclosing 39% and 86% of them."""
    ax.scatter(x, y, s=4, color=colour, alpha=0.35, label=label, linewidths=0)
    if len(x) < 10:
        return
    hist, xedges, yedges = np.histogram2d(x, y, bins=20, range=extent)
    hist = ndimage.gaussian_filter(hist, 1.0)
    ordered = np.sort(hist.ravel())[::-1]
    cumulative = np.cumsum(ordered) / ordered.sum()
    levels = np.unique([ordered[np.searchsorted(cumulative, q)] for q in (0.86, 0.39)])
    if len(levels) < 1 or levels[0] <= 0:
        return
    centres_x = 0.5 * (xedges[1:] + xedges[:-1])
    centres_y = 0.5 * (yedges[1:] + yedges[:-1])
    ax.contour(centres_x, centres_y, hist.T, levels=levels, colors=colour, linewidths=1.2)


def _pair_extent(stats_tables: Mapping[str, Table], x: str, y: str):
    values = {c: np.concatenate([valid_values(t, c) for t in stats_tables.values()]) for c in (x, y)}
    if any(len(v) == 0 for v in values.values()):
        return None
    extent = []
    for column in (x, y):
        lo, hi = np.percentile(values[column], [0.5, 99.5])
        pad = 0.05 * (hi - lo) or 0.5 * abs(lo) or 1.0
        extent.append([lo - pad, hi + pad])
    return extent


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", markerscale=3)
    else:
        ax.text(0.5, 0.5, "no morphology measured", ha="center", transform=ax.transAxes)


def _pair_panel(ax, stats_tables: Mapping[str, Table], x: str, y: str) -> None:
    extent = _pair_extent(stats_tables, x, y)
    for sample, table in stats_tables.items():
        ok = np.asarray(table["morph_ok"], dtype=bool)
        ok &= np.isfinite(np.asarray(table[x], dtype=float)) & np.isfinite(np.asarray(table[y], dtype=float))
        if ok.any() and extent is not None:
            _density_contours(
                ax,
                np.asarray(table[x])[ok],
                np.asarray(table[y])[ok],
                _COLOURS.get(sample, None) or "grey",
                sample,
                extent,
            )
    if extent is not None:
        ax.set_xlim(extent[0])
        ax.set_ylim(extent[1])
    ax.set_xlabel(_LABELS[x])
    ax.set_ylabel(_LABELS[y])


def make_figures(results: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Draw the validation figures as PNG files.

    Parameters
    ----------
    results : mapping
        At least ``stats`` (``{sample: table}`` from :func:`measure_statistics`) and
        ``residuals`` (from :func:`conditional_residuals`), as :func:`run_validation`
        returns.
    out_dir : str or path
        Folder to write into (created if needed).

    Returns
    -------
    paths : list of `pathlib.Path`
        ``size_ellipticity.png`` (histograms of sigma and ``|g|``), ``residuals.png``
        (conditional size and magnitude residuals), ``mid.png`` (M-I, M-D, I-D) and
        ``gini_m20.png``, ``memorisation.png`` when ``results`` has a ``memorisation`` check,
        and ``gallery.png`` (the first stamps of each sample, as observed)
        when ``results`` has a ``gallery`` (``{sample: [n, S, S] stamps}``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    writer = FigureWriter(out_dir, dpi=110)
    # matplotlib's axes arrays and the loop names reused across panels
    ax: Any
    axes: Any
    row: Any
    column: Any
    save = writer.save
    stats_tables = results["stats"]

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, column in zip(axes, ("sigma", "g")):
        pooled = np.concatenate([valid_values(t, column) for t in stats_tables.values()])
        bins = np.histogram_bin_edges(pooled, bins=25) if len(pooled) else 10
        for sample, table in stats_tables.items():
            values = valid_values(table, column)
            ax.hist(
                values,
                bins=bins,
                histtype="step",
                density=True,
                lw=1.5,
                color=_COLOURS.get(sample),
                label=f"{sample} (n={len(values)})",
            )
        ax.set_xlabel(_LABELS[column])
        ax.set_ylabel("density")
        ax.legend(fontsize="small")
    save(fig, "size_ellipticity.png")

    residuals = results["residuals"]
    conditions = [c for c in dict.fromkeys(residuals["condition"]) if c != "all"]
    fig, axes = plt.subplots(2, max(1, len(conditions)), figsize=(5 * max(1, len(conditions)), 7), squeeze=False)
    for column, condition in enumerate(conditions):
        rows = residuals[residuals["condition"] == condition]
        for row, (mean, scatter, label) in enumerate(
            (
                ("size_mean", "size_scatter", r"$\sigma_{mock}/\sigma_{real}-1$"),
                ("mag_mean", "mag_scatter", r"$m_{mock}-m_{real}$"),
            )
        ):
            ax = axes[row, column]
            ax.errorbar(rows["bin_centre"], rows[mean], yerr=np.nan_to_num(rows[scatter]), fmt="o", capsize=3)
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xlabel(condition)
            ax.set_ylabel(label)
    if not conditions:
        for ax in axes[:, 0]:
            ax.text(0.5, 0.5, "no condition to bin in", ha="center", transform=ax.transAxes)
    save(fig, "residuals.png")

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (x, y) in zip(axes, (("multimode", "intensity"), ("multimode", "deviation"), ("intensity", "deviation"))):
        _pair_panel(ax, stats_tables, x, y)
    _legend(axes[0])
    save(fig, "mid.png")

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    _pair_panel(ax, stats_tables, "m20", "gini")
    m20 = np.linspace(-3.0, -0.5, 2)
    # Lotz, Primack & Madau (2008) division lines: mergers above the first, E/S0/Sa above the second.
    ax.plot(m20, -0.14 * m20 + 0.33, color="grey", ls="--", lw=0.8)
    ax.plot(m20, 0.14 * m20 + 0.80, color="grey", ls=":", lw=0.8)
    ax.invert_xaxis()
    _legend(ax)
    save(fig, "gini_m20.png")

    memorisation = results.get("memorisation")
    if memorisation:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        pooled = np.concatenate([memorisation["d_real"], memorisation["d_mock"]])
        edges = list(np.histogram_bin_edges(pooled, bins=20))
        ax.hist(
            memorisation["d_real"], bins=edges, histtype="step", lw=1.5, color=_COLOURS["real"], label="held-out real"
        )
        ax.hist(memorisation["d_mock"], bins=edges, histtype="step", lw=1.5, color=_COLOURS["mock"], label="mock")
        ax.axvline(memorisation["copy_threshold"], color="grey", ls="--", lw=0.8, label="closest real")
        ax.set_xlabel("distance to the nearest training stamp")
        ax.set_ylabel("galaxies")
        ax.legend(fontsize="small")
        save(fig, "memorisation.png")

    gallery = results.get("gallery")
    if gallery:
        gallery_rows = list(gallery.items())
        n_columns = min(len(images) for _, images in gallery_rows)
        fig, axes = plt.subplots(
            len(gallery_rows), n_columns, figsize=(1.6 * n_columns, 1.7 * len(gallery_rows)), squeeze=False
        )
        for row, (sample, images) in enumerate(gallery_rows):
            for column in range(n_columns):
                ax = axes[row, column]
                stamp = images[column]
                ax.imshow(np.arcsinh(stamp / (3 * _noise_level(stamp))), origin="lower", cmap="gray")
                ax.set_xticks([])
                ax.set_yticks([])
            axes[row, 0].set_ylabel(sample)
        save(fig, "gallery.png")
    return writer.paths


def _noise_level(stamp: np.ndarray) -> float:
    """A robust noise rms from the stamp border (median absolute deviation), for display."""
    border = np.concatenate([stamp[:2].ravel(), stamp[-2:].ravel(), stamp[:, :2].ravel(), stamp[:, -2:].ravel()])
    mad = float(np.median(np.abs(border - np.median(border)))) * 1.4826
    return mad if mad > 0 else float(np.max(np.abs(stamp))) / 100 or 1.0


def targets_markdown(targets: Sequence[Mapping[str, Any]]) -> str:
    """The targets as a markdown table with a PASS/FAIL column."""
    return markdown_table(
        ("target", "value", "± (bootstrap)", "requirement", "result"),
        [
            (t["name"], t["value"], t.get("error", math.nan), t["requirement"], "PASS" if t["passed"] else "FAIL")
            for t in targets
        ],
    )


def write_report(results: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``validation.md`` (targets with PASS/FAIL, tables) and ``validation.json``.

    Parameters
    ----------
    results : mapping
        As :func:`run_validation` returns: ``targets``, ``comparisons``, ``residuals`` and
        optionally ``metadata``, ``reconstruction`` and ``figures``.
    out_dir : str or path
        Folder to write into (created if needed).

    Returns
    -------
    path : `pathlib.Path`
        The markdown report; ``validation.json`` lies beside it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = results["targets"]
    comparisons = results["comparisons"]
    metadata = results.get("metadata", {})
    n_passed = sum(t["passed"] for t in targets)
    lines = ["# Validation report", ""]
    if metadata:
        lines += [f"- {key}: {format_value(value)}" for key, value in metadata.items()] + [""]
    lines += [f"## Targets ({n_passed}/{len(targets)} passed)", "", targets_markdown(targets), ""]

    samples = list(comparisons)
    header = ["statistic", "mean real"] + [f"mean {s}" for s in samples] + [f"Δmean {s}" for s in samples]
    header += [f"W {s}" for s in samples] + [f"± W {s}" for s in samples] + [f"KS {s}" for s in samples]
    tables = {s: {row["statistic"]: row for row in comparisons[s]} for s in samples}
    rows = []
    for statistic in comparisons[samples[0]]["statistic"]:
        per = [tables[s][statistic] for s in samples]
        rows.append(
            [statistic, per[0]["mean_real"]]
            + [r["mean_other"] for r in per]
            + [r["mean_diff"] for r in per]
            + [r["wasserstein"] for r in per]
            + [r["wasserstein_err"] for r in per]
            + [r["ks"] for r in per]
        )
    lines += [
        "## Distributions compared with the real sample",
        "",
        "Δmean is relative for sigma and g; W is the Wasserstein distance (± its bootstrap "
        "standard deviation), KS the Kolmogorov-Smirnov statistic. `mock_fitted`: mocks of the "
        "galaxies that have a parametric fit, the sample the parametric one is compared with.",
        "",
        markdown_table(header, rows),
        "",
    ]

    residuals = results["residuals"]
    lines += [
        "## Residuals of mocks vs real galaxies with the same conditions",
        "",
        "size: sigma_mock / sigma_real - 1; magnitude: m_mock - m_real.",
        "",
        markdown_table(
            ("condition", "bin", "n", "size mean", "size scatter", "mag mean", "mag scatter"),
            [
                (
                    r["condition"],
                    "all" if r["condition"] == "all" else f"{r['bin_lo']:.3g} - {r['bin_hi']:.3g}",
                    r["n"],
                    r["size_mean"],
                    r["size_scatter"],
                    r["mag_mean"],
                    r["mag_scatter"],
                )
                for r in residuals
            ],
        ),
        "",
    ]
    catalog_flux = results.get("catalog_flux")
    if catalog_flux:
        lines += [
            "## Fluxes against the catalog",
            "",
            "Median of m_mock - m_catalog per bin of catalog magnitude (m_mock from the mock's "
            "noise-free flux, with the model's zero point; what `sample` returns by default).",
            "",
            markdown_table(
                ("magnitude bin", "n", "median offset (mag)"),
                [(f"{b['lo']:g} - {b['hi']:g}", b["n"], b["median"]) for b in catalog_flux],
            ),
            "",
        ]
    reconstruction = results.get("reconstruction")
    if reconstruction:
        lines += [
            "## Autoencoder reconstructions",
            "",
            markdown_table(
                ("MSE reconstruction", "MSE noisy input", "ratio", "result"),
                [
                    (
                        reconstruction["mse_reconstruction"],
                        reconstruction["mse_noisy"],
                        reconstruction["ratio"],
                        "PASS" if reconstruction["passed"] else "FAIL",
                    )
                ],
            ),
            "",
        ]
    memorisation = results.get("memorisation")
    if memorisation:
        lines += [
            "## Memorisation check",
            "",
            "Distance (shape: stamps divided by their L2 norm) from each held-out real galaxy and from "
            "its mock to the nearest of the training stamps (every orientation and shift). A model "
            "that copies its training set puts its mocks much nearer than new real galaxies are.",
            "",
            markdown_table(
                (
                    "n",
                    "training stamps",
                    "median d real",
                    "median d mock",
                    "ratio",
                    "closest real d",
                    "mock copies",
                    "Mann-Whitney p (mock nearer)",
                    "result",
                ),
                [
                    (
                        memorisation["n"],
                        memorisation["n_training"],
                        memorisation["median_real"],
                        memorisation["median_mock"],
                        memorisation["ratio"],
                        memorisation["copy_threshold"],
                        memorisation["copy_fraction"],
                        memorisation["mannwhitney_p"],
                        "PASS" if memorisation["passed"] else "FAIL",
                    )
                ],
            ),
            "",
        ]
    numbers = {
        key: results[key]
        for key in (
            "metadata",
            "targets",
            "comparisons",
            "residuals",
            "reconstruction",
            "memorisation",
            "catalog_flux",
            "figures",
        )
        if key in results and results[key] is not None
    }
    return write_report_files(out_dir, lines, results.get("figures") or [], numbers)
