"""``GenerativeGalaxyModel``: sample galaxy light profiles as GalSim objects."""
from __future__ import annotations

import os
from typing import Any, Iterator

import galsim
import numpy as np

from .cache import fetch
from .catalog import condition_matrix
from .handle import resolve
from .module import LoadedModel

DEFAULT_BATCH_SIZE = 256


def draw_base_noise(n_galaxies: int, latent_dim: int, rng: galsim.BaseDeviate) -> np.ndarray:
    """Draw the flow's standard-normal base noise from a GalSim random number generator.

    Galaxy ``i`` gets draws ``i*L`` to ``(i+1)*L - 1`` of the rng's Gaussian stream, as
    upstream galsim-hub did, so the result does not depend on how galaxies are batched.

    Parameters
    ----------
    n_galaxies, latent_dim : int
        Shape of the noise, ``[n_galaxies, latent_dim]``.
    rng : galsim.BaseDeviate
        The generator; its state advances by ``n_galaxies * latent_dim`` Gaussian draws.

    Returns
    -------
    numpy.ndarray
        float32 array ``[n_galaxies, latent_dim]``.
    """
    noise = np.empty(n_galaxies * latent_dim, dtype=np.float64)
    galsim.GaussianDeviate(rng, sigma=1.0).generate(noise)
    return noise.reshape(n_galaxies, latent_dim).astype(np.float32)


class GenerativeGalaxyModel:
    """A deep generative model of galaxy light profiles, conditioned on catalog columns.

    Parameters
    ----------
    file_name : str or os.PathLike
        The model handle: ``hub:NAME`` or ``hub:NAME@VERSION`` (looked up in the bundled
        index and in the indexes of ``GALSIM_HUB_INDEX``), an ``http(s)://`` URL of a
        ``.tar.gz`` archive, a local ``.tar.gz`` archive, or a model directory.
    device : str, optional
        TensorFlow device, e.g. ``"/GPU:0"`` or ``"/CPU:0"``; default: the first GPU
        TensorFlow sees, else the CPU.
    batch_size : int
        Number of galaxies decoded per model call.
    progress : bool, optional
        Show a download progress bar; by default only on an interactive terminal.

    Examples
    --------
    >>> from astropy.table import Table
    >>> model = GenerativeGalaxyModel("hub:default")                           # doctest: +SKIP
    >>> cat = Table({"mag_auto": [23.0], "flux_radius": [8.0], "zphot": [0.7]})  # doctest: +SKIP
    >>> galaxy = model.sample(cat, seed=1)[0].shear(g1=0.02, g2=0.0)            # doctest: +SKIP
    """

    def __init__(
        self,
        file_name: str | os.PathLike,
        device: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.file_name = str(file_name)
        self.batch_size = int(batch_size)
        self.source = resolve(file_name)
        directory = fetch(self.source, progress=progress)
        entry_metadata = (self.source.entry or {}).get("metadata")
        self._model = LoadedModel(directory, metadata=entry_metadata, device=device)

    def __repr__(self) -> str:
        return f"GenerativeGalaxyModel({self.file_name!r})"

    @property
    def quantities(self) -> list[str]:
        """The catalog columns the model is conditioned on, in input order."""
        return list(self._model.conditions)

    @property
    def stamp_size(self) -> int:
        """Size in pixels of the (square) stamps the model outputs."""
        return self._model.stamp_size

    @property
    def pixel_scale(self) -> float:
        """Pixel scale of the output stamps in arcsec."""
        return float(self._model.metadata["pixel_scale"])

    @property
    def latent_dim(self) -> int:
        """Dimension of the base noise drawn per galaxy."""
        return self._model.latent_dim

    @property
    def metadata(self) -> dict:
        """The model's metadata (a copy of ``galsim_hub.json``)."""
        return dict(self._model.metadata)

    @property
    def device(self) -> str:
        """The TensorFlow device the model runs on."""
        return self._model.device

    def conditions(self, cat: Any) -> np.ndarray:
        """Check a catalog and return its ``[N, C]`` condition matrix (see :attr:`quantities`)."""
        return condition_matrix(cat, self._model.metadata["conditions"])

    def sample_arrays(self, conditions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Decode galaxies in batches of :attr:`batch_size`.

        Parameters
        ----------
        conditions : numpy.ndarray
            ``[N, C]`` condition matrix (see :meth:`conditions`).
        noise : numpy.ndarray
            ``[N, L]`` base noise (see :func:`draw_base_noise`).

        Returns
        -------
        numpy.ndarray
            ``[N, S, S]`` float32 images in the model's flux units.
        """
        return np.concatenate(list(self._batches(conditions, noise)), axis=0)

    def _batches(self, conditions: np.ndarray, noise: np.ndarray) -> Iterator[np.ndarray]:
        for start in range(0, len(conditions), self.batch_size):
            stop = start + self.batch_size
            yield self._model.sample_images(conditions[start:stop], noise[start:stop])

    def _prepare(self, cat: Any, rng: galsim.BaseDeviate | None, seed: int | None):
        if rng is not None and seed is not None:
            raise ValueError("give either rng or seed, not both")
        if rng is None:
            rng = galsim.BaseDeviate(seed)
        elif not isinstance(rng, galsim.BaseDeviate):
            raise TypeError(f"rng must be a galsim.BaseDeviate, got {type(rng).__name__}")
        conditions = self.conditions(cat)
        noise = draw_base_noise(len(conditions), self.latent_dim, rng)
        return conditions, noise

    def sample(
        self,
        cat: Any,
        rng: galsim.BaseDeviate | None = None,
        seed: int | None = None,
        x_interpolant: Any = None,
        k_interpolant: Any = None,
        pad_factor: float = 4,
        gsparams: galsim.GSParams | None = None,
        return_arrays: bool = False,
    ) -> list[galsim.InterpolatedImage] | np.ndarray:
        """Sample one galaxy per catalog row.

        Parameters
        ----------
        cat : astropy.table.Table, dict or numpy structured array
            One row per galaxy with a column for each of :attr:`quantities`, in the units of
            the model's metadata. Missing columns and NaN, infinite or masked values are
            errors; values outside the training range warn.
        rng : galsim.BaseDeviate, optional
            Random number generator for the base noise; its state advances.
        seed : int, optional
            Seed for a new generator when ``rng`` is not given. The same rng state or seed
            gives the same galaxies whatever :attr:`batch_size` is: each galaxy gets the
            same base noise, and only float32 round-off of vectorised kernels (a relative
            1e-6) can differ between batch shapes.
        x_interpolant, k_interpolant, pad_factor, gsparams
            Passed to :class:`galsim.InterpolatedImage`.
        return_arrays : bool
            Return the ``[N, S, S]`` float32 array instead of GalSim objects.

        Returns
        -------
        list of galsim.InterpolatedImage, or numpy.ndarray
            Noise-free, PSF-deconvolved light profiles whose flux is in the model's flux
            units; convolve, shear and draw them like any GSObject.
        """
        conditions, noise = self._prepare(cat, rng, seed)
        images = self.sample_arrays(conditions, noise)
        if return_arrays:
            return images
        return [
            self.interpolated_image(image, x_interpolant, k_interpolant, pad_factor, gsparams)
            for image in images
        ]

    def iter_sample(
        self, cat: Any, rng: galsim.BaseDeviate | None = None, seed: int | None = None
    ) -> Iterator[np.ndarray]:
        """Like ``sample(..., return_arrays=True)``, one batch at a time, to bound memory.

        Yields
        ------
        numpy.ndarray
            ``[B, S, S]`` images of consecutive catalog rows, ``B <=`` :attr:`batch_size`.
        """
        conditions, noise = self._prepare(cat, rng, seed)
        yield from self._batches(conditions, noise)

    def interpolated_image(
        self,
        image: np.ndarray,
        x_interpolant: Any = None,
        k_interpolant: Any = None,
        pad_factor: float = 4,
        gsparams: galsim.GSParams | None = None,
    ) -> galsim.InterpolatedImage:
        """Wrap one ``[S, S]`` model image as a :class:`galsim.InterpolatedImage`."""
        return galsim.InterpolatedImage(
            galsim.Image(image, scale=self.pixel_scale),
            x_interpolant=x_interpolant,
            k_interpolant=k_interpolant,
            pad_factor=pad_factor,
            gsparams=gsparams,
        )
