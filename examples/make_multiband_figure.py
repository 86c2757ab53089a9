"""``docs/images/three_band_field.png``: the three-band field of ``three_band_field.yaml`` in colour.

Runs ``examples/three_band_field.yaml`` once per band (F435W, F606W, F814W) through GalSim's
config API, exactly as ``galsim examples/three_band_field.yaml eval_variables.sband=BAND`` does,
and shows the three images as the blue, green and red channels of one picture (an asinh stretch,
the same for every band in units of its noise rms), beside the F814W image alone.

Usage (from the repository root)::

    python examples/make_multiband_figure.py [--out docs/images/three_band_field.png]
"""

from __future__ import annotations

import argparse
import copy
import warnings
from pathlib import Path

import galsim
import galsim.config
import numpy as np
import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
BANDS = ("f435w", "f606w", "f814w")


def draw_bands(config_path: Path) -> dict[str, np.ndarray]:
    """``{band: image array}`` of the field, one config run per band."""
    with open(config_path) as stream:
        config = yaml.safe_load(stream)
    images = {}
    for band in BANDS:
        run = copy.deepcopy(config)
        run["eval_variables"]["sband"] = band
        run["input"]["catalog"]["dir"] = str(REPOSITORY / run["input"]["catalog"]["dir"])
        galsim.config.ImportModules(run)  # modules: [galsim_hub] registers GenerativeGalaxy
        images[band] = galsim.config.BuildImage(run).array
    return images


def colour_picture(images: dict[str, np.ndarray], noise: dict[str, float]) -> np.ndarray:
    """An ``[ny, nx, 3]`` RGB array: F814W red, F606W green, F435W blue, asinh-stretched."""
    channels = [np.arcsinh(images[band] / (2 * noise[band])) for band in ("f814w", "f606w", "f435w")]
    top = np.percentile(np.stack(channels), 99.7)
    return np.clip(np.stack(channels, axis=-1) / top, 0.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "images" / "three_band_field.png")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    warnings.simplefilter("ignore")  # a few catalog rows lie just outside the range: clipped, as users get them
    images = draw_bands(REPOSITORY / "examples" / "three_band_field.yaml")
    noise = {band: float(np.std(image[:40, :40])) for band, image in images.items()}  # an empty corner
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
    axes[0].imshow(colour_picture(images, noise), origin="lower")
    axes[0].set_title("F435W, F606W, F814W as blue, green, red")
    axes[1].imshow(np.arcsinh(images["f814w"] / (2 * noise["f814w"])), origin="lower", cmap="gray")
    axes[1].set_title("F814W")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle('hub:synthetic_chromatic: one morphology in three bands (20" x 20" at 0.05"/px)')
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
