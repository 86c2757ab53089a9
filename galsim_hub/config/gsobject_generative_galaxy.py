"""The ``GenerativeGalaxy`` config object type (also ``GenerativeModelGalaxy``, upstream's spelling).

See :mod:`galsim_hub.config` for the batching, the out-of-range policy and multi-band models.
"""

from __future__ import annotations

import collections

import galsim
import galsim.config
import numpy as np

from galsim_hub.config.block_replay import (
    OBJECT_OPTIONS,
    NotReplayable,
    block_inputs,
    field_digest,
    image_object_range,
    noise_rng,
    object_seed,
)
from galsim_hub.config.block_replay import (
    draws_before as count_draws_before,
)
from galsim_hub.config.input_generative_model import BLOCKS_KEPT, INPUT_TYPE, OBJECT_TYPE, profile_options
from galsim_hub.metadata import condition_names
from galsim_hub.profiles.bands import band_set_of
from galsim_hub.profiles.wrap import as_gsobject, galaxy_profile
from galsim_hub.sampling.noise import draw_base_noise
from galsim_hub.sampling.plan import DEFAULT_OUT_OF_RANGE, SamplingPlan, check_policy

__all__ = ["BuildGenerativeGalaxy", "OBJECT_TYPE", "UPSTREAM_OBJECT_TYPE"]

UPSTREAM_OBJECT_TYPE = "GenerativeModelGalaxy"
_BLOCK_CACHE_KEY = "_galsim_hub_blocks"
_REPORTED_KEY = "_galsim_hub_reported"  # gal fields whose per-object fallback was logged


def _check_catalog_rows(param: dict, name: str, base: dict, obj_num: int) -> None:
    """Refuse a default-indexed Catalog value that would wrap around a short catalog."""
    field = param[name]
    if not (isinstance(field, dict) and field.get("type") == "Catalog"):
        return
    index = field.get("index")
    if index is not None and not (isinstance(index, dict) and "default" in index):
        return  # the user chose the rows
    catalog = galsim.config.GetInputObj("catalog", field, base, "Catalog")
    row = obj_num - base.get("start_obj_num", 0)
    if row >= catalog.getNObjects():
        raise galsim.GalSimConfigError(
            f"{OBJECT_TYPE}: object {row} of the file needs row {row} of the catalog for "
            f"'{name}', but {catalog.file_name} has only {catalog.getNObjects()} rows; request "
            f"at most {catalog.getNObjects()} objects (image.nobjects) or give the Catalog an index"
        )


def _check_conditions(values: np.ndarray, names: list[str], obj_nums) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise galsim.GalSimConfigError(
            f"{OBJECT_TYPE}: condition '{names[column]}' of object {obj_nums[row]} is "
            f"{values[row, column]} (NaN or infinite)"
        )


def _policy(param: dict, base: dict) -> str:
    """The gal field's ``out_of_range`` policy (default ``clip``)."""
    if "out_of_range" not in param:
        return DEFAULT_OUT_OF_RANGE
    value = galsim.config.ParseValue(param, "out_of_range", base, str)[0]
    try:
        return check_policy(value)
    except ValueError as error:
        raise galsim.GalSimConfigValueError(f"{OBJECT_TYPE}: {error}", value) from None


def _check_flux(param: dict, base: dict) -> None:
    """Refuse a NaN, infinite or negative ``flux`` (GalSim applies it with ``withFlux``)."""
    flux = galsim.config.ParseValue(param, "flux", base, float)[0]
    if not np.isfinite(flux) or flux < 0:
        raise galsim.GalSimConfigError(
            f"{OBJECT_TYPE}: flux of object {base.get('obj_num', 0)} is {flux}; it must be finite and non-negative"
        )


def _block(model, param, base, metadata, request, ignore, image_options, draws_before, policy):
    """The block of the current object (``None`` when it cannot be batched), and its first object.

    The first time a process needs a block, it also has the next block of the image decoded
    ahead (unless another process already does), so that decoding overlaps drawing.
    """
    obj_num = base["obj_num"]
    size = model.getBatchSize()
    image_start, image_nobj = image_object_range(base)
    image_end = image_start + image_nobj
    if size == 1 or draws_before is None or not image_start <= obj_num < image_end:
        return None, obj_num
    first = image_start + (obj_num - image_start) // size * size

    def key_and_inputs(first: int):
        obj_nums = list(range(first, min(first + size, image_end)))
        key = (
            field_digest(param),
            base.get("file_num", 0),
            base.get("image_num", 0),
            first,
            len(obj_nums),
            policy,
            draws_before,
        )

        def inputs():
            names = condition_names(metadata)
            conditions, noise = block_inputs(
                param, names, request, ignore, base, obj_nums, draws_before, int(metadata["latent_dim"])
            )
            _check_conditions(conditions, names, obj_nums)
            return conditions, noise

        return key, inputs

    key, inputs = key_and_inputs(first)
    cache = base.setdefault(_BLOCK_CACHE_KEY, collections.OrderedDict())
    if key not in cache:
        block = model.getBlock(key)
        if block is None:
            try:
                block = model.decodeBlock(key, *inputs(), image_options, policy)
            except NotReplayable:
                block = None
        cache[key] = block
        while len(cache) > BLOCKS_KEPT:
            cache.popitem(last=False)
        if block is not None and first + size < image_end:
            _prefetch(model, *key_and_inputs(first + size), image_options, policy)
    return cache[key], first


def _prefetch(model, key: tuple, inputs, image_options: tuple, policy: str) -> None:
    """Have block ``key`` decoded in the background, unless it is or was already."""
    if not model.claimBlock(key):
        return
    try:
        conditions, noise = inputs()
    except Exception:  # the call that needs the block evaluates it again and reports what fails
        model.dropClaim(key)
        return
    except BaseException:  # the claim must not outlive this call, or waiters would hang
        model.dropClaim(key)
        raise
    model.prefetchBlock(key, conditions, noise, image_options, policy)


def _own_image(model, base: dict, metadata: dict, own_values: np.ndarray, policy: str) -> np.ndarray:
    """The image of the current object decoded on its own (any condition value works)."""
    obj_num = base["obj_num"]
    names = condition_names(metadata)
    _check_conditions(own_values[None, :], names, [obj_num])
    noise = draw_base_noise(1, int(metadata["latent_dim"]), noise_rng(object_seed(base)))
    plan = SamplingPlan(
        own_values[None, :], metadata, policy, labels=[obj_num], what="objects", prefix=f"{OBJECT_TYPE}: "
    )
    return plan.images(model.decode_bands, noise)[0]


def report_fallback(base: dict, param: dict, names, own, block, logger) -> None:
    """Say, once per gal field and process, that objects are decoded one at a time."""
    reported = base.setdefault(_REPORTED_KEY, set())
    level = "debug" if field_digest(param) in reported else "warning"
    reported.add(field_digest(param))
    if block is None:
        why = "cannot be evaluated outside the object's own stamp (e.g. it uses the stamp position)"
    else:
        changed = [name for name, a, b in zip(names, own, block) if a != b]
        why = (
            f"of {', '.join(changed)} differs from what the block evaluated for it (it depends "
            f"on more than the object number and its own rng, e.g. on the stamp position)"
        )
    getattr(logger, level)(
        "obj %d: %s: the condition value %s; objects of this kind are decoded one per model call, which "
        "is slower (catalog columns, Random values and expressions of obj_num are batched)",
        base["obj_num"],
        OBJECT_TYPE,
        why,
    )


def _check_keys(param: dict, names: list[str], ignore: list[str], file_name: str) -> None:
    allowed = set(names) | set(OBJECT_OPTIONS) | set(ignore) | set(galsim.config.value.standard_ignore)
    allowed |= {"type", "flux"}
    unknown = [key for key in param if key not in allowed and not key.startswith("_")]
    if unknown:
        raise galsim.GalSimConfigError(
            f"{OBJECT_TYPE}: unknown parameter(s) {', '.join(unknown)}; the model {file_name} takes the "
            f"conditions {', '.join(names)} (and the options {', '.join(OBJECT_OPTIONS)}, flux, "
            f"shear, rotate, ... as for any GSObject)"
        )
    missing = [name for name in names if name not in param]
    if missing:
        raise galsim.GalSimConfigError(
            f"{OBJECT_TYPE}: the model {file_name} is conditioned on {', '.join(names)}, but the config "
            f"gives no value for {', '.join(missing)}"
        )


def achromatic_bandpass(base: dict) -> galsim.Bandpass | None:
    """The image's bandpass when the galaxy can be drawn as its image through it, else None.

    That is when the stamp's PSF, built before the galaxy, is achromatic (or absent), and no
    photon operator, sensor or photon shooting could need the galaxy's wavelengths.
    """
    bandpass = base.get("bandpass")
    if not isinstance(bandpass, galsim.Bandpass):
        return None
    stamp, image = base.get("stamp", {}), base.get("image", {})
    if stamp.get("photon_ops") or "sensor" in image or stamp.get("draw_method", image.get("draw_method")) == "phot":
        return None
    psf = base.get("psf")
    if psf is None:
        return bandpass
    current = psf.get("current") if isinstance(psf, dict) else None
    # GalSim's current value: (object, safe, value type, index, index key); a safe PSF is reused.
    if current is None or not (current[1] or current[3] == base.get("obj_num")):
        return None
    if isinstance(current[0], galsim.ChromaticObject):
        return None
    return bandpass


def BuildGenerativeGalaxy(config: dict, base: dict, ignore: list, gsparams: dict, logger):
    """Build function of the ``GenerativeGalaxy`` object type (see the module docstring).

    Returns
    -------
    (galsim.InterpolatedImage or galsim.ChromaticObject, bool)
        The galaxy, in the model's flux units (chromatic for a multi-band model), and
        ``safe=False`` (every object differs).
    """
    logger = galsim.config.LoggerWrapper(logger)
    draws_before = count_draws_before(base)  # before this build draws anything itself
    model = galsim.config.GetInputObj(INPUT_TYPE, config, base, OBJECT_TYPE)
    metadata = model.getMetadata()
    names = condition_names(metadata)
    _check_keys(config, names, ignore, model.getFileName())
    request = {name: float for name in names}
    ignore = list(ignore) + ["flux"]
    kwargs, _ = galsim.config.GetAllParams(config, base, req=request, opt=OBJECT_OPTIONS, ignore=ignore)
    if "flux" in config:
        _check_flux(config, base)
    policy = _policy(config, base)
    for name in names:
        _check_catalog_rows(config, name, base, base["obj_num"])
    own = np.array([kwargs[name] for name in names], dtype=np.float64)
    image_options = (
        kwargs.get("x_interpolant"),
        kwargs.get("pad_factor", 4.0),
        tuple(sorted(gsparams.items())) if gsparams else (),
    )
    block, first = _block(model, config, base, metadata, request, ignore, image_options, draws_before, policy)
    maxk = None  # GalSim finds it
    if block is not None and np.array_equal(block.conditions[base["obj_num"] - first], own):
        image = block.images[base["obj_num"] - first]
        if block.image_options == image_options:
            maxk = block.maxk[base["obj_num"] - first]
    else:
        if model.getBatchSize() > 1:
            report_fallback(
                base, config, names, own, None if block is None else block.conditions[base["obj_num"] - first], logger
            )
        image = _own_image(model, base, metadata, own, policy)
    galaxy = galaxy_profile(
        np.array(image),
        float(metadata["pixel_scale"]),
        band_set_of(metadata, source=str(metadata.get("name", "model"))),
        profile_options(image_options, kwargs.get("k_interpolant")),
        maxk,
    )
    return as_gsobject(galaxy, achromatic_bandpass(base)), False


galsim.config.RegisterObjectType(OBJECT_TYPE, BuildGenerativeGalaxy, input_type=INPUT_TYPE)
galsim.config.RegisterObjectType(UPSTREAM_OBJECT_TYPE, BuildGenerativeGalaxy, input_type=INPUT_TYPE)
