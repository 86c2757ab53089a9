"""``python -m galsim_hub.training``: an alias of the training commands of ``galsim-hub``.

``python -m galsim_hub.training validate ...`` is ``galsim-hub validate ...``, and so for
``dataset``, ``export``, ``aegis``, ``diagnose`` and ``curve``; the stage names of earlier
releases stay: ``vae``, ``flow`` and ``all`` are ``galsim-hub train --stage vae|flow|all``.
See :mod:`galsim_hub.cli.training_commands`.
"""

from __future__ import annotations

import sys
from typing import Sequence

#: Stage names of earlier releases and the ``galsim-hub`` command each one is.
STAGE_ALIASES = {
    "vae": ["train", "--stage", "vae"],
    "flow": ["train", "--stage", "flow"],
    "all": ["train", "--stage", "all"],
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one training command; return the process exit status."""
    from galsim_hub.cli import main as cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STAGE_ALIASES:
        argv = STAGE_ALIASES[argv[0]] + argv[1:]
    return cli_main(argv, prog="python -m galsim_hub.training")


if __name__ == "__main__":
    sys.exit(main())
