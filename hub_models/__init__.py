"""The bundled hub: ``index.json``, one folder per model with its model card, and the default model."""

from pathlib import Path

HUB_DIR = Path(__file__).resolve().parent
INDEX_PATH = HUB_DIR / "index.json"
