"""Training data sets of galaxy postage stamps for galsim-hub models: the public entry points.

Three sources produce data sets in one on-disk format (format 1, :mod:`.shards`):

- :func:`build_synthetic_dataset` (:mod:`.synthetic`) draws a synthetic population (bulge +
  exponential disc + star-forming knots) through an HST-like PSF with COSMOS-like noise, and
  also stores the noiseless truth;
- :func:`build_chromatic_dataset` (:mod:`.chromatic`) draws the same population in several
  bands (HST/ACS F435W, F606W, F814W by default), each component with its own redshifted SED
  so that galaxies have colour gradients, each band with its own PSF and noise;
- :func:`build_cosmos_dataset` (:mod:`.cosmos`) draws real HST/ACS COSMOS galaxies from GalSim
  RealGalaxyCatalog files, each with its own PSF and noise, as in Lanusse et al. (2021, MNRAS
  504, 5543), with exact augmentations (orientations, sub-pixel shifts) and a held-out split.

:func:`read_dataset_metadata`, :func:`load_arrays` and :func:`make_tf_dataset` read them back.
"""

from galsim_hub.training.datasets.chromatic import build_chromatic_dataset
from galsim_hub.training.datasets.cosmos import CosmosFilesNotFoundError, build_cosmos_dataset, read_holdout
from galsim_hub.training.datasets.drawing import (
    COSMOS_NOISE_SIGMA,
    COSMOS_ZERO_POINT,
    draw_psf_array,
    flux_radius_pixels,
    hst_psf,
)
from galsim_hub.training.datasets.shards import load_arrays, make_tf_dataset, read_dataset_metadata
from galsim_hub.training.datasets.synthetic import (
    build_synthetic_dataset,
    sample_synthetic_parameters,
    synthetic_galaxy_profiles,
)

__all__ = [
    "COSMOS_ZERO_POINT",
    "COSMOS_NOISE_SIGMA",
    "CosmosFilesNotFoundError",
    "hst_psf",
    "draw_psf_array",
    "flux_radius_pixels",
    "sample_synthetic_parameters",
    "synthetic_galaxy_profiles",
    "build_synthetic_dataset",
    "build_chromatic_dataset",
    "build_cosmos_dataset",
    "read_holdout",
    "read_dataset_metadata",
    "load_arrays",
    "make_tf_dataset",
]
