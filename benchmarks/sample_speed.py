"""Sampling throughput of a galsim-hub model, side by side in one run.

Prints galaxies per second for ``GenerativeGalaxyModel.sample`` (catalog -> list of
``galsim.InterpolatedImage``) at several batch sizes, the raw throughput of the model's
``decode`` signature and of its ``sample`` signature (no Python around them), and GalSim
drawing bulge+disc profiles into stamps of the same size and pixel scale.

Usage::

    python benchmarks/sample_speed.py [--model hub:synthetic_bdk] [--n 512]
"""

from __future__ import annotations

import argparse
import platform
import time

import galsim
import numpy as np
from speed import uniform_catalog  # benchmarks/ is on sys.path when this script runs


def _rate(function, n_items: int, repeat: int = 3) -> float:
    """Best items-per-second of ``repeat`` timed calls (after one warm-up call)."""
    function()
    best = min(_timed(function) for _ in range(repeat))
    return n_items / best


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _bulge_disc_stamps(n: int, stamp_size: int, pixel_scale: float, seed: int):
    rng = np.random.default_rng(seed)
    hlr = rng.uniform(0.1, 0.4, n)
    bulge_fraction = rng.uniform(0.0, 0.6, n)
    e1, e2 = rng.normal(0, 0.2, (2, n)).clip(-0.6, 0.6)

    def draw():
        for i in range(n):
            bulge = galsim.DeVaucouleurs(half_light_radius=0.6 * hlr[i], flux=bulge_fraction[i])
            disc = galsim.Exponential(half_light_radius=hlr[i], flux=1 - bulge_fraction[i])
            galaxy = galsim.Add(bulge, disc).shear(e1=e1[i], e2=e2[i])
            galaxy.drawImage(nx=stamp_size, ny=stamp_size, scale=pixel_scale)

    return draw


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hub:synthetic_bdk", help="model handle")
    parser.add_argument("--n", type=int, default=512, help="galaxies per timed call")
    parser.add_argument("--batch-sizes", default="1,64,256")
    parser.add_argument("--n-galsim", type=int, default=16, help="bulge+disc stamps drawn by GalSim")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from galsim_hub.model import GenerativeGalaxyModel
    from galsim_hub.sampling.noise import draw_base_noise

    start = time.perf_counter()
    model = GenerativeGalaxyModel(args.model)
    load_time = time.perf_counter() - start
    cat = uniform_catalog(model.metadata["conditions"], args.n, args.seed)
    rows = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        model.batch_size = batch_size
        n = min(args.n, 64) if batch_size == 1 else args.n
        subset = cat[:n]
        rows.append((f"sample(), batch {batch_size}", _rate(lambda: model.sample(subset, seed=1), n)))

    batch = min(256, args.n)
    conditions = model.conditions(cat[:batch])
    noise = draw_base_noise(batch, model.latent_dim, galsim.BaseDeviate(args.seed))
    loaded = model._model
    rows.append(
        (f"raw 'sample' signature, batch {batch}", _rate(lambda: loaded.sample_images(conditions, noise), batch))
    )
    if loaded.format == "galsim-hub-1":
        z = np.random.default_rng(args.seed).standard_normal((batch, model.latent_dim)).astype(np.float32)
        rows.append((f"raw 'decode' signature, batch {batch}", _rate(lambda: loaded.decode(z), batch)))
    draw_bulge_disc = _bulge_disc_stamps(args.n_galsim, model.stamp_size, model.pixel_scale, 1)
    rows.append(("GalSim bulge+disc drawImage", _rate(draw_bulge_disc, args.n_galsim, repeat=1)))

    print(
        f'model {args.model}: {model.stamp_size}x{model.stamp_size} px at {model.pixel_scale}"/px, '
        f"latent {model.latent_dim}, device {model.device}, load {load_time:.2f} s"
    )
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, galsim {galsim.__version__}")
    print(f"| {'what':42s} | {'galaxies/s':>11s} |")
    print(f"| {'-' * 42} | {'-' * 11} |")
    for label, rate in rows:
        print(f"| {label:42s} | {rate:11.1f} |")


if __name__ == "__main__":
    main()
