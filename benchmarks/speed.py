"""Speed of galsim-hub against GalSim's own galaxies, side by side in one run.

Measures on this machine, in one run, and prints markdown tables:

1. end-to-end cost per galaxy: catalog conditions -> PSF-convolved 64x64 stamp at
   0.2"/px, for the generative model, a GalSim bulge+disc and ``galsim.RealGalaxy``
   from a COSMOS-format catalog (target: generative within 3x of bulge+disc);
2. sampling throughput vs batch size, next to the raw throughput of the model's own
   ``decode`` and ``sample`` signatures at the same batch size (target: ``sample()``
   at the default batch size >= 80% of ``decode``);
3. cold start in a fresh interpreter: import, load the model, first drawn galaxy
   (target: <= 5 s);
4. a 1000-object ``galsim`` config run, batched vs one model call per object
   (target: >= 10x);
5. peak resident memory (``VmHWM``) of a fresh process streaming N galaxies through
   ``iter_sample`` in batches, for N and N/10 (target: flat).

``RealGalaxy`` needs a COSMOS-format catalog (GalSim's ``RealGalaxyCatalog`` files):
by default the 100 real galaxies of ``../shared/data/cosmos_btk100`` next to the
repository; pass ``--cosmos-dir`` to use another copy (the row is skipped when the
folder is missing).

Usage::

    python benchmarks/speed.py [--model hub:synthetic_bdk] [--cosmos-dir DIR] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import galsim
import numpy as np
from astropy.table import Table

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_COSMOS_DIR = REPOSITORY.parent / "shared" / "data" / "cosmos_btk100"
COSMOS_CATALOG = "real_galaxy_catalog_26_extension_example.fits"
# `python -m galsim`: the `galsim` script's #! line may name another environment's Python.
GALSIM = (sys.executable, "-m", "galsim")

STAMP = 64  # pixels of the drawn stamps
SCALE = 0.2  # arcsec per pixel of the drawn stamps
PSF = galsim.Moffat(beta=3.0, fwhm=0.7)  # a ground-based seeing


def _best_time(function, repeat: int) -> float:
    """Best wall time of ``repeat`` calls of ``function`` (after one warm-up call)."""
    function()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _draw(profile: galsim.GSObject) -> galsim.Image:
    return galsim.Convolve(profile, PSF).drawImage(nx=STAMP, ny=STAMP, scale=SCALE)


def uniform_catalog(conditions: list[dict], n: int, seed: int) -> Table:
    """``n`` rows drawn uniformly over the central 80% of each condition's training range."""
    rng = np.random.default_rng(seed)
    columns = {}
    for condition in conditions:
        low, high = condition["min"], condition["max"]
        columns[condition["name"]] = rng.uniform(low + 0.1 * (high - low), high - 0.1 * (high - low), n)
    return Table(columns)


# --- 1. end-to-end cost per galaxy ------------------------------------------------------


def end_to_end(model, n: int, cosmos_dir: Path, repeat: int) -> list[tuple[str, float]]:
    """Milliseconds per galaxy from conditions to a drawn, PSF-convolved stamp."""
    cat = uniform_catalog(model.metadata["conditions"], n, seed=1)
    rows = []
    sample_time = _best_time(lambda: model.sample(cat, seed=1), repeat)
    galaxies = model.sample(cat, seed=1)
    draw_time = _best_time(lambda: [_draw(g) for g in galaxies], repeat)
    images = model.sample(cat, seed=1, return_arrays=True)
    same = sum(g == model.interpolated_image(image) for g, image in zip(galaxies, images))
    print(f"check: {same}/{n} sample() objects equal galsim.InterpolatedImage built one by one (maxk included)")
    rows.append((f"generative model: sample() + draw (batch {model.batch_size})", 1e3 * (sample_time + draw_time) / n))
    rows.append(("  of which sample(): conditions -> InterpolatedImage", 1e3 * sample_time / n))
    rows.append(("  of which convolve + drawImage", 1e3 * draw_time / n))

    rng = np.random.default_rng(2)
    hlr = rng.uniform(0.2, 1.0, n)
    bulge_fraction = rng.uniform(0.0, 0.6, n)
    e1, e2 = rng.normal(0.0, 0.2, (2, n)).clip(-0.6, 0.6)

    def bulge_disc():
        for i in range(n):
            bulge = galsim.DeVaucouleurs(half_light_radius=0.6 * hlr[i], flux=bulge_fraction[i])
            disc = galsim.Exponential(half_light_radius=hlr[i], flux=1.0 - bulge_fraction[i])
            _draw(galsim.Add(bulge, disc).shear(e1=e1[i], e2=e2[i]))

    rows.append(("GalSim bulge+disc (DeVaucouleurs + Exponential)", 1e3 * _best_time(bulge_disc, repeat) / n))

    if (cosmos_dir / COSMOS_CATALOG).is_file():
        catalog = galsim.RealGalaxyCatalog(COSMOS_CATALOG, dir=str(cosmos_dir))
        n_real = catalog.nobjects

        def real_galaxies():
            for i in range(n_real):
                _draw(galsim.RealGalaxy(catalog, index=i))

        # The warm-up pass opens the FITS files; the timed passes read the HDUs again.
        rows.append(
            (f"GalSim RealGalaxy (COSMOS, {n_real} galaxies)", 1e3 * _best_time(real_galaxies, repeat) / n_real)
        )
    else:
        print(f"note: no {COSMOS_CATALOG} in {cosmos_dir}: RealGalaxy skipped (use --cosmos-dir)")
    return rows


# --- 2. throughput vs batch size --------------------------------------------------------


def throughput(model, batch_sizes: list[int], n: int, repeat: int) -> list[tuple[int, float, float, float, float]]:
    """Galaxies per second of sample(), iter_sample(), and the raw signatures, per batch size."""
    from galsim_hub.sampling.noise import draw_base_noise

    loaded = model._model
    cat = uniform_catalog(model.metadata["conditions"], n, seed=3)
    conditions = model.conditions(cat)
    noise = draw_base_noise(n, model.latent_dim, galsim.BaseDeviate(3))
    z = np.random.default_rng(3).standard_normal((n, model.latent_dim)).astype(np.float32)
    default_batch = model.batch_size
    rows = []
    for batch in batch_sizes:
        count = min(n, 64) if batch == 1 else n
        subset = cat[:count]
        model.batch_size = batch

        def raw_sample():
            for start in range(0, count, batch):
                loaded.sample_images(conditions[start : start + batch], noise[start : start + batch])

        def raw_decode():
            for start in range(0, count, batch):
                loaded.decode(z[start : start + batch])

        functions = (
            lambda: model.sample(subset, seed=1),
            lambda: sum(len(images) for images in model.iter_sample(subset, seed=1)),
            raw_sample,
            raw_decode,
        )
        # Interleaved rounds, best of each: a busy spell of the machine hits all four alike.
        best = [float("inf")] * len(functions)
        for function in functions:
            function()
        for _ in range(repeat + 1):
            for i, function in enumerate(functions):
                start = time.perf_counter()
                function()
                best[i] = min(best[i], time.perf_counter() - start)
        rows.append((batch, *(count / seconds for seconds in best)))
    model.batch_size = default_batch
    return rows


# --- 3. cold start ----------------------------------------------------------------------

_COLD_START = """
import time
start = time.perf_counter()
import galsim, galsim_hub
imported = time.perf_counter()
model = galsim_hub.GenerativeGalaxyModel({handle!r})
loaded = time.perf_counter()
cat = {{c["name"]: [0.5 * (c["min"] + c["max"])] for c in model.metadata["conditions"]}}
galaxy = model.sample(cat, seed=1)[0]
galsim.Convolve(galaxy, galsim.Moffat(beta=3, fwhm=0.7)).drawImage(nx=64, ny=64, scale=0.2)
done = time.perf_counter()
print({{"import": imported - start, "load": loaded - imported, "first": done - loaded}})
"""


def cold_start(handle: str, runs: int) -> list[dict]:
    """Seconds of a fresh interpreter: import, model load, first drawn galaxy, and in all.

    The first run uses an empty cache folder (an archive handle is extracted then, once
    per installation); the others use the normal cache, already filled.
    """
    results = []
    with tempfile.TemporaryDirectory() as empty_cache:
        for run in range(runs):
            env = dict(os.environ, GALSIM_HUB_CACHE=empty_cache) if run == 0 else None
            start = time.perf_counter()
            output = subprocess.run(
                [sys.executable, "-c", _COLD_START.format(handle=handle)],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            ).stdout
            total = time.perf_counter() - start
            parts = eval(output.strip().splitlines()[-1], {})  # a dict literal printed by the child
            results.append({**parts, "process": total, "cache": "empty" if run == 0 else "filled"})
    return results


# --- 4. config run ----------------------------------------------------------------------


def _config(handle: str, catalog: Path, conditions: list[str], nobjects: int, batch_size: int) -> dict:
    return {
        "modules": ["galsim_hub"],
        "input": {
            "catalog": {"file_name": str(catalog)},
            "generative_model": {"file_name": handle, "batch_size": batch_size},
        },
        "gal": {"type": "GenerativeGalaxy", **{name: {"type": "Catalog", "col": name} for name in conditions}},
        "psf": {"type": "Moffat", "beta": 3.0, "fwhm": 0.7},
        "image": {
            "type": "Scattered",
            "size": 2048,
            "pixel_scale": SCALE,
            "nobjects": nobjects,
            "stamp_size": STAMP,
            "random_seed": 1,
            "nproc": 1,
            "noise": {"type": "Gaussian", "sigma": 0.01},
        },
        "output": {"file_name": "bench.fits"},
    }


def config_run(model, handle: str, nobjects: int, batch_sizes: list[int]) -> list[tuple[int, int, float]]:
    """Wall seconds of the ``galsim`` executable on ``nobjects`` galaxies (and on 1)."""
    import yaml

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        cat = uniform_catalog(model.metadata["conditions"], nobjects, seed=4)
        cat.write(work / "catalog.fits")
        for batch in batch_sizes:
            for n in (1, nobjects):
                config = work / f"bench_{batch}_{n}.yaml"
                config.write_text(yaml.safe_dump(_config(handle, work / "catalog.fits", cat.colnames, n, batch)))
                start = time.perf_counter()
                subprocess.run([*GALSIM, "-v", "0", str(config)], cwd=work, check=True)
                rows.append((batch, n, time.perf_counter() - start))
    return rows


# --- 5. peak memory ---------------------------------------------------------------------

_MEMORY = """
import resource, time, numpy as np
from astropy.table import Table
import galsim_hub
model = galsim_hub.GenerativeGalaxyModel({handle!r}, batch_size={batch})
rng = np.random.default_rng(5)
cat = Table({{c["name"]: rng.uniform(c["min"] + 0.1 * (c["max"] - c["min"]), c["max"] - 0.1 * (c["max"] - c["min"]), {n})
             for c in model.metadata["conditions"]}})
def peak_mib():
    # VmHWM: the peak RSS of this process image. ru_maxrss would also count the parent's
    # pages at fork time, since Linux carries it across fork and exec.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
count, first_batch_peak, flux = 0, None, 0.0
for images in model.iter_sample(cat, seed=1):
    count += len(images)
    flux += float(images.sum())
    if first_batch_peak is None:
        first_batch_peak = peak_mib()
print({{"n": count, "seconds": time.perf_counter() - start, "peak_after_first_batch": first_batch_peak,
        "peak": peak_mib()}})
"""


def peak_memory(handle: str, sizes: list[int], batch: int) -> list[dict]:
    """Peak RSS (MiB) of a fresh process streaming ``n`` galaxies, for each ``n``."""
    results = []
    for n in sizes:
        output = subprocess.run(
            [sys.executable, "-c", _MEMORY.format(handle=handle, batch=batch, n=n)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(eval(output.strip().splitlines()[-1], {}))
    return results


# --- report -----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hub:synthetic_bdk", help="model handle (default hub:synthetic_bdk)")
    parser.add_argument(
        "--cosmos-dir",
        type=Path,
        default=DEFAULT_COSMOS_DIR,
        help=f"folder with {COSMOS_CATALOG} and its image files (default {DEFAULT_COSMOS_DIR})",
    )
    parser.add_argument("--quick", action="store_true", help="fewer galaxies everywhere (a smoke run)")
    parser.add_argument("--memory-n", type=int, default=None, help="galaxies streamed for peak memory (default 100000)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: e2e,batch,cold,config,memory")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    quick = args.quick
    n_e2e = 128 if quick else 512
    n_batch = 256 if quick else 1024
    repeat = 1 if quick else 2
    nobjects = 200 if quick else 1000
    memory_n = args.memory_n or (5000 if quick else 100_000)

    from galsim_hub.model import GenerativeGalaxyModel

    model = GenerativeGalaxyModel(args.model)
    load_before = os.getloadavg()
    started = time.perf_counter()
    report = []
    report.append(
        f'model `{args.model}`: {model.stamp_size}x{model.stamp_size} px at {model.pixel_scale}"/px, '
        f"latent {model.latent_dim}, conditions {', '.join(model.quantities)}, device {model.device}, "
        f"default batch {model.batch_size}"
    )
    import tensorflow as tf

    report.append(
        f"machine: {_cpu_model()}, {os.cpu_count()} cores, {platform.system()}, python "
        f"{platform.python_version()}, galsim {galsim.__version__}, tensorflow {tf.__version__}, "
        f"GPUs seen by TensorFlow: {len(tf.config.list_physical_devices('GPU'))}"
    )
    report.append(f'stamps drawn: {STAMP}x{STAMP} at {SCALE}"/px, convolved with Moffat(beta=3, fwhm=0.7")')

    if "e2e" not in skip:
        rows = end_to_end(model, n_e2e, args.cosmos_dir, repeat)
        per_galaxy = dict(rows)
        generative = rows[0][1]
        bulge_disc = per_galaxy["GalSim bulge+disc (DeVaucouleurs + Exponential)"]
        table = [[label, f"{ms:.3f}", f"{ms / bulge_disc:.2f}x"] for label, ms in rows]
        report.append(
            f"\n### 1. End-to-end cost per galaxy ({n_e2e} galaxies, best of {repeat})\n\n"
            + _table(["what", "ms / galaxy", "vs bulge+disc"], table)
            + f"\n\ntarget generative <= 3x bulge+disc: {generative / bulge_disc:.2f}x, "
            f"{_verdict(generative <= 3 * bulge_disc)}"
        )

    if "batch" not in skip:
        rows = throughput(model, [1, 16, 64, 256, 1024], n_batch, repeat)
        table = [
            [str(b), f"{s:.0f}", f"{it:.0f}", f"{rs:.0f}", f"{rd:.0f}", f"{100 * s / rd:.0f}%"]
            for b, s, it, rs, rd in rows
        ]
        at_default = {b: s / rd for b, s, _, _, rd in rows}.get(model.batch_size)
        verdict = (
            ""
            if at_default is None
            else (
                f"\n\ntarget sample() >= 80% of raw decode at batch {model.batch_size}: {100 * at_default:.0f}%, "
                f"{_verdict(at_default >= 0.8)}"
            )
        )
        report.append(
            f"\n### 2. Throughput vs batch size ({n_batch} galaxies, 64 at batch 1; galaxies/s, "
            f"best of {repeat + 1} interleaved rounds)\n\n"
            + _table(
                [
                    "batch",
                    "sample() -> InterpolatedImage",
                    "iter_sample() arrays",
                    "raw `sample` signature",
                    "raw `decode` signature",
                    "sample() / decode",
                ],
                table,
            )
            + verdict
        )

    if "cold" not in skip:
        runs = cold_start(args.model, 3)
        table = [
            [
                str(i + 1),
                r["cache"],
                f"{r['import']:.2f}",
                f"{r['load']:.2f}",
                f"{r['first']:.2f}",
                f"{r['import'] + r['load'] + r['first']:.2f}",
                f"{r['process']:.2f}",
            ]
            for i, r in enumerate(runs)
        ]
        worst = max(r["import"] + r["load"] + r["first"] for r in runs[1:])
        report.append(
            "\n### 3. Cold start in a fresh interpreter (seconds)\n\n"
            + _table(
                [
                    "run",
                    "cache",
                    "import galsim, galsim_hub",
                    "load model (TensorFlow import included)",
                    "first galaxy drawn",
                    "sum",
                    "whole process",
                ],
                table,
            )
            + f"\n\ntarget <= 5 s (import + load + first galaxy, worst run with a filled cache; the "
            f"whole process adds interpreter start and exit): {worst:.2f} s, "
            f"{_verdict(worst <= 5)}"
        )

    if "config" not in skip:
        rows = config_run(model, args.model, nobjects, [model.batch_size, 1])
        seconds = {(b, n): t for b, n, t in rows}
        batched, single = model.batch_size, 1
        table = []
        for batch in (batched, single):
            total, startup = seconds[(batch, nobjects)], seconds[(batch, 1)]
            table.append(
                [
                    str(batch),
                    f"{total:.1f}",
                    f"{startup:.1f}",
                    f"{total - startup:.1f}",
                    f"{(nobjects - 1) / max(total - startup, 1e-9):.0f}",
                ]
            )
        wall = seconds[(single, nobjects)] / seconds[(batched, nobjects)]
        net = (seconds[(single, nobjects)] - seconds[(single, 1)]) / max(
            seconds[(batched, nobjects)] - seconds[(batched, 1)], 1e-9
        )
        report.append(
            f"\n### 4. `galsim` config run, {nobjects} objects, nproc 1 (seconds)\n\n"
            + _table(["batch_size", f"{nobjects} objects", "1 object (start-up)", "difference", "objects/s"], table)
            + f"\n\nbatched vs per object: {wall:.2f}x on wall time, {net:.2f}x without start-up; "
            f"target >= 10x: {_verdict(wall >= 10)}"
        )

    if "memory" not in skip:
        sizes = [memory_n // 10, memory_n]
        runs = peak_memory(args.model, sizes, model.batch_size)
        table = [
            [str(r["n"]), f"{r['seconds']:.0f}", f"{r['peak_after_first_batch']:.0f}", f"{r['peak']:.0f}"] for r in runs
        ]
        growth = runs[1]["peak"] - runs[0]["peak"]
        report.append(
            f"\n### 5. Peak memory streaming galaxies with iter_sample (batch {model.batch_size})\n\n"
            + _table(["galaxies", "seconds", "peak RSS after first batch (MiB)", "peak RSS (MiB)"], table)
            + f"\n\ngrowth from {sizes[0]} to {sizes[1]} galaxies: {growth:+.0f} MiB "
            f"({100 * growth / runs[0]['peak']:+.1f}%); target flat (< 5%): "
            f"{_verdict(abs(growth) < 0.05 * runs[0]['peak'])}"
        )

    load_after = os.getloadavg()
    report.append(
        f"\nrun took {time.perf_counter() - started:.0f} s; 1-minute load average {load_before[0]:.2f} "
        f"before, {load_after[0]:.2f} after (above 0 means other processes shared the CPU)"
    )
    print("\n".join(report))


if __name__ == "__main__":
    main()
