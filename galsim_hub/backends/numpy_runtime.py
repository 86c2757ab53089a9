"""The NumPy backend: a format-3 model run without any machine-learning framework.

It reads the model's Keras-native file with ``zipfile`` and ``h5py`` and evaluates the networks
in NumPy (:mod:`galsim_hub.backends.numpy_networks`): no TensorFlow, JAX, PyTorch or Keras is
imported, so a process starts in a fraction of the time of the others, and GalSim's config
multiprocessing can fork after a model ran (there is no framework state to break in the child).
It runs on the CPU, with NumPy's BLAS threads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from galsim_hub.backends.base import ModelRunner, keras_model_metadata, load_or_explain
from galsim_hub.errors import MetadataError

__all__ = ["NumpyModel"]


class NumpyModel(ModelRunner):
    """A format-3 model evaluated in NumPy.

    It offers what :class:`~galsim_hub.backends.tensorflow.LoadedModel` offers
    (:meth:`sample_images`, :meth:`decode`, :meth:`encode`) with the same checks of the output.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A format-3 model directory.
    device : str, optional
        Only ``"cpu"`` (the default).
    """

    backend = "numpy"

    def __init__(self, model_dir: str | os.PathLike, device: str | None = None):
        self.directory = Path(model_dir)
        if device not in (None, "cpu"):
            raise ValueError(f"the numpy backend runs on the CPU only, not on device {device!r}")
        self.device = "cpu"
        self.metadata = keras_model_metadata(self.directory, "numpy")
        self.format = f"galsim-hub-{self.metadata['format']}"
        self._describe()
        path = self.directory / self.metadata["keras_model"]
        from galsim_hub.backends.numpy_networks import GeneratorWeights

        self.networks = load_or_explain(lambda: GeneratorWeights(path), self.directory)
        flow, decoder = self.networks.config["flow"], self.networks.config["decoder"]
        self._check_networks(
            path, flow["n_conditions"], flow["latent_dim"], decoder["stamp_size"], decoder.get("n_bands", 1)
        )

    def sample_images(self, conditions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Decode one batch: ``[N, C]`` raw conditions and ``[N, L]`` base noise -> ``[N, S, S, B]``.

        The checks and the stamp window are those of the TensorFlow backend.
        """
        conditions = self._float32_conditions(conditions)
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite output is reported by the check
            images = self.networks.sample(conditions, np.asarray(noise, np.float32))
        return self._checked_images(images, len(conditions))

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Decode latent vectors ``z`` ``[N, L]`` into ``[N, S, S, B]`` images."""
        return self._windowed(self.networks.decode(np.asarray(z, np.float32)))

    def encode(self, image: np.ndarray, psf: np.ndarray) -> np.ndarray:
        """Encode observed stamps and their PSFs ``[N, S, S]`` into posterior-mean latents ``[N, L]``."""
        if self.networks.encoder is None:
            raise MetadataError(f"{self.directory}: the model was exported without an encoder (no encode signature)")
        return self.networks.encode(image, psf)
