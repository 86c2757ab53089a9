"""galsim-hub: deep generative models of galaxy morphology as GalSim light profiles.

Importing this package is cheap: TensorFlow is imported only when a model is loaded.

Examples
--------
>>> import galsim_hub
>>> model = galsim_hub.GenerativeGalaxyModel("hub:synthetic_bdk")  # doctest: +SKIP
>>> galaxies = model.sample(catalog, seed=42)                  # doctest: +SKIP
"""

import os as _os

from galsim_hub._version import __version__
from galsim_hub.errors import (
    CatalogError,
    ChecksumError,
    ConcurrentPublishError,
    DownloadError,
    GalSimHubError,
    HandleError,
    MetadataError,
    ModelOutputWarning,
    UnsafeArchiveError,
)
from galsim_hub.sampling.catalog import OutOfRangeWarning

# Keep TensorFlow's C++ start-up chatter out of users' logs unless they ask for it.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A GalSim YAML with ``modules: [galsim_hub]`` imports this package: register the config
# types ``generative_model`` and ``GenerativeGalaxy`` (this imports GalSim, not TensorFlow).
from galsim_hub import config as _config  # noqa: F401

__all__ = [
    "__version__",
    "GenerativeGalaxyModel",
    "MultiBandGalaxy",
    "GalSimHubError",
    "HandleError",
    "DownloadError",
    "ChecksumError",
    "ConcurrentPublishError",
    "UnsafeArchiveError",
    "MetadataError",
    "CatalogError",
    "ModelOutputWarning",
    "OutOfRangeWarning",
]


def __getattr__(name):
    # Lazy attribute so that ``import galsim_hub`` stays free of TensorFlow and of the
    # model machinery until it is used.
    if name == "GenerativeGalaxyModel":
        from galsim_hub.model import GenerativeGalaxyModel

        return GenerativeGalaxyModel
    if name == "MultiBandGalaxy":
        from galsim_hub.profiles.bands import MultiBandGalaxy

        return MultiBandGalaxy
    raise AttributeError(f"module 'galsim_hub' has no attribute {name!r}")
