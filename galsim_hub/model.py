"""``GenerativeGalaxyModel``: sample galaxy light profiles as GalSim objects."""
from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import galsim
import numpy as np
from galsim.interpolant import convert_interpolant

from galsim_hub.profiles.bands import BandSet, MultiBandGalaxy, apply_band_fluxes, band_set_of, multiband_plan
from galsim_hub.metadata import band_names
from galsim_hub.hub.cache import fetch
from galsim_hub.sampling.catalog import condition_matrix
from galsim_hub.sampling.fluxes import DEFAULT_OUT_OF_RANGE, SamplingPlan, sampling_plan
from galsim_hub.hub.handle import resolve
from galsim_hub.metadata import MODEL_METADATA_FILE, read_metadata, validate_metadata
from galsim_hub.backends.tensorflow import LoadedModel

DEFAULT_BATCH_SIZE = 256
_SCALAR_DRAWS_BELOW = 256  # smaller base-noise draws loop in Python (see draw_base_noise)
_MAXK_CHUNK = 16  # stamps Fourier-transformed at once: small enough to stay in cache


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
    return _standard_normal(galsim.GaussianDeviate(rng, sigma=1.0), n_galaxies, latent_dim)


def _standard_normal(
    deviate: galsim.GaussianDeviate, n_galaxies: int, latent_dim: int, one_by_one: bool = False
) -> np.ndarray:
    """The next ``n_galaxies * latent_dim`` draws of ``deviate`` as float32 ``[N, L]``.

    Draws one by one continue the deviate's stream exactly (it keeps the second value of
    each Box-Muller pair); ``generate`` drops a kept value, so it equals one-by-one draws
    only on a deviate that has drawn an even number of values. ``one_by_one`` forces the
    former, for batch-by-batch draws of odd size.
    """
    noise = np.empty(n_galaxies * latent_dim, dtype=np.float64)
    if one_by_one or noise.size < _SCALAR_DRAWS_BELOW:
        # Same values and final rng state as generate() on a fresh deviate, without its
        # OpenMP parallel region, whose start-up costs milliseconds on a busy machine.
        for i in range(noise.size):
            noise[i] = deviate()
    else:
        deviate.generate(noise)
    return noise.reshape(n_galaxies, latent_dim).astype(np.float32)


def interpolated_image_maxk(
    images: np.ndarray,
    pixel_scale: float,
    pad_factor: float = 4,
    x_interpolant: Any = None,
    gsparams: galsim.GSParams | None = None,
) -> np.ndarray:
    """The ``maxk`` that :class:`galsim.InterpolatedImage` computes, for a batch of stamps.

    GalSim finds ``maxk`` one object at a time: it Fourier transforms the padded stamp,
    scans square rings ``max(|kx|, |ky|) = r`` outwards and stops once five rings in a row
    (counting the last one above) have no ``|F(k)|`` above ``maxk_threshold`` times the
    flux; then it discards the transform, which drawing computes again. This runs the same
    scan on batched, zero-padded FFTs, about twice as fast, and the values are GalSim's (a
    ring can only flip where ``|F(k)|`` sits within float32 round-off of the threshold), so
    they can be handed to GalSim as ``_force_maxk``.

    Parameters
    ----------
    images : numpy.ndarray
        ``[N, S, S]`` stamps.
    pixel_scale : float
        Pixel scale in arcsec.
    pad_factor, x_interpolant, gsparams
        As given to :class:`galsim.InterpolatedImage`.

    Returns
    -------
    numpy.ndarray
        ``[N]`` maxk values in 1/arcsec.
    """
    gsparams = galsim.GSParams.check(gsparams)
    if x_interpolant is None:
        interpolant = galsim.Quintic(gsparams=gsparams)
    else:
        interpolant = convert_interpolant(x_interpolant).withGSParams(gsparams)
    size = max(images.shape[1:])
    pad_size = galsim.Image.good_fft_size(int(math.ceil(pad_factor * size)) if pad_factor > 1 else size)
    half = pad_size // 2
    dk = math.pi / half
    last_ring = min(int(math.ceil(interpolant.krange / dk)), half)
    flux = images.sum(axis=(1, 2), dtype=np.float64)
    threshold = (gsparams.maxk_threshold * flux) ** 2
    above = np.empty((len(images), last_ring + 1), dtype=bool)
    for start in range(0, len(images), _MAXK_CHUNK):
        chunk = slice(start, start + _MAXK_CHUNK)
        above[chunk] = _rings_above(images[chunk], threshold[chunk], pad_size, last_ring)
    maxk_ring = np.zeros(len(images), dtype=int)
    count = np.zeros(len(images), dtype=int)
    done = np.zeros(len(images), dtype=bool)
    for ring in range(last_ring + 1):
        hit = above[:, ring] & ~done
        maxk_ring[hit] = ring
        count[hit] = 0
        count[~done] += 1
        done |= count == 5
    return (maxk_ring + 1) * dk / pixel_scale


def _rings_above(images: np.ndarray, threshold: np.ndarray, pad_size: int, last_ring: int) -> np.ndarray:
    """``[B, last_ring + 1]``: does ring ``max(|kx|, |ky|) = r`` hold a ``|F|^2 > threshold``?"""
    import scipy.fft

    spectrum = scipy.fft.rfft(images, n=pad_size, axis=2)
    spectrum = scipy.fft.fft(spectrum, n=pad_size, axis=1, overwrite_x=True)[:, :, : last_ring + 1]
    above = spectrum.real**2 + spectrum.imag**2 > threshold[:, None, None]  # [B, ky (wrapped), kx]
    rings = np.arange(last_ring + 1)
    # Fold -ky onto ky (the index wraps, so ky = -N/2 folds onto itself).
    folded = above[:, : last_ring + 1] | above[:, (pad_size - rings) % pad_size]
    # Ring r: the row |ky| = r for kx <= r, and the column kx = r for |ky| <= r.
    rows = np.logical_or.accumulate(folded, axis=2)[:, rings, rings]
    columns = np.logical_or.accumulate(folded, axis=1)[:, rings, rings]
    return rows | columns


MAX_SEED = 2**63 - 1  # GalSim seeds are C++ longs


def _checked_seed(seed: Any) -> int:
    """A seed as GalSim takes it, or a clear error (GalSim truncates floats and reads strings)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r} ({type(seed).__name__})")
    seed = int(seed)
    if seed == 0:
        raise ValueError(
            "seed=0 makes GalSim draw a random seed; pass a non-zero seed for reproducible "
            "galaxies, or seed=None for new ones each time"
        )
    if not 0 < seed <= MAX_SEED:
        raise ValueError(f"seed must be between 1 and 2**63 - 1, got {seed}")
    return seed


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
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.file_name = str(file_name)
        self.batch_size = int(batch_size)
        self.source = resolve(file_name)
        self._directory = Path(fetch(self.source, progress=progress))
        self._entry_metadata = (self.source.entry or {}).get("metadata")
        self._device = device
        self._model: LoadedModel | None = None
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
            metadata.setdefault("name", self.source.entry["name"])
            metadata.setdefault("version", self.source.entry["version"])
            return validate_metadata(metadata, source=self.file_name)
        return None

    def _loaded(self) -> LoadedModel:
        """The loaded model (TensorFlow is imported on the first call; thread-safe)."""
        with self._load_lock:
            if self._model is None:
                self._model = LoadedModel(self._directory, metadata=self._entry_metadata, device=self._device)
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
    def latent_dim(self) -> int:
        """Dimension of the base noise drawn per galaxy."""
        return int(self._meta()["latent_dim"])

    @property
    def metadata(self) -> dict:
        """The model's metadata (a copy of ``galsim_hub.json``)."""
        return dict(self._meta())

    @property
    def device(self) -> str:
        """The TensorFlow device the model runs on."""
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
        return np.concatenate(list(self._in_batches(self._loaded().sample_images, conditions, noise)), axis=0)

    def _in_batches(self, function: Callable[..., np.ndarray], *arrays: np.ndarray) -> Iterator[np.ndarray]:
        """``function`` applied to consecutive slices of :attr:`batch_size` rows of ``arrays``."""
        for start in range(0, len(arrays[0]), self.batch_size):
            yield function(*(array[start:start + self.batch_size] for array in arrays))

    def _prepare(self, cat: Any, rng: galsim.BaseDeviate | None, seed: int | None):
        rng = self._generator(rng, seed)
        conditions = self.conditions(cat)
        noise = draw_base_noise(len(conditions), self.latent_dim, rng)
        return conditions, noise

    @staticmethod
    def _generator(rng: galsim.BaseDeviate | None, seed: int | None) -> galsim.BaseDeviate:
        if rng is not None and seed is not None:
            raise ValueError("give either rng or seed, not both")
        if seed is not None:
            seed = _checked_seed(seed)
        if rng is None:
            rng = galsim.BaseDeviate(seed)
        elif not isinstance(rng, galsim.BaseDeviate):
            raise TypeError(f"rng must be a galsim.BaseDeviate, got {type(rng).__name__}")
        return rng

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
            :mod:`galsim_hub.sampling.fluxes`).
        flux, mag : str or array_like, optional
            Set every galaxy's flux from a flux column (or values), or from a magnitude
            column (or values) with ``zero_point`` (default: the model's ``zero_point``).
            For a multi-band model, dicts ``{band: column or values}`` (see
            :meth:`galsim_hub.profiles.bands.BandSet.fluxes`); bands left out keep the model's flux.
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
        if self.bands is not None:
            conditions, noise = self._prepare(cat, rng, seed)
            plan, fluxes = self._multiband_plan(cat, conditions, out_of_range, flux, mag, zero_point)
            images = apply_band_fluxes(self.sample_arrays(plan.inputs, noise), fluxes)
            if return_arrays:
                return images
            return self.multiband_galaxies(images, x_interpolant, k_interpolant, pad_factor, gsparams)

        conditions, noise = self._prepare(cat, rng, seed)
        plan = sampling_plan(cat, conditions, self._loaded().metadata, out_of_range, flux, mag, zero_point)
        images = plan.images(self.sample_arrays, noise)
        if return_arrays:
            return images
        return self.interpolated_images(images, x_interpolant, k_interpolant, pad_factor, gsparams)

    def _multiband_plan(self, cat: Any, conditions: np.ndarray, out_of_range: str, flux: Any, mag: Any,
                        zero_point: Any) -> tuple[SamplingPlan, dict[int, np.ndarray]]:
        """The out-of-range plan (:func:`~galsim_hub.profiles.bands.multiband_plan`) and per-band catalog fluxes."""
        fluxes = self.band_set.fluxes(cat, len(conditions), flux, mag, zero_point)
        plan = multiband_plan(conditions, self.metadata, out_of_range, stacklevel=3)
        return plan, {**plan.band_fluxes, **fluxes}  # the catalog fluxes given win

    def _iter_multiband(self, cat: Any, rng: galsim.BaseDeviate | None, seed: int | None,
                        out_of_range: str, flux: Any, mag: Any, zero_point: Any) -> Iterator[np.ndarray]:
        """:meth:`iter_sample` of a multi-band model."""
        deviate = galsim.GaussianDeviate(self._generator(rng, seed), sigma=1.0)
        conditions = self.conditions(cat)
        plan, fluxes = self._multiband_plan(cat, conditions, out_of_range, flux, mag, zero_point)
        odd_batches = self.batch_size * self.latent_dim % 2 == 1
        for start in range(0, len(conditions), self.batch_size):
            rows = slice(start, min(start + self.batch_size, len(conditions)))
            noise = _standard_normal(deviate, rows.stop - start, self.latent_dim, one_by_one=odd_batches)
            yield apply_band_fluxes(self.sample_arrays(plan.inputs[rows], noise), fluxes, rows)

    def iter_sample(
        self, cat: Any, rng: galsim.BaseDeviate | None = None, seed: int | None = None, *,
        out_of_range: str = DEFAULT_OUT_OF_RANGE, flux: Any = None, mag: Any = None, zero_point: float | None = None,
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
        if self.bands is not None:
            yield from self._iter_multiband(cat, rng, seed, out_of_range, flux, mag, zero_point)
            return

        deviate = galsim.GaussianDeviate(self._generator(rng, seed), sigma=1.0)
        conditions = self.conditions(cat)
        model, latent_dim = self._loaded(), self.latent_dim
        plan = sampling_plan(cat, conditions, model.metadata, out_of_range, flux, mag, zero_point)
        odd_batches = self.batch_size * latent_dim % 2 == 1

        def sample_batch(batch: np.ndarray, rows: np.ndarray) -> np.ndarray:
            noise = _standard_normal(deviate, len(batch), latent_dim, one_by_one=odd_batches)
            return plan.images(model.sample_images, noise, slice(int(rows[0]), int(rows[-1]) + 1))

        yield from self._in_batches(sample_batch, conditions, np.arange(len(conditions)))

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
        return np.concatenate(list(batches), axis=0)

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

    def interpolated_images(
        self,
        images: np.ndarray,
        x_interpolant: Any = None,
        k_interpolant: Any = None,
        pad_factor: float = 4,
        gsparams: galsim.GSParams | None = None,
    ) -> list[galsim.InterpolatedImage]:
        """Wrap ``[N, S, S]`` model images as :class:`galsim.InterpolatedImage` objects.

        The objects are those of :meth:`interpolated_image`, but their ``maxk`` is found
        for the whole batch at once (:func:`interpolated_image_maxk`), which halves the
        cost of building them.
        """
        images = np.asarray(images)
        maxk = interpolated_image_maxk(images, self.pixel_scale, pad_factor, x_interpolant, gsparams)
        return [
            galsim.InterpolatedImage(
                galsim.Image(image, scale=self.pixel_scale),
                x_interpolant=x_interpolant,
                k_interpolant=k_interpolant,
                pad_factor=pad_factor,
                gsparams=gsparams,
                _force_maxk=float(galaxy_maxk),
            )
            for image, galaxy_maxk in zip(images, maxk)
        ]

    def multiband_galaxies(
        self,
        images: np.ndarray,
        x_interpolant: Any = None,
        k_interpolant: Any = None,
        pad_factor: float = 4,
        gsparams: galsim.GSParams | None = None,
    ) -> list[MultiBandGalaxy]:
        """Wrap ``[N, S, S, B]`` images of a multi-band model as :class:`~galsim_hub.profiles.bands.MultiBandGalaxy` objects."""
        images = np.asarray(images)
        per_band = [
            self.interpolated_images(np.ascontiguousarray(images[..., b]), x_interpolant, k_interpolant, pad_factor,
                                     gsparams)
            for b in range(images.shape[-1])
        ]
        return [MultiBandGalaxy(self.band_set, list(galaxy), images[i], pad_factor)
                for i, galaxy in enumerate(zip(*per_band))]
