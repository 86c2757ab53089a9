"""The NumPy backend: the networks of a format-3 model without any machine-learning framework.

Its sampled pixels are held to the TensorFlow reference in ``test_reference_pixels.py`` and to
the other backends in ``test_backends.py``; here: reconstruction, batch-size independence, the
imports of a fresh process, and files it must refuse.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import galsim_hub
from galsim_hub.backends.numpy_networks import conv2d, upsample_bilinear
from galsim_hub.backends.numpy_runtime import NumpyModel
from galsim_hub.errors import MetadataError

CATALOG = {"mag_auto": [21.0, 23.0, 24.5], "flux_radius": [12.0, 6.0, 4.0], "zphot": [0.4, 1.0, 2.0]}


def test_reconstruction_matches_tensorflow():
    """Encoder and decoder of cosmos_real@2.0 on NumPy and on TensorFlow."""
    on = {b: galsim_hub.GenerativeGalaxyModel("hub:cosmos_real@2.0", backend=b) for b in ("tensorflow", "numpy")}
    truth = on["tensorflow"].sample(CATALOG, seed=3, return_arrays=True)
    rng = np.random.default_rng(0)
    observed = truth + 0.002 * rng.standard_normal(truth.shape).astype(np.float32)
    psf = np.zeros_like(truth)
    psf[:, 31:34, 31:34] = 1.0 / 9.0
    out = {b: model.reconstruct(observed, psf) for b, model in on.items()}
    np.testing.assert_allclose(out["numpy"], out["tensorflow"], rtol=0, atol=1e-5 * np.abs(out["tensorflow"]).max())


def test_same_galaxies_whatever_the_batch_size():
    cat = {k: v * 3 for k, v in CATALOG.items()}
    whole = galsim_hub.GenerativeGalaxyModel("hub:cosmos_real", backend="numpy").sample(cat, seed=5, return_arrays=True)
    parts = galsim_hub.GenerativeGalaxyModel("hub:cosmos_real", backend="numpy", batch_size=2).sample(
        cat, seed=5, return_arrays=True
    )
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-6 * whole.max())


CHILD = """
import json, multiprocessing, sys
import galsim, galsim_hub
import numpy as np

def in_child(model, queue):
    queue.put(model.sample(CATALOG, seed=2, return_arrays=True))

if __name__ == "__main__":
    model = galsim_hub.GenerativeGalaxyModel("hub:cosmos_real", backend="numpy")
    galaxies = model.sample(CATALOG, seed=1)
    assert all(isinstance(g, galsim.InterpolatedImage) for g in galaxies)
    # GalSim's config multiprocessing forks: a child forked after the model ran samples as well.
    parent = model.sample(CATALOG, seed=2, return_arrays=True)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=in_child, args=(model, queue))
    child.start()
    same = bool(np.array_equal(queue.get(timeout=120), parent))
    child.join(timeout=60)
    imported = sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules)
    print(json.dumps({"imported": imported, "forked_child_same": same, "exitcode": child.exitcode}))
"""


def test_a_fresh_process_samples_galaxies_without_any_framework_and_forks(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("CATALOG", repr(CATALOG)))
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"GALSIM_HUB_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "imported": [],
        "forked_child_same": True,
        "exitcode": 0,
    }
    assert "tensorflow" not in result.stderr.lower()


def test_convolutions_pad_as_keras_does():
    """A delta through a stride-1 and a stride-2 convolution lands where Keras puts it."""
    x = np.zeros((1, 6, 6, 1), np.float32)
    x[0, 2, 3, 0] = 1.0
    kernel = np.arange(9, dtype=np.float32).reshape(3, 3, 1, 1)
    same = conv2d(x, kernel, np.zeros(1, np.float32))[0, :, :, 0]
    # out[y, x] = sum_{dy,dx} in[y + dy - 1, x + dx - 1] k[dy, dx]: the kernel, flipped, around the delta.
    np.testing.assert_array_equal(same[1:4, 2:5], kernel[::-1, ::-1, 0, 0])
    strided = conv2d(x, kernel, np.zeros(1, np.float32), stride=2)[0, :, :, 0]
    # "same" with the extra padding after: out[y, x] = sum in[2y + dy, 2x + dx] k[dy, dx].
    np.testing.assert_array_equal(strided, [[0, kernel[2, 1, 0, 0], 0], [0, kernel[0, 1, 0, 0], 0], [0, 0, 0]])
    up = upsample_bilinear(np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1))[0, :, :, 0]
    np.testing.assert_allclose(up[0], [0.0, 0.25, 0.75, 1.0])  # half-pixel centres, edges clamped


def _bundled_copy(tmp_path: Path) -> Path:
    source = galsim_hub.GenerativeGalaxyModel("hub:cosmos_real@2.0", backend="numpy")._directory
    return Path(shutil.copytree(source, tmp_path / "model"))


def _rewrite_weights(directory: Path, change) -> None:
    """Apply ``change(h5py.File)`` to the weights inside ``directory/model.keras``."""
    path = directory / "model.keras"
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "r+") as store:
        change(store)
    members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_a_missing_weight_is_named(tmp_path):
    directory = _bundled_copy(tmp_path)
    _rewrite_weights(directory, lambda store: store.__delitem__("decoder/layers/conv2d_4/vars/1"))
    with pytest.raises(MetadataError, match="cannot be loaded .*no decoder/layers/conv2d_4/vars/1"):
        NumpyModel(directory)


def test_a_weight_of_the_wrong_shape_or_an_extra_one_is_refused(tmp_path):
    directory = _bundled_copy(tmp_path)

    def reshape(store):
        del store["flow/vars/2"]
        store["flow/vars/2"] = np.ones(7, np.float32)

    _rewrite_weights(directory, reshape)
    with pytest.raises(MetadataError, match=r"flow/vars/2 has shape \(7,\), the architecture gives \(16,\)"):
        NumpyModel(directory)
    directory = _bundled_copy(tmp_path / "extra")
    _rewrite_weights(directory, lambda store: store.create_dataset("decoder/layers/conv2d_9/vars/0", data=[1.0]))
    with pytest.raises(MetadataError, match="no place for: decoder/layers/conv2d_9/vars/0"):
        NumpyModel(directory)


def test_metadata_that_disagrees_with_the_networks_is_refused(tmp_path):
    directory = _bundled_copy(tmp_path)
    metadata = json.loads((directory / "galsim_hub.json").read_text())
    metadata["latent_dim"] = 8
    (directory / "galsim_hub.json").write_text(json.dumps(metadata))
    with pytest.raises(MetadataError, match="16 latents, the metadata says 3 and 8"):
        NumpyModel(directory)


def test_a_format1_model_or_a_gpu_is_refused_with_the_way_out(tmp_path):
    from toy_models import build_toy_model

    path = build_toy_model(tmp_path / "toy")
    with pytest.raises(MetadataError, match="format-1 model .*use backend='tensorflow', or convert it"):
        NumpyModel(path)
    with pytest.raises(ValueError, match="runs on the CPU only"), warnings.catch_warnings():
        NumpyModel(path, device="/GPU:0")


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.parametrize(
    "layout",
    [
        {"num_stages": 3, "blocks_per_stage": 2, "n_bands": 2, "activation": "elu", "hidden": [32, 48], "blocks": 3},
        {"num_stages": 2, "blocks_per_stage": 1, "n_bands": 1, "activation": "relu", "hidden": [24], "blocks": 2},
    ],
)
def test_other_architectures_evaluate_as_keras_does(tmp_path, layout):
    """Random weights in every array of a generator unlike the bundled ones, saved by Keras,
    evaluated by NumPy and by Keras (TensorFlow)."""
    from keras import ops

    from galsim_hub.backends.numpy_networks import GeneratorWeights
    from galsim_hub.networks.generator import GalaxyGenerator

    arch = {
        "stamp_size": 16,
        "latent_dim": 6,
        "num_stages": layout["num_stages"],
        "base_depth": 4,
        "max_depth": 8,
        "blocks_per_stage": layout["blocks_per_stage"],
        "activation": layout["activation"],
        "image_scale": 0.5,
        "n_bands": layout["n_bands"],
    }
    flow = {"latent_dim": 6, "n_conditions": 2, "n_blocks": layout["blocks"], "hidden_units": layout["hidden"]}
    generator = GalaxyGenerator(arch, flow, [1.0, -2.0], [0.5, 3.0], encoder=arch)
    rng = np.random.default_rng(1)
    for variable in generator.weights:
        if "int" not in str(variable.dtype):
            variable.assign(0.3 * rng.standard_normal(variable.shape).astype(np.float32))
    generator.save(tmp_path / "model.keras")
    numpy_networks = GeneratorWeights(tmp_path / "model.keras")
    conditions = rng.standard_normal((5, 2)).astype(np.float32)
    noise = rng.standard_normal((5, 6)).astype(np.float32)
    expected = ops.convert_to_numpy(generator.sample(conditions, noise))
    np.testing.assert_allclose(
        numpy_networks.sample(conditions, noise), expected, rtol=1e-4, atol=1e-5 * expected.max()
    )
    stamps = rng.uniform(size=(5, 16, 16, layout["n_bands"])).astype(np.float32)
    encoded = ops.convert_to_numpy(generator.encode(stamps, stamps))
    np.testing.assert_allclose(
        numpy_networks.encode(stamps, stamps), encoded, rtol=1e-4, atol=1e-5 * np.abs(encoded).max()
    )
