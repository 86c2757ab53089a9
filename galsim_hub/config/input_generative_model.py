"""The ``generative_model`` config input: a model that decodes blocks of objects once.

See :mod:`galsim_hub.config` for the batching and the processes.
"""

from __future__ import annotations

import collections
import threading
from typing import NamedTuple

import galsim
import galsim.config
import numpy as np

from galsim_hub.constants import DEFAULT_BLOCK_SIZE
from galsim_hub.model import GenerativeGalaxyModel
from galsim_hub.profiles.wrap import ProfileOptions, band_maxk
from galsim_hub.sampling.plan import DEFAULT_OUT_OF_RANGE, SamplingPlan

__all__ = ["Block", "GenerativeModelInput", "GenerativeModelLoader", "profile_options"]

INPUT_TYPE = "generative_model"
OBJECT_TYPE = "GenerativeGalaxy"
BLOCKS_KEPT = 8  # decoded blocks kept per process (and by the decoding process)


def profile_options(image_options: tuple, k_interpolant: object = None) -> ProfileOptions:
    """The :class:`~galsim_hub.profiles.wrap.ProfileOptions` of a block's ``image_options``
    ``(x_interpolant, pad_factor, gsparams items)``."""
    x_interpolant, pad_factor, gsparams = image_options
    return ProfileOptions(
        x_interpolant, k_interpolant, pad_factor, galsim.GSParams(**dict(gsparams)) if gsparams else None
    )


class Block(NamedTuple):
    """A decoded block: images and the inputs they were decoded from."""

    images: np.ndarray  # [n, S, S, B] float32 (B bands)
    conditions: np.ndarray  # [n, C] float64, the values each object's replay gave
    image_options: tuple  # (x_interpolant, pad_factor, gsparams items) maxk was found for
    maxk: np.ndarray  # [n, B]


class GenerativeModelInput(GenerativeGalaxyModel):
    """The ``generative_model`` input object: a :class:`GenerativeGalaxyModel` that decodes blocks.

    Parameters
    ----------
    file_name : str
        Model handle: ``hub:NAME[@VERSION]``, an ``http(s)://`` URL, a ``.tar.gz`` archive or
        a model directory.
    device : str, optional
        Device in the backend's words (TensorFlow ``"/CPU:0"``, JAX ``"cpu"``, PyTorch
        ``"cuda:0"``, NumPy ``"cpu"``); default: the first GPU, else the CPU.
    batch_size : int
        Number of consecutive objects decoded per model call (default 64). ``1`` samples each
        object on its own.
    backend : {"tensorflow", "jax", "torch", "numpy"}, optional
        Where the networks run (default ``$GALSIM_HUB_BACKEND``, else TensorFlow); see
        :class:`~galsim_hub.GenerativeGalaxyModel`.

    Notes
    -----
    Construction resolves the handle, fetches the archive into the cache and reads the
    metadata, without TensorFlow; the model is loaded on the first decoding, in the process
    that decodes. Methods rather than properties make the object usable through GalSim's
    multiprocessing proxies; the object is thread-safe, as the proxy server needs.
    """

    _req_params = {"file_name": str}
    _opt_params = {"device": str, "batch_size": int, "backend": str}
    _single_params: list = []
    _takes_rng = False
    _load_on_init = False

    def __init__(
        self,
        file_name: str,
        device: str | None = None,
        batch_size: int = DEFAULT_BLOCK_SIZE,
        backend: str | None = None,
    ):
        if int(batch_size) < 1:
            raise galsim.GalSimConfigValueError("generative_model.batch_size must be a positive integer", batch_size)
        try:
            super().__init__(file_name, device=device, batch_size=batch_size, backend=backend)
        except ValueError as exc:
            raise galsim.GalSimConfigValueError(f"generative_model.{exc}", backend) from None
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

    def decodeBlock(
        self,
        key: tuple,
        conditions: np.ndarray,
        noise: np.ndarray,
        image_options: tuple,
        out_of_range: str = DEFAULT_OUT_OF_RANGE,
        claimed: bool = False,
    ) -> Block:
        """Decode a block once: ``[B, C]`` conditions and ``[B, L]`` base noise, under ``key``.

        Conditions outside the training range are treated by the ``out_of_range`` policy
        (:mod:`galsim_hub.sampling.plan`); the block keeps the conditions as the objects gave them.

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
            plan = SamplingPlan(
                np.asarray(conditions, dtype=np.float64),
                self.metadata,
                out_of_range,
                labels=list(range(first, first + count)),
                what="objects",
                prefix=f"{OBJECT_TYPE}: ",
            )
            images = plan.images(self._loaded().sample_images, noise)
            maxk = band_maxk(images, self.pixel_scale, profile_options(image_options))
            block = Block(images, np.asarray(conditions, dtype=np.float64), image_options, maxk)
            with self._blocks_lock:
                self._blocks[key] = block
                while len(self._blocks) > BLOCKS_KEPT:
                    self._blocks.popitem(last=False)
        finally:
            self.dropClaim(key)  # wakes the waiters
        return block

    def prefetchBlock(
        self,
        key: tuple,
        conditions: np.ndarray,
        noise: np.ndarray,
        image_options: tuple,
        out_of_range: str = DEFAULT_OUT_OF_RANGE,
    ) -> None:
        """Decode a claimed block in a thread and return at once.

        TensorFlow releases the GIL, so this decoding overlaps the drawing of the current
        block (in this process at ``nproc: 1``, in the workers otherwise). A failure is left
        to the call that needs the block: it finds no block, decodes it again and raises. The
        process waits for a decoding in flight before it exits.
        """

        def decode() -> None:
            try:
                self.decodeBlock(key, conditions, noise, image_options, out_of_range, claimed=True)
            except Exception:
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
            logger.info(
                "file %d: generative model %s %s (%s), batch_size %d",
                base.get("file_num", 0),
                metadata["name"],
                metadata["version"],
                input_obj.getFileName(),
                input_obj.getBatchSize(),
            )


galsim.config.RegisterInputType(INPUT_TYPE, GenerativeModelLoader())
