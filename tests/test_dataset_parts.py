"""A data set built in parts (``--part I/N``, then ``--merge``) holds the same bytes as one run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from galsim_hub.cli import main
from galsim_hub.errors import MetadataError
from galsim_hub.training.datasets import data
from galsim_hub.training.datasets.shards import Part, merge_parts

COSMOS_DIR = Path(__file__).resolve().parent / "data" / "cosmos_23.5_example"


def files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def synthetic(out: Path, part: Part | None = None) -> Path:
    return data.build_synthetic_dataset(out, 10, stamp_size=16, shard_size=3, seed=4, progress=False, part=part)


def test_parts_in_any_order_then_merge_give_the_bytes_of_one_run(tmp_path):
    whole = files(synthetic(tmp_path / "whole"))
    assert sorted(whole) == ["dataset.json"] + [f"shard-{i:05d}.npz" for i in range(4)]
    for number in (3, 1, 2):
        synthetic(tmp_path / "parts", Part(number, 3))
    assert sorted(p.name for p in (tmp_path / "parts").glob("shard-*")) == sorted(
        n for n in whole if n != "dataset.json"
    )
    merge_parts(tmp_path / "parts")
    assert files(tmp_path / "parts") == whole  # the part manifests are gone, every byte is the same


def test_a_part_draws_only_its_own_examples(tmp_path):
    synthetic(tmp_path / "p", Part(2, 3))
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["part-00002-of-00003.json", "shard-00001.npz"]


def test_merge_refuses_missing_and_mixed_parts(tmp_path):
    for number in (1, 3):
        synthetic(tmp_path / "p", Part(number, 3))
    with pytest.raises(MetadataError, match=r"parts 2/3 are missing"):
        merge_parts(tmp_path / "p")
    with pytest.raises(MetadataError):  # no dataset.json: not a data set until merged
        data.read_dataset_metadata(tmp_path / "p")
    synthetic(tmp_path / "p", Part(1, 2))
    with pytest.raises(MetadataError, match="different splits"):
        merge_parts(tmp_path / "p")
    with pytest.raises(MetadataError, match="no part manifest"):
        merge_parts(tmp_path / "empty")


def test_a_lost_shard_is_named_at_merge(tmp_path):
    for number in (1, 2):
        synthetic(tmp_path / "p", Part(number, 2))
    (tmp_path / "p" / "shard-00002.npz").unlink()
    with pytest.raises(MetadataError, match="shard-00002.npz"):
        merge_parts(tmp_path / "p")


@pytest.mark.slow
def test_real_cosmos_galaxies_in_parts_match_one_run(tmp_path):
    """Shuffled examples of real galaxies (orientations and shifts): each part draws its own."""
    options = dict(
        catalog_file="real_galaxy_catalog_23.5_example.fits",
        stamp_size=32,
        exclusion_level="none",
        max_galaxies=2,
        orientations=1,
        shifts=2,
        shard_size=5,
        seed=3,
        progress=False,
    )
    whole = files(data.build_cosmos_dataset(tmp_path / "whole", COSMOS_DIR, **options))
    for number in (2, 1):
        data.build_cosmos_dataset(tmp_path / "parts", COSMOS_DIR, part=Part(number, 2), **options)
    assert files(merge_parts(tmp_path / "parts")) == whole


def test_part_parsing():
    assert Part.parse("2/8") == Part(2, 8)
    for text in ("0/3", "4/3", "a/b", "3"):
        with pytest.raises(ValueError, match="--part"):
            Part.parse(text)


@pytest.mark.slow
def test_cli_dataset_parts_and_merge(tmp_path, capsys):
    config = {"dataset": {"source": "synthetic", "n_examples": 7, "stamp_size": 16, "shard_size": 2, "seed": 1}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["dataset", "--config", str(path), "--work-dir", str(tmp_path / "one"), "--quiet"]) == 0
    for number in (1, 2):
        argv = [
            "dataset",
            "--config",
            str(path),
            "--work-dir",
            str(tmp_path / "two"),
            "--quiet",
            "--part",
            f"{number}/2",
        ]
        assert main(argv) == 0
    assert "run `galsim-hub dataset --merge`" in capsys.readouterr().out
    assert main(["dataset", "--config", str(path), "--work-dir", str(tmp_path / "two"), "--merge"]) == 0
    assert files(tmp_path / "two" / "dataset") == files(tmp_path / "one" / "dataset")
    assert main(["dataset", "--config", str(path), "--work-dir", str(tmp_path / "x"), "--part", "3/2"]) == 1
    assert "I must be from 1 to N" in capsys.readouterr().err
