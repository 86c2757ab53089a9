"""Accelerator check: decode throughput and batched rendering on whatever device a backend sees.

Runs without TensorFlow (the JAX or PyTorch backend of Keras 3, ``pip install 'galsim-hub[jax]'``
or ``'[torch]'``), so it travels to machines whose accelerators TensorFlow cannot use, and runs
on a CPU too. It measures

* **decode throughput** (galaxies/s) against batch size, fp32 and bf16 (Keras ``mixed_bfloat16``:
  bf16 compute, fp32 weights), for every bundled model (its whole generator: flow + decoder,
  read from ``hub_models/*/model.tar.gz``) and for the paper's 128-pixel decoder architecture
  (Lanusse et al. 2021: 7 stages, 16 to 512 channels, 16 latents) with random weights;
* **rendering** (JAX only): PSF convolution and drawing of a whole batch of stamps in
  JAX-GalSim (``jax.vmap`` of ``Convolve(InterpolatedImage, Gaussian).drawImage``, compiled)
  against GalSim on the host (``wrap_stamps`` + ``Convolve`` + ``drawImage`` per galaxy), and
  the largest difference between the two drawings relative to the peak.

Every timing is the median of ``--repeats`` calls after one warm-up (compilation) call. The
results go to one JSON file and one markdown table (``--out``, default ``gpu_results``)::

    python benchmarks/gpu.py --backend jax [--batches 1,16,64,256,1024] [--repeats 5] [--out DIR]
    python benchmarks/gpu.py --backend jax --quick      # small batches: a CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a copy of the tree, without installing it

#: The paper's decoder: 128x128 stamps, 7 down-sampling stages from 16 to 512 channels.
PAPER_DECODER = {
    "stamp_size": 128,
    "latent_dim": 16,
    "num_stages": 7,
    "base_depth": 16,
    "max_depth": 512,
    "blocks_per_stage": 1,
    "activation": "elu",
    "image_scale": 1.0,
    "n_bands": 1,
}


#: The FFT size of JAX-GalSim's compiled drawing (GalSim picks 512 for these stamps too).
FFT_SIZE = 512


def median_time(call, repeats: int) -> float:
    """Median wall time of ``call()`` over ``repeats`` calls, after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


class Runner:
    """Calls a network's method on the backend, compiled (JAX) or eager without gradients (PyTorch)."""

    def __init__(self, backend: str):
        from galsim_hub.backends.keras_runtime import keras_backend

        self.backend = backend
        self.keras = keras_backend(backend)

    def device(self) -> str:
        if self.backend == "jax":
            import jax

            return f"jax {jax.default_backend()}: {jax.devices()[0].device_kind}"
        import torch

        return f"torch: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "torch: cpu"

    def callable(self, network, method: str):
        """``f(*inputs)`` that runs ``network.method`` and waits for its result."""
        if self.backend == "jax":
            from galsim_hub.backends.keras_runtime import pure_jax_function

            function = pure_jax_function(network, method)
            state = [v.value for v in network.trainable_variables + network.non_trainable_variables]
            return lambda *inputs: function(state, *inputs).block_until_ready()
        import torch

        def run(*inputs):
            with torch.no_grad():
                output = getattr(network, method)(*inputs)
            if output.is_cuda:
                torch.cuda.synchronize()
            return output

        return run


def bundled_generators(work: Path) -> dict:
    """``{name@version: model directory}`` of the bundled models, extracted from their archives."""
    index = json.loads((REPO / "hub_models" / "index.json").read_text())
    found = {}
    for entry in index["models"]:
        if "path" not in entry:
            continue
        with tarfile.open(REPO / "hub_models" / entry["path"]) as tar:
            tar.extractall(work, filter="data")
            top = tar.getnames()[0].split("/")[0]
        found[f"{entry['name']}@{entry['version']}"] = work / top
    return found


def build(runner: Runner, precision: str, make):
    """``make()`` under the Keras dtype policy of ``precision`` (``fp32`` or ``bf16``)."""
    runner.keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    try:
        return make()
    finally:
        runner.keras.config.set_dtype_policy("float32")


def decode_rows(runner: Runner, models: dict, batches: list[int], repeats: int) -> list[dict]:
    from galsim_hub.metadata import read_metadata
    from galsim_hub.networks.convolutional import Decoder
    from galsim_hub.networks.generator import GalaxyGenerator, load_generator

    rows = []
    rng = np.random.default_rng(0)
    subjects = list(models.items()) + [("paper decoder 128px (random weights)", None)]
    for name, directory in subjects:
        for precision in ("fp32", "bf16"):
            try:
                if directory is None:
                    network = build(runner, precision, lambda: Decoder(**PAPER_DECODER))
                    network(np.zeros((1, PAPER_DECODER["latent_dim"]), np.float32))
                    method, latent_dim, n_conditions = "__call__", PAPER_DECODER["latent_dim"], 0
                else:
                    metadata = read_metadata(directory)
                    reference = load_generator(directory / metadata["keras_model"])
                    network = build(runner, precision, lambda: GalaxyGenerator(**reference.get_config()))
                    network.set_weights(reference.get_weights())
                    method, latent_dim, n_conditions = "__call__", reference.latent_dim, reference.n_conditions
                run = runner.callable(network, method)
            except Exception as exc:  # a precision a backend cannot build is a row of the table
                rows.append({"model": name, "precision": precision, "error": f"{type(exc).__name__}: {exc}"[:200]})
                continue
            for batch in batches:
                noise = rng.standard_normal((batch, latent_dim)).astype(np.float32)
                if directory is None:
                    inputs: tuple = (noise,)
                else:
                    low = np.array([c["min"] for c in metadata["conditions"]])
                    high = np.array([c["max"] for c in metadata["conditions"]])
                    conditions = (low + (high - low) * rng.uniform(size=(batch, n_conditions))).astype(np.float32)
                    inputs = ((conditions, noise),)
                try:
                    seconds = median_time(lambda: run(*inputs), repeats)
                except Exception as exc:
                    rows.append({"model": name, "precision": precision, "batch": batch, "error": f"{exc}"[:200]})
                    break
                rows.append({"model": name, "precision": precision, "batch": batch, "galaxies_per_s": batch / seconds})
                print(f"  decode {name} {precision} batch {batch}: {batch / seconds:.1f} galaxies/s", flush=True)
    return rows


def render_rows(models: dict, batches: list[int], repeats: int) -> list[dict]:
    """JAX-GalSim batched drawing against GalSim's host-side wrap, on cosmos_real@2.0 stamps."""
    import galsim
    import jax
    import jax.numpy as jnp
    import jax_galsim

    from galsim_hub.backends.keras_runtime import KerasModel
    from galsim_hub.profiles.wrap import ProfileOptions, wrap_stamps

    model = KerasModel(models["cosmos_real@2.0"], "jax")
    scale, psf_fwhm, size, out_scale = model.metadata["pixel_scale"], 0.1, 64, 0.05
    rng = np.random.default_rng(1)

    # A fixed FFT size (JAX-GalSim's way to compile drawImage: the size cannot depend on the data).
    fixed = jax_galsim.GSParams(minimum_fft_size=FFT_SIZE, maximum_fft_size=FFT_SIZE)

    def draw_one(stamp):
        image = jax_galsim.InterpolatedImage(
            jax_galsim.Image(stamp, scale=scale), x_interpolant="quintic", gsparams=fixed
        )
        profile = jax_galsim.Convolve(image, jax_galsim.Gaussian(fwhm=psf_fwhm, gsparams=fixed))
        return profile.drawImage(nx=size, ny=size, scale=out_scale).array

    draw_batch = jax.jit(jax.vmap(draw_one))
    rows = []
    for batch in batches:
        specs = model.metadata["conditions"]
        low, high = np.array([c["min"] for c in specs]), np.array([c["max"] for c in specs])
        conditions = low + (high - low) * rng.uniform(0.2, 0.8, size=(batch, len(specs)))
        stamps = model.sample_images(conditions, rng.standard_normal((batch, model.latent_dim)))[..., 0]
        device_stamps = jnp.asarray(stamps)
        psf = galsim.Gaussian(fwhm=psf_fwhm)

        def host():
            for galaxy in wrap_stamps(stamps[..., None], scale, None, ProfileOptions()):
                galsim.Convolve(galaxy, psf).drawImage(nx=size, ny=size, scale=out_scale)

        device_s = median_time(lambda: draw_batch(device_stamps).block_until_ready(), repeats)
        host_s = median_time(host, repeats)
        drawn = np.asarray(draw_batch(device_stamps))
        galaxies = wrap_stamps(stamps[..., None], scale, None, ProfileOptions())
        reference = np.stack(
            [galsim.Convolve(g, psf).drawImage(nx=size, ny=size, scale=out_scale).array for g in galaxies]
        )
        rows.append(
            {
                "batch": batch,
                "jax_galsim_galaxies_per_s": batch / device_s,
                "galsim_host_galaxies_per_s": batch / host_s,
                "speed_ratio": host_s / device_s,
                "max_difference": float(np.abs(drawn - reference).max() / reference.max()),
            }
        )
        print(f"  render batch {batch}: JAX-GalSim {batch / device_s:.1f}/s, GalSim {batch / host_s:.1f}/s", flush=True)
    return rows


def table(results: dict) -> str:
    lines = [f"# galsim-hub accelerator check\n\n{results['device']} ({results['host']})\n", "## Decode\n"]
    lines += ["| model | precision | batch | galaxies/s |", "| --- | --- | ---: | ---: |"]
    for row in results["decode"]:
        value = f"{row['galaxies_per_s']:.1f}" if "galaxies_per_s" in row else f"failed: {row['error']}"
        lines.append(f"| {row['model']} | {row['precision']} | {row.get('batch', '')} | {value} |")
    if results["render"]:
        lines += ["", "## Rendering (PSF convolution + drawing, 64x64 output stamps)\n"]
        lines += [
            "| batch | JAX-GalSim galaxies/s | GalSim host galaxies/s | ratio | max difference / peak |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in results["render"]:
            lines.append(
                f"| {row['batch']} | {row['jax_galsim_galaxies_per_s']:.1f} | "
                f"{row['galsim_host_galaxies_per_s']:.1f} | {row['speed_ratio']:.2f} | {row['max_difference']:.1e} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("jax", "torch"), default="jax")
    parser.add_argument("--batches", default="1,16,64,256,1024", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="batches 1,8,32 and 2 repeats (a CPU smoke run)")
    parser.add_argument("--out", type=Path, default=Path("gpu_results"), help="folder of gpu.json and gpu.md")
    args = parser.parse_args()
    batches = [1, 8, 32] if args.quick else [int(b) for b in args.batches.split(",")]
    repeats = 2 if args.quick else args.repeats
    os.environ.setdefault("GALSIM_HUB_CACHE", tempfile.mkdtemp(prefix="galsim-hub-gpu-"))
    runner = Runner(args.backend)
    with tempfile.TemporaryDirectory() as work:
        models = bundled_generators(Path(work))
        results = {
            "device": runner.device(),
            "host": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "backend": args.backend,
            "repeats": repeats,
            "decode": decode_rows(runner, models, batches, repeats),
            "render": render_rows(models, batches, repeats) if args.backend == "jax" else [],
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "gpu.md").write_text(table(results))
    print(table(results))
    if "tensorflow" in sys.modules:
        raise SystemExit("benchmarks/gpu.py imported TensorFlow: it must travel without it")


if __name__ == "__main__":
    main()
