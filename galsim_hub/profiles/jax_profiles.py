"""Model stamps as JAX-GalSim profiles, differentiable end to end.

`jax_interpolated_image` wraps one ``[S, S]`` stamp (a JAX array, e.g. from
:meth:`galsim_hub.GenerativeGalaxyModel.sample_jax`) as a ``jax_galsim.InterpolatedImage``,
which convolves, shears and draws inside ``jax.jit`` and ``jax.grad`` like GalSim's own.
Needs ``pip install 'galsim-hub[jax]'`` (JAX-GalSim).
"""

from __future__ import annotations

from typing import Any

__all__ = ["jax_interpolated_image"]


def jax_interpolated_image(
    stamp: Any,
    pixel_scale: float,
    x_interpolant: Any = "quintic",
    k_interpolant: Any = None,
    pad_factor: float = 4,
    gsparams: Any = None,
):
    """A ``jax_galsim.InterpolatedImage`` of one stamp, with the options of GalSim's wrap.

    Parameters
    ----------
    stamp : array_like
        ``[S, S]`` light profile in flux per pixel (one band of a multi-band stamp).
    pixel_scale : float
        Its pixel scale in arcsec.
    x_interpolant, k_interpolant, pad_factor, gsparams
        As for :class:`galsim.InterpolatedImage` (JAX-GalSim's versions of them).

    Returns
    -------
    jax_galsim.InterpolatedImage
        The profile; its flux is the stamp's sum.
    """
    import jax.numpy as jnp
    import jax_galsim

    image = jax_galsim.Image(jnp.asarray(stamp, jnp.float32), scale=float(pixel_scale))
    return jax_galsim.InterpolatedImage(
        image, x_interpolant=x_interpolant, k_interpolant=k_interpolant, pad_factor=pad_factor, gsparams=gsparams
    )
