"""Forward model and loss terms of the VAE (Lanusse et al. 2021, section 3).

All functions are pure TensorFlow functions on batched tensors, usable inside ``tf.function``.

Conventions
-----------
* Images are ``[B, S, S]`` float32 arrays; PSFs are ``[B, S, S]`` with unit sum and their centre
  at pixel ``(S // 2, S // 2)``. Any further leading axes (a band axis ``[B, bands, S, S]``, see
  :func:`bands_first`) are carried through: the functions act on the last two axes.
* A noise power spectrum ``noise_ps`` is ``[B, S, S // 2 + 1]`` in the ``rfft2`` layout and is
  normalised so that white noise of pixel variance ``v`` has ``noise_ps == v`` everywhere: it is
  the eigenvalue spectrum of the (circulant) pixel covariance matrix.
"""

from __future__ import annotations

import math

import tensorflow as tf

__all__ = [
    "bands_first",
    "psf_to_kspace",
    "convolve_with_psf",
    "pixel_log_likelihood",
    "fourier_log_likelihood",
    "gaussian_kl_divergence",
    "free_bits_kl",
    "total_variation",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _stamp_size(images: tf.Tensor) -> int:
    size = images.shape[-1]
    if size is None or images.shape[-2] != size:
        raise ValueError(f"images must be square [B, S, S] with a static S; got shape {images.shape}")
    return int(size)


def bands_first(images: tf.Tensor) -> tf.Tensor:
    """Move the band axis of band-last arrays in front of the image axes.

    Parameters
    ----------
    images : tf.Tensor
        ``[N, S, S]`` (one band) or ``[N, S, S, bands]`` images, PSFs or ``[N, S, S // 2 + 1(,
        bands)]`` noise power spectra, as data sets store them.

    Returns
    -------
    tf.Tensor
        ``[N, bands, S, S]`` (``bands = 1`` for three-dimensional input).
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank == 3:
        return images[:, None]
    return tf.transpose(images, [0, 3, 1, 2])


def psf_to_kspace(psf: tf.Tensor) -> tf.Tensor:
    """Fourier transform of centred PSF images, with the centre moved to the origin.

    Parameters
    ----------
    psf : tf.Tensor
        ``[B, S, S]`` PSF images centred at ``(S // 2, S // 2)``.

    Returns
    -------
    tf.Tensor
        ``[B, S, S // 2 + 1]`` complex64 transfer functions (``rfft2`` layout).
    """
    psf = tf.convert_to_tensor(psf, tf.float32)
    size = _stamp_size(psf)
    # Equivalent of numpy.fft.ifftshift for both even and odd sizes: pixel S//2 goes to 0.
    at_origin = tf.roll(psf, shift=[-(size // 2), -(size // 2)], axis=[-2, -1])
    return tf.signal.rfft2d(at_origin)


def convolve_with_psf(images: tf.Tensor, psf: tf.Tensor) -> tf.Tensor:
    """Convolve each image with its own PSF through the FFT (periodic boundaries).

    Parameters
    ----------
    images : tf.Tensor
        ``[B, S, S]`` (or ``[B, S, S, 1]``, or ``[B, bands, S, S]``) light profiles.
    psf : tf.Tensor
        PSF images of the same shape, centred at ``(S // 2, S // 2)``.

    Returns
    -------
    tf.Tensor
        The convolved images, ``[B, S, S]`` (``[B, bands, S, S]``). A PSF that is a delta function at the centre returns the
        images unchanged.
    """
    images = _without_channel(images)
    size = _stamp_size(images)
    product = tf.signal.rfft2d(images) * psf_to_kspace(psf)
    return tf.signal.irfft2d(product, fft_length=[size, size])


def pixel_log_likelihood(observed: tf.Tensor, model: tf.Tensor, noise_var: tf.Tensor) -> tf.Tensor:
    """Gaussian log-likelihood with a diagonal pixel covariance (paper eq. 4).

    Parameters
    ----------
    observed, model : tf.Tensor
        ``[B, S, S]`` (or ``[B, bands, S, S]``) observed and model (PSF-convolved) images.
    noise_var : tf.Tensor
        Pixel noise variance: ``[B]`` (one value per galaxy) or any shape that broadcasts to
        the images (``[B, S, S]`` per pixel, ``[B, bands, 1, 1]`` per band).

    Returns
    -------
    tf.Tensor
        ``[B]`` (``[B, bands]``) log-likelihoods, summed over pixels and including the
        normalisation.
    """
    observed = tf.convert_to_tensor(observed, tf.float32)
    model = tf.convert_to_tensor(model, tf.float32)
    noise_var = tf.convert_to_tensor(noise_var, tf.float32)
    if noise_var.shape.rank == 1:
        noise_var = noise_var[:, None, None]
    noise_var = tf.broadcast_to(noise_var, tf.shape(observed))
    residual = observed - model
    per_pixel = tf.square(residual) / noise_var + tf.math.log(noise_var) + _LOG_2PI
    return -0.5 * tf.reduce_sum(per_pixel, axis=[-2, -1])


def _rfft_weights(size: int) -> tf.Tensor:
    """Multiplicity of each ``rfft2`` column in the full Fourier plane of a real image."""
    n_cols = size // 2 + 1
    weights = [2.0] * n_cols
    weights[0] = 1.0
    if size % 2 == 0:
        weights[-1] = 1.0
    return tf.constant(weights, tf.float32)


def fourier_log_likelihood(observed: tf.Tensor, model: tf.Tensor, noise_ps: tf.Tensor) -> tf.Tensor:
    """Gaussian log-likelihood with a Fourier-diagonal covariance (paper eq. 5).

    The noise is stationary with power spectrum ``noise_ps`` (see the module conventions:
    white noise of variance ``v`` has ``noise_ps == v``), so the pixel covariance is circulant
    with eigenvalues ``noise_ps`` and

    ``log L = -1/2 sum_k [ |R_k|^2 / (S^2 P_k) + log(2 pi P_k) ]``

    over the full Fourier plane, where ``R = DFT(observed - model)``. For white noise this equals
    :func:`pixel_log_likelihood` exactly (Parseval).

    Parameters
    ----------
    observed, model : tf.Tensor
        ``[B, S, S]`` observed and model (PSF-convolved) images.
    noise_ps : tf.Tensor
        ``[B, S, S // 2 + 1]`` noise power spectra, strictly positive.

    Returns
    -------
    tf.Tensor
        ``[B]`` log-likelihoods.
    """
    observed = tf.convert_to_tensor(observed, tf.float32)
    model = tf.convert_to_tensor(model, tf.float32)
    noise_ps = tf.convert_to_tensor(noise_ps, tf.float32)
    size = _stamp_size(observed)
    residual_k = tf.signal.rfft2d(observed - model)
    power = tf.square(tf.math.real(residual_k)) + tf.square(tf.math.imag(residual_k))
    per_mode = power / (float(size * size) * noise_ps) + tf.math.log(noise_ps) + _LOG_2PI
    weights = _rfft_weights(size)
    return -0.5 * tf.reduce_sum(per_mode * weights, axis=[-2, -1])


def gaussian_kl_divergence(mean: tf.Tensor, log_scale: tf.Tensor) -> tf.Tensor:
    """KL divergence of ``N(mean, exp(log_scale)^2)`` from the standard normal prior.

    Parameters
    ----------
    mean, log_scale : tf.Tensor
        ``[B, L]`` parameters of a diagonal Gaussian posterior.

    Returns
    -------
    tf.Tensor
        ``[B, L]`` KL divergence per latent dimension (nats).
    """
    variance = tf.exp(2.0 * log_scale)
    return 0.5 * (tf.square(mean) + variance - 1.0) - log_scale


def free_bits_kl(kl_per_dimension: tf.Tensor, free_bits: float) -> tf.Tensor:
    """Free-bits KL term of the ELBO (paper eq. 10): ``max(free_bits, KL)`` per galaxy.

    The clamp applies to the total KL of each galaxy (summed over latent dimensions), as in the
    paper's ``max(lambda, D_KL)``: below ``free_bits`` nats the KL costs a constant and receives
    no gradient, so the encoder can use that much information for free.

    Parameters
    ----------
    kl_per_dimension : tf.Tensor
        ``[B, L]`` KL divergence per latent dimension.
    free_bits : float
        Threshold in nats (``0`` gives the plain ELBO).

    Returns
    -------
    tf.Tensor
        ``[B]`` clamped KL per galaxy.
    """
    total = tf.reduce_sum(kl_per_dimension, axis=-1)
    return tf.maximum(total, tf.cast(free_bits, total.dtype))


def total_variation(images: tf.Tensor) -> tf.Tensor:
    """Anisotropic total variation ``sum |dI/dx| + |dI/dy|`` of each image.

    Parameters
    ----------
    images : tf.Tensor
        ``[B, S, S]``, ``[B, S, S, 1]`` or ``[B, bands, S, S]`` images.

    Returns
    -------
    tf.Tensor
        ``[B]`` total variation, summed over bands (zero for a constant image).
    """
    images = _without_channel(images)
    dy = tf.abs(images[..., 1:, :] - images[..., :-1, :])
    dx = tf.abs(images[..., :, 1:] - images[..., :, :-1])
    axes = list(range(1, images.shape.rank))
    return tf.reduce_sum(dy, axis=axes) + tf.reduce_sum(dx, axis=axes)


def _without_channel(images: tf.Tensor) -> tf.Tensor:
    """``[B, S, S, 1]`` -> ``[B, S, S]``; other shapes unchanged."""
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank == 4 and images.shape[-1] == 1:
        images = tf.squeeze(images, axis=-1)
    return images
