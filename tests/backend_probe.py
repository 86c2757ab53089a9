"""Run galsim-hub on one backend in a fresh process and save what it drew (for test_backends.py).

A process runs one Keras backend, so each backend is probed in its own process::

    python tests/backend_probe.py BACKEND OUT.npz sample     # bundled models through the API
    python tests/backend_probe.py jax OUT.npz gradient       # JAX-GalSim drawing and its gradient
"""

from __future__ import annotations

import sys

import numpy as np

import galsim_hub

BUNDLED = ("synthetic_bdk@1.0", "cosmos_real@1.0", "cosmos_real@2.0", "synthetic_chromatic@1.0")
#: Fractions of each training range of the sampled rows; the last lies beyond it (clipped).
FRACTIONS = (0.2, 0.5, 0.8, 1.3)


def catalog(model) -> dict:
    """Rows at :data:`FRACTIONS` of every condition's training range."""
    return {c["name"]: [c["min"] + f * (c["max"] - c["min"]) for f in FRACTIONS] for c in model.metadata["conditions"]}


def sample(backend: str) -> dict:
    imported = sorted(m for m in ("tensorflow", "jax", "torch", "keras") if m in sys.modules)
    out = {"imported_by_galsim_hub": np.array(imported, dtype=str)}
    for handle in BUNDLED:
        model = galsim_hub.GenerativeGalaxyModel(f"hub:{handle}", backend=backend)
        out[handle] = model.sample(catalog(model), seed=7, return_arrays=True)
        out[f"{handle}:batched"] = galsim_hub.GenerativeGalaxyModel(
            f"hub:{handle}", backend=backend, batch_size=3
        ).sample(catalog(model), seed=7, return_arrays=True)
    out["imported_after_sampling"] = np.array(
        sorted(m for m in ("tensorflow", "jax", "torch", "keras") if m in sys.modules), dtype=str
    )
    return out


def gradient() -> dict:
    """A drawn, PSF-convolved JAX-GalSim image of a model stamp, and d(loss)/d(conditions)."""
    import galsim
    import jax
    import jax.numpy as jnp
    import jax_galsim

    model = galsim_hub.GenerativeGalaxyModel("hub:cosmos_real@2.0", backend="jax")
    conditions = jnp.array([[22.0, 10.0, 0.5], [23.5, 6.0, 1.2]])
    noise = jax.random.normal(jax.random.PRNGKey(0), (2, model.latent_dim))
    weights = jax.random.normal(jax.random.PRNGKey(1), (48, 48))

    def drawn(c):
        stamp = model.sample_jax(c, noise)[0]
        profile = jax_galsim.Convolve(model.jax_interpolated_image(stamp), jax_galsim.Gaussian(fwhm=0.1))
        return profile.drawImage(nx=48, ny=48, scale=0.05).array

    def loss(c):
        return jnp.sum(drawn(c) * weights)

    steps = np.array([0.05, 0.2, 0.05], np.float32)
    finite = [
        (loss(conditions.at[0, i].add(steps[i])) - loss(conditions.at[0, i].add(-steps[i]))) / (2 * steps[i])
        for i in range(3)
    ]
    stamp = np.asarray(model.sample_jax(conditions, noise)[0], np.float64)
    reference = galsim.Convolve(
        galsim.InterpolatedImage(galsim.Image(stamp, scale=model.pixel_scale), x_interpolant="quintic"),
        galsim.Gaussian(fwhm=0.1),
    ).drawImage(nx=48, ny=48, scale=0.05)
    cat = {"mag_auto": [22.0, 23.5], "flux_radius": [10.0, 6.0], "zphot": [0.5, 1.2]}
    return {
        "gradient": np.asarray(jax.grad(loss)(conditions)),
        "finite_difference": np.asarray(finite),
        "jax_galsim": np.asarray(drawn(conditions)),
        "galsim": reference.array,
        "sample_jax": np.asarray(model.sample_jax(conditions, noise)),
        "sample_arrays": model.sample_arrays(np.asarray(conditions), np.asarray(noise)),
        "catalog_flux": 10 ** (-0.4 * (np.array(cat["mag_auto"]) - model.metadata["zero_point"])),
    }


if __name__ == "__main__":
    backend, out, mode = sys.argv[1:4]
    np.savez(out, **(sample(backend) if mode == "sample" else gradient()))
