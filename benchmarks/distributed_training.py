"""VAE training speed per distribution set-up: one device, mirrored devices, loopback workers.

Runs the real command (``galsim-hub train --stage vae``) on a synthetic data set, for each
set-up twice from scratch (``--short`` then ``--long`` steps): the difference of the two wall
times is the time of the extra steps, free of start-up, tracing and data set opening. Prints
steps/s and examples/s (global batch) per set-up as a markdown table.

    python benchmarks/distributed_training.py [--short 10] [--long 40] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

#: name -> (extra ``train`` options, number of worker processes)
SETUPS = {
    "one device": ([], 1),
    "mirrored, 2 CPU devices": (["--distribute", "mirrored", "--cpu-replicas", "2"], 1),
    "multi-worker, 2 loopback workers": (["--distribute", "multi-worker"], 2),
}


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run(config: Path, work: Path, options: list[str], workers: int) -> float:
    """Wall time of one training run (every worker to the end)."""
    command = [sys.executable, "-m", "galsim_hub", "train", "--stage", "vae", "--quiet", "--no-resume"]
    command += ["--config", str(config)]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(workers)]}
    start = time.perf_counter()
    processes = []
    for i in range(workers):
        env = dict(os.environ)
        if workers > 1:
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        processes.append(
            subprocess.Popen(
                command + ["--work-dir", str(work / f"worker{i}"), *options],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for process in processes:
        out, _ = process.communicate()
        if process.returncode:
            raise RuntimeError(out[-2000:])
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--long", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--stamp-size", type=int, default=64)
    args = parser.parse_args()

    from galsim_hub.training.datasets.data import build_synthetic_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = build_synthetic_dataset(
            root / "dataset", 512, stamp_size=args.stamp_size, noise_sigma=0.01, seed=0, progress=False
        )
        vae = {"batch_size": args.batch, "checkpoint_every": 10_000}
        print(
            f"VAE of training/configs/synthetic_default.yaml ({args.stamp_size}x{args.stamp_size}, "
            f"4 stages 16 -> 128 channels), global batch {args.batch}; steps {args.short} -> {args.long}\n"
        )
        print("| set-up | steps/s | examples/s |")
        print("|---|---:|---:|")
        for name, (options, workers) in SETUPS.items():
            times = []
            for steps in (args.short, args.long):
                config = root / f"config-{steps}.yaml"
                values = {
                    "dataset": {"stamp_size": args.stamp_size, "path": str(dataset)},
                    "vae": {**vae, "steps": steps},
                }
                config.write_text(yaml.safe_dump(values))
                times.append(_run(config, root / "work", options, workers))
            rate = (args.long - args.short) / (times[1] - times[0])
            print(f"| {name} | {rate:.2f} | {rate * args.batch:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
