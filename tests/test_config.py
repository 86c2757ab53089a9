"""GalSim config types: the real ``galsim`` executable on the example YAML, and bad input."""

from __future__ import annotations

import copy
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import galsim
import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.table import Table
from toy_models import CONDITIONS, ZERO_POINT, _affine_parameters, _render_gaussians

import galsim_hub  # noqa: F401  (registers the config types)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
# `python -m galsim`, not the `galsim` script, whose #! line may name another environment's Python.
GALSIM = (sys.executable, "-m", "galsim")
RUN_TIMEOUT = 240  # a TensorFlow fork hang fails the test instead of blocking it


def build_field_model(path: Path, stamp_size: int = 32, latent_dim: int = 4) -> Path:
    """The toy Gaussian model of toy_models, also taking (and ignoring) ``zphot``."""
    import tensorflow as tf

    from galsim_hub.training.fitting.export import export_model

    weights, bias, scale = _affine_parameters(latent_dim, 0.02)
    weights = np.concatenate([weights, np.zeros((1, latent_dim), np.float32)])

    class Flow(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights, self.bias, self.scale = tf.Variable(weights), tf.Variable(bias), tf.Variable(scale)

        def sample(self, noise, conditions):
            return noise * self.scale + tf.matmul(conditions, self.weights) + self.bias

    class Decoder(tf.Module):
        def __call__(self, z):
            return _render_gaussians(tf, z, stamp_size)[..., None]

    zphot = {"name": "zphot", "unit": "", "description": "photometric redshift", "min": 0.0, "max": 3.0}
    return export_model(
        path,
        flow=Flow(),
        decoder=Decoder(),
        conditions=CONDITIONS + [zphot],
        latent_dim=latent_dim,
        stamp_size=stamp_size,
        pixel_scale=0.03,
        name="field_toy",
        version="1.0",
        zero_point=ZERO_POINT,
        condition_mean=[22.5, 3.0, 1.5],
        condition_std=[2.5, 1.5, 1.5],
        training={"dataset": "none"},
    )


@pytest.fixture(scope="module")
def field_model(tmp_path_factory):
    return build_field_model(tmp_path_factory.mktemp("model") / "field_toy")


def run_galsim(cwd: Path, *overrides: str, extra: tuple = ()) -> None:
    env = dict(os.environ, GALSIM_HUB_CACHE=str(cwd / "cache"))
    command = [*GALSIM, *extra, str(EXAMPLES / "field.yaml"), *overrides]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_example_yaml_identical_for_nproc_and_jobs(tmp_path, field_model):
    """nproc 1 vs 2 and one job vs `-n 2 -j k` write byte-identical FITS files."""
    common = (
        f"input.generative_model.file_name={field_model}",
        f"input.catalog.dir={EXAMPLES}",
        "output.nfiles=2",
        "output.file_name=$'field_%d.fits' % file_num",
        "image.nobjects=40",
        "input.generative_model.batch_size=16",  # 3 blocks per image, the last one partial
    )
    run_galsim(tmp_path, *common, "output.dir=single")
    run_galsim(tmp_path, *common, "output.dir=split", "image.nproc=2", extra=("-n", "2", "-j", "1"))
    run_galsim(tmp_path, *common, "output.dir=split", extra=("-n", "2", "-j", "2"))
    for name in ("field_0.fits", "field_1.fits"):
        single = (tmp_path / "single" / name).read_bytes()
        assert single == (tmp_path / "split" / name).read_bytes(), name
    first, second = (fits.getdata(tmp_path / "single" / f"field_{i}.fits") for i in (0, 1))
    assert first.shape == (256, 256)
    assert first.max() > 10 * 0.02  # galaxies above the noise
    assert not np.array_equal(first, second)  # files get their own seeds


def base_config(model_dir: Path, catalog: Path, **gal) -> dict:
    config = {
        "input": {
            "catalog": {"file_name": str(catalog)},
            "generative_model": {"file_name": str(model_dir), "batch_size": 4},
        },
        "gal": {
            "type": "GenerativeGalaxy",
            "mag_auto": {"type": "Catalog", "col": "mag_auto"},
            "flux_radius": {"type": "Catalog", "col": "flux_radius"},
            "zphot": {"type": "Catalog", "col": "zphot"},
            **gal,
        },
        "image": {
            "type": "Tiled",
            "nx_tiles": 3,
            "ny_tiles": 2,
            "stamp_size": 32,
            "pixel_scale": 0.03,
            "random_seed": 5,
        },
    }
    return config


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "cat.fits"
    Table({"mag_auto": np.linspace(21, 24, 6), "flux_radius": np.linspace(2, 4, 6), "zphot": np.full(6, 0.5)}).write(
        path
    )
    return path


def build(config: dict) -> np.ndarray:
    return galsim.config.BuildImage(copy.deepcopy(config)).array


def test_batched_matches_per_object_and_flux_follows_catalog(field_model, catalog):
    config = base_config(field_model, catalog)
    batched = build(config)
    config["input"]["generative_model"]["batch_size"] = 1
    per_object = build(config)
    np.testing.assert_allclose(batched, per_object, rtol=1e-5, atol=1e-6)
    stamps = batched.reshape(2, 32, 3, 32).transpose(0, 2, 1, 3).reshape(6, 32, 32)
    expected = 10 ** (-0.4 * (np.linspace(21, 24, 6) - ZERO_POINT))
    np.testing.assert_allclose(stamps.sum(axis=(1, 2)), expected, rtol=0.1)


def test_generic_gsobject_keys_apply(field_model, catalog):
    plain = build(base_config(field_model, catalog))
    scaled = build(base_config(field_model, catalog, flux=50.0, shear={"type": "G1G2", "g1": 0.3, "g2": 0}))
    tiles = scaled.reshape(2, 32, 3, 32).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(tiles.sum(axis=(2, 3)), 50.0, rtol=0.05)
    assert not np.allclose(plain, scaled)


def test_upstream_spelling_is_accepted(field_model, catalog):
    config = base_config(field_model, catalog)
    modern = build(config)
    config["gal"]["type"] = "GenerativeModelGalaxy"
    np.testing.assert_array_equal(build(config), modern)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["gal"].update(colour={"type": "Catalog", "col": "zphot"}), "unknown parameter.*colour.*mag_auto"),
        (lambda c: c["gal"].pop("zphot"), "gives no value for zphot"),
        (lambda c: c["input"]["generative_model"].update(colour=1), "colour"),
        (lambda c: c["image"].update(nx_tiles=4), "only 6 rows"),
    ],
    ids=["unknown-condition", "missing-condition", "unknown-input-key", "short-catalog"],
)
def test_bad_config_gives_clear_error(field_model, catalog, change, message):
    config = base_config(field_model, catalog)
    change(config)
    with pytest.raises(galsim.GalSimConfigError, match=message):
        build(config)


def build_logged(config: dict, caplog) -> np.ndarray:
    """Build with a GalSim logger; return the image (caplog holds the messages)."""
    caplog.set_level(logging.DEBUG, logger="galsim_hub_test")
    return galsim.config.BuildImage(copy.deepcopy(config), logger=logging.getLogger("galsim_hub_test")).array


def fallback_messages(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "decoded one per model call" in r.getMessage()]


def count_model_calls(monkeypatch) -> dict:
    """Count block decodings and single-object decodings of the config input."""
    from galsim_hub.config import GenerativeModelInput

    calls = {"blocks": 0, "single": 0}
    decode_block, decode_bands = GenerativeModelInput.decodeBlock, GenerativeModelInput.decode_bands

    def counted_block(self, *args, **kwargs):
        calls["blocks"] += 1
        return decode_block(self, *args, **kwargs)

    def counted_single(self, conditions, noise):
        calls["single"] += 1
        assert len(conditions) == 1  # exactly the object asked for, never a padded block
        return decode_bands(self, conditions, noise)

    monkeypatch.setattr(GenerativeModelInput, "decodeBlock", counted_block)
    monkeypatch.setattr(GenerativeModelInput, "decode_bands", counted_single)
    return calls


RANDOM_CONDITIONS = {
    "Random": {"mag_auto": {"type": "Random", "min": 21, "max": 24}},
    "RandomGaussian": {
        "zphot": {"type": "RandomGaussian", "mean": 0.8, "sigma": 0.3, "min": 0.1},
        "flux_radius": {"type": "RandomGaussian", "mean": 3.0, "sigma": 0.5},
    },
    "RandomDistribution": {"flux_radius": {"type": "RandomDistribution", "x": [2.0, 3.0, 4.0], "f": [1.0, 2.0, 1.0]}},
    "Eval of Random": {"mag_auto": "$21 + 3 * galsim.UniformDeviate(rng)()"},
}


@pytest.mark.parametrize("kind", sorted(RANDOM_CONDITIONS))
def test_random_conditions_are_batched_from_each_object_rng(field_model, catalog, kind, caplog, monkeypatch):
    """Each object of a block gets the values GalSim draws for it: no fallback, 2 blocks for 6 objects."""
    config = base_config(field_model, catalog, **RANDOM_CONDITIONS[kind])
    calls = count_model_calls(monkeypatch)
    batched = build_logged(config, caplog)
    assert not fallback_messages(caplog)
    assert calls == {"blocks": 2, "single": 0}
    config["input"]["generative_model"]["batch_size"] = 1
    one_by_one = build(config)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-6)
    assert not np.allclose(batched, build(base_config(field_model, catalog)), rtol=1e-3)  # values did change


def test_random_conditions_after_random_positions_are_batched(field_model, catalog, caplog, monkeypatch):
    """GalSim draws a Scattered position from the object rng before the galaxy: blocks replay it."""
    config = base_config(
        field_model, catalog, mag_auto={"type": "Random", "min": 21, "max": 24}, rotate={"type": "Random"}
    )
    config["image"] = {
        "type": "Scattered",
        "size": 96,
        "nobjects": 6,
        "stamp_size": 32,
        "pixel_scale": 0.03,
        "random_seed": 5,
    }
    calls = count_model_calls(monkeypatch)
    batched = build_logged(config, caplog)
    assert not fallback_messages(caplog)
    assert calls == {"blocks": 2, "single": 0}
    config["input"]["generative_model"]["batch_size"] = 1
    np.testing.assert_allclose(batched, build(config), rtol=1e-5, atol=1e-6)


def test_position_dependent_condition_is_decoded_per_object(field_model, catalog, caplog, monkeypatch):
    config = base_config(field_model, catalog, mag_auto="$21 + 0.01 * image_pos.x")
    calls = count_model_calls(monkeypatch)
    batched = build_logged(config, caplog)
    assert calls == {"blocks": 0, "single": 6}
    warnings_logged = [r for r in fallback_messages(caplog) if r.levelno == logging.WARNING]
    assert len(warnings_logged) == 1 and "stamp position" in warnings_logged[0].getMessage()
    config["input"]["generative_model"]["batch_size"] = 1
    one_by_one = build(config)
    np.testing.assert_array_equal(batched, one_by_one)  # the same single-object decodings
    tiles = batched.reshape(2, 32, 3, 32).transpose(0, 2, 1, 3).sum(axis=(2, 3))
    assert (np.diff(tiles, axis=1) < 0).all()  # fainter to the right


@pytest.mark.slow
def test_random_and_position_conditions_identical_for_nproc_and_jobs(tmp_path, field_model):
    """A position-dependent condition, Random and RandomGaussian, one per file: nproc 1 vs 2, same bytes."""
    cat = tmp_path / "cat.fits"
    Table({"mag_auto": np.linspace(21, 24, 12), "flux_radius": np.linspace(2, 4, 12), "zphot": np.full(12, 0.5)}).write(
        cat
    )
    kinds = [{"mag_auto": "$21 + 0.02 * image_pos.x"}, RANDOM_CONDITIONS["Random"], RANDOM_CONDITIONS["RandomGaussian"]]
    items = [base_config(field_model, cat, **kind)["gal"] for kind in kinds]
    config = base_config(field_model, cat)
    config.update(
        modules=["galsim_hub"],
        gal={"type": "List", "items": items, "index": {"type": "Eval", "str": "file_num", "index_key": "file_num"}},
        psf={"type": "Moffat", "beta": 3, "fwhm": 0.1},
        output={"nfiles": 3, "file_name": "$'field_%d.fits' % file_num"},
    )
    config["input"]["generative_model"]["batch_size"] = 5  # blocks of 5, 5, 2 objects
    config["image"].update(nx_tiles=4, ny_tiles=3, noise={"type": "Gaussian", "sigma": 0.02})
    (tmp_path / "random.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, GALSIM_HUB_CACHE=str(tmp_path / "cache"))

    def run(folder: str, *overrides: str, jobs: tuple = ()) -> None:
        command = [*GALSIM, *jobs, "random.yaml", f"output.dir={folder}", *overrides]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert result.returncode == 0, result.stderr[-3000:]

    run("one")
    run("two", "image.nproc=2", jobs=("-n", "2", "-j", "1"))  # files 0 and 1
    run("two", "image.nproc=2", jobs=("-n", "2", "-j", "2"))  # file 2
    for k in range(3):
        one = (tmp_path / "one" / f"field_{k}.fits").read_bytes()
        assert one == (tmp_path / "two" / f"field_{k}.fits").read_bytes(), k
    images = [fits.getdata(tmp_path / "one" / f"field_{k}.fits") for k in range(3)]
    assert all(image.max() > 10 * 0.02 for image in images)  # galaxies above the noise


@pytest.mark.filterwarnings("ignore::galsim_hub.OutOfRangeWarning")  # the toy's ranges are narrower
def test_random_field_example_is_batched(field_model, caplog, monkeypatch):
    """examples/random_field.yaml (Random, RandomDistribution, RandomGaussian, Scattered) batches."""
    config = yaml.safe_load((EXAMPLES / "random_field.yaml").read_text())
    config["input"]["generative_model"].update(file_name=str(field_model), batch_size=4)
    config["image"].update(size=96, nobjects=6, stamp_size=32)
    del config["output"], config["modules"]
    calls = count_model_calls(monkeypatch)
    image = build_logged(config, caplog)
    assert calls == {"blocks": 2, "single": 0} and not fallback_messages(caplog)
    assert image.shape == (96, 96) and image.max() > 10 * 0.02


def test_model_without_the_yaml_columns(tmp_path, catalog):
    from toy_models import build_toy_model

    two_conditions = build_toy_model(tmp_path / "toy")  # mag_auto, flux_radius only
    with pytest.raises(galsim.GalSimConfigError, match="unknown parameter.*zphot"):
        build(base_config(two_conditions, catalog))


def test_import_and_input_object_load_no_tensorflow(field_model):
    code = (
        "import sys, galsim_hub.config as c; m = c.GenerativeModelInput(sys.argv[1]); "
        "assert m.getMetadata()['name'] == 'field_toy'; print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(field_model)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_values_outside_the_training_range_warn_naming_the_objects(field_model, catalog):
    from galsim_hub import OutOfRangeWarning

    config = base_config(field_model, catalog, mag_auto=27.0)
    with pytest.warns(OutOfRangeWarning) as record:
        build(config)
    messages = [str(warning.message) for warning in record]
    assert len(messages) == 2  # one per block
    assert re.match(r"GenerativeGalaxy: .* 'mag_auto' .*\[20, 25\] \(objects 0, 1, 2, 3\)", messages[0])
    assert re.match(r"GenerativeGalaxy: .* 'mag_auto' .*\(objects 4, 5\)", messages[1])


@pytest.mark.slow
def test_exit_waits_for_a_prefetch_in_flight(field_model, tmp_path):
    """Issue 17 (7): an error in the main thread while a block decodes in the background must end
    the process with that error, not abort it inside TensorFlow (exit 134)."""
    marker = tmp_path / "decoded"
    script = tmp_path / "exit_during_prefetch.py"
    script.write_text(f"""
import time
import numpy as np
from galsim_hub.config import GenerativeModelInput

model = GenerativeModelInput({str(field_model)!r})
slow = model.decodeBlock

def decode(*args, **kwargs):
    time.sleep(1.0)
    block = slow(*args, **kwargs)
    open({str(marker)!r}, "w").write("done")
    return block

model.decodeBlock = decode
conditions = np.tile([[22.0, 3.0, 0.5]], (64, 1))
noise = np.zeros((64, 4), np.float32)
key = ("k", 0, 0, 0, 64, "clip", None)
assert model.claimBlock(key)
model.prefetchBlock(key, conditions, noise, ("lanczos15", 4, ()), "clip")
raise SystemExit("a config error raised while the block decodes")
""")
    env = dict(os.environ, GALSIM_HUB_CACHE=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "a config error raised while the block decodes" in result.stderr
    assert marker.read_text() == "done"
