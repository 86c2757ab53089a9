"""``galsim-hub list | info | fetch | cache | publish``: the hub's commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from galsim_hub.errors import GalSimHubError


def print_table(rows: list[list[str]], header: list[str]) -> None:
    """Print ``rows`` under ``header`` in aligned columns."""
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def _conditions_text(metadata: dict) -> str:
    parts = []
    for condition in metadata.get("conditions") or []:
        low, high = condition.get("min"), condition.get("max")
        span = f"[{low:g}, {high:g}]" if low is not None and high is not None else ""
        parts.append(f"{condition['name']}{span}")
    return ", ".join(parts) or "?"


def cmd_list(args: argparse.Namespace) -> None:
    """Print the models of every index: name, version, stamp, pixel scale, conditions."""
    from galsim_hub.hub.handle import load_index

    rows = []
    for entry in load_index():
        metadata = entry.get("metadata") or {}
        rows.append(
            [
                f"hub:{entry['name']}",
                entry["version"],
                str(metadata.get("stamp_size", "?")),
                f"{metadata['pixel_scale']:g}" if "pixel_scale" in metadata else "?",
                _conditions_text(metadata),
            ]
        )
    print_table(rows, ["HANDLE", "VERSION", "STAMP", 'PIXEL["]', "CONDITIONS"])


def _read_card(entry: dict) -> str | None:
    if entry.get("_card_path"):
        path = Path(entry["_card_path"])
        return path.read_text(encoding="utf-8") if path.is_file() else None
    if entry.get("_card_url"):
        from galsim_hub.hub import http, settings

        if settings.is_offline():
            return None
        try:
            response = http.request("GET", entry["_card_url"], f"could not read the card {entry['_card_url']}")
        except GalSimHubError:
            return None
        return response.text if response.ok else None
    return None


def cmd_info(args: argparse.Namespace) -> None:
    """Print a model's metadata and model card (hub entries need no download)."""
    from galsim_hub.hub.handle import resolve

    source = resolve(args.handle)
    if source.entry is not None:
        entry = source.entry
        metadata = dict(entry.get("metadata") or {})
        card = _read_card(entry)
        details = {
            "handle": f"hub:{entry['name']}@{entry['version']}",
            "source": source.location,
            "sha256": entry.get("sha256"),
            "size": entry.get("size"),
            "description": entry.get("description", ""),
        }
    else:
        from galsim_hub.hub.cache import fetch
        from galsim_hub.metadata import MODEL_METADATA_FILE, read_metadata

        directory = fetch(source, progress=None)
        metadata = read_metadata(directory) if (directory / MODEL_METADATA_FILE).is_file() else {}
        card_path = directory / "README.md"
        card = card_path.read_text(encoding="utf-8") if card_path.is_file() else None
        details = {"handle": args.handle, "source": source.location, "directory": str(directory)}
    for key, value in details.items():
        print(f"{key}: {value}")
    print("conditions: " + _conditions_text(metadata))
    print("metadata:")
    print(json.dumps(metadata, indent=2))
    print("model card:")
    print(card if card else "(none)")


def cmd_fetch(args: argparse.Namespace) -> None:
    """Download a model into the cache (with a progress bar) and print its directory."""
    from galsim_hub.hub.cache import fetch
    from galsim_hub.hub.handle import resolve

    print(fetch(resolve(args.handle), progress=not args.quiet))


def cmd_cache(args: argparse.Namespace) -> None:
    """List or clear the model cache."""
    from galsim_hub.hub.cache import cache_root, clear, list_entries

    if args.action == "list":
        entries = list_entries()
        rows = [
            [
                entry["key"][:12],
                f"{entry['name']}@{entry['version']}" if "name" in entry else "-",
                f"{entry.get('size_bytes', 0) / 1e6:.1f}",
                entry.get("created", ""),
                entry.get("source", ""),
            ]
            for entry in entries
        ]
        print(f"cache: {cache_root()} ({len(entries)} entries)")
        if rows:
            print_table(rows, ["KEY", "MODEL", "MB", "CREATED", "SOURCE"])
    else:
        keys = _expand_keys(args.keys) if args.keys else None
        removed = clear(keys)
        print(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'} from {cache_root()}")


def _expand_keys(prefixes: list[str]) -> list[str]:
    """Full cache keys from the (unique) prefixes that ``cache list`` prints."""
    from galsim_hub.hub.cache import list_entries

    keys = [entry["key"] for entry in list_entries()]
    expanded = []
    for prefix in prefixes:
        matches = [key for key in keys if key.startswith(prefix)]
        if len(matches) != 1:
            raise GalSimHubError(f"cache key {prefix!r} matches {len(matches)} entries; see `galsim-hub cache list`")
        expanded.append(matches[0])
    return expanded


def cmd_publish(args: argparse.Namespace) -> None:
    """Validate a model and publish it into a hub folder or HTTP(S) endpoint."""
    from galsim_hub.hub.publish import publish

    entry = publish(args.model_dir, args.hub, name=args.name, version=args.version)
    if "commit" in entry:  # a Hugging Face repository
        print(f"published {entry['name']} {entry['version']} to {args.hub}: {entry['handle']}")
        return
    print(f"published hub:{entry['name']}@{entry['version']} to {args.hub}")
    print(f"  archive {entry['path']} ({entry['size']} bytes, sha256 {entry['sha256']})")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``list``, ``info``, ``fetch``, ``cache`` and ``publish`` to the command line."""
    sub = commands.add_parser("list", help="list the models of the hub indexes")
    sub.set_defaults(func=cmd_list)

    sub = commands.add_parser("info", help="show a model's metadata and model card")
    sub.add_argument("handle", help="hub:NAME[@VERSION], URL, archive or directory")
    sub.set_defaults(func=cmd_info)

    sub = commands.add_parser("fetch", help="download a model into the cache")
    sub.add_argument("handle")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.set_defaults(func=cmd_fetch)

    sub = commands.add_parser("cache", help="list or clear the model cache")
    sub.add_argument("action", choices=["list", "clear"])
    sub.add_argument("keys", nargs="*", help="for clear: keys (or prefixes) to remove; default all")
    sub.set_defaults(func=cmd_cache)

    sub = commands.add_parser("publish", help="validate a model and publish it into a hub")
    sub.add_argument("model_dir")
    sub.add_argument(
        "--hub", required=True, help="hub folder (with index.json), http(s) URL accepting PUT, or hf:ORG/REPO"
    )
    sub.add_argument("--name", help="published name (default: the metadata's)")
    sub.add_argument("--version", help="published version (default: the metadata's)")
    sub.set_defaults(func=cmd_publish)
