"""Correctness of the VAE forward model and loss terms (galsim_hub.training.networks.likelihood)."""

import galsim
import numpy as np
import pytest
import scipy.signal
import scipy.stats
import tensorflow as tf

from galsim_hub.training.networks import likelihood as lk


def _compact_images(rng, batch, size):
    """Random images whose light sits well inside the stamp (no periodic wrap-around)."""
    images = np.zeros((batch, size, size), np.float32)
    q = size // 4
    images[:, q : size - q, q : size - q] = rng.random((batch, size - 2 * q, size - 2 * q))
    return images


@pytest.mark.parametrize("size", [16, 15])
def test_fft_convolution_matches_scipy(size):
    rng = np.random.default_rng(1)
    images = _compact_images(rng, 3, size)
    psf = np.zeros((3, size, size), np.float32)
    c, h = size // 2, size // 8
    psf[:, c - h : c + h + 1, c - h : c + h + 1] = rng.random((3, 2 * h + 1, 2 * h + 1))
    psf /= psf.sum(axis=(1, 2), keepdims=True)
    result = lk.convolve_with_psf(images, psf).numpy()
    for i in range(3):
        full = scipy.signal.fftconvolve(images[i], psf[i], mode="full")
        expected = full[c : c + size, c : c + size]
        np.testing.assert_allclose(result[i], expected, atol=1e-5)


def test_delta_psf_is_identity_and_psf_4d_images_accepted():
    rng = np.random.default_rng(2)
    images = rng.random((2, 12, 12)).astype(np.float32)
    psf = np.zeros((2, 12, 12), np.float32)
    psf[:, 6, 6] = 1.0
    out = lk.convolve_with_psf(images[..., None], psf).numpy()
    np.testing.assert_allclose(out, images, atol=1e-5)


def test_convolution_matches_galsim_drawing():
    size, scale = 49, 0.1  # odd: GalSim centres the profiles on pixel S // 2
    galaxy = galsim.Gaussian(sigma=0.4)
    psf = galsim.Gaussian(sigma=0.3)
    gal_img = galaxy.drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
    psf_img = psf.drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
    psf_img = psf_img / psf_img.sum()
    expected = galsim.Convolve(galaxy, psf).drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
    result = lk.convolve_with_psf(gal_img[None].astype(np.float32), psf_img[None].astype(np.float32))
    np.testing.assert_allclose(result.numpy()[0], expected, atol=2e-4 * expected.max())


def test_pixel_likelihood_matches_scipy_normal():
    rng = np.random.default_rng(3)
    obs = rng.normal(size=(2, 5, 5)).astype(np.float32)
    model = rng.normal(size=(2, 5, 5)).astype(np.float32)
    var = np.array([0.5, 2.0], np.float32)
    result = lk.pixel_log_likelihood(obs, model, var).numpy()
    expected = [scipy.stats.norm(model[i], np.sqrt(var[i])).logpdf(obs[i]).sum() for i in range(2)]
    np.testing.assert_allclose(result, expected, rtol=1e-5)
    per_pixel = np.broadcast_to(var[:, None, None], obs.shape)
    np.testing.assert_allclose(lk.pixel_log_likelihood(obs, model, per_pixel).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("size", [8, 7])
def test_fourier_likelihood_equals_pixel_for_white_noise(size):
    rng = np.random.default_rng(4)
    obs = rng.normal(size=(3, size, size)).astype(np.float32)
    model = rng.normal(size=(3, size, size)).astype(np.float32)
    var = np.array([0.3, 1.0, 4.0], np.float32)
    ps = np.broadcast_to(var[:, None, None], (3, size, size // 2 + 1)).astype(np.float32)
    np.testing.assert_allclose(
        lk.fourier_log_likelihood(obs, model, ps).numpy(),
        lk.pixel_log_likelihood(obs, model, var).numpy(),
        rtol=1e-5,
    )


@pytest.mark.parametrize("size", [6, 5])
def test_fourier_likelihood_equals_correlated_gaussian(size):
    # Stationary correlated noise: covariance C[p, q] = acf(p - q) with a symmetric periodic acf.
    d = np.minimum(np.arange(size), size - np.arange(size))
    acf = 0.6 * np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / 2.0)
    acf[0, 0] += 0.2
    power = np.fft.rfft2(acf).real.astype(np.float32)  # eigenvalues of the circulant covariance
    coords = np.indices((size, size)).reshape(2, -1).T
    diff = (coords[:, None, :] - coords[None, :, :]) % size
    cov = acf[diff[..., 0], diff[..., 1]]
    rng = np.random.default_rng(5)
    obs = rng.normal(size=(1, size, size)).astype(np.float32)
    model = rng.normal(size=(1, size, size)).astype(np.float32)
    expected = scipy.stats.multivariate_normal(model[0].ravel(), cov).logpdf(obs[0].ravel())
    result = lk.fourier_log_likelihood(obs, model, power[None]).numpy()[0]
    assert result == pytest.approx(expected, rel=1e-4)


def test_kl_and_free_bits():
    mean = tf.constant([[0.0, 0.0], [1.0, 2.0]])
    log_scale = tf.constant([[0.0, 0.0], [np.log(0.5), 0.0]], tf.float32)
    kl = lk.gaussian_kl_divergence(mean, log_scale).numpy()
    np.testing.assert_allclose(kl[0], [0.0, 0.0], atol=1e-7)
    expected = 0.5 * (1.0 + 0.25 - 1.0) - np.log(0.5)
    np.testing.assert_allclose(kl[1], [expected, 2.0], rtol=1e-6)
    clamped = lk.free_bits_kl(kl, free_bits=1.5).numpy()
    np.testing.assert_allclose(clamped, [1.5, expected + 2.0], rtol=1e-6)
    # Below the threshold the clamped KL passes no gradient to the encoder.
    with tf.GradientTape() as tape:
        tape.watch(mean)
        value = lk.free_bits_kl(lk.gaussian_kl_divergence(mean, log_scale), 10.0)
    assert np.all(tape.gradient(value, mean).numpy() == 0.0)


def test_total_variation():
    assert np.all(lk.total_variation(np.full((2, 6, 6), 3.0, np.float32)).numpy() == 0.0)
    step = np.zeros((1, 4, 4), np.float32)
    step[:, :, 2:] = 1.0  # one vertical edge of height 1 over 4 rows
    assert lk.total_variation(step).numpy()[0] == pytest.approx(4.0)
    assert lk.total_variation(step[..., None]).numpy()[0] == pytest.approx(4.0)


def test_non_square_images_rejected():
    with pytest.raises(ValueError, match="square"):
        lk.convolve_with_psf(np.zeros((1, 4, 5), np.float32), np.zeros((1, 4, 5), np.float32))
