"""galsim-hub galaxies in other simulation tools: :mod:`galsim_hub.clients.btk` (BlendingToolKit).

Each client module imports its tool, so importing this package imports none of them.
"""
