"""``galsim-hub dataset | train | export | upgrade | validate | aegis | diagnose | curve``: the training pipeline.

Usage::

    galsim-hub dataset  --config CFG.yaml --work-dir DIR [--overwrite] [--part I/N | --merge]
    galsim-hub train    --config CFG.yaml --work-dir DIR [--stage vae|flow|all] [--no-resume] [--heldout-data DIR]
                        [--distribute none|mirrored|multi-worker] [--cpu-replicas N]
    galsim-hub export   --config CFG.yaml --work-dir DIR [--out MODEL_DIR] [--overwrite]
    galsim-hub upgrade  MODEL_DIR OUT [--overwrite]          (format 1/2 -> 3)
    galsim-hub validate MODEL --data DIR --out DIR [options]
    galsim-hub aegis    MODEL --aegis-dir DIR --out DIR [options]
    galsim-hub diagnose MODEL --data DIR --out DIR        (VAE or flow?)
    galsim-hub curve    --work-dir DIR --out loss_curve.png

``train --stage all`` (the default) builds the data set, trains the VAE and the flow and exports
the model; ``flow`` encodes the training set with the trained VAE first (``DIR/latents.npz``).
These commands need ``pip install galsim-hub[training]``; ``python -m galsim_hub.training`` is
an alias of them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from galsim_hub.constants import DEFAULT_OUT_OF_RANGE, OUT_OF_RANGE_POLICIES
from galsim_hub.errors import GalSimHubError

#: Exit status of ``validate --strict`` when a validation target fails.
EXIT_TARGETS_FAILED = 3
TRAIN_STAGES = ("vae", "flow", "all")
#: The --distribute choices (galsim_hub.training.fitting.distribute.STRATEGIES, without importing TensorFlow).
STRATEGIES = ("none", "mirrored", "multi-worker")


def _pipeline(args: argparse.Namespace):
    """The training modules (TensorFlow imported without its CPU-only start-up lines), config and paths."""
    from galsim_hub.backends.tf_quiet import import_tensorflow

    import_tensorflow()
    from galsim_hub.training.fitting import train
    from galsim_hub.training.fitting.config import load_config

    work_dir = Path(args.work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise GalSimHubError(f"--work-dir {work_dir} is a file; give a folder (it is created if missing)")
    config = load_config(args.config)
    out_dir = Path(args.out) if getattr(args, "out", None) else work_dir / "export" / config.export.name
    return train, config, work_dir, train.dataset_path(config, work_dir), out_dir


def cmd_dataset(args: argparse.Namespace) -> int:
    """Build the training data set of a config, whole or one part of it; or merge its parts."""
    from galsim_hub.training.datasets.shards import Part, merge_parts

    if args.merge and (args.part or args.overwrite):
        raise GalSimHubError("--merge completes a data set built with --part: give it alone")
    part = Part.parse(args.part) if args.part else None
    train, config, work_dir, dataset_dir, _ = _pipeline(args)
    if args.merge:
        print(merge_parts(dataset_dir))
        return 0
    progress = False if args.quiet else None
    out = train.build_dataset(config, work_dir, overwrite=args.overwrite, progress=progress, part=part)
    if part is not None:
        print(f"{out}: part {part.number}/{part.of} written; when every part is, run `galsim-hub dataset --merge`")
    else:
        print(out)
    return 0


def _strategy(args: argparse.Namespace):
    """The distribution strategy of ``--distribute`` (created before TensorFlow runs anything)."""
    if args.distribute == "none" and args.cpu_replicas is None:
        return None
    if args.stage == "flow":
        raise GalSimHubError(
            "--distribute applies to the VAE stage (--stage vae or all); the flow trains on one device"
        )
    from galsim_hub.backends.tf_quiet import import_tensorflow

    import_tensorflow()
    from galsim_hub.training.fitting.distribute import make_strategy

    return make_strategy(args.distribute, args.cpu_replicas)


def cmd_train(args: argparse.Namespace) -> int:
    """Train the VAE, the flow, or everything from the data set to the exported model."""
    strategy = _strategy(args)
    train, config, work_dir, dataset_dir, out_dir = _pipeline(args)
    progress = False if args.quiet else None
    if args.stage == "vae":
        history = train.train_vae(
            config,
            dataset_dir,
            work_dir,
            resume=not args.no_resume,
            progress=progress,
            heldout_dir=args.heldout_data,
            strategy=strategy,
        )
        print(f"VAE trained: final loss {history[-1]['loss']:.6g}" if history else "VAE already trained")
    elif args.stage == "flow":
        train.encode_latents(config, dataset_dir, work_dir)
        history = train.train_flow(config, work_dir, resume=not args.no_resume, progress=progress)
        print(f"flow trained: final loss {history[-1]['loss']:.6g}" if history else "flow already trained")
    else:
        out = train.run_all(
            config,
            work_dir,
            out_dir,
            resume=not args.no_resume,
            progress=progress,
            heldout_dir=args.heldout_data,
            strategy=strategy,
        )
        print(out if out is not None else "VAE trained on this worker; the chief trains the flow and exports")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a trained VAE decoder and flow as a galsim-hub model."""
    train, config, work_dir, dataset_dir, out_dir = _pipeline(args)
    print(train.export(config, work_dir, out_dir, dataset_dir=dataset_dir, overwrite=args.overwrite))
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    """Re-export a format-1/2 model directory as format 3 (adds model.keras for the JAX and PyTorch backends)."""
    from galsim_hub.backends.tf_quiet import import_tensorflow

    import_tensorflow()
    from galsim_hub.training.fitting.upgrade import upgrade_model

    print(upgrade_model(args.model_dir, args.out, overwrite=args.overwrite))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a model against a held-out data set (any number of bands)."""
    from galsim_hub.training.validation.morphology import run_validation
    from galsim_hub.training.validation.report import targets_markdown

    results = run_validation(
        args.model,
        args.data,
        args.out,
        n=args.n,
        seed=args.seed,
        n_jobs=args.jobs,
        n_morph=args.n_morph,
        train_data=args.train_data,
        n_bootstrap=args.bootstrap,
        out_of_range=args.out_of_range,
    )
    print(targets_markdown(results["targets"]))
    print(f"\nreport: {results['report']}")
    failed = not all(target["passed"] for target in results["targets"])
    return EXIT_TARGETS_FAILED if args.strict and failed else 0


def cmd_aegis(args: argparse.Namespace) -> int:
    """The real two-band sanity check of a multi-band model on GalSim's AEGIS galaxies."""
    from galsim_hub.training.validation.aegis import aegis_markdown, run_aegis_check

    table = run_aegis_check(
        args.model,
        args.aegis_dir,
        args.out,
        data=args.data,
        n_mocks=args.n_mocks,
        seed=args.seed,
        correlated=not args.white_noise,
    )
    print(f"conditions AEGIS lacks: {table.meta['filled']}")
    print(aegis_markdown(table))
    print(f"\nreport: {Path(args.out) / 'aegis.md'}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Tell whether a model's roundness, size and flux biases come from its VAE or its flow."""
    from galsim_hub.training.validation.diagnosis import diagnose, diagnosis_markdown

    result = diagnose(args.model, args.data, seed=args.seed, n_bootstrap=args.bootstrap)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = diagnosis_markdown(result)
    (out / "diagnosis.md").write_text(f"# Diagnosis: {result['metadata']['model']}\n\n" + text)
    (out / "diagnosis.json").write_text(
        json.dumps(
            {
                "metadata": result["metadata"],
                "samples": [dict(zip(result["table"].colnames, map(_plain, row))) for row in result["table"]],
                "flux_bins": result["flux_bins"],
            },
            indent=2,
        )
        + "\n"
    )
    print(text)
    return 0


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def cmd_curve(args: argparse.Namespace) -> int:
    """Draw the training and held-out VAE loss of a work directory."""
    from galsim_hub.training.fitting.curves import plot_loss_curve

    print(plot_loss_curve(args.work_dir, args.out, args.window, args.title))
    return 0


def _pipeline_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--config", required=True, help="training config (YAML or JSON)")
    sub.add_argument("--work-dir", required=True, help="directory of data, checkpoints and histories")
    sub.add_argument("--quiet", action="store_true", help="no progress bars")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the training pipeline's commands to the command line."""
    sub = commands.add_parser("dataset", help="build the training data set of a config")
    _pipeline_arguments(sub)
    sub.add_argument("--overwrite", action="store_true", help="rebuild an existing data set")
    sub.add_argument(
        "--part",
        metavar="I/N",
        help="build only part I of N (shards I-1, I-1+N, ...), one job of N; the same bytes as one run "
        "once --merge has run",
    )
    sub.add_argument(
        "--merge",
        action="store_true",
        help="check that every part of a data set built with --part is there and complete it",
    )
    sub.set_defaults(func=cmd_dataset)

    sub = commands.add_parser("train", help="train a model: the VAE, the flow, or all (data set to export)")
    _pipeline_arguments(sub)
    sub.add_argument(
        "--stage",
        choices=TRAIN_STAGES,
        default="all",
        help="vae, flow, or all: data set, VAE, flow and export (default)",
    )
    sub.add_argument("--out", help="all: exported model directory (default WORK_DIR/export/NAME)")
    sub.add_argument(
        "--no-resume", action="store_true", help="start training from scratch, deleting the stage's checkpoints"
    )
    sub.add_argument(
        "--heldout-data",
        metavar="DIR",
        help="vae/all: a held-out data set whose loss is recorded at every checkpoint (WORK_DIR/vae_heldout.json)",
    )
    sub.add_argument(
        "--distribute",
        choices=STRATEGIES,
        default="none",
        help="train the VAE data-parallel: mirrored (this machine's GPUs, or --cpu-replicas) or multi-worker "
        "(the machines of TF_CONFIG, each with its own --work-dir); the same weights as one device",
    )
    sub.add_argument(
        "--cpu-replicas",
        type=int,
        metavar="N",
        help="with --distribute mirrored: split the CPU into N devices (machines without an accelerator)",
    )
    sub.set_defaults(func=cmd_train)

    sub = commands.add_parser("export", help="export a trained model (decoder + flow + metadata)")
    _pipeline_arguments(sub)
    sub.add_argument("--out", help="exported model directory (default WORK_DIR/export/NAME)")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing export")
    sub.set_defaults(func=cmd_export)

    sub = commands.add_parser(
        "upgrade", help="re-export a format-1/2 model as format 3 (for the jax and torch backends)"
    )
    sub.add_argument("model_dir", help="a galsim-hub model directory of format 1 or 2")
    sub.add_argument("out", help="the format-3 model directory to write")
    sub.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    sub.set_defaults(func=cmd_upgrade)

    sub = commands.add_parser("validate", help="validate a model against a held-out data set")
    sub.add_argument("model", help="model handle (hub:NAME, URL, directory or archive)")
    sub.add_argument("--data", required=True, help="held-out data set directory (galsim-hub dataset)")
    sub.add_argument("--out", required=True, help="output directory for figures and the report")
    sub.add_argument("--n", type=int, default=None, help="number of galaxies (default: all)")
    sub.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sub.add_argument("--jobs", type=int, default=1, help="processes for statmorph (default: 1)")
    sub.add_argument(
        "--n-morph",
        type=int,
        default=None,
        help="galaxies measured with statmorph (default: all; multi-band data sets: none)",
    )
    sub.add_argument("--train-data", default=None, help="the model's training data set: adds the memorisation check")
    sub.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples for the uncertainties")
    sub.add_argument(
        "--out-of-range",
        choices=OUT_OF_RANGE_POLICIES,
        default=DEFAULT_OUT_OF_RANGE,
        help="the model's policy for galaxies outside its training range (default: clip)",
    )
    sub.add_argument(
        "--strict", action="store_true", help=f"exit with status {EXIT_TARGETS_FAILED} when a target fails"
    )
    sub.set_defaults(func=cmd_validate)

    sub = commands.add_parser("aegis", help="real two-band check of a multi-band model on GalSim's AEGIS galaxies")
    sub.add_argument("model", help="multi-band model handle (hub:NAME, URL, directory or archive)")
    sub.add_argument(
        "--aegis-dir",
        required=True,
        help="folder of AEGIS_F606w_catalog.fits, AEGIS_F814w_catalog.fits and their files",
    )
    sub.add_argument("--out", required=True, help="output directory for aegis.md and aegis.json")
    sub.add_argument(
        "--data",
        default=None,
        help="a data set of the model's conditions (training or held-out) "
        "to fill the conditions AEGIS lacks (default: condition_mean)",
    )
    sub.add_argument("--n-mocks", type=int, default=20, help="mocks per galaxy (default: 20)")
    sub.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    sub.add_argument(
        "--white-noise", action="store_true", help="white mock noise instead of the real correlated ACS noise"
    )
    sub.set_defaults(func=cmd_aegis)

    sub = commands.add_parser("diagnose", help="do a model's biases come from its VAE or its flow?")
    sub.add_argument("model", help="model handle or directory (exported with an encoder)")
    sub.add_argument("--data", required=True, help="held-out COSMOS data set directory")
    sub.add_argument("--out", required=True, help="directory for diagnosis.md and diagnosis.json")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--bootstrap", type=int, default=500)
    sub.set_defaults(func=cmd_diagnose)

    sub = commands.add_parser("curve", help="draw the training and held-out VAE loss of a work directory")
    sub.add_argument("--work-dir", required=True)
    sub.add_argument("--out", required=True, help="PNG file to write")
    sub.add_argument("--window", type=int, default=500, help="running-median window of the training loss")
    sub.add_argument("--title", default="")
    sub.set_defaults(func=cmd_curve)
