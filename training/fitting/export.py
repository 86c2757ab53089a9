"""Export a trained flow and decoder as a galsim-hub model.

A model is a directory holding a TF2 SavedModel and ``galsim_hub.json`` (see
``docs/model_format.md``); galsim-hub's own Keras networks (a
:class:`~galsim_hub.networks.flow.ConditionalMAF` and a
:class:`~galsim_hub.networks.convolutional.Decoder`) are also written as the Keras-native
``model.keras`` (format 3, which the JAX and PyTorch backends read); other networks give
format 1 (or 2 with bands). The SavedModel's signatures are

``sample``
    one float32 ``[N]`` input per condition (raw catalog units, standardised inside the
    model) and ``noise`` float32 ``[N, L]`` (the flow's standard-normal base noise);
    output ``image`` float32 ``[N, S, S]`` (``[N, S, S, B]`` for a multi-band model),
    non-negative, in the model's flux units.
``decode``
    ``z`` float32 ``[N, L]`` -> ``image``.
``encode`` (when an encoder is given)
    ``image`` and ``psf`` float32 ``[N, S, S(, B)]`` -> ``z`` (the posterior mean).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from galsim_hub import __version__
from galsim_hub.hub.permissions import follow_umask
from galsim_hub.metadata import (
    KERAS_FORMAT_VERSION,
    MODEL_FORMAT_VERSION,
    MODEL_METADATA_FILE,
    MULTIBAND_FORMAT_VERSION,
    validate_metadata,
)
from galsim_hub.networks.generator import KERAS_MODEL_FILE

DEFAULT_CITATION = (
    "Lanusse F., Mandelbaum R., Ravanbakhsh S., Li C.-L., Freeman P., Poczos B., 2021, "
    "MNRAS 504, 5543: Deep generative models for galaxy image simulations"
)


class _PlainNetworks(tf.Module):
    """Flow, decoder and encoder that are not galsim-hub Keras networks (e.g. test models):
    the interface of :class:`~galsim_hub.networks.generator.GalaxyGenerator`."""

    def __init__(self, flow, decoder, encoder, condition_mean, condition_std):
        super().__init__()
        self.flow = flow
        self.decoder = decoder
        self.encoder = encoder
        self.condition_mean = tf.constant(np.asarray(condition_mean, np.float32))
        self.condition_std = tf.constant(np.asarray(condition_std, np.float32))

    def decode(self, z):
        # The decoder ends in a softplus; the clamp only guards against round-off.
        return tf.maximum(tf.cast(self.decoder(z), tf.float32), 0.0)

    def sample(self, conditions, noise):
        standardised = (conditions - self.condition_mean) / self.condition_std
        return self.decode(self.flow.sample(noise, standardised))

    def encode(self, image, psf):
        return self.encoder.encode_mean(image, psf)


class _ExportModule(tf.Module):
    """The traceable object saved as the SavedModel: the networks at the model's output shape."""

    def __init__(self, networks, stamp_size, n_bands, has_encoder):
        super().__init__(name="galsim_hub_model")
        self.networks = networks
        self.has_encoder = has_encoder
        self.image_shape = [-1, int(stamp_size), int(stamp_size)] + ([int(n_bands)] if n_bands else [])

    def decode(self, z):
        return tf.reshape(self.networks.decode(z), self.image_shape)

    def sample(self, conditions, noise):
        return tf.reshape(self.networks.sample(conditions, noise), self.image_shape)

    def encode(self, image, psf):
        return self.networks.encode(image, psf)


def keras_generator(flow, decoder, encoder, condition_mean, condition_std):
    """The :class:`~galsim_hub.networks.generator.GalaxyGenerator` holding copies of galsim-hub
    Keras networks, or ``None`` when ``flow`` and ``decoder`` are other objects.

    ``encoder`` may be an :class:`~galsim_hub.networks.convolutional.Encoder` or a VAE that has one.
    """
    from galsim_hub.networks.convolutional import Decoder, Encoder
    from galsim_hub.networks.flow import ConditionalMAF
    from galsim_hub.networks.generator import GalaxyGenerator

    if not (isinstance(flow, ConditionalMAF) and isinstance(decoder, Decoder)):
        return None
    encoder = getattr(encoder, "encoder", encoder)
    if encoder is not None and not isinstance(encoder, Encoder):
        return None
    generator = GalaxyGenerator(
        decoder=decoder.architecture,
        flow=flow.architecture,
        condition_mean=condition_mean,
        condition_std=condition_std,
        encoder=None if encoder is None else encoder.architecture,
    )
    generator.decoder.set_weights(decoder.get_weights())
    generator.flow.set_weights(flow.get_weights())
    if encoder is not None:
        generator.encoder.set_weights(encoder.get_weights())
    return generator


def _signatures(module: _ExportModule, names: Sequence[str], latent_dim: int):
    """Build the ``sample``, ``decode`` (and ``encode``) concrete functions."""

    def sample(**inputs):
        conditions = tf.stack([inputs[name] for name in names], axis=1)
        return {"image": module.sample(conditions, inputs["noise"])}

    specs = {name: tf.TensorSpec([None], tf.float32, name=name) for name in names}
    specs["noise"] = tf.TensorSpec([None, latent_dim], tf.float32, name="noise")
    signatures = {"sample": tf.function(sample).get_concrete_function(**specs)}

    decode = tf.function(
        lambda z: {"image": module.decode(z)},
        input_signature=[tf.TensorSpec([None, latent_dim], tf.float32, name="z")],
    )
    signatures["decode"] = decode.get_concrete_function()

    if module.has_encoder:
        stamp = tf.TensorSpec([None] + module.image_shape[1:], tf.float32)
        encode = tf.function(
            lambda image, psf: {"z": module.encode(image, psf)},
            input_signature=[
                tf.TensorSpec(stamp.shape, tf.float32, name="image"),
                tf.TensorSpec(stamp.shape, tf.float32, name="psf"),
            ],
        )
        signatures["encode"] = encode.get_concrete_function()
    return signatures


def export_model(
    output_dir: str | os.PathLike,
    *,
    flow: Any,
    decoder: Any,
    conditions: Sequence[dict],
    latent_dim: int,
    stamp_size: int,
    pixel_scale: float,
    name: str,
    version: str,
    condition_mean: Sequence[float] | np.ndarray | None = None,
    condition_std: Sequence[float] | np.ndarray | None = None,
    flux_units: str = "e-/s per pixel (HST/ACS F814W-like)",
    zero_point: float | None = None,
    training: dict | None = None,
    encoder: Any = None,
    description: str = "",
    license: str = "MIT",
    citation: str = DEFAULT_CITATION,
    card: str | None = None,
    bands: Sequence[dict] | None = None,
    flux_calibration: str | None = None,
    stamp_window: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a galsim-hub model directory: format 3 for galsim-hub's Keras networks, else 1 (2 with ``bands``).

    Parameters
    ----------
    output_dir : str or os.PathLike
        The model directory to create. It is written into a temporary sibling and renamed
        into place, so an interrupted export never leaves a half-written model.
    flow : ConditionalMAF or tf.Module
        Object with ``sample(noise, conditions) -> z``: ``noise`` is standard-normal
        ``[N, latent_dim]``, ``conditions`` the standardised ``[N, C]`` conditions.
    decoder : Decoder or callable
        ``decoder(z) -> [N, S, S, 1]`` or ``[N, S, S]`` non-negative light profiles
        (``[N, S, S, B]`` with ``bands``). With a ``ConditionalMAF`` flow and a galsim-hub
        ``Decoder``, the model is written as format 3 (SavedModel and ``model.keras``).
    conditions : sequence of dict
        One ``{"name", "unit", "description", "min", "max"}`` per condition, in the order
        the flow expects them; ``min``/``max`` give the training range.
    latent_dim, stamp_size : int
        Latent dimension and output stamp size in pixels.
    pixel_scale : float
        Pixel scale of the output stamps in arcsec.
    name, version : str
        The model's hub name and version.
    condition_mean, condition_std : sequence of float, optional
        Standardisation of the conditions. Default: centre and half-width of each range.
    flux_units : str
        What one unit of pixel value means.
    zero_point : float, optional
        Magnitude zero point of the flux units (``mag = -2.5 log10(flux) + zero_point``).
    training : dict, optional
        Description of the training (data set, sizes, PSF, noise, iterations).
    encoder : Encoder, VAE or tf.Module, optional
        Object with ``encode_mean(image, psf) -> z`` (or a galsim-hub ``Encoder``); adds the
        ``encode`` signature.
    description, license, citation : str
        Free text stored in the metadata.
    card : str, optional
        The model card (markdown) written as ``README.md``; a minimal one is generated
        from the metadata when omitted.
    bands : sequence of dict, optional
        The bands of a multi-band model, in output order (``name``, ``effective_wavelength``,
        ``zero_point``, ``bandpass``: see :func:`galsim_hub.metadata.validate_bands`); the
        model is then written as format 2.
    flux_calibration : str, optional
        A magnitude condition: the model then gives every galaxy that catalog magnitude's flux
        unless the caller passes ``flux=``/``mag=`` (metadata ``flux_calibration``).
    stamp_window : float, optional
        The model's stamps are multiplied by a circular window starting at this fraction of
        the half-width (metadata ``stamp_window``, :func:`galsim_hub.backends.base.stamp_window`).
    overwrite : bool
        Replace an existing ``output_dir``; otherwise an existing directory is an error.

    Returns
    -------
    pathlib.Path
        The model directory.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir} exists; pass overwrite=True to replace it")
    names = [c["name"] for c in conditions]
    lows = np.array([c["min"] for c in conditions], np.float64)
    highs = np.array([c["max"] for c in conditions], np.float64)
    if condition_mean is None:
        condition_mean = 0.5 * (lows + highs)
    if condition_std is None:
        condition_std = np.maximum(0.5 * (highs - lows), 1e-6)
    if len(condition_mean) != len(names) or len(condition_std) != len(names):
        raise ValueError("condition_mean and condition_std need one value per condition")

    generator = keras_generator(flow, decoder, encoder, condition_mean, condition_std)
    if generator is not None:
        model_format = KERAS_FORMAT_VERSION
    else:
        model_format = MODEL_FORMAT_VERSION if bands is None else MULTIBAND_FORMAT_VERSION
    metadata = {
        "format": model_format,
        "name": name,
        "version": str(version),
        "description": description,
        "stamp_size": int(stamp_size),
        "pixel_scale": float(pixel_scale),
        "flux_units": flux_units,
        "zero_point": None if zero_point is None else float(zero_point),
        "latent_dim": int(latent_dim),
        "conditions": [
            {
                "name": c["name"],
                "unit": c.get("unit", ""),
                "description": c.get("description", ""),
                "min": float(c["min"]),
                "max": float(c["max"]),
            }
            for c in conditions
        ],
        "condition_mean": [float(v) for v in condition_mean],
        "condition_std": [float(v) for v in condition_std],
        "signatures": ["sample", "decode"] + (["encode"] if encoder is not None else []),
        "training": training or {},
        "license": license,
        "citation": citation,
        "created_by": f"galsim-hub {__version__}",
    }
    if bands is not None:
        metadata["bands"] = [
            {key: band[key] for key in ("name", "effective_wavelength", "zero_point", "bandpass")} for band in bands
        ]
    if flux_calibration is not None:
        metadata["flux_calibration"] = {
            "condition": flux_calibration,
            "description": f"stamps are rescaled to the flux of the catalog's {flux_calibration} "
            "(with zero_point) unless flux= or mag= is given",
        }
    if stamp_window is not None:
        metadata["stamp_window"] = {"inner": float(stamp_window)}
    if generator is not None:
        metadata["keras_model"] = KERAS_MODEL_FILE
    validate_metadata(metadata, source=str(output_dir))

    networks = generator or _PlainNetworks(flow, decoder, encoder, condition_mean, condition_std)
    module = _ExportModule(networks, stamp_size, None if bands is None else len(bands), encoder is not None)
    signatures = _signatures(module, names, int(latent_dim))

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    follow_umask(staging)
    try:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        if generator is not None:
            generator.save(staging / KERAS_MODEL_FILE)
        (staging / MODEL_METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        (staging / "README.md").write_text(card if card is not None else default_card(metadata))
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def default_card(metadata: dict) -> str:
    """A minimal model card generated from the metadata.

    Parameters
    ----------
    metadata : dict
        The ``galsim_hub.json`` content.

    Returns
    -------
    str
        Markdown text listing inputs, output and training of the model.
    """
    rows = "\n".join(
        f"| `{c['name']}` | {c['unit']} | {c['min']:.4g} | {c['max']:.4g} | {c['description']} |"
        for c in metadata["conditions"]
    )
    training = json.dumps(metadata.get("training", {}), indent=2)
    return (
        f"# {metadata['name']} {metadata['version']}\n\n{metadata.get('description', '')}\n\n"
        f"## Inputs (catalog columns)\n\n| column | unit | min | max | description |\n"
        f"| --- | --- | --- | --- | --- |\n{rows}\n\n"
        f"## Output\n\n{metadata['stamp_size']}x{metadata['stamp_size']} stamps at "
        f"{metadata['pixel_scale']} arcsec/pixel of the noise-free, PSF-deconvolved light profile, "
        f"in {metadata['flux_units']} (zero point {metadata.get('zero_point')}). "
        f"Latent dimension {metadata['latent_dim']}.\n\n"
        f"## Training\n\n```json\n{training}\n```\n\n"
        f"## Licence and citation\n\n{metadata['license']}. {metadata['citation']}\n"
    )
