"""Runtime backends: where a model's networks run (TensorFlow, JAX, PyTorch or NumPy alone).

Importing this package imports no backend; :func:`load_runner` imports the one it is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from galsim_hub.backends.base import ModelRunner

__all__ = ["BACKENDS", "BACKEND_ENV", "DEFAULT_BACKEND", "choose_backend", "load_runner"]

#: The backends a model runs on.
BACKENDS = ("tensorflow", "jax", "torch", "numpy")
#: The backend used when none is passed (TensorFlow runs every format, TF1 Hub modules included).
DEFAULT_BACKEND = "tensorflow"
#: Environment variable naming the backend used when none is passed.
BACKEND_ENV = "GALSIM_HUB_BACKEND"


def choose_backend(backend: str | None = None) -> str:
    """``backend``, else ``$GALSIM_HUB_BACKEND``, else ``"tensorflow"``; checked against :data:`BACKENDS`."""
    source = "backend"
    if backend is None:
        backend = os.environ.get(BACKEND_ENV, "").strip() or DEFAULT_BACKEND
        source = BACKEND_ENV
    if backend not in BACKENDS:
        raise ValueError(f"{source} must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def load_runner(directory: Path, metadata: dict | None, device: str | None, backend: str) -> ModelRunner:
    """Load the model in ``directory`` on ``backend`` (see :func:`choose_backend`).

    ``metadata`` completes what a TF1 Hub module says of itself (TensorFlow only).
    """
    if backend == "tensorflow":
        from galsim_hub.backends.tensorflow import LoadedModel

        return LoadedModel(directory, metadata=metadata, device=device)
    if backend == "numpy":
        from galsim_hub.backends.numpy_runtime import NumpyModel

        return NumpyModel(directory, device=device)
    from galsim_hub.backends.keras_runtime import KerasModel

    return KerasModel(directory, backend, device=device)
