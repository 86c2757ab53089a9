"""The memorisation check: a copying model fails, a model of new galaxies passes."""

import numpy as np
import pytest

from galsim_hub.training.validation.memorisation import memorisation_check, nearest_distances


def _blobs(rng, n, size=24):
    y, x = np.indices((size, size)) - size / 2
    out = []
    for _ in range(n):
        cx, cy = rng.uniform(-3, 3, 2)
        sx, sy = rng.uniform(1.5, 5, 2)
        angle = rng.uniform(0, np.pi)
        xr = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
        yr = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
        out.append(np.exp(-0.5 * ((xr / sx) ** 2 + (yr / sy) ** 2)))
    return np.array(out)


def test_nearest_distances_find_the_copy():
    rng = np.random.default_rng(1)
    references = _blobs(rng, 30)
    stamps = 3.0 * references[[4, 17]]  # brighter copies: same shape
    distances, nearest = nearest_distances(stamps, references, chunk=7)
    np.testing.assert_allclose(distances, 0, atol=1e-6)
    assert nearest.tolist() == [4, 17]
    with pytest.raises(ValueError, match="non-zero norm"):
        nearest_distances(np.zeros((1, 24, 24)), references)


def test_copying_model_fails_and_new_galaxies_pass():
    rng = np.random.default_rng(2)
    training = _blobs(rng, 200)
    noise = 0.02

    def observe(stamps):
        return stamps + rng.normal(0, noise, stamps.shape)

    real = observe(_blobs(rng, 40))
    honest = observe(_blobs(rng, 40))
    copies = observe(training[rng.integers(0, 200, 40)])
    observed_training = observe(training)
    passed = memorisation_check(real, honest, observed_training)
    failed = memorisation_check(real, copies, observed_training)
    assert passed["passed"] and not failed["passed"]
    assert failed["copy_fraction"] > 0.3 and failed["ratio"] < passed["ratio"]
    assert failed["mannwhitney_p"] < 1e-3 < passed["mannwhitney_p"]
