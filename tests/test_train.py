"""Training pipeline: config parsing, end-to-end tiny training and export, resume, errors."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from galsim_hub.training.fitting.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
)

pytestmark = pytest.mark.slow  # these tests train models

CONFIG_DIR = Path(__file__).resolve().parents[1] / "training" / "configs"


# ---------------------------------------------------------------------------------- config


def test_example_configs_load_and_round_trip():
    for name in (
        "synthetic_default.yaml",
        "cosmos25.2_paper.yaml",
        "synthetic_chromatic.yaml",
        "synthetic_chromatic_heldout.yaml",
    ):
        config = load_config(CONFIG_DIR / name)
        assert config_from_dict(config_to_dict(config)) == config
    paper = load_config(CONFIG_DIR / "cosmos25.2_paper.yaml")
    assert (paper.dataset.stamp_size, paper.vae.num_stages, paper.vae.latent_dim) == (128, 7, 16)
    assert (paper.vae.base_depth, paper.vae.max_depth, paper.flow.n_blocks) == (16, 512, 8)
    assert paper.flow.hidden_units == (256, 256)


def test_yaml_and_json_files(tmp_path):
    (tmp_path / "c.yaml").write_text("vae:\n  latent_dim: 4\nflow:\n  hidden_units: [8, 8]\n")
    config = load_config(tmp_path / "c.yaml")
    assert config.vae.latent_dim == 4 and config.flow.hidden_units == (8, 8)
    assert config.vae.batch_size == 32  # defaults kept
    (tmp_path / "c.json").write_text(json.dumps({"export": {"name": "x"}}))
    assert load_config(tmp_path / "c.json").export.name == "x"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"vae": {"latentdim": 4}}, r"unknown key 'latentdim' in config section 'vae'; valid keys: .*latent_dim"),
        ({"training": {}}, r"unknown config section 'training'; valid sections: dataset, vae, flow, export"),
        ({"dataset": {"source": "sdss"}}, "dataset.source must be 'synthetic', 'chromatic' or 'cosmos'"),
        ({"dataset": {"source": "cosmos"}}, "needs dataset.catalog_dir"),
        ({"dataset": {"stamp_size": 40}, "vae": {"num_stages": 4}}, r"divisible by 2\*\*vae.num_stages"),
        ({"vae": {"likelihood": "poisson"}}, "vae.likelihood must be 'pixel' or 'fourier'"),
        ({"vae": {"optimizer": "sgd"}}, "vae.optimizer must be 'adam' or 'adafactor'"),
        ({"vae": {"batch_size": 0}}, r"vae.batch_size must be >= 1"),
        ({"vae": {"steps": 1.5}}, "vae.steps must be an integer"),
        ({"vae": {"learning_rate": -1}}, "vae.learning_rate must be > 0"),
        ({"vae": {"clip_norm": 0}}, "vae.clip_norm must be > 0"),
        ({"flow": {"hidden_units": [0]}}, "flow.hidden_units must be a list of positive integers"),
        ({"vae": [1, 2]}, "config section 'vae' must be a mapping"),
        # Issue 17 (6): values of the wrong type or range are named before any work starts.
        ({"dataset": {"seed": "x"}}, "dataset.seed must be an integer, got 'x'"),
        ({"dataset": {"psf": "jwst"}}, "dataset.psf must be 'hst'"),
        ({"dataset": {"pixel_scale": float("inf")}}, "dataset.pixel_scale must be a positive finite number"),
        ({"dataset": {"noise_sigma": -1.0}}, "dataset.noise_sigma must be a positive finite number"),
        ({"dataset": {"options": {"colour": 1}}}, r"dataset.options has unknown key\(s\) \['colour'\]"),
        ({"dataset": {"options": [1]}}, "dataset.options must be a mapping"),
        ({"export": {"name": 5}}, "export.name must be a string, got 5"),
        ({"export": {"name": "../../evil"}}, "export.name and export.version must be a hub name"),
        ({"export": {"zero_point": float("nan")}}, "export.zero_point must be a finite number"),
        ({"flow": {"hidden_units": "big"}}, "flow.hidden_units must be a list of positive integers"),
        ({"vae": {"activation": "sigmoidish"}}, "vae.activation must be one of"),
        ({"flow": {"seed": -1}}, "flow.seed must be >= 0"),
    ],
)
def test_bad_configs_name_the_problem(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(values)


def test_bad_config_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("flow:\n  blocks: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'blocks' in config section 'flow'"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------------- training

from galsim_hub.training.datasets.data import build_synthetic_dataset, load_arrays  # noqa: E402
from galsim_hub.training.fitting import train  # noqa: E402
from galsim_hub.training.networks.likelihood import convolve_with_psf  # noqa: E402

TINY = {
    "dataset": {"stamp_size": 32, "n_examples": 256, "noise_sigma": 0.01},
    "vae": {
        "latent_dim": 8,
        "num_stages": 3,
        "base_depth": 8,
        "max_depth": 32,
        "batch_size": 32,
        "steps": 400,
        "learning_rate": 1e-3,
        "warmup_steps": 100,
        "free_bits": 2.0,
        "checkpoint_every": 200,
    },
    "flow": {
        "n_blocks": 2,
        "hidden_units": [32, 32],
        "steps": 300,
        "batch_size": 128,
        "learning_rate": 3e-3,
        "warmup_steps": 100,
    },
    "export": {"name": "tiny-test", "version": "0.1.0"},
}


def _config(**overrides):
    values = json.loads(json.dumps(TINY))
    for section, changes in overrides.items():
        values[section].update(changes)
    return config_from_dict(values)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    d = TINY["dataset"]
    return build_synthetic_dataset(
        tmp_path_factory.mktemp("data") / "dataset",
        d["n_examples"],
        stamp_size=d["stamp_size"],
        noise_sigma=d["noise_sigma"],
        seed=0,
    )


def _mean(history, key, part):
    values = [h[key] for h in history]
    n = max(len(values) // 10, 1)
    return float(np.mean(values[:n] if part == "first" else values[-n:]))


def test_tiny_model_trains_deconvolves_exports_and_samples(tiny_dataset, tmp_path):
    import galsim_hub

    config = _config()
    work = tmp_path / "work"
    vae_history = train.train_vae(config, tiny_dataset, work, progress=False)
    assert len(vae_history) == config.vae.steps
    assert _mean(vae_history, "loss", "last") < _mean(vae_history, "loss", "first") - 50
    assert _mean(vae_history, "loss", "last") < vae_history[0]["loss"] - 200
    assert json.loads((work / "vae_history.json").read_text()) == vae_history
    assert json.loads((work / "vae" / "architecture.json").read_text())["latent_dim"] == 8

    # Deconvolution: reconstructions of the training galaxies are closer to the noiseless,
    # unconvolved truth than the noisy inputs are, and even than the noiseless convolved truth.
    arrays = load_arrays(tiny_dataset, ("image", "psf", "truth"))
    vae = train.load_vae(work)
    recon = vae.reconstruct(arrays["image"], arrays["psf"]).numpy()
    truth = arrays["truth"]
    mse_recon = np.mean((recon - truth) ** 2)
    assert mse_recon < np.mean((arrays["image"] - truth) ** 2)
    assert mse_recon < np.mean((convolve_with_psf(truth, arrays["psf"]).numpy() - truth) ** 2)

    latents = np.load(train.encode_latents(config, tiny_dataset, work))
    assert latents["mean"].shape == (256, 8) and latents["conditions"].shape[0] == 256
    flow_history = train.train_flow(config, work, progress=False)
    assert _mean(flow_history, "loss", "last") < _mean(flow_history, "loss", "first")

    export_dir = train.export(config, work, tmp_path / "model", dataset_dir=tiny_dataset)
    model = galsim_hub.GenerativeGalaxyModel(str(export_dir))
    assert model.stamp_size == 32
    names = list(model.quantities)
    table = {name: np.full(4, np.median(latents["conditions"][:, i]), np.float32) for i, name in enumerate(names)}
    images = model.sample(table, seed=1, return_arrays=True)
    assert images.shape == (4, 32, 32)
    assert np.all(np.isfinite(images)) and np.all(images >= 0) and images.sum() > 0

    # The exported encode + decode signatures reproduce the VAE's reconstructions.
    exported_recon = model.reconstruct(arrays["image"][:8], arrays["psf"][:8])
    np.testing.assert_allclose(exported_recon, recon[:8], rtol=1e-4, atol=1e-5 * recon.max())


def test_resume_continues_and_mismatch_is_refused(tiny_dataset, tmp_path):
    work = tmp_path / "work"
    first = train.train_vae(_config(vae={"steps": 3, "checkpoint_every": 3}), tiny_dataset, work, progress=False)
    assert [h["step"] for h in first] == [0, 1, 2]
    resumed = train.train_vae(_config(vae={"steps": 5, "checkpoint_every": 5}), tiny_dataset, work, progress=False)
    assert [h["step"] for h in resumed] == [0, 1, 2, 3, 4]
    assert resumed[:3] == first

    before = {p.name: p.read_bytes() for p in (work / "vae").iterdir()}
    with pytest.raises(train.CheckpointMismatchError, match=r"latent_dim: checkpoint 8 vs config 4"):
        train.train_vae(_config(vae={"latent_dim": 4, "steps": 6}), tiny_dataset, work, progress=False)
    assert {p.name: p.read_bytes() for p in (work / "vae").iterdir()} == before

    fresh = train.train_vae(
        _config(vae={"latent_dim": 4, "steps": 2}), tiny_dataset, work, resume=False, progress=False
    )
    assert [h["step"] for h in fresh] == [0, 1]


def test_nan_pixels_give_a_clear_error(tiny_dataset, tmp_path, monkeypatch):
    from galsim_hub.training.datasets import data

    real = data.make_tf_dataset

    def with_nan(*args, **kwargs):
        def poison(batch):
            image = tf.tensor_scatter_nd_update(batch["image"], [[0, 3, 3]], [np.nan])
            return {**batch, "image": image}

        return real(*args, **kwargs).map(poison)

    monkeypatch.setattr(data, "make_tf_dataset", with_nan)
    with pytest.raises(train.TrainingDivergedError, match="NaN or infinite"):
        train.train_vae(_config(vae={"steps": 2, "image_scale": 0.05}), tiny_dataset, tmp_path / "w", progress=False)


def test_diverging_loss_gives_a_clear_error(tiny_dataset, tmp_path):
    config = _config(vae={"steps": 20, "learning_rate": 1e6, "warmup_steps": 0, "lr_schedule": "constant"})
    with pytest.raises(train.TrainingDivergedError, match="loss became non-finite at step"):
        train.train_vae(config, tiny_dataset, tmp_path / "w", progress=False)


def test_cli_reports_config_errors(tmp_path, capsys):
    from galsim_hub.training.__main__ import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("vae:\n  latent: 3\n")
    assert main(["vae", "--config", str(bad), "--work-dir", str(tmp_path / "w")]) == 1
    assert "unknown key 'latent' in config section 'vae'" in capsys.readouterr().err


def test_heldout_loss_is_recorded_at_every_checkpoint_and_resumes(tiny_dataset, tmp_path):
    work = tmp_path / "heldout"
    train.train_vae(
        _config(vae={"steps": 4, "checkpoint_every": 2}), tiny_dataset, work, progress=False, heldout_dir=tiny_dataset
    )
    curve = json.loads((work / "vae_heldout.json").read_text())
    assert [h["step"] for h in curve] == [0, 2, 4]
    assert all(np.isfinite(h[k]) for h in curve for k in ("loss", "nll", "kl", "tv"))
    assert curve[-1]["loss"] < curve[0]["loss"]  # training helps the held-out loss
    train.train_vae(
        _config(vae={"steps": 6, "checkpoint_every": 2}), tiny_dataset, work, progress=False, heldout_dir=tiny_dataset
    )
    resumed = json.loads((work / "vae_heldout.json").read_text())
    assert [h["step"] for h in resumed] == [0, 2, 4, 6]
    assert resumed[:3] == curve


def test_heldout_data_of_another_stamp_size_is_refused(tiny_dataset, tmp_path):
    from galsim_hub.errors import GalSimHubError

    other = build_synthetic_dataset(tmp_path / "small", 8, stamp_size=16, noise_sigma=0.01, seed=1)
    with pytest.raises(GalSimHubError, match="held-out data set .* 16"):
        train.train_vae(_config(vae={"steps": 2}), tiny_dataset, tmp_path / "w", progress=False, heldout_dir=other)


def test_resume_with_changed_hyperparameters_is_refused(tiny_dataset, tmp_path):
    """Issue 17 (8): a resumed run with another learning rate, likelihood or batch size would mix
    two optimisations (the loss jumped from -3384 to 3.2e9 without a word)."""
    work = tmp_path / "work"
    train.train_vae(_config(vae={"steps": 2, "checkpoint_every": 2}), tiny_dataset, work, progress=False)
    before = {p.name: p.read_bytes() for p in (work / "vae").iterdir()}
    for change, named in (
        ({"learning_rate": 1e-2}, "learning_rate: checkpoint 0.001 vs config 0.01"),
        ({"likelihood": "fourier"}, "likelihood: checkpoint 'pixel' vs config 'fourier'"),
        ({"batch_size": 16}, "batch_size: checkpoint 32 vs config 16"),
    ):
        with pytest.raises(train.CheckpointMismatchError, match=rf"other settings \(.*{re.escape(named)}"):
            train.train_vae(
                _config(vae={"steps": 4, "checkpoint_every": 2, **change}), tiny_dataset, work, progress=False
            )
    assert {p.name: p.read_bytes() for p in (work / "vae").iterdir()} == before
    # More steps is how a run is extended: allowed.
    history = train.train_vae(_config(vae={"steps": 4, "checkpoint_every": 2}), tiny_dataset, work, progress=False)
    assert [h["step"] for h in history] == [0, 1, 2, 3]


def test_cli_names_bad_files_and_folders(tmp_path, capsys):
    """Issue 17 (6): invalid JSON/YAML, a --work-dir that is a file: one-line errors, exit 1."""
    from galsim_hub.training.__main__ import main

    for name, text, message in (
        ("bad.json", "{not json", "cannot parse training config"),
        ("bad.yaml", "vae: [unclosed", "cannot parse training config"),
    ):
        (tmp_path / name).write_text(text)
        assert main(["vae", "--config", str(tmp_path / name), "--work-dir", str(tmp_path / "w")]) == 1
        assert message in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps(TINY))
    (tmp_path / "file").write_text("x")
    assert main(["dataset", "--config", str(good), "--work-dir", str(tmp_path / "file")]) == 1
    assert "--work-dir" in capsys.readouterr().err and "is a file" in capsys.readouterr().err + "is a file"


def test_rerun_after_a_killed_data_set_build_starts_again(tmp_path, capsys):
    from galsim_hub.training.__main__ import main

    config = json.loads(json.dumps(TINY))
    config["dataset"].update(n_examples=8, shard_size=4, stamp_size=16)
    config["vae"].update(num_stages=2)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    dataset = tmp_path / "w" / "dataset"
    dataset.mkdir(parents=True)
    (dataset / "shard-00000.npz").write_bytes(b"half a shard")  # what a killed build leaves
    assert main(["dataset", "--config", str(path), "--work-dir", str(tmp_path / "w"), "--quiet"]) == 0
    assert json.loads((dataset / "dataset.json").read_text())["n_examples"] == 8
    # A finished data set is not replaced without --overwrite, and the flag is named.
    assert main(["dataset", "--config", str(path), "--work-dir", str(tmp_path / "w"), "--quiet"]) == 1
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "cannot be read"),
        (lambda b: b"", "cannot be read"),
    ],
)
def test_damaged_shard_is_named(damage, message, tmp_path):
    from galsim_hub.errors import MetadataError

    data = build_synthetic_dataset(tmp_path / "d", 8, stamp_size=32, noise_sigma=0.01, seed=0, shard_size=4)
    shard = data / "shard-00001.npz"
    shard.write_bytes(damage(shard.read_bytes()))
    with pytest.raises(MetadataError, match=rf"shard .*shard-00001.npz.* {message}"):
        train.train_vae(
            _config(dataset={"n_examples": 8}, vae={"steps": 1, "batch_size": 4}), data, tmp_path / "w", progress=False
        )


def test_reshaped_shard_is_named(tmp_path):
    from galsim_hub.errors import MetadataError

    data = build_synthetic_dataset(tmp_path / "d", 8, stamp_size=32, noise_sigma=0.01, seed=0, shard_size=4)
    shard = data / "shard-00000.npz"
    with np.load(shard) as arrays:
        content = {k: arrays[k] for k in arrays.files}
    content["image"] = content["image"][:, :16, :16]
    np.savez(shard, **content)
    with pytest.raises(MetadataError, match=r"shard .*shard-00000.npz.* image stamps of shape \(16, 16\)"):
        train.train_vae(_config(vae={"steps": 1, "batch_size": 4}), data, tmp_path / "w", progress=False)


def test_full_disk_at_checkpoint_time_is_a_one_line_error(tmp_path, capsys, monkeypatch):

    from galsim_hub.training.__main__ import main

    config = json.loads(json.dumps(TINY))
    config["dataset"].update(n_examples=32, stamp_size=16)
    config["vae"].update(num_stages=2, steps=2, checkpoint_every=1)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    assert main(["dataset", "--config", str(path), "--work-dir", str(tmp_path / "w"), "--quiet"]) == 0

    def full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "tmp/ckpt-1.data: No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full)
    assert main(["vae", "--config", str(path), "--work-dir", str(tmp_path / "w"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err


def test_loss_curve_is_drawn_from_a_work_directory(tiny_dataset, tmp_path):
    from galsim_hub.training.__main__ import main
    from galsim_hub.training.fitting.curves import read_curves

    work = tmp_path / "w"
    train.train_vae(
        _config(vae={"steps": 4, "checkpoint_every": 2}), tiny_dataset, work, progress=False, heldout_dir=tiny_dataset
    )
    curves = read_curves(work, window=2)
    assert list(curves["train_step"]) == [0, 1, 2, 3] and list(curves["heldout_step"]) == [0, 2, 4]
    assert main(["curve", "--work-dir", str(work), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert main(["curve", "--work-dir", str(tmp_path / "none"), "--out", str(tmp_path / "x.png")]) == 1
