"""The ``galsim_hub.json`` metadata of a model: reading and validation.

No TensorFlow here: the metadata is plain JSON so that ``galsim-hub info`` and the index
tools can read it without loading a model.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .errors import MetadataError

#: Version of the galsim-hub model format (of ``galsim_hub.json``), not of a data set.
MODEL_FORMAT_VERSION = 1
#: The model metadata file of a model directory (``training.data`` has its own data-set file).
MODEL_METADATA_FILE = "galsim_hub.json"
NOISE_INPUT = "noise"
_REQUIRED = ("format", "name", "version", "stamp_size", "pixel_scale", "latent_dim", "conditions")


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_number(metadata: dict, key: str, source: str, integer: bool = False) -> None:
    value = metadata.get(key)
    valid_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not valid_type or not math.isfinite(value) or value <= 0:
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
    if metadata["format"] != MODEL_FORMAT_VERSION:
        raise MetadataError(
            f"{source}: metadata format {metadata['format']!r} is not supported "
            f"(this galsim-hub reads format {MODEL_FORMAT_VERSION})"
        )
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
        if low > high:
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
    return metadata


def read_metadata(model_dir: str | os.PathLike) -> dict:
    """Read and validate ``galsim_hub.json`` from a model directory.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A format-1 model directory.

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
