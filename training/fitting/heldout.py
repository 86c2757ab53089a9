"""The held-out loss curve of the VAE: its mean loss terms on a held-out data set at every checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from galsim_hub.errors import GalSimHubError
from galsim_hub.training.fitting.checkpoints import read_json, write_json

__all__ = ["heldout_evaluator", "heldout_recorder"]

#: Examples per evaluation batch.
EVALUATION_BATCH = 64


def heldout_evaluator(
    loss_terms: Callable[..., dict],
    stamp_size: int,
    heldout_dir: Path,
    keys: tuple[str, ...],
    latent_dim: int,
    seed: int,
) -> Callable[[], dict]:
    """A function returning the mean loss terms over every example of a held-out data set.

    ``loss_terms(batch, noise, kl_weight)`` is the VAE's loss. The latent noise is fixed (drawn
    once from ``seed``) so that successive evaluations differ only by the weights: the held-out
    curve is smooth enough to tell when training stops helping.
    """
    from galsim_hub.training.datasets import data

    metadata = data.read_dataset_metadata(heldout_dir)
    arrays = data.load_arrays(heldout_dir, keys)
    if arrays["image"].shape[1:3] != (stamp_size, stamp_size):
        raise GalSimHubError(
            f"the held-out data set {heldout_dir} has stamps of {arrays['image'].shape[1:3]} pixels, "
            f"the training set {stamp_size}"
        )
    n = int(metadata["n_examples"])
    noise = np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
    compiled = tf.function(loss_terms)

    def evaluate() -> dict:
        totals: dict[str, float] = {}
        for start in range(0, n, EVALUATION_BATCH):
            stop = start + EVALUATION_BATCH
            batch = {k: tf.constant(arrays[k][start:stop]) for k in keys}
            terms = compiled(batch, tf.constant(noise[start:stop]), tf.constant(1.0))
            size = len(batch["image"])
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + float(value) * size
        return {key: value / n for key, value in totals.items()}

    return evaluate


def heldout_recorder(
    evaluate: Callable[[], dict], heldout_file: Path, start: int, restore: bool
) -> Callable[[int], None]:
    """The checkpoint hook that appends the held-out loss to ``heldout_file`` (resumed runs keep
    the points before their start; a run without any is evaluated at its start first)."""
    heldout = [h for h in (read_json(heldout_file) or []) if h["step"] <= start] if restore else []

    def record(step: int) -> None:
        heldout.append({"step": step, **evaluate()})
        write_json(heldout_file, heldout)

    if not heldout:
        record(start)
    return record
