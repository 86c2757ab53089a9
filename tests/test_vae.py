"""ResNet VAE: shapes, positivity, PSF branch, checkpoints, architecture checks."""

import numpy as np
import pytest
import tensorflow as tf

from galsim_hub.networks.convolutional import stage_depths
from galsim_hub.training.networks.vae import VAE

SMALL = dict(stamp_size=32, latent_dim=6, num_stages=3, base_depth=8, max_depth=16)


def _inputs(n=3, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, size, size)).astype(np.float32)
    psf = np.zeros((n, size, size), np.float32)
    psf[:, size // 2 - 1 : size // 2 + 2, size // 2 - 1 : size // 2 + 2] = 1.0 / 9.0
    return images, psf


def test_stage_depths_follow_the_paper_layout():
    assert stage_depths(7, 16, 512) == [16, 32, 64, 128, 256, 512, 512, 512]
    assert stage_depths(3, 8, 16) == [8, 16, 16, 16]


def test_shapes_and_non_negative_output():
    vae = VAE(**SMALL, image_scale=2.0)
    images, psf = _inputs()
    mean, log_scale = vae.encode(images, psf)
    assert mean.shape == (3, 6) and log_scale.shape == (3, 6)
    rng = np.random.default_rng(1)
    decoded = vae.decode(rng.normal(size=(5, 6)).astype(np.float32) * 10)
    assert decoded.shape == (5, 32, 32, 1)
    assert np.all(decoded.numpy() >= 0)
    assert vae.reconstruct(images, psf).shape == (3, 32, 32)
    assert vae((images[..., None], psf)).shape == (3, 32, 32)


def test_image_scale_scales_the_output():
    a = VAE(**SMALL, image_scale=1.0)
    b = VAE(**SMALL, image_scale=5.0)
    b.set_weights(a.get_weights())
    z = np.ones((2, 6), np.float32)
    np.testing.assert_allclose(b.decode(z).numpy(), 5.0 * a.decode(z).numpy(), rtol=1e-5)


def test_encoder_sees_the_psf():
    vae = VAE(**SMALL)
    images, psf = _inputs()
    wide = np.zeros_like(psf)
    wide[:, 10:22, 10:22] = 1.0 / 144.0
    assert not np.allclose(vae.encode(images, psf)[0].numpy(), vae.encode(images, wide)[0].numpy())


def test_posterior_sample_is_seeded():
    vae = VAE(**SMALL)
    images, psf = _inputs()
    first = vae.reconstruct(images, psf, sample=True, seed=3).numpy()
    np.testing.assert_array_equal(first, vae.reconstruct(images, psf, sample=True, seed=3).numpy())
    assert not np.array_equal(first, vae.reconstruct(images, psf, sample=True, seed=4).numpy())


def test_checkpoint_restores_every_layer(tmp_path):
    vae = VAE(**SMALL, blocks_per_stage=2)
    for v in vae.trainable_variables:
        v.assign(v + 0.01 * tf.random.stateless_normal(v.shape, [1, 2]))
    path = tf.train.Checkpoint(vae=vae).write(str(tmp_path / "ckpt"))
    n_saved = len(tf.train.list_variables(path)) - 1  # minus the object graph entry
    assert n_saved == len(vae.variables)
    other = VAE.from_architecture(vae.architecture)
    tf.train.Checkpoint(vae=other).read(path).assert_consumed()
    z = np.ones((2, 6), np.float32)
    np.testing.assert_array_equal(other.decode(z).numpy(), vae.decode(z).numpy())


def test_stamp_not_divisible_by_stages_is_an_error():
    with pytest.raises(ValueError, match="divisible"):
        VAE(stamp_size=40, latent_dim=4, num_stages=4, base_depth=4, max_depth=8)
