"""Replaying GalSim's evaluation of a block's objects: their conditions and base noise.

Whichever object of a block is drawn first evaluates the inputs of every object of its block
the way GalSim evaluates them when it builds that object: in a context with that object's
``obj_num`` and its own rng, seeded as GalSim seeds it and advanced by the draws GalSim makes
before it builds ``gal``. See :mod:`galsim_hub.config`.
"""

from __future__ import annotations

import hashlib

import galsim
import galsim.config
import numpy as np

from galsim_hub.sampling.noise import draw_base_noise

MAX_DRAWS_BEFORE = 64  # rng draws made before ``gal`` is built that a block can replay
_NOISE_STREAM_TAG = 0x6E6F6973  # separates the galaxy noise stream from the object rng
#: Keyword options of the object that are not conditions.
OBJECT_OPTIONS = {
    "x_interpolant": str,
    "k_interpolant": str,
    "pad_factor": float,
    "num": int,
    "out_of_range": str,
}
# Set by GalSim for the stamp being drawn: a block cannot know them for its other objects.
_STAMP_KEYS = (
    "image_pos",
    "world_pos",
    "uv_pos",
    "sky_pos",
    "stamp_center",
    "stamp_offset",
    "index_pos",
    "current_prof",
    "current_stamp",
    "current_noise_image",
)
_FIELD_KEY = "_galsim_hub_field"  # digest of a gal field, the same in every process


def image_object_range(base: dict) -> tuple[int, int]:
    """First object number and object count of the image being built."""
    image_num = base.get("image_num", 0)
    nobj = base.get("nobj")
    k = image_num - base.get("start_image_num", 0)
    if nobj is None or not 0 <= k < len(nobj):
        nobj = [galsim.config.GetNObjForImage(base, image_num)]
        k = 0
    start = base.get("start_obj_num", 0) + sum(nobj[:k])
    return start, nobj[k]


def detached_copy(value):
    """Copy a config value without GalSim's cached state (``current``, ``_get``, ...)."""
    if isinstance(value, dict):
        return type(value)((k, detached_copy(v)) for k, v in value.items() if not k.startswith("_") and k != "current")
    if isinstance(value, list):
        return [detached_copy(v) for v in value]
    return value


def field_digest(param: dict) -> str:
    """A name of this ``gal`` field that every process computes alike (cached in the field)."""
    digest = param.get(_FIELD_KEY)
    if digest is None:
        digest = hashlib.sha1(repr(detached_copy(param)).encode()).hexdigest()
        param[_FIELD_KEY] = digest
    return digest


def noise_rng(object_seed: int) -> galsim.BaseDeviate:
    """Generator of one galaxy's base noise, derived from its object seed."""
    state = np.random.SeedSequence([int(object_seed) & 0xFFFFFFFFFFFFFFFF, _NOISE_STREAM_TAG]).generate_state(1)
    return galsim.BaseDeviate(int(state[0]) or 1)


def object_seed(context: dict) -> int:
    seed = context.get("seed", 0)
    if not seed:  # no image.random_seed: GalSim itself is not reproducible then
        seed = galsim.UniformDeviate(context["rng"]).raw()
    return seed


def fresh_context(base: dict, obj_num: int) -> dict:
    """A copy of ``base`` set up as GalSim sets it for object ``obj_num``, before its stamp.

    The object's rng is seeded as GalSim seeds it; the rngs of the image and the file are
    copies, so that drawing from them here leaves GalSim's untouched; what GalSim sets for the
    stamp being drawn (its position, ...) is absent.
    """
    context = dict(base)
    for key in _STAMP_KEYS:
        context.pop(key, None)
    for key in ("image_num_rng", "file_num_rng"):
        if context.get(key) is not None:
            context[key] = context[key].duplicate()
    for key in ("image_num_rngs", "file_num_rngs"):
        if context.get(key) is not None:
            context[key] = [rng.duplicate() for rng in context[key]]
    if isinstance(base.get("eval_variables"), dict):
        context["eval_variables"] = detached_copy(base["eval_variables"])
    context["obj_num"] = obj_num
    context["index_key"] = "obj_num"
    galsim.config.SetupConfigRNG(context, seed_offset=1)
    return context


def draws_before(base: dict) -> int | None:
    """How many values the current object's rng gave before ``gal`` (``None``: not found)."""
    if "random_seed" not in base.get("image", {}):
        return 0  # GalSim draws an unrepeatable seed: only values without the rng batch then
    current = base["rng"].duplicate()
    target = (current.raw(), current.raw())
    fresh = fresh_context(base, base["obj_num"])["rng"]
    values = [fresh.raw(), fresh.raw()]
    for draws in range(MAX_DRAWS_BEFORE + 1):
        if (values[draws], values[draws + 1]) == target:
            return draws
        values.append(fresh.raw())
    return None


class NotReplayable(Exception):
    """The inputs of a block's objects cannot be evaluated outside their own stamps."""


def block_inputs(param, names, request, ignore, base, obj_nums, draws_before, latent_dim):
    """Conditions and base noise of each object of a block, as GalSim evaluates them for it."""
    conditions = np.empty((len(obj_nums), len(names)), dtype=np.float64)
    noise = np.empty((len(obj_nums), latent_dim), dtype=np.float32)
    for row, obj_num in enumerate(obj_nums):
        context = fresh_context(base, obj_num)
        if draws_before:
            context["rng"].discard(draws_before)
        try:
            kwargs, _ = galsim.config.GetAllParams(
                detached_copy(param), context, req=request, opt=OBJECT_OPTIONS, ignore=ignore
            )
        except Exception as error:  # e.g. a value of the stamp position
            raise NotReplayable(f"object {obj_num}: {error}") from error
        conditions[row] = [kwargs[name] for name in names]
        noise[row] = draw_base_noise(1, latent_dim, noise_rng(object_seed(context)))[0]
    return conditions, noise
