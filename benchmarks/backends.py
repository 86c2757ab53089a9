"""Start-up time and CPU decode throughput of the four backends, side by side.

Each measurement runs in a fresh process (a process runs one Keras backend):

* **start-up**: ``import galsim_hub`` + load ``hub:MODEL`` + the first galaxy (one row through
  ``sample``), wall time from the process's first line. Run twice per backend; the second run is
  the one a user sees every day (disk cache warm, and for JAX its persistent compilation cache
  filled by the first run); both are printed.
* **throughput**: galaxies/s of ``sample_arrays`` on batches of ``--batch`` rows (the conditions
  and base noise drawn once), after one warm-up call, median of ``--repeats`` calls.

    python benchmarks/backends.py [--model cosmos_real] [--batch 256] [--repeats 5] [--out backends.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

BACKENDS = ("tensorflow", "jax", "torch", "numpy")

CHILD = r"""
import time
start = time.perf_counter()
import json, sys
import numpy as np
import galsim_hub
backend, handle, batch, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = galsim_hub.GenerativeGalaxyModel(handle, backend=backend, batch_size=batch)
specs = model.metadata["conditions"]
model.sample({c["name"]: [0.5 * (c["min"] + c["max"])] for c in specs}, seed=1)
startup = time.perf_counter() - start
result = {"startup_s": startup}
if repeats:
    rng = np.random.default_rng(0)
    low = np.array([c["min"] for c in specs]); high = np.array([c["max"] for c in specs])
    conditions = low + (high - low) * rng.uniform(size=(batch, len(specs)))
    noise = rng.standard_normal((batch, model.latent_dim)).astype(np.float32)
    model.sample_arrays(conditions, noise)
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); model.sample_arrays(conditions, noise); times.append(time.perf_counter() - t)
    result["galaxies_per_s"] = batch / float(np.median(times))
print(json.dumps(result))
"""


def run(backend: str, handle: str, batch: int, repeats: int, cache: str) -> dict:
    env = dict(os.environ, GALSIM_HUB_CACHE=cache, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("KERAS_BACKEND", None)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, backend, handle, str(batch), str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cosmos_real")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    handle = f"hub:{args.model}"
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for backend in BACKENDS:
            first = run(backend, handle, args.batch, 0, cache)
            second = run(backend, handle, args.batch, args.repeats, cache)
            rows.append(
                {
                    "backend": backend,
                    "startup_first_s": first["startup_s"],
                    "startup_s": second["startup_s"],
                    "galaxies_per_s": second["galaxies_per_s"],
                }
            )
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{handle}, batch {args.batch}, {machine}")
    print("| backend | first start-up (s) | start-up (s) | decode (galaxies/s) |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['backend']} | {row['startup_first_s']:.2f} | {row['startup_s']:.2f} | {row['galaxies_per_s']:.0f} |"
        )
    if args.out:
        args.out.write_text(
            json.dumps({"model": handle, "batch": args.batch, "machine": machine, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
