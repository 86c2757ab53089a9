"""Training of the VAE and of the latent flow, checkpointing, and export of the trained model.

The recipe of Lanusse et al. (2021): the VAE is trained on noisy PSF-convolved stamps with the
forward model "decoder output convolved with each galaxy's PSF" and a free-bits ELBO plus a
total-variation penalty; the posterior of the training galaxies is then encoded and a
conditional MAF learns ``p(z | conditions)``; decoder and flow are exported together.

Work directory layout::

    work_dir/vae/            checkpoints + architecture.json
    work_dir/vae_history.json
    work_dir/latents.npz     posterior mean, log-scale and conditions of the training set
    work_dir/flow/           checkpoints + architecture.json + normalisation.json
    work_dir/flow_history.json
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from galsim_hub.errors import GalSimHubError
from galsim_hub.networks.flow import ConditionalMAF
from galsim_hub.training.datasets.shards import Part
from galsim_hub.training.fitting.checkpoints import (
    ARCHITECTURE_FILE,
    RESUME_SETTINGS,
    CheckpointMismatchError,
    TrainingState,
    prepare_checkpoint_dir,
    read_json,
    write_json,
)
from galsim_hub.training.fitting.config import TrainingConfig
from galsim_hub.training.fitting.distribute import DataParallelStep, is_chief
from galsim_hub.training.fitting.heldout import heldout_evaluator, heldout_recorder
from galsim_hub.training.networks import likelihood as lk
from galsim_hub.training.networks.vae import VAE

__all__ = [
    "CheckpointMismatchError",
    "TrainingDivergedError",
    "RsqrtDecay",
    "dataset_path",
    "build_dataset",
    "train_vae",
    "load_vae",
    "encode_latents",
    "train_flow",
    "load_flow",
    "export",
    "run_all",
]

NORMALISATION_FILE = "normalisation.json"
LATENTS_FILE = "latents.npz"


class TrainingDivergedError(GalSimHubError, FloatingPointError):
    """A loss or an input batch became non-finite during training."""


class RsqrtDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant learning rate for ``warmup_steps``, then ``lr * sqrt(warmup_steps / step)``."""

    def __init__(self, learning_rate: float, warmup_steps: int):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = max(int(warmup_steps), 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0
        warmup = float(self.warmup_steps)
        return self.learning_rate * tf.sqrt(warmup / tf.maximum(step, warmup))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


def _learning_rate(learning_rate: float, schedule: str, warmup_steps: int):
    if schedule == "rsqrt":
        return RsqrtDecay(learning_rate, warmup_steps)
    return learning_rate


def _make_optimizer(name: str, learning_rate) -> keras.optimizers.Optimizer:
    if name == "adafactor":
        return keras.optimizers.Adafactor(learning_rate=learning_rate)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def dataset_path(config: TrainingConfig, work_dir: str | Path) -> Path:
    """The data set directory: ``config.dataset.path`` or ``<work_dir>/dataset``."""
    if config.dataset.path:
        return Path(config.dataset.path).expanduser()
    return Path(work_dir) / "dataset"


def build_dataset(
    config: TrainingConfig,
    work_dir: str | Path,
    overwrite: bool = False,
    progress: bool | None = None,
    part: Part | None = None,
) -> Path:
    """Build the training set described by ``config.dataset``; return its directory.

    With ``part`` only that part of it (see :class:`~galsim_hub.training.datasets.shards.Part`);
    :func:`~galsim_hub.training.datasets.shards.merge_parts` completes it once every part is built.
    """
    from galsim_hub.training.datasets import data

    d = config.dataset
    out_dir = dataset_path(config, work_dir)
    common = dict(
        stamp_size=d.stamp_size,
        pixel_scale=d.pixel_scale,
        seed=d.seed,
        shard_size=d.shard_size,
        overwrite=overwrite,
        progress=progress,
        part=part,
    )
    if d.source == "cosmos":
        catalog_dir = Path(d.catalog_dir).expanduser() if d.catalog_dir else None
        data.build_cosmos_dataset(out_dir, catalog_dir, max_galaxies=d.n_examples, **common, **dict(d.options))
    elif d.source == "chromatic":
        data.build_chromatic_dataset(out_dir, d.n_examples, **common, **dict(d.options))
    else:
        data.build_synthetic_dataset(
            out_dir, d.n_examples, psf=d.psf, noise_sigma=d.noise_sigma, **common, **dict(d.options)
        )
    return out_dir


def _check_dataset(config: TrainingConfig, metadata: dict, dataset_dir: Path) -> None:
    if int(metadata["stamp_size"]) != config.dataset.stamp_size:
        raise GalSimHubError(
            f"data set {dataset_dir} has stamp_size {metadata['stamp_size']} but the config says "
            f"dataset.stamp_size {config.dataset.stamp_size}"
        )


def _image_scale_from_data(batch: dict) -> float:
    """Flux scale of the VAE: the median peak pixel of a batch of training stamps."""
    images = batch["image"].numpy()
    peaks = np.max(images.reshape(len(images), -1), axis=1)
    scale = float(np.median(peaks))
    if not math.isfinite(scale) or scale <= 0:
        raise TrainingDivergedError(
            f"cannot set the VAE image scale from the data (median stamp maximum {scale}); "
            "check the data set for NaN or empty stamps, or set vae.image_scale"
        )
    return scale


def _vae_loss_fn(vae: VAE, config: TrainingConfig):
    v = config.vae
    use_fourier = v.likelihood == "fourier"

    def loss_terms(batch, noise, kl_weight):
        # The networks may compute in bfloat16 (vae.precision): the likelihood is float32.
        mean, log_scale = (tf.cast(t, tf.float32) for t in vae.encode(batch["image"], batch["psf"]))
        z = mean + tf.exp(log_scale) * noise
        # Every band in its own plane, [N, B, S, S]: the likelihood sums the bands, each with
        # its own PSF and noise.
        profile = lk.bands_first(tf.cast(vae.decode(z), tf.float32))
        observed = lk.bands_first(batch["image"])
        observed_model = lk.convolve_with_psf(profile, lk.bands_first(batch["psf"]))
        if use_fourier:
            log_likelihood = lk.fourier_log_likelihood(observed, observed_model, lk.bands_first(batch["noise_ps"]))
        else:
            noise_var = tf.reshape(batch["noise_var"], [tf.shape(observed)[0], -1, 1, 1])
            log_likelihood = lk.pixel_log_likelihood(observed, observed_model, noise_var)
        log_likelihood = tf.reduce_sum(log_likelihood, axis=-1)
        kl = lk.free_bits_kl(lk.gaussian_kl_divergence(mean, log_scale), v.free_bits)
        tv = lk.total_variation(profile)
        nll = -tf.reduce_mean(log_likelihood)
        kl = tf.reduce_mean(kl)
        tv = tf.reduce_mean(tv)
        # Each term counted once (upstream added its regularisers twice).
        loss = nll + kl_weight * kl + v.tv_weight * tv
        return {"loss": loss, "nll": nll, "kl": kl, "tv": tv}

    return loss_terms


def _batch_is_valid(batch: dict) -> tf.Tensor:
    checks = [tf.reduce_all(tf.math.is_finite(value)) for value in batch.values()]
    noise_key = "noise_ps" if "noise_ps" in batch else "noise_var"
    checks.append(tf.reduce_all(batch[noise_key] > 0))
    return tf.reduce_all(tf.stack(checks))


def _raise_if_diverged(values: dict, step: int, what: str, dataset_dir=None) -> None:
    if not values.pop("inputs_valid", True):
        raise TrainingDivergedError(
            f"the {what} training batch at step {step} holds NaN or infinite values, or a "
            f"non-positive noise variance (data set {dataset_dir}); rebuild or clean the data set"
        )
    if not all(math.isfinite(x) for x in values.values()):
        terms = ", ".join(f"{k}={x:.4g}" for k, x in values.items())
        raise TrainingDivergedError(
            f"the {what} loss became non-finite at step {step} ({terms}); lower the learning rate or check the data set"
        )


def _build_vae(architecture: dict, precision: str) -> VAE:
    """A VAE whose layers compute with the dtype policy ``precision`` (weights float32)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return VAE.from_architecture(architecture)
    finally:
        keras.config.set_dtype_policy(previous)


def load_vae(work_dir: str | Path) -> VAE:
    """Rebuild the VAE from ``<work_dir>/vae`` and restore its latest checkpoint."""
    directory = Path(work_dir) / "vae"
    architecture = read_json(directory / ARCHITECTURE_FILE)
    latest = tf.train.latest_checkpoint(str(directory))
    if architecture is None or latest is None:
        raise GalSimHubError(f"no trained VAE in {directory}; run the 'vae' stage first")
    vae = VAE.from_architecture(architecture)
    tf.train.Checkpoint(vae=vae).read(latest).expect_partial().assert_existing_objects_matched()
    return vae


def train_vae(
    config: TrainingConfig,
    dataset_dir: str | Path,
    work_dir: str | Path,
    resume: bool = True,
    progress: bool | None = None,
    log_every: int = 1,
    heldout_dir: str | Path | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> list[dict]:
    """Train (or resume training) the VAE.

    Parameters
    ----------
    config : TrainingConfig
        ``config.vae`` gives the architecture and the optimisation.
    dataset_dir : str or Path
        A data set built by :mod:`galsim_hub.training.datasets.data`.
    work_dir : str or Path
        Checkpoints go to ``work_dir/vae``, the loss history to ``work_dir/vae_history.json``.
    resume : bool
        Continue from the latest checkpoint (same architecture required); ``False`` starts over.
    progress : bool, optional
        Show a tqdm bar (default: when stderr is a terminal).
    log_every : int
        Record the losses every this many steps.
    heldout_dir : str or Path, optional
        A held-out data set of the same layout: at every checkpoint, its mean loss terms
        (fixed latent noise) are appended to ``work_dir/vae_heldout.json``, the held-out curve
        that tells when more steps stop helping.
    strategy : tf.distribute.Strategy, optional
        Train data-parallel over its replicas (:func:`~galsim_hub.training.fitting.distribute.make_strategy`):
        each trains on an equal slice of every batch of ``vae.batch_size`` examples, so the
        weights follow those of one device. Default: one device.

    Returns
    -------
    list of dict
        The loss history: ``step``, ``loss``, ``nll``, ``kl``, ``tv`` (per galaxy, nats).

    Raises
    ------
    CheckpointMismatchError
        ``resume`` with checkpoints of another architecture (nothing is overwritten).
    TrainingDivergedError
        NaN/infinite inputs or losses.
    """
    from galsim_hub.training.datasets import data

    v = config.vae
    dataset_dir = Path(dataset_dir)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    metadata = data.read_dataset_metadata(dataset_dir)
    _check_dataset(config, metadata, dataset_dir)
    keys = ("image", "psf", "noise_ps" if v.likelihood == "fourier" else "noise_var")
    batches = iter(data.make_tf_dataset(dataset_dir, v.batch_size, keys=keys, shuffle=True, repeat=True, seed=v.seed))
    directory = work_dir / "vae"
    history_file = work_dir / "vae_history.json"
    saved = read_json(directory / ARCHITECTURE_FILE) if resume else None
    first_batch = next(batches)
    if v.image_scale is None and saved is not None:
        scale = saved.get("image_scale")
    else:
        scale = _image_scale_from_data(first_batch) if v.image_scale is None else v.image_scale
    architecture = config.vae_architecture(image_scale=scale, n_bands=len(metadata.get("bands") or [None]))
    restore = prepare_checkpoint_dir(
        directory, architecture, resume, "VAE", history_file, {key: getattr(v, key) for key in RESUME_SETTINGS["vae"]}
    )

    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(v.seed)
    with strategy.scope():
        vae = _build_vae(architecture, v.precision)
        # No clipping inside the optimizer: the step clips the gradient summed over the replicas.
        optimizer = _make_optimizer(v.optimizer, _learning_rate(v.learning_rate, v.lr_schedule, v.warmup_steps))
        optimizer.build(vae.trainable_variables)
    state = TrainingState(directory, history_file, v.seed, restore, vae=vae, optimizer=optimizer)
    loss_terms = _vae_loss_fn(vae, config)

    def checked_loss_terms(batch, noise, kl_weight):
        terms = loss_terms(batch, noise, kl_weight)
        terms["inputs_valid"] = tf.cast(_batch_is_valid(batch), tf.float32)
        return terms

    train_step = DataParallelStep(
        strategy, checked_loss_terms, vae.trainable_variables, optimizer, v.batch_size, v.clip_norm
    )

    def run_step(s: int) -> dict:
        batch = first_batch if s == start else next(batches)
        kl_weight = min(1.0, (s + 1) / v.kl_warmup_steps) if v.kl_warmup_steps else 1.0
        noise = state.generator.normal([v.batch_size, vae.latent_dim])
        values = {k: x.numpy().item() for k, x in train_step(batch, noise, tf.constant(kl_weight)).items()}
        values["inputs_valid"] = values["inputs_valid"] == 1.0  # on every replica
        _raise_if_diverged(values, s, "VAE", dataset_dir)
        return values

    start = state.start
    on_checkpoint = None
    if heldout_dir is not None:
        on_checkpoint = heldout_recorder(
            heldout_evaluator(
                loss_terms, config.dataset.stamp_size, Path(heldout_dir), keys, vae.latent_dim, v.seed + 1
            ),
            work_dir / "vae_heldout.json",
            start,
            restore,
        )
    return state.run(
        run_step, v.steps, "VAE", progress, log_every, v.checkpoint_every, ("loss", "kl"), on_checkpoint=on_checkpoint
    )


def encode_latents(
    config: TrainingConfig, dataset_dir: str | Path, work_dir: str | Path, batch_size: int | None = None
) -> Path:
    """Encode every training galaxy with the trained VAE.

    Writes ``work_dir/latents.npz`` with the posterior ``mean`` and ``log_scale`` ``[n, L]``
    and the raw ``conditions`` ``[n, C]`` of the data set, and returns its path.
    """
    from galsim_hub.training.datasets import data

    dataset_dir = Path(dataset_dir)
    metadata = data.read_dataset_metadata(dataset_dir)
    vae = load_vae(work_dir)
    batch_size = batch_size or max(config.vae.batch_size, 64)
    encode = tf.function(vae.encode)
    means, log_scales, conditions = [], [], []
    # Shard by shard, so that every galaxy is encoded once (make_tf_dataset drops the last
    # incomplete batch) without holding the whole set in memory.
    for shard in metadata["shards"]:
        with np.load(dataset_dir / shard) as arrays:
            images, psfs = arrays["image"], arrays["psf"]
            conditions.append(arrays["conditions"])
        for start in range(0, len(images), batch_size):
            mean, log_scale = encode(images[start : start + batch_size], psfs[start : start + batch_size])
            means.append(mean.numpy())
            log_scales.append(log_scale.numpy())
    out = Path(work_dir) / LATENTS_FILE
    np.savez(
        out, mean=np.concatenate(means), log_scale=np.concatenate(log_scales), conditions=np.concatenate(conditions)
    )
    return out


def load_flow(work_dir: str | Path) -> tuple[ConditionalMAF, dict]:
    """Rebuild the flow from ``<work_dir>/flow``; return it and its condition normalisation."""
    directory = Path(work_dir) / "flow"
    architecture = read_json(directory / ARCHITECTURE_FILE)
    normalisation = read_json(directory / NORMALISATION_FILE)
    latest = tf.train.latest_checkpoint(str(directory))
    if architecture is None or normalisation is None or latest is None:
        raise GalSimHubError(f"no trained flow in {directory}; run the 'flow' stage first")
    flow = ConditionalMAF.from_architecture(architecture)
    tf.train.Checkpoint(flow=flow).read(latest).expect_partial().assert_existing_objects_matched()
    return flow, normalisation


def train_flow(
    config: TrainingConfig, work_dir: str | Path, resume: bool = True, progress: bool | None = None, log_every: int = 1
) -> list[dict]:
    """Train (or resume training) the conditional flow on the encoded latents.

    Each step draws a batch of training galaxies and one posterior sample
    ``z = mean + exp(log_scale) * eps`` per galaxy, so the flow learns the aggregate posterior
    the decoder was trained on. Conditions are standardised with the training-set mean and
    standard deviation, stored in ``work_dir/flow/normalisation.json``.

    Returns
    -------
    list of dict
        ``step`` and ``loss`` (mean negative log-likelihood of the latents, nats).
    """
    f = config.flow
    work_dir = Path(work_dir)
    latents_file = work_dir / LATENTS_FILE
    if not latents_file.is_file():
        raise GalSimHubError(f"{latents_file} not found; encode the training set first (encode_latents)")
    latents = np.load(latents_file)
    mean, log_scale, conditions = latents["mean"], latents["log_scale"], latents["conditions"]
    for name, array in (("mean", mean), ("log_scale", log_scale), ("conditions", conditions)):
        if not np.all(np.isfinite(array)):
            raise TrainingDivergedError(f"{latents_file}: the encoded {name} holds NaN or infinite values")
    condition_mean = conditions.mean(axis=0)
    condition_std = conditions.std(axis=0)
    condition_std = np.where(condition_std > 0, condition_std, 1.0)
    standardised = ((conditions - condition_mean) / condition_std).astype(np.float32)
    latent_mean = mean.mean(axis=0)
    latent_std = np.sqrt(mean.var(axis=0) + np.exp(2 * log_scale).mean(axis=0))

    architecture = config.flow_architecture(conditions.shape[1])
    directory = work_dir / "flow"
    history_file = work_dir / "flow_history.json"
    restore = prepare_checkpoint_dir(
        directory, architecture, resume, "flow", history_file, {key: getattr(f, key) for key in RESUME_SETTINGS["flow"]}
    )
    write_json(
        directory / NORMALISATION_FILE,
        {
            "condition_mean": condition_mean.tolist(),
            "condition_std": condition_std.tolist(),
        },
    )

    keras.utils.set_random_seed(f.seed)
    flow = ConditionalMAF.from_architecture(architecture)
    flow.set_latent_normalisation(latent_mean, latent_std)
    optimizer = _make_optimizer("adam", _learning_rate(f.learning_rate, f.lr_schedule, f.warmup_steps))
    optimizer.build(flow.trainable_variables)
    state = TrainingState(directory, history_file, f.seed, restore, flow=flow, optimizer=optimizer)
    generator = state.generator

    mean_t = tf.constant(mean, tf.float32)
    scale_t = tf.constant(np.exp(log_scale), tf.float32)
    conditions_t = tf.constant(standardised)
    n = mean.shape[0]

    @tf.function
    def train_step():
        index = generator.uniform([f.batch_size], 0, n, dtype=tf.int64)
        z = tf.gather(mean_t, index) + tf.gather(scale_t, index) * generator.normal([f.batch_size, flow.latent_dim])
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow.log_prob(z, tf.gather(conditions_t, index)))
        gradients = tape.gradient(loss, flow.trainable_variables)
        optimizer.apply_gradients(zip(gradients, flow.trainable_variables))
        return {"loss": loss}

    def run_step(s: int) -> dict:
        values = {k: x.numpy().item() for k, x in train_step().items()}
        _raise_if_diverged(values, s, "flow")
        return values

    return state.run(run_step, f.steps, "flow", progress, log_every, f.checkpoint_every, ("loss",))


def export(
    config: TrainingConfig,
    work_dir: str | Path,
    out_dir: str | Path,
    dataset_dir: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Export the trained decoder and flow as a galsim-hub model directory.

    Condition names, units and training ranges come from the data set's metadata, the
    standardisation from the flow's training set.

    Returns
    -------
    Path
        The model directory (loadable with :class:`galsim_hub.GenerativeGalaxyModel`).
    """
    from galsim_hub.training.datasets import data
    from galsim_hub.training.fitting.export import export_model

    work_dir = Path(work_dir)
    dataset_dir = Path(dataset_dir) if dataset_dir is not None else dataset_path(config, work_dir)
    metadata = data.read_dataset_metadata(dataset_dir)
    vae = load_vae(work_dir)
    flow, normalisation = load_flow(work_dir)
    e = config.export
    conditions = [
        {key: c[key] for key in ("name", "unit", "description", "min", "max") if key in c}
        for c in metadata["conditions"]
    ]
    if len(conditions) != flow.n_conditions:
        raise GalSimHubError(
            f"the data set {dataset_dir} has {len(conditions)} conditions but the flow was "
            f"trained on {flow.n_conditions}"
        )
    training = {
        "dataset": {key: metadata.get(key) for key in ("source", "n_examples", "psf", "noise")},
        "vae": {
            "steps": config.vae.steps,
            "batch_size": config.vae.batch_size,
            "likelihood": config.vae.likelihood,
            "free_bits": config.vae.free_bits,
            "tv_weight": config.vae.tv_weight,
            "architecture": vae.architecture,
        },
        "flow": {"steps": config.flow.steps, "batch_size": config.flow.batch_size, "architecture": flow.architecture},
    }
    optional = {}
    flux_units = e.flux_units or metadata.get("flux_units")
    if flux_units:
        optional["flux_units"] = flux_units
    zero_point = e.zero_point if e.zero_point is not None else metadata.get("zero_point")
    return export_model(
        out_dir,
        flow=flow,
        decoder=vae.decoder,
        encoder=vae,
        conditions=conditions,
        latent_dim=vae.latent_dim,
        stamp_size=vae.stamp_size,
        pixel_scale=float(metadata["pixel_scale"]),
        name=e.name,
        version=e.version,
        condition_mean=normalisation["condition_mean"],
        condition_std=normalisation["condition_std"],
        zero_point=zero_point,
        training=training,
        description=e.description,
        license=e.license,
        citation=e.citation,
        bands=metadata.get("bands"),
        flux_calibration=e.flux_calibration,
        stamp_window=e.stamp_window,
        overwrite=overwrite,
        **optional,
    )


def run_all(
    config: TrainingConfig,
    work_dir: str | Path,
    out_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
    heldout_dir: str | Path | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> Path | None:
    """Build the data set (if absent), train the VAE, encode, train the flow and export.

    ``heldout_dir`` and ``strategy`` are passed to :func:`train_vae` (the held-out loss curve,
    data-parallel training). The flow (seconds of training) and the export run on one device, on
    the chief only: another worker returns None once the VAE is trained.
    """
    from galsim_hub.training.datasets import data

    work_dir = Path(work_dir)
    dataset_dir = dataset_path(config, work_dir)
    try:
        data.read_dataset_metadata(dataset_dir)
        log(f"using the data set in {dataset_dir}")
    except (OSError, GalSimHubError, ValueError):
        log(f"building the {config.dataset.source} data set in {dataset_dir}")
        build_dataset(config, work_dir, progress=progress)
    train_vae(
        config, dataset_dir, work_dir, resume=resume, progress=progress, heldout_dir=heldout_dir, strategy=strategy
    )
    if strategy is not None and not is_chief(strategy):
        return None
    encode_latents(config, dataset_dir, work_dir)
    train_flow(config, work_dir, resume=resume, progress=progress)
    out_dir = Path(out_dir) if out_dir is not None else work_dir / "export" / config.export.name
    return export(config, work_dir, out_dir, dataset_dir=dataset_dir, overwrite=True)
