"""The COSMOS path on real HST galaxies (tests/data: 24 real galaxies in both catalog layouts).

Data set (both RealGalaxyCatalog layouts, exact augmentations, held-out split), a short training
run, export, sampling and the real-galaxy validation with the memorisation check, as a user runs
them from the command line.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from galsim_hub.errors import CatalogError
from galsim_hub.training.datasets import data

pytestmark = pytest.mark.slow  # these tests train models

DATA = Path(__file__).parent / "data"
CATALOGS = [
    {"dir": str(DATA / "cosmos_23.5_example"), "file": "real_galaxy_catalog_23.5_example.fits"},
    {
        "dir": str(DATA / "cosmos_btk100"),
        "file": "real_galaxy_catalog_26_extension_example.fits",
        "exclusion_level": "none",
    },
]
HELD_OUT = [101644, 106621, 109773, 28, 122766, 122806]
STAMP, SCALE = 32, 0.12


def _periodic(array):
    """A PSF stamp centred on (S//2, S//2) as a periodic array with lag 0 at index 0."""
    return np.fft.ifftshift(array)


def _dihedral(periodic):
    """The 8 transforms of a periodic array about lag 0 (transposes and axis negations)."""
    out = []
    for base in (periodic, periodic.T):
        for flip_y in (False, True):
            for flip_x in (False, True):
                a = base
                if flip_y:
                    a = np.roll(a[::-1], 1, axis=0)
                if flip_x:
                    a = np.roll(a[:, ::-1], 1, axis=1)
                out.append(a)
    return out


@pytest.fixture(scope="module")
def holdout_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("holdout") / "holdout.txt"
    path.write_text("# held out\n" + "\n".join(f"{i}  # a galaxy" for i in HELD_OUT) + "\n")
    return path


@pytest.fixture(scope="module")
def augmented(tmp_path_factory, holdout_file):
    return data.build_cosmos_dataset(
        tmp_path_factory.mktemp("aug") / "train",
        catalogs=CATALOGS,
        stamp_size=STAMP,
        pixel_scale=SCALE,
        holdout=holdout_file,
        split="train",
        orientations=8,
        shifts=1,
        max_galaxies=3,
        shard_size=20,
        progress=False,
    )


def test_both_catalog_layouts_give_the_catalog_conditions(tmp_path):
    out = data.build_cosmos_dataset(
        tmp_path / "all", catalogs=CATALOGS, stamp_size=STAMP, pixel_scale=SCALE, parametric=True, progress=False
    )
    meta = data.read_dataset_metadata(out)
    arrays = data.load_arrays(out)
    assert meta["n_examples"] == 24 and meta["n_galaxies"] == 24
    assert [c["name"] for c in meta["conditions"]] == ["mag_auto", "flux_radius", "zphot"]
    assert "0.03 arcsec" in meta["conditions"][1]["description"]
    by_ident = dict(zip(arrays["ident"].tolist(), arrays["conditions"]))
    # The 23.5 layout: mag_auto, flux_radius, zphot in the _fits catalog.
    fits_23 = Table.read(DATA / "cosmos_23.5_example" / "real_galaxy_catalog_23.5_example_fits.fits")
    for row in fits_23:
        np.testing.assert_allclose(
            by_ident[int(row["IDENT"])], [row["mag_auto"], row["flux_radius"], row["zphot"]], rtol=1e-6
        )
    # The BTK layout: mag_auto read from MAG of the main catalog, ZPHOT in the _fits catalog.
    main_btk = Table.read(DATA / "cosmos_btk100" / "real_galaxy_catalog_26_extension_example.fits")
    fits_btk = Table.read(DATA / "cosmos_btk100" / "real_galaxy_catalog_26_extension_example_fits.fits")
    for row, fit in zip(main_btk, fits_btk):
        np.testing.assert_allclose(
            by_ident[int(row["IDENT"])], [row["MAG"], fit["flux_radius"], fit["ZPHOT"]], rtol=1e-6
        )
    # Parametric fits exist for the 23.5 galaxies only, with about the stamp's flux.
    has = dict(zip(arrays["ident"].tolist(), arrays["has_parametric"]))
    assert all(has[int(i)] for i in fits_23["IDENT"]) and not any(has[int(i)] for i in main_btk["IDENT"])
    fitted = arrays["has_parametric"]
    ratio = arrays["parametric"][fitted].sum(axis=(1, 2)) / arrays["image"][fitted].sum(axis=(1, 2))
    assert np.all((ratio > 0.8) & (ratio < 1.6))
    assert np.all(arrays["parametric"][~fitted] == 0)
    assert np.all(np.isfinite(arrays["image"])) and np.all(arrays["noise_var"] > 0)


def test_augmentations_are_exact_symmetries(augmented):
    meta = data.read_dataset_metadata(augmented)
    arrays = data.load_arrays(augmented)
    assert meta["n_galaxies"] == 3 and meta["n_examples"] == 3 * 8 * 2 and len(meta["shards"]) == 3
    assert set(arrays["ident"].tolist()).isdisjoint(HELD_OUT)
    # Shards mix galaxies: the first shard is not one galaxy's 16 examples in a row.
    assert len(set(arrays["ident"][:16].tolist())) == 3
    for ident in np.unique(arrays["ident"]):
        rows = np.flatnonzero(arrays["ident"] == ident)
        assert len(rows) == 16
        psfs = [_periodic(p) for p in arrays["psf"][rows]]
        symmetries = _dihedral(psfs[0])
        peak = psfs[0].max()
        distinct = set()
        for psf in psfs:
            errors = [np.abs(psf - s).max() / peak for s in symmetries]
            assert min(errors) < 1e-4, "a PSF is not a symmetry of the galaxy's first PSF"
            distinct.add(int(np.argmin(errors)))
        assert len(distinct) == 8, "the 8 orientations of image, PSF and noise are all present"
        # Flux and noise are conserved by the transforms (up to each example's own noise: the
        # rms of a stamp's sum is S * sqrt(noise_ps[0, 0]) for correlated noise).
        flux = arrays["image"][rows].sum(axis=(1, 2))
        flux_noise = STAMP * np.sqrt(arrays["noise_ps"][rows[0], 0, 0])
        assert np.std(flux) < 2 * flux_noise
        np.testing.assert_allclose(arrays["noise_var"][rows], arrays["noise_var"][rows[0]], rtol=1e-3)
        np.testing.assert_allclose(
            arrays["noise_ps"][rows].sum(axis=(1, 2)), arrays["noise_ps"][rows[0]].sum(), rtol=1e-3
        )


def test_held_out_split_and_bad_lists(tmp_path, holdout_file):
    out = data.build_cosmos_dataset(
        tmp_path / "held",
        catalogs=CATALOGS,
        stamp_size=STAMP,
        pixel_scale=SCALE,
        holdout=holdout_file,
        split="holdout",
        progress=False,
    )
    assert sorted(data.load_arrays(out, ["ident"])["ident"].tolist()) == sorted(HELD_OUT)
    assert data.read_holdout(holdout_file) == HELD_OUT
    with pytest.raises(CatalogError, match=r"held-out IDENT\(s\) \[7\]"):
        data.build_cosmos_dataset(
            tmp_path / "x", catalogs=CATALOGS, stamp_size=STAMP, holdout=[7, 28], split="train", progress=False
        )
    with pytest.raises(ValueError, match="needs a held-out list"):
        data.build_cosmos_dataset(tmp_path / "x", catalogs=CATALOGS, stamp_size=STAMP, split="train", progress=False)
    bad = tmp_path / "bad.txt"
    bad.write_text("28\nabc\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected a COSMOS IDENT, got 'abc'"):
        data.read_holdout(bad)
    with pytest.raises(ValueError, match="orientations must be 1 or 8"):
        data.build_cosmos_dataset(tmp_path / "x", catalogs=CATALOGS, orientations=4, progress=False)
    with pytest.raises(ValueError, match="unknown catalog key"):
        data.build_cosmos_dataset(tmp_path / "x", catalogs=[{"dir": "a", "path": "b"}], progress=False)


def test_train_export_sample_and_validate_on_real_galaxies(tmp_path, holdout_file):
    """The whole COSMOS path from the command line, on real files, with a tiny model."""
    import yaml

    import galsim_hub
    from galsim_hub.cli import main as training_main

    config = {
        "dataset": {
            "source": "cosmos",
            "n_examples": None,
            "stamp_size": STAMP,
            "pixel_scale": SCALE,
            "options": {"catalogs": CATALOGS, "holdout": str(holdout_file), "split": "train"},
        },
        "vae": {
            "latent_dim": 4,
            "num_stages": 3,
            "base_depth": 4,
            "max_depth": 16,
            "batch_size": 8,
            "steps": 30,
            "warmup_steps": 10,
            "checkpoint_every": 30,
        },
        "flow": {
            "n_blocks": 2,
            "hidden_units": [16, 16],
            "steps": 30,
            "batch_size": 16,
            "warmup_steps": 10,
            "checkpoint_every": 30,
        },
        "export": {"name": "real-tiny", "version": "0.1"},
    }
    config_path = tmp_path / "real.yaml"
    config_path.write_text(yaml.safe_dump(config))
    held = dict(
        config,
        dataset=dict(config["dataset"], options=dict(config["dataset"]["options"], split="holdout", parametric=True)),
    )
    held_path = tmp_path / "held.yaml"
    held_path.write_text(yaml.safe_dump(held))

    work = tmp_path / "work"
    assert training_main(["train", "--config", str(config_path), "--work-dir", str(work), "--quiet"]) == 0
    assert training_main(["dataset", "--config", str(held_path), "--work-dir", str(tmp_path / "held"), "--quiet"]) == 0
    model_dir = work / "export" / "real-tiny"
    model = galsim_hub.GenerativeGalaxyModel(str(model_dir))
    assert (model.stamp_size, model.pixel_scale) == (STAMP, SCALE)
    ranges = {c["name"]: (c["min"], c["max"]) for c in model.metadata["conditions"]}
    assert ranges["mag_auto"][0] < 22.5 and ranges["mag_auto"][1] > 25  # both samples trained on
    images = model.sample(
        Table({"mag_auto": [22.4, 25.3], "flux_radius": [6.0, 4.0], "zphot": [0.5, 1.0]}), seed=3, return_arrays=True
    )
    assert images.shape == (2, STAMP, STAMP) and np.all(np.isfinite(images)) and np.all(images >= 0)

    out = tmp_path / "validation"
    status = training_main(
        [
            "validate",
            str(model_dir),
            "--data",
            str(tmp_path / "held" / "dataset"),
            "--train-data",
            str(work / "dataset"),
            "--out",
            str(out),
            "--bootstrap",
            "20",
            # a 30-step model has no plausible stamp at the edges of its range
            "--out-of-range",
            "extrapolate",
        ]
    )
    assert status == 0
    report = json.loads((out / "validation.json").read_text())
    assert report["metadata"]["n_galaxies"] == 6 and report["metadata"]["n_parametric"] == 3
    assert report["metadata"]["real sample"] == "observed stamps"
    names = [t["name"] for t in report["targets"]]
    assert "memorisation" in names and "gini_distance" in names
    memorisation = report["memorisation"]
    assert memorisation["n"] == 6 and memorisation["n_training"] == 18
    assert 0 <= memorisation["copy_fraction"] <= 1 and memorisation["median_real"] > 0
    assert report["comparisons"]["mock_fitted"][0]["n_real"] <= 3
    text = (out / "validation.md").read_text()
    assert "## Memorisation check" in text and "± (bootstrap)" in text
    assert {p.name for p in out.glob("*.png")} >= {"gallery.png", "memorisation.png", "gini_m20.png"}
