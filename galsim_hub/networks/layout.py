"""The fixed structure of the networks, in NumPy alone: channel depths of the VAE's stages,
block orders and MADE masks of the conditional MAF.

Shared by the Keras layers (:mod:`galsim_hub.networks.convolutional`,
:mod:`galsim_hub.networks.flow`) and the NumPy runtime (:mod:`galsim_hub.backends.numpy_networks`),
which must not import Keras.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stage_depths", "block_orders", "made_masks"]


def stage_depths(num_stages: int, base_depth: int, max_depth: int) -> list[int]:
    """Channels at each resolution: ``min(base_depth * 2**i, max_depth)`` for ``i = 0..num_stages``.

    The last entry is the depth of the bottleneck feature map (after ``num_stages`` halvings).
    """
    return [min(base_depth * 2**i, max_depth) for i in range(num_stages + 1)]


def block_orders(latent_dim: int, n_blocks: int, seed: int = 0) -> np.ndarray:
    """Autoregressive orders of the blocks: reversed for even blocks, seeded random for odd ones.

    Returns
    -------
    numpy.ndarray
        ``[n_blocks, latent_dim]`` int32; row ``b`` lists the latent dimensions in the order in
        which block ``b`` generates them.
    """
    rng = np.random.default_rng(seed)
    orders = []
    for b in range(n_blocks):
        if b % 2 == 0:
            orders.append(np.arange(latent_dim)[::-1])
        else:
            orders.append(rng.permutation(latent_dim))
    return np.asarray(orders, np.int32).reshape(n_blocks, latent_dim)


def made_masks(latent_dim: int, hidden_units) -> list[np.ndarray]:
    """Masks of the input, hidden and output layers for inputs in natural order 1..D."""
    input_degrees = np.arange(1, latent_dim + 1)
    degrees = [input_degrees]
    for units in hidden_units:
        degrees.append(np.arange(units) % max(1, latent_dim - 1) + 1)
    masks = [
        (later[None, :] >= earlier[:, None]).astype(np.float32) for earlier, later in zip(degrees[:-1], degrees[1:])
    ]
    # Output i (shift and log-scale of dimension i) sees hidden units of degree < i only.
    output_mask = (input_degrees[None, :] > degrees[-1][:, None]).astype(np.float32)
    masks.append(np.concatenate([output_mask, output_mask], axis=1))
    return masks
