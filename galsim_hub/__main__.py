"""``python -m galsim_hub``: the ``galsim-hub`` command line."""
import sys

from .cli import main

sys.exit(main())
