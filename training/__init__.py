"""Training, validation and export of galsim-hub models (``pip install galsim-hub[training]``).

Installed as :mod:`galsim_hub.training`. Submodules import TensorFlow; this package does not.
"""
