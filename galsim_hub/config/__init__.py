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
      flux_radius: {type: Random, min: 2, max: 8}

Batching. The galaxies of an image are decoded in blocks of ``batch_size`` consecutive
objects, aligned on the first object of the image. Whichever object of a block is drawn
first evaluates the inputs of every object of its block the way GalSim evaluates them when
it builds that object: in a context with that object's ``obj_num`` and its own rng, seeded as
GalSim seeds it and advanced by the draws GalSim makes before it builds ``gal`` (a Scattered
position, a random PSF). So catalog columns, sequences, ``Random``, ``RandomGaussian``,
``RandomDistribution`` and expressions of ``obj_num`` are batched. The base noise of each galaxy
is drawn from a generator seeded from its own object seed. When GalSim then builds each object,
its own condition values are compared with those its block used; an object whose values differ
(e.g. a condition that depends on the stamp position, which the block cannot know) is decoded on
its own, and GalSim's logger says so once. The inputs of a block, hence its pixels, do not depend
on which process draws it, so ``nproc: 1``, ``nproc: 4`` and ``galsim -n N -j J`` give identical
pixels.

Out-of-range conditions. The ``out_of_range`` option of ``gal`` (``clip`` by default, or
``error``, ``extrapolate``; :mod:`galsim_hub.sampling.plan`) is applied where the block is decoded, to each
object with a condition outside the model's training range; ``flux`` works as for any GalSim type.

Processes. The input object is a :class:`galsim_hub.GenerativeGalaxyModel` that loads
TensorFlow on its first decoding. With ``nproc > 1`` GalSim keeps it in its input-manager
process, forked before any TensorFlow starts: that one process decodes each block once (it
caches the blocks it decoded, so workers that need the same block share it) and also finds the
``maxk`` of the block's ``InterpolatedImage`` objects in one batched FFT. The drawing workers
only evaluate inputs, build the objects and draw them; a GPU sits in the same place, one
decoding process feeding the CPU workers.

Multi-band models. With a model that has ``bands`` (format 2) the object is the galaxy's
chromatic object (:attr:`galsim_hub.MultiBandGalaxy.chromatic`), which GalSim draws through the
``bandpass`` of the image field; drawn through one of the model's bands it is that band's
image, so a run per band gives every band with the same morphology. When nothing else in the
stamp depends on wavelength (the object's PSF is achromatic, no photon operators, no sensor,
no photon shooting), the object is instead the chromatic object already integrated over the
image's bandpass (:meth:`galsim_hub.MultiBandGalaxy.through`): the same pixels, drawn with
one FFT instead of one per band.
"""

from galsim_hub.config.gsobject_generative_galaxy import UPSTREAM_OBJECT_TYPE, BuildGenerativeGalaxy
from galsim_hub.config.input_generative_model import (
    DEFAULT_BLOCK_SIZE,
    INPUT_TYPE,
    OBJECT_TYPE,
    GenerativeModelInput,
    GenerativeModelLoader,
)

__all__ = [
    "GenerativeModelInput",
    "GenerativeModelLoader",
    "BuildGenerativeGalaxy",
    "INPUT_TYPE",
    "OBJECT_TYPE",
    "UPSTREAM_OBJECT_TYPE",
    "DEFAULT_BLOCK_SIZE",
]
