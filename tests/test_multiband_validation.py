"""Multi-band validation (galsim_hub.training.validation.multiband) end to end.

A tiny chromatic data set and a tiny multi-band model trained on it (a few steps: garbage
quality, the real interfaces) are built once per session; stand-in models that return the
truth, or the truth without its colour gradients, check that the targets tell them apart.
"""

import json
import shutil

import numpy as np
import pytest

from galsim_hub.errors import MetadataError
from galsim_hub.training.datasets.shards import load_arrays, read_dataset_metadata
from galsim_hub.training.validation import morphology, multiband
from galsim_hub.training.validation.colours import no_gradient_profiles

pytestmark = pytest.mark.slow  # these tests train models

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = {
    "band_size_ellipticity.png",
    "colour_gradients.png",
    "size_ratios.png",
    "colour_colour.png",
    "rgb_gallery.png",
}
TINY = {
    "dataset": {"source": "chromatic", "n_examples": 24, "stamp_size": 32, "pixel_scale": 0.05, "shard_size": 12},
    "vae": {
        "latent_dim": 2,
        "num_stages": 2,
        "base_depth": 4,
        "max_depth": 8,
        "batch_size": 8,
        "steps": 2,
        "checkpoint_every": 2,
        "warmup_steps": 1,
    },
    "flow": {"n_blocks": 1, "hidden_units": [4], "batch_size": 8, "steps": 2, "warmup_steps": 1, "checkpoint_every": 2},
    "export": {"name": "tiny_multiband", "version": "0.1"},
}


@pytest.fixture(scope="session")
def tiny_chromatic(tmp_path_factory):
    """``(data set dir, exported model dir)``: 24 chromatic galaxies and a model trained 2 steps on them."""
    from galsim_hub.training.fitting import train
    from galsim_hub.training.fitting.config import config_from_dict

    config = config_from_dict(json.loads(json.dumps(TINY)))
    work = tmp_path_factory.mktemp("chromatic")
    dataset = train.build_dataset(config, work, progress=False)
    model = train.run_all(config, work, work / "export", progress=False)
    return dataset, model


class TruthModel:
    """A stand-in multi-band model returning each galaxy's truth, or its no-gradient version."""

    def __init__(self, data_dir, gradients=True, bands=("f435w", "f606w", "f814w")):
        metadata = read_dataset_metadata(data_dir)
        arrays = load_arrays(data_dir, keys=["truth", "conditions"])
        self.truth = arrays["truth"] if gradients else no_gradient_profiles(arrays["truth"], 2)
        self.conditions = arrays["conditions"]
        self.quantities = [c["name"] for c in metadata["conditions"]]
        self.pixel_scale, self.stamp_size = metadata["pixel_scale"], metadata["stamp_size"]
        self.bands = list(bands) if bands else None
        self.metadata = {"bands": [b for b in metadata["bands"] if bands and b["name"] in bands]}

    def sample(self, cat, seed=None, return_arrays=False, out_of_range="clip"):
        assert return_arrays
        wanted = np.stack([np.asarray(cat[q]) for q in self.quantities], axis=1)
        rows = [int(np.argmin(np.abs(self.conditions - w).sum(axis=1))) for w in wanted]
        return self.truth[rows]


def _targets(results):
    return {t["name"]: t["passed"] for t in results["targets"]}


def test_tiny_trained_model_end_to_end(tiny_chromatic, tmp_path):
    dataset, model = tiny_chromatic
    out = tmp_path / "out"
    results = morphology.run_validation(str(model), dataset, out, seed=2, n_bootstrap=50)
    bands = ["f435w", "f606w", "f814w"]
    assert list(results["stats"]) == bands and results["metadata"]["n_galaxies"] == 24
    names = [t["name"] for t in results["targets"]]
    assert names[:6] == [f"{k}_{b}" for b in bands for k in ("mean_size_relative", "mean_g_relative")]
    assert {
        "mean_gradient_f435w_f606w",
        "mean_gradient_f606w_f814w",
        "mean_color_f606w_f814w",
        "color_scatter_f435w_f606w",
        "mean_size_ratio_f435w",
        "mean_size_ratio_f606w",
    } <= set(names)
    assert len(names) == 14
    # The population has red bulges and blue discs and knots: positive gradients, bluer bands larger.
    truth, flat = results["colours"]["truth"], results["colours"]["no_gradient"]
    assert np.nanmean(truth["grad_f606w_f814w"]) > 0.02 and np.nanmean(truth["ratio_f435w"]) > 1
    np.testing.assert_allclose(flat["grad_f435w_f606w"], 0, atol=1e-6)
    np.testing.assert_allclose(flat["ratio_f606w"], 1, atol=1e-9)
    np.testing.assert_allclose(flat["color_f435w_f606w"], truth["color_f435w_f606w"], atol=1e-6)
    assert {p.name for p in results["figures"]} == FIGURES
    for path in results["figures"]:
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    text = (out / "validation.md").read_text()
    assert "## Did the model learn the colour gradients?" in text and "| mean_gradient_f606w_f814w |" in text
    assert "rgb_gallery.png" in text
    numbers = json.loads((out / "validation.json").read_text())
    assert [t["name"] for t in numbers["targets"]] == names and len(numbers["verdicts"]) == 4


def test_faithful_model_passes_and_a_model_without_gradients_fails(tiny_chromatic, tmp_path):
    dataset, _ = tiny_chromatic
    good = multiband.run_multiband_validation(TruthModel(dataset), dataset, tmp_path / "good", n_bootstrap=100)
    passed = _targets(good)
    for name in (
        "mean_color_f435w_f606w",
        "mean_color_f606w_f814w",
        "color_scatter_f606w_f814w",
        "mean_gradient_f435w_f606w",
        "mean_gradient_f606w_f814w",
        "mean_size_ratio_f435w",
        "mean_size_ratio_f606w",
    ):
        assert passed[name], name
    assert all("LEARNT" in line for line in good["verdicts"][:2])
    assert all("within tolerance" in line for line in good["verdicts"][2:])
    assert good["gradient_correlation"]["grad_f606w_f814w"] == pytest.approx(1.0)

    flat = multiband.run_multiband_validation(
        TruthModel(dataset, gradients=False), dataset, tmp_path / "flat", n_bootstrap=100
    )
    passed = _targets(flat)
    assert passed["mean_color_f435w_f606w"] and passed["mean_color_f606w_f814w"]  # right colours
    assert not passed["mean_gradient_f606w_f814w"] and not passed["mean_size_ratio_f435w"]
    assert any("NOT learnt" in line for line in flat["verdicts"])
    assert "NOT learnt" in (tmp_path / "flat" / "validation.md").read_text()


def test_cli_validate_dispatches_multiband_data_sets(tiny_chromatic, tmp_path, capsys):
    from galsim_hub.training.__main__ import main

    dataset, model = tiny_chromatic
    status = main(
        ["validate", str(model), "--data", str(dataset), "--out", str(tmp_path), "--n", "8", "--bootstrap", "20"]
    )
    printed = capsys.readouterr().out
    assert status == 0 and "| mean_gradient_f435w_f606w |" in printed and "validation.md" in printed
    assert json.loads((tmp_path / "validation.json").read_text())["metadata"]["n_galaxies"] == 8


def test_errors_name_the_problem(tiny_chromatic, tmp_path):
    from galsim_hub.training.datasets.data import build_synthetic_dataset

    dataset, model = tiny_chromatic
    with pytest.raises(MetadataError, match="single-band model"):
        multiband.run_multiband_validation(TruthModel(dataset, bands=None), dataset, tmp_path)
    with pytest.raises(MetadataError, match=r"not the data set's \['f435w'\]"):
        multiband.run_multiband_validation(TruthModel(dataset, bands=("f606w", "f814w")), dataset, tmp_path)
    with pytest.raises(ValueError, match="train_data do not apply to multi-band data sets"):
        morphology.run_validation(TruthModel(dataset), dataset, tmp_path, train_data=dataset)
    single = build_synthetic_dataset(tmp_path / "single", 4, stamp_size=32, seed=0, progress=False)
    with pytest.raises(MetadataError, match="has no 'bands'"):
        multiband.run_multiband_validation(TruthModel(dataset), single, tmp_path)
    with pytest.raises(MetadataError, match="is a multi-band model"):
        morphology.run_validation(str(model), single, tmp_path, n=2)
    copy = tmp_path / "renamed"
    shutil.copytree(dataset, copy)
    metadata = json.loads((copy / "dataset.json").read_text())
    metadata["reference_band"] = "r"
    (copy / "dataset.json").write_text(json.dumps(metadata))
    with pytest.raises(MetadataError, match="reference band 'r'"):
        multiband.run_multiband_validation(TruthModel(dataset), copy, tmp_path)
