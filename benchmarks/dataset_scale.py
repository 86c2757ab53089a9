"""Data set building at COSMOS 25.2 size: examples/s against the number of part jobs.

A RealGalaxyCatalog of 81,500 rows (the size of COSMOS 25.2) is made from the 200 real galaxies of
``../shared/data``: GalSim's 100-galaxy example (``cosmos_23.5_example``) and BlendingToolKit's 100
(``cosmos_btk100``) each give half the rows. Row ``k`` of a half is a copy of galaxy ``k mod 100`` of
its catalog (the same image, PSF and fit HDUs, by reference: the image files are linked, not copied)
with IDENT ``1_000_000 * (k // 100) + IDENT`` (every original IDENT is below 1,000,000 and the two
catalogs share none), so every copy gets its own noise padding and, with ``--orientations 8``, its
own one of the 8 exact symmetries of the pixel grid. Each catalog's files (main, ``_fits``,
``_selection``) are replicated together; both halves are built as one data set (``catalogs``), with
``exclusion_level='none'`` since the BTK half has no parametric fits.

Then ``--examples`` examples are drawn from it (``max_galaxies``, after the catalog's cuts) once
by one job, and again by ``J`` jobs, each ``--part j/J`` in its own process, followed by the
merge; the merged directory is checked byte for byte against the single run. The table gives
wall time, examples/s and the 81,500-example build time that rate implies. Every job runs one
thread (``OMP_NUM_THREADS=1``, set before any import): jobs sharing a machine with GalSim's
OpenMP threads each oversubscribe the cores (measured: 2 jobs then took twice as long as 1).

    python benchmarks/dataset_scale.py [--examples 256] [--jobs 1,2] [--rows 81500]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy and GalSim start their thread pools
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import multiprocessing
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: (directory, main catalog stem) of each half of the rows.
SOURCES = (
    ("cosmos_23.5_example", "real_galaxy_catalog_23.5_example"),
    ("cosmos_btk100", "real_galaxy_catalog_26_extension_example"),
)


def replicate_catalog(source: Path, stem: str, out: Path, rows: int) -> None:
    """The catalog files ``stem*.fits`` of ``source`` with ``rows`` rows of copies; other files linked."""
    out.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if not path.name.startswith(stem):
            os.symlink(path, out / path.name)
    for suffix in ("", "_fits", "_selection"):
        if not (source / f"{stem}{suffix}.fits").exists():
            continue
        with fits.open(source / f"{stem}{suffix}.fits") as hdus:
            table = hdus[1].data
            copies = np.arange(rows) // len(table)
            index = np.arange(rows) % len(table)
            data = table[index].copy()
            data["IDENT"] = table["IDENT"][index] + 1_000_000 * copies
            fits.BinTableHDU(data, header=hdus[1].header).writeto(out / f"{stem}{suffix}.fits")


def replicate_all(out: Path, rows: int) -> list[dict[str, str]]:
    """Both halves of the ``rows``-row catalog under ``out``; the ``catalogs`` entries that read them."""
    specs = []
    for number, (name, stem) in enumerate(SOURCES):
        half = rows // len(SOURCES) + (number < rows % len(SOURCES))
        replicate_catalog(DATA / name, stem, out / name, half)
        specs.append({"dir": str(out / name), "file": f"{stem}.fits", "exclusion_level": "none"})
    return specs


def build(
    catalogs: list[dict[str, str]], out: Path, examples: int, orientations: int, part: tuple[int, int] | None
) -> None:
    from galsim_hub.training.datasets import data
    from galsim_hub.training.datasets.shards import Part

    data.build_cosmos_dataset(
        out,
        catalogs=catalogs,
        stamp_size=64,
        pixel_scale=0.03,
        max_galaxies=examples // orientations,
        orientations=orientations,
        shard_size=32,
        seed=5,
        progress=False,
        part=None if part is None else Part(*part),
    )


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--rows", type=int, default=81_500)
    parser.add_argument("--jobs", default="1,2")
    parser.add_argument("--orientations", type=int, default=1, choices=(1, 8))
    args = parser.parse_args()
    from galsim_hub.training.datasets.shards import merge_parts

    work = Path(tempfile.mkdtemp(prefix="dataset_scale_"))
    try:
        start = time.perf_counter()
        catalogs = replicate_all(work / "catalog", args.rows)
        made = time.perf_counter() - start
        print(
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; catalog of {args.rows} rows "
            f'made in {made:.1f} s; {args.examples} examples of 64x64 at 0.03"/px, orientations {args.orientations}'
        )
        print("\n| jobs | wall s | examples/s | 81,500 examples at this rate | same bytes as 1 job |")
        print("| --- | --- | --- | --- | --- |")
        reference = None
        context = multiprocessing.get_context("spawn")
        for jobs in (int(j) for j in args.jobs.split(",")):
            out = work / f"jobs{jobs}"
            start = time.perf_counter()
            if jobs == 1:
                build(catalogs, out, args.examples, args.orientations, None)
            else:
                workers = [
                    context.Process(target=build, args=(catalogs, out, args.examples, args.orientations, (j, jobs)))
                    for j in range(1, jobs + 1)
                ]
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join()
                    if worker.exitcode:
                        raise SystemExit(f"a part job failed (exit {worker.exitcode})")
                merge_parts(out)
            wall = time.perf_counter() - start
            got = files(out)
            reference = reference or got
            rate = args.examples / wall
            print(f"| {jobs} | {wall:.1f} | {rate:.1f} | {81_500 / rate / 3600:.2f} h | {got == reference} |")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
