"""Constants shared by the library, the GalSim config types and the command line (no imports)."""

#: GalSim seeds are C++ longs: the largest seed a user can give.
MAX_SEED = 2**63 - 1
#: Galaxies decoded per model call by ``GenerativeGalaxyModel`` and ``galsim-hub sample``.
DEFAULT_BATCH_SIZE = 256
#: Objects decoded per model call by the ``generative_model`` config input.
DEFAULT_BLOCK_SIZE = 64
#: What ``sample`` does with conditions outside a model's training range (see ``galsim_hub.sampling.plan``).
OUT_OF_RANGE_POLICIES = ("clip", "error", "extrapolate")
DEFAULT_OUT_OF_RANGE = "clip"
