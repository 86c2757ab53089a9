"""The config speed table of issue #12: generative galaxies next to GalSim's COSMOSGalaxy, nproc 1 and 2.

Usage::

    python benchmarks/config_speed.py [--model hub:synthetic_bdk] [--rounds 2] [--cosmos-real DIR]
                                      [--cosmos-parametric DIR] [--only NAME,...]

Each row is a YAML of ``benchmarks/configs/`` (1000 objects on 64x64 stamps at 0.2"/px, Moffat
PSF, Gaussian noise, ``Tiled`` 40x25), run by the real ``galsim`` executable (``python -m
galsim``) with ``image.nproc`` 1 and 2, and with one object (``image.nx_tiles=1
image.ny_tiles=1``), whose wall time is the start-up to the first galaxy (Python, GalSim, for
the model TensorFlow, its loading and first call, the noise, the FITS file). Per object is
``(1000 objects - 1 object) / 999``. Rounds are interleaved, so a busy spell on a shared machine
slows every row alike; the tables give the best round, in wall-clock and in CPU seconds. The nproc 1 and 2 images are checked to
be identical. COSMOS rows need GalSim's RealGalaxyCatalog files (by default
``../shared/data/cosmos_btk100`` and ``../shared/data/cosmos_23.5_example`` next to the
repository) and are skipped with a note when they are absent.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import uniform_catalog

CONFIGS = Path(__file__).resolve().parent / "configs"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NOBJECTS = 1000
ROWS = {  # name: (YAML, what it needs)
    "generative, Catalog conditions": ("generative_catalog.yaml", "catalog"),
    "generative, Random conditions": ("generative_random.yaml", None),
    "COSMOSGalaxy real (100 BTK galaxies)": ("cosmos_real.yaml", "cosmos_real"),
    "COSMOSGalaxy parametric (23.5 example)": ("cosmos_parametric.yaml", "cosmos_parametric"),
}


def run_galsim(workdir: Path, yaml_file: str, overrides: list[str], output: str) -> tuple[float, float]:
    """Wall-clock and CPU (user + system, all its processes) seconds of one ``python -m galsim`` run."""
    command = [
        sys.executable,
        "-m",
        "galsim",
        "-v",
        "0",
        str(CONFIGS / yaml_file),
        f"output.file_name={output}",
        *overrides,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=workdir, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def startup_breakdown(model: str) -> dict[str, float]:
    """Seconds of each start-up step of the generative path, in a fresh interpreter."""
    code = f"""
import time; t0 = time.perf_counter()
import galsim, numpy as np, galsim_hub
from galsim_hub.config import GenerativeModelInput
t1 = time.perf_counter()
model = GenerativeModelInput({model!r})
t2 = time.perf_counter()
import tensorflow
t3 = time.perf_counter()
loaded = model._loaded()
t4 = time.perf_counter()
conditions = np.array([[c['min'] + 0.5 * (c['max'] - c['min']) for c in model.getMetadata()['conditions']]])
loaded.sample_images(conditions, np.zeros((1, model.latent_dim), np.float32))
t5 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
"""
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    values = [float(v) for v in result.stdout.split()]
    names = [
        "import galsim, galsim_hub",
        "input object (handle, cache, metadata)",
        "import tensorflow",
        "load the model",
        "first call (1 object)",
    ]
    return dict(zip(names, values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hub:synthetic_bdk")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cosmos-real", type=Path, default=SHARED / "cosmos_btk100")
    parser.add_argument("--cosmos-parametric", type=Path, default=SHARED / "cosmos_23.5_example")
    parser.add_argument("--only", default="", help="comma-separated words: run the rows whose name has one")
    args = parser.parse_args()
    needs = {
        "cosmos_real": args.cosmos_real / "real_galaxy_catalog_26_extension_example.fits",
        "cosmos_parametric": args.cosmos_parametric / "real_galaxy_catalog_23.5_example_fits.fits",
    }
    rows = {
        name: spec for name, spec in ROWS.items() if not args.only or any(word in name for word in args.only.split(","))
    }
    for name, (_, need) in list(rows.items()):
        if need in needs and not needs[need].is_file():
            print(f"skipped '{name}': {needs[need]} not found")
            del rows[name]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        from galsim_hub.config import GenerativeModelInput

        metadata = GenerativeModelInput(args.model).getMetadata()
        uniform_catalog(metadata["conditions"], NOBJECTS, seed=1).write(workdir / "catalog_1000.fits")
        extra = {
            "catalog": [f"input.catalog.dir={workdir}", f"input.generative_model.file_name={args.model}"],
            None: [f"input.generative_model.file_name={args.model}"],
            "cosmos_real": [f"input.cosmos_catalog.dir={args.cosmos_real}"],
            "cosmos_parametric": [f"input.cosmos_catalog.dir={args.cosmos_parametric}"],
        }
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _round in range(args.rounds):
            for name, (yaml_file, need) in rows.items():
                for label, overrides in (
                    ("1 object", ["image.nx_tiles=1", "image.ny_tiles=1"]),
                    ("nproc 1", ["image.nproc=1"]),
                    ("nproc 2", ["image.nproc=2"]),
                ):
                    output = f"{yaml_file[:-5]}_{label.replace(' ', '')}.fits"
                    times.setdefault((name, label), []).append(
                        run_galsim(workdir, yaml_file, extra[need] + overrides, output)
                    )
                one, two = (fits.getdata(workdir / f"{yaml_file[:-5]}_nproc{n}.fits") for n in (1, 2))
                if not np.array_equal(one, two):
                    raise SystemExit(f"'{name}': nproc 1 and nproc 2 images differ")
        breakdown = startup_breakdown(args.model)
    load_after = os.getloadavg()

    print(
        f'{NOBJECTS} objects, 64x64 stamps at 0.2"/px, Moffat PSF, Gaussian noise, Tiled 40x25; '
        f"model {args.model}; {os.cpu_count()} CPUs; best of {args.rounds} interleaved rounds"
    )
    print(f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after\n")
    print("Wall-clock seconds (best round):\n")
    print(
        "| gal | 1 object (start-up) | nproc 1 | nproc 2 | nproc 1 / nproc 2 | ms per object, nproc 1 "
        "| ms per object, nproc 2 | per-object speed-up |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in rows:
        start, one, two = (
            min(wall for wall, _ in times[(name, label)]) for label in ("1 object", "nproc 1", "nproc 2")
        )
        per_one, per_two = ((t - start) / (NOBJECTS - 1) * 1e3 for t in (one, two))
        print(
            f"| {name} | {start:.1f} | {one:.1f} | {two:.1f} | {one / two:.2f}x | {per_one:.2f} "
            f"| {per_two:.2f} | {per_one / per_two:.2f}x |"
        )
    print(
        "\nCPU seconds, user + system of all processes (best round; on a shared machine a steadier "
        "measure of the work than wall-clock time):\n"
    )
    print("| gal | 1 object (start-up) | nproc 1 | nproc 2 | ms per object, nproc 1 | ms per object, nproc 2 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in rows:
        start, one, two = (min(cpu for _, cpu in times[(name, label)]) for label in ("1 object", "nproc 1", "nproc 2"))
        per_one, per_two = ((t - start) / (NOBJECTS - 1) * 1e3 for t in (one, two))
        print(f"| {name} | {start:.1f} | {one:.1f} | {two:.1f} | {per_one:.2f} | {per_two:.2f} |")
    print("\nnproc 1 and nproc 2 images identical: yes (checked for every row)")
    print("\nStart-up of the generative path in a fresh interpreter (seconds):")
    for step, seconds in breakdown.items():
        print(f"  {step:<40} {seconds:6.2f}")
    print(f"  {'sum':<40} {sum(breakdown.values()):6.2f}")


if __name__ == "__main__":
    main()
