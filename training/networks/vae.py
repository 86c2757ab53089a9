"""ResNet variational auto-encoder of galaxy images (Lanusse et al. 2021, section 3.2).

The training wrapper of the encoder and decoder of :mod:`galsim_hub.networks.convolutional`:
trained with the forward model of :mod:`galsim_hub.training.networks.likelihood`, the decoder
learns deconvolved galaxies.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from galsim_hub.networks.convolutional import Decoder, Encoder, architecture_of

__all__ = ["VAE"]


class VAE(keras.Model):
    """Encoder and decoder of the galaxy VAE.

    Parameters
    ----------
    stamp_size : int
        Side of the square stamps, divisible by ``2**num_stages``.
    latent_dim : int
        Size of the latent code (paper: 16).
    num_stages : int
        Down-sampling stages (paper: 7 for 128x128 stamps).
    base_depth, max_depth : int
        Channels of the first and deepest stages (paper: 16 and 512).
    blocks_per_stage : int
        Residual blocks per stage.
    activation : str
        Keras activation name.
    image_scale : float
        Flux scale of the images: inputs are divided and outputs multiplied by it.
    n_bands : int
        Bands of the images: the encoder reads ``[N, S, S, n_bands]`` stamps and PSFs, the
        decoder writes ``[N, S, S, n_bands]`` profiles, one morphology in every band.

    Examples
    --------
    >>> vae = VAE(stamp_size=32, latent_dim=8, num_stages=3, base_depth=8, max_depth=32)
    >>> mean, log_scale = vae.encode(images, psfs)   # doctest: +SKIP
    >>> profiles = vae.decode(mean)                  # [N, 32, 32, 1], non-negative
    """

    def __init__(
        self,
        stamp_size: int,
        latent_dim: int = 16,
        num_stages: int = 7,
        base_depth: int = 16,
        max_depth: int = 512,
        blocks_per_stage: int = 1,
        activation: str = "elu",
        image_scale: float = 1.0,
        n_bands: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.architecture: dict[str, Any] = architecture_of(
            stamp_size,
            latent_dim,
            num_stages,
            base_depth,
            max_depth,
            blocks_per_stage,
            activation,
            image_scale,
            n_bands,
        )
        self.n_bands = int(n_bands)
        self.stamp_size = int(stamp_size)
        self.latent_dim = int(latent_dim)
        self.encoder = Encoder(**self.architecture)
        self.decoder = Decoder(**self.architecture)
        size = self.stamp_size
        delta_psf = np.zeros((1, size, size, self.n_bands), np.float32)
        delta_psf[0, size // 2, size // 2] = 1.0
        self.reconstruct(np.zeros_like(delta_psf), delta_psf)  # create the variables
        self.built = True

    @classmethod
    def from_architecture(cls, architecture: dict) -> "VAE":
        """Build a VAE from the dict stored next to its checkpoints."""
        return cls(**architecture)

    def encode(self, image, psf):
        """Posterior ``(mean, log_scale)``, each ``[N, latent_dim]``."""
        return self.encoder((image, psf))

    def encode_mean(self, image, psf):
        """Posterior mean ``[N, latent_dim]`` (the ``encode`` signature of exported models)."""
        return self.encoder((image, psf))[0]

    def decode(self, z):
        """Non-negative light profiles ``[N, S, S, n_bands]`` of codes ``z``."""
        return self.decoder(z)

    def reconstruct(self, image, psf, sample: bool = False, seed=None):
        """Deconvolved reconstructions ``[N, S, S]`` (``[N, S, S, n_bands]``) of noisy images.

        Parameters
        ----------
        image, psf : array_like
            ``[N, S, S]`` (``[N, S, S, n_bands]``) noisy convolved stamps and their PSFs.
        sample : bool
            Decode a posterior sample instead of the posterior mean.
        seed : int or tf.Tensor, optional
            Stateless seed of the posterior sample.
        """
        mean, log_scale = self.encode(image, psf)
        z = mean
        if sample:
            seed = [0, 0] if seed is None else seed
            if isinstance(seed, int):
                seed = [seed, 0]
            z = mean + tf.exp(log_scale) * tf.random.stateless_normal(tf.shape(mean), seed)
        profiles = self.decode(z)
        return profiles[..., 0] if self.n_bands == 1 else profiles

    def call(self, inputs):
        """``inputs = (image, psf)`` -> reconstructions ``[N, S, S]`` (posterior mean)."""
        image, psf = inputs
        return self.reconstruct(image, psf)
