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
      flux_radius: {type: Catalog, col: flux_radius}

Reproducibility. The galaxies of an image are decoded in blocks of ``batch_size``
consecutive objects, aligned on the first object of the image; the last block is padded to
the full shape. For every object of a block, its conditions are evaluated with its own
``obj_num`` and its base noise is drawn from a generator seeded from its own object seed
(GalSim's per-object seed, hashed so that the stream differs from the object rng). A process
that draws one object of a block decodes the whole block, with exactly the same inputs as
any other process, so ``nproc: 1``, ``nproc: 4`` and ``galsim -n N -j J`` give identical
pixels. Conditions must therefore follow from the object number (catalog columns,
sequences, constants, expressions of ``obj_num``); conditions that depend on what happened
earlier in the object's build (random values, the stamp position) are detected, with a
warning, and that ``gal`` field is then sampled one object per model call in each object's own
context, as with ``batch_size: 1`` (still reproducible, only slower).

Fork safety. Building the input object resolves the handle and downloads the archive, but
loads no TensorFlow; the model is loaded on the first sampling. With ``nproc > 1`` GalSim
keeps the input object in its input-manager process (a proxy), which is forked before any
TensorFlow is imported: that one process decodes every block once and the drawing workers
receive the stamps.

Multi-band models. With a model that has ``bands`` (format 2) the object is the galaxy's
chromatic object (:func:`galsim_hub.bands.chromatic_galaxy`), which GalSim draws through the
``bandpass`` of the image field; drawn through one of the model's bands it is that band's
image, so a run per band gives every band with the same morphology.
"""
from __future__ import annotations

import collections
import threading
import warnings
from pathlib import Path

import galsim
import galsim.config
import numpy as np

from .bands import chromatic_galaxy, multiband_plan
from .cache import fetch
from .flux import DEFAULT_OUT_OF_RANGE, SamplingPlan, check_policy
from .handle import resolve
from .metadata import METADATA_FILE, condition_names, read_metadata, validate_metadata
from .model import draw_base_noise

__all__ = ["GenerativeModelInput", "GenerativeModelLoader", "BuildGenerativeGalaxy"]

INPUT_TYPE = "generative_model"
OBJECT_TYPE = "GenerativeGalaxy"
UPSTREAM_OBJECT_TYPE = "GenerativeModelGalaxy"
DEFAULT_BLOCK_SIZE = 64
BLOCKS_KEPT = 8  # decoded blocks kept per process
_NOISE_STREAM_TAG = 0x6E6F6973  # separates the galaxy noise stream from the object rng
_OBJECT_OPTIONS = {
    "x_interpolant": str,
    "k_interpolant": str,
    "pad_factor": float,
    "num": int,
    "out_of_range": str,
}
_BLOCK_CACHE_KEY = "_galsim_hub_blocks"
_UNBATCHED_KEY = "_galsim_hub_unbatched"  # gal fields whose values depend on more than obj_num


class GenerativeModelInput:
    """The ``generative_model`` input object: a model handle, loaded lazily.

    Parameters
    ----------
    file_name : str
        Model handle: ``hub:NAME[@VERSION]``, an ``http(s)://`` URL, a ``.tar.gz`` archive or
        a model directory.
    device : str, optional
        TensorFlow device, e.g. ``"/CPU:0"``; default: the first GPU, else the CPU.
    batch_size : int
        Number of consecutive objects decoded per model call (default 64). ``1`` samples each
        object on its own, in its own config context.

    Notes
    -----
    Construction resolves the handle, fetches the archive into the cache and reads the
    metadata, without TensorFlow; the model itself is loaded on the first call of
    `sample_block`, in the process that samples. Methods rather than properties make the
    object usable through GalSim's multiprocessing proxies.
    """

    _req_params = {"file_name": str}
    _opt_params = {"device": str, "batch_size": int}

    def __init__(self, file_name: str, device: str | None = None, batch_size: int = DEFAULT_BLOCK_SIZE):
        if int(batch_size) < 1:
            raise galsim.GalSimConfigValueError(
                "generative_model.batch_size must be a positive integer", batch_size
            )
        self._file_name = str(file_name)
        self._device = device
        self._batch_size = int(batch_size)
        self._source = resolve(self._file_name)
        self._directory = Path(fetch(self._source, progress=None))
        self._entry_metadata = (self._source.entry or {}).get("metadata")
        self._metadata = self._read_metadata()
        self._model = None
        self._lock = threading.Lock()

    def _read_metadata(self) -> dict | None:
        if (self._directory / METADATA_FILE).is_file():
            return read_metadata(self._directory)
        if self._entry_metadata and {"latent_dim", "stamp_size", "conditions"} <= set(self._entry_metadata):
            metadata = dict(self._entry_metadata, format=1)
            metadata.setdefault("name", self._source.entry["name"])
            metadata.setdefault("version", self._source.entry["version"])
            return validate_metadata(metadata, source=self._file_name)
        return None  # only the module itself knows (a bare TF1 Hub directory): load it

    def _loaded(self):
        with self._lock:
            if self._model is None:
                from .module import LoadedModel

                self._model = LoadedModel(self._directory, metadata=self._entry_metadata, device=self._device)
                self._metadata = self._model.metadata
            return self._model

    def getMetadata(self) -> dict:
        """The model's metadata (loads the model only when the files do not hold it)."""
        if self._metadata is None:
            self._loaded()
        return dict(self._metadata)

    def getFileName(self) -> str:
        """The handle the input was built from."""
        return self._file_name

    def getBatchSize(self) -> int:
        """Number of objects decoded per model call."""
        return self._batch_size

    def sample_block(self, conditions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Decode one block: ``[B, C]`` conditions and ``[B, L]`` base noise to ``[B, S, S]`` images."""
        model = self._loaded()
        with self._lock:
            return np.asarray(model.sample_images(conditions, noise), dtype=np.float32)


class GenerativeModelLoader(galsim.config.InputLoader):
    """Loader of the ``generative_model`` input; with ``nproc > 1`` the object sits behind a proxy."""

    def __init__(self):
        super().__init__(GenerativeModelInput, use_proxy=True)


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


def _noise_rng(object_seed: int) -> galsim.BaseDeviate:
    """Generator of one galaxy's base noise, derived from its object seed."""
    state = np.random.SeedSequence([int(object_seed) & 0xFFFFFFFFFFFFFFFF, _NOISE_STREAM_TAG]).generate_state(1)
    return galsim.BaseDeviate(int(state[0]) or 1)


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


def _object_inputs(param: dict, base: dict, names: list[str], obj_num: int, latent_dim: int):
    """Conditions and base noise of object ``obj_num``, evaluated in its own context."""
    context = dict(base)
    context["obj_num"] = obj_num
    context["index_key"] = "obj_num"
    galsim.config.SetupConfigRNG(context, seed_offset=1)
    seed = context.get("seed", 0)
    if not seed:  # no image.random_seed: GalSim itself is not reproducible then
        seed = galsim.UniformDeviate(base["rng"]).raw()
    fields = _detached_copy(param)
    values = []
    for name in names:
        _check_catalog_rows(fields, name, context, obj_num)
        values.append(galsim.config.ParseValue(fields, name, context, float)[0])
    noise = draw_base_noise(1, latent_dim, _noise_rng(seed))[0]
    return np.asarray(values, dtype=np.float64), noise


def _check_conditions(values: np.ndarray, names: list[str], obj_nums) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise galsim.GalSimConfigError(
            f"{OBJECT_TYPE}: condition '{names[column]}' of object {obj_nums[row]} is "
            f"{values[row, column]} (NaN or infinite)"
        )


def _decode(model, metadata: dict, obj_nums: list[int], conditions: np.ndarray, noise: np.ndarray,
            out_of_range: str = DEFAULT_OUT_OF_RANGE):
    """Check the inputs of a block, apply the out-of-range policy (galsim_hub.flux) and decode it."""
    _check_conditions(conditions, condition_names(metadata), obj_nums)
    if "bands" in metadata:
        plan = multiband_plan(conditions, metadata, out_of_range, labels=obj_nums, what="objects",
                              prefix=f"{OBJECT_TYPE}: ")
        return _decode_padded(model, plan.inputs, noise)
    plan = SamplingPlan(conditions, metadata, out_of_range, labels=obj_nums, what="objects", prefix=f"{OBJECT_TYPE}: ")
    return plan.images(lambda c, e: _decode_padded(model, c, e), noise)


def _decode_padded(model, conditions: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Decode up to a block of objects, padded to the full block shape."""
    n = len(conditions)
    padding = model.getBatchSize() - n
    if padding > 0:  # a fixed block shape keeps the float32 round-off identical everywhere
        conditions = np.concatenate([conditions, np.repeat(conditions[:1], padding, axis=0)])
        noise = np.concatenate([noise, np.zeros((padding, noise.shape[1]), np.float32)])
    return model.sample_block(conditions, noise)[:n]


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


def _block_image(model, param: dict, base: dict, metadata: dict, num: int, own_values: np.ndarray):
    """The image of the current object, from its decoded block (cached per process).

    Returns the image and the conditions the block used for this object.
    """
    obj_num = base["obj_num"]
    names = condition_names(metadata)
    latent_dim = int(metadata["latent_dim"])
    size = model.getBatchSize()
    image_start, image_nobj = _image_object_range(base)
    if size == 1 or not image_start <= obj_num < image_start + image_nobj:
        return _own_image(model, param, base, metadata, own_values), own_values
    first = image_start + (obj_num - image_start) // size * size
    cache = base.setdefault(_BLOCK_CACHE_KEY, collections.OrderedDict())
    key = (id(param), num, base.get("file_num", 0), base.get("image_num", 0), first)
    if key not in cache:
        obj_nums = list(range(first, min(first + size, image_start + image_nobj)))
        inputs = [_object_inputs(param, base, names, j, latent_dim) for j in obj_nums]
        conditions = np.stack([values for values, _ in inputs])
        noise = np.stack([eps for _, eps in inputs])
        cache[key] = _decode(model, metadata, obj_nums, conditions, noise, _policy(param, base)), conditions
        while len(cache) > BLOCKS_KEPT:
            cache.popitem(last=False)
    images, conditions = cache[key]
    return images[obj_num - first], conditions[obj_num - first]


def _own_image(model, param: dict, base: dict, metadata: dict, own_values: np.ndarray) -> np.ndarray:
    """The image of the current object sampled alone, in its own context (any value works)."""
    obj_num = base["obj_num"]
    for name in condition_names(metadata):
        _check_catalog_rows(param, name, base, obj_num)
    seed = base.get("seed") or galsim.UniformDeviate(base["rng"]).raw()
    noise = draw_base_noise(1, int(metadata["latent_dim"]), _noise_rng(seed))
    return _decode(model, metadata, [obj_num], own_values[None, :], noise, _policy(param, base))[0]


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


def BuildGenerativeGalaxy(config: dict, base: dict, ignore: list, gsparams: dict, logger):
    """Build function of the ``GenerativeGalaxy`` object type (see the module docstring).

    Returns
    -------
    (galsim.InterpolatedImage or galsim.ChromaticObject, bool)
        The galaxy, in the model's flux units (chromatic for a multi-band model), and
        ``safe=False`` (every object differs).
    """
    model = galsim.config.GetInputObj(INPUT_TYPE, config, base, OBJECT_TYPE)
    num = galsim.config.ParseValue(config, "num", base, int)[0] if "num" in config else 0
    metadata = model.getMetadata()
    names = condition_names(metadata)
    _check_keys(config, names, ignore, model.getFileName())
    request = {name: float for name in names}
    kwargs, _ = galsim.config.GetAllParams(
        config, base, req=request, opt=_OBJECT_OPTIONS, ignore=list(ignore) + ["flux"]
    )
    own_values = np.array([kwargs[name] for name in names], dtype=np.float64)
    if "flux" in config:
        _check_flux(config, base)
    unbatched = base.setdefault(_UNBATCHED_KEY, set())
    if (id(config), num) in unbatched:
        image = _own_image(model, config, base, metadata, own_values)
    else:
        image, block_values = _block_image(model, config, base, metadata, num, own_values)
        if not np.array_equal(own_values, block_values):
            # A value that depends on more than obj_num (upstream YAML often uses Random
            # conditions): sample this gal field one object per model call from now on.
            unbatched.add((id(config), num))
            changed = [n for n, a, b in zip(names, own_values, block_values) if a != b]
            message = (
                f"{OBJECT_TYPE}: the value of {', '.join(changed)} depends on more than the object "
                f"number (e.g. a Random value or the stamp position); sampling one object per model "
                f"call, which is slower. Catalog columns, sequences or expressions of obj_num keep "
                f"the batching (or set input.generative_model.batch_size: 1 to silence this)"
            )
            warnings.warn(message, stacklevel=2)
            image = _own_image(model, config, base, metadata, own_values)
    if "bands" in metadata:
        return chromatic_galaxy(np.array(image), metadata, kwargs.get("x_interpolant"), kwargs.get("k_interpolant"),
                                kwargs.get("pad_factor", 4.0), galsim.GSParams(**gsparams) if gsparams else None), False
    galaxy = galsim.InterpolatedImage(
        galsim.Image(np.array(image), scale=float(metadata["pixel_scale"])),
        x_interpolant=kwargs.get("x_interpolant"),
        k_interpolant=kwargs.get("k_interpolant"),
        pad_factor=kwargs.get("pad_factor", 4.0),
        gsparams=galsim.GSParams(**gsparams) if gsparams else None,
    )
    return galaxy, False


galsim.config.RegisterInputType(INPUT_TYPE, GenerativeModelLoader())
galsim.config.RegisterObjectType(OBJECT_TYPE, BuildGenerativeGalaxy, input_type=INPUT_TYPE)
galsim.config.RegisterObjectType(UPSTREAM_OBJECT_TYPE, BuildGenerativeGalaxy, input_type=INPUT_TYPE)
