"""Load a model directory and expose one batched call: conditions + base noise -> images.

Two on-disk formats are read:

format 1
    A TF2 SavedModel with the ``sample`` and ``decode`` signatures and ``galsim_hub.json``
    (written by :func:`galsim_hub.training.fitting.export.export_model`).
format 2
    The same, and with ``bands`` in ``galsim_hub.json`` a multi-band model whose ``sample``
    and ``decode`` signatures return ``[N, S, S, B]`` images, one channel per band.
TF1 Hub format
    A directory with ``tfhub_module.pb`` such as the published ``Lanusse2020`` module, opened
    with ``tensorflow_hub.load``; its ``default`` signature takes the condition columns and
    the base noise ``random_normal`` and returns ``[N, S, S, 1]`` stamps.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

from galsim_hub.backends.base import ModelRunner, load_or_explain, missing_directory_error
from galsim_hub.backends.tf1_hub import attached_geometry, is_tf1_hub_module
from galsim_hub.errors import MetadataError
from galsim_hub.metadata import (
    MODEL_FORMAT_VERSION,
    MODEL_METADATA_FILE,
    NOISE_INPUT,
    SUPPORTED_FORMATS,
    read_metadata,
    validate_metadata,
)

TF1_NOISE_INPUT = "random_normal"
TF1_SIGNATURE = "default"


def default_device() -> str:
    """The TensorFlow device used when none is asked for: the first GPU, else the CPU."""
    import tensorflow as tf

    return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"


def _input_specs(signature) -> dict:
    return dict(signature.structured_input_signature[1])


class LoadedModel(ModelRunner):
    """A model loaded on TensorFlow: one call maps conditions and base noise to images.

    Parameters
    ----------
    model_dir : str or os.PathLike
        The model directory (format 1, or TF1 Hub format).
    metadata : dict, optional
        For TF1 Hub modules: metadata that completes what the module says of itself (index
        entries carry the training ranges and units that such modules cannot store).
        Format-1 models describe themselves in ``galsim_hub.json`` and ignore it.
    device : str, optional
        TensorFlow device for the computation, e.g. ``"/GPU:0"`` or ``"/CPU:0"``; by default
        the first GPU TensorFlow sees, else the CPU.
    """

    def __init__(self, model_dir: str | os.PathLike, metadata: dict | None = None, device: str | None = None):
        from galsim_hub.backends.tf_quiet import import_tensorflow

        tf = import_tensorflow()
        self.directory = Path(model_dir)
        if not self.directory.is_dir():
            raise missing_directory_error(self.directory)
        self.device = device or default_device()
        if (self.directory / MODEL_METADATA_FILE).is_file():
            self.metadata = read_metadata(self.directory)
            self.format = f"galsim-hub-{self.metadata['format']}"
            with tf.device(self.device):
                self._saved_model = load_or_explain(lambda: tf.saved_model.load(str(self.directory)), self.directory)
            self._signature = self._require_signature("sample")
            self._noise_input = NOISE_INPUT
            self._output = "image"
        elif is_tf1_hub_module(self.directory):
            import tensorflow_hub as hub

            self.format = "tf1-hub"
            with tf.device(self.device):
                self._saved_model = load_or_explain(lambda: hub.load(str(self.directory)), self.directory)
            self._signature = self._require_signature(TF1_SIGNATURE)
            self._noise_input = TF1_NOISE_INPUT
            self._output = TF1_SIGNATURE
            self.metadata = self._tf1_metadata(metadata)
        else:
            raise MetadataError(
                f"{self.directory} is not a galsim-hub model: it has neither {MODEL_METADATA_FILE} "
                f"(formats {', '.join(map(str, SUPPORTED_FORMATS))}) nor tfhub_module.pb (TF1 Hub format)"
            )
        self._describe()
        self._check_signature()

    def _require_signature(self, name: str):
        signatures = self._saved_model.signatures
        if name not in signatures:
            raise MetadataError(f"{self.directory}: the model has no '{name}' signature (it has {sorted(signatures)})")
        return signatures[name]

    def _tf1_metadata(self, override: dict | None) -> dict:
        """Metadata of a TF1 Hub module: its signature and attachments, then ``override``."""
        specs = _input_specs(self._signature)
        if TF1_NOISE_INPUT not in specs:
            raise MetadataError(f"{self.directory}: TF1 Hub module lacks the '{TF1_NOISE_INPUT}' input")
        output_shape = self._signature.structured_outputs[TF1_SIGNATURE].shape
        metadata = {
            "format": MODEL_FORMAT_VERSION,
            "name": self.directory.name,
            "version": "unknown",
            "latent_dim": specs[TF1_NOISE_INPUT].shape[-1],
            "stamp_size": output_shape[1],
            "conditions": [
                {"name": name, "unit": "", "description": "", "min": None, "max": None}
                for name in specs
                if name != TF1_NOISE_INPUT
            ],
            "flux_units": "unknown",
        }
        metadata.update(attached_geometry(self.directory))
        if override:
            metadata.update(copy.deepcopy(override))
            metadata["format"] = MODEL_FORMAT_VERSION
        if "bands" in metadata:
            raise MetadataError(f"{self.directory}: a TF1 Hub module is single-band; its metadata cannot give 'bands'")
        if "pixel_scale" not in metadata:
            raise MetadataError(
                f"{self.directory}: the TF1 Hub module attaches no pixel size and no metadata was "
                "given; load it through its hub: handle or pass metadata={'pixel_scale': ...}"
            )
        return validate_metadata(metadata, source=str(self.directory))

    def _check_signature(self) -> None:
        """Check that the signature's inputs and output agree with the metadata."""
        import tensorflow as tf

        specs = _input_specs(self._signature)
        expected = set(self.conditions) | {self._noise_input}
        if set(specs) != expected:
            raise MetadataError(
                f"{self.directory}: metadata conditions {sorted(self.conditions)} do not match the model "
                f"inputs {sorted(set(specs) - {self._noise_input})}"
            )
        wrong = {name: spec.dtype.name for name, spec in specs.items() if spec.dtype != tf.float32}
        if wrong:
            raise MetadataError(
                f"{self.directory}: the model's inputs must be float32, but "
                + ", ".join(f"'{name}' is {dtype}" for name, dtype in sorted(wrong.items()))
            )
        outputs = self._signature.structured_outputs
        if self._output not in outputs:
            raise MetadataError(
                f"{self.directory}: the model's signature must return '{self._output}', it returns {sorted(outputs)}"
            )
        latent = specs[self._noise_input].shape[-1]
        if latent is not None and latent != self.latent_dim:
            raise MetadataError(
                f"{self.directory}: metadata latent_dim {self.latent_dim} but the model takes noise of size {latent}"
            )
        shape = outputs[self._output].shape
        if len(shape) > 1 and shape[1] is not None and shape[1] != self.stamp_size:
            raise MetadataError(
                f"{self.directory}: metadata stamp_size {self.stamp_size} but the model outputs {shape[1]} pixels"
            )
        if self.bands is not None and (len(shape) != 4 or shape[3] not in (None, len(self.bands))):
            raise MetadataError(
                f"{self.directory}: the metadata lists {len(self.bands)} bands, so the '{self._output}' output "
                f"must be [N, S, S, {len(self.bands)}], but the model declares {shape}"
            )

    def sample_images(self, conditions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Decode one batch.

        Parameters
        ----------
        conditions : numpy.ndarray
            ``[N, C]`` condition values in raw catalog units, columns in the order of
            :attr:`conditions`.
        noise : numpy.ndarray
            ``[N, L]`` standard-normal base noise of the flow.

        Returns
        -------
        numpy.ndarray
            ``[N, S, S, B]`` float32 light profiles (``B = 1`` for a single-band model).

        Raises
        ------
        CatalogError
            If a condition is finite but beyond float32 (e.g. ``1e300``).
        MetadataError
            If the model returns images of the wrong size, or NaN or infinite pixels.

        Warns
        -----
        ModelOutputWarning
            If the model returns negative pixels (they are passed on unchanged).
        """
        import tensorflow as tf

        conditions = self._float32_conditions(conditions)
        inputs = {name: tf.constant(conditions[:, i]) for i, name in enumerate(self.conditions)}
        inputs[self._noise_input] = tf.constant(np.asarray(noise, dtype=np.float32))
        with tf.device(self.device):
            images = self._signature(**inputs)[self._output]
        return self._checked_images(images.numpy(), len(conditions))

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Decode latent vectors ``z`` ``[N, L]`` into ``[N, S, S, B]`` images.

        Only galsim-hub format models (not TF1 Hub modules) have this ``decode`` signature.
        """
        import tensorflow as tf

        with tf.device(self.device):
            images = self._format1_signature("decode")(z=tf.constant(np.asarray(z, np.float32)))["image"]
        return self._windowed(images.numpy().reshape(len(z), self.stamp_size, self.stamp_size, self.n_bands))

    def encode(self, image: np.ndarray, psf: np.ndarray) -> np.ndarray:
        """Encode observed stamps and their PSFs ``[N, S, S]`` into posterior-mean latents ``[N, L]``.

        Only single-band galsim-hub models exported with an encoder have this ``encode`` signature.
        """
        import tensorflow as tf

        inputs = {"image": tf.constant(np.asarray(image, np.float32)), "psf": tf.constant(np.asarray(psf, np.float32))}
        with tf.device(self.device):
            return self._format1_signature("encode")(**inputs)["z"].numpy()

    def _format1_signature(self, name: str):
        if not self.format.startswith("galsim-hub-"):
            raise MetadataError(f"{self.directory}: a {self.format} model has no {name} signature")
        return self._require_signature(name)
