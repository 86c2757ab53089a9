"""Memory of the training input pipeline against data set size: streaming never holds the set.

Builds one real shard of synthetic galaxies (``build_synthetic_dataset``), then data sets of
10k to 80k examples whose shards are hard links of it (no extra disk; the pipeline opens each one
as a separate file, as it would distinct shards), and measures, each in a fresh process:

* ``stream``: one whole shuffled pass of ``make_tf_dataset`` (the pipeline ``train_vae`` reads),
  batch 64: peak resident memory and examples/s;
* ``in memory``: ``load_arrays`` of the same data set (what a pipeline holding the set would need),
  for comparison.

    python benchmarks/streaming_memory.py [--sizes 10000 20000 40000 80000] [--stamp-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _measure(mode: str, dataset: str) -> None:
    """In a fresh process: one pass (``stream``) or one load (``memory``); print JSON."""
    from galsim_hub.backends.tf_quiet import import_tensorflow

    import_tensorflow()
    from galsim_hub.training.datasets.shards import load_arrays, make_tf_dataset

    baseline = _peak_rss_mib()
    start = time.perf_counter()
    n = 0
    if mode == "stream":
        keys = ("image", "psf", "noise_var")
        for batch in make_tf_dataset(dataset, 64, keys=keys, shuffle=True, repeat=False, seed=0):
            n += int(batch["image"].shape[0])
    else:
        n = len(load_arrays(dataset, ("image", "psf", "noise_var"))["image"])
    seconds = time.perf_counter() - start
    print(json.dumps({"examples": n, "seconds": seconds, "peak_mib": _peak_rss_mib(), "baseline_mib": baseline}))


def _linked_dataset(shard_dir: Path, out: Path, n_examples: int) -> Path:
    """A data set of ``n_examples`` whose shards are hard links of ``shard_dir``'s one shard."""
    metadata = json.loads((shard_dir / "dataset.json").read_text())
    per_shard = int(metadata["n_examples"])
    count = n_examples // per_shard
    out.mkdir(parents=True)
    names = [f"shard-{i:05d}.npz" for i in range(count)]
    for name in names:
        os.link(shard_dir / metadata["shards"][0], out / name)
    metadata.update(n_examples=count * per_shard, shards=names)
    (out / "dataset.json").write_text(json.dumps(metadata))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 40_000, 80_000])
    parser.add_argument("--stamp-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "DATASET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        _measure(*args.measure)
        return 0

    from galsim_hub.training.datasets.data import build_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shard = build_synthetic_dataset(
            root / "one-shard",
            args.shard_size,
            stamp_size=args.stamp_size,
            noise_sigma=0.01,
            shard_size=args.shard_size,
            seed=0,
            progress=False,
        )
        shard_mib = sum(p.stat().st_size for p in shard.glob("shard-*.npz")) / 2**20
        print(f"stamps {args.stamp_size}x{args.stamp_size}, shards of {args.shard_size} ({shard_mib:.0f} MiB each)\n")
        print("| examples | data set (GiB) | stream: peak RSS (MiB) | stream: examples/s | in memory: peak RSS (MiB) |")
        print("|---:|---:|---:|---:|---:|")
        for size in args.sizes:
            dataset = _linked_dataset(shard, root / f"n{size}", size)
            results = {}
            for mode in ("stream", "memory"):
                command = [sys.executable, __file__, "--measure", mode, str(dataset)]
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                results[mode] = json.loads(out.strip().splitlines()[-1])
            stream, memory = results["stream"], results["memory"]
            gib = size / args.shard_size * shard_mib / 1024
            print(
                f"| {stream['examples']} | {gib:.2f} | {stream['peak_mib']:.0f} | "
                f"{stream['examples'] / stream['seconds']:.0f} | {memory['peak_mib']:.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
