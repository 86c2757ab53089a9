"""Convolutional networks of the galaxy VAE (Lanusse et al. 2021, section 3.2): encoder and decoder.

The encoder sees the noisy, PSF-convolved stamp and, through its own convolution branch, the
PSF image; it outputs a diagonal Gaussian posterior over the latent code. The decoder maps a
code to a non-negative (softplus) light profile *before* PSF convolution (it learns deconvolved
galaxies when trained with :mod:`galsim_hub.training.networks.likelihood`).

Written with Keras 3 operations only (``keras.ops``), so the same layers and saved files run on
the TensorFlow, JAX and PyTorch backends of Keras.
"""

from __future__ import annotations

import keras
from keras import ops

from galsim_hub.networks.layout import stage_depths

__all__ = ["ResidualBlock", "Encoder", "Decoder", "stage_depths", "architecture_of"]


class ResidualBlock(keras.layers.Layer):
    """Pre-activation residual block ``x + conv(act(conv(act(x))))``.

    The second convolution starts at zero, so a fresh block is the identity (stable training of
    deep stacks).
    """

    def __init__(self, depth: int, activation: str = "elu", **kwargs):
        super().__init__(**kwargs)
        self.depth = depth
        self.activation = keras.activations.get(activation)
        self.conv1 = keras.layers.Conv2D(depth, 3, padding="same")
        self.conv2 = keras.layers.Conv2D(depth, 3, padding="same", kernel_initializer="zeros")

    def call(self, x):
        return x + self.conv2(self.activation(self.conv1(self.activation(x))))


def _named_layers(owner, prefix: str, layers: list) -> list:
    """Also set each layer as ``owner.<prefix><i>``: TF checkpoints do not follow Keras lists."""
    for i, layer in enumerate(layers):
        setattr(owner, f"{prefix}{i}", layer)
    return layers


def _checkarchitecture_of(stamp_size: int, num_stages: int) -> None:
    if stamp_size % (2**num_stages):
        raise ValueError(f"stamp_size {stamp_size} is not divisible by 2**num_stages = {2**num_stages}")


class Encoder(keras.Model):
    """Image + PSF -> (mean, log_scale) of a diagonal Gaussian posterior over ``latent_dim`` codes.

    Parameters
    ----------
    stamp_size : int
        Side ``S`` of the square stamps, divisible by ``2**num_stages``.
    latent_dim : int
        Size of the latent code.
    num_stages, base_depth, max_depth, blocks_per_stage : int
        ResNet layout (see :func:`stage_depths`).
    activation : str
        Keras activation name.
    image_scale : float
        Images are divided by this before the first convolution.
    """

    def __init__(
        self,
        stamp_size: int,
        latent_dim: int,
        num_stages: int,
        base_depth: int,
        max_depth: int,
        blocks_per_stage: int = 1,
        activation: str = "elu",
        image_scale: float = 1.0,
        n_bands: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _checkarchitecture_of(stamp_size, num_stages)
        self.architecture = architecture_of(
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
        self.stamp_size = stamp_size
        self.latent_dim = latent_dim
        self.image_scale = float(image_scale)
        self.activation = keras.activations.get(activation)
        depths = stage_depths(num_stages, base_depth, max_depth)
        self.image_stem = keras.layers.Conv2D(base_depth, 3, padding="same")
        self.psf_stem = keras.layers.Conv2D(base_depth, 3, padding="same")
        self.merge = keras.layers.Conv2D(depths[0], 1)
        self.stage_blocks = [
            _named_layers(
                self, f"stage{i}_block", [ResidualBlock(depths[i], activation) for _ in range(blocks_per_stage)]
            )
            for i in range(num_stages)
        ]
        self.downsamplers = _named_layers(
            self,
            "downsample",
            [keras.layers.Conv2D(depths[i + 1], 3, strides=2, padding="same") for i in range(num_stages)],
        )
        self.flatten = keras.layers.Flatten()
        self.head = keras.layers.Dense(2 * latent_dim)

    def call(self, inputs):
        """``inputs = (image, psf)``, each ``[N, S, S(, bands)]`` -> ``(mean, log_scale)`` ``[N, latent_dim]``.

        One tuple argument, so that SavedModel export can trace the layer.
        """
        image, psf = inputs
        image = _with_channel(image) / self.image_scale
        psf = _with_channel(psf)
        psf = psf / ops.max(psf, axis=(1, 2), keepdims=True)
        x = ops.concatenate([self.image_stem(image), self.psf_stem(psf)], axis=-1)
        x = self.merge(self.activation(x))
        for blocks, down in zip(self.stage_blocks, self.downsamplers):
            for block in blocks:
                x = block(x)
            x = down(self.activation(x))
        params = self.head(self.flatten(self.activation(x)))
        mean, log_scale = ops.split(params, 2, axis=-1)
        # Softly bounded to (-10, 10): an unbounded log-scale can overflow exp() early in
        # training, when the pixel likelihood's gradients are large.
        return mean, 10.0 * ops.tanh(log_scale / 10.0)


class Decoder(keras.Model):
    """Latent code -> non-negative light profiles ``[N, S, S, n_bands]`` (softplus times ``image_scale``).

    Parameters mirror :class:`Encoder`.
    """

    def __init__(
        self,
        stamp_size: int,
        latent_dim: int,
        num_stages: int,
        base_depth: int,
        max_depth: int,
        blocks_per_stage: int = 1,
        activation: str = "elu",
        image_scale: float = 1.0,
        n_bands: int = 1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _checkarchitecture_of(stamp_size, num_stages)
        self.architecture = architecture_of(
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
        self.stamp_size = stamp_size
        self.latent_dim = latent_dim
        self.image_scale = float(image_scale)
        self.activation = keras.activations.get(activation)
        depths = stage_depths(num_stages, base_depth, max_depth)
        self.bottom_size = stamp_size // 2**num_stages
        self.bottom_depth = depths[-1]
        self.project = keras.layers.Dense(self.bottom_size**2 * self.bottom_depth)
        self.upsample = keras.layers.UpSampling2D(2, interpolation="bilinear")
        self.stage_convs = _named_layers(
            self,
            "upsample_conv",
            [keras.layers.Conv2D(depths[i], 3, padding="same") for i in reversed(range(num_stages))],
        )
        self.stage_blocks = [
            _named_layers(
                self, f"upstage{i}_block", [ResidualBlock(depths[i], activation) for _ in range(blocks_per_stage)]
            )
            for i in reversed(range(num_stages))
        ]
        # Start faint (softplus(-3) = 0.05 of image_scale per pixel): a bright flat start makes
        # the first updates push the softplus into saturation, where it never recovers.
        self.to_image = keras.layers.Conv2D(
            n_bands, 3, padding="same", bias_initializer=keras.initializers.Constant(-3.0)
        )

    def call(self, z):
        """Return the ``[N, S, S, n_bands]`` light profiles of codes ``z`` ``[N, latent_dim]``."""
        x = self.project(ops.convert_to_tensor(z, "float32"))
        x = ops.reshape(x, (-1, self.bottom_size, self.bottom_size, self.bottom_depth))
        for conv, blocks in zip(self.stage_convs, self.stage_blocks):
            x = conv(self.upsample(self.activation(x)))
            for block in blocks:
                x = block(x)
        return ops.softplus(self.to_image(self.activation(x))) * self.image_scale


def _with_channel(images):
    images = ops.convert_to_tensor(images, "float32")
    if len(images.shape) == 3:
        images = images[..., None]
    return images


def architecture_of(
    stamp_size, latent_dim, num_stages, base_depth, max_depth, blocks_per_stage, activation, image_scale, n_bands
) -> dict:
    """The constructor arguments of an encoder, decoder or VAE, as plain JSON types."""
    return {
        "stamp_size": int(stamp_size),
        "latent_dim": int(latent_dim),
        "num_stages": int(num_stages),
        "base_depth": int(base_depth),
        "max_depth": int(max_depth),
        "blocks_per_stage": int(blocks_per_stage),
        "activation": activation,
        "image_scale": float(image_scale),
        "n_bands": int(n_bands),
    }
