"""What every validation shares, whatever its number of bands: the data set's conditions, the
rows used, the model, its mocks with a band axis, and the figure files.

The single-band validation (:mod:`~galsim_hub.training.validation.morphology`) and the
multi-band one (:mod:`~galsim_hub.training.validation.multiband`) both run through these
helpers; the mocks always come back as ``[N, S, S, B]`` (``B = 1`` for a single-band model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from astropy.table import Table

from galsim_hub.errors import CatalogError, MetadataError

__all__ = [
    "condition_names",
    "held_out_rows",
    "select_rows",
    "open_model",
    "check_model_conditions",
    "sample_mocks",
    "FigureWriter",
    "format_value",
    "markdown_table",
    "jsonable",
    "write_report_files",
]


def condition_names(metadata: Mapping[str, Any]) -> list[str]:
    """The condition columns of a data set's ``dataset.json``, in order."""
    try:
        return [entry["name"] if isinstance(entry, Mapping) else str(entry) for entry in metadata["conditions"]]
    except (KeyError, TypeError) as error:
        raise MetadataError("dataset metadata has no 'conditions' list of {'name': ...} entries") from error


def select_rows(total: int, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """``n`` data set rows drawn at random without replacement, sorted (all of them when ``n`` is None)."""
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(rng.choice(total, size=int(n), replace=False))


def held_out_rows(
    conditions: np.ndarray, names: Sequence[str], n: int | None, seed: int, model: Any
) -> tuple[np.random.Generator, np.ndarray, Table, Any, str]:
    """The validation's generator (seeded with ``seed``), the rows it uses, their condition table, and the model.

    Returns ``(rng, indices, table, model, handle)``: ``rng`` then draws the noise, the bootstrap
    and the model's seed, in the order the validation asks for them.
    """
    rng = np.random.default_rng(seed)
    indices = select_rows(len(conditions), n, rng)
    model, handle = open_model(model)
    return rng, indices, Table(conditions[indices], names=list(names)), model, handle


def open_model(model: Any) -> tuple[Any, str]:
    """A model and its name in reports: a handle is loaded, a loaded model named by its ``file_name``."""
    if isinstance(model, (str, Path)):
        import galsim_hub

        return galsim_hub.GenerativeGalaxyModel(str(model)), str(model)
    return model, getattr(model, "file_name", type(model).__name__)


def check_model_conditions(model: Any, names: Sequence[str], data_dir: Any) -> None:
    """Refuse a model conditioned on a column the data set does not have."""
    missing = [q for q in model.quantities if q not in names]
    if missing:
        raise CatalogError(
            f"the model needs conditions {missing} that data set {data_dir} does not have ({list(names)})"
        )


def sample_mocks(model: Any, conditions: Table, rng: np.random.Generator, out_of_range: str) -> np.ndarray:
    """The model's noise-free mocks of the data set rows, ``[N, S, S, B]`` float64.

    The model's seed is drawn from ``rng`` (never 0, which GalSim takes to mean random).
    """
    seed = int(rng.integers(1, 2**31 - 1))
    mocks = np.asarray(
        model.sample(conditions[list(model.quantities)], seed=seed, return_arrays=True, out_of_range=out_of_range),
        dtype=np.float64,
    )
    if mocks.ndim == 3:  # a single-band model's public shape
        mocks = mocks[..., None]
    if mocks.ndim != 4 or mocks.shape[0] != len(conditions):
        raise ValueError(
            f"model returned stamps of shape {mocks.shape} for {len(conditions)} galaxies, "
            "expected [N, S, S] or [N, S, S, B]"
        )
    return mocks


class FigureWriter:
    """Saves the figures of a report into one folder and remembers their paths."""

    def __init__(self, out_dir: str | Path, dpi: int = 110):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.dpi = dpi
        self.paths: list[Path] = []

    def save(self, fig: Any, name: str) -> Path:
        """Write ``fig`` as ``name`` (tight layout) and close it."""
        import matplotlib.pyplot as plt

        path = self.out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=self.dpi)
        plt.close(fig)
        self.paths.append(path)
        return path


def format_value(value: Any) -> str:
    """A number or value as report tables print it (4 significant digits)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "nan" if not np.isfinite(value) else f"{value:.4g}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table of ``rows`` under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """``value`` (tables, arrays, paths, numpy scalars, NaN -> None) as plain JSON data."""
    if isinstance(value, Table):
        return [{name: jsonable(row[name]) for name in value.colnames} for row in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (str, type(None))):
        return value
    return str(value)


def write_report_files(out_dir: Path, lines: list[str], figures: Sequence[Any], numbers: Mapping[str, Any]) -> Path:
    """Write ``validation.md`` (``lines``, then the figures) and ``validation.json`` (``numbers``); return the former."""
    if figures:
        lines = lines + ["## Figures", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in figures] + [""]
    path = out_dir / "validation.md"
    path.write_text("\n".join(lines))
    (out_dir / "validation.json").write_text(json.dumps(jsonable(numbers), indent=2, allow_nan=False))
    return path
