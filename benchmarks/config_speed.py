"""Time the GalSim config run of 1000 generative galaxies: batched vs one model call per object, nproc 1 vs 2.

Usage::

    python benchmarks/config_speed.py [MODEL_HANDLE] [--nobjects 1000]

Without a handle, a toy model (32x32 stamps) is exported into a temporary folder. Each
configuration runs the real ``galsim`` executable once (TensorFlow start-up included) on a
Scattered image; the table gives wall-clock seconds.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from astropy.table import Table

GALSIM = Path(sys.executable).with_name("galsim")


def _toy_model(folder: Path) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from toy_models import build_toy_model

    return str(build_toy_model(folder / "toy"))


def _config(model: str, catalog: Path, nobjects: int, conditions: list[str]) -> dict:
    return {
        "modules": ["galsim_hub"],
        "input": {"catalog": {"file_name": str(catalog)}, "generative_model": {"file_name": model}},
        "gal": {"type": "GenerativeGalaxy", **{name: {"type": "Catalog", "col": name} for name in conditions}},
        "psf": {"type": "Moffat", "beta": 3, "fwhm": 0.12},
        "image": {"type": "Scattered", "size": 1024, "pixel_scale": 0.03, "nobjects": nobjects,
                  "stamp_size": 48, "random_seed": 1, "noise": {"type": "Gaussian", "sigma": 0.02}},
        "output": {"file_name": "bench.fits"},
    }


def _run(workdir: Path, config: Path, *overrides: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(GALSIM), "-v", "0", str(config), *overrides], cwd=workdir, check=True,
                   env=dict(os.environ, GALSIM_HUB_CACHE=str(workdir / "cache")))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("handle", nargs="?", help="model handle (default: a toy model built on the fly)")
    parser.add_argument("--nobjects", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = args.handle or _toy_model(workdir)
        from galsim_hub.config import GenerativeModelInput

        metadata = GenerativeModelInput(model).getMetadata()
        rng = np.random.default_rng(0)
        columns = {c["name"]: rng.uniform(c["min"], c["max"], args.nobjects) for c in metadata["conditions"]}
        catalog = workdir / "catalog.fits"
        Table(columns).write(catalog)
        config = workdir / "bench.yaml"
        config.write_text(yaml.safe_dump(_config(model, catalog, args.nobjects, list(columns))))
        rows = []
        for batch in (64, 1):
            for nproc in (1, 2):
                seconds = _run(workdir, config, f"input.generative_model.batch_size={batch}", f"image.nproc={nproc}")
                rows.append((batch, nproc, seconds))
        print(f"model {metadata['name']} ({metadata['stamp_size']}x{metadata['stamp_size']}), "
              f"{args.nobjects} objects, {os.cpu_count()} CPUs")
        print(f"{'batch_size':>10} {'nproc':>5} {'seconds':>8} {'objects/s':>9}")
        for batch, nproc, seconds in rows:
            print(f"{batch:>10} {nproc:>5} {seconds:>8.1f} {args.nobjects / seconds:>9.0f}")


if __name__ == "__main__":
    main()
