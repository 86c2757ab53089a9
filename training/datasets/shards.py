"""On-disk format of training data sets (format 1): writing shards, reading them back.

Format 1
--------
A data set is a directory holding ``dataset.json`` and ``shard-NNNNN.npz`` files. Each shard
holds, for ``n`` galaxies on ``S x S`` stamps:

``image`` : float32 ``[n, S, S]``
    The noisy, PSF-convolved stamp, in the flux units of the metadata.
``psf`` : float32 ``[n, S, S]``
    The PSF at the same pixel scale, drawn without a further pixel convolution, normalised to
    unit sum and centred on pixel ``(S // 2, S // 2)``, so that ``image`` is (up to noise and
    stamp edges) the discrete convolution of the pixelised profile with ``psf``.
``noise_var`` : float32 ``[n]``
    The pixel noise variance.
``noise_ps`` : float32 ``[n, S, S // 2 + 1]``
    The noise power spectrum in :func:`numpy.fft.rfft2` layout, normalised so that white noise
    of variance ``v`` has ``noise_ps == v`` everywhere: ``E|rfft2(noise)|**2 / S**2``.
``conditions`` : float32 ``[n, C]``
    The condition columns, in the order of ``dataset.json``.
``ident`` : int64 ``[n]``
    The galaxy identifier (the COSMOS ``IDENT``, or the running index of synthetic galaxies).
``truth``, ``truth_smooth`` : float32 ``[n, S, S]`` (synthetic data only)
    The noiseless profile convolved with the pixel only (what a decoder output stands for when
    it is read as a `galsim.InterpolatedImage`), and the same galaxy without its knots, whose
    flux is given back to the disc (the "parametric" comparison sample for validation).
``parametric`` : float32 ``[n, S, S]``, ``has_parametric`` : bool ``[n]`` (COSMOS, optional)
    The galaxy's COSMOS parametric fit convolved with the pixel only, and whether it has one
    (zeros where not).

Multi-band data sets (``dataset.json`` has ``bands``, listed as in a model's metadata) carry
the band as the last axis of every per-band array: ``image``, ``psf``, ``truth``
``[n, S, S, B]``, ``noise_var`` ``[n, B]``, ``noise_ps`` ``[n, S, S // 2 + 1, B]``.

"""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
from tqdm.auto import tqdm

from galsim_hub._version import __version__
from galsim_hub.errors import MetadataError
from galsim_hub.hub.permissions import follow_umask
from galsim_hub.metadata import validate_bands

__all__ = [
    "DATASET_FORMAT",
    "DATASET_FILE",
    "Part",
    "merge_parts",
    "read_dataset_metadata",
    "load_arrays",
    "make_tf_dataset",
]

#: Version of the data set format (not the model format of galsim_hub.json).
DATASET_FORMAT = 1
#: The metadata file of a data set directory.
DATASET_FILE = "dataset.json"

_ARRAY_DTYPES = {
    "image": np.float32,
    "psf": np.float32,
    "noise_var": np.float32,
    "noise_ps": np.float32,
    "conditions": np.float32,
    "ident": np.int64,
    "truth": np.float32,
    "truth_smooth": np.float32,
    "parametric": np.float32,
    "has_parametric": bool,
    "background": np.float32,
}


def _atomic_write(path: pathlib.Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through a temporary file in the same directory, then rename it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    follow_umask(tmp)
    try:
        with os.fdopen(fd, mode) as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class Part(NamedTuple):
    """Part ``number`` of ``of`` (1-based) of a data set built in several jobs: the shards
    ``s`` with ``s % of == number - 1``."""

    number: int
    of: int

    @classmethod
    def parse(cls, text: str) -> Part:
        """``"i/n"`` (``1 <= i <= n``) as a Part, or a ValueError that says what is expected."""
        index, _, count = str(text).partition("/")
        try:
            part = cls(int(index), int(count))
        except ValueError:
            raise ValueError(f"--part {text!r}: give I/N, this job's part I of N (e.g. 2/8)") from None
        if not 1 <= part.number <= part.of:
            raise ValueError(f"--part {text!r}: I must be from 1 to N")
        return part

    def manifest(self) -> str:
        """The file name of this part's manifest in the data set directory."""
        return f"part-{self.number:05d}-of-{self.of:05d}.json"


class ShardWriter:
    """Collects examples and writes them as shards; ``finish`` writes ``dataset.json``.

    With ``part``, the writer belongs to one job of several (:class:`Part`): it writes only its
    shards (:meth:`selected` tells a builder which examples to draw) and, instead of
    ``dataset.json``, a part manifest; :func:`merge_parts` checks that every part is there and
    writes the ``dataset.json`` a single job would have written, so the directory holds the
    same bytes as one run.
    """

    def __init__(self, out_dir: str | os.PathLike, shard_size: int, overwrite: bool, part: Part | None = None):
        self.out_dir = pathlib.Path(out_dir)
        self.shard_size = shard_size
        self.part = part
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise NotADirectoryError(f"out_dir {str(self.out_dir)!r} exists and is not a directory")
        if part is not None:
            self._prepare_part(overwrite)
        elif self.out_dir.is_dir() and any(self.out_dir.iterdir()):
            leftover = not (self.out_dir / DATASET_FILE).exists() and all(
                p.name.startswith(("shard-", ".shard-")) for p in self.out_dir.iterdir()
            )
            if not (overwrite or leftover):
                raise FileExistsError(
                    f"out_dir {str(self.out_dir)!r} is not empty; pass overwrite=True (--overwrite) to "
                    "replace the data set in it"
                )
            # A build killed before its dataset.json (written last) left only shards: start again.
            for stale in self.out_dir.glob(".shard-*.tmp"):
                stale.unlink()
            # The metadata goes first, so that the directory never looks complete meanwhile.
            (self.out_dir / DATASET_FILE).unlink(missing_ok=True)
            for old in self.out_dir.glob("shard-*.npz"):
                old.unlink()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shards: list[str] = []
        self.n_examples = 0
        self._buffer: list[dict] = []
        self._first_index = 0  # of the buffer's first example in the whole data set
        self._shard_ranges: dict[str, tuple[list[float], list[float], int]] = {}
        self._cond_min: np.ndarray | None = None
        self._cond_max: np.ndarray | None = None

    def _prepare_part(self, overwrite: bool) -> None:
        """Let the other parts' files be; remove what an earlier run of this part left."""
        if (self.out_dir / DATASET_FILE).exists():
            if not overwrite:
                raise FileExistsError(
                    f"out_dir {str(self.out_dir)!r} holds a merged data set; pass overwrite=True (--overwrite) "
                    "to build its parts again"
                )
            (self.out_dir / DATASET_FILE).unlink()
        if self.out_dir.is_dir():
            assert self.part is not None
            (self.out_dir / self.part.manifest()).unlink(missing_ok=True)
            for old in self.out_dir.glob("shard-*.npz"):
                if self._owns(int(old.stem.split("-")[1])):
                    old.unlink()

    def _owns(self, shard: int) -> bool:
        return self.part is None or shard % self.part.of == self.part.number - 1

    def selected(self, n_examples: int) -> list[int]:
        """The example indexes (of ``range(n_examples)``) this writer writes, in order."""
        return [i for i in range(n_examples) if self._owns(i // self.shard_size)]

    def add(self, example: dict, index: int | None = None) -> None:
        """Add the example of index ``index`` in the whole data set (default: the next one)."""
        if not self._buffer:
            self._first_index = self.n_examples if index is None else index
        self._buffer.append(example)
        if len(self._buffer) == self.shard_size:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        arrays = {
            key: np.asarray([ex[key] for ex in self._buffer], dtype=_ARRAY_DTYPES[key]) for key in self._buffer[0]
        }
        cond = arrays["conditions"].astype(np.float64)
        low, high = cond.min(axis=0), cond.max(axis=0)
        self._cond_min = low if self._cond_min is None else np.minimum(self._cond_min, low)
        self._cond_max = high if self._cond_max is None else np.maximum(self._cond_max, high)
        name = f"shard-{self._first_index // self.shard_size:05d}.npz"
        _atomic_write(self.out_dir / name, lambda handle: np.savez(handle, **arrays))  # type: ignore[arg-type]  # numpy's stub types every keyword as allow_pickle
        self.shards.append(name)
        self._shard_ranges[name] = ([float(v) for v in low], [float(v) for v in high], len(self._buffer))
        self.n_examples += len(self._buffer)
        self._buffer = []

    def finish(
        self,
        metadata: dict,
        condition_names: Sequence[str],
        condition_info: Mapping[str, tuple[str, str]],
        n_total: int | None = None,
    ) -> pathlib.Path:
        """Write the last shard and ``dataset.json`` (a part: its manifest); ``condition_info``
        maps a lower-case condition name to its ``(unit, description)``; ``n_total`` is the
        number of examples of the whole data set (needed by parts)."""
        self._flush()
        if self.part is not None:
            manifest = {
                "part": list(self.part),
                "n_total": n_total,
                "shard_size": self.shard_size,
                "metadata": metadata,
                "conditions": _condition_entries(condition_names, condition_info),
                "shards": {name: {"min": lo, "max": hi, "n": n} for name, (lo, hi, n) in self._shard_ranges.items()},
            }
            text = json.dumps(manifest, indent=2) + "\n"
            _atomic_write(self.out_dir / self.part.manifest(), lambda handle: handle.write(text), mode="w")
            return self.out_dir
        if self.n_examples == 0:
            raise ValueError("no galaxy was written: the data set would be empty")
        assert self._cond_min is not None and self._cond_max is not None  # set by the first shard
        return _write_dataset_json(
            self.out_dir,
            metadata,
            _condition_entries(condition_names, condition_info),
            self._cond_min,
            self._cond_max,
            self.n_examples,
            self.shards,
        )


def _condition_entries(
    condition_names: Sequence[str], condition_info: Mapping[str, tuple[str, str]]
) -> list[dict[str, str]]:
    """``name``, ``unit`` and ``description`` of each condition (``condition_info`` by lower-case name)."""
    entries = []
    for name in condition_names:
        unit, description = condition_info.get(name.lower(), ("", f"catalog column {name}"))
        entries.append({"name": name, "unit": unit, "description": description})
    return entries


def _write_dataset_json(
    out_dir: pathlib.Path,
    metadata: dict,
    condition_entries: Sequence[Mapping[str, str]],
    cond_min: Sequence[float] | np.ndarray,
    cond_max: Sequence[float] | np.ndarray,
    n_examples: int,
    shards: Sequence[str],
) -> pathlib.Path:
    conditions = [
        {**entry, "min": float(low), "max": float(high)}
        for entry, low, high in zip(condition_entries, cond_min, cond_max)
    ]
    full = {
        "format": DATASET_FORMAT,
        **metadata,
        "conditions": conditions,
        "n_examples": n_examples,
        "shards": list(shards),
        "created_by": f"galsim-hub {__version__}",
    }
    text = json.dumps(full, indent=2, sort_keys=False) + "\n"
    _atomic_write(out_dir / DATASET_FILE, lambda handle: handle.write(text), mode="w")
    return out_dir


def merge_parts(out_dir: str | os.PathLike) -> pathlib.Path:
    """Check that every part of a data set built in parts is there, then write its ``dataset.json``.

    The result is byte for byte what one job would have written: the same shards and the
    same ``dataset.json`` (condition ranges, counts and shard list over the whole data set).

    Raises
    ------
    MetadataError
        When no part manifest is found, parts are missing or disagree, or a shard is missing.
    """
    out_dir = pathlib.Path(out_dir)
    manifests = sorted(out_dir.glob("part-*-of-*.json"))
    if not manifests:
        raise MetadataError(f"{out_dir} holds no part manifest (part-I-of-N.json): build it with --part I/N first")
    parts = [json.loads(path.read_text()) for path in manifests]
    counts = {tuple(p["part"])[1] for p in parts}
    if len(counts) != 1:
        raise MetadataError(f"{out_dir} holds parts of different splits ({sorted(counts)} parts): rebuild one split")
    count = counts.pop()
    missing = sorted(set(range(1, count + 1)) - {p["part"][0] for p in parts})
    if missing:
        raise MetadataError(
            f"{out_dir}: parts {', '.join(f'{i}/{count}' for i in missing)} are missing; build them before merging"
        )
    first = parts[0]
    for key in ("metadata", "n_total", "shard_size", "conditions"):
        if any(p[key] != first[key] for p in parts):
            raise MetadataError(f"{out_dir}: the parts disagree on {key}: were they built from the same config?")
    shards = {name: info for p in parts for name, info in p["shards"].items()}
    n_shards = math.ceil(first["n_total"] / first["shard_size"])
    names = [f"shard-{i:05d}.npz" for i in range(n_shards)]
    absent = [name for name in names if name not in shards or not (out_dir / name).is_file()]
    extra = sorted(set(shards) - set(names))
    if absent or extra:
        raise MetadataError(
            f"{out_dir}: shards {', '.join((absent or extra)[:5])} are {'missing' if absent else 'not expected'}; "
            f"the data set has {n_shards} shards"
        )
    if not names:
        raise ValueError("no galaxy was written: the data set would be empty")
    low = np.min([shards[name]["min"] for name in names], axis=0)
    high = np.max([shards[name]["max"] for name in names], axis=0)
    n_examples = sum(int(shards[name]["n"]) for name in names)
    _write_dataset_json(out_dir, first["metadata"], first["conditions"], low, high, n_examples, names)
    for path in manifests:
        path.unlink()
    return out_dir


def progress_bar(total: int, progress: bool | None, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="gal", disable=None if progress is None else not progress)


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_layout(stamp_size: Any, pixel_scale: Any, shard_size: Any, seed: Any) -> tuple[int, float, int, int]:
    """Check the arguments every data-set builder takes; return them as ``int, float, int, int``."""
    return (
        check_positive_int("stamp_size", stamp_size, minimum=16),
        check_positive_float("pixel_scale", pixel_scale),
        check_positive_int("shard_size", shard_size),
        check_positive_int("seed", seed, minimum=0),
    )


def check_positive_float(name: str, value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


_REQUIRED_METADATA: dict[str, Any] = {
    "format": int,
    "source": str,
    "stamp_size": int,
    "pixel_scale": (int, float),
    "conditions": list,
    "n_examples": int,
    "shards": list,
    "flux_units": str,
    "zero_point": (int, float),
}
_REQUIRED_CONDITION_FIELDS = ("name", "unit", "description", "min", "max")


def read_dataset_metadata(path: str | os.PathLike) -> dict:
    """Read and validate the ``dataset.json`` of a data set directory.

    Parameters
    ----------
    path : str or os.PathLike
        The data set directory (or its ``dataset.json``).

    Returns
    -------
    dict
        The metadata.

    Raises
    ------
    galsim_hub.errors.MetadataError
        The directory is not a finished format-1 data set, or its metadata are malformed.
    """
    path = pathlib.Path(path)
    metadata_path = path if path.name == DATASET_FILE else path / DATASET_FILE
    if not metadata_path.is_file():
        raise MetadataError(
            f"{str(metadata_path)!r} not found: {str(metadata_path.parent)!r} "
            "is not a data set, or its build did not finish"
        )
    try:
        metadata = json.loads(metadata_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MetadataError(f"{str(metadata_path)!r} is not valid JSON: {err}") from err
    if not isinstance(metadata, dict):
        raise MetadataError(f"{str(metadata_path)!r} must hold a JSON object")
    for key, kind in _REQUIRED_METADATA.items():
        if key not in metadata:
            raise MetadataError(f"{str(metadata_path)!r} lacks the field {key!r}")
        if not isinstance(metadata[key], kind) or isinstance(metadata[key], bool):
            raise MetadataError(
                f"field {key!r} of {str(metadata_path)!r} has the wrong type ({type(metadata[key]).__name__})"
            )
    if metadata["format"] != DATASET_FORMAT:
        raise MetadataError(
            f"{str(metadata_path)!r} has data set format {metadata['format']}; "
            f"this galsim-hub reads format {DATASET_FORMAT}"
        )
    for i, condition in enumerate(metadata["conditions"]):
        if not isinstance(condition, dict) or any(f not in condition for f in _REQUIRED_CONDITION_FIELDS):
            raise MetadataError(
                f"condition {i} of {str(metadata_path)!r} must have the fields {', '.join(_REQUIRED_CONDITION_FIELDS)}"
            )
    if "bands" in metadata:
        validate_bands(metadata["bands"], str(metadata_path))
    missing = [s for s in metadata["shards"] if not (metadata_path.parent / s).is_file()]
    if missing:
        raise MetadataError(f"shards listed in {str(metadata_path)!r} are missing: {', '.join(missing)}")
    return metadata


def _shard_paths(path: str | os.PathLike) -> tuple[dict, list[pathlib.Path]]:
    path = pathlib.Path(path)
    directory = path.parent if path.name == DATASET_FILE else path
    metadata = read_dataset_metadata(directory)
    return metadata, [directory / name for name in metadata["shards"]]


def _check_keys(keys: Iterable[str], available: Iterable[str], path: pathlib.Path) -> list[str]:
    keys, available = list(keys), sorted(available)
    unknown = [k for k in keys if k not in available]
    if unknown:
        raise MetadataError(
            f"the data set {str(path)!r} has no array {', '.join(unknown)}; available: {', '.join(available)}"
        )
    return keys


def check_shard(shard: pathlib.Path, keys: Sequence[str], stamp_size: int) -> dict[str, tuple]:
    """Check a shard from its arrays' headers (nothing else is read); return ``{key: shape}``.

    Raises
    ------
    MetadataError
        Naming the shard: unreadable (truncated, not a ``.npz``), an array missing, empty, of
        another stamp size, or arrays of different lengths.
    """
    import zipfile

    shapes: dict[str, tuple] = {}
    try:
        with zipfile.ZipFile(shard) as archive:
            members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
            for key in keys:
                if key not in members:
                    raise MetadataError(
                        f"the shard {str(shard)!r} has no array {key!r} (it has {', '.join(sorted(members))})"
                    )
                with archive.open(members[key]) as stream:
                    version = np.lib.format.read_magic(stream)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, _ = read_header(stream)
                shapes[key] = tuple(shape)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise MetadataError(
            f"the shard {str(shard)!r} cannot be read ({exc}): truncated or corrupt? Rebuild the data set"
        ) from exc
    lengths = {shape[0] if shape else None for shape in shapes.values()}
    if len(lengths) != 1 or not all(lengths):
        raise MetadataError(
            f"the shard {str(shard)!r} holds arrays of lengths "
            f"{ {k: v[0] if v else None for k, v in shapes.items()} }: empty or inconsistent"
        )
    for key in ("image", "psf", "truth"):
        if key in shapes and tuple(shapes[key][1:3]) != (stamp_size, stamp_size):
            raise MetadataError(
                f"the shard {str(shard)!r} has {key} stamps of shape {shapes[key][1:]}, "
                f"but the data set says stamp_size {stamp_size}"
            )
    return shapes


def load_arrays(path: str | os.PathLike, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Load arrays of all shards of a data set, concatenated (for small sets and validation).

    Parameters
    ----------
    path : str or os.PathLike
        The data set directory.
    keys : iterable of str, optional
        The arrays to load (e.g. ``("image", "conditions")``); all of them by default.

    Returns
    -------
    dict of str to numpy.ndarray
    """
    metadata, shards = _shard_paths(path)
    parts: dict[str, list[np.ndarray]] = {}
    for shard in shards:
        if keys is not None:
            check_shard(shard, list(keys), int(metadata["stamp_size"]))
        with np.load(shard) as data:
            wanted = _check_keys(data.files if keys is None else keys, data.files, shard.parent)
            for key in wanted:
                parts.setdefault(key, []).append(data[key])
    return {key: np.concatenate(arrays) for key, arrays in parts.items()}


def make_tf_dataset(
    path: str | os.PathLike,
    batch_size: int,
    *,
    keys: Sequence[str] = ("image", "psf", "noise_var", "noise_ps", "conditions"),
    shuffle: bool = True,
    repeat: bool = True,
    seed: int = 0,
):
    """Stream a data set as a `tf.data.Dataset` of dicts of batched arrays.

    Shards are read one at a time (the shard order and the order within each shard are
    shuffled per pass, then a shuffle buffer of one shard mixes neighbouring shards), so data
    sets larger than memory can be streamed. Batches have exactly ``batch_size`` examples
    (the last incomplete batch of a pass is dropped when ``repeat`` is False).

    Parameters
    ----------
    path : str or os.PathLike
        The data set directory.
    batch_size : int
        Examples per batch; at most the number of examples.
    keys : sequence of str, optional
        Arrays to yield.
    shuffle : bool, optional
        Shuffle the examples (reproducibly, from ``seed``).
    repeat : bool, optional
        Loop over the data set for ever.
    seed : int, optional
        Seed of the shuffling.

    Returns
    -------
    tf.data.Dataset
        Yields dicts ``{key: tensor [batch_size, ...]}``.
    """
    import tensorflow as tf

    metadata, shards = _shard_paths(path)
    batch_size = check_positive_int("batch_size", batch_size)
    if batch_size > metadata["n_examples"]:
        raise ValueError(f"batch_size {batch_size} exceeds the {metadata['n_examples']} examples of {str(path)!r}")
    keys = list(keys)
    for shard in shards:
        check_shard(shard, keys, int(metadata["stamp_size"]))
    with np.load(shards[0]) as first:
        keys = _check_keys(keys, first.files, shards[0].parent)
        signature = {k: tf.TensorSpec((None,) + first[k].shape[1:], tf.as_dtype(first[k].dtype)) for k in keys}
        buffer_size = len(first[keys[0]])

    def shards_of_passes():
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(len(shards)) if shuffle else range(len(shards))
            for i in order:
                with np.load(shards[i]) as data:
                    arrays = {k: data[k] for k in keys}
                if shuffle:
                    perm = rng.permutation(len(arrays[keys[0]]))
                    arrays = {k: v[perm] for k, v in arrays.items()}
                yield arrays
            if not repeat:
                return

    dataset = tf.data.Dataset.from_generator(shards_of_passes, output_signature=signature)
    dataset = dataset.unbatch()
    if shuffle:
        dataset = dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
