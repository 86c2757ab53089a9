"""The loss curve of a training run: training and held-out VAE loss (negative ELBO) against steps.

Reads ``WORK_DIR/vae_history.json`` (the loss of every training step) and, when the run was
given ``--heldout-data``, ``WORK_DIR/vae_heldout.json`` (the held-out loss at every
checkpoint), and draws both; the training loss is shown as its running median over
``window`` steps (single batches are noisy).

Command line::

    python -m galsim_hub.training curve --work-dir DIR --out loss_curve.png [--window N]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from galsim_hub.errors import GalSimHubError

__all__ = ["read_curves", "plot_loss_curve"]

ZOOM_FROM = 0.2


def read_curves(work_dir: str | Path, window: int = 100) -> dict[str, np.ndarray]:
    """The training and held-out loss of a work directory.

    Returns
    -------
    dict
        ``train_step``, ``train_loss`` (running median over ``window`` steps), and, when
        recorded, ``heldout_step``, ``heldout_loss``.

    Raises
    ------
    GalSimHubError
        When the work directory has no VAE loss history.
    """
    work_dir = Path(work_dir)
    try:
        history = json.loads((work_dir / "vae_history.json").read_text())
    except (OSError, ValueError) as error:
        raise GalSimHubError(f"{work_dir} has no readable vae_history.json: train the VAE there first") from error
    steps = np.array([h["step"] for h in history], dtype=float)
    losses = np.array([h["loss"] for h in history], dtype=float)
    half = max(1, window // 2)
    smooth = np.array([np.median(losses[max(0, i - half) : i + half + 1]) for i in range(len(losses))])
    curves = {"train_step": steps, "train_loss": smooth}
    heldout_file = work_dir / "vae_heldout.json"
    if heldout_file.is_file():
        heldout = json.loads(heldout_file.read_text())
        curves["heldout_step"] = np.array([h["step"] for h in heldout], dtype=float)
        curves["heldout_loss"] = np.array([h["loss"] for h in heldout], dtype=float)
    return curves


def plot_loss_curve(work_dir: str | Path, out: str | Path, window: int = 500, title: str = "") -> Path:
    """Draw :func:`read_curves` into ``out`` (PNG) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = read_curves(work_dir, window)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(
        curves["train_step"],
        curves["train_loss"],
        color="tab:blue",
        label=f"training (running median of {window} batches)",
    )
    if "heldout_step" in curves:
        ax.plot(
            curves["heldout_step"],
            curves["heldout_loss"],
            "o-",
            color="tab:orange",
            label="held-out galaxies (every checkpoint)",
        )
    # The first steps fall from ~1e5 nats; the frame shows the rest, where convergence is judged.
    late = curves["train_step"] >= ZOOM_FROM * curves["train_step"].max()
    values = np.concatenate(
        [curves["train_loss"][late]]
        + (
            [curves["heldout_loss"][curves["heldout_step"] >= ZOOM_FROM * curves["train_step"].max()]]
            if "heldout_step" in curves
            else []
        )
    )
    low, high = np.percentile(values, [0.5, 99.5])
    margin = 0.1 * (high - low)
    ax.set_ylim(low - margin, high + margin)
    ax.set_xlabel(f"VAE step (the first {ZOOM_FROM:.0%} of the steps start above the frame)")
    ax.set_ylabel("loss = -ELBO per galaxy (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
