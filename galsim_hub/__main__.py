"""``python -m galsim_hub``: the ``galsim-hub`` command line."""

import sys

from galsim_hub.cli import main

sys.exit(main())
