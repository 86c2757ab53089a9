"""The flow's base noise, drawn from GalSim random number generators, and the seeds that start them."""

from __future__ import annotations

from typing import Any

import galsim
import numpy as np

from galsim_hub.constants import MAX_SEED

_SCALAR_DRAWS_BELOW = 256  # smaller base-noise draws loop in Python (see standard_normal)


def draw_base_noise(n_galaxies: int, latent_dim: int, rng: galsim.BaseDeviate) -> np.ndarray:
    """Draw the flow's standard-normal base noise from a GalSim random number generator.

    Galaxy ``i`` gets draws ``i*L`` to ``(i+1)*L - 1`` of the rng's Gaussian stream, as
    upstream galsim-hub did, so the result does not depend on how galaxies are batched.

    Parameters
    ----------
    n_galaxies, latent_dim : int
        Shape of the noise, ``[n_galaxies, latent_dim]``.
    rng : galsim.BaseDeviate
        The generator; its state advances by ``n_galaxies * latent_dim`` Gaussian draws.

    Returns
    -------
    numpy.ndarray
        float32 array ``[n_galaxies, latent_dim]``.
    """
    return standard_normal(galsim.GaussianDeviate(rng, sigma=1.0), n_galaxies, latent_dim)


def standard_normal(
    deviate: galsim.GaussianDeviate, n_galaxies: int, latent_dim: int, one_by_one: bool = False
) -> np.ndarray:
    """The next ``n_galaxies * latent_dim`` draws of ``deviate`` as float32 ``[N, L]``.

    Draws one by one continue the deviate's stream exactly (it keeps the second value of
    each Box-Muller pair); ``generate`` drops a kept value, so it equals one-by-one draws
    only on a deviate that has drawn an even number of values. ``one_by_one`` forces the
    former, for batch-by-batch draws of odd size.
    """
    noise = np.empty(n_galaxies * latent_dim, dtype=np.float64)
    if one_by_one or noise.size < _SCALAR_DRAWS_BELOW:
        # Same values and final rng state as generate() on a fresh deviate, without its
        # OpenMP parallel region, whose start-up costs milliseconds on a busy machine.
        for i in range(noise.size):
            noise[i] = deviate()
    else:
        deviate.generate(noise)
    return noise.reshape(n_galaxies, latent_dim).astype(np.float32)


def checked_seed(seed: Any) -> int:
    """A seed as GalSim takes it, or a clear error (GalSim truncates floats and reads strings)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r} ({type(seed).__name__})")
    seed = int(seed)
    if seed == 0:
        raise ValueError(
            "seed=0 makes GalSim draw a random seed; pass a non-zero seed for reproducible "
            "galaxies, or seed=None for new ones each time"
        )
    if not 0 < seed <= MAX_SEED:
        raise ValueError(f"seed must be between 1 and 2**63 - 1, got {seed}")
    return seed


def generator(rng: galsim.BaseDeviate | None, seed: int | None) -> galsim.BaseDeviate:
    """The generator of one sampling call: ``rng`` itself, or a new one from ``seed`` (``None``: random)."""
    if rng is not None and seed is not None:
        raise ValueError("give either rng or seed, not both")
    if seed is not None:
        seed = checked_seed(seed)
    if rng is None:
        return galsim.BaseDeviate(seed)
    if not isinstance(rng, galsim.BaseDeviate):
        raise TypeError(f"rng must be a galsim.BaseDeviate, got {type(rng).__name__}")
    return rng
