"""Memorisation check of a generative model trained on few galaxies.

A model that copies its training set produces mocks that lie much closer to some training galaxy
than new real galaxies of the same population do. For each held-out real galaxy and for its mock
(conditioned on the real galaxy's catalog values, observed with the same PSF and noise), this finds
the distance to the nearest training stamp, over every training example (all its orientations and
shifts, so that a turned or mirrored copy is found too), and compares the two distributions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

__all__ = ["COPY_FRACTION_LIMIT", "nearest_distances", "memorisation_check"]

#: The check fails when more than this fraction of mocks lie closer to a training stamp than
#: the closest held-out real galaxy does.
COPY_FRACTION_LIMIT = 0.1


def _unit_rows(stamps: np.ndarray) -> np.ndarray:
    flat = np.asarray(stamps, dtype=np.float64).reshape(len(stamps), -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("stamps must have finite values and a non-zero norm")
    return flat / norms


def nearest_distances(stamps: Any, references: Any, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each stamp to its nearest reference stamp, and that reference's index.

    Stamps are compared in shape, not brightness: each is divided by its L2 norm, so the
    distance ``|a/|a| - b/|b||`` lies in ``[0, 2]`` (0 for identical shapes).

    Parameters
    ----------
    stamps : array-like
        ``[N, S, S]`` stamps.
    references : array-like
        ``[M, S, S]`` reference stamps (e.g. the whole training set).
    chunk : int, optional
        References compared at once (bounds memory).

    Returns
    -------
    distances : numpy.ndarray
        ``[N]`` nearest distances.
    nearest : numpy.ndarray
        ``[N]`` index of the nearest reference.
    """
    a, b = _unit_rows(stamps), _unit_rows(references)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"stamps of {a.shape[1]} pixels cannot be compared with references of {b.shape[1]}")
    best = np.full(len(a), -np.inf)
    nearest = np.zeros(len(a), dtype=np.int64)
    for start in range(0, len(b), chunk):
        cosine = a @ b[start : start + chunk].T
        index = np.argmax(cosine, axis=1)
        value = cosine[np.arange(len(a)), index]
        better = value > best
        best[better] = value[better]
        nearest[better] = start + index[better]
    return np.sqrt(np.maximum(2.0 - 2.0 * best, 0.0)), nearest


def memorisation_check(real: Any, mock: Any, training: Any, limit: float = COPY_FRACTION_LIMIT) -> dict[str, Any]:
    """Compare mocks' and held-out real galaxies' distances to the nearest training stamp.

    Parameters
    ----------
    real, mock : array-like
        ``[N, S, S]`` observed held-out real galaxies and their mocks (same PSF and noise).
    training : array-like
        ``[M, S, S]`` observed training stamps at the same pixel scale and size.
    limit : float, optional
        Largest fraction of "copies" (mocks closer to a training stamp than the closest
        held-out real galaxy is) that passes.

    Returns
    -------
    dict
        ``d_real`` and ``d_mock`` (per-galaxy distances), ``median_real``, ``median_mock``,
        ``ratio`` (of the medians), ``copy_threshold`` (the smallest ``d_real``),
        ``copy_fraction``, ``mannwhitney_p`` (one-sided: mocks nearer than real galaxies),
        ``limit`` and ``passed``.
    """
    d_real, _ = nearest_distances(real, training)
    d_mock, nearest = nearest_distances(mock, training)
    threshold = float(d_real.min())
    copy_fraction = float(np.mean(d_mock < threshold))
    test = stats.mannwhitneyu(d_mock, d_real, alternative="less")
    return {
        "n": len(d_real),
        "n_training": int(len(np.asarray(training))),
        "d_real": d_real,
        "d_mock": d_mock,
        "nearest_training": nearest,
        "median_real": float(np.median(d_real)),
        "median_mock": float(np.median(d_mock)),
        "ratio": float(np.median(d_mock) / np.median(d_real)),
        "copy_threshold": threshold,
        "copy_fraction": copy_fraction,
        "mannwhitney_p": float(test.pvalue),
        "limit": float(limit),
        "passed": bool(copy_fraction <= limit),
    }
