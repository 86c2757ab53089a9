"""What to do with conditions outside a model's training range, and the fluxes every band gets.

One :class:`SamplingPlan` serves every model, single-band or multi-band (a single-band model is
the ``B = 1`` case): it holds the ``[N, C]`` conditions the model is fed, which rows were
clipped, and the ``[N, B]`` flux each stamp is rescaled to (NaN: the model's own flux). The
Python API, the GalSim config type and the CLI all sample through it.

A generative model is only trained on a box of conditions, and beyond it (and at its edges) it
can return stamp-filling squares with many times the catalog flux. The policy ``out_of_range``
decides what happens to rows with a condition outside the box:

``"clip"`` (default)
    Each condition is clipped to the training range ``[min, max]``. The stamps decoded at the
    clipped conditions are checked (:func:`plausible`, in every band); where they are not
    plausible (a band's flux more than :data:`FLUX_FACTOR` from the flux of its clipped
    magnitude, or more than :data:`BORDER_FRACTION` of its flux in the outer
    :func:`border_width` pixels) the conditions are pulled further towards the centre of the
    training range (the training mean ``condition_mean``, else the middle of the range;
    :data:`PULL_IN_STEPS`), with the same base noise, until they are (a
    :class:`~galsim_hub.errors.CatalogError` if they never are, even at the centre). Each
    band's flux is then set from the catalog magnitudes
    (:func:`~galsim_hub.sampling.fluxes.band_magnitudes`). Models whose conditions do not give
    every band's magnitude are clipped only. One :class:`~galsim_hub.sampling.catalog.OutOfRangeWarning`
    per call names the columns and rows.
``"error"``
    A :class:`~galsim_hub.errors.CatalogError` naming the columns and rows.
``"extrapolate"``
    The model is fed the values as they are, with a warning.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

from galsim_hub.constants import DEFAULT_OUT_OF_RANGE, OUT_OF_RANGE_POLICIES
from galsim_hub.errors import CatalogError
from galsim_hub.sampling.catalog import OutOfRangeWarning, outside_range, row_list
from galsim_hub.sampling.fluxes import (
    band_count,
    band_magnitudes,
    calibrated_fluxes,
    fluxes_from_magnitudes,
    magnitude_to_flux,
    set_fluxes,
)

#: A clipped stamp whose flux differs by more than this factor from its magnitude's is implausible.
FLUX_FACTOR = 2.0
#: A clipped stamp with more than this fraction of its flux in the border is implausible.
BORDER_FRACTION = 0.1
#: Fractions of the way from the centre of the training range to the clipped conditions that are
#: tried, in turn, for clipped rows whose stamp is implausible.
PULL_IN_STEPS = (0.75, 0.5, 0.25, 0.0)

#: ``decode(conditions [n, C], noise [n, L]) -> images [n, S, S, B]``: the model.
Decoder = Callable[[np.ndarray, np.ndarray], np.ndarray]


def check_policy(out_of_range: str) -> str:
    """Return ``out_of_range`` if it names a policy, else raise a ``ValueError`` listing them."""
    if out_of_range not in OUT_OF_RANGE_POLICIES:
        raise ValueError(
            f"out_of_range must be one of {', '.join(repr(p) for p in OUT_OF_RANGE_POLICIES)}, got {out_of_range!r}"
        )
    return out_of_range


def border_width(stamp_size: int) -> int:
    """Width in pixels of the stamp border checked by :func:`plausible` (4 on a 64-pixel stamp)."""
    return max(1, int(stamp_size) // 16)


def border_fractions(images: np.ndarray) -> np.ndarray:
    """Fraction of each stamp's flux in its outer :func:`border_width` pixels.

    ``images`` is ``[N, S, S]`` (result ``[N]``) or ``[N, S, S, B]`` (result ``[N, B]``).
    """
    images = np.asarray(images)
    width = border_width(images.shape[1])
    total = images.sum(axis=(1, 2), dtype=np.float64)
    inner = images[:, width:-width, width:-width].sum(axis=(1, 2), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (total - inner) / total


def plausible(images: np.ndarray, expected_flux: np.ndarray | None = None) -> np.ndarray:
    """Which stamps look like a galaxy rather than a model failure, in every band.

    Parameters
    ----------
    images : numpy.ndarray
        ``[N, S, S, B]`` stamps (``[N, S, S]``: one band).
    expected_flux : numpy.ndarray, optional
        ``[N, B]`` (``[N]``) flux each stamp should have (from its magnitude conditions).

    Returns
    -------
    numpy.ndarray
        ``[N]`` bool: in every band finite with a positive flux, at most :data:`BORDER_FRACTION`
        of it in the border, and (when ``expected_flux`` is given) within a factor
        :data:`FLUX_FACTOR` of it.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
        expected_flux = None if expected_flux is None else np.asarray(expected_flux)[:, None]
    total = images.sum(axis=(1, 2), dtype=np.float64)
    ok = np.isfinite(images).all(axis=(1, 2)) & (total > 0)
    with np.errstate(invalid="ignore"):
        ok &= border_fractions(images) <= BORDER_FRACTION
        if expected_flux is not None:
            ratio = total / np.asarray(expected_flux, dtype=np.float64)
            ok &= (ratio <= FLUX_FACTOR) & (ratio >= 1.0 / FLUX_FACTOR)
    return ok.all(axis=1)


class SamplingPlan:
    """Apply an out-of-range policy and catalog fluxes to the sampling of a catalog.

    Parameters
    ----------
    conditions : numpy.ndarray
        ``[N, C]`` catalog conditions (checked: finite).
    metadata : dict
        The model's metadata (``conditions`` with ``min``/``max``/``unit``, ``zero_point`` or
        ``bands``, optional ``condition_mean`` and ``flux_calibration``).
    out_of_range : {"clip", "error", "extrapolate"}
        The policy (see the module docstring).
    fluxes : numpy.ndarray, optional
        ``[N, B]`` catalog fluxes, NaN in the bands the catalog does not give
        (:func:`~galsim_hub.sampling.fluxes.catalog_band_fluxes`). When None, a flux-calibrated
        model (:func:`~galsim_hub.sampling.fluxes.calibrated_fluxes`) gives its catalog
        magnitudes' fluxes.
    labels : sequence, optional
        Names of the rows in messages (default: their indices).
    what : str
        What the rows are in messages (``"rows"``, ``"objects"``).
    prefix : str
        Start of messages.
    stacklevel : int
        Of the warning, counted from the caller of the constructor.

    Attributes
    ----------
    inputs : numpy.ndarray
        ``[N, C]`` the conditions the model is fed (clipped or not).
    clipped : numpy.ndarray
        ``[N]`` bool, the rows clipped to the training range.
    targets : numpy.ndarray
        ``[N, B]`` the flux of each stamp in each band; NaN keeps the model's flux.

    Raises
    ------
    CatalogError
        With ``out_of_range="error"`` and conditions outside the training range.

    Warns
    -----
    OutOfRangeWarning
        Once, naming the columns and rows, with ``"clip"`` or ``"extrapolate"``.
    """

    def __init__(
        self,
        conditions: np.ndarray,
        metadata: dict,
        out_of_range: str = DEFAULT_OUT_OF_RANGE,
        fluxes: np.ndarray | None = None,
        labels: Sequence | None = None,
        what: str = "rows",
        prefix: str = "",
        stacklevel: int = 2,
    ):
        policy = check_policy(out_of_range)
        specs = metadata["conditions"]
        conditions = np.asarray(conditions, dtype=np.float64)
        n_rows, n_bands = len(conditions), band_count(metadata)
        self._calibration = (metadata.get("flux_calibration") or {}).get("condition")
        calibrated = fluxes is None and self._calibration is not None
        if calibrated:
            calibration = calibrated_fluxes(conditions, metadata)
            fluxes = None if calibration is None else calibration[:, None]
        outside = outside_range(conditions, specs)
        self.inputs = conditions
        self.clipped = np.zeros(n_rows, dtype=bool)
        self.targets = (
            np.full((n_rows, n_bands), np.nan)
            if fluxes is None
            else np.array(fluxes, dtype=np.float64).reshape(n_rows, n_bands)
        )
        self._magnitudes = band_magnitudes(metadata)
        self._centre = _range_centre(metadata)
        self._labels, self._what, self._prefix = labels, what, prefix
        if not outside.any():
            return
        summary = (
            f"{prefix}{int(outside.any(axis=1).sum())} of {n_rows} {what} lie outside the model's training "
            f"range: {_describe(outside, specs, labels, what)}"
        )
        if policy == "error":
            raise CatalogError(
                f"{summary}. out_of_range='error' refuses them; 'clip' clips them to the range and sets "
                "their catalog flux, 'extrapolate' lets the model extrapolate"
            )
        if policy == "extrapolate":
            warnings.warn(f"{summary}; the model extrapolates there", OutOfRangeWarning, stacklevel=stacklevel + 1)
            return
        low = np.array([_bound(spec, "min", -np.inf) for spec in specs])
        high = np.array([_bound(spec, "max", np.inf) for spec in specs])
        self.inputs = np.clip(conditions, low, high)
        self.clipped = np.asarray(outside.any(axis=1))
        note = self._clipped_flux_note(conditions, specs, calibrated, labels, prefix)
        warnings.warn(
            f"{summary}. out_of_range='clip': their conditions are clipped to the range (and pulled further "
            f"in where the model's stamp at the edge is implausible) and {note}; pass "
            "out_of_range='error' to refuse such rows or 'extrapolate' to let the model extrapolate",
            OutOfRangeWarning,
            stacklevel=stacklevel + 1,
        )

    def _clipped_flux_note(
        self, conditions: np.ndarray, specs: Sequence[dict], calibrated: bool, labels: Sequence | None, prefix: str
    ) -> str:
        """Set the clipped rows' flux targets the catalog does not give; say what their flux is."""
        if calibrated:
            return f"their flux is set from the catalog's '{self._calibration}' (the model's flux calibration)"
        given = np.asarray(np.isfinite(self.targets).all(axis=0))
        if given.all():
            return "their flux is the catalog flux given"
        if self._magnitudes is None:
            return (
                "their flux is the model's at the clipped conditions (the model has no magnitude "
                "condition with a zero point for every band to set it from)"
            )
        rows = self.clipped
        names = [int(i) for i in np.flatnonzero(rows)]
        if labels is not None:
            names = [labels[i] for i in names]
        sources = []
        for band, magnitude in enumerate(self._magnitudes):
            if given[band]:
                continue
            self.targets[rows, band] = fluxes_from_magnitudes(
                magnitude.of(conditions[rows]),
                magnitude.zero_point,
                f"{prefix}{magnitude.describe(specs)}",
                labels=names,
            )
            sources.append(f"{magnitude.describe(specs)} with zero point {magnitude.zero_point:g}")
        return f"their flux is set from {'; '.join(sources)}"

    def images(self, decode: Decoder, noise: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """Decode the given rows under the policy and return their ``[n, S, S, B]`` stamps.

        Parameters
        ----------
        decode : callable
            ``decode(conditions [n, C], noise [n, L]) -> images [n, S, S, B]``, the model.
        noise : numpy.ndarray
            ``[n, L]`` base noise of these rows.
        rows : slice
            Which rows of the plan (default: all).
        """
        inputs = self.inputs[rows]
        images = np.asarray(decode(inputs, noise))
        clipped = np.flatnonzero(self.clipped[rows])
        if clipped.size:
            images = self._pull_in(decode, np.array(images), inputs, noise, clipped, rows)
        return set_fluxes(images, self.targets[rows])

    def _expected_flux(self, inputs: np.ndarray) -> np.ndarray | None:
        """``[n, B]`` the flux of each band's magnitude at ``inputs`` (None: not every band has one)."""
        if self._magnitudes is None:
            return None
        return np.stack([magnitude_to_flux(m.of(inputs), m.zero_point) for m in self._magnitudes], axis=1)

    def _pull_in(
        self,
        decode: Decoder,
        images: np.ndarray,
        inputs: np.ndarray,
        noise: np.ndarray,
        rows: np.ndarray,
        rows_of_plan: slice,
    ) -> np.ndarray:
        """Re-decode implausible clipped rows closer and closer to the centre of the range."""
        bad = rows[~plausible(images[rows], self._expected_flux(inputs[rows]))]
        for step in PULL_IN_STEPS:
            if not bad.size:
                return images
            pulled = np.where(np.isnan(self._centre), inputs[bad], self._centre + step * (inputs[bad] - self._centre))
            images[bad] = decode(pulled, noise[bad])
            bad = bad[~plausible(images[bad], self._expected_flux(pulled))]
        if bad.size:
            names = np.arange(len(self.inputs))[rows_of_plan][bad]
            if self._labels is not None:
                names = [self._labels[i] for i in names]
            raise CatalogError(
                f"{self._prefix}the model gives no plausible stamp for {self._what} "
                f"{', '.join(map(str, names[:10]))} even at the centre of its training range; use "
                "out_of_range='extrapolate' to take its output anyway"
            )
        return images


def _bound(spec: dict, key: str, default: float) -> float:
    value = spec.get(key)
    return default if value is None else float(value)


def _range_centre(metadata: dict) -> np.ndarray:
    """The training mean of each condition (``condition_mean``), else the middle of its range."""
    specs = metadata["conditions"]
    means = metadata.get("condition_mean")
    centre = []
    for i, spec in enumerate(specs):
        low, high = spec.get("min"), spec.get("max")
        if means is not None:
            value = float(means[i])
        elif low is not None and high is not None:
            value = 0.5 * (float(low) + float(high))
        else:
            value = np.nan  # no range: never clipped, so never pulled in
        if low is not None and high is not None:
            value = min(max(value, float(low)), float(high))
        centre.append(value)
    return np.array(centre)


def _describe(outside: np.ndarray, specs: Sequence[dict], labels: Sequence | None, what: str) -> str:
    parts = []
    for i, spec in enumerate(specs):
        column = outside[:, i]
        if column.any():
            parts.append(
                f"'{spec['name']}' {int(column.sum())} value(s) outside [{spec['min']:g}, {spec['max']:g}] "
                f"({what} {row_list(column, labels)})"
            )
    return "; ".join(parts)
