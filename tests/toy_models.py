"""Tiny models with known behaviour, built on the fly by the tests.

``build_toy_model`` exports, through the real exporter, a format-1 model whose "flow" is an
affine map and whose "decoder" draws a round Gaussian: its flux is ``10**(-0.4 (mag_auto -
ZERO_POINT))`` and its half-light radius is ``flux_radius`` pixels, up to a small spread set
by the base noise. ``build_tf1_hub_module`` writes the same model in the TF1 Hub format of
the upstream ``Lanusse2020`` module (``tfhub_module.pb``, a tag-less ``default`` signature
with ``random_normal`` and attached ``stamp_size``/``pixel_size`` messages).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ZERO_POINT = 25.94
SIGMA_PER_HLR = 1.0 / 1.1774100225154747  # Gaussian sigma / half-light radius
CONDITIONS = [
    {"name": "mag_auto", "unit": "mag", "description": "total magnitude", "min": 20.0, "max": 25.0},
    {"name": "flux_radius", "unit": "pixel", "description": "half-light radius", "min": 1.5, "max": 4.5},
]


def _affine_parameters(latent_dim: int, noise_scale: float):
    """Weights mapping standardised (mag, hlr) onto latent (log flux, sigma)."""
    ln10 = np.log(10.0)
    mag_centre, mag_half = 22.5, 2.5
    hlr_centre, hlr_half = 3.0, 1.5
    weights = np.zeros((2, latent_dim), np.float32)
    bias = np.zeros(latent_dim, np.float32)
    weights[0, 0] = -0.4 * ln10 * mag_half
    bias[0] = -0.4 * ln10 * (mag_centre - ZERO_POINT)
    weights[1, 1] = hlr_half * SIGMA_PER_HLR
    bias[1] = hlr_centre * SIGMA_PER_HLR
    scale = np.full(latent_dim, noise_scale, np.float32)
    return weights, bias, scale


def _render_gaussians(tf, z, stamp_size: int):
    """Round Gaussians of total flux exp(z0) and sigma z1 (pixels) at the stamp's true centre."""
    centre = (stamp_size - 1) / 2.0
    coords = tf.range(stamp_size, dtype=tf.float32) - centre
    r2 = coords[None, :, None] ** 2 + coords[None, None, :] ** 2
    flux = tf.exp(z[:, 0])[:, None, None]
    sigma = tf.maximum(z[:, 1], 0.3)[:, None, None]
    return flux * tf.exp(-0.5 * r2 / sigma**2) / (2.0 * np.pi * sigma**2)


def build_toy_model(
    path,
    *,
    stamp_size: int = 32,
    latent_dim: int = 4,
    noise_scale: float = 0.02,
    name: str = "toy",
    version: str = "1.0",
) -> Path:
    """Export the toy Gaussian model as a format-1 directory at ``path``."""
    import tensorflow as tf

    from galsim_hub.training.fitting.export import export_model

    weights, bias, scale = _affine_parameters(latent_dim, noise_scale)

    class AffineFlow(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = tf.Variable(weights)
            self.bias = tf.Variable(bias)
            self.scale = tf.Variable(scale)

        def sample(self, noise, conditions):
            return noise * self.scale + tf.matmul(conditions, self.weights) + self.bias

    class GaussianDecoder(tf.Module):
        def __call__(self, z):
            return _render_gaussians(tf, z, stamp_size)[..., None]

    return export_model(
        path,
        flow=AffineFlow(),
        decoder=GaussianDecoder(),
        conditions=CONDITIONS,
        latent_dim=latent_dim,
        stamp_size=stamp_size,
        pixel_scale=0.03,
        name=name,
        version=version,
        zero_point=ZERO_POINT,
        training={"dataset": "none: analytic toy model for tests"},
    )


def build_tf1_hub_module(
    path, *, stamp_size: int = 32, latent_dim: int = 16, pixel_size: float = 0.03, noise_scale: float = 0.02
) -> Path:
    """Write the toy model in the TF1 Hub format of the upstream Lanusse2020 module."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    from galsim_hub.backends.tf1_hub import ATTACHMENT_COLLECTION, serialize_attachment

    path = Path(path)
    weights, bias, scale = _affine_parameters(latent_dim, noise_scale)
    graph = tf.Graph()
    with graph.as_default():
        v1 = tf.compat.v1
        mag = v1.placeholder(tf.float32, [None], name="mag_auto")
        hlr = v1.placeholder(tf.float32, [None], name="flux_radius")
        zphot = v1.placeholder(tf.float32, [None], name="zphot")
        noise = v1.placeholder(tf.float32, [None, latent_dim], name="random_normal")
        w = v1.get_variable("w", initializer=weights)
        conditions = tf.stack([(mag - 22.5) / 2.5, (hlr - 3.0) / 1.5], axis=1) + 0.0 * zphot[:, None]
        z = noise * scale + tf.matmul(conditions, w) + bias
        images = _render_gaussians(tf, z, stamp_size)[..., None]
        signature = v1.saved_model.signature_def_utils.predict_signature_def(
            inputs={"mag_auto": mag, "flux_radius": hlr, "zphot": zphot, "random_normal": noise},
            outputs={"default": images},
        )
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(session, tags=[], signature_def_map={"default": signature})
            builder.save()
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
    collection = saved_model.meta_graphs[0].collection_def[ATTACHMENT_COLLECTION]
    collection.bytes_list.value.append(
        serialize_attachment("stamp_size", tf.train.Int64List(value=[stamp_size]).SerializeToString())
    )
    collection.bytes_list.value.append(
        serialize_attachment("pixel_size", tf.train.FloatList(value=[pixel_size]).SerializeToString())
    )
    (path / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    (path / "tfhub_module.pb").write_bytes(b"\x08\x01")  # ModuleDef{format: FORMAT_V3}
    return path


#: The bands of the multi-band toy: LSST g, r, i (GalSim bandpass files), flux and size factors
#: relative to the reference (r) band: bluer bands are fainter and larger.
TOY_BANDS = ("g", "r", "i")
BAND_FLUX_FACTORS = (0.6, 1.0, 1.3)
BAND_SIZE_FACTORS = (1.2, 1.0, 0.85)


def toy_bands_metadata() -> list[dict]:
    """The ``bands`` metadata of the multi-band toy model."""
    import galsim

    bands = []
    for name in TOY_BANDS:
        bandpass = galsim.Bandpass(f"LSST_{name}.dat", wave_type="nm")
        bands.append(
            {
                "name": name,
                "effective_wavelength": round(bandpass.effective_wavelength, 3),
                "zero_point": ZERO_POINT,
                "bandpass": f"LSST_{name}.dat",
            }
        )
    return bands


def build_multiband_toy_model(
    path,
    *,
    stamp_size: int = 32,
    latent_dim: int = 4,
    noise_scale: float = 0.02,
    pixel_scale: float = 0.1,
    bands: list[dict] | None = None,
) -> Path:
    """Write a format-2 (multi-band) toy model: the toy Gaussian in bands g, r, i.

    ``mag_auto`` is the r-band magnitude; band ``b`` has flux ``BAND_FLUX_FACTORS[b]`` times the
    r-band flux and width ``BAND_SIZE_FACTORS[b]`` times the r-band width. ``bands`` replaces
    the metadata's bands (for tests of bad metadata); the output keeps three channels.
    """
    import json

    import tensorflow as tf

    path = Path(path)
    weights, bias, scale = _affine_parameters(latent_dim, noise_scale)
    flux_factors = tf.constant(BAND_FLUX_FACTORS, tf.float32)
    size_factors = tf.constant(BAND_SIZE_FACTORS, tf.float32)

    class MultiBandToy(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = tf.Variable(weights)

        def decode(self, z):
            channels = []
            for b in range(len(TOY_BANDS)):
                zb = tf.stack([z[:, 0] + tf.math.log(flux_factors[b]), z[:, 1] * size_factors[b]], axis=1)
                channels.append(_render_gaussians(tf, zb, stamp_size))
            return tf.stack(channels, axis=-1)

    module = MultiBandToy()

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.float32, name="mag_auto"),
            tf.TensorSpec([None], tf.float32, name="flux_radius"),
            tf.TensorSpec([None, latent_dim], tf.float32, name="noise"),
        ]
    )
    def sample(mag_auto, flux_radius, noise):
        conditions = tf.stack([(mag_auto - 22.5) / 2.5, (flux_radius - 3.0) / 1.5], axis=1)
        z = noise * scale + tf.matmul(conditions, module.weights) + bias
        return {"image": module.decode(z)}

    @tf.function(input_signature=[tf.TensorSpec([None, latent_dim], tf.float32, name="z")])
    def decode(z):
        return {"image": module.decode(z)}

    metadata = {
        "format": 2,
        "name": "toy_bands",
        "version": "1.0",
        "stamp_size": stamp_size,
        "pixel_scale": pixel_scale,
        "latent_dim": latent_dim,
        "conditions": CONDITIONS,
        "flux_units": "toy",
        "bands": toy_bands_metadata() if bands is None else bands,
        "signatures": ["sample", "decode"],
        "training": {"dataset": "none: analytic toy model for tests"},
    }
    tf.saved_model.save(module, str(path), signatures={"sample": sample, "decode": decode})
    (path / "galsim_hub.json").write_text(json.dumps(metadata, indent=2) + "\n")
    (path / "README.md").write_text("# toy_bands\n\nAnalytic three-band toy model for tests.\n")
    return path
