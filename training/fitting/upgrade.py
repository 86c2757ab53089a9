"""Re-export a format-1 or format-2 galsim-hub model as format 3 (SavedModel + ``model.keras``).

A format-1/2 model trained by galsim-hub records its networks' architectures in its metadata
(``training.vae.architecture``, ``training.flow.architecture``) and holds their weights in its
SavedModel's variables. `upgrade_model` builds the same Keras networks, restores those weights
from the SavedModel (every variable of the networks must be found there) and exports them anew,
with the same metadata and card, so the model also runs on the JAX and
PyTorch backends.
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from galsim_hub.errors import MetadataError
from galsim_hub.metadata import KERAS_FORMAT_VERSION, read_metadata
from galsim_hub.networks.generator import GalaxyGenerator
from galsim_hub.training.fitting.export import export_model

__all__ = ["upgrade_model"]

_CARRIED = ("description", "flux_units", "zero_point", "training", "license", "citation")


def _architectures(metadata: dict, source: Path) -> tuple[dict, dict]:
    training = metadata.get("training") or {}
    try:
        return dict(training["vae"]["architecture"]), dict(training["flow"]["architecture"])
    except (KeyError, TypeError):
        raise MetadataError(
            f"{source}: the metadata records no network architectures (training.vae.architecture and "
            "training.flow.architecture): only models trained and exported by galsim-hub can be upgraded"
        ) from None


def _restored_generator(model_dir: Path, metadata: dict) -> GalaxyGenerator:
    """The networks of a format-1/2 SavedModel, rebuilt as Keras objects with its weights."""
    decoder, flow = _architectures(metadata, model_dir)
    has_encoder = "encode" in metadata.get("signatures", [])
    generator = GalaxyGenerator(
        decoder=decoder,
        flow=flow,
        condition_mean=metadata["condition_mean"],
        condition_std=metadata["condition_std"],
        encoder=decoder if has_encoder else None,
    )
    # The exporter saved the flow, the decoder and the VAE (whose encoder the encode signature uses).
    parts = {"flow": generator.flow, "decoder": generator.decoder}
    if has_encoder:
        parts["encoder"] = tf.train.Checkpoint(encoder=generator.encoder)
    status = tf.train.Checkpoint(**parts).read(str(model_dir / "variables" / "variables"))
    try:
        status.assert_existing_objects_matched()
    except AssertionError as exc:
        raise MetadataError(
            f"{model_dir}: its SavedModel's variables do not match the networks its metadata describes ({exc})"
        ) from None
    return generator


def upgrade_model(model_dir: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``model_dir`` (format 1 or 2) as a format-3 model in ``output_dir``.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A galsim-hub model directory of format 1 or 2 exported by galsim-hub's trainer.
    output_dir : str or os.PathLike
        The format-3 model directory to write (atomically, like every export).
    overwrite : bool
        Replace an existing ``output_dir``.

    Returns
    -------
    pathlib.Path
        ``output_dir``.

    Raises
    ------
    MetadataError
        If the model is already format 3, records no architectures, or its weights do not fit them.
    """
    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    if metadata["format"] >= KERAS_FORMAT_VERSION:
        raise MetadataError(f"{model_dir} is already format {metadata['format']}")
    generator = _restored_generator(model_dir, metadata)
    optional = {key: metadata[key] for key in _CARRIED if key in metadata}
    card = model_dir / "README.md"
    return export_model(
        output_dir,
        flow=generator.flow,
        decoder=generator.decoder,
        encoder=generator.encoder,
        conditions=metadata["conditions"],
        latent_dim=metadata["latent_dim"],
        stamp_size=metadata["stamp_size"],
        pixel_scale=metadata["pixel_scale"],
        name=metadata["name"],
        version=metadata["version"],
        condition_mean=metadata["condition_mean"],
        condition_std=metadata["condition_std"],
        card=card.read_text() if card.is_file() else None,
        bands=metadata.get("bands"),
        flux_calibration=(metadata.get("flux_calibration") or {}).get("condition"),
        stamp_window=(metadata.get("stamp_window") or {}).get("inner"),
        overwrite=overwrite,
        **optional,
    )
