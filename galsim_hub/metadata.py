"""The ``galsim_hub.json`` metadata of a model: reading and validation.

No TensorFlow here: the metadata is plain JSON so that ``galsim-hub info`` and the index
tools can read it without loading a model.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from galsim_hub.errors import MetadataError

#: Version of the galsim-hub model format (of ``galsim_hub.json``), not of a data set.
MODEL_FORMAT_VERSION = 1
#: The model metadata file of a model directory (``training.data`` has its own data-set file).
MODEL_METADATA_FILE = "galsim_hub.json"
NOISE_INPUT = "noise"
_REQUIRED = ("format", "name", "version", "stamp_size", "pixel_scale", "latent_dim", "conditions")

#: Format 2 adds ``bands`` (multi-band models); without ``bands`` it means what format 1 does.
#: Single-band models are still written as format 1 (:data:`MODEL_FORMAT_VERSION`), which
#: galsim-hub versions that predate format 2 read.
MULTIBAND_FORMAT_VERSION = 2
#: Format 3 adds a Keras-native file (``keras_model``, e.g. ``model.keras``) beside the
#: SavedModel: the same networks, which the JAX and PyTorch backends run through Keras 3.
#: It means what format 2 does otherwise (``bands`` optional); galsim-hub versions that
#: predate it refuse it by its number rather than misread it.
KERAS_FORMAT_VERSION = 3
#: The model format versions this galsim-hub reads.
SUPPORTED_FORMATS = (MODEL_FORMAT_VERSION, MULTIBAND_FORMAT_VERSION, KERAS_FORMAT_VERSION)


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_number(metadata: dict, key: str, source: str, integer: bool = False) -> None:
    value = metadata.get(key)
    valid_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not valid_type
        or not math.isfinite(value)
        or value <= 0
    ):
        kind = "a positive integer" if integer else "a positive number"
        raise MetadataError(f"{source}: metadata '{key}' must be {kind}, got {value!r}")


def validate_metadata(metadata: dict, source: str = "model") -> dict:
    """Check a metadata dictionary and return it unchanged.

    Parameters
    ----------
    metadata : dict
        The content of ``galsim_hub.json`` (or an index entry's ``metadata``).
    source : str
        Where the metadata came from, used in error messages.

    Returns
    -------
    dict
        ``metadata`` itself.

    Raises
    ------
    MetadataError
        When a required key is missing, has the wrong type, or the conditions are
        inconsistent (duplicate names, ``min > max``, the reserved name ``noise``).
    """
    if not isinstance(metadata, dict):
        raise MetadataError(f"{source}: metadata must be a JSON object, got {type(metadata).__name__}")
    missing = [key for key in _REQUIRED if key not in metadata]
    if missing:
        raise MetadataError(f"{source}: metadata lacks required key(s) {', '.join(missing)}")
    if metadata["format"] not in SUPPORTED_FORMATS or isinstance(metadata["format"], bool):
        raise MetadataError(
            f"{source}: metadata format {metadata['format']!r} is not supported "
            f"(this galsim-hub reads formats {', '.join(map(str, SUPPORTED_FORMATS))})"
        )
    for key in ("name", "version"):
        if not isinstance(metadata[key], str) or not metadata[key].strip():
            raise MetadataError(f"{source}: metadata {key!r} must be a non-empty string, got {metadata[key]!r}")
    _positive_number(metadata, "stamp_size", source, integer=True)
    _positive_number(metadata, "latent_dim", source, integer=True)
    _positive_number(metadata, "pixel_scale", source)
    conditions = metadata["conditions"]
    if not isinstance(conditions, list) or not conditions:
        raise MetadataError(f"{source}: metadata 'conditions' must be a non-empty list")
    names = []
    for position, condition in enumerate(conditions):
        if not isinstance(condition, dict) or not isinstance(condition.get("name"), str):
            raise MetadataError(f"{source}: condition #{position} needs a string 'name'")
        name = condition["name"]
        if name == NOISE_INPUT:
            raise MetadataError(f"{source}: '{NOISE_INPUT}' is reserved for the base noise input")
        low, high = condition.get("min"), condition.get("max")
        if low is None and high is None:
            names.append(name)  # training range unknown (e.g. a bare TF1 Hub module)
            continue
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high)):
            raise MetadataError(f"{source}: condition '{name}' needs finite numbers 'min' and 'max'")
        if low > high:  # type: ignore[operator]  # both checked finite numbers above
            raise MetadataError(f"{source}: condition '{name}' has min {low} > max {high}")
        names.append(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MetadataError(f"{source}: duplicate condition name(s) {', '.join(duplicates)}")
    for key in ("condition_mean", "condition_std"):
        if key not in metadata:
            continue
        values = metadata[key]
        if not isinstance(values, list) or not all(_finite_number(value) for value in values):
            raise MetadataError(
                f"{source}: '{key}' must be a list of {len(names)} finite numbers (one per condition), got {values!r}"
            )
        if len(values) != len(names):
            raise MetadataError(f"{source}: '{key}' has {len(values)} values for {len(names)} conditions")
        if key == "condition_std" and not all(value > 0 for value in values):
            raise MetadataError(f"{source}: 'condition_std' must be positive, got {values!r}")
    if "flux_calibration" in metadata:
        validate_flux_calibration(metadata, source)
    if "stamp_window" in metadata:
        window = metadata["stamp_window"]
        inner = window.get("inner") if isinstance(window, dict) else None
        if not (isinstance(inner, (int, float)) and _finite_number(inner) and 0.0 < inner < 1.0):
            raise MetadataError(
                f"{source}: 'stamp_window' must be {{\"inner\": f}} with 0 < f < 1 (the fraction "
                f"of the stamp's half-width where the circular taper starts), got {window!r}"
            )
    if "bands" in metadata:
        if metadata["format"] < MULTIBAND_FORMAT_VERSION:
            raise MetadataError(
                f"{source}: 'bands' needs metadata format 2, the metadata says format {metadata['format']}"
            )
        validate_bands(metadata["bands"], source)
    if metadata["format"] >= KERAS_FORMAT_VERSION:
        keras_model = metadata.get("keras_model")
        if (
            not isinstance(keras_model, str)
            or not keras_model.endswith(".keras")
            or "/" in keras_model
            or "\\" in keras_model
        ):
            raise MetadataError(
                f"{source}: format {metadata['format']} needs 'keras_model', the name of the model's Keras-native "
                f'file in its directory (e.g. "model.keras"), got {keras_model!r}'
            )
    elif "keras_model" in metadata:
        raise MetadataError(
            f"{source}: 'keras_model' needs metadata format {KERAS_FORMAT_VERSION}, "
            f"the metadata says format {metadata['format']}"
        )
    return metadata


def validate_flux_calibration(metadata: dict, source: str = "model") -> dict:
    """Check a model's ``flux_calibration`` entry and return it.

    ``{"condition": NAME}`` says that the model's stamps are rescaled to the flux of the
    catalog magnitude ``NAME`` (``10**(-0.4 (mag - zero_point))``) whenever the caller gives no
    ``flux=``/``mag=``: the flux is then the catalog's, not what the decoder happens to put in
    the stamp. ``NAME`` must be a condition with unit ``"mag"``, the model needs a finite
    ``zero_point``, and the model must be single-band (multi-band models carry per-band
    magnitudes and colours instead).

    Raises
    ------
    MetadataError
        When any of this does not hold.
    """
    calibration = metadata["flux_calibration"]
    if not isinstance(calibration, dict) or not isinstance(calibration.get("condition"), str):
        raise MetadataError(
            f"{source}: 'flux_calibration' must be an object with a string 'condition', got {calibration!r}"
        )
    name = calibration["condition"]
    units = {c.get("name"): c.get("unit") for c in metadata["conditions"] if isinstance(c, dict)}
    if units.get(name) != "mag":
        raise MetadataError(
            f"{source}: 'flux_calibration' names condition {name!r}, which is not a "
            f"condition of unit 'mag' (conditions: {', '.join(map(str, units))})"
        )
    if not _finite_number(metadata.get("zero_point")):
        raise MetadataError(
            f"{source}: 'flux_calibration' needs a finite 'zero_point', got {metadata.get('zero_point')!r}"
        )
    if "bands" in metadata:
        raise MetadataError(f"{source}: 'flux_calibration' is for single-band models; this one has bands")
    return calibration


def validate_bands(bands: object, source: str = "model") -> list[dict]:
    """Check the ``bands`` of a format-2 (multi-band) metadata and return them unchanged.

    Each band is ``{"name", "effective_wavelength", "zero_point", "bandpass"}``: a unique
    string name, the effective wavelength in nm (the bands listed in increasing order of it),
    the AB zero point of the band's pixel values (``mag = -2.5 log10(flux) + zero_point``), and
    the bandpass, either the name of a GalSim bandpass file (e.g. ``"LSST_g.dat"``, wavelengths
    in nm) or a throughput table ``[[wavelength_nm, throughput], ...]`` of at least two rows,
    wavelengths increasing, throughputs non-negative and not all zero. Whether a file name is
    known to GalSim, and whether each effective wavelength lies within its bandpass, is checked
    when the bands are built (:class:`galsim_hub.profiles.bands.BandSet`).

    Raises
    ------
    MetadataError
        Naming the band and the problem.
    """
    if not isinstance(bands, list) or not bands:
        raise MetadataError(f"{source}: metadata 'bands' must be a non-empty list of band objects, got {bands!r}")
    names, wavelengths = [], []
    for position, band in enumerate(bands):
        if not isinstance(band, dict) or not isinstance(band.get("name"), str) or not band["name"]:
            raise MetadataError(f"{source}: band #{position} needs a non-empty string 'name'")
        name = band["name"]
        missing = [key for key in ("effective_wavelength", "zero_point", "bandpass") if key not in band]
        if missing:
            raise MetadataError(f"{source}: band '{name}' lacks {', '.join(missing)}")
        wavelength = band["effective_wavelength"]
        if not _finite_number(wavelength) or wavelength <= 0:
            raise MetadataError(
                f"{source}: band '{name}' needs a positive 'effective_wavelength' in nm, got {wavelength!r}"
            )
        if not _finite_number(band["zero_point"]):
            raise MetadataError(f"{source}: band '{name}' needs a finite 'zero_point', got {band['zero_point']!r}")
        _check_bandpass(band["bandpass"], name, source)
        names.append(name)
        wavelengths.append(float(wavelength))
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MetadataError(f"{source}: duplicate band name(s) {', '.join(duplicates)}")
    for (blue, low), (red, high) in zip(zip(names, wavelengths), zip(names[1:], wavelengths[1:])):
        if high <= low:
            raise MetadataError(
                f"{source}: bands must be listed in increasing effective wavelength, but '{red}' ({high:g} nm) "
                f"follows '{blue}' ({low:g} nm)"
            )
    return bands


def _check_bandpass(bandpass: object, name: str, source: str) -> None:
    if isinstance(bandpass, str):
        if not bandpass:
            raise MetadataError(f"{source}: band '{name}' has an empty bandpass file name")
        return
    rows = bandpass if isinstance(bandpass, list) else None
    if (
        rows is None
        or len(rows) < 2
        or not all(isinstance(row, list) and len(row) == 2 and all(_finite_number(v) for v in row) for row in rows)
    ):
        raise MetadataError(
            f"{source}: band '{name}' bandpass must be a GalSim bandpass file name or a table "
            "[[wavelength_nm, throughput], ...] of at least two rows of finite numbers"
        )
    waves = [row[0] for row in rows]
    if waves[0] <= 0 or any(b <= a for a, b in zip(waves, waves[1:])):
        raise MetadataError(f"{source}: band '{name}' bandpass wavelengths must be positive and increasing")
    throughputs = [row[1] for row in rows]
    if min(throughputs) < 0 or max(throughputs) <= 0:
        raise MetadataError(f"{source}: band '{name}' bandpass throughputs must be non-negative and not all zero")


def band_names(metadata: dict) -> list[str] | None:
    """The band names of a multi-band (format 2) model, in output order, or ``None``."""
    bands = metadata.get("bands")
    return None if bands is None else [band["name"] for band in bands]


def read_metadata(model_dir: str | os.PathLike) -> dict:
    """Read and validate ``galsim_hub.json`` from a model directory.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A galsim-hub model directory (format 1 or 2).

    Returns
    -------
    dict
        The validated metadata.

    Raises
    ------
    MetadataError
        When the file is missing, is not valid JSON, or fails :func:`validate_metadata`.
    """
    path = Path(model_dir) / MODEL_METADATA_FILE
    if not path.is_file():
        raise MetadataError(f"{model_dir} has no {MODEL_METADATA_FILE}: it is not a galsim-hub model directory")
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MetadataError(f"{path} is not valid JSON: {error}") from None
    return validate_metadata(metadata, source=str(path))


def condition_names(metadata: dict) -> list[str]:
    """The condition (catalog column) names of a model, in input order."""
    return [condition["name"] for condition in metadata["conditions"]]
