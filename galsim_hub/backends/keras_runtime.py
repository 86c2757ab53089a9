"""Run a format-3 model's Keras-native file on the JAX or PyTorch backend of Keras 3.

Keras picks its backend once per process, from ``KERAS_BACKEND``, when it is first imported.
`keras_backend` sets it before that import and refuses, with the reason, a second backend in
a process whose Keras already runs another one. TensorFlow users need none of this: the
TensorFlow backend (:mod:`galsim_hub.backends.tensorflow`) runs every format through its SavedModel.

On JAX the sampling and decoding functions are compiled (``jax.jit``) for batch sizes rounded
up to a power of two, so a catalog of any length compiles a handful of functions; their
executables are kept in JAX's persistent compilation cache under galsim-hub's cache folder
(unless the user set one), so a second process starts without compiling.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from galsim_hub.backends.base import ModelRunner, keras_model_metadata, load_or_explain
from galsim_hub.errors import MetadataError

__all__ = ["KerasModel", "keras_backend", "pure_jax_function", "differentiable_sample", "KERAS_BACKENDS"]

#: The Keras backends this module runs, with the package each needs and the extra that installs it.
KERAS_BACKENDS = {"jax": ("jax", "galsim-hub[jax]"), "torch": ("torch", "galsim-hub[torch]")}


def keras_backend(name: str):
    """The ``keras`` module, imported with backend ``name`` (``"jax"`` or ``"torch"``).

    Raises
    ------
    galsim_hub.errors.GalSimHubError
        If the backend's package is not installed, or Keras already runs another backend here.
    """
    from galsim_hub.errors import GalSimHubError

    package, extra = KERAS_BACKENDS[name]
    if importlib.util.find_spec(package) is None or importlib.util.find_spec("keras") is None:
        raise GalSimHubError(f"the {name} backend needs {package} and keras: pip install '{extra}'")
    if "keras" in sys.modules:
        running = sys.modules["keras"].backend.backend()
        if running != name:
            raise GalSimHubError(
                f"Keras already runs the {running} backend in this process, and a process runs one: "
                f"use backend='{running}' here, or start a new process (with KERAS_BACKEND={name} "
                "if something imports Keras before galsim-hub)"
            )
        return sys.modules["keras"]
    os.environ["KERAS_BACKEND"] = name
    if name == "jax":
        _use_persistent_compilation_cache()
    import keras

    return keras


def _use_persistent_compilation_cache() -> None:
    """Keep JAX's compiled executables under galsim-hub's cache unless the user chose a folder."""
    import jax

    from galsim_hub.hub.settings import cache_root

    if jax.config.jax_compilation_cache_dir is None:  # type: ignore[attr-defined]  # a flag mypy cannot see
        jax.config.update("jax_compilation_cache_dir", str(cache_root() / "jax-compilation"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _bucket(n: int) -> int:
    """``n`` rounded up to a power of two: the batch size a function is compiled for."""
    return 1 << max(0, int(n) - 1).bit_length()


class KerasModel(ModelRunner):
    """A format-3 model loaded on the JAX or PyTorch backend of Keras.

    It offers what :class:`~galsim_hub.backends.tensorflow.LoadedModel` offers
    (:meth:`sample_images`, :meth:`decode`, :meth:`encode`) with the same checks of the output.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A format-3 model directory.
    backend : {"jax", "torch"}
        The Keras backend.
    device : str, optional
        Where to run, in the backend's words (``"cpu"``, ``"gpu"``, ``"cuda:0"``); default: the
        backend's default device.
    """

    def __init__(self, model_dir: str | os.PathLike, backend: str, device: str | None = None):
        self.directory = Path(model_dir)
        self.metadata = keras_model_metadata(self.directory, backend)
        self.backend = backend
        self.format = f"galsim-hub-{self.metadata['format']}"
        self._keras = keras_backend(backend)
        self.device = device or _default_device(backend)
        path = self.directory / self.metadata["keras_model"]
        from galsim_hub.networks.generator import load_generator

        with self._keras.device(self.device):
            self.generator = load_or_explain(lambda: load_generator(path), self.directory)
        self._describe()
        generator = self.generator
        self._check_networks(
            path, generator.n_conditions, generator.latent_dim, generator.stamp_size, generator.n_bands
        )
        self._compiled: dict = {}

    def _run(self, method: str, *arrays: np.ndarray) -> np.ndarray:
        """Call the generator's ``method`` on float32 ``arrays`` and return a NumPy array."""
        if self.backend == "jax":
            return np.asarray(self._jax_call(method, *arrays))
        import torch

        with torch.no_grad(), self._keras.device(self.device):
            return self._keras.ops.convert_to_numpy(getattr(self.generator, method)(*arrays))

    def _jax_call(self, method: str, *arrays: np.ndarray):
        """``method`` compiled for the batch's power-of-two size; rows padded, then cut off."""
        count = len(arrays[0])
        size = _bucket(count)
        padded = [np.concatenate([a, np.repeat(a[-1:], size - count, axis=0)]) if size > count else a for a in arrays]
        return self.jax_function(method)(self.jax_state(), *padded)[:count]

    def jax_state(self) -> list:
        """The values of the generator's variables, the ``state`` of :meth:`jax_function`."""
        variables = self.generator.trainable_variables + self.generator.non_trainable_variables
        return [variable.value for variable in variables]

    def jax_function(self, method: str):
        """The pure, compiled JAX function ``f(state, *inputs)`` of the generator's ``method``
        (see :func:`pure_jax_function`); ``state`` is :meth:`jax_state`."""
        if method not in self._compiled:
            self._compiled[method] = pure_jax_function(self.generator, method)
        return self._compiled[method]

    def sample_images(self, conditions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Decode one batch: ``[N, C]`` raw conditions and ``[N, L]`` base noise -> ``[N, S, S, B]``.

        The checks and the stamp window are those of the TensorFlow backend.
        """
        conditions = self._float32_conditions(conditions)
        images = self._run("sample", conditions, np.asarray(noise, np.float32))
        return self._checked_images(images, len(conditions))

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Decode latent vectors ``z`` ``[N, L]`` into ``[N, S, S, B]`` images."""
        return self._windowed(self._run("decode", np.asarray(z, np.float32)))

    def encode(self, image: np.ndarray, psf: np.ndarray) -> np.ndarray:
        """Encode observed stamps and their PSFs ``[N, S, S]`` into posterior-mean latents ``[N, L]``."""
        if self.generator.encoder is None:
            raise MetadataError(f"{self.directory}: the model was exported without an encoder (no encode signature)")
        return self._run("encode", np.asarray(image, np.float32), np.asarray(psf, np.float32))


def pure_jax_function(network, method: str):
    """``network.method`` as a pure, compiled JAX function ``f(state, *inputs)``.

    ``state`` is the list of the values of ``network.trainable_variables +
    network.non_trainable_variables``; ``f`` can be differentiated (``jax.grad``), vectorised
    and compiled further.
    """
    import jax
    import keras

    variables = network.trainable_variables + network.non_trainable_variables
    bound = getattr(network, method)

    def pure(state, *inputs):
        with keras.StatelessScope(state_mapping=list(zip(variables, state))):
            return bound(*inputs)

    return jax.jit(pure)


def _default_device(backend: str) -> str:
    if backend == "jax":
        import jax

        return "gpu" if jax.default_backend() == "gpu" else "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def differentiable_sample(model: KerasModel, conditions, noise):
    """A JAX function of the stamps: ``[N, C]`` raw conditions, ``[N, L]`` noise -> ``[N, S, S, B]``.

    The stamps are those of :meth:`KerasModel.sample_images` (the model's stamp window, and for a
    flux-calibrated model the flux of the catalog magnitude condition) as JAX arrays, so that
    ``jax.grad`` flows from them back to ``conditions`` and ``noise``. The conditions are used
    as given: no out-of-range policy and no checks of the output (see
    :meth:`galsim_hub.GenerativeGalaxyModel.sample` for those).
    """
    import jax.numpy as jnp

    from galsim_hub.backends.base import stamp_window

    if model.backend != "jax":
        raise ValueError(f"differentiable sampling needs backend='jax', this model runs on {model.backend}")
    conditions = jnp.asarray(conditions, jnp.float32)
    images = model.jax_function("sample")(model.jax_state(), conditions, jnp.asarray(noise, jnp.float32))
    window = model.metadata.get("stamp_window")
    if window:
        images = images * jnp.asarray(stamp_window(model.stamp_size, float(window["inner"])), jnp.float32)[:, :, None]
    calibration = model.metadata.get("flux_calibration")
    if calibration:
        magnitude = conditions[:, model.conditions.index(calibration["condition"])]
        target = 10.0 ** (-0.4 * (magnitude - float(model.metadata["zero_point"])))
        images = images * (target / jnp.sum(images, axis=(1, 2, 3)))[:, None, None, None]
    return images
