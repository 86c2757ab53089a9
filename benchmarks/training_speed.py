"""Training speed of the VAE and the flow: steps/s and peak memory, for two configs.

Runs a few optimisation steps on random data (no data set needed) for the paper-sized config
(``training/configs/cosmos25.2_paper.yaml``: 128x128, 7 stages 16 -> 512, batch 64; flow 8x2x256,
batch 512) and the small default (``training/configs/synthetic_default.yaml``), and prints a
markdown table. Peak memory is the process's maximum resident set size (``getrusage``), which
only grows, so configs are measured small first.

    python benchmarks/training_speed.py [--steps 5] [--only default|paper]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from galsim_hub.networks.flow import ConditionalMAF
from galsim_hub.training.fitting.config import load_config
from galsim_hub.training.fitting.train import _make_optimizer
from galsim_hub.training.networks import likelihood as lk
from galsim_hub.training.networks.vae import VAE

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _time_steps(step, n_steps: int) -> float:
    step()  # trace and warm up
    start = time.perf_counter()
    for _ in range(n_steps):
        out = step()
    float(out)
    return n_steps / (time.perf_counter() - start)


def bench_vae(config, n_steps: int) -> tuple[float, int]:
    v = config.vae
    size, batch = config.dataset.stamp_size, v.batch_size
    vae = VAE.from_architecture(config.vae_architecture(image_scale=1.0))
    optimizer = _make_optimizer(v.optimizer, v.learning_rate)
    rng = np.random.default_rng(0)
    image = tf.constant(rng.random((batch, size, size), np.float32))
    psf = np.zeros((batch, size, size), np.float32)
    psf[:, size // 2, size // 2] = 1.0
    psf = tf.constant(psf)
    noise_var = tf.fill([batch], 0.01)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            mean, log_scale = vae.encode(image, psf)
            z = mean + tf.exp(log_scale) * tf.random.normal(tf.shape(mean))
            profile = vae.decode(z)[..., 0]
            nll = -tf.reduce_mean(lk.pixel_log_likelihood(image, lk.convolve_with_psf(profile, psf), noise_var))
            kl = tf.reduce_mean(lk.free_bits_kl(lk.gaussian_kl_divergence(mean, log_scale), v.free_bits))
            loss = nll + kl + v.tv_weight * tf.reduce_mean(lk.total_variation(profile))
        grads = tape.gradient(loss, vae.trainable_variables)
        optimizer.apply_gradients(zip(grads, vae.trainable_variables))
        return loss

    return _time_steps(step, n_steps), vae.count_params()


def bench_flow(config, n_steps: int) -> tuple[float, int]:
    f = config.flow
    flow = ConditionalMAF(config.vae.latent_dim, 3, f.n_blocks, f.hidden_units, f.permutation_seed)
    optimizer = _make_optimizer("adam", f.learning_rate)
    z = tf.random.normal([f.batch_size, config.vae.latent_dim])
    c = tf.random.normal([f.batch_size, 3])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow.log_prob(z, c))
        grads = tape.gradient(loss, flow.trainable_variables)
        optimizer.apply_gradients(zip(grads, flow.trainable_variables))
        return loss

    return _time_steps(step, n_steps), flow.count_params()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--only", choices=("default", "paper"))
    args = parser.parse_args(argv)
    device = (
        "GPU"
        if tf.config.list_physical_devices("GPU")
        else f"CPU ({tf.config.threading.get_inter_op_parallelism_threads() or 'all'} threads)"
    )
    runs = [("default", "synthetic_default.yaml"), ("paper", "cosmos25.2_paper.yaml")]
    print(f"device: {device}, timed steps: {args.steps}\n")
    print("| config | model | stamp | batch | params | steps/s | full run (steps) | peak RSS (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, file_name in runs:
        if args.only and args.only != label:
            continue
        config = load_config(CONFIGS / file_name)
        for model, bench, steps, batch in (
            ("VAE", bench_vae, config.vae.steps, config.vae.batch_size),
            ("flow", bench_flow, config.flow.steps, config.flow.batch_size),
        ):
            rate, params = bench(config, args.steps)
            hours = steps / rate / 3600
            print(
                f"| {label} | {model} | {config.dataset.stamp_size} | {batch} | {params:,} | "
                f"{rate:.2f} | {hours:.2f} h ({steps}) | {_peak_rss_mib():.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
