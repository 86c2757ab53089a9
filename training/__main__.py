"""Command line of the training pipeline.

Usage::

    python -m galsim_hub.training dataset  --config CFG.yaml --work-dir DIR
    python -m galsim_hub.training vae      --config CFG.yaml --work-dir DIR [--no-resume] [--heldout-data DIR]
    python -m galsim_hub.training flow     --config CFG.yaml --work-dir DIR [--no-resume]
    python -m galsim_hub.training export   --config CFG.yaml --work-dir DIR [--out MODEL_DIR]
    python -m galsim_hub.training all      --config CFG.yaml --work-dir DIR [--out MODEL_DIR]
    python -m galsim_hub.training validate ...   (see ``validate --help``)
    python -m galsim_hub.training aegis MODEL --aegis-dir DIR --out DIR   (see ``aegis --help``)
    python -m galsim_hub.training diagnose MODEL --data DIR --out DIR    (VAE or flow? see ``diagnose --help``)
    python -m galsim_hub.training curve --work-dir DIR --out loss_curve.png   (training and held-out loss)

``flow`` encodes the training set with the trained VAE first (``DIR/latents.npz``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from galsim_hub.errors import GalSimHubError

STAGES = ("dataset", "vae", "flow", "export", "all")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m galsim_hub.training",
        usage="%(prog)s {dataset,vae,flow,export,all} --config CFG --work-dir DIR [options]\n"
              "       %(prog)s validate MODEL --data DIR --out DIR [options]  (see validate --help)\n"
              "       %(prog)s aegis MODEL --aegis-dir DIR --out DIR [options]  (see aegis --help)\n"
              "       %(prog)s diagnose MODEL --data DIR --out DIR [options]  (see diagnose --help)\n"
              "       %(prog)s curve --work-dir DIR --out loss_curve.png  (see curve --help)",
        description="Train, export and validate galsim-hub generative galaxy models.",
    )
    parser.add_argument("stage", choices=STAGES, help="what to run")
    parser.add_argument("--config", required=True, help="training config (YAML or JSON)")
    parser.add_argument("--work-dir", required=True, help="directory of data, checkpoints and histories")
    parser.add_argument("--out", help="exported model directory (default WORK_DIR/export/NAME)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start training from scratch, deleting the stage's checkpoints")
    parser.add_argument("--overwrite", action="store_true",
                        help="rebuild an existing data set / replace an existing export")
    parser.add_argument("--heldout-data", metavar="DIR",
                        help="vae/all: a held-out data set whose loss is recorded at every "
                             "checkpoint (WORK_DIR/vae_heldout.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stage of the pipeline; return the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "validate":
        from galsim_hub.training.validation.morphology import main as validate_main

        return validate_main(argv[1:])
    if argv and argv[0] == "curve":
        from galsim_hub.training.fitting.curves import main as curve_main

        return curve_main(argv[1:])
    if argv and argv[0] == "diagnose":
        from galsim_hub.training.validation.diagnosis import main as diagnose_main

        return diagnose_main(argv[1:])
    if argv and argv[0] == "aegis":
        from galsim_hub.training.validation.aegis import main as aegis_main

        return aegis_main(argv[1:])
    args = _parser().parse_args(argv)
    from galsim_hub.backends.tf_quiet import import_tensorflow

    import_tensorflow()  # before the training modules import it: without the CPU-only start-up lines
    from galsim_hub.training.fitting import train
    from galsim_hub.training.fitting.config import load_config

    progress = False if args.quiet else None
    work_dir = Path(args.work_dir)
    try:
        if work_dir.exists() and not work_dir.is_dir():
            raise GalSimHubError(f"--work-dir {work_dir} is a file; give a folder (it is created if missing)")
        config = load_config(args.config)
        dataset_dir = train.dataset_path(config, work_dir)
        out_dir = Path(args.out) if args.out else work_dir / "export" / config.export.name
        if args.stage == "dataset":
            print(train.build_dataset(config, work_dir, overwrite=args.overwrite, progress=progress))
        elif args.stage == "vae":
            history = train.train_vae(config, dataset_dir, work_dir, resume=not args.no_resume,
                                      progress=progress, heldout_dir=args.heldout_data)
            print(f"VAE trained: final loss {history[-1]['loss']:.6g}" if history else "VAE already trained")
        elif args.stage == "flow":
            train.encode_latents(config, dataset_dir, work_dir)
            history = train.train_flow(config, work_dir, resume=not args.no_resume, progress=progress)
            print(f"flow trained: final loss {history[-1]['loss']:.6g}" if history else "flow already trained")
        elif args.stage == "export":
            print(train.export(config, work_dir, out_dir, dataset_dir=dataset_dir, overwrite=args.overwrite))
        else:
            print(train.run_all(config, work_dir, out_dir, resume=not args.no_resume, progress=progress,
                                heldout_dir=args.heldout_data))
    except FileExistsError as exc:
        print(f"error: {exc}; rerun with --overwrite to replace it", file=sys.stderr)
        return 1
    except (GalSimHubError, OSError, ValueError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # TensorFlow's errors (e.g. a full disk while checkpointing)
        if type(exc).__module__.startswith("tensorflow"):
            print(f"error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
            return 1
        raise
    return 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
