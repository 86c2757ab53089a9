"""The ``galsim-hub`` command line (also ``python -m galsim_hub``).

::

    galsim-hub list | info HANDLE | fetch HANDLE | cache list|clear [KEY ...]
    galsim-hub sample HANDLE [--catalog CAT.fits] --out OUT.fits [--n N] [--seed S] [--psf FWHM] ...
    galsim-hub publish MODEL_DIR --hub DIR_OR_URL [--name NAME] [--version VERSION]
    galsim-hub dataset | train | export --config CFG.yaml --work-dir DIR ...
    galsim-hub validate | aegis | diagnose MODEL ... ;  galsim-hub curve --work-dir DIR --out PNG

One exit-status policy for every command:

- 0 success (a closed output pipe, ``galsim-hub list | head``, is success too);
- 1 an error the user can fix (bad input, missing file, network, unsafe archive, a full disk
  while training...), printed as one line ``galsim-hub: error: ...``;
- 2 a usage error (unknown command or option, malformed value), printed by argparse with the usage;
- 3 ``validate --strict`` when a validation target fails;
- 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from galsim_hub import __version__
from galsim_hub.cli import hub_commands, sample_command, training_commands
from galsim_hub.cli.training_commands import EXIT_TARGETS_FAILED
from galsim_hub.errors import GalSimHubError

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_TARGETS_FAILED", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's own status for usage errors
EXIT_INTERRUPTED = 130
#: Commands whose errors are printed as their first line only (TensorFlow's messages run long).
_TRAINING = ("dataset", "train", "export")


def build_parser(prog: str = "galsim-hub") -> argparse.ArgumentParser:
    """The argument parser of ``galsim-hub``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Deep generative galaxy models for GalSim: list, fetch, sample, publish, train, validate.",
    )
    parser.add_argument("--version", action="version", version=f"galsim-hub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    hub_commands.add_commands(commands)
    sample_command.add_command(commands)
    training_commands.add_commands(commands)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None, prog: str = "galsim-hub") -> int:
    """Run ``galsim-hub``; return the exit status."""
    args = build_parser(prog).parse_args(argv)
    try:
        status = args.func(args)
    except BrokenPipeError:
        # The reader went away (e.g. `galsim-hub info ... | head`): not an error of ours.
        sys.stderr.close()
        return EXIT_OK
    except FileExistsError as exc:
        print(f"galsim-hub: error: {_one_line(exc)}; rerun with --overwrite to replace it", file=sys.stderr)
        return EXIT_ERROR
    except (GalSimHubError, OSError, ValueError) as exc:
        print(f"galsim-hub: error: {_one_line(exc) if args.command in _TRAINING else exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("galsim-hub: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # TensorFlow's errors (e.g. a full disk while checkpointing)
        if type(exc).__module__.startswith("tensorflow"):
            print(f"galsim-hub: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
            return EXIT_ERROR
        raise
    return EXIT_OK if status is None else int(status)
