"""Write the reference pixels of every bundled model (``reference.npz``), for ``test_reference_pixels``.

Run from the repository root: ``python tests/data/reference_pixels/make_reference.py``. The
file was written once, before the single-band and multi-band sampling paths became one, so
that the test shows the merged pipeline gives the same pixels.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

import galsim_hub

HERE = Path(__file__).resolve().parent


def reference_catalog(model: galsim_hub.GenerativeGalaxyModel, n: int = 6) -> dict[str, np.ndarray]:
    """``n`` rows spread over the training range, the last one beyond its upper edge (clipped)."""
    columns = {}
    for condition in model.metadata["conditions"]:
        low, high = float(condition["min"]), float(condition["max"])
        values = np.linspace(low + 0.1 * (high - low), high - 0.1 * (high - low), n)
        values[-1] = high + 0.2 * (high - low)
        columns[condition["name"]] = values
    return columns


def bundled_handles() -> list[str]:
    index = json.loads((Path(galsim_hub.__file__).parent.parent / "hub_models" / "index.json").read_text())
    entries = index["models"] if isinstance(index, dict) else index
    return [f"hub:{e['name']}@{e['version']}" for e in entries if "path" in e]


def main() -> None:
    arrays = {}
    for handle in bundled_handles():
        model = galsim_hub.GenerativeGalaxyModel(handle)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arrays[handle] = model.sample(reference_catalog(model), seed=1234, return_arrays=True)
        print(handle, arrays[handle].shape, float(arrays[handle].sum()))
    np.savez_compressed(HERE / "reference.npz", **arrays)


if __name__ == "__main__":
    main()
