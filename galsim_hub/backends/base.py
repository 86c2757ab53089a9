"""What every runtime backend shares: the model's description and the checks of its output.

A backend (:mod:`~galsim_hub.backends.tensorflow`, :mod:`~galsim_hub.backends.keras_runtime`)
loads a model directory and subclasses `ModelRunner`: it sets ``directory`` and ``metadata``,
calls :meth:`ModelRunner._describe`, and returns its raw ``[N, S, S, B]`` stamps through
:meth:`ModelRunner._checked_images`, which checks them and applies the model's stamp window.
"""

from __future__ import annotations

import abc
import functools
import warnings
from pathlib import Path

import numpy as np

from galsim_hub.errors import MetadataError, ModelOutputWarning
from galsim_hub.metadata import KERAS_FORMAT_VERSION, MODEL_METADATA_FILE, band_names, condition_names, read_metadata
from galsim_hub.profiles.bands import band_set_of
from galsim_hub.sampling.catalog import float32_conditions

__all__ = ["ModelRunner", "stamp_window", "missing_directory_error", "load_or_explain", "keras_model_metadata"]


@functools.lru_cache(maxsize=8)
def stamp_window(stamp_size: int, inner: float) -> np.ndarray:
    """A circular window over a stamp: 1 out to ``inner`` times its half-width, then a cosine
    fall to 0 at the half-width, 0 in the corners.

    A model whose metadata has ``stamp_window: {"inner": f}`` multiplies its stamps by it:
    a galaxy larger than the stamp's field of view then fades out instead of ending on the
    stamp's square edge (which shows as a square, or an octagon once rotated, in a field).
    """
    centre = (stamp_size - 1) / 2.0
    y, x = np.mgrid[:stamp_size, :stamp_size]
    radius = np.hypot(x - centre, y - centre) / (stamp_size / 2.0)
    ramp = np.clip((radius - inner) / (1.0 - inner), 0.0, 1.0)
    window = 0.5 + 0.5 * np.cos(np.pi * ramp)
    window.setflags(write=False)
    return window


def missing_directory_error(directory: Path) -> MetadataError:
    """The error for a model directory that is gone (e.g. its cache entry was cleared)."""
    return MetadataError(
        f"the model directory {directory} does not exist (any more): was the cache cleared "
        "(`galsim-hub cache clear`) while the model was in use? Load the model again to fetch it anew"
    )


def keras_model_metadata(directory: Path, backend: str) -> dict:
    """The metadata of the format-3 model in ``directory``, for a backend that reads only its
    Keras-native file; a missing folder, a TF1 Hub module or a format-1/2 model is refused with
    the way out."""
    if not directory.is_dir():
        raise missing_directory_error(directory)
    if not (directory / MODEL_METADATA_FILE).is_file():
        raise MetadataError(
            f"{directory} is not a galsim-hub model of format {KERAS_FORMAT_VERSION}: the {backend} backend "
            "reads the Keras-native file of format-3 models (a TF1 Hub module needs backend='tensorflow')"
        )
    metadata = read_metadata(directory)
    if metadata["format"] < KERAS_FORMAT_VERSION:
        raise MetadataError(
            f"{directory} is a format-{metadata['format']} model (a TensorFlow SavedModel only); the "
            f"{backend} backend reads format {KERAS_FORMAT_VERSION} (SavedModel + model.keras): use "
            "backend='tensorflow', or convert it with `galsim-hub upgrade MODEL_DIR NEW_DIR`"
        )
    return metadata


def load_or_explain(load, directory: Path):
    """Run ``load()``; a failure becomes a `MetadataError` naming the model folder (and the
    cache entry to clear when the folder is one)."""
    try:
        return load()
    except Exception as exc:  # TensorFlow and Keras raise many types for unreadable files
        from galsim_hub.hub.settings import cache_root

        hint = ""
        try:
            entry = directory.resolve().relative_to(cache_root().resolve()).parts[0]
            hint = f"; it is the cache entry {entry}: remove it with `galsim-hub cache clear {entry}` and fetch again"
        except (ValueError, IndexError, OSError):
            pass
        raise MetadataError(
            f"the model in {directory} cannot be loaded ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else exc!r}){hint}"
        ) from exc


class ModelRunner(abc.ABC):
    """The part of a loaded model that does not depend on its backend."""

    directory: Path
    metadata: dict
    #: Where the model runs, in the backend's words (e.g. ``"/CPU:0"``, ``"cpu"``).
    device: str
    #: ``"galsim-hub-N"`` (format N) or ``"tf1-hub"``.
    format: str

    def _describe(self) -> None:
        """Set the attributes every backend exposes from :attr:`metadata`."""
        self.conditions = condition_names(self.metadata)
        self.latent_dim = int(self.metadata["latent_dim"])
        self.stamp_size = int(self.metadata["stamp_size"])
        #: Band names of a multi-band model (``None``: a single-band model, one band).
        self.bands = band_names(self.metadata)
        #: ``B``, the last axis of every batch of stamps (1 for a single-band model).
        self.n_bands = 1 if self.bands is None else len(self.bands)
        #: Its bandpasses and chromatic SEDs (built here so that bad bands fail at load).
        self.band_set = band_set_of(self.metadata, source=str(self.directory))

    def _check_networks(self, path: Path, n_conditions: int, latent_dim: int, stamp_size: int, n_bands: int) -> None:
        """Refuse networks (in ``path``) whose inputs or stamps disagree with :attr:`metadata`."""
        if n_conditions != len(self.conditions) or latent_dim != self.latent_dim:
            raise MetadataError(
                f"{path}: the networks take {n_conditions} conditions and {latent_dim} "
                f"latents, the metadata says {len(self.conditions)} and {self.latent_dim}"
            )
        if stamp_size != self.stamp_size or n_bands != self.n_bands:
            raise MetadataError(
                f"{path}: the decoder draws {n_bands}-band {stamp_size}-pixel stamps, "
                f"the metadata says {self.n_bands} band(s) of {self.stamp_size} pixels"
            )

    def _float32_conditions(self, conditions: np.ndarray) -> np.ndarray:
        return float32_conditions(conditions, self.conditions)

    def _checked_images(self, images: np.ndarray, count: int) -> np.ndarray:
        size = self.stamp_size
        shape = (count, size, size, self.n_bands)
        if images.size != np.prod(shape) or (self.bands is not None and images.shape != shape):
            raise MetadataError(
                f"{self.directory}: the model returned an array of shape {images.shape} for {count} galaxies; "
                f"expected {count} stamps of {size}x{size} pixels (stamp_size in its metadata)"
                + ("" if self.bands is None else f" in {len(self.bands)} bands, {list(shape)}")
            )
        images = images.reshape(shape)
        bad = ~np.isfinite(images).reshape(count, -1).all(axis=1)
        if bad.any():
            raise MetadataError(
                f"{self.directory}: the model returned NaN or infinite pixels for galaxy(ies) "
                f"{', '.join(map(str, np.flatnonzero(bad)[:10]))} of this batch"
            )
        if (images < 0).any():
            warnings.warn(
                f"the model {self.directory.name} returned negative pixels; they are passed on unchanged",
                ModelOutputWarning,
                stacklevel=3,
            )
        return self._windowed(images)

    def _windowed(self, images: np.ndarray) -> np.ndarray:
        """``images`` times the model's :func:`stamp_window`, when its metadata has one."""
        window = self.metadata.get("stamp_window")
        if not window:
            return images
        taper = stamp_window(self.stamp_size, float(window["inner"])).astype(np.float32)
        return images * taper[:, :, None]

    @abc.abstractmethod
    def sample_images(self, conditions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """``[N, C]`` raw conditions and ``[N, L]`` base noise -> checked ``[N, S, S, B]`` stamps."""

    @abc.abstractmethod
    def decode(self, z: np.ndarray) -> np.ndarray:
        """Latent vectors ``[N, L]`` -> ``[N, S, S, B]`` stamps."""

    @abc.abstractmethod
    def encode(self, image: np.ndarray, psf: np.ndarray) -> np.ndarray:
        """Observed stamps and PSFs -> posterior-mean latents ``[N, L]``."""
