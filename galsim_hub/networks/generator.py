"""The whole generative model as one Keras object: conditions + base noise -> light profiles.

`GalaxyGenerator` holds the conditional flow, the decoder (and optionally the encoder) and the
standardisation of the conditions. It is what a format-3 model stores as its Keras-native file
(``model.keras``: its configuration and weights), which any Keras 3 backend (TensorFlow, JAX,
PyTorch) loads with :func:`load_generator`.
"""

from __future__ import annotations

import os

import keras
import numpy as np
from keras import ops

from galsim_hub.networks.convolutional import Decoder, Encoder
from galsim_hub.networks.flow import ConditionalMAF

__all__ = ["GalaxyGenerator", "load_generator", "KERAS_MODEL_FILE"]

#: The Keras-native file of a format-3 model directory.
KERAS_MODEL_FILE = "model.keras"


@keras.saving.register_keras_serializable(package="galsim_hub")
class GalaxyGenerator(keras.Model):
    """Flow, decoder and condition standardisation of a galsim-hub model.

    Parameters
    ----------
    decoder : dict
        Architecture of the :class:`~galsim_hub.networks.convolutional.Decoder`.
    flow : dict
        Architecture of the :class:`~galsim_hub.networks.flow.ConditionalMAF`.
    condition_mean, condition_std : sequence of float
        Standardisation of the raw catalog conditions: the flow sees ``(c - mean) / std``.
    encoder : dict, optional
        Architecture of the :class:`~galsim_hub.networks.convolutional.Encoder`, when the model
        can encode observed stamps.
    """

    def __init__(
        self,
        decoder: dict,
        flow: dict,
        condition_mean,
        condition_std,
        encoder: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.decoder_architecture = dict(decoder)
        self.flow_architecture = dict(flow)
        self.encoder_architecture = None if encoder is None else dict(encoder)
        self.latent_dim = int(flow["latent_dim"])
        self.n_conditions = int(flow["n_conditions"])
        self.stamp_size = int(decoder["stamp_size"])
        self.n_bands = int(decoder.get("n_bands", 1))
        self.decoder = Decoder(**decoder)
        self.flow = ConditionalMAF(**flow)
        self.encoder = None if encoder is None else Encoder(**encoder)
        self.condition_mean = self.add_weight(
            shape=(self.n_conditions,),
            initializer=keras.initializers.Constant(np.asarray(condition_mean, np.float32)),
            trainable=False,
            name="condition_mean",
        )
        self.condition_std = self.add_weight(
            shape=(self.n_conditions,),
            initializer=keras.initializers.Constant(np.asarray(condition_std, np.float32)),
            trainable=False,
            name="condition_std",
        )
        # Create the variables by symbolic calls (shapes only: no computation on any backend).
        self.decoder(keras.KerasTensor((None, self.latent_dim)))
        if self.encoder is not None:
            stamp = keras.KerasTensor((None, self.stamp_size, self.stamp_size, self.n_bands))
            self.encoder((stamp, stamp))
        self.built = True

    def get_config(self) -> dict:
        """The constructor arguments (Keras serialisation)."""
        return {
            "name": self.name,
            "decoder": self.decoder_architecture,
            "flow": self.flow_architecture,
            "encoder": self.encoder_architecture,
            "condition_mean": [float(v) for v in ops.convert_to_numpy(self.condition_mean)],
            "condition_std": [float(v) for v in ops.convert_to_numpy(self.condition_std)],
        }

    def decode(self, z):
        """Non-negative light profiles ``[N, S, S, B]`` of latent codes ``z`` ``[N, L]``."""
        # The decoder ends in a softplus; the clamp only guards against round-off.
        return ops.maximum(self.decoder(z), 0.0)

    def sample(self, conditions, noise):
        """Light profiles ``[N, S, S, B]`` of raw conditions ``[N, C]`` and base noise ``[N, L]``."""
        standardised = (ops.convert_to_tensor(conditions, "float32") - self.condition_mean) / self.condition_std
        return self.decode(self.flow.sample(noise, standardised))

    def encode(self, image, psf):
        """Posterior-mean latent codes ``[N, L]`` of observed stamps and their PSFs ``[N, S, S(, B)]``."""
        if self.encoder is None:
            raise ValueError("this model was exported without an encoder")
        return self.encoder((image, psf))[0]

    def call(self, inputs):
        """``inputs = (conditions, noise)`` -> :meth:`sample`."""
        conditions, noise = inputs
        return self.sample(conditions, noise)


def load_generator(path: str | os.PathLike) -> GalaxyGenerator:
    """Read a :class:`GalaxyGenerator` from its Keras-native file, on the current Keras backend."""
    generator = keras.saving.load_model(os.fspath(path), compile=False, safe_mode=True)
    if not isinstance(generator, GalaxyGenerator):
        raise TypeError(f"{path} holds a {type(generator).__name__}, not a galsim-hub GalaxyGenerator")
    return generator
