"""GalSim config types: the ``generative_model`` input and the ``GenerativeGalaxy`` object.

A YAML file that lists ``modules: [galsim_hub]`` can use::

    input:
      catalog: {file_name: catalog.fits}
      generative_model:
        file_name: hub:NAME          # also a URL, a .tar.gz or a model directory
        batch_size: 64               # objects decoded per model call (1: one call per object)
    gal:
      type: GenerativeGalaxy         # GenerativeModelGalaxy (upstream spelling) also works
      mag_auto: {type: Catalog, col: mag_auto}
      flux_radius: {type: Random, min: 2, max: 8}

Batching. The galaxies of an image are decoded in blocks of ``batch_size`` consecutive
objects, aligned on the first object of the image. Whichever object of a block is drawn
first evaluates the inputs of every object of its block the way GalSim evaluates them when
it builds that object: in a context with that object's ``obj_num`` and its own rng, seeded as
GalSim seeds it and advanced by the draws GalSim makes before it builds ``gal`` (a Scattered
position, a random PSF). So catalog columns, sequences, ``Random``, ``RandomGaussian``,
``RandomDistribution`` and expressions of ``obj_num`` are batched. The base noise of each galaxy
is drawn from a generator seeded from its own object seed. When GalSim then builds each object,
its own condition values are compared with those its block used; an object whose values differ
(e.g. a condition that depends on the stamp position, which the block cannot know) is decoded on
its own, and GalSim's logger says so once. The inputs of a block, hence its pixels, do not depend
on which process draws it, so ``nproc: 1``, ``nproc: 4`` and ``galsim -n N -j J`` give identical
pixels.

Out-of-range conditions. The ``out_of_range`` option of ``gal`` (``clip`` by default, or
``error``, ``extrapolate``; :mod:`galsim_hub.sampling.fluxes`) is applied where the block is decoded, to each
object with a condition outside the model's training range; ``flux`` works as for any GalSim type.

Processes. The input object is a :class:`galsim_hub.GenerativeGalaxyModel` that loads
TensorFlow on its first decoding. With ``nproc > 1`` GalSim keeps it in its input-manager
process, forked before any TensorFlow starts: that one process decodes each block once (it
caches the blocks it decoded, so workers that need the same block share it) and also finds the
``maxk`` of the block's ``InterpolatedImage`` objects in one batched FFT. The drawing workers
only evaluate inputs, build the objects and draw them; a GPU sits in the same place, one
decoding process feeding the CPU workers.

Multi-band models. With a model that has ``bands`` (format 2) the object is the galaxy's
chromatic object (:func:`galsim_hub.profiles.bands.chromatic_galaxy`), which GalSim draws through the
``bandpass`` of the image field; drawn through one of the model's bands it is that band's
image, so a run per band gives every band with the same morphology. When nothing else in the
stamp depends on wavelength (the object's PSF is achromatic, no photon operators, no sensor,
no photon shooting), the object is instead the chromatic object already integrated over the
image's bandpass (:meth:`galsim_hub.MultiBandGalaxy.through`): the same pixels, drawn with
one FFT instead of one per band.
"""
from __future__ import annotations

import collections
import hashlib
import threading
from typing import NamedTuple

import galsim
import galsim.config
import numpy as np

from galsim_hub.profiles.bands import apply_band_fluxes, chromatic_galaxy, multiband_plan
from galsim_hub.sampling.fluxes import DEFAULT_OUT_OF_RANGE, SamplingPlan, check_policy
from galsim_hub.metadata import condition_names
from galsim_hub.model import GenerativeGalaxyModel, draw_base_noise, interpolated_image_maxk

__all__ = ["GenerativeModelInput", "GenerativeModelLoader", "BuildGenerativeGalaxy"]

INPUT_TYPE = "generative_model"
OBJECT_TYPE = "GenerativeGalaxy"
UPSTREAM_OBJECT_TYPE = "GenerativeModelGalaxy"
DEFAULT_BLOCK_SIZE = 64
BLOCKS_KEPT = 8  # decoded blocks kept per process (and by the decoding process)
MAX_DRAWS_BEFORE = 64  # rng draws made before ``gal`` is built that a block can replay
_NOISE_STREAM_TAG = 0x6E6F6973  # separates the galaxy noise stream from the object rng
_OBJECT_OPTIONS = {
    "x_interpolant": str,
    "k_interpolant": str,
    "pad_factor": float,
    "num": int,
    "out_of_range": str,
}
# Set by GalSim for the stamp being drawn: a block cannot know them for its other objects.
_STAMP_KEYS = ("image_pos", "world_pos", "uv_pos", "sky_pos", "stamp_center", "stamp_offset",
               "index_pos", "current_prof", "current_stamp", "current_noise_image")
_BLOCK_CACHE_KEY = "_galsim_hub_blocks"
_REPORTED_KEY = "_galsim_hub_reported"  # gal fields whose per-object fallback was logged
_FIELD_KEY = "_galsim_hub_field"  # digest of a gal field, the same in every process


class Block(NamedTuple):
    """A decoded block: images and the inputs they were decoded from."""

    images: np.ndarray  # [B, S, S] float32
    conditions: np.ndarray  # [B, C] float64, the values each object's replay gave
    image_options: tuple  # (x_interpolant, pad_factor, gsparams items) maxk was found for
    maxk: np.ndarray  # [B]


class GenerativeModelInput(GenerativeGalaxyModel):
    """The ``generative_model`` input object: a :class:`GenerativeGalaxyModel` that decodes blocks.

    Parameters
    ----------
    file_name : str
        Model handle: ``hub:NAME[@VERSION]``, an ``http(s)://`` URL, a ``.tar.gz`` archive or
        a model directory.
    device : str, optional
        TensorFlow device, e.g. ``"/CPU:0"``; default: the first GPU, else the CPU.
    batch_size : int
        Number of consecutive objects decoded per model call (default 64). ``1`` samples each
        object on its own.

    Notes
    -----
    Construction resolves the handle, fetches the archive into the cache and reads the
    metadata, without TensorFlow; the model is loaded on the first decoding, in the process
    that decodes. Methods rather than properties make the object usable through GalSim's
    multiprocessing proxies; the object is thread-safe, as the proxy server needs.
    """

    _req_params = {"file_name": str}
    _opt_params = {"device": str, "batch_size": int}
    _single_params: list = []
    _takes_rng = False
    _load_on_init = False

    def __init__(self, file_name: str, device: str | None = None, batch_size: int = DEFAULT_BLOCK_SIZE):
        if int(batch_size) < 1:
            raise galsim.GalSimConfigValueError(
                "generative_model.batch_size must be a positive integer", batch_size
            )
        super().__init__(file_name, device=device, batch_size=batch_size)
        self._blocks: collections.OrderedDict = collections.OrderedDict()
        self._pending: dict = {}  # key -> Event set when that claimed block is decoded or given up
        self._blocks_lock = threading.Lock()

    def getMetadata(self) -> dict:
        """The model's metadata (loads the model only when the files do not hold it)."""
        return self.metadata

    def getFileName(self) -> str:
        """The handle the input was built from."""
        return self.file_name

    def getBatchSize(self) -> int:
        """Number of objects decoded per model call."""
        return self.batch_size

    def getBlock(self, key: tuple) -> Block | None:
        """The block decoded under ``key`` (waiting while it is being decoded), or ``None``."""
        with self._blocks_lock:
            block, pending = self._blocks.get(key), self._pending.get(key)
        if block is None and pending is not None:
            pending.wait()
            with self._blocks_lock:
                block = self._blocks.get(key)
        return block

    def claimBlock(self, key: tuple) -> bool:
        """Claim a block that nobody has decoded or claimed yet.

        ``True`` obliges the caller to call `decodeBlock` with ``claimed=True``,
        `prefetchBlock` or `dropClaim` for it; `getBlock` waits meanwhile.
        """
        with self._blocks_lock:
            if key in self._blocks or key in self._pending:
                return False
            self._pending[key] = threading.Event()
            return True

    def dropClaim(self, key: tuple) -> None:
        """Give a claimed block up (its inputs could not be evaluated); waiters get ``None``."""
        with self._blocks_lock:
            pending = self._pending.pop(key, None)
        if pending is not None:
            pending.set()

    def decodeBlock(self, key: tuple, conditions: np.ndarray, noise: np.ndarray, image_options: tuple,
                    out_of_range: str = DEFAULT_OUT_OF_RANGE, claimed: bool = False) -> Block:
        """Decode a block once: ``[B, C]`` conditions and ``[B, L]`` base noise, under ``key``.

        Conditions outside the training range are treated by the ``out_of_range`` policy
        (:mod:`galsim_hub.sampling.fluxes`); the block keeps the conditions as the objects gave them.

        Another caller with the same key (another worker that needs the same block) waits
        for this decoding and receives its result.
        """
        while not claimed:
            block = self.getBlock(key)
            if block is not None:
                return block
            claimed = self.claimBlock(key)
        try:
            first, count = key[3], key[4]
            labels = dict(labels=list(range(first, first + count)), what="objects", prefix=f"{OBJECT_TYPE}: ")
            if self.bands is not None:  # multi-band: GalSim finds each band's maxk
                plan = multiband_plan(np.asarray(conditions, dtype=np.float64), self.metadata, out_of_range, **labels)
                images = apply_band_fluxes(self._loaded().sample_images(plan.inputs, noise), plan.band_fluxes)
                maxk = np.zeros(len(images))
            else:
                plan = SamplingPlan(np.asarray(conditions, dtype=np.float64), self.metadata, out_of_range, **labels)
                images = plan.images(self._loaded().sample_images, noise)
                x_interpolant, pad_factor, gsparams = image_options
                maxk = interpolated_image_maxk(images, self.pixel_scale, pad_factor, x_interpolant,
                                               galsim.GSParams(**dict(gsparams)) if gsparams else None)
            block = Block(images, np.asarray(conditions, dtype=np.float64), image_options, maxk)
            with self._blocks_lock:
                self._blocks[key] = block
                while len(self._blocks) > BLOCKS_KEPT:
                    self._blocks.popitem(last=False)
        finally:
            self.dropClaim(key)  # wakes the waiters
        return block

    def prefetchBlock(self, key: tuple, conditions: np.ndarray, noise: np.ndarray, image_options: tuple,
                      out_of_range: str = DEFAULT_OUT_OF_RANGE) -> None:
        """Decode a claimed block in a thread and return at once.

        TensorFlow releases the GIL, so this decoding overlaps the drawing of the current
        block (in this process at ``nproc: 1``, in the workers otherwise). A failure is left
        to the call that needs the block: it finds no block, decodes it again and raises. The
        process waits for a decoding in flight before it exits.
        """

        def decode() -> None:
            try:
                self.decodeBlock(key, conditions, noise, image_options, out_of_range, claimed=True)
            except Exception:  # noqa: BLE001  (see the docstring)
                self.dropClaim(key)

        # Not a daemon: the interpreter waits for it at exit. A daemon thread inside a TensorFlow
        # op when the main thread ends (a config error raised meanwhile) aborts the whole process
        # ("terminate called without an active exception", exit 134) instead of reporting the error.
        threading.Thread(target=decode, name="galsim_hub-prefetch", daemon=False).start()


class GenerativeModelLoader(galsim.config.InputLoader):
    """Loader of the ``generative_model`` input; with ``nproc > 1`` the object sits behind a proxy."""

    def __init__(self):
        super().__init__(GenerativeModelInput, use_proxy=True)

    def setupImage(self, input_obj, config: dict, base: dict, logger) -> None:
        """Log, once, which model the config uses."""
        if logger and not base.get("_galsim_hub_model_logged"):
            base["_galsim_hub_model_logged"] = True
            metadata = input_obj.getMetadata()
            logger.info("file %d: generative model %s %s (%s), batch_size %d", base.get("file_num", 0),
                        metadata["name"], metadata["version"], input_obj.getFileName(), input_obj.getBatchSize())


def _image_object_range(base: dict) -> tuple[int, int]:
    """First object number and object count of the image being built."""
    image_num = base.get("image_num", 0)
    nobj = base.get("nobj")
    k = image_num - base.get("start_image_num", 0)
    if nobj is None or not 0 <= k < len(nobj):
        nobj = [galsim.config.GetNObjForImage(base, image_num)]
        k = 0
    start = base.get("start_obj_num", 0) + sum(nobj[:k])
    return start, nobj[k]


def _detached_copy(value):
    """Copy a config value without GalSim's cached state (``current``, ``_get``, ...)."""
    if isinstance(value, dict):
        return type(value)((k, _detached_copy(v)) for k, v in value.items()
                           if not k.startswith("_") and k != "current")
    if isinstance(value, list):
        return [_detached_copy(v) for v in value]
    return value


def _field_digest(param: dict) -> str:
    """A name of this ``gal`` field that every process computes alike (cached in the field)."""
    digest = param.get(_FIELD_KEY)
    if digest is None:
        digest = hashlib.sha1(repr(_detached_copy(param)).encode()).hexdigest()
        param[_FIELD_KEY] = digest
    return digest


def _noise_rng(object_seed: int) -> galsim.BaseDeviate:
    """Generator of one galaxy's base noise, derived from its object seed."""
    state = np.random.SeedSequence([int(object_seed) & 0xFFFFFFFFFFFFFFFF, _NOISE_STREAM_TAG]).generate_state(1)
    return galsim.BaseDeviate(int(state[0]) or 1)


def _object_seed(context: dict) -> int:
    seed = context.get("seed", 0)
    if not seed:  # no image.random_seed: GalSim itself is not reproducible then
        seed = galsim.UniformDeviate(context["rng"]).raw()
    return seed


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


def _fresh_context(base: dict, obj_num: int) -> dict:
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
        context["eval_variables"] = _detached_copy(base["eval_variables"])
    context["obj_num"] = obj_num
    context["index_key"] = "obj_num"
    galsim.config.SetupConfigRNG(context, seed_offset=1)
    return context


def _draws_before(base: dict) -> int | None:
    """How many values the current object's rng gave before ``gal`` (``None``: not found)."""
    if "random_seed" not in base.get("image", {}):
        return 0  # GalSim draws an unrepeatable seed: only values without the rng batch then
    current = base["rng"].duplicate()
    target = (current.raw(), current.raw())
    fresh = _fresh_context(base, base["obj_num"])["rng"]
    values = [fresh.raw(), fresh.raw()]
    for draws in range(MAX_DRAWS_BEFORE + 1):
        if (values[draws], values[draws + 1]) == target:
            return draws
        values.append(fresh.raw())
    return None


class _NotReplayable(Exception):
    """The inputs of a block's objects cannot be evaluated outside their own stamps."""


def _block_inputs(param, names, request, ignore, base, obj_nums, draws_before, latent_dim):
    """Conditions and base noise of each object of a block, as GalSim evaluates them for it."""
    conditions = np.empty((len(obj_nums), len(names)), dtype=np.float64)
    noise = np.empty((len(obj_nums), latent_dim), dtype=np.float32)
    for row, obj_num in enumerate(obj_nums):
        context = _fresh_context(base, obj_num)
        if draws_before:
            context["rng"].discard(draws_before)
        try:
            kwargs, _ = galsim.config.GetAllParams(_detached_copy(param), context, req=request,
                                                   opt=_OBJECT_OPTIONS, ignore=ignore)
        except Exception as error:  # e.g. a value of the stamp position
            raise _NotReplayable(f"object {obj_num}: {error}") from error
        conditions[row] = [kwargs[name] for name in names]
        noise[row] = draw_base_noise(1, latent_dim, _noise_rng(_object_seed(context)))[0]
    return conditions, noise


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
    image_start, image_nobj = _image_object_range(base)
    image_end = image_start + image_nobj
    if size == 1 or draws_before is None or not image_start <= obj_num < image_end:
        return None, obj_num
    first = image_start + (obj_num - image_start) // size * size

    def key_and_inputs(first: int):
        obj_nums = list(range(first, min(first + size, image_end)))
        key = (_field_digest(param), base.get("file_num", 0), base.get("image_num", 0), first, len(obj_nums), policy,
               draws_before)

        def inputs():
            names = condition_names(metadata)
            conditions, noise = _block_inputs(param, names, request, ignore, base, obj_nums, draws_before,
                                              int(metadata["latent_dim"]))
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
            except _NotReplayable:
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
    noise = draw_base_noise(1, int(metadata["latent_dim"]), _noise_rng(_object_seed(base)))
    labels = dict(labels=[obj_num], what="objects", prefix=f"{OBJECT_TYPE}: ")
    if "bands" in metadata:
        plan = multiband_plan(own_values[None, :], metadata, policy, **labels)
        return apply_band_fluxes(model.sample_arrays(plan.inputs, noise), plan.band_fluxes)[0]
    plan = SamplingPlan(own_values[None, :], metadata, policy, **labels)
    return plan.images(model.sample_arrays, noise)[0]


def _report_fallback(base: dict, param: dict, names, own, block, logger) -> None:
    """Say, once per gal field and process, that objects are decoded one at a time."""
    reported = base.setdefault(_REPORTED_KEY, set())
    level = "debug" if _field_digest(param) in reported else "warning"
    reported.add(_field_digest(param))
    if block is None:
        why = "cannot be evaluated outside the object's own stamp (e.g. it uses the stamp position)"
    else:
        changed = [name for name, a, b in zip(names, own, block) if a != b]
        why = (f"of {', '.join(changed)} differs from what the block evaluated for it (it depends "
               f"on more than the object number and its own rng, e.g. on the stamp position)")
    getattr(logger, level)(
        "obj %d: %s: the condition value %s; objects of this kind are decoded one per model call, which "
        "is slower (catalog columns, Random values and expressions of obj_num are batched)",
        base["obj_num"], OBJECT_TYPE, why)


def _check_keys(param: dict, names: list[str], ignore: list[str], file_name: str) -> None:
    allowed = set(names) | set(_OBJECT_OPTIONS) | set(ignore) | set(galsim.config.value.standard_ignore)
    allowed |= {"type", "flux"}
    unknown = [key for key in param if key not in allowed and not key.startswith("_")]
    if unknown:
        raise galsim.GalSimConfigError(
            f"{OBJECT_TYPE}: unknown parameter(s) {', '.join(unknown)}; the model {file_name} takes the "
            f"conditions {', '.join(names)} (and the options {', '.join(_OBJECT_OPTIONS)}, flux, "
            f"shear, rotate, ... as for any GSObject)"
        )
    missing = [name for name in names if name not in param]
    if missing:
        raise galsim.GalSimConfigError(
            f"{OBJECT_TYPE}: the model {file_name} is conditioned on {', '.join(names)}, but the config "
            f"gives no value for {', '.join(missing)}"
        )


def _achromatic_bandpass(base: dict) -> galsim.Bandpass | None:
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
    draws_before = _draws_before(base)  # before this build draws anything itself
    model = galsim.config.GetInputObj(INPUT_TYPE, config, base, OBJECT_TYPE)
    metadata = model.getMetadata()
    names = condition_names(metadata)
    _check_keys(config, names, ignore, model.getFileName())
    request = {name: float for name in names}
    ignore = list(ignore) + ["flux"]
    kwargs, _ = galsim.config.GetAllParams(config, base, req=request, opt=_OBJECT_OPTIONS, ignore=ignore)
    if "flux" in config:
        _check_flux(config, base)
    policy = _policy(config, base)
    for name in names:
        _check_catalog_rows(config, name, base, base["obj_num"])
    own = np.array([kwargs[name] for name in names], dtype=np.float64)
    image_options = (kwargs.get("x_interpolant"), kwargs.get("pad_factor", 4.0),
                     tuple(sorted(gsparams.items())) if gsparams else ())
    block, first = _block(model, config, base, metadata, request, ignore, image_options, draws_before, policy)
    maxk = 0.0  # GalSim finds it
    if block is not None and np.array_equal(block.conditions[base["obj_num"] - first], own):
        image = block.images[base["obj_num"] - first]
        if block.image_options == image_options:
            maxk = float(block.maxk[base["obj_num"] - first])
    else:
        if model.getBatchSize() > 1:
            _report_fallback(base, config, names, own,
                             None if block is None else block.conditions[base["obj_num"] - first], logger)
        image = _own_image(model, base, metadata, own, policy)
    if "bands" in metadata:
        return chromatic_galaxy(np.array(image), metadata, kwargs.get("x_interpolant"), kwargs.get("k_interpolant"),
                                kwargs.get("pad_factor", 4.0), galsim.GSParams(**gsparams) if gsparams else None,
                                _achromatic_bandpass(base)), False
    galaxy = galsim.InterpolatedImage(
        galsim.Image(np.array(image), scale=float(metadata["pixel_scale"])),
        x_interpolant=kwargs.get("x_interpolant"),
        k_interpolant=kwargs.get("k_interpolant"),
        pad_factor=kwargs.get("pad_factor", 4.0),
        gsparams=galsim.GSParams(**gsparams) if gsparams else None,
        _force_maxk=maxk,
    )
    return galaxy, False


galsim.config.RegisterInputType(INPUT_TYPE, GenerativeModelLoader())
galsim.config.RegisterObjectType(OBJECT_TYPE, BuildGenerativeGalaxy, input_type=INPUT_TYPE)
galsim.config.RegisterObjectType(UPSTREAM_OBJECT_TYPE, BuildGenerativeGalaxy, input_type=INPUT_TYPE)
