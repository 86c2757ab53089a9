"""Checkpoints, loss histories and progress of a training stage (the VAE or the flow).

A stage's folder holds its TensorFlow checkpoints, ``architecture.json`` (checkpoints of another
architecture are refused) and ``training.json`` (its optimisation settings: a resume with other
ones is refused, :data:`RESUME_SETTINGS`); :class:`TrainingState` runs the steps, records the
losses, saves checkpoints and shows a progress bar.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Callable

import tensorflow as tf

from galsim_hub.errors import GalSimHubError

__all__ = [
    "CheckpointMismatchError",
    "RESUME_SETTINGS",
    "TrainingState",
    "prepare_checkpoint_dir",
    "read_json",
    "write_json",
    "ARCHITECTURE_FILE",
    "SETTINGS_FILE",
]

ARCHITECTURE_FILE = "architecture.json"


class CheckpointMismatchError(GalSimHubError, ValueError):
    """Checkpoints in the work directory belong to another architecture or other settings."""


def _progress_bar(total: int, initial: int, description: str, progress: bool | None):
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else bool(progress)
    return tqdm(total=total, initial=initial, desc=description, disable=not show, dynamic_ncols=True)


def read_json(path: Path):
    """The JSON content of ``path``, or None when there is no such file."""
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: Path, value) -> None:
    """Write ``value`` as JSON to ``path`` through a temporary file (never half-written)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True))
    tmp.replace(path)


#: The optimisation settings a resumed run must share with its checkpoints (``steps`` and
#: ``checkpoint_every`` may change: a run is extended by raising ``steps``).
RESUME_SETTINGS = {
    "vae": (
        "optimizer",
        "learning_rate",
        "lr_schedule",
        "warmup_steps",
        "batch_size",
        "free_bits",
        "tv_weight",
        "likelihood",
        "kl_warmup_steps",
        "clip_norm",
        "seed",
    ),
    "flow": ("learning_rate", "lr_schedule", "warmup_steps", "batch_size", "seed"),
}
SETTINGS_FILE = "training.json"


def _check_resume_settings(directory: Path, settings: dict, what: str) -> None:
    """Refuse to resume checkpoints trained with other optimisation settings (nothing is touched)."""
    saved = read_json(directory / SETTINGS_FILE)
    if saved is None:  # checkpoints of an older galsim-hub: record the settings from now on
        write_json(directory / SETTINGS_FILE, settings)
        return
    diffs = [
        f"{key}: checkpoint {saved.get(key)!r} vs config {settings.get(key)!r}"
        for key in sorted(set(saved) | set(settings))
        if saved.get(key) != settings.get(key)
    ]
    if diffs:
        raise CheckpointMismatchError(
            f"the {what} checkpoints in {directory} were trained with other settings ({'; '.join(diffs)}); "
            "resuming would mix two optimisations: restore these values, or start over with --no-resume "
            "(resume=False), or use another work directory"
        )


def prepare_checkpoint_dir(
    directory: Path, architecture: dict, resume: bool, what: str, history_file: Path, settings: dict | None = None
) -> bool:
    """Check or reset ``directory`` for ``architecture``; return whether to restore from it.

    With ``resume`` and checkpoints of another architecture or other optimisation ``settings``
    (:data:`RESUME_SETTINGS`), raise without touching anything. Without ``resume``, existing
    checkpoints and history are removed.
    """
    saved = read_json(directory / ARCHITECTURE_FILE)
    if saved is not None and resume:
        if settings is not None and tf.train.latest_checkpoint(str(directory)) is not None:
            _check_resume_settings(directory, settings, what)
        if saved != architecture:
            diffs = [
                f"{key}: checkpoint {saved.get(key)!r} vs config {architecture.get(key)!r}"
                for key in sorted(set(saved) | set(architecture))
                if saved.get(key) != architecture.get(key)
            ]
            raise CheckpointMismatchError(
                f"the {what} checkpoints in {directory} have another architecture ("
                + "; ".join(diffs)
                + "); use another work directory, or resume=False (--no-resume) to start over"
            )
        return tf.train.latest_checkpoint(str(directory)) is not None
    if directory.exists():
        shutil.rmtree(directory)
    history_file.unlink(missing_ok=True)
    directory.mkdir(parents=True)
    write_json(directory / ARCHITECTURE_FILE, architecture)
    if settings is not None:
        write_json(directory / SETTINGS_FILE, settings)
    return False


def _append_history(history: list, step: int, values: dict) -> None:
    history.append({"step": int(step), **{k: float(x) for k, x in values.items()}})


class TrainingState:
    """Step counter, random generator, checkpoints and loss history of one training stage.

    Parameters
    ----------
    directory : pathlib.Path
        The stage's checkpoint folder.
    history_file : pathlib.Path
        JSON file of the loss history.
    seed : int
        Seed of the stage's random generator (checkpointed, so a resumed run continues its stream).
    restore : bool
        Restore the latest checkpoint and the history before it.
    **trackables
        The objects to checkpoint (the model and its optimizer).
    """

    def __init__(self, directory: Path, history_file: Path, seed: int, restore: bool, **trackables):
        self.step = tf.Variable(0, dtype=tf.int64, name="step")
        self.generator = tf.random.Generator.from_seed(seed)
        checkpoint = tf.train.Checkpoint(step=self.step, generator=self.generator, **trackables)
        self.manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=3)
        self.history_file = history_file
        self.history: list[dict] = []
        if restore:
            checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            self.history = [h for h in (read_json(history_file) or []) if h["step"] < self.start]

    @property
    def start(self) -> int:
        """The next step to run."""
        return int(self.step.numpy())

    def run(
        self,
        run_step: Callable[[int], dict],
        steps: int,
        label: str,
        progress: bool | None,
        log_every: int,
        checkpoint_every: int,
        shown: tuple[str, ...],
        on_checkpoint: Callable[[int], None] | None = None,
    ) -> list[dict]:
        """Call ``run_step(s)`` up to ``steps``, logging, checkpointing and showing progress.

        ``on_checkpoint(step)`` runs after each checkpoint (``step`` steps done).
        """
        bar = _progress_bar(steps, self.start, label, progress)
        try:
            for s in range(self.start, steps):
                values = run_step(s)
                self.step.assign(s + 1)
                if s % log_every == 0 or s == steps - 1:
                    _append_history(self.history, s, values)
                bar.update(1)
                bar.set_postfix({key: f"{values[key]:.4g}" for key in shown}, refresh=False)
                if (s + 1) % checkpoint_every == 0 or s == steps - 1:
                    self.manager.save(checkpoint_number=s + 1)
                    write_json(self.history_file, self.history)
                    if on_checkpoint is not None:
                        on_checkpoint(s + 1)
        finally:
            bar.close()
        write_json(self.history_file, self.history)
        return self.history
