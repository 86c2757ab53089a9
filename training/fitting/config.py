"""Training configuration: one YAML/JSON file describing the data set, the VAE, the flow and the export.

Every section is a dataclass with defaults, so a config file only names what it changes.
Unknown keys are errors that name the key and the section and list the valid keys.

Examples
--------
>>> from galsim_hub.training.fitting.config import load_config
>>> config = load_config("training/configs/synthetic_default.yaml")  # doctest: +SKIP
>>> config.vae.latent_dim                                            # doctest: +SKIP
16
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from galsim_hub.errors import GalSimHubError

__all__ = [
    "ConfigError",
    "DatasetConfig",
    "VAEConfig",
    "FlowConfig",
    "ExportConfig",
    "TrainingConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
]


#: ``vae.precision`` choices: Keras dtype policies.
VAE_PRECISIONS = ("float32", "mixed_bfloat16")


class ConfigError(GalSimHubError, ValueError):
    """A training configuration has an unknown key or an invalid value."""


@dataclass
class DatasetConfig:
    """Where the training set comes from.

    ``source`` is ``"synthetic"`` (galaxies drawn with GalSim), ``"chromatic"`` (the same
    population in several bands, with one SED per component: a multi-band model) or
    ``"cosmos"`` (the COSMOS 25.2 real-galaxy catalog in ``catalog_dir``). ``path`` is the built data set; when unset
    it is ``<work_dir>/dataset``. ``n_examples`` is the number of synthetic galaxies, or the
    maximum number of COSMOS galaxies (``None``: all that pass the cuts). ``psf`` and
    ``noise_sigma`` apply to single-band synthetic data only. ``options`` holds further keyword
    arguments of the builder (``build_synthetic_dataset``, e.g. ``correlated_noise``,
    ``build_chromatic_dataset``, e.g. ``bands``, ``jobs``, or ``build_cosmos_dataset``, e.g.
    ``catalog_file``, ``exclusion_level``, ``conditions``).
    """

    source: str = "synthetic"
    path: str | None = None
    catalog_dir: str | None = None
    n_examples: int | None = 4096
    stamp_size: int = 64
    pixel_scale: float = 0.03
    psf: str = "hst"
    noise_sigma: float | None = None
    seed: int = 0
    shard_size: int = 1024
    options: dict = field(default_factory=dict)


@dataclass
class VAEConfig:
    """Architecture and training of the VAE (encoder and decoder).

    Architecture: ``num_stages`` down-sampling stages, channels ``min(base_depth * 2**i,
    max_depth)`` at stage ``i``, ``blocks_per_stage`` residual blocks per stage, latent size
    ``latent_dim``. ``image_scale`` (flux units) divides images before the encoder and scales
    the decoder's softplus output; ``None`` sets it from the data when training starts.

    Training: ``optimizer`` ``"adam"`` or ``"adafactor"``; ``lr_schedule`` ``"rsqrt"`` (constant
    for ``warmup_steps`` then ``learning_rate * sqrt(warmup_steps / step)``) or ``"constant"``;
    ``likelihood`` ``"pixel"`` (diagonal, paper eq. 4) or ``"fourier"`` (noise power spectrum,
    eq. 5); ``free_bits`` (nats, eq. 10); ``tv_weight`` (total-variation penalty);
    ``kl_warmup_steps`` ramps the KL weight linearly from 0 to 1 (bottleneck warm-up, 0: off);
    ``clip_norm`` clips the global gradient norm (``None``: no clipping); ``precision``
    ``"float32"`` or ``"mixed_bfloat16"`` (Keras mixed precision: float32 weights, bfloat16
    arithmetic in the networks, the likelihood in float32; for accelerators with bfloat16 units,
    whose range needs no loss scaling; the exported model is float32 either way).
    """

    latent_dim: int = 16
    num_stages: int = 4
    base_depth: int = 16
    max_depth: int = 128
    blocks_per_stage: int = 1
    activation: str = "elu"
    image_scale: float | None = None
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_schedule: str = "rsqrt"
    warmup_steps: int = 500
    batch_size: int = 32
    steps: int = 3000
    free_bits: float = 4.0
    tv_weight: float = 0.01
    likelihood: str = "pixel"
    kl_warmup_steps: int = 0
    clip_norm: float | None = 1.0
    precision: str = "float32"
    checkpoint_every: int = 500
    seed: int = 0


@dataclass
class FlowConfig:
    """Architecture and training of the conditional masked autoregressive flow."""

    n_blocks: int = 8
    hidden_units: tuple = (256, 256)
    activation: str = "relu"
    permutation_seed: int = 0
    learning_rate: float = 1e-3
    lr_schedule: str = "rsqrt"
    warmup_steps: int = 1000
    batch_size: int = 256
    steps: int = 5000
    checkpoint_every: int = 1000
    seed: int = 0


@dataclass
class ExportConfig:
    """Name, version and card text of the exported model.

    ``flux_units`` and ``zero_point`` default to those of the data set. ``flux_calibration``
    names a magnitude condition (e.g. ``mag_auto``): the exported model then gives every
    galaxy the flux of that catalog magnitude unless the caller passes ``flux=``/``mag=``
    (:func:`galsim_hub.metadata.validate_flux_calibration`). ``stamp_window`` (a fraction
    ``0 < f < 1``) makes the model multiply its stamps by a circular window that falls from 1 at
    ``f`` times the stamp's half-width to 0 at its edge (:func:`galsim_hub.backends.base.stamp_window`).
    """

    name: str = "my-model"
    version: str = "1.0.0"
    description: str = ""
    license: str = "MIT"
    citation: str = "Lanusse et al. 2021, MNRAS 504, 5543"
    flux_units: str | None = None
    zero_point: float | None = None
    flux_calibration: str | None = None
    stamp_window: float | None = None


@dataclass
class TrainingConfig:
    """A whole training run: data set, VAE, flow and export."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def vae_architecture(self, image_scale: float | None = None, n_bands: int = 1) -> dict:
        """The VAE architecture as a JSON-ready dict (``image_scale`` overrides an unset one;
        ``n_bands`` is the data set's number of bands)."""
        v = self.vae
        scale = v.image_scale if v.image_scale is not None else image_scale
        return {
            "stamp_size": self.dataset.stamp_size,
            "latent_dim": v.latent_dim,
            "num_stages": v.num_stages,
            "base_depth": v.base_depth,
            "max_depth": v.max_depth,
            "blocks_per_stage": v.blocks_per_stage,
            "activation": v.activation,
            "image_scale": None if scale is None else float(scale),
            "n_bands": int(n_bands),
        }

    def flow_architecture(self, n_conditions: int) -> dict:
        """The flow architecture as a JSON-ready dict."""
        f = self.flow
        return {
            "latent_dim": self.vae.latent_dim,
            "n_conditions": int(n_conditions),
            "n_blocks": f.n_blocks,
            "hidden_units": list(f.hidden_units),
            "activation": f.activation,
            "permutation_seed": f.permutation_seed,
        }


_SECTIONS = {"dataset": DatasetConfig, "vae": VAEConfig, "flow": FlowConfig, "export": ExportConfig}


def _build_section(name: str, cls: type, values: Any):
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section '{name}' must be a mapping, got {type(values).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in valid:
            raise ConfigError(f"unknown key '{key}' in config section '{name}'; valid keys: {', '.join(valid)}")
    kwargs = dict(values)
    if "hidden_units" in kwargs:
        hidden = kwargs["hidden_units"]
        if isinstance(hidden, int):
            hidden = [hidden]
        if not isinstance(hidden, (list, tuple)):
            raise ConfigError(f"{name}.hidden_units must be a list of positive integers, got {hidden!r}")
        kwargs["hidden_units"] = tuple(hidden)
    if "options" in kwargs and not isinstance(kwargs["options"], Mapping):
        raise ConfigError(f"{name}.options must be a mapping of builder arguments, got {kwargs['options']!r}")
    return cls(**kwargs)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_positive_ints(section: str, obj: Any, names: tuple[str, ...], allow_zero=()) -> None:
    for name in names:
        value = getattr(obj, name)
        _require(
            isinstance(value, int) and not isinstance(value, bool),
            f"{section}.{name} must be an integer, got {value!r}",
        )
        minimum = 0 if name in allow_zero else 1
        _require(value >= minimum, f"{section}.{name} must be >= {minimum}, got {value}")


def _check_positive_number(section: str, name: str, value: Any, allow_zero: bool = False) -> None:
    _require(
        isinstance(value, (int, float)) and not isinstance(value, bool),
        f"{section}.{name} must be a number, got {value!r}",
    )
    _require(
        value >= 0 if allow_zero else value > 0,
        f"{section}.{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}",
    )


#: Builder arguments a config may set in ``dataset.options`` (the others come from the
#: section's own keys or from the run).
_BUILDER_OPTIONS = {
    "synthetic": ("correlated_noise",),
    "chromatic": ("bands", "jobs"),
    "cosmos": (
        "catalog_file",
        "catalogs",
        "conditions",
        "exclusion_level",
        "min_flux_radius",
        "max_mag",
        "holdout",
        "split",
        "orientations",
        "shifts",
        "max_shift",
        "parametric",
    ),
}


def _check_finite(section: str, name: str, value: Any, positive: bool = False) -> None:
    _require(
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 or not positive),
        f"{section}.{name} must be a {'positive ' if positive else ''}finite number, got {value!r}",
    )


def _check_optional_string(section: str, name: str, value: Any) -> None:
    _require(value is None or isinstance(value, str), f"{section}.{name} must be a string, got {value!r}")


def _validate_strings_and_seeds(config: TrainingConfig) -> None:
    """Types of the keys the numeric checks do not cover: seeds, names, texts, choices."""
    from galsim_hub.errors import HandleError
    from galsim_hub.hub.handle import parse_hub_handle

    d, v, f, e = config.dataset, config.vae, config.flow, config.export
    for section, obj, names in (
        ("dataset", d, ("seed",)),
        ("vae", v, ("seed",)),
        ("flow", f, ("seed", "permutation_seed")),
    ):
        _check_positive_ints(section, obj, names, allow_zero=names)
    _check_finite("dataset", "pixel_scale", d.pixel_scale, positive=True)
    _require(d.psf == "hst", f"dataset.psf must be 'hst' (the HST-like PSF of the synthetic data sets), got {d.psf!r}")
    if d.noise_sigma is not None:
        _check_finite("dataset", "noise_sigma", d.noise_sigma, positive=True)
    for name in ("path", "catalog_dir"):
        _check_optional_string("dataset", name, getattr(d, name))
    unknown = sorted(set(d.options) - set(_BUILDER_OPTIONS[d.source]))
    _require(
        not unknown,
        f"dataset.options has unknown key(s) {unknown} for source {d.source!r}; valid: "
        f"{', '.join(_BUILDER_OPTIONS[d.source])}",
    )
    for section, obj in (("vae", v), ("flow", f)):
        _require(
            obj.activation in ("elu", "relu", "gelu", "swish", "tanh", "leaky_relu"),
            f"{section}.activation must be one of elu, relu, gelu, swish, tanh, leaky_relu, got {obj.activation!r}",
        )
        _check_finite(section, "learning_rate", obj.learning_rate, positive=True)
    for name in ("name", "version", "description", "license", "citation"):
        _require(isinstance(getattr(e, name), str), f"export.{name} must be a string, got {getattr(e, name)!r}")
    try:
        parse_hub_handle(f"hub:{e.name}@{e.version}")
    except HandleError as error:
        raise ConfigError(
            f"export.name and export.version must be a hub name and version "
            f"(letters, digits, '_', '.', '+', '-'): {error}"
        ) from None
    _check_optional_string("export", "flux_units", e.flux_units)
    _check_optional_string("export", "flux_calibration", e.flux_calibration)
    if e.zero_point is not None:
        _check_finite("export", "zero_point", e.zero_point)
    if e.stamp_window is not None:
        _check_finite("export", "stamp_window", e.stamp_window, positive=True)
        _require(e.stamp_window < 1, f"export.stamp_window must be below 1, got {e.stamp_window}")


def _validate(config: TrainingConfig) -> None:
    d, v, f = config.dataset, config.vae, config.flow
    _require(isinstance(d.source, str), f"dataset.source must be a string, got {d.source!r}")
    _require(
        d.source in ("synthetic", "chromatic", "cosmos"),
        f"dataset.source must be 'synthetic', 'chromatic' or 'cosmos', got {d.source!r}",
    )
    _require(
        d.source != "cosmos" or bool(d.catalog_dir) or bool(dict(d.options).get("catalogs")),
        "dataset.source 'cosmos' needs dataset.catalog_dir (the COSMOS 25.2 catalog directory) "
        "or dataset.options.catalogs (a list of {dir, file, exclusion_level})",
    )
    _require(d.source == "cosmos" or d.n_examples is not None, "dataset.n_examples must be set for synthetic data")
    counts = ("stamp_size", "shard_size") + (("n_examples",) if d.n_examples is not None else ())
    _check_positive_ints("dataset", d, counts)
    _check_positive_number("dataset", "pixel_scale", d.pixel_scale)
    _require(isinstance(d.options, Mapping), "dataset.options must be a mapping of builder arguments")
    _check_positive_ints(
        "vae",
        v,
        (
            "latent_dim",
            "num_stages",
            "base_depth",
            "max_depth",
            "blocks_per_stage",
            "warmup_steps",
            "batch_size",
            "steps",
            "kl_warmup_steps",
            "checkpoint_every",
        ),
        allow_zero=("blocks_per_stage", "kl_warmup_steps", "warmup_steps"),
    )
    _require(
        d.stamp_size % (2**v.num_stages) == 0,
        f"dataset.stamp_size ({d.stamp_size}) must be divisible by 2**vae.num_stages ({2**v.num_stages})",
    )
    _require(v.max_depth >= v.base_depth, f"vae.max_depth ({v.max_depth}) must be >= vae.base_depth ({v.base_depth})")
    _require(v.optimizer in ("adam", "adafactor"), f"vae.optimizer must be 'adam' or 'adafactor', got {v.optimizer!r}")
    _require(v.likelihood in ("pixel", "fourier"), f"vae.likelihood must be 'pixel' or 'fourier', got {v.likelihood!r}")
    _require(
        v.precision in VAE_PRECISIONS,
        f"vae.precision must be one of {', '.join(VAE_PRECISIONS)}, got {v.precision!r}",
    )
    for section, obj in (("vae", v), ("flow", f)):
        _require(
            obj.lr_schedule in ("rsqrt", "constant"),
            f"{section}.lr_schedule must be 'rsqrt' or 'constant', got {obj.lr_schedule!r}",
        )
        _check_positive_number(section, "learning_rate", obj.learning_rate)
    _check_positive_number("vae", "free_bits", v.free_bits, allow_zero=True)
    _check_positive_number("vae", "tv_weight", v.tv_weight, allow_zero=True)
    if v.image_scale is not None:
        _check_positive_number("vae", "image_scale", v.image_scale)
    if v.clip_norm is not None:
        _check_positive_number("vae", "clip_norm", v.clip_norm)
    _check_positive_ints(
        "flow", f, ("n_blocks", "batch_size", "steps", "checkpoint_every", "warmup_steps"), allow_zero=("warmup_steps",)
    )
    _require(
        len(f.hidden_units) > 0 and all(isinstance(h, int) and h > 0 for h in f.hidden_units),
        f"flow.hidden_units must be a list of positive integers, got {list(f.hidden_units)}",
    )
    _validate_strings_and_seeds(config)


def config_from_dict(values: Mapping) -> TrainingConfig:
    """Build and validate a :class:`TrainingConfig` from a nested mapping.

    Raises
    ------
    ConfigError
        On an unknown section or key (the message lists the valid ones) or an invalid value.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"a training config must be a mapping of sections, got {type(values).__name__}")
    for key in values:
        if key not in _SECTIONS:
            raise ConfigError(f"unknown config section '{key}'; valid sections: {', '.join(_SECTIONS)}")
    sections = {name: _build_section(name, cls, values.get(name)) for name, cls in _SECTIONS.items()}
    config = TrainingConfig(**sections)
    _validate(config)
    return config


def load_config(path: str | Path | Mapping) -> TrainingConfig:
    """Read a YAML or JSON training config (or take a mapping) and validate it.

    Parameters
    ----------
    path : str, Path or mapping
        A ``.yaml``/``.yml``/``.json`` file, or the already-parsed mapping.

    Returns
    -------
    TrainingConfig
    """
    if isinstance(path, Mapping):
        return config_from_dict(path)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read training config {path}: {exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"cannot parse training config {path}: {exc}") from exc
    else:
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot parse training config {path}: {exc}") from exc
    try:
        return config_from_dict(values or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_to_dict(config: TrainingConfig) -> dict:
    """The config as a JSON/YAML-ready nested dict (the inverse of :func:`config_from_dict`)."""
    values = dataclasses.asdict(config)
    values["flow"]["hidden_units"] = list(config.flow.hidden_units)
    return values
