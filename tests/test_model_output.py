"""Models that break the format (issue #10, defects 6-9): each gets an error or warning that names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from galsim_hub.errors import CatalogError, MetadataError, ModelOutputWarning
from galsim_hub.metadata import read_metadata

CONDITION = {"name": "mag_auto", "unit": "mag", "description": "", "min": 20.0, "max": 25.0}


def metadata(stamp_size: int = 8, **extra) -> dict:
    return {
        "format": 1,
        "name": "raw",
        "version": "1.0",
        "stamp_size": stamp_size,
        "pixel_scale": 0.03,
        "latent_dim": 2,
        "conditions": [CONDITION],
        **extra,
    }


def raw_model(path: Path, *, dtype: str = "float32", output: str = "image", side: int = 8, fill: float = 1.0) -> Path:
    """A SavedModel with a ``sample`` signature returning ``[N, side, side]`` of ``fill`` (shape not static)."""
    import tensorflow as tf

    class Raw(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None], getattr(tf, dtype), name="mag_auto"),
                tf.TensorSpec([None, 2], tf.float32, name="noise"),
            ]
        )
        def sample(self, mag_auto, noise):
            count = tf.shape(noise)[0]
            width = side + 0 * count
            return {output: tf.fill(tf.stack([count, width, width]), tf.constant(fill, tf.float32))}

    module = Raw()
    tf.saved_model.save(module, str(path), signatures={"sample": module.sample})
    (path / "galsim_hub.json").write_text(json.dumps(metadata()))
    return path


def load(path):
    from galsim_hub.backends.tensorflow import LoadedModel

    return LoadedModel(path, device="/CPU:0")


CENTRE, NOISE = np.full((3, 1), 22.0), np.zeros((3, 2), np.float32)


def test_int32_inputs_are_named_at_load(tmp_path):
    with pytest.raises(MetadataError, match="inputs must be float32, but 'mag_auto' is int32"):
        load(raw_model(tmp_path / "m", dtype="int32"))


def test_output_not_named_image_is_named_at_load(tmp_path):
    with pytest.raises(MetadataError, match=r"must return 'image', it returns \['galaxy'\]"):
        load(raw_model(tmp_path / "m", output="galaxy"))


def test_output_of_the_wrong_size(tmp_path):
    model = load(raw_model(tmp_path / "m", side=7))
    with pytest.raises(MetadataError, match=r"shape \(3, 7, 7\) for 3 galaxies; expected 3 stamps of 8x8"):
        model.sample_images(CENTRE, NOISE)


def test_nan_output_is_an_error(tmp_path):
    model = load(raw_model(tmp_path / "m", fill=float("nan")))
    with pytest.raises(MetadataError, match=r"NaN or infinite pixels for galaxy\(ies\) 0, 1, 2"):
        model.sample_images(CENTRE, NOISE)


def test_negative_output_warns(tmp_path):
    model = load(raw_model(tmp_path / "m", fill=-1.0))
    with pytest.warns(ModelOutputWarning, match="negative pixels"):
        images = model.sample_images(CENTRE, NOISE)
    assert (images == -1).all()


def test_condition_beyond_float32_is_a_catalog_error(tmp_path):
    """Defect 8: flux_radius=1e300 passed the finite check and became a NaN galaxy."""
    from galsim_hub.model import GenerativeGalaxyModel

    model = GenerativeGalaxyModel(raw_model(tmp_path / "m"), device="/CPU:0")
    # Refused while reading the catalog, before any out-of-range policy could clip the value away.
    with pytest.raises(CatalogError, match=r"'mag_auto' holds values beyond float32 range .* row\(s\) 1"):
        model.sample({"mag_auto": np.array([22.0, 1e300])}, seed=3)


def test_model_directory_removed_while_in_use(tmp_path, hub_cache, make_model_archive):
    """Defect 9: after `galsim-hub cache clear` the next load said 'is not a galsim-hub model'."""
    from galsim_hub.hub.cache import clear, fetch
    from galsim_hub.hub.handle import resolve

    directory = fetch(resolve(raw_model_archive(tmp_path)))
    clear()
    with pytest.raises(MetadataError, match="does not exist .* was the cache cleared"):
        load(directory)


def raw_model_archive(tmp_path: Path) -> Path:
    raw_model(tmp_path / "raw")
    return Path(shutil.make_archive(str(tmp_path / "raw_model"), "gztar", root_dir=tmp_path, base_dir="raw"))


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"condition_mean": 5}, "'condition_mean' must be a list of 1 finite numbers"),
        ({"condition_mean": ["a"]}, "'condition_mean' must be a list"),
        ({"condition_std": [0.0]}, "'condition_std' must be positive"),
        ({"condition_std": [1.0, 2.0]}, "'condition_std' has 2 values for 1 conditions"),
    ],
)
def test_malformed_standardisation_is_named(changes, problem, tmp_path):
    (tmp_path / "galsim_hub.json").write_text(json.dumps(metadata(**changes)))
    with pytest.raises(MetadataError, match=problem):
        read_metadata(tmp_path)


def test_publish_names_an_output_not_called_image(tmp_path):
    """Defect 6: publish raised KeyError for a ``sample`` output not named ``image``."""
    from galsim_hub.hub.publish import check_model_for_publish

    model = raw_model(tmp_path / "m", output="galaxy")
    (model / "README.md").write_text("# raw\n")
    with pytest.raises(MetadataError, match="must return 'image'"):
        check_model_for_publish(model)


@pytest.mark.parametrize(
    "seed, error, message",
    [
        (0.5, TypeError, r"seed must be an integer, got 0.5 \(float\)"),
        ("7", TypeError, r"seed must be an integer, got '7' \(str\)"),
        (True, TypeError, "seed must be an integer"),
        (2**64, ValueError, r"between 1 and 2\*\*63 - 1, got 18446744073709551616"),
        (-3, ValueError, r"between 1 and 2\*\*63 - 1, got -3"),
        (0, ValueError, "seed=0 makes GalSim draw a random seed"),
    ],
)
def test_bad_seeds_are_named(tmp_path, seed, error, message):
    """Defects 7 and 8: seed=0.5 was reported as 'seed=0', 2**64 gave a pybind error, '7' other galaxies."""
    from galsim_hub.model import GenerativeGalaxyModel

    model = GenerativeGalaxyModel(raw_model(tmp_path / "m"), device="/CPU:0")
    with pytest.raises(error, match=message):
        model.sample({"mag_auto": np.array([22.0])}, seed=seed)
    assert model.sample({"mag_auto": np.array([22.0])}, seed=np.int64(7), return_arrays=True).shape[0] == 1
