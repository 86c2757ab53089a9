"""``GenerativeGalaxyModel``: sample galaxy light profiles as GalSim objects.

Every model runs through one pipeline with a band axis (``B = 1`` for a single-band model)::

    catalog --condition_matrix--> [N, C] conditions --SamplingPlan--> inputs, [N, B] flux targets
    rng --draw_base_noise--> [N, L] noise
    backend.sample_images(inputs, noise) --> [N, S, S, B] stamps --plan: pull-in, fluxes--> stamps
    stamps --wrap_stamps--> galsim.InterpolatedImage (B = 1) or MultiBandGalaxy

The public outputs keep the shapes users know: a single-band model returns ``[N, S, S]``
arrays and InterpolatedImages, a multi-band one ``[N, S, S, B]`` arrays and MultiBandGalaxy objects.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import galsim
import numpy as np

from galsim_hub.backends import choose_backend, load_runner
from galsim_hub.backends.base import ModelRunner
from galsim_hub.constants import DEFAULT_BATCH_SIZE
from galsim_hub.hub.cache import fetch
from galsim_hub.hub.handle import resolve
from galsim_hub.metadata import MODEL_METADATA_FILE, band_names, read_metadata, validate_metadata
from galsim_hub.profiles.bands import BandSet, MultiBandGalaxy, band_set_of
from galsim_hub.profiles.wrap import ProfileOptions, galaxy_profile, wrap_stamps
from galsim_hub.sampling.catalog import condition_matrix
from galsim_hub.sampling.fluxes import catalog_band_fluxes
from galsim_hub.sampling.noise import draw_base_noise, generator, standard_normal
from galsim_hub.sampling.plan import DEFAULT_OUT_OF_RANGE, SamplingPlan


class GenerativeGalaxyModel:
    """A deep generative model of galaxy light profiles, conditioned on catalog columns.

    Parameters
    ----------
    file_name : str or os.PathLike
        The model handle: ``hub:NAME`` or ``hub:NAME@VERSION`` (looked up in the bundled
        index and in the indexes of ``GALSIM_HUB_INDEX``), an ``http(s)://`` URL of a
        ``.tar.gz`` archive, a local ``.tar.gz`` archive, or a model directory.
    device : str, optional
        Device in the backend's words: TensorFlow ``"/GPU:0"`` or ``"/CPU:0"``, JAX ``"gpu"``
        or ``"cpu"``, PyTorch ``"cuda:0"`` or ``"cpu"``, NumPy ``"cpu"``; default: the first
        GPU the backend sees, else the CPU.
    backend : {"tensorflow", "jax", "torch", "numpy"}, optional
        Where the networks run; default ``$GALSIM_HUB_BACKEND``, else ``"tensorflow"``. JAX and
        PyTorch (``pip install 'galsim-hub[jax]'`` or ``'galsim-hub[torch]'``) run format-3
        models through Keras 3; NumPy runs them on the CPU with no machine-learning framework
        at all (the fastest start-up); TensorFlow runs every format, TF1 Hub modules included.
        The same seed gives the same galaxies on every backend, to float32 round-off.
    batch_size : int
        Number of galaxies decoded per model call.
    progress : bool, optional
        Show a download progress bar; by default only on an interactive terminal.

    Examples
    --------
    >>> from astropy.table import Table
    >>> model = GenerativeGalaxyModel("hub:cosmos_real")                       # doctest: +SKIP
    >>> cat = Table({"mag_auto": [23.0], "flux_radius": [8.0], "zphot": [0.7]})  # doctest: +SKIP
    >>> galaxy = model.sample(cat, seed=1)[0].shear(g1=0.02, g2=0.0)            # doctest: +SKIP
    """

    _load_on_init = True  # the config input (a subclass) loads on first use, after GalSim forks

    def __init__(
        self,
        file_name: str | os.PathLike,
        device: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool | None = None,
        backend: str | None = None,
    ):
        self.backend = choose_backend(backend)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.file_name = str(file_name)
        self.batch_size = int(batch_size)
        self.source = resolve(file_name)
        self._directory = Path(fetch(self.source, progress=progress))
        self._entry_metadata = (self.source.entry or {}).get("metadata")
        self._device = device
        self._model: ModelRunner | None = None
        self._load_lock = threading.Lock()
        self._metadata = self._files_metadata()
        if self._load_on_init:
            self._loaded()

    def _files_metadata(self) -> dict | None:
        """The metadata as the files and the index entry give them, without TensorFlow.

        ``None`` when only the module itself knows them (a bare TF1 Hub directory).
        """
        if (self._directory / MODEL_METADATA_FILE).is_file():
            return read_metadata(self._directory)
        entry = self._entry_metadata
        if entry and {"latent_dim", "stamp_size", "conditions", "pixel_scale"} <= set(entry):
            metadata = dict(entry, format=1)
            metadata.setdefault("name", entry.get("name", self.source.entry and self.source.entry["name"]))
            metadata.setdefault("version", entry.get("version", self.source.entry and self.source.entry["version"]))
            return validate_metadata(metadata, source=self.file_name)
        return None

    def _loaded(self) -> ModelRunner:
        """The loaded model (its backend is imported on the first call; thread-safe)."""
        with self._load_lock:
            if self._model is None:
                self._model = load_runner(self._directory, self._entry_metadata, self._device, self.backend)
                self._metadata = self._model.metadata
            return self._model

    def _meta(self) -> dict:
        return self._metadata if self._metadata is not None else self._loaded().metadata

    def __repr__(self) -> str:
        return f"GenerativeGalaxyModel({self.file_name!r})"

    @property
    def quantities(self) -> list[str]:
        """The catalog columns the model is conditioned on, in input order."""
        return [condition["name"] for condition in self._meta()["conditions"]]

    @property
    def stamp_size(self) -> int:
        """Size in pixels of the (square) stamps the model outputs."""
        return int(self._meta()["stamp_size"])

    @property
    def pixel_scale(self) -> float:
        """Pixel scale of the output stamps in arcsec."""
        return float(self._meta()["pixel_scale"])

    @property
    def pixel_size(self) -> float:
        """Upstream galsim_hub's name of :attr:`pixel_scale` (arcsec per pixel), kept so that its
        notebooks and scripts run unchanged."""
        return self.pixel_scale

    @property
    def latent_dim(self) -> int:
        """Dimension of the base noise drawn per galaxy."""
        return int(self._meta()["latent_dim"])

    @property
    def metadata(self) -> dict:
        """The model's metadata (a copy of ``galsim_hub.json``)."""
        return dict(self._meta())

    @property
    def device(self) -> str:
        """The device the model runs on, in its backend's words."""
        return self._loaded().device

    @property
    def bands(self) -> list[str] | None:
        """Band names of a multi-band model, in output order; ``None`` for a single-band model."""
        return band_names(self.metadata)

    @property
    def band_set(self) -> BandSet | None:
        """The bandpasses, zero points and chromatic SEDs of a multi-band model (``None`` if single-band)."""
        return band_set_of(self.metadata, source=self.file_name)

    def conditions(self, cat: Any) -> np.ndarray:
        """Check a catalog and return its ``[N, C]`` condition matrix (see :attr:`quantities`)."""
        return condition_matrix(cat, self._meta()["conditions"])

    def decode_bands(self, conditions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Decode galaxies in batches of :attr:`batch_size`, with the band axis: ``[N, S, S, B]``.

        The conditions are fed as given (no out-of-range policy, no catalog fluxes); see
        :meth:`sample` for those.
        """
        return np.concatenate(list(self._in_batches(self._loaded().sample_images, conditions, noise)), axis=0)

    def sample_arrays(self, conditions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Decode galaxies in batches of :attr:`batch_size`.

        Parameters
        ----------
        conditions : numpy.ndarray
            ``[N, C]`` condition matrix (see :meth:`conditions`).
        noise : numpy.ndarray
            ``[N, L]`` base noise (see :func:`~galsim_hub.sampling.noise.draw_base_noise`).

        Returns
        -------
        numpy.ndarray
            ``[N, S, S]`` (multi-band: ``[N, S, S, B]``) float32 images in the model's flux units.
        """
        return self._public_arrays(self.decode_bands(conditions, noise))

    def _public_arrays(self, images: np.ndarray) -> np.ndarray:
        """Band-axis stamps in the shape users get: ``[N, S, S]`` for a single-band model."""
        return images[..., 0] if self.bands is None else images

    def _in_batches(self, function: Callable[..., np.ndarray], *arrays: np.ndarray) -> Iterator[np.ndarray]:
        """``function`` applied to consecutive slices of :attr:`batch_size` rows of ``arrays``."""
        for start in range(0, len(arrays[0]), self.batch_size):
            yield function(*(array[start : start + self.batch_size] for array in arrays))

    def plan(
        self,
        cat: Any,
        conditions: np.ndarray,
        out_of_range: str = DEFAULT_OUT_OF_RANGE,
        flux: Any = None,
        mag: Any = None,
        zero_point: Any = None,
        stacklevel: int = 2,
    ) -> SamplingPlan:
        """The :class:`~galsim_hub.sampling.plan.SamplingPlan` of sampling ``cat``: its out-of-range
        decisions and the ``[N, B]`` catalog fluxes (``flux``, ``mag``, ``zero_point`` of :meth:`sample`)."""
        metadata = self._loaded().metadata
        fluxes = catalog_band_fluxes(cat, len(conditions), metadata, flux, mag, zero_point)
        return SamplingPlan(conditions, metadata, out_of_range, fluxes, stacklevel=stacklevel + 1)

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
        *,
        out_of_range: str = DEFAULT_OUT_OF_RANGE,
        flux: Any = None,
        mag: Any = None,
        zero_point: float | None = None,
    ) -> list[galsim.InterpolatedImage] | list[MultiBandGalaxy] | np.ndarray:
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
            Non-zero seed for a new generator when ``rng`` is not given (``None``: a random
            seed; 0 is refused, since GalSim takes it to mean random). The same rng state or seed
            gives the same galaxies whatever :attr:`batch_size` is: each galaxy gets the
            same base noise, and only float32 round-off of vectorised kernels (a relative
            1e-6) can differ between batch shapes.
        x_interpolant, k_interpolant, pad_factor, gsparams
            Passed to :class:`galsim.InterpolatedImage`.
        return_arrays : bool
            Return the ``[N, S, S]`` (multi-band: ``[N, S, S, B]``) float32 array instead of
            GalSim objects.
        out_of_range : {"clip", "error", "extrapolate"}
            Rows with a condition outside the training range: clipped to it, with their flux
            set from the catalog magnitude (default), refused, or extrapolated (see
            :mod:`galsim_hub.sampling.plan`).
        flux, mag : str or array_like, optional
            Set every galaxy's flux from a flux column (or values), or from a magnitude
            column (or values) with ``zero_point`` (default: the model's ``zero_point``).
            For a multi-band model, dicts ``{band: column or values}`` (see
            :func:`galsim_hub.sampling.fluxes.catalog_band_fluxes`); bands left out keep the model's flux.
        zero_point : float, optional
            Zero point of ``mag``: ``flux = 10**(-0.4 (mag - zero_point))`` (multi-band: a
            dict ``{band: zero point}``, by default each band's).

        Returns
        -------
        list of galsim.InterpolatedImage, list of MultiBandGalaxy, or numpy.ndarray
            Noise-free, PSF-deconvolved light profiles whose flux is in the model's flux
            units; convolve, shear and draw them like any GSObject. A multi-band model gives
            one :class:`~galsim_hub.profiles.bands.MultiBandGalaxy` per row: ``.images[band]`` and
            ``.chromatic``.
        """
        rng = generator(rng, seed)
        conditions = self.conditions(cat)
        noise = draw_base_noise(len(conditions), self.latent_dim, rng)
        plan = self.plan(cat, conditions, out_of_range, flux, mag, zero_point)
        images = plan.images(self.decode_bands, noise)
        if return_arrays:
            return self._public_arrays(images)
        return self.wrap(images, ProfileOptions(x_interpolant, k_interpolant, pad_factor, gsparams))

    def iter_sample(
        self,
        cat: Any,
        rng: galsim.BaseDeviate | None = None,
        seed: int | None = None,
        *,
        out_of_range: str = DEFAULT_OUT_OF_RANGE,
        flux: Any = None,
        mag: Any = None,
        zero_point: float | None = None,
    ) -> Iterator[np.ndarray]:
        """Like ``sample(..., return_arrays=True)``, one batch at a time, to bound memory.

        The catalog is checked as a whole before the first batch; the base noise is drawn
        batch by batch (the same values as ``sample``), so memory does not grow with the
        number of rows and ``rng`` advances as batches are taken. ``out_of_range``, ``flux``,
        ``mag`` and ``zero_point`` are those of :meth:`sample`.

        Yields
        ------
        numpy.ndarray
            ``[n, S, S]`` (multi-band: ``[n, S, S, B]``) images of consecutive catalog rows,
            ``n <=`` :attr:`batch_size`.
        """
        deviate = galsim.GaussianDeviate(generator(rng, seed), sigma=1.0)
        conditions = self.conditions(cat)
        model, latent_dim = self._loaded(), self.latent_dim
        plan = self.plan(cat, conditions, out_of_range, flux, mag, zero_point, stacklevel=3)
        odd_batches = self.batch_size * latent_dim % 2 == 1
        for start in range(0, len(conditions), self.batch_size):
            rows = slice(start, min(start + self.batch_size, len(conditions)))
            noise = standard_normal(deviate, rows.stop - start, latent_dim, one_by_one=odd_batches)
            yield self._public_arrays(plan.images(model.sample_images, noise, rows))

    def sample_jax(self, conditions: Any, noise: Any):
        """Differentiable stamps on the JAX backend: raw conditions and base noise -> JAX arrays.

        Parameters
        ----------
        conditions : array_like
            ``[N, C]`` conditions in the catalog units of :attr:`quantities`, in that order (a JAX
            array to differentiate with respect to).
        noise : array_like
            ``[N, L]`` standard-normal base noise (e.g. ``jax.random.normal``).

        Returns
        -------
        jax.Array
            ``[N, S, S]`` (multi-band ``[N, S, S, B]``) float32 stamps: the model's stamp window
            and flux calibration applied, as in :meth:`sample`, but without its out-of-range
            policy or catalog checks. Wrap them with :meth:`jax_interpolated_image`.

        Examples
        --------
        >>> model = GenerativeGalaxyModel("hub:cosmos_real", backend="jax")   # doctest: +SKIP
        >>> loss = lambda c: model.sample_jax(c, noise).sum()                # doctest: +SKIP
        >>> jax.grad(loss)(conditions)                                       # doctest: +SKIP
        """
        from galsim_hub.backends.keras_runtime import KerasModel, differentiable_sample

        runner = self._loaded()
        if not isinstance(runner, KerasModel) or runner.backend != "jax":
            raise ValueError(f"sample_jax needs backend='jax'; {self.file_name} runs on {self.backend}")
        images = differentiable_sample(runner, conditions, noise)
        return images[..., 0] if self.bands is None else images

    def jax_interpolated_image(self, stamp: Any, **options: Any):
        """One ``[S, S]`` stamp of :meth:`sample_jax` as a ``jax_galsim.InterpolatedImage`` at the
        model's pixel scale (``options``: those of
        :func:`~galsim_hub.profiles.jax_profiles.jax_interpolated_image`)."""
        from galsim_hub.profiles.jax_profiles import jax_interpolated_image

        return jax_interpolated_image(stamp, self.pixel_scale, **options)

    def reconstruct(self, images: np.ndarray, psfs: np.ndarray) -> np.ndarray:
        """Encode observed stamps and decode them: the VAE's PSF-deconvolved, denoised profiles.

        Parameters
        ----------
        images : numpy.ndarray
            ``[N, S, S]`` noisy, PSF-convolved stamps at the model's pixel scale and flux units.
        psfs : numpy.ndarray
            ``[N, S, S]`` their PSF images (unit sum, centred on pixel ``(S//2, S//2)``).

        Returns
        -------
        numpy.ndarray
            ``[N, S, S]`` reconstructed light profiles.

        Raises
        ------
        MetadataError
            When the model was exported without an encoder (no ``encode`` signature).
        """
        model = self._loaded()
        batches = self._in_batches(lambda image, psf: model.decode(model.encode(image, psf)), images, psfs)
        return self._public_arrays(np.concatenate(list(batches), axis=0))

    def _band_axis(self, images: np.ndarray) -> np.ndarray:
        """Public-shape stamps with the band axis (``[N, S, S]`` -> ``[N, S, S, 1]``)."""
        images = np.asarray(images)
        return images[..., None] if self.bands is None else images

    def wrap(self, images: np.ndarray, options: ProfileOptions = ProfileOptions()) -> list:
        """The galaxies of ``[N, S, S, B]`` stamps: InterpolatedImages (``B = 1``) or MultiBandGalaxy objects.

        ``maxk`` is found for the whole batch at once
        (:func:`~galsim_hub.profiles.wrap.interpolated_image_maxk`), which halves the cost of
        building them.
        """
        return wrap_stamps(images, self.pixel_scale, self.band_set, options)

    def interpolated_image(
        self,
        image: np.ndarray,
        x_interpolant: Any = None,
        k_interpolant: Any = None,
        pad_factor: float = 4,
        gsparams: galsim.GSParams | None = None,
    ) -> galsim.InterpolatedImage | MultiBandGalaxy:
        """Wrap one model image (``[S, S]``; multi-band ``[S, S, B]``) as its galaxy."""
        options = ProfileOptions(x_interpolant, k_interpolant, pad_factor, gsparams)
        return galaxy_profile(self._band_axis(np.asarray(image)[None])[0], self.pixel_scale, self.band_set, options)

    def interpolated_images(
        self,
        images: np.ndarray,
        x_interpolant: Any = None,
        k_interpolant: Any = None,
        pad_factor: float = 4,
        gsparams: galsim.GSParams | None = None,
    ) -> list:
        """Wrap model images (``[N, S, S]``; multi-band ``[N, S, S, B]``) as galaxies (:meth:`wrap`).

        The objects are those of :meth:`interpolated_image`, but their ``maxk`` is found
        for the whole batch at once, which halves the cost of building them.
        """
        return self.wrap(self._band_axis(images), ProfileOptions(x_interpolant, k_interpolant, pad_factor, gsparams))

    multiband_galaxies = interpolated_images
